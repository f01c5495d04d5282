//! The `fwd` daemon's wiring (needs the `dpdk` feature): what `fwd --config` runs after
//! parsing its arguments (docs/fwd.md).
//!
//! [`run`] starts the appliance and runs it until SIGTERM/SIGINT: the state directory
//! read, EAL initialised, diagnostics (ports exist, mempools work, which driver package
//! is missing), ports configured and started ([`ports`]: workers + 1 TX queues, symmetric
//! RSS where there are several RX queues), rings ([`rings`]: handoff and steering per
//! worker pair, slow path, commands), workers launched on their lcores and waited for,
//! the control thread pinned to a housekeeping core ([`launch`]), the slow path on the
//! main lcore; then everything stopped in reverse order and EAL cleaned up
//! ([`teardown`]). SIGHUP reloads the ruleset file. Errors are [`DaemonError`]s.

mod backend;
mod error;
mod launch;
mod meter;
mod ports;
mod rings;
mod state;
mod teardown;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use dpdk_bindings::{Eal, HugeMem, Mbuf, Mempool, SocketId, diag, ffi};

pub use error::DaemonError;
pub use state::{load_state, ports_by_name, tunable_check};

use crate::config::{Config, parse_mac};
use crate::conntrack::Tunables;
use crate::control::server::{self, StateDir};
use crate::route::NeighConfig;
use crate::wire::Addr;
use crate::worker::counters::MAX_PORTS;
use crate::worker::io::{NeighShare, SlowPathIo};
use crate::worker::{PipelineConfig, SlowPath};

/// Runs the appliance until SIGTERM/SIGINT (a throughput line every `stats_interval`
/// seconds, 0: never).
pub fn run(cfg: &Config, stats_interval: u64) -> Result<(), DaemonError> {
    if cfg.ports.len() > MAX_PORTS {
        return Err(DaemonError::TooManyPorts);
    }
    let plan = cfg.queue_plan()?;
    let routes = Arc::new(cfg.route_table()?);
    let nworkers = cfg.workers.cores.len();
    let nports = cfg.ports.len();

    let state = StateDir::new(&cfg.state_dir);
    let (tunables, rules_state) = load_state(cfg, &state).map_err(DaemonError::State)?;
    eprintln!(
        "fwd: ruleset generation 1: {} rules",
        rules_state.current().rule_count()
    );
    // Each worker's handle on the ruleset generations (made here, moved to the worker).
    let worker_rules = (0..nworkers)
        .map(|_| rules_state.publisher().worker())
        .collect::<Vec<_>>();

    let args = cfg.eal_args();
    eprintln!("fwd: EAL {}", args[1..].join(" "));
    let eal = Eal::init(&args).map_err(DaemonError::EalInit)?;
    // Declared elements with a timeout start it now, on the workers' clock (the TSC's rate
    // is known after EAL init), before any worker runs.
    rules_state
        .current()
        .start_declared(crate::worker::io::tsc_now_ns());
    // Connection tables (created on the workers below, each on its lcore's socket) come
    // from DPDK's hugepages: hundreds of MiB read at random would otherwise miss the TLB
    // on most lookups, and reserved pages need no compaction at start-up. Short of
    // hugepages (or with `hugepages: false`) they fall back to the heap with a
    // transparent-huge-page hint, and the worker says so.
    let huge = HugeMem::new(&eal, SocketId::ANY);
    if let Some(mem) = huge.clone() {
        crate::conntrack::use_dpdk_memory(mem);
    }
    // After EAL init (which installs its own handlers for some signals).
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(DaemonError::Signal)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(DaemonError::Signal)?;
    diag::check_mempool(&eal).map_err(DaemonError::Mempool)?;
    let names: Vec<&str> = cfg.ports.iter().map(|p| p.dpdk_name()).collect();
    let ids = diag::check_ports(&eal, &names).map_err(DaemonError::Ports)?;
    let lcores: Vec<_> = eal.worker_lcores().collect();
    if lcores.len() < nworkers {
        return Err(DaemonError::Lcores {
            lcores: lcores.len(),
            workers: nworkers,
        });
    }
    let data_room = u16::try_from(ffi::RTE_MBUF_DEFAULT_BUF_SIZE).unwrap_or(2176);
    let pool = Mempool::pktmbuf(
        &eal,
        "fwd_pkt",
        ports::pool_size(cfg),
        256,
        data_room,
        eal.socket_id(),
    )
    .map_err(DaemonError::PacketPool)?;

    let ports::Started {
        run_ports,
        port_infos,
        rx_queues,
        tx_queues,
    } = ports::start(cfg, &eal, &ids, &pool)?;

    // The slow path (ARP/ND, neighbour cache) and the neighbour snapshots it publishes.
    let mut slow =
        SlowPath::<Mbuf>::new(port_infos.clone(), routes.clone(), NeighConfig::default());
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let neighbor = |field, message| DaemonError::Neighbor {
            index: i,
            field,
            message,
        };
        let addr: std::net::IpAddr = n
            .address
            .parse()
            .map_err(|_| neighbor("address", "not an address"))?;
        let mac = parse_mac(&n.mac).ok_or(neighbor("mac", "not a MAC"))?;
        let port = cfg
            .port_index(&n.port)
            .ok_or(neighbor("port", "no such port"))?;
        slow.add_static(port, Addr::from(addr), mac);
    }
    // HA takeover announcements (control `ha_takeover`, sent from the slow path).
    let announcer = Arc::new(crate::ha::announce::Announcer::default());
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
            let t = crate::helper::ExpectTable::new(crate::helper::expect::MAX_EXPECT);
            t.set_max(crate::conntrack::tunables::DEFAULT_EXPECT_MAX);
            t
        })),
        // HA active/active: this box's slice of every SNAT / masquerade port range.
        nat_node: cfg.nat_node_slice(),
    };

    let rings::Rings {
        ios,
        slow_in,
        slow_tx,
        mut neigh_back,
        commands,
        replies,
        counters,
    } = rings::build(
        &eal, cfg, nworkers, &plan, rx_queues, tx_queues, &share, &pool,
    )?;

    let handles = launch::workers(
        &eal,
        ios,
        &lcores,
        launch::WorkerStart {
            pcfg: &pcfg,
            routes: &routes,
            share: &share,
            rules: worker_rules,
            huge: huge.is_some(),
        },
        &stop,
    )?;

    let backend = backend::DpdkBackend {
        commands,
        replies,
        counters: counters.clone(),
        lcores: lcores.iter().take(nworkers).map(|l| l.0).collect(),
        ports: run_ports,
        expect: pcfg.expect.clone(),
    };
    let control = launch::control(
        cfg,
        backend,
        launch::ControlStart {
            state,
            tunables,
            rules: rules_state,
            announcer,
        },
        &stop,
        &hup,
    )?;

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
    let mut meter = meter::Meter::new(stats_interval, eal.tsc_hz());
    slow_io.run_pipeline(&mut slow, &share, &mut neigh_back, &stop, &mut || {
        meter.maybe_print(&counters);
    });

    teardown::stop(
        teardown::Running {
            workers: handles,
            slow_io,
            slow,
            neigh_back,
            control,
            pool,
            eal,
        },
        &cfg.control_socket,
    )
}
