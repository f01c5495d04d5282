//! Issue 5's end-to-end proof with real Linux hosts: `fwd` as a router with a stateful
//! ruleset and NAT (`tests/data/nat_e2e/router.nft`) between a lan namespace
//! (198.18.1.2/24, gateway 198.18.1.1) and a wan namespace (the "internet server"
//! 198.19.0.2/24; fwd's wan address 198.19.0.1). `fwd` runs in a third namespace on
//! `net_af_packet` ports attached to veths (offloads off on every end).
//!
//! Needs root, `nc`, `curl`, `tcpdump`, `python3` (skips with a message otherwise). Every
//! client and server runs under `timeout`; a drop guard stops what it started (by PID) and
//! deletes the namespaces. The tests take a lock file so that two `fwd`s never busy-poll
//! at once (nextest runs tests as parallel processes).

#![cfg(feature = "dpdk")]

use std::time::Duration;

mod common;
use common::lab::*;

/// Masquerade (TCP/HTTP, UDP, ping) with the server seeing fwd's wan address, policy drop
/// for new wan -> lan connections, ICMP port unreachable back through NAT (RELATED), and
/// fwd's answers to pings on its own addresses.
#[test]
fn nat_masquerade_policy_related_and_own_ping() {
    if !can_run("nat_masquerade_policy_related_and_own_ping") {
        return;
    }
    let mut lab = Lab::start('a', "router.nft");
    let (lan, wan) = (lab.lan.clone(), lab.wan.clone());

    // fwd answers ping on both its addresses.
    for (ns, addr) in [(&lan, LAN_GW), (&wan, WAN_FWD)] {
        let out = lab.in_ns(ns, &["ping", "-c", "2", "-W", "2", addr]);
        assert!(
            out.status.success(),
            "ping fwd's own {addr} from {ns}: {}\n{}",
            text(&out),
            lab.log()
        );
    }

    // lan -> wan HTTP through masquerade; the server logs fwd's wan address as the client.
    let web = lab.web_server(&wan, "wan-http.log", WAN_HOST);
    let out = lab.http_code(&lan, "http://198.19.0.2/");
    assert_eq!(
        out,
        "200",
        "lan -> wan HTTP through masquerade\n{}",
        lab.log()
    );
    let log = read(&web);
    assert!(
        log.contains(&format!("{WAN_FWD} - - ")) && log.contains("\"GET / HTTP"),
        "the wan server should see {WAN_FWD} as the client:\n{log}"
    );
    assert!(!log.contains(LAN_HOST), "lan address leaked to wan:\n{log}");

    // UDP through masquerade: the wan echo names the source it saw.
    lab.spawn_helper(
        &wan,
        "udp-echo.log",
        20,
        &["udp-echo", WAN_HOST, "5300", "15"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = lab.helper(&lan, 10, &["udp-ask", WAN_HOST, "5300"]);
    assert_eq!(
        got.trim(),
        format!("from {WAN_FWD}"),
        "lan -> wan UDP\n{}",
        lab.log()
    );

    // Ping through masquerade: the wan host sees the echo request from fwd's address.
    let cap = lab.wan_capture(
        "icmp.cap",
        10,
        &format!("icmp[icmptype] == icmp-echo and src host {WAN_FWD}"),
    );
    let out = lab.in_ns(&lan, &["ping", "-c", "3", "-W", "2", WAN_HOST]);
    assert!(
        out.status.success(),
        "lan -> wan ping: {}\n{}",
        text(&out),
        lab.log()
    );
    assert!(text(&out).contains("ttl=63"), "{}", text(&out));
    lab.wait_last();
    assert!(
        read(&cap).contains(&format!("{WAN_FWD} > {WAN_HOST}: ICMP echo request")),
        "wan host did not see the ping from {WAN_FWD}:\n{}",
        read(&cap)
    );

    // UDP to a closed wan port: the ICMP port unreachable comes back through NAT.
    let got = lab.helper(&lan, 10, &["udp-ask", WAN_HOST, "5399"]);
    assert_eq!(
        got.trim(),
        "refused",
        "ICMP port unreachable (RELATED) did not reach the lan socket\n{}",
        lab.log()
    );

    // wan -> lan new connections are dropped by the forward policy (lan:80 is listening).
    let out = lab.in_ns(
        &wan,
        &["timeout", "5", "nc", "-z", "-w", "2", LAN_HOST, "80"],
    );
    assert!(
        !out.status.success(),
        "wan -> lan:80 connected through a policy drop"
    );
    let out = lab.in_ns(&wan, &["ping", "-c", "1", "-W", "1", LAN_HOST]);
    assert!(
        !out.status.success(),
        "wan -> lan ping passed the policy drop"
    );
}

/// TCP segments with invalid flag combinations (SYN+FIN, none, FIN+PSH+URG) are dropped:
/// they never reach the wan host and fwd counts them; a valid SYN does cross.
#[test]
fn nat_invalid_tcp_flags_dropped() {
    if !can_run("nat_invalid_tcp_flags_dropped") {
        return;
    }
    let mut lab = Lab::start('b', "router.nft");
    let lan = lab.lan.clone();

    let before = lab.control(r#"{"op":"stats"}"#);
    // SYN+FIN, then no flags at all, from lan to wan (a new tuple each time).
    for (flags, sport) in [("0x03", "40001"), ("0x00", "40002"), ("0x29", "40003")] {
        let cap = lab.wan_capture(&format!("bad-{sport}.cap"), 3, "tcp dst port 9300");
        let sent = lab.helper(
            &lan,
            10,
            &["raw-tcp", LAN_HOST, WAN_HOST, sport, "9300", flags, "3"],
        );
        assert_eq!(sent.trim(), "sent 3");
        lab.wait_last();
        let c = read(&cap);
        assert!(
            c.contains("0 packets captured"),
            "TCP flags {flags} crossed fwd:\n{c}"
        );
    }
    let after = lab.control(r#"{"op":"stats"}"#);
    let dropped = |s: &serde_json::Value| -> u64 {
        s["result"]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|w| w["drops"].as_object().into_iter().flat_map(|d| d.values()))
            .map(|v| v.as_u64().unwrap_or(0))
            .sum()
    };
    assert!(
        dropped(&after) >= dropped(&before) + 9,
        "9 invalid segments, drops before {before}\nafter {after}"
    );
    // A well-formed SYN to the same closed port does cross (the capture works).
    let cap = lab.wan_capture("good.cap", 5, "tcp dst port 9300");
    let _ = lab.in_ns(
        &lan,
        &["timeout", "3", "nc", "-z", "-w", "1", WAN_HOST, "9300"],
    );
    lab.wait_last();
    assert!(
        read(&cap).contains("1 packet captured"),
        "a valid SYN did not cross: {}",
        read(&cap)
    );
}

/// A ruleset replaced through the control socket applies at once (a new connection to
/// tcp/9100 is dropped) while an established connection to that port keeps working, with
/// no restart.
#[test]
fn nat_ruleset_swap_keeps_established() {
    if !can_run("nat_ruleset_swap_keeps_established") {
        return;
    }
    let mut lab = Lab::start('c', "router.nft");
    let (lan, wan) = (lab.lan.clone(), lab.wan.clone());

    lab.spawn_helper(
        &wan,
        "hold.log",
        40,
        &["hold-server", WAN_HOST, "9100", "35"],
    );
    lab.wait_listen(&wan, 9100);
    let go = lab.dir.join("go");
    let session = lab.spawn_helper(
        &lan,
        "session.log",
        30,
        &["echo-session", WAN_HOST, "9100", go.to_str().unwrap(), "25"],
    );
    let mut waits = 0;
    while !read(&session).contains("before-ok") {
        waits += 1;
        assert!(
            waits <= 100,
            "established session: {}\n{}",
            read(&session),
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second connection to 9100 works before the swap.
    let out = lab.in_ns(
        &lan,
        &["timeout", "5", "nc", "-z", "-w", "2", WAN_HOST, "9100"],
    );
    assert!(out.status.success(), "tcp/9100 before the swap");

    let gen0 = lab.control(r#"{"op":"status"}"#)["result"]["ruleset_generation"]
        .as_u64()
        .unwrap();
    let content = std::fs::read_to_string(data("router-swap.nft")).unwrap();
    let req = format!(
        r#"{{"op":"ruleset_replace","ruleset":{{"format":"text","content":{}}}}}"#,
        serde_json::to_string(&content).unwrap()
    );
    let r = lab.control(&req);
    assert_eq!(r["result"]["generation"], gen0 + 1, "{r}");
    // Workers adopt the generation within their ~1 ms tick.
    std::thread::sleep(Duration::from_millis(100));

    let out = lab.in_ns(
        &lan,
        &["timeout", "5", "nc", "-z", "-w", "2", WAN_HOST, "9100"],
    );
    assert!(
        !out.status.success(),
        "a new tcp/9100 connection passed the swapped-in drop rule"
    );
    std::fs::write(&go, "").unwrap();
    for waits in 0.. {
        let s = read(&session);
        if s.contains("after-") || s.contains("no-go") {
            assert!(
                s.contains("after-ok"),
                "established connection broke across the swap: {s}\n{}",
                lab.log()
            );
            break;
        }
        assert!(waits < 100, "session after 10 s: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = lab.control(r#"{"op":"status"}"#);
    assert_eq!(st["result"]["ruleset_generation"], gen0 + 1, "{st}");
    assert!(
        !lab.log().contains("fwd: stopped"),
        "fwd restarted:\n{}",
        lab.log()
    );
}

/// The DNAT port forward wan:8080 -> lan:80 under `ruleset`; the lan server sees the real
/// wan client; unless the ruleset allows it, a direct wan -> lan:80 connection is dropped.
fn dnat_port_forward(test: char, ruleset: &str, direct_allowed: bool) {
    let mut lab = Lab::start(test, ruleset);
    let (lan, wan) = (lab.lan.clone(), lab.wan.clone());
    let lanweb = lab.web_server(&lan, "lan-http.log", LAN_HOST);
    let out = lab.http_code(&wan, "http://198.19.0.1:8080/");
    assert_eq!(
        out,
        "200",
        "wan:8080 -> lan:80 port forward\n{}\n{}",
        lab.log(),
        lab.control(r#"{"op":"stats"}"#)["result"]["workers"][0]["drops"]
    );
    assert!(
        read(&lanweb).contains(&format!("{WAN_HOST} - - ")),
        "lan server log: {}",
        read(&lanweb)
    );

    if !direct_allowed {
        let out = lab.in_ns(
            &wan,
            &["timeout", "5", "nc", "-z", "-w", "2", LAN_HOST, "80"],
        );
        assert!(!out.status.success(), "wan -> lan:80 connected directly");
        let stats = lab.control(r#"{"op":"stats"}"#);
        assert!(
            stats["result"]["workers"][0]["drops"]["filter_drop"].as_u64() >= Some(1),
            "{stats}"
        );
    }
}

/// The port forward with the forward chain accepting it by address.
#[test]
fn nat_dnat_port_forward() {
    if can_run("nat_dnat_port_forward") {
        // The address rule also admits direct wan -> lan:80 connections.
        dnat_port_forward('d', "router-dnat-by-address.nft", true);
    }
}

/// The port forward accepted by `ct status dnat` (as `deploy/examples/router.nft`).
#[test]
fn nat_dnat_port_forward_ct_status_dnat() {
    if can_run("nat_dnat_port_forward_ct_status_dnat") {
        dnat_port_forward('e', "router.nft", false);
    }
}

/// The port forward from a named NAT map (`dnat ip to tcp dport map @fwd4`), with the
/// state rules as verdict maps and the lan -> wan rule as a concatenation.
#[test]
fn nat_dnat_port_forward_named_map() {
    if can_run("nat_dnat_port_forward_named_map") {
        dnat_port_forward('m', "router-maps.nft", false);
    }
}

/// `ct count over 2` admits two concurrent connections to tcp/9200 and drops the third;
/// once those are gone (a flush) two fit again.
#[test]
fn nat_ct_count_limit_holds() {
    if !can_run("nat_ct_count_limit_holds") {
        return;
    }
    let mut lab = Lab::start('f', "router.nft");
    let (lan, wan) = (lab.lan.clone(), lab.wan.clone());
    // ct count over 2: three concurrent connections to tcp/9200, two get through.
    lab.spawn_helper(
        &wan,
        "hold.log",
        30,
        &["hold-server", WAN_HOST, "9200", "25"],
    );
    lab.wait_listen(&wan, 9200);
    let got = lab.helper(&lan, 20, &["connect-many", WAN_HOST, "9200", "3", "1"]);
    assert_eq!(
        got.trim(),
        "connected 2 of 3",
        "ct count over 2\n{}",
        lab.log()
    );
    // Those closed: the slots are free again once conntrack forgets them; a flush does
    // that at once.
    let r = lab.control(r#"{"op":"conntrack_delete","all":true}"#);
    assert!(r["result"]["deleted"].is_u64(), "{r}");
    let got = lab.helper(&lan, 20, &["connect-many", WAN_HOST, "9200", "2", "0"]);
    assert_eq!(
        got.trim(),
        "connected 2 of 2",
        "ct count slots not released"
    );
}

/// A conntrack flush over the control socket (`conntrack_delete` with `all`) empties the
/// table while connections are tracked.
#[test]
fn nat_conntrack_flush_empties_table() {
    if !can_run("nat_conntrack_flush_empties_table") {
        return;
    }
    let mut lab = Lab::start('g', "router.nft");
    let (lan, wan) = (lab.lan.clone(), lab.wan.clone());
    lab.spawn_helper(
        &wan,
        "udp-echo.log",
        20,
        &["udp-echo", WAN_HOST, "5300", "15"],
    );
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let got = lab.helper(&lan, 10, &["udp-ask", WAN_HOST, "5300"]);
        assert_eq!(got.trim(), format!("from {WAN_FWD}"));
    }
    let out = lab.in_ns(&lan, &["ping", "-c", "1", "-W", "2", WAN_HOST]);
    assert!(out.status.success());
    // Conntrack flush: entries exist (the held session at least), then none.
    let n = lab.ct_count();
    assert!(n >= 1, "expected tracked connections before the flush");
    let r = lab.control(r#"{"op":"conntrack_delete","all":true}"#);
    assert!(
        r["result"]["deleted"].as_u64().unwrap_or(0) >= 1,
        "flush: {r}"
    );
    assert_eq!(lab.ct_count(), 0, "table not empty after the flush");
}

/// Issue 18's scenario: a 4000-byte UDP datagram (three fragments on the 1500-byte MTU) from
/// the lan host to an echo server on the wan side through masquerade, and its 4000-byte
/// echo back (fragmented by the wan host's kernel). fwd reassembles each direction before
/// conntrack, masquerades / un-masquerades the whole datagram and sends it on as
/// fragments; the server sees fwd's wan address.
///
/// IPv6 only: DPDK's `net_af_packet` joins its sockets to a fanout group with
/// `PACKET_FANOUT_FLAG_DEFRAG`, so the kernel reassembles IPv4 fragments before fwd sees
/// them (the datagram then arrives whole, longer than an mbuf, and is dropped as
/// `bad_ip_length`); IPv6 fragments are left alone. Both families run end to end on
/// `net_tap` ports in `fwd_frag_e2e.rs`.
#[test]
fn nat_masquerade_fragmented_udp_echo_v6() {
    if !can_run("nat_masquerade_fragmented_udp_echo_v6") {
        return;
    }
    let mut lab = Lab::start_with('g', "router-frag.nft", true);
    let (lan, wan) = (lab.lan.clone(), lab.wan.clone());
    let log = lab.spawn_helper(
        &wan,
        "udp-mirror.log",
        20,
        &["udp-mirror", WAN6_HOST, "5400", "15"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = lab.helper(&lan, 10, &["udp-big", WAN6_HOST, "5400", "4000"]);
    let stats = lab.control(r#"{"op":"stats"}"#);
    let w = &stats["result"]["workers"][0];
    assert_eq!(
        got.trim(),
        "echo 4000 ok",
        "4000-byte UDP echo through masquerade\nserver: {}\nfrag: {}\ndrops: {}\n{}",
        read(&log),
        w["frag"],
        w["drops"],
        lab.log()
    );
    assert!(
        read(&log).starts_with(&format!("4000 {WAN6_FWD}")),
        "the server should get 4000 bytes from {WAN6_FWD}: {}",
        read(&log)
    );
    let frag = &w["frag"];
    assert!(
        frag["ipv6.Ip6ReasmOKs"].as_u64() >= Some(2),
        "both directions reassembled: {frag}"
    );
    assert_eq!(frag["ipv6.Ip6ReasmFails"].as_u64(), Some(0), "{frag}");
}
