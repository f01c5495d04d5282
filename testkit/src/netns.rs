//! Network-namespace plumbing of the end-to-end tests that run the real `fwd` on
//! `net_af_packet` ports.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs a command; panics only if it cannot be started.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(args: &[&str]) {
    let out = sh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the tests run as root (the namespace tests skip otherwise).
pub fn is_root() -> bool {
    sh(&["id", "-u"]).stdout.starts_with(b"0\n")
}

/// A host namespace behind the appliance: [`veth_to_host`], then `addr` (with its prefix
/// length) on the host's `eth0` and a route to `route` ("default" or a prefix) via `gw`.
pub fn attach_host(fw_ns: &str, fw_if: &str, host_ns: &str, addr: &str, route: &str, gw: &str) {
    veth_to_host(fw_ns, fw_if, host_ns);
    ok(&["ip", "-n", host_ns, "addr", "add", addr, "dev", "eth0"]);
    ok(&["ip", "-n", host_ns, "route", "add", route, "via", gw]);
}

/// A veth pair from `fw_if` in the appliance namespace `fw_ns` to `eth0` in `host_ns`,
/// both ends up with checksum/segmentation offloads off (af_packet would otherwise hand
/// fwd frames with unfinished checksums), IPv6 off on the appliance end (no router
/// solicitations from the kernel side of fwd's port).
pub fn veth_to_host(fw_ns: &str, fw_if: &str, host_ns: &str) {
    ok(&[
        "ip", "link", "add", fw_if, "netns", fw_ns, "type", "veth", "peer", "name", "eth0",
        "netns", host_ns,
    ]);
    for (ns, dev) in [(host_ns, "eth0"), (fw_ns, fw_if)] {
        ok(&[
            "ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off", "tso",
            "off", "gso", "off", "gro", "off",
        ]);
        ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    ok(&[
        "ip",
        "netns",
        "exec",
        fw_ns,
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{fw_if}.disable_ipv6=1"),
    ]);
}

/// The two-host lab of the end-to-end tests: host A (198.18.1.2/24) and host B
/// (198.18.2.2/24) in namespaces of their own, each behind a veth to the appliance
/// namespace, with the appliance's addresses (198.18.1.1, 198.18.2.1) as their default
/// gateways. Namespaces are named `{prefix}-a`, `{prefix}-b`, `{prefix}-fw` (put the
/// test's PID in `prefix`) and deleted on drop: exactly the ones that were created, even
/// when a step of the set-up failed.
#[derive(Debug)]
pub struct TwoHosts {
    pub a: String,
    pub b: String,
    pub fw: String,
    /// The appliance's ends of the veths to A and B.
    pub fa: String,
    pub fb: String,
}

impl TwoHosts {
    /// Host A's address and its gateway (the appliance's lan address).
    pub const A: (&str, &str) = ("198.18.1.2/24", "198.18.1.1");
    /// Host B's address and its gateway (the appliance's wan address).
    pub const B: (&str, &str) = ("198.18.2.2/24", "198.18.2.1");

    /// Creates the three namespaces (loopback up) and the two veths `fa`, `fb`.
    pub fn new(prefix: &str, fa: &str, fb: &str) -> TwoHosts {
        let mut net = TwoHosts {
            a: String::new(),
            b: String::new(),
            fw: String::new(),
            fa: fa.to_owned(),
            fb: fb.to_owned(),
        };
        for suffix in ["a", "b", "fw"] {
            let ns = format!("{prefix}-{suffix}");
            ok(&["ip", "netns", "add", &ns]);
            ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            match suffix {
                "a" => net.a = ns,
                "b" => net.b = ns,
                _ => net.fw = ns,
            }
        }
        for (host_ns, fw_if, (addr, gw)) in [(&net.a, fa, Self::A), (&net.b, fb, Self::B)] {
            attach_host(&net.fw, fw_if, host_ns, addr, "default", gw);
        }
        net
    }

    /// `msg` over TCP from host A to a listener (`nc`, 20 s at most) on host B's
    /// 198.18.2.2:`port`, through the appliance, connecting up to 20 times 200 ms apart:
    /// whether a client got it out, and the listener's exit status and what it received
    /// (the listener is killed when no client got through).
    pub fn tcp_a_to_b(&self, port: u16, msg: &str) -> (bool, Output) {
        let p = port.to_string();
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.b,
                "timeout",
                "20",
                "nc",
                "-l",
                "-N",
                "198.18.2.2",
                &p,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("nc -l in {}: {e}", self.b));
        let cmd = format!("echo {msg} | timeout 5 nc -N -w 3 198.18.2.2 {port}");
        let mut sent = false;
        for _ in 0..20 {
            if Self::exec(&self.a, &["sh", "-c", &cmd]).status.success() {
                sent = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if !sent {
            let _ = server.kill();
        }
        let out = server
            .wait_with_output()
            .unwrap_or_else(|e| panic!("nc -l in {}: {e}", self.b));
        (sent, out)
    }

    /// Runs `cmd` in namespace `ns` (not checked).
    pub fn exec(ns: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["ip", "netns", "exec", ns];
        args.extend_from_slice(cmd);
        sh(&args)
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b, &self.fw] {
            if !ns.is_empty() {
                let _ = sh(&["ip", "netns", "del", ns]);
            }
        }
    }
}
