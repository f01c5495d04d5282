//! The fast path's parser: one narrow frame shape, the common one, checked as
//! [`parse`](super::parse()) checks it and summarised in the few fields the fast path
//! uses. Anything else is `None` and goes to the full parser (through the slow path),
//! which decides what it is.
//!
//! Accepted: untagged Ethernet, IPv4 without options (IHL 5), not a fragment (MF clear,
//! offset 0), total length within the frame, TCP or UDP, header checksum and L4 checksum
//! verified under the same [`ParseOptions`] as the full parser (the NIC's verdicts, the
//! software flags), UDP length within the payload, TCP data offset and option framing
//! valid, a source `parse` accepts. For every frame accepted here, `parse` succeeds with
//! the same addresses, ports, protocol, TTL, length and TCP summary (property test
//! below, over valid frames and every single-byte corruption of them).

use super::checksum;
use super::eth::be16;
use super::parse::{HwCsum, ParseOptions};
use super::tcp::TcpPacket;
use super::{TcpInfo, proto};

/// Offsets in the accepted shape (Ethernet 14 + IPv4 20).
const L3: usize = 14;
const L4: usize = L3 + 20;

/// What the fast path needs from a frame of the accepted shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastIpv4 {
    /// Source, destination, source port, destination port as the frame carries them
    /// (bytes 26..38).
    pub tuple: [u8; 12],
    /// TCP or UDP.
    pub proto: u8,
    pub ttl: u8,
    /// IPv4 total length.
    pub ip_len: u16,
    /// The TCP summary (TCP only).
    pub tcp: Option<TcpInfo>,
}

/// Offset of the IPv4 header checksum in the accepted shape.
pub const IP_CSUM_OFF: usize = L3 + 10;
/// Offset of the TTL.
pub const TTL_OFF: usize = L3 + 8;
/// Offset of the tuple (source address .. destination port).
pub const TUPLE_OFF: usize = L3 + 12;
/// Offset of the TCP checksum.
pub const TCP_CSUM_OFF: usize = L4 + 16;
/// Offset of the UDP checksum.
pub const UDP_CSUM_OFF: usize = L4 + 6;

/// The tuple and protocol of a frame that looks like the accepted shape, without
/// verifying anything (the burst's hash-and-prefetch stage; [`parse_fast`] decides).
#[inline(always)]
pub fn peek_fast(frame: &[u8]) -> Option<([u8; 12], u8)> {
    let h = frame.get(..L4 + 4)?;
    let proto = h[L3 + 9];
    let frag = be16(&h[L3 + 6..L3 + 8]) & 0x3fff;
    if h[12..14] != [0x08, 0x00] || h[L3] != 0x45 || frag != 0 {
        return None;
    }
    if proto != proto::TCP && proto != proto::UDP {
        return None;
    }
    let mut t = [0u8; 12];
    t.copy_from_slice(&h[TUPLE_OFF..TUPLE_OFF + 12]);
    Some((t, proto))
}

/// [`ParseOptions::check`]'s rule: the NIC's verdict wins, else software when asked.
#[inline(always)]
fn csum_ok(verify: bool, hw: HwCsum, ok: impl FnOnce() -> bool) -> bool {
    match hw {
        HwCsum::Bad => false,
        HwCsum::Good => true,
        HwCsum::Unknown => !verify || ok(),
    }
}

/// Whether the L4 checksum of the segment ending at `seg_end` verifies. It covers the
/// pseudo-header (RFC 768, RFC 793 §3.1): the two addresses, which sit just before the
/// segment in the frame, so one run from the source address to the segment's end sums
/// both; protocol and length are added. (Native byte order: protocol and length as
/// byte-swapped big-endian words.) Inlined into [`parse_fast`]: a call per packet costs
/// more than the short sum of a small segment.
#[inline(always)]
fn l4_verifies(frame: &[u8], seg_end: usize, proto: u8) -> bool {
    let len = u16::try_from(seg_end - L4).unwrap_or(0);
    let s = checksum::sum_native(&frame[TUPLE_OFF..seg_end]);
    let p = u32::from(u16::from(proto).swap_bytes()) + u32::from(len.swap_bytes());
    checksum::verify(checksum::add(s, p))
}

/// Checks a frame of the accepted shape and summarises it; `None` for anything else
/// (including anything `parse` would drop).
#[inline(always)]
pub fn parse_fast(frame: &[u8], opts: &ParseOptions) -> Option<FastIpv4> {
    peek_fast(frame)?;
    check_fast(frame, opts)
}

/// [`parse_fast`] of a frame whose shape [`peek_fast`] already accepted (the fast path's
/// stage 1 did): the tuple and protocol are read, the shape is not checked twice. For a
/// frame `peek_fast` refuses the answer means nothing (but nothing panics: every read
/// is bounds-checked).
#[inline(always)]
pub fn check_fast(frame: &[u8], opts: &ParseOptions) -> Option<FastIpv4> {
    debug_assert!(peek_fast(frame).is_some());
    let tuple: [u8; 12] = frame.get(TUPLE_OFF..TUPLE_OFF + 12)?.try_into().ok()?;
    let proto = *frame.get(L3 + 9)?;
    let total = usize::from(be16(frame.get(L3 + 2..L3 + 4)?));
    let end = L3 + total;
    if total < 20 || end > frame.len() {
        return None;
    }
    // `parse`'s martian sources (multicast, limited broadcast, loopback).
    let s0 = tuple[0];
    if (224..240).contains(&s0) || s0 == 127 || tuple[..4] == [255; 4] {
        return None;
    }
    // The header's sum inline (a closure here was an out-of-line call per packet).
    let ip_ok = match opts.hw_ip {
        HwCsum::Bad => false,
        HwCsum::Good => true,
        HwCsum::Unknown => {
            !opts.verify_ip
                || frame
                    .get(L3..L4)
                    .and_then(|h| <&[u8; 20]>::try_from(h).ok())
                    .is_some_and(|h| checksum::verify(checksum::sum_ipv4_header(h)))
        }
    };
    if !ip_ok {
        return None;
    }
    let payload = &frame[L4..end];
    let tcp = if proto == proto::TCP {
        let seg = TcpPacket::new_checked(payload).ok()?;
        if !csum_ok(opts.verify_l4, opts.hw_l4, || {
            l4_verifies(frame, end, proto)
        }) {
            return None;
        }
        Some(seg.info())
    } else {
        if payload.len() < 8 {
            return None;
        }
        let ulen = usize::from(be16(&payload[4..6]));
        if ulen < 8 || ulen > payload.len() {
            return None;
        }
        // RFC 768: a zero checksum over IPv4 means none was sent.
        let none = be16(&payload[6..8]) == 0;
        if !csum_ok(opts.verify_l4, opts.hw_l4, || {
            none || l4_verifies(frame, L4 + ulen, proto)
        }) {
            return None;
        }
        None
    };
    Some(FastIpv4 {
        tuple,
        proto,
        ttl: frame[TTL_OFF],
        ip_len: u16::try_from(total).unwrap_or(u16::MAX),
        tcp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Fragment, L4Info, Parsed, VERIFY_ALL, parse, rewrite};
    use proptest::prelude::*;

    /// A valid UDP or TCP/IPv4 frame: `payload` bytes, optional TCP options.
    fn frame(tcp: bool, payload: usize, opts: &[u8], ttl: u8) -> Vec<u8> {
        let l4h = if tcp { 20 + opts.len() } else { 8 };
        let total = 20 + l4h + payload;
        let mut f = vec![0u8; 14 + total];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12] = 8;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
        f[20] = 0x40;
        f[22] = ttl;
        f[23] = if tcp { proto::TCP } else { proto::UDP };
        f[26..30].copy_from_slice(&[198, 18, 0, 10]);
        f[30..34].copy_from_slice(&[203, 0, 113, 5]);
        f[34..38].copy_from_slice(&[0x9c, 0x40, 0, 53]);
        if tcp {
            f[46] = u8::try_from(l4h / 4).unwrap() << 4;
            f[47] = 0x18;
            f[48..50].copy_from_slice(&[0x10, 0]);
            f[54..54 + opts.len()].copy_from_slice(opts);
        } else {
            f[38..40].copy_from_slice(&u16::try_from(8 + payload).unwrap().to_be_bytes());
        }
        for (i, b) in f[34 + l4h..].iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap();
        }
        let Ok(Parsed::Ip(_, ip)) = parse(&f, &crate::wire::TRUST_ALL) else {
            panic!("test frame does not parse");
        };
        rewrite::fill_checksums_with(&mut f, &ip, false).unwrap();
        f
    }

    /// Whatever `parse_fast` accepts, `parse` accepts with the same summary.
    fn agrees(f: &[u8], opts: &ParseOptions) -> Result<(), TestCaseError> {
        let Some(fast) = parse_fast(f, opts) else {
            return Ok(());
        };
        let Ok(Parsed::Ip(l2, ip)) = parse(f, opts) else {
            return Err(TestCaseError::fail(format!("parse refuses {f:02x?}")));
        };
        prop_assert_eq!(l2.vlan, None);
        prop_assert_eq!(ip.frag, Fragment::None);
        prop_assert_eq!((ip.l3_off, ip.l4_off), (14, 34));
        prop_assert_eq!(
            ip.src.to_v4().unwrap(),
            [fast.tuple[0], fast.tuple[1], fast.tuple[2], fast.tuple[3]]
        );
        prop_assert_eq!(
            ip.dst.to_v4().unwrap(),
            [fast.tuple[4], fast.tuple[5], fast.tuple[6], fast.tuple[7]]
        );
        prop_assert_eq!(
            (ip.proto, ip.ttl, ip.ip_len),
            (fast.proto, fast.ttl, fast.ip_len)
        );
        let ports = (
            u16::from_be_bytes([fast.tuple[8], fast.tuple[9]]),
            u16::from_be_bytes([fast.tuple[10], fast.tuple[11]]),
        );
        match ip.l4 {
            Some(L4Info::Tcp(t)) => {
                prop_assert_eq!(Some(t), fast.tcp);
                prop_assert_eq!((t.sport, t.dport), ports);
            }
            Some(L4Info::Udp { sport, dport }) => {
                prop_assert_eq!(fast.tcp, None);
                prop_assert_eq!((sport, dport), ports);
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
        Ok(())
    }

    #[test]
    fn valid_frames_are_accepted() {
        for tcp in [false, true] {
            let f = frame(tcp, 18, &[], 64);
            let p = parse_fast(&f, &VERIFY_ALL).expect("accepted");
            assert_eq!((p.ttl, usize::from(p.ip_len)), (64, f.len() - 14));
        }
        let mut f = frame(false, 18, &[], 64);
        f[40..42].copy_from_slice(&[0, 0]);
        assert!(parse_fast(&f, &VERIFY_ALL).is_some(), "no UDP checksum");
        f[41] = 1;
        assert!(parse_fast(&f, &VERIFY_ALL).is_none(), "bad UDP checksum");
        let off = ParseOptions::with_offload(HwCsum::Good, HwCsum::Good);
        assert!(parse_fast(&f, &off).is_some(), "the NIC said good");
        let bad = ParseOptions::with_offload(HwCsum::Unknown, HwCsum::Bad);
        assert!(parse_fast(&frame(true, 0, &[], 9), &bad).is_none());
    }

    proptest! {
        #[test]
        fn every_accepted_frame_parses_the_same(
            tcp in any::<bool>(),
            payload in 0usize..40,
            opts in prop::sample::select(vec![
                vec![], vec![1, 1, 1, 1], vec![2, 4, 5, 0xb4], vec![3, 3, 7, 0], vec![8, 2, 0, 0],
            ]),
            at in any::<prop::sample::Index>(),
            xor in any::<u8>(),
            extra in 0usize..4,
            hw in 0u8..9,
        ) {
            let mut f = frame(tcp, payload, &opts, 64);
            f.extend(std::iter::repeat_n(0, extra));
            let o = {
                let v = |n| [HwCsum::Unknown, HwCsum::Good, HwCsum::Bad][usize::from(n)];
                ParseOptions::with_offload(v(hw % 3), v(hw / 3))
            };
            agrees(&f, &o)?;
            agrees(&f, &VERIFY_ALL)?;
            let i = at.index(f.len());
            f[i] ^= xor;
            agrees(&f, &VERIFY_ALL)?;
            agrees(&f, &o)?;
            agrees(&f[..i], &VERIFY_ALL)?;
        }
    }
}
