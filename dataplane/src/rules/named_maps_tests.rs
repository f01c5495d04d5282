//! Named maps and sets of concatenations, NAT maps: the kernel's listing and JSON, checks,
//! evaluation and counters.

use super::ast::*;
use super::compile::{Decision, ct_state};
use super::tests::{ctx, ports, tcp, v4};
use super::*;
use crate::nat::NatKind;
use crate::wire::TcpFlags;

/// `nft list ruleset` of `maps.kernel.json`'s ruleset (nft 1.0.6).
const KERNEL: &str = include_str!("testdata/maps.kernel.nft");
const KERNEL_JSON: &str = include_str!("testdata/maps.kernel.json");

fn no_handles(mut rs: Ruleset) -> Ruleset {
    for c in rs.tables.iter_mut().flat_map(|t| &mut t.chains) {
        for r in &mut c.rules {
            r.handle = 0;
        }
    }
    rs
}

/// The JSON objects of one kind without their `handle`s.
fn objects(j: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind).cloned())
        .map(|mut o| {
            o.as_object_mut().unwrap().remove("handle");
            o
        })
        .collect()
}

#[test]
fn kernel_listing_and_json_read_to_one_ruleset_and_print_back() {
    let rs = parse::parse(KERNEL).unwrap();
    check::check(&rs).unwrap();
    let t = &rs.tables[0];
    assert_eq!(t.maps.len(), 6);
    assert_eq!(t.maps[1].key, vec![SetType::InetService]);
    assert_eq!(
        t.maps[1].data,
        Some(MapData::Types(vec![
            SetType::Ipv4Addr,
            SetType::InetService
        ]))
    );
    assert_eq!(t.maps[3].keyword(), "set");
    // Our listing is the kernel's, elements on one line.
    let printed = print::to_text(&rs);
    assert_eq!(
        printed,
        KERNEL.replace(",\n\t\t\t     198.18.1.3", ", 198.18.1.3")
    );
    assert_eq!(
        no_handles(parse::parse(&printed).unwrap()),
        no_handles(rs.clone())
    );
    // The kernel's JSON reads to the same ruleset; ours has the kernel's rules and maps.
    let kj: serde_json::Value = serde_json::from_str(KERNEL_JSON).unwrap();
    assert_eq!(
        no_handles(json::from_json(&kj).unwrap()),
        no_handles(rs.clone())
    );
    let ours = json::to_json(&rs);
    let exprs = |j: &serde_json::Value| -> Vec<serde_json::Value> {
        objects(j, "rule")
            .into_iter()
            .map(|r| r["expr"].clone())
            .collect()
    };
    assert_eq!(exprs(&ours), exprs(&kj));
    for kind in ["map", "set"] {
        assert_eq!(objects(&ours, kind), objects(&kj, kind), "{kind}");
    }
}

#[test]
fn named_maps_decide_translate_and_count() {
    let c = load_text(KERNEL, &ports(), 1).unwrap();
    let me = v4([192, 0, 2, 1]);
    let syn = TcpFlags::SYN;
    let input = |src: [u8; 4], dport: u16| {
        let ip = tcp(v4(src), me, 1000, dport, syn);
        let mut x = ctx(&ip, ct_state::NEW);
        let r = c.eval(Hook::Input, &mut x, 0, 1);
        (r.verdict, r.rule.map(|r| r.handle))
    };
    // ip saddr vmap @m: .2 accept, .3 drop; others fall through.
    assert_eq!(input([198, 18, 1, 2], 9).0, Decision::Accept);
    assert_eq!(input([198, 18, 1, 3], 9).0, Decision::Drop);
    // In no map or set: the policy (@cs's elements are decided by @m first here; the
    // kernel comparison has a ruleset where @cs decides).
    assert_eq!(input([198, 18, 9, 9], 22), (Decision::Accept, None));
    // vmap @vi (interval: 198.18.1.0/24 . 22): 198.18.1.7 . 22 accepted by rule 4.
    let (d, h) = input([198, 18, 1, 7], 22);
    assert_eq!(d, Decision::Accept);
    assert_eq!(h, Some(4));
    let counters = c.counters();
    let id = |r| c.rule_id(0, 0, r).unwrap() as usize;
    assert_eq!(counters[id(0)].0, 2, "vmap @m hits");
    assert_eq!(counters[id(2)].0, 1, "@ci counter: 198.18.1.7 . 22 only");
    assert_eq!(counters[id(3)].0, 1, "vmap @vi hit");
    // The same answers with every rule a candidate.
    for (src, dport) in [
        ([198, 18, 1, 2], 9),
        ([198, 18, 1, 7], 22),
        ([198, 18, 9, 9], 22),
    ] {
        let ip = tcp(v4(src), me, 1000, dport, syn);
        let (mut x, mut y) = (ctx(&ip, ct_state::NEW), ctx(&ip, ct_state::NEW));
        assert_eq!(
            c.eval(Hook::Input, &mut x, 0, 1).verdict,
            c.eval_linear(Hook::Input, &mut y, 0, 1).verdict
        );
    }
    // NAT maps on the first packet.
    let nat = |hook, src: [u8; 4], dport: u16| {
        let ip = tcp(v4(src), me, 1000, dport, syn);
        let mut x = ctx(&ip, ct_state::NEW);
        x.first_packet = true;
        c.eval(hook, &mut x, 0, 1).nat
    };
    let a = nat(Hook::Prerouting, [198, 18, 9, 9], 80).unwrap();
    assert_eq!(a.kind, NatKind::Dnat);
    assert_eq!(
        a.range.addr,
        Some((v4([198, 18, 2, 2]), v4([198, 18, 2, 2])))
    );
    assert_eq!(a.range.ports, Some((8080, 8080)));
    let a = nat(Hook::Prerouting, [198, 18, 9, 9], 22).unwrap();
    assert_eq!(
        a.range.addr,
        Some((v4([198, 18, 3, 3]), v4([198, 18, 3, 3])))
    );
    assert_eq!(a.range.ports, None);
    assert!(
        nat(Hook::Prerouting, [198, 18, 9, 9], 81).is_none(),
        "no element: no NAT"
    );
    let a = nat(Hook::Postrouting, [198, 18, 1, 9], 1).unwrap();
    assert_eq!(a.kind, NatKind::Snat);
    assert_eq!(
        a.range.addr,
        Some((v4([203, 0, 113, 2]), v4([203, 0, 113, 2])))
    );
    let a = nat(Hook::Postrouting, [198, 18, 0, 200], 1).unwrap();
    assert_eq!(
        a.range.addr,
        Some((v4([203, 0, 113, 1]), v4([203, 0, 113, 1])))
    );
    let a = nat(Hook::Postrouting, [198, 18, 5, 1], 1).unwrap();
    assert_eq!(
        a.range.addr,
        Some((v4([203, 0, 113, 5]), v4([203, 0, 113, 5])))
    );
    assert!(nat(Hook::Postrouting, [198, 18, 1, 10], 1).is_none());
    // A NAT map rule counts the packets it translated, not the ones it missed.
    let counters = c.counters();
    assert_eq!(counters[c.rule_id(0, 1, 0).unwrap() as usize].0, 1);
    assert_eq!(counters[c.rule_id(0, 2, 0).unwrap() as usize].0, 2);
}

#[test]
fn named_map_errors_carry_location() {
    let cases = [
        (
            "map m { type ipv4_addr : verdict; }\n chain c { ip saddr vmap @x }",
            "undefined",
        ),
        (
            "map m { type inet_service : verdict; }\n chain c { ip saddr vmap @m }",
            "does not fit",
        ),
        (
            "set s { type ipv4_addr . inet_service; }\n chain c { ip saddr . tcp dport vmap @s }",
            "does not hold",
        ),
        (
            "map m { type ipv4_addr : verdict; }\n chain c { ip saddr . tcp dport @m }",
            "does not fit",
        ),
        (
            "map m { type ipv4_addr : verdict; elements = { 198.18.0.0/16 : drop } }\n chain c { ip saddr vmap @m }",
            "flags interval",
        ),
        (
            "map m { type ipv4_addr : verdict; elements = { 198.18.0.1 : jump nope } }\n chain c { ip saddr vmap @m }",
            "undefined chain",
        ),
        (
            "map f { type ipv4_addr : ipv4_addr . inet_service; }\n chain c { type nat hook prerouting priority dstnat; dnat to ip saddr map @f }",
            "transport protocol mapping",
        ),
        (
            "map f { type inet_service : ipv4_addr; }\n chain c { type filter hook prerouting priority 0; dnat to tcp dport map @f }",
            "not of type nat",
        ),
        (
            "chain c { type nat hook postrouting priority srcnat; dnat to tcp dport map { 1 : 198.18.0.1 } }",
            "not valid in a postrouting",
        ),
        (
            "map f { type inet_service : ipv6_addr; }\n chain c { }",
            "family",
        ),
    ];
    for (body, want) in cases {
        let text = format!("table ip t {{ {body} }}");
        let e = parse::parse(&text)
            .and_then(|rs| check::check(&rs))
            .unwrap_err();
        assert!(e.to_string().contains(want), "{text}: {e}");
        assert!(e.line > 0, "{text}: {e} has no location");
    }
    for (text, want) in [
        (
            "table ip t { set s { type ipv4_addr : verdict; } }",
            "a set has no data type",
        ),
        ("table ip t { map m { type ipv4_addr; } }", "a map type is"),
        (
            "table ip t { chain c { dnat to tcp dport map { 1 : 198.18.0.0/24 } } }",
            "an address",
        ),
        (
            "table ip t { chain c { snat to tcp dport { 1 : 198.18.0.1 } } }",
            "expected `map`",
        ),
    ] {
        let e = parse::parse(text).unwrap_err();
        assert!(e.to_string().contains(want), "{text}: {e}");
    }
}

/// `icmp code` / `icmpv6 code` as `nft list ruleset` and `nft -j` (1.0.6) write them.
#[test]
fn icmp_codes_print_and_read_as_the_kernel() {
    let text = "table ip t {
\tchain c {
\t\ttype filter hook input priority filter; policy accept;
\t\ticmp code port-unreachable accept
\t\ticmp code { host-unreachable, port-unreachable, admin-prohibited } counter packets 0 bytes 0
\t\ticmp type . icmp code { destination-unreachable . frag-needed } accept
\t}
}
table ip6 t6 {
\tchain c {
\t\ttype filter hook input priority filter; policy accept;
\t\ticmpv6 code { no-route, port-unreachable } accept
\t}
}
";
    let rs = parse::parse(text).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), text);
    let kernel: serde_json::Value = serde_json::from_str(
        r#"[[{"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": "code"}}, "right": "port-unreachable"}}, {"accept": null}],
        [{"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": "code"}}, "right": {"set": ["host-unreachable", "port-unreachable", "admin-prohibited"]}}}, {"counter": {"packets": 0, "bytes": 0}}],
        [{"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": "icmp", "field": "type"}}, {"payload": {"protocol": "icmp", "field": "code"}}]}, "right": {"set": [{"concat": ["destination-unreachable", "frag-needed"]}]}}}, {"accept": null}],
        [{"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "code"}}, "right": {"set": ["no-route", "port-unreachable"]}}}, {"accept": null}]]"#,
    )
    .unwrap();
    let ours: Vec<serde_json::Value> = objects(&json::to_json(&rs), "rule")
        .into_iter()
        .map(|r| r["expr"].clone())
        .collect();
    assert_eq!(serde_json::Value::Array(ours), kernel);
    // Evaluation: an ICMP port unreachable, a fragmentation-needed, an echo request.
    let c = load_text(text, &ports(), 1).unwrap();
    let icmp = |t, code| {
        tests::ip(
            v4([198, 18, 0, 1]),
            v4([198, 18, 0, 2]),
            crate::wire::proto::ICMP,
            Some(crate::wire::L4Info::IcmpOther { icmp_type: t, code }),
        )
    };
    let decide = |ip: &crate::wire::IpInfo| {
        let mut x = ctx(ip, ct_state::NEW);
        c.eval(Hook::Input, &mut x, 0, 1).rule.map(|r| r.handle)
    };
    assert_eq!(decide(&icmp(3, 3)), Some(1));
    assert_eq!(decide(&icmp(3, 4)), Some(3));
    assert_eq!(decide(&icmp(3, 1)), None, "counted by rule 2, no verdict");
    assert_eq!(c.counters()[c.rule_id(0, 0, 1).unwrap() as usize].0, 1);
}
