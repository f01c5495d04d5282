//! Frames the generator sends and the parser for what comes back. Everything is IPv4
//! without options, no VLAN; the frames are `dataplane::wire::build` frames (the one
//! builder: the router's own packets, the tests and the benches use it too). The payload starts with a stamp: TSC at transmission (u64),
//! sequence number (u64), magic (u16), big-endian, so a received frame gives its latency.
//! Frames shorter than 60 bytes (64 on the wire with the FCS) are padded.

use std::net::Ipv4Addr;

use dataplane::wire::build::{EthSpec, Frame, IpSpec, L4Spec, TcpSpec};
use dataplane::wire::{Addr, TcpFlags, checksum};

pub const ETH_LEN: usize = 14;
pub const IP_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
pub const TCP_LEN: usize = 20;
/// Smallest Ethernet frame without the FCS.
pub const MIN_FRAME: usize = 60;
/// Largest frame built (one mbuf, standard MTU).
pub const MAX_FRAME: usize = 1514;
/// Stamp: TSC, sequence, magic.
pub const STAMP_LEN: usize = 18;
pub const MAGIC: u16 = 0xF1D0;
/// The smallest UDP frame that carries a stamp: 14 + 20 + 8 + 18 = 60.
pub const MIN_UDP_FRAME: usize = ETH_LEN + IP_LEN + UDP_LEN + STAMP_LEN;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Source and destination MAC addresses of the frames on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Macs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    checksum::pseudo_v4(src.octets(), dst.octets(), proto, len)
}

/// Whether `data`, checksum field included, plus `init` verifies.
fn verifies(data: &[u8], init: u32) -> bool {
    checksum::verify(checksum::add(checksum::sum(data), init))
}

/// The frame of `l4` from `src` to `dst` (IPv4, TTL 64, id 0, DF), built by
/// `dataplane::wire::build`, the builder of the router's own frames and the tests'.
fn frame<'a>(macs: &Macs, src: Ipv4Addr, dst: Ipv4Addr, l4: L4Spec<'a>) -> Frame<'a> {
    let eth = EthSpec {
        src: macs.src,
        dst: macs.dst,
        vlan: None,
    };
    let ip = IpSpec::new(Addr::from_v4(src.octets()), Addr::from_v4(dst.octets()));
    Frame::ip(eth, ip, l4)
}

/// The UDP checksum field for a sum that finishes to `c`: 0 means "no checksum" in UDP
/// over IPv4, so a computed 0 is sent as its other ones'-complement form, 0xffff.
pub fn udp_csum_field(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

fn stamp(seq: u64, tsc: u64) -> [u8; STAMP_LEN] {
    let mut p = [0u8; STAMP_LEN];
    p[0..8].copy_from_slice(&tsc.to_be_bytes());
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p[16..18].copy_from_slice(&MAGIC.to_be_bytes());
    p
}

/// Writes a UDP frame of `len` bytes (without FCS, `MIN_UDP_FRAME..=MAX_FRAME`) into the
/// front of `buf`, stamped with `seq` and `tsc`. Returns `len`, or `None` when `len` is out
/// of range or `buf` too short.
#[allow(clippy::too_many_arguments, reason = "one frame's fields")]
pub fn udp(
    buf: &mut [u8],
    macs: &Macs,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    len: usize,
    seq: u64,
    tsc: u64,
) -> Option<usize> {
    if !(MIN_UDP_FRAME..=MAX_FRAME).contains(&len) || buf.len() < len {
        return None;
    }
    let mut payload = [0u8; MAX_FRAME - ETH_LEN - IP_LEN - UDP_LEN];
    payload[..STAMP_LEN].copy_from_slice(&stamp(seq, tsc));
    let l4 = L4Spec::Udp {
        sport,
        dport,
        payload: &payload[..len - ETH_LEN - IP_LEN - UDP_LEN],
    };
    frame(macs, src, dst, l4).write(buf).ok()
}

/// One TCP segment to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// A stamp `(seq, tsc)` as the 18-byte payload, or no payload.
    pub stamp: Option<(u64, u64)>,
}

/// Writes a TCP frame (padded to 60 bytes) into `buf`; returns its length, or `None` when
/// `buf` is shorter than 60 bytes.
pub fn tcp(buf: &mut [u8], macs: &Macs, s: &Segment) -> Option<usize> {
    let stamp = s.stamp.map(|(seq, tsc)| stamp(seq, tsc));
    let seg = TcpSpec {
        sport: s.sport,
        dport: s.dport,
        seq: s.seq,
        ack: s.ack,
        flags: TcpFlags(s.flags),
        window: 65535,
        payload: stamp.as_ref().map_or(&[], |p| &p[..]),
        ..TcpSpec::default()
    };
    frame(macs, s.src, s.dst, L4Spec::Tcp(seg)).write(buf).ok()
}

/// Transport part of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Udp,
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        payload: u16,
    },
}

/// What the parser found in a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub l4: L4,
    /// `(seq, tsc)` when the payload starts with a stamp.
    pub stamp: Option<(u64, u64)>,
    /// IPv4 header and L4 checksums both verify (a NAT that forgets one shows here).
    pub checksums_ok: bool,
}

/// Parses an IPv4 UDP or TCP frame; `None` for anything else (ARP, IPv6, fragments,
/// truncated).
pub fn parse(f: &[u8]) -> Option<Parsed> {
    if f.len() < ETH_LEN + IP_LEN || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < IP_LEN || total < ihl || total > ip.len() {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None; // a fragment
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[ihl..total];
    let ip_ok = verifies(&ip[..ihl], 0);
    let (l4v, hdr, l4_ok) = match ip[9] {
        17 if l4.len() >= UDP_LEN => {
            let ok = u16::from_be_bytes([l4[6], l4[7]]) == 0
                || verifies(l4, pseudo(src, dst, 17, l4.len()));
            (L4::Udp, UDP_LEN, ok)
        }
        6 if l4.len() >= TCP_LEN => {
            let off = usize::from(l4[12] >> 4) * 4;
            if off < TCP_LEN || off > l4.len() {
                return None;
            }
            let tcp = L4::Tcp {
                flags: l4[13],
                seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                payload: u16::try_from(l4.len() - off).unwrap_or(u16::MAX),
            };
            (tcp, off, verifies(l4, pseudo(src, dst, 6, l4.len())))
        }
        _ => return None,
    };
    let p = &l4[hdr..];
    let stamp = (p.len() >= STAMP_LEN && p[16..18] == MAGIC.to_be_bytes()).then(|| {
        let tsc = u64::from_be_bytes(p[0..8].try_into().unwrap_or([0; 8]));
        let seq = u64::from_be_bytes(p[8..16].try_into().unwrap_or([0; 8]));
        (seq, tsc)
    });
    Some(Parsed {
        src,
        dst,
        sport: u16::from_be_bytes([l4[0], l4[1]]),
        dport: u16::from_be_bytes([l4[2], l4[3]]),
        l4: l4v,
        stamp,
        checksums_ok: ip_ok && l4_ok,
    })
}

/// What a quick look at a received frame finds (see [`peek`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// IPv4 (no options) UDP carrying a stamp: parse and verify it (the sample).
    Stamped,
    /// IPv4 (no options) UDP without a stamp: count it.
    Unstamped,
    /// Anything else: [`parse`] decides.
    Other,
}

/// Offset of the stamp's magic in a UDP frame without IP options.
const MAGIC_AT: usize = ETH_LEN + IP_LEN + UDP_LEN + 16;

/// Classifies a frame from four fixed fields, without checksums: what the sink does for
/// every frame, so that only the stamped sample costs a full [`parse`].
#[inline]
pub fn peek(f: &[u8]) -> Peek {
    if f.len() < MIN_UDP_FRAME || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
        return Peek::Other;
    }
    if f[MAGIC_AT..MAGIC_AT + 2] == MAGIC.to_be_bytes() {
        Peek::Stamped
    } else {
        Peek::Unstamped
    }
}

/// Turns a received IPv4 UDP frame into its answer, in place, as a server would send it:
/// MACs from `macs`, addresses and ports swapped, TTL 64 with the IPv4 header checksum
/// updated (RFC 1624; the swap leaves the sum alone). The UDP checksum stays right
/// unchanged: the pseudo header and the ports are the same 16-bit words in another order.
/// Checksums are not verified here (the sink verifies its sample). Returns `false`, the
/// frame untouched, for anything that is not an unfragmented IPv4 UDP frame.
pub fn reflect_udp(f: &mut [u8], macs: &Macs) -> bool {
    if f.len() < ETH_LEN + IP_LEN || f[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &mut f[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4
        || ihl < IP_LEN
        || ip[9] != 17
        || total < ihl + UDP_LEN
        || total > ip.len()
        || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
    {
        return false;
    }
    let (src, dst) = ip[12..20].split_at_mut(4);
    src.swap_with_slice(dst);
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] = 64;
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let c = checksum::update16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let (sport, rest) = ip[ihl..ihl + 4].split_at_mut(2);
    sport.swap_with_slice(rest);
    f[0..6].copy_from_slice(&macs.dst);
    f[6..12].copy_from_slice(&macs.src);
    true
}

/// The MACs the unit tests build frames with.
#[cfg(test)]
pub(crate) const TEST_MACS: Macs = Macs {
    src: [2, 0, 0, 0, 0, 1],
    dst: [2, 0, 0, 0, 0, 2],
};

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: Macs = TEST_MACS;
    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 7);
    const B: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

    #[test]
    fn udp_64_byte_frame_round_trips() {
        let mut buf = [0xaau8; 128];
        let n = udp(
            &mut buf,
            &MACS,
            A,
            B,
            1024,
            9,
            60,
            42,
            0x0123_4567_89ab_cdef,
        )
        .unwrap();
        assert_eq!(n, 60);
        let p = parse(&buf[..n]).unwrap();
        assert_eq!((p.src, p.dst, p.sport, p.dport), (A, B, 1024, 9));
        assert_eq!(p.l4, L4::Udp);
        assert_eq!(p.stamp, Some((42, 0x0123_4567_89ab_cdef)));
        assert!(p.checksums_ok);
        assert_eq!(&buf[0..6], &MACS.dst);
        assert_eq!(
            u16::from_be_bytes([buf[16], buf[17]]),
            46,
            "IP total length"
        );
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Byte-exact against frames built by scapy 2.5 (`Ether()/IP(src=A, dst=B, flags="DF",
    /// ttl=64, id=0)/UDP(sport=1024, dport=9)/stamp`, and the TCP one with `flags="PA",
    /// seq=1000, ack=77, window=65535`), whose checksums scapy computes itself.
    #[test]
    fn frames_match_scapy_byte_for_byte() {
        let mut buf = [0u8; 72];
        udp(&mut buf, &MACS, A, B, 1024, 9, 60, 1, 2).unwrap();
        let want = "02000000000202000000000108004500002e000040004011ae91c6120007c613000104000009\
                    001a7daf00000000000000020000000000000001f1d0";
        assert_eq!(buf[..60], hex(want)[..]);
        let s = Segment {
            src: A,
            dst: B,
            sport: 1024,
            dport: 80,
            flags: TCP_PSH | TCP_ACK,
            seq: 1000,
            ack: 77,
            stamp: Some((1, 2)),
        };
        assert_eq!(tcp(&mut buf, &MACS, &s), Some(72));
        let want = "02000000000202000000000108004500003a000040004006ae90c6120007c613000104000050\
                    000003e80000004d5018ffff2934000000000000000000020000000000000001f1d0";
        assert_eq!(buf[..72], hex(want)[..]);
        // Corrupt one payload byte: the parser's checksum check must catch it.
        buf[60] ^= 1;
        assert!(!parse(&buf).unwrap().checksums_ok);
    }

    #[test]
    fn larger_udp_frames_are_padded_and_valid() {
        let mut buf = [0xffu8; 1514];
        let n = udp(&mut buf, &MACS, A, B, 5000, 53, 1514, 7, 9).unwrap();
        let p = parse(&buf[..n]).unwrap();
        assert!(p.checksums_ok);
        assert!(buf[60..1514].iter().all(|&b| b == 0));
        assert_eq!(
            udp(&mut buf, &MACS, A, B, 1, 1, 59, 0, 0),
            None,
            "too short for a stamp"
        );
        assert_eq!(udp(&mut buf, &MACS, A, B, 1, 1, 1515, 0, 0), None);
    }

    #[test]
    fn tcp_segments_round_trip() {
        let mut buf = [0u8; 80];
        for (flags, stamp, len) in [(TCP_SYN, None, 60), (TCP_ACK | TCP_PSH, Some((3, 4)), 72)] {
            let s = Segment {
                src: A,
                dst: B,
                sport: 1024,
                dport: 80,
                flags,
                seq: 1000,
                ack: 77,
                stamp,
            };
            let n = tcp(&mut buf, &MACS, &s).unwrap();
            assert_eq!(n, len, "a bare segment is padded to 60 bytes");
            let p = parse(&buf[..n]).unwrap();
            let payload = if stamp.is_some() { 18 } else { 0 };
            assert_eq!(
                p.l4,
                L4::Tcp {
                    flags,
                    seq: 1000,
                    ack: 77,
                    payload
                }
            );
            assert_eq!(p.stamp, stamp);
            assert!(p.checksums_ok, "flags {flags:#x}");
        }
    }

    #[test]
    fn parse_rejects_what_is_not_ours() {
        let mut buf = [0u8; 60];
        udp(&mut buf, &MACS, A, B, 1, 2, 60, 0, 0).unwrap();
        let mut arp = buf;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), None);
        let mut frag = buf;
        frag[20] = 0x20; // more fragments
        assert_eq!(parse(&frag), None);
        let mut long = buf;
        long[16..18].copy_from_slice(&200u16.to_be_bytes()); // total length past the frame
        assert_eq!(parse(&long), None);
        assert_eq!(parse(&buf[..30]), None);
        let mut icmp = buf;
        icmp[23] = 1;
        assert_eq!(parse(&icmp), None);
    }
    #[test]
    fn reflected_udp_answers_with_valid_checksums() {
        let mut buf = [0u8; 60];
        udp(&mut buf, &MACS, A, B, 1024, 9, 60, 5, 77).unwrap();
        // As a router would forward it: TTL decremented, header checksum fixed.
        buf[22] = 63;
        buf[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&buf[14..34]);
        buf[24..26].copy_from_slice(&c.to_be_bytes());
        let back = Macs {
            src: [2, 0, 0, 0, 0, 9],
            dst: [2, 0, 0, 0, 0, 8],
        };
        assert!(reflect_udp(&mut buf, &back));
        let p = parse(&buf).unwrap();
        assert_eq!((p.src, p.dst, p.sport, p.dport), (B, A, 9, 1024));
        assert!(p.checksums_ok, "IPv4 and UDP checksums of the answer");
        assert_eq!(p.stamp, Some((5, 77)), "the stamp travels back");
        assert_eq!((&buf[0..6], &buf[6..12]), (&back.dst[..], &back.src[..]));
        assert_eq!(buf[22], 64, "a fresh TTL");
        // Reflecting the answer gives the original addresses back.
        assert!(reflect_udp(&mut buf, &MACS));
        let q = parse(&buf).unwrap();
        assert_eq!((q.src, q.dst, q.sport, q.dport), (A, B, 1024, 9));
        assert!(q.checksums_ok);
    }

    #[test]
    fn peek_tells_stamped_udp_from_the_rest() {
        let mut buf = [0u8; 64];
        udp(&mut buf, &MACS, A, B, 1024, 9, 60, 5, 77).unwrap();
        assert_eq!(peek(&buf[..60]), Peek::Stamped);
        assert_eq!(peek(&buf), Peek::Stamped, "padding after the frame is fine");
        let mut plain = buf;
        plain[42..60].fill(0);
        assert_eq!(peek(&plain[..60]), Peek::Unstamped);
        assert_eq!(peek(&buf[..59]), Peek::Other, "too short");
        let mut opts = buf;
        opts[14] = 0x46;
        assert_eq!(peek(&opts), Peek::Other, "IP options: parse decides");
        let s = Segment {
            src: A,
            dst: B,
            sport: 1024,
            dport: 80,
            flags: TCP_ACK,
            seq: 1,
            ack: 1,
            stamp: Some((5, 77)),
        };
        let mut seg = [0u8; 80];
        let n = tcp(&mut seg, &MACS, &s).unwrap();
        assert_eq!(peek(&seg[..n]), Peek::Other, "TCP");
    }

    #[test]
    fn reflect_leaves_other_frames_alone() {
        let mut buf = [0u8; 60];
        let s = Segment {
            src: A,
            dst: B,
            sport: 1024,
            dport: 80,
            flags: TCP_SYN,
            seq: 1,
            ack: 0,
            stamp: None,
        };
        tcp(&mut buf, &MACS, &s).unwrap();
        let before = buf;
        assert!(!reflect_udp(&mut buf, &MACS), "TCP is not reflected");
        assert_eq!(buf, before);
        assert!(!reflect_udp(&mut buf[..20], &MACS), "truncated");
        let mut frag = [0u8; 60];
        udp(&mut frag, &MACS, A, B, 1024, 9, 60, 5, 77).unwrap();
        frag[20] = 0x20; // more fragments
        let before = frag;
        assert!(!reflect_udp(&mut frag, &MACS), "a fragment");
        assert_eq!(frag, before);
    }
}
