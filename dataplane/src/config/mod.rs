//! The `fwd` configuration file (YAML).
//!
//! Loaded in two steps: [`Config::parse`] (syntax and types, unknown fields
//! rejected, errors with line and column) then [`Config::validate`] (cross-field rules, errors
//! naming the field, e.g. `ports[1].addresses[0]`). The result is compiled into the runtime
//! pieces (EAL arguments, route table, worker/queue plan) by the daemon.
//!
//! YAML is read with `serde-saphyr`: `serde_yaml` is deprecated upstream (2024) and its
//! forks either carry the unsafe C-derived `unsafe-libyaml` or, for `serde_yml`, a security
//! advisory; serde-saphyr is maintained, pure safe Rust on the `saphyr` parser, and reports
//! errors with line, column and a snippet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::route::{Prefix, RouteTable, RouteTableBuilder};
use crate::wire::Addr;

/// A configuration error: where (a field path or a file position) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// YAML syntax or type error (the message carries line and column).
    #[error("{0}")]
    Syntax(String),
    /// A value broke a rule; `field` is the path of the offending field.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.to_string(),
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// DPDK EAL settings.
    #[serde(default)]
    pub eal: EalConfig,
    /// The ports, in the order they get their port index (used in routes and rules).
    pub ports: Vec<PortConfig>,
    /// Worker lcores and which port queues each polls.
    #[serde(default)]
    pub workers: WorkersConfig,
    /// Static routes (connected routes come from the port addresses).
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Static neighbour (ARP / NDP) entries.
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
    /// Connection tracking.
    #[serde(default)]
    pub conntrack: ConntrackConfig,
    /// The ruleset file in nftables syntax, relative to this file. Without it, and without a
    /// persisted ruleset in `state_dir`, nothing is filtered and nothing is NATed (an empty
    /// ruleset accepts everything, as an empty nftables ruleset does).
    #[serde(default)]
    pub ruleset: Option<PathBuf>,
    /// The control socket served to `fwmgmt` (created with mode 0600).
    #[serde(default = "default_control_socket")]
    pub control_socket: PathBuf,
    /// Where the applied ruleset and tunables are persisted.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// CPU cores for the control thread (default: the EAL main core).
    #[serde(default)]
    pub housekeeping_cores: Vec<usize>,
    /// Limits on what a ruleset may cost (text size, rules, set elements, rule
    /// evaluations per packet, compiled memory); see `rules::limits::Limits` for each
    /// field and its default. Every ruleset is held to them: the config's file, the
    /// persisted one, SIGHUP reloads and API replacements.
    #[serde(default)]
    pub limits: crate::rules::limits::Limits,
}

fn default_control_socket() -> PathBuf {
    PathBuf::from("/run/fwd/control.sock")
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/fwd")
}

/// EAL settings. `fwd` derives `--lcores`, `--vdev` / `-a` from the rest of the file; put
/// anything else in `extra_args`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// Core of the EAL main lcore, which runs the slow path (ARP/ND).
    #[serde(default)]
    pub main_core: u32,
    /// Memory to reserve in MiB (`-m`); default: what DPDK takes on demand.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Use hugepages (`false` adds `--no-huge`, for tests only: slower).
    #[serde(default = "yes")]
    pub hugepages: bool,
    /// `--file-prefix`, so several DPDK processes can run on one host.
    #[serde(default = "default_file_prefix")]
    pub file_prefix: String,
    /// `--in-memory`: no shared runtime files (no secondary processes).
    #[serde(default)]
    pub in_memory: bool,
    /// Mbufs in the packet pool (default: enough for every descriptor, ring and cache).
    #[serde(default)]
    pub mbufs: Option<u32>,
    /// Further EAL arguments, passed as they are (e.g. `--log-level=pmd.net.memif:debug`).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_file_prefix() -> String {
    "fwd".into()
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            main_core: 0,
            memory_mb: None,
            hugepages: true,
            file_prefix: default_file_prefix(),
            in_memory: false,
            mbufs: None,
            extra_args: Vec::new(),
        }
    }
}

/// One port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// The name rules use (`iifname "lan"`), at most 15 bytes like a Linux interface name.
    pub name: String,
    /// DPDK device: a virtual device with its arguments
    /// (`net_memif0,role=server,socket=/run/fwd/lan.sock`, `net_af_packet0,iface=veth0`) or
    /// a PCI address (`0000:03:00.0`).
    pub device: String,
    /// Addresses with prefix length (`198.18.1.1/24`, `2001:db8::1/64`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// MAC address to set; default: the device's.
    #[serde(default)]
    pub mac: Option<String>,
    /// RX queues; default: one per worker.
    #[serde(default)]
    pub rx_queues: Option<u16>,
    /// RX descriptors per queue.
    #[serde(default = "default_descriptors")]
    pub rx_descriptors: u16,
    /// TX descriptors per queue.
    #[serde(default = "default_descriptors")]
    pub tx_descriptors: u16,
    /// MTU in bytes (L3).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Receive every frame regardless of destination MAC.
    #[serde(default = "yes")]
    pub promiscuous: bool,
}

fn default_descriptors() -> u16 {
    1024
}

fn default_mtu() -> u16 {
    1500
}

/// Where a port's device comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A virtual device created with `--vdev`.
    Virtual,
    /// A PCI device allowed with `-a`.
    Pci,
}

impl PortConfig {
    /// Virtual or PCI.
    pub fn device_kind(&self) -> DeviceKind {
        if is_pci_address(&self.device) {
            DeviceKind::Pci
        } else {
            DeviceKind::Virtual
        }
    }

    /// The name DPDK gives the port (the device name before the first comma).
    pub fn dpdk_name(&self) -> &str {
        self.device.split(',').next().unwrap_or(&self.device)
    }
}

/// `DDDD:BB:DD.F` or `BB:DD.F`.
fn is_pci_address(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit());
    let dev_fn = |p: &str| {
        p.split_once('.')
            .is_some_and(|(d, f)| hex(d, 2) && f.len() == 1 && f.as_bytes()[0] <= b'7')
    };
    match parts.as_slice() {
        [dom, bus, df] => hex(dom, 4) && hex(bus, 2) && dev_fn(df),
        [bus, df] => hex(bus, 2) && dev_fn(df),
        _ => false,
    }
}

/// Worker lcores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Physical core of each worker; worker *i* is EAL lcore *i + 1* pinned to `cores[i]`.
    /// A core may repeat (several workers on one core), which is only useful for tests.
    #[serde(default = "default_worker_cores")]
    pub cores: Vec<u32>,
    /// Explicit RX queue assignment; default: worker *i* polls queue *i* of every port.
    #[serde(default)]
    pub queues: Option<Vec<QueueAssignment>>,
    /// Slots in each worker-to-worker handoff ring (a power of two).
    #[serde(default = "default_ring")]
    pub handoff_ring: u32,
}

fn default_worker_cores() -> Vec<u32> {
    vec![1]
}

fn default_ring() -> u32 {
    1024
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            cores: default_worker_cores(),
            queues: None,
            handoff_ring: default_ring(),
        }
    }
}

/// One RX queue polled by one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueAssignment {
    pub worker: u16,
    pub port: String,
    pub queue: u16,
}

/// One RX queue and the worker that polls it (port by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxAssignment {
    pub worker: u16,
    pub port: u16,
    pub queue: u16,
}

/// A static route: `prefix` via `via` (a gateway on a connected network), out of `port`
/// (default: the port whose network holds the gateway), or a blackhole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    #[serde(default)]
    pub via: Option<String>,
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default)]
    pub blackhole: bool,
}

/// A static neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    pub address: String,
    pub mac: String,
    pub port: String,
}

/// Connection tracking settings, by the names of Linux's `nf_conntrack` sysctls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackConfig {
    /// `nf_conntrack_max`: entries across all workers; each worker pre-allocates its share.
    #[serde(default = "default_ct_max")]
    pub max: u64,
    /// `nf_conntrack_tcp_loose`: pick up established TCP connections mid-stream.
    #[serde(default = "yes")]
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal`: only RST segments out of window are invalid.
    #[serde(default)]
    pub tcp_be_liberal: bool,
    /// Timeouts in seconds by sysctl name, e.g. `nf_conntrack_tcp_timeout_established`.
    #[serde(default)]
    pub timeouts: BTreeMap<String, u64>,
}

fn default_ct_max() -> u64 {
    262_144
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max: default_ct_max(),
            tcp_loose: true,
            tcp_be_liberal: false,
            timeouts: BTreeMap::new(),
        }
    }
}

impl ConntrackConfig {
    /// Every setting as `(sysctl name, value)`, booleans as 0/1 like `sysctl` prints them.
    pub fn sysctls(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("nf_conntrack_max".to_string(), self.max),
            (
                "nf_conntrack_tcp_loose".to_string(),
                u64::from(self.tcp_loose),
            ),
            (
                "nf_conntrack_tcp_be_liberal".to_string(),
                u64::from(self.tcp_be_liberal),
            ),
        ];
        v.extend(self.timeouts.iter().map(|(k, v)| (k.clone(), *v)));
        v
    }
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parses `ADDRESS/LEN` keeping the host part (an interface address).
pub fn parse_interface_address(s: &str) -> Option<(Addr, u8)> {
    let (a, l) = s.split_once('/')?;
    let ip: std::net::IpAddr = a.trim().parse().ok()?;
    let len: u8 = l.trim().parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((Addr::from(ip), len))
}

/// A validator for conntrack tunables, supplied by the conntrack module: `Err` carries the
/// reason a name or value is refused.
pub type TunableCheck<'a> = &'a dyn Fn(&str, u64) -> Result<(), String>;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn any_tunable(_: &str, _: u64) -> Result<(), String> {
        Ok(())
    }

    const ROUTER: &str = r#"
eal:
  main_core: 0
  in_memory: true
ports:
  - name: lan
    device: net_memif0,role=server,socket=/run/fwd/lan.sock
    addresses: [198.18.1.1/24, "2001:db8:1::1/64"]
  - name: wan
    device: "0000:03:00.0"
    addresses: [198.19.1.1/24]
    mac: "02:00:00:00:00:02"
workers:
  cores: [1, 2]
routes:
  - prefix: 0.0.0.0/0
    via: 198.19.1.254
  - prefix: 203.0.113.0/24
    blackhole: true
neighbors:
  - address: 198.19.1.254
    mac: "02:00:00:00:00:fe"
    port: wan
conntrack:
  max: 1000000
  timeouts:
    nf_conntrack_udp_timeout: 60
ruleset: ruleset.nft
"#;

    #[test]
    fn a_router_config_parses_and_validates() {
        let c = Config::parse(ROUTER).unwrap();
        c.validate(&any_tunable).unwrap();
        assert_eq!(c.ports[1].device_kind(), DeviceKind::Pci);
        assert_eq!(c.ports[0].dpdk_name(), "net_memif0");
        assert_eq!(c.tx_queues(), 3);
        let plan: Vec<_> = c
            .queue_plan()
            .unwrap()
            .iter()
            .map(|a| (a.worker, a.port, a.queue))
            .collect();
        assert_eq!(plan, vec![(0, 0, 0), (1, 0, 1), (0, 1, 0), (1, 1, 1)]);
        let args = c.eal_args();
        assert_eq!(&args[..3], ["fwd", "--lcores", "0@0,1@1,2@2"]);
        assert!(args.contains(&"--vdev=net_memif0,role=server,socket=/run/fwd/lan.sock".into()));
        assert!(args.windows(2).any(|w| w == ["-a", "0000:03:00.0"]));
        assert!(!args.contains(&"--no-pci".into()));
        assert!(args.contains(&"--in-memory".into()));
        let mut nohuge = c.clone();
        nohuge.eal.hugepages = false;
        let args = nohuge.eal_args();
        assert!(args.contains(&"--no-huge".into()) && args.contains(&"--no-shconf".into()));
        assert!(
            !args.contains(&"--in-memory".into()),
            "EAL refuses it with --no-huge"
        );
        let t = c.route_table().unwrap();
        assert_eq!(t.routes().len(), 5);
        assert_eq!(c.control_socket, PathBuf::from("/run/fwd/control.sock"));
        let sysctls = c.conntrack.sysctls();
        assert!(sysctls.contains(&("nf_conntrack_udp_timeout".into(), 60)));
        assert!(sysctls.contains(&("nf_conntrack_tcp_loose".into(), 1)));
    }

    #[test]
    fn unknown_fields_are_errors_with_a_position() {
        let e = Config::parse("ports:\n  - name: lan\n    devcie: net_null0\n").unwrap_err();
        let ConfigError::Syntax(m) = e else {
            panic!("syntax error expected")
        };
        assert!(m.contains("line 3"), "{m}");
        assert!(m.contains("devcie"), "{m}");
    }

    fn check(yaml: &str) -> ConfigError {
        let c = Config::parse(yaml).unwrap();
        c.validate(&any_tunable).unwrap_err()
    }

    fn field(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let base = "ports:\n  - name: lan\n    device: net_null0\n";
        assert_eq!(field(check("ports: []\n")), "ports");
        assert_eq!(
            field(check(&format!("{base}    addresses: [198.18.1.1/33]\n"))),
            "ports[0].addresses[0]"
        );
        assert_eq!(
            field(check(&format!("{base}    mac: \"01:00:5e:00:00:01\"\n"))),
            "ports[0].mac"
        );
        assert_eq!(
            field(check(&format!("{base}    mtu: 20\n"))),
            "ports[0].mtu"
        );
        assert_eq!(
            field(check(&format!(
                "{base}  - name: lan\n    device: net_null1\n"
            ))),
            "ports[1].name"
        );
        assert_eq!(
            field(check("ports:\n  - name: a\n    device: eth0\n")),
            "ports[0].device",
            "a kernel interface name is not a DPDK device"
        );
        assert_eq!(
            field(check(&format!(
                "{base}routes:\n  - prefix: 0.0.0.0/0\n    via: 192.0.2.1\n"
            ))),
            "routes[0].via",
            "gateway not on a connected network"
        );
        assert_eq!(
            field(check(&format!("{base}workers:\n  cores: []\n"))),
            "workers.cores"
        );
        assert_eq!(
            field(check(&format!(
                "{base}workers:\n  cores: [1]\n  queues:\n    - {{worker: 3, port: lan, queue: 0}}\n"
            ))),
            "workers.queues[0].worker"
        );
        assert_eq!(
            field(check(&format!(
                "{base}    rx_queues: 2\nworkers:\n  cores: [1]\n  queues:\n    - {{worker: 0, port: lan, queue: 0}}\n"
            ))),
            "workers.queues",
            "queue 1 is polled by nobody"
        );
    }

    #[test]
    fn tunables_are_checked_by_the_given_validator() {
        let c = Config::parse(
            "ports:\n  - name: lan\n    device: net_null0\nconntrack:\n  timeouts:\n    nf_conntrack_bogus: 3\n",
        )
        .unwrap();
        let strict = |n: &str, _: u64| {
            if n == "nf_conntrack_bogus" {
                Err("unknown tunable".to_string())
            } else {
                Ok(())
            }
        };
        assert_eq!(
            field(c.validate(&strict).unwrap_err()),
            "conntrack.timeouts.nf_conntrack_bogus"
        );
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(!is_pci_address("net_memif0"));
        assert!(!is_pci_address("0000:03:00.8"));
        assert!(!is_pci_address("0000:3:00.0"));
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:00:fe"), Some([2, 0, 0, 0, 0, 0xfe]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:00:01"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
    }
}
