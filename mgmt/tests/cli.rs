//! fwctl against a real fwmgmt router (TCP) in front of the FakeDataplane.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{FakeDataplane, INITIAL_RULESET};
use fwd_proto::EventType;
use mgmt::api::{AppState, router};
use mgmt::auth::Auth;
use mgmt::client::ControlClient;

const TOKEN: &str = "cli-token";

struct Env {
    fake: FakeDataplane,
    url: String,
    token_file: PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let fake = FakeDataplane::start(25).await;
    let state_parts = (
        Arc::new(ControlClient::new(&fake.path, Duration::from_secs(5))),
        Duration::from_millis(500),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(AppState::new(
        state_parts.0,
        state_parts.1,
        Auth::new(Some(TOKEN.into())),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    Env {
        fake,
        url,
        token_file,
        _dir: dir,
    }
}

impl Env {
    fn cmd(&self, args: &[&str], token: bool) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
        c.arg("--url").arg(&self.url);
        if token {
            c.arg("--token-file").arg(&self.token_file);
        }
        c.args(args);
        c.env_remove("FWCTL_URL").env_remove("FWCTL_TOKEN_FILE");
        c
    }

    async fn run(&self, args: &[&str], token: bool) -> (bool, String, String) {
        let mut c = self.cmd(args, token);
        let out: Output = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conntrack_list_expect_like_conntrack_l_expect() {
    let e = env().await;
    let (ok, out, err) = e.run(&["conntrack", "list", "--expect"], true).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "297 proto=6 src=203.0.113.9 dst=198.51.100.2 sport=0 dport=50123 \
         mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 \
         master-src=198.51.100.2 master-dst=203.0.113.9 sport=40000 dport=21 class=0 helper=ftp\n"
    );
    assert!(err.contains("1 expectations have been shown"), "{err}");
    assert_eq!(
        e.fake.state().log.last(),
        Some(&fwd_proto::Request::ConntrackExpect {
            counters_only: false
        })
    );
    let (ok, out, _) = e
        .run(&["--json", "conntrack", "list", "--expect"], true)
        .await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["helper"], "ftp", "{v}");
    // A filter does not apply to expectations: refused before anything is sent.
    let sent = e.fake.state().log.len();
    let (ok, _, err) = e
        .run(&["conntrack", "list", "--expect", "-p", "udp"], true)
        .await;
    assert!(!ok && err.contains("takes no filter"), "{err}");
    assert_eq!(e.fake.state().log.len(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conntrack_list_count_delete_like_conntrack() {
    let e = env().await;
    let (ok, out, err) = e.run(&["conntrack", "list", "--page", "10"], true).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 25, "all pages listed");
    assert_eq!(
        lines[0],
        "tcp      6  300 ESTABLISHED src=198.18.0.1 dst=203.0.113.1 sport=40000 dport=443 packets=10 bytes=1000 \
         src=203.0.113.1 dst=198.18.0.1 sport=443 dport=40000 packets=10 bytes=1000 [ASSURED] mark=0 use=1"
    );
    assert!(err.contains("25 flow entries have been shown"), "{err}");

    let (ok, out, _) = e
        .run(&["--json", "conntrack", "list", "-p", "udp"], true)
        .await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 12);

    let (ok, out, _) = e
        .run(&["conntrack", "count", "-s", "198.18.0.0/29"], true)
        .await;
    assert!(ok);
    assert_eq!(out.trim(), "7");

    // Reads need the token (like `conntrack -L` needs CAP_NET_ADMIN); nothing reaches fwd.
    let sent = e.fake.state().log.len();
    for args in [
        &["conntrack", "list"][..],
        &["conntrack", "list", "--expect"],
        &["conntrack", "count", "-p", "udp"],
        &["conntrack", "stats"],
    ] {
        let (ok, out, err) = e.run(args, false).await;
        assert!(
            !ok && out.is_empty() && err.contains("unauthorized"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(e.fake.state().log.len(), sent);

    // Delete: needs the token, and a filter or --all.
    let (ok, _, err) = e.run(&["conntrack", "delete", "-p", "udp"], false).await;
    assert!(!ok && err.contains("unauthorized"), "{err}");
    assert_eq!(e.fake.state().entries.len(), 25);
    let (ok, _, err) = e.run(&["conntrack", "delete"], true).await;
    assert!(!ok && err.contains("refused_unfiltered"), "{err}");
    let (ok, _, err) = e.run(&["conntrack", "delete", "-p", "udp"], true).await;
    assert!(
        ok && err.contains("12 flow entries have been deleted"),
        "{err}"
    );
    assert_eq!(e.fake.state().entries.len(), 13);
    let (ok, _, err) = e
        .run(&["conntrack", "count", "--dport", "http"], true)
        .await;
    assert!(
        !ok && err.contains("bad_filter") && err.contains("field `dport`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ruleset_show_apply_check() {
    let e = env().await;
    let (ok, out, _) = e.run(&["ruleset", "show"], true).await;
    assert!(ok);
    assert_eq!(out, INITIAL_RULESET);

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.nft");
    std::fs::write(
        &good,
        "table inet t {\n  chain c {\n    tcp dport 80 counter accept\n  }\n}\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.nft");
    std::fs::write(
        &bad,
        "table inet t {\n  chain c {\n    tcp dport 80 accept\n   wibble\n  }\n}\n",
    )
    .unwrap();
    let (g, b) = (good.to_str().unwrap(), bad.to_str().unwrap());

    let (ok, out, _) = e.run(&["ruleset", "check", g], true).await;
    assert!(ok && out.contains("ok (1 rules)"), "{out}");
    assert!(
        out.contains("would change tables 1 -> 1, chains 1 -> 1, rules 2 -> 1"),
        "{out}"
    );
    let (ok, _, err) = e.run(&["ruleset", "apply", b], true).await;
    assert!(!ok);
    assert!(err.contains(&format!("{b}:4:4: bad_ruleset")), "{err}");
    assert_eq!(e.fake.state().ruleset, INITIAL_RULESET);
    let (ok, out, err) = e.run(&["ruleset", "apply", g], true).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "ruleset applied: generation 2, 1 rules; tables 1 -> 1, chains 1 -> 1, rules 2 -> 1"
    );
    let (_, out, _) = e.run(&["ruleset", "show"], true).await;
    assert!(out.contains("tcp dport 80 counter accept"));

    // A .json file goes as nftables JSON; `-` reads stdin.
    let json = dir.path().join("rules.json");
    std::fs::write(
        &json,
        r#"{"nftables": [{"table": {"family": "inet", "name": "j"}}]}"#,
    )
    .unwrap();
    let (ok, out, err) = e
        .run(&["ruleset", "apply", json.to_str().unwrap()], true)
        .await;
    assert!(ok && out.contains("generation 3"), "{out}{err}");
    assert!(matches!(
        e.fake.state().log.last(),
        Some(fwd_proto::Request::RulesetReplace {
            ruleset: fwd_proto::RulesetSource::Json(_),
            ..
        })
    ));
    let mut c = e.cmd(&["ruleset", "apply", "-"], true);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"table inet s {\n}\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.fake.state().ruleset, "table inet s {\n}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuning_stats_ports_workers() {
    let e = env().await;
    let (ok, out, _) = e.run(&["tuning", "get", "udp_timeout"], true).await;
    assert!(ok);
    assert_eq!(out.trim(), "nf_conntrack_udp_timeout = 30");
    let (ok, out, err) = e
        .run(
            &[
                "tuning",
                "set",
                "udp_timeout=10",
                "nf_conntrack_tcp_loose=false",
            ],
            true,
        )
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("nf_conntrack_udp_timeout = 10") && out.contains("nf_conntrack_tcp_loose = 0"),
        "{out}"
    );
    assert_eq!(e.fake.state().tuning["nf_conntrack_udp_timeout"], 10);
    let (ok, _, err) = e
        .run(&["tuning", "set", "nf_conntrack_tcp_be_liberal=5"], true)
        .await;
    assert!(
        !ok && err.contains("bad_tunable") && err.contains("nf_conntrack_tcp_be_liberal"),
        "{err}"
    );
    let (ok, _, err) = e.run(&["tuning", "set", "udp_timeout"], true).await;
    assert!(!ok && err.contains("NAME=VALUE"), "{err}");

    let (ok, out, _) = e.run(&["conntrack", "stats"], true).await;
    assert!(ok);
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("cpu=0     found=100 invalid=1 insert=10"),
        "{out}"
    );
    assert!(out.contains("total     found=300"), "{out}");
    let (ok, out, _) = e.run(&["ports"], true).await;
    assert!(
        ok && out.lines().count() == 3 && out.contains("wan") && out.contains(" up "),
        "{out}"
    );
    let (ok, out, _) = e.run(&["workers"], true).await;
    assert!(
        ok && out.contains("25.0%") && out.contains("ct_invalid=7") && out.contains("ICMP_RLIM"),
        "{out}"
    );
    let (ok, out, _) = e.run(&["--json", "workers"], true).await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["workers"][0]["busy_ratio"], 0.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_until_count() {
    let e = env().await;
    let mut child = e
        .cmd(&["conntrack", "events", "-p", "tcp", "--count", "2"], true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) for the subscription to reach the fake.
    for _ in 0..100 {
        if e.fake.subscribers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e.fake.subscribers(), 1, "fwctl subscribed");
    e.fake.emit(EventType::New, common::entry(1, "udp"));
    e.fake.emit(EventType::New, common::entry(2, "tcp"));
    e.fake.emit(EventType::Destroy, common::entry(2, "tcp"));
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(10), lines)
        .await
        .expect("fwctl exits after two events")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("    [NEW] tcp      6  300 ESTABLISHED src=198.18.0.3"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("[DESTROY] tcp"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_is_an_error() {
    let e = env().await;
    let mut c = Command::new(env!("CARGO_BIN_EXE_fwctl"));
    c.args(["--url", "http://127.0.0.1:1", "conntrack", "count"]);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("fwctl: error:"));
    // fwd down behind a running fwmgmt.
    e.fake.stop();
    let (ok, _, err) = e.run(&["conntrack", "count"], true).await;
    assert!(!ok && err.contains("fwd_unreachable"), "{err}");
}

/// `fwctl iptables-restore`: translated locally, sent through the ruleset-replace API as
/// nft text (one new generation); `--print` sends nothing; errors name the iptables line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_restore_translates_and_replaces_the_ruleset() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.v4");
    std::fs::write(
        &file,
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m multiport --dports 22,80 -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (ok, out, err) = e.run(&["iptables-restore", "--print", f], true).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ip protocol tcp tcp dport { 22, 80 } counter packets 0 bytes 0 accept"),
        "{out}"
    );
    assert_eq!(
        e.fake.state().ruleset,
        INITIAL_RULESET,
        "--print sends nothing"
    );

    let (ok, out, err) = e.run(&["iptables-restore", f], true).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ruleset applied: generation 2, 1 rules"),
        "{out}"
    );
    assert!(e.fake.state().ruleset.contains("table ip filter"));

    std::fs::write(&file, "*filter\n-A INPUT -m recent --set -j DROP\nCOMMIT\n").unwrap();
    let (ok, _, err) = e.run(&["iptables-restore", f], true).await;
    assert!(!ok);
    assert!(
        err.contains(&format!("{f}:2:13: match `recent` is not supported")),
        "{err}"
    );
}

/// `fwctl nft`: one command as nft's words, `-f FILE`, `-a list ruleset` with handles;
/// an error points at the command's column and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nft_commands_change_the_ruleset_one_rule_at_a_time() {
    let e = env().await;
    let (ok, out, err) = e
        .run(
            &[
                "nft", "add", "rule", "inet", "filter", "input", "tcp", "dport", "80", "accept",
            ],
            true,
        )
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("generation 2") && out.contains("rules 2 -> 3"),
        "{out}"
    );
    let (ok, out, _) = e.run(&["nft", "-a", "list", "ruleset"], true).await;
    assert!(ok);
    assert!(
        out.contains("\t\ttcp dport 22 counter packets 0 bytes 0 accept # handle 2\n"),
        "{out}"
    );
    assert!(
        out.contains("\t\ttcp dport 80 accept # handle 3\n"),
        "{out}"
    );
    let (ok, _, err) = e
        .run(
            &[
                "nft", "delete", "rule", "inet", "filter", "input", "handle", "9",
            ],
            true,
        )
        .await;
    assert!(!ok);
    assert!(err.contains("command:1:38: bad_ruleset"), "{err}");
    assert_eq!(e.fake.state().generation, 2);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cmds.nft");
    std::fs::write(
        &f,
        "delete rule inet filter input handle 3\ninsert rule inet filter input position 2 udp dport 53 accept comment \"dns\"\n",
    )
    .unwrap();
    let (ok, out, err) = e.run(&["nft", "-c", "-f", f.to_str().unwrap()], true).await;
    assert!(ok && out.contains("ok (3 rules)"), "{out}{err}");
    assert_eq!(e.fake.state().generation, 2);
    let (ok, out, err) = e.run(&["nft", "-f", f.to_str().unwrap()], true).await;
    assert!(ok && out.contains("generation 3"), "{out}{err}");
    let text = e.fake.state().ruleset.clone();
    assert!(
        text.contains("ct state established,related accept\n\t\tudp dport 53 accept comment \"dns\"\n\t\ttcp dport 22"),
        "{text}"
    );
    assert!(!text.contains("dport 80"), "{text}");
    assert!(matches!(
        e.fake.state().log.last(),
        Some(fwd_proto::Request::RulesetCommands { dry_run: false, .. })
    ));
}

/// `fwctl set list|add|delete`: nft's words for elements, each change one generation; an
/// error names the element and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_elements_in_nfts_words() {
    let e = env().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("map.nft");
    std::fs::write(
        &f,
        "table inet filter {\n map fw { type ipv4_addr . inet_service : verdict; }\n set bl { type ipv4_addr; }\n}\n",
    )
    .unwrap();
    let (ok, _, err) = e.run(&["nft", "-f", f.to_str().unwrap()], true).await;
    assert!(ok, "{err}");
    let (ok, out, err) = e
        .run(
            &[
                "set",
                "add",
                "inet",
                "filter",
                "fw",
                "{",
                "198.18.0.1",
                ".",
                "22",
                ":",
                "accept,",
                "198.18.0.2 . 80 : jump input",
                "}",
            ],
            true,
        )
        .await;
    assert!(
        ok && out.contains("elements added: generation 3"),
        "{out}{err}"
    );
    let (ok, out, err) = e
        .run(
            &["set", "add", "filter", "bl", "198.18.0.7,", "198.18.0.8"],
            true,
        )
        .await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = e.run(&["set", "list", "inet", "filter", "fw"], true).await;
    assert!(ok);
    assert!(
        out.contains("elements = { 198.18.0.1 . 22 : accept, 198.18.0.2 . 80 : jump input }"),
        "{out}"
    );
    let (ok, out, _) = e
        .run(&["--json", "set", "list", "filter", "bl"], true)
        .await;
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["elements"],
        serde_json::json!([{"key": "198.18.0.7"}, {"key": "198.18.0.8"}])
    );
    let (ok, _, err) = e
        .run(
            &[
                "set",
                "delete",
                "filter",
                "bl",
                "198.18.0.8",
                ",",
                "198.18.0.9",
            ],
            true,
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("not_found") && err.contains("elements[1]"),
        "{err}"
    );
    let (ok, _, err) = e
        .run(
            &["set", "add", "--create", "filter", "bl", "198.18.0.7"],
            true,
        )
        .await;
    assert!(!ok && err.contains("conflict"), "{err}");
    assert_eq!(e.fake.state().generation, 4);
    let (ok, out, err) = e
        .run(&["set", "delete", "filter", "bl", "198.18.0.8"], true)
        .await;
    assert!(
        ok && out.contains("elements deleted: generation 5"),
        "{out}{err}"
    );
    assert!(e.fake.state().ruleset.contains("elements = { 198.18.0.7 }"));
    // `KEY timeout T` (a dynamic set's element): the timeout travels in seconds, rounded
    // up; the fake refuses it (a plain set), the request is what is checked.
    let (ok, _, err) = e
        .run(
            &[
                "set",
                "add",
                "filter",
                "bl",
                "{ 198.18.0.5 timeout 1m30s500ms, 198.18.0.6 }",
            ],
            true,
        )
        .await;
    assert!(!ok && err.contains("elements[0].timeout"), "{err}");
    let Some(fwd_proto::Request::SetElementsChange { elements, .. }) =
        e.fake.state().log.last().cloned()
    else {
        panic!("no element request sent")
    };
    let sent: Vec<(String, Option<u64>)> =
        elements.into_iter().map(|x| (x.key, x.timeout)).collect();
    assert_eq!(
        sent,
        [
            ("198.18.0.5".to_string(), Some(91)),
            ("198.18.0.6".to_string(), None)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_takeover_sends_the_addresses_and_warns_about_foreign_ones() {
    let e = env().await;
    let (ok, out, err) = e
        .run(
            &[
                "ha",
                "takeover",
                "198.51.100.1",
                "2001:db8::1",
                "192.0.2.99",
            ],
            true,
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "takeover: committed 3 entries in all, cache_entries=0 commits=1; announced: garp=1 na=1"
    );
    assert!(
        err.contains("192.0.2.99 is not one of fwd's addresses"),
        "{err}"
    );
    let last = e.fake.state().log.last().cloned().unwrap();
    assert!(
        matches!(&last, fwd_proto::Request::HaTakeover { addresses } if addresses.len() == 3),
        "{last:?}"
    );
    let (ok, out, err) = e.run(&["--json", "ha", "takeover"], true).await;
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["garp_sent"], 0, "{v}");
    let (ok, _, err) = e.run(&["ha", "takeover"], false).await;
    assert!(!ok && err.contains("unauthorized"), "{err}");
    let (ok, _, err) = e.run(&["ha", "takeover", "not-an-ip"], true).await;
    assert!(!ok && err.contains("addresses[0]"), "{err}");
}
