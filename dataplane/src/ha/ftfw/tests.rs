use super::*;
use crate::conntrack::FlowKey;
use crate::wire::{Addr, Family};

fn rec(i: u16) -> Record {
    Record::Destroy(FlowKey {
        src: Addr::from_v4([198, 18, 0, 1]),
        dst: Addr::from_v4([198, 18, 1, 1]),
        sport: i,
        dport: 80,
        zone: 0,
        proto: 6,
        family: Family::V4,
    })
}

/// `n` records, one datagram each.
fn send(s: &mut Sender, from: u16, n: u16) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| {
            assert!(s.push(rec(i)).is_none());
            s.flush().unwrap()
        })
        .collect()
}

fn feed(r: &mut Receiver, b: &[u8]) -> Received {
    r.on_datagram(&wire::decode(b).unwrap())
}

fn control(b: &[u8]) -> (Kind, Option<(u32, u32)>) {
    let d = wire::decode(b).unwrap();
    (d.kind, d.range)
}

#[test]
fn batches_fill_datagrams() {
    let mut s = Sender::new(1, 64);
    let mut out = Vec::new();
    for i in 0..200 {
        out.extend(s.push(rec(i)));
    }
    out.extend(s.flush());
    let per = (MAX_DATAGRAM - wire::HEADER_LEN) / wire::record_len(&rec(0));
    assert_eq!(out.len(), 200_usize.div_ceil(per));
    let mut n = 0;
    for (i, b) in out.iter().enumerate() {
        assert!(b.len() <= MAX_DATAGRAM);
        let d = wire::decode(b).unwrap();
        assert_eq!(d.seq, u32::try_from(i).unwrap());
        n += d.records.len();
    }
    assert_eq!(n, 200);
    assert_eq!(s.stats().records, 200);
    assert_eq!(s.queued(), out.len());
}

#[test]
fn a_larger_datagram_size_carries_more_records_each_and_the_receiver_takes_them() {
    // A v4 DESTROY is 18 bytes: (size - 20) / 18 per datagram (1 is clamped to 256).
    for (size, per) in [(MAX_DATAGRAM, 76), (16_000, 887), (65_000, 3610), (1, 13)] {
        assert_eq!(wire::record_len(&rec(0)), 18);
        let mut s = Sender::with_datagram(1, 8, size);
        let mut r = Receiver::new(2, 4);
        let mut out = Vec::new();
        for i in 0..3 * per {
            out.extend(s.push(rec(u16::try_from(i).unwrap())));
        }
        out.extend(s.flush());
        assert_eq!(out.len(), 3, "size {size}");
        let (lo, hi) = wire::DATAGRAM_RANGE;
        for (i, b) in out.iter().enumerate() {
            assert!(b.len() <= size.clamp(lo, hi), "size {size}: {}", b.len());
            let d = wire::decode(b).unwrap();
            assert_eq!(d.records.len(), per, "size {size}");
            assert_eq!(d.records[0], rec(u16::try_from(i * per).unwrap()));
            assert!(r.on_datagram(&d).deliver, "size {size}");
        }
        assert_eq!(r.stats().delivered, 3);
    }
}

#[test]
fn in_order_is_delivered_and_acked() {
    let mut s = Sender::new(1, 64);
    let mut r = Receiver::new(2, 4);
    let mut acks = Vec::new();
    for b in send(&mut s, 0, 8) {
        let got = feed(&mut r, &b);
        assert!(got.deliver && !got.want_resync);
        acks.extend(got.replies);
    }
    assert_eq!(acks.len(), 2);
    assert_eq!(control(&acks[1]), (Kind::Ack, Some((7, 7))));
    s.on_ack(7);
    assert_eq!(s.queued(), 0);
    assert_eq!(s.stats().acked, 8);
}

#[test]
fn hole_is_nacked_retransmitted_and_delivered_once() {
    let mut s = Sender::new(1, 64);
    let mut r = Receiver::new(2, 100);
    let d = send(&mut s, 0, 5);
    assert!(feed(&mut r, &d[0]).deliver);
    // 1 and 2 lost.
    let got = feed(&mut r, &d[3]);
    assert!(got.deliver);
    assert_eq!(got.replies.len(), 1);
    assert_eq!(control(&got.replies[0]), (Kind::Nack, Some((1, 2))));
    assert_eq!(r.missing(), 2);
    let again = s.on_nack(1, 2);
    assert_eq!(again, vec![d[1].clone(), d[2].clone()]);
    assert_eq!(s.stats().retransmitted, 2);
    for b in &again {
        assert!(feed(&mut r, b).deliver);
    }
    assert_eq!(r.missing(), 0);
    // A duplicate is not delivered again.
    assert!(!feed(&mut r, &d[1]).deliver);
    assert_eq!(r.stats().duplicates, 1);
    assert_eq!(r.stats().delivered, 4);
    // Ack stops at the first hole: none now, so everything up to 3.
    let alive = feed(&mut r, &s.alive());
    // The ALIVE says next is 5: 4 is missing (tail loss), NACKed.
    assert_eq!(control(&alive.replies[0]), (Kind::Nack, Some((4, 4))));
    assert_eq!(control(&alive.replies[1]), (Kind::Ack, Some((3, 3))));
}

#[test]
fn overflow_counts_loss_and_skips() {
    let mut s = Sender::new(1, 2);
    let mut r = Receiver::new(2, 100);
    let d = send(&mut s, 0, 4); // 0 and 1 pushed out of the queue
    assert_eq!(s.stats().lost_datagrams, 2);
    assert_eq!(s.stats().lost_records, 2);
    assert!(feed(&mut r, &d[3]).deliver); // first seen: expected starts at 3
    // Seen from a receiver that had 0 already: it NACKs 1..=2.
    let mut r2 = Receiver::new(3, 100);
    feed(&mut r2, &d[0]);
    let got = feed(&mut r2, &d[3]);
    assert_eq!(control(&got.replies[0]), (Kind::Nack, Some((1, 2))));
    let ans = s.on_nack(1, 2);
    assert_eq!(ans.len(), 2);
    assert_eq!(control(&ans[0]), (Kind::Skip, Some((1, 1))));
    assert_eq!(ans[1], d[2]);
    assert!(feed(&mut r2, &ans[1]).deliver);
    let skip = feed(&mut r2, &ans[0]);
    assert!(skip.want_resync);
    assert_eq!(r2.stats().lost_datagrams, 1);
    assert_eq!(r2.missing(), 0);
}

#[test]
fn peer_restart_resets_and_asks_for_resync() {
    let mut s = Sender::new(1, 8);
    let mut r = Receiver::new(2, 100);
    for b in send(&mut s, 0, 3) {
        feed(&mut r, &b);
    }
    let mut s2 = Sender::new(99, 8);
    let got = feed(&mut r, &send(&mut s2, 0, 1)[0]);
    assert!(got.deliver && got.want_resync && got.replies.is_empty());
    assert_eq!(r.peer_session(), Some(99));
    assert_eq!(r.stats().peer_restarts, 1);
}

#[test]
fn huge_gap_is_lost_not_tracked() {
    let mut r = Receiver::new(2, 100);
    let mk = |seq| wire::encode_data(1, seq, &[rec(0)]);
    feed(&mut r, &mk(0));
    let got = feed(&mut r, &mk(1 + u32::try_from(MAX_MISSING).unwrap() + 10));
    assert!(got.deliver && got.want_resync);
    assert_eq!(r.missing(), 0);
    assert_eq!(r.stats().lost_datagrams, MAX_MISSING as u64 + 10);
}

#[test]
fn sequence_wraps() {
    assert!(seq_before(u32::MAX, 0));
    assert!(!seq_before(0, u32::MAX));
    let mut r = Receiver::new(2, 100);
    let mk = |seq| wire::encode_data(1, seq, &[rec(0)]);
    feed(&mut r, &mk(u32::MAX - 1));
    let got = feed(&mut r, &mk(1));
    assert_eq!(control(&got.replies[0]), (Kind::Nack, Some((u32::MAX, 0))));
    assert_eq!(r.missing(), 2);
}
