#![allow(clippy::cast_possible_truncation)] // test data built from small lengths and counters
use super::reasm::{CHUNK, QUEUE_COST};
use super::testdata::{fragments, linux};
use super::*;
use crate::DropReason;
use crate::wire::{self, Addr, Family, Parsed, TRUST_ALL};
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

fn table(family: Family) -> ReasmTable {
    let limits = match family {
        Family::V4 => FragLimits::IPV4_DEFAULT,
        Family::V6 => FragLimits::IPV6_DEFAULT,
    };
    ReasmTable::new(family, limits).unwrap()
}

/// Pushes `frags` in order; the datagram the last one completes.
fn reassemble(t: &mut ReasmTable, frags: &[Vec<u8>], out: &mut DatagramBuf) -> Reassembled {
    let mut done = None;
    for (i, f) in frags.iter().enumerate() {
        match t.push(0, f, out).unwrap() {
            Outcome::Complete(r) => {
                assert_eq!(i, frags.len() - 1, "completed early");
                done = Some(r);
            }
            Outcome::Held => assert!(i < frags.len() - 1, "last fragment only held"),
            Outcome::NotFragment => panic!("fragment {i} seen as whole"),
        }
    }
    done.expect("complete")
}

/// The whole datagram Linux's `in:` train carries, reassembled by hand (the tests below
/// check the table against it).
fn linux_datagram(family: Family) -> (Vec<u8>, usize) {
    let mut t = table(family);
    let mut out = DatagramBuf::new();
    let prefix = if family == Family::V4 {
        "in: IP "
    } else {
        "in: IP6 "
    };
    let r = reassemble(&mut t, &linux(prefix), &mut out);
    (out.bytes()[..r.len].to_vec(), r.hdr_len)
}

/// Masquerade as the Linux router did (new source address) and forward (TTL - 1), on the
/// whole datagram with the wire rewrite functions the pipeline uses.
fn nat_and_forward(dgram: &mut [u8], new_src: Addr) {
    let mut frame = vec![0u8; 14];
    frame[12..14].copy_from_slice(if dgram[0] >> 4 == 4 {
        &[8, 0]
    } else {
        &[0x86, 0xdd]
    });
    frame.extend_from_slice(dgram);
    let Ok(Parsed::Ip(_, ip)) = wire::parse(&frame, &TRUST_ALL) else {
        panic!("reassembled datagram does not parse")
    };
    assert!(ip.l4.is_some());
    wire::rewrite::set_src_addr(&mut frame, &ip, new_src).unwrap();
    wire::rewrite::decrement_ttl(&mut frame, &ip).unwrap();
    dgram.copy_from_slice(&frame[14..]);
}

fn check_linux_forwarding(family: Family, new_src: Addr) {
    let (inp, outp) = match family {
        Family::V4 => ("in: IP ", "out: IP "),
        Family::V6 => ("in: IP6 ", "out: IP6 "),
    };
    let mut t = table(family);
    let mut buf = DatagramBuf::new();
    let mut r = reassemble(&mut t, &linux(inp), &mut buf);
    let hdr = if family == Family::V4 { 20 } else { 40 };
    assert_eq!((r.hdr_len, r.len), (hdr, hdr + 8 + 4000));
    let payload = &buf.bytes()[hdr + 8..r.len];
    assert!(
        payload
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((i * 7 + 3) & 0xff) as u8)
    );
    assert_eq!(r.geometry.n, 3);
    // Largest fragment on the wire: 1500 (IPv4), 40 + 8 + 1448 (IPv6).
    assert_eq!(
        r.geometry.max_size,
        if family == Family::V4 { 1500 } else { 1496 }
    );
    assert_eq!(t.stats().reasm_oks, 1);
    assert_eq!(t.stats().reasm_reqds, 3);
    assert!(t.is_empty());
    assert_eq!(t.mem(), 0);
    nat_and_forward(&mut buf.bytes_mut()[..r.len], new_src);
    let expected = linux(outp);
    if family == Family::V6 {
        // Linux picks a fresh IPv6 fragment id on output (`ipv6_select_ident`); IPv4
        // keeps the datagram's identification.
        r.geometry.ident = u32::from_be_bytes(expected[0][44..48].try_into().unwrap());
    }
    let pieces: Vec<Piece> = plan(&r, 1500).unwrap().collect();
    assert_eq!(pieces.len(), expected.len());
    for (piece, want) in pieces.iter().zip(&expected) {
        let mut b = [0u8; 1500];
        let n = write_fragment(buf.bytes(), &r, *piece, &mut b).unwrap();
        assert_eq!(&b[..n], &want[..], "fragment at {}", piece.offset);
    }
}

#[test]
fn linux_v4_train_refragments_byte_exact_after_masquerade() {
    check_linux_forwarding(Family::V4, Addr::from_v4([198, 51, 100, 254]));
}

#[test]
fn linux_v6_train_refragments_byte_exact_after_masquerade() {
    let mut a = [0u8; 16];
    a[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0x0b]);
    a[15] = 0xfe;
    check_linux_forwarding(Family::V6, Addr::from_v6(a));
}

#[test]
fn not_fragments_and_atomic_fragments_pass_through() {
    let (v4, _) = linux_datagram(Family::V4);
    let mut out = DatagramBuf::new();
    assert_eq!(
        table(Family::V4).push(0, &v4, &mut out),
        Ok(Outcome::NotFragment)
    );
    let (v6, _) = linux_datagram(Family::V6);
    let mut t = table(Family::V6);
    assert_eq!(t.push(0, &v6, &mut out), Ok(Outcome::NotFragment));
    // One fragment covering everything (offset 0, M clear): RFC 6946 atomic fragment.
    let atomic = fragments(Family::V6, &v6, 40, &[(v6.len() - 40) as u16], 9);
    assert_eq!(t.push(0, &atomic[0], &mut out), Ok(Outcome::NotFragment));
    assert_eq!(t.stats().reasm_reqds, 0);
}

#[test]
fn v4_overlap_drops_the_datagram_and_is_counted() {
    let (d, hl) = linux_datagram(Family::V4);
    let mut t = table(Family::V4);
    let mut out = DatagramBuf::new();
    let a = fragments(Family::V4, &d, hl, &[1480, 2960, 4008], 7);
    let b = fragments(Family::V4, &d, hl, &[1472, 2960, 4008], 7);
    assert_eq!(t.push(0, &a[0], &mut out), Ok(Outcome::Held));
    // [1472, 2960) overlaps [0, 1480) partly.
    assert_eq!(t.push(0, &b[1], &mut out), Err(FragDrop::Overlap));
    let s = t.stats();
    assert_eq!((s.reasm_overlaps, s.reasm_fails), (1, 1));
    // The held first fragment and the overlapping one.
    assert_eq!(s.drops[FragDrop::Overlap as usize], 2);
    assert!(t.is_empty());
    assert_eq!(t.mem(), 0);
    // The rest starts a new datagram that never completes without a first fragment.
    assert_eq!(t.push(0, &a[1], &mut out), Ok(Outcome::Held));
    assert_eq!(t.push(0, &a[2], &mut out), Ok(Outcome::Held));
    assert_eq!(t.len(), 1);
}

#[test]
fn duplicates_inside_a_run_are_dropped_alone_as_in_linux() {
    let (d, hl) = linux_datagram(Family::V4);
    let fine = fragments(Family::V4, &d, hl, &[16, 32, 4008], 7);
    let mid = fragments(Family::V4, &d, hl, &[8, 24, 4008], 7); // [8,24) as middle one
    let mut out = DatagramBuf::new();
    // In order: [0,16) [16,32) form one run, so [8,24) lies inside it: a duplicate.
    let mut t = table(Family::V4);
    t.push(0, &fine[0], &mut out).unwrap();
    t.push(0, &fine[1], &mut out).unwrap();
    assert_eq!(t.push(0, &mid[1], &mut out), Err(FragDrop::Duplicate));
    assert!(matches!(
        t.push(0, &fine[2], &mut out),
        Ok(Outcome::Complete(_))
    ));
    assert_eq!(&out.bytes()[..d.len()], &d[..]);
    // Reversed: [16,32) then [0,16) are two runs, so [8,24) overlaps: the datagram goes.
    let mut t = table(Family::V4);
    t.push(0, &fine[1], &mut out).unwrap();
    t.push(0, &fine[0], &mut out).unwrap();
    assert_eq!(t.push(0, &mid[1], &mut out), Err(FragDrop::Overlap));
    assert!(t.is_empty());
    // An exact duplicate keeps the datagram in both families.
    let (d6, hl6) = linux_datagram(Family::V6);
    let f6 = fragments(Family::V6, &d6, hl6, &[1448, 2896, 4008], 5);
    let mut t = table(Family::V6);
    t.push(0, &f6[1], &mut out).unwrap();
    assert_eq!(t.push(0, &f6[1], &mut out), Err(FragDrop::Duplicate));
    t.push(0, &f6[0], &mut out).unwrap();
    assert!(matches!(
        t.push(0, &f6[2], &mut out),
        Ok(Outcome::Complete(_))
    ));
    assert_eq!(&out.bytes()[..d6.len()], &d6[..]);
}

/// Sets an IPv6 fragment's payload length to `len` bytes after the fragment header
/// (truncating the packet to match).
fn v6_with_data_len(f: &[u8], len: usize) -> Vec<u8> {
    let mut g = f[..48 + len].to_vec();
    g[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    g
}

#[test]
fn malformed_fragments_follow_linux_per_family() {
    let (d6, hl6) = linux_datagram(Family::V6);
    let f6 = fragments(Family::V6, &d6, hl6, &[1448, 2896, 4008], 5);
    let mut out = DatagramBuf::new();
    let mut t = table(Family::V6);
    t.push(0, &f6[0], &mut out).unwrap();
    // Non-last fragment whose length is not a multiple of 8: the datagram is killed.
    assert_eq!(
        t.push(0, &v6_with_data_len(&f6[1], 1443), &mut out),
        Err(FragDrop::Malformed)
    );
    assert!(t.is_empty());
    assert_eq!(t.stats().drops[FragDrop::Malformed as usize], 2);
    // A second last fragment with another end: this fragment only.
    t.push(0, &f6[2], &mut out).unwrap();
    assert_eq!(
        t.push(0, &v6_with_data_len(&f6[2], 1104), &mut out),
        Err(FragDrop::Malformed)
    );
    // Data past the known end.
    let past = fragments(Family::V6, &d6, hl6, &[1448, 2896, 4008], 5);
    let mut longer = d6.clone();
    longer.extend_from_slice(&[0; 16]);
    let beyond = fragments(Family::V6, &longer, hl6, &[1448, 4016, 4024], 5);
    assert_eq!(t.push(0, &beyond[1], &mut out), Err(FragDrop::Malformed));
    assert_eq!(t.len(), 1);
    t.push(0, &past[0], &mut out).unwrap();
    assert!(matches!(
        t.push(0, &past[1], &mut out),
        Ok(Outcome::Complete(_))
    ));
    assert_eq!(&out.bytes()[..d6.len()], &d6[..]);

    // IPv4: a non-last fragment of 1443 bytes is trimmed to 1440, as Linux does.
    let (d, hl) = linux_datagram(Family::V4);
    let mut t = table(Family::V4);
    let f = fragments(Family::V4, &d, hl, &[1443, 4008], 7);
    let mut first = f[0].clone();
    first[6] |= 0x20; // keep MF
    let rest = fragments(Family::V4, &d, hl, &[1440, 4008], 7);
    t.push(0, &first, &mut out).unwrap();
    assert!(matches!(
        t.push(0, &rest[1], &mut out),
        Ok(Outcome::Complete(_))
    ));
    assert_eq!(&out.bytes()[..d.len()], &d[..]);
    // IPv4: a second last fragment with another end kills the datagram.
    let mut t = table(Family::V4);
    let f = fragments(Family::V4, &d, hl, &[1480, 4008], 7);
    let g = fragments(Family::V4, &d, hl, &[1480, 4000, 4008], 7);
    t.push(0, &f[1], &mut out).unwrap();
    let mut g_last = g[1].clone();
    g_last[6] &= !0x20;
    wire::ipv4::Ipv4Packet::new_unchecked(&mut g_last[..]).fill_checksum();
    assert_eq!(t.push(0, &g_last, &mut out), Err(FragDrop::Malformed));
    assert!(t.is_empty());
    assert_eq!(t.stats().reasm_fails, 1);
}

#[test]
fn oversize_fragment_is_refused() {
    let (d, hl) = linux_datagram(Family::V4);
    let f = fragments(Family::V4, &d, hl, &[1480, 4008], 7);
    let mut last = f[1].clone();
    // Offset 65528 + 2528 bytes of data: past 65535.
    let mut ip = wire::ipv4::Ipv4Packet::new_unchecked(&mut last[..]);
    ip.set_frag(false, false, 65528);
    ip.fill_checksum();
    let mut t = table(Family::V4);
    let mut out = DatagramBuf::new();
    assert_eq!(t.push(0, &last, &mut out), Err(FragDrop::Oversize));
    assert!(t.is_empty());
    assert_eq!(t.mem(), 0);
}

#[test]
fn datagrams_time_out_after_ipfrag_time() {
    let (d, hl) = linux_datagram(Family::V4);
    let f = fragments(Family::V4, &d, hl, &[1480, 2960, 4008], 7);
    let mut t = table(Family::V4);
    let mut out = DatagramBuf::new();
    t.push(0, &f[0], &mut out).unwrap();
    t.push(10 * SEC, &f[1], &mut out).unwrap();
    assert_eq!(t.expire(30 * SEC - 1), 0);
    assert_eq!(t.expire(30 * SEC), 1);
    let s = t.stats();
    assert_eq!((s.reasm_timeout, s.reasm_fails), (1, 1));
    assert_eq!(s.drops[FragDrop::Timeout as usize], 2);
    // The last fragment alone now starts a new datagram.
    assert_eq!(t.push(30 * SEC, &f[2], &mut out), Ok(Outcome::Held));
    // The IPv6 default is 60 s.
    assert_eq!(FragLimits::IPV6_DEFAULT.time_ns, 60 * SEC);
}

#[test]
fn budget_evicts_oldest_first_down_to_low_thresh() {
    let (d, hl) = linux_datagram(Family::V4);
    let limits = FragLimits {
        high_thresh: 64 * 1024,
        low_thresh: 48 * 1024,
        time_ns: 30 * SEC,
    };
    let mut t = ReasmTable::new(Family::V4, limits).unwrap();
    let mut out = DatagramBuf::new();
    let per = QUEUE_COST + 2 * CHUNK; // a 1480-byte first fragment spans two chunks
    let mut firsts = Vec::new();
    for id in 0..200u16 {
        let mut d = d.clone();
        d[4..6].copy_from_slice(&id.to_be_bytes());
        let f = fragments(Family::V4, &d, hl, &[1480, 2960, 4008], 0);
        t.push(u64::from(id), &f[0], &mut out).unwrap();
        assert!(t.mem() <= limits.high_thresh, "{} held", t.mem());
        firsts.push(f);
    }
    let s = t.stats().clone();
    assert!(s.reasm_evictions > 0);
    assert_eq!(s.drops[FragDrop::Evicted as usize], s.reasm_evictions);
    assert!(t.len() <= limits.high_thresh / per);
    // The high-water mark reached the budget's neighbourhood and never passed it.
    let peak = usize::try_from(s.mem_peak).unwrap();
    assert!(
        peak <= limits.high_thresh && peak > limits.low_thresh,
        "peak {peak}"
    );
    // The newest datagram is still there and completes; the oldest was evicted.
    let last = &firsts[199];
    t.push(200, &last[1], &mut out).unwrap();
    assert!(matches!(
        t.push(200, &last[2], &mut out),
        Ok(Outcome::Complete(_))
    ));
    assert_eq!(t.push(201, &firsts[0][1], &mut out), Ok(Outcome::Held));
    // A zero budget refuses everything (Linux: high_thresh 0 disables reassembly).
    t.set_limits(FragLimits {
        high_thresh: 0,
        low_thresh: 0,
        ..limits
    })
    .unwrap();
    assert_eq!(
        t.push(300, &firsts[5][0], &mut out),
        Err(FragDrop::NoMemory)
    );
    assert_eq!(t.mem(), 0);
    assert!(
        t.set_limits(FragLimits {
            high_thresh: 1 << 20,
            ..limits
        })
        .is_err()
    );
}

#[test]
fn refragmentation_cuts_at_the_smaller_mtu_and_refuses_df_and_ipv6() {
    let (d, hl) = linux_datagram(Family::V4);
    let mut t = table(Family::V4);
    let mut out = DatagramBuf::new();
    let r = reassemble(
        &mut t,
        &fragments(Family::V4, &d, hl, &[1480, 2960, 4008], 7),
        &mut out,
    );
    let p = plan(&r, 1000).unwrap();
    assert!(!p.keeps_original_boundaries());
    let frags: Vec<Vec<u8>> = p
        .map(|piece| {
            assert!(piece.wire_len(&r) <= 1000);
            assert!(!piece.more || piece.len % 8 == 0);
            let mut b = vec![0u8; 1000];
            let n = write_fragment(out.bytes(), &r, piece, &mut b).unwrap();
            b.truncate(n);
            assert!(reasm::v4_header_ok(&b[..20]));
            b
        })
        .collect();
    assert_eq!(frags.len(), 5); // 976 * 4 + 104
    let mut t2 = table(Family::V4);
    let mut out2 = DatagramBuf::new();
    let r2 = reassemble(&mut t2, &frags, &mut out2);
    assert_eq!(&out2.bytes()[..r2.len], &d[..]);
    // DF on every original fragment: refused past the MTU, kept on the datagram.
    let mut dfd = fragments(Family::V4, &d, hl, &[1480, 2960, 4008], 8);
    for f in &mut dfd {
        f[6] |= 0x40;
        wire::ipv4::Ipv4Packet::new_unchecked(&mut f[..]).fill_checksum();
    }
    let r = reassemble(&mut t, &dfd, &mut out);
    assert!(r.geometry.df);
    assert_eq!(out.bytes()[6] & 0x40, 0x40);
    assert_eq!(plan(&r, 1000).unwrap_err(), DropReason::PacketTooBig);
    // IPv6: never fragmented past the MTU by a router.
    let (d6, hl6) = linux_datagram(Family::V6);
    let mut t6 = table(Family::V6);
    let r6 = reassemble(
        &mut t6,
        &fragments(Family::V6, &d6, hl6, &[1448, 2896, 4008], 5),
        &mut out,
    );
    assert_eq!(plan(&r6, 1280).unwrap_err(), DropReason::PacketTooBig);
    assert_eq!(plan(&r6, 1500).unwrap().count(), 3);
}

#[test]
fn sysctls_by_linux_names() {
    let mut l = FragLimits::IPV4_DEFAULT;
    assert_eq!((l.high_thresh, l.low_thresh), (4 << 20, 3 << 20));
    l.set_sysctl(Family::V4, "ipfrag_time", 10).unwrap();
    assert_eq!(l.time_ns, 10 * SEC);
    assert!(
        l.set_sysctl(Family::V4, "ipfrag_low_thresh", 5 << 20)
            .is_err()
    );
    assert!(l.set_sysctl(Family::V4, "ip6frag_time", 1).is_err());
    l.set_sysctl(Family::V6, "ip6frag_high_thresh", 8 << 20)
        .unwrap();
    assert_eq!(l.high_thresh, 8 << 20);
    assert!(
        ReasmTable::new(
            Family::V4,
            FragLimits {
                low_thresh: 9 << 20,
                ..l
            }
        )
        .is_err()
    );
}

/// Cuts `len` bytes into pieces of random multiples of 8 (the last takes the rest).
fn cut(len: usize, sizes: &[u16]) -> Vec<u16> {
    let mut ends = Vec::new();
    let mut at = 0usize;
    for &s in sizes {
        let s = usize::from(s.max(1)) * 8;
        if at + s >= len || ends.len() == MAX_FRAGS - 1 {
            break;
        }
        at += s;
        ends.push(at as u16);
    }
    ends.push(len as u16);
    ends
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any order, with duplicates, reassembles to the original datagram, both families.
    #[test]
    fn any_order_with_duplicates_reassembles(
        v6 in any::<bool>(),
        sizes in proptest::collection::vec(1u16..200, 1..80),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        perm_seed in any::<u64>(),
    ) {
        let family = if v6 { Family::V6 } else { Family::V4 };
        let (d, hl) = linux_datagram(family);
        let ends = cut(d.len() - hl, &sizes);
        let frags = fragments(family, &d, hl, &ends, 77);
        // A permutation, then duplicates of random fragments inserted before the end.
        let mut idx: Vec<usize> = (0..frags.len()).collect();
        let mut s = perm_seed | 1;
        for i in (1..idx.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            idx.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let last = idx.pop().unwrap();
        for o in &order {
            let at = o.index(idx.len() + 1);
            let which = idx.get(at.saturating_sub(1)).copied().unwrap_or(idx.first().copied().unwrap_or(last));
            if at > 0 { idx.insert(at, which); }
        }
        idx.push(last);
        let mut t = table(family);
        let mut out = DatagramBuf::new();
        let mut complete = None;
        for &i in &idx {
            match t.push(0, &frags[i], &mut out) {
                Ok(Outcome::Complete(r)) => { prop_assert!(complete.is_none()); complete = Some(r); }
                Ok(Outcome::Held) | Err(FragDrop::Duplicate) => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
        let r = complete.expect("completed");
        prop_assert_eq!(&out.bytes()[..r.len], &d[..]);
        prop_assert_eq!(usize::from(r.geometry.n), ends.len());
        prop_assert_eq!(&r.geometry.ends[..ends.len()], &ends[..]);
        prop_assert!(t.is_empty());
        prop_assert_eq!(t.mem(), 0);
    }

    /// Mutated fragments never panic and never break the memory accounting.
    #[test]
    fn mutations_never_panic(
        v6 in any::<bool>(),
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<prop::sample::Index>()), 1..60),
        mtu in 60usize..2000,
    ) {
        let family = if v6 { Family::V6 } else { Family::V4 };
        let (d, hl) = linux_datagram(family);
        let frags = fragments(family, &d, hl, &[1448, 2896, 4008], 3);
        let limits = FragLimits { high_thresh: 32 * 1024, low_thresh: 16 * 1024, time_ns: SEC };
        let mut t = ReasmTable::new(family, limits).unwrap();
        let mut out = DatagramBuf::new();
        for (k, (pos, val, which)) in muts.iter().enumerate() {
            let mut f = frags[which.index(frags.len())].clone();
            let at = pos.index(f.len());
            f[at] = *val;
            if k % 3 == 0 { f.truncate(pos.index(f.len() + 1)); }
            if let Ok(Outcome::Complete(r)) = t.push(k as u64 * 1000, &f, &mut out) {
                prop_assert!(r.len <= MAX_DATAGRAM);
                if let Ok(p) = plan(&r, mtu) {
                    let mut b = vec![0u8; 2048];
                    for piece in p { let _ = write_fragment(out.bytes(), &r, piece, &mut b); }
                }
            }
            prop_assert!(t.mem() <= limits.high_thresh);
        }
        t.expire(u64::MAX);
        prop_assert!(t.is_empty());
        prop_assert_eq!(t.mem(), 0);
    }
}
