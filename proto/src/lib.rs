//! The control-socket protocol spoken between `fwd` (server) and `mgmt` / `fwctl`
//! (clients). See `docs/control-protocol.md`.
//!
//! Transport: a Unix stream socket (root-only, mode 0600). Framing: one JSON document per
//! line (JSON Lines), at most [`MAX_LINE`] bytes. Every request carries the protocol version
//! and a client-chosen id that the response echoes:
//!
//! ```text
//! -> {"v":1,"id":7,"request":{"op":"conntrack_count"}}
//! <- {"v":1,"id":7,"result":{"type":"count","count":1234}}
//! <- {"v":1,"id":8,"error":{"code":"bad_ruleset","message":"unknown statement","line":3,"column":5}}
//! ```
//!
//! A `subscribe` request turns the connection into an event stream: after the
//! `subscribed` result, the server writes one [`EventLine`] per line until the client
//! closes the connection.
//!
//! These types are plain data transfer objects with no dependency on the data plane's
//! internals, so `mgmt` (which must not link DPDK) uses them as they are. The crate depends
//! on serde and serde_json only; its `openapi` feature derives `utoipa::ToSchema` for the
//! document fwmgmt publishes. `fwd` re-exports it as `dataplane::control::proto`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. A request with another version is answered with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest accepted line in bytes (a ruleset of 10 000 rules fits comfortably).
pub const MAX_LINE: usize = 16 << 20;

/// Largest page a `conntrack_list` may ask for.
pub const MAX_PAGE: u32 = 10_000;

/// A request line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestEnvelope {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// Client-chosen id echoed in the response.
    pub id: u64,
    pub request: Request,
}

/// A response line: exactly one of `result` / `error` is present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseEnvelope {
    pub v: u32,
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Response>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ControlError>,
}

impl ResponseEnvelope {
    /// A successful response to request `id`.
    pub fn ok(id: u64, result: Response) -> Self {
        ResponseEnvelope {
            v: PROTOCOL_VERSION,
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failed response to request `id`.
    pub fn err(id: u64, error: ControlError) -> Self {
        ResponseEnvelope {
            v: PROTOCOL_VERSION,
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The result, or the error.
    pub fn into_result(self) -> Result<Response, ControlError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Err(ControlError::new(
                ErrorCode::Internal,
                "response carries neither result nor error",
            )),
        }
    }
}

/// What a client can ask `fwd`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version, uptime, ruleset generation, worker and port counts.
    Status,
    /// Counters of ports and workers (conntrack `-S` statistics, drops by reason,
    /// handoffs, NAT).
    Stats,
    /// The running ruleset as text and as nftables JSON, with per-rule counters.
    RulesetGet,
    /// Only the per-rule counters of the running ruleset (cheap; for metrics scrapes).
    RuleCounters,
    /// Replace the running ruleset atomically (or only check it with `dry_run`).
    RulesetReplace {
        ruleset: RulesetSource,
        #[serde(default)]
        dry_run: bool,
    },
    /// Apply nft commands (`add rule …`, `delete rule … handle N`, `add element …`,
    /// `table { … }` blocks; docs/rules.md) to the running ruleset as one atomic change
    /// (or only check them with `dry_run`). Rules the commands leave alone keep their
    /// handles and counters. Answers `ruleset_applied`.
    RulesetCommands {
        commands: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// The elements of a named set or map (`nft list set|map`). Answers `set_elements`.
    SetElementsGet {
        /// The table's family; may be left out when one family has a table by that name.
        #[serde(default)]
        family: Option<TableFamilyName>,
        table: String,
        set: String,
    },
    /// Add, create or delete elements of a named set or map (`nft add|create|delete
    /// element`) as one atomic change: a new generation in which every rule keeps its
    /// counter (or only a check with `dry_run`). Answers `ruleset_applied`.
    SetElementsChange {
        #[serde(default)]
        family: Option<TableFamilyName>,
        table: String,
        set: String,
        change: ElementChange,
        elements: Vec<SetElement>,
        #[serde(default)]
        dry_run: bool,
    },
    /// One page of the connection table (`conntrack -L`).
    ConntrackList {
        #[serde(default)]
        filter: CtFilter,
        /// Opaque cursor from the previous page; `None` starts at the beginning.
        #[serde(default)]
        cursor: Option<String>,
        /// Entries per page, 1..=[`MAX_PAGE`].
        limit: u32,
    },
    /// Number of entries matching the filter (`conntrack -C` when unfiltered).
    ConntrackCount {
        #[serde(default)]
        filter: CtFilter,
    },
    /// Delete matching entries (`conntrack -D`). An empty filter is refused unless
    /// `all` is set (that is a flush, `conntrack -F`).
    ConntrackDelete {
        #[serde(default)]
        filter: CtFilter,
        #[serde(default)]
        all: bool,
    },
    /// `conntrack -S`: per worker and total.
    ConntrackStats,
    /// The expectation table (`conntrack -L expect`) and its counters. Answers
    /// `conntrack_expect`.
    ConntrackExpect {
        /// Only the counters (the metrics scrape): the table, up to
        /// `nf_conntrack_expect_max` slots, is not scanned.
        #[serde(default)]
        counters_only: bool,
    },
    /// The tunables by their sysctl names.
    TuningGet,
    /// Change tunables (validated as a whole; nothing is applied if one value is bad).
    TuningSet { values: BTreeMap<String, u64> },
    /// The accepted range of every tunable (what `tuning_set` validates with).
    TuningRanges,
    /// Port list with link state and counters.
    Ports,
    /// Worker list with counters.
    Workers,
    /// State sync (docs/ha.md): apply a peer's connection changes, into the external
    /// cache (`target: cache`, a backup) or into the owning workers (`target: workers`,
    /// active/active). Entries are written without events of their own.
    HaApply {
        changes: Vec<HaChange>,
        target: HaTarget,
    },
    /// Takeover: move every cached entry into the owning workers (they become ours).
    HaCommit,
    /// External cache size and the counters of `ha_apply` / `ha_commit`.
    HaStatus,
    /// Takeover for an external controller (docs/ha.md): `ha_commit`, then a gratuitous
    /// ARP / unsolicited neighbour advertisement for each service address on the port
    /// that owns it (empty: every address of every port). Idempotent.
    HaTakeover {
        #[serde(default)]
        addresses: Vec<IpAddr>,
    },
    /// State sync's binary form of `ha_apply` (docs/ha.md, "Binary event path"):
    /// `records` is the base64 of sync wire records back to back (as DATA datagrams carry
    /// them, `dataplane/src/ha/wire.rs`), so the daemon hands over what its peer sent
    /// without converting each change. Validated as a whole; an error names the record
    /// (`records[i]`) and its byte offset.
    HaApplyRecords { records: String, target: HaTarget },
    /// Turn this connection into the sync daemon's event stream: one [`RecordBatch`] line
    /// per poll that had events, each holding every local event as a sync wire record.
    /// Events of entries that came from the peer (`SYNCED`) are left out (counted). No
    /// filter: the daemon wants every connection.
    SubscribeRecords,
    /// Turn this connection into a stream of conntrack events (`conntrack -E`).
    Subscribe {
        #[serde(default)]
        filter: CtFilter,
        /// Which event types; empty means all.
        #[serde(default)]
        events: Vec<EventType>,
    },
}

/// A ruleset as sent by a client.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", content = "content", rename_all = "snake_case")]
pub enum RulesetSource {
    /// nftables text syntax (`nft -f`).
    Text(String),
    /// nftables JSON (`nft -j`), `{"nftables":[...]}`.
    #[cfg_attr(feature = "openapi", schema(value_type = NftablesJson))]
    Json(serde_json::Value),
}

/// What `fwd` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Stats(Stats),
    Ruleset(RulesetView),
    RuleCounters {
        generation: u64,
        counters: Vec<RuleCounter>,
    },
    /// Result of a ruleset replace or check.
    RulesetApplied {
        /// The new generation (for a dry run: the generation that is still running).
        generation: u64,
        dry_run: bool,
        /// Number of rules in the ruleset.
        rules: u32,
        /// The running ruleset before the request.
        #[serde(default)]
        before: RulesetSummary,
        /// The ruleset sent (after a replacement: the running one).
        #[serde(default)]
        after: RulesetSummary,
    },
    /// The elements of a named set or map.
    SetElements(SetElementsView),
    ConntrackPage {
        entries: Vec<CtEntry>,
        /// Cursor for the next page; `None` when the listing is complete.
        next_cursor: Option<String>,
    },
    Count {
        count: u64,
    },
    Deleted {
        deleted: u64,
    },
    ConntrackStats(ConntrackStats),
    /// The expectation table.
    ConntrackExpect(ExpectList),
    Tuning {
        values: BTreeMap<String, u64>,
    },
    TuningRanges {
        /// Sysctl name to its inclusive range.
        ranges: BTreeMap<String, TunableRange>,
    },
    Ports {
        ports: Vec<PortStats>,
    },
    Workers {
        workers: Vec<WorkerStats>,
    },
    /// The subscription is active; event lines follow.
    Subscribed,
    /// What `ha_apply` / `ha_commit` did.
    HaApplied(HaCounters),
    HaStatus(HaCounters),
    /// What `ha_takeover` did.
    HaTakeover(HaTakeover),
}

/// The answer to `ha_takeover`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaTakeover {
    /// fwd's state-sync counters after the commit.
    pub counters: HaCounters,
    /// Gratuitous ARP frames sent (IPv4 service addresses).
    pub garp_sent: u64,
    /// Unsolicited neighbour advertisements sent (IPv6 service addresses).
    pub na_sent: u64,
    /// Requested addresses that are none of fwd's own: nothing was announced for them.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub not_local: Vec<IpAddr>,
}

/// nftables JSON as `nft -j` reads and writes it: `{"nftables": [...]}` (libnftables-json(5));
/// the objects are checked by fwd, which answers `bad_ruleset` with the JSON path.
#[cfg(feature = "openapi")]
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code, reason = "a schema, never built")]
pub struct NftablesJson {
    #[schema(value_type = Vec<Object>)]
    nftables: (),
}

/// The inclusive range a tunable accepts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunableRange {
    pub min: u64,
    pub max: u64,
}

/// What a ruleset holds: how many tables, chains and rules.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesetSummary {
    pub tables: u32,
    pub chains: u32,
    pub rules: u32,
}

/// Stable error codes. Names are part of the API (mgmt maps them to HTTP statuses).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not a valid request (JSON syntax, unknown field, wrong type).
    BadRequest,
    /// The request's protocol version is not spoken here.
    UnsupportedVersion,
    /// The ruleset does not parse or compile (line and column given).
    BadRuleset,
    /// A conntrack filter is malformed.
    BadFilter,
    /// A tunable name is unknown or its value out of range.
    BadTunable,
    /// An unfiltered delete without `all`.
    RefusedUnfiltered,
    /// The cursor is malformed or stale.
    BadCursor,
    /// A worker did not answer in time (its command ring is full or it is stuck).
    WorkerTimeout,
    /// A bounded resource is in use (the event subscriptions); try again later.
    Busy,
    /// The persisted state could not be written; the change was not applied.
    Persist,
    /// Anything else.
    Internal,
    /// What the request names does not exist (a table, a set, an element to delete).
    NotFound,
    /// The request conflicts with what exists (an element that is there already).
    Conflict,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
    /// 1-based line of a ruleset error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column of a ruleset error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// Field a request error refers to (a tunable name, a filter key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for ControlError {}

impl ControlError {
    /// An error without a location.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
            line: None,
            column: None,
            field: None,
        }
    }

    /// The same error pointing at a ruleset line and column.
    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// The same error naming the request field it is about.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// Filter for conntrack list/count/delete/subscribe, after `conntrack`'s options. Every
/// given field must match (AND); an empty filter matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtFilter {
    /// Original source address or prefix (`-s`), e.g. `198.18.1.2` or `198.18.1.0/24`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Original destination address or prefix (`-d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// Reply source (`-r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_src: Option<String>,
    /// Reply destination (`-q`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_dst: Option<String>,
    /// Original source port (`--sport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Original destination port (`--dport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// Protocol name (`tcp`, `udp`, `icmp`, `icmpv6`, ...) or number (`-p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// TCP state name as conntrack prints it (`ESTABLISHED`, `TIME_WAIT`, ...; `--state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Connection mark (`-m`), optionally `value/mask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
    /// Zone (`-w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<u16>,
    /// `ipv4` or `ipv6` (`-f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Status flag that must be set (`ASSURED`, `SEEN_REPLY`, `SRC_NAT`, `DST_NAT`;
    /// `--status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl CtFilter {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == CtFilter::default()
    }
}

/// One direction of a connection, as `conntrack -L` prints it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtTuple {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.18.1.2"))]
    pub src: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.18.2.2"))]
    pub dst: IpAddr,
    /// TCP/UDP ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP/ICMPv6 type, code and identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    /// Packets and bytes seen in this direction.
    pub packets: u64,
    pub bytes: u64,
}

/// One connection-table entry (`conntrack -L` line).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEntry {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Protocol name (`tcp`, `udp`, `icmp`, `icmpv6`, or the number for others).
    pub proto: String,
    pub proto_num: u8,
    /// TCP state (`ESTABLISHED`, ...); absent for other protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Seconds until the entry expires.
    pub timeout: u64,
    pub orig: CtTuple,
    pub reply: CtTuple,
    /// Status flags: `ASSURED`, `SEEN_REPLY`, `UNREPLIED`, `SRC_NAT`, `DST_NAT`.
    pub status: Vec<String>,
    pub mark: u32,
    pub zone: u16,
    /// Worker that owns the entry.
    pub worker: u16,
    /// TCP window tracking (state sync carries it, docs/ha.md); absent for other
    /// protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_window: Option<CtTcpWindow>,
}

/// Per-connection TCP state (Linux `struct ip_ct_tcp` without the retransmission
/// counter), 48 bytes: the two sides (`tcp.rs`'s `Side`) are stored split so no padding is wasted. The
/// fields are public because state sync carries them whole (docs/ha.md): `win[d]` is
/// `end, maxend, maxwin, maxack` of direction `d`, then the window scales, the per-side
/// flags and the last-segment fields used to spot retransmissions.
// The protocol's copy of the tracker's `dataplane::conntrack::TcpWindow` (the data plane
// converts between the two, field by field); the doc text above is the schema's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TcpWindow))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtTcpWindow {
    pub win: [[u32; 4]; 2],
    pub scale: [u8; 2],
    pub flags: [u8; 2],
    pub last_end: u32,
    pub last_win: u16,
    pub last_index: u8,
    pub last_dir: u8,
    pub last_wscale: u8,
    pub last_flags: u8,
}

/// One change of a sync peer's table: the event kind and the entry as its event said.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaChange {
    #[serde(rename = "event")]
    pub kind: EventType,
    pub entry: CtEntry,
}

/// Where `ha_apply` puts synced entries.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaTarget {
    /// The external cache, outside the workers, until `ha_commit` (backup role).
    Cache,
    /// The owning workers' tables at once (active/active role).
    Workers,
}

/// State-sync counters of fwd's side (the daemon keeps the transport's own).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaCounters {
    /// Entries in the external cache now.
    pub cache_entries: u64,
    /// Changes applied to the cache or the workers.
    pub applied: u64,
    /// Changes refused (tuple clash, table full, cache full, unknown destroy).
    pub failed: u64,
    /// Entries moved from the cache into the workers by `ha_commit`.
    pub committed: u64,
    /// `ha_commit` requests served.
    pub commits: u64,
}

/// The kinds of conntrack events (`conntrack -E`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    New,
    Update,
    Destroy,
}

/// One line of a `subscribe_records` stream: a batch of conntrack events as sync wire
/// records (`dataplane/src/ha/wire.rs`), base64 of the records back to back.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBatch {
    pub records: String,
    /// Records in `records`.
    pub count: u64,
    /// Events lost since the previous line (slow reader, a worker's full event ring).
    #[serde(default)]
    pub lost: u64,
    /// Events of `SYNCED` entries (the peer's) left out since the previous line.
    #[serde(default)]
    pub synced_skipped: u64,
}

/// One event line of a subscription.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    #[serde(rename = "event")]
    pub kind: EventType,
    /// Milliseconds since the Unix epoch when the event was read from the worker.
    pub timestamp_ms: u64,
    pub entry: CtEntry,
    /// Events this subscriber lost because it read too slowly or a worker's event ring
    /// overflowed, since the previous line.
    #[serde(default)]
    pub lost: u64,
}

/// `conntrack -S` counters of one worker (or their sum).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtCounters {
    pub found: u64,
    pub invalid: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub error: u64,
    pub search_restart: u64,
    /// Live entries.
    pub entries: u64,
    /// The worker's share of `nf_conntrack_max`.
    pub max: u64,
}

/// `conntrack -S` per worker and total.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackStats {
    pub workers: Vec<CtCounters>,
    pub total: CtCounters,
}

/// One expected connection (`conntrack -L expect` line). The source port is a wildcard
/// (`sport` 0); the other fields are matched exactly.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtExpectation {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Protocol name (`tcp`, `udp`) and number of the expected connection.
    pub proto: String,
    pub proto_num: u8,
    /// Seconds until the expectation expires.
    pub timeout: u64,
    /// Who will open the expected connection, to where.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "203.0.113.9"))]
    pub src: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.51.100.2"))]
    pub dst: IpAddr,
    /// Always 0: any source port.
    pub sport: u16,
    pub dport: u16,
    /// The master (control) connection's original tuple.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.51.100.2"))]
    pub master_src: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "203.0.113.9"))]
    pub master_dst: IpAddr,
    pub master_sport: u16,
    pub master_dport: u16,
    pub master_proto_num: u8,
    /// The helper that made it (`ftp`, `tftp`).
    pub helper: String,
    /// Worker that holds the master.
    pub master_worker: u16,
}

/// The expectation table's counters (Linux's `conntrack -S` expectation names where
/// they exist).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectCounters {
    /// Expectations added (`expect_create`).
    pub create: u64,
    /// Connections that matched an expectation (`expect_new`).
    pub new: u64,
    /// Expectations removed unused: replaced, expired or flushed (`expect_delete`).
    pub delete: u64,
    /// Announcements refused: `nf_conntrack_expect_max` reached.
    pub full: u64,
    /// Held now.
    pub count: u64,
    /// `nf_conntrack_expect_max`.
    pub max: u64,
}

/// A worker's helper counters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelperWorkerCounters {
    /// Announcements (PORT, EPRT, 227, 229, TFTP requests) that made an expectation.
    pub announced: u64,
    /// Announcement lines that did not parse or named another address than the sender's.
    pub malformed: u64,
    /// First packets that matched an expectation (`ct state related`).
    pub related: u64,
}

/// The answer to `conntrack_expect`: every live expectation, the table's counters and
/// each worker's helper counters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectList {
    pub expectations: Vec<CtExpectation>,
    pub counters: ExpectCounters,
    /// Per worker, by worker index (empty when the workers do not report them).
    #[serde(default)]
    pub workers: Vec<HelperWorkerCounters>,
}

/// General state of `fwd`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `fwd` version.
    pub version: String,
    pub protocol: u32,
    pub uptime_s: u64,
    pub ruleset_generation: u64,
    pub workers: u32,
    pub ports: u32,
    /// DPDK version string.
    pub dpdk: String,
}

/// One port.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub name: String,
    pub port_id: u16,
    pub driver: String,
    pub mac: String,
    pub link_up: bool,
    pub speed_mbps: u32,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// One worker lcore.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub worker: u16,
    pub lcore: u32,
    /// Packets received from the worker's RX queues.
    pub rx_packets: u64,
    /// Packets transmitted by the worker.
    pub tx_packets: u64,
    /// Packets dropped, by `dataplane::DropReason` name.
    pub drops: BTreeMap<String, u64>,
    /// Packets this worker handed to the owning worker / received from others / lost
    /// because the handoff ring was full.
    pub handoff_tx: u64,
    pub handoff_rx: u64,
    pub handoff_drop: u64,
    /// NAT allocations that failed because no port was free (`drops.nat_port_exhausted`).
    pub nat_port_exhausted: u64,
    /// Conntrack events lost because the worker's event ring was full.
    pub events_dropped: u64,
    /// TSC cycles spent on loop iterations that carried packets, and all cycles since the
    /// worker started: `busy_cycles / total_cycles` is the busy ratio.
    pub busy_cycles: u64,
    pub total_cycles: u64,
    pub ct: CtCounters,
    /// Packets routed out of a port.
    #[serde(default)]
    pub forwarded: u64,
    /// Packets addressed to the appliance (past the input chain).
    #[serde(default)]
    pub local_in: u64,
    /// Echo replies sent.
    #[serde(default)]
    pub echo_replies: u64,
    /// ICMP/ICMPv6 errors sent (time exceeded, unreachable, packet too big).
    #[serde(default)]
    pub icmp_errors: u64,
    /// ICMP/ICMPv6 errors not sent: the worker's share of the rate limit (1000/s, burst
    /// 50 for the appliance) was spent. The packet is still dropped under its reason.
    #[serde(default)]
    pub icmp_ratelimited: u64,
    /// TCP resets sent by `reject`.
    #[serde(default)]
    pub tcp_resets: u64,
    /// Packets whose filter verdict came from the connection's verdict cache.
    #[serde(default)]
    pub verdict_cache_hits: u64,
    /// Packets given to the slow path (ARP, ND, unresolved next hops).
    #[serde(default)]
    pub slow_path: u64,
    /// Packets the vector fast path forwarded from a connection's recipe (also in
    /// `forwarded`).
    #[serde(default)]
    pub fast_path: u64,
    /// Fast-path recipes the pipeline built (one per connection direction, again after
    /// every ruleset, route, neighbour or tunables change).
    #[serde(default)]
    pub recipes_built: u64,
    /// First-packet cache lookups (one per hook a new connection's first packet reaches)
    /// answered from the cache of first-packet classes, without evaluating the rules.
    #[serde(default)]
    pub first_cache_hits: u64,
    /// First-packet cache lookups that evaluated the rules (and filled the cache where
    /// the outcome may be cached).
    #[serde(default)]
    pub first_cache_misses: u64,
    /// NAT bindings made (source and destination NAT).
    #[serde(default)]
    pub nat_allocations: u64,
    /// Source-NAT bindings that kept the original source port (or ICMP id).
    #[serde(default)]
    pub nat_ports_kept: u64,
    /// Bindings that searched their port range in the worker's port pools.
    #[serde(default)]
    pub nat_ports_searched: u64,
    /// Port-pool bitmap words the searches read (64 ports each): divided by
    /// `nat_ports_searched`, the cost of a search.
    #[serde(default)]
    pub nat_pool_words_scanned: u64,
    /// Connections to a new (address, protocol) refused because every port-pool slot
    /// held ports (counted in `nat_port_exhausted` too).
    #[serde(default)]
    pub nat_pools_full: u64,
    /// Connections the timer wheel deleted (expired).
    #[serde(default)]
    pub ct_expired: u64,
    /// Expiry ticks run (about one per millisecond): `ct_expired` / `ct_expire_ticks`
    /// is the number deleted per tick.
    #[serde(default)]
    pub ct_expire_ticks: u64,
    /// IP reassembly, per family (`ipv4.`, `ipv6.`): Linux's SNMP counters
    /// (`ReasmReqds`, `ReasmOKs`, `ReasmFails`, `ReasmTimeout`, `ReasmOverlaps`, IPv6 with
    /// the `Ip6` prefix), `ReasmEvictions`, and the fragments dropped by reason
    /// (`frag_overlap`, `frag_duplicate`, `frag_malformed`, `frag_oversize`,
    /// `frag_too_many`, `frag_no_memory`, `frag_timeout`, `frag_evicted`).
    #[serde(default)]
    pub frag: BTreeMap<String, u64>,
}

/// All counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub ports: Vec<PortStats>,
    pub workers: Vec<WorkerStats>,
    pub ruleset_generation: u64,
}

/// Counters of one rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCounter {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// The family of an nftables table.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableFamilyName {
    Ip,
    Ip6,
    Inet,
}

/// What an element change does: `nft add element` (an element that is there with the
/// same data is left alone), `nft create element` (an element that is there is a
/// conflict), `nft delete element` (an element that is not there is not found).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementChange {
    Add,
    Create,
    Delete,
}

/// One element of a named set or map, its values written as nft writes them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetElement {
    /// The key: one value (`198.18.0.1`, `198.18.0.0/24`, `22`, `"eth0"`) or a
    /// concatenation (`198.18.0.1 . 22`).
    pub key: String,
    /// A map element's data: a verdict (`accept`, `jump web`) or values
    /// (`198.18.1.2 . 8080`). Absent for a set; may be left out to delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The element's timeout in seconds (`timeout 10m`): only elements of a set or map
    /// with `flags timeout` or a `timeout` have one; absent, such an element takes the
    /// set's or map's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Seconds until the element expires (listings of sets and maps with timeouts);
    /// refused when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// A named set or map and its elements (`nft list set|map`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetElementsView {
    /// The running generation.
    pub generation: u64,
    pub family: TableFamilyName,
    pub table: String,
    pub set: String,
    /// `set`, `map`, or `meter` (a meter, listed as `nft list meter` writes it).
    pub keyword: String,
    /// The key type (`ipv4_addr`, `ipv4_addr . inet_service`).
    pub key_type: String,
    /// A map's data type (`verdict`, `ipv4_addr . inet_service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// The set's flags (`interval`).
    pub flags: Vec<String>,
    pub elements: Vec<SetElement>,
    /// The set as `nft list set` prints it.
    pub text: String,
}

/// The running ruleset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RulesetView {
    pub generation: u64,
    /// nftables text, with `counter packets N bytes M` filled in.
    pub text: String,
    /// nftables JSON (`nft -j list ruleset`).
    #[cfg_attr(feature = "openapi", schema(value_type = NftablesJson))]
    pub json: serde_json::Value,
    pub counters: Vec<RuleCounter>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        let req = RequestEnvelope {
            v: PROTOCOL_VERSION,
            id: 7,
            request: Request::ConntrackList {
                filter: CtFilter {
                    proto: Some("tcp".into()),
                    ..CtFilter::default()
                },
                cursor: None,
                limit: 100,
            },
        };
        let line = serde_json::to_string(&req).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":7,"request":{"op":"conntrack_list","filter":{"proto":"tcp"},"cursor":null,"limit":100}}"#
        );
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&line).unwrap(), req);
    }

    #[test]
    fn unknown_fields_and_ops_are_rejected() {
        assert!(
            serde_json::from_str::<RequestEnvelope>(r#"{"v":1,"id":1,"request":{"op":"reboot"}}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<RequestEnvelope>(
                r#"{"v":1,"id":1,"request":{"op":"conntrack_count","filter":{"srcc":"1.2.3.4"}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn response_carries_result_or_error() {
        let ok = ResponseEnvelope::ok(3, Response::Count { count: 12 });
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":3,"result":{"type":"count","count":12}}"#
        );
        let back: ResponseEnvelope = serde_json::from_str(&line).unwrap();
        assert_eq!(back.into_result().unwrap(), Response::Count { count: 12 });

        let err = ResponseEnvelope::err(
            4,
            ControlError::new(ErrorCode::BadRuleset, "unexpected token").at(3, 9),
        );
        let line = serde_json::to_string(&err).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":4,"error":{"code":"bad_ruleset","message":"unexpected token","line":3,"column":9}}"#
        );
        let e = serde_json::from_str::<ResponseEnvelope>(&line)
            .unwrap()
            .into_result()
            .unwrap_err();
        assert_eq!(
            (e.code, e.line, e.column),
            (ErrorCode::BadRuleset, Some(3), Some(9))
        );
    }

    #[test]
    fn ruleset_source_formats() {
        let t: RulesetSource =
            serde_json::from_str(r#"{"format":"text","content":"flush ruleset"}"#).unwrap();
        assert_eq!(t, RulesetSource::Text("flush ruleset".into()));
        let j: RulesetSource =
            serde_json::from_str(r#"{"format":"json","content":{"nftables":[]}}"#).unwrap();
        assert!(matches!(j, RulesetSource::Json(_)));
    }
}
