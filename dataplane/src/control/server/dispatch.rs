//! The server's state and request dispatch: what it needs from the daemon ([`Backend`]),
//! its settings and limits, and the answer to each request (the per-worker ones are in
//! `conntrack.rs` and `fanout.rs`, the ruleset ones in `replace.rs`).

#![allow(
    clippy::disallowed_types,
    reason = "control thread, not the data path: uptime and worker timeouts use Instant/SystemTime"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::RulesetState;
use crate::control::proto::{
    ControlError, ErrorCode, MAX_LINE, PROTOCOL_VERSION, PortStats, Request, Response, Stats,
    Status, TunableRange, WorkerStats,
};
use crate::control::state::StateDir;
use crate::worker::{WorkerCommand, WorkerReply};

/// What the server needs from the running daemon.
pub trait Backend {
    /// Number of workers.
    fn workers(&self) -> usize;
    /// Queue a command on worker `w`'s ring; `Err` when the ring is full.
    fn send(&mut self, w: usize, cmd: Box<WorkerCommand>) -> Result<(), Box<WorkerCommand>>;
    /// Take worker `w`'s next reply, if one is there.
    fn try_recv(&mut self, w: usize) -> Option<WorkerReply>;
    /// Port list with counters.
    fn port_stats(&mut self) -> Vec<PortStats>;
    /// Worker counters (the published blocks; `ct` left default).
    fn worker_stats(&self) -> Vec<WorkerStats>;
    /// DPDK version string.
    fn dpdk_version(&self) -> String;
    /// The workers' clock in nanoseconds (the TSC's; the time base of dynamic sets'
    /// expiry), for listing a dynamic set's live elements.
    fn now_ns(&self) -> u64;
    /// The expectation table the workers share (`None`: this daemon has none; the
    /// listing is then empty).
    fn expectations(&self) -> Option<&std::sync::Arc<crate::helper::ExpectTable>> {
        None
    }
}

/// Validates one tunable (sysctl name, value).
pub type TunableValidator = Box<dyn Fn(&str, u64) -> Result<(), String> + Send>;

/// Largest ruleset listing (`ruleset_get`) a replacement may lead to, with room in the
/// control line for the envelope: a ruleset whose listing could not be sent is refused.
pub const MAX_VIEW: usize = MAX_LINE - 4096;

/// Table slots one filtered-count command scans on a worker (a slice between bursts; the
/// control thread sums the slices of every worker, in parallel across workers).
pub const COUNT_SLICE: u32 = 16_384;

/// Most control connections served at once; more are closed when accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// Most event subscriptions at once; one more is answered `busy`.
pub const MAX_SUBSCRIBERS: usize = 16;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a worker may take to answer one command.
    pub worker_timeout: Duration,
    /// `fwd` version reported by `status`.
    pub version: String,
    /// The largest `nf_conntrack_max` the tables hold (`conntrack.max` of the config).
    pub max_entries: u64,
    /// The slow path's takeover announcements (`ha_takeover`); `None` where no slow
    /// path runs (the takeover is then refused).
    pub announcer: Option<std::sync::Arc<crate::ha::announce::Announcer>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            worker_timeout: Duration::from_secs(2),
            version: env!("CARGO_PKG_VERSION").to_string(),
            max_entries: crate::conntrack::tunables::MAX_ENTRIES,
            announcer: None,
        }
    }
}

/// The control server state.
pub struct Server<B: Backend> {
    pub(super) backend: B,
    pub(super) cfg: ServerConfig,
    pub(super) state: StateDir,
    pub(super) check: TunableValidator,
    pub(super) tunables: BTreeMap<String, u64>,
    pub(super) started: Instant,
    /// Replies still owed by each worker for commands we stopped waiting for.
    pub(super) owed: Vec<u32>,
    pub(super) rules: Option<RulesetState>,
    /// State sync: the external cache and its counters (`ha.rs`).
    pub(super) ha: super::ha_state::HaState,
}

impl<B: Backend> std::fmt::Debug for Server<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .field("tunables", &self.tunables)
            .finish_non_exhaustive()
    }
}

pub(super) fn no_rules() -> ControlError {
    internal("unsupported: this server has no ruleset (rules not configured)")
}

pub(super) fn internal(msg: impl Into<String>) -> ControlError {
    ControlError::new(ErrorCode::Internal, msg)
}

impl<B: Backend> Server<B> {
    /// A server over `backend`. `tunables` are the effective values at start (the config's
    /// overlaid with the persisted ones); they are what `tuning_get` answers.
    pub fn new(
        backend: B,
        cfg: ServerConfig,
        state: StateDir,
        check: TunableValidator,
        tunables: BTreeMap<String, u64>,
    ) -> Self {
        let owed = vec![0; backend.workers()];
        Server {
            backend,
            cfg,
            state,
            check,
            tunables,
            started: Instant::now(),
            owed,
            rules: None,
            ha: super::ha_state::HaState::default(),
        }
    }

    /// Serves the ruleset requests from `rules` (without it they answer that rules are
    /// not configured).
    pub fn with_rules(mut self, rules: RulesetState) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Gives the backend back (at shutdown: it holds the ports).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Answers one request (not `subscribe`, which needs the connection).
    pub fn request(&mut self, req: Request) -> Result<Response, ControlError> {
        match req {
            Request::Status => Ok(Response::Status(Status {
                version: self.cfg.version.clone(),
                protocol: PROTOCOL_VERSION,
                uptime_s: self.started.elapsed().as_secs(),
                ruleset_generation: self.generation(),
                workers: u32::try_from(self.backend.workers()).unwrap_or(u32::MAX),
                ports: u32::try_from(self.backend.port_stats().len()).unwrap_or(u32::MAX),
                dpdk: self.backend.dpdk_version(),
            })),
            Request::Stats => {
                let ports = self.backend.port_stats();
                let workers = self.workers_with_ct()?;
                Ok(Response::Stats(Stats {
                    ports,
                    workers,
                    ruleset_generation: self.generation(),
                }))
            }
            Request::Ports => Ok(Response::Ports {
                ports: self.backend.port_stats(),
            }),
            Request::Workers => Ok(Response::Workers {
                workers: self.workers_with_ct()?,
            }),
            Request::RulesetGet => match &self.rules {
                Some(r) => Ok(Response::Ruleset(crate::control::view::ruleset_view(
                    &r.current(),
                ))),
                None => Err(no_rules()),
            },
            Request::RuleCounters => match &self.rules {
                Some(r) => {
                    let c = r.current();
                    Ok(Response::RuleCounters {
                        generation: c.generation(),
                        counters: crate::control::view::rule_counters(&c),
                    })
                }
                None => Err(no_rules()),
            },
            Request::RulesetReplace { ruleset, dry_run } => self.replace_ruleset(&ruleset, dry_run),
            Request::RulesetCommands { commands, dry_run } => {
                self.ruleset_commands(&commands, dry_run)
            }
            Request::SetElementsGet { family, table, set } => {
                self.set_elements(family, &table, &set)
            }
            Request::SetElementsChange {
                family,
                table,
                set,
                change,
                elements,
                dry_run,
            } => self.set_elements_change(family, &table, &set, change, &elements, dry_run),
            Request::ConntrackList {
                filter,
                cursor,
                limit,
            } => self.ct_list(filter, cursor, limit),
            Request::ConntrackCount { filter } => self.ct_count(filter),
            Request::ConntrackDelete { filter, all } => self.ct_delete(filter, all),
            Request::ConntrackStats => self.ct_stats_response(),
            Request::ConntrackExpect { counters_only } => self.ct_expect(counters_only),
            Request::TuningGet => Ok(Response::Tuning {
                values: self.tunables.clone(),
            }),
            Request::TuningSet { values } => self.tuning_set(values),
            Request::TuningRanges => Ok(Response::TuningRanges {
                ranges: crate::conntrack::tunables::ranges()
                    .map(|(name, min, mut max)| {
                        if name == "nf_conntrack_max" {
                            max = max.min(self.cfg.max_entries);
                        }
                        (name.to_string(), TunableRange { min, max })
                    })
                    .collect(),
            }),
            Request::HaApply { changes, target } => self.ha_apply(&changes, target),
            Request::HaApplyRecords { records, target } => self.ha_apply_records(&records, target),
            Request::HaCommit => self.ha_commit(),
            Request::HaStatus => Ok(Response::HaStatus(self.ha_counters())),
            Request::HaTakeover { addresses } => self.ha_takeover(&addresses),
            Request::Subscribe { .. } | Request::SubscribeRecords => Err(ControlError::new(
                ErrorCode::BadRequest,
                "subscribe needs a connection",
            )),
        }
    }
}
