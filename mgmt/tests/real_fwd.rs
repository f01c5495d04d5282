//! The API against a running `fwd` (not the fake). Ignored by default; run with
//!
//! ```text
//! FWMGMT_TEST_SOCKET=/run/fwd/control.sock cargo nextest run -p mgmt --run-ignored only
//! ```
//!
//! It changes the running ruleset and one timeout, and puts both back at the end.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use mgmt::api::{AppState, router};
use mgmt::auth::Auth;
use mgmt::client::ControlClient;
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "real-fwd-test";

fn app() -> Router {
    let path = std::env::var("FWMGMT_TEST_SOCKET")
        .expect("set FWMGMT_TEST_SOCKET to fwd's control socket");
    let state_parts = (
        Arc::new(ControlClient::new(path, Duration::from_secs(10))),
        Duration::from_secs(2),
    );
    router(AppState::new(
        state_parts.0,
        state_parts.1,
        Auth::new(Some(TOKEN.into())),
    ))
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<(&str, String)>,
) -> (StatusCode, Value, String) {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    let req = match body {
        Some((ct, text)) => b.header(header::CONTENT_TYPE, ct).body(Body::from(text)),
        None => {
            b = b.header(header::ACCEPT, "application/json");
            b.body(Body::empty())
        }
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

async fn patch(app: &Router, body: impl Into<String>) -> (StatusCode, Value, String) {
    let body = Some(("application/json", body.into()));
    call(app, Method::PATCH, "/api/v1/tuning", body).await
}

#[tokio::test]
#[ignore = "needs a running fwd: FWMGMT_TEST_SOCKET=... --run-ignored only"]
async fn routes_against_the_real_fwd() {
    let app = app();
    let (s, v, t) = call(&app, Method::GET, "/readyz", None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(v["protocol"], 1);

    // Ruleset: a bad one is a 400 with a location and changes nothing.
    let (_, before, _) = call(&app, Method::GET, "/api/v1/ruleset", None).await;
    let original = before["text"].as_str().unwrap().to_string();
    let bad = "table inet mgmt_test {\n  chain c {\n    frobnicate\n  }\n}\n";
    let (s, v, t) = call(
        &app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(("text/plain", bad.into())),
    )
    .await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_ruleset")),
        "{t}"
    );
    assert!(
        v["line"].as_u64().is_some() && v["column"].as_u64().is_some(),
        "{t}"
    );
    let (_, after, _) = call(&app, Method::GET, "/api/v1/ruleset", None).await;
    assert_eq!(after["generation"], before["generation"]);

    // A good one applies and shows up; then the original is put back.
    let good = "table inet mgmt_test {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport 9 counter accept\n  }\n}\n";
    let (s, v, t) = call(
        &app,
        Method::POST,
        "/api/v1/ruleset/check",
        Some(("text/plain", good.into())),
    )
    .await;
    assert_eq!(
        (s, v["dry_run"].clone()),
        (StatusCode::OK, json!(true)),
        "{t}"
    );
    let (s, v, t) = call(
        &app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(("text/plain", good.into())),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(v["generation"].as_u64() > before["generation"].as_u64());
    let (_, now, _) = call(&app, Method::GET, "/api/v1/ruleset", None).await;
    assert!(now["text"].as_str().unwrap().contains("mgmt_test"), "{now}");
    let (s, _, t) = call(
        &app,
        Method::PUT,
        "/api/v1/ruleset",
        Some(("text/plain", original)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "restoring the original ruleset: {t}");

    // Conntrack: list pages agree with count; unfiltered delete refused.
    let (_, c, _) = call(&app, Method::GET, "/api/v1/conntrack/count", None).await;
    let (s, page, t) = call(&app, Method::GET, "/api/v1/conntrack?limit=1", None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert!(
        page["entries"].as_array().unwrap().len() as u64 <= c["count"].as_u64().unwrap().max(1)
    );
    let (s, v, _) = call(&app, Method::DELETE, "/api/v1/conntrack", None).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("refused_unfiltered"))
    );
    let (s, _, t) = call(&app, Method::GET, "/api/v1/conntrack/stats", None).await;
    assert_eq!(s, StatusCode::OK, "{t}");

    // Tuning: a valid change applies, an out-of-range one is refused; restore.
    let (_, tun, _) = call(&app, Method::GET, "/api/v1/tuning", None).await;
    // Absent when fwd only lists configured values: then it runs with Linux's default, 30 s.
    let old = tun["values"]["nf_conntrack_udp_timeout"]
        .as_u64()
        .unwrap_or(30);
    let (s, v, t) = patch(&app, r#"{"nf_conntrack_udp_timeout": 17}"#).await;
    assert_eq!(
        (s, v["values"]["nf_conntrack_udp_timeout"].clone()),
        (StatusCode::OK, json!(17)),
        "{t}"
    );
    let (s, v, t) = patch(&app, r#"{"nf_conntrack_tcp_loose": 9}"#).await;
    assert_eq!(
        (s, v["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("bad_tunable")),
        "{t}"
    );
    let (s, _, _) = patch(&app, format!(r#"{{"nf_conntrack_udp_timeout": {old}}}"#)).await;
    assert_eq!(s, StatusCode::OK);

    // Ports, workers, metrics.
    for uri in ["/api/v1/ports", "/api/v1/workers"] {
        let (s, _, t) = call(&app, Method::GET, uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {t}");
    }
    let (_, _, text) = call(&app, Method::GET, "/metrics", None).await;
    assert!(text.contains("\nfwd_up 1\n"), "{text}");
    for name in [
        "fwd_conntrack_entries",
        "fwd_conntrack_found_total",
        "fwd_worker_receive_packets_total",
        "fwd_port_receive_packets_total",
    ] {
        assert!(text.contains(name), "{name} missing from the scrape");
    }
}
