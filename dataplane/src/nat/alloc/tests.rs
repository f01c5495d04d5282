#![allow(clippy::cast_possible_truncation)] // test data built from small loop counters

use super::*;
use crate::nat::rss::SYMMETRIC_RSS_KEY;
use crate::nat::{NatFlags, NatRange};
use proptest::prelude::*;
use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};

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

/// A table where every tuple is in use (and ports come from its own pools); counts the
/// `taken` questions.
#[derive(Default)]
struct AllTaken {
    pools: Option<PortPools>,
    calls: Cell<u32>,
}

impl NatTable for AllTaken {
    fn taken(&self, _: &Tuple) -> bool {
        self.calls.set(self.calls.get() + 1);
        true
    }

    fn ports(&mut self) -> &mut PortPools {
        self.pools.get_or_insert_with(|| PortPools::new(4))
    }
}

/// Holds `port` of `addr` (TCP) in `t`'s pools, as a live connection would.
fn hold(t: &mut TupleSet, addr: Addr, port: u16) {
    let key = PoolKey {
        addr,
        proto: proto::TCP,
    };
    assert!(t.hold(key, port));
}

/// The oracle of the RSS constraint: whether SNAT port `p` for remote `r` and address `a`
/// gives a reply that worker `w` owns.
fn mine(o: &Owner, w: u16, remote: &Tuple, a: Addr, p: u16) -> bool {
    o.owner(&Tuple::new(remote.dst, a, remote.proto, remote.dport, p)) == w
}

#[test]
fn masquerade_keeps_the_source_port_when_free() {
    let o = owner(1);
    let mut t = TupleSet::default();
    let mut al = PortAllocator::new(0);
    let orig = tcp(INSIDE, 40000, REMOTE, 443);
    let b = al
        .bind(&orig, None, Some(&masq()), &env(), &o, &mut t)
        .unwrap();
    assert_eq!(b.reply, tcp(REMOTE, 443, PUBLIC, 40000));
    assert_eq!(b.translated(), tcp(PUBLIC, 40000, REMOTE, 443));
    assert!(b.is_snat() && !b.is_dnat());
    assert_eq!(b.steering, None);
    assert!(b.port_held);
    assert!(t.pools.is_held(
        &PoolKey {
            addr: PUBLIC,
            proto: proto::TCP
        },
        40000
    ));
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
        &mut TupleSet::default(),
    );
    assert_eq!(err, Err(NatError::NoAddress));
    assert_eq!(err.unwrap_err().drop_reason().name(), "nat_no_address");
    assert_eq!(al.stats().no_address, 1);
}

#[test]
fn held_source_port_is_replaced_from_linux_default_ranges() {
    let o = owner(1);
    let mut t = TupleSet::default();
    let mut al = PortAllocator::new(0);
    for (sport, lo, hi) in [
        (40000, 1024, 65535),
        (80, 1, 511),
        (700, 600, 1023),
        (1023, 600, 1023),
        (1024, 1024, 65535),
    ] {
        hold(&mut t, PUBLIC, sport);
        let orig = tcp(INSIDE, sport, REMOTE, 443);
        let b = al
            .bind(&orig, None, Some(&masq()), &env(), &o, &mut t)
            .unwrap();
        assert_ne!(b.reply.dport, sport);
        assert!(
            (lo..=hi).contains(&b.reply.dport),
            "{sport} -> {}",
            b.reply.dport
        );
    }
    assert_eq!(al.stats().ports_searched, 5);
    assert_eq!(al.stats().taken_checks, 0, "SNAT never asks the table");
}

#[test]
fn explicit_range_is_filled_then_exhausted_and_a_release_reopens_it() {
    let o = owner(1);
    let mut t = TupleSet::default();
    let mut al = PortAllocator::new(0);
    let a = snat_to(PUBLIC, Some((2000, 2003)));
    let mut bound = Vec::new();
    for i in 0..4 {
        // Source ports outside the range are remapped into it.
        let orig = tcp(INSIDE, 50000 + i, REMOTE, 443);
        let b = al.bind(&orig, None, Some(&a), &env(), &o, &mut t).unwrap();
        assert!((2000..=2003).contains(&b.reply.dport));
        assert!(t.insert(&b));
        bound.push(b);
    }
    let ports: HashSet<u16> = bound.iter().map(|b| b.reply.dport).collect();
    assert_eq!(ports.len(), 4);
    let next = tcp(INSIDE, 50010, REMOTE, 443);
    let err = al.bind(&next, None, Some(&a), &env(), &o, &mut t);
    assert_eq!(err, Err(NatError::PortExhausted));
    assert_eq!(err.unwrap_err().drop_reason().name(), "nat_port_exhausted");
    assert_eq!(al.stats().exhausted, 1);
    // A port is in use for every remote endpoint (Linux would give REMOTE:80 its own four
    // tuples; docs/nat.md, "Deviations").
    let other = tcp(INSIDE, 50010, REMOTE, 80);
    assert_eq!(
        al.bind(&other, None, Some(&a), &env(), &o, &mut t),
        Err(NatError::PortExhausted)
    );
    // The connection on 2002 dies: its port is the one handed out next.
    let gone = *bound.iter().find(|b| b.reply.dport == 2002).unwrap();
    t.remove(&gone);
    let b = al.bind(&other, None, Some(&a), &env(), &o, &mut t).unwrap();
    assert_eq!(b.reply.dport, 2002);
}

#[test]
fn range_edges_single_port_and_full_range() {
    let o = owner(1);
    let mut t = TupleSet::default();
    let mut al = PortAllocator::new(0);
    let single = snat_to(PUBLIC, Some((65535, 65535)));
    let orig = tcp(INSIDE, 1, REMOTE, 443);
    let b = al
        .bind(&orig, None, Some(&single), &env(), &o, &mut t)
        .unwrap();
    assert_eq!(b.reply.dport, 65535);
    let b = al.bind(&orig, None, Some(&single), &env(), &o, &mut t);
    assert_eq!(b, Err(NatError::PortExhausted), "65535 is held now");
    let full = snat_to(PUBLIC, Some((0, 65535)));
    let b = al
        .bind(
            &tcp(INSIDE, 0, REMOTE, 443),
            None,
            Some(&full),
            &env(),
            &o,
            &mut t,
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
        &mut t,
    );
    assert_eq!(b, Err(NatError::PortExhausted));
}

/// Every SNAT port a worker allocates has a reply tuple that hashes back to it, for 1, 2,
/// 4 and 8 workers; and, with each worker consulting only its own pools, no two workers
/// ever pick the same reply tuple.
#[test]
fn snat_replies_hash_to_the_allocating_worker() {
    for workers in [1u16, 2, 4, 8] {
        let o = owner(workers);
        let mut tables: Vec<TupleSet> = (0..workers).map(|_| TupleSet::default()).collect();
        let mut als: Vec<PortAllocator> = (0..workers).map(PortAllocator::new).collect();
        let mut all = HashSet::new();
        let a = masq();
        for i in 0..2000u16 {
            // Many inside hosts, few remote endpoints: replies compete for ports.
            let inside = ip(198, 18, 1, (i % 50) as u8);
            let orig = tcp(inside, 1024 + i / 50, REMOTE, 443 + (i % 3));
            let w = usize::from(o.owner(&orig));
            let b = als[w]
                .bind(&orig, None, Some(&a), &env(), &o, &mut tables[w])
                .unwrap();
            assert_eq!(usize::from(o.owner(&b.reply)), w, "workers={workers} {b:?}");
            assert_eq!(b.steering, None);
            assert!(tables[w].insert(&b));
            assert!(all.insert(b.reply), "duplicate reply {b:?}");
        }
        let mut total = NatStats::default();
        als.iter().for_each(|al| total.add(al.stats()));
        assert_eq!(total.allocations, 2000);
        assert_eq!(total.exhausted, 0);
        assert_eq!(total.taken_checks, 0);
        // A word of 64 candidates holds about 64 / workers ports of ours: with few ports
        // in use, a search reads one or two words.
        let words: u64 = tables.iter().map(|t| t.pools.stats().words_scanned).sum();
        let per_search = words as f64 / total.ports_searched.max(1) as f64;
        assert!(
            per_search < 3.0,
            "workers={workers}: {per_search} words per search"
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
    let remote = tcp(INSIDE, 1, REMOTE, 443);
    for w in 0..4u16 {
        let expected = (lo..=hi)
            .filter(|&p| mine(&o, w, &remote, PUBLIC, p))
            .count();
        let mut t = TupleSet::default();
        let mut al = PortAllocator::new(w);
        let mut got = 0;
        for i in 0..200u16 {
            let orig = tcp(INSIDE, 30000 + i, REMOTE, 443);
            match al.bind(&orig, None, Some(&a), &env(), &o, &mut t) {
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
        // After the first refusal the pool remembers the exhausted search.
        assert!(t.pools.stats().memo_hits >= 200 - expected as u64 - 1);
    }
}

#[test]
fn max_taken_checks_bounds_a_dnat_port_search() {
    let o = owner(1);
    let target = ip(192, 0, 2, 10);
    let a = action(NatKind::Dnat, Some((target, target)), Some((8000, 8999)));
    let mut al = PortAllocator::new(0).with_max_taken_checks(16);
    let mut t = AllTaken::default();
    let r = al.bind(
        &tcp(REMOTE, 40000, PUBLIC, 8001),
        Some(&a),
        None,
        &env(),
        &o,
        &mut t,
    );
    assert_eq!(r, Err(NatError::PortExhausted));
    // One check of the kept port, then 16 candidates.
    assert_eq!(t.calls.get(), 17);
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
        let b = al
            .bind(&orig, Some(&a), None, &env(), &o, &mut TupleSet::default())
            .unwrap();
        assert_eq!(b.reply, tcp(target, 80, client, 40000 + i));
        assert!(b.is_dnat() && !b.is_snat());
        assert!(!b.port_held, "DNAT holds no source port");
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
    let mut t = TupleSet::default();
    let orig = tcp(REMOTE, 40000, PUBLIC, 8001);
    let b = al.bind(&orig, Some(&a), None, &env(), &o, &mut t).unwrap();
    assert_eq!(b.reply.sport, 8001);
    t.tuples.insert(tcp(target, 8001, REMOTE, 40000));
    let b = al.bind(&orig, Some(&a), None, &env(), &o, &mut t).unwrap();
    assert!(b.reply.sport == 8000 || b.reply.sport == 8002);
    let out = tcp(REMOTE, 40000, PUBLIC, 9999);
    let b = al.bind(&out, Some(&a), None, &env(), &o, &mut t).unwrap();
    assert_eq!(b.reply.sport, 8000);
    assert_eq!(
        al.bind(&orig, Some(&a), None, &env(), &o, &mut AllTaken::default()),
        Err(NatError::PortExhausted)
    );
    // `dnat to ADDR` without ports keeps the destination port.
    let no_port = action(NatKind::Dnat, Some((target, target)), None);
    let b = al
        .bind(&out, Some(&no_port), None, &env(), &o, &mut t)
        .unwrap();
    assert_eq!(b.reply.sport, 9999);
}

#[test]
fn redirect_uses_the_ingress_address() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let mut t = TupleSet::default();
    let a = action(NatKind::Redirect, None, Some((3128, 3128)));
    let b = al
        .bind(
            &tcp(INSIDE, 40000, REMOTE, 80),
            Some(&a),
            None,
            &env(),
            &o,
            &mut t,
        )
        .unwrap();
    assert_eq!(b.reply, tcp(ip(198, 18, 0, 1), 3128, INSIDE, 40000));
    let e = NatEnv {
        ingress_addr: None,
        ..env()
    };
    assert_eq!(
        al.bind(&tcp(INSIDE, 1, REMOTE, 80), Some(&a), None, &e, &o, &mut t),
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
        .bind(
            &orig,
            Some(&d),
            Some(&masq()),
            &env(),
            &o,
            &mut TupleSet::default(),
        )
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
    let mut t = TupleSet::default();
    let x = tcp(INSIDE, 1, REMOTE, 2);
    assert_eq!(
        al.bind(&x, Some(&masq()), None, &env(), &o, &mut t),
        Err(NatError::WrongKind)
    );
    let d = action(NatKind::Dnat, Some((REMOTE, REMOTE)), None);
    assert_eq!(
        al.bind(&x, None, Some(&d), &env(), &o, &mut t),
        Err(NatError::WrongKind)
    );
}

#[test]
fn family_mismatch_is_no_address() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let mut t = TupleSet::default();
    let v6 = Addr::from_v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let x = tcp(INSIDE, 1, REMOTE, 2);
    assert_eq!(
        al.bind(&x, None, Some(&snat_to(v6, None)), &env(), &o, &mut t),
        Err(NatError::NoAddress)
    );
    let mixed = action(NatKind::Snat, Some((PUBLIC, v6)), None);
    assert_eq!(
        al.bind(&x, None, Some(&mixed), &env(), &o, &mut t),
        Err(NatError::NoAddress)
    );
}

#[test]
fn address_ranges_pick_by_source_hash() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let mut t = TupleSet::default();
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
                .bind(&orig, None, Some(&persistent), &env(), &o, &mut t)
                .unwrap();
            assert!(lo <= b.reply.dst && b.reply.dst <= hi);
            per_dst.insert(b.reply.dst);
            b.release(&mut t.pools);
            let b2 = al
                .bind(&orig, None, Some(&plain), &env(), &o, &mut t)
                .unwrap();
            assert!(lo <= b2.reply.dst && b2.reply.dst <= hi);
            b2.release(&mut t.pools);
            // Same connection, same choice.
            let b3 = al
                .bind(&orig, None, Some(&plain), &env(), &o, &mut t)
                .unwrap();
            assert_eq!(b2, b3);
            b3.release(&mut t.pools);
        }
        assert_eq!(per_dst.len(), 1, "persistent: one address per client");
        used.extend(per_dst);
    }
    assert!(used.len() > 5, "hash spreads clients: {used:?}");
    // A source already inside the range is kept.
    let orig = tcp(ip(198, 51, 100, 15), 40000, REMOTE, 443);
    let b = al
        .bind(&orig, None, Some(&plain), &env(), &o, &mut t)
        .unwrap();
    assert_eq!(b.reply.dst, orig.src);
}

proptest! {
    /// The address hash reads the address as two big-endian 8-byte words (the choice of
    /// address, and so every SNAT/DNAT range's choice, depends on it).
    #[test]
    fn address_hash_reads_two_big_endian_words(a in any::<[u8; 16]>(), seed in any::<u64>()) {
        let word = |b: &[u8]| b.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
        let want = mix64(mix64(seed ^ word(&a[..8])) ^ word(&a[8..]));
        prop_assert_eq!(hash_addr(Addr(a), seed), want);
    }
}

#[test]
fn remembered_destination_seed_picks_as_the_stateless_choice() {
    // The allocator keeps the last destination's seed: destinations that repeat, change
    // and come back (SNAT and DNAT, persistent or not) choose exactly what `pick_addr`
    // with the destination's own seed chooses.
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let mut t = TupleSet::default();
    let (lo, hi) = (ip(198, 51, 100, 10), ip(198, 51, 100, 73));
    let dsts = [1u8, 1, 2, 1, 3, 3, 2, 200, 1];
    let mut seen = HashSet::new();
    for persistent in [false, true] {
        let mut snat = action(NatKind::Snat, Some((lo, hi)), None);
        let mut dnat = action(NatKind::Dnat, Some((lo, hi)), None);
        snat.flags.persistent = persistent;
        dnat.flags.persistent = persistent;
        for (i, &d) in dsts.iter().cycle().take(90).enumerate() {
            let orig = tcp(ip(198, 18, 7, i as u8), 40000, ip(203, 0, 113, d), 443);
            let seed = if persistent { 0 } else { dst_seed(orig.dst) };
            let want = pick_addr((lo, hi), &orig, seed).unwrap();
            let b = al
                .bind(&orig, None, Some(&snat), &env(), &o, &mut t)
                .unwrap();
            assert_eq!(b.reply.dst, want, "snat {orig:?} persistent={persistent}");
            b.release(&mut t.pools);
            let b = al
                .bind(&orig, Some(&dnat), None, &env(), &o, &mut t)
                .unwrap();
            assert_eq!(b.reply.src, want, "dnat {orig:?} persistent={persistent}");
            seen.insert((persistent, want));
        }
    }
    assert!(seen.len() > 20, "the choices differ: {seen:?}");
}

#[test]
fn address_pick_covers_a_range_evenly_and_handles_wide_v6_ranges() {
    let (lo, hi) = (ip(198, 51, 100, 0), ip(198, 51, 100, 3));
    let mut count = [0u32; 4];
    for i in 0..4000u16 {
        let t = tcp(ip(198, 18, (i >> 8) as u8, i as u8), 1, REMOTE, 2);
        let a = pick_addr((lo, hi), &t, 0).unwrap();
        count[usize::from(a.to_v4().unwrap()[3])] += 1;
    }
    assert!(count.iter().all(|&c| (800..1200).contains(&c)), "{count:?}");
    // A /0 of IPv6: every address is in range, nothing overflows.
    let all = (Addr::from_v6([0; 16]), Addr::from_v6([0xff; 16]));
    let t6 = Tuple::new(
        Addr::from_v6([1; 16]),
        Addr::from_v6([2; 16]),
        proto::TCP,
        1,
        2,
    );
    assert!(pick_addr(all, &t6, dst_seed(t6.dst)).is_ok());
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
    let mut t = TupleSet::default();
    for i in 0..300 {
        let o2 = Tuple {
            sport: 5353 + i,
            ..orig
        };
        let b = al.bind(&o2, None, Some(&a), &env(), &o, &mut t).unwrap();
        assert!(a6(0x10) <= b.reply.dst && b.reply.dst <= a6(0x1f));
        assert_eq!(o.owner(&b.reply), w);
    }
}

#[test]
fn icmp_echo_translates_the_identifier_within_the_worker_slice() {
    let o = owner(4);
    let echo = |id| Tuple::new(INSIDE, REMOTE, proto::ICMP, id, id);
    let w = 2;
    let mut al = PortAllocator::new(w);
    let mut t = TupleSet::default();
    // Worker 2 of 4 owns ids 32768..=49151.
    let kept = al
        .bind(&echo(40000), None, Some(&masq()), &env(), &o, &mut t)
        .unwrap();
    assert_eq!(
        kept.reply,
        Tuple::new(REMOTE, PUBLIC, proto::ICMP, 40000, 40000)
    );
    assert!(kept.port_held);
    let moved = al
        .bind(&echo(7), None, Some(&masq()), &env(), &o, &mut t)
        .unwrap();
    assert!((32768..=49151).contains(&moved.reply.sport), "{moved:?}");
    assert_eq!(moved.reply.sport, moved.reply.dport);
    // ICMP owners hash addresses only: the reply may belong elsewhere -> steering.
    assert_eq!(moved.steering.is_some(), o.owner(&moved.reply) != w);
    // The same id again is taken now: another one.
    let again = al
        .bind(&echo(40000), None, Some(&masq()), &env(), &o, &mut t)
        .unwrap();
    assert_ne!(again.reply.sport, 40000);
}

#[test]
fn portless_protocols_translate_the_address_only() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let gre = Tuple::new(INSIDE, REMOTE, proto::GRE, 0, 0);
    let b = al
        .bind(
            &gre,
            None,
            Some(&masq()),
            &env(),
            &o,
            &mut TupleSet::default(),
        )
        .unwrap();
    assert_eq!(b.reply, Tuple::new(REMOTE, PUBLIC, proto::GRE, 0, 0));
    assert!(!b.port_held);
    assert_eq!(
        al.bind(
            &gre,
            None,
            Some(&masq()),
            &env(),
            &o,
            &mut AllTaken::default()
        ),
        Err(NatError::PortExhausted)
    );
}

#[test]
fn random_flags_skip_the_original_port() {
    let o = owner(1);
    let mut al = PortAllocator::new(0);
    let mut t = TupleSet::default();
    let mut a = masq();
    a.flags.fully_random = true;
    let moved = (0..20u16)
        .filter(|i| {
            let orig = tcp(INSIDE, 40000 + i, REMOTE, 443);
            al.bind(&orig, None, Some(&a), &env(), &o, &mut t)
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
fn seeds_change_the_choices() {
    let o = owner(1);
    let mut a = masq();
    a.flags.random = true;
    let choices = |seed| {
        let mut al = PortAllocator::with_seed(0, seed);
        let mut t = TupleSet::default();
        (0..8u16)
            .map(|i| {
                let orig = tcp(INSIDE, 40000 + i, REMOTE, 443);
                al.bind(&orig, None, Some(&a), &env(), &o, &mut t)
                    .unwrap()
                    .reply
                    .dport
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(choices(1), choices(1));
    assert_ne!(choices(1), choices(2));
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
                &mut TupleSet::default(),
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

/// The word masks agree with the owner function bit for bit, for IPv4 and IPv6, several
/// RETA sizes and worker counts, and arbitrary remote endpoints.
#[test]
fn mine_masks_match_the_owner_function() {
    let a6 = |x: u8| Addr::from_v6([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, x, 1]);
    // Replies with NAT port 0: (remote, public address, remote port).
    let replies = [
        Tuple::new(REMOTE, PUBLIC, proto::TCP, 443, 0),
        Tuple::new(ip(192, 0, 2, 77), PUBLIC, proto::UDP, 5, 0),
        Tuple::new(a6(1), a6(9), proto::UDP, 999, 0),
    ];
    for (reta, workers) in [(128usize, 4u16), (512, 3), (64, 8), (16, 2)] {
        let o = Owner::spread(&SYMMETRIC_RSS_KEY, reta, workers).unwrap();
        for w in 0..workers {
            let m = MineMasks::new(&o, w);
            for reply0 in &replies {
                let base = o.toeplitz().hash_tuple(reply0, true);
                for j in (0..1024).step_by(37) {
                    let mask = m.word(reply0.is_v4(), base, j);
                    for b in 0..64 {
                        let r = Tuple {
                            dport: (j * 64 + b) as u16,
                            ..*reply0
                        };
                        assert_eq!(mask >> b & 1 == 1, o.owner(&r) == w, "{r:?} w={w}");
                    }
                }
            }
        }
    }
}

proptest! {
    /// Random connections on 4 workers, each bound by its owner against its own table
    /// only: no two bindings share a reply tuple, and every reply hashes to its worker.
    #[test]
    fn reply_tuples_are_unique(conns in prop::collection::vec((0u8..16, 1024u16..1100, 0u8..4, 0u16..3), 1..300)) {
        let o = owner(4);
        let mut tables: Vec<TupleSet> = (0..4).map(|_| TupleSet::default()).collect();
        let mut als: Vec<PortAllocator> = (0..4).map(PortAllocator::new).collect();
        let a = snat_to(PUBLIC, Some((20000, 20255)));
        let mut all = HashSet::new();
        for (h, sport, r, dp) in conns {
            let orig = tcp(ip(198, 18, 3, h), sport, ip(203, 0, 113, r), 80 + dp);
            let w = usize::from(o.owner(&orig));
            if tables[w].tuples.contains(&orig) {
                continue; // the same connection again: a conntrack hit, not a new binding
            }
            match als[w].bind(&orig, None, Some(&a), &env(), &o, &mut tables[w]) {
                Ok(b) => {
                    prop_assert_eq!(usize::from(o.owner(&b.reply)), w);
                    prop_assert!(tables[w].insert(&b));
                    prop_assert!(all.insert(b.reply), "duplicate {:?}", b);
                }
                Err(e) => prop_assert_eq!(e, NatError::PortExhausted),
            }
        }
    }

    /// The allocator against a model, on one worker of 1, 2 or 4, over random binds and
    /// releases with small ranges (so that exhaustion happens): it never hands out a
    /// port that is in use; every port it hands out hashes back to its worker;
    /// it refuses exactly when every port of the range whose reply hashes here is in use;
    /// a released port can be handed out again (when it is the only one left, it is the
    /// one handed out).
    #[test]
    fn allocator_matches_the_model(
        workers in prop_oneof![Just(1u16), Just(2), Just(4)],
        w_pick in 0u16..4,
        lo in 1024u16..1100,
        len in 1u16..40,
        ops in prop::collection::vec((any::<bool>(), 0u8..4, 0u8..3, any::<u16>(), any::<bool>()), 1..400),
    ) {
        let o = owner(workers);
        let w = w_pick % workers;
        let hi = lo + len;
        let mut al = PortAllocator::new(w);
        let mut t = TupleSet::default();
        let a = action(NatKind::Snat, Some((PUBLIC, ip(198, 51, 100, 2))), Some((lo, hi)));
        let mut model: BTreeSet<(Addr, u16)> = BTreeSet::new();
        let mut live: Vec<Binding> = Vec::new();
        for (bind, r, dp, x, random) in ops {
            if !bind && !live.is_empty() {
                let b = live.swap_remove(usize::from(x) % live.len());
                prop_assert!(model.remove(&(b.reply.dst, b.reply.dport)));
                t.remove(&b);
                continue;
            }
            let remote = ip(203, 0, 113, r);
            let mut orig = tcp(ip(198, 18, 4, (x >> 8) as u8), 1024 + (x % 200), remote, 80 + u16::from(dp));
            // Only tuples this worker owns reach it.
            while o.owner(&orig) != w {
                orig.sport = orig.sport.wrapping_add(1);
            }
            if t.tuples.contains(&orig) {
                continue;
            }
            let mut act = a;
            act.flags.random = random;
            match al.bind(&orig, None, Some(&act), &env(), &o, &mut t) {
                Ok(b) => {
                    let port = (b.reply.dst, b.reply.dport);
                    prop_assert!((lo..=hi).contains(&port.1));
                    prop_assert!(model.insert(port), "handed out a port in use: {:?}", b);
                    prop_assert_eq!(o.owner(&b.reply), w);
                    prop_assert!(b.port_held);
                    prop_assert!(t.insert(&b));
                    live.push(b);
                }
                Err(e) => {
                    prop_assert_eq!(e, NatError::PortExhausted);
                    // The address `orig` would get (by source hash), all of its ports
                    // that hash here in use.
                    let addr = pick_addr((PUBLIC, ip(198, 51, 100, 2)), &orig, dst_seed(orig.dst)).unwrap();
                    for p in lo..=hi {
                        if mine(&o, w, &orig, addr, p) {
                            prop_assert!(model.contains(&(addr, p)), "refused with {:?}:{} free", addr, p);
                        }
                    }
                }
            }
        }
        // Releasing one port of an exhausted slice makes exactly that port available.
        if let Some(b) = live.first().copied() {
            let addr = b.reply.dst;
            let remote = tcp(INSIDE, 1, b.reply.src, b.reply.sport);
            let single = snat_to(addr, Some((lo, hi)));
            let mut filler = 0u16;
            loop {
                let orig = tcp(ip(198, 18, 5, (filler >> 8) as u8), 30000 + filler, remote.dst, remote.dport);
                filler += 1;
                if o.owner(&orig) != w || t.tuples.contains(&orig) {
                    continue;
                }
                match al.bind(&orig, None, Some(&single), &env(), &o, &mut t) {
                    Ok(f) => { prop_assert!(t.insert(&f)); }
                    Err(_) => break,
                }
            }
            t.remove(&b);
            let mut orig = tcp(ip(198, 18, 6, 1), 40000, remote.dst, remote.dport);
            while o.owner(&orig) != w {
                orig.sport += 1;
            }
            let again = al.bind(&orig, None, Some(&single), &env(), &o, &mut t).unwrap();
            prop_assert_eq!(again.reply.dport, b.reply.dport);
        }
    }
}
