//! The control-socket server of `fwd`: JSON Lines over a Unix socket (mode 0600), served
//! by one non-worker thread (see `docs/control-protocol.md` and `docs/fwd.md`).
//!
//! The server is generic over a [`Backend`] (what it needs from the running daemon: port
//! and worker counters, and one command/reply channel per worker), so it is tested without
//! EAL. Per-worker requests are fanned out to every worker's command ring and the answers
//! merged; a listing cursor encodes `worker:cursor`. Tunables are validated as a whole,
//! persisted atomically in the state directory, then applied to every worker.
//!
//! One thread, non-blocking sockets, polled every 2 ms when idle: the volume is small and
//! this keeps `fwd` free of an async runtime. Subscriptions stay open and receive
//! [`EventLine`]s drained from the workers every poll.

#![allow(
    clippy::disallowed_types,
    reason = "control thread, not the data path: uptime and worker timeouts use Instant/SystemTime"
)]

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::control::proto::{
    ConntrackStats, ControlError, CtCounters, CtEntry, CtFilter, ErrorCode, EventLine, EventType,
    MAX_LINE, MAX_PAGE, PROTOCOL_VERSION, PortStats, Request, RequestEnvelope, Response,
    ResponseEnvelope, Stats, Status, WorkerStats,
};
use crate::control::proto::{RulesetSource, RulesetSummary, TunableRange};
use crate::route::Prefix;
use crate::rules::limits::Limits;
use crate::rules::{self, CompiledRuleset, PortsByName, Publisher};
use crate::wire::Addr;
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
}

/// Validates one tunable (sysctl name, value).
pub type TunableValidator = Box<dyn Fn(&str, u64) -> Result<(), String> + Send>;

pub use super::state::{RULESET_FILE, StateDir, TUNABLES_FILE};

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            worker_timeout: Duration::from_secs(2),
            version: env!("CARGO_PKG_VERSION").to_string(),
            max_entries: crate::conntrack::tunables::MAX_ENTRIES,
        }
    }
}

/// A subscription: which events, which connections.
#[derive(Debug, Clone, Default)]
struct Subscription {
    filter: CompiledFilter,
    events: Vec<EventType>,
    lost: u64,
}

/// A [`CtFilter`] with its addresses parsed. Fields the server cannot evaluate on an
/// entry (state, mark, status) are matched on the entry's own fields.
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter {
    raw: CtFilter,
    src: Option<Prefix>,
    dst: Option<Prefix>,
}

fn parse_prefix(field: &str, s: &str) -> Result<Prefix, ControlError> {
    let text = if s.contains('/') {
        s.to_string()
    } else if s.contains(':') {
        format!("{s}/128")
    } else {
        format!("{s}/32")
    };
    text.parse::<Prefix>()
        .map_err(|e| ControlError::new(ErrorCode::BadFilter, format!("{s:?}: {e}")).field(field))
}

impl CompiledFilter {
    /// Parses the address fields of `f`.
    pub fn new(f: &CtFilter) -> Result<Self, ControlError> {
        Ok(CompiledFilter {
            raw: f.clone(),
            src: f
                .src
                .as_deref()
                .map(|s| parse_prefix("src", s))
                .transpose()?,
            dst: f
                .dst
                .as_deref()
                .map(|s| parse_prefix("dst", s))
                .transpose()?,
        })
    }

    /// Whether `e` matches every given field (used for event streams).
    pub fn matches(&self, e: &CtEntry) -> bool {
        let f = &self.raw;
        let ip_in = |p: &Option<Prefix>, a: std::net::IpAddr| {
            p.as_ref().is_none_or(|p| p.contains(Addr::from(a)))
        };
        ip_in(&self.src, e.orig.src)
            && ip_in(&self.dst, e.orig.dst)
            && f.sport.is_none_or(|p| e.orig.sport == Some(p))
            && f.dport.is_none_or(|p| e.orig.dport == Some(p))
            && f.proto
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case(&e.proto) || p == e.proto_num.to_string())
            && f.family.as_deref().is_none_or(|x| x == e.family)
            && f.zone.is_none_or(|z| z == e.zone)
            && f.state
                .as_deref()
                .is_none_or(|s| e.state.as_deref() == Some(s))
            && f.status
                .as_deref()
                .is_none_or(|s| e.status.iter().any(|x| x == s))
    }
}

/// The ruleset side of the server: the generation publisher, what compiling needs, and
/// the file SIGHUP reloads.
#[derive(Debug)]
pub struct RulesetState {
    publisher: Publisher,
    ports: PortsByName,
    workers: usize,
    file: Option<PathBuf>,
    limits: Limits,
}

/// A ruleset error as the protocol carries it (line and column for text; the JSON path as
/// `field` for JSON).
pub fn ruleset_error(e: &rules::Error) -> ControlError {
    super::view::control_error(e)
}

/// Tables, chains and rules of a ruleset (what a replacement reports before and after).
pub fn summary(rs: &rules::Ruleset) -> RulesetSummary {
    let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
    let chains = rs.tables.iter().flat_map(|t| &t.chains);
    RulesetSummary {
        tables: n(rs.tables.len()),
        chains: n(chains.clone().count()),
        rules: n(chains.map(|c| c.rules.len()).sum()),
    }
}

impl RulesetState {
    /// The first generation: the persisted ruleset if the state directory has one, else
    /// `file` (the config's `ruleset`), else the empty ruleset (accept everything).
    /// Errors are `FILE:LINE:COL: message`; a persisted ruleset that cannot be read or
    /// compiled stops the start (it is never skipped in favour of the config's file).
    pub fn load(
        state: &StateDir,
        file: Option<PathBuf>,
        ports: PortsByName,
        workers: usize,
        limits: Limits,
    ) -> Result<Self, String> {
        let (path, text) = match state.read_text(RULESET_FILE)? {
            Some(t) => (Some(state.path(RULESET_FILE)), t),
            None => match &file {
                Some(f) => (
                    Some(f.clone()),
                    std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
                ),
                None => (None, String::new()),
            },
        };
        let compiled = rules::load_text_with(&text, &ports, workers, &limits).map_err(|e| {
            let name = path
                .as_ref()
                .map_or("ruleset".into(), |p| p.display().to_string());
            format!("{name}:{}:{}: {} (at `{}`)", e.line, e.col, e.msg, e.token)
        })?;
        Ok(RulesetState {
            publisher: Publisher::new(compiled),
            ports,
            workers,
            file,
            limits,
        })
    }

    /// The publisher (to create the workers' handles at start).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The running generation.
    pub fn current(&self) -> std::sync::Arc<CompiledRuleset> {
        self.publisher.current()
    }
}

/// The control server state.
pub struct Server<B: Backend> {
    backend: B,
    cfg: ServerConfig,
    state: StateDir,
    check: TunableValidator,
    tunables: BTreeMap<String, u64>,
    started: Instant,
    /// Replies still owed by each worker for commands we stopped waiting for.
    owed: Vec<u32>,
    rules: Option<RulesetState>,
}

impl<B: Backend> std::fmt::Debug for Server<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("state", &self.state)
            .field("tunables", &self.tunables)
            .finish_non_exhaustive()
    }
}

fn no_rules() -> ControlError {
    internal("unsupported: this server has no ruleset (rules not configured)")
}

fn internal(msg: impl Into<String>) -> ControlError {
    ControlError::new(ErrorCode::Internal, msg)
}

/// Each worker's share of `nf_conntrack_max` across `n` workers (rounded up). `fwd` sizes
/// each worker's table with the share of the configured maximum, so every maximum up to
/// the configured one fits.
pub fn worker_share(max: u64, n: usize) -> u64 {
    let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
    max.div_ceil(n)
}

fn encode_cursor(worker: usize, cursor: u64) -> String {
    format!("{worker}:{cursor}")
}

fn decode_cursor(s: &str, workers: usize) -> Result<(usize, u64), ControlError> {
    let bad =
        || ControlError::new(ErrorCode::BadCursor, format!("bad cursor {s:?}")).field("cursor");
    let (w, c) = s.split_once(':').ok_or_else(bad)?;
    let w: usize = w.parse().map_err(|_| bad())?;
    let c: u64 = c.parse().map_err(|_| bad())?;
    if w >= workers {
        return Err(bad());
    }
    Ok((w, c))
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
        }
    }

    /// Serves the ruleset requests from `rules` (without it they answer that rules are
    /// not configured).
    pub fn with_rules(mut self, rules: RulesetState) -> Self {
        self.rules = Some(rules);
        self
    }

    fn generation(&self) -> u64 {
        self.rules.as_ref().map_or(0, |r| r.current().generation())
    }

    /// Replaces (or with `dry_run` only checks) the running ruleset. The source is held
    /// to the limits before it is parsed (text) or compiled (both); an empty source is
    /// refused (replacing everything with nothing takes an explicit `flush ruleset`, as
    /// with nft); a replacement is persisted, as text that reads back to the same ruleset,
    /// before it is published, and a persistence failure publishes nothing.
    pub fn replace_ruleset(
        &mut self,
        src: &RulesetSource,
        dry_run: bool,
    ) -> Result<Response, ControlError> {
        let Some(r) = self.rules.as_mut() else {
            return Err(no_rules());
        };
        let bad = |e: rules::Error| ruleset_error(&e);
        let (ast, text) = match src {
            RulesetSource::Text(t) => {
                r.limits.check_text(t).map_err(bad)?;
                (rules::parse::parse(t).map_err(bad)?, t.clone())
            }
            RulesetSource::Json(v) => {
                let ast = rules::json::from_json(v).map_err(bad)?;
                let text = rules::to_text_verified(&ast).map_err(bad)?;
                r.limits.check_text(&text).map_err(bad)?;
                (ast, text)
            }
        };
        if ast.tables.is_empty() && !ast.flush {
            return Err(ControlError::new(
                ErrorCode::BadRuleset,
                "the ruleset is empty: nothing was changed (to remove every rule, send \
                 `flush ruleset`)",
            ));
        }
        let compiled = rules::compile_with(&ast, &r.ports, r.workers, &r.limits).map_err(bad)?;
        let view = super::view::max_view_bytes(&compiled);
        if view > MAX_VIEW {
            return Err(ControlError::new(
                ErrorCode::BadRuleset,
                format!(
                    "the ruleset's listing (text, JSON and counters) would take {view} bytes, \
                     more than the {MAX_VIEW} a control answer may carry"
                ),
            ));
        }
        let count = u32::try_from(compiled.rule_count()).unwrap_or(u32::MAX);
        let before = summary(r.current().source());
        let after = summary(&ast);
        if dry_run {
            return Ok(Response::RulesetApplied {
                generation: r.current().generation(),
                dry_run: true,
                rules: count,
                before,
                after,
            });
        }
        self.state
            .write_atomic(RULESET_FILE, text.as_bytes())
            .map_err(|e| {
                ControlError::new(
                    ErrorCode::Persist,
                    format!("{}: {e}", self.state.path(RULESET_FILE).display()),
                )
            })?;
        let generation = r.publisher.publish(compiled);
        Ok(Response::RulesetApplied {
            generation,
            dry_run: false,
            rules: count,
            before,
            after,
        })
    }

    /// SIGHUP: reloads the config's ruleset file (replacing the persisted one). Returns a
    /// line for the log.
    pub fn reload_ruleset_file(&mut self) -> String {
        let Some(file) = self.rules.as_ref().and_then(|r| r.file.clone()) else {
            return "SIGHUP: no ruleset file in the configuration".into();
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => return format!("SIGHUP: {}: {e}", file.display()),
        };
        match self.replace_ruleset(&RulesetSource::Text(text), false) {
            Ok(Response::RulesetApplied {
                generation, rules, ..
            }) => format!(
                "SIGHUP: {} loaded: generation {generation}, {rules} rules",
                file.display()
            ),
            Ok(other) => format!("SIGHUP: unexpected {other:?}"),
            Err(e) => match (e.line, e.column) {
                (Some(l), Some(c)) => {
                    format!(
                        "SIGHUP: {}:{l}:{c}: {} (ruleset kept)",
                        file.display(),
                        e.message
                    )
                }
                _ => format!("SIGHUP: {}: {} (ruleset kept)", file.display(), e.message),
            },
        }
    }

    /// Periodic control-thread work: frees ruleset generations the workers handed back.
    pub fn housekeeping(&mut self) {
        if let Some(r) = self.rules.as_mut() {
            r.publisher.reclaim();
        }
    }

    /// Gives the backend back (at shutdown: it holds the ports).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Sends the effective tunables to every worker (at start).
    pub fn apply_tunables(&mut self) -> Result<(), ControlError> {
        let values = self.tunables.clone();
        self.push_tunables(&values)
    }

    fn push_tunables(&mut self, values: &BTreeMap<String, u64>) -> Result<(), ControlError> {
        let n = self.backend.workers();
        let list: Vec<(String, u64)> = values
            .iter()
            .map(|(k, v)| {
                let v = if k == "nf_conntrack_max" {
                    worker_share(*v, n)
                } else {
                    *v
                };
                (k.clone(), v)
            })
            .collect();
        for r in self.ask_all(|_| WorkerCommand::SetTunables(list.clone()))? {
            if let WorkerReply::Error(e) = r {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sends one command to each worker and waits for every reply (in worker order).
    fn ask_all(
        &mut self,
        mut make: impl FnMut(usize) -> WorkerCommand,
    ) -> Result<Vec<WorkerReply>, ControlError> {
        let n = self.backend.workers();
        (0..n).map(|w| self.ask(w, make(w))).collect()
    }

    /// Sends one command to worker `w` and waits for its reply.
    fn ask(&mut self, w: usize, cmd: WorkerCommand) -> Result<WorkerReply, ControlError> {
        let deadline = Instant::now() + self.cfg.worker_timeout;
        self.send_cmd(w, cmd, deadline)?;
        self.recv_reply(w, deadline)
    }

    /// Sends one command to each listed worker, then waits for each reply (the workers
    /// work in parallel); the replies come back with their worker.
    fn ask_each(
        &mut self,
        cmds: Vec<(usize, WorkerCommand)>,
    ) -> Result<Vec<(usize, WorkerReply)>, ControlError> {
        let deadline = Instant::now() + self.cfg.worker_timeout;
        let mut sent = Vec::with_capacity(cmds.len());
        for (w, cmd) in cmds {
            self.send_cmd(w, cmd, deadline)?;
            sent.push(w);
        }
        let mut out = Vec::with_capacity(sent.len());
        let mut first_err = None;
        for w in sent {
            // Every sent command's reply is taken or marked owed, even after an error.
            match self.recv_reply(w, deadline) {
                Ok(r) => out.push((w, r)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn timeout(w: usize) -> ControlError {
        ControlError::new(
            ErrorCode::WorkerTimeout,
            format!("worker {w} did not answer in time"),
        )
    }

    /// Queues a command on worker `w`'s ring, retrying while it is full until `deadline`.
    fn send_cmd(
        &mut self,
        w: usize,
        cmd: WorkerCommand,
        deadline: Instant,
    ) -> Result<(), ControlError> {
        let mut cmd = Some(Box::new(cmd));
        while let Some(c) = cmd.take() {
            // Discard replies to commands we gave up on earlier.
            while self.owed[w] > 0 && self.backend.try_recv(w).is_some() {
                self.owed[w] -= 1;
            }
            if let Err(c) = self.backend.send(w, c) {
                if Instant::now() >= deadline {
                    return Err(Self::timeout(w));
                }
                cmd = Some(c);
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    }

    /// Waits for worker `w`'s reply to the command sent last; past `deadline` the reply
    /// is owed (discarded when it comes).
    fn recv_reply(&mut self, w: usize, deadline: Instant) -> Result<WorkerReply, ControlError> {
        loop {
            if self.owed[w] == 0
                && let Some(r) = self.backend.try_recv(w)
            {
                return Ok(r);
            }
            while self.owed[w] > 0 && self.backend.try_recv(w).is_some() {
                self.owed[w] -= 1;
            }
            if Instant::now() >= deadline {
                self.owed[w] += 1;
                return Err(Self::timeout(w));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Answers one request line (the connection stays open whatever the answer). The
    /// second value is set when the connection turns into an event stream.
    fn handle_line(
        &mut self,
        line: &str,
        may_subscribe: bool,
    ) -> (ResponseEnvelope, Option<Subscription>) {
        let env: RequestEnvelope = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                // Echo the id when the line at least has one.
                let id = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                    .unwrap_or(0);
                return (
                    ResponseEnvelope::err(
                        id,
                        ControlError::new(ErrorCode::BadRequest, e.to_string()),
                    ),
                    None,
                );
            }
        };
        if env.v != PROTOCOL_VERSION {
            return (
                ResponseEnvelope::err(
                    env.id,
                    ControlError::new(
                        ErrorCode::UnsupportedVersion,
                        format!(
                            "protocol {} is not spoken here (this is {PROTOCOL_VERSION})",
                            env.v
                        ),
                    ),
                ),
                None,
            );
        }
        let mut sub = None;
        let result = match env.request {
            Request::Subscribe { .. } if !may_subscribe => Err(ControlError::new(
                ErrorCode::Busy,
                format!("{MAX_SUBSCRIBERS} event subscriptions are open already"),
            )),
            Request::Subscribe { filter, events } => match CompiledFilter::new(&filter) {
                Ok(filter) => {
                    sub = Some(Subscription {
                        filter,
                        events,
                        lost: 0,
                    });
                    Ok(Response::Subscribed)
                }
                Err(e) => Err(e),
            },
            req => self.request(req),
        };
        let resp = match result {
            Ok(r) => ResponseEnvelope::ok(env.id, r),
            Err(e) => ResponseEnvelope::err(env.id, e),
        };
        (resp, sub)
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
                Some(r) => Ok(Response::Ruleset(super::view::ruleset_view(&r.current()))),
                None => Err(no_rules()),
            },
            Request::RuleCounters => match &self.rules {
                Some(r) => {
                    let c = r.current();
                    Ok(Response::RuleCounters {
                        generation: c.generation(),
                        counters: super::view::rule_counters(&c),
                    })
                }
                None => Err(no_rules()),
            },
            Request::RulesetReplace { ruleset, dry_run } => self.replace_ruleset(&ruleset, dry_run),
            Request::ConntrackList {
                filter,
                cursor,
                limit,
            } => self.ct_list(filter, cursor, limit),
            Request::ConntrackCount { filter } => self.ct_count(filter),
            Request::ConntrackDelete { filter, all } => self.ct_delete(filter, all),
            Request::ConntrackStats => {
                let workers = self.ct_stats()?;
                Ok(Response::ConntrackStats(ConntrackStats {
                    total: sum_ct(&workers),
                    workers,
                }))
            }
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
            Request::Subscribe { .. } => Err(ControlError::new(
                ErrorCode::BadRequest,
                "subscribe needs a connection",
            )),
        }
    }

    fn ct_stats(&mut self) -> Result<Vec<CtCounters>, ControlError> {
        self.ask_all(|_| WorkerCommand::CtStats)?
            .into_iter()
            .map(|r| match r {
                WorkerReply::Stats(s) => Ok(s),
                WorkerReply::Error(e) => Err(e),
                other => Err(internal(format!("unexpected reply {other:?}"))),
            })
            .collect()
    }

    /// Worker counters with each worker's `conntrack -S` (left zero when the workers
    /// cannot answer it, e.g. a processor without a connection table: the edge counters
    /// are still worth reporting).
    fn workers_with_ct(&mut self) -> Result<Vec<WorkerStats>, ControlError> {
        let ct = match self.ct_stats() {
            Ok(ct) => ct,
            Err(e) if e.code == ErrorCode::Internal => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut ws = self.backend.worker_stats();
        for (w, c) in ws.iter_mut().zip(ct) {
            w.ct = c;
        }
        Ok(ws)
    }

    fn ct_list(
        &mut self,
        filter: CtFilter,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Response, ControlError> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("limit must be 1 to {MAX_PAGE}"),
            )
            .field("limit"));
        }
        CompiledFilter::new(&filter)?;
        let n = self.backend.workers();
        let (mut w, mut c) = match cursor.as_deref() {
            Some(s) => decode_cursor(s, n)?,
            None => (0, 0),
        };
        let mut entries = Vec::new();
        while w < n {
            let want = limit.saturating_sub(u32::try_from(entries.len()).unwrap_or(u32::MAX));
            if want == 0 {
                return Ok(Response::ConntrackPage {
                    entries,
                    next_cursor: Some(encode_cursor(w, c)),
                });
            }
            let r = self.ask(
                w,
                WorkerCommand::CtList {
                    filter: filter.clone(),
                    cursor: c,
                    limit: want,
                },
            )?;
            match r {
                WorkerReply::CtPage {
                    entries: mut page,
                    next_cursor,
                } => {
                    entries.append(&mut page);
                    match next_cursor {
                        Some(next) => c = next,
                        None => {
                            w += 1;
                            c = 0;
                        }
                    }
                }
                WorkerReply::Error(e) => return Err(e),
                other => return Err(internal(format!("unexpected reply {other:?}"))),
            }
        }
        Ok(Response::ConntrackPage {
            entries,
            next_cursor: None,
        })
    }

    fn ct_delete(&mut self, filter: CtFilter, all: bool) -> Result<Response, ControlError> {
        if filter.is_empty() && !all {
            return Err(ControlError::new(
                ErrorCode::RefusedUnfiltered,
                "an empty filter deletes every entry: set `all` to flush",
            ));
        }
        CompiledFilter::new(&filter)?;
        let mut deleted = 0u64;
        for w in 0..self.backend.workers() {
            // Bounded: at most 10 000 rounds of 10 000 entries per worker.
            for _ in 0..10_000 {
                match self.ask(
                    w,
                    WorkerCommand::CtDelete {
                        filter: filter.clone(),
                        budget: 10_000,
                    },
                )? {
                    WorkerReply::Deleted { count, more } => {
                        deleted += count;
                        if !more {
                            break;
                        }
                    }
                    WorkerReply::Error(e) => return Err(e),
                    other => return Err(internal(format!("unexpected reply {other:?}"))),
                }
            }
        }
        Ok(Response::Deleted { deleted })
    }

    /// Validates every value, applies them to every worker, then persists the result; a
    /// worker or persistence failure puts the previous values back on the workers, so a
    /// refused request changes nothing anywhere.
    fn tuning_set(&mut self, values: BTreeMap<String, u64>) -> Result<Response, ControlError> {
        for (k, v) in &values {
            (self.check)(k, *v).map_err(|m| {
                ControlError::new(ErrorCode::BadTunable, format!("{k} = {v}: {m}")).field(k)
            })?;
        }
        let mut next = self.tunables.clone();
        next.extend(values.iter().map(|(k, v)| (k.clone(), *v)));
        let previous: BTreeMap<String, u64> = values
            .keys()
            .filter_map(|k| Some((k.clone(), *self.tunables.get(k)?)))
            .collect();
        let json = serde_json::to_vec_pretty(&next).map_err(|e| internal(e.to_string()))?;
        let applied = self.push_tunables(&values).and_then(|()| {
            self.state.write_atomic(TUNABLES_FILE, &json).map_err(|e| {
                ControlError::new(
                    ErrorCode::Persist,
                    format!("{}: {e}", self.state.path(TUNABLES_FILE).display()),
                )
            })
        });
        if let Err(e) = applied {
            if let Err(back) = self.push_tunables(&previous) {
                eprintln!("fwd: tunables: restoring the previous values failed: {back}");
            }
            return Err(e);
        }
        self.tunables = next;
        Ok(Response::Tuning {
            values: self.tunables.clone(),
        })
    }

    /// Counts matching entries in slices of [`COUNT_SLICE`] slots per worker command, the
    /// workers in parallel: no command scans a whole table.
    fn ct_count(&mut self, filter: CtFilter) -> Result<Response, ControlError> {
        CompiledFilter::new(&filter)?;
        let mut next: Vec<Option<u64>> = vec![Some(0); self.backend.workers()];
        let mut count = 0u64;
        while next.iter().any(Option::is_some) {
            let cmds: Vec<(usize, WorkerCommand)> = next
                .iter()
                .enumerate()
                .filter_map(|(w, c)| {
                    Some((
                        w,
                        WorkerCommand::CtCount {
                            filter: filter.clone(),
                            cursor: (*c)?,
                            budget: COUNT_SLICE,
                        },
                    ))
                })
                .collect();
            for (w, r) in self.ask_each(cmds)? {
                match r {
                    WorkerReply::Count {
                        count: c,
                        next_cursor,
                    } => {
                        count += c;
                        next[w] = next_cursor;
                    }
                    WorkerReply::Error(e) => return Err(e),
                    other => return Err(internal(format!("unexpected reply {other:?}"))),
                }
            }
        }
        Ok(Response::Count { count })
    }

    /// Drains up to 256 events per worker and returns them (only called while someone
    /// subscribes: events are taken from the workers).
    fn take_events(&mut self) -> (Vec<EventLine>, u64) {
        let mut out = Vec::new();
        let mut lost_total = 0;
        for w in 0..self.backend.workers() {
            if let Ok(WorkerReply::Events { events, lost }) =
                self.ask(w, WorkerCommand::TakeEvents { max: 256 })
            {
                out.extend(events);
                lost_total += lost;
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        for e in &mut out {
            if e.timestamp_ms == 0 {
                e.timestamp_ms = now_ms;
            }
        }
        (out, lost_total)
    }

    /// Serves `listener` until `stop` is set, calling `between` every poll (the daemon
    /// checks its signal flags there).
    pub fn serve(
        &mut self,
        listener: &UnixListener,
        stop: &AtomicBool,
        between: &mut dyn FnMut(&mut Self),
    ) {
        if let Err(e) = listener.set_nonblocking(true) {
            eprintln!("fwd: control socket: {e}");
            return;
        }
        let mut conns: Vec<Conn> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut busy = false;
            loop {
                match listener.accept() {
                    Ok((s, _)) => {
                        // Over the cap the connection is closed at once (dropped).
                        if conns.len() < MAX_CONNECTIONS && s.set_nonblocking(true).is_ok() {
                            conns.push(Conn::new(s));
                            busy = true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("fwd: control socket accept: {e}");
                        break;
                    }
                }
            }
            for i in 0..conns.len() {
                let subscribers = conns.iter().filter(|c| c.sub.is_some()).count();
                busy |= conns[i].poll(self, subscribers < MAX_SUBSCRIBERS);
            }
            if conns.iter().any(|c| c.sub.is_some() && !c.closed) {
                let (events, lost) = self.take_events();
                for c in &mut conns {
                    c.push_events(&events, lost);
                }
                busy |= !events.is_empty();
            }
            conns.retain(|c| !c.closed);
            self.housekeeping();
            between(self);
            if !busy {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

fn sum_ct(v: &[CtCounters]) -> CtCounters {
    let mut t = CtCounters::default();
    for c in v {
        t.found += c.found;
        t.invalid += c.invalid;
        t.insert += c.insert;
        t.insert_failed += c.insert_failed;
        t.drop += c.drop;
        t.early_drop += c.early_drop;
        t.error += c.error;
        t.search_restart += c.search_restart;
        t.entries += c.entries;
        t.max += c.max;
    }
    t
}

/// One client connection.
struct Conn {
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    sub: Option<Subscription>,
    closed: bool,
}

/// Most bytes a subscriber may have pending before events are counted as lost (a slow
/// reader costs at most this much memory).
const MAX_PENDING: usize = 256 << 10;

impl Conn {
    fn new(stream: UnixStream) -> Self {
        Conn {
            stream,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            sub: None,
            closed: false,
        }
    }

    /// Reads what is there, answers complete lines, writes what it can. True if anything
    /// happened.
    fn poll<B: Backend>(&mut self, server: &mut Server<B>, may_subscribe: bool) -> bool {
        let mut busy = false;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => {
                    busy = true;
                    self.rbuf.extend_from_slice(&buf[..n]);
                    if self.rbuf.len() > MAX_LINE && !self.rbuf.contains(&b'\n') {
                        self.closed = true;
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        while let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.rbuf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..pos]);
            let text = text.trim();
            if text.is_empty() || self.sub.is_some() {
                continue;
            }
            let (resp, sub) = server.handle_line(text, may_subscribe);
            if sub.is_some() {
                self.sub = sub;
            }
            self.queue(&resp);
        }
        busy | self.flush()
    }

    fn queue<T: serde::Serialize>(&mut self, v: &T) {
        if let Ok(mut line) = serde_json::to_vec(v) {
            line.push(b'\n');
            self.wbuf.extend_from_slice(&line);
        }
    }

    fn push_events(&mut self, events: &[EventLine], lost: u64) {
        let Some(sub) = self.sub.as_mut() else {
            return;
        };
        sub.lost += lost;
        let mut lines = Vec::new();
        for e in events {
            if !sub.events.is_empty() && !sub.events.contains(&e.kind) {
                continue;
            }
            if !sub.filter.matches(&e.entry) {
                continue;
            }
            if self.wbuf.len() + lines.len() > MAX_PENDING {
                sub.lost += 1;
                continue;
            }
            let mut e = e.clone();
            e.lost = std::mem::take(&mut sub.lost);
            if let Ok(l) = serde_json::to_vec(&e) {
                lines.extend_from_slice(&l);
                lines.push(b'\n');
            }
        }
        self.wbuf.extend_from_slice(&lines);
        self.flush();
    }

    fn flush(&mut self) -> bool {
        let mut wrote = false;
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => {
                    wrote = true;
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        wrote
    }
}

/// Binds the control socket at `path` with mode 0600 (removing a stale socket file; the
/// parent directory is created). The socket is bound inside a fresh 0700 directory, made
/// 0600, then renamed into place, so there is no moment at which another user could
/// connect to it.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let private = dir.join(format!(".fwd-bind-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let tmp = private.join("s");
    let result = UnixListener::bind(&tmp).and_then(|l| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(l)
    });
    let _ = std::fs::remove_dir_all(&private);
    result
}

#[cfg(test)]
mod tests;
