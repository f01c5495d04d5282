//! The first-packet key is exact: random rulesets and packets, every pair of packets with
//! one key evaluates alike; and the cache answers only its generation and hook.

use super::*;
use crate::rules::compile::ct_state;
use crate::rules::load_text;
use crate::rules::tests::{ctx, ip, ports, tcp, udp, v4};
use crate::wire::{IpInfo, TcpFlags, proto};
use proptest::prelude::*;
use proptest::prop_assert_eq;
use std::collections::HashMap;

#[test]
fn partitions_cut_at_every_boundary() {
    let c = load_text(
        "table ip t {\n chain f {\n  type filter hook forward priority 0;\n  \
         tcp dport 22 accept\n  tcp dport 1000-2000 drop\n  ip saddr 10.0.0.0/8 accept\n }\n}\n",
        &ports(),
        1,
    )
    .unwrap();
    // dport: <22, 22, 23..999, 1000..2000, >2000; saddr: below, in, above 10/8.
    assert_eq!(c.first.class_counts(), [3, 1, 1, 5]);
    let key = |sport: u16, dport: u16, src: [u8; 4]| {
        let p = tcp(v4(src), v4([192, 0, 2, 1]), sport, dport, TcpFlags::SYN);
        c.first_key(&ctx(&p, ct_state::NEW))
    };
    // The source port is read by no rule: one class.
    assert_eq!(key(1, 80, [10, 1, 1, 1]), key(60000, 80, [10, 9, 9, 9]));
    assert_eq!(key(1, 1500, [10, 1, 1, 1]), key(1, 1999, [10, 1, 1, 1]));
    assert_ne!(key(1, 22, [10, 1, 1, 1]), key(1, 23, [10, 1, 1, 1]));
    assert_ne!(key(1, 80, [10, 1, 1, 1]), key(1, 80, [11, 1, 1, 1]));
}

#[test]
fn the_cache_answers_its_generation_and_hook_only() {
    let c = load_text(
        "table ip t {\n chain f {\n  type filter hook forward priority 0; policy drop;\n  \
         udp dport 53 counter accept\n }\n}\n",
        &ports(),
        1,
    )
    .unwrap();
    let p = udp(v4([198, 18, 0, 1]), v4([192, 0, 2, 53]), 40000, 53);
    let mut x = ctx(&p, ct_state::NEW);
    let r = c.eval(Hook::Forward, &mut x, 0, 1);
    let k = c.first_key(&ctx(&p, ct_state::NEW));
    let mut cache = FirstCache::new(64);
    assert!(cache.get(7, Hook::Forward, &k).is_none());
    assert!(cache.put(7, Hook::Forward, k, &r));
    let v = cache.get(7, Hook::Forward, &k).unwrap().clone();
    assert_eq!(v.verdict, Decision::Accept);
    assert_eq!(v.counted.len(), 1);
    // Another client, another source port: the same class.
    let q = udp(v4([198, 18, 7, 7]), v4([192, 0, 2, 53]), 1234, 53);
    assert_eq!(c.first_key(&ctx(&q, ct_state::NEW)), k);
    assert!(
        cache.get(8, Hook::Forward, &k).is_none(),
        "another generation"
    );
    assert!(
        cache.get(7, Hook::Postrouting, &k).is_none(),
        "another hook"
    );
    assert_eq!((cache.hits, cache.misses), (1, 3));
}

#[test]
fn stateful_paths_are_not_cached() {
    let c = load_text(
        "table ip t {\n chain f {\n  type filter hook forward priority 0;\n  \
         udp dport 53 limit rate 10/second accept\n  udp dport 54 log accept\n  \
         udp dport 55 meta mark set 1 accept\n  udp dport 56 accept\n }\n}\n",
        &ports(),
        1,
    )
    .unwrap();
    for (dport, cacheable) in [
        (53, false),
        (54, false),
        (55, false),
        (56, true),
        (57, true),
    ] {
        let p = udp(v4([198, 18, 0, 1]), v4([192, 0, 2, 53]), 40000, dport);
        let r = c.eval(Hook::Forward, &mut ctx(&p, ct_state::NEW), 0, 1);
        assert_eq!(FirstVerdict::of(&r).is_some(), cacheable, "dport {dport}");
    }
}

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..4).prop_map(|x| format!("10.{x}.0.0/16")),
        (0u8..4, 0u8..4).prop_map(|(x, y)| format!("10.{x}.{y}.1")),
        (0u8..4).prop_map(|x| format!("!= 10.{x}.0.0/16")),
        (0u8..4, 0u8..4).prop_map(|(a, b)| format!("10.{}.0.0-10.{}.255.255", a.min(b), a.max(b))),
        (0u8..4, 0u8..4).prop_map(|(a, b)| format!("{{ 10.{a}.0.1, 10.{b}.0.0/24 }}")),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u16..8).prop_map(|p| format!("{}", 1000 + p)),
        (0u16..8, 0u16..8).prop_map(|(a, b)| format!("{}-{}", 1000 + a.min(b), 1000 + a.max(b))),
        (0u16..8, 0u16..8).prop_map(|(a, b)| format!("{{ {}, {} }}", 1000 + a, 1000 + b)),
        (0u16..8).prop_map(|p| format!("!= {}", 1000 + p)),
        (0u16..8).prop_map(|p| format!("< {}", 1000 + p)),
        (0u16..8).prop_map(|p| format!(">= {}", 1000 + p)),
    ]
}

/// A filter rule: matches on addresses, ports, flags, interfaces, ICMP, state; a verdict.
fn filter_rule(jump: bool) -> impl Strategy<Value = String> {
    (
        proptest::option::of(addr()),
        proptest::option::of(addr()),
        proptest::option::of((
            prop_oneof![Just("tcp"), Just("udp"), Just("th")],
            port(),
            proptest::option::of(port()),
        )),
        proptest::option::of(prop_oneof![
            Just("tcp flags syn"),
            Just("tcp flags & (syn|ack) == syn"),
            Just("icmp type echo-request"),
            Just("icmp code port-unreachable"),
            Just("icmp type . icmp code { destination-unreachable . 4, echo-request . 0 }"),
            Just("ip saddr . tcp dport { 10.1.0.1 . 1003, 10.2.0.0/16 . 1000-1004 }"),
            Just("udp dport vmap { 1002 : drop, 1004-1005 : accept }"),
            Just("iifname \"eth0\""),
            Just("oifname \"eth1\""),
            Just("iif \"eth2\""),
            Just("ct state new"),
            Just("ct state established"),
            Just("meta l4proto udp"),
        ]),
        0u8..(if jump { 8 } else { 7 }),
        any::<bool>(),
    )
        .prop_map(|(s, d, ports, other, v, counter)| {
            let mut r = String::new();
            if counter {
                r += "counter ";
            }
            if let Some(s) = s {
                r += &format!("ip saddr {s} ");
            }
            if let Some(d) = d {
                r += &format!("ip daddr {d} ");
            }
            if let Some((p, dp, sp)) = ports {
                r += &format!("{p} dport {dp} ");
                if let Some(sp) = sp {
                    r += &format!("{p} sport {sp} ");
                }
            }
            if let Some(o) = other {
                r += o;
                r += " ";
            }
            r += [
                "accept",
                "drop",
                "continue",
                "return",
                "counter",
                "reject",
                "limit rate 1/second accept",
                "jump sub",
            ][usize::from(v)];
            r
        })
}

/// A NAT rule of prerouting (`pre`) or postrouting.
fn nat_rule(pre: bool) -> impl Strategy<Value = String> {
    (
        proptest::option::of(addr()),
        proptest::option::of(port()),
        0u8..3,
    )
        .prop_map(move |(a, p, k)| {
            let mut r = String::new();
            if let Some(a) = a {
                r += &format!("ip {} {a} ", if pre { "daddr" } else { "saddr" });
            }
            if let Some(p) = p {
                r += &format!("tcp dport {p} ");
            }
            r += match (pre, k) {
                (true, 0) => "dnat to 192.0.2.10",
                (true, 1) => "dnat to 192.0.2.11-192.0.2.12",
                (true, _) => "counter",
                (false, 0) => "masquerade",
                (false, 1) => "snat to 203.0.113.64-203.0.113.127",
                (false, _) => "oifname \"eth1\" masquerade",
            };
            r
        })
}

fn ruleset() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(filter_rule(true), 1..25),
        proptest::collection::vec(filter_rule(false), 0..6),
        proptest::collection::vec(nat_rule(true), 0..5),
        proptest::collection::vec(nat_rule(false), 0..5),
        any::<bool>(),
    )
        .prop_map(|(f, sub, pre, post, drop)| {
            let lines = |v: &[String]| v.iter().map(|r| format!("  {r}\n")).collect::<String>();
            format!(
                "table ip t {{\n chain sub {{\n{}}}\n chain f {{\n  type filter hook forward priority 0; policy {};\n{}}}\n \
                 chain pre {{\n  type nat hook prerouting priority -100;\n{}}}\n \
                 chain post {{\n  type nat hook postrouting priority 100;\n{}}}\n}}\n",
                lines(&sub),
                if drop { "drop" } else { "accept" },
                lines(&f),
                lines(&pre),
                lines(&post),
            )
        })
}

/// First packets from small pools, so that keys repeat.
fn packet() -> impl Strategy<Value = (IpInfo, u16, u16)> {
    (
        0u8..5,
        0u8..4,
        0u8..3,
        0u16..10,
        0u16..10,
        0u8..3,
        0u16..3,
        0u16..3,
    )
        .prop_map(|(a, b, p, sp, dp, fl, iif, oif)| {
            let s = v4([10, a, a % 2, 1]);
            let d = v4([10, b, 0, 1]);
            let flags =
                [TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK, TcpFlags::ACK][usize::from(fl)];
            let pkt = match p {
                0 => tcp(s, d, 998 + sp, 998 + dp, flags),
                1 => udp(s, d, 998 + sp, 998 + dp),
                2 if fl == 2 => ip(
                    s,
                    d,
                    proto::ICMP,
                    Some(L4Info::IcmpOther {
                        icmp_type: 3,
                        code: u8::try_from(sp % 5).unwrap_or(0),
                    }),
                ),
                _ => ip(
                    s,
                    d,
                    proto::ICMP,
                    Some(L4Info::IcmpEcho {
                        request: fl != 1,
                        id: sp,
                        seq: 1,
                    }),
                ),
            };
            (pkt, iif, oif)
        })
}

/// Packets with one first-packet key get one verdict, deciding rule, NAT decision,
/// `notrack` and list of counted rules in every hook, whenever no stateful statement ran;
/// the cache, filled as packets come, answers what evaluation answers. Each packet is
/// also evaluated with another source port (often the same class), so keys repeat.
#[test]
fn one_key_one_evaluation() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config::with_cases(300));
    let compared = std::cell::Cell::new(0usize);
    let strategy = (ruleset(), proptest::collection::vec(packet(), 1..40));
    runner
        .run(&strategy, |(src, pkts)| {
            let c = load_text(&src, &ports(), 1).unwrap();
            let mut seen: HashMap<(Hook, FirstKey), FirstVerdict> = HashMap::new();
            let mut cache = FirstCache::new(16);
            let sibling = |p: &IpInfo| {
                let mut q = *p;
                match &mut q.l4 {
                    Some(L4Info::Tcp(t)) => t.sport = 998 + (t.sport + 3) % 10,
                    Some(L4Info::Udp { sport, .. }) => *sport = 998 + (*sport + 3) % 10,
                    _ => {}
                }
                q
            };
            for (p, iif, oif) in &pkts {
                for p in [*p, sibling(p)] {
                    for hook in [Hook::Prerouting, Hook::Forward, Hook::Postrouting] {
                        let mut x = ctx(&p, ct_state::NEW);
                        x.iif = Some(*iif);
                        x.oif = (hook != Hook::Prerouting).then_some(*oif);
                        let k = c.first_key(&x);
                        // The cache's key, classes reused across hooks and packets, is
                        // the key computed afresh.
                        prop_assert_eq!(cache.key(&c, &x), k);
                        let r = c.eval(hook, &mut x, 0, 1);
                        let Some(v) = FirstVerdict::of(&r) else {
                            continue;
                        };
                        if let Some(cached) = cache.get(c.generation(), hook, &k) {
                            prop_assert_eq!(cached, &v, "cache: {}", src);
                        }
                        cache.put(c.generation(), hook, k, &r);
                        match seen.get(&(hook, k)) {
                            Some(prev) => {
                                compared.set(compared.get() + 1);
                                prop_assert_eq!(prev, &v, "{:?} {:?}\n{}", hook, p, src);
                            }
                            None => {
                                seen.insert((hook, k), v);
                            }
                        }
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    // The property was exercised: many evaluations met a key seen before.
    assert!(compared.get() > 1000, "{} comparisons", compared.get());
}

/// The address and port classes a cache reuses follow the ruleset generation and the
/// packet's addresses and ports: a new generation with other boundaries, or a rewritten
/// destination (DNAT between hooks), gives the key computed afresh.
#[test]
fn reused_classes_follow_generation_and_fields() {
    let load = |text: &str, generation: u64| {
        let mut c = load_text(text, &ports(), 1).unwrap();
        c.generation = generation;
        c
    };
    let a = load(
        "table ip t {\n chain f {\n  type filter hook forward priority 0;\n  \
         udp dport 53 accept\n  ip daddr 192.0.2.0/28 drop\n }\n}\n",
        1,
    );
    let b = load(
        "table ip t {\n chain f {\n  type filter hook forward priority 0;\n  \
         udp dport 1000-2000 accept\n  ip daddr 192.0.2.128/25 drop\n }\n}\n",
        2,
    );
    let p = udp(v4([198, 18, 0, 1]), v4([192, 0, 2, 1]), 40000, 53);
    let dnat = udp(v4([198, 18, 0, 1]), v4([192, 0, 2, 200]), 40000, 1500);
    let mut cache = FirstCache::new(16);
    for (rs, q) in [
        (&a, &p),
        (&a, &dnat),
        (&b, &dnat),
        (&b, &p),
        (&a, &p),
        (&a, &p),
    ] {
        let x = ctx(q, ct_state::NEW);
        assert_eq!(cache.key(rs, &x), rs.first_key(&x));
    }
    // The two rulesets class the two packets apart, so a stale reuse would show above.
    let k = |rs: &CompiledRuleset, q: &IpInfo| rs.first_key(&ctx(q, ct_state::NEW));
    assert_ne!(k(&a, &p), k(&a, &dnat));
    assert_ne!(k(&b, &p), k(&b, &dnat));
    assert_ne!(k(&a, &dnat), k(&b, &dnat));
}

/// Fields read through a hash table (a concatenation, a verdict map) and the ICMP code
/// split classes: two packets that a table or `icmp code` tells apart have two keys.
#[test]
fn table_keys_and_icmp_codes_split_classes() {
    let c = load_text(
        "table ip t { chain c { type filter hook input priority 0;\n\
         udp dport vmap { 1002 : drop }\n\
         ip saddr . udp sport { 10.1.0.1 . 7 } drop\n\
         icmp code port-unreachable drop\n} }",
        &ports(),
        1,
    )
    .unwrap();
    let key = |p: &IpInfo| c.first_key(&ctx(p, ct_state::NEW));
    let (a, b) = (v4([10, 1, 0, 1]), v4([10, 2, 0, 1]));
    assert_ne!(key(&udp(a, b, 9, 1002)), key(&udp(a, b, 9, 1003)));
    assert_ne!(key(&udp(a, b, 7, 9)), key(&udp(a, b, 8, 9)));
    assert_ne!(key(&udp(a, b, 7, 9)), key(&udp(b, b, 7, 9)));
    let icmp = |code| {
        ip(
            a,
            b,
            proto::ICMP,
            Some(L4Info::IcmpOther { icmp_type: 3, code }),
        )
    };
    assert_ne!(key(&icmp(3)), key(&icmp(4)));
}
