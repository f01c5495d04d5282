//! State-machine replays: packet sequences through the table, asserting TCP state,
//! `ct state`, status bits and the timeout chosen (Linux 6.x behaviour).

use super::EventKind;
use super::table::{ASSURED, DST_NAT, SEEN_REPLY, SRC_NAT};
use super::testutil::*;
use super::*;
use crate::wire::IpInfo;

const A: [u8; 4] = [198, 18, 0, 1];
const B: [u8; 4] = [198, 18, 0, 2];
const C: [u8; 4] = [198, 18, 0, 3];

/// The pipeline's conntrack step: look up; on a hit run the tracker; on a miss (or an
/// entry that went away) classify and insert with the plain inverse as reply tuple.
struct Sim {
    t: Table,
    now: u64,
}

impl Sim {
    fn new() -> Sim {
        Self::with(Tunables::default(), 1024)
    }

    fn with(tun: Tunables, cap: u32) -> Sim {
        Sim {
            t: Table::new(cap, tun, 0x5eed),
            now: 1_000 * S,
        }
    }

    fn pkt(&mut self, info: &IpInfo) -> (CtState, Option<EntryId>) {
        if let Some(key) = FlowKey::from_info(info, 0)
            && let Some((id, dir)) = self.t.lookup(&key)
        {
            match self.t.update(id, dir, info, self.now) {
                Outcome::Tracked { ct, destroyed, .. } => {
                    return (ct, (!destroyed).then_some(id));
                }
                Outcome::Invalid(_) => return (CtState::Invalid, Some(id)),
                Outcome::Gone => {}
            }
        }
        match self.t.classify_new(info, 0, self.now) {
            NewFlow::New(k) => match self.t.insert(k, k.inverse(), info, self.now) {
                Ok(id) => (CtState::New, Some(id)),
                Err(_) => (CtState::Invalid, None),
            },
            NewFlow::Related(id, _) => (CtState::Related, Some(id)),
            NewFlow::Invalid(_) => (CtState::Invalid, None),
            NewFlow::Untracked => (CtState::Untracked, None),
        }
    }

    fn state(&self, id: EntryId) -> TcpState {
        self.t.tcp_state(id).unwrap()
    }

    fn timeout_s(&self, id: EntryId) -> u64 {
        // Deadlines round up to the next 268 ms tick: whole seconds, as conntrack -L.
        self.t.timeout_ns(id, self.now).unwrap() / S
    }

    fn status(&self, id: EntryId) -> u8 {
        self.t.status(id).unwrap()
    }

    /// Client A:40000 -> server B:80 handshake; client ISN 1000, server ISN 5000.
    fn handshake(&mut self) -> EntryId {
        let (ct, id) = self.pkt(&tcp4(A, 40000, B, 80, SYN, 1000, 0));
        assert_eq!(ct, CtState::New);
        let id = id.unwrap();
        assert_eq!(self.state(id), TcpState::SynSent);
        assert_eq!(self.timeout_s(id), 120);
        let (ct, _) = self.pkt(&tcp4(B, 80, A, 40000, SYN | ACK, 5000, 1001));
        assert_eq!(ct, CtState::Established);
        assert_eq!(self.state(id), TcpState::SynRecv);
        assert_eq!(self.timeout_s(id), 60);
        assert_eq!(self.status(id) & ASSURED, 0);
        let (ct, _) = self.pkt(&tcp4(A, 40000, B, 80, ACK, 1001, 5001));
        assert_eq!(ct, CtState::Established);
        assert_eq!(self.state(id), TcpState::Established);
        assert_eq!(self.timeout_s(id), 432_000);
        assert_ne!(self.status(id) & ASSURED, 0);
        id
    }
}

#[test]
fn tcp_three_way_handshake() {
    let mut s = Sim::new();
    s.handshake();
    let st = s.t.stats();
    assert_eq!((st.insert, st.found, st.invalid), (1, 2, 0));
}

#[test]
fn tcp_data_unacknowledged_caps_timeout() {
    let mut s = Sim::new();
    let id = s.handshake();
    s.pkt(&tcp_data(
        A.into_addr(),
        40000,
        B.into_addr(),
        80,
        ACK | PSH,
        1001,
        5001,
        100,
    ));
    assert_eq!(s.timeout_s(id), 300);
    s.pkt(&tcp4(B, 80, A, 40000, ACK, 5001, 1101));
    assert_eq!(s.timeout_s(id), 432_000);
}

#[test]
fn tcp_simultaneous_open() {
    let mut s = Sim::new();
    let (ct, id) = s.pkt(&tcp4(A, 40000, B, 80, SYN, 1000, 0));
    let id = id.unwrap();
    assert_eq!(ct, CtState::New);
    let (ct, _) = s.pkt(&tcp4(B, 80, A, 40000, SYN, 5000, 0));
    assert_eq!(ct, CtState::Established);
    assert_eq!(s.state(id), TcpState::SynSent2);
    let (ct, _) = s.pkt(&tcp4(A, 40000, B, 80, SYN | ACK, 1000, 5001));
    assert_eq!(ct, CtState::Established);
    assert_eq!(s.state(id), TcpState::SynRecv);
    // The peer's SYN/ACK is ignored (sIG): state unchanged, still accepted.
    let (ct, _) = s.pkt(&tcp4(B, 80, A, 40000, SYN | ACK, 5000, 1001));
    assert_eq!(ct, CtState::Established);
    assert_eq!(s.state(id), TcpState::SynRecv);
    let (ct, _) = s.pkt(&tcp4(A, 40000, B, 80, ACK, 1001, 5001));
    assert_eq!(ct, CtState::Established);
    assert_eq!(s.state(id), TcpState::Established);
    assert_ne!(s.status(id) & ASSURED, 0);
}

#[test]
fn tcp_retransmitted_syn_does_not_refresh_timeout() {
    let mut s = Sim::new();
    let (_, id) = s.pkt(&tcp4(A, 40000, B, 80, SYN, 1000, 0));
    let id = id.unwrap();
    s.now += 10 * S;
    let (ct, again) = s.pkt(&tcp4(A, 40000, B, 80, SYN, 1000, 0));
    assert_eq!((ct, again), (CtState::New, Some(id)));
    assert_eq!(s.state(id), TcpState::SynSent);
    assert_eq!(s.timeout_s(id), 110);
    assert_eq!(s.t.len(), 1);
}

#[test]
fn tcp_rst_closes_established() {
    let mut s = Sim::new();
    let id = s.handshake();
    let (ct, _) = s.pkt(&tcp4(B, 80, A, 40000, RST | ACK, 5001, 1001));
    assert_eq!(ct, CtState::Established);
    assert_eq!(s.state(id), TcpState::Close);
    assert_eq!(s.timeout_s(id), 10);
}

#[test]
fn tcp_rst_answering_syn_deletes_entry() {
    let mut s = Sim::new();
    let (_, id) = s.pkt(&tcp4(A, 40000, B, 80, SYN, 1000, 0));
    let id = id.unwrap();
    let (ct, gone) = s.pkt(&tcp4(B, 80, A, 40000, RST | ACK, 0, 1001));
    assert_eq!(ct, CtState::Established);
    assert_eq!(gone, None);
    assert!(!s.t.contains(id));
    assert!(s.t.is_empty());
    let kinds: Vec<_> = s.t.take_events(10).map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::New, EventKind::Destroy]);
}

#[test]
fn tcp_out_of_window_rst_is_invalid() {
    let mut s = Sim::new();
    let id = s.handshake();
    let (ct, _) = s.pkt(&tcp4(B, 80, A, 40000, RST, 50_000_000, 0));
    assert_eq!(ct, CtState::Invalid);
    assert_eq!(s.state(id), TcpState::Established);
    assert_eq!(s.t.stats().invalid, 1);
}

#[test]
fn tcp_fin_both_ways_then_reopen() {
    let mut s = Sim::new();
    let id = s.handshake();
    let steps = [
        (
            tcp4(A, 40000, B, 80, FIN | ACK, 1001, 5001),
            TcpState::FinWait,
            120,
        ),
        (
            tcp4(B, 80, A, 40000, ACK, 5001, 1002),
            TcpState::CloseWait,
            60,
        ),
        (
            tcp4(B, 80, A, 40000, FIN | ACK, 5001, 1002),
            TcpState::LastAck,
            30,
        ),
        (
            tcp4(A, 40000, B, 80, ACK, 1002, 5002),
            TcpState::TimeWait,
            120,
        ),
    ];
    for (p, st, to) in steps {
        let (ct, _) = s.pkt(&p);
        assert_eq!(ct, CtState::Established, "{st:?}");
        assert_eq!(s.state(id), st);
        assert_eq!(s.timeout_s(id), to, "{st:?}");
    }
    // A new SYN on the same tuple in TIME_WAIT replaces the entry (Linux -NF_REPEAT).
    s.now += S;
    let (ct, new_id) = s.pkt(&tcp4(A, 40000, B, 80, SYN, 90_000, 0));
    assert_eq!(ct, CtState::New);
    let new_id = new_id.unwrap();
    assert_eq!(s.state(new_id), TcpState::SynSent);
    assert_eq!(s.t.len(), 1);
    assert_eq!(s.status(new_id) & (SEEN_REPLY | ASSURED), 0);
}

#[test]
fn tcp_stray_ack_with_loose_pickup() {
    let mut s = Sim::new();
    let (ct, id) = s.pkt(&tcp4(A, 40000, B, 80, ACK, 1001, 5001));
    let id = id.unwrap();
    assert_eq!(ct, CtState::New);
    assert_eq!(s.state(id), TcpState::Established);
    // No in-window ACK yet (window data lost): the 300 s max_retrans cap, as Linux.
    assert_eq!(s.timeout_s(id), 300);
    let (ct, _) = s.pkt(&tcp4(B, 80, A, 40000, ACK, 5001, 1001));
    assert_eq!(ct, CtState::Established);
    assert_eq!(s.status(id) & ASSURED, 0);
    assert_eq!(s.timeout_s(id), 300);
    let (ct, _) = s.pkt(&tcp4(A, 40000, B, 80, ACK, 1001, 5001));
    assert_eq!(ct, CtState::Established);
    assert_ne!(s.status(id) & ASSURED, 0);
    assert_eq!(s.timeout_s(id), 432_000);
}

#[test]
fn tcp_stray_ack_without_loose_is_invalid() {
    let tun = Tunables {
        tcp_loose: false,
        ..Tunables::default()
    };
    let mut s = Sim::with(tun, 16);
    let (ct, id) = s.pkt(&tcp4(A, 40000, B, 80, ACK, 1001, 5001));
    assert_eq!((ct, id), (CtState::Invalid, None));
    assert!(s.t.is_empty());
    assert_eq!(s.t.stats().invalid, 1);
}

#[test]
fn tcp_bad_flags_and_synack_without_syn_are_invalid() {
    let mut s = Sim::new();
    assert_eq!(
        s.pkt(&tcp4(A, 1, B, 2, SYN | FIN, 1, 0)).0,
        CtState::Invalid
    );
    assert_eq!(
        s.pkt(&tcp4(A, 1, B, 2, SYN | ACK, 1, 1)).0,
        CtState::Invalid
    );
    assert_eq!(
        s.pkt(&tcp4(A, 1, B, 2, FIN | ACK, 1, 1)).0,
        CtState::Invalid
    );
    assert!(s.t.is_empty());
    let id = s.handshake();
    // Xmas on an established connection: invalid, entry untouched.
    assert_eq!(
        s.pkt(&tcp4(A, 40000, B, 80, 0x3f, 1001, 5001)).0,
        CtState::Invalid
    );
    assert_eq!(s.state(id), TcpState::Established);
}

#[test]
fn udp_new_until_reply_then_stream() {
    let mut s = Sim::new();
    let q = udp4(A, 5000, B, 53);
    let r = udp4(B, 53, A, 5000);
    let (ct, id) = s.pkt(&q);
    let id = id.unwrap();
    assert_eq!(ct, CtState::New);
    assert_eq!(s.timeout_s(id), 30);
    assert_eq!(
        s.pkt(&q).0,
        CtState::New,
        "original direction stays NEW until a reply"
    );
    assert_eq!(s.pkt(&r).0, CtState::Established);
    assert_ne!(s.status(id) & SEEN_REPLY, 0);
    assert_eq!(s.timeout_s(id), 30);
    assert_eq!(s.pkt(&q).0, CtState::Established);
    assert_eq!(s.status(id) & ASSURED, 0, "within 2 s of the first packet");
    s.now += 3 * S;
    s.pkt(&q);
    assert_ne!(s.status(id) & ASSURED, 0);
    assert_eq!(s.timeout_s(id), 120);
    assert_eq!(s.t.counters_of(id, Direction::Original), Some((4, 4 * 128)));
    assert_eq!(s.t.counters_of(id, Direction::Reply), Some((1, 128)));
}

#[test]
fn icmp_echo_by_id() {
    let mut s = Sim::new();
    let (ct, id) = s.pkt(&echo4(A, B, true, 7));
    let id = id.unwrap();
    assert_eq!(ct, CtState::New);
    assert_eq!(s.timeout_s(id), 30);
    assert_eq!(s.pkt(&echo4(B, A, false, 7)).0, CtState::Established);
    // Another id is another flow; a reply nobody asked for is invalid.
    assert_eq!(s.pkt(&echo4(B, A, false, 8)).0, CtState::Invalid);
    assert_eq!(s.pkt(&echo4(A, B, true, 8)).0, CtState::New);
    assert_eq!(s.t.len(), 2);
}

#[test]
fn icmpv6_echo_and_neighbour_discovery() {
    let mut s = Sim::new();
    let (ct, id) = s.pkt(&echo6(v6(1), v6(2), true, 9));
    assert_eq!(ct, CtState::New);
    assert_eq!(s.timeout_s(id.unwrap()), 30);
    assert_eq!(
        s.pkt(&echo6(v6(2), v6(1), false, 9)).0,
        CtState::Established
    );
    let mut ns = echo6(v6(1), v6(2), true, 0);
    ns.l4 = Some(crate::wire::L4Info::IcmpOther {
        icmp_type: 135,
        code: 0,
    });
    assert_eq!(s.pkt(&ns).0, CtState::Untracked);
    assert_eq!(s.t.len(), 1);
}

#[test]
fn icmp_error_for_tracked_udp_is_related() {
    let mut s = Sim::new();
    let q = udp4(A, 5000, B, 53);
    let (_, id) = s.pkt(&q);
    let id = id.unwrap();
    let before = s.t.timeout_ns(id, s.now);
    // From the destination, and from a router (C) on the path: both RELATED.
    assert_eq!(s.pkt(&icmp_err4(B, A, &q)), (CtState::Related, Some(id)));
    assert_eq!(s.pkt(&icmp_err4(C, A, &q)), (CtState::Related, Some(id)));
    assert_eq!(s.t.timeout_ns(id, s.now), before, "errors do not refresh");
    assert_eq!(s.status(id) & SEEN_REPLY, 0);
    // Addressed to someone who did not send the quoted datagram: invalid.
    assert_eq!(s.pkt(&icmp_err4(B, C, &q)).0, CtState::Invalid);
    // Quoting an unknown flow: invalid, counted as `error`.
    let other = udp4(A, 6000, B, 53);
    assert_eq!(s.pkt(&icmp_err4(B, A, &other)).0, CtState::Invalid);
    assert_eq!(s.t.stats().error, 2);
    // classify_new finds RELATED by itself too.
    assert_eq!(
        s.t.classify_new(&icmp_err4(B, A, &q), 0, s.now),
        NewFlow::Related(id, Direction::Reply)
    );
}

#[test]
fn generic_protocol_tracked_by_addresses() {
    let mut s = Sim::new();
    let (ct, id) = s.pkt(&gre4(A, B));
    assert_eq!(ct, CtState::New);
    assert_eq!(s.timeout_s(id.unwrap()), 600);
    assert_eq!(s.pkt(&gre4(B, A)).0, CtState::Established);
    assert_eq!(s.pkt(&gre4(A, B)).0, CtState::Established);
}

#[test]
fn later_fragment_is_invalid() {
    let mut s = Sim::new();
    let mut p = udp4(A, 1, B, 2);
    p.l4 = None;
    assert_eq!(s.pkt(&p).0, CtState::Invalid);
}

#[test]
fn nat_reply_tuple_found_both_ways() {
    let mut t = Table::new(64, Tunables::default(), 1);
    let p = tcp4(A, 40000, B, 80, SYN, 1000, 0);
    let orig = FlowKey::from_info(&p, 0).unwrap();
    // SNAT A:40000 -> C:61000: replies come from B:80 to C:61000.
    let reply = FlowKey {
        dst: crate::wire::Addr::from_v4(C),
        dport: 61000,
        ..orig.inverse()
    };
    let id = t.insert(orig, reply, &p, 0).unwrap();
    assert_eq!(t.lookup(&orig), Some((id, Direction::Original)));
    assert_eq!(t.lookup(&reply), Some((id, Direction::Reply)));
    assert_eq!(t.lookup(&orig.inverse()), None);
    assert!(t.tuple_taken(&reply));
    let st = t.status(id).unwrap();
    assert_ne!(st & SRC_NAT, 0);
    assert_eq!(st & DST_NAT, 0);
    // A second flow may not reuse the translated tuple.
    let p2 = tcp4(C, 61000, B, 80, SYN, 1, 0);
    let k2 = FlowKey::from_info(&p2, 0).unwrap();
    assert_eq!(t.insert(k2, reply, &p2, 0), Err(InsertError::Clash));
    assert_eq!(t.stats().insert_failed, 1);
    // The reply (to the translated address) is tracked as the reply direction.
    let r = tcp4(B, 80, C, 61000, SYN | ACK, 5000, 1001);
    let (rid, dir) = t.lookup(&FlowKey::from_info(&r, 0).unwrap()).unwrap();
    assert_eq!((rid, dir), (id, Direction::Reply));
    assert!(matches!(
        t.update(rid, dir, &r, 1),
        Outcome::Tracked {
            ct: CtState::Established,
            ..
        }
    ));
    assert_eq!(t.tcp_state(id), Some(TcpState::SynRecv));
}

#[test]
fn table_full_early_drops_unassured_else_refuses() {
    let tun = Tunables {
        max: 4,
        ..Tunables::default()
    };
    let mut s = Sim::with(tun, 4);
    let mut ids = Vec::new();
    for p in 0..4 {
        ids.push(s.pkt(&udp4(A, 1000 + p, B, 53)).1.unwrap());
    }
    assert_eq!(s.t.len(), 4);
    // Fifth: one unassured entry is dropped to make room.
    assert_eq!(s.pkt(&udp4(A, 2000, B, 53)).0, CtState::New);
    assert_eq!(s.t.len(), 4);
    assert_eq!(s.t.stats().early_drop, 1);
    // Make every entry assured (reply, then traffic after 2 s): nothing to drop.
    let live: Vec<u16> = (1000..1004)
        .chain([2000])
        .filter(|&p| {
            let k = FlowKey::from_info(&udp4(A, p, B, 53), 0).unwrap();
            s.t.tuple_taken(&k)
        })
        .collect();
    assert_eq!(live.len(), 4);
    for &p in &live {
        s.pkt(&udp4(B, 53, A, p));
    }
    s.now += 3 * S;
    for &p in &live {
        s.pkt(&udp4(A, p, B, 53));
    }
    assert_eq!(s.pkt(&udp4(A, 3000, B, 53)).0, CtState::Invalid);
    let st = s.t.stats();
    assert_eq!((st.early_drop, st.drop), (1, 1));
    assert_eq!(s.t.counters().entries, 4);
    assert_eq!(s.t.counters().max, 4);
}

#[test]
fn set_max_shrinks_by_refusing() {
    let mut s = Sim::with(Tunables::default(), 8);
    for p in 0..4 {
        s.pkt(&echo4(A, B, true, p));
        s.pkt(&echo4(B, A, false, p));
    }
    assert!(s.t.set_max(9).is_err(), "above the allocated capacity");
    s.t.set_max(2).unwrap();
    // ICMP entries are never assured, so each new one early-drops an old one.
    assert_eq!(s.pkt(&echo4(A, B, true, 100)).0, CtState::New);
    assert_eq!(s.t.len(), 4);
    assert_eq!(s.t.tunables().max, 2);
}

#[test]
fn expiry_is_bounded_and_never_early() {
    let mut s = Sim::with(Tunables::default(), 2048);
    for p in 0..1000u16 {
        s.pkt(&udp4(A, p, B, 53));
    }
    let t0 = s.now;
    let mut total = 0;
    // Not before the 30 s deadline.
    for step in 0..30 {
        total += s.t.expire(t0 + step * S, 10_000);
    }
    assert_eq!(total, 0);
    assert_eq!(s.t.len(), 1000);
    // After it: at most `budget` steps per call.
    let later = t0 + 31 * S;
    let mut calls = 0;
    loop {
        let n = s.t.expire(later, 100);
        assert!(n <= 100);
        total += n;
        calls += 1;
        if s.t.is_empty() || calls > 1000 {
            break;
        }
    }
    assert_eq!(total, 1000);
    assert!(calls >= 10);
    assert_eq!(s.t.stats().expired, 1000);
    let destroys =
        s.t.take_events(5000)
            .filter(|e| e.kind == EventKind::Destroy)
            .count();
    // The ring holds 4096 events: 1000 NEW + 1000 DESTROY.
    assert_eq!(destroys, 1000);
}

#[test]
fn touched_entries_survive_and_shortened_timeouts_fire() {
    let mut s = Sim::new();
    let q = udp4(A, 5000, B, 53);
    let (_, id) = s.pkt(&q);
    let id = id.unwrap();
    let id2 = s.handshake();
    // Keep the UDP flow alive for 2 minutes with a packet every 20 s.
    for _ in 0..6 {
        s.now += 20 * S;
        s.t.expire(s.now, 1 << 20);
        s.pkt(&q);
    }
    assert!(s.t.contains(id));
    // Established (5 days) -> RST -> CLOSE (10 s): gone 11 s later, not in 5 days.
    s.pkt(&tcp4(B, 80, A, 40000, RST | ACK, 5001, 1001));
    s.now += 11 * S;
    s.t.expire(s.now, 1 << 20);
    assert!(!s.t.contains(id2));
    // Idle UDP: gone after 30 s.
    s.now += 31 * S;
    s.t.expire(s.now, 1 << 20);
    assert!(!s.t.contains(id));
    assert!(s.t.is_empty());
}

#[test]
fn expired_entry_is_a_miss_even_before_the_timer_runs() {
    let mut s = Sim::new();
    let q = udp4(A, 5000, B, 53);
    let (_, id) = s.pkt(&q);
    s.now += 40 * S;
    let (ct, id2) = s.pkt(&q);
    assert_eq!(ct, CtState::New);
    assert_eq!(s.t.len(), 1);
    assert_eq!(id, id2, "slot reused");
}

#[test]
fn events_new_update_destroy_and_overflow() {
    let mut t = Table::with_event_ring(16, Tunables::default(), 3, 3);
    let q = udp4(A, 5000, B, 53);
    let k = FlowKey::from_info(&q, 0).unwrap();
    let id = t.insert(k, k.inverse(), &q, 0).unwrap();
    t.update(id, Direction::Reply, &udp4(B, 53, A, 5000), 1);
    t.remove(id, 2);
    let q2 = udp4(A, 5001, B, 53);
    let k2 = FlowKey::from_info(&q2, 0).unwrap();
    t.insert(k2, k2.inverse(), &q2, 3).unwrap();
    let kinds: Vec<_> = t.take_events(10).map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::New, EventKind::Update, EventKind::Destroy]
    );
    assert_eq!(t.stats().events_dropped, 1);
}

#[test]
fn burst_lookup_matches_single_lookups() {
    let mut t = Table::new(4096, Tunables::default(), 9);
    let mut keys = Vec::new();
    for p in 0..100u16 {
        let q = udp4(A, p, B, 53);
        let k = FlowKey::from_info(&q, 0).unwrap();
        t.insert(k, k.inverse(), &q, 0).unwrap();
        keys.push(k);
        keys.push(k.inverse());
        keys.push(FlowKey {
            sport: 60000 + p,
            ..k
        });
    }
    let mut out = vec![None; keys.len()];
    t.lookup_burst(&keys, &mut out);
    for (k, o) in keys.iter().zip(&out) {
        assert_eq!(*o, t.lookup(k));
    }
    assert_eq!(out.iter().filter(|o| o.is_some()).count(), 200);
}

#[test]
fn index_fills_to_capacity_with_cuckoo_moves() {
    // 5000 entries = 10000 references in 2048 buckets of 8 (61 % load).
    let mut t = Table::new(5000, Tunables::default(), 11);
    for i in 0..5000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        let a = [198, 18, hi, lo];
        let q = udp4(a, 1, B, 2);
        let k = FlowKey::from_info(&q, 0).unwrap();
        t.insert(k, k.inverse(), &q, 0).unwrap();
    }
    assert_eq!(t.len(), 5000);
    for i in 0..5000u32 {
        let [_, _, hi, lo] = i.to_be_bytes();
        let a = [198, 18, hi, lo];
        let k = FlowKey::from_info(&udp4(a, 1, B, 2), 0).unwrap();
        assert_eq!(t.lookup(&k).map(|x| x.1), Some(Direction::Original));
        assert_eq!(t.lookup(&k.inverse()).map(|x| x.1), Some(Direction::Reply));
    }
    // Hot part (128) + side arrays (32 + 48) + two fast-path recipe lines (128) + the
    // index share.
    assert!(t.bytes_per_entry() >= 128 + 80 + 128);
    assert!(t.hot_bytes_per_entry() >= 128 && t.hot_bytes_per_entry() < 128 + 64);
    // 5000 entries: 2 * 5000 * 1.25 / 8 = 1563 buckets, rounded up to 2048.
    assert_eq!(t.memory(), 5000 * (128 + 80 + 128) + 2048 * 64);
}

trait IntoAddr {
    fn into_addr(self) -> crate::wire::Addr;
}

impl IntoAddr for [u8; 4] {
    fn into_addr(self) -> crate::wire::Addr {
        crate::wire::Addr::from_v4(self)
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Tcp {
            c: u8,
            s: u8,
            flags: u8,
            seq: u8,
            ack: u8,
            rev: bool,
        },
        Udp {
            c: u8,
            rev: bool,
        },
        Echo {
            c: u8,
            req: bool,
        },
        Err {
            c: u8,
        },
        Tick(u8),
        Expire(u8),
        Delete(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u8..2, any::<u8>(), any::<u8>(), any::<u8>(), any::<bool>())
                .prop_map(|(c, s, flags, seq, ack, rev)| Op::Tcp { c, s, flags, seq, ack, rev }),
            2 => (0u8..4, any::<bool>()).prop_map(|(c, rev)| Op::Udp { c, rev }),
            1 => (0u8..4, any::<bool>()).prop_map(|(c, req)| Op::Echo { c, req }),
            1 => (0u8..4).prop_map(|c| Op::Err { c }),
            1 => any::<u8>().prop_map(Op::Tick),
            1 => any::<u8>().prop_map(Op::Expire),
            1 => any::<u8>().prop_map(Op::Delete),
        ]
    }

    fn check_consistent(t: &Table) {
        let mut live = 0;
        for i in 0..t.capacity() {
            if !t.live_at(i) {
                continue;
            }
            live += 1;
            let id = EntryId(i);
            for dir in [Direction::Original, Direction::Reply] {
                let k = t.tuple(id, dir).unwrap();
                assert_eq!(t.lookup(&k).map(|x| x.0), Some(id));
            }
        }
        assert_eq!(live, t.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn random_sequences_never_panic_or_leak(ops in proptest::collection::vec(op(), 1..80)) {
            let tun = Tunables { max: 6, ..Tunables::default() };
            let mut s = Sim::with(tun, 8);
            for o in ops {
                match o {
                    Op::Tcp { c, s: sv, flags, seq, ack, rev } => {
                        let (cp, sp) = (1000 + u16::from(c), 80 + u16::from(sv));
                        let (seq, ack) = (u32::from(seq) * 100, u32::from(ack) * 100);
                        let p = if rev {
                            tcp4(B, sp, A, cp, flags, seq, ack)
                        } else {
                            tcp4(A, cp, B, sp, flags, seq, ack)
                        };
                        s.pkt(&p);
                    }
                    Op::Udp { c, rev } => {
                        let p = if rev { udp4(B, 53, A, u16::from(c)) } else { udp4(A, u16::from(c), B, 53) };
                        s.pkt(&p);
                    }
                    Op::Echo { c, req } => {
                        let p = if req { echo4(A, B, true, c.into()) } else { echo4(B, A, false, c.into()) };
                        s.pkt(&p);
                    }
                    Op::Err { c } => {
                        s.pkt(&icmp_err4(B, A, &udp4(A, u16::from(c), B, 53)));
                    }
                    Op::Tick(n) => s.now += u64::from(n) * S,
                    Op::Expire(b) => {
                        s.t.expire(s.now, usize::from(b));
                    }
                    Op::Delete(i) => {
                        s.t.remove(EntryId(u32::from(i) % 8), s.now);
                    }
                }
                check_consistent(&s.t);
            }
            // Everything expires eventually (5 days of established TCP at most).
            s.now += 6 * 24 * 3600 * S;
            while s.t.expire(s.now, 1000) > 0 {}
            s.t.expire(s.now, 1 << 16);
            prop_assert!(s.t.is_empty());
        }
    }
}

/// The same packet sequences through the Linux kernel (netns + nft `ct state` counters +
/// `conntrack -L`, driven by `kernel_replay.py`) and through the table, compared packet
/// by packet: `ct state`, entry count, TCP state, ASSURED, timeout (±2 s).
///
/// Needs root, `ip`, `nft`, `conntrack`, `python3`:
/// `cargo nextest run -p dataplane --no-default-features --run-ignored only kernel_agrees`
mod kernel {
    use super::*;
    use crate::wire::L4Info;
    use serde_json::{Value, json};

    struct P {
        info: IpInfo,
        json: Value,
    }

    const CL: &str = "198.18.0.1";
    const SV: &str = "198.18.0.2";

    fn t(client: bool, flags: u8, seq: u32, ack: u32, len: u16, port: u16) -> P {
        let (src, dst, sp, dp) = if client {
            (A, B, port, 80)
        } else {
            (B, A, 80, port)
        };
        let info = tcp_data(
            src.into_addr(),
            sp,
            dst.into_addr(),
            dp,
            flags,
            seq,
            ack,
            len,
        );
        let (s, d) = if client { (CL, SV) } else { (SV, CL) };
        P {
            info,
            json: json!({"src": s, "dst": d, "proto": "tcp", "sport": sp, "dport": dp,
                         "flags": flags, "seq": seq, "ack": ack, "len": len}),
        }
    }

    fn u(client: bool, port: u16) -> P {
        let (info, s, d, sp, dp) = if client {
            (udp4(A, port, B, 53), CL, SV, port, 53)
        } else {
            (udp4(B, 53, A, port), SV, CL, 53, port)
        };
        P {
            info,
            json: json!({"src": s, "dst": d, "proto": "udp", "sport": sp, "dport": dp}),
        }
    }

    fn port_unreachable(port: u16) -> P {
        let q = u(true, port);
        P {
            info: icmp_err4(B, A, &q.info),
            json: json!({"src": SV, "dst": CL, "proto": "icmp_err", "inner": q.json}),
        }
    }

    fn handshake(port: u16) -> Vec<P> {
        vec![
            t(true, SYN, 1000, 0, 0, port),
            t(false, SYN | ACK, 5000, 1001, 0, port),
            t(true, ACK, 1001, 5001, 0, port),
        ]
    }

    fn scenarios() -> Vec<(&'static str, Vec<P>)> {
        let mut full_close = handshake(41000);
        full_close.extend([
            t(true, ACK | PSH, 1001, 5001, 100, 41000),
            t(false, ACK, 5001, 1101, 0, 41000),
            t(true, FIN | ACK, 1101, 5001, 0, 41000),
            t(false, ACK, 5001, 1102, 0, 41000),
            t(false, FIN | ACK, 5001, 1102, 0, 41000),
            t(true, ACK, 1102, 5002, 0, 41000),
            t(true, SYN, 90_000, 0, 0, 41000),
        ]);
        let mut rst = handshake(41001);
        rst.push(t(false, RST | ACK, 5001, 1001, 0, 41001));
        let mut bad_rst = handshake(41002);
        bad_rst.push(t(false, RST, 50_000_000, 0, 0, 41002));
        bad_rst.push(t(true, SYN | FIN, 1001, 0, 0, 41002));
        vec![
            ("handshake, data, FIN both ways, reopen", full_close),
            (
                "simultaneous open",
                vec![
                    t(true, SYN, 1000, 0, 0, 41003),
                    t(false, SYN, 5000, 0, 0, 41003),
                    t(true, SYN | ACK, 1000, 5001, 0, 41003),
                    t(false, SYN | ACK, 5000, 1001, 0, 41003),
                    t(true, ACK, 1001, 5001, 0, 41003),
                ],
            ),
            (
                "retransmitted SYN",
                vec![
                    t(true, SYN, 1000, 0, 0, 41004),
                    t(true, SYN, 1000, 0, 0, 41004),
                ],
            ),
            ("RST after handshake", rst),
            ("out-of-window RST, bad flags", bad_rst),
            (
                "RST answering SYN",
                vec![
                    t(true, SYN, 1000, 0, 0, 41005),
                    t(false, RST | ACK, 0, 1001, 0, 41005),
                ],
            ),
            (
                "stray ACK, loose pickup",
                vec![
                    t(true, ACK, 1001, 5001, 0, 41006),
                    t(false, ACK, 5001, 1001, 0, 41006),
                    t(true, ACK, 1001, 5001, 0, 41006),
                ],
            ),
            (
                "SYN/ACK without SYN",
                vec![t(false, SYN | ACK, 5000, 1001, 0, 41007)],
            ),
            (
                "UDP, ICMP port unreachable, reply",
                vec![
                    u(true, 5353),
                    port_unreachable(5353),
                    u(true, 5353),
                    u(false, 5353),
                    u(true, 5353),
                ],
            ),
        ]
    }

    fn ct_name(c: CtState) -> &'static str {
        match c {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
            CtState::Untracked => "untracked",
        }
    }

    #[test]
    #[ignore = "needs root, ip, nft, conntrack and python3; see the module doc"]
    fn kernel_agrees() {
        let sc = scenarios();
        let input: Vec<Vec<Value>> = sc
            .iter()
            .map(|(_, ps)| ps.iter().map(|p| p.json.clone()).collect())
            .collect();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/conntrack/kernel_replay.py"
        );
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(serde_json::to_string(&input).unwrap().as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kernel_replay.py failed");
        let kernel: Vec<Vec<Value>> = serde_json::from_slice(&out.stdout).unwrap();
        let mut mismatches = Vec::new();
        for ((name, packets), kern) in sc.iter().zip(&kernel) {
            let mut s = Sim::new();
            for (i, (p, k)) in packets.iter().zip(kern).enumerate() {
                let (ct, _) = s.pkt(&p.info);
                let ours: Vec<_> = (s.t.iter_page(0, 10, &CtMatcher::default(), s.now).0)
                    .iter()
                    .map(|e| e.to_ct_entry(0))
                    .collect();
                let theirs = k["entries"].as_array().unwrap();
                let mut diff = Vec::new();
                if k["ct"] != ct_name(ct) {
                    diff.push(format!("ct state kernel {} ours {}", k["ct"], ct_name(ct)));
                }
                if theirs.len() != ours.len() {
                    diff.push(format!(
                        "entries kernel {} ours {}",
                        theirs.len(),
                        ours.len()
                    ));
                } else if let (Some(ke), Some(oe)) = (theirs.first(), ours.first()) {
                    if ke["state"].as_str() != oe.state.as_deref() {
                        diff.push(format!("state kernel {} ours {:?}", ke["state"], oe.state));
                    }
                    let assured = oe.status.iter().any(|f| f == "ASSURED");
                    if ke["assured"] != assured {
                        diff.push(format!("assured kernel {} ours {assured}", ke["assured"]));
                    }
                    let kt = ke["timeout"].as_u64().unwrap();
                    if kt.abs_diff(oe.timeout) > 2 {
                        diff.push(format!("timeout kernel {kt} ours {}", oe.timeout));
                    }
                }
                let l4 = match p.info.l4 {
                    Some(L4Info::Tcp(t)) => format!("{:?}", t.flags),
                    other => format!("{other:?}"),
                };
                println!("{name} #{i} {l4}: kernel {k} / ours {ct:?} {ours:?}");
                if !diff.is_empty() {
                    mismatches.push(format!("{name} #{i} ({l4}): {}", diff.join("; ")));
                }
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }
}
