//! Router tests against the FakeDataplane over a real Unix socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::{FakeDataplane, INITIAL_RULESET};
use fwd_proto::{self as proto, EventType};
use http_body_util::BodyExt;
use mgmt::api::{AppState, router};
use mgmt::auth::Auth;
use mgmt::client::ControlClient;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "test-token-123";

struct Env {
    fake: FakeDataplane,
    app: Router,
}

async fn env_with(entries: u16, auth: Auth, timeout: Duration) -> Env {
    let fake = FakeDataplane::start(entries).await;
    let state_parts = (
        Arc::new(ControlClient::new(&fake.path, timeout)),
        Duration::from_millis(500),
    );
    Env {
        app: router(AppState::new(state_parts.0, state_parts.1, auth)),
        fake,
    }
}

async fn env() -> Env {
    env_with(25, Auth::new(Some(TOKEN.into())), Duration::from_secs(5)).await
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }
    /// Asserts an error response's status and code.
    fn error(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some((ct, bytes)) => b
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(bytes.to_vec())),
        None => b.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// The default policy with the token, changed by `f`.
fn policy(f: impl FnOnce(&mut Auth)) -> Auth {
    let mut a = Auth::new(Some(TOKEN.into()));
    f(&mut a);
    a
}

/// A ruleset check without the token: 401 (it compiles in fwd, so it is never open).
async fn check_without_token(app: &Router) {
    send(
        app,
        Method::POST,
        "/api/v1/ruleset/check",
        None,
        Some(("text/plain", b"flush ruleset\n")),
    )
    .await
    .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A GET with the token (routes under /api/v1 need it by default).
async fn get(app: &Router, uri: &str) -> Resp {
    send(app, Method::GET, uri, Some(TOKEN), None).await
}

#[tokio::test]
async fn health_and_readiness() {
    let e = env().await;
    let r = get(&e.app, "/healthz").await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    let r = get(&e.app, "/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["ruleset_generation"], 1);
    let r = get(&e.app, "/api/v1/status").await;
    assert_eq!(r.json()["workers"], 2);
}

#[tokio::test]
async fn fwd_down_is_503_and_not_ready() {
    let e = env().await;
    assert_eq!(get(&e.app, "/readyz").await.status, StatusCode::OK);
    // The listener and the connection mgmt reuses are closed: the retry fails too.
    e.fake.stop();
    get(&e.app, "/readyz")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "fwd_unreachable");
    get(&e.app, "/api/v1/conntrack/count")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "fwd_unreachable");
    get(&e.app, "/api/v1/conntrack/expect")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "fwd_unreachable");
    // healthz does not depend on fwd.
    assert_eq!(get(&e.app, "/healthz").await.status, StatusCode::OK);
    // A write fwd did not apply is not a success.
    let r = send(
        &e.app,
        Method::PATCH,
        "/api/v1/tuning",
        Some(TOKEN),
        Some(("application/json", br#"{"nf_conntrack_max": 1000}"#)),
    )
    .await;
    r.error(StatusCode::SERVICE_UNAVAILABLE, "fwd_unreachable");
}

#[tokio::test]
async fn unreachable_socket_path_is_503() {
    let state_parts = (
        Arc::new(ControlClient::new(
            "/nonexistent/mgmt-test/control.sock",
            Duration::from_secs(1),
        )),
        Duration::from_millis(100),
    );
    let app = router(AppState::new(state_parts.0, state_parts.1, Auth::new(None)));
    get(&app, "/readyz")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "fwd_unreachable");
    let m = get(&app, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.text().contains("\nfwd_up 0\n"), "{}", m.text());
    assert!(!m.text().contains("fwd_conntrack_entries"));
}

#[tokio::test]
async fn stalled_fwd_is_504_and_the_next_request_reconnects() {
    let e = env_with(3, Auth::new(Some(TOKEN.into())), Duration::from_millis(300)).await;
    e.fake.state().stall = true;
    get(&e.app, "/api/v1/conntrack/count")
        .await
        .error(StatusCode::GATEWAY_TIMEOUT, "fwd_timeout");
    e.fake.state().stall = false;
    let r = get(&e.app, "/api/v1/conntrack/count").await;
    assert_eq!(
        (r.status, r.json()["count"].clone()),
        (StatusCode::OK, json!(3))
    );
}

#[tokio::test]
async fn auth_for_writes_and_optional_reads() {
    let e = env().await;
    let put = |tok: Option<&'static str>| {
        let app = e.app.clone();
        async move {
            send(
                &app,
                Method::PUT,
                "/api/v1/ruleset",
                tok,
                Some(("text/plain", b"flush ruleset\n")),
            )
            .await
        }
    };
    let r = put(None).await;
    r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    put(Some("wrong"))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        e.fake.state().generation,
        1,
        "refused writes must not reach fwd"
    );
    assert_eq!(put(Some(TOKEN)).await.status, StatusCode::OK);
    assert_eq!(e.fake.state().generation, 2);
    // Reads need the token by default too (`conntrack -L` needs CAP_NET_ADMIN); what
    // Prometheus and the probes read stays open.
    let sent = e.fake.state().log.len();
    for uri in [
        "/api/v1/tuning",
        "/api/v1/conntrack",
        "/api/v1/conntrack/count",
        "/api/v1/conntrack/expect",
        "/api/v1/ruleset",
        "/api/v1/status",
        "/api/v1/conntrack/events",
    ] {
        let r = send(&e.app, Method::GET, uri, None, None).await;
        r.error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{uri}");
    }
    // Checking a ruleset compiles it in fwd: it needs the token like a write.
    check_without_token(&e.app).await;
    assert_eq!(
        e.fake.state().log.len(),
        sent,
        "refused reads must not reach fwd"
    );
    assert_eq!(get(&e.app, "/api/v1/tuning").await.status, StatusCode::OK);
    for uri in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
        let r = send(&e.app, Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    // A malformed Authorization header is a 401 naming the header.
    let req = Request::builder()
        .method(Method::DELETE)
        .uri("/api/v1/conntrack?all=true")
        .header(header::AUTHORIZATION, "Basic Zm9vOmJhcg==")
        .body(Body::empty())
        .unwrap();
    let resp = e.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // --open-reads: GET routes open, writes and the check still need the token.
    let e = env_with(1, policy(|a| a.open_reads = true), Duration::from_secs(5)).await;
    for uri in [
        "/api/v1/tuning",
        "/api/v1/conntrack/count",
        "/api/v1/ruleset",
    ] {
        let r = send(&e.app, Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    check_without_token(&e.app).await;
    send(
        &e.app,
        Method::DELETE,
        "/api/v1/conntrack?all=true",
        None,
        None,
    )
    .await
    .error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(e.fake.state().generation, 1);

    // --auth-metrics: /metrics needs the token; the probes stay open.
    let e = env_with(1, policy(|a| a.auth_metrics = true), Duration::from_secs(5)).await;
    send(&e.app, Method::GET, "/metrics", None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(get(&e.app, "/metrics").await.status, StatusCode::OK);
    send(&e.app, Method::GET, "/api/v1/tuning", None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    for uri in ["/healthz", "/readyz"] {
        let r = send(&e.app, Method::GET, uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }

    // No token configured: writes are refused, whatever is sent.
    let e = env_with(1, Auth::new(None), Duration::from_secs(5)).await;
    send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some("anything"),
        Some(("text/plain", b"flush ruleset\n")),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(e.fake.state().generation, 1);
}

#[tokio::test]
async fn ruleset_get_text_and_structured() {
    let e = env().await;
    let r = get(&e.app, "/api/v1/ruleset").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["text"], INITIAL_RULESET);
    assert!(v["json"]["nftables"].is_array());
    assert_eq!(v["counters"][0]["chain"], "input");
    assert_eq!(v["counters"][0]["packets"], 42);
    let r = get(&e.app, "/api/v1/ruleset?format=text").await;
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text(), INITIAL_RULESET);
    get(&e.app, "/api/v1/ruleset?format=xml")
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    get(&e.app, "/api/v1/ruleset?verbose=1")
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn ruleset_replace_check_and_bad_ruleset() {
    let e = env().await;
    let new = "table inet filter {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n    udp dport 53 counter accept\n  }\n}\n";
    let initial = json!({"tables": 1, "chains": 1, "rules": 2});
    let replaced = json!({"tables": 1, "chains": 1, "rules": 1});
    // Check: valid, nothing applied; what would change.
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/check",
        Some(TOKEN),
        Some(("text/plain", new.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"generation": 1, "dry_run": true, "rules": 1, "before": initial, "after": replaced})
    );
    assert_eq!(e.fake.state().ruleset, INITIAL_RULESET);

    // An empty or blank body is refused before fwd sees it, for the check and the
    // replacement alike: the running ruleset and its generation are untouched.
    let sent = e.fake.state().log.len();
    for (method, uri) in [
        (Method::PUT, "/api/v1/ruleset"),
        (Method::POST, "/api/v1/ruleset/check"),
    ] {
        for (ct, body) in [
            (None, &b""[..]),
            (Some("text/plain"), &b""[..]),
            (Some("text/plain"), &b" \n\t\n"[..]),
            (Some("application/json"), &b""[..]),
        ] {
            let r = match ct {
                Some(ct) => send(&e.app, method.clone(), uri, Some(TOKEN), Some((ct, body))).await,
                None => send(&e.app, method.clone(), uri, Some(TOKEN), None).await,
            };
            let v = r.error(StatusCode::BAD_REQUEST, "bad_request");
            assert!(
                v["message"].as_str().unwrap().contains("flush ruleset"),
                "{method} {uri} {ct:?}: {v}"
            );
        }
    }
    assert_eq!(e.fake.state().log.len(), sent);
    let (ruleset, generation) = {
        let st = e.fake.state();
        (st.ruleset.clone(), st.generation)
    };
    assert_eq!((ruleset.as_str(), generation), (INITIAL_RULESET, 1));

    // A bad ruleset: 400 with line and column, the running ruleset untouched.
    let bad = "table inet filter {\n  chain input {\n    tcp dport 22 accept\n      frobnicate everything\n  }\n}\n";
    for (method, uri) in [
        (Method::PUT, "/api/v1/ruleset"),
        (Method::POST, "/api/v1/ruleset/check"),
    ] {
        let r = send(
            &e.app,
            method,
            uri,
            Some(TOKEN),
            Some(("text/plain", bad.as_bytes())),
        )
        .await;
        let v = r.error(StatusCode::BAD_REQUEST, "bad_ruleset");
        assert_eq!(
            (v["line"].clone(), v["column"].clone()),
            (json!(4), json!(7)),
            "{v}"
        );
    }
    let v = get(&e.app, "/api/v1/ruleset").await.json();
    assert_eq!(
        (v["text"].as_str().unwrap(), v["generation"].clone()),
        (INITIAL_RULESET, json!(1))
    );

    // Replace.
    let r = send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("text/plain", new.as_bytes())),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"generation": 2, "dry_run": false, "rules": 1, "before": initial, "after": replaced})
    );
    let v = get(&e.app, "/api/v1/ruleset").await.json();
    assert_eq!(
        (v["text"].as_str().unwrap(), v["generation"].clone()),
        (new, json!(2))
    );
    assert_eq!(v["counters"][0]["chain"], "forward");

    // Structured: nftables JSON, and the tagged form.
    let r = send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some((
            "application/json",
            br#"{"nftables":[{"table":{"family":"inet","name":"json"}}]}"#,
        )),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["generation"].clone()),
        (StatusCode::OK, json!(3))
    );
    let tagged = serde_json::to_vec(&json!({"format": "text", "content": new})).unwrap();
    let r = send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("application/json", &tagged)),
    )
    .await;
    assert_eq!(r.json()["generation"], 4);
    assert!(
        matches!(e.fake.state().log.last(), Some(proto::Request::RulesetReplace { ruleset: proto::RulesetSource::Text(t), dry_run: false }) if t == new)
    );

    // Malformed JSON: 400 with the position in the body; nothing sent to fwd.
    let sent = e.fake.state().log.len();
    let v = send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("application/json", b"{\n  \"nftables\": [,]\n}")),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(
        (v["line"].clone(), v["column"].clone()),
        (json!(2), json!(16)),
        "{v}"
    );
    send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("application/json", br#"{"rules": []}"#)),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "bad_request");
    send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("text/plain", &[0xff, 0xfe])),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(e.fake.state().log.len(), sent);
    assert_eq!(e.fake.state().generation, 4);
}

#[tokio::test]
async fn conntrack_list_pages_with_a_cursor() {
    let e = env().await;
    let mut seen = Vec::new();
    let mut uri = "/api/v1/conntrack?limit=10".to_string();
    let mut pages = 0;
    loop {
        let v = get(&e.app, &uri).await.json();
        pages += 1;
        for en in v["entries"].as_array().unwrap() {
            seen.push(en["orig"]["sport"].as_u64().unwrap());
        }
        match v["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/conntrack?limit=10&cursor={c}"),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        (40000..40025).collect::<Vec<u64>>(),
        "every entry exactly once, in order"
    );

    // Default page size covers all 25.
    let v = get(&e.app, "/api/v1/conntrack").await.json();
    assert_eq!(v["entries"].as_array().unwrap().len(), 25);
    assert!(v["next_cursor"].is_null());
    let en = &v["entries"][0];
    assert_eq!(
        (
            en["orig"]["src"].clone(),
            en["reply"]["src"].clone(),
            en["state"].clone()
        ),
        (
            json!("198.18.0.1"),
            json!("203.0.113.1"),
            json!("ESTABLISHED")
        )
    );

    get(&e.app, "/api/v1/conntrack?cursor=zzz")
        .await
        .error(StatusCode::CONFLICT, "bad_cursor");
    let v = get(&e.app, "/api/v1/conntrack?limit=0")
        .await
        .error(StatusCode::BAD_REQUEST, "bad_filter");
    assert_eq!(v["field"], "limit");
}

#[tokio::test]
async fn conntrack_filters() {
    let e = env().await;
    let count = |q: &'static str| {
        let app = e.app.clone();
        async move {
            let v = get(&app, &format!("/api/v1/conntrack?{q}")).await.json();
            let listed = v["entries"].as_array().unwrap().len() as u64;
            let c = get(&app, &format!("/api/v1/conntrack/count?{q}"))
                .await
                .json()["count"]
                .as_u64()
                .unwrap();
            assert_eq!(listed, c, "list and count agree for {q}");
            c
        }
    };
    assert_eq!(count("").await, 25);
    assert_eq!(count("proto=tcp").await, 13);
    assert_eq!(count("proto=udp&dport=53").await, 12);
    assert_eq!(count("src=198.18.0.3").await, 1);
    assert_eq!(count("src=198.18.0.0/30").await, 3);
    assert_eq!(count("dst=203.0.113.1&sport=40004").await, 1);
    assert_eq!(count("state=ESTABLISHED").await, 13);
    assert_eq!(count("mark=1").await, 6);
    assert_eq!(count("mark=0x2/0x2").await, 12);
    assert_eq!(count("zone=1").await, 0);
    assert_eq!(count("family=ipv6").await, 0);
    assert_eq!(count("status=ASSURED&reply_dst=198.18.0.2").await, 1);
    // Unknown and malformed filters.
    for (q, field) in [
        ("srcc=1.2.3.4", "srcc"),
        ("dport=http", "dport"),
        ("state=DANCING", "state"),
        ("src=198.18.0.0/40", "src"),
        ("cursor=x", "cursor"),
    ] {
        let v = get(&e.app, &format!("/api/v1/conntrack/count?{q}"))
            .await
            .error(StatusCode::BAD_REQUEST, "bad_filter");
        assert_eq!(v["field"], field);
    }
}

#[tokio::test]
async fn conntrack_delete_needs_a_filter_or_all() {
    let e = env().await;
    let del = |q: &'static str| {
        let app = e.app.clone();
        async move {
            send(
                &app,
                Method::DELETE,
                &format!("/api/v1/conntrack{q}"),
                Some(TOKEN),
                None,
            )
            .await
        }
    };
    del("")
        .await
        .error(StatusCode::BAD_REQUEST, "refused_unfiltered");
    del("?all=false")
        .await
        .error(StatusCode::BAD_REQUEST, "refused_unfiltered");
    assert!(
        !e.fake
            .state()
            .log
            .iter()
            .any(|r| matches!(r, proto::Request::ConntrackDelete { .. }))
    );
    assert_eq!(e.fake.state().entries.len(), 25);
    let r = del("?proto=udp").await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!({"deleted": 12}))
    );
    assert_eq!(
        get(&e.app, "/api/v1/conntrack/count").await.json()["count"],
        13
    );
    del("?limit=5")
        .await
        .error(StatusCode::BAD_REQUEST, "bad_filter");
    let r = del("?all=true").await;
    assert_eq!(r.json(), json!({"deleted": 13}));
    assert_eq!(
        get(&e.app, "/api/v1/conntrack/count").await.json()["count"],
        0
    );
}

#[tokio::test]
async fn conntrack_stats_ports_workers() {
    let e = env().await;
    let v = get(&e.app, "/api/v1/conntrack/stats").await.json();
    assert_eq!(v["workers"].as_array().unwrap().len(), 2);
    assert_eq!(v["total"]["found"], 300);
    assert_eq!(v["total"]["entries"], 23);
    let v = get(&e.app, "/api/v1/ports").await.json();
    assert_eq!(v["ports"][1]["name"], "wan");
    assert_eq!(v["ports"][0]["link_up"], true);
    let v = get(&e.app, "/api/v1/workers").await.json();
    assert_eq!(v["workers"][0]["busy_ratio"], 0.25);
    assert_eq!(v["workers"][1]["drops"]["ct_invalid"], 7);
    assert_eq!(v["workers"][1]["handoff_tx"], 5);
}

#[tokio::test]
async fn conntrack_expect_lists_expectations_and_counters() {
    let e = env().await;
    let v = get(&e.app, "/api/v1/conntrack/expect").await.json();
    let x = &v["expectations"][0];
    assert_eq!(v["expectations"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(x["src"], "203.0.113.9", "{v}");
    assert_eq!(x["dport"], 50123);
    assert_eq!(x["master_dport"], 21);
    assert_eq!(x["helper"], "ftp");
    assert_eq!(v["counters"]["full"], 2);
    assert_eq!(v["counters"]["max"], 4096);
    assert_eq!(v["workers"][1]["announced"], 3);
    assert_eq!(
        e.fake.state().log.last(),
        Some(&fwd_proto::Request::ConntrackExpect {
            counters_only: false
        })
    );
    // An empty table is an empty list, not an error.
    e.fake.state().expect = fwd_proto::ExpectList::default();
    let v = get(&e.app, "/api/v1/conntrack/expect").await.json();
    assert_eq!(v["expectations"], serde_json::json!([]), "{v}");
}

#[tokio::test]
async fn tuning_get_and_patch() {
    let e = env().await;
    let v = get(&e.app, "/api/v1/tuning").await.json();
    assert_eq!(v["values"]["nf_conntrack_tcp_timeout_established"], 432000);
    let patch = |body: &'static str| {
        let app = e.app.clone();
        async move {
            send(
                &app,
                Method::PATCH,
                "/api/v1/tuning",
                Some(TOKEN),
                Some(("application/json", body.as_bytes())),
            )
            .await
        }
    };
    let r = patch(r#"{"nf_conntrack_udp_timeout": 10, "nf_conntrack_tcp_loose": false}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["values"]["nf_conntrack_udp_timeout"], 10);
    assert_eq!(e.fake.state().tuning["nf_conntrack_tcp_loose"], 0);
    assert_eq!(
        get(&e.app, "/api/v1/tuning").await.json()["values"]["nf_conntrack_udp_timeout"],
        10
    );

    // Out of range, unknown, wrong type: 400 naming the field; nothing applied.
    let before = e.fake.state().tuning.clone();
    let v = patch(r#"{"nf_conntrack_udp_timeout": 20, "nf_conntrack_tcp_loose": 7}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    assert_eq!(v["field"], "nf_conntrack_tcp_loose");
    let v = patch(r#"{"nf_conntrack_bogus_timeout_x": 1, "nf_conntrack_frobs": 1}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    // Names are checked in order; the first refused one is named (fwd's validator: a
    // name that merely looks like a timeout is unknown too).
    assert_eq!(v["field"], "nf_conntrack_bogus_timeout_x");
    // The API takes the full sysctl names only (fwctl expands the short ones).
    let v = patch(r#"{"nf_conntrack_udp_timeout": 20, "tcp_loose": 1}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    assert_eq!(v["field"], "tcp_loose");
    let v = patch(r#"{"nf_conntrack_udp_timeout": 20.5}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    assert_eq!(v["field"], "nf_conntrack_udp_timeout");
    let v = patch(r#"{"nf_conntrack_max": -1}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    assert_eq!(v["field"], "nf_conntrack_max");
    // A boolean only for the 0/1 switches: `nf_conntrack_events` is 0, 1 or 2.
    let v = patch(r#"{"nf_conntrack_events": false}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    assert_eq!(v["field"], "nf_conntrack_events");
    patch(r#"{"nf_conntrack_max": "big"}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_tunable");
    patch(r#"{}"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    patch(r#"[1]"#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    patch(r#"{"nf_conntrack_max": "#)
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(e.fake.state().tuning, before);
}

#[tokio::test]
async fn not_found_and_method_not_allowed_are_json() {
    let e = env().await;
    get(&e.app, "/api/v1/nothing")
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    send(&e.app, Method::POST, "/api/v1/ports", Some(TOKEN), None)
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split(' ').nth(1).unwrap();
                assert!(["counter", "gauge"].contains(&kind), "{line}");
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                assert!(l.ends_with('}'), "{line}");
                (n.to_string(), l.trim_end_matches('}').to_string())
            }
            None => (series.to_string(), String::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        out.push((name, labels, value));
    }
    out
}

fn metric(m: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
    m.iter()
        .find(|(n, l, _)| n == name && l == labels)
        .unwrap_or_else(|| panic!("no {name}{{{labels}}}"))
        .2
}

#[tokio::test]
async fn metrics_scrape_has_the_names_and_values() {
    let e = env().await;
    let before = e.fake.state().log.len();
    let r = get(&e.app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        e.fake.state().log.len() - before,
        3,
        "a scrape makes three control requests"
    );
    let m = parse_metrics(&r.text());
    for name in mgmt::metrics::NAMES {
        assert!(m.iter().any(|(n, _, _)| n == name), "{name} missing");
    }
    assert_eq!(metric(&m, "fwd_up", ""), 1.0);
    assert_eq!(metric(&m, "fwd_conntrack_entries", ""), 23.0);
    // The expectation families, from `conntrack_expect` without its listing.
    assert_eq!(metric(&m, "fwd_conntrack_expect_entries", ""), 1.0);
    assert_eq!(metric(&m, "fwd_conntrack_expect_entries_limit", ""), 4096.0);
    assert_eq!(metric(&m, "fwd_conntrack_expect_created_total", ""), 5.0);
    assert_eq!(metric(&m, "fwd_conntrack_expect_taken_total", ""), 3.0);
    assert_eq!(metric(&m, "fwd_conntrack_expect_deleted_total", ""), 1.0);
    assert_eq!(metric(&m, "fwd_conntrack_expect_full_total", ""), 2.0);
    assert_eq!(
        metric(&m, "fwd_worker_helper_announced_total", "worker=\"1\""),
        3.0
    );
    assert_eq!(
        metric(&m, "fwd_worker_helper_related_total", "worker=\"0\""),
        3.0
    );
    assert_eq!(
        metric(&m, "fwd_worker_helper_malformed_total", "worker=\"0\""),
        1.0
    );
    assert!(
        e.fake.state().log.iter().any(|r| r
            == &proto::Request::ConntrackExpect {
                counters_only: true
            }),
        "the scrape asks for the counters only"
    );
    assert_eq!(metric(&m, "fwd_conntrack_entries_limit", ""), 262144.0);
    assert_eq!(
        metric(&m, "fwd_conntrack_found_total", "worker=\"1\""),
        200.0
    );
    assert_eq!(
        metric(
            &m,
            "fwd_worker_drops_total",
            "reason=\"no_route\",worker=\"0\""
        ),
        3.0
    );
    assert_eq!(
        metric(&m, "fwd_port_receive_packets_total", "port=\"lan\""),
        5000.0
    );
    assert_eq!(
        metric(&m, "fwd_nat_port_exhausted_total", "worker=\"0\""),
        2.0
    );
    assert_eq!(
        metric(&m, "fwd_icmp_errors_sent_total", "worker=\"1\""),
        13.0
    );
    assert_eq!(
        metric(&m, "fwd_icmp_errors_ratelimited_total", "worker=\"0\""),
        4.0
    );
    assert_eq!(
        metric(&m, "fwd_verdict_cache_hits_total", "worker=\"0\""),
        700.0
    );
    assert_eq!(
        metric(
            &m,
            "fwd_rule_packets_total",
            "chain=\"input\",family=\"inet\",handle=\"5\",table=\"filter\""
        ),
        42.0
    );
    assert_eq!(metric(&m, "fwd_ruleset_generation", ""), 1.0);

    // Counters move.
    e.fake.state().stats.workers[0].rx_packets += 500;
    let m = parse_metrics(&get(&e.app, "/metrics").await.text());
    assert_eq!(
        metric(&m, "fwd_worker_receive_packets_total", "worker=\"0\""),
        1500.0
    );
    insta::assert_snapshot!("metrics_scrape", get(&e.app, "/metrics").await.text());
}

#[tokio::test]
async fn sse_stream_delivers_filtered_events() {
    let e = env().await;
    let req = Request::builder()
        .uri("/api/v1/conntrack/events?proto=tcp&events=NEW,DESTROY")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let resp = e.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = resp.into_body();
    // The subscription is open before the response starts.
    assert_eq!(e.fake.subscribers(), 1);
    e.fake.emit(EventType::Update, common::entry(0, "tcp")); // type filtered out
    e.fake.emit(EventType::New, common::entry(1, "udp")); // proto filtered out
    e.fake.emit(EventType::New, common::entry(2, "tcp"));
    e.fake.emit(EventType::Destroy, common::entry(4, "tcp"));
    let mut text = String::new();
    while text.matches("\n\n").count() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("events arrive")
            .unwrap()
            .unwrap();
        if let Ok(d) = frame.into_data() {
            text += std::str::from_utf8(&d).unwrap();
        }
    }
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            let ev = b.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = b.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (ev, serde_json::from_str(data).unwrap())
        })
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0].0, "NEW");
    assert_eq!(events[0].1["entry"]["orig"]["sport"], 40002);
    assert_eq!(events[1].0, "DESTROY");
    assert_eq!(events[1].1["event"], "DESTROY");
    get(&e.app, "/api/v1/conntrack/events?events=EXPLODE")
        .await
        .error(StatusCode::BAD_REQUEST, "bad_filter");
}

/// The API over the fake with an `--ha` daemon of config `ha_json` (its tasks not started).
fn app_with_ha(e: &Env, ha_json: &str) -> Router {
    let mut state = AppState::new(
        Arc::new(ControlClient::new(&e.fake.path, Duration::from_secs(5))),
        Duration::from_secs(1),
        policy(|_| {}),
    );
    state.ha = Some(mgmt::ha::HaHandle::new(
        mgmt::ha::HaConfig::parse(ha_json).unwrap(),
    ));
    router(state)
}

#[tokio::test]
async fn ha_daemon_status_and_metrics() {
    let e = env().await;
    // The daemon's tasks are not started: its status is what the API and /metrics show.
    let app = app_with_ha(
        &e,
        r#"{"role": "backup", "peer": "198.18.9.1:7400", "bind": "198.18.9.2:7400"}"#,
    );
    let v = get(&app, "/api/v1/ha").await.json();
    assert_eq!(v["enabled"], true, "{v}");
    assert_eq!(v["sync"]["role"], "backup", "{v}");
    assert_eq!(v["sync"]["peer"]["address"], "198.18.9.1:7400", "{v}");
    assert_eq!(v["sync"]["peer"]["up"], false, "{v}");
    assert_eq!(v["sync"]["queue_cap"], 4096, "{v}");
    let r = send(&app, Method::POST, "/api/v1/ha/resync", Some(TOKEN), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let m = parse_metrics(&get(&app, "/metrics").await.text());
    for name in mgmt::metrics::HA_NAMES {
        assert!(m.iter().any(|(n, _, _)| n == name), "{name} missing");
    }
    assert_eq!(metric(&m, "fwd_ha_cache_entries", ""), 3.0);
    assert_eq!(metric(&m, "fwd_ha_queue_limit", ""), 4096.0);
    assert_eq!(metric(&m, "fwd_ha_peer_up", ""), 0.0);
}

#[tokio::test]
async fn ha_status_commit_and_resync_without_the_daemon() {
    let e = env().await;
    let v = get(&e.app, "/api/v1/ha").await.json();
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["fwd"]["cache_entries"], 3, "{v}");
    assert!(v.get("sync").is_none(), "{v}");
    let r = send(&e.app, Method::POST, "/api/v1/ha/commit", Some(TOKEN), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["committed"], 3);
    send(&e.app, Method::POST, "/api/v1/ha/resync", Some(TOKEN), None)
        .await
        .error(StatusCode::CONFLICT, "ha_disabled");
    // Writes need the token.
    send(&e.app, Method::POST, "/api/v1/ha/commit", None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn ha_takeover_passes_the_addresses_given_else_the_configured_ones() {
    let e = env().await;
    let takeover = |app: Router, body: Option<&'static str>| async move {
        let body = body.map(|b| ("application/json", b.as_bytes()));
        send(&app, Method::POST, "/api/v1/ha/takeover", Some(TOKEN), body).await
    };
    // No daemon, no body: fwd announces all of its addresses (an empty list).
    let r = takeover(e.app.clone(), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (
            v["counters"]["committed"].clone(),
            v["garp_sent"].clone(),
            v["na_sent"].clone()
        ),
        (3.into(), 0.into(), 0.into()),
        "{v}"
    );
    let r = takeover(
        e.app.clone(),
        Some(r#"{"addresses": ["198.51.100.1", "2001:db8::1", "192.0.2.99"]}"#),
    )
    .await;
    let v = r.json();
    assert_eq!(
        (v["garp_sent"].clone(), v["na_sent"].clone()),
        (1.into(), 1.into()),
        "{v}"
    );
    assert_eq!(v["not_local"], serde_json::json!(["192.0.2.99"]), "{v}");
    takeover(e.app.clone(), Some(r#"{"addresses": ["198.51.100.300"]}"#))
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    takeover(e.app.clone(), Some(r#"{"adresses": []}"#))
        .await
        .error(StatusCode::BAD_REQUEST, "bad_request");
    send(&e.app, Method::POST, "/api/v1/ha/takeover", None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    // With the daemon: its service_addresses when the body names none.
    let app = app_with_ha(
        &e,
        r#"{"role": "backup", "peer": "198.18.9.1:7400", "bind": "198.18.9.2:7400",
            "service_addresses": ["198.51.100.1", "198.51.100.2"]}"#,
    );
    let v = takeover(app, None).await.json();
    assert_eq!(
        (v["garp_sent"].clone(), v["na_sent"].clone()),
        (2.into(), 0.into()),
        "{v}"
    );
}

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let e = env().await;
    let v = get(&e.app, "/api/v1/openapi.json").await.json();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let paths = v["paths"].as_object().unwrap();
    for (p, m) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/api/v1/ruleset", "get"),
        ("/api/v1/ruleset", "put"),
        ("/api/v1/ruleset/check", "post"),
        ("/api/v1/ruleset/commands", "post"),
        ("/api/v1/ruleset/commands/check", "post"),
        ("/api/v1/sets/{table}/{set}/elements", "get"),
        ("/api/v1/sets/{table}/{set}/elements", "post"),
        ("/api/v1/sets/{table}/{set}/elements", "delete"),
        ("/api/v1/conntrack", "get"),
        ("/api/v1/conntrack", "delete"),
        ("/api/v1/conntrack/count", "get"),
        ("/api/v1/conntrack/stats", "get"),
        ("/api/v1/conntrack/expect", "get"),
        ("/api/v1/conntrack/events", "get"),
        ("/api/v1/tuning", "get"),
        ("/api/v1/tuning", "patch"),
        ("/api/v1/ports", "get"),
        ("/api/v1/workers", "get"),
        ("/api/v1/ha", "get"),
        ("/api/v1/ha/commit", "post"),
        ("/api/v1/ha/takeover", "post"),
        ("/api/v1/ha/resync", "post"),
    ] {
        assert!(
            paths.get(p).and_then(|x| x.get(m)).is_some(),
            "{m} {p} missing"
        );
    }
    let schemas = v["components"]["schemas"].as_object().unwrap();
    for s in [
        "ApiError",
        "CtEntry",
        "ConntrackPage",
        "Tuning",
        "RulesetView",
        "Workers",
        "EventLine",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
    let params: Vec<&str> = v["paths"]["/api/v1/conntrack"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "src", "dst", "sport", "dport", "proto", "state", "mark", "zone", "family", "status",
        "cursor", "limit",
    ] {
        assert!(params.contains(&p), "parameter {p} missing");
    }
    insta::assert_snapshot!("openapi", serde_json::to_string_pretty(&v).unwrap());
    let open = env_with(1, policy(|a| a.open_reads = true), Duration::from_secs(5)).await;
    let open_doc = get(&open.app, "/api/v1/openapi.json").await.json();
    // Each operation's security is what the server enforces: sent without a token, an
    // operation that declares the bearer scheme is a 401 and one that declares none is not.
    for (app, doc) in [(&e.app, &v), (&open.app, &open_doc)] {
        let mut secured = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let needs = op["security"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.get("bearer").is_some());
                let has_401 = op["responses"].get("401").is_some();
                assert_eq!(needs, has_401, "{method} {path}");
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                // The status only: an open event stream never ends.
                let req = Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .body(Body::empty())
                    .unwrap();
                let status = app.clone().oneshot(req).await.unwrap().status();
                assert_eq!(
                    status == StatusCode::UNAUTHORIZED,
                    needs,
                    "{method} {path}: {status}"
                );
                secured += usize::from(needs);
            }
        }
        assert!(secured > 0);
    }
    // --open-reads opens the GET routes and nothing else.
    let ops = |doc: &Value, secured: bool| -> Vec<String> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if op["responses"].get("401").is_some() == secured {
                    out.push(format!("{method} {path}"));
                }
            }
        }
        out
    };
    let opened: Vec<String> = ops(&open_doc, false)
        .into_iter()
        .filter(|o| !ops(&v, false).contains(o))
        .collect();
    assert!(opened.iter().all(|o| o.starts_with("get ")), "{opened:?}");
    assert!(
        opened.contains(&"get /api/v1/conntrack".to_string()),
        "{opened:?}"
    );
    assert!(
        ops(&open_doc, true).contains(&"post /api/v1/ruleset/check".to_string()),
        "the check compiles in fwd: it keeps the token"
    );
}

#[tokio::test]
async fn sse_client_leaving_closes_the_subscription() {
    let e = env().await;
    let req = Request::builder()
        .uri("/api/v1/conntrack/events")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let resp = e.app.clone().oneshot(req).await.unwrap();
    assert_eq!(e.fake.subscribers(), 1);
    drop(resp);
    // The fake notices the closed connection on its next write.
    let mut left = false;
    for _ in 0..100 {
        e.fake.emit(EventType::New, common::entry(0, "tcp"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        if e.fake.subscribers() == 0 {
            left = true;
            break;
        }
    }
    assert!(left, "the control connection of the subscription is closed");
}

#[tokio::test]
async fn sse_stream_ends_with_an_error_event_when_fwd_goes_away() {
    let e = env().await;
    let req = Request::builder()
        .uri("/api/v1/conntrack/events")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let mut body = e.app.clone().oneshot(req).await.unwrap().into_body();
    e.fake.stop();
    let mut text = String::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the stream ends")
    {
        if let Ok(d) = frame.unwrap().into_data() {
            text += std::str::from_utf8(&d).unwrap();
        }
    }
    assert!(text.starts_with("event: error\n"), "{text}");
}

#[tokio::test]
async fn oversized_bodies_are_413_and_never_sent() {
    let e = env().await;
    let sent = e.fake.state().log.len();
    // Over the body limit.
    let big = vec![b'#'; proto::MAX_LINE + 1];
    send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("text/plain", &big)),
    )
    .await
    .error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // Under the body limit, but over the control line once JSON-escaped.
    let quotes = vec![b'"'; proto::MAX_LINE / 2 + 16];
    send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("text/plain", &quotes)),
    )
    .await
    .error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(e.fake.state().log.len(), sent);
    assert_eq!(e.fake.state().generation, 1);
    // The connection is still usable.
    assert_eq!(get(&e.app, "/readyz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn ruleset_commands_apply_one_change_or_nothing() {
    let e = env().await;
    let cmds = "add rule inet filter input udp dport 53 accept\n";
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/commands",
        None,
        Some(("text/plain", cmds.as_bytes())),
    )
    .await;
    r.error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/commands",
        Some(TOKEN),
        Some(("application/json", b"{}")),
    )
    .await;
    r.error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/commands",
        Some(TOKEN),
        Some(("text/plain", b"  \n")),
    )
    .await;
    r.error(StatusCode::BAD_REQUEST, "bad_request");
    let bad =
        "add rule inet filter input udp dport 53 accept\ndelete rule inet filter input handle 9\n";
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/commands",
        Some(TOKEN),
        Some(("text/plain", bad.as_bytes())),
    )
    .await;
    let v = r.error(StatusCode::BAD_REQUEST, "bad_ruleset");
    assert_eq!(
        (v["line"].as_u64(), v["column"].as_u64()),
        (Some(2), Some(38)),
        "{v}"
    );
    assert_eq!(e.fake.state().ruleset, INITIAL_RULESET);
    // The check route: what would change, nothing applied.
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/commands/check",
        Some(TOKEN),
        Some(("text/plain", cmds.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["dry_run"].as_bool(), v["generation"].as_u64()),
        (Some(true), Some(1)),
        "{v}"
    );
    assert_eq!(e.fake.state().ruleset, INITIAL_RULESET);
    let r = send(
        &e.app,
        Method::POST,
        "/api/v1/ruleset/commands",
        Some(TOKEN),
        Some(("text/plain", cmds.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"generation": 2, "dry_run": false, "rules": 3,
            "before": {"tables": 1, "chains": 1, "rules": 2},
            "after": {"tables": 1, "chains": 1, "rules": 3}})
    );
    assert!(e.fake.state().ruleset.contains("udp dport 53 accept"));
}

#[tokio::test]
async fn set_elements_list_add_delete() {
    let e = env().await;
    let rs = "table inet filter {\n  map fw {\n    type ipv4_addr . inet_service : verdict\n    elements = { 198.18.0.1 . 22 : accept }\n  }\n  chain input {\n    type filter hook input priority 0; policy drop;\n    ip saddr . tcp dport vmap @fw\n  }\n}\n";
    let r = send(
        &e.app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(TOKEN),
        Some(("text/plain", rs.as_bytes())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let path = "/api/v1/sets/filter/fw/elements";
    let body = |v: Value| v.to_string().into_bytes();
    // Reads and writes need the token.
    send(&e.app, Method::GET, path, None, None)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let add = body(serde_json::json!({"elements": [{"key": "198.18.0.3 . 80", "data": "drop"}]}));
    send(
        &e.app,
        Method::POST,
        path,
        None,
        Some(("application/json", &add)),
    )
    .await
    .error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = send(
        &e.app,
        Method::POST,
        path,
        Some(TOKEN),
        Some(("application/json", &add)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["generation"], 3);
    let r = send(
        &e.app,
        Method::GET,
        &format!("{path}?family=inet"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (
            v["keyword"].as_str(),
            v["key_type"].as_str(),
            v["data_type"].as_str()
        ),
        (
            Some("map"),
            Some("ipv4_addr . inet_service"),
            Some("verdict")
        )
    );
    assert_eq!(
        v["elements"],
        serde_json::json!([
            {"key": "198.18.0.1 . 22", "data": "accept"},
            {"key": "198.18.0.3 . 80", "data": "drop"}
        ])
    );
    // 409: there with other data (and `create` of anything there); 404: delete of what is
    // not there, an unknown set or table; 400: an element that does not parse, a bad
    // family, a missing body; 415: not JSON. Nothing changes.
    let j = |v: Value| v.to_string();
    let cases = [
        (
            Method::POST,
            path.to_string(),
            j(json!({"elements": [{"key": "198.18.0.3 . 80", "data": "accept"}]})),
            StatusCode::CONFLICT,
            "conflict",
            Some("elements[0]"),
        ),
        (
            Method::POST,
            path.to_string(),
            j(json!({"elements": [{"key": "198.18.0.1 . 22", "data": "accept"}], "create": true})),
            StatusCode::CONFLICT,
            "conflict",
            Some("elements[0]"),
        ),
        (
            Method::DELETE,
            path.to_string(),
            j(json!({"elements": [{"key": "198.18.0.3 . 80"}, {"key": "198.18.0.9 . 1"}]})),
            StatusCode::NOT_FOUND,
            "not_found",
            Some("elements[1]"),
        ),
        (
            Method::GET,
            "/api/v1/sets/filter/nope/elements".into(),
            String::new(),
            StatusCode::NOT_FOUND,
            "not_found",
            Some("set"),
        ),
        (
            Method::GET,
            "/api/v1/sets/nat/fw/elements".into(),
            String::new(),
            StatusCode::NOT_FOUND,
            "not_found",
            Some("table"),
        ),
        (
            Method::GET,
            format!("{path}?family=ip"),
            String::new(),
            StatusCode::NOT_FOUND,
            "not_found",
            Some("table"),
        ),
        (
            Method::GET,
            format!("{path}?family=arp"),
            String::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("family"),
        ),
        (
            Method::POST,
            path.to_string(),
            j(json!({"elements": [{"key": "198.18.0.4", "data": "drop"}]})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("elements[0].key"),
        ),
        (
            Method::POST,
            path.to_string(),
            j(json!({"elements": []})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("elements"),
        ),
        (
            Method::POST,
            path.to_string(),
            j(json!({"elements": 1})),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::POST,
            path.to_string(),
            " ".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
    ];
    for (method, uri, b, status, code, field) in cases {
        let body = (!b.is_empty()).then_some(("application/json", b.as_bytes()));
        let v = send(&e.app, method.clone(), &uri, Some(TOKEN), body)
            .await
            .error(status, code);
        assert_eq!(v["field"].as_str(), field, "{method} {uri} {b}: {v}");
    }
    send(
        &e.app,
        Method::POST,
        path,
        Some(TOKEN),
        Some(("text/plain", &add)),
    )
    .await
    .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert_eq!(
        e.fake.state().generation,
        3,
        "no failed request changed anything"
    );
    // DELETE by key (a map element's data may be left out).
    let del = body(serde_json::json!({"elements": [{"key": "198.18.0.3 . 80"}]}));
    let r = send(
        &e.app,
        Method::DELETE,
        path,
        Some(TOKEN),
        Some(("application/json", &del)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        e.fake
            .state()
            .ruleset
            .contains("elements = { 198.18.0.1 . 22 : accept }"),
        "{}",
        e.fake.state().ruleset
    );
}
