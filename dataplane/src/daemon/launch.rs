//! Launch and readiness: the workers on their lcores (each builds its pipeline there and
//! reports ready), the wait for all of them, and the control thread on a housekeeping
//! core.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use dpdk_bindings::{Eal, LaunchHandle, LcoreId};

use super::DaemonError;
use super::backend::DpdkBackend;
use super::state::tunable_check;
use crate::config::Config;
use crate::control::server::{self, RulesetState, Server, ServerConfig, StateDir};
use crate::ha::announce::Announcer;
use crate::route::RouteTable;
use crate::rules::WorkerRuleset;
use crate::worker::io::{NeighShare, WorkerIo};
use crate::worker::{Pipeline, PipelineConfig};

/// Readiness is waited for in steps of 10 ms, at most this many: 120 s (a 10 M-entry
/// table per worker takes seconds, not minutes).
const READY_STEPS: u32 = 12_000;

/// What every worker starts from.
pub(super) struct WorkerStart<'a> {
    pub(super) pcfg: &'a PipelineConfig,
    pub(super) routes: &'a Arc<RouteTable>,
    /// The neighbour snapshots the slow path publishes (each worker starts from the current one).
    pub(super) share: &'a NeighShare,
    /// Each worker's handle on the ruleset generations, in worker order.
    pub(super) rules: Vec<WorkerRuleset>,
    /// Whether the connection tables should be on DPDK's hugepages (say so when not).
    pub(super) huge: bool,
}

/// Workers. Each builds its pipeline (the connection table: hundreds of MiB, first
/// touched here) on its own lcore, then reports ready; the control socket opens only
/// when every worker polls, so whoever waits for it (systemd, scripts, tests) never
/// sends traffic or commands to a half-started daemon.
pub(super) fn workers(
    eal: &Eal,
    ios: Vec<WorkerIo>,
    lcores: &[LcoreId],
    start: WorkerStart<'_>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<LaunchHandle>, DaemonError> {
    let nworkers = ios.len();
    let mut handles = Vec::new();
    let nworkers16 = u16::try_from(nworkers).unwrap_or(u16::MAX);
    let ready = Arc::new(AtomicUsize::new(0));
    let mut worker_rules = start.rules.into_iter();
    for (io, lcore) in ios.into_iter().zip(lcores) {
        let wstop = stop.clone();
        let wready = ready.clone();
        let whuge = start.huge;
        let (wcfg, wroutes, wneigh, wrules) = (
            start.pcfg.clone(),
            start.routes.clone(),
            start.share.current(),
            worker_rules.next(),
        );
        let h = eal
            .launch_on(*lcore, move || {
                let mut p = Pipeline::new(io.index, nworkers16, &wcfg, wroutes, wneigh, wrules);
                p.use_cpu_prefetch();
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
            .map_err(|source| DaemonError::Launch {
                lcore: *lcore,
                source,
            });
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    let mut waited = 0u32;
    while ready.load(Ordering::Acquire) < handles.len() {
        if waited >= READY_STEPS || stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                h.join();
            }
            return Err(DaemonError::NotReady {
                ready: ready.load(Ordering::Acquire),
                workers: nworkers,
                secs: waited / 100,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    Ok(handles)
}

/// What the control thread's server starts from.
pub(super) struct ControlStart {
    pub(super) state: StateDir,
    pub(super) tunables: BTreeMap<String, u64>,
    pub(super) rules: RulesetState,
    pub(super) announcer: Arc<Announcer>,
}

/// Control thread: binds the control socket, then serves it on the first housekeeping
/// core until `stop`; SIGHUP (`hup`) reloads the ruleset file. Returns the backend when
/// it ends, for the teardown.
pub(super) fn control(
    cfg: &Config,
    backend: DpdkBackend,
    start: ControlStart,
    stop: &Arc<AtomicBool>,
    hup: &Arc<AtomicBool>,
) -> Result<JoinHandle<DpdkBackend>, DaemonError> {
    let listener =
        server::bind(&cfg.control_socket).map_err(|source| DaemonError::ControlSocket {
            path: cfg.control_socket.clone(),
            source,
        })?;
    let hk_core = cfg
        .housekeeping_cores
        .first()
        .copied()
        .unwrap_or(cfg.eal.main_core as usize);
    let ctl_stop = stop.clone();
    let ctl_hup = hup.clone();
    let check = tunable_check(cfg);
    let max_entries = cfg.conntrack.max;
    let ControlStart {
        state,
        tunables,
        rules: rules_state,
        announcer,
    } = start;
    std::thread::Builder::new()
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
        .map_err(DaemonError::ControlThread)
}
