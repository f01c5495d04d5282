//! Parser, printer, JSON, checker and evaluation tests.

use super::ast::*;
use super::compile::{Decision, PacketCtx, PortsByName, ct_state};
use super::*;
use crate::nat::{NatKind, NatRange};
use crate::wire::{Addr, Family, Fragment, IpInfo, L4Info, TcpFlags, TcpInfo, proto};

pub(crate) const ISSUE: &str = include_str!("testdata/issue.nft");
const KERNEL_TEXT: &str = include_str!("testdata/issue.kernel.nft");
const KERNEL_JSON: &str = include_str!("testdata/issue.json");

/// The ruleset of issue 4, verbatim (it holds a `ct helper` line the appliance refuses).
const ISSUE4: &str = "table inet firewall {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        iif lo accept
        tcp dport 22 ct state new accept
        tcp dport { 80, 443 } ct state new accept
        ip protocol icmp accept
        ip6 nexthdr icmpv6 accept
    }
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        ip saddr 192.168.1.0/24 ip daddr 10.0.0.0/8 accept
        ct state new ct count over 100 drop
        tcp dport 21 ct helper set \"ftp\"
    }
    chain output { type filter hook output priority 0; policy accept; }
}
table ip nat {
    chain prerouting {
        type nat hook prerouting priority -100;
        tcp dport 8080 dnat to 192.168.1.10:80
    }
    chain postrouting {
        type nat hook postrouting priority 100;
        oifname \"eth0\" masquerade
    }
}
";

pub(crate) fn ports() -> PortsByName {
    [
        ("eth0".to_owned(), 0u16),
        ("eth1".to_owned(), 1),
        ("eth2".to_owned(), 2),
    ]
    .into_iter()
    .collect()
}

pub(crate) fn v4(a: [u8; 4]) -> Addr {
    Addr::from_v4(a)
}

pub(crate) fn ip(src: Addr, dst: Addr, proto_: u8, l4: Option<L4Info>) -> IpInfo {
    IpInfo {
        family: if src.to_v4().is_some() {
            Family::V4
        } else {
            Family::V6
        },
        src,
        dst,
        proto: proto_,
        ttl: 64,
        l3_off: 14,
        l4_off: 34,
        ip_len: 60,
        frag: Fragment::None,
        l4,
    }
}

pub(crate) fn tcp(src: Addr, dst: Addr, sport: u16, dport: u16, flags: u8) -> IpInfo {
    ip(
        src,
        dst,
        proto::TCP,
        Some(L4Info::Tcp(TcpInfo {
            sport,
            dport,
            seq: 1,
            ack: 0,
            flags: TcpFlags(flags),
            window: 1000,
            payload_len: 0,
            wscale: None,
            sack_perm: false,
            mss: None,
        })),
    )
}

pub(crate) fn udp(src: Addr, dst: Addr, sport: u16, dport: u16) -> IpInfo {
    ip(src, dst, proto::UDP, Some(L4Info::Udp { sport, dport }))
}

pub(crate) fn ctx(ip: &IpInfo, state: u8) -> PacketCtx<'_> {
    PacketCtx {
        ip,
        iif: Some(1),
        oif: Some(0),
        ct_state: state,
        ct_status: 0,
        ct_mark: 0,
        mark: 0,
        len: 60,
        first_packet: state == ct_state::NEW,
        facts: Default::default(),
    }
}

fn strip_handles(mut rs: Ruleset) -> Ruleset {
    for t in &mut rs.tables {
        for c in &mut t.chains {
            for r in &mut c.rules {
                r.handle = 0;
            }
        }
    }
    rs
}

fn err(src: &str) -> Error {
    match parse::parse(src).and_then(|rs| check::check(&rs).map(|()| rs)) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e,
    }
}

// ----- parser

#[test]
fn issue_ruleset_refuses_an_undefined_ct_helper_with_location() {
    // As the kernel: `ct helper set` names a `ct helper` object of the table, and the
    // issue's ruleset declares none (the error points at the name, as nft's does).
    let e = err(ISSUE4);
    assert_eq!((e.line, e.col), (18, 36), "{e}");
    assert!(e.msg.contains("no ct helper object"), "{e}");
    assert!(e.to_string().contains("ct helper"), "{e}");
}

#[test]
fn issue_ruleset_without_helper_parses_and_means_the_forms() {
    let src = ISSUE4.replace("        tcp dport 21 ct helper set \"ftp\"\n", "");
    let rs = parse::parse(&src).unwrap();
    assert_eq!(rs.tables.len(), 2);
    let input = &rs.tables[0].chains[0];
    assert_eq!(
        input.base,
        Some(BaseChain {
            ty: ChainType::Filter,
            hook: Hook::Input,
            priority: 0,
            policy: Policy::Drop
        })
    );
    assert_eq!(input.rules.len(), 7);
    // `ct state established,related` is one flag value with two bits.
    assert_eq!(
        input.rules[0].stmts[0],
        Stmt::Match(
            Match {
                field: Field::CtState,
                mask: None,
                op: Op::Implicit,
                rhs: Rhs::Values(vec![Value::Num(6)])
            },
            Pos::default()
        )
    );
    let nat = &rs.tables[1];
    assert_eq!(nat.chains[0].base.unwrap().priority, -100);
    let Stmt::Nat(n, _) = &nat.chains[0].rules[0].stmts[1] else {
        panic!()
    };
    assert_eq!(n.kind, NatKind::Dnat);
    assert_eq!(n.addr, Some((v4([192, 168, 1, 10]), v4([192, 168, 1, 10]))));
    assert_eq!(n.ports, Some((80, 80)));
    compile(&rs, &ports(), 2).unwrap();
}

#[test]
fn fixture_and_kernel_listing_round_trip() {
    for src in [ISSUE, KERNEL_TEXT] {
        let a = parse::parse(src).unwrap();
        let text = print::to_text(&a);
        let b = parse::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(a, b, "{text}");
        assert_eq!(print::to_text(&b), text);
    }
}

#[test]
fn printer_matches_kernel_listing() {
    // Our print of the kernel's own listing is the kernel's listing (modulo the table
    // handles and counters, which both are zero here).
    let rs = parse::parse(KERNEL_TEXT).unwrap();
    let ours = print::to_text(&rs);
    for (a, b) in ours.lines().zip(KERNEL_TEXT.lines()) {
        assert_eq!(a, b);
    }
    assert_eq!(ours.lines().count(), KERNEL_TEXT.lines().count());
}

#[test]
fn kernel_json_reads_to_the_same_ast_as_its_text() {
    let j: serde_json::Value = serde_json::from_str(KERNEL_JSON).unwrap();
    let from_json = json::from_json(&j).unwrap();
    let from_text = parse::parse(KERNEL_TEXT).unwrap();
    assert_eq!(strip_handles(from_json.clone()), strip_handles(from_text));
    // AST → JSON → AST.
    let again = json::from_json(&json::to_json(&from_json)).unwrap();
    assert_eq!(again, from_json);
    // The JSON we write for the kernel's ruleset has the kernel's rule objects.
    let ours = json::to_json(&from_json);
    let theirs_rules: Vec<_> = j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("rule").is_some())
        .collect();
    let ours_rules: Vec<_> = ours["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o.get("rule").is_some())
        .collect();
    assert_eq!(ours_rules.len(), theirs_rules.len());
    for (a, b) in ours_rules.iter().zip(&theirs_rules) {
        assert_eq!(a["rule"]["expr"], b["rule"]["expr"]);
    }
}

#[test]
fn parse_errors_carry_line_and_column() {
    let cases: &[(&str, (u32, u32), &str)] = &[
        (
            "table ip t {\n chain c {\n  tcp dport 99999 accept\n }\n}\n",
            (3, 13),
            "99999",
        ),
        (
            "table ip t {\n chain c {\n  ip saddr 10.0.0.1/33 drop\n }\n}\n",
            (3, 12),
            "10.0.0.1/33",
        ),
        (
            "table ip t {\n chain c {\n  foo bar\n }\n}\n",
            (3, 3),
            "foo",
        ),
        (
            "table ip t {\n chain c {\n  queue num 1\n }\n}\n",
            (3, 3),
            "queue",
        ),
        (
            "table ip t {\n chain c {\n  ip ttl 3 drop\n }\n}\n",
            (3, 6),
            "ttl",
        ),
        (
            "table ip t {\n chain c {\n  limit rate 1 mbytes/second\n }\n}\n",
            (3, 16),
            "mbytes/second",
        ),
        (
            "table ip t {\n chain c {\n  type filter hook ingress priority 0;\n }\n}\n",
            (3, 20),
            "ingress",
        ),
        (
            "table ip t {\n chain c {\n  iifname \"eth0 accept\n }\n}\n",
            (3, 11),
            "\"",
        ),
        ("table bridge t { }\n", (1, 7), "bridge"),
        (
            "table ip t {\n chain c {\n  tcp dport 1,2 accept\n }\n}\n",
            (3, 14),
            ",",
        ),
    ];
    for (src, (line, col), tok) in cases {
        let e = err(src);
        assert_eq!((e.line, e.col), (*line, *col), "{src}: {e}");
        assert_eq!(e.token, *tok, "{src}: {e}");
    }
}

#[test]
fn checker_errors_carry_location() {
    let cases: &[(&str, (u32, u32), &str)] = &[
        (
            "table ip t {\n chain c {\n  jump nowhere\n }\n}\n",
            (3, 3),
            "undefined chain",
        ),
        (
            "table ip t {\n chain c {\n  ip saddr @nope drop\n }\n}\n",
            (3, 3),
            "undefined set",
        ),
        (
            "table ip t {\n chain a {\n  jump b\n }\n chain b {\n  jump a\n }\n}\n",
            (2, 2),
            "loop",
        ),
        (
            "table ip t {\n chain c {\n  type filter hook postrouting priority 0;\n  masquerade\n }\n}\n",
            (4, 3),
            "not of type nat",
        ),
        (
            "table ip t {\n chain c {\n  type nat hook postrouting priority 100;\n  tcp dport 1 dnat to 10.0.0.1\n }\n}\n",
            (4, 15),
            "not valid in a postrouting",
        ),
        (
            "table ip t {\n chain c {\n  ip6 saddr ::1 drop\n }\n}\n",
            (3, 3),
            "family",
        ),
        (
            "table ip t {\n chain c {\n  type nat hook postrouting priority 100;\n  snat to 1.2.3.4:80\n }\n}\n",
            (4, 3),
            "transport protocol",
        ),
        (
            "table ip t {\n set s { type ipv4_addr; elements = { 10.0.0.0/8 } }\n}\n",
            (2, 2),
            "interval",
        ),
        (
            "table ip t {\n set s { type inet_service; elements = { 22 } }\n chain c {\n  ip saddr @s drop\n }\n}\n",
            (4, 3),
            "does not fit",
        ),
    ];
    for (src, (line, col), msg) in cases {
        let e = err(src);
        assert_eq!((e.line, e.col), (*line, *col), "{src}: {e}");
        assert!(e.msg.contains(msg), "{src}: {e}");
    }
}

#[test]
fn deep_and_wide_jump_graphs_are_checked_in_linear_time() {
    // 40 chains, each jumping to every later one: exponentially many paths.
    let mut src = String::from("table ip t {\n");
    for i in 0..40 {
        src += &format!(" chain c{i} {{\n");
        for j in i + 1..40 {
            src += &format!("  tcp dport {j} jump c{j}\n");
        }
        src += " }\n";
    }
    src += "}\n";
    let e = err(&src);
    assert!(e.msg.contains("deeper than 16"), "{e}");
    // 16 levels are fine, 17 are not.
    let chain = |n: usize| {
        let mut s = String::from("table ip t {\n");
        for i in 0..n {
            let body = if i + 1 < n {
                format!("jump c{}", i + 1)
            } else {
                "accept".into()
            };
            s += &format!(" chain c{i} {{\n  {body}\n }}\n");
        }
        s + "}\n"
    };
    check::check(&parse::parse(&chain(16)).unwrap()).unwrap();
    assert!(err(&chain(17)).msg.contains("deeper"));
}

#[test]
fn nat_in_regular_chain_reached_from_filter_is_refused() {
    let src = "table ip t {\n chain f {\n  type filter hook postrouting priority 0;\n  jump n\n }\n chain n {\n  masquerade\n }\n}\n";
    let e = err(src);
    assert_eq!((e.line, e.col), (7, 3));
}

#[test]
fn unknown_iif_is_a_compile_error_but_iifname_is_not() {
    let rs = parse::parse("table ip t {\n chain c {\n  type filter hook input priority 0;\n  iif wan0 accept\n }\n}\n").unwrap();
    let e = compile(&rs, &ports(), 1).unwrap_err();
    assert_eq!((e.line, e.col, e.token.as_str()), (4, 3, "wan0"));
    let rs = parse::parse("table ip t {\n chain c {\n  type filter hook input priority 0;\n  iifname wan0 accept\n }\n}\n").unwrap();
    compile(&rs, &ports(), 1).unwrap();
}

// ----- evaluation

fn issue_compiled() -> CompiledRuleset {
    load_text(ISSUE, &ports(), 2).unwrap()
}

fn handle_of(c: &CompiledRuleset, table: usize, chain: usize, rule: usize) -> u64 {
    let id = c.rule_id(table, chain, rule).unwrap();
    c.rule_location(id).unwrap().3
}

#[test]
fn input_chain_verdicts() {
    let c = issue_compiled();
    let me = v4([192, 0, 2, 1]);
    let peer = v4([198, 18, 0, 5]);
    let cases: Vec<(IpInfo, u8, Decision, Option<usize>)> = vec![
        (
            tcp(peer, me, 4000, 9999, TcpFlags::ACK),
            ct_state::ESTABLISHED,
            Decision::Accept,
            Some(0),
        ),
        (
            tcp(peer, me, 4000, 9999, TcpFlags::ACK),
            ct_state::INVALID,
            Decision::Drop,
            Some(1),
        ),
        (
            tcp(v4([198, 51, 100, 9]), me, 4000, 22, TcpFlags::SYN),
            ct_state::NEW,
            Decision::Drop,
            Some(3),
        ),
        (
            tcp(peer, me, 4000, 22, TcpFlags::SYN),
            ct_state::NEW,
            Decision::Accept,
            Some(4),
        ),
        (
            tcp(peer, me, 4000, 443, TcpFlags::SYN),
            ct_state::NEW,
            Decision::Accept,
            Some(5),
        ),
        (
            tcp(peer, me, 4000, 1500, TcpFlags::SYN),
            ct_state::NEW,
            Decision::Reject(Reject::TcpReset),
            Some(6),
        ),
        // syn|ack does not match `syn / syn,ack`; it takes `tcp flags syn jump sub`, sub
        // returns for 192.0.2.1, and the policy drops.
        (
            tcp(peer, me, 4000, 1500, TcpFlags::SYN | TcpFlags::ACK),
            ct_state::NEW,
            Decision::Drop,
            None,
        ),
        (udp(peer, me, 4000, 53), ct_state::NEW, Decision::Drop, None),
        (
            udp(peer, me, 4000, 54),
            ct_state::NEW,
            Decision::Reject(Reject::Icmp(3)),
            Some(10),
        ),
        (
            tcp(peer, me, 4000, 8080, TcpFlags::SYN),
            ct_state::NEW,
            Decision::Drop,
            None,
        ),
    ];
    for (i, (pkt, st, want, rule)) in cases.iter().enumerate() {
        let mut x = ctx(pkt, *st);
        let r = c.eval(Hook::Input, &mut x, 0, 1);
        let mut y = ctx(pkt, *st);
        let o = c.eval_linear(Hook::Input, &mut y, 0, 1);
        assert_eq!(r.verdict, *want, "case {i}");
        assert_eq!(o.verdict, *want, "oracle case {i}");
        assert_eq!(
            r.rule.map(|r| r.handle),
            rule.map(|ri| handle_of(&c, 0, 0, ri)),
            "case {i}"
        );
    }
}

#[test]
fn jump_goto_return_and_v6() {
    let c = issue_compiled();
    // v6 SYN from 2001:db8::/32: `tcp flags syn jump sub`; sub: not 192.0.2.1 → goto sub2 →
    // drop.
    let a = Addr::from_v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let b = Addr::from_v6([0x20, 0x01, 0x0d, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let p = tcp(a, b, 1, 9, TcpFlags::SYN);
    let r = c.eval(Hook::Input, &mut ctx(&p, ct_state::NEW), 0, 1);
    assert_eq!(r.verdict, Decision::Drop);
    assert_eq!(r.rule.map(|r| r.handle), Some(handle_of(&c, 0, 2, 0)));
    // From elsewhere: sub2 falls through; goto does not come back to sub nor input's
    // `jump` site... it returns to input after the jump, where the mark rule runs, then
    // the policy drops.
    let p = tcp(b, a, 1, 9, TcpFlags::SYN);
    let mut x = ctx(&p, ct_state::NEW);
    let r = c.eval(Hook::Input, &mut x, 0, 1);
    assert_eq!(r.verdict, Decision::Drop);
    assert_eq!(r.rule, None);
    assert_eq!(
        (r.meta_mark, r.ct_mark, x.mark),
        (Some(0x10), Some(2), 0x10)
    );
    assert!(r.log.is_some());
    assert!(!r.cacheable);
    // ICMPv6 accepted by `ip6 nexthdr icmpv6`.
    let p = ip(
        a,
        b,
        proto::ICMPV6,
        Some(L4Info::IcmpEcho {
            request: true,
            id: 1,
            seq: 1,
        }),
    );
    assert_eq!(
        c.eval(Hook::Input, &mut ctx(&p, ct_state::NEW), 0, 1)
            .verdict,
        Decision::Accept
    );
}

#[test]
fn nat_chains_only_for_first_packet() {
    let c = issue_compiled();
    let client = v4([10, 0, 0, 7]);
    let server = v4([203, 0, 113, 80]);
    let p = tcp(client, server, 5000, 8080, TcpFlags::SYN);
    let mut x = ctx(&p, ct_state::NEW);
    let r = c.eval(Hook::Prerouting, &mut x, 0, 1);
    assert_eq!(r.verdict, Decision::Accept);
    let nat = r.nat.unwrap();
    assert_eq!(nat.kind, NatKind::Dnat);
    assert_eq!(
        nat.range,
        NatRange {
            addr: Some((v4([192, 168, 1, 10]), v4([192, 168, 1, 10]))),
            ports: Some((80, 80))
        }
    );
    // Not the first packet: no NAT decision.
    let mut x = ctx(&p, ct_state::ESTABLISHED);
    assert!(c.eval(Hook::Prerouting, &mut x, 0, 1).nat.is_none());
    // Postrouting: masquerade out of eth0 (port 0), first rule wins.
    let mut x = ctx(&p, ct_state::NEW);
    let r = c.eval(Hook::Postrouting, &mut x, 0, 1);
    assert_eq!(r.nat.unwrap().kind, NatKind::Masquerade);
    assert_eq!(
        r.nat.unwrap().range,
        NatRange {
            addr: None,
            ports: None
        }
    );
    // Out of eth1: the snat rule for 10.0.0.0/8 tcp.
    let mut x = ctx(&p, ct_state::NEW);
    x.oif = Some(1);
    let r = c.eval(Hook::Postrouting, &mut x, 0, 1);
    let n = r.nat.unwrap();
    assert_eq!(n.kind, NatKind::Snat);
    assert_eq!(
        n.range.addr,
        Some((v4([203, 0, 113, 1]), v4([203, 0, 113, 5])))
    );
    assert_eq!(n.range.ports, Some((1024, 65535)));
    // UDP from 10.1/16 out of eth1: masquerade to :2000-3000 random.
    let u = udp(v4([10, 1, 2, 3]), server, 5, 6);
    let mut x = ctx(&u, ct_state::NEW);
    x.oif = Some(1);
    let n = c.eval(Hook::Postrouting, &mut x, 0, 1).nat.unwrap();
    assert_eq!(
        (n.kind, n.range.ports, n.flags.random),
        (NatKind::Masquerade, Some((2000, 3000)), true)
    );
    // Redirect.
    let u = udp(client, server, 5, 53);
    let n = c
        .eval(Hook::Prerouting, &mut ctx(&u, ct_state::NEW), 0, 1)
        .nat
        .unwrap();
    assert_eq!(
        (n.kind, n.range.ports),
        (NatKind::Redirect, Some((5353, 5353)))
    );
}

#[test]
fn notrack_in_ip6_raw_chain_only_for_v6() {
    let c = issue_compiled();
    let a = Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let p = udp(a, a, 1, 123);
    assert!(
        c.eval(Hook::Prerouting, &mut ctx(&p, ct_state::NEW), 0, 1)
            .notrack
    );
    let p = udp(v4([1, 2, 3, 4]), v4([1, 2, 3, 5]), 1, 123);
    assert!(
        !c.eval(Hook::Prerouting, &mut ctx(&p, ct_state::NEW), 0, 1)
            .notrack
    );
}

#[test]
fn ct_count_over_holds_and_releases_tokens() {
    let src = "table ip t {\n chain f {\n  type filter hook forward priority 0; policy accept;\n  ct state new ct count over 2 drop\n }\n}\n";
    let c = load_text(src, &ports(), 1).unwrap();
    let p = tcp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 2, TcpFlags::SYN);
    let mut held = Vec::new();
    for _ in 0..2 {
        let r = c.eval(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1);
        assert_eq!(r.verdict, Decision::Accept);
        assert_eq!(r.ct_count.len(), 1);
        held.push(r);
    }
    // Third connection: count 3 > 2 → drop, and the dropped one holds no slot.
    let r = c.eval(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1);
    assert_eq!(r.verdict, Decision::Drop);
    assert!(r.ct_count.is_empty());
    // Still full.
    assert_eq!(
        c.eval(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1)
            .verdict,
        Decision::Drop
    );
    // One connection dies: its token is dropped, a new one fits again.
    held.pop();
    assert_eq!(
        c.eval(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1)
            .verdict,
        Decision::Accept
    );
}

#[test]
fn limit_rate_is_a_token_bucket_per_worker_share() {
    // 10/second over 2 workers: each worker 5/s, burst 5/2 → 2 packets.
    let src = "table ip t {\n chain i {\n  type filter hook input priority 0; policy drop;\n  limit rate 10/second accept\n }\n}\n";
    let c = load_text(src, &ports(), 2).unwrap();
    let p = udp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 2);
    let verdict = |w: usize, now: u64| {
        c.eval(Hook::Input, &mut ctx(&p, ct_state::NEW), w, now)
            .verdict
    };
    let t0 = 1_000_000_000;
    assert_eq!(verdict(0, t0), Decision::Accept);
    assert_eq!(verdict(0, t0), Decision::Accept);
    assert_eq!(verdict(0, t0), Decision::Drop);
    // Worker 1 has its own bucket.
    assert_eq!(verdict(1, t0), Decision::Accept);
    // 200 ms later worker 0 earned one packet (5/s).
    assert_eq!(verdict(0, t0 + 200_000_000), Decision::Accept);
    assert_eq!(verdict(0, t0 + 200_000_000), Decision::Drop);
}

#[test]
fn credit_counts_what_the_evaluation_counted() {
    // Path: `counter` (non-terminal), the jump rule, the deciding rule in the callee; the
    // rule that does not match is not listed.
    let src = "table ip t {\n chain f {\n  type filter hook forward priority 0; policy drop;\n  counter\n  udp dport 9 drop\n  ct state established jump e\n }\n chain e {\n  ip saddr 1.1.1.1 accept\n }\n}\n";
    let c = load_text(src, &ports(), 2).unwrap();
    let p = udp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 53);
    let r = c.eval(Hook::Forward, &mut ctx(&p, ct_state::ESTABLISHED), 1, 1);
    assert_eq!(r.verdict, Decision::Accept);
    assert!(r.cacheable && !r.counted_overflow);
    let ids: Vec<u32> = [(0, 0, 0), (0, 0, 2), (0, 1, 0)]
        .iter()
        .map(|&(t, ch, i)| c.rule_id(t, ch, i).unwrap())
        .collect();
    assert_eq!(r.counted.as_slice(), ids.as_slice());
    assert_eq!(r.rule.map(|x| x.id), Some(ids[2]));
    let len = u64::from(ctx(&p, ct_state::ESTABLISHED).len);
    c.credit(1, &r.counted, ctx(&p, ct_state::ESTABLISHED).len);
    c.credit(1, &[u32::MAX], 100); // out of range: ignored
    let counts = c.counters();
    for &id in &ids {
        assert_eq!(counts[id as usize], (2, 2 * len));
    }
    let skipped = c.rule_id(0, 0, 1).unwrap() as usize;
    assert_eq!(counts[skipped], (0, 0));
}

#[test]
fn counters_per_rule_sum_over_workers() {
    let c = issue_compiled();
    let p = tcp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 22, TcpFlags::SYN);
    for w in 0..2 {
        for _ in 0..3 {
            c.eval(Hook::Input, &mut ctx(&p, ct_state::NEW), w, 1);
        }
    }
    let id = c.rule_id(0, 0, 4).unwrap() as usize;
    assert_eq!(c.counters()[id], (6, 360));
    let view = crate::control::view::ruleset_view(&c);
    let rc = view
        .counters
        .iter()
        .find(|r| r.handle == handle_of(&c, 0, 0, 4))
        .unwrap();
    assert_eq!((rc.chain.as_str(), rc.packets), ("input", 6));
    // The text view fills in `counter packets N bytes M`: the blocked-set rule has one.
    let blocked = tcp(
        v4([198, 51, 100, 1]),
        v4([2, 2, 2, 2]),
        1,
        22,
        TcpFlags::SYN,
    );
    c.eval(Hook::Input, &mut ctx(&blocked, ct_state::NEW), 1, 1);
    let view = crate::control::view::ruleset_view(&c);
    assert!(
        view.text
            .contains("ip saddr @blocked counter packets 1 bytes 60 drop"),
        "{}",
        view.text
    );
    assert_eq!(parse::parse(&view.text).map(|_| ()), Ok(()));
    assert!(json::from_json(&view.json).is_ok());
}

#[test]
fn base_chains_run_by_priority_and_drop_stops() {
    let src = "table ip a {\n chain late {\n  type filter hook input priority 10; policy accept;\n  meta mark set 2\n }\n chain early {\n  type filter hook input priority -10; policy accept;\n  meta mark set 1\n  tcp dport 1 drop\n }\n}\n";
    let c = load_text(src, &ports(), 1).unwrap();
    let p = tcp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 2, 0);
    let mut x = ctx(&p, ct_state::NEW);
    let r = c.eval(Hook::Input, &mut x, 0, 1);
    assert_eq!((r.verdict, x.mark), (Decision::Accept, 2));
    let p = tcp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 1, 0);
    let mut x = ctx(&p, ct_state::NEW);
    let r = c.eval(Hook::Input, &mut x, 0, 1);
    assert_eq!((r.verdict, x.mark), (Decision::Drop, 1));
}

#[test]
fn classifier_narrows_a_large_chain_to_few_candidates() {
    let mut src = String::from(
        "table ip t {\n chain f {\n  type filter hook forward priority 0; policy drop;\n  ct state established accept\n",
    );
    for i in 0..2000u32 {
        src += &format!(
            "  ip saddr 10.{}.{}.0/24 tcp dport {{ {}, {} }} accept\n",
            i / 256,
            i % 256,
            1000 + i,
            3000 + i
        );
        if i % 100 == 0 {
            src += &format!("  ip daddr 192.0.2.{} udp dport 1000-1999 drop\n", i / 100);
        }
    }
    src += " }\n}\n";
    let c = load_text(&src, &ports(), 1).unwrap();
    let p = tcp(
        v4([10, 3, 7, 9]),
        v4([192, 0, 2, 1]),
        5,
        3000 + 3 * 256 + 7,
        TcpFlags::SYN,
    );
    let (candidates, tuples) = c.candidate_count(0, &p);
    // The ct state rule (not indexed) and the one rule for 10.3.7.0/24 port 3775.
    assert_eq!(candidates, 2, "tuples {tuples}");
    // One tuple for the TCP rules, one wildcard, six for the prefix lengths of 1000-1999.
    assert_eq!(tuples, 8);
    let r = c.eval(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1);
    assert_eq!(r.verdict, Decision::Accept);
    let o = c.eval_linear(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1);
    assert_eq!(r.rule, o.rule);
    // A UDP packet to 192.0.2.5 port 1500: the ct state rule and the drop rule.
    let u = udp(v4([10, 3, 7, 9]), v4([192, 0, 2, 5]), 5, 1500);
    assert_eq!(c.candidate_count(0, &u).0, 2);
    assert_eq!(
        c.eval(Hook::Forward, &mut ctx(&u, ct_state::NEW), 0, 1)
            .verdict,
        Decision::Drop
    );
}

// ----- generations

#[test]
fn generations_swap_and_old_ones_are_freed_on_the_control_thread() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let drop_src =
        "table ip t {\n chain i {\n  type filter hook input priority 0; policy drop;\n }\n}\n";
    let accept_src =
        "table ip t {\n chain i {\n  type filter hook input priority 0; policy accept;\n }\n}\n";
    let mut publisher = Publisher::new(load_text(drop_src, &ports(), 2).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..2 {
        let mut wr = publisher.worker();
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || {
            let p = udp(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 2);
            let mut last_gen = 0;
            let mut seen = Vec::new();
            // Bounded: at most 2 000 000 bursts.
            for _ in 0..2_000_000 {
                wr.refresh();
                let rs = wr.get();
                let g = rs.generation();
                assert!(g >= last_gen, "generations never go back");
                last_gen = g;
                let v = rs
                    .eval(Hook::Input, &mut ctx(&p, ct_state::NEW), w, 1)
                    .verdict;
                // Odd generations drop, even ones accept: the verdict always belongs to the
                // generation the worker holds.
                assert_eq!(v == Decision::Drop, g % 2 == 1);
                if seen.last() != Some(&g) {
                    seen.push(g);
                }
                if stop.load(Ordering::Relaxed) && g == 5 {
                    break;
                }
            }
            seen
        }));
    }
    for i in 0..4 {
        let src = if i % 2 == 0 { accept_src } else { drop_src };
        let g = publisher.publish(load_text(src, &ports(), 2).unwrap());
        assert_eq!(g, i + 2);
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let seen = h.join().unwrap();
        assert_eq!(*seen.last().unwrap(), 5);
    }
    // Workers are gone and handed everything back: nothing old is still held.
    assert_eq!(publisher.reclaim(), 0);
    assert_eq!(publisher.current().generation(), 5);
}

#[test]
fn a_worker_that_has_not_moved_on_keeps_its_generation_alive() {
    let src =
        "table ip t {\n chain i {\n  type filter hook input priority 0; policy drop;\n }\n}\n";
    let mut publisher = Publisher::new(load_text(src, &ports(), 1).unwrap());
    let mut w = publisher.worker();
    publisher.publish(load_text(src, &ports(), 1).unwrap());
    assert_eq!(
        publisher.reclaim(),
        1,
        "generation 1 is still held by the worker"
    );
    assert_eq!(w.get().generation(), 1);
    assert!(w.refresh());
    assert_eq!(w.get().generation(), 2);
    assert_eq!(publisher.reclaim(), 0);
    assert!(!w.refresh());
}

// ----- classifier == oracle

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn addr_match() -> impl Strategy<Value = String> {
        let pfx =
            (0u8..4, prop_oneof![Just(8u8), Just(16), Just(24), Just(32)]).prop_map(|(x, l)| {
                let a = [10u8, x, x.wrapping_mul(3), 1];
                let m = if l == 32 { u32::MAX } else { !(u32::MAX >> l) };
                let v = u32::from_be_bytes(a) & m;
                format!("{}/{l}", std::net::Ipv4Addr::from(v))
            });
        prop_oneof![
            pfx.clone(),
            (pfx.clone(), pfx).prop_map(|(a, b)| format!("{{ {a}, {b} }}")),
            (0u8..4).prop_map(|x| format!("!= 10.{x}.0.0/16")),
            (0u8..4, 0u8..4).prop_map(|(a, b)| format!(
                "10.{}.0.0-10.{}.255.255",
                a.min(b),
                a.max(b)
            )),
        ]
    }

    fn port_match() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u16..8).prop_map(|p| format!("{}", 1000 + p)),
            (0u16..8, 0u16..8).prop_map(|(a, b)| format!(
                "{}-{}",
                1000 + a.min(b),
                1000 + a.max(b)
            )),
            (0u16..8, 0u16..8).prop_map(|(a, b)| format!("{{ {}, {} }}", 1000 + a, 1000 + b)),
            (0u16..8).prop_map(|p| format!("!= {}", 1000 + p)),
            (0u16..8).prop_map(|p| format!("< {}", 1000 + p)),
        ]
    }

    fn rule(jump: bool) -> impl Strategy<Value = String> {
        (
            proptest::option::of(addr_match()),
            proptest::option::of(addr_match()),
            proptest::option::of((
                prop_oneof![Just("tcp"), Just("udp"), Just("th")],
                port_match(),
            )),
            proptest::option::of(port_match()),
            proptest::option::of(prop_oneof![
                Just("new"),
                Just("established"),
                Just("new,established")
            ]),
            0u8..(if jump { 6 } else { 5 }),
            any::<bool>(),
        )
            .prop_map(|(s, d, dp, sp, st, v, counter_first)| {
                let mut r = String::new();
                if counter_first {
                    r.push_str("counter ");
                }
                if let Some(s) = s {
                    r += &format!("ip saddr {s} ");
                }
                if let Some(d) = d {
                    r += &format!("ip daddr {d} ");
                }
                if let Some((p, m)) = dp {
                    r += &format!("{p} dport {m} ");
                    if let Some(sp) = sp {
                        r += &format!("{p} sport {sp} ");
                    }
                }
                if let Some(st) = st {
                    r += &format!("ct state {st} ");
                }
                r += [
                    "accept", "drop", "continue", "return", "counter", "jump sub",
                ][v as usize];
                r
            })
    }

    fn ruleset() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(rule(true), 1..40),
            proptest::collection::vec(rule(false), 0..10),
        )
            .prop_map(|(main, sub)| {
                format!(
                    "table ip t {{\n chain sub {{\n{} }}\n chain f {{\n  type filter hook forward priority 0; policy drop;\n{} }}\n}}\n",
                    sub.iter().map(|r| format!("  {r}\n")).collect::<String>(),
                    main.iter().map(|r| format!("  {r}\n")).collect::<String>()
                )
            })
    }

    fn packet() -> impl Strategy<Value = (IpInfo, u8)> {
        (0u8..4, 0u8..4, 0u8..3, 0u16..9, 0u16..9, any::<bool>()).prop_map(
            |(a, b, p, sp, dp, new)| {
                let s = v4([10, a, a.wrapping_mul(3), 1]);
                let d = v4([10, b, 0, 9]);
                let pkt = match p {
                    0 => tcp(s, d, 1000 + sp, 1000 + dp, TcpFlags::SYN),
                    1 => udp(s, d, 1000 + sp, 1000 + dp),
                    _ => ip(
                        s,
                        d,
                        proto::ICMP,
                        Some(L4Info::IcmpEcho {
                            request: true,
                            id: 1,
                            seq: 1,
                        }),
                    ),
                };
                (
                    pkt,
                    if new {
                        ct_state::NEW
                    } else {
                        ct_state::ESTABLISHED
                    },
                )
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn classifier_agrees_with_linear_oracle(src in ruleset(), pkts in proptest::collection::vec(packet(), 1..20)) {
            let c = load_text(&src, &ports(), 1).unwrap();
            for (p, st) in &pkts {
                let mut a = ctx(p, *st);
                let mut b = ctx(p, *st);
                let r = c.eval(Hook::Forward, &mut a, 0, 1);
                let o = c.eval_linear(Hook::Forward, &mut b, 0, 1);
                prop_assert_eq!(r.verdict, o.verdict, "{}", src);
                prop_assert_eq!(r.rule, o.rule, "{}", src);
                prop_assert_eq!(r.cacheable, o.cacheable);
                prop_assert_eq!(&r.counted, &o.counted, "{}", src);
                prop_assert_eq!(r.counted_overflow, o.counted_overflow);
            }
            // Counters: each eval path bumped the same rules (the two runs together are
            // exactly twice one run).
            let counts = c.counters();
            prop_assert!(counts.iter().all(|(p, _)| p % 2 == 0), "{:?}", counts);
        }

        #[test]
        fn printed_rulesets_reparse_to_the_same_ast(src in ruleset()) {
            let a = parse::parse(&src).unwrap();
            let b = parse::parse(&print::to_text(&a)).unwrap();
            prop_assert_eq!(&a, &b);
            let j = json::from_json(&json::to_json(&a)).unwrap();
            prop_assert_eq!(a, j);
        }
    }

    /// The fuzz target's property on mutated copies of the fixture: parsing never panics;
    /// what parses and checks prints and re-reads (text and JSON) to the same AST, and
    /// compiles or fails without panicking.
    fn mutated() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("ip saddr 10.0.0.0/8"),
            Just("ip daddr != { 1.2.3.4, 5.6.7.0/24 }"),
            Just("ip6 saddr ::ffff:1.2.3.4"),
            Just("ip6 daddr 2001:db8::-2001:db8::5"),
            Just("tcp dport 1-2"),
            Just("udp sport { 53, 67-68 }"),
            Just("th dport < 9"),
            Just("icmp type { echo-request, 3-5 }"),
            Just("icmpv6 type nd-router-advert"),
            Just("tcp flags & (syn | fin) != 0x0"),
            Just("tcp flags == syn,ack"),
            Just("ct state != new"),
            Just("ct status snat"),
            Just("ct mark 0x1-0x5"),
            Just("meta mark & 0xff == 3"),
            Just("meta l4proto { tcp, udp }"),
            Just("iifname \"eth*\""),
            Just("oif eth1"),
            Just("ip protocol tcp-udp"),
            Just("counter"),
            Just("counter packets 3 bytes 9"),
            Just("log prefix \"p\" level warn"),
            Just("limit rate over 3/minute burst 9 packets"),
            Just("ct count 4"),
            Just("meta mark set 7"),
            Just("ct mark set 0x10"),
            Just("notrack"),
            Just("ip saddr @blocked"),
            Just("jump sub"),
            Just("goto sub2"),
            Just("return"),
            Just("continue"),
            Just("accept"),
            Just("drop"),
            Just("reject"),
            Just("reject with icmpx admin-prohibited"),
            Just("reject with icmpv6 type 77"),
            Just("dnat ip to 1.2.3.4"),
            Just("dnat ip6 to [::1]:80"),
            Just("masquerade random,persistent"),
            Just("redirect to :1-2"),
            Just("snat to 1.2.3.4-1.2.3.9"),
            Just("comment \"c # d\""),
            Just("{"),
            Just("}"),
            Just(";"),
            Just(","),
            Just("-"),
            Just("65536"),
            Just("@"),
            Just("ip saddr vmap @m"),
            Just("ip saddr . tcp dport != @cs"),
            Just("dnat ip to tcp dport map @fp"),
            Just("snat to ip saddr map { 10.0.0.0/8 : 1.2.3.4 }"),
            Just("dnat to tcp dport . ip saddr map { 1 . 1.2.3.4 : 5.6.7.8 . 9 }"),
            Just("map"),
            Just(":"),
        ];
        (0usize..40, proptest::collection::vec(piece, 1..5)).prop_map(|(line, pieces)| {
            let lines: Vec<&str> = ISSUE.lines().collect();
            let rule_lines: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].starts_with("        ") && !lines[i].contains("type "))
                .collect();
            let at = rule_lines[line % rule_lines.len()];
            let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            out[at] = format!("        {}", pieces.join(" "));
            out.join("\n")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn mutated_rulesets_never_panic_and_round_trip(src in mutated()) {
            if let Ok(rs) = parse::parse(&src) {
                let text = print::to_text(&rs);
                let again = parse::parse(&text);
                prop_assert!(again.is_ok(), "{:?}\n{}", again, text);
                prop_assert_eq!(&rs, &again.unwrap());
                let j = json::from_json(&json::to_json(&rs));
                prop_assert!(j.is_ok(), "{:?}", j);
                prop_assert_eq!(&rs, &j.unwrap());
                let _ = compile(&rs, &ports(), 2);
            }
        }
    }
}
