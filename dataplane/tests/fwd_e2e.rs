//! End-to-end: `fwd` as a subprocess on `net_af_packet` ports attached to veths, with two
//! Linux hosts in their own network namespaces. Needs root (skips otherwise). Every step
//! is bounded in time; namespaces are removed by a drop guard even when a step fails.
//!
//! Until the pipeline is merged, `fwd` runs the trivial port-forward processor (a
//! two-port bridge): the hosts share 198.18.0.0/15 and resolve each other through it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    sh(&["id", "-u"]).stdout.starts_with(b"0\n")
}

/// Two host namespaces and the appliance namespace, wired with two veth pairs.
struct Lab {
    ns_a: String,
    ns_b: String,
    ns_fw: String,
    /// Appliance-side interfaces.
    fa: String,
    fb: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.ns_a, &self.ns_b, &self.ns_fw] {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn new(test: &str) -> Lab {
        let pid = std::process::id();
        let short = pid % 100_000;
        let lab = Lab {
            ns_a: format!("fwd-{test}-{pid}-a"),
            ns_b: format!("fwd-{test}-{pid}-b"),
            ns_fw: format!("fwd-{test}-{pid}-fw"),
            fa: format!("fwa{short}"),
            fb: format!("fwb{short}"),
            dir: std::env::temp_dir().join(format!("fwd-{test}-{pid}")),
            child: None,
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        for ns in [&lab.ns_a, &lab.ns_b, &lab.ns_fw] {
            ok(&["ip", "netns", "add", ns]);
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (host_ns, fw_if, addr) in [
            (&lab.ns_a, &lab.fa, "198.18.1.2/15"),
            (&lab.ns_b, &lab.fb, "198.18.2.2/15"),
        ] {
            ok(&[
                "ip", "link", "add", fw_if, "netns", &lab.ns_fw, "type", "veth", "peer", "name",
                "eth0", "netns", host_ns,
            ]);
            for (ns, dev) in [
                (host_ns.as_str(), "eth0"),
                (lab.ns_fw.as_str(), fw_if.as_str()),
            ] {
                ok(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off",
                    "tso", "off", "gso", "off", "gro", "off",
                ]);
                ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
            ok(&[
                "ip",
                "netns",
                "exec",
                &lab.ns_fw,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{fw_if}.disable_ipv6=1"),
            ]);
            ok(&["ip", "-n", host_ns, "addr", "add", addr, "dev", "eth0"]);
        }
        lab
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Writes the configuration and starts `fwd` in the appliance namespace; waits (at
    /// most 30 s) for the control socket.
    fn start_fwd(&mut self) {
        let cfg = format!(
            "eal:\n  main_core: 0\n  hugepages: false\n  in_memory: true\n  memory_mb: 256\n  \
             file_prefix: fwd-e2e-{pid}\n\
             ports:\n\
             \x20 - name: lan\n    device: net_af_packet0,iface={fa},qpairs=2\n    \
             addresses: [198.18.1.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             \x20 - name: wan\n    device: net_af_packet1,iface={fb},qpairs=2\n    \
             addresses: [198.18.2.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             workers:\n  cores: [1]\n\
             control_socket: {sock}\nstate_dir: {state}\n",
            pid = std::process::id(),
            fa = self.fa,
            fb = self.fb,
            sock = self.socket().display(),
            state = self.dir.join("state").display(),
        );
        let path = self.dir.join("fwd.yaml");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(self.dir.join("fwd.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_fw,
                env!("CARGO_BIN_EXE_fwd"),
                "--config",
            ])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..300 {
            if UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("fwd exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no control socket after 30 s:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fwd.log")).unwrap_or_default()
    }

    fn in_ns(&self, ns: &str, cmd: &[&str]) -> std::process::Output {
        let mut args = vec!["ip", "netns", "exec", ns];
        args.extend_from_slice(cmd);
        sh(&args)
    }

    /// One request on the control socket; the parsed response.
    fn control(&self, request: &str) -> serde_json::Value {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = s.try_clone().unwrap();
        writeln!(w, r#"{{"v":1,"id":1,"request":{request}}}"#).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
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
    lab.start_fwd();

    let st = lab.control(r#"{"op":"status"}"#);
    assert_eq!(st["result"]["workers"], 1, "{st}");
    assert_eq!(st["result"]["ports"], 2, "{st}");

    // Ping through (bounded: 3 probes, 2 s each, after a warm-up for ARP).
    let _ = lab.in_ns(&lab.ns_a, &["ping", "-c", "1", "-W", "2", "198.18.2.2"]);
    let out = lab.in_ns(&lab.ns_a, &["ping", "-c", "3", "-W", "2", "198.18.2.2"]);
    assert!(
        out.status.success(),
        "ping through fwd failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log()
    );

    // TCP through: a listener in B, a client in A.
    let received = lab.dir.join("received");
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns_b,
            "timeout",
            "15",
            "nc",
            "-l",
            "-N",
            "198.18.2.2",
            "8080",
        ])
        .stdout(std::fs::File::create(&received).unwrap())
        .spawn()
        .unwrap();
    let mut sent = false;
    for _ in 0..20 {
        let out = lab.in_ns(
            &lab.ns_a,
            &[
                "sh",
                "-c",
                "echo through-fwd | timeout 5 nc -N -w 3 198.18.2.2 8080",
            ],
        );
        if out.status.success() {
            sent = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = server.wait_with_output().unwrap();
    assert!(sent, "TCP connect through fwd failed:\n{}", lab.log());
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&received).unwrap().trim(),
        "through-fwd"
    );

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

    assert_eq!(lab.stop_fwd(), Some(0), "{}", lab.log());
    assert!(lab.log().contains("fwd: stopped"), "{}", lab.log());
    assert!(
        !Path::new(&lab.socket()).exists(),
        "control socket left behind"
    );
}
