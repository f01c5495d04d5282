//! State sync end to end (docs/ha.md): two real `fwd`s and two `fwmgmt --ha` daemons
//! talking over a veth pair (198.18.9.1 / 198.18.9.2). Needs root (skips otherwise) and
//! the `fwd` binary beside this test's target directory (built when missing).
//!
//! - primary `fwd` in `ha-<pid>-p` on `net_af_packet` ports to the client namespace
//!   `ha-<pid>-a` (198.18.1.2) and the server namespace `ha-<pid>-b` (198.18.2.2), with
//!   masquerade to its wan address 198.18.2.1;
//! - backup `fwd` in `ha-<pid>-s` on two `net_null` ports with the same addresses and
//!   ruleset (it forwards nothing in this test);
//! - UDP flows (answered) and one TCP connection (established, held open) through the
//!   primary; the backup's external cache fills; `fwctl ha commit` moves it into the
//!   backup's workers; both tables are compared entry by entry (tuples, NAT binding, TCP
//!   state, status, mark). Then the backup (fwd and daemon) is killed and started again:
//!   its daemon asks the primary for a resync, and after `fwctl ha takeover` (commit,
//!   then one gratuitous ARP per service address from fwd's slow path, counted) the
//!   tables are equal again.
//!
//! The failover test (`failover_keeps_…`) puts both boxes on `net_af_packet` ports on two
//! bridges in `ha-<pid>-x` (the backup with `ha.role: backup`), kills the primary's fwd
//! with SIGKILL during a TCP session and a UDP stream, and checks that both carry on
//! through the backup (docs/ha.md, "Tested").
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

use fwd_testkit::fwd::{fwd_binary, kill, spawn_fwd};
use fwd_testkit::netns::{attach_host, is_root, ok, sh};

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
elif mode == "tcp-lines":
    # One connection: prints its peer, echoes every line, reports how it ended.
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("198.18.2.2", 5500))
    l.listen(4)
    while True:
        c, a = l.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print("accept %s %d" % a, flush=True)
        n = 0
        f = c.makefile("rb")
        try:
            for line in f:
                c.sendall(line)
                n += 1
            print("eof after %d lines" % n, flush=True)
        except OSError as e:
            print("error after %d lines: %s" % (n, e), flush=True)
elif mode == "udp-log":
    # UDP echo that prints each source it has not seen before.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.2.2", 5301))
    seen = set()
    while True:
        d, a = s.recvfrom(2048)
        if a not in seen:
            seen.add(a)
            print("source %s %d" % a, flush=True)
        s.sendto(d, a)
elif mode == "stream":
    # A TCP line and a UDP datagram every 100 ms for argv[2] seconds; each echo printed
    # with its arrival time ("tcp N T" / "udp N T"); a TCP error ends it ("tcp-error").
    import select
    until = time.time() + float(sys.argv[2])
    deadline = time.time() + 25
    while True:
        try:
            c = socket.create_connection(("198.18.2.2", 5500), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.setblocking(False)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("198.18.1.2", 41100))
    u.connect(("198.18.2.2", 5301))
    u.setblocking(False)
    buf, n, expect, nxt = b"", 0, 0, time.time()
    while time.time() < until:
        now = time.time()
        if now >= nxt:
            try:
                c.sendall(b"%d\n" % n)
            except OSError as e:
                print("tcp-error send %s" % e, flush=True)
                sys.exit(3)
            try:
                u.send(b"%d" % n)
            except OSError:
                pass
            n += 1
            nxt = now + 0.1
        r, _, _ = select.select([c, u], [], [], max(0.0, nxt - time.time()))
        if c in r:
            try:
                d = c.recv(4096)
            except OSError as e:
                print("tcp-error recv %s" % e, flush=True)
                sys.exit(3)
            if not d:
                print("tcp-error eof", flush=True)
                sys.exit(3)
            buf += d
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if int(line) != expect:
                    print("tcp-error order got %s want %d" % (line, expect), flush=True)
                    sys.exit(3)
                print("tcp %d %.3f" % (expect, time.time()), flush=True)
                expect += 1
        if u in r:
            try:
                d = u.recv(2048)
                print("udp %s %.3f" % (d.decode(), time.time()), flush=True)
            except OSError:
                pass
    print("done sent %d echoed %d" % (n, expect), flush=True)
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
    /// Appended to the fwd config (the backup's `ha` section).
    extra_cfg: String,
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
             control_socket: {sock}\nstate_dir: {state}\nruleset: rules.nft\n{extra}",
            main = cores.0,
            worker = cores.1,
            pid = std::process::id(),
            name = self.name,
            n = self.starts,
            sock = self.socket().display(),
            state = self.dir.join(format!("state{}", self.starts)).display(),
            extra = self.extra_cfg,
        );
        self.starts += 1;
        let path = self.dir.join("fwd.yaml");
        std::fs::write(&path, cfg).unwrap();
        let log = self.dir.join("fwd.log");
        self.fwd = Some(spawn_fwd(
            &fwd_binary(),
            &self.ns,
            &path,
            &log,
            &self.socket(),
        ));
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
    /// The namespaces, the sync link and the data segments: `switched` puts both boxes'
    /// ports on two bridges (lan, wan) in `ha-<pid>-x` with the client and the server
    /// ([`Lab::switch`]); otherwise client and server hang off the primary directly.
    fn new(switched: bool) -> Lab {
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
                extra_cfg: String::new(),
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
        let names: &[&str] = if switched {
            &["a", "b", "p", "s", "x"]
        } else {
            &["a", "b", "p", "s"]
        };
        for s in names {
            let ns = format!("ha-{pid}-{s}");
            ok(&["ip", "netns", "add", &ns]);
            lab.nss.push(ns.clone());
            ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        let (a, b, p) = (&lab.nss[0], &lab.nss[1], &lab.nss[2]);
        if switched {
            lab.switch(short);
        } else {
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
        }
        // The sync link: kernel interfaces, not fwd's ports.
        let (sp, ss) = (format!("hy{short}p"), format!("hy{short}s"));
        let (p, s) = (&lab.nss[2], &lab.nss[3]);
        ok(&[
            "ip", "link", "add", &sp, "netns", p, "type", "veth", "peer", "name", &ss, "netns", s,
        ]);
        for (ns, dev, addr) in [(p, &sp, "198.18.9.1/30"), (s, &ss, "198.18.9.2/30")] {
            ok(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    /// Two bridges in the switch namespace `x`: `brl` (lan: the client `a`, both boxes'
    /// lan ports) and `brw` (wan: the server `b`, both wan ports). The boxes' ends
    /// (`ha<short><p|s><l|w>`, for `net_af_packet`) get fixed MACs ([`port_mac`]).
    fn switch(&self, short: u32) {
        let x = &self.nss[4];
        for br in ["brl", "brw"] {
            ok(&["ip", "-n", x, "link", "add", br, "type", "bridge"]);
            ok(&["ip", "-n", x, "link", "set", br, "up"]);
        }
        let plug = |ns: &str, dev: &str, br: &str, mac: Option<String>| {
            let peer = format!("{}x", &dev[..dev.len().min(14)]);
            ok(&[
                "ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", &peer,
                "netns", x,
            ]);
            if let Some(m) = mac {
                ok(&["ip", "-n", ns, "link", "set", dev, "address", &m]);
            }
            for (n, d) in [(ns, dev), (x.as_str(), peer.as_str())] {
                // Full checksums on the wire: af_packet hands fwd the frames as they are.
                ok(&[
                    "ip", "netns", "exec", n, "ethtool", "-K", d, "tx", "off", "rx", "off", "tso",
                    "off", "gso", "off", "gro", "off",
                ]);
                ok(&["ip", "-n", n, "link", "set", d, "up"]);
            }
            ok(&["ip", "-n", x, "link", "set", &peer, "master", br]);
        };
        for ns in &self.nss {
            ok(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
        }
        let (a, b) = (&self.nss[0], &self.nss[1]);
        plug(a, &format!("hc{short}a"), "brl", None);
        plug(b, &format!("hc{short}b"), "brw", None);
        for (host, dev, addr, gw) in [
            (a, format!("hc{short}a"), "198.18.1.2/24", "198.18.1.1"),
            (b, format!("hc{short}b"), "198.18.2.2/24", "198.18.2.1"),
        ] {
            ok(&["ip", "-n", host, "addr", "add", addr, "dev", &dev]);
            ok(&["ip", "-n", host, "route", "add", "default", "via", gw]);
        }
        for (i, ns) in [(2, &self.nss[2]), (3, &self.nss[3])] {
            let who = if i == 2 { 'p' } else { 's' };
            for (seg, br) in [('l', "brl"), ('w', "brw")] {
                plug(
                    ns,
                    &format!("ha{short}{who}{seg}"),
                    br,
                    Some(port_mac(who, seg)),
                );
            }
        }
    }

    fn logs(&self) -> String {
        let mut s = format!("{}{}", self.primary.logs(), self.backup.logs());
        for f in ["stream.log", "tcp-lines.log", "udp-log.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                s += &format!("--- {f} ---\n{t}");
            }
        }
        s
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

/// Both boxes' ports: lan 198.18.1.1/24 and wan 198.18.2.1/24 on `net_af_packet` over
/// the kernel interfaces `lan` and `wan`.
fn af_packet_ports(lan: &str, wan: &str) -> String {
    format!(
        "  - name: lan\n    device: net_af_packet0,iface={lan},qpairs=2\n    addresses: [198.18.1.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n  \
         - name: wan\n    device: net_af_packet1,iface={wan},qpairs=2\n    addresses: [198.18.2.1/24]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n"
    )
}

/// The fixed MAC of box `who`'s (`p`, `s`) port on segment `seg` (`l`, `w`).
fn port_mac(who: char, seg: char) -> String {
    format!(
        "02:00:00:00:{:02x}:{:02x}",
        u32::from(who == 's') + 1,
        u32::from(seg == 'w') + 1
    )
}

#[test]
fn backup_cache_commit_and_resync_match_the_primary_entry_by_entry() {
    if !is_root() {
        eprintln!("ha_e2e: skipped (needs root for network namespaces)");
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new(false);
    let short = std::process::id() % 100_000;
    lab.primary.start_fwd(
        &af_packet_ports(&format!("ha{short}a"), &format!("ha{short}b")),
        (0, 1),
    );
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

/// Arrival times (UNIX seconds) of the stream client's echoes of `kind` ("tcp", "udp").
fn echoes(lab: &Lab, kind: &str) -> Vec<f64> {
    std::fs::read_to_string(lab.dir.join("stream.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            (w.next() == Some(kind))
                .then(|| w.nth(1).and_then(|t| t.parse().ok()))
                .flatten()
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The MAC a host namespace's neighbour table holds for `addr` (`None`: no entry).
fn neighbour_mac(ns: &str, addr: &str) -> Option<String> {
    let out = sh(&["ip", "-n", ns, "neigh", "show", addr]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut w = text.split_whitespace();
    w.find(|t| *t == "lladdr")?;
    w.next().map(str::to_string)
}

/// Failover (docs/ha.md, "Tested"): both boxes on the same two bridged segments, the same
/// addresses and ruleset (masquerade); the backup (`ha.role: backup`) stays silent for
/// the service addresses, so the client and the server resolve them to the primary. A
/// TCP session (a line every 100 ms, echoed) and a UDP stream run through the primary;
/// the primary's fwd is killed with SIGKILL and `fwctl ha takeover` runs on the backup (as
/// keepalived's notify would). Within 3 s of the kill both streams are echoed again, through
/// the backup; the TCP session never saw an error or a gap, and the server saw one TCP
/// connection and one UDP source (the masquerade address and port of the synced binding).
#[test]
fn failover_keeps_a_masqueraded_tcp_session_and_a_udp_stream_after_kill_9_of_the_primary() {
    if !is_root() {
        eprintln!("ha_e2e: skipped (needs root for network namespaces)");
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new(true);
    let short = std::process::id() % 100_000;
    let ports =
        |who: char| af_packet_ports(&format!("ha{short}{who}l"), &format!("ha{short}{who}w"));
    lab.primary.start_fwd(&ports('p'), (0, 1));
    lab.primary
        .start_mgmt("primary", "198.18.9.1", "198.18.9.2");
    lab.backup.extra_cfg = "ha:\n  role: backup\n".into();
    lab.backup.start_fwd(&ports('s'), (0, 1));
    lab.backup.start_mgmt("backup", "198.18.9.2", "198.18.9.1");
    lab.wait(30, "both daemons see their peer", || {
        Lab::peer_up(&lab.primary) && Lab::peer_up(&lab.backup)
    });
    eprintln!("ha_e2e failover: {:?} peers up", t0.elapsed());

    lab.spawn(1, 120, &["tcp-lines"]);
    lab.spawn(1, 120, &["udp-log"]);
    std::thread::sleep(Duration::from_millis(300));
    let stream = lab.spawn(0, 100, &["stream", "60"]);
    lab.wait(40, "10 TCP and 10 UDP echoes through the primary", || {
        echoes(&lab, "tcp").len() >= 10 && echoes(&lab, "udp").len() >= 10
    });
    // The backup answered no ARP for the service addresses: both hosts hold the primary.
    let (a, b) = (lab.nss[0].clone(), lab.nss[1].clone());
    assert_eq!(
        neighbour_mac(&a, "198.18.1.1"),
        Some(port_mac('p', 'l')),
        "the client resolved the gateway to the primary\n{}",
        lab.logs()
    );
    assert_eq!(
        neighbour_mac(&b, "198.18.2.1"),
        Some(port_mac('p', 'w')),
        "the server resolved the masquerade address to the primary"
    );
    // The backup's cache holds both connections (outside its workers).
    let n = lab.primary.table().len() as u64;
    assert!(n >= 2, "TCP and UDP tracked on the primary");
    lab.wait(30, "the backup's cache holds the primary's entries", || {
        lab.cache_entries() == n
    });
    assert!(
        lab.backup.table().is_empty(),
        "nothing in the backup's workers"
    );

    // Failover.
    let killed = unix_now();
    kill(&mut lab.primary.fwd);
    let reaped = unix_now() - killed;
    let t = lab
        .backup
        .fwctl(&["ha", "takeover"])
        .expect("fwctl ha takeover");
    let took = unix_now() - killed;
    eprintln!(
        "ha_e2e failover: primary reaped {reaped:.3} s, takeover answered {took:.3} s after the kill: {t}"
    );
    assert_eq!(t["counters"]["committed"].as_u64(), Some(n), "{t}");
    assert_eq!(t["garp_sent"].as_u64(), Some(2), "{t}");
    lab.wait(10, "TCP and UDP echoed after the kill", || {
        let after = |k| echoes(&lab, k).iter().filter(|&&e| e > killed).count();
        after("tcp") >= 10 && after("udp") >= 10
    });
    let first = |k| {
        echoes(&lab, k)
            .into_iter()
            .find(|&e| e > killed)
            .map_or(f64::MAX, |e| e - killed)
    };
    let (tcp_gap, udp_gap) = (first("tcp"), first("udp"));
    eprintln!("ha_e2e failover: first echo after the kill: TCP {tcp_gap:.3} s, UDP {udp_gap:.3} s");
    assert!(
        tcp_gap <= 3.0,
        "TCP resumed {tcp_gap:.3} s after the kill\n{}",
        lab.logs()
    );
    assert!(
        udp_gap <= 3.0,
        "UDP resumed {udp_gap:.3} s after the kill\n{}",
        lab.logs()
    );
    // The hosts now reach the backup.
    assert_eq!(neighbour_mac(&a, "198.18.1.1"), Some(port_mac('s', 'l')));
    assert_eq!(neighbour_mac(&b, "198.18.2.1"), Some(port_mac('s', 'w')));

    // One TCP connection, no reset, every line echoed in order (the client checks the
    // order and would have stopped with "tcp-error"); one UDP source: the binding the
    // primary chose, which the backup's table holds too.
    let client = std::fs::read_to_string(lab.dir.join("stream.log")).unwrap();
    assert!(!client.contains("tcp-error"), "{}", lab.logs());
    let server = std::fs::read_to_string(lab.dir.join("tcp-lines.log")).unwrap();
    let accepts: Vec<&str> = server.lines().filter(|l| l.starts_with("accept")).collect();
    assert_eq!(accepts.len(), 1, "{}", lab.logs());
    assert!(!server.contains("error"), "{}", lab.logs());
    let udp = std::fs::read_to_string(lab.dir.join("udp-log.log")).unwrap();
    let sources: Vec<&str> = udp.lines().filter(|l| l.starts_with("source")).collect();
    assert_eq!(
        sources.len(),
        1,
        "one UDP source before and after\n{}",
        lab.logs()
    );
    let backup = lab.backup.table();
    for (seen, proto, dport) in [(accepts[0], "tcp", "5500"), (sources[0], "udp", "5301")] {
        let port = seen.rsplit(' ').next().unwrap();
        assert!(seen.contains(" 198.18.2.1 "), "masqueraded: {seen}");
        let binding = format!("reply 198.18.2.2:Some({dport}) -> 198.18.2.1:Some({port})");
        assert!(
            backup
                .iter()
                .any(|(k, v)| k.contains(proto) && v.starts_with(&binding)),
            "the backup's {proto} entry carries the server's view {seen}: {backup:#?}"
        );
    }
    let _ = lab.helpers[stream].kill();
    eprintln!("ha_e2e failover: done in {:?}", t0.elapsed());
}
