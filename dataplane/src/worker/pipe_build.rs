//! Frames the pipeline and the slow path originate: ICMP/ICMPv6 errors quoting the
//! offending packet, echo replies (in place), TCP resets, ARP requests/replies, IPv6
//! neighbour solicitations/advertisements, and the Internet checksum (RFC 1071) with its
//! incremental update (RFC 1624) from `wire::checksum`.
//!
//! These are the frames routing originates; their IP headers come from
//! `wire::build::write_ip_header`, the writer of `wire::build`'s frames for tests, benches
//! and fixtures. Every builder writes into a caller buffer and returns the frame length,
//! or `None` when the buffer is too small (never panics).

use crate::wire::build::{self, IpSpec};
use crate::wire::checksum as cs;
use crate::wire::{Addr, Family, IpInfo, TcpFlags, TcpInfo, proto};

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;

/// Ethernet header length (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// Ethernet broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// TTL / hop limit of packets the appliance originates (Linux `ip_default_ttl`).
pub const DEFAULT_TTL: u8 = 64;
/// RFC 1812 §4.3.2.3: an ICMPv4 error carries as much of the original datagram as fits in
/// 576 bytes of IP packet.
const ICMP4_MAX: usize = 576;
/// RFC 4443 §2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
const ICMP6_MAX: usize = 1280;

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

/// Writes an IP header (IPv4 without options, or IPv6 without extension headers) at `off`
/// for a payload of `payload_len` bytes; returns the header length. The appliance's own
/// packets: id 0, no DF, TOS 0 (`wire::build::write_ip_header` writes it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_ip(
    buf: &mut [u8],
    off: usize,
    family: Family,
    src: Addr,
    dst: Addr,
    proto: u8,
    ttl: u8,
    payload_len: usize,
) -> usize {
    let ip = IpSpec {
        src,
        dst,
        ttl,
        id: 0,
        dont_frag: false,
        tos: 0,
    };
    build::write_ip_header(buf, off, &ip, family, proto, payload_len)
}

fn ethertype(family: Family) -> u16 {
    match family {
        Family::V4 => ETH_IPV4,
        Family::V6 => ETH_IPV6,
    }
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
    let (hdr, max, p) = match ip.family {
        Family::V4 => (20, ICMP4_MAX, proto::ICMP),
        Family::V6 => (40, ICMP6_MAX, proto::ICMPV6),
    };
    let l3 = usize::from(ip.l3_off);
    let orig = frame.get(l3..l3 + usize::from(ip.ip_len))?;
    let quote = orig.len().min(max - hdr - 8);
    let payload = 8 + quote;
    let total = ETH_LEN + hdr + payload;
    let out = out.get_mut(..total)?;
    write_eth(out, l2.dst, l2.src, ethertype(ip.family));
    write_ip(
        out,
        ETH_LEN,
        ip.family,
        src,
        ip.src,
        p,
        DEFAULT_TTL,
        payload,
    );
    let icmp = &mut out[ETH_LEN + hdr..];
    icmp[0] = icmp_type;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&extra.to_be_bytes());
    icmp[8..8 + quote].copy_from_slice(&orig[..quote]);
    let acc = match ip.family {
        Family::V4 => 0,
        Family::V6 => pseudo_sum(Family::V6, src, ip.src, p, payload),
    };
    let c = checksum(icmp, acc);
    put16(icmp, 2, c);
    Some(total)
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
    let hdr = match ip.family {
        Family::V4 => 20,
        Family::V6 => 40,
    };
    let total = ETH_LEN + hdr + 20;
    let out = out.get_mut(..total)?;
    write_eth(out, l2.dst, l2.src, ethertype(ip.family));
    write_ip(
        out,
        ETH_LEN,
        ip.family,
        ip.dst,
        ip.src,
        proto::TCP,
        DEFAULT_TTL,
        20,
    );
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
    let t = &mut out[ETH_LEN + hdr..];
    t.fill(0);
    put16(t, 0, tcp.dport);
    put16(t, 2, tcp.sport);
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    let acc = pseudo_sum(ip.family, ip.dst, ip.src, proto::TCP, 20);
    let c = checksum(t, acc);
    put16(t, 16, c);
    Some(total)
}

/// ARP packet fields (RFC 826) for [`arp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpOut {
    pub operation: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

/// Builds an Ethernet/ARP frame padded to the 60-byte Ethernet minimum.
pub fn arp(out: &mut [u8], eth_dst: [u8; 6], a: &ArpOut) -> Option<usize> {
    let out = out.get_mut(..60)?;
    out.fill(0);
    write_eth(out, eth_dst, a.sender_mac, ETH_ARP);
    let p = &mut out[ETH_LEN..];
    p[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    put16(p, 6, a.operation);
    p[8..14].copy_from_slice(&a.sender_mac);
    p[14..18].copy_from_slice(&a.sender_ip);
    p[18..24].copy_from_slice(&a.target_mac);
    p[24..28].copy_from_slice(&a.target_ip);
    Some(60)
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
    let payload = 24 + 8;
    let total = ETH_LEN + 40 + payload;
    let out = out.get_mut(..total)?;
    write_eth(out, l2.dst, l2.src, ETH_IPV6);
    write_ip(
        out,
        ETH_LEN,
        Family::V6,
        src,
        dst,
        proto::ICMPV6,
        255,
        payload,
    );
    let m = &mut out[ETH_LEN + 40..];
    m.fill(0);
    m[0] = icmp_type;
    if icmp_type == 136 {
        m[4] = na_flags;
    }
    m[8..24].copy_from_slice(&target.0);
    m[24] = if icmp_type == 135 { 1 } else { 2 };
    m[25] = 1;
    m[26..32].copy_from_slice(&l2.src);
    let acc = pseudo_sum(Family::V6, src, dst, proto::ICMPV6, payload);
    let c = checksum(m, acc);
    put16(m, 2, c);
    Some(total)
}

/// R (router), S (solicited) and O (override) flags of a neighbour advertisement.
pub const NA_ROUTER: u8 = 0x80;
pub const NA_SOLICITED: u8 = 0x40;
pub const NA_OVERRIDE: u8 = 0x20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_refuse_small_buffers() {
        let mut small = [0u8; 20];
        let a = ArpOut {
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
}
