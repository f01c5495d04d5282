//! The HTTP API: routes, handlers and the OpenAPI document.
//!
//! Handlers only parse, validate, send one control request and map its answer. Every
//! answer of fwd that is not the expected success variant becomes an error response, so a
//! request fwd did not apply never reports success.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use fwd_proto::{self as proto, Request, RulesetSource};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Auth, require_token};
use crate::client::ControlClient;
use crate::error::ApiError;
use crate::filter::{self, DEFAULT_PAGE, Extra};
use crate::schema;

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub client: Arc<ControlClient>,
    /// Deadline of the control requests a `/metrics` scrape makes.
    pub scrape_timeout: Duration,
    /// The auth policy (the OpenAPI document's security follows it).
    pub auth: Auth,
    /// Open event streams: one permit each (`ct_events` answers 429 when none is left).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// The state-sync daemon, when fwmgmt runs with `--ha` (docs/ha.md).
    pub ha: Option<Arc<crate::ha::HaHandle>>,
}

/// Default cap on concurrent event streams.
pub const MAX_STREAMS: usize = 8;

impl AppState {
    /// State with the default stream cap and body timeout.
    pub fn new(client: Arc<ControlClient>, scrape_timeout: Duration, auth: Auth) -> Self {
        AppState {
            client,
            scrape_timeout,
            auth,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            body_timeout: Duration::from_secs(10),
            ha: None,
        }
    }
}

/// The raw query pairs, with a malformed query string mapped to a 400.
#[derive(Debug)]
pub struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
    }
}

/// The request body of a write: read within the body timeout, over the route's size limit
/// a 413, empty a 400 (an empty write never changes anything).
#[derive(Debug)]
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let read = Bytes::from_request(req, state);
        let body = match tokio::time::timeout(state.body_timeout, read).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        state.body_timeout.as_secs()
                    ),
                ));
            }
            Ok(r) => r.map_err(|e| {
                let status = e.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "too_large"
                } else {
                    "bad_request"
                };
                ApiError::new(status, code, e.body_text())
            })?,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "the request body is empty: nothing was changed (to remove every rule, send a \
                 ruleset that says `flush ruleset`)",
            ));
        }
        Ok(Body(body))
    }
}

fn unexpected(r: &proto::Response) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "fwd_protocol",
        format!("unexpected answer from fwd: {r:?}"),
    )
}

macro_rules! expect {
    ($resp:expr, $pat:pat => $val:expr) => {
        match $resp {
            $pat => Ok($val),
            other => Err(unexpected(&other)),
        }
    };
}

async fn call(s: &AppState, req: Request) -> Result<proto::Response, ApiError> {
    Ok(s.client.call(req).await?)
}

/// `{"k": v, ...}` as a JSON response.
fn json<T: Serialize>(v: T) -> Response {
    Json(v).into_response()
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves requests", body = schema::Health)))]
async fn healthz() -> Json<schema::Health> {
    Json(schema::Health {
        status: schema::HealthStatus::Ok,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "fwd answers on its control socket", body = proto::Status),
        (status = 503, description = "fwd unreachable", body = ApiError),
        (status = 504, description = "fwd did not answer in time", body = ApiError)))]
async fn readyz(State(s): State<AppState>) -> Result<Response, ApiError> {
    let st = expect!(call(&s, Request::Status).await?, proto::Response::Status(st) => st)?;
    Ok(json(st))
}

#[utoipa::path(get, path = "/api/v1/status", tag = "health",
    responses((status = 200, body = proto::Status), (status = 503, body = ApiError), (status = 504, body = ApiError)),
    security(("bearer" = [])))]
async fn status(State(s): State<AppState>) -> Result<Response, ApiError> {
    readyz(State(s)).await
}

#[utoipa::path(get, path = "/api/v1/ruleset", tag = "ruleset", params(schema::RulesetParams),
    responses(
        (status = 200, description = "The running ruleset with per-rule counters (JSON), or with `format=text` the nftables text alone",
            content((proto::RulesetView = "application/json"), (String = "text/plain"))),
        (status = 400, body = ApiError),
        (status = 503, body = ApiError)
    ),
    security(("bearer" = []))
)]
async fn ruleset_get(State(s): State<AppState>, Params(q): Params) -> Result<Response, ApiError> {
    let mut text = false;
    for (k, v) in &q {
        match (k.as_str(), v.as_str()) {
            ("format", "text") => text = true,
            ("format", "json") => text = false,
            ("format", _) => {
                return Err(
                    ApiError::bad_request("format is `text` or `json`").with_field("format")
                );
            }
            _ => {
                return Err(ApiError::bad_request(format!("unknown parameter `{k}`")).with_field(k));
            }
        }
    }
    let view = expect!(call(&s, Request::RulesetGet).await?, proto::Response::Ruleset(v) => v)?;
    if text {
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            view.text,
        )
            .into_response())
    } else {
        Ok(json(view))
    }
}

/// Whether the request says its body is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Reads a ruleset body: nftables text (any content type but JSON), nftables JSON
/// (`{"nftables": [...]}`) or `{"format": ..., "content": ...}`.
fn ruleset_source(headers: &HeaderMap, body: &Bytes) -> Result<RulesetSource, ApiError> {
    if !is_json(headers) {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the ruleset is not UTF-8: {e}")))?;
        return Ok(RulesetSource::Text(text.to_string()));
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    if v.get("nftables").is_some() {
        return Ok(RulesetSource::Json(v));
    }
    serde_json::from_value(v).map_err(|e| {
        ApiError::bad_request(format!(
            "a JSON ruleset is {{\"nftables\": [...]}} or {{\"format\": \"text\"|\"json\", \"content\": ...}}: {e}"
        ))
    })
}

async fn replace(
    s: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let ruleset = ruleset_source(headers, body)?;
    applied(s, Request::RulesetReplace { ruleset, dry_run }, dry_run).await
}

/// Sends a ruleset change and maps its `ruleset_applied` answer.
async fn applied(s: &AppState, req: Request, dry_run: bool) -> Result<Response, ApiError> {
    let r = call(s, req).await?;
    let (generation, applied_dry, rules, before, after) = expect!(r,
        proto::Response::RulesetApplied { generation, dry_run, rules, before, after } =>
            (generation, dry_run, rules, before, after))?;
    if applied_dry != dry_run {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "fwd_protocol",
            format!("asked dry_run={dry_run}, fwd answered dry_run={applied_dry}"),
        ));
    }
    Ok(json(schema::RulesetApplied {
        generation,
        dry_run,
        rules,
        before,
        after,
    }))
}

#[utoipa::path(put, path = "/api/v1/ruleset", tag = "ruleset",
    request_body(description = "nftables text (text/plain) or JSON (application/json); not empty (`flush ruleset` empties the ruleset)",
        content((RulesetText = "text/plain"), (schema::RulesetBody = "application/json"))),
    responses((status = 200, description = "Applied atomically; what changed", body = schema::RulesetApplied),
        (status = 400, description = "Bad or empty ruleset (line, column); the running ruleset is untouched", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 413, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ruleset_put(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    replace(&s, &headers, &body, false).await
}

#[utoipa::path(post, path = "/api/v1/ruleset/check", tag = "ruleset",
    request_body(description = "nftables text (text/plain) or JSON (application/json); not empty",
        content((RulesetText = "text/plain"), (schema::RulesetBody = "application/json"))),
    responses((status = 200, description = "The ruleset is valid (nothing applied); what would change", body = schema::RulesetApplied),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 413, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ruleset_check(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    replace(&s, &headers, &body, true).await
}

#[utoipa::path(post, path = "/api/v1/ruleset/commands", tag = "ruleset",
    request_body(description = "nft command lines (text/plain), as `nft -f` reads them: `add rule ip filter input tcp dport 22 accept`, `insert rule … position N`, `replace|delete rule … handle N`, `add|delete element …`, `table { … }` blocks; not empty",
        content((RulesetText = "text/plain"))),
    responses((status = 200, description = "Applied atomically as one new generation (untouched rules keep their handles and counters); what changed", body = schema::RulesetApplied),
        (status = 400, description = "A command that does not parse or apply, or a result that does not check (line, column); nothing changed", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 413, body = ApiError),
        (status = 415, description = "Not text: send the commands as text/plain", body = ApiError),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ruleset_commands(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    commands(&s, &headers, &body, false).await
}

#[utoipa::path(post, path = "/api/v1/ruleset/commands/check", tag = "ruleset",
    request_body(description = "nft command lines (text/plain), as for `POST /api/v1/ruleset/commands`; not empty",
        content((RulesetText = "text/plain"))),
    responses((status = 200, description = "The commands apply and the result checks (nothing applied); what would change", body = schema::RulesetApplied),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 413, body = ApiError), (status = 415, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ruleset_commands_check(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    commands(&s, &headers, &body, true).await
}

/// Sends nft command lines (text, never JSON) as one change, or with `dry_run` a check.
async fn commands(
    s: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    dry_run: bool,
) -> Result<Response, ApiError> {
    if is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "nft commands are text: send them as text/plain",
        ));
    }
    let commands = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the commands are not UTF-8: {e}")))?
        .to_string();
    applied(s, Request::RulesetCommands { commands, dry_run }, dry_run).await
}

/// The table and set of a `/api/v1/sets/{table}/{set}/elements` route, and its `family`
/// parameter.
async fn set_ref(
    path: Result<Path<(String, String)>, PathRejection>,
    q: &[(String, String)],
) -> Result<(Option<proto::TableFamilyName>, String, String), ApiError> {
    let Path((table, set)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut family = None;
    for (k, v) in q {
        match k.as_str() {
            "family" => {
                family = Some(
                    serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|_| {
                        ApiError::bad_request("family is `ip`, `ip6` or `inet`")
                            .with_field("family")
                    })?,
                );
            }
            _ => {
                return Err(ApiError::bad_request(format!("unknown parameter `{k}`")).with_field(k));
            }
        }
    }
    Ok((family, table, set))
}

#[utoipa::path(get, path = "/api/v1/sets/{table}/{set}/elements", tag = "sets",
    params(("table" = String, Path, description = "Table name"), ("set" = String, Path, description = "Named set or map"), schema::SetParams),
    responses((status = 200, description = "The set or map and its elements (`nft list set`)", body = proto::SetElementsView),
        (status = 400, description = "Bad parameter, or a table name of several families without `family`", body = ApiError),
        (status = 404, description = "No such table or set (`field` says which)", body = ApiError),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn set_elements_get(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    Params(q): Params,
) -> Result<Response, ApiError> {
    let (family, table, set) = set_ref(path, &q).await?;
    let r = call(&s, Request::SetElementsGet { family, table, set }).await?;
    let view = expect!(r, proto::Response::SetElements(v) => v)?;
    Ok(json(view))
}

#[utoipa::path(post, path = "/api/v1/sets/{table}/{set}/elements", tag = "sets",
    params(("table" = String, Path, description = "Table name"), ("set" = String, Path, description = "Named set or map"), schema::SetParams),
    request_body(content = schema::ElementsBody, content_type = "application/json"),
    responses((status = 200, description = "Added atomically as one new generation (`nft add element`; every rule keeps its counter). On a dynamic set or meter: added to the elements the data path matches, with their `timeout` or the set's, no new generation", body = schema::RulesetApplied),
        (status = 400, description = "An element that does not parse or fit the set (`field`: `elements[N].key`, …); nothing changed", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, description = "No such table or set", body = ApiError),
        (status = 409, description = "An element that is there with other data, or with `create` at all (`field`: `elements[N]`); nothing changed", body = ApiError),
        (status = 413, body = ApiError), (status = 415, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn set_elements_post(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    Params(q): Params,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    elements_change(&s, path, &q, &headers, &body, false).await
}

#[utoipa::path(delete, path = "/api/v1/sets/{table}/{set}/elements", tag = "sets",
    params(("table" = String, Path, description = "Table name"), ("set" = String, Path, description = "Named set or map"), schema::SetParams),
    request_body(content = schema::ElementsBody, content_type = "application/json"),
    responses((status = 200, description = "Deleted atomically as one new generation (`nft delete element`; a map element's data may be left out). On a dynamic set or meter: deleted from the elements the data path matches (a declared one from the declaration too)", body = schema::RulesetApplied),
        (status = 400, description = "An element that does not parse (`field`); nothing changed", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 404, description = "No such table or set, or an element that is not there (`field`: `elements[N]`); nothing changed", body = ApiError),
        (status = 413, body = ApiError), (status = 415, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn set_elements_delete(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    Params(q): Params,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    elements_change(&s, path, &q, &headers, &body, true).await
}

/// `POST` (add, or with `create` create) or `DELETE` of elements.
async fn elements_change(
    s: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
    delete: bool,
) -> Result<Response, ApiError> {
    let (family, table, set) = set_ref(path, q).await?;
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "elements are JSON: send them as application/json",
        ));
    }
    let b: schema::ElementsBody =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let change = match (delete, b.create) {
        (true, true) => {
            return Err(ApiError::bad_request("`create` is for POST").with_field("create"));
        }
        (true, false) => proto::ElementChange::Delete,
        (false, true) => proto::ElementChange::Create,
        (false, false) => proto::ElementChange::Add,
    };
    let req = Request::SetElementsChange {
        family,
        table,
        set,
        change,
        elements: b.elements,
        dry_run: false,
    };
    applied(s, req, false).await
}

#[utoipa::path(get, path = "/api/v1/conntrack", tag = "conntrack",
    params(schema::CtFilterParams, schema::PageParams),
    responses((status = 200, description = "One page of matching entries (`conntrack -L`)", body = schema::ConntrackPage),
        (status = 400, description = "Unknown or malformed filter", body = ApiError),
        (status = 409, description = "Stale cursor: list again from the start", body = ApiError),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ct_list(State(s): State<AppState>, Params(q): Params) -> Result<Response, ApiError> {
    let q = filter::parse(&q, Extra::Page)?;
    let r = call(
        &s,
        Request::ConntrackList {
            filter: q.filter,
            cursor: q.cursor,
            limit: q.limit.unwrap_or(DEFAULT_PAGE),
        },
    )
    .await?;
    let (entries, next_cursor) = expect!(r,
        proto::Response::ConntrackPage { entries, next_cursor } => (entries, next_cursor))?;
    Ok(json(schema::ConntrackPage {
        entries,
        next_cursor,
    }))
}

#[utoipa::path(delete, path = "/api/v1/conntrack", tag = "conntrack",
    params(schema::CtFilterParams, schema::DeleteParams),
    responses((status = 200, description = "Entries deleted (`conntrack -D`)", body = schema::Deleted),
        (status = 400, description = "No filter and no `all=true`, or a bad filter", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ct_delete(State(s): State<AppState>, Params(q): Params) -> Result<Response, ApiError> {
    let q = filter::parse(&q, Extra::All)?;
    if q.filter.is_empty() && !q.all {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "refused_unfiltered",
            "DELETE without a filter deletes every connection: add `all=true` to flush",
        )
        .with_field("all"));
    }
    let r = call(
        &s,
        Request::ConntrackDelete {
            filter: q.filter,
            all: q.all,
        },
    )
    .await?;
    let deleted = expect!(r, proto::Response::Deleted { deleted } => deleted)?;
    Ok(json(schema::Deleted { deleted }))
}

#[utoipa::path(get, path = "/api/v1/conntrack/count", tag = "conntrack",
    params(schema::CtFilterParams),
    responses((status = 200, description = "Matching entries (`conntrack -C`)", body = schema::Count),
        (status = 400, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ct_count(State(s): State<AppState>, Params(q): Params) -> Result<Response, ApiError> {
    let q = filter::parse(&q, Extra::None)?;
    let r = call(&s, Request::ConntrackCount { filter: q.filter }).await?;
    let count = expect!(r, proto::Response::Count { count } => count)?;
    Ok(json(schema::Count { count }))
}

#[utoipa::path(get, path = "/api/v1/conntrack/stats", tag = "conntrack",
    responses((status = 200, description = "`conntrack -S` per worker and total", body = proto::ConntrackStats),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ct_stats(State(s): State<AppState>) -> Result<Response, ApiError> {
    let r = call(&s, Request::ConntrackStats).await?;
    let st = expect!(r, proto::Response::ConntrackStats(st) => st)?;
    Ok(json(st))
}

#[utoipa::path(get, path = "/api/v1/conntrack/expect", tag = "conntrack",
    responses((status = 200, description = "Expectations (`conntrack -L expect`), the expectation table's counters and each worker's helper counters", body = proto::ExpectList),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ct_expect(State(s): State<AppState>) -> Result<Response, ApiError> {
    let r = call(
        &s,
        Request::ConntrackExpect {
            counters_only: false,
        },
    )
    .await?;
    let l = expect!(r, proto::Response::ConntrackExpect(l) => l)?;
    Ok(json(l))
}

#[utoipa::path(get, path = "/api/v1/conntrack/events", tag = "conntrack",
    params(schema::CtFilterParams, schema::EventParams),
    responses((status = 200, description = "Server-sent events (`conntrack -E`): `event:` NEW, UPDATE or DESTROY; `data:` an EventLine. An `error` event ends the stream when fwd goes away.",
            body = proto::EventLine, content_type = "text/event-stream"),
        (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError),
        (status = 429, description = "Too many event streams are open", body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ct_events(
    State(s): State<AppState>,
    Params(q): Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = filter::parse(&q, Extra::Events)?;
    let permit = Arc::clone(&s.streams).try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!("{MAX_STREAMS} event streams are open already"),
        )
    })?;
    let sub = s.client.subscribe(q.filter, q.events).await?;
    // The permit lives as long as the stream.
    let stream = futures_util::stream::unfold(Some((sub, permit)), |state| async move {
        let (mut sub, permit) = state?;
        match sub.next_event().await {
            Ok(Some(ev)) => {
                let name = match ev.kind {
                    proto::EventType::New => "NEW",
                    proto::EventType::Update => "UPDATE",
                    proto::EventType::Destroy => "DESTROY",
                };
                let event = Event::default()
                    .event(name)
                    .json_data(&ev)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
                Some((Ok(event), Some((sub, permit))))
            }
            Ok(None) => Some((
                Ok(Event::default()
                    .event("error")
                    .data("fwd closed the event stream")),
                None,
            )),
            Err(e) => Some((
                Ok(Event::default().event("error").data(e.to_string())),
                None,
            )),
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[utoipa::path(get, path = "/api/v1/tuning", tag = "tuning",
    responses((status = 200, description = "Tunables by sysctl name", body = schema::Tuning),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn tuning_get(State(s): State<AppState>) -> Result<Response, ApiError> {
    let values =
        expect!(call(&s, Request::TuningGet).await?, proto::Response::Tuning { values } => values)?;
    Ok(json(schema::Tuning { values }))
}

/// Validates a PATCH body into sysctl name → value: a non-empty JSON object of full sysctl
/// names to non-negative integers (booleans for the two 0/1 tunables); fwd checks names
/// and ranges as a whole.
pub fn tuning_values(body: &[u8]) -> Result<std::collections::BTreeMap<String, u64>, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let serde_json::Value::Object(map) = v else {
        return Err(ApiError::bad_request(
            "the body is a JSON object of sysctl names to values",
        ));
    };
    if map.is_empty() {
        return Err(ApiError::bad_request("no tunable given"));
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, value) in map {
        let bad =
            |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_tunable", m).with_field(&name);
        let n = match &value {
            // A boolean only for an on/off switch (range 0..=1), as the schema says: `true`
            // for `nf_conntrack_events` (0, 1 or 2) would be a guess.
            serde_json::Value::Bool(b) if is_switch(&name) => u64::from(*b),
            serde_json::Value::Bool(b) => {
                return Err(bad(format!(
                    "{name}: {b} is not a number (only the 0/1 switches take a boolean)"
                )));
            }
            // JSON has one number type: `30.0` is the integer 30 (JSON Schema agrees).
            serde_json::Value::Number(n) => n
                .as_u64()
                .or_else(|| n.as_f64().and_then(integral))
                .ok_or_else(|| bad(format!("{name}: {n} is not a non-negative integer")))?,
            other => return Err(bad(format!("{name}: {other} is not a number"))),
        };
        out.insert(name, n);
    }
    Ok(out)
}

/// Whether `name` is an on/off tunable (range exactly 0..=1): the ones that take a boolean.
fn is_switch(name: &str) -> bool {
    dataplane::conntrack::tunables::ranges().any(|(n, lo, hi)| n == name && (lo, hi) == (0, 1))
}

/// `f` as an integer when it is one, non-negative and exact (up to 9e15 < 2^53).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "integral and within 0..=9e15: exact in u64"
)]
fn integral(f: f64) -> Option<u64> {
    (f.fract() == 0.0 && (0.0..=9.0e15).contains(&f)).then_some(f as u64)
}

#[utoipa::path(patch, path = "/api/v1/tuning", tag = "tuning",
    request_body(content = TuningPatch, content_type = "application/json"),
    responses((status = 200, description = "Applied live; all tunables after the change", body = schema::Tuning),
        (status = 400, description = "Unknown name or value out of range (`field` names it); nothing applied", body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 413, body = ApiError), (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn tuning_patch(State(s): State<AppState>, Body(body): Body) -> Result<Response, ApiError> {
    let values = tuning_values(&body)?;
    let values = expect!(call(&s, Request::TuningSet { values }).await?,
        proto::Response::Tuning { values } => values)?;
    Ok(json(schema::Tuning { values }))
}

#[utoipa::path(get, path = "/api/v1/ports", tag = "stats",
    responses((status = 200, description = "Ports with link state and counters", body = schema::Ports),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn ports(State(s): State<AppState>) -> Result<Response, ApiError> {
    let ports =
        expect!(call(&s, Request::Ports).await?, proto::Response::Ports { ports } => ports)?;
    Ok(json(schema::Ports { ports }))
}

/// The busy ratio of a worker.
pub fn busy_ratio(w: &proto::WorkerStats) -> f64 {
    if w.total_cycles == 0 {
        0.0
    } else {
        // Precision loss is irrelevant for a ratio.
        #[allow(clippy::cast_precision_loss)]
        let r = w.busy_cycles as f64 / w.total_cycles as f64;
        r
    }
}

#[utoipa::path(get, path = "/api/v1/workers", tag = "stats",
    responses((status = 200, description = "Per-core packets, drops by reason, handoffs, busy ratio", body = schema::Workers),
        (status = 503, body = ApiError)),
    security(("bearer" = [])))]
async fn workers(State(s): State<AppState>) -> Result<Response, ApiError> {
    let workers = expect!(call(&s, Request::Workers).await?, proto::Response::Workers { workers } => workers)?;
    let workers = workers
        .into_iter()
        .map(|stats| schema::WorkerView {
            busy_ratio: busy_ratio(&stats),
            stats,
        })
        .collect();
    Ok(json(schema::Workers { workers }))
}

#[utoipa::path(get, path = "/api/v1/ha", tag = "ha",
    responses((status = 200, description = "State sync: fwd's cache and counters; the daemon's role, peer, queue and loss counters when fwmgmt runs with --ha", body = crate::ha::HaView),
        (status = 503, body = ApiError), (status = 504, body = ApiError)),
    security(("bearer" = [])))]
async fn ha_get(State(s): State<AppState>) -> Result<Response, ApiError> {
    let fwd = expect!(call(&s, Request::HaStatus).await?, proto::Response::HaStatus(c) => c)?;
    Ok(json(crate::ha::HaView {
        enabled: s.ha.is_some(),
        fwd,
        sync: s.ha.as_ref().map(|h| h.status()),
    }))
}

#[utoipa::path(post, path = "/api/v1/ha/commit", tag = "ha",
    responses((status = 200, description = "The external cache moved into the workers (takeover); fwd's counters after it", body = proto::HaCounters),
        (status = 503, body = ApiError), (status = 504, body = ApiError)),
    security(("bearer" = [])))]
async fn ha_commit(State(s): State<AppState>) -> Result<Response, ApiError> {
    let c = expect!(call(&s, Request::HaCommit).await?, proto::Response::HaApplied(c) => c)?;
    Ok(json(c))
}

#[utoipa::path(post, path = "/api/v1/ha/takeover", tag = "ha",
    request_body(content = Option<crate::ha::TakeoverRequest>, description = "Optional: the service addresses to announce (else the HA config's `service_addresses`, else every address of fwd's ports)"),
    responses((status = 200, description = "Takeover: the external cache committed into the workers, then gratuitous ARP / unsolicited NA sent for the service addresses; idempotent", body = proto::HaTakeover),
        (status = 400, body = ApiError), (status = 503, body = ApiError), (status = 504, body = ApiError)),
    security(("bearer" = [])))]
async fn ha_takeover(State(s): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: crate::ha::TakeoverRequest = if body.iter().all(u8::is_ascii_whitespace) {
        crate::ha::TakeoverRequest::default()
    } else {
        // `null` is the declared "no body" too.
        serde_json::from_slice::<Option<crate::ha::TakeoverRequest>>(&body)
            .map_err(|e| ApiError::bad_request(format!("takeover body: {e}")))?
            .unwrap_or_default()
    };
    let mut addresses = req
        .addresses
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse().map_err(|_| {
                ApiError::bad_request(format!("addresses[{i}]: {a:?} is not an IP address"))
            })
        })
        .collect::<Result<Vec<std::net::IpAddr>, _>>()?;
    if addresses.is_empty()
        && let Some(h) = &s.ha
    {
        addresses = h.with(|x| x.config().service_addresses.clone());
    }
    let t = expect!(call(&s, Request::HaTakeover { addresses }).await?,
        proto::Response::HaTakeover(t) => t)?;
    Ok(json(t))
}

#[utoipa::path(post, path = "/api/v1/ha/resync", tag = "ha",
    responses((status = 202, description = "A RESYNC request is on its way to the peer (it answers with its whole table)", body = schema::ResyncRequested),
        (status = 409, description = "fwmgmt runs without --ha (`ha_disabled`)", body = ApiError)),
    security(("bearer" = [])))]
async fn ha_resync(State(s): State<AppState>) -> Result<Response, ApiError> {
    let Some(h) = &s.ha else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ha_disabled",
            "fwmgmt runs without --ha: there is no sync peer to ask",
        ));
    };
    h.resync.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(schema::ResyncRequested { requested: true }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text format (see docs/metrics.md)", body = String,
        content_type = "text/plain; version=0.0.4")),
    security(("bearer" = [])))]
async fn metrics(State(s): State<AppState>) -> Response {
    let text = crate::metrics::scrape(&s.client, s.scrape_timeout, s.ha.as_deref()).await;
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "This document (the tunables' ranges are fwd's when it answers)", body = Object)))]
async fn openapi_json(State(s): State<AppState>) -> Response {
    let ranges: Vec<(String, u64, u64)> =
        match tokio::time::timeout(s.scrape_timeout, s.client.call(Request::TuningRanges)).await {
            Ok(Ok(proto::Response::TuningRanges { ranges })) => {
                ranges.into_iter().map(|(n, r)| (n, r.min, r.max)).collect()
            }
            // fwd away: the static table (nf_conntrack_max up to what any table holds).
            _ => dataplane::conntrack::tunables::ranges()
                .map(|(n, lo, hi)| (n.to_string(), lo, hi))
                .collect(),
        };
    json(document(&s.auth, &ranges))
}

/// The OpenAPI document for this policy: each operation's security is what the auth layer
/// enforces for it (with its 401/403 answers), and the `PATCH /api/v1/tuning` body is
/// generated from `ranges` (fwd's validation table).
pub fn document(auth: &Auth, ranges: &[(String, u64, u64)]) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{Ref, ResponseBuilder, content::ContentBuilder};
    let mut doc = ApiDoc::openapi();
    let error = |code: &str| {
        let description = match code {
            "401" => "No bearer token, or a malformed Authorization header",
            "403" => "The token is not valid, or fwmgmt has none configured",
            "408" => "The request body did not arrive within the body timeout",
            "413" => "The body is over this route's limit",
            "421" => "This Host is not served (DNS rebinding guard)",
            "502" => "fwd answered outside the control protocol",
            "503" => "fwd is not running (its control socket does not answer)",
            "504" => "fwd did not answer in time",
            _ => "Error",
        };
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, op) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(op) = op.as_mut() else { continue };
            if auth.needs_token(&method, path) {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                for code in ["401", "403"] {
                    op.responses
                        .responses
                        .entry(code.into())
                        .or_insert_with(|| error(code).into());
                }
            } else {
                op.security = Some(vec![SecurityRequirement::default()]);
                op.responses.responses.remove("401");
                op.responses.responses.remove("403");
            }
            // Every route answers a Host it does not serve with 421.
            let mut codes = vec!["421"];
            // Routes that ask fwd: absent (503), too slow (504), an answer that makes no
            // sense (502).
            if !matches!(
                path.as_str(),
                "/healthz" | "/metrics" | "/api/v1/openapi.json"
            ) {
                codes.extend(["502", "503", "504"]);
            }
            // Bodies: too slow to arrive (408), too large (413).
            if op.request_body.is_some() {
                codes.extend(["408", "413"]);
            }
            for code in codes {
                op.responses
                    .responses
                    .entry(code.into())
                    .or_insert_with(|| error(code).into());
            }
        }
    }
    if let Some(c) = doc.components.as_mut() {
        c.schemas.insert(
            "TuningPatch".into(),
            schema::tuning_patch_schema(ranges).into(),
        );
    }
    doc
}

/// nftables text (`nft -f`): not empty; at most [`schema::MAX_BODY`] bytes.
struct RulesetText;

impl utoipa::PartialSchema for RulesetText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some("\\S"))
            .max_length(Some(schema::MAX_BODY))
            .into()
    }
}

impl ToSchema for RulesetText {}

/// Placeholder replaced in [`document`] by the schema generated from fwd's ranges.
#[derive(ToSchema)]
#[allow(dead_code, reason = "a schema, never built")]
struct TuningPatch(std::collections::BTreeMap<String, u64>);

async fn not_found() -> ApiError {
    ApiError::not_found()
}

#[derive(Debug)]
struct BearerAddon;

impl utoipa::Modify for BearerAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document, generated from the handlers' annotations and the control
/// protocol's types; [`document`] sets each operation's security from the auth policy.
#[derive(OpenApi)]
#[openapi(
    info(title = "fwmgmt", description = "Management API of the fwd firewall/NAT appliance. Routes under /api/v1 need a bearer token (reads too, unless fwmgmt runs with --open-reads); /healthz, /readyz and /metrics are open. Request bodies: a ruleset or a list of set elements up to 16 MiB, a tuning patch up to 64 KiB (413 beyond); an empty body is a 400."),
    paths(healthz, readyz, status, ruleset_get, ruleset_put, ruleset_check, ruleset_commands, ruleset_commands_check,
        set_elements_get, set_elements_post, set_elements_delete, ct_list, ct_delete, ct_count, ct_stats, ct_expect, ct_events, tuning_get, tuning_patch, ports, workers, ha_get, ha_commit, ha_takeover,
        ha_resync, metrics, openapi_json),
    components(schemas(ApiError, proto::CtEntry, proto::CtTuple, proto::EventType, proto::NftablesJson,
        schema::FamilyParam, schema::RulesetFormat)),
    modifiers(&BearerAddon),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The router with every route, the auth layer and the JSON 404.
pub fn router(state: AppState) -> Router {
    let auth = state.auth.clone();
    let ruleset_body = DefaultBodyLimit::max(schema::MAX_BODY);
    let tuning_body = DefaultBodyLimit::max(schema::MAX_TUNING_BODY);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/status", get(status))
        .route(
            "/api/v1/ruleset",
            get(ruleset_get).put(ruleset_put).layer(ruleset_body),
        )
        .route(
            "/api/v1/ruleset/check",
            post(ruleset_check).layer(ruleset_body),
        )
        .route(
            "/api/v1/ruleset/commands",
            post(ruleset_commands).layer(ruleset_body),
        )
        .route(
            "/api/v1/ruleset/commands/check",
            post(ruleset_commands_check).layer(ruleset_body),
        )
        .route(
            "/api/v1/sets/{table}/{set}/elements",
            get(set_elements_get)
                .post(set_elements_post)
                .delete(set_elements_delete)
                .layer(ruleset_body),
        )
        .route("/api/v1/conntrack", get(ct_list).delete(ct_delete))
        .route("/api/v1/conntrack/count", get(ct_count))
        .route("/api/v1/conntrack/stats", get(ct_stats))
        .route("/api/v1/conntrack/expect", get(ct_expect))
        .route("/api/v1/conntrack/events", get(ct_events))
        .route(
            "/api/v1/tuning",
            get(tuning_get).patch(tuning_patch).layer(tuning_body),
        )
        .route("/api/v1/ports", get(ports))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/ha", get(ha_get))
        .route("/api/v1/ha/commit", post(ha_commit))
        .route("/api/v1/ha/takeover", post(ha_takeover))
        .route("/api/v1/ha/resync", post(ha_resync))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(schema::MAX_TUNING_BODY))
        .layer(axum::middleware::from_fn_with_state(auth, require_token))
        .with_state(state)
}
