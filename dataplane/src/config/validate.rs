//! Reading and checking a configuration: [`Config::parse`], [`Config::load`] and the
//! cross-field rules of [`Config::validate`] (errors name the field).

use std::collections::BTreeSet;
use std::path::Path;

use crate::wire::Addr;

use super::{
    Config, ConfigError, DeviceKind, HaRole, MAX_HA_NODES, TunableCheck, invalid,
    parse_interface_address, parse_mac,
};

impl Config {
    /// Parses YAML text. Syntax and type errors carry line and column.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))
    }

    /// Reads, parses and validates a file; a relative `ruleset` path is made relative to
    /// the file's directory.
    pub fn load(path: &Path, check_tunable: TunableCheck<'_>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut cfg = Self::parse(&text).map_err(|e| match e {
            ConfigError::Syntax(m) => ConfigError::Syntax(format!("{}: {m}", path.display())),
            other => other,
        })?;
        if let (Some(r), Some(dir)) = (&cfg.ruleset, path.parent())
            && r.is_relative()
        {
            cfg.ruleset = Some(dir.join(r));
        }
        cfg.validate(check_tunable)?;
        Ok(cfg)
    }

    /// Cross-field validation; the error names the offending field.
    pub fn validate(&self, check_tunable: TunableCheck<'_>) -> Result<(), ConfigError> {
        if self.ports.is_empty() {
            return Err(invalid("ports", "at least one port is required"));
        }
        let mut names = BTreeSet::new();
        let mut devices = BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            let f = |s: &str| format!("ports[{i}].{s}");
            if p.name.is_empty() || p.name.len() > 15 {
                return Err(invalid(
                    f("name"),
                    "must be 1 to 15 bytes (an interface name)",
                ));
            }
            if !p
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(invalid(f("name"), "only letters, digits, '-', '_' and '.'"));
            }
            if p.name == "lo" {
                return Err(invalid(
                    f("name"),
                    "'lo' is reserved for the appliance itself",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(
                    f("name"),
                    format!("duplicate port name {:?}", p.name),
                ));
            }
            if p.device_kind() == DeviceKind::Virtual && !p.dpdk_name().starts_with("net_") {
                return Err(invalid(
                    f("device"),
                    format!(
                        "{:?} is neither a PCI address nor a virtual device (net_memif0,..., \
                         net_af_packet0,iface=..., net_tap0, net_null0, net_ring0)",
                        p.device
                    ),
                ));
            }
            if !devices.insert(p.dpdk_name()) {
                return Err(invalid(
                    f("device"),
                    format!("device {:?} used twice", p.dpdk_name()),
                ));
            }
            for (j, a) in p.addresses.iter().enumerate() {
                if parse_interface_address(a).is_none() {
                    return Err(invalid(
                        f(&format!("addresses[{j}]")),
                        format!("{a:?} is not ADDRESS/PREFIXLEN"),
                    ));
                }
            }
            if let Some(m) = &p.mac
                && parse_mac(m).is_none_or(|m| m[0] & 1 == 1)
            {
                return Err(invalid(
                    f("mac"),
                    format!("{m:?} is not a unicast MAC address"),
                ));
            }
            if !(68..=9600).contains(&p.mtu) {
                return Err(invalid(f("mtu"), "must be within 68..=9600"));
            }
            for (field, d) in [
                ("rx_descriptors", p.rx_descriptors),
                ("tx_descriptors", p.tx_descriptors),
            ] {
                if !(32..=16384).contains(&d) {
                    return Err(invalid(f(field), "must be within 32..=16384"));
                }
            }
            if p.rx_queues == Some(0) {
                return Err(invalid(f("rx_queues"), "must be at least 1"));
            }
        }
        self.validate_workers()?;
        self.route_table()?;
        for (i, n) in self.neighbors.iter().enumerate() {
            let f = |s: &str| format!("neighbors[{i}].{s}");
            if n.address.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    f("address"),
                    format!("{:?} is not an address", n.address),
                ));
            }
            if parse_mac(&n.mac).is_none() {
                return Err(invalid(
                    f("mac"),
                    format!("{:?} is not a MAC address", n.mac),
                ));
            }
            if self.port_index(&n.port).is_none() {
                return Err(invalid(f("port"), format!("no port named {:?}", n.port)));
            }
        }
        for (i, a) in self.ha.service_addresses.iter().enumerate() {
            let field = format!("ha.service_addresses[{i}]");
            let Ok(ip) = a.parse::<std::net::IpAddr>() else {
                return Err(invalid(field, format!("{a:?} is not an address")));
            };
            let own = self
                .ports
                .iter()
                .flat_map(|p| &p.addresses)
                .filter_map(|p| parse_interface_address(p))
                .any(|(p, _)| p == Addr::from(ip));
            if !own {
                return Err(invalid(field, format!("{a} is not an address of any port")));
            }
        }
        self.validate_ha_nodes()?;
        let workers = self.workers.cores.len() as u64;
        if self.conntrack.max < workers {
            return Err(invalid(
                "conntrack.max",
                "must be at least one entry per worker",
            ));
        }
        for (name, value) in self.conntrack.sysctls() {
            check_tunable(&name, value).map_err(|m| {
                let field = if name.starts_with("nf_conntrack_max") {
                    "conntrack.max".to_string()
                } else if name == "nf_conntrack_tcp_loose" {
                    "conntrack.tcp_loose".to_string()
                } else if name == "nf_conntrack_tcp_be_liberal" {
                    "conntrack.tcp_be_liberal".to_string()
                } else {
                    format!("conntrack.timeouts.{name}")
                };
                invalid(field, m)
            })?;
        }
        if let Some(eal_core) = self.housekeeping_cores.iter().find(|c| **c > 4096) {
            return Err(invalid(
                "housekeeping_cores",
                format!("core {eal_core} is out of range"),
            ));
        }
        Ok(())
    }

    /// `ha.local_node` / `ha.total_nodes`: both with `role: active-active`, neither
    /// otherwise; `2 <= total_nodes <= MAX_HA_NODES`, `1 <= local_node <= total_nodes`.
    fn validate_ha_nodes(&self) -> Result<(), ConfigError> {
        let (local, total) = (self.ha.local_node, self.ha.total_nodes);
        if self.ha.role != HaRole::ActiveActive {
            return match (local, total) {
                (None, None) => Ok(()),
                (Some(_), _) => Err(invalid(
                    "ha.local_node",
                    "port slices are for role active-active only",
                )),
                (None, Some(_)) => Err(invalid(
                    "ha.total_nodes",
                    "port slices are for role active-active only",
                )),
            };
        }
        let Some(total) = total else {
            return Err(invalid(
                "ha.total_nodes",
                "required with role active-active: the boxes must not pick the same NAT \
                 port (each takes a slice of every SNAT / masquerade port range)",
            ));
        };
        if !(2..=MAX_HA_NODES).contains(&total) {
            return Err(invalid(
                "ha.total_nodes",
                format!("{total} is not in 2..={MAX_HA_NODES}"),
            ));
        }
        match local {
            None => Err(invalid(
                "ha.local_node",
                "required with role active-active (this box's number, 1..=total_nodes)",
            )),
            Some(l) if l < 1 || l > total => Err(invalid(
                "ha.local_node",
                format!("{l} is not in 1..={total} (ha.total_nodes)"),
            )),
            Some(_) => Ok(()),
        }
    }

    fn validate_workers(&self) -> Result<(), ConfigError> {
        let w = &self.workers;
        if w.cores.is_empty() {
            return Err(invalid("workers.cores", "at least one worker is required"));
        }
        if w.cores.len() > 128 {
            return Err(invalid("workers.cores", "at most 128 workers"));
        }
        if !w.handoff_ring.is_power_of_two() || !(64..=65536).contains(&w.handoff_ring) {
            return Err(invalid(
                "workers.handoff_ring",
                "must be a power of two in 64..=65536",
            ));
        }
        let plan = self.queue_plan()?;
        // Every RX queue of every port must be polled by someone, or its packets are lost.
        for (pi, p) in self.ports.iter().enumerate() {
            let queues = self.rx_queues(pi);
            for q in 0..queues {
                if !plan
                    .iter()
                    .any(|a| usize::from(a.port) == pi && a.queue == q)
                {
                    return Err(invalid(
                        "workers.queues",
                        format!("queue {q} of port {:?} is polled by no worker", p.name),
                    ));
                }
            }
        }
        Ok(())
    }
}
