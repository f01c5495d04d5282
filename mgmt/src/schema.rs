//! OpenAPI pieces of the API's own: the envelopes mgmt wraps fwd's answers in, the query
//! parameters, and the schemas generated from dataplane's tables.
//!
//! The data types themselves are the control protocol's (`fwd_proto`,
//! which derives `utoipa::ToSchema` behind its `openapi` feature): the document describes
//! the very types the handlers serialize, so the two cannot drift. What is here references
//! them; nothing mirrors them.

use std::collections::BTreeMap;

use fwd_proto as proto;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};
use utoipa::{IntoParams, ToSchema};

/// Largest request body fwmgmt reads (a ruleset; fwd holds it to its own
/// `limits.ruleset_bytes` too). Bigger bodies are refused with 413 before being read.
pub const MAX_BODY: usize = proto::MAX_LINE - 4096;
/// Largest `PATCH /api/v1/tuning` body.
pub const MAX_TUNING_BODY: usize = 64 << 10;

/// One page of `GET /api/v1/conntrack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConntrackPage {
    pub entries: Vec<proto::CtEntry>,
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

/// Tunables by sysctl name (`GET`/`PATCH /api/v1/tuning`). Booleans are 0/1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    #[schema(example = json!({"nf_conntrack_max": 262144, "nf_conntrack_tcp_timeout_established": 432000}))]
    pub values: BTreeMap<String, u64>,
}

/// `GET /api/v1/ports`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub ports: Vec<proto::PortStats>,
}

/// One worker lcore: fwd's counters plus the busy ratio mgmt derives from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    #[serde(flatten)]
    pub stats: proto::WorkerStats,
    /// `busy_cycles / total_cycles` (0 when the worker has not run yet).
    pub busy_ratio: f64,
}

impl std::ops::Deref for WorkerView {
    type Target = proto::WorkerStats;
    fn deref(&self) -> &proto::WorkerStats {
        &self.stats
    }
}

/// `GET /api/v1/workers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workers {
    pub workers: Vec<WorkerView>,
}

/// `PUT /api/v1/ruleset` and `POST /api/v1/ruleset/check`: what the ruleset holds before
/// and after (for a check: the running one and the one sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesetApplied {
    /// The new generation (for a check: the one still running).
    pub generation: u64,
    pub dry_run: bool,
    /// Number of rules of the ruleset sent.
    pub rules: u32,
    pub before: proto::RulesetSummary,
    pub after: proto::RulesetSummary,
}

/// `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: HealthStatus,
}

/// The one value of [`Health::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// A ruleset sent as JSON: nftables JSON, or `{"format": "text"|"json", "content": ...}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "a schema, never built")]
#[serde(untagged)]
pub enum RulesetBody {
    Nftables(proto::NftablesJson),
    Tagged(proto::RulesetSource),
}

// Patterns of the query parameters: exactly what `filter::parse` accepts.
const DEC_OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const H16: &str = "[0-9a-fA-F]{1,4}";

/// An IPv4 address (`198.18.0.1`).
fn ipv4() -> String {
    format!("{DEC_OCTET}(\\.{DEC_OCTET}){{3}}")
}

/// An IPv6 address, RFC 3986's `IPv6address` (zones excluded).
fn ipv6() -> String {
    let ls32 = format!("({H16}:{H16}|{})", ipv4());
    let h = |n: usize| format!("({H16}:){{{n}}}");
    let upto = |n: usize| format!("(({H16}:){{0,{n}}}{H16})?");
    [
        format!("{}{ls32}", h(6)),
        format!("::{}{ls32}", h(5)),
        format!("({H16})?::{}{ls32}", h(4)),
        format!("{}::{}{ls32}", upto(1), h(3)),
        format!("{}::{}{ls32}", upto(2), h(2)),
        format!("{}::{H16}:{ls32}", upto(3)),
        format!("{}::{ls32}", upto(4)),
        format!("{}::{H16}", upto(5)),
        format!("{}::", upto(6)),
    ]
    .join("|")
}

/// An address with an optional prefix length, IPv4 or IPv6.
pub fn prefix_pattern() -> String {
    format!(
        "^({})(/(3[0-2]|[12]?[0-9]))?$|^({})(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?$",
        ipv4(),
        ipv6()
    )
}

/// A `u32` in decimal or `0x` hex (leading zeros allowed).
fn u32_pattern() -> String {
    let dec = [
        "[0-9]{1,9}",
        "[1-3][0-9]{9}",
        "4[01][0-9]{8}",
        "42[0-8][0-9]{7}",
        "429[0-3][0-9]{6}",
        "4294[0-8][0-9]{5}",
        "42949[0-5][0-9]{4}",
        "429496[0-6][0-9]{3}",
        "4294967[01][0-9]{2}",
        "42949672[0-8][0-9]",
        "429496729[0-5]",
    ]
    .join("|");
    format!("(0*({dec})|0[xX]0*[0-9a-fA-F]{{1,8}})")
}

/// `value` or `value/mask`.
pub fn mark_pattern() -> String {
    let n = u32_pattern();
    format!("^{n}(/{n})?$")
}

/// A protocol number 0..=255 (names are in the enum beside it).
pub const PROTO_NUMBER: &str = "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$";
/// Comma-separated event types.
pub const EVENTS_PATTERN: &str = "^(NEW|UPDATE|DESTROY)(,(NEW|UPDATE|DESTROY))*$";

/// A string parameter: one of `names` or matching `pattern`.
fn names_or(names: &[&str], pattern: Option<&str>) -> RefOr<Schema> {
    let e = ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(names.iter().copied()));
    match pattern {
        None => e.into(),
        Some(p) => OneOfBuilder::new()
            .item(e)
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .pattern(Some(p)),
            )
            .into(),
    }
}

fn string_pattern(p: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .pattern(Some(p))
        .into()
}

fn prefix_schema() -> RefOr<Schema> {
    string_pattern(&prefix_pattern())
}
fn mark_schema() -> RefOr<Schema> {
    string_pattern(&mark_pattern())
}
fn proto_schema() -> RefOr<Schema> {
    names_or(crate::filter::PROTO_NAMES, Some(PROTO_NUMBER))
}
fn state_schema() -> RefOr<Schema> {
    names_or(crate::filter::TCP_STATES, None)
}
fn status_schema() -> RefOr<Schema> {
    names_or(crate::filter::STATUS_FLAGS, None)
}
fn events_schema() -> RefOr<Schema> {
    string_pattern(EVENTS_PATTERN)
}

/// The address families of `family=`.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FamilyParam {
    Ipv4,
    Ipv6,
}

/// `format=` of `GET /api/v1/ruleset`.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RulesetFormat {
    Text,
    Json,
}

/// Conntrack filters (query parameters), after `conntrack`'s options. All given filters
/// must match; an unknown parameter is a 400 `bad_filter`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CtFilterParams {
    /// Original source address or prefix (`-s`).
    #[param(schema_with = prefix_schema)]
    pub src: Option<String>,
    /// Original destination address or prefix (`-d`).
    #[param(schema_with = prefix_schema)]
    pub dst: Option<String>,
    /// Reply source address or prefix (`-r`).
    #[param(schema_with = prefix_schema)]
    pub reply_src: Option<String>,
    /// Reply destination address or prefix (`-q`).
    #[param(schema_with = prefix_schema)]
    pub reply_dst: Option<String>,
    /// Original source port.
    #[param(minimum = 0, maximum = 65535)]
    pub sport: Option<u16>,
    /// Original destination port.
    #[param(minimum = 0, maximum = 65535)]
    pub dport: Option<u16>,
    /// Protocol name or number.
    #[param(schema_with = proto_schema)]
    pub proto: Option<String>,
    /// TCP state.
    #[param(schema_with = state_schema)]
    pub state: Option<String>,
    /// Mark, `value` or `value/mask` (decimal or 0x hex).
    #[param(schema_with = mark_schema)]
    pub mark: Option<String>,
    /// Zone.
    #[param(minimum = 0, maximum = 65535)]
    pub zone: Option<u16>,
    pub family: Option<FamilyParam>,
    /// Status flag that must be set.
    #[param(schema_with = status_schema)]
    pub status: Option<String>,
}

/// Paging parameters of `GET /api/v1/conntrack`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries per page (default 100).
    #[param(minimum = 1, maximum = 10000)]
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
    /// Comma-separated event types; all when absent.
    #[param(schema_with = events_schema)]
    pub events: Option<String>,
}

/// Parameter of `GET /api/v1/ruleset`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesetParams {
    /// `text` for the nftables text alone (text/plain); JSON otherwise.
    pub format: Option<RulesetFormat>,
}

/// Parameter of the `/api/v1/sets/{table}/{set}/elements` routes.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SetParams {
    /// The table's family; may be left out when one family has a table by that name.
    pub family: Option<proto::TableFamilyName>,
}

/// The body of `POST` and `DELETE /api/v1/sets/{table}/{set}/elements`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElementsBody {
    /// The elements, applied in order, all of them or none.
    #[schema(min_items = 1)]
    pub elements: Vec<proto::SetElement>,
    /// `POST` only: `nft create element` (an element that is there is a 409) instead of
    /// `nft add element` (an element that is there with the same data is left alone).
    #[serde(default)]
    pub create: bool,
}

/// The `PATCH /api/v1/tuning` body, generated from the ranges fwd validates with (`ranges`:
/// sysctl name, min, max): at least one of the names, each an integer in its range
/// (`nf_conntrack_tcp_loose` and `nf_conntrack_tcp_be_liberal` also as a boolean), nothing
/// else. Applied all or nothing.
pub fn tuning_patch_schema(ranges: &[(String, u64, u64)]) -> Schema {
    let mut o = ObjectBuilder::new()
        .min_properties(Some(1))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "sysctl names to new values; validated as a whole, nothing applied if one is refused",
        ));
    for (name, min, max) in ranges {
        let int = ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Integer))
            .minimum(Some(*min as f64))
            .maximum(Some(*max as f64));
        o = if (*min, *max) == (0, 1) {
            o.property(
                name,
                OneOfBuilder::new()
                    .item(int)
                    .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Boolean))),
            )
        } else {
            o.property(name, int)
        };
    }
    o.into()
}

/// `POST /api/v1/ha/resync`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResyncRequested {
    pub requested: bool,
}
