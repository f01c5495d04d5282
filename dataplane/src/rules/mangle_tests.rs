//! MSS clamping in the rule language: the kernel's listing and JSON (nft 1.0.6 output),
//! the checks, and the evaluation against each MSS option fact (the semantics a Linux
//! router showed for the same SYNs: only lowered, absent left alone, malformed ends the
//! rule).

use super::ast::*;
use super::compile::{Decision, Facts, ct_state, rt_mss};
use super::tests::{ctx, ports, tcp, udp, v4};
use super::*;
use crate::wire::tcpopt::Mss;
use crate::wire::{Family, TcpFlags};

/// `nft list ruleset` of a Linux 6.x router (nft 1.0.6) after loading these rules.
const KERNEL: &str = "table inet t {
	chain f {
		type filter hook forward priority filter; policy accept;
		tcp flags syn counter packets 0 bytes 0 tcp option maxseg size set 1400 counter packets 0 bytes 0
		tcp flags syn / syn,rst counter packets 0 bytes 0 tcp option maxseg size set rt mtu counter packets 0 bytes 0
	}
}
";

/// Its `nft -j list ruleset` statements (the same nft).
const KERNEL_JSON: &str = r#"{"nftables": [{"table": {"family": "inet", "name": "t", "handle": 1}}, {"chain": {"family": "inet", "table": "t", "name": "f", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "handle": 2, "expr": [{"match": {"op": "in", "left": {"payload": {"protocol": "tcp", "field": "flags"}}, "right": "syn"}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}, "value": 1400}}, {"counter": {"packets": 0, "bytes": 0}}]}},
{"rule": {"family": "inet", "table": "t", "chain": "f", "handle": 3, "expr": [{"match": {"op": "==", "left": {"&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["syn", "rst"]]}, "right": "syn"}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}, "value": {"rt": {"key": "mtu"}}}}, {"counter": {"packets": 0, "bytes": 0}}]}}]}"#;

pub(super) fn handles_zero(mut rs: Ruleset) -> Ruleset {
    for r in rs
        .tables
        .iter_mut()
        .flat_map(|t| &mut t.chains)
        .flat_map(|c| &mut c.rules)
    {
        r.handle = 0;
    }
    rs
}

#[test]
fn mss_clamping_lists_and_reads_as_the_kernel_writes_it() {
    let rs = parse::parse(KERNEL).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), KERNEL);
    let j: serde_json::Value = serde_json::from_str(KERNEL_JSON).unwrap();
    let from_kernel = json::from_json(&j).unwrap();
    assert_eq!(handles_zero(from_kernel), handles_zero(rs.clone()));
    let ours = json::to_json(&rs);
    assert_eq!(
        handles_zero(json::from_json(&ours).unwrap()),
        handles_zero(rs)
    );
    // The written forms people use read as the listed ones.
    let written = parse::parse(
        "table inet t { chain f { type filter hook forward priority 0;
         tcp flags & (syn|rst) == syn tcp option maxseg size set rt mtu
         tcp flags syn tcp option maxseg size set 1400 } }",
    )
    .unwrap();
    let text = print::to_text(&written);
    assert!(text.contains("tcp flags syn / syn,rst tcp option maxseg size set rt mtu\n"));
    assert!(text.contains("tcp flags syn tcp option maxseg size set 1400\n"));
}

#[test]
fn mss_clamping_errors_name_the_place() {
    let bad = |src: &str| -> String {
        match parse::parse(src).and_then(|rs| check::check(&rs).map(|()| rs)) {
            Ok(_) => panic!("accepted: {src}"),
            Err(e) => e.to_string(),
        }
    };
    let chain = |hook: &str, stmt: &str| {
        format!("table inet t {{ chain c {{ type filter hook {hook} priority 0;\n {stmt} }} }}")
    };
    let e = bad(&chain("input", "tcp option maxseg size set rt mtu"));
    assert!(
        e.contains("2:") && e.contains("rt mtu") && e.contains("input"),
        "{e}"
    );
    let e = bad(&chain("forward", "tcp option maxseg size set 70000"));
    assert!(e.contains("exceeds valid range"), "{e}");
    let e = bad(&chain("forward", "tcp option sack0 left 1 accept"));
    assert!(e.contains("not supported"), "{e}");
    let e = bad(&chain("forward", "tcp option window count set 1"));
    assert!(e.contains("tcp option window"), "{e}");
    // Where a route exists, `rt mtu` is fine; so is a number anywhere.
    for (h, s) in [
        ("forward", "tcp option maxseg size set rt mtu"),
        ("postrouting", "tcp option maxseg size set rt mtu"),
        ("prerouting", "tcp option maxseg size set 1400"),
    ] {
        check::check(&parse::parse(&chain(h, s)).unwrap()).unwrap();
    }
}

const RULES: &str = "table inet t {
	chain f {
		type filter hook forward priority filter; policy drop;
		tcp option maxseg size set 1400 counter
		tcp dport 80 tcp option maxseg size set rt mtu counter accept
	}
}
";

#[test]
fn the_option_is_only_lowered_and_a_malformed_one_ends_the_rule() {
    let rs = load_text(RULES, &ports(), 1).unwrap();
    assert!(rs.needs().any());
    let ip = tcp(
        v4([198, 18, 0, 10]),
        v4([203, 0, 113, 5]),
        40000,
        80,
        TcpFlags::SYN,
    );
    let run = |mss: Mss, rt: u16| {
        let mut c = ctx(&ip, ct_state::NEW);
        c.facts = Facts {
            mss,
            rt_mss: rt,
            ..Facts::default()
        };
        let before = rs.counters();
        let r = rs.eval(Hook::Forward, &mut c, 0, 1);
        let after = rs.counters();
        let moved: Vec<bool> = after.iter().zip(&before).map(|(a, b)| a.0 != b.0).collect();
        (r.verdict, r.mss, moved, r.stateful, r.cacheable)
    };
    let found = |value| Mss::Found { off: 56, value };
    // Larger: lowered by each statement in turn (1460 → 1400 → 1360).
    let (v, mss, moved, stateful, cacheable) = run(found(1460), 1360);
    assert_eq!(
        (v, mss, moved),
        (Decision::Accept, Some(1360), vec![true, true])
    );
    assert!(
        stateful && !cacheable,
        "never cached, first packet or later"
    );
    // `rt mtu` above the first statement's value does not raise it back.
    assert_eq!(run(found(1460), 1460).1, Some(1400));
    // Smaller or equal: left alone, the rules go on.
    assert_eq!(run(found(1200), 1360).1, None);
    assert_eq!(run(found(1400), 1460).1, None);
    // Absent: nothing written, the rules go on and count.
    let (v, mss, moved, ..) = run(Mss::Absent, 1360);
    assert_eq!((v, mss, moved), (Decision::Accept, None, vec![true, true]));
    // Malformed (or not TCP): each rule ends at the statement, the policy drops.
    let (v, mss, moved, ..) = run(Mss::Malformed, 1360);
    assert_eq!((v, mss, moved), (Decision::Drop, None, vec![false, false]));
    let u = udp(v4([198, 18, 0, 10]), v4([203, 0, 113, 5]), 40000, 80);
    let mut c = ctx(&u, ct_state::NEW);
    assert_eq!(rs.eval(Hook::Forward, &mut c, 0, 1).verdict, Decision::Drop);
}

#[test]
fn rt_mtu_is_the_path_mtu_less_the_headers_as_in_linux() {
    assert_eq!(rt_mss(Family::V4, 1500), 1460);
    assert_eq!(rt_mss(Family::V4, 1300), 1260);
    assert_eq!(rt_mss(Family::V6, 1500), 1440);
    assert_eq!(rt_mss(Family::V4, 40), 536);
    assert_eq!(rt_mss(Family::V6, 0), 536);
}
