//! End-to-end: `fwd` as a subprocess on `net_af_packet` ports attached to veths, with two
//! Linux hosts in their own network namespaces. Needs root (skips otherwise). Every step
//! is bounded in time; namespaces are removed by a drop guard even when a step fails.
//!
//! `fwd` routes between 198.18.1.0/24 (lan, 198.18.1.1) and 198.18.2.0/24 (wan,
//! 198.18.2.1); the hosts use it as their default gateway, so ARP for it is answered by
//! fwd's slow path and fwd resolves the hosts in turn.

#![cfg(feature = "dpdk")]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

mod common;
use common::lab::spawn_fwd;
use common::netns::{TwoHosts, is_root, ok};

/// Two host namespaces and the appliance namespace, wired with two veth pairs.
struct Lab {
    dir: PathBuf,
    child: Option<Child>,
    /// The namespaces (none for the `net_null` test), deleted after `drop` has stopped fwd.
    net: Option<TwoHosts>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn new(test: &str) -> Lab {
        let pid = std::process::id();
        let short = pid % 100_000;
        let dir = std::env::temp_dir().join(format!("fwd-{test}-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (fa, fb) = (
            format!("fa{}{short}", &test[..1]),
            format!("fb{}{short}", &test[..1]),
        );
        Lab {
            dir,
            child: None,
            net: Some(TwoHosts::new(&format!("fwd-{test}-{pid}"), &fa, &fb)),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Writes the configuration and starts `fwd` in the appliance namespace; waits (at
    /// most 30 s) for the control socket.
    /// `workers` workers on core 1; af_packet `qpairs` (and RX queues) = workers + 1, the
    /// TX queue count, so no fanned-out socket goes unpolled.
    fn start_fwd(&mut self, workers: usize) {
        let cfg = format!(
            "eal:\n  main_core: 0\n  hugepages: false\n  in_memory: true\n  memory_mb: 256\n  \
             file_prefix: fwd-e2e-{pid}-{workers}\n\
             ports:\n\
             \x20 - name: lan\n    device: net_af_packet0,iface={fa},qpairs={q}\n    \
             addresses: [198.18.1.1/24]\n    rx_queues: {q}\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             \x20 - name: wan\n    device: net_af_packet1,iface={fb},qpairs={q}\n    \
             addresses: [198.18.2.1/24]\n    rx_queues: {q}\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             workers:\n  cores: [{cores}]\n\
             control_socket: {sock}\nstate_dir: {state}\nruleset: rules.nft\n",
            pid = std::process::id(),
            q = workers + 1,
            cores = vec!["1"; workers].join(", "),
            fa = self.net().fa,
            fb = self.net().fb,
            sock = self.socket().display(),
            state = self.dir.join("state").display(),
        );
        std::fs::write(
            self.dir.join("rules.nft"),
            "table inet filter {\n  chain input {\n    type filter hook input priority filter; policy accept;\n  }\n}\n",
        )
        .unwrap();
        let path = self.dir.join("fwd.yaml");
        std::fs::write(&path, cfg).unwrap();
        self.child = Some(spawn_fwd(&self.net().fw, &path, &self.dir, &self.socket()));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fwd.log")).unwrap_or_default()
    }

    fn in_ns(&self, ns: &str, cmd: &[&str]) -> std::process::Output {
        TwoHosts::exec(ns, cmd)
    }

    fn net(&self) -> &TwoHosts {
        self.net.as_ref().expect("a namespace lab")
    }

    /// One request on the control socket; the parsed response.
    fn control(&self, request: &str) -> serde_json::Value {
        fwd_testkit::fwd::control(&self.socket(), request)
    }

    /// SIGTERM and wait (at most 20 s) for the exit status.
    fn stop_fwd(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        ok(&["kill", "-TERM", &child.id().to_string()]);
        for _ in 0..200 {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("fwd did not stop within 20 s of SIGTERM:\n{}", self.log());
    }
}

fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: skipped (needs root for network namespaces)");
        return false;
    }
    true
}

#[test]
fn fwd_e2e_ping_tcp_control_and_sigterm() {
    if !root_or_skip("fwd_e2e_ping_tcp_control_and_sigterm") {
        return;
    }
    let mut lab = Lab::new("e2e");
    lab.start_fwd(1);

    let st = lab.control(r#"{"op":"status"}"#);
    assert_eq!(st["result"]["workers"], 1, "{st}");
    assert_eq!(st["result"]["ports"], 2, "{st}");

    // fwd answers ping on its own addresses (after ARP for the gateway).
    let _ = lab.in_ns(&lab.net().a, &["ping", "-c", "1", "-W", "2", "198.18.1.1"]);
    let out = lab.in_ns(&lab.net().a, &["ping", "-c", "2", "-W", "2", "198.18.1.1"]);
    assert!(
        out.status.success(),
        "ping fwd's address failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log()
    );

    // Ping through (bounded: 3 probes, 2 s each, after a warm-up for ARP).
    let _ = lab.in_ns(&lab.net().a, &["ping", "-c", "1", "-W", "2", "198.18.2.2"]);
    let out = lab.in_ns(&lab.net().a, &["ping", "-c", "3", "-W", "2", "198.18.2.2"]);
    assert!(
        out.status.success(),
        "ping through fwd failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log()
    );
    // Routed, not bridged: the reply crossed one hop (TTL 64 -> 63).
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ttl=63"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // TCP through: a listener in B, a client in A.
    let (sent, out) = lab.net().tcp_a_to_b(8080, "through-fwd");
    assert!(sent, "TCP connect through fwd failed:\n{}", lab.log());
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "through-fwd");

    // Counters are published within a few ms; read them through the socket.
    std::thread::sleep(Duration::from_millis(50));
    let stats = lab.control(r#"{"op":"stats"}"#);
    let w = &stats["result"]["workers"][0];
    assert!(w["rx_packets"].as_u64().unwrap() >= 8, "{stats}");
    assert!(w["tx_packets"].as_u64().unwrap() >= 8, "{stats}");
    let ports = &stats["result"]["ports"];
    assert_eq!(ports[0]["name"], "lan");
    assert!(ports[0]["ipackets"].as_u64().unwrap() >= 4, "{stats}");
    let bad = lab.control(r#"{"op":"conntrack_delete"}"#);
    assert_eq!(bad["error"]["code"], "refused_unfiltered", "{bad}");

    // Ruleset replace through the socket: persisted, generation bumped; a bad one is
    // refused with its position.
    let rs = r#"{"op":"ruleset_replace","ruleset":{"format":"text","content":"table inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ct state invalid drop\n  }\n}\n"}}"#;
    let r = lab.control(rs);
    assert_eq!(r["result"]["generation"], 2, "{r}");
    assert!(lab.dir.join("state/ruleset.nft").exists());
    let r = lab.control(
        r#"{"op":"ruleset_replace","ruleset":{"format":"text","content":"table inet f {\n  chian x {\n  }\n}\n"}}"#,
    );
    assert_eq!(r["error"]["code"], "bad_ruleset", "{r}");
    assert_eq!(r["error"]["line"], 2, "{r}");
    let st = lab.control(r#"{"op":"status"}"#);
    assert_eq!(st["result"]["ruleset_generation"], 2, "{st}");

    // SIGHUP reloads the configured ruleset file (generation 3).
    ok(&[
        "kill",
        "-HUP",
        &lab.child.as_ref().unwrap().id().to_string(),
    ]);
    let mut reloaded = false;
    for _ in 0..50 {
        if lab.log().contains("loaded: generation 3") {
            reloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reloaded, "SIGHUP did not reload:\n{}", lab.log());
    let st = lab.control(r#"{"op":"status"}"#);
    assert_eq!(st["result"]["ruleset_generation"], 3, "{st}");

    assert_eq!(lab.stop_fwd(), Some(0), "{}", lab.log());
    assert!(lab.log().contains("fwd: stopped"), "{}", lab.log());
    assert!(
        !Path::new(&lab.socket()).exists(),
        "control socket left behind"
    );
}

#[test]
fn fwd_e2e_two_workers_route_ping_and_tcp() {
    if !root_or_skip("fwd_e2e_two_workers_route_ping_and_tcp") {
        return;
    }
    let mut lab = Lab::new("w2");
    lab.start_fwd(2);
    let st = lab.control(r#"{"op":"status"}"#);
    assert_eq!(st["result"]["workers"], 2, "{st}");
    let _ = lab.in_ns(&lab.net().a, &["ping", "-c", "1", "-W", "2", "198.18.2.2"]);
    let out = lab.in_ns(
        &lab.net().a,
        &["ping", "-c", "4", "-i", "0.2", "-W", "2", "198.18.2.2"],
    );
    assert!(
        out.status.success(),
        "ping through 2 workers failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log()
    );
    // Several TCP connections (different source ports spread over the af_packet fanout).
    for i in 0..3u16 {
        let (sent, out) = lab.net().tcp_a_to_b(8081 + i, &format!("conn-{i}"));
        assert!(sent, "TCP connection {i} failed:\n{}", lab.log());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("conn-{i}")
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    let w = lab.control(r#"{"op":"workers"}"#);
    let workers = w["result"]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{w}");
    let rx: u64 = workers
        .iter()
        .map(|w| w["rx_packets"].as_u64().unwrap())
        .sum();
    assert!(rx >= 20, "{w}");
    assert_eq!(lab.stop_fwd(), Some(0), "{}", lab.log());
}

/// `net_null` ports with two RX queues: symmetric RSS on, the RETA programmed round-robin,
/// both workers receive, the control socket reports queue counts, SIGTERM exits 0.
#[test]
fn fwd_null_ports_rss_reta_and_clean_stop() {
    if !root_or_skip("fwd_null_ports_rss_reta_and_clean_stop") {
        return;
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("fwd-null-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    let cfg = format!(
        "eal: {{main_core: 0, hugepages: false, in_memory: true, memory_mb: 256, file_prefix: fwd-null-{pid}}}\n\
         ports:\n\
         \x20 - {{name: a, device: net_null0, addresses: [198.18.1.1/24], rx_descriptors: 256, tx_descriptors: 256}}\n\
         \x20 - {{name: b, device: net_null1, addresses: [198.18.2.1/24], rx_descriptors: 256, tx_descriptors: 256}}\n\
         workers: {{cores: [1, 1]}}\n\
         control_socket: {}\nstate_dir: {}\n",
        sock.display(),
        dir.join("state").display()
    );
    std::fs::write(dir.join("fwd.yaml"), cfg).unwrap();
    let log = dir.join("fwd.log");
    let mut lab = Lab {
        net: None,
        dir: dir.clone(),
        child: Some(
            Command::new(env!("CARGO_BIN_EXE_fwd"))
                .arg("--config")
                .arg(dir.join("fwd.yaml"))
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.join("fwd.err")).unwrap())
                .spawn()
                .unwrap(),
        ),
    };
    let mut up = false;
    for _ in 0..300 {
        if UnixStream::connect(&sock).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = || std::fs::read_to_string(dir.join("fwd.err")).unwrap_or_default();
    assert!(up, "no control socket:\n{}", err());
    assert!(err().contains("round-robin over 2 queues"), "{}", err());
    assert!(err().contains("symmetric RSS"), "{}", err());
    std::thread::sleep(Duration::from_millis(200));
    let p = lab.control(r#"{"op":"ports"}"#);
    assert_eq!(p["result"]["ports"][0]["rx_queues"], 2, "{p}");
    assert_eq!(p["result"]["ports"][0]["tx_queues"], 3, "{p}");
    let w = lab.control(r#"{"op":"workers"}"#);
    for wk in w["result"]["workers"].as_array().unwrap() {
        // net_null delivers on every queue: both workers are busy.
        assert!(wk["rx_packets"].as_u64().unwrap() > 0, "{w}");
    }
    assert_eq!(lab.stop_fwd(), Some(0), "{}", err());
}
