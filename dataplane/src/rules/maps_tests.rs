//! Verdict maps and concatenations: parse, print, JSON, check and evaluation.

use super::ast::*;
use super::compile::{Decision, ct_state};
use super::tests::{ctx, ports, tcp, udp, v4};
use super::*;
use crate::wire::TcpFlags;

const MAPS: &str = r#"table inet f {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state vmap { established : accept, related : accept, invalid : drop }
		tcp dport vmap { 22 : jump ssh, 80 : accept, 1000-1999 : drop }
		ip saddr . tcp dport { 198.18.1.2 . 22, 198.18.2.0/24 . 8000-8080 } accept
		iifname . oifname { "eth1" . "eth0", "eth2" . "eth*" } accept
		ip saddr . meta mark != { 198.18.9.9 . 0x00000001 } counter packets 0 bytes 0
	}

	chain ssh {
		ip saddr vmap { 198.18.1.0/24 : accept, 198.18.7.0/24 : drop }
	}
}
"#;

fn strip(mut rs: Ruleset) -> Ruleset {
    for t in &mut rs.tables {
        for c in &mut t.chains {
            for r in &mut c.rules {
                r.handle = 0;
            }
        }
    }
    rs
}

#[test]
fn maps_and_concatenations_print_as_written_and_read_back() {
    let rs = parse::parse(MAPS).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), MAPS);
    let Stmt::Vmap(v, _) = &rs.tables[0].chains[0].rules[0].stmts[0] else {
        panic!("not a vmap")
    };
    assert_eq!(v.key, vec![Field::CtState]);
    assert_eq!(v.elements.anon().len(), 3);
    assert_eq!(v.elements.anon()[2], (vec![Value::Num(1)], Verdict::Drop));
    let Stmt::Lookup(l, _) = &rs.tables[0].chains[0].rules[2].stmts[0] else {
        panic!("not a concatenation")
    };
    assert_eq!(l.key, vec![Field::IpSaddr, Field::TcpDport]);
    assert_eq!(l.elements.anon()[1][1], Value::Range(8000, 8080));
    // JSON as nft -j writes it, and back.
    let j = json::to_json(&rs);
    let s = j.to_string();
    assert!(
        s.contains(r#""vmap":{"data":{"set":[["established",{"accept":null}]"#),
        "{s}"
    );
    assert!(s.contains(r#"{"concat":["198.18.1.2",22]}"#), "{s}");
    assert_eq!(strip(json::from_json(&j).unwrap()), strip(rs));
}

#[test]
fn vmap_and_concatenation_errors_carry_location() {
    let e = parse::parse("table ip t { chain c { tcp dport vmap { 22 : bogus } } }").unwrap_err();
    assert!(e.to_string().contains("1:"), "{e}");
    assert!(e.to_string().contains("expected a verdict"), "{e}");
    let e =
        parse::parse("table ip t { chain c { ip saddr . tcp dport { 198.18.1.2 } } }").unwrap_err();
    assert!(
        e.to_string().contains("next value of the concatenation"),
        "{e}"
    );
    let rs = parse::parse("table ip t { chain c { tcp dport vmap { 22 : jump nope } } }").unwrap();
    let e = check::check(&rs).unwrap_err();
    assert!(e.to_string().contains("undefined chain"), "{e}");
    // A jump loop through a verdict map is a loop.
    let rs = parse::parse(
        "table ip t { chain a { tcp dport vmap { 22 : jump b } }\n chain b { udp dport vmap { 53 : goto a } } }",
    )
    .unwrap();
    let e = check::check(&rs).unwrap_err();
    assert!(e.to_string().contains("jump loop"), "{e}");
    let rs = parse::parse("table ip6 t { chain c { ip saddr . tcp dport { 198.18.1.2 . 22 } } }")
        .unwrap();
    assert!(check::check(&rs).is_err());
    let e = load_text(
        "table ip t { chain c { ip saddr vmap { 198.18.0.1 : accept, 198.18.0.0/16 : drop } } }",
        &ports(),
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("conflicting intervals"), "{e}");
}

#[test]
fn verdict_maps_and_concatenations_decide_and_count() {
    let c = load_text(MAPS, &ports(), 1).unwrap();
    let me = v4([192, 0, 2, 1]);
    let a = v4([198, 18, 1, 2]);
    let b = v4([198, 18, 2, 7]);
    let far = v4([198, 18, 7, 7]);
    let run = |ip: &crate::wire::IpInfo, state: u8, iif: u16| {
        let mut x = ctx(ip, state);
        x.iif = Some(iif);
        c.eval(Hook::Input, &mut x, 0, 1).verdict
    };
    let syn = TcpFlags::SYN;
    // ct state vmap.
    assert_eq!(
        run(&tcp(far, me, 1, 9, syn), ct_state::ESTABLISHED, 1),
        Decision::Accept
    );
    assert_eq!(
        run(&tcp(far, me, 1, 9, syn), ct_state::INVALID, 1),
        Decision::Drop
    );
    // tcp dport vmap: jump ssh (then ip saddr vmap), accept, a range to drop, a miss.
    assert_eq!(
        run(&tcp(a, me, 1, 22, syn), ct_state::NEW, 0),
        Decision::Accept
    );
    assert_eq!(
        run(&tcp(far, me, 1, 22, syn), ct_state::NEW, 0),
        Decision::Drop
    );
    assert_eq!(
        run(&tcp(far, me, 1, 80, syn), ct_state::NEW, 0),
        Decision::Accept
    );
    assert_eq!(
        run(&tcp(a, me, 1, 1500, syn), ct_state::NEW, 0),
        Decision::Drop
    );
    // Concatenations: exact, prefix . range; the wrong port or source misses.
    assert_eq!(
        run(&tcp(b, me, 1, 8050, syn), ct_state::NEW, 0),
        Decision::Accept
    );
    assert_eq!(
        run(&tcp(b, me, 1, 8081, syn), ct_state::NEW, 0),
        Decision::Drop
    );
    assert_eq!(
        run(&tcp(far, me, 1, 8050, syn), ct_state::NEW, 0),
        Decision::Drop
    );
    // iifname . oifname (oif 0 = eth0): eth1 . eth0 and eth2 . eth*.
    assert_eq!(run(&udp(far, me, 1, 9), ct_state::NEW, 1), Decision::Accept);
    assert_eq!(run(&udp(far, me, 1, 9), ct_state::NEW, 2), Decision::Accept);
    assert_eq!(run(&udp(far, me, 1, 9), ct_state::NEW, 0), Decision::Drop);
    // `!=` on a concatenation whose field does not apply (a UDP packet, `meta mark` set
    // aside) fails, as a plain match does: the last rule (a counter) does not count it.
    let last = c.rule_id(0, 0, 4).unwrap() as usize;
    let before = c.counters()[last].0;
    run(&udp(far, me, 1, 9), ct_state::NEW, 0);
    assert_eq!(
        c.counters()[last].0,
        before + 1,
        "ip saddr applies: counted"
    );
    let v6 = crate::wire::Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    run(&udp(v6, v6, 1, 9), ct_state::NEW, 0);
    assert_eq!(
        c.counters()[last].0,
        before + 1,
        "ip saddr does not apply to IPv6"
    );
    // Counters: the ct state vmap rule counted its two hits, the dport vmap its four.
    let counters = c.counters();
    let id = |r| c.rule_id(0, 0, r).unwrap() as usize;
    assert_eq!(counters[id(0)].0, 2);
    assert_eq!(counters[id(1)].0, 4);
    // The linear oracle agrees with the classifier on every probe above.
    for (ip, iif) in [
        (tcp(a, me, 1, 22, syn), 0),
        (tcp(b, me, 1, 8050, syn), 0),
        (udp(far, me, 1, 9), 2),
    ] {
        let mut x = ctx(&ip, ct_state::NEW);
        x.iif = Some(iif);
        let mut y = x;
        assert_eq!(
            c.eval(Hook::Input, &mut x, 0, 1).verdict,
            c.eval_linear(Hook::Input, &mut y, 0, 1).verdict
        );
    }
}
