//! `tcp option … exists|missing`, `tcp option maxseg size`, `tcp option window count`
//! in the rule language: the kernel's listing and JSON (nft 1.0.6), the refusals, the
//! evaluation against the option facts and what the matches do to the caches.

use super::ast::*;
use super::compile::{Decision, ct_state};
use super::facts_tests::{assert_kernel_forms, rule_exprs};
use super::mangle_tests::handles_zero;
use super::tests::{ctx, ports, tcp, udp, v4};
use super::*;
use crate::wire::tcpopt::Opts;

/// `nft list ruleset` of `tcpopt.kernel.json`'s ruleset (nft 1.0.6, Linux 6.x).
const KERNEL: &str = include_str!("testdata/tcpopt.kernel.nft");
const KERNEL_JSON: &str = include_str!("testdata/tcpopt.kernel.json");

#[test]
fn option_matches_list_and_read_as_the_kernel_writes_them() {
    let rs = assert_kernel_forms(KERNEL, KERNEL_JSON);
    let ours = rule_exprs(&json::to_json(&rs));
    assert_eq!(
        ours[0][0],
        serde_json::json!({"match": {"op": "==", "left": {"tcp option": {"name": "maxseg"}}, "right": true}})
    );
    // The same field read back from our own JSON.
    assert_eq!(
        handles_zero(json::from_json(&json::to_json(&rs)).unwrap()),
        handles_zero(rs)
    );
}

#[test]
fn option_matches_refuse_what_is_not_supported_with_a_place() {
    for (src, want) in [
        (
            "tcp option sack0 left 1",
            "`tcp option sack0 left` is not supported",
        ),
        (
            "tcp option maxseg kind 2",
            "`tcp option maxseg kind` is not supported",
        ),
        (
            "tcp option mptcp exists",
            "`tcp option mptcp` is not supported",
        ),
        ("tcp option window count 256", "out of range"),
        ("tcp option maxseg size 65536", "out of range"),
        ("tcp option maxseg maybe", "unknown value"),
        (
            "tcp option window count set 3",
            "setting `tcp option window count`",
        ),
    ] {
        let text =
            format!("table inet t {{ chain c {{ type filter hook input priority 0;\n {src} }} }}");
        let e = parse::parse(&text)
            .and_then(|rs| check::check(&rs))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want) && e.contains("2:"), "{src}: {e}");
    }
    let bad = serde_json::json!({"nftables": [
        {"table": {"family": "inet", "name": "t"}},
        {"chain": {"family": "inet", "table": "t", "name": "c"}},
        {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [
            {"match": {"op": "==", "left": {"tcp option": {"name": "sack0", "field": "left"}}, "right": 1}}]}}]});
    let e = json::from_json(&bad).unwrap_err().to_string();
    assert!(
        e.contains("`tcp option sack0 left` is not supported"),
        "{e}"
    );
}

const RULES: &str = "table inet t {
	chain c {
		type filter hook forward priority filter; policy accept;
		tcp option maxseg missing counter
		tcp option maxseg size 1000-1460 counter
		tcp option window count > 7 counter
		tcp option sack-perm exists counter
		tcp option timestamp missing counter
		tcp option maxseg size != 1460 counter
	}
}
";

#[test]
fn each_option_fact_decides_its_match() {
    let rs = load_text(RULES, &ports(), 1).unwrap();
    assert!(
        !rs.first_cacheable(),
        "the options are not in the first-packet key"
    );
    let seg = tcp(v4([198, 18, 0, 10]), v4([203, 0, 113, 5]), 40000, 80, 0x02);
    let count = |o: Opts, ip: &crate::wire::IpInfo| -> Vec<u64> {
        let before: Vec<u64> = rs.counters().iter().map(|c| c.0).collect();
        let mut c = ctx(ip, ct_state::NEW);
        c.facts.tcp_opts = o;
        let r = rs.eval(Hook::Forward, &mut c, 0, 1);
        assert_eq!(r.verdict, Decision::Accept);
        // A verdict that read an option presence is not cached (a UDP datagram's too:
        // a presence applies to every packet, as in the kernel).
        assert!(!r.cacheable, "{o:?}");
        let now: Vec<u64> = rs.counters().iter().map(|c| c.0).collect();
        now.iter().zip(&before).map(|(a, b)| a - b).collect()
    };
    let all = Opts {
        tcp: true,
        present: 0b1111,
        mss: Some(1460),
        wscale: Some(8),
    };
    assert_eq!(count(all, &seg), [0, 1, 1, 1, 0, 0]);
    // No options: the field reads fail, `!=` included (the kernel breaks the rule).
    let none = Opts {
        tcp: true,
        ..Opts::default()
    };
    assert_eq!(count(none, &seg), [1, 0, 0, 0, 1, 0]);
    // An option that exists but is too short to hold its field.
    let short = Opts {
        tcp: true,
        present: 0b0011,
        mss: None,
        wscale: None,
    };
    assert_eq!(count(short, &seg), [0, 0, 0, 0, 1, 0]);
    let small = Opts {
        mss: Some(536),
        ..all
    };
    assert_eq!(count(small, &seg), [0, 0, 1, 1, 0, 1]);
    // Not TCP: a presence reads 0, so the `missing` matches match (as in the kernel,
    // checked with nft 1.0.6: `udp dport 9999 tcp option maxseg missing` counts a UDP
    // datagram), the field reads and `exists` do not.
    let u = udp(v4([198, 18, 0, 10]), v4([203, 0, 113, 5]), 40000, 53);
    assert_eq!(count(Opts::default(), &u), [1, 0, 0, 0, 1, 0]);
    assert!(rs.needs().has(compile::Needs::TCP_OPTS));
}

/// nft 1.0.6's listing of `tcp option window . tcp option sack-perm { exists . missing }`
/// and `tcp option window . tcp dport vmap { missing . 22 : accept }` (a presence inside a
/// concatenation is its raw 1 or 0, in text and JSON).
#[test]
fn a_presence_in_a_concatenation_lists_as_nft_lists_it() {
    let listed = "table inet q3 {
\tchain f {
\t\ttype filter hook forward priority filter; policy accept;
\t\ttcp option window . tcp option sack-perm { 1 . 0 } counter packets 0 bytes 0
\t\ttcp option window . tcp dport vmap { 0 . 22 : accept }
\t}
}
";
    let written = listed
        .replace("{ 1 . 0 }", "{ exists . missing }")
        .replace("{ 0 . 22 :", "{ missing . 22 :");
    let rs = parse::parse(&written).unwrap();
    assert_eq!(
        rs,
        parse::parse(listed).unwrap(),
        "both spellings read alike"
    );
    assert_eq!(print::to_text(&rs), listed);
    let exprs = rule_exprs(&json::to_json(&rs));
    assert_eq!(
        exprs[0][0]["match"]["right"],
        serde_json::json!({"set": [{"concat": [1, 0]}]})
    );
    assert_eq!(
        exprs[1][0]["vmap"]["data"],
        serde_json::json!({"set": [[{"concat": [0, 22]}, {"accept": null}]]})
    );
    assert_eq!(json::from_json(&json::to_json(&rs)).unwrap(), rs);
    // Alone, a presence is still `exists`/`missing` (and JSON `true`/`false`).
    let one = parse::parse(
        "table inet t { chain f { type filter hook forward priority filter; tcp option window exists } }",
    )
    .unwrap();
    assert!(print::to_text(&one).contains("tcp option window exists\n"));
}
