//! The file's schema: the serde types, their defaults and the value parsers the
//! validation and the daemon share.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::wire::Addr;

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
    /// High availability (docs/ha.md, "Backup role"): this box's role at start.
    #[serde(default)]
    pub ha: HaConfig,
}

/// High availability: the role at start and the service addresses. A `backup` keeps its
/// service addresses silent on the segment (no ARP / neighbour-solicitation answers, no
/// ARP probes or solicitations sent from them) until a takeover announces them, as a
/// VRRP backup does; `primary` and `active-active` answer from the start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    #[serde(default)]
    pub role: HaRole,
    /// The addresses a backup keeps silent until takeover (each one of the ports'
    /// addresses, without prefix length); empty: every port address.
    #[serde(default)]
    pub service_addresses: Vec<String>,
    /// Active/active: this box's number, 1 ..= `total_nodes` (as iptables'
    /// `CLUSTERIP --local-node`). Required with `role: active-active`, refused otherwise.
    #[serde(default)]
    pub local_node: Option<u16>,
    /// Active/active: how many boxes forward at once (2 ..= 16, as `CLUSTERIP
    /// --total-nodes`). Each takes its own contiguous slice of every SNAT / masquerade
    /// port range (`nat/node.rs`, docs/ha.md "Active/active NAT port slices").
    #[serde(default)]
    pub total_nodes: Option<u16>,
}

/// Most boxes of an active/active cluster (`ha.total_nodes`).
pub const MAX_HA_NODES: u16 = 16;

/// The role of `ha.role`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaRole {
    #[default]
    Primary,
    Backup,
    ActiveActive,
}

impl Config {
    /// This box's slice of the NAT port ranges: node `local_node` of `total_nodes` in
    /// active/active, the whole range otherwise. Call on a validated config.
    pub fn nat_node_slice(&self) -> crate::nat::NodeSlice {
        match (self.ha.role, self.ha.local_node, self.ha.total_nodes) {
            (HaRole::ActiveActive, Some(l), Some(t)) => {
                crate::nat::NodeSlice::new(l, t).unwrap_or_default()
            }
            _ => crate::nat::NodeSlice::default(),
        }
    }

    /// The addresses the slow path keeps silent at start: a backup's service addresses
    /// (every port address when none are listed); none for the other roles. Call on a
    /// validated config (unparsable entries are skipped).
    pub fn standby_addresses(&self) -> Vec<Addr> {
        if self.ha.role != HaRole::Backup {
            return Vec::new();
        }
        if self.ha.service_addresses.is_empty() {
            return self
                .ports
                .iter()
                .flat_map(|p| &p.addresses)
                .filter_map(|a| parse_interface_address(a).map(|(a, _)| a))
                .collect();
        }
        self.ha
            .service_addresses
            .iter()
            .filter_map(|a| a.parse::<std::net::IpAddr>().ok().map(Addr::from))
            .collect()
    }
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
pub(super) fn is_pci_address(s: &str) -> bool {
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
