use super::*;
use crate::conntrack::testutil::tcp4;
use crate::nat::alloc::pool_port;
use crate::wire::Addr;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYNACK: u8 = 0x12;
const PSHACK: u8 = 0x18;
const S: u64 = 1_000_000_000;

/// A masqueraded connection, 198.18.0.2:40000 -> 203.0.113.9:443 leaving as
/// 198.51.100.1:61000, established on table `a` by its handshake.
fn established(a: &mut Table) -> (FlowKey, FlowKey) {
    let syn = tcp4([198, 18, 0, 2], 40000, [203, 0, 113, 9], 443, SYN, 1000, 0);
    let orig = FlowKey::from_info(&syn, 0).unwrap();
    let mut reply = orig.inverse();
    reply.dst = Addr::from_v4([198, 51, 100, 1]);
    reply.dport = 61000;
    let id = a.insert(orig, reply, &syn, S).unwrap();
    let sa = tcp4(
        [203, 0, 113, 9],
        443,
        [198, 51, 100, 1],
        61000,
        SYNACK,
        5000,
        1001,
    );
    let ack = tcp4(
        [198, 18, 0, 2],
        40000,
        [203, 0, 113, 9],
        443,
        ACK,
        1001,
        5001,
    );
    a.update(id, Direction::Reply, &sa, 2 * S);
    a.update(id, Direction::Original, &ack, 3 * S);
    assert_eq!(a.tcp_state(id), Some(TcpState::Established));
    (orig, reply)
}

fn table() -> Table {
    Table::new(1024, Tunables::default(), 7)
}

#[test]
fn a_synced_connection_continues_on_the_peer() {
    let mut a = table();
    let (orig, reply) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let s = Synced::from_snapshot(&a.snapshot(id, 3 * S).unwrap());
    assert!(s.tcp_window.is_some());

    let mut b = table();
    let got = b.apply_synced(&s, false, 10 * S).unwrap();
    let SyncApplied::Inserted(bid) = got else {
        panic!("{got:?}")
    };
    // Both tuples are indexed: replies to the NAT address find the entry.
    assert_eq!(b.lookup(&orig), Some((bid, Direction::Original)));
    assert_eq!(b.lookup(&reply), Some((bid, Direction::Reply)));
    let st = b.status(bid).unwrap();
    let want = SRC_NAT | SYNCED | ASSURED | SEEN_REPLY;
    assert_eq!(st & (want | DST_NAT), want);
    // No event: the daemon would send it back.
    assert_eq!(b.pending_events(), 0);
    // The NAT port is held in the peer's pools, so its own connections never take it.
    let (k, p) = pool_port(&reply.dst, reply.proto, reply.dport);
    assert!(b.port_pools().is_held(&k, p));
    // The next segments are in window on the peer (the window came along).
    let data = tcp4(
        [203, 0, 113, 9],
        443,
        [198, 51, 100, 1],
        61000,
        PSHACK,
        5001,
        1001,
    );
    let out = b.update(bid, Direction::Reply, &data, 11 * S);
    assert!(
        matches!(
            out,
            Outcome::Tracked {
                ct: CtState::Established,
                ..
            }
        ),
        "{out:?}"
    );
    // The snapshot says the same as the origin's (tuples, state, window, mark).
    let sa = a.snapshot(id, 3 * S).unwrap();
    let sb = b.snapshot(bid, 10 * S).unwrap();
    assert_eq!(
        (sa.orig, sa.reply, sa.tcp_state),
        (sb.orig, sb.reply, sb.tcp_state)
    );
}

#[test]
fn update_overwrites_destroy_removes_and_releases_the_port() {
    let mut a = table();
    let (orig, reply) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let mut s = Synced::from_snapshot(&a.snapshot(id, 3 * S).unwrap());
    let mut b = table();
    let SyncApplied::Inserted(bid) = b.apply_synced(&s, false, S).unwrap() else {
        panic!()
    };
    s.tcp_state = Some(TcpState::FinWait);
    s.mark = 42;
    s.timeout_s = Some(100);
    assert_eq!(b.apply_synced(&s, false, S), Ok(SyncApplied::Updated(bid)));
    assert_eq!(b.tcp_state(bid), Some(TcpState::FinWait));
    assert_eq!(b.mark(bid), Some(42));
    assert!(b.timeout_ns(bid, S).unwrap() <= 100 * S + TICK_NS);
    assert_eq!(b.len(), 1);
    // Same original tuple, another binding: refused.
    let mut other = s;
    other.reply.dport = 61001;
    assert_eq!(b.apply_synced(&other, false, S), Err(InsertError::Clash));
    assert!(b.remove_synced(&orig, 2 * S));
    assert!(b.is_empty());
    assert!(!b.remove_synced(&orig, 2 * S));
    let (k, p) = pool_port(&reply.dst, reply.proto, reply.dport);
    assert!(!b.port_pools().is_held(&k, p));
}

#[test]
fn adopted_entries_are_ours_and_get_the_state_timeout() {
    let mut a = table();
    let (orig, _) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let mut s = Synced::from_snapshot(&a.snapshot(id, 3 * S).unwrap());
    s.timeout_s = None;
    let mut b = table();
    let SyncApplied::Inserted(bid) = b.apply_synced(&s, true, S).unwrap() else {
        panic!()
    };
    assert_eq!(b.status(bid).unwrap() & SYNCED, 0);
    let est = u64::from(Tunables::default().tcp[TcpState::Established as usize]);
    let left = b.timeout_ns(bid, S).unwrap();
    assert!(left >= est * S && left <= est * S + TICK_NS, "{left}");
}

/// Takeover after the connection moved on: the primary's last event carried the window
/// of the handshake, then data flowed both ways without events. The adopted entry takes
/// the next segments (which acknowledge data the copy never saw) as established, keeps
/// its NAT binding, and a segment far outside any window is still invalid afterwards.
#[test]
fn an_adopted_connection_continues_after_data_its_synced_window_never_saw() {
    use crate::conntrack::testutil::tcp_data;
    let mut a = table();
    let (orig, reply) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let s = Synced::from_snapshot(&a.snapshot(id, 3 * S).unwrap());
    let (c, srv, nat) = (
        Addr::from_v4([198, 18, 0, 2]),
        Addr::from_v4([203, 0, 113, 9]),
        Addr::from_v4([198, 51, 100, 1]),
    );
    // 300 lines of 10 bytes each way on the primary, no events.
    let events = a.pending_events();
    for i in 0..300u32 {
        let q = tcp_data(c, 40000, srv, 443, PSHACK, 1001 + 10 * i, 5001 + 10 * i, 10);
        let r = tcp_data(
            srv,
            443,
            nat,
            61000,
            PSHACK,
            5001 + 10 * i,
            1011 + 10 * i,
            10,
        );
        a.update(id, Direction::Original, &q, 4 * S);
        a.update(id, Direction::Reply, &r, 4 * S);
    }
    assert_eq!(
        a.pending_events(),
        events,
        "the primary sent nothing after the handshake"
    );
    let mut b = table();
    let SyncApplied::Inserted(bid) = b.apply_synced(&s, true, 5 * S).unwrap() else {
        panic!()
    };
    // The client's next line acknowledges 3000 bytes of the server's the copy never saw;
    // the server's answer follows.
    let q = tcp_data(c, 40000, srv, 443, PSHACK, 4001, 8001, 10);
    let r = tcp_data(srv, 443, nat, 61000, PSHACK, 8001, 4011, 10);
    for (dir, seg) in [(Direction::Original, q), (Direction::Reply, r)] {
        let out = b.update(bid, dir, &seg, 6 * S);
        let ok = matches!(
            out,
            Outcome::Tracked {
                ct: CtState::Established,
                ..
            }
        );
        assert!(ok, "{dir:?}: {out:?}");
    }
    assert_eq!(
        b.lookup(&reply),
        Some((bid, Direction::Reply)),
        "same binding"
    );
    // Re-seeded, not disabled: a segment 1 GB ahead is out of window.
    let far = tcp_data(c, 40000, srv, 443, PSHACK, 4011 + (1 << 30), 8011, 10);
    assert!(matches!(
        b.update(bid, Direction::Original, &far, 7 * S),
        Outcome::Invalid(_)
    ));
    // The peer's copy (not adopted) keeps the synced window as it came.
    let mut c2 = table();
    let SyncApplied::Inserted(cid) = c2.apply_synced(&s, false, 5 * S).unwrap() else {
        panic!()
    };
    assert_eq!(
        c2.snapshot(cid, 5 * S).unwrap().tcp_window,
        s.tcp_window,
        "a cache copy is not re-seeded"
    );
}

/// A packet picked up before the commit chose another NAT port; the commit replaces that
/// entry with the synced one (the server knows the synced binding), a plain apply refuses.
#[test]
fn a_takeover_commit_replaces_an_entry_picked_up_early_with_another_binding() {
    let mut a = table();
    let (orig, reply) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let s = Synced::from_snapshot(&a.snapshot(id, 3 * S).unwrap());
    let mut b = table();
    let early = tcp4(
        [198, 18, 0, 2],
        40000,
        [203, 0, 113, 9],
        443,
        ACK,
        1001,
        5001,
    );
    let mut other = reply;
    other.dport = 61001;
    let eid = b.insert(orig, other, &early, S).unwrap();
    assert_eq!(b.apply_synced(&s, false, 2 * S), Err(InsertError::Clash));
    let got = b.apply_synced(&s, true, 2 * S).unwrap();
    let SyncApplied::Inserted(bid) = got else {
        panic!("{got:?}")
    };
    assert!(!b.contains(eid) || eid == bid);
    assert_eq!(b.len(), 1);
    assert_eq!(b.lookup(&orig), Some((bid, Direction::Original)));
    assert_eq!(b.lookup(&reply), Some((bid, Direction::Reply)));
    assert_eq!(b.lookup(&other), None, "the early binding is gone");
    let (k, p) = pool_port(&other.dst, other.proto, other.dport);
    assert!(!b.port_pools().is_held(&k, p), "its port released");
    let (k, p) = pool_port(&reply.dst, reply.proto, reply.dport);
    assert!(b.port_pools().is_held(&k, p), "the synced port held");
}

#[test]
fn ct_entry_form_converts_back() {
    let mut a = table();
    let (orig, _) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let snap = a.snapshot(id, 3 * S).unwrap();
    let e = snap.to_ct_entry(0);
    assert_eq!(
        Synced::from_ct_entry(&e).unwrap(),
        Synced::from_snapshot(&snap)
    );
    let mut bad = e;
    bad.state = Some("BOGUS".into());
    assert_eq!(
        Synced::from_ct_entry(&bad).unwrap_err().field.as_deref(),
        Some("state")
    );
}

/// Active/active (docs/ha.md, "Active/active NAT port slices"): node 2 masqueraded a
/// connection to source port 61000, node 1 holds its synced copy; node 1 takes over
/// (the commit adopts it). The peer's port stays held in node 1's pools, node 1's own
/// new connections to the same server use only its slice of the range, and even a box
/// with the whole range (one node) never picks the held port.
#[test]
fn an_active_active_takeover_keeps_the_peers_port_held_and_new_ports_in_its_slice() {
    use crate::nat::{
        CtNat, NatAction, NatEnv, NatError, NatFlags, NatKind, NatRange, NodeSlice, Owner,
        PortAllocator, SYMMETRIC_RSS_KEY,
    };
    let mut a = table();
    let (orig, reply) = established(&mut a);
    let (id, _) = a.lookup(&orig).unwrap();
    let s = Synced::from_snapshot(&a.snapshot(id, 3 * S).unwrap());
    let mut b = table();
    assert!(matches!(
        b.apply_synced(&s, false, S),
        Ok(SyncApplied::Inserted(_))
    ));
    assert!(matches!(
        b.apply_synced(&s, true, 2 * S),
        Ok(SyncApplied::Updated(_))
    ));
    let (k, p) = pool_port(&reply.dst, reply.proto, reply.dport);
    assert!(b.port_pools().is_held(&k, p), "the peer's port stays held");
    // 60990-61009 split in two: node 1 60990-60999, node 2 (the peer) 61000-61009.
    let masq = NatAction {
        kind: NatKind::Masquerade,
        range: NatRange {
            addr: None,
            ports: Some((60990, 61009)),
        },
        flags: NatFlags::default(),
    };
    let env = NatEnv {
        egress_addr: Some(reply.dst),
        ingress_addr: None,
    };
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 1).unwrap();
    let mut drain = |node: NodeSlice| {
        let mut al = PortAllocator::new(0).with_node_slice(node);
        let mut got = Vec::new();
        for i in 0..=255u8 {
            let syn = tcp4([198, 18, 1, i], 40000, [203, 0, 113, 9], 443, SYN, 1, 0);
            let key = FlowKey::from_info(&syn, 0).unwrap();
            let t = crate::nat::Tuple::from_key(&key);
            match al.bind(
                &t,
                None,
                Some(&masq),
                &env,
                &owner,
                &mut CtNat::new(&mut b, &key),
            ) {
                Ok(bd) => got.push(bd.reply.dport),
                Err(NatError::PortExhausted) => return got,
                Err(e) => panic!("{e:?}"),
            }
        }
        panic!("never exhausted")
    };
    let mut mine = drain(NodeSlice::new(1, 2).unwrap());
    mine.sort_unstable();
    assert_eq!(mine, (60990..=60999).collect::<Vec<u16>>());
    let mut rest = drain(NodeSlice::default());
    rest.sort_unstable();
    assert_eq!(
        rest,
        (61001..=61009).collect::<Vec<u16>>(),
        "61000 stays the peer's"
    );
}
