//! OpenAPI schema types: the JSON the API sends and accepts, as Rust types deriving
//! `utoipa::ToSchema`.
//!
//! The data-transfer types live in `dataplane::control::proto` and do not derive
//! `ToSchema` (the data plane does not depend on utoipa). These types mirror them field by
//! field, and the tests below serialize a fully populated proto value, read it back as the
//! mirror type and compare the JSON: a field added to the protocol without being added
//! here fails that test, so the published schema cannot drift from what the API sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One direction of a connection, as `conntrack -L` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CtTuple {
    /// Source address.
    #[schema(value_type = String, example = "198.18.0.2")]
    pub src: std::net::IpAddr,
    /// Destination address.
    #[schema(value_type = String, example = "203.0.113.10")]
    pub dst: std::net::IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_id: Option<u16>,
    /// Packets seen in this direction.
    pub packets: u64,
    /// Bytes seen in this direction.
    pub bytes: u64,
}

/// One connection-table entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CtEntry {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// Protocol name (`tcp`, `udp`, `icmp`, `icmpv6`) or number.
    pub proto: String,
    pub proto_num: u8,
    /// TCP state (`ESTABLISHED`, ...); absent for other protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Seconds until the entry expires.
    pub timeout: u64,
    /// Original direction.
    pub orig: CtTuple,
    /// Reply direction (differs from the reversed original when NAT applies).
    pub reply: CtTuple,
    /// Status flags: `ASSURED`, `SEEN_REPLY`, `UNREPLIED`, `SRC_NAT`, `DST_NAT`.
    pub status: Vec<String>,
    pub mark: u32,
    pub zone: u16,
    /// Worker that owns the entry.
    pub worker: u16,
}

/// One page of `GET /api/v1/conntrack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConntrackPage {
    pub entries: Vec<CtEntry>,
    /// Pass as `cursor` to get the next page; null when the listing is complete.
    pub next_cursor: Option<String>,
}

/// `GET /api/v1/conntrack/count`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Count {
    pub count: u64,
}

/// `DELETE /api/v1/conntrack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    pub deleted: u64,
}

/// `conntrack -S` counters of one worker or their sum.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    /// Share of `nf_conntrack_max`.
    pub max: u64,
}

/// `GET /api/v1/conntrack/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConntrackStats {
    pub workers: Vec<CtCounters>,
    pub total: CtCounters,
}

/// Tunables by sysctl name (`GET`/`PATCH /api/v1/tuning`). Booleans are 0/1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    #[schema(example = json!({"nf_conntrack_max": 262144, "nf_conntrack_tcp_timeout_established": 432000}))]
    pub values: BTreeMap<String, u64>,
}

/// `PATCH /api/v1/tuning` body: sysctl names (the `nf_conntrack_` prefix may be left out)
/// to a non-negative integer, or a boolean for `tcp_loose` / `tcp_be_liberal`. Validated
/// as a whole: nothing is applied if one value is bad.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"nf_conntrack_udp_timeout": 10, "tcp_loose": false}))]
pub struct TuningPatch(pub BTreeMap<String, serde_json::Value>);

/// One port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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

/// `GET /api/v1/ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub ports: Vec<PortStats>,
}

/// One worker lcore, with its busy ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerStats {
    pub worker: u16,
    pub lcore: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Packets dropped, by drop reason name.
    pub drops: BTreeMap<String, u64>,
    pub handoff_tx: u64,
    pub handoff_rx: u64,
    pub handoff_drop: u64,
    pub nat_port_exhausted: u64,
    pub events_dropped: u64,
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
    /// ICMP/ICMPv6 errors sent.
    #[serde(default)]
    pub icmp_errors: u64,
    /// ICMP/ICMPv6 errors not sent because the worker's rate limit was spent.
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
    /// `busy_cycles / total_cycles` (0 when the worker has not run yet). Added by mgmt.
    #[serde(default)]
    pub busy_ratio: f64,
}

/// `GET /api/v1/workers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Workers {
    pub workers: Vec<WorkerStats>,
}

/// Counters of one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleCounter {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub handle: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// `GET /api/v1/ruleset`: the running ruleset, as text and as nftables JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesetView {
    pub generation: u64,
    /// nftables text with `counter packets N bytes M` filled in.
    pub text: String,
    /// nftables JSON (`nft -j list ruleset`).
    #[schema(value_type = Object)]
    pub json: serde_json::Value,
    pub counters: Vec<RuleCounter>,
}

/// `PUT /api/v1/ruleset` and `POST /api/v1/ruleset/check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesetApplied {
    /// The new generation (for a check: the one still running).
    pub generation: u64,
    pub dry_run: bool,
    /// Number of rules.
    pub rules: u32,
}

/// A ruleset sent as JSON: either nftables JSON (`{"nftables":[...]}`) or
/// `{"format":"text"|"json","content":...}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RulesetBody {
    Nftables {
        #[schema(value_type = Vec<Object>)]
        nftables: serde_json::Value,
    },
    Tagged {
        /// `text` or `json`.
        format: String,
        /// nftables text (a string) or nftables JSON (an object).
        #[schema(value_type = Object)]
        content: serde_json::Value,
    },
}

/// The kinds of conntrack events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    New,
    Update,
    Destroy,
}

/// One server-sent event's `data` (the SSE `event:` field carries the type too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    pub event: EventType,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub entry: CtEntry,
    /// Events lost since the previous one (slow reader or full ring).
    #[serde(default)]
    pub lost: u64,
}

/// `GET /readyz` and `GET /api/v1/status`: the state of fwd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub version: String,
    pub protocol: u32,
    pub uptime_s: u64,
    pub ruleset_generation: u64,
    pub workers: u32,
    pub ports: u32,
    pub dpdk: String,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: String,
}

/// Conntrack filters (query parameters), after `conntrack`'s options. All given filters
/// must match; unknown parameters are a 400 `bad_filter`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CtFilterParams {
    /// Original source address or prefix (`-s`).
    pub src: Option<String>,
    /// Original destination address or prefix (`-d`).
    pub dst: Option<String>,
    /// Reply source address or prefix (`-r`).
    pub reply_src: Option<String>,
    /// Reply destination address or prefix (`-q`).
    pub reply_dst: Option<String>,
    /// Original source port.
    pub sport: Option<u16>,
    /// Original destination port.
    pub dport: Option<u16>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, ... or a number.
    pub proto: Option<String>,
    /// TCP state (`ESTABLISHED`, `TIME_WAIT`, ...).
    pub state: Option<String>,
    /// Mark, `value` or `value/mask` (decimal or 0x hex).
    pub mark: Option<String>,
    /// Zone.
    pub zone: Option<u16>,
    /// `ipv4` or `ipv6`.
    pub family: Option<String>,
    /// Status flag that must be set (`ASSURED`, `SEEN_REPLY`, `UNREPLIED`, `SRC_NAT`, `DST_NAT`).
    pub status: Option<String>,
}

/// Paging parameters of `GET /api/v1/conntrack`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries per page, 1..=10000 (default 100).
    pub limit: Option<u32>,
}

/// Parameter of `DELETE /api/v1/conntrack`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Required (`true`) to delete with no filter: a flush.
    pub all: Option<bool>,
}

/// Parameter of `GET /api/v1/conntrack/events`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Comma-separated event types (`NEW,UPDATE,DESTROY`); all when absent.
    pub events: Option<String>,
}

/// Parameter of `GET /api/v1/ruleset`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesetParams {
    /// `text` for the nftables text alone (text/plain); JSON otherwise.
    pub format: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dataplane::control::proto;
    use serde::de::DeserializeOwned;

    /// Serializes `value`, reads it as `M`, serializes again: both JSON must be equal.
    fn mirrors<P: Serialize, M: Serialize + DeserializeOwned>(value: &P) {
        let a = serde_json::to_value(value).unwrap();
        let m: M = serde_json::from_value(a.clone())
            .unwrap_or_else(|e| panic!("schema type rejects the protocol's JSON: {e}\n{a}"));
        assert_eq!(serde_json::to_value(&m).unwrap(), a);
    }

    pub(crate) fn full_entry() -> proto::CtEntry {
        let t = |a: &str, b: &str| proto::CtTuple {
            src: a.parse().unwrap(),
            dst: b.parse().unwrap(),
            sport: Some(1),
            dport: Some(2),
            icmp_type: Some(8),
            icmp_code: Some(0),
            icmp_id: Some(9),
            packets: 3,
            bytes: 4,
        };
        proto::CtEntry {
            family: "ipv4".into(),
            proto: "tcp".into(),
            proto_num: 6,
            state: Some("ESTABLISHED".into()),
            timeout: 5,
            orig: t("198.18.0.1", "203.0.113.1"),
            reply: t("203.0.113.1", "198.18.0.1"),
            status: vec!["ASSURED".into()],
            mark: 7,
            zone: 1,
            worker: 2,
        }
    }

    fn full_counters() -> proto::CtCounters {
        proto::CtCounters {
            found: 1,
            invalid: 2,
            insert: 3,
            insert_failed: 4,
            drop: 5,
            early_drop: 6,
            error: 7,
            search_restart: 8,
            entries: 9,
            max: 10,
        }
    }

    #[test]
    fn schema_types_mirror_the_protocol_types() {
        mirrors::<_, CtEntry>(&full_entry());
        mirrors::<_, CtCounters>(&full_counters());
        mirrors::<_, ConntrackStats>(&proto::ConntrackStats {
            workers: vec![full_counters()],
            total: full_counters(),
        });
        mirrors::<_, EventLine>(&proto::EventLine {
            kind: proto::EventType::Destroy,
            timestamp_ms: 1,
            entry: full_entry(),
            lost: 2,
        });
        mirrors::<_, PortStats>(&proto::PortStats {
            name: "lan".into(),
            link_up: true,
            ipackets: 1,
            ..Default::default()
        });
        mirrors::<_, RuleCounter>(&proto::RuleCounter {
            family: "inet".into(),
            table: "t".into(),
            chain: "c".into(),
            handle: 1,
            packets: 2,
            bytes: 3,
        });
        mirrors::<_, RulesetView>(&proto::RulesetView {
            generation: 1,
            text: "table inet t {}".into(),
            json: serde_json::json!({"nftables": []}),
            counters: vec![],
        });
        mirrors::<_, Status>(&proto::Status {
            version: "0.1".into(),
            protocol: 1,
            uptime_s: 2,
            ruleset_generation: 3,
            workers: 4,
            ports: 5,
            dpdk: "22.11".into(),
        });
        // The worker view is the protocol's plus `busy_ratio`.
        let w = proto::WorkerStats {
            worker: 1,
            drops: [("ttl_exceeded".to_string(), 3)].into(),
            ct: full_counters(),
            icmp_ratelimited: 4,
            verdict_cache_hits: 5,
            ..Default::default()
        };
        let mut v = serde_json::to_value(&w).unwrap();
        v["busy_ratio"] = serde_json::json!(0.0);
        let m: WorkerStats = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), v);
    }

    #[test]
    fn response_payloads_mirror_the_protocol_variants() {
        // The API returns the variant's fields without the `type` tag.
        let strip = |r: proto::Response| {
            let mut v = serde_json::to_value(r).unwrap();
            v.as_object_mut().unwrap().remove("type");
            v
        };
        let page = strip(proto::Response::ConntrackPage {
            entries: vec![full_entry()],
            next_cursor: Some("x".into()),
        });
        let m: ConntrackPage = serde_json::from_value(page.clone()).unwrap();
        assert_eq!(serde_json::to_value(m).unwrap(), page);
        let applied = strip(proto::Response::RulesetApplied {
            generation: 2,
            dry_run: true,
            rules: 3,
        });
        let m: RulesetApplied = serde_json::from_value(applied.clone()).unwrap();
        assert_eq!(serde_json::to_value(m).unwrap(), applied);
    }
}
