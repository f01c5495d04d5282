//! `fwd`: the data-plane daemon (see `docs/fwd.md`).
//!
//! ```text
//! fwd --config /etc/fwd/fwd.yaml   run the appliance
//! fwd --demo                       run the embedded demo configuration
//! fwd check FILE                   validate a configuration (or a ruleset) and exit
//! fwd check --iptables FILE --print translate an iptables ruleset, print it as nft
//! fwd --version
//! ```
//!
//! Start-up: EAL init from the configuration, diagnostics (ports exist, mempools work,
//! which driver package is missing), ports configured and started (workers + 1 TX queues,
//! symmetric RSS where there are several RX queues), rings (handoff per worker pair,
//! slow path, commands), workers launched on their lcores, the control thread pinned to a
//! housekeeping core, the slow path on the main lcore. SIGTERM/SIGINT stop everything in
//! reverse order and clean EAL up; SIGHUP reloads the ruleset file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clap::{Parser, Subcommand};
use dataplane::config::{Config, ConfigError, parse_mac};
use dataplane::conntrack::{Tunables, check_tunable};
use dataplane::control::proto::{PortStats, WorkerStats};
use dataplane::control::server::{self, Backend, RulesetState, Server, ServerConfig, StateDir};
use dataplane::route::{NeighConfig, NeighborSnapshot};
use dataplane::rules::{self, PortsByName};
use dataplane::wire::Addr;
use dataplane::worker::counters::{CounterBlock, MAX_PORTS};
use dataplane::worker::io::{BURST, NeighShare, NeighWorker, SlowPathIo, WorkerIo};
use dataplane::worker::process::SteerMsg;
use dataplane::worker::{Pipeline, PipelineConfig, PortInfo, SlowPath, WorkerCommand, WorkerReply};
use dpdk_bindings::{
    Consumer, Eal, HugeMem, Mbuf, Mempool, Port, PortConfig as DevPortConfig, Producer, Ring,
    RssConfig, RxOffloads, SocketId, TxBuffer, diag, ffi,
};

/// Slots of each worker-pair steering ring (messages are made per new DNAT connection
/// whose reply belongs to another worker, and per death of one).
const STEER_RING: u32 = 4096;

const DEMO_YAML: &str = include_str!("../../../deploy/examples/demo.yaml");

#[derive(Parser, Debug)]
#[command(
    name = "fwd",
    version,
    about = "DPDK stateful firewall and NAT appliance"
)]
// pub(crate): examples/fwd-man.rs renders the man page from it.
pub(crate) struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the embedded demo configuration (deploy/examples/demo.yaml).
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// Print a throughput line every N seconds (0: never; the demo defaults to 1).
    #[arg(long, value_name = "SECS")]
    stats_interval: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration (.yaml/.yml), an nftables ruleset (.nft/.conf) or an
    /// iptables ruleset (iptables-save output or a script of iptables commands, detected
    /// by its first line) and exit: 0 when valid, 1 with `FILE:LINE:COL: message` (or
    /// `FILE: field: message`) when not.
    Check {
        /// The file to check.
        file: PathBuf,
        /// Read FILE as iptables input (iptables-restore format or iptables commands).
        #[arg(long)]
        iptables: bool,
        /// Read FILE as ip6tables input (the restore format's tables become ip6 tables).
        #[arg(long, conflicts_with = "iptables")]
        ip6tables: bool,
        /// Print the ruleset as nftables text (for iptables input: the translation, like
        /// iptables-restore-translate).
        #[arg(long)]
        print: bool,
    },
}

/// A binary built for x86-64-v3 (`make release-v3`) on a CPU without its features would
/// die of an illegal instruction somewhere; say why instead, first thing.
fn cpu_level_missing() -> Option<String> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("bmi2")
    {
        return Some(
            "this fwd was built for x86-64-v3 (make release-v3) and the CPU lacks AVX2/BMI2: \
             use the portable build (make release)"
                .to_string(),
        );
    }
    None
}

fn main() -> ExitCode {
    if let Some(e) = cpu_level_missing() {
        eprintln!("fwd: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    match (&cli.command, &cli.config, cli.demo) {
        (
            Some(Command::Check {
                file,
                iptables,
                ip6tables,
                print,
            }),
            _,
            _,
        ) => {
            let family = match (iptables, ip6tables) {
                (_, true) => Some(rules::ast::TableFamily::Ip6),
                (true, _) => Some(rules::ast::TableFamily::Ip),
                _ => None,
            };
            check(file, family, *print)
        }
        (None, Some(path), false) => match Config::load(path, &check_tunable) {
            Ok(cfg) => exit(run(&cfg, cli.stats_interval.unwrap_or(0))),
            Err(e) => {
                eprintln!("{}", located(path, &e));
                ExitCode::FAILURE
            }
        },
        (None, None, true) => match Config::parse(DEMO_YAML) {
            Ok(cfg) => exit(run(&cfg, cli.stats_interval.unwrap_or(1))),
            Err(e) => {
                eprintln!("fwd: embedded demo.yaml: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("fwd: give --config FILE, --demo, or `check FILE` (see --help)");
            ExitCode::from(2)
        }
    }
}

fn exit(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `FILE:LINE:COL: message` for syntax errors (serde-saphyr reports "line L column C"),
/// `FILE: field: message` for validation errors.
fn located(path: &Path, e: &ConfigError) -> String {
    let file = path.display();
    match e {
        ConfigError::Syntax(m) => {
            let m = m
                .strip_prefix(&format!("{file}: "))
                .unwrap_or(m)
                .to_string();
            match line_col(&m) {
                Some((l, c)) => format!("{file}:{l}:{c}: {m}"),
                None => format!("{file}: {m}"),
            }
        }
        ConfigError::Io { message, .. } => format!("{file}: {message}"),
        ConfigError::Invalid { field, message } => format!("{file}: {field}: {message}"),
    }
}

/// Finds "line N" and "column M" in a message.
fn line_col(m: &str) -> Option<(u32, u32)> {
    let num_after = |key: &str| -> Option<u32> {
        let i = m.find(key)? + key.len();
        let digits: String = m[i..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((num_after("line")?, num_after("column")?))
}

fn check(file: &Path, iptables: Option<rules::ast::TableFamily>, print: bool) -> ExitCode {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let sniff =
        || std::fs::read_to_string(file).is_ok_and(|t| rules::iptables::looks_like_iptables(&t));
    if iptables.is_some()
        || matches!(ext, "nft" | "conf")
        || print
        || !matches!(ext, "yaml" | "yml") && sniff()
    {
        return check_ruleset(file, iptables, print);
    }
    let cfg = match Config::load(file, &check_tunable) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", located(file, &e));
            return ExitCode::FAILURE;
        }
    };
    let extra = cfg
        .queue_plan()
        .and_then(|_| cfg.route_table().map(|_| ()))
        .err()
        .or_else(|| {
            (cfg.ports.len() > MAX_PORTS).then(|| ConfigError::Invalid {
                field: "ports".into(),
                message: format!("at most {MAX_PORTS} ports"),
            })
        });
    if let Some(e) = extra {
        eprintln!("{}", located(file, &e));
        return ExitCode::FAILURE;
    }
    if let Some(r) = &cfg.ruleset {
        let text = match std::fs::read_to_string(r) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: ruleset {}: {e}", file.display(), r.display());
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = rules::load_text_with(
            &text,
            &ports_by_name(&cfg),
            cfg.workers.cores.len(),
            &cfg.limits,
        ) {
            eprintln!(
                "{}:{}:{}: {} (at `{}`)",
                r.display(),
                e.line,
                e.col,
                e.msg,
                e.token
            );
            return ExitCode::FAILURE;
        }
    }
    // What fwd would start from: the persisted ruleset and tunables, read as strictly.
    if let Err(e) = load_state(&cfg, &StateDir::new(&cfg.state_dir)) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{}: ok ({} ports, {} workers)",
        file.display(),
        cfg.ports.len(),
        cfg.workers.cores.len()
    );
    ExitCode::SUCCESS
}

/// `fwd check FILE.nft`: parse and check (port names are not known without a config, so
/// `iif`/`oif` are not resolved here; `fwd check CONFIG` compiles its ruleset fully).
/// iptables input (`--iptables`, `--ip6tables`, or detected) is translated first.
fn check_ruleset(file: &Path, iptables: Option<rules::ast::TableFamily>, print: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let iptables = iptables.or_else(|| {
        rules::iptables::looks_like_iptables(&text).then_some(rules::ast::TableFamily::Ip)
    });
    // An error names the file it is in (the one given or one it includes).
    let result = match iptables {
        Some(family) => {
            rules::iptables::translate(&text, family).map_err(|error| rules::parse::FileError {
                path: file.to_path_buf(),
                error,
            })
        }
        None => rules::parse::parse_file(file).and_then(|rs| {
            rules::check::check(&rs)
                .map(|()| rs)
                .map_err(|error| rules::parse::FileError {
                    path: file.to_path_buf(),
                    error,
                })
        }),
    };
    match result {
        Ok(rs) if print => {
            print!("{}", rules::print::to_text(&rs));
            ExitCode::SUCCESS
        }
        Ok(rs) => {
            let n: usize = rs
                .tables
                .iter()
                .flat_map(|t| &t.chains)
                .map(|c| c.rules.len())
                .sum();
            println!(
                "{}: ok ({} tables, {n} rules)",
                file.display(),
                rs.tables.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn ports_by_name(cfg: &Config) -> PortsByName {
    cfg.ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((p.name.clone(), u16::try_from(i).ok()?)))
        .collect()
}

/// One started port, owned by the control thread while running.
#[derive(Debug)]
struct RunPort {
    name: String,
    port: Port,
    driver: String,
    rx_queues: u16,
    tx_queues: u16,
}

/// The control thread's view of the daemon.
#[derive(Debug)]
struct DpdkBackend {
    commands: Vec<Producer<Box<WorkerCommand>>>,
    replies: Vec<Consumer<Box<WorkerReply>>>,
    counters: Vec<Arc<CounterBlock>>,
    lcores: Vec<u32>,
    ports: Vec<RunPort>,
    /// The expectation table the pipelines share (the same `Arc`).
    expect: Option<Arc<dataplane::helper::ExpectTable>>,
}

fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Backend for DpdkBackend {
    fn workers(&self) -> usize {
        self.commands.len()
    }

    fn now_ns(&self) -> u64 {
        dataplane::worker::io::tsc_now_ns()
    }

    fn expectations(&self) -> Option<&Arc<dataplane::helper::ExpectTable>> {
        self.expect.as_ref()
    }

    fn send(&mut self, w: usize, cmd: Box<WorkerCommand>) -> Result<(), Box<WorkerCommand>> {
        self.commands[w].enqueue(cmd)
    }

    fn try_recv(&mut self, w: usize) -> Option<WorkerReply> {
        self.replies[w].dequeue().map(|b| *b)
    }

    fn port_stats(&mut self) -> Vec<PortStats> {
        self.ports
            .iter()
            .map(|p| {
                let s = p.port.stats().unwrap_or_default();
                let link = p.port.link().ok();
                PortStats {
                    name: p.name.clone(),
                    port_id: p.port.id().0,
                    driver: p.driver.clone(),
                    mac: p.port.mac().map(mac_string).unwrap_or_default(),
                    link_up: link.is_some_and(|l| l.up),
                    speed_mbps: link.map_or(0, |l| l.speed_mbps),
                    rx_queues: p.rx_queues,
                    tx_queues: p.tx_queues,
                    ipackets: s.ipackets,
                    opackets: s.opackets,
                    ibytes: s.ibytes,
                    obytes: s.obytes,
                    imissed: s.imissed,
                    ierrors: s.ierrors,
                    oerrors: s.oerrors,
                    rx_nombuf: s.rx_nombuf,
                }
            })
            .collect()
    }

    fn worker_stats(&self) -> Vec<WorkerStats> {
        self.counters
            .iter()
            .enumerate()
            .map(|(w, block)| {
                block.read().worker_stats(
                    u16::try_from(w).unwrap_or(u16::MAX),
                    self.lcores.get(w).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    fn dpdk_version(&self) -> String {
        Eal::version()
    }
}

/// Mbufs for every descriptor, ring slot and per-lcore cache, plus headroom; 2^k - 1.
fn pool_size(cfg: &Config) -> u32 {
    if let Some(n) = cfg.eal.mbufs {
        return n;
    }
    let w = cfg.workers.cores.len() as u64;
    let mut n: u64 = 4096;
    for (i, p) in cfg.ports.iter().enumerate() {
        n += u64::from(cfg.rx_queues(i)) * u64::from(p.rx_descriptors);
        n += u64::from(cfg.tx_queues()) * u64::from(p.tx_descriptors);
    }
    n += w * w * u64::from(cfg.workers.handoff_ring) + w * 1024 + (w + 1) * 512;
    let pow = n.next_power_of_two();
    u32::try_from(pow - 1).unwrap_or(u32::MAX)
}

/// The tunable validator of this configuration: names and ranges, and `nf_conntrack_max`
/// within the connection tables `conntrack.max` sized (each worker's table holds its share
/// of it, rounded up, as [`server::worker_share`] splits any smaller maximum).
fn tunable_check(cfg: &Config) -> impl Fn(&str, u64) -> Result<(), String> + Send + 'static {
    let capacity = cfg.conntrack.max;
    move |name: &str, value: u64| {
        check_tunable(name, value)?;
        if name == "nf_conntrack_max" && value > capacity {
            return Err(format!(
                "{value} is more than the connection tables hold ({capacity}, conntrack.max \
                 in the configuration)"
            ));
        }
        Ok(())
    }
}

/// Reads the state directory strictly (errors are `FILE:LINE:COL: message`; nothing is
/// skipped): the effective tunables — every one at its Linux default (so `tuning_get` lists
/// them all, like `sysctl net.netfilter`), overlaid with the config's, then the persisted
/// ones — and the first ruleset generation.
fn load_state(
    cfg: &Config,
    state: &StateDir,
) -> Result<(BTreeMap<String, u64>, RulesetState), String> {
    let defaults = Tunables::default();
    let mut tunables: BTreeMap<String, u64> = dataplane::conntrack::tunables::NAMES
        .iter()
        .filter_map(|n| Some(((*n).to_string(), defaults.get(n)?)))
        .collect();
    tunables.extend(cfg.conntrack.sysctls());
    tunables.extend(state.load_tunables(&tunable_check(cfg))?);
    let rules = RulesetState::load(
        state,
        cfg.ruleset.clone(),
        ports_by_name(cfg),
        cfg.workers.cores.len(),
        cfg.limits,
    )?;
    Ok((tunables, rules))
}

/// Runs the appliance until SIGTERM/SIGINT.
fn run(cfg: &Config, stats_interval: u64) -> Result<(), String> {
    if cfg.ports.len() > MAX_PORTS {
        return Err(format!("ports: at most {MAX_PORTS} ports"));
    }
    let plan = cfg.queue_plan().map_err(|e| e.to_string())?;
    let routes = Arc::new(cfg.route_table().map_err(|e| e.to_string())?);
    let nworkers = cfg.workers.cores.len();
    let nports = cfg.ports.len();

    let state = StateDir::new(&cfg.state_dir);
    let (tunables, rules_state) = load_state(cfg, &state)?;
    eprintln!(
        "fwd: ruleset generation 1: {} rules",
        rules_state.current().rule_count()
    );
    // Each worker's handle on the ruleset generations (made here, moved to the worker).
    let mut worker_rules = (0..nworkers)
        .map(|_| rules_state.publisher().worker())
        .collect::<Vec<_>>()
        .into_iter();

    let args = cfg.eal_args();
    eprintln!("fwd: EAL {}", args[1..].join(" "));
    let eal = Eal::init(&args).map_err(|e| format!("EAL init: {e}"))?;
    // Connection tables (created on the workers below, each on its lcore's socket) come
    // from DPDK's hugepages: hundreds of MiB read at random would otherwise miss the TLB
    // on most lookups, and reserved pages need no compaction at start-up. Short of
    // hugepages (or with `hugepages: false`) they fall back to the heap with a
    // transparent-huge-page hint, and the worker says so.
    let huge = HugeMem::new(&eal, SocketId::ANY);
    if let Some(mem) = huge.clone() {
        dataplane::conntrack::use_dpdk_memory(mem);
    }
    // After EAL init (which installs its own handlers for some signals).
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("signal: {e}"))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| format!("signal: {e}"))?;
    diag::check_mempool(&eal).map_err(|e| format!("mempool: {e}"))?;
    let names: Vec<&str> = cfg.ports.iter().map(|p| p.dpdk_name()).collect();
    let ids = diag::check_ports(&eal, &names).map_err(|e| format!("ports: {e}"))?;
    let lcores: Vec<_> = eal.worker_lcores().collect();
    if lcores.len() < nworkers {
        return Err(format!(
            "EAL enabled {} worker lcores, the config has {nworkers} workers",
            lcores.len()
        ));
    }
    let data_room = u16::try_from(ffi::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap_or(2176);
    let pool = Mempool::pktmbuf(
        &eal,
        "fwd_pkt",
        pool_size(cfg),
        256,
        data_room,
        eal.socket_id(),
    )
    .map_err(|e| format!("packet pool: {e}"))?;

    // Ports: configure, take queues, start.
    let mut run_ports = Vec::new();
    let mut port_infos = Vec::new();
    let mut rx_queues = Vec::new(); // per port: Vec<Option<RxQueue>>
    let mut tx_queues = Vec::new(); // per port: Vec<Option<TxQueue>>
    for (i, (pc, id)) in cfg.ports.iter().zip(&ids).enumerate() {
        let mut port = Port::open(&eal, *id).map_err(|e| format!("ports[{i}]: {e}"))?;
        let info = port.info().map_err(|e| format!("ports[{i}]: {e}"))?;
        let nrx = cfg.rx_queues(i);
        let ntx = cfg.tx_queues();
        let dev = DevPortConfig {
            rx_queues: nrx,
            tx_queues: ntx,
            rx_desc: pc.rx_descriptors,
            tx_desc: pc.tx_descriptors,
            mtu: Some(pc.mtu),
            rss: (nrx > 1).then(RssConfig::symmetric),
            // The NIC's checksum verdicts where it has them (the workers read them from
            // `ol_flags`; software verifies the rest).
            rx_offloads: RxOffloads::CHECKSUM.intersection(info.rx_offload_capa),
            ..DevPortConfig::default()
        };
        let applied = port
            .configure(&dev, &pool)
            .map_err(|e| format!("ports[{i}] ({}): configure: {e}", pc.name))?;
        for n in &applied.notes {
            eprintln!("fwd: port {}: {n}", pc.name);
        }
        // The RETA the owner function assumes (`nat::rss::RssOwner::spread`): bucket i to
        // queue i % queues. Programmed explicitly rather than trusting the PMD's default.
        if applied.rss && info.reta_size > 0 {
            let reta: Vec<u16> = (0..nrx).cycle().take(usize::from(info.reta_size)).collect();
            match port.reta_update(&reta) {
                Ok(()) => eprintln!(
                    "fwd: port {}: RETA {} entries round-robin over {nrx} queues",
                    pc.name, info.reta_size
                ),
                Err(e) => eprintln!("fwd: port {}: RETA not programmed: {e}", pc.name),
            }
        }
        if let Some(mac) = pc.mac.as_deref().and_then(parse_mac) {
            port.set_mac(mac)
                .map_err(|e| format!("ports[{i}].mac: {e}"))?;
        }
        if let Err(e) = port.set_promiscuous(pc.promiscuous) {
            eprintln!("fwd: port {}: promiscuous: {e}", pc.name);
        }
        let (rx, tx) = port.take_queues().map_err(|e| format!("ports[{i}]: {e}"))?;
        port.start()
            .map_err(|e| format!("ports[{i}] ({}): start: {e}", pc.name))?;
        eprintln!(
            "fwd: port {} = {} ({}), mac {}, {nrx} rx / {ntx} tx queues{}",
            pc.name,
            id,
            info.driver_name,
            port.mac().map(mac_string).unwrap_or_default(),
            if applied.rss { ", symmetric RSS" } else { "" }
        );
        port_infos.push(PortInfo {
            mac: port.mac().map_err(|e| format!("ports[{i}]: {e}"))?,
            mtu: pc.mtu,
            hw_rss: applied.rss,
        });
        rx_queues.push(rx.into_iter().map(Some).collect::<Vec<_>>());
        tx_queues.push(tx.into_iter().map(Some).collect::<Vec<_>>());
        run_ports.push(RunPort {
            name: pc.name.clone(),
            port,
            driver: info.driver_name.clone(),
            rx_queues: nrx,
            tx_queues: ntx,
        });
    }

    // The slow path (ARP/ND, neighbour cache) and the neighbour snapshots it publishes.
    let mut slow =
        SlowPath::<Mbuf>::new(port_infos.clone(), routes.clone(), NeighConfig::default());
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let addr: std::net::IpAddr = n
            .address
            .parse()
            .map_err(|_| format!("neighbors[{i}].address: not an address"))?;
        let mac = parse_mac(&n.mac).ok_or(format!("neighbors[{i}].mac: not a MAC"))?;
        let port = cfg
            .port_index(&n.port)
            .ok_or(format!("neighbors[{i}].port: no such port"))?;
        slow.add_static(port, Addr::from(addr), mac);
    }
    // HA takeover announcements (control `ha_takeover`, sent from the slow path).
    let announcer = Arc::new(dataplane::ha::announce::Announcer::default());
    slow.set_announcer(announcer.clone());
    // An HA backup keeps its service addresses silent until takeover (docs/ha.md).
    let standby = cfg.standby_addresses();
    if !standby.is_empty() {
        eprintln!(
            "fwd: HA backup: {} service address(es) silent until takeover",
            standby.len()
        );
    }
    slow.set_standby(standby);
    let first = slow.snapshot_if_changed().unwrap_or_default();
    let share = Arc::new(NeighShare::new(Arc::new(first)));
    // The same rounding as the share the control thread sends (`worker_share`), so the
    // configured maximum always fits its tables.
    let ct_share = server::worker_share(cfg.conntrack.max, nworkers);
    let pcfg = PipelineConfig {
        ports: port_infos,
        ct_capacity: u32::try_from(ct_share).unwrap_or(u32::MAX),
        // The effective tunables reach the workers as a SetTunables command at start.
        tunables: Tunables::default(),
        owner: None,
        // A random hash seed at every start (`conntrack::random_seed`).
        ct_seed: None,
        // One expectation table for every worker (docs/helpers.md), allocated for the
        // largest `nf_conntrack_expect_max`.
        expect: Some(Arc::new({
            let t = dataplane::helper::ExpectTable::new(dataplane::helper::expect::MAX_EXPECT);
            t.set_max(dataplane::conntrack::tunables::DEFAULT_EXPECT_MAX);
            t
        })),
    };

    // Rings.
    let socket = eal.socket_id();
    let ring_err = |e: dpdk_bindings::Error| format!("ring: {e}");
    let mut handoff_out: Vec<Vec<Option<Producer<Mbuf>>>> = (0..nworkers)
        .map(|_| (0..nworkers).map(|_| None).collect())
        .collect();
    let mut handoff_in: Vec<Vec<Consumer<Mbuf>>> = (0..nworkers).map(|_| Vec::new()).collect();
    for (from, outs) in handoff_out.iter_mut().enumerate() {
        for (to, out) in outs.iter_mut().enumerate() {
            if from != to {
                let (p, c) = Ring::<Mbuf>::spsc(
                    &eal,
                    &format!("fwd_ho_{from}_{to}"),
                    cfg.workers.handoff_ring,
                    socket,
                )
                .map_err(ring_err)?;
                *out = Some(p);
                handoff_in[to].push(c);
            }
        }
    }
    // Steering messages (DNAT reply tuples owned elsewhere), one ring per worker pair.
    let mut steer_out: Vec<Vec<Option<Producer<Box<SteerMsg>>>>> = (0..nworkers)
        .map(|_| (0..nworkers).map(|_| None).collect())
        .collect();
    let mut steer_in: Vec<Vec<Consumer<Box<SteerMsg>>>> =
        (0..nworkers).map(|_| Vec::new()).collect();
    for (from, outs) in steer_out.iter_mut().enumerate() {
        for (to, out) in outs.iter_mut().enumerate() {
            if from != to {
                let (p, c) = Ring::<Box<SteerMsg>>::spsc(
                    &eal,
                    &format!("fwd_st_{from}_{to}"),
                    STEER_RING,
                    socket,
                )
                .map_err(ring_err)?;
                *out = Some(p);
                steer_in[to].push(c);
            }
        }
    }
    let mut steer = steer_out.into_iter().zip(steer_in);
    let mut slow_in = Vec::new();
    let mut neigh_back = Vec::new();
    let mut commands = Vec::new();
    let mut replies = Vec::new();
    let mut counters = Vec::new();
    let mut ios = Vec::new();
    for (w, (outs, ins)) in handoff_out.into_iter().zip(handoff_in).enumerate() {
        let (sp, sc) =
            Ring::<Mbuf>::spsc(&eal, &format!("fwd_sp_{w}"), 1024, socket).map_err(ring_err)?;
        slow_in.push(sc);
        let (cp, cc) = Ring::<Box<WorkerCommand>>::spsc(&eal, &format!("fwd_cmd_{w}"), 64, socket)
            .map_err(ring_err)?;
        let (rp, rc) = Ring::<Box<WorkerReply>>::spsc(&eal, &format!("fwd_rep_{w}"), 64, socket)
            .map_err(ring_err)?;
        commands.push(cp);
        replies.push(rc);
        let (np, nc) =
            Ring::<Box<Arc<NeighborSnapshot>>>::spsc(&eal, &format!("fwd_nb_{w}"), 16, socket)
                .map_err(ring_err)?;
        neigh_back.push(nc);
        let block = Arc::new(CounterBlock::default());
        counters.push(block.clone());
        let w16 = u16::try_from(w).map_err(|_| "too many workers".to_string())?;
        let rx = plan
            .iter()
            .filter(|a| a.worker == w16)
            .filter_map(|a| {
                let q = rx_queues[usize::from(a.port)][usize::from(a.queue)].take()?;
                Some((a.port, q))
            })
            .collect();
        let tx = tx_queues
            .iter_mut()
            .map(|qs| qs[w].take().map(TxBuffer::<BURST>::new))
            .collect::<Vec<_>>();
        let (steer_out, steer_in) = steer.next().unwrap_or_default();
        ios.push(WorkerIo {
            index: w16,
            rx,
            tx,
            handoff_out: outs,
            handoff_in: ins,
            steer_out,
            steer_in,
            slow: sp,
            commands: cc,
            replies: rp,
            published: block,
            neigh: Some(NeighWorker {
                share: share.clone(),
                seen: 0,
                back: np,
            }),
            tsc_hz: eal.tsc_hz(),
            pool: Some(pool.clone()),
        });
    }
    let slow_tx = tx_queues
        .iter_mut()
        .map(|qs| qs[nworkers].take().map(TxBuffer::<BURST>::new))
        .collect::<Vec<_>>();
    // Unpolled RX queues are dropped now (their handles are not needed).
    drop(rx_queues);
    drop(tx_queues);

    // Workers. Each builds its pipeline (the connection table: hundreds of MiB, first
    // touched here) on its own lcore, then reports ready; the control socket opens only
    // when every worker polls, so whoever waits for it (systemd, scripts, tests) never
    // sends traffic or commands to a half-started daemon.
    let mut handles = Vec::new();
    let nworkers16 = u16::try_from(nworkers).unwrap_or(u16::MAX);
    let ready = Arc::new(AtomicUsize::new(0));
    for (io, lcore) in ios.into_iter().zip(&lcores) {
        let wstop = stop.clone();
        let wready = ready.clone();
        let whuge = huge.is_some();
        let (wcfg, wroutes, wneigh, wrules) = (
            pcfg.clone(),
            routes.clone(),
            share.current(),
            worker_rules.next(),
        );
        let h = eal
            .launch_on(*lcore, move || {
                let mut p = Pipeline::new(io.index, nworkers16, &wcfg, wroutes, wneigh, wrules);
                p.set_prefetch(dpdk_bindings::prefetch0_addr);
                let ct = p.conntrack();
                if whuge && !ct.on_hugepages() {
                    eprintln!(
                        "fwd: worker {}: the connection table ({} MiB) did not fit in DPDK's \
                         free hugepages and is on the heap (transparent huge pages): \
                         reserve more (echo N > /proc/sys/vm/nr_hugepages) or lower \
                         nf_conntrack_max",
                        io.index,
                        ct.memory() >> 20
                    );
                }
                wready.fetch_add(1, Ordering::Release);
                io.run(&mut p, &wstop);
                0
            })
            .map_err(|e| format!("launch worker on {lcore}: {e}"));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    // Bounded: 120 s (a 10 M-entry table per worker takes seconds, not minutes).
    let mut waited = 0u32;
    while ready.load(Ordering::Acquire) < handles.len() {
        if waited >= 12_000 || stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                h.join();
            }
            return Err(format!(
                "workers: {} of {} ready after {} s",
                ready.load(Ordering::Acquire),
                nworkers,
                waited / 100
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }

    // Control thread.
    let listener = server::bind(&cfg.control_socket)
        .map_err(|e| format!("control socket {}: {e}", cfg.control_socket.display()))?;
    let backend = DpdkBackend {
        commands,
        replies,
        counters: counters.clone(),
        lcores: lcores.iter().take(nworkers).map(|l| l.0).collect(),
        ports: run_ports,
        expect: pcfg.expect.clone(),
    };
    let hk_core = cfg
        .housekeeping_cores
        .first()
        .copied()
        .unwrap_or(cfg.eal.main_core as usize);
    let ctl_stop = stop.clone();
    let ctl_hup = hup.clone();
    let check = tunable_check(cfg);
    let max_entries = cfg.conntrack.max;
    let control = std::thread::Builder::new()
        .name("fwd-control".into())
        .spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: hk_core }) {
                eprintln!("fwd: could not pin the control thread to core {hk_core}");
            }
            let mut srv = Server::new(
                backend,
                ServerConfig {
                    max_entries,
                    announcer: Some(announcer),
                    ..ServerConfig::default()
                },
                state,
                Box::new(check),
                tunables,
            )
            .with_rules(rules_state);
            if let Err(e) = srv.apply_tunables() {
                // Checked at start like the server checks a change: cannot happen short of
                // a stuck worker, which is no state to forward in.
                eprintln!("fwd: applying tunables: {e}; stopping");
                ctl_stop.store(true, Ordering::Relaxed);
            }
            srv.serve(&listener, &ctl_stop, &mut |srv| {
                if ctl_hup.swap(false, Ordering::Relaxed) {
                    eprintln!("fwd: {}", srv.reload_ruleset_file());
                }
            });
            srv.into_backend()
        })
        .map_err(|e| format!("control thread: {e}"))?;

    eprintln!(
        "fwd: running: {nworkers} workers, {nports} ports, control socket {}",
        cfg.control_socket.display()
    );

    // Slow path on the main lcore until a stop signal.
    let mut slow_io = SlowPathIo {
        from_workers: slow_in,
        tx: slow_tx,
        pool: pool.clone(),
        tsc_hz: eal.tsc_hz(),
        handled: 0,
        sent: 0,
        dropped: 0,
    };
    let mut meter = Meter::new(stats_interval, eal.tsc_hz());
    slow_io.run_pipeline(&mut slow, &share, &mut neigh_back, &stop, &mut || {
        meter.maybe_print(&counters);
    });

    eprintln!("fwd: stopping");
    for h in handles {
        h.join();
    }
    drop(slow_io);
    drop(slow);
    drop(neigh_back);
    let backend = control
        .join()
        .map_err(|_| "control thread panicked".to_string())?;
    let DpdkBackend {
        commands,
        replies,
        ports,
        ..
    } = backend;
    drop((commands, replies));
    for p in ports {
        if let Err(e) = p.port.close() {
            eprintln!("fwd: port {}: close: {e}", p.name);
        }
    }
    drop(pool);
    let _ = std::fs::remove_file(&cfg.control_socket);
    eal.cleanup().map_err(|e| format!("EAL cleanup: {e}"))?;
    eprintln!("fwd: stopped");
    Ok(())
}

/// Prints a throughput line every `interval` seconds (TSC based).
struct Meter {
    every: u64,
    last_tsc: u64,
    last_rx: u64,
    last_tx: u64,
    hz: u64,
}

impl Meter {
    fn new(interval: u64, hz: u64) -> Self {
        Meter {
            every: interval.saturating_mul(hz),
            last_tsc: dpdk_bindings::rdtsc(),
            last_rx: 0,
            last_tx: 0,
            hz,
        }
    }

    fn maybe_print(&mut self, blocks: &[Arc<CounterBlock>]) {
        if self.every == 0 {
            return;
        }
        let now = dpdk_bindings::rdtsc();
        let dt = now.wrapping_sub(self.last_tsc);
        if dt < self.every {
            return;
        }
        let (mut rx, mut tx, mut drops, mut busy, mut total) = (0, 0, 0, 0, 0);
        for b in blocks {
            let c = b.read();
            rx += c.rx_total();
            tx += c.tx_total();
            drops += c.drops.iter().sum::<u64>() + c.handoff_drop + c.edge_drop;
            busy += c.busy_cycles;
            total += c.total_cycles;
        }
        let secs = dt as f64 / self.hz.max(1) as f64;
        println!(
            "rx {:.0} pps  tx {:.0} pps  total rx {rx} tx {tx} dropped {drops}  busy {:.1}%",
            (rx - self.last_rx) as f64 / secs,
            (tx - self.last_tx) as f64 / secs,
            100.0 * busy as f64 / total.max(1) as f64
        );
        self.last_tsc = now;
        self.last_rx = rx;
        self.last_tx = tx;
    }
}
