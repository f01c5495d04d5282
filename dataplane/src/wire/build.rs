//! The one frame builder: the router's own packets (ICMP errors, TCP resets, ARP and
//! neighbour discovery, through `worker/pipe_build.rs`), the tests' frames (the pipeline
//! tests' `Pkt` is a thin wrapper), the benches and perfgen's templates.
//!
//! A [`Frame`] describes a packet; [`Frame::write`] serialises it into a caller buffer
//! without allocating and returns its length; [`Frame::to_vec`] is the allocating
//! convenience. Every checksum is filled in (IPv4 header, TCP, UDP, ICMP, ICMPv6 with its
//! pseudo-header). ICMP errors quote the given packet, cut to fit the minimum MTU as
//! RFC 1812 §4.3.2.3 (576 bytes) and RFC 4443 §2.4(c) (1280 bytes) ask.

use super::eth::{self, EthernetFrame, VlanTag, ethertype};
use super::icmp::{self, IcmpPacket};
use super::ipv4::Ipv4Packet;
use super::ipv6::Ipv6Packet;
use super::rewrite::fill_checksums_with;
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{Addr, ArpInfo, Family, Fragment, IpInfo, L4Info, TcpFlags, proto};

/// Why a frame could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The buffer is shorter than the frame (`need` bytes).
    BufferTooSmall { need: usize },
    /// Source and destination are of different families.
    FamilyMismatch,
    /// The IP packet would exceed 65535 bytes.
    TooLong,
    /// The L4 spec does not exist in this family (neighbour discovery over IPv4).
    WrongFamily,
}

/// Layer 2 of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EthSpec {
    pub src: [u8; 6],
    pub dst: [u8; 6],
    /// Adds an 802.1Q tag with this VLAN ID (priority 0).
    pub vlan: Option<u16>,
}

/// Layer 3: family follows the addresses (IPv4-mapped = IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpSpec {
    pub src: Addr,
    pub dst: Addr,
    /// TTL or hop limit (neighbour discovery needs 255).
    pub ttl: u8,
    /// IPv4 identification (low 16 bits) or IPv6 flow label (low 20 bits).
    pub id: u32,
    /// IPv4 don't-fragment bit.
    pub dont_frag: bool,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// `None`: the family follows the addresses (IPv4-mapped = IPv4). `Some` writes that
    /// family whatever the addresses look like (`Some(V6)`: IPv4-mapped addresses in an
    /// IPv6 header, as the router answers what it received).
    pub family: Option<Family>,
}

impl IpSpec {
    /// TTL 64, id 0, DF set, TOS 0.
    pub const fn new(src: Addr, dst: Addr) -> Self {
        IpSpec {
            src,
            dst,
            ttl: 64,
            id: 0,
            dont_frag: true,
            tos: 0,
            family: None,
        }
    }

    fn family(&self) -> Result<Family, BuildError> {
        match (self.family, self.src.to_v4(), self.dst.to_v4()) {
            (Some(Family::V6), ..) => Ok(Family::V6),
            (None | Some(Family::V4), Some(_), Some(_)) => Ok(Family::V4),
            (None, None, None) => Ok(Family::V6),
            _ => Err(BuildError::FamilyMismatch),
        }
    }
}

/// A TCP segment. Options are written in the order Linux uses (MSS, SACK-permitted,
/// timestamps, NOP + window scale), padded to a 4-byte boundary with end-of-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpSpec<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
    /// Timestamps option (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Option bytes written as given after the ones above (tests of odd or malformed
    /// options); the whole is padded with end-of-list to a 4-byte boundary.
    pub raw_options: &'a [u8],
    pub payload: &'a [u8],
}

impl TcpSpec<'_> {
    fn options_len(&self) -> usize {
        let raw = usize::from(self.mss.is_some()) * 4
            + usize::from(self.sack_perm) * 2
            + usize::from(self.timestamps.is_some()) * 10
            + usize::from(self.wscale.is_some()) * 4
            + self.raw_options.len();
        raw.div_ceil(4) * 4
    }

    fn write_options(&self, out: &mut [u8]) {
        let mut i = 0;
        if let Some(m) = self.mss {
            out[i..i + 2].copy_from_slice(&[2, 4]);
            out[i + 2..i + 4].copy_from_slice(&m.to_be_bytes());
            i += 4;
        }
        if self.sack_perm {
            out[i..i + 2].copy_from_slice(&[4, 2]);
            i += 2;
        }
        if let Some((val, ecr)) = self.timestamps {
            out[i..i + 2].copy_from_slice(&[8, 10]);
            out[i + 2..i + 6].copy_from_slice(&val.to_be_bytes());
            out[i + 6..i + 10].copy_from_slice(&ecr.to_be_bytes());
            i += 10;
        }
        if let Some(w) = self.wscale {
            out[i..i + 4].copy_from_slice(&[1, 3, 3, w]);
            i += 4;
        }
        out[i..i + self.raw_options.len()].copy_from_slice(self.raw_options);
    }
}

/// An ICMP / ICMPv6 error; type numbers follow the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// Destination unreachable with a family-specific code (IPv4 port unreachable = 3,
    /// IPv6 port unreachable = 4, administratively prohibited = 13 / 1).
    DestUnreachable(u8),
    /// Time exceeded in transit (code 0).
    TimeExceeded,
    /// IPv4 fragmentation needed (type 3 code 4) / IPv6 packet too big, with the MTU.
    PacketTooBig { mtu: u16 },
    /// Parameter problem with a pointer to the offending byte.
    ParamProblem { pointer: u8 },
    /// Any type and code, with the 4 bytes after the checksum as given (the router's
    /// errors: the pipeline chooses the numbers).
    Other { icmp_type: u8, code: u8, rest: u32 },
}

/// Layer 4 of an IP frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Spec<'a> {
    Tcp(TcpSpec<'a>),
    Udp {
        sport: u16,
        dport: u16,
        payload: &'a [u8],
    },
    IcmpEcho {
        request: bool,
        id: u16,
        seq: u16,
        payload: &'a [u8],
    },
    /// An error quoting `quoted` (the offending packet from its IP header on).
    IcmpError {
        kind: IcmpErrorKind,
        quoted: &'a [u8],
    },
    /// IPv6 neighbour solicitation, with an optional source link-layer address option.
    NeighborSolicit {
        target: [u8; 16],
        src_lladdr: Option<[u8; 6]>,
    },
    /// IPv6 neighbour advertisement (`flags`: `icmp::v6::NA_*`), with an optional target
    /// link-layer address option.
    NeighborAdvert {
        target: [u8; 16],
        flags: u8,
        target_lladdr: Option<[u8; 6]>,
    },
    /// Any protocol, payload as given (no checksum computed).
    Raw {
        proto: u8,
        payload: &'a [u8],
    },
}

/// What follows the Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Ip(IpSpec, L4Spec<'a>),
    Arp(ArpInfo),
}

/// A whole frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub eth: EthSpec,
    pub body: Body<'a>,
    /// Zero-pad to the 60-byte Ethernet minimum.
    pub pad: bool,
}

/// Largest quote in an ICMP error so the error fits 576 (IPv4) / 1280 (IPv6) bytes.
pub const fn quote_limit(family: Family) -> usize {
    match family {
        Family::V4 => 576 - 20 - 8,
        Family::V6 => 1280 - 40 - 8,
    }
}

impl<'a> Frame<'a> {
    /// An IP frame, padded.
    pub const fn ip(eth: EthSpec, ip: IpSpec, l4: L4Spec<'a>) -> Self {
        Frame {
            eth,
            body: Body::Ip(ip, l4),
            pad: true,
        }
    }

    /// An ARP frame, padded.
    pub const fn arp(eth: EthSpec, arp: ArpInfo) -> Self {
        Frame {
            eth,
            body: Body::Arp(arp),
            pad: true,
        }
    }

    /// The same frame, zero-padded to the 60-byte Ethernet minimum or not (`Frame::ip`
    /// and `Frame::arp` pad; the router's own IP packets and the pipeline tests' frames
    /// do not).
    pub const fn padded(self, pad: bool) -> Self {
        Frame { pad, ..self }
    }

    fn l2_len(&self) -> usize {
        eth::HEADER_LEN
            + if self.eth.vlan.is_some() {
                eth::VLAN_TAG_LEN
            } else {
                0
            }
    }

    /// Bytes of the L4 part and the L4 protocol number.
    fn l4_len(family: Family, l4: &L4Spec<'_>) -> (usize, u8) {
        let icmp = if family == Family::V4 {
            proto::ICMP
        } else {
            proto::ICMPV6
        };
        match l4 {
            L4Spec::Tcp(t) => (20 + t.options_len() + t.payload.len(), proto::TCP),
            L4Spec::Udp { payload, .. } => (8 + payload.len(), proto::UDP),
            L4Spec::IcmpEcho { payload, .. } => (8 + payload.len(), icmp),
            L4Spec::IcmpError { quoted, .. } => (8 + quoted.len().min(quote_limit(family)), icmp),
            L4Spec::NeighborSolicit { src_lladdr: o, .. }
            | L4Spec::NeighborAdvert {
                target_lladdr: o, ..
            } => (icmp::ND_LEN + if o.is_some() { 8 } else { 0 }, icmp),
            L4Spec::Raw { proto, payload } => (payload.len(), *proto),
        }
    }

    /// Length of the frame in bytes (including padding).
    pub fn wire_len(&self) -> Result<usize, BuildError> {
        let body = match &self.body {
            Body::Arp(_) => super::arp::PACKET_LEN,
            Body::Ip(ip, l4) => {
                let family = ip.family()?;
                let hl = if family == Family::V4 { 20 } else { 40 };
                let n = hl + Self::l4_len(family, l4).0;
                if n > usize::from(u16::MAX) {
                    return Err(BuildError::TooLong);
                }
                n
            }
        };
        let n = self.l2_len() + body;
        Ok(if self.pad {
            n.max(eth::MIN_FRAME_LEN)
        } else {
            n
        })
    }

    /// Writes the frame at the start of `buf`; returns its length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, BuildError> {
        let len = self.wire_len()?;
        let buf = buf
            .get_mut(..len)
            .ok_or(BuildError::BufferTooSmall { need: len })?;
        buf.fill(0);
        let l2 = self.l2_len();
        let mut e = EthernetFrame::new_unchecked(&mut *buf);
        e.set_dst_addr(self.eth.dst);
        e.set_src_addr(self.eth.src);
        let inner_type = match self.body {
            Body::Arp(_) => ethertype::ARP,
            Body::Ip(ip, _) if ip.family()? == Family::V4 => ethertype::IPV4,
            Body::Ip(..) => ethertype::IPV6,
        };
        match self.eth.vlan {
            Some(vid) => {
                e.set_ethertype(ethertype::VLAN);
                let mut t = VlanTag::new_unchecked(&mut buf[eth::HEADER_LEN..]);
                t.set_vid(vid);
                t.set_inner_ethertype(inner_type);
            }
            None => e.set_ethertype(inner_type),
        }
        match &self.body {
            Body::Arp(a) => super::arp::ArpPacket::new_unchecked(&mut buf[l2..]).fill(a),
            Body::Ip(ip, l4) => write_ip(buf, l2, ip, l4)?,
        }
        Ok(len)
    }

    /// The frame as a fresh vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, BuildError> {
        let mut v = vec![0u8; self.wire_len()?];
        self.write(&mut v)?;
        Ok(v)
    }
}

/// Writes the IP header of `ip` in `family` at `buf[l3..]` (IPv4 without options, its
/// checksum filled in; IPv6 without extension headers) for `payload_len` bytes of
/// `protocol`; returns the header length. A length beyond 65535 is written as 65535
/// (callers check first). Panics if `buf` is shorter than `l3` plus the header.
fn write_ip_header(
    buf: &mut [u8],
    l3: usize,
    ip: &IpSpec,
    family: Family,
    protocol: u8,
    payload_len: usize,
) -> usize {
    let len16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    let low4 = |a: Addr| [a.0[12], a.0[13], a.0[14], a.0[15]];
    match family {
        Family::V4 => {
            buf[l3..l3 + 20].fill(0);
            let mut p = Ipv4Packet::new_unchecked(&mut buf[l3..]);
            p.set_version_and_len(20);
            p.set_tos(ip.tos);
            p.set_total_len(len16(20 + payload_len));
            let [_, _, hi, lo] = ip.id.to_be_bytes();
            p.set_ident(u16::from_be_bytes([hi, lo]));
            p.set_frag(ip.dont_frag, false, 0);
            p.set_ttl(ip.ttl);
            p.set_protocol(protocol);
            p.set_src_addr(low4(ip.src));
            p.set_dst_addr(low4(ip.dst));
            p.fill_checksum();
            20
        }
        Family::V6 => {
            buf[l3..l3 + 40].fill(0);
            let mut p = Ipv6Packet::new_unchecked(&mut buf[l3..]);
            p.set_version_tc_flow(ip.tos, ip.id);
            p.set_payload_len(len16(payload_len));
            p.set_next_header(protocol);
            p.set_hop_limit(ip.ttl);
            p.set_src_addr(ip.src.0);
            p.set_dst_addr(ip.dst.0);
            40
        }
    }
}

fn write_ip(buf: &mut [u8], l3: usize, ip: &IpSpec, l4: &L4Spec<'_>) -> Result<(), BuildError> {
    let family = ip.family()?;
    let (l4_len, protocol) = Frame::l4_len(family, l4);
    let hl = if family == Family::V4 { 20 } else { 40 };
    let l4_off = l3 + hl;
    let total = u16::try_from(hl + l4_len).map_err(|_| BuildError::TooLong)?;
    write_ip_header(buf, l3, ip, family, protocol, l4_len);
    let seg = &mut buf[l4_off..l4_off + l4_len];
    let kind = write_l4(seg, family, l4)?;
    let info = IpInfo {
        family,
        src: ip.src,
        dst: ip.dst,
        proto: protocol,
        ttl: ip.ttl,
        l3_off: u16::try_from(l3).map_err(|_| BuildError::TooLong)?,
        l4_off: u16::try_from(l4_off).map_err(|_| BuildError::TooLong)?,
        ip_len: total,
        frag: Fragment::None,
        l4: Some(kind),
    };
    fill_checksums_with(buf, &info, false).map_err(|_| BuildError::TooLong)
}

/// Writes the L4 part; returns a summary whose variant tells `fill_checksums` which
/// checksum to compute (the field values in it are not used).
fn write_l4(seg: &mut [u8], family: Family, l4: &L4Spec<'_>) -> Result<L4Info, BuildError> {
    let v4 = family == Family::V4;
    let other = L4Info::IcmpOther {
        icmp_type: 0,
        code: 0,
    };
    match l4 {
        L4Spec::Tcp(t) => {
            let hl = 20 + t.options_len();
            let mut p = TcpPacket::new_unchecked(&mut *seg);
            p.set_src_port(t.sport);
            p.set_dst_port(t.dport);
            p.set_seq_number(t.seq);
            p.set_ack_number(t.ack);
            p.set_header_len(u8::try_from(hl).unwrap_or(60));
            p.set_flags(t.flags);
            p.set_window_len(t.window);
            t.write_options(&mut seg[20..hl]);
            seg[hl..].copy_from_slice(t.payload);
            Ok(L4Info::Tcp(TcpPacket::new_unchecked(&*seg).info()))
        }
        L4Spec::Udp {
            sport,
            dport,
            payload,
        } => {
            let mut p = UdpPacket::new_unchecked(&mut *seg);
            p.set_src_port(*sport);
            p.set_dst_port(*dport);
            p.set_len(u16::try_from(8 + payload.len()).map_err(|_| BuildError::TooLong)?);
            seg[8..].copy_from_slice(payload);
            Ok(L4Info::Udp {
                sport: *sport,
                dport: *dport,
            })
        }
        L4Spec::IcmpEcho {
            request,
            id,
            seq,
            payload,
        } => {
            let t = match (v4, request) {
                (true, true) => icmp::v4::ECHO_REQUEST,
                (true, false) => icmp::v4::ECHO_REPLY,
                (false, true) => icmp::v6::ECHO_REQUEST,
                (false, false) => icmp::v6::ECHO_REPLY,
            };
            let mut p = IcmpPacket::new_unchecked(&mut *seg);
            p.set_msg_type(t);
            p.set_echo_ident(*id);
            p.set_echo_seq(*seq);
            seg[8..].copy_from_slice(payload);
            Ok(other)
        }
        L4Spec::IcmpError { kind, quoted } => {
            let (t, code, rest) = match (kind, v4) {
                (IcmpErrorKind::DestUnreachable(c), true) => (icmp::v4::DEST_UNREACH, *c, 0),
                (IcmpErrorKind::DestUnreachable(c), false) => (icmp::v6::DEST_UNREACH, *c, 0),
                (IcmpErrorKind::TimeExceeded, true) => (icmp::v4::TIME_EXCEEDED, 0, 0),
                (IcmpErrorKind::TimeExceeded, false) => (icmp::v6::TIME_EXCEEDED, 0, 0),
                (IcmpErrorKind::PacketTooBig { mtu }, true) => {
                    (icmp::v4::DEST_UNREACH, 4, u32::from(*mtu))
                }
                (IcmpErrorKind::PacketTooBig { mtu }, false) => {
                    (icmp::v6::PACKET_TOO_BIG, 0, u32::from(*mtu))
                }
                (IcmpErrorKind::ParamProblem { pointer }, true) => {
                    (icmp::v4::PARAM_PROBLEM, 0, u32::from(*pointer) << 24)
                }
                (IcmpErrorKind::ParamProblem { pointer }, false) => {
                    (icmp::v6::PARAM_PROBLEM, 0, u32::from(*pointer))
                }
                (
                    IcmpErrorKind::Other {
                        icmp_type,
                        code,
                        rest,
                    },
                    _,
                ) => (*icmp_type, *code, *rest),
            };
            let mut p = IcmpPacket::new_unchecked(&mut *seg);
            p.set_msg_type(t);
            p.set_msg_code(code);
            p.set_rest_of_header(rest);
            let n = seg.len() - 8;
            seg[8..].copy_from_slice(&quoted[..n]);
            Ok(other)
        }
        L4Spec::NeighborSolicit {
            target,
            src_lladdr: ll,
        }
        | L4Spec::NeighborAdvert {
            target,
            target_lladdr: ll,
            ..
        } => {
            if v4 {
                return Err(BuildError::WrongFamily);
            }
            let (t, flags, opt) = match l4 {
                L4Spec::NeighborAdvert { flags, .. } => (
                    icmp::v6::NEIGHBOR_ADVERT,
                    *flags,
                    icmp::v6::OPT_TARGET_LLADDR,
                ),
                _ => (icmp::v6::NEIGHBOR_SOLICIT, 0, icmp::v6::OPT_SOURCE_LLADDR),
            };
            seg[0] = t;
            seg[4] = flags;
            seg[8..24].copy_from_slice(target);
            if let Some(mac) = ll {
                seg[24] = opt;
                seg[25] = 1;
                seg[26..32].copy_from_slice(mac);
            }
            Ok(other)
        }
        L4Spec::Raw { payload, .. } => {
            seg.copy_from_slice(payload);
            Ok(L4Info::Other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::capture;
    use crate::wire::{Parsed, VERIFY_ALL, check_invariants, parse};
    use proptest::prelude::*;

    fn eth_of(f: &[u8]) -> EthSpec {
        EthSpec {
            src: eth::mac(&f[6..12]),
            dst: eth::mac(&f[0..6]),
            vlan: None,
        }
    }

    fn v4(f: &[u8]) -> IpSpec {
        let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
        IpSpec {
            src: Addr::from_v4(p.src_addr()),
            dst: Addr::from_v4(p.dst_addr()),
            ttl: p.ttl(),
            id: u32::from(p.ident()),
            dont_frag: p.dont_frag(),
            tos: p.tos(),
            family: None,
        }
    }

    fn v6(f: &[u8]) -> IpSpec {
        let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
        IpSpec {
            src: Addr::from_v6(p.src_addr()),
            dst: Addr::from_v6(p.dst_addr()),
            ttl: p.hop_limit(),
            id: p.flow_label(),
            dont_frag: false,
            tos: p.traffic_class(),
            family: None,
        }
    }

    #[test]
    fn tcp_syn_equals_the_capture_byte_for_byte() {
        let f = capture("198.18.0.1.44370 > 198.18.0.2.5001: Flags [S]");
        let t = TcpSpec {
            sport: 44370,
            dport: 5001,
            seq: 3_718_614_756,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            mss: Some(1460),
            wscale: Some(10),
            sack_perm: true,
            timestamps: Some((2_040_037_483, 0)),
            raw_options: &[],
            payload: &[],
        };
        let built = Frame {
            pad: false,
            ..Frame::ip(eth_of(&f), v4(&f), L4Spec::Tcp(t))
        };
        assert_eq!(built.to_vec().unwrap(), f);
    }

    #[test]
    fn echo_and_udp_equal_the_captures() {
        let f = capture("ICMP echo request, id 14507");
        let l4 = L4Spec::IcmpEcho {
            request: true,
            id: 14507,
            seq: 1,
            payload: &f[42..],
        };
        assert_eq!(Frame::ip(eth_of(&f), v4(&f), l4).to_vec().unwrap(), f);
        let f = capture("2001:db8::1 > 2001:db8::2: ICMP6, echo request");
        let l4 = L4Spec::IcmpEcho {
            request: true,
            id: 14508,
            seq: 1,
            payload: &f[62..],
        };
        assert_eq!(Frame::ip(eth_of(&f), v6(&f), l4).to_vec().unwrap(), f);
        let f = capture("2001:db8::1.39467 > 2001:db8::2.5004: UDP");
        let l4 = L4Spec::Udp {
            sport: 39467,
            dport: 5004,
            payload: b"udp6\n",
        };
        assert_eq!(Frame::ip(eth_of(&f), v6(&f), l4).to_vec().unwrap(), f);
    }

    #[test]
    fn icmp_errors_equal_the_captures() {
        let f = capture("udp port 5003 unreachable");
        let l4 = L4Spec::IcmpError {
            kind: IcmpErrorKind::DestUnreachable(3),
            quoted: &f[42..],
        };
        assert_eq!(Frame::ip(eth_of(&f), v4(&f), l4).to_vec().unwrap(), f);
        let f = capture("unreachable port, 2001:db8::2 udp port 5004");
        let l4 = L4Spec::IcmpError {
            kind: IcmpErrorKind::DestUnreachable(4),
            quoted: &f[62..],
        };
        assert_eq!(Frame::ip(eth_of(&f), v6(&f), l4).to_vec().unwrap(), f);
    }

    #[test]
    fn neighbour_discovery_and_arp_equal_the_captures() {
        let f = capture("neighbor solicitation, who has 2001:db8::2");
        let target = IcmpPacket::new_checked(&f[54..])
            .unwrap()
            .nd_target()
            .unwrap();
        let l4 = L4Spec::NeighborSolicit {
            target,
            src_lladdr: Some(eth::mac(&f[6..12])),
        };
        assert_eq!(Frame::ip(eth_of(&f), v6(&f), l4).to_vec().unwrap(), f);
        let f = capture("neighbor advertisement, tgt is 2001:db8::2");
        let l4 = L4Spec::NeighborAdvert {
            target,
            flags: f[58],
            target_lladdr: Some(eth::mac(&f[6..12])),
        };
        assert_eq!(Frame::ip(eth_of(&f), v6(&f), l4).to_vec().unwrap(), f);
        let f = capture("ARP, Reply");
        let Ok(Parsed::Arp(_, arp)) = parse(&f, &VERIFY_ALL) else {
            panic!()
        };
        let built = Frame {
            pad: false,
            ..Frame::arp(eth_of(&f), arp)
        };
        assert_eq!(built.to_vec().unwrap(), f);
        assert_eq!(Frame::arp(eth_of(&f), arp).to_vec().unwrap().len(), 60);
    }

    #[test]
    fn quote_is_cut_to_the_minimum_mtu() {
        let big = [0x45u8; 1400];
        let ip = IpSpec::new(Addr::from_v4([192, 0, 2, 1]), Addr::from_v4([192, 0, 2, 2]));
        let l4 = L4Spec::IcmpError {
            kind: IcmpErrorKind::TimeExceeded,
            quoted: &big,
        };
        let v = Frame::ip(EthSpec::default(), ip, l4).to_vec().unwrap();
        assert_eq!(v.len(), 14 + 576);
        let ip6 = IpSpec::new(Addr::from_v6([0x20; 16]), Addr::from_v6([0x20; 16]));
        let quoted = [0x60u8; 1400];
        let l4 = L4Spec::IcmpError {
            kind: IcmpErrorKind::PacketTooBig { mtu: 1280 },
            quoted: &quoted,
        };
        assert_eq!(
            Frame::ip(EthSpec::default(), ip6, l4)
                .to_vec()
                .unwrap()
                .len(),
            14 + 1280
        );
    }

    #[test]
    fn build_errors() {
        let a4 = Addr::from_v4([192, 0, 2, 1]);
        let a6 = Addr::from_v6([0x20; 16]);
        let udp = L4Spec::Udp {
            sport: 1,
            dport: 2,
            payload: &[],
        };
        let mixed = Frame::ip(EthSpec::default(), IpSpec::new(a4, a6), udp);
        assert_eq!(mixed.to_vec(), Err(BuildError::FamilyMismatch));
        let ok = Frame::ip(EthSpec::default(), IpSpec::new(a4, a4), udp);
        assert_eq!(
            ok.write(&mut [0u8; 59]),
            Err(BuildError::BufferTooSmall { need: 60 })
        );
        let ns = L4Spec::NeighborSolicit {
            target: [0; 16],
            src_lladdr: None,
        };
        assert_eq!(
            Frame::ip(EthSpec::default(), IpSpec::new(a4, a4), ns).to_vec(),
            Err(BuildError::WrongFamily)
        );
        let huge = vec![0u8; 70_000];
        let raw = L4Spec::Raw {
            proto: 47,
            payload: &huge,
        };
        assert_eq!(
            Frame::ip(EthSpec::default(), IpSpec::new(a4, a4), raw).to_vec(),
            Err(BuildError::TooLong)
        );
    }

    fn addr_strategy(v6: bool) -> impl Strategy<Value = Addr> {
        any::<[u8; 16]>().prop_map(move |mut b| {
            if v6 {
                b[0] = 0x20; // global unicast, never a bad source
                Addr::from_v6(b)
            } else {
                Addr::from_v4([198, 18 + (b[0] & 1), b[1], b[2]])
            }
        })
    }

    proptest! {
        #[test]
        fn build_then_parse_round_trips(
            is_v6 in any::<bool>(),
            vlan in proptest::option::of(0u16..4096),
            pad in any::<bool>(),
            kind in 0u8..3,
            sport in any::<u16>(),
            dport in any::<u16>(),
            seq in any::<u32>(),
            flags in any::<u8>(),
            mss in proptest::option::of(any::<u16>()),
            wscale in proptest::option::of(0u8..15),
            sack_perm in any::<bool>(),
            ts in proptest::option::of(any::<(u32, u32)>()),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
            (src, dst) in any::<bool>().prop_flat_map(|_| (addr_strategy(false), addr_strategy(false))),
            (src6, dst6) in (addr_strategy(true), addr_strategy(true)),
            ttl in 1u8..=255,
        ) {
            let (src, dst) = if is_v6 { (src6, dst6) } else { (src, dst) };
            let ip = IpSpec { ttl, ..IpSpec::new(src, dst) };
            let l4 = match kind {
                0 => L4Spec::Tcp(TcpSpec {
                    sport, dport, seq, ack: !seq, flags: TcpFlags(flags), window: sport,
                    mss, wscale, sack_perm, timestamps: ts, raw_options: &[], payload: &payload,
                }),
                1 => L4Spec::Udp { sport, dport, payload: &payload },
                _ => L4Spec::IcmpEcho { request: sport & 1 == 0, id: dport, seq: sport, payload: &payload },
            };
            let frame = Frame { eth: EthSpec { src: [2, 0, 0, 0, 0, 1], dst: [2, 0, 0, 0, 0, 2], vlan }, body: Body::Ip(ip, l4), pad };
            let bytes = frame.to_vec().unwrap();
            let parsed = parse(&bytes, &VERIFY_ALL);
            prop_assert!(parsed.is_ok(), "{:?}", parsed);
            let p = parsed.unwrap();
            prop_assert_eq!(check_invariants(&p, bytes.len()), Ok(()));
            let Parsed::Ip(l2, info) = p else { panic!() };
            prop_assert_eq!(l2.vlan, vlan);
            prop_assert_eq!((info.src, info.dst, info.ttl), (src, dst, ttl));
            match (l4, info.l4) {
                (L4Spec::Tcp(t), Some(L4Info::Tcp(got))) => {
                    prop_assert_eq!((got.sport, got.dport, got.seq, got.ack), (t.sport, t.dport, t.seq, t.ack));
                    prop_assert_eq!((got.flags, got.window), (t.flags, t.window));
                    prop_assert_eq!((got.mss, got.wscale, got.sack_perm), (t.mss, t.wscale, t.sack_perm));
                    prop_assert_eq!(usize::from(got.payload_len), payload.len());
                }
                (L4Spec::Udp { .. }, Some(L4Info::Udp { sport: s, dport: d })) => {
                    prop_assert_eq!((s, d), (sport, dport));
                }
                (L4Spec::IcmpEcho { request, id, seq, .. }, Some(L4Info::IcmpEcho { request: r, id: i, seq: s })) => {
                    prop_assert_eq!((r, i, s), (request, id, seq));
                }
                (want, got) => prop_assert!(false, "{:?} parsed as {:?}", want, got),
            }
        }
    }
}
