//! End to end: the real `fwd` (on `net_af_packet` ports attached to veths of two host
//! namespaces), the real `fwmgmt` (HTTP on 127.0.0.1, token file) in front of its control
//! socket, and the real `fwctl` against that API. Needs root (skips otherwise) and the
//! `fwd` binary: it is looked up beside this test's target directory
//! (`target/debug/fwd`) and built with `cargo build -p dataplane --bin fwd` when missing.
//!
//! Every step is bounded in time; `fwd`, `fwmgmt` and the namespaces are removed by a drop
//! guard (by PID / by name) even when a step fails. Namespaces are `integ-<pid>-{a,b,fw}`.
//!
//! `fwd` routes between 198.18.1.0/24 (lan, 198.18.1.1) and 198.18.2.0/24 (wan,
//! 198.18.2.1); the hosts use it as their default gateway.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fwd_testkit::fwd::{fwd_binary, kill, spawn_fwd};
use fwd_testkit::netns::{TwoHosts, is_root, sh};

/// The pipeline's seams, enabled as they land on main (the pipeline branch). While one is
/// `false` its checks below are skipped and say so on stderr; what they guard answers
/// `internal` from the workers until then. On main at 41fe927 the first three are on;
/// the list still answers `internal` ("conntrack filters/listing/events are not available
/// in the worker yet").
/// - the forward chain filters (rules evaluated in `worker::pipeline`);
const PIPELINE_FILTERS: bool = true;
/// - tunables are applied by the workers' conntrack (`PATCH /api/v1/tuning`);
const PIPELINE_TUNING: bool = true;
/// - the workers count their conntrack entries (`/api/v1/conntrack/count`, `/stats`);
const PIPELINE_CONNTRACK_COUNT: bool = true;
/// - the workers list their conntrack entries (`GET /api/v1/conntrack`, `fwctl conntrack list`).
const PIPELINE_CONNTRACK_LIST: bool = true;

const TOKEN: &str = "integ-e2e-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The namespaces, the two processes and a scratch directory; all removed on drop.
struct Lab {
    dir: PathBuf,
    fwd: Option<Child>,
    fwmgmt: Option<Child>,
    port: u16,
    mgmt_starts: u32,
    /// The namespaces, deleted after `drop` has stopped the processes.
    net: TwoHosts,
    /// Held (an exclusive `flock`) for the Lab's life, released after its cleanup: the
    /// tests of this file run one at a time even under nextest's one process per test, as
    /// several busy-polling `fwd`s pinned to the same core starve each other on a small box.
    _serial: std::fs::File,
}

impl Drop for Lab {
    fn drop(&mut self) {
        kill(&mut self.fwmgmt);
        kill(&mut self.fwd);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let short = pid % 100_000;
        let serial = std::fs::File::create(std::env::temp_dir().join("integ-e2e_fwd.lock"))
            .expect("lock file");
        serial.lock().expect("flock");
        let dir = std::env::temp_dir().join(format!("integ-{pid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let net = TwoHosts::new(
            &format!("integ-{pid}"),
            &format!("ia{short}"),
            &format!("ib{short}"),
        );
        Lab {
            dir,
            fwd: None,
            fwmgmt: None,
            port: free_port(),
            mgmt_starts: 0,
            net,
            _serial: serial,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn fwd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fwd.log")).unwrap_or_default()
    }

    fn mgmt_log(&self) -> String {
        let mut s = String::new();
        for i in 0..self.mgmt_starts {
            s += &std::fs::read_to_string(self.dir.join(format!("fwmgmt.{i}.log")))
                .unwrap_or_default();
        }
        s
    }

    fn logs(&self) -> String {
        format!(
            "--- fwd log ---\n{}\n--- fwmgmt log ---\n{}",
            self.fwd_log(),
            self.mgmt_log()
        )
    }

    /// `fwd` in the appliance namespace, one worker; waits (at most 30 s) for its socket.
    fn start_fwd(&mut self) {
        let cfg = format!(
            "eal:\n  main_core: 0\n  hugepages: false\n  in_memory: true\n  memory_mb: 256\n  \
             file_prefix: integ-{pid}\n\
             ports:\n\
             \x20 - name: lan\n    device: net_af_packet0,iface={fa},qpairs=2\n    \
             addresses: [198.18.1.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             \x20 - name: wan\n    device: net_af_packet1,iface={fb},qpairs=2\n    \
             addresses: [198.18.2.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             workers:\n  cores: [1]\n\
             control_socket: {sock}\nstate_dir: {state}\nruleset: rules.nft\n",
            pid = std::process::id(),
            fa = self.net.fa,
            fb = self.net.fb,
            sock = self.socket().display(),
            state = self.dir.join("state").display(),
        );
        // Written once: a restart (same config, same state dir) finds the same files.
        let rules = self.dir.join("rules.nft");
        if !rules.exists() {
            std::fs::write(&rules, ACCEPT_ALL).unwrap();
        }
        let path = self.dir.join("fwd.yaml");
        std::fs::write(&path, cfg).unwrap();
        // Appended: the log of a restarted fwd follows the first one's.
        let log = self.dir.join("fwd.log");
        let fwd = spawn_fwd(&fwd_binary(), &self.net.fw, &path, &log, &self.socket());
        self.fwd = Some(fwd);
    }

    /// `fwmgmt` on 127.0.0.1:`port` with a token file; waits (at most 10 s) for /healthz.
    fn start_fwmgmt(&mut self) {
        let token = self.dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("fwmgmt.{}.log", self.mgmt_starts)))
            .unwrap();
        self.mgmt_starts += 1;
        let child = Command::new(env!("CARGO_BIN_EXE_fwmgmt"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--control-socket")
            .arg(self.socket())
            .arg("--token-file")
            .arg(&token)
            .env_remove("FWMGMT_AUTH_READS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.fwmgmt = Some(child);
        for _ in 0..200 {
            if let Ok(r) = ureq::get(&self.url("/healthz"))
                .timeout(Duration::from_secs(2))
                .call()
            {
                assert_eq!(r.status(), 200);
                return;
            }
            if let Some(st) = self.fwmgmt.as_mut().unwrap().try_wait().unwrap() {
                panic!("fwmgmt exited early ({st}):\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fwmgmt /healthz never answered:\n{}", self.logs());
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// One HTTP request with the token; (status, body text). Bounded: 15 s.
    fn http(&self, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, String) {
        let req = ureq::request(method, &self.url(path))
            .timeout(Duration::from_secs(15))
            .set("Authorization", &format!("Bearer {TOKEN}"));
        let res = match body {
            Some((ct, text)) => req.set("Content-Type", ct).send_string(text),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}\n{}", self.logs()),
        };
        let status = resp.status();
        (status, resp.into_string().unwrap())
    }

    fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &str)>,
    ) -> (u16, serde_json::Value) {
        let (s, t) = self.http(method, path, body);
        let v = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{path}: {e}: {t}"));
        (s, v)
    }

    fn fwctl(&self, args: &[&str]) -> (bool, String) {
        let token = self.dir.join("token");
        let out = Command::new("timeout")
            .arg("20")
            .arg(env!("CARGO_BIN_EXE_fwctl"))
            .arg("--url")
            .arg(self.url(""))
            .arg("--token-file")
            .arg(token)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn in_ns(&self, ns: &str, cmd: &[&str]) -> std::process::Output {
        TwoHosts::exec(ns, cmd)
    }

    /// `count` pings from A to B, 0.2 s apart, 1 s deadline each: all answered?
    fn ping_through(&self, count: u32) -> bool {
        let c = count.to_string();
        self.in_ns(
            &self.net.a,
            &["ping", "-c", &c, "-i", "0.2", "-W", "1", "198.18.2.2"],
        )
        .status
        .success()
    }

    /// One TCP exchange A -> B:`port` (`TwoHosts::tcp_a_to_b`): `msg` arrived.
    fn tcp_through(&self, port: u16, msg: &str) -> bool {
        let (sent, out) = self.net.tcp_a_to_b(port, msg);
        sent && String::from_utf8_lossy(&out.stdout).trim() == msg
    }
}

const ACCEPT_ALL: &str = "table inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n  }\n}\n";

const COUNT_ICMP: &str = "table inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ip protocol icmp counter accept\n  }\n}\n";

const DROP_ICMP: &str = "table inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ip protocol icmp drop\n  }\n}\n";

/// SIGTERM to a child (by PID), then waits for it, at most 15 s (SIGKILL after that).
/// True when it exited by itself.
fn terminate(child: &mut Option<Child>) -> bool {
    let Some(mut c) = child.take() else {
        return true;
    };
    let _ = sh(&["kill", "-TERM", &c.id().to_string()]);
    for _ in 0..150 {
        if c.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
    false
}

/// `NAME{...label...} VALUE` summed over the lines of a Prometheus scrape that match.
fn metric_sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{') && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn fwd_fwmgmt_fwctl_end_to_end() {
    if !is_root() {
        eprintln!("fwd_fwmgmt_fwctl_end_to_end: skipped (needs root for network namespaces)");
        return;
    }
    let mut lab = Lab::new();
    lab.start_fwd();
    lab.start_fwmgmt();

    // Ready, and the port counters before any traffic.
    let (s, v) = lab.json("GET", "/readyz", None);
    assert_eq!(s, 200, "{v}\n{}", lab.logs());
    assert_eq!(v["protocol"], 1, "{v}");
    let (_, m0) = lab.http("GET", "/metrics", None);
    assert!(m0.contains("\nfwd_up 1\n"), "{m0}");
    let rx0 = metric_sum(&m0, "fwd_port_receive_packets_total", "port=\"lan\"");

    // Forwarding works (the first ping pays for ARP).
    let _ = lab.ping_through(1);
    assert!(lab.ping_through(3), "ping through fwd:\n{}", lab.logs());

    // The running ruleset.
    let (s, before) = lab.json("GET", "/api/v1/ruleset", None);
    assert_eq!(s, 200, "{before}");
    let gen0 = before["generation"].as_u64().expect("generation");
    assert!(
        before["text"].as_str().unwrap().contains("chain forward"),
        "{before}"
    );

    // A bad ruleset: 400 with its position; the running one is unchanged.
    let bad = "table inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ip protocol icmp frobnicate\n  }\n}\n";
    let (s, v) = lab.json("PUT", "/api/v1/ruleset", Some(("text/plain", bad)));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["code"], "bad_ruleset", "{v}");
    assert_eq!(v["line"], 4, "{v}");
    assert!(v["column"].as_u64().is_some_and(|c| c > 0), "{v}");
    let (_, after) = lab.json("GET", "/api/v1/ruleset", None);
    assert_eq!(after["generation"], gen0, "{after}");
    assert_eq!(after["text"], before["text"], "{after}");

    // Drop ICMP in forward: applied (generation bumps).
    let (s, v) = lab.json("PUT", "/api/v1/ruleset", Some(("text/plain", DROP_ICMP)));
    assert_eq!(s, 200, "{v}\n{}", lab.logs());
    assert!(v["generation"].as_u64().unwrap() > gen0, "{v}");
    let (_, now) = lab.json("GET", "/api/v1/ruleset", None);
    assert!(
        now["text"].as_str().unwrap().contains("icmp"),
        "ruleset not shown: {now}"
    );
    if PIPELINE_FILTERS {
        assert!(!lab.ping_through(2), "ping passed a drop-icmp ruleset");
    } else {
        eprintln!("PIPELINE_FILTERS=false: not checking that ICMP is dropped");
    }
    assert!(lab.tcp_through(8080, "through-fwd"), "TCP:\n{}", lab.logs());

    // Accept again: ping works.
    let (s, v) = lab.json("PUT", "/api/v1/ruleset", Some(("text/plain", ACCEPT_ALL)));
    assert_eq!(s, 200, "{v}");
    assert!(lab.ping_through(3), "ping after accept:\n{}", lab.logs());

    // Issue 23: one rule at a time through fwctl nft; the untouched rule keeps its counter.
    if PIPELINE_FILTERS {
        let (s, v) = lab.json("PUT", "/api/v1/ruleset", Some(("text/plain", COUNT_ICMP)));
        assert_eq!(s, 200, "{v}");
        assert!(
            lab.ping_through(2),
            "ping with a counting rule:\n{}",
            lab.logs()
        );
        let icmp_count = |lab: &Lab| {
            let (_, v) = lab.json("GET", "/api/v1/ruleset", None);
            v["counters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["handle"] == 1)
                .and_then(|c| c["packets"].as_u64())
                .unwrap()
        };
        let counted = icmp_count(&lab);
        assert!(counted >= 2, "icmp rule counted {counted}");
        let (ok_, out) = lab.fwctl(&[
            "nft", "add", "rule", "inet", "filter", "forward", "tcp", "dport", "9", "drop",
        ]);
        assert!(
            ok_ && out.contains("rules 1 -> 2"),
            "fwctl nft add rule: {out}"
        );
        assert_eq!(
            icmp_count(&lab),
            counted,
            "the untouched rule lost its counter"
        );
        let (ok_, out) = lab.fwctl(&["nft", "-a", "list", "ruleset"]);
        assert!(
            ok_ && out.contains("tcp dport 9 drop # handle 2"),
            "fwctl nft -a list ruleset: {out}"
        );
        assert!(lab.ping_through(1), "ping after add rule:\n{}", lab.logs());
        let (ok_, out) = lab.fwctl(&[
            "nft", "delete", "rule", "inet", "filter", "forward", "handle", "2",
        ]);
        assert!(
            ok_ && out.contains("rules 2 -> 1"),
            "fwctl nft delete rule: {out}"
        );
        assert!(
            icmp_count(&lab) > counted,
            "the rule kept counting across two changes"
        );
        // Issue 17: the element API on a named set: A's address added, ping dropped;
        // deleted, ping passes; the ICMP rule's counter survives each change.
        for cmd in [
            &[
                "nft",
                "add",
                "set",
                "inet",
                "filter",
                "bl",
                "{ type ipv4_addr; }",
            ][..],
            &[
                "nft", "insert", "rule", "inet", "filter", "forward", "ip", "saddr", "@bl", "drop",
            ],
            &["set", "add", "inet", "filter", "bl", "198.18.1.2"],
        ] {
            let (ok_, out) = lab.fwctl(cmd);
            assert!(ok_, "fwctl {cmd:?}: {out}");
        }
        let (s, v) = lab.json("GET", "/api/v1/sets/filter/bl/elements", None);
        assert_eq!(
            (s, &v["elements"][0]["key"]),
            (200, &serde_json::json!("198.18.1.2")),
            "{v}"
        );
        let counted = icmp_count(&lab);
        assert!(!lab.ping_through(2), "ping passed with its source in @bl");
        let (ok_, out) = lab.fwctl(&["set", "delete", "inet", "filter", "bl", "198.18.1.2"]);
        assert!(ok_, "fwctl set delete: {out}");
        assert!(
            lab.ping_through(2),
            "ping after the element's delete:\n{}",
            lab.logs()
        );
        assert!(
            icmp_count(&lab) > counted,
            "the ICMP rule counts again, from where it was"
        );
        // A dynamic set: the element API changes the elements the data path matches
        // (`nft add|delete element` on the kernel's dynamic set), no new generation.
        for cmd in [
            &[
                "nft",
                "add",
                "set",
                "inet",
                "filter",
                "dyn",
                "{ type ipv4_addr; flags dynamic,timeout; timeout 10m; }",
            ][..],
            &[
                "nft", "insert", "rule", "inet", "filter", "forward", "ip", "saddr", "@dyn", "drop",
            ],
        ] {
            let (ok_, out) = lab.fwctl(cmd);
            assert!(ok_, "fwctl {cmd:?}: {out}");
        }
        let (_, v) = lab.json("GET", "/api/v1/ruleset", None);
        let gen_dyn = v["generation"].as_u64().unwrap();
        let (ok_, out) = lab.fwctl(&["set", "add", "inet", "filter", "dyn", "198.18.1.2"]);
        assert!(ok_, "fwctl set add (dynamic): {out}");
        assert!(
            !lab.ping_through(2),
            "ping passed with its source in the dynamic set"
        );
        let (s, v) = lab.json("GET", "/api/v1/sets/filter/dyn/elements", None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["elements"][0]["key"], "198.18.1.2", "{v}");
        assert!(
            v["elements"][0]["expires"]
                .as_u64()
                .is_some_and(|e| e > 500 && e <= 600),
            "{v}"
        );
        assert_eq!(v["generation"], gen_dyn, "{v}");
        let (ok_, out) = lab.fwctl(&["set", "delete", "inet", "filter", "dyn", "198.18.1.2"]);
        assert!(ok_, "fwctl set delete (dynamic): {out}");
        assert!(
            lab.ping_through(2),
            "ping after the dynamic element's delete:\n{}",
            lab.logs()
        );
        let (ok_, out) = lab.fwctl(&["set", "delete", "inet", "filter", "dyn", "198.18.1.2"]);
        assert!(!ok_ && out.contains("not_found"), "a second delete: {out}");
    }

    // Conntrack counts the TCP connection (TIME_WAIT, 120 s, after the close).
    if PIPELINE_CONNTRACK_COUNT {
        let (s, v) = lab.json("GET", "/api/v1/conntrack/count", None);
        assert_eq!(s, 200, "{v}");
        assert!(v["count"].as_u64().is_some_and(|c| c >= 1), "{v}");
        let (s, v) = lab.json("GET", "/api/v1/conntrack/stats", None);
        assert_eq!(s, 200, "{v}");
        let (ok_, out) = lab.fwctl(&["conntrack", "count"]);
        assert!(
            ok_ && out.trim().parse::<u64>().is_ok_and(|c| c >= 1),
            "fwctl conntrack count: {out}"
        );
    } else {
        let (s, v) = lab.json("GET", "/api/v1/conntrack/count", None);
        eprintln!("PIPELINE_CONNTRACK_COUNT=false: conntrack count answered {s} {v}");
    }

    // Conntrack lists the TCP connection (kept as TIME_WAIT after the close).
    if PIPELINE_CONNTRACK_LIST {
        assert!(lab.tcp_through(8081, "tracked"), "TCP:\n{}", lab.logs());
        let (s, v) = lab.json("GET", "/api/v1/conntrack?proto=tcp&dport=8081", None);
        assert_eq!(s, 200, "{v}");
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{v}");
        let (ok_, out) = lab.fwctl(&["conntrack", "list", "-p", "tcp", "--dport", "8081"]);
        assert!(ok_ && out.contains("dport=8081"), "{out}");
        // Delete by filter: exactly that connection goes, and the list no longer has it.
        let (s, v) = lab.json("DELETE", "/api/v1/conntrack?proto=tcp&dport=8081", None);
        assert_eq!((s, v["deleted"].as_u64()), (200, Some(1)), "{v}");
        let (s, v) = lab.json("GET", "/api/v1/conntrack?proto=tcp&dport=8081", None);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["entries"].as_array().map(Vec::len), Some(0), "{v}");
    } else {
        let (s, v) = lab.json("GET", "/api/v1/conntrack", None);
        eprintln!("PIPELINE_CONNTRACK_LIST=false: conntrack list answered {s} {v}");
    }

    // Tuning: an out-of-range value is refused before anything is applied; a valid change
    // is pushed to the workers (their conntrack) and shows up.
    let (s, v) = lab.json(
        "PATCH",
        "/api/v1/tuning",
        Some(("application/json", r#"{"nf_conntrack_tcp_loose": 9}"#)),
    );
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_tunable")), "{v}");
    // Every tunable is listed, at Linux's default unless configured (udp: 30 s).
    let (s, v) = lab.json("GET", "/api/v1/tuning", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["values"]["nf_conntrack_udp_timeout"], 30, "{v}");
    assert_eq!(
        v["values"]["nf_conntrack_tcp_timeout_established"], 432_000,
        "{v}"
    );
    let udp_timeout = if PIPELINE_TUNING {
        let (s, v) = lab.json(
            "PATCH",
            "/api/v1/tuning",
            Some(("application/json", r#"{"nf_conntrack_udp_timeout": 17}"#)),
        );
        assert_eq!(s, 200, "{v}\n{}", lab.logs());
        assert_eq!(v["values"]["nf_conntrack_udp_timeout"], 17, "{v}");
        let (_, v) = lab.json("GET", "/api/v1/tuning", None);
        assert_eq!(v["values"]["nf_conntrack_udp_timeout"], 17, "{v}");
        Some(17)
    } else {
        let (s, v) = lab.json(
            "PATCH",
            "/api/v1/tuning",
            Some(("application/json", r#"{"nf_conntrack_udp_timeout": 17}"#)),
        );
        eprintln!("PIPELINE_TUNING=false: PATCH tuning answered {s} {v}");
        None
    };

    // Metrics: up, and the lan port counted what we sent.
    let (s, m1) = lab.http("GET", "/metrics", None);
    assert_eq!(s, 200);
    assert!(m1.contains("\nfwd_up 1\n"), "{m1}");
    let rx1 = metric_sum(&m1, "fwd_port_receive_packets_total", "port=\"lan\"");
    assert!(rx1 >= rx0 + 10, "lan rx {rx0} -> {rx1}\n{m1}");

    for name in [
        "fwd_conntrack_entries",
        "fwd_conntrack_found_total",
        "fwd_worker_receive_packets_total",
        "fwd_port_transmit_packets_total",
    ] {
        assert!(m1.contains(name), "{name} missing from the scrape:\n{m1}");
    }
    if PIPELINE_CONNTRACK_COUNT {
        let entries: u64 = m1
            .lines()
            .filter(|l| l.starts_with("fwd_conntrack_entries"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(entries >= 1, "fwd_conntrack_entries {entries}:\n{m1}");
    }
    for path in ["/api/v1/ports", "/api/v1/workers", "/api/v1/status"] {
        let (s, v) = lab.json("GET", path, None);
        assert_eq!(s, 200, "{path}: {v}");
    }
    // A flush needs `all=true`: refused before it reaches the workers.
    let (s, v) = lab.json("DELETE", "/api/v1/conntrack", None);
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("refused_unfiltered")),
        "{v}"
    );

    // fwctl against the same API.
    let (ok_, out) = lab.fwctl(&["ruleset", "show"]);
    assert!(
        ok_ && out.contains("chain forward"),
        "fwctl ruleset show: {out}"
    );
    let (ok_, out) = lab.fwctl(&["tuning", "get", "udp_timeout"]);
    let t = udp_timeout.unwrap_or(30);
    assert!(
        ok_ && out.trim() == format!("nf_conntrack_udp_timeout = {t}"),
        "fwctl tuning get: {out}"
    );
    let (ok_, out) = lab.fwctl(&["conntrack", "list"]);
    if PIPELINE_CONNTRACK_LIST {
        assert!(ok_, "fwctl conntrack list: {out}");
    } else {
        eprintln!("PIPELINE_CONNTRACK_LIST=false: fwctl conntrack list: {ok_} {out}");
    }
    let (ok_, out) = lab.fwctl(&["ports"]);
    assert!(
        ok_ && out.contains("lan") && out.contains("wan"),
        "fwctl ports: {out}"
    );

    // fwmgmt killed and restarted: forwarding never stops (pings across the restart).
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.net.a,
            "ping",
            "-c",
            "20",
            "-i",
            "0.1",
            "-W",
            "1",
            "198.18.2.2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(&mut lab.fwmgmt);
    let refused = ureq::get(&lab.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .call()
        .is_err();
    assert!(refused, "fwmgmt still answering after kill");
    lab.start_fwmgmt();
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(" 0% packet loss"),
        "forwarding interrupted across the fwmgmt restart:\n{text}"
    );
    let (s, v) = lab.json("GET", "/readyz", None);
    assert_eq!(s, 200, "{v}");
    // fwmgmt holds no state: the tuning change is still there.
    if let Some(t) = udp_timeout {
        let (_, v) = lab.json("GET", "/api/v1/tuning", None);
        assert_eq!(v["values"]["nf_conntrack_udp_timeout"], t, "{v}");
    }

    // fwd killed: not ready, fwd_up 0; fwmgmt itself keeps serving.
    kill(&mut lab.fwd);
    let (s, v) = lab.json("GET", "/readyz", None);
    assert!(s == 503 || s == 504, "readyz with fwd gone: {s} {v}");
    let (s, m2) = lab.http("GET", "/metrics", None);
    assert_eq!(s, 200);
    assert!(m2.contains("\nfwd_up 0\n"), "{m2}");
    let (s, _) = lab.http("GET", "/healthz", None);
    assert_eq!(s, 200);
    let (ok_, out) = lab.fwctl(&["ruleset", "show"]);
    assert!(!ok_ && out.contains("fwd_unreachable"), "{out}");
}

/// Issue 6: "change a timeout and see entries expire sooner". With
/// `nf_conntrack_udp_timeout` at 3 s, one unanswered UDP datagram's entry shows a timeout
/// of at most 3 s and is gone within a few seconds (at the default 30 s it would stay).
#[test]
fn udp_timeout_change_expires_entries_sooner() {
    if !is_root() {
        eprintln!("udp_timeout_change_expires_entries_sooner: skipped (needs root)");
        return;
    }
    const NEW: u64 = 3;
    let mut lab = Lab::new();
    lab.start_fwd();
    lab.start_fwmgmt();
    // Forwarding works (and fwd has resolved B's MAC) before the datagram.
    let _ = lab.ping_through(1);
    assert!(lab.ping_through(2), "ping through fwd:\n{}", lab.logs());

    let (s, v) = lab.json(
        "PATCH",
        "/api/v1/tuning",
        Some((
            "application/json",
            &format!(r#"{{"nf_conntrack_udp_timeout": {NEW}}}"#),
        )),
    );
    assert_eq!(s, 200, "{v}\n{}", lab.logs());
    assert_eq!(v["values"]["nf_conntrack_udp_timeout"], NEW, "{v}");

    // One datagram A -> B:5353 (nobody answers: the entry stays UNREPLIED).
    let send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                s.bind(('198.18.1.2', 40123)); s.sendto(b'expire-me', ('198.18.2.2', 5353))";
    let out = lab.in_ns(&lab.net.a, &["python3", "-c", send]);
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let filter = "/api/v1/conntrack?proto=udp&dport=5353";
    let mut created = None;
    for _ in 0..20 {
        let (s, v) = lab.json("GET", filter, None);
        assert_eq!(s, 200, "{v}");
        if let Some(e) = v["entries"].as_array().and_then(|a| a.first()) {
            created = Some(e.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let entry = created.unwrap_or_else(|| panic!("no udp entry for :5353\n{}", lab.logs()));
    let started = std::time::Instant::now();
    let t = entry["timeout"].as_u64().expect("timeout");
    assert!(
        t <= NEW,
        "a new udp entry expires in {t} s, the tunable is {NEW}: {entry}"
    );
    assert_eq!(entry["orig"]["sport"], 40123, "{entry}");

    // Gone within the timeout + 3 s (polled every 250 ms).
    let mut gone = false;
    while started.elapsed() < Duration::from_secs(NEW + 3) {
        let (s, v) = lab.json("GET", filter, None);
        assert_eq!(s, 200, "{v}");
        if v["entries"].as_array().is_some_and(Vec::is_empty) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        gone,
        "udp entry still listed {} ms after creation (timeout {NEW} s)",
        started.elapsed().as_millis()
    );
}

/// Issue 6: "apply a ruleset, restart both processes, find the same ruleset and tunables
/// in force". A ruleset dropping ICMP and a changed tunable, set through the API, survive
/// SIGTERM of fwd and fwmgmt and a start with the same config and state directory.
#[test]
fn ruleset_and_tunables_survive_restart() {
    if !is_root() {
        eprintln!("ruleset_and_tunables_survive_restart: skipped (needs root)");
        return;
    }
    const MARK: &str = "ip protocol icmp counter drop comment \"integ-restart\"";
    let ruleset = DROP_ICMP.replace("ip protocol icmp drop", MARK);
    let mut lab = Lab::new();
    lab.start_fwd();
    lab.start_fwmgmt();
    let _ = lab.ping_through(1);
    assert!(lab.ping_through(2), "ping through fwd:\n{}", lab.logs());

    let (s, v) = lab.json("PUT", "/api/v1/ruleset", Some(("text/plain", &ruleset)));
    assert_eq!(s, 200, "{v}\n{}", lab.logs());
    let (s, v) = lab.json(
        "PATCH",
        "/api/v1/tuning",
        Some(("application/json", r#"{"nf_conntrack_udp_timeout": 23}"#)),
    );
    assert_eq!(s, 200, "{v}\n{}", lab.logs());
    assert!(!lab.ping_through(2), "ping passed the drop-icmp ruleset");

    // Both stopped the polite way, then started again with the same files.
    assert!(terminate(&mut lab.fwmgmt), "fwmgmt ignored SIGTERM");
    assert!(
        terminate(&mut lab.fwd),
        "fwd ignored SIGTERM:\n{}",
        lab.fwd_log()
    );
    lab.start_fwd();
    lab.start_fwmgmt();
    let (s, v) = lab.json("GET", "/readyz", None);
    assert_eq!(s, 200, "{v}\n{}", lab.logs());

    let (s, v) = lab.json("GET", "/api/v1/ruleset", None);
    assert_eq!(s, 200, "{v}");
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("integ-restart"),
        "ruleset after restart: {v}\n{}",
        lab.logs()
    );
    let (s, v) = lab.json("GET", "/api/v1/tuning", None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["values"]["nf_conntrack_udp_timeout"], 23, "{v}");
    // In force on traffic: ICMP still dropped, TCP still through.
    assert!(
        !lab.ping_through(3),
        "ping passed after restart:\n{}",
        lab.logs()
    );
    assert!(
        lab.tcp_through(8082, "after-restart"),
        "TCP:\n{}",
        lab.logs()
    );
}
