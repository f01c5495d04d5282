//! State sync end to end (docs/ha.md): two real `fwd`s and two `fwmgmt --ha` daemons
//! talking over a veth pair (198.18.9.1 / 198.18.9.2). Needs root (skips otherwise) and
//! the `fwd` binary beside this test's target directory (built when missing).
//!
//! - primary `fwd` in `ha-<pid>-p` on `net_af_packet` ports to the client namespace
//!   `ha-<pid>-a` (198.18.1.2) and the server namespace `ha-<pid>-b` (198.18.2.2), with
//!   masquerade to its wan address 198.18.2.1;
//! - backup `fwd` in `ha-<pid>-s` on two `net_null` ports with the same addresses and
//!   ruleset (it forwards nothing here: the failover itself is not part of this test);
//! - UDP flows (answered) and one TCP connection (established, held open) through the
//!   primary; the backup's external cache fills; `fwctl ha commit` moves it into the
//!   backup's workers; both tables are compared entry by entry (tuples, NAT binding, TCP
//!   state, status, mark). Then the backup (fwd and daemon) is killed and started again:
//!   its daemon asks the primary for a resync, and after `fwctl ha takeover` (commit,
//!   then one gratuitous ARP per service address from fwd's slow path, counted) the
//!   tables are equal again.
//!
//! Every wait is bounded; processes are killed by PID and namespaces deleted by name by a
//! drop guard. The lab holds the same lock as `e2e_fwd.rs` (busy-polling `fwd`s on a
//! small box starve each other).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fwd_proto::{
    CtEntry, CtFilter, PROTOCOL_VERSION, Request, RequestEnvelope, Response, ResponseEnvelope,
};

#[path = "../../dataplane/tests/common/netns.rs"]
mod netns;
#[path = "common/real_fwd.rs"]
mod real_fwd;
use netns::{attach_host, is_root, ok, sh};
use real_fwd::{fwd_binary, kill};

const TOKEN: &str = "ha-e2e-token";

const RULES: &str = "table ip nat {\n  chain postrouting {\n    type nat hook postrouting priority srcnat;\n    oifname \"wan\" masquerade\n  }\n}\ntable inet filter {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n  }\n}\n";

/// UDP echo and a TCP server that answers once and holds the connection (server side),
/// and their clients: python3, bounded by `timeout` where they are spawned.
const PEERS_PY: &str = r#"
import socket, sys, time
mode = sys.argv[1]
if mode == "udp-echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.2.2", 5300))
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(d, a)
elif mode == "udp-client":
    for port in (41001, 41002, 41003):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("198.18.1.2", port))
        s.settimeout(1.0)
        for _ in range(5):
            s.sendto(b"ping", ("198.18.2.2", 5300))
            try:
                s.recvfrom(2048)
                break
            except socket.timeout:
                pass
        else:
            sys.exit("no UDP echo for source port %d" % port)
    print("udp ok", flush=True)
elif mode == "tcp-server":
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("198.18.2.2", 5400))
    l.listen(4)
    c, a = l.accept()
    c.sendall(c.recv(64))
    time.sleep(120)
elif mode == "tcp-client":
    deadline = time.time() + 25
    while True:
        try:
            c = socket.create_connection(("198.18.2.2", 5400), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    c.sendall(b"hello")
    assert c.recv(64) == b"hello"
    print("tcp ok", flush=True)
    time.sleep(120)
"#;

/// One box: its namespace, `fwd`, `fwmgmt --ha`.
struct Box_ {
    name: &'static str,
    ns: String,
    dir: PathBuf,
    fwd: Option<Child>,
    mgmt: Option<Child>,
    starts: u32,
}

impl Box_ {
    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["fwd.log", "fwmgmt.log"] {
            s += &format!("--- {} {f} ---\n", self.name);
            s += &std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        }
        s
    }

    fn append(&self, file: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(file))
            .unwrap()
    }

    /// `fwd` with `ports` (YAML list items), waits (30 s) for its control socket.
    fn start_fwd(&mut self, ports: &str, cores: (u32, u32)) {
        let _ = std::fs::remove_file(self.socket());
        std::fs::write(self.dir.join("rules.nft"), RULES).unwrap();
        let cfg = format!(
            "eal:\n  main_core: {main}\n  hugepages: false\n  in_memory: true\n  memory_mb: 256\n  \
             file_prefix: ha-{pid}-{name}-{n}\n\
             ports:\n{ports}\
             workers:\n  cores: [{worker}]\n\
             control_socket: {sock}\nstate_dir: {state}\nruleset: rules.nft\n",
            main = cores.0,
            worker = cores.1,
            pid = std::process::id(),
            name = self.name,
            n = self.starts,
            sock = self.socket().display(),
            state = self.dir.join(format!("state{}", self.starts)).display(),
        );
        self.starts += 1;
        let path = self.dir.join("fwd.yaml");
        std::fs::write(&path, cfg).unwrap();
        let log = self.append("fwd.log");
        self.fwd = Some(
            Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .arg(fwd_binary())
                .arg("--config")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        for _ in 0..300 {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(st) = self.fwd.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} fwd exited early ({st}):\n{}", self.name, self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: no control socket after 30 s:\n{}",
            self.name,
            self.logs()
        );
    }

    /// `fwmgmt --ha` in the box's namespace (HTTP on its own loopback).
    fn start_mgmt(&mut self, role: &str, bind: &str, peer: &str) {
        let token = self.dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let ha = self.dir.join("ha.json");
        std::fs::write(
            &ha,
            format!(
                r#"{{"role": "{role}", "bind": "{bind}:7400", "peer": "{peer}:7400", "queue": 1024, "ack_every": 8, "alive_ms": 100}}"#
            ),
        )
        .unwrap();
        let log = self.append("fwmgmt.log");
        self.mgmt = Some(
            Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .arg(env!("CARGO_BIN_EXE_fwmgmt"))
                .args(["--listen", "127.0.0.1:9477", "--control-socket"])
                .arg(self.socket())
                .arg("--token-file")
                .arg(&token)
                .arg("--ha")
                .arg(&ha)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let start = Instant::now();
        while self.fwctl(&["ha", "status"]).is_none() {
            if let Some(st) = self.mgmt.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} fwmgmt exited ({st}):\n{}", self.name, self.logs());
            }
            assert!(start.elapsed() < Duration::from_secs(15), "{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `fwctl --json ARGS` in the namespace; the JSON answer, `None` on failure.
    fn fwctl(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "timeout", "20"])
            .arg(env!("CARGO_BIN_EXE_fwctl"))
            .args(["--url", "http://127.0.0.1:9477", "--token-file"])
            .arg(self.dir.join("token"))
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// One control request straight to fwd's socket.
    fn control(&self, request: Request) -> Response {
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut line = serde_json::to_vec(&RequestEnvelope {
            v: PROTOCOL_VERSION,
            id: 1,
            request,
        })
        .unwrap();
        line.push(b'\n');
        s.write_all(&line).unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        let env: ResponseEnvelope = serde_json::from_str(&answer).unwrap();
        env.into_result()
            .unwrap_or_else(|e| panic!("{}: {e:?}\n{}", self.name, self.logs()))
    }

    /// The whole table, by original tuple, with what sync must carry.
    fn table(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut cursor = None;
        loop {
            let Response::ConntrackPage {
                entries,
                next_cursor,
            } = self.control(Request::ConntrackList {
                filter: CtFilter::default(),
                cursor,
                limit: 1000,
            })
            else {
                panic!("not a page")
            };
            for e in &entries {
                let (k, v) = carried(e);
                out.insert(k, v);
            }
            match next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }
}

fn tuple(t: &fwd_proto::CtTuple) -> String {
    format!(
        "{}:{:?} -> {}:{:?} icmp {:?}/{:?}",
        t.src, t.sport, t.dst, t.dport, t.icmp_type, t.icmp_id
    )
}

/// (original tuple, everything else sync carries: the reply tuple, i.e. the NAT
/// binding, TCP state, status flags, mark). Counters, timeouts and the owning worker are
/// each box's own.
fn carried(e: &CtEntry) -> (String, String) {
    let mut st: Vec<&str> = e
        .status
        .iter()
        .map(String::as_str)
        .filter(|s| ["SEEN_REPLY", "ASSURED", "SRC_NAT", "DST_NAT"].contains(s))
        .collect();
    st.sort_unstable();
    (
        format!("{} {} {}", e.family, e.proto, tuple(&e.orig)),
        format!(
            "reply {} state {:?} status {st:?} mark {}",
            tuple(&e.reply),
            e.state,
            e.mark
        ),
    )
}

struct Lab {
    nss: Vec<String>,
    primary: Box_,
    backup: Box_,
    helpers: Vec<Child>,
    dir: PathBuf,
    _serial: std::fs::File,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.helpers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for b in [&mut self.primary, &mut self.backup] {
            kill(&mut b.mgmt);
            kill(&mut b.fwd);
        }
        for ns in &self.nss {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
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
        let dir = std::env::temp_dir().join(format!("ha-{pid}"));
        let mk = |name: &'static str| {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            Box_ {
                name,
                ns: format!("ha-{pid}-{}", &name[..1]),
                dir: d,
                fwd: None,
                mgmt: None,
                starts: 0,
            }
        };
        let mut lab = Lab {
            nss: Vec::new(),
            primary: mk("primary"),
            backup: mk("secondary"),
            helpers: Vec::new(),
            dir: dir.clone(),
            _serial: serial,
        };
        std::fs::write(dir.join("peers.py"), PEERS_PY).unwrap();
        for s in ["a", "b", "p", "s"] {
            let ns = format!("ha-{pid}-{s}");
            ok(&["ip", "netns", "add", &ns]);
            lab.nss.push(ns.clone());
            ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let (a, b, p, s) = (&lab.nss[0], &lab.nss[1], &lab.nss[2], &lab.nss[3]);
        attach_host(
            p,
            &format!("ha{short}a"),
            a,
            "198.18.1.2/24",
            "default",
            "198.18.1.1",
        );
        attach_host(
            p,
            &format!("ha{short}b"),
            b,
            "198.18.2.2/24",
            "default",
            "198.18.2.1",
        );
        // The sync link: kernel interfaces, not fwd's ports.
        let (sp, ss) = (format!("hy{short}p"), format!("hy{short}s"));
        ok(&[
            "ip", "link", "add", &sp, "netns", p, "type", "veth", "peer", "name", &ss, "netns", s,
        ]);
        for (ns, dev, addr) in [(p, &sp, "198.18.9.1/30"), (s, &ss, "198.18.9.2/30")] {
            ok(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    fn logs(&self) -> String {
        format!("{}{}", self.primary.logs(), self.backup.logs())
    }

    fn spawn(&mut self, ns: usize, secs: u32, args: &[&str]) -> usize {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", args[0]))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.nss[ns],
                "timeout",
                &secs.to_string(),
                "python3",
            ])
            .arg(self.dir.join("peers.py"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.helpers.push(child);
        self.helpers.len() - 1
    }

    fn start_backup(&mut self) {
        let ports = "  - {name: lan, device: net_null0, addresses: [198.18.1.1/24], rx_descriptors: 256, tx_descriptors: 256}\n  \
                     - {name: wan, device: net_null1, addresses: [198.18.2.1/24], rx_descriptors: 256, tx_descriptors: 256}\n";
        self.backup.start_fwd(ports, (0, 1));
        self.backup.start_mgmt("backup", "198.18.9.2", "198.18.9.1");
    }

    /// Waits (at most `secs`) until `f` holds; panics with the logs otherwise.
    fn wait(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{what} within {secs} s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn cache_entries(&self) -> u64 {
        self.backup
            .fwctl(&["ha", "status"])
            .and_then(|v| v["fwd"]["cache_entries"].as_u64())
            .unwrap_or(0)
    }

    fn peer_up(b: &Box_) -> bool {
        b.fwctl(&["ha", "status"])
            .is_some_and(|v| v["sync"]["peer"]["up"] == serde_json::Value::Bool(true))
    }
}

fn af_packet_ports(short: u32) -> String {
    format!(
        "  - name: lan\n    device: net_af_packet0,iface=ha{short}a,qpairs=2\n    addresses: [198.18.1.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n  \
         - name: wan\n    device: net_af_packet1,iface=ha{short}b,qpairs=2\n    addresses: [198.18.2.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n"
    )
}

#[test]
fn backup_cache_commit_and_resync_match_the_primary_entry_by_entry() {
    if !is_root() {
        eprintln!("ha_e2e: skipped (needs root for network namespaces)");
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new();
    let short = std::process::id() % 100_000;
    lab.primary.start_fwd(&af_packet_ports(short), (0, 1));
    lab.primary
        .start_mgmt("primary", "198.18.9.1", "198.18.9.2");
    lab.start_backup();
    lab.wait(30, "both daemons see their peer", || {
        Lab::peer_up(&lab.primary) && Lab::peer_up(&lab.backup)
    });

    eprintln!("ha_e2e: {:?} peers up", t0.elapsed());
    // The flows must outlive the slowest run of this test on a loaded box.
    for b in [&lab.primary, &lab.backup] {
        let values = [
            ("nf_conntrack_udp_timeout".to_string(), 600),
            ("nf_conntrack_udp_timeout_stream".to_string(), 600),
        ];
        b.control(Request::TuningSet {
            values: values.into_iter().collect(),
        });
    }
    // Traffic through the primary: three answered UDP flows and one held TCP connection.
    lab.spawn(1, 60, &["udp-echo"]);
    lab.spawn(1, 150, &["tcp-server"]);
    std::thread::sleep(Duration::from_millis(300));
    let udp = lab.spawn(0, 30, &["udp-client"]);
    let st = lab.helpers[udp].wait().unwrap();
    assert!(st.success(), "UDP through the primary\n{}", lab.logs());
    lab.spawn(0, 150, &["tcp-client"]);
    lab.wait(
        60,
        "the TCP connection is established on the primary",
        || {
            std::fs::read_to_string(lab.dir.join("tcp-client.log"))
                .unwrap_or_default()
                .contains("tcp ok")
        },
    );
    let mut primary = BTreeMap::new();
    lab.wait(
        30,
        "the primary tracks the 4 flows, TCP established",
        || {
            primary = lab.primary.table();
            primary.len() >= 4
                && primary
                    .values()
                    .any(|v| v.contains("Some(\"ESTABLISHED\")") && v.contains("SRC_NAT"))
        },
    );
    let n = primary.len() as u64;

    // The backup's cache catches up (events → UDP → ha_apply into the cache).
    lab.wait(30, "the backup's cache holds the primary's entries", || {
        lab.cache_entries() == n
    });
    assert!(
        lab.backup.table().is_empty(),
        "the cache is outside the workers"
    );
    // Commit: the cache into the backup's workers; the tables match entry by entry.
    let c = lab
        .backup
        .fwctl(&["ha", "commit"])
        .expect("fwctl ha commit");
    assert_eq!(c["committed"].as_u64(), Some(n), "{c}\n{}", lab.logs());
    assert_eq!(c["cache_entries"].as_u64(), Some(0));
    let primary = lab.primary.table();
    assert_eq!(
        lab.backup.table(),
        primary,
        "backup after commit vs primary"
    );
    let st = lab.primary.fwctl(&["ha", "status"]).unwrap();
    assert!(
        st["sync"]["counters"]["sent_records"].as_u64().unwrap() >= n,
        "{st}"
    );
    assert_eq!(
        st["sync"]["counters"]["lost_records"].as_u64(),
        Some(0),
        "{st}"
    );

    // Restart the backup (fwd and daemon, state gone): its daemon hears the primary,
    // asks for a resync, and the primary dumps its table.
    kill(&mut lab.backup.mgmt);
    kill(&mut lab.backup.fwd);
    lab.start_backup();
    lab.wait(60, "the restarted backup's cache is resynced", || {
        lab.cache_entries() == n
    });
    // This time the takeover an external controller runs: the commit, then fwd's slow
    // path announces both service addresses (one gratuitous ARP each, sent on `net_null`
    // ports here: the count shows a running fwd's slow path served the request).
    let t = lab
        .backup
        .fwctl(&["ha", "takeover"])
        .expect("fwctl ha takeover");
    assert_eq!(t["counters"]["committed"].as_u64(), Some(n), "{t}");
    assert_eq!(
        (t["garp_sent"].as_u64(), t["na_sent"].as_u64()),
        (Some(2), Some(0)),
        "{t}"
    );
    assert_eq!(
        lab.backup.table(),
        lab.primary.table(),
        "after restart + resync"
    );
    let st = lab.primary.fwctl(&["ha", "status"]).unwrap();
    assert!(
        st["sync"]["counters"]["resyncs_served"].as_u64().unwrap() >= 1,
        "{st}"
    );
    assert!(
        st["sync"]["counters"]["resync_records"].as_u64().unwrap() >= n,
        "{st}"
    );
}
