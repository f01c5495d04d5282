//! Matches on facts beyond the summary (`fib`, `ct direction`, `ct original|reply`, `ct
//! expiration`, `meta pkttype`, `ip|ip6 dscp`): the kernel's listing and JSON (nft
//! 1.0.6), evaluation against each fact, and what they do to the caches.

use super::ast::*;
use super::compile::{CtTuple, Decision, Facts, ct_state};
use super::mangle_tests::handles_zero;
use super::tests::{ctx, ports, tcp, udp, v4};
use super::*;
use crate::wire::{Addr, TcpFlags};

/// `nft list ruleset` of `facts.kernel.json`'s ruleset (nft 1.0.6).
const KERNEL: &str = include_str!("testdata/facts.kernel.nft");
const KERNEL_JSON: &str = include_str!("testdata/facts.kernel.json");

pub(super) fn rule_exprs(j: &serde_json::Value) -> Vec<serde_json::Value> {
    j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .map(|r| r["expr"].clone())
        .collect()
}

/// A kernel listing (`nft list ruleset`) and its `nft -j` form: the listing reads, checks
/// and prints back as itself, the JSON reads as the same ruleset, and our JSON statements
/// are the kernel's, one by one. Returns the ruleset.
pub(super) fn assert_kernel_forms(listing: &str, kernel_json: &str) -> Ruleset {
    let rs = parse::parse(listing).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), listing);
    let kj: serde_json::Value = serde_json::from_str(kernel_json).unwrap();
    assert_eq!(
        handles_zero(json::from_json(&kj).unwrap()),
        handles_zero(rs.clone())
    );
    let ours = rule_exprs(&json::to_json(&rs));
    let theirs = rule_exprs(&kj);
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t);
    }
    rs
}

#[test]
fn fact_matches_list_and_read_as_the_kernel_writes_them() {
    assert_kernel_forms(KERNEL, KERNEL_JSON);
    // Written forms read as the listed ones.
    let w = parse::parse(
        "table inet t { chain c { type filter hook input priority 0;
         pkttype broadcast drop
         ct expiration 90 accept
         ip dscp 46 accept } }",
    )
    .unwrap();
    let text = print::to_text(&w);
    for l in [
        "meta pkttype broadcast drop",
        "ct expiration 1m30s accept",
        "ip dscp ef accept",
    ] {
        assert!(text.contains(l), "{l} in {text}");
    }
}

#[test]
fn fact_matches_refuse_what_is_not_supported_with_a_place() {
    for (src, want) in [
        (
            "ct original saddr 198.18.1.2",
            "cannot determine ip protocol version",
        ),
        (
            "ct original bytes 10",
            "`ct original bytes` is not supported",
        ),
        ("fib daddr oif eth0", "`fib daddr oif` is not supported"),
        ("fib saddr . mark type local", "not supported"),
        ("ip dscp 64", "out of range"),
    ] {
        let text =
            format!("table inet t {{ chain c {{ type filter hook input priority 0;\n {src} }} }}");
        let e = parse::parse(&text).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("2:"), "{src}: {e}");
    }
    let e = parse::parse(
        "table ip t { chain c { type filter hook input priority 0; ct reply ip6 saddr ::1 } }",
    )
    .and_then(|rs| check::check(&rs).map(|()| rs))
    .unwrap_err()
    .to_string();
    assert!(e.contains("family ip"), "{e}");
}

const RULES: &str = "table inet t {
	chain c {
		type filter hook forward priority filter; policy drop;
		meta pkttype broadcast counter drop
		ip dscp ef counter accept
		ct direction reply ct original ip saddr 198.18.0.10 counter accept
		ct original proto-dst 22 ct reply ip saddr 198.18.1.7 counter accept
		ct expiration < 10s counter drop
		fib saddr . iif oif missing counter drop
		fib daddr type local counter accept
		counter accept
	}
}
";

fn tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> CtTuple {
    CtTuple {
        src: v4(src),
        dst: v4(dst),
        sport,
        dport,
    }
}

#[test]
fn each_fact_decides_its_match() {
    let rs = load_text(RULES, &ports(), 1).unwrap();
    let ip = tcp(
        v4([203, 0, 113, 5]),
        v4([198, 18, 0, 10]),
        22,
        40000,
        TcpFlags::ACK,
    );
    let base = Facts {
        ct_dir: Some(0),
        ct_tuples: Some([
            tuple([198, 18, 0, 10], [203, 0, 113, 5], 40000, 80),
            tuple([203, 0, 113, 5], [198, 18, 0, 10], 80, 40000),
        ]),
        ct_expiration: Some(300_000),
        fib_rpf: true,
        fib_daddr_type: 1,
        ..Facts::default()
    };
    let rule_of = |facts: Facts| {
        let mut c = ctx(&ip, ct_state::ESTABLISHED);
        c.facts = facts;
        let r = rs.eval(Hook::Forward, &mut c, 0, 1);
        let (_, _, i, _) = rs.rule_location(r.rule.unwrap().id).unwrap();
        (r.verdict, i)
    };
    assert_eq!(
        rule_of(base),
        (Decision::Accept, 7),
        "nothing special: the last rule"
    );
    assert_eq!(rule_of(Facts { pkttype: 1, ..base }), (Decision::Drop, 0));
    assert_eq!(rule_of(Facts { dscp: 46, ..base }), (Decision::Accept, 1));
    assert_eq!(
        rule_of(Facts {
            ct_dir: Some(1),
            ..base
        }),
        (Decision::Accept, 2)
    );
    let dnat = Facts {
        ct_tuples: Some([
            tuple([198, 18, 0, 10], [203, 0, 113, 5], 40000, 22),
            tuple([198, 18, 1, 7], [198, 18, 0, 10], 22, 40000),
        ]),
        ..base
    };
    assert_eq!(rule_of(dnat), (Decision::Accept, 3));
    assert_eq!(
        rule_of(Facts {
            ct_expiration: Some(9_999),
            ..base
        }),
        (Decision::Drop, 4)
    );
    assert_eq!(
        rule_of(Facts {
            fib_rpf: false,
            ..base
        }),
        (Decision::Drop, 5)
    );
    assert_eq!(
        rule_of(Facts {
            fib_daddr_type: 2,
            ..base
        }),
        (Decision::Accept, 6)
    );
    // No connection: `ct` matches fail (`ct expiration < 10s` too), as in the kernel.
    let none = Facts {
        ct_dir: None,
        ct_tuples: None,
        ct_expiration: None,
        ..base
    };
    assert_eq!(
        rule_of(Facts {
            ct_dir: None,
            ..dnat
        }),
        (Decision::Accept, 3)
    );
    assert_eq!(rule_of(none), (Decision::Accept, 7));
    // An IPv6 packet: `ip dscp` and `ct original ip saddr` do not apply.
    let six = tcp(
        Addr::from("2001:db8::1".parse::<std::net::IpAddr>().unwrap()),
        Addr::from("2001:db8::2".parse::<std::net::IpAddr>().unwrap()),
        22,
        40000,
        TcpFlags::ACK,
    );
    let mut c = ctx(&six, ct_state::ESTABLISHED);
    c.facts = Facts {
        dscp: 46,
        ct_dir: Some(1),
        ..base
    };
    let r = rs.eval(Hook::Forward, &mut c, 0, 1);
    assert_eq!(rs.rule_location(r.rule.unwrap().id).unwrap().2, 7);
}

#[test]
fn per_packet_facts_are_never_cached_flow_facts_are() {
    let rs = load_text(RULES, &ports(), 1).unwrap();
    assert!(!rs.first_cacheable(), "no fact is in the first-packet key");
    assert!(rs.needs().any());
    let flow_only = load_text(
        "table inet t { chain c { type filter hook forward priority 0;
         ct direction reply ct original ip saddr 198.18.0.10 accept
         fib daddr type local accept } }",
        &ports(),
        1,
    )
    .unwrap();
    assert!(!flow_only.first_cacheable());
    let u = udp(v4([198, 18, 0, 10]), v4([203, 0, 113, 5]), 40000, 53);
    let mut c = ctx(&u, ct_state::ESTABLISHED);
    assert!(
        flow_only.eval(Hook::Forward, &mut c, 0, 1).cacheable,
        "fixed per flow and direction"
    );
    for (rule, fact) in [
        ("ip dscp cs1 accept", "dscp"),
        ("meta pkttype host accept", "pkttype"),
        ("ct expiration > 1s accept", "expiration"),
    ] {
        let rs = load_text(
            &format!(
                "table inet t {{ chain c {{ type filter hook forward priority 0;\n{rule} }} }}"
            ),
            &ports(),
            1,
        )
        .unwrap();
        let mut c = ctx(&u, ct_state::ESTABLISHED);
        assert!(!rs.eval(Hook::Forward, &mut c, 0, 1).cacheable, "{fact}");
    }
    // A ruleset without facts needs none (the worker's one test per packet).
    let plain = load_text(
        "table inet t { chain c { type filter hook forward priority 0; tcp dport 22 accept } }",
        &ports(),
        1,
    )
    .unwrap();
    assert!(!plain.needs().any());
}
