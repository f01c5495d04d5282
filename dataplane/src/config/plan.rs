//! The runtime plans a valid configuration compiles into: the worker/queue plan, the route
//! table and the EAL argument list.

use std::collections::BTreeSet;

use super::{Config, ConfigError, DeviceKind, RxAssignment, invalid, parse_interface_address};
use crate::route::{Prefix, RouteTable, RouteTableBuilder};
use crate::wire::Addr;

impl Config {
    /// Index of the port called `name`.
    pub fn port_index(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u16::try_from(i).ok())
    }

    /// RX queues of port `index` (explicit or one per worker).
    pub fn rx_queues(&self, index: usize) -> u16 {
        let workers = u16::try_from(self.workers.cores.len()).unwrap_or(u16::MAX);
        self.ports
            .get(index)
            .and_then(|p| p.rx_queues)
            .unwrap_or(workers)
    }

    /// TX queues of every port: one per worker plus one for the slow path.
    pub fn tx_queues(&self) -> u16 {
        u16::try_from(self.workers.cores.len() + 1).unwrap_or(u16::MAX)
    }

    /// Which worker polls which RX queue, for every polled queue. Errors name the field.
    pub fn queue_plan(&self) -> Result<Vec<RxAssignment>, ConfigError> {
        let workers = self.workers.cores.len();
        match &self.workers.queues {
            None => {
                let mut plan = Vec::new();
                for (pi, _) in self.ports.iter().enumerate() {
                    let port = u16::try_from(pi).map_err(|_| invalid("ports", "too many ports"))?;
                    for queue in 0..self.rx_queues(pi) {
                        let worker = u16::try_from(usize::from(queue) % workers)
                            .map_err(|_| invalid("workers.cores", "too many workers"))?;
                        plan.push(RxAssignment {
                            worker,
                            port,
                            queue,
                        });
                    }
                }
                Ok(plan)
            }
            Some(list) => {
                let mut seen = BTreeSet::new();
                let mut plan = Vec::new();
                for (i, a) in list.iter().enumerate() {
                    let f = |s: &str| format!("workers.queues[{i}].{s}");
                    if usize::from(a.worker) >= workers {
                        return Err(invalid(
                            f("worker"),
                            format!("there are only {workers} workers"),
                        ));
                    }
                    let Some(port) = self.port_index(&a.port) else {
                        return Err(invalid(f("port"), format!("no port named {:?}", a.port)));
                    };
                    if a.queue >= self.rx_queues(usize::from(port)) {
                        return Err(invalid(
                            f("queue"),
                            format!("port {:?} has fewer queues", a.port),
                        ));
                    }
                    if !seen.insert((port, a.queue)) {
                        return Err(invalid(f("queue"), "this queue is assigned twice"));
                    }
                    plan.push(RxAssignment {
                        worker: a.worker,
                        port,
                        queue: a.queue,
                    });
                }
                Ok(plan)
            }
        }
    }

    /// The route table from port addresses and static routes.
    pub fn route_table(&self) -> Result<RouteTable, ConfigError> {
        let mut b = RouteTableBuilder::new();
        for (i, p) in self.ports.iter().enumerate() {
            let pi = u16::try_from(i).map_err(|_| invalid("ports", "too many ports"))?;
            for (j, a) in p.addresses.iter().enumerate() {
                let field = format!("ports[{i}].addresses[{j}]");
                let (addr, len) = parse_interface_address(a)
                    .ok_or_else(|| invalid(&field, format!("{a:?} is not ADDRESS/PREFIXLEN")))?;
                b.port_address(pi, addr, len)
                    .map_err(|e| invalid(&field, e))?;
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let f = |s: &str| format!("routes[{i}].{s}");
            let prefix: Prefix = r.prefix.parse().map_err(|e| invalid(f("prefix"), e))?;
            let port = match &r.port {
                Some(name) => Some(
                    self.port_index(name)
                        .ok_or_else(|| invalid(f("port"), format!("no port named {name:?}")))?,
                ),
                None => None,
            };
            match (&r.via, r.blackhole) {
                (Some(_), true) => {
                    return Err(invalid(f("via"), "a blackhole route has no gateway"));
                }
                (None, true) => {
                    b.blackhole(prefix).map_err(|e| invalid(f("prefix"), e))?;
                }
                (Some(via), false) => {
                    let gw: std::net::IpAddr = via
                        .parse()
                        .map_err(|_| invalid(f("via"), "not an address"))?;
                    b.static_route(prefix, Addr::from(gw), port)
                        .map_err(|e| invalid(f("via"), e))?;
                }
                (None, false) => {
                    return Err(invalid(
                        f("via"),
                        "a route needs `via` or `blackhole: true`",
                    ));
                }
            }
        }
        Ok(b.build())
    }

    /// The EAL argument list (`argv[0]` included) for this configuration.
    pub fn eal_args(&self) -> Vec<String> {
        let e = &self.eal;
        let mut lcores = format!("0@{}", e.main_core);
        for (i, c) in self.workers.cores.iter().enumerate() {
            lcores.push_str(&format!(",{}@{c}", i + 1));
        }
        let mut args = vec!["fwd".to_string(), "--lcores".into(), lcores];
        args.extend(["--main-lcore".into(), "0".into()]);
        args.extend(["--file-prefix".into(), e.file_prefix.clone()]);
        if let Some(m) = e.memory_mb {
            args.extend(["-m".into(), m.to_string()]);
        }
        if !e.hugepages {
            args.push("--no-huge".into());
        }
        // --no-huge implies legacy memory, which --in-memory refuses: --no-shconf keeps
        // the no-shared-files part of it.
        if e.in_memory && e.hugepages {
            args.push("--in-memory".into());
        } else if e.in_memory {
            args.push("--no-shconf".into());
        }
        let mut any_pci = false;
        for p in &self.ports {
            match p.device_kind() {
                DeviceKind::Virtual => args.push(format!("--vdev={}", p.device)),
                DeviceKind::Pci => {
                    any_pci = true;
                    args.extend(["-a".into(), p.device.clone()]);
                }
            }
        }
        if !any_pci {
            args.push("--no-pci".into());
        }
        args.extend(e.extra_args.iter().cloned());
        args
    }
}
