//! The state-sync daemon (`fwmgmt --ha FILE`, docs/ha.md): fwd's conntrack events out to
//! the peer over UDP, the peer's changes into fwd with `ha_apply`.
//!
//! - [`HaConfig`]: the configuration file (JSON), validated with errors naming the field.
//! - [`Sync`]: the protocol core without I/O (events and datagrams in, datagrams and
//!   changes to apply out), built on `dataplane::ha::ftfw`; unit-tested by two cores
//!   talking to each other.
//! - [`run`]: the tasks around it (subscription, UDP receive, apply, ALIVE timer, table
//!   dump for a peer's RESYNC). Every queue is bounded and every loss counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::conntrack::Synced;
use dataplane::ha::ftfw::{Receiver, Sender};
use dataplane::ha::wire::{self, Datagram, Kind, Record};
use fwd_proto::{
    CtEntry, CtFilter, EventLine, EventType, HaChange, HaCounters, HaTarget, MAX_PAGE, RecordBatch,
    Request, Response,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::client::ControlClient;

/// The box's role in the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Forwards; keeps the backup's entries (if any) in the external cache.
    Primary,
    /// Keeps the primary's entries in the external cache until `commit` (takeover).
    Backup,
    /// Both forward; each writes the other's entries into its workers at once.
    ActiveActive,
}

impl Role {
    /// Where received changes go.
    pub fn target(self) -> HaTarget {
        match self {
            Role::Primary | Role::Backup => HaTarget::Cache,
            Role::ActiveActive => HaTarget::Workers,
        }
    }
}

/// The daemon's configuration (`fwmgmt --ha FILE`, a JSON object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    pub role: Role,
    /// The peer's sync address (`IP:PORT`).
    pub peer: SocketAddr,
    /// Our sync address on the management interface (`IP:PORT`).
    pub bind: SocketAddr,
    /// Unacknowledged datagrams the sender keeps for retransmission.
    pub queue: usize,
    /// The receiver acknowledges every this many datagrams.
    pub ack_every: u32,
    /// ALIVE interval in milliseconds (the peer counts as down after three missed).
    pub alive_ms: u64,
    /// Largest DATA datagram we send (bytes, `wire::DATAGRAM_RANGE`).
    pub datagram_bytes: usize,
    /// The addresses a takeover announces (`POST /api/v1/ha/takeover` without a list);
    /// empty: every address of fwd's data ports.
    pub service_addresses: Vec<std::net::IpAddr>,
}

/// Bounds of the numeric fields (inclusive).
pub const QUEUE_RANGE: (u64, u64) = (16, 1 << 20);
pub const ACK_EVERY_RANGE: (u64, u64) = (1, 1024);
pub const ALIVE_MS_RANGE: (u64, u64) = (50, 60_000);
pub const DATAGRAM_BYTES_RANGE: (u64, u64) =
    (wire::DATAGRAM_RANGE.0 as u64, wire::DATAGRAM_RANGE.1 as u64);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    role: String,
    peer: String,
    bind: String,
    queue: Option<u64>,
    ack_every: Option<u64>,
    alive_ms: Option<u64>,
    datagram_bytes: Option<u64>,
    #[serde(default)]
    service_addresses: Vec<String>,
}

/// A configuration error: the field it is about (or the JSON position) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The field name, or `line L column C` for malformed JSON.
    pub field: String,
    pub message: String,
}

fn config_error(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

impl HaConfig {
    /// Parses and validates the configuration text.
    pub fn parse(text: &str) -> Result<HaConfig, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            config_error(
                &format!("line {} column {}", e.line(), e.column()),
                e.to_string(),
            )
        })?;
        let role = match raw.role.as_str() {
            "primary" => Role::Primary,
            "backup" => Role::Backup,
            "active-active" => Role::ActiveActive,
            r => {
                return Err(config_error(
                    "role",
                    format!("{r:?} is not primary, backup or active-active"),
                ));
            }
        };
        let addr = |field: &str, v: &str| -> Result<SocketAddr, ConfigError> {
            let a: SocketAddr = v
                .parse()
                .map_err(|e| config_error(field, format!("{v:?} is not IP:PORT: {e}")))?;
            if a.port() == 0 {
                return Err(config_error(field, "port 0"));
            }
            Ok(a)
        };
        let peer = addr("peer", &raw.peer)?;
        let bind = addr("bind", &raw.bind)?;
        if peer.is_ipv4() != bind.is_ipv4() {
            return Err(config_error("peer", "address family differs from bind's"));
        }
        if peer == bind {
            return Err(config_error("peer", "the same address as bind"));
        }
        let ranged = |field: &str, v: Option<u64>, def: u64, (lo, hi): (u64, u64)| {
            let v = v.unwrap_or(def);
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(config_error(field, format!("{v} is outside {lo}..={hi}")))
            }
        };
        let queue = ranged("queue", raw.queue, 4096, QUEUE_RANGE)?;
        let ack_every = ranged("ack_every", raw.ack_every, 16, ACK_EVERY_RANGE)?;
        if ack_every > queue / 2 {
            return Err(config_error(
                "ack_every",
                format!("{ack_every} is more than half the queue ({queue})"),
            ));
        }
        Ok(HaConfig {
            role,
            peer,
            bind,
            queue: usize::try_from(queue).unwrap_or(4096),
            ack_every: u32::try_from(ack_every).unwrap_or(16),
            alive_ms: ranged("alive_ms", raw.alive_ms, 500, ALIVE_MS_RANGE)?,
            datagram_bytes: usize::try_from(ranged(
                "datagram_bytes",
                raw.datagram_bytes,
                wire::MAX_DATAGRAM as u64,
                DATAGRAM_BYTES_RANGE,
            )?)
            .unwrap_or(wire::MAX_DATAGRAM),
            service_addresses: raw
                .service_addresses
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.parse().map_err(|_| {
                        config_error(
                            &format!("service_addresses[{i}]"),
                            format!("{a:?} is not an IP address"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The body of `POST /api/v1/ha/takeover` (optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeoverRequest {
    /// Service addresses to announce; empty: the HA config's `service_addresses`, else
    /// every address of fwd's ports.
    #[serde(default)]
    #[schema(schema_with = ip_list_schema)]
    pub addresses: Vec<String>,
}

/// An array of IPv4 or IPv6 addresses (string formats `ipv4` / `ipv6`).
fn ip_list_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{
        ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, SchemaType, Type,
    };
    let ip = |f| {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .format(Some(SchemaFormat::KnownFormat(f)))
    };
    ArrayBuilder::new()
        .description(Some(
            "Service addresses to announce; empty: the HA config's `service_addresses`, else \
             every address of fwd's ports.",
        ))
        .items(
            OneOfBuilder::new()
                .item(ip(KnownFormat::Ipv4))
                .item(ip(KnownFormat::Ipv6)),
        )
        .build()
}

/// Counters of the daemon (all since it started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncCounters {
    /// Local conntrack events read from fwd.
    pub events: u64,
    /// Events of entries that came from the peer (`SYNCED`): never sent back.
    pub events_synced_skipped: u64,
    /// Events fwd's subscription reported lost (slow reader or full event ring).
    pub events_lost: u64,
    /// Events whose entry could not be encoded.
    pub events_bad: u64,
    /// DATA datagrams and records sent (first transmissions).
    pub sent_datagrams: u64,
    pub sent_records: u64,
    pub retransmitted: u64,
    /// Datagrams the peer acknowledged.
    pub acked: u64,
    /// Records pushed out of the full retransmission queue before the peer had them.
    pub lost_records: u64,
    pub lost_datagrams: u64,
    /// SKIPs sent (NACKed datagrams no longer held).
    pub skips: u64,
    /// DATA datagrams received, delivered (new), duplicates.
    pub received_datagrams: u64,
    pub delivered: u64,
    pub duplicates: u64,
    /// NACKs and ACKs we sent.
    pub nacks: u64,
    pub acks: u64,
    /// Peer datagrams known lost (SKIP, holes too large).
    pub peer_lost_datagrams: u64,
    /// Times the peer's session changed (it restarted).
    pub peer_restarts: u64,
    /// Datagrams refused by the decoder, by reason.
    pub decode_errors: BTreeMap<String, u64>,
    /// Datagrams from an address other than the peer's.
    pub foreign_datagrams: u64,
    /// Peer changes fwd applied / refused.
    pub applied: u64,
    pub apply_failed: u64,
    /// Peer changes dropped before fwd had them (apply queue full, fwd unreachable).
    pub apply_lost: u64,
    /// RESYNC requests we sent / served (table dumps), records sent by dumps.
    pub resyncs_requested: u64,
    pub resyncs_served: u64,
    pub resync_records: u64,
    /// Dumps given up (fwd error, the queue did not drain).
    pub resyncs_aborted: u64,
    /// Failed subscriptions to fwd's events, failed UDP sends.
    pub subscribe_errors: u64,
    pub send_errors: u64,
}

/// The peer as we see it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    pub address: String,
    /// Heard from within three ALIVE intervals.
    pub up: bool,
    /// Milliseconds since the last datagram from the peer; absent if never.
    pub last_heard_ms: Option<u64>,
    /// The peer's session id (changes when its daemon restarts).
    pub session: Option<u32>,
}

/// The daemon's status (`GET /api/v1/ha`'s `sync`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncStatus {
    pub role: Role,
    pub bind: String,
    pub peer: PeerView,
    /// Datagrams waiting for the peer's acknowledgement, and the queue's size.
    pub queue: u64,
    pub queue_cap: u64,
    /// Holes in the peer's sequence not filled yet.
    pub missing: u64,
    pub counters: SyncCounters,
}

/// `GET /api/v1/ha`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HaView {
    /// Whether fwmgmt runs the sync daemon (`--ha FILE`).
    pub enabled: bool,
    /// fwd's side: the external cache and what `ha_apply` / `ha_commit` did.
    pub fwd: HaCounters,
    /// The daemon: role, peer, queue and loss counters (absent without `--ha`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
}

/// What one received datagram asks of the daemon.
#[derive(Debug, Default)]
pub struct Incoming {
    /// Send these to the peer.
    pub send: Vec<Vec<u8>>,
    /// Hand these to fwd (`ha_apply_records`): the datagram's records as the peer encoded
    /// them (back to back), and how many.
    pub records: Vec<u8>,
    pub count: u64,
    /// The peer asked for our whole table.
    pub dump: bool,
}

impl Incoming {
    /// The connection records as `ha_apply`'s changes (what the JSON form would carry;
    /// it has no form for expectations, which only the binary path carries).
    pub fn changes(&self) -> Vec<HaChange> {
        wire::decode_records(&self.records)
            .unwrap_or_default()
            .iter()
            .filter_map(record_change)
            .collect()
    }
}

/// The protocol core: no sockets, no clock of its own.
#[derive(Debug)]
pub struct Sync {
    cfg: HaConfig,
    sender: Sender,
    receiver: Receiver,
    counters: SyncCounters,
    last_heard: Option<Instant>,
}

/// A connection record as the change `ha_apply` takes (`None`: an expectation record,
/// which `ha_apply` has no form for).
pub fn record_change(r: &Record) -> Option<HaChange> {
    Some(match r {
        Record::Upsert { new, entry } => HaChange {
            kind: if *new {
                EventType::New
            } else {
                EventType::Update
            },
            entry: entry.to_snapshot().to_ct_entry(0),
        },
        Record::Destroy(k) => HaChange {
            kind: EventType::Destroy,
            entry: Synced {
                orig: *k,
                reply: *k,
                tcp_state: None,
                tcp_window: None,
                status: 0,
                mark: 0,
                timeout_s: None,
            }
            .to_snapshot()
            .to_ct_entry(0),
        },
        Record::Expect(_) | Record::ExpectDestroy(_) => return None,
    })
}

/// Whether an entry came from the peer.
pub fn is_synced(e: &CtEntry) -> bool {
    e.status.iter().any(|s| s == "SYNCED")
}

impl Sync {
    /// A core with session id `session` (random per start).
    pub fn new(cfg: HaConfig, session: u32) -> Sync {
        Sync {
            sender: Sender::with_datagram(session, cfg.queue, cfg.datagram_bytes),
            receiver: Receiver::new(session, cfg.ack_every),
            cfg,
            counters: SyncCounters::default(),
            last_heard: None,
        }
    }

    pub fn config(&self) -> &HaConfig {
        &self.cfg
    }

    /// Datagrams waiting for an acknowledgement.
    pub fn queued(&self) -> usize {
        self.sender.queued()
    }

    fn push(&mut self, r: Record) -> Option<Vec<u8>> {
        self.sender.push(r)
    }

    /// One local event: a datagram to send when the batch filled. Entries from the peer
    /// are never announced back (their DESTROY when they time out here included).
    pub fn event(&mut self, e: &EventLine) -> Option<Vec<u8>> {
        self.counters.events += 1;
        self.counters.events_lost += e.lost;
        if is_synced(&e.entry) {
            self.counters.events_synced_skipped += 1;
            return None;
        }
        let s = match Synced::from_ct_entry(&e.entry) {
            Ok(s) => s,
            Err(_) => {
                self.counters.events_bad += 1;
                return None;
            }
        };
        self.push(match e.kind {
            EventType::Destroy => Record::Destroy(s.orig),
            kind => Record::Upsert {
                new: kind == EventType::New,
                entry: s,
            },
        })
    }

    /// One batch of fwd's binary event stream (`subscribe_records`): its records go into
    /// datagrams as they are, split at their boundaries, never decoded. Returns the
    /// datagrams that filled. A batch that does not split is counted in `events_bad`.
    pub fn record_batch(&mut self, b: &RecordBatch) -> Vec<Vec<u8>> {
        let c = &mut self.counters;
        c.events += b.count + b.synced_skipped;
        c.events_synced_skipped += b.synced_skipped;
        c.events_lost += b.lost;
        let split = wire::base64_decode(&b.records)
            .ok()
            .and_then(|body| Some((wire::split_records(&body).ok()?, body)));
        let Some((parts, body)) = split.filter(|(p, _)| p.len() as u64 == b.count) else {
            c.events_bad += b.count;
            return Vec::new();
        };
        parts
            .iter()
            .filter_map(|&(at, n)| self.sender.push_raw(&body[at..at + n]))
            .collect()
    }

    /// One entry of a table dump (a RESYNC answer), sent as UPDATE.
    pub fn dump_entry(&mut self, e: &CtEntry) -> Option<Vec<u8>> {
        if is_synced(e) {
            return None;
        }
        let s = Synced::from_ct_entry(e).ok()?;
        self.counters.resync_records += 1;
        self.push(Record::Upsert {
            new: false,
            entry: s,
        })
    }

    /// One expectation of a table dump, sent as EXPECT (the peer's own left out).
    pub fn dump_expect(&mut self, x: &fwd_proto::CtExpectation) -> Option<Vec<u8>> {
        let e = wire::SyncedExpect::from_view(x)?;
        self.counters.resync_records += 1;
        self.push(Record::Expect(e))
    }

    /// Seals the batch (the flush timer, the end of a burst).
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        self.sender.flush()
    }

    /// The ALIVE timer: the pending batch, then ALIVE.
    pub fn alive(&mut self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = self.flush().into_iter().collect();
        out.push(self.sender.alive());
        out
    }

    /// A RESYNC request for the peer.
    pub fn resync_request(&mut self) -> Vec<u8> {
        self.counters.resyncs_requested += 1;
        wire::encode_control(Kind::Resync, self.sender.session(), 0, None)
    }

    /// One datagram from the peer's address.
    pub fn datagram(&mut self, bytes: &[u8], now: Instant) -> Incoming {
        let mut out = Incoming::default();
        let d: Datagram = match wire::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                *self
                    .counters
                    .decode_errors
                    .entry(e.name().to_string())
                    .or_default() += 1;
                return out;
            }
        };
        self.last_heard = Some(now);
        match d.kind {
            Kind::Ack => {
                if let Some((_, to)) = d.range {
                    self.sender.on_ack(to);
                }
            }
            Kind::Nack => {
                if let Some((from, to)) = d.range {
                    out.send = self.sender.on_nack(from, to);
                }
            }
            Kind::Resync => out.dump = true,
            Kind::Data | Kind::Alive | Kind::Skip => {
                let first = self.receiver.peer_session().is_none();
                let r = self.receiver.on_datagram(&d);
                if r.deliver {
                    out.records = wire::data_body(bytes).to_vec();
                    out.count = d.records.len() as u64;
                }
                out.send = r.replies;
                // A peer heard for the first time (we or it just started) or one that
                // lost state: ask for its whole table.
                if r.want_resync || first {
                    let q = self.resync_request();
                    out.send.push(q);
                }
            }
        }
        out
    }

    /// Counts a datagram from someone other than the peer.
    pub fn foreign(&mut self) {
        self.counters.foreign_datagrams += 1;
    }

    /// Mutable counters for the I/O side (apply results, send errors...).
    pub fn counters_mut(&mut self) -> &mut SyncCounters {
        &mut self.counters
    }

    /// The status as the API shows it.
    pub fn status(&self, now: Instant) -> SyncStatus {
        let s = self.sender.stats();
        let r = self.receiver.stats();
        let mut c = self.counters.clone();
        c.sent_datagrams = s.datagrams;
        c.sent_records = s.records;
        c.retransmitted = s.retransmitted;
        c.acked = s.acked;
        c.lost_records = s.lost_records;
        c.lost_datagrams = s.lost_datagrams;
        c.skips = s.skips;
        c.received_datagrams = r.datagrams;
        c.delivered = r.delivered;
        c.duplicates = r.duplicates;
        c.nacks = r.nacks;
        c.acks = r.acks;
        c.peer_lost_datagrams = r.lost_datagrams;
        c.peer_restarts = r.peer_restarts;
        let heard = self.last_heard.map(|t| {
            u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
        });
        SyncStatus {
            role: self.cfg.role,
            bind: self.cfg.bind.to_string(),
            peer: PeerView {
                address: self.cfg.peer.to_string(),
                up: heard.is_some_and(|ms| ms <= 3 * self.cfg.alive_ms),
                last_heard_ms: heard,
                session: self.receiver.peer_session(),
            },
            queue: self.sender.queued() as u64,
            queue_cap: self.cfg.queue as u64,
            missing: self.receiver.missing() as u64,
            counters: c,
        }
    }
}

/// The running daemon as the API sees it.
#[derive(Debug)]
pub struct HaHandle {
    pub sync: Mutex<Sync>,
    /// `POST /api/v1/ha/resync`: ask the peer for its table.
    pub resync: tokio::sync::Notify,
}

impl HaHandle {
    pub fn new(cfg: HaConfig) -> Arc<HaHandle> {
        Arc::new(HaHandle {
            sync: Mutex::new(Sync::new(cfg, random_session())),
            resync: tokio::sync::Notify::new(),
        })
    }

    /// Runs `f` on the core (a short critical section; never held across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut Sync) -> T) -> T {
        let mut g = self
            .sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    pub fn status(&self) -> SyncStatus {
        self.with(|s| s.status(Instant::now()))
    }
}

/// A session id that differs between starts (time and pid hashed).
fn random_session() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let x = h.finish();
    u32::try_from(x >> 32).unwrap_or(0) ^ u32::try_from(x & 0xffff_ffff).unwrap_or(0)
}

/// Changes waiting for `ha_apply` (bounded; a full queue loses the datagram's changes,
/// counted, and asks the peer for a resync).
pub const APPLY_QUEUE: usize = 8192;
/// Changes per `ha_apply` request at most.
pub const APPLY_BATCH: usize = 4096;
/// Entries per listing page of a table dump.
pub const DUMP_PAGE: u32 = 1000;
/// How often the pending batch is sealed and sent.
pub const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// How long a dump waits for the peer to drain the queue before giving up (plus three
/// ALIVE intervals: the peer acknowledges at least on each ALIVE).
pub const DUMP_STALL: Duration = Duration::from_secs(5);

async fn send_all(h: &HaHandle, sock: &tokio::net::UdpSocket, peer: SocketAddr, d: Vec<Vec<u8>>) {
    for b in d {
        if sock.send_to(&b, peer).await.is_err() {
            h.with(|s| s.counters_mut().send_errors += 1);
        }
    }
}

/// The sync socket on the configured address.
pub async fn bind(h: &HaHandle) -> std::io::Result<tokio::net::UdpSocket> {
    tokio::net::UdpSocket::bind(h.with(|s| s.config().bind)).await
}

/// Runs the daemon's tasks on `sock` (from [`bind`]); they run until the process ends.
pub async fn run(h: Arc<HaHandle>, client: Arc<ControlClient>, sock: tokio::net::UdpSocket) {
    let cfg = h.with(|s| s.config().clone());
    let sock = Arc::new(sock);
    let (apply_tx, apply_rx) = tokio::sync::mpsc::channel::<(Vec<u8>, u64)>(APPLY_QUEUE);
    let dump = Arc::new(tokio::sync::Notify::new());
    let tasks = [
        tokio::spawn(events_task(
            Arc::clone(&h),
            Arc::clone(&client),
            Arc::clone(&sock),
            cfg.peer,
        )),
        tokio::spawn(receive_task(
            Arc::clone(&h),
            Arc::clone(&sock),
            cfg.peer,
            apply_tx,
            Arc::clone(&dump),
        )),
        tokio::spawn(apply_task(
            Arc::clone(&h),
            Arc::clone(&client),
            Arc::clone(&sock),
            cfg.peer,
            apply_rx,
        )),
        tokio::spawn(timer_task(
            Arc::clone(&h),
            Arc::clone(&sock),
            cfg.peer,
            cfg.alive_ms,
        )),
        tokio::spawn(dump_task(
            Arc::clone(&h),
            client,
            Arc::clone(&sock),
            cfg.peer,
            dump,
        )),
    ];
    for t in tasks {
        let _ = t.await;
    }
}

/// fwd's events → batches → the peer; resubscribes (every second) when fwd goes away.
async fn events_task(
    h: Arc<HaHandle>,
    client: Arc<ControlClient>,
    sock: Arc<tokio::net::UdpSocket>,
    peer: SocketAddr,
) {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        let mut stream = match client.subscribe_records().await {
            Ok(s) => s,
            Err(_) => {
                h.with(|s| s.counters_mut().subscribe_errors += 1);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Lines are read by a task of their own: a line read is not cancel-safe (a
        // `select!` that dropped it on the flush tick would lose the part of a line
        // already read and break the stream), a channel receive is.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(64);
        let reader = tokio::spawn(async move {
            while let Ok(Some(b)) = stream.next_batch().await {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
        });
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(b) => {
                        let d = h.with(|s| s.record_batch(&b));
                        send_all(&h, &sock, peer, d).await;
                    }
                    None => break,
                },
                _ = flush.tick() => {
                    if let Some(d) = h.with(Sync::flush) {
                        send_all(&h, &sock, peer, vec![d]).await;
                    }
                }
            }
        }
        reader.abort();
        h.with(|s| s.counters_mut().subscribe_errors += 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The peer's datagrams → the core → replies, changes to apply, dumps.
async fn receive_task(
    h: Arc<HaHandle>,
    sock: Arc<tokio::net::UdpSocket>,
    peer: SocketAddr,
    apply: tokio::sync::mpsc::Sender<(Vec<u8>, u64)>,
    dump: Arc<tokio::sync::Notify>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if from != peer {
            h.with(Sync::foreign);
            continue;
        }
        let Some(data) = buf.get(..n) else { continue };
        let mut inc = h.with(|s| s.datagram(data, Instant::now()));
        if inc.count > 0 {
            let n = inc.count;
            if apply
                .try_send((std::mem::take(&mut inc.records), n))
                .is_err()
            {
                let q = h.with(|s| {
                    s.counters_mut().apply_lost += n;
                    s.resync_request()
                });
                inc.send.push(q);
            }
        }
        if inc.dump {
            dump.notify_one();
        }
        send_all(&h, &sock, peer, inc.send).await;
    }
}

/// Changes → fwd (`ha_apply_records`: the peer's records as they came, base64),
/// coalesced up to [`APPLY_BATCH`]. A failed request loses
/// its changes (counted) and asks the peer for a resync once fwd answers again.
async fn apply_task(
    h: Arc<HaHandle>,
    client: Arc<ControlClient>,
    sock: Arc<tokio::net::UdpSocket>,
    peer: SocketAddr,
    mut rx: tokio::sync::mpsc::Receiver<(Vec<u8>, u64)>,
) {
    let target = h.with(|s| s.config().role.target());
    let mut owed_resync = false;
    while let Some((mut records, mut n)) = rx.recv().await {
        while n < APPLY_BATCH as u64 {
            match rx.try_recv() {
                Ok((more, k)) => {
                    records.extend_from_slice(&more);
                    n += k;
                }
                Err(_) => break,
            }
        }
        match client.call_apply_records(&records, target).await {
            Ok(Response::HaApplied(c)) => {
                let q = h.with(|s| {
                    let k = s.counters_mut();
                    k.applied += c.applied;
                    k.apply_failed += c.failed;
                    std::mem::take(&mut owed_resync).then(|| s.resync_request())
                });
                send_all(&h, &sock, peer, q.into_iter().collect()).await;
            }
            _ => {
                h.with(|s| s.counters_mut().apply_lost += n);
                owed_resync = true;
            }
        }
    }
}

/// ALIVE every `alive_ms`; `POST /api/v1/ha/resync` sends RESYNC.
async fn timer_task(h: Arc<HaHandle>, sock: Arc<tokio::net::UdpSocket>, peer: SocketAddr, ms: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(ms));
    loop {
        let out = tokio::select! {
            _ = tick.tick() => h.with(Sync::alive),
            () = h.resync.notified() => vec![h.with(Sync::resync_request)],
        };
        send_all(&h, &sock, peer, out).await;
    }
}

/// Paces a dump: waits while more than half the queue (`cap`) is unacknowledged;
/// `false` when that lasted longer than `stall` (the dump is given up).
async fn pace(h: &HaHandle, cap: usize, stall: Duration) -> bool {
    let start = Instant::now();
    while h.with(|s| s.queued()) > cap / 2 {
        if start.elapsed() > stall {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// A peer's RESYNC: our table (paged listing, entries from the peer left out) as UPDATE
/// records through the reliable sender, paced so the queue never overflows.
async fn dump_task(
    h: Arc<HaHandle>,
    client: Arc<ControlClient>,
    sock: Arc<tokio::net::UdpSocket>,
    peer: SocketAddr,
    wake: Arc<tokio::sync::Notify>,
) {
    let (cap, stall) = h.with(|s| {
        let c = s.config();
        (c.queue, DUMP_STALL + Duration::from_millis(3 * c.alive_ms))
    });
    loop {
        wake.notified().await;
        h.with(|s| s.counters_mut().resyncs_served += 1);
        let mut cursor = None;
        let ok = 'dump: loop {
            let page = client
                .call(Request::ConntrackList {
                    filter: CtFilter::default(),
                    cursor: cursor.take(),
                    limit: DUMP_PAGE.min(MAX_PAGE),
                })
                .await;
            let Ok(Response::ConntrackPage {
                entries,
                next_cursor,
            }) = page
            else {
                break 'dump false;
            };
            for e in &entries {
                if !pace(&h, cap, stall).await {
                    break 'dump false;
                }
                if let Some(d) = h.with(|s| s.dump_entry(e)) {
                    send_all(&h, &sock, peer, vec![d]).await;
                }
            }
            match next_cursor {
                Some(c) => cursor = Some(c),
                None => break 'dump true,
            }
        };
        // Then the expectations (at most `nf_conntrack_expect_max`, one listing).
        let ok = ok
            && match client
                .call(Request::ConntrackExpect {
                    counters_only: false,
                })
                .await
            {
                Ok(Response::ConntrackExpect(l)) => {
                    let mut ok = true;
                    for x in &l.expectations {
                        ok = pace(&h, cap, stall).await;
                        if !ok {
                            break;
                        }
                        if let Some(d) = h.with(|s| s.dump_expect(x)) {
                            send_all(&h, &sock, peer, vec![d]).await;
                        }
                    }
                    ok
                }
                _ => false,
            };
        let tail = h.with(|s| {
            if !ok {
                s.counters_mut().resyncs_aborted += 1;
            }
            s.flush()
        });
        send_all(&h, &sock, peer, tail.into_iter().collect()).await;
    }
}

#[cfg(test)]
mod tests;
