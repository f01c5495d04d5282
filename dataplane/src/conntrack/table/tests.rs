//! Tests of the table's internals: layout, the index's recorded buckets and marks, the
//! one-pass insert, early drop, the per-tick expiry budget, NAT ports and auto events.

use super::insert::InsertHints;
use super::wheel::EXPIRE_MIN;
use super::*;
use crate::conntrack::testutil::{S, udp4};
use crate::nat::pool::PoolKey;

#[test]
fn hot_entry_is_two_cache_lines() {
    assert_eq!(ENTRY_BYTES, 128);
    assert_eq!(COLD_BYTES, 32 + 48);
    assert_eq!(size_of::<Bucket>(), 64);
}

#[test]
fn tick_compare_wraps() {
    assert!(tick_le(u32::MAX, 0));
    assert!(!tick_le(0, u32::MAX));
    assert!(tick_le(5, 5));
}

fn flow(i: u32) -> IpInfo {
    let [_, a, b, c] = i.to_be_bytes();
    udp4(
        [198, 18 | (a & 1), b, c],
        1000 + (i % 7) as u16,
        [203, 0, 113, 9],
        53,
    )
}

fn key(info: &IpInfo) -> FlowKey {
    FlowKey::from_info(info, 0).unwrap()
}

/// Every live entry's references sit in the buckets the entry records.
fn assert_positions(t: &Table) {
    for idx in 0..t.capacity() {
        if !t.live_at(idx) {
            continue;
        }
        for dir in [Direction::Original, Direction::Reply] {
            let b = t.entries[idx as usize].pos[dir.index()] as usize;
            let r = Table::make_ref(idx, dir);
            assert!(
                t.buckets[b].refs.iter().any(|&x| x & !HINT == r),
                "entry {idx} {dir:?} not in bucket {b}"
            );
        }
    }
}

/// Removal uses the recorded buckets (no hashing): after filling the table to 80 % index
/// load (3276 entries on 1024 buckets: cuckoo moves happen) every reference is where its
/// entry says, and removing every entry leaves no reference anywhere.
#[test]
fn removal_by_recorded_bucket_empties_the_index() {
    let n = 3276u32;
    let mut t = Table::new(n, Tunables::default(), 7);
    let ids: Vec<EntryId> = (0..n)
        .map(|i| {
            let q = flow(i);
            t.insert(key(&q), key(&q).inverse(), &q, 0).unwrap()
        })
        .collect();
    assert_positions(&t);
    for id in &ids {
        assert_eq!(t.entries[id.0 as usize].kind(), KIND_UDP);
    }
    let used = t.buckets.iter().flat_map(|b| b.refs).filter(|&r| r != 0);
    assert_eq!(used.count(), 2 * n as usize);
    for id in ids {
        assert!(t.remove(id, 1));
    }
    assert!(t.buckets.iter().all(|b| b.refs.iter().all(|&r| r == 0)));
    assert!(t.is_empty());
}

/// A miss is reused by the insert that follows it; an insert in between makes it stale,
/// and the key is then looked up again (a clash is found, not a duplicate made).
#[test]
fn a_miss_is_reused_and_a_stale_one_is_checked_again() {
    let mut t = Table::new(64, Tunables::default(), 3);
    let q = flow(1);
    let k = key(&q);
    let miss = t.lookup_or_miss(&k).unwrap_err();
    let hints = InsertHints {
        miss: Some(miss),
        nat_port: false,
    };
    let id = t.insert_with(k, k.inverse(), &q, 0, hints).unwrap();
    assert_eq!(t.lookup(&k), Some((id, Direction::Original)));
    assert_eq!(
        t.lookup_or_miss(&k.inverse()).ok(),
        Some((id, Direction::Reply))
    );
    // The same miss again: stale (an entry was inserted since), so the key is checked.
    assert_eq!(
        t.insert_with(k, k.inverse(), &q, 0, hints),
        Err(InsertError::Clash)
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().insert_failed, 1);
}

/// The first packet's entry is written whole and linked in the wheel slot of its real
/// deadline (not the current one, to be re-linked later), with its counters.
#[test]
fn first_packet_entry_is_linked_at_its_deadline() {
    let mut t = Table::new(64, Tunables::default(), 3);
    let now = 1000 * S;
    let q = flow(2);
    let id = t.insert(key(&q), key(&q).inverse(), &q, now).unwrap();
    let e = t.entries[id.0 as usize];
    assert_eq!(e.deadline, deadline_of(now, 30));
    let slot = e.deadline as usize & (SLOTS - 1);
    assert_eq!(t.wheel[slot], id.0);
    assert_eq!(
        t.counters_of(id, Direction::Original),
        Some((1, u64::from(q.ip_len)))
    );
    assert_eq!(t.timeout_ns(id, now).map(|n| n.div_ceil(S)), Some(31));
    // Expiry before the deadline visits nothing but the slots it passes.
    assert_eq!(t.expire(now + 29 * S, 1 << 20), 0);
    assert!(t.contains(id));
}

/// Makes flow `i` ASSURED (a reply, then traffic 3 s later).
fn assure(t: &mut Table, i: u32, now: u64) -> EntryId {
    let q = flow(i);
    let k = key(&q);
    let id = t.insert(k, k.inverse(), &q, now).unwrap();
    let [_, a, b, c] = i.to_be_bytes();
    let back = udp4(
        [203, 0, 113, 9],
        53,
        [198, 18 | (a & 1), b, c],
        1000 + (i % 7) as u16,
    );
    t.update(id, Direction::Reply, &back, now + S);
    t.update(id, Direction::Original, &q, now + 3 * S);
    assert_eq!(t.status(id).map(|s| s & ASSURED), Some(ASSURED));
    id
}

/// A SYN-flood-like stream of unreplied flows into a full table of ASSURED connections:
/// no ASSURED entry is ever evicted, flood entries evict each other, and the marks of
/// ASSURED references are cleared once read (later early drops read only flood entries).
#[test]
fn early_drop_never_evicts_assured_and_clears_stale_marks() {
    let cap = 512;
    let tun = Tunables {
        max: cap,
        ..Tunables::default()
    };
    let mut t = Table::new(cap, tun, 5);
    let now = 100 * S;
    let assured: Vec<EntryId> = (0..cap / 2).map(|i| assure(&mut t, i, now)).collect();
    let later = now + 4 * S;
    let mut refused = 0;
    for i in cap..cap + 20_000 {
        let q = flow(i);
        if t.insert(key(&q), key(&q).inverse(), &q, later).is_err() {
            refused += 1;
        }
        assert_eq!(t.len(), t.len().min(cap));
    }
    for id in &assured {
        assert_eq!(t.status(*id).map(|s| s & ASSURED), Some(ASSURED), "{id:?}");
    }
    let st = t.stats();
    assert!(st.early_drop > 15_000, "{st:?}");
    assert_eq!(
        st.early_drop + refused,
        20_000 - (cap as u64 - cap as u64 / 2)
    );
    // Every reference of an ASSURED entry that early drop read has lost its mark; a
    // reference still marked belongs to a not-assured entry or was never read.
    let stale = t
        .buckets
        .iter()
        .flat_map(|b| b.refs)
        .filter(|&r| r & HINT != 0)
        .filter(|&r| t.entries[Table::split_ref(r).0 as usize].status & ASSURED != 0)
        .count();
    assert!(stale < (cap / 8) as usize, "{stale} stale marks left");
    assert_positions(&t);
}

/// A full table with entries past their deadline (not yet reaped): an insert reaps one
/// instead of dropping a live connection.
#[test]
fn a_full_table_reaps_due_entries_before_dropping_live_ones() {
    let tun = Tunables {
        max: 8,
        udp: 1,
        ..Tunables::default()
    };
    let mut t = Table::new(8, tun, 5);
    for i in 0..8 {
        let q = flow(i);
        t.insert(key(&q), key(&q).inverse(), &q, 0).unwrap();
    }
    let q = flow(100);
    t.insert(key(&q), key(&q).inverse(), &q, 10 * S).unwrap();
    let st = t.stats();
    assert_eq!((st.early_drop, st.drop), (0, 0));
    assert!(st.expired >= 1);
    assert_eq!(u64::from(t.len()), 8 - st.expired + 1);
}

/// One worker at 40 000 new flows per second (400 per 10 ms tick) with a 1 s UDP
/// timeout: `expire_tick`'s budget follows the inserts and the table settles at about
/// rate x timeout; a fixed budget of `EXPIRE_MIN` per tick falls behind (due entries pile
/// up towards a full table).
#[test]
fn expire_tick_keeps_up_with_the_insert_rate() {
    let run = |adaptive: bool| {
        let cap = 1 << 17;
        let tun = Tunables {
            max: cap,
            udp: 1,
            events: 0,
            ..Tunables::default()
        };
        let mut t = Table::new(cap, tun, 9);
        let mut i = 0u32;
        let mut peak = 0;
        for tick in 0..1000u64 {
            let now = tick * 10_000_000;
            for _ in 0..400 {
                let q = flow(i);
                i += 1;
                let _ = t.insert(key(&q), key(&q).inverse(), &q, now);
            }
            if adaptive {
                t.expire_tick(now);
            } else {
                t.expire(now, EXPIRE_MIN);
            }
            peak = peak.max(t.len());
        }
        (t.stats(), peak)
    };
    let (st, peak) = run(true);
    assert_eq!((st.early_drop, st.drop), (0, 0), "{st:?}");
    // 40 000/s x (1 s + a tick of rounding + a tick of lag) at most.
    assert!(peak < 40_000 * 18 / 10, "peak {peak}");
    assert!(st.expired > 300_000, "{st:?}");
    let (st_fixed, peak_fixed) = run(false);
    assert!(
        peak_fixed > 2 * peak,
        "{st_fixed:?} peak {peak_fixed} vs {peak}"
    );
}

fn natted(t: &mut Table, i: u32, now: u64) -> (EntryId, PoolKey, u16) {
    let q = flow(i);
    let k = key(&q);
    let public = crate::wire::Addr::from_v4([198, 51, 100, 1]);
    let port = 20_000 + u16::try_from(i).unwrap();
    let pk = PoolKey {
        addr: public,
        proto: proto::UDP,
    };
    let s = t.port_pools_mut().slot(pk).unwrap();
    assert!(t.port_pools_mut().take(s, port));
    let reply = FlowKey {
        dst: public,
        dport: port,
        ..k.inverse()
    };
    let hints = InsertHints {
        miss: None,
        nat_port: true,
    };
    let id = t.insert_with(k, reply, &q, now, hints).unwrap();
    assert_eq!(
        t.status(id),
        Some(CONFIRMED | SRC_NAT),
        "PORT_HELD is private"
    );
    assert!(t.port_pools().is_held(&pk, port));
    (id, pk, port)
}

/// The port an SNAT entry holds goes back to the pools whatever ends the entry: removal,
/// expiry, early drop, and a refused insert.
#[test]
fn nat_ports_are_released_on_every_death() {
    let tun = Tunables {
        max: 4,
        ..Tunables::default()
    };
    let mut t = Table::new(4, tun, 1);
    let (id, pk, port) = natted(&mut t, 1, 0);
    assert!(t.remove(id, 1));
    assert!(!t.port_pools().is_held(&pk, port));
    let (_, pk, port) = natted(&mut t, 2, 0);
    t.expire(100 * S, 1 << 20);
    assert!(!t.port_pools().is_held(&pk, port));
    assert!(t.is_empty());
    // Four unassured entries fill the table; a fifth early-drops one of them.
    let held: Vec<u16> = (3..7).map(|i| natted(&mut t, i, 0).2).collect();
    natted(&mut t, 7, 0);
    assert_eq!(t.stats().early_drop, 1);
    let still = held
        .iter()
        .filter(|&&p| t.port_pools().is_held(&pk, p))
        .count();
    assert_eq!(still, 3);
    // A clash: the port handed to the refused insert is released at once.
    let q = flow(3);
    let s = t.port_pools_mut().slot(pk).unwrap();
    assert!(t.port_pools_mut().take(s, 999));
    let hints = InsertHints {
        miss: None,
        nat_port: true,
    };
    let clash = FlowKey {
        dst: pk.addr,
        dport: 999,
        ..key(&q).inverse()
    };
    assert_eq!(
        t.insert_with(key(&q), clash, &q, 0, hints),
        Err(InsertError::Clash)
    );
    assert!(!t.port_pools().is_held(&pk, 999));
    assert_eq!(t.port_pools().stats().bad_releases, 0);
}

/// `nf_conntrack_events` = 2: events are recorded until nobody has taken any for
/// `EVENT_IDLE_NS` (the ring is then emptied and nothing is copied), and again from the
/// next take on; 0 never records, 1 always does.
#[test]
fn auto_events_stop_without_a_taker_and_resume_with_one() {
    // Long timeouts: only NEW events in this test.
    let tun = Tunables {
        udp: 3600,
        ..Tunables::default()
    };
    let mut t = Table::new(64, tun, 1);
    let ins = |t: &mut Table, i: u32, now: u64| {
        let q = flow(i);
        t.insert(key(&q), key(&q).inverse(), &q, now).unwrap();
    };
    t.expire_tick(0);
    ins(&mut t, 1, 0);
    assert_eq!(t.pending_events(), 1);
    t.expire_tick(5 * S);
    ins(&mut t, 2, 5 * S);
    assert_eq!(t.pending_events(), 2);
    t.expire_tick(11 * S);
    assert_eq!(t.pending_events(), 0, "idle: ring emptied");
    ins(&mut t, 3, 11 * S);
    assert_eq!(t.pending_events(), 0);
    assert_eq!(t.stats().events_dropped, 0, "not recorded is not lost");
    assert_eq!(t.take_events(10).count(), 0);
    ins(&mut t, 4, 12 * S);
    assert_eq!(t.pending_events(), 1);
    // Taken every few seconds: stays on.
    for s in 13..40 {
        t.expire_tick(s * S);
        if s % 5 == 0 {
            t.take_events(10).for_each(drop);
        }
    }
    ins(&mut t, 5, 40 * S);
    assert_eq!(t.pending_events(), 1);

    let mut off = Table::new(8, Tunables::default(), 1);
    off.set_tunable("nf_conntrack_events", 0).unwrap();
    ins(&mut off, 1, 0);
    assert_eq!(off.pending_events(), 0);
    let mut on = Table::new(8, Tunables::default(), 1);
    on.set_tunable("nf_conntrack_events", 1).unwrap();
    on.expire_tick(0);
    on.expire_tick(60 * S);
    ins(&mut on, 1, 60 * S);
    assert_eq!(on.pending_events(), 1);
    assert!(on.set_tunable("nf_conntrack_events", 3).is_err());
}

#[test]
fn random_seeds_differ_and_give_different_indexes() {
    let (a, b) = (
        crate::conntrack::random_seed(),
        crate::conntrack::random_seed(),
    );
    assert_ne!(a, b);
    let q = flow(5);
    let place = |seed| {
        let mut t = Table::new(4096, Tunables::default(), seed);
        let id = t.insert(key(&q), key(&q).inverse(), &q, 0).unwrap();
        t.entries[id.0 as usize].pos
    };
    // Two random seeds put one key in the same two buckets with probability ~2^-18.
    assert_ne!(place(a), place(b));
    assert_eq!(place(a), place(a));
}

static HINTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_hint(_: *const u8) {
    HINTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The prefetch hint changes no result: the same inserts, expiry ticks and early drops
/// (a table that fills) give the same entry ids, counters and event sequence with and
/// without it, while the hint is given addresses (expiry's deferred deletions keep their
/// order).
#[test]
fn the_prefetch_hint_changes_no_result() {
    let run = |hint: Option<fn(*const u8)>| {
        let cap = 2048;
        let tun = Tunables {
            max: cap,
            udp: 1,
            events: 1,
            ..Tunables::default()
        };
        let mut t = Table::with_event_ring(cap, tun, 5, 1 << 16);
        if let Some(h) = hint {
            t.set_prefetch(h);
        }
        let (mut ids, mut events) = (Vec::new(), Vec::new());
        let mut i = 0u32;
        for tick in 0..60u64 {
            let now = tick * 50_000_000;
            for _ in 0..150 {
                let q = flow(i);
                i += 1;
                let miss = t.lookup_or_miss(&key(&q)).err();
                let hints = InsertHints {
                    miss,
                    nat_port: false,
                };
                ids.push(t.insert_with(key(&q), key(&q).inverse(), &q, now, hints));
            }
            t.expire_tick(now);
            events.extend(t.take_events(usize::MAX).map(|e| (e.kind, e.entry.id)));
        }
        assert_positions(&t);
        (ids, t.stats(), events, t.len())
    };
    let before = HINTS.load(std::sync::atomic::Ordering::Relaxed);
    let hinted = run(Some(count_hint));
    assert!(HINTS.load(std::sync::atomic::Ordering::Relaxed) > before);
    let plain = run(None);
    assert!(
        plain.1.expired > 1000 && plain.1.early_drop > 0,
        "{:?}",
        plain.1
    );
    assert_eq!(hinted, plain);
}
