//! Network-namespace plumbing of the end-to-end tests that run the real `fwd` on
//! `net_af_packet` ports.

use std::process::{Command, Output};

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
