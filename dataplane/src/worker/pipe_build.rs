//! Frames the pipeline and the slow path originate: ICMP/ICMPv6 errors quoting the
//! offending packet, echo replies (in place), TCP resets, ARP requests/replies, IPv6
//! neighbour solicitations/advertisements, and the Internet checksum (RFC 1071) with its
//! incremental update (RFC 1624) from `wire::checksum`.
//!
//! Every frame built here is a `wire::build::Frame` (the one frame builder, also under the
//! tests, the benches and perfgen); this module chooses the fields routing needs (id 0,
//! no DF, TOS 0, TTL 64, no padding but ARP's) and keeps the in-place echo reply. Every
//! builder writes into a caller buffer and returns the frame length, or `None` when the
//! buffer is too small (never panics).

use crate::wire::build::{EthSpec, Frame, IcmpErrorKind, IpSpec, L4Spec, TcpSpec};
use crate::wire::checksum as cs;
use crate::wire::icmp::v6::NEIGHBOR_ADVERT;
pub use crate::wire::icmp::v6::{NA_OVERRIDE, NA_ROUTER, NA_SOLICITED};
use crate::wire::{Addr, ArpInfo, Family, IpInfo, TcpFlags, TcpInfo, proto};

/// Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// TTL / hop limit of packets the appliance originates (Linux `ip_default_ttl`).
pub const DEFAULT_TTL: u8 = 64;
/// The Internet checksum of `data` plus the partial sum `acc` (a pseudo-header).
pub fn checksum(data: &[u8], acc: u32) -> u16 {
    cs::finish(cs::add(cs::sum(data), acc))
}

/// Sum of the TCP/UDP/ICMPv6 pseudo-header (RFC 793 / RFC 8200 §8.1).
pub fn pseudo_sum(family: Family, src: Addr, dst: Addr, proto: u8, len: usize) -> u32 {
    match family {
        Family::V4 => {
            let (s, d) = (
                src.to_v4().unwrap_or_default(),
                dst.to_v4().unwrap_or_default(),
            );
            cs::pseudo_v4(s, d, proto, len16(len))
        }
        Family::V6 => cs::pseudo_v6(&src.0, &dst.0, proto, u32::try_from(len).unwrap_or(0)),
    }
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

fn len16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Writes an Ethernet header at the start of `buf` (which must hold 14 bytes).
pub fn write_eth(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    put16(buf, 12, ethertype);
}

/// Link-layer addresses of a frame the appliance sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2Out {
    pub dst: [u8; 6],
    pub src: [u8; 6],
}

/// Builds an ICMP (IPv4) or ICMPv6 error about the packet `ip` in `frame`, from `src` to
/// the packet's source, quoting as much of it as the RFCs allow. `extra` fills the
/// 4-byte field after the checksum (the MTU for "fragmentation needed"/"packet too big",
/// the pointer for "parameter problem", else 0).
#[allow(clippy::too_many_arguments)]
pub fn icmp_error(
    out: &mut [u8],
    frame: &[u8],
    ip: &IpInfo,
    l2: L2Out,
    src: Addr,
    icmp_type: u8,
    code: u8,
    extra: u32,
) -> Option<usize> {
    let l3 = usize::from(ip.l3_off);
    let quoted = frame.get(l3..l3 + usize::from(ip.ip_len))?;
    let kind = IcmpErrorKind::Other {
        icmp_type,
        code,
        rest: extra,
    };
    let l4 = L4Spec::IcmpError { kind, quoted };
    originated(l2, ip.family, src, ip.src, DEFAULT_TTL, l4)
        .write(out)
        .ok()
}

/// An IP frame the appliance originates: id 0, no DF, TOS 0, in `family` whatever the
/// addresses look like, not padded.
fn originated(
    l2: L2Out,
    family: Family,
    src: Addr,
    dst: Addr,
    ttl: u8,
    l4: L4Spec<'_>,
) -> Frame<'_> {
    let ip = IpSpec {
        src,
        dst,
        ttl,
        id: 0,
        dont_frag: false,
        tos: 0,
        family: Some(family),
    };
    let eth = EthSpec {
        src: l2.src,
        dst: l2.dst,
        vlan: None,
    };
    Frame::ip(eth, ip, l4).padded(false)
}

/// Turns the ICMP/ICMPv6 echo request `ip` in `frame` into its reply, in place: MACs
/// swapped, addresses swapped, TTL reset, type changed, checksums recomputed. The length
/// does not change.
pub fn echo_reply_in_place(frame: &mut [u8], ip: &IpInfo) -> Option<()> {
    let l3 = usize::from(ip.l3_off);
    let l4 = usize::from(ip.l4_off);
    let end = l3 + usize::from(ip.ip_len);
    if frame.len() < end || l4 + 8 > end {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&frame[0..6]);
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&mac);
    match ip.family {
        Family::V4 => {
            frame[l3 + 12..l3 + 16].copy_from_slice(&ip.dst.0[12..]);
            frame[l3 + 16..l3 + 20].copy_from_slice(&ip.src.0[12..]);
            frame[l3 + 8] = DEFAULT_TTL;
            frame[l3 + 10..l3 + 12].fill(0);
            let c = checksum(&frame[l3..l4], 0);
            put16(frame, l3 + 10, c);
            frame[l4] = 0;
            frame[l4 + 2..l4 + 4].fill(0);
            let c = checksum(&frame[l4..end], 0);
            put16(frame, l4 + 2, c);
        }
        Family::V6 => {
            frame[l3 + 8..l3 + 24].copy_from_slice(&ip.dst.0);
            frame[l3 + 24..l3 + 40].copy_from_slice(&ip.src.0);
            frame[l3 + 7] = DEFAULT_TTL;
            frame[l4] = 129;
            frame[l4 + 2..l4 + 4].fill(0);
            let acc = pseudo_sum(Family::V6, ip.dst, ip.src, proto::ICMPV6, end - l4);
            let c = checksum(&frame[l4..end], acc);
            put16(frame, l4 + 2, c);
        }
    }
    Some(())
}

/// Builds the TCP reset answering the segment `tcp` of `ip` (RFC 9293 §3.10.7.1: if the
/// segment has ACK, `seq = SEG.ACK` and no ACK; otherwise `seq = 0`,
/// `ack = SEG.SEQ + SEG.LEN`, RST|ACK).
pub fn tcp_reset(out: &mut [u8], ip: &IpInfo, tcp: &TcpInfo, l2: L2Out) -> Option<usize> {
    let (seq, ack, flags) = if tcp.flags.contains(TcpFlags::ACK) {
        (tcp.ack, 0, TcpFlags::RST)
    } else {
        let seg_len = u32::from(tcp.payload_len)
            + u32::from(tcp.flags.contains(TcpFlags::SYN))
            + u32::from(tcp.flags.contains(TcpFlags::FIN));
        (
            0,
            tcp.seq.wrapping_add(seg_len),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    let rst = TcpSpec {
        sport: tcp.dport,
        dport: tcp.sport,
        seq,
        ack,
        flags: TcpFlags(flags),
        ..TcpSpec::default()
    };
    let l4 = L4Spec::Tcp(rst);
    originated(l2, ip.family, ip.dst, ip.src, DEFAULT_TTL, l4)
        .write(out)
        .ok()
}

/// Builds an Ethernet/ARP frame padded to the 60-byte Ethernet minimum.
pub fn arp(out: &mut [u8], eth_dst: [u8; 6], a: &ArpInfo) -> Option<usize> {
    let eth = EthSpec {
        src: a.sender_mac,
        dst: eth_dst,
        vlan: None,
    };
    Frame::arp(eth, *a).write(out).ok()
}

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1) and its Ethernet
/// mapping (RFC 2464 §7).
pub fn solicited_node(addr: Addr) -> (Addr, [u8; 6]) {
    let t = addr.0;
    let mut a = [0u8; 16];
    a[0] = 0xff;
    a[1] = 0x02;
    a[11] = 0x01;
    a[12] = 0xff;
    a[13..].copy_from_slice(&t[13..]);
    (Addr::from_v6(a), [0x33, 0x33, 0xff, t[13], t[14], t[15]])
}

/// Builds an ICMPv6 neighbour solicitation (type 135) or advertisement (136) with a
/// link-layer address option (source for NS, target for NA), hop limit 255 (RFC 4861).
/// `na_flags` is the R/S/O byte of an advertisement (ignored for a solicitation).
pub fn neighbor_message(
    out: &mut [u8],
    l2: L2Out,
    src: Addr,
    dst: Addr,
    icmp_type: u8,
    na_flags: u8,
    target: Addr,
) -> Option<usize> {
    let l4 = if icmp_type == NEIGHBOR_ADVERT {
        L4Spec::NeighborAdvert {
            target: target.0,
            flags: na_flags,
            target_lladdr: Some(l2.src),
        }
    } else {
        L4Spec::NeighborSolicit {
            target: target.0,
            src_lladdr: Some(l2.src),
        }
    };
    originated(l2, Family::V6, src, dst, 255, l4)
        .write(out)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_refuse_small_buffers() {
        let mut small = [0u8; 20];
        let a = ArpInfo {
            operation: 1,
            sender_mac: [2; 6],
            sender_ip: [198, 18, 0, 1],
            target_mac: [0; 6],
            target_ip: [198, 18, 0, 2],
        };
        assert_eq!(arp(&mut small, BROADCAST, &a), None);
        let l2 = L2Out {
            dst: [1; 6],
            src: [2; 6],
        };
        let t = Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(neighbor_message(&mut small, l2, t, t, 135, 0, t), None);
    }

    use crate::wire::{L4Info, Parsed, VERIFY_ALL, parse};
    use proptest::prelude::*;

    fn addr(v6: bool, b: [u8; 16]) -> Addr {
        if v6 {
            let mut b = b;
            b[0] = 0x20;
            Addr::from_v6(b)
        } else {
            Addr::from_v4([198, 18 + (b[0] & 1), b[1], b[2]])
        }
    }

    fn parsed(f: &[u8]) -> IpInfo {
        match parse(f, &VERIFY_ALL) {
            Ok(Parsed::Ip(_, ip)) => ip,
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// The router's frames parse back with every checksum verified and the fields
        /// asked for (the bytes were checked equal to the builders these replaced, which
        /// wrote each field by hand, before those were deleted).
        #[test]
        fn router_frames_parse_back_with_valid_checksums(
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            c in any::<[u8; 16]>(),
            ports in any::<(u16, u16)>(),
            seqs in any::<(u32, u32)>(),
            flags in any::<u8>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            extra in any::<u32>(),
        ) {
            let (src, dst, me) = (addr(v6, a), addr(v6, b), addr(v6, c));
            let tcp = TcpSpec {
                sport: ports.0, dport: ports.1, seq: seqs.0, ack: seqs.1,
                flags: TcpFlags(flags & !TcpFlags::RST), window: 1000, payload: &payload,
                ..TcpSpec::default()
            };
            let f = Frame::ip(EthSpec::default(), IpSpec::new(src, dst), L4Spec::Tcp(tcp))
                .to_vec()
                .unwrap();
            let info = parsed(&f);
            let l2 = L2Out { dst: [2, 0, 0, 0, 0, 1], src: [2, 0, 0, 0, 0, 2] };
            let mut out = [0u8; 1600];
            let (ty, code) = if v6 { (1, 4) } else { (3, 3) };
            let n = icmp_error(&mut out, &f, &info, l2, me, ty, code, extra).unwrap();
            let err = parsed(&out[..n]);
            prop_assert_eq!((err.src, err.dst, err.ttl), (me, src, DEFAULT_TTL));
            let Some(L4Info::IcmpError { icmp_type, code: got, inner }) = err.l4 else {
                panic!("{:?}", err.l4)
            };
            prop_assert_eq!((icmp_type, got), (ty, code));
            prop_assert_eq!((inner.src, inner.sport), (src, ports.0));
            let limit = if v6 { 1280 } else { 576 };
            prop_assert_eq!(n - 14, (usize::from(info.ip_len) + 8 + usize::from(err.l4_off - err.l3_off)).min(limit));
            let Some(L4Info::Tcp(t)) = info.l4 else { panic!() };
            let n = tcp_reset(&mut out, &info, &t, l2).unwrap();
            let rst = parsed(&out[..n]);
            prop_assert_eq!((rst.src, rst.dst), (dst, src));
            let Some(L4Info::Tcp(r)) = rst.l4 else { panic!() };
            prop_assert!(r.flags.contains(TcpFlags::RST));
            prop_assert_eq!((r.sport, r.dport), (ports.1, ports.0));
            prop_assert_eq!(icmp_error(&mut out[..n.min(60)], &f, &info, l2, me, ty, code, extra), None);
        }
    }

    #[test]
    fn a_reset_to_an_ipv4_mapped_address_stays_ipv6() {
        let mapped = Addr::from_v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]);
        let src = Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let syn = TcpSpec {
            sport: 1,
            dport: 2,
            flags: TcpFlags(TcpFlags::SYN),
            ..TcpSpec::default()
        };
        let spec = IpSpec {
            family: Some(Family::V6),
            ..IpSpec::new(src, mapped)
        };
        let f = Frame::ip(EthSpec::default(), spec, L4Spec::Tcp(syn))
            .to_vec()
            .unwrap();
        let ip = parsed(&f);
        assert_eq!((ip.family, ip.dst), (Family::V6, mapped));
        let Some(L4Info::Tcp(t)) = ip.l4 else {
            panic!("{:?}", ip.l4)
        };
        let l2 = L2Out {
            dst: [1; 6],
            src: [2; 6],
        };
        let mut out = [0u8; 128];
        assert_eq!(tcp_reset(&mut out, &ip, &t, l2), Some(14 + 40 + 20));
        assert_eq!(out[14] >> 4, 6, "an IPv6 header");
        assert_eq!(
            &out[14 + 8..14 + 24],
            &mapped.0,
            "the mapped source as received"
        );
    }
}
