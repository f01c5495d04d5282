#![allow(clippy::cast_possible_truncation)] // test data built from small loop counters

use super::*;
use crate::nat::rss::SYMMETRIC_RSS_KEY;
use crate::nat::{NatFlags, NatRange};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::HashSet;

const fn ip(a: u8, b: u8, c: u8, d: u8) -> Addr {
    Addr::from_v4([a, b, c, d])
}

const INSIDE: Addr = ip(198, 18, 0, 10);
const REMOTE: Addr = ip(203, 0, 113, 9);
const PUBLIC: Addr = ip(198, 51, 100, 1);

fn tcp(src: Addr, sport: u16, dst: Addr, dport: u16) -> Tuple {
    Tuple::new(src, dst, proto::TCP, sport, dport)
}

fn action(kind: NatKind, addr: Option<(Addr, Addr)>, ports: Option<(u16, u16)>) -> NatAction {
    NatAction {
        kind,
        range: NatRange { addr, ports },
        flags: NatFlags::default(),
    }
}

fn masq() -> NatAction {
    action(NatKind::Masquerade, None, None)
}

fn snat_to(a: Addr, ports: Option<(u16, u16)>) -> NatAction {
    action(NatKind::Snat, Some((a, a)), ports)
}

fn env() -> NatEnv {
    NatEnv {
        egress_addr: Some(PUBLIC),
        ingress_addr: Some(ip(198, 18, 0, 1)),
    }
}

fn owner(workers: u16) -> Owner {
    Owner::spread(&SYMMETRIC_RSS_KEY, 128, workers).unwrap()
}

fn none(_: &Tuple) -> bool {
    false
}

/// A local table of reply tuples: `taken` reads it, `bind_into` adds to it.
#[derive(Default)]
struct Table(RefCell<HashSet<Tuple>>);

impl Table {
    fn taken(&self) -> impl Fn(&Tuple) -> bool + '_ {
        |t| self.0.borrow().contains(t)
    }

    fn insert(&self, b: &Binding) -> bool {
        let mut s = self.0.borrow_mut();
        s.insert(b.orig) && s.insert(b.reply)
    }
}

#[test]
fn masquerade_keeps_the_source_port_when_free() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let orig = tcp(INSIDE, 40000, REMOTE, 443);
    let b = al
        .bind(&orig, None, Some(&masq()), &env(), &o, none)
        .unwrap();
    assert_eq!(b.reply, tcp(REMOTE, 443, PUBLIC, 40000));
    assert_eq!(b.translated(), tcp(PUBLIC, 40000, REMOTE, 443));
    assert!(b.is_snat() && !b.is_dnat());
    assert_eq!(b.steering, None);
    assert_eq!(al.stats().ports_kept, 1);
    assert_eq!(al.stats().allocations, 1);
}

#[test]
fn masquerade_without_an_egress_address_is_refused() {
    let mut al = PortAllocator::new(0);
    let e = NatEnv {
        egress_addr: None,
        ..env()
    };
    let err = al.bind(
        &tcp(INSIDE, 1, REMOTE, 2),
        None,
        Some(&masq()),
        &e,
        &owner(1),
        none,
    );
    assert_eq!(err, Err(NatError::NoAddress));
    assert_eq!(err.unwrap_err().drop_reason().name(), "nat_no_address");
    assert_eq!(al.stats().no_address, 1);
}

#[test]
fn taken_source_port_is_replaced_from_linux_default_ranges() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    for (sport, lo, hi) in [
        (40000, 1024, 65535),
        (80, 1, 511),
        (700, 600, 1023),
        (1023, 600, 1023),
        (1024, 1024, 65535),
    ] {
        let orig = tcp(INSIDE, sport, REMOTE, 443);
        let kept = tcp(REMOTE, 443, PUBLIC, sport);
        let b = al
            .bind(&orig, None, Some(&masq()), &env(), &o, |t| *t == kept)
            .unwrap();
        assert_ne!(b.reply.dport, sport);
        assert!(
            (lo..=hi).contains(&b.reply.dport),
            "{sport} -> {}",
            b.reply.dport
        );
    }
    assert_eq!(al.stats().ports_searched, 5);
}

#[test]
fn explicit_range_is_filled_then_exhausted() {
    let o = owner(1);
    let t = Table::default();
    let mut al = PortAllocator::new(0);
    let a = snat_to(PUBLIC, Some((2000, 2003)));
    let mut ports = HashSet::new();
    for i in 0..4 {
        // Source ports outside the range are remapped into it.
        let orig = tcp(INSIDE, 50000 + i, REMOTE, 443);
        let b = al
            .bind(&orig, None, Some(&a), &env(), &o, t.taken())
            .unwrap();
        assert!((2000..=2003).contains(&b.reply.dport));
        assert!(t.insert(&b));
        ports.insert(b.reply.dport);
    }
    assert_eq!(ports.len(), 4);
    let err = al.bind(
        &tcp(INSIDE, 50010, REMOTE, 443),
        None,
        Some(&a),
        &env(),
        &o,
        t.taken(),
    );
    assert_eq!(err, Err(NatError::PortExhausted));
    assert_eq!(err.unwrap_err().drop_reason().name(), "nat_port_exhausted");
    assert_eq!(al.stats().exhausted, 1);
    // Another remote endpoint has its own four tuples.
    let b = al
        .bind(
            &tcp(INSIDE, 50010, REMOTE, 80),
            None,
            Some(&a),
            &env(),
            &o,
            t.taken(),
        )
        .unwrap();
    assert!((2000..=2003).contains(&b.reply.dport));
}

#[test]
fn range_edges_single_port_and_full_range() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let single = snat_to(PUBLIC, Some((65535, 65535)));
    let b = al
        .bind(
            &tcp(INSIDE, 1, REMOTE, 443),
            None,
            Some(&single),
            &env(),
            &o,
            none,
        )
        .unwrap();
    assert_eq!(b.reply.dport, 65535);
    let b = al.bind(
        &tcp(INSIDE, 1, REMOTE, 443),
        None,
        Some(&single),
        &env(),
        &o,
        |_| true,
    );
    assert_eq!(b, Err(NatError::PortExhausted));
    let full = snat_to(PUBLIC, Some((0, 65535)));
    let b = al
        .bind(
            &tcp(INSIDE, 0, REMOTE, 443),
            None,
            Some(&full),
            &env(),
            &o,
            none,
        )
        .unwrap();
    assert_eq!(b.reply.dport, 0);
    let inverted = snat_to(PUBLIC, Some((10, 9)));
    let b = al.bind(
        &tcp(INSIDE, 10, REMOTE, 443),
        None,
        Some(&inverted),
        &env(),
        &o,
        none,
    );
    assert_eq!(b, Err(NatError::PortExhausted));
}

/// Every SNAT port a worker allocates has a reply tuple that hashes back to it, for 1, 2,
/// 4 and 8 workers; and, with each worker consulting only its own table, no two workers
/// ever pick the same reply tuple.
#[test]
fn snat_replies_hash_to_the_allocating_worker() {
    for workers in [1u16, 2, 4, 8] {
        let o = owner(workers);
        let tables: Vec<Table> = (0..workers).map(|_| Table::default()).collect();
        let mut als: Vec<PortAllocator> = (0..workers).map(PortAllocator::new).collect();
        let mut all = HashSet::new();
        let a = masq();
        for i in 0..2000u16 {
            // Many inside hosts, few remote endpoints: replies compete for ports.
            let inside = ip(198, 18, 1, (i % 50) as u8);
            let orig = tcp(inside, 1024 + i / 50, REMOTE, 443 + (i % 3));
            let w = o.owner(&orig);
            let b = als[usize::from(w)]
                .bind(
                    &orig,
                    None,
                    Some(&a),
                    &env(),
                    &o,
                    tables[usize::from(w)].taken(),
                )
                .unwrap();
            assert_eq!(o.owner(&b.reply), w, "workers={workers} {b:?}");
            assert_eq!(b.steering, None);
            assert!(tables[usize::from(w)].insert(&b));
            assert!(all.insert(b.reply), "duplicate reply {b:?}");
        }
        let mut total = NatStats::default();
        als.iter().for_each(|al| total.add(al.stats()));
        assert_eq!(total.allocations, 2000);
        assert_eq!(total.exhausted, 0);
        // About `workers` hash probes per search (the "about ten tries for 8").
        let per_search = total.hash_probes as f64 / total.ports_searched.max(1) as f64;
        assert!(
            per_search < 4.0 * f64::from(workers),
            "workers={workers}: {per_search} probes per search"
        );
    }
}

/// Exhaustion on a small range with 4 workers: a worker gets exactly the ports whose reply
/// hashes to it (counted independently), then is refused.
#[test]
fn exhaustion_counts_only_own_ports() {
    let o = owner(4);
    let (lo, hi) = (5000u16, 5063u16);
    let a = snat_to(PUBLIC, Some((lo, hi)));
    for w in 0..4u16 {
        let expected = (lo..=hi)
            .filter(|&p| o.owner(&tcp(REMOTE, 443, PUBLIC, p)) == w)
            .count();
        let t = Table::default();
        let mut al = PortAllocator::new(w);
        let mut got = 0;
        for i in 0..200u16 {
            let orig = tcp(INSIDE, 30000 + i, REMOTE, 443);
            match al.bind(&orig, None, Some(&a), &env(), &o, t.taken()) {
                Ok(b) => {
                    assert!(t.insert(&b));
                    assert_eq!(o.owner(&b.reply), w);
                    got += 1;
                }
                Err(e) => assert_eq!(e, NatError::PortExhausted),
            }
        }
        assert_eq!(got, expected, "worker {w}");
        assert_eq!(al.stats().exhausted, 200 - expected as u64);
    }
}

#[test]
fn max_taken_checks_bounds_a_search() {
    let o = owner(1);
    let mut al = PortAllocator::new(0).with_max_taken_checks(16);
    let calls = RefCell::new(0u32);
    let r = al.bind(
        &tcp(INSIDE, 40000, REMOTE, 443),
        None,
        Some(&masq()),
        &env(),
        &o,
        |_| {
            *calls.borrow_mut() += 1;
            true
        },
    );
    assert_eq!(r, Err(NatError::PortExhausted));
    // One check of the kept port, then 16 candidates.
    assert_eq!(*calls.borrow(), 17);
}

#[test]
fn dnat_rewrites_the_destination_and_steers_foreign_replies() {
    let o = owner(8);
    let (mut steered, mut local) = (0, 0);
    // With the symmetric key the hash is linear in the XOR of all 16-bit words, so the
    // reply's worker differs from the original's by a constant per DNAT target: vary both.
    for i in 0..256u16 {
        let target = ip(192, 0, 2, (i % 64) as u8);
        let a = action(NatKind::Dnat, Some((target, target)), Some((80, 80)));
        let client = ip(203, 0, 113, (i / 64 + 1) as u8);
        let orig = tcp(client, 40000 + i, PUBLIC, 8080);
        let w = o.owner(&orig);
        let mut al = PortAllocator::new(w);
        let b = al.bind(&orig, Some(&a), None, &env(), &o, none).unwrap();
        assert_eq!(b.reply, tcp(target, 80, client, 40000 + i));
        assert!(b.is_dnat() && !b.is_snat());
        let rw = o.owner(&b.reply);
        if rw == w {
            assert_eq!(b.steering, None);
            local += 1;
        } else {
            assert_eq!(
                b.steering,
                Some(Steering {
                    reply: b.reply,
                    reply_worker: rw,
                    owner: w
                })
            );
            assert_eq!(al.stats().steering_records, 1);
            steered += 1;
        }
    }
    assert!(steered > 0 && local > 0, "steered {steered} local {local}");
}

#[test]
fn dnat_port_range_keeps_in_range_ports_and_searches_when_taken() {
    let o = owner(1);
    let target = ip(192, 0, 2, 10);
    let a = action(NatKind::Dnat, Some((target, target)), Some((8000, 8002)));
    let mut al = PortAllocator::new(0);
    let orig = tcp(REMOTE, 40000, PUBLIC, 8001);
    assert_eq!(
        al.bind(&orig, Some(&a), None, &env(), &o, none)
            .unwrap()
            .reply
            .sport,
        8001
    );
    let busy = tcp(target, 8001, REMOTE, 40000);
    let b = al
        .bind(&orig, Some(&a), None, &env(), &o, |t| *t == busy)
        .unwrap();
    assert!(b.reply.sport == 8000 || b.reply.sport == 8002);
    let out = tcp(REMOTE, 40000, PUBLIC, 9999);
    assert_eq!(
        al.bind(&out, Some(&a), None, &env(), &o, none)
            .unwrap()
            .reply
            .sport,
        8000
    );
    assert_eq!(
        al.bind(&orig, Some(&a), None, &env(), &o, |_| true),
        Err(NatError::PortExhausted)
    );
    // `dnat to ADDR` without ports keeps the destination port.
    let no_port = action(NatKind::Dnat, Some((target, target)), None);
    assert_eq!(
        al.bind(&out, Some(&no_port), None, &env(), &o, none)
            .unwrap()
            .reply
            .sport,
        9999
    );
}

#[test]
fn redirect_uses_the_ingress_address() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let a = action(NatKind::Redirect, None, Some((3128, 3128)));
    let b = al
        .bind(
            &tcp(INSIDE, 40000, REMOTE, 80),
            Some(&a),
            None,
            &env(),
            &o,
            none,
        )
        .unwrap();
    assert_eq!(b.reply, tcp(ip(198, 18, 0, 1), 3128, INSIDE, 40000));
    let e = NatEnv {
        ingress_addr: None,
        ..env()
    };
    assert_eq!(
        al.bind(&tcp(INSIDE, 1, REMOTE, 80), Some(&a), None, &e, &o, none),
        Err(NatError::NoAddress)
    );
}

#[test]
fn dnat_and_masquerade_on_one_connection() {
    let o = owner(4);
    let target = ip(192, 0, 2, 10);
    let d = action(NatKind::Dnat, Some((target, target)), Some((80, 80)));
    let orig = tcp(INSIDE, 40000, PUBLIC, 8080);
    let w = o.owner(&orig);
    let mut al = PortAllocator::new(w);
    let b = al
        .bind(&orig, Some(&d), Some(&masq()), &env(), &o, none)
        .unwrap();
    assert_eq!(
        (b.reply.src, b.reply.sport, b.reply.dst),
        (target, 80, PUBLIC)
    );
    // The SNAT port search makes the reply come back here: no steering needed.
    assert_eq!(o.owner(&b.reply), w);
    assert_eq!(b.steering, None);
}

#[test]
fn actions_in_the_wrong_place_are_refused() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let t = tcp(INSIDE, 1, REMOTE, 2);
    assert_eq!(
        al.bind(&t, Some(&masq()), None, &env(), &o, none),
        Err(NatError::WrongKind)
    );
    let d = action(NatKind::Dnat, Some((REMOTE, REMOTE)), None);
    assert_eq!(
        al.bind(&t, None, Some(&d), &env(), &o, none),
        Err(NatError::WrongKind)
    );
}

#[test]
fn family_mismatch_is_no_address() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let v6 = Addr::from_v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let t = tcp(INSIDE, 1, REMOTE, 2);
    assert_eq!(
        al.bind(&t, None, Some(&snat_to(v6, None)), &env(), &o, none),
        Err(NatError::NoAddress)
    );
    let mixed = action(NatKind::Snat, Some((PUBLIC, v6)), None);
    assert_eq!(
        al.bind(&t, None, Some(&mixed), &env(), &o, none),
        Err(NatError::NoAddress)
    );
}

#[test]
fn address_ranges_pick_by_source_hash() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let (lo, hi) = (ip(198, 51, 100, 10), ip(198, 51, 100, 20));
    let mut persistent = action(NatKind::Snat, Some((lo, hi)), None);
    persistent.flags.persistent = true;
    let plain = action(NatKind::Snat, Some((lo, hi)), None);
    let mut used = HashSet::new();
    for h in 1..60u8 {
        let inside = ip(198, 18, 2, h);
        let mut per_dst = HashSet::new();
        for d in 1..10u8 {
            let orig = tcp(inside, 40000, ip(203, 0, 113, d), 443);
            let b = al
                .bind(&orig, None, Some(&persistent), &env(), &o, none)
                .unwrap();
            assert!(lo <= b.reply.dst && b.reply.dst <= hi);
            per_dst.insert(b.reply.dst);
            let b2 = al
                .bind(&orig, None, Some(&plain), &env(), &o, none)
                .unwrap();
            assert!(lo <= b2.reply.dst && b2.reply.dst <= hi);
            // Same connection, same choice.
            assert_eq!(
                b2,
                al.bind(&orig, None, Some(&plain), &env(), &o, none)
                    .unwrap()
            );
        }
        assert_eq!(per_dst.len(), 1, "persistent: one address per client");
        used.extend(per_dst);
    }
    assert!(used.len() > 5, "hash spreads clients: {used:?}");
    // A source already inside the range is kept.
    let orig = tcp(ip(198, 51, 100, 15), 40000, REMOTE, 443);
    assert_eq!(
        al.bind(&orig, None, Some(&plain), &env(), &o, none)
            .unwrap()
            .reply
            .dst,
        orig.src
    );
}

#[test]
fn ipv6_snat_range() {
    let o = owner(4);
    let a6 = |last: u8| {
        Addr::from_v6([
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
        ])
    };
    let a = action(NatKind::Snat, Some((a6(0x10), a6(0x1f))), None);
    let orig = Tuple::new(a6(1), a6(0xee), proto::UDP, 5353, 53);
    let w = o.owner(&orig);
    let mut al = PortAllocator::new(w);
    let b = al.bind(&orig, None, Some(&a), &env(), &o, none).unwrap();
    assert!(a6(0x10) <= b.reply.dst && b.reply.dst <= a6(0x1f));
    assert_eq!(o.owner(&b.reply), w);
}

#[test]
fn icmp_echo_translates_the_identifier_within_the_worker_slice() {
    let o = owner(4);
    let echo = |id| Tuple::new(INSIDE, REMOTE, proto::ICMP, id, id);
    let w = 2;
    let mut al = PortAllocator::new(w);
    // Worker 2 of 4 owns ids 32768..=49151.
    let kept = al
        .bind(&echo(40000), None, Some(&masq()), &env(), &o, none)
        .unwrap();
    assert_eq!(
        kept.reply,
        Tuple::new(REMOTE, PUBLIC, proto::ICMP, 40000, 40000)
    );
    let moved = al
        .bind(&echo(7), None, Some(&masq()), &env(), &o, none)
        .unwrap();
    assert!((32768..=49151).contains(&moved.reply.sport), "{moved:?}");
    assert_eq!(moved.reply.sport, moved.reply.dport);
    // ICMP owners hash addresses only: the reply may belong elsewhere -> steering.
    assert_eq!(moved.steering.is_some(), o.owner(&moved.reply) != w);
}

#[test]
fn portless_protocols_translate_the_address_only() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let gre = Tuple::new(INSIDE, REMOTE, proto::GRE, 0, 0);
    let b = al
        .bind(&gre, None, Some(&masq()), &env(), &o, none)
        .unwrap();
    assert_eq!(b.reply, Tuple::new(REMOTE, PUBLIC, proto::GRE, 0, 0));
    assert_eq!(
        al.bind(&gre, None, Some(&masq()), &env(), &o, |_| true),
        Err(NatError::PortExhausted)
    );
}

#[test]
fn random_flags_skip_the_original_port() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let mut a = masq();
    a.flags.fully_random = true;
    let moved = (0..20u16)
        .filter(|i| {
            let orig = tcp(INSIDE, 40000 + i, REMOTE, 443);
            al.bind(&orig, None, Some(&a), &env(), &o, none)
                .unwrap()
                .reply
                .dport
                != orig.sport
        })
        .count();
    assert!(moved >= 19, "{moved}");
    assert_eq!(al.stats().ports_kept, 0);
}

#[test]
fn address_only_rss_uses_fixed_port_slices() {
    // A port whose RSS hashes addresses only: ports come from per-worker slices and
    // replies are steered where they hash elsewhere.
    let reta: Vec<u16> = (0..128).map(|i| i % 4).collect();
    let o = Owner::new(&SYMMETRIC_RSS_KEY, &reta, &[0, 1, 2, 3], false).unwrap();
    let a = snat_to(PUBLIC, Some((10000, 10399)));
    for w in 0..4u16 {
        let mut al = PortAllocator::new(w);
        let b = al
            .bind(
                &tcp(INSIDE, 1, REMOTE, 443),
                None,
                Some(&a),
                &env(),
                &o,
                none,
            )
            .unwrap();
        let lo = 10000 + 100 * w;
        assert!(
            (lo..lo + 100).contains(&b.reply.dport),
            "worker {w}: {}",
            b.reply.dport
        );
        assert_eq!(b.steering.is_some(), o.owner(&b.reply) != w);
    }
}

proptest! {
    /// Random connections on 4 workers, each bound by its owner against its own table
    /// only: no two bindings share a reply tuple, and every reply hashes to its worker.
    #[test]
    fn reply_tuples_are_unique(conns in prop::collection::vec((0u8..16, 1024u16..1100, 0u8..4, 0u16..3), 1..300)) {
        let o = owner(4);
        let tables: Vec<Table> = (0..4).map(|_| Table::default()).collect();
        let mut als: Vec<PortAllocator> = (0..4).map(PortAllocator::new).collect();
        let a = snat_to(PUBLIC, Some((20000, 20255)));
        let mut all = HashSet::new();
        for (h, sport, r, dp) in conns {
            let orig = tcp(ip(198, 18, 3, h), sport, ip(203, 0, 113, r), 80 + dp);
            let w = usize::from(o.owner(&orig));
            if tables[w].0.borrow().contains(&orig) {
                continue; // the same connection again: a conntrack hit, not a new binding
            }
            match als[w].bind(&orig, None, Some(&a), &env(), &o, tables[w].taken()) {
                Ok(b) => {
                    prop_assert_eq!(usize::from(o.owner(&b.reply)), w);
                    prop_assert!(tables[w].insert(&b));
                    prop_assert!(all.insert(b.reply), "duplicate {:?}", b);
                }
                Err(e) => prop_assert_eq!(e, NatError::PortExhausted),
            }
        }
    }
}
