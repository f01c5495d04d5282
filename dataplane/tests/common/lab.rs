//! The lab of the end-to-end tests that run the real `fwd` as a router (fwd_nat_e2e,
//! fwd_ftp_e2e): a lan namespace (198.18.1.2/24, gateway 198.18.1.1), a wan namespace
//! (198.19.0.2/24; fwd's wan address 198.19.0.1) and fwd in a third namespace on
//! `net_af_packet` ports attached to veths (or, for the fragment tests, `net_tap` ports
//! bridged to those veths: [`Lab::start_tap`]), with the clients and servers the tests
//! start. Every client and server runs under `timeout`; the drop guard stops what it
//! started (by PID) and deletes the namespaces. A lock directory keeps two `fwd`s from
//! busy-polling at once (nextest runs tests as parallel processes). Each test binary
//! uses a subset.
#![allow(dead_code)]

use super::netns::{attach_host, ok, sh};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const LAN_HOST: &str = "198.18.1.2";
pub const LAN_GW: &str = "198.18.1.1";
pub const WAN_HOST: &str = "198.19.0.2";
pub const WAN_FWD: &str = "198.19.0.1";
pub const LAN6_HOST: &str = "2001:db8:1::2";
pub const LAN6_GW: &str = "2001:db8:1::1";
pub const WAN6_HOST: &str = "2001:db8:2::2";
pub const WAN6_FWD: &str = "2001:db8:2::1";

/// [`fwd_testkit::fwd::spawn_fwd`] with this crate's `fwd`, its output in `dir`/fwd.log.
pub fn spawn_fwd(ns: &str, config: &Path, dir: &Path, socket: &Path) -> Child {
    let fwd = Path::new(env!("CARGO_BIN_EXE_fwd"));
    fwd_testkit::fwd::spawn_fwd(fwd, ns, config, &dir.join("fwd.log"), socket)
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/nat_e2e")
        .join(name)
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Root and the tools the checks use; otherwise a message and `false`.
pub fn can_run(test: &str) -> bool {
    if !sh(&["id", "-u"]).stdout.starts_with(b"0\n") {
        eprintln!("{test}: skipped (needs root for network namespaces)");
        return false;
    }
    for tool in [
        "ip", "ethtool", "nc", "curl", "tcpdump", "python3", "timeout",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("{test}: skipped ({tool} not found)");
            return false;
        }
    }
    true
}

/// [`can_run`] and `/dev/net/tun` (for [`Lab::start_tap`]'s `net_tap` ports).
pub fn can_run_tap(test: &str) -> bool {
    if !Path::new("/dev/net/tun").exists() {
        eprintln!("{test}: skipped (no /dev/net/tun for net_tap)");
        return false;
    }
    can_run(test)
}

/// A lock directory held while a test runs `fwd` (stale after its holder died).
pub struct RunLock(PathBuf);

impl RunLock {
    pub fn take() -> RunLock {
        let dir = std::env::temp_dir().join("fwd-nat-e2e.lock");
        // 1500 waits of 200 ms: 300 s at most.
        for _ in 0..1500 {
            if std::fs::create_dir(&dir).is_ok() {
                std::fs::write(dir.join("pid"), std::process::id().to_string()).unwrap();
                return RunLock(dir);
            }
            let holder = std::fs::read_to_string(dir.join("pid")).unwrap_or_default();
            if !holder.is_empty() && !Path::new(&format!("/proc/{}", holder.trim())).exists() {
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{} held for 300 s", dir.display());
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// lan, wan and the appliance namespace, `fwd`, and the helper processes started.
pub struct Lab {
    pub lan: String,
    pub wan: String,
    pub fw: String,
    pub fl: String,
    pub fwn: String,
    pub dir: PathBuf,
    pub fwd: Option<Child>,
    pub bg: Vec<Child>,
    /// IPv6 too: fwd's ports and the hosts get addresses from 2001:db8::/32.
    pub v6: bool,
    /// fwd's ports are `net_tap` devices, each bridged (in the appliance namespace) to the
    /// veth of its host, instead of `net_af_packet` on the veth.
    pub tap: bool,
    /// The MTU of fwd's wan port and of the wan host's link (1500 unless
    /// [`Lab::start_tap_wan_mtu`]).
    pub wan_mtu: u16,
    pub _lock: RunLock,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let procs = self.bg.iter_mut().chain(self.fwd.as_mut()).collect();
        stop_and_delete(procs, &[&self.lan, &self.wan, &self.fw], &self.dir);
    }
}

/// Stops `procs` (SIGTERM, which `timeout` passes on and fwd stops on; SIGKILL after
/// 5 s), deletes the namespaces `ns` and the scratch directory `dir`.
pub fn stop_and_delete(procs: Vec<&mut Child>, ns: &[&str], dir: &Path) {
    for c in &procs {
        let _ = sh(&["kill", "-TERM", &c.id().to_string()]);
    }
    for c in procs {
        for _ in 0..50 {
            if c.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    for n in ns {
        let _ = sh(&["ip", "netns", "del", n]);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `cmd` started in the background in namespace `ns`, its output into `out`.
pub fn spawn_in(ns: &str, out: &Path, cmd: &[&str]) -> Child {
    let f = std::fs::File::create(out).unwrap();
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap()
}

/// The command line of the helper script bounded by `secs`: `timeout secs python3
/// helper.py args...`.
pub fn helper_cmd(secs: u32, args: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        "timeout".to_owned(),
        secs.to_string(),
        "python3".to_owned(),
        data("helper.py").display().to_string(),
    ];
    cmd.extend(args.iter().map(|a| (*a).to_owned()));
    cmd
}

impl Lab {
    /// The namespaces, veths and addresses; `fwd` started on `router.nft` and reachable
    /// from both hosts (ARP resolved both ways by a first ping).
    pub fn start(test: char, ruleset: &str) -> Lab {
        Lab::start_with(test, ruleset, false)
    }

    /// [`Lab::start`] with IPv6 as well: lan 2001:db8:1::2/64 (gateway fwd's
    /// 2001:db8:1::1), wan 2001:db8:2::2/64 (fwd's 2001:db8:2::1).
    pub fn start_with(test: char, ruleset: &str, v6: bool) -> Lab {
        Lab::start_ports(test, ruleset, v6, false, 1500)
    }

    /// [`Lab::start_with`] (IPv6 too) with fwd on `net_tap` ports: DPDK 22.11's
    /// `net_af_packet` joins its sockets to a fanout group with `PACKET_FANOUT_FLAG_DEFRAG`
    /// (not configurable), so the kernel reassembles IPv4 fragments before fwd could see
    /// them. A tap hands fwd every frame as the kernel sent it. The tap's kernel side
    /// and the host's veth are joined by a bridge in the appliance namespace (no
    /// conntrack there, `bridge-nf-call-*` off: nothing reassembles); the kernel side
    /// gets its own MAC, else the bridge would take frames for fwd's MAC (the PMD's,
    /// which the tap shares by default) as its own.
    pub fn start_tap(test: char, ruleset: &str) -> Lab {
        Lab::start_ports(test, ruleset, true, true, 1500)
    }

    /// [`Lab::start_tap`] with a smaller MTU on the wan side: fwd's wan port (`mtu:`) and
    /// the wan host's link.
    pub fn start_tap_wan_mtu(test: char, ruleset: &str, wan_mtu: u16) -> Lab {
        Lab::start_ports(test, ruleset, true, true, wan_mtu)
    }

    fn start_ports(test: char, ruleset: &str, v6: bool, tap: bool, wan_mtu: u16) -> Lab {
        let lock = RunLock::take();
        let pid = std::process::id();
        let short = pid % 100_000;
        let mut lab = Lab {
            lan: format!("e2e{pid}{test}-lan"),
            wan: format!("e2e{pid}{test}-wan"),
            fw: format!("e2e{pid}{test}-fw"),
            fl: format!("el{test}{short}"),
            fwn: format!("ew{test}{short}"),
            dir: std::env::temp_dir().join(format!("e2e{pid}{test}")),
            fwd: None,
            bg: Vec::new(),
            v6,
            tap,
            wan_mtu,
            _lock: lock,
        };
        std::fs::create_dir_all(&lab.dir).unwrap();
        for ns in [&lab.lan, &lab.wan, &lab.fw] {
            ok(&["ip", "netns", "add", ns]);
            ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        for (host_ns, fw_if, addr, gw, route) in [
            (&lab.lan, &lab.fl, "198.18.1.2/24", LAN_GW, "default"),
            // The wan host only knows the lan prefix through fwd (to try wan -> lan).
            (
                &lab.wan,
                &lab.fwn,
                "198.19.0.2/24",
                WAN_FWD,
                "198.18.1.0/24",
            ),
        ] {
            attach_host(&lab.fw, fw_if, host_ns, addr, route, gw);
        }
        if wan_mtu != 1500 {
            let mtu = wan_mtu.to_string();
            ok(&["ip", "-n", &lab.wan, "link", "set", "eth0", "mtu", &mtu]);
        }
        if v6 {
            for (ns, addr, route, gw) in [
                (&lab.lan, LAN6_HOST, "default", LAN6_GW),
                (&lab.wan, WAN6_HOST, "2001:db8:1::/64", WAN6_FWD),
            ] {
                let a = format!("{addr}/64");
                ok(&[
                    "ip", "-n", ns, "-6", "addr", "add", &a, "dev", "eth0", "nodad",
                ]);
                ok(&["ip", "-n", ns, "-6", "route", "add", route, "via", gw]);
            }
        }
        lab.start_fwd(ruleset);
        for (ns, addr) in [(&lab.lan, LAN_GW), (&lab.wan, WAN_FWD)] {
            let _ = lab.in_ns(ns, &["ping", "-c", "1", "-W", "2", addr]);
        }
        if v6 {
            for (ns, addr) in [(&lab.lan, LAN6_GW), (&lab.wan, WAN6_FWD)] {
                let _ = lab.in_ns(ns, &["ping", "-6", "-c", "1", "-W", "2", addr]);
            }
        }
        lab
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn start_fwd(&mut self, ruleset: &str) {
        let (lan6, wan6) = if self.v6 {
            (format!(", {LAN6_GW}/64"), format!(", {WAN6_FWD}/64"))
        } else {
            (String::new(), String::new())
        };
        // net_tap needs as many RX queues as TX queues (one worker + the slow path: 2).
        let (lan_dev, wan_dev) = if self.tap {
            (
                format!("net_tap0,iface={}", tap_if(&self.fl)),
                format!("net_tap1,iface={}", tap_if(&self.fwn)),
            )
        } else {
            (
                format!("net_af_packet0,iface={},qpairs=2", self.fl),
                format!("net_af_packet1,iface={},qpairs=2", self.fwn),
            )
        };
        let cfg = format!(
            "eal:\n  main_core: 0\n  hugepages: false\n  in_memory: true\n  memory_mb: 256\n  \
             file_prefix: {fp}\n\
             ports:\n\
             \x20 - name: lan\n    device: {lan_dev}\n    \
             addresses: [198.18.1.1/24{lan6}]\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             \x20 - name: wan\n    device: {wan_dev}\n    \
             addresses: [198.19.0.1/24{wan6}]\n    mtu: {wan_mtu}\n    rx_queues: 2\n    rx_descriptors: 256\n    tx_descriptors: 256\n\
             workers:\n  cores: [1]\n\
             control_socket: {sock}\nstate_dir: {state}\nruleset: {rules}\n",
            fp = self.fw,
            wan_mtu = self.wan_mtu,
            sock = self.socket().display(),
            state = self.dir.join("state").display(),
            rules = data(ruleset).display(),
        );
        let path = self.dir.join("fwd.yaml");
        std::fs::write(&path, cfg).unwrap();
        self.fwd = Some(spawn_fwd(&self.fw, &path, &self.dir, &self.socket()));
        if self.tap {
            for (i, veth) in [self.fl.clone(), self.fwn.clone()].iter().enumerate() {
                self.bridge_tap(veth, i);
            }
        }
    }

    /// Joins fwd's tap (created by the PMD when fwd started) and the host's veth `veth`
    /// with a bridge; `i` makes the tap's kernel-side MAC unique (see [`Lab::start_tap`]).
    fn bridge_tap(&self, veth: &str, i: usize) {
        let (fw, tap, br) = (self.fw.as_str(), tap_if(veth), format!("b{veth}"));
        // A restarted fwd made a new tap: the bridge may already be there.
        let _ = sh(&["ip", "-n", fw, "link", "add", &br, "type", "bridge"]);
        let mac = format!("02:00:5e:00:53:{:02x}", 0x10 + i);
        ok(&["ip", "-n", fw, "link", "set", &tap, "address", &mac]);
        ok(&["ip", "-n", fw, "link", "set", &tap, "master", &br]);
        ok(&["ip", "-n", fw, "link", "set", veth, "master", &br]);
        ok(&[
            "ip", "netns", "exec", fw, "ethtool", "-K", &tap, "tx", "off", "rx", "off", "tso",
            "off", "gso", "off", "gro", "off",
        ]);
        for dev in [&br, &tap] {
            ok(&["ip", "-n", fw, "link", "set", dev, "up"]);
            ok(&[
                "ip",
                "netns",
                "exec",
                fw,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ]);
        }
        for knob in ["iptables", "ip6tables", "arptables"] {
            let _ = sh(&[
                "ip",
                "netns",
                "exec",
                fw,
                "sysctl",
                "-qw",
                &format!("net.bridge.bridge-nf-call-{knob}=0"),
            ]);
        }
    }

    /// The counters of `ipv4.<name>` / `ipv6.<name>` (`stats`' `frag`) of worker 0.
    pub fn frag(&self) -> serde_json::Value {
        self.worker0("frag")
    }

    /// Worker 0's drops by reason.
    pub fn drops(&self) -> serde_json::Value {
        self.worker0("drops")
    }

    /// Field `key` of worker 0's `stats`.
    fn worker0(&self, key: &str) -> serde_json::Value {
        let stats = self.control(r#"{"op":"stats"}"#);
        stats["result"]["workers"][0][key].clone()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("fwd.log")).unwrap_or_default()
    }

    pub fn in_ns(&self, ns: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["ip", "netns", "exec", ns];
        args.extend_from_slice(cmd);
        sh(&args)
    }

    /// The helper script in `ns`, bounded by `secs`.
    pub fn helper(&self, ns: &str, secs: u32, args: &[&str]) -> String {
        let cmd = helper_cmd(secs, args);
        text(&self.in_ns(ns, &cmd.iter().map(String::as_str).collect::<Vec<_>>()))
    }

    /// A background command in `ns` (already bounded by the caller's `timeout`), its
    /// output into `dir/<name>`.
    pub fn spawn(&mut self, ns: &str, name: &str, cmd: &[&str]) -> PathBuf {
        let out = self.dir.join(name);
        self.bg.push(spawn_in(ns, &out, cmd));
        out
    }

    pub fn spawn_helper(&mut self, ns: &str, name: &str, secs: u32, args: &[&str]) -> PathBuf {
        let cmd = helper_cmd(secs, args);
        self.spawn(
            ns,
            name,
            &cmd.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    /// `python3 -m http.server` on `bind:80` in `ns` (30 s at most), listening when this
    /// returns; its log (one line per request, with the client address) is `dir/<log>`.
    pub fn web_server(&mut self, ns: &str, log: &str, bind: &str) -> PathBuf {
        let out = self.spawn(
            ns,
            log,
            &[
                "timeout",
                "30",
                "python3",
                "-u",
                "-m",
                "http.server",
                "80",
                "--bind",
                bind,
            ],
        );
        self.wait_listen(ns, 80);
        out
    }

    /// The HTTP status code of a GET of `url` from `ns` (curl, 5 s at most).
    pub fn http_code(&self, ns: &str, url: &str) -> String {
        let out = self.in_ns(
            ns,
            &[
                "curl",
                "-sS",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                url,
            ],
        );
        text(&out)
    }

    /// A TCP listener in `ns` on `addr:port` is accepting (polled with `ss`, at most 5 s).
    pub fn wait_listen(&self, ns: &str, port: u16) {
        for _ in 0..50 {
            let out = self.in_ns(ns, &["ss", "-Htln", &format!("sport = :{port}")]);
            if !out.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nothing listens on {ns} tcp/{port}");
    }

    /// `n` UDP sockets in `ns` are bound to `port` (polled with `ss`, at most 10 s).
    pub fn wait_udp(&self, ns: &str, port: u16, n: usize) {
        for _ in 0..100 {
            let out = self.in_ns(ns, &["ss", "-Huln", &format!("sport = :{port}")]);
            if String::from_utf8_lossy(&out.stdout).lines().count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("fewer than {n} sockets on {ns} udp/{port}");
    }

    /// One request on the control socket; the parsed response.
    pub fn control(&self, request: &str) -> serde_json::Value {
        fwd_testkit::fwd::control(&self.socket(), request)
    }

    pub fn ct_count(&self) -> u64 {
        let r = self.control(r#"{"op":"conntrack_count"}"#);
        r["result"]["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("conntrack_count: {r}"))
    }

    /// `tcpdump -c 1` on the wan host's eth0 for `filter`, started now and bounded by
    /// `secs`; returns the output file (read after the traffic).
    pub fn wan_capture(&mut self, name: &str, secs: u32, filter: &str) -> PathBuf {
        let secs = secs.to_string();
        let wan = self.wan.clone();
        let out = self.spawn(
            &wan,
            name,
            &[
                "timeout", &secs, "tcpdump", "-n", "-l", "-i", "eth0", "-c", "1", filter,
            ],
        );
        // tcpdump prints "listening on" once its filter is installed.
        for _ in 0..50 {
            if std::fs::read_to_string(&out)
                .unwrap_or_default()
                .contains("listening on")
            {
                return out;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tcpdump did not start: {}", read(&out));
    }

    /// Waits for the last background process (at most its own `timeout`).
    pub fn wait_last(&mut self) {
        if let Some(mut c) = self.bg.pop() {
            let _ = c.wait();
        }
    }
}

/// The name of fwd's tap for the host veth `veth` (both at most 15 bytes).
fn tap_if(veth: &str) -> String {
    format!("t{veth}")
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
