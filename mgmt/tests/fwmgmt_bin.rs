//! The fwmgmt binary: flags, token file, serving, restart (it holds no state).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::FakeDataplane;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fwmgmt"))
        .args(args)
        .env_remove("FWMGMT_LISTEN")
        .env_remove("FWMGMT_CONTROL_SOCKET")
        .env_remove("FWMGMT_TOKEN_FILE")
        .env_remove("FWMGMT_OPEN_READS")
        .env_remove("FWMGMT_AUTH_METRICS")
        .env_remove("FWMGMT_ALLOWED_HOSTS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// GET `url` until it answers (bounded: 100 tries, 50 ms apart).
fn wait_up(url: &str) -> ureq::Response {
    for _ in 0..100 {
        match ureq::get(url).timeout(Duration::from_secs(2)).call() {
            Ok(r) => return r,
            Err(ureq::Error::Status(_, r)) => return r,
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    panic!("{url} never answered");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_applies_and_survives_its_own_restart() {
    let fake = FakeDataplane::start(4).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bin-token\n").unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let sock = fake.path.to_str().unwrap().to_string();
    let tok = token.to_str().unwrap().to_string();
    let args = [
        "--listen".to_string(),
        listen,
        "--control-socket".into(),
        sock,
        "--token-file".into(),
        tok,
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut child = spawn(&argv);
    let b = base.clone();
    let (ready, put, put_noauth, metrics) = blocking(move || {
        wait_up(&format!("{b}/healthz"));
        let ready = ureq::get(&format!("{b}/readyz")).call().unwrap().status();
        let put = ureq::put(&format!("{b}/api/v1/ruleset"))
            .set("Authorization", "Bearer bin-token")
            .set("Content-Type", "text/plain")
            .send_string("table inet t {\n}\n")
            .map(|r| r.status())
            .unwrap_or(0);
        let put_noauth = match ureq::put(&format!("{b}/api/v1/ruleset")).send_string("x") {
            Err(ureq::Error::Status(s, _)) => s,
            _ => 0,
        };
        let metrics = ureq::get(&format!("{b}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        (ready, put, put_noauth, metrics)
    })
    .await;
    assert_eq!((ready, put, put_noauth), (200, 200, 401));
    assert!(
        metrics.contains("\nfwd_up 1\n") && metrics.contains("\nfwd_ruleset_generation 2\n"),
        "{metrics}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A new fwmgmt finds fwd's state as it was: it keeps none of its own.
    let mut child = spawn(&argv);
    let b = base.clone();
    let (noauth, text) = blocking(move || {
        wait_up(&format!("{b}/healthz"));
        let noauth = match ureq::get(&format!("{b}/api/v1/ruleset?format=text")).call() {
            Err(ureq::Error::Status(s, _)) => s,
            _ => 0,
        };
        let text = ureq::get(&format!("{b}/api/v1/ruleset?format=text"))
            .set("Authorization", "Bearer bin-token")
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        (noauth, text)
    })
    .await;
    assert_eq!(noauth, 401, "reads need the token by default");
    assert_eq!(text, "table inet t {\n}\n");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_configuration_exits_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    for args in [
        // Removed in favour of reads needing the token by default: refused, not ignored.
        vec!["--listen", &listen, "--auth-reads"],
        vec!["--listen", &listen, "--auth-metrics"],
        vec!["--listen", &listen, "--token-file", empty.to_str().unwrap()],
        vec!["--listen", &listen, "--token-file", "/nonexistent/token"],
    ] {
        let out = spawn(&args).wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_it_even_with_an_open_event_stream() {
    let fake = FakeDataplane::start(1).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let sock = fake.path.to_str().unwrap().to_string();
    // --open-reads: the event stream needs no token (and none is configured).
    let mut child = spawn(&[
        "--listen",
        &listen,
        "--control-socket",
        &sock,
        "--open-reads",
    ]);
    let base = format!("http://127.0.0.1:{port}");
    let b = base.clone();
    let stream = blocking(move || {
        wait_up(&format!("{b}/healthz"));
        ureq::get(&format!("{b}/api/v1/conntrack/events"))
            .call()
            .unwrap()
    })
    .await;
    assert_eq!(fake.subscribers(), 1);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    for _ in 0..100 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if status.is_none() {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "fwmgmt exits within 5 s: {status:?}"
    );
    drop(stream);
}
