//! The parse step: an Ethernet frame in, a [`Parsed`] summary or a [`DropReason`] out.
//!
//! What is checked (the rest of the pipeline may rely on it):
//! - Ethernet header; at most one 802.1Q tag (QinQ or a second tag is `BadVlan`).
//! - IPv4: version, IHL, total length within the frame (L2 padding after it is allowed),
//!   option framing, header checksum (see [`ParseOptions`]), source address.
//! - IPv6: version, payload length within the frame, the extension-header chain, source.
//! - L4 of non-fragments and first fragments: TCP data offset and option framing, UDP
//!   length (8 <= length <= IP payload, as Linux), ICMP/ICMPv6 header and, for errors, an
//!   embedded IP header plus the 8 bytes of L4 header that hold the ports/identifier.
//! - L4 checksums of non-fragments (see [`ParseOptions`]). A fragment's L4 checksum
//!   covers the whole datagram and is never verified: there is no reassembly.
//!
//! Fragments: the first fragment (offset 0, more-fragments set) carries the L4 header and
//! gets `l4: Some(..)` (its `payload_len` and UDP length describe the datagram as far as
//! this fragment goes); later fragments get `l4: None`. Nothing is reassembled.
//!
//! Source addresses dropped as `BadSourceAddress` (Linux martians): IPv4 multicast
//! (224/4), limited broadcast, loopback (127/8); IPv6 multicast, loopback (::1) and
//! IPv4-mapped (RFC 4291 §2.5.5.2, dropped by Linux `ipv6_rcv`). Unspecified sources
//! (0.0.0.0 for DHCP, :: for duplicate address detection) are allowed.

use super::checksum;
use super::eth::{EthernetFrame, VLAN_TAG_LEN, VlanTag, ethertype};
use super::icmp::{self, IcmpPacket};
use super::ipv4::Ipv4Packet;
use super::ipv6::{self, Ipv6Packet};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{Addr, Family, Fragment, InnerTuple, IpInfo, L2Info, L4Info, Parsed, TcpInfo, proto};
use crate::DropReason;
use crate::wire::arp::ArpPacket;

/// What the NIC said about a checksum (DPDK `RTE_MBUF_F_RX_*_CKSUM_{GOOD,BAD,UNKNOWN}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HwCsum {
    /// Not checked by hardware (or no offload): software decides.
    #[default]
    Unknown,
    /// Hardware verified it: software skips it.
    Good,
    /// Hardware found it wrong: the packet is dropped whatever the software flags say.
    Bad,
}

/// Which checksums to verify. A layer whose hardware status is `Unknown` is verified in
/// software when its `verify_*` flag is set; `Good` skips it; `Bad` drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Verify the IPv4 header checksum in software.
    pub verify_ip: bool,
    /// Verify TCP / UDP / ICMP / ICMPv6 checksums in software.
    pub verify_l4: bool,
    /// NIC verdict on the IPv4 header checksum.
    pub hw_ip: HwCsum,
    /// NIC verdict on the L4 checksum.
    pub hw_l4: HwCsum,
}

/// Verify every checksum in software (no offload).
pub const VERIFY_ALL: ParseOptions = ParseOptions {
    verify_ip: true,
    verify_l4: true,
    hw_ip: HwCsum::Unknown,
    hw_l4: HwCsum::Unknown,
};

/// Verify nothing (trusted source, or fuzzing the structure only).
pub const TRUST_ALL: ParseOptions = ParseOptions {
    verify_ip: false,
    verify_l4: false,
    hw_ip: HwCsum::Unknown,
    hw_l4: HwCsum::Unknown,
};

impl ParseOptions {
    /// Software verification where the NIC gave no verdict, plus the NIC's verdicts.
    pub const fn with_offload(hw_ip: HwCsum, hw_l4: HwCsum) -> Self {
        ParseOptions {
            verify_ip: true,
            verify_l4: true,
            hw_ip,
            hw_l4,
        }
    }

    fn check(
        verify: bool,
        hw: HwCsum,
        bad: DropReason,
        ok: impl FnOnce() -> bool,
    ) -> Result<(), DropReason> {
        match hw {
            HwCsum::Bad => Err(bad),
            HwCsum::Good => Ok(()),
            HwCsum::Unknown if verify && !ok() => Err(bad),
            HwCsum::Unknown => Ok(()),
        }
    }
}

impl Default for ParseOptions {
    fn default() -> Self {
        VERIFY_ALL
    }
}

fn off16(v: usize) -> Result<u16, DropReason> {
    u16::try_from(v).map_err(|_| DropReason::BadIpLength)
}

/// Parses a whole Ethernet frame (without FCS).
pub fn parse(frame: &[u8], opts: &ParseOptions) -> Result<Parsed, DropReason> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut etype = eth.ethertype();
    let mut l3_off = super::eth::HEADER_LEN;
    let mut vlan = None;
    if etype == ethertype::VLAN {
        let tag = VlanTag::new_checked(eth.payload())?;
        vlan = Some(tag.vid());
        etype = tag.inner_ethertype();
        l3_off += VLAN_TAG_LEN;
        if etype == ethertype::VLAN || etype == ethertype::QINQ {
            return Err(DropReason::BadVlan);
        }
    } else if etype == ethertype::QINQ {
        return Err(DropReason::BadVlan);
    }
    let l2 = L2Info {
        dst_mac: eth.dst_addr(),
        src_mac: eth.src_addr(),
        vlan,
        ethertype: etype,
        l3_off: off16(l3_off)?,
    };
    match etype {
        ethertype::IPV4 => Ok(Parsed::Ip(l2, parse_v4(frame, l3_off, opts)?)),
        ethertype::IPV6 => Ok(Parsed::Ip(l2, parse_v6(frame, l3_off, opts)?)),
        ethertype::ARP => Ok(Parsed::Arp(
            l2,
            ArpPacket::new_checked(&frame[l3_off..])?.info(),
        )),
        _ => Err(DropReason::UnsupportedEthertype),
    }
}

fn parse_v4(frame: &[u8], l3_off: usize, opts: &ParseOptions) -> Result<IpInfo, DropReason> {
    let ip = Ipv4Packet::new_checked(&frame[l3_off..])?;
    ParseOptions::check(
        opts.verify_ip,
        opts.hw_ip,
        DropReason::BadIpChecksum,
        || ip.verify_checksum(),
    )?;
    let src = ip.src_addr();
    if src[0] >= 224 && src[0] < 240 || src == [255; 4] || src[0] == 127 {
        return Err(DropReason::BadSourceAddress);
    }
    // Only the outer header: a quoted header inside an ICMP error is not routed.
    if ip.has_source_route() {
        return Err(DropReason::SourceRoute);
    }
    let frag = match (ip.more_frags(), ip.frag_offset()) {
        (false, 0) => Fragment::None,
        (true, 0) => Fragment::First,
        _ => Fragment::Later,
    };
    let l4_off = l3_off + ip.header_len();
    let dst = ip.dst_addr();
    let l4 = if frag == Fragment::Later {
        None
    } else {
        let payload = ip.payload();
        let ctx = L4Ctx {
            family: Family::V4,
            proto: ip.protocol(),
            pseudo: checksum::pseudo_v4(src, dst, ip.protocol(), 0),
            fragment: frag != Fragment::None,
            l4_off,
        };
        Some(parse_l4(&ctx, payload, opts)?)
    };
    Ok(IpInfo {
        family: Family::V4,
        src: Addr::from_v4(src),
        dst: Addr::from_v4(dst),
        proto: ip.protocol(),
        ttl: ip.ttl(),
        l3_off: off16(l3_off)?,
        l4_off: off16(l4_off)?,
        ip_len: ip.total_len(),
        frag,
        l4,
    })
}

fn bad_v6_source(src: &[u8; 16]) -> bool {
    let mapped = src[..10].iter().all(|&b| b == 0) && src[10] == 0xff && src[11] == 0xff;
    let loopback = src[..15].iter().all(|&b| b == 0) && src[15] == 1;
    src[0] == 0xff || loopback || mapped
}

fn parse_v6(frame: &[u8], l3_off: usize, opts: &ParseOptions) -> Result<IpInfo, DropReason> {
    let ip = Ipv6Packet::new_checked(&frame[l3_off..])?;
    let src = ip.src_addr();
    if bad_v6_source(&src) {
        return Err(DropReason::BadSourceAddress);
    }
    let dst = ip.dst_addr();
    let chain = ipv6::walk_ext(ip.payload(), ip.next_header())?;
    let frag = match chain.frag {
        None => Fragment::None,
        Some(f) if f.offset == 0 && f.more => Fragment::First,
        // An atomic fragment (offset 0, M clear, RFC 6946) is a whole datagram.
        Some(f) if f.offset == 0 => Fragment::None,
        Some(_) => Fragment::Later,
    };
    let l4_off = l3_off + ipv6::HEADER_LEN + chain.l4_off;
    let ip_len = ipv6::HEADER_LEN + usize::from(ip.payload_len());
    let l4 = if frag == Fragment::Later {
        None
    } else {
        let payload = &ip.payload()[chain.l4_off..];
        let ctx = L4Ctx {
            family: Family::V6,
            proto: chain.proto,
            pseudo: checksum::pseudo_v6(&src, &dst, chain.proto, 0),
            fragment: frag != Fragment::None,
            l4_off,
        };
        Some(parse_l4(&ctx, payload, opts)?)
    };
    Ok(IpInfo {
        family: Family::V6,
        src: Addr::from_v6(src),
        dst: Addr::from_v6(dst),
        proto: chain.proto,
        ttl: ip.hop_limit(),
        l3_off: off16(l3_off)?,
        l4_off: off16(l4_off)?,
        ip_len: off16(ip_len)?,
        frag,
        l4,
    })
}

struct L4Ctx {
    family: Family,
    proto: u8,
    /// Pseudo-header sum with L4 length 0 (add one with [`with_len`]).
    pseudo: u32,
    /// First fragment: checksums cannot be verified, lengths describe the datagram.
    fragment: bool,
    /// Offset of `payload` in the frame.
    l4_off: usize,
}

fn parse_l4(ctx: &L4Ctx, payload: &[u8], opts: &ParseOptions) -> Result<L4Info, DropReason> {
    let verify = opts.verify_l4 && !ctx.fragment;
    let hw = if ctx.fragment {
        HwCsum::Good
    } else {
        opts.hw_l4
    };
    let bad = DropReason::BadL4Checksum;
    match (ctx.proto, ctx.family) {
        (proto::TCP, _) => {
            let tcp = TcpPacket::new_checked(payload)?;
            ParseOptions::check(verify, hw, bad, || {
                checksum::verify(checksum::add(
                    with_len(ctx.pseudo, payload.len()),
                    checksum::sum(payload),
                ))
            })?;
            let info: TcpInfo = tcp.info();
            Ok(L4Info::Tcp(info))
        }
        (proto::UDP, _) => {
            let udp = UdpPacket::new_unchecked(payload);
            if payload.len() < super::udp::HEADER_LEN {
                return Err(DropReason::Truncated);
            }
            if usize::from(udp.len()) < super::udp::HEADER_LEN {
                return Err(DropReason::BadUdpLength);
            }
            if !ctx.fragment {
                udp.check_len()?;
                ParseOptions::check(verify, hw, bad, || {
                    udp_checksum_ok(ctx, &payload[..usize::from(udp.len())], udp.checksum())
                })?;
            }
            Ok(L4Info::Udp {
                sport: udp.src_port(),
                dport: udp.dst_port(),
            })
        }
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6) => {
            let msg = IcmpPacket::new_checked(payload)?;
            ParseOptions::check(verify, hw, bad, || {
                let s = checksum::sum(payload);
                let s = if ctx.family == Family::V6 {
                    checksum::add(s, with_len(ctx.pseudo, payload.len()))
                } else {
                    s
                };
                checksum::verify(s)
            })?;
            let (t, code) = (msg.msg_type(), msg.msg_code());
            let (echo_req, echo_rep, is_error) = match ctx.family {
                Family::V4 => (
                    icmp::v4::ECHO_REQUEST,
                    icmp::v4::ECHO_REPLY,
                    icmp::v4::is_error(t),
                ),
                Family::V6 => (
                    icmp::v6::ECHO_REQUEST,
                    icmp::v6::ECHO_REPLY,
                    icmp::v6::is_error(t),
                ),
            };
            if t == echo_req || t == echo_rep {
                Ok(L4Info::IcmpEcho {
                    request: t == echo_req,
                    id: msg.echo_ident(),
                    seq: msg.echo_seq(),
                })
            } else if is_error {
                let inner = parse_inner(ctx.family, msg.data(), ctx.l4_off + icmp::HEADER_LEN)?;
                Ok(L4Info::IcmpError {
                    icmp_type: t,
                    code,
                    inner,
                })
            } else {
                Ok(L4Info::IcmpOther { icmp_type: t, code })
            }
        }
        _ => Ok(L4Info::Other),
    }
}

fn udp_checksum_ok(ctx: &L4Ctx, dgram: &[u8], field: u16) -> bool {
    if field == 0 {
        // RFC 768: zero means "no checksum" over IPv4; RFC 8200 §8.1 forbids it over IPv6.
        return ctx.family == Family::V4;
    }
    // The pseudo-header length is the UDP length, which may be below the IP payload.
    checksum::verify(checksum::add(
        with_len(ctx.pseudo, dgram.len()),
        checksum::sum(dgram),
    ))
}

/// Adds an L4 length to a pseudo-header sum computed with length 0.
fn with_len(pseudo: u32, len: usize) -> u32 {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    checksum::add(pseudo, (len >> 16) + (len & 0xffff))
}

/// Parses the datagram quoted in an ICMP/ICMPv6 error. `base` is the offset of `data` in
/// the frame. Anything short of an IP header plus the 8 L4 bytes that carry ports (for
/// TCP, UDP, ICMP) is `BadIcmp`, as is a quoted non-first fragment.
fn parse_inner(family: Family, data: &[u8], base: usize) -> Result<InnerTuple, DropReason> {
    let bad = DropReason::BadIcmp;
    let (src, dst, proto, l4_rel) = match family {
        Family::V4 => {
            if data.len() < super::ipv4::HEADER_LEN || data[0] >> 4 != 4 {
                return Err(bad);
            }
            let ip = Ipv4Packet::new_unchecked(data);
            let hl = ip.header_len();
            if hl < super::ipv4::HEADER_LEN || hl > data.len() || ip.frag_offset() != 0 {
                return Err(bad);
            }
            (
                Addr::from_v4(ip.src_addr()),
                Addr::from_v4(ip.dst_addr()),
                ip.protocol(),
                hl,
            )
        }
        Family::V6 => {
            if data.len() < ipv6::HEADER_LEN || data[0] >> 4 != 6 {
                return Err(bad);
            }
            let ip = Ipv6Packet::new_unchecked(data);
            let chain =
                ipv6::walk_ext(&data[ipv6::HEADER_LEN..], ip.next_header()).map_err(|_| bad)?;
            if chain.frag.is_some_and(|f| f.offset != 0) {
                return Err(bad);
            }
            (
                Addr::from_v6(ip.src_addr()),
                Addr::from_v6(ip.dst_addr()),
                chain.proto,
                ipv6::HEADER_LEN + chain.l4_off,
            )
        }
    };
    let l4 = &data[l4_rel..];
    let (mut sport, mut dport, mut icmp_type) = (0, 0, 0);
    let is_icmp = matches!(
        (proto, family),
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6)
    );
    if matches!(proto, proto::TCP | proto::UDP) || is_icmp {
        if l4.len() < 8 {
            return Err(bad);
        }
        if is_icmp {
            let m = IcmpPacket::new_unchecked(l4);
            icmp_type = m.msg_type();
            let echo = match family {
                Family::V4 => matches!(icmp_type, icmp::v4::ECHO_REQUEST | icmp::v4::ECHO_REPLY),
                Family::V6 => matches!(icmp_type, icmp::v6::ECHO_REQUEST | icmp::v6::ECHO_REPLY),
            };
            if echo {
                sport = m.echo_ident();
                dport = sport;
            }
        } else {
            sport = u16::from_be_bytes([l4[0], l4[1]]);
            dport = u16::from_be_bytes([l4[2], l4[3]]);
        }
    }
    Ok(InnerTuple {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type,
        l3_off: off16(base)?,
        l4_off: off16(base + l4_rel)?,
    })
}

/// Checks the promises a [`Parsed`] value makes about a frame of `frame_len` bytes:
/// every offset is inside the frame and in order, the L4 header the summary describes
/// fits, families agree. Used by the fuzzers and the property tests; returns what broke.
pub fn check_invariants(p: &Parsed, frame_len: usize) -> Result<(), &'static str> {
    let l2 = match p {
        Parsed::Ip(l2, _) | Parsed::Arp(l2, _) => l2,
    };
    let want_l3 = if l2.vlan.is_some() { 18 } else { 14 };
    if usize::from(l2.l3_off) != want_l3 {
        return Err("l2.l3_off does not match the VLAN tag");
    }
    let ip = match p {
        Parsed::Arp(l2, _) => {
            if l2.ethertype != ethertype::ARP || frame_len < want_l3 + super::arp::PACKET_LEN {
                return Err("ARP summary for a frame that cannot hold it");
            }
            return Ok(());
        }
        Parsed::Ip(_, ip) => ip,
    };
    let (l3, l4) = (usize::from(ip.l3_off), usize::from(ip.l4_off));
    let end = l3 + usize::from(ip.ip_len);
    if l3 != want_l3 {
        return Err("ip.l3_off differs from l2.l3_off");
    }
    if end > frame_len {
        return Err("IP packet runs past the frame");
    }
    let (min_hdr, etype) = match ip.family {
        Family::V4 => (super::ipv4::HEADER_LEN, ethertype::IPV4),
        Family::V6 => (ipv6::HEADER_LEN, ethertype::IPV6),
    };
    if l2.ethertype != etype {
        return Err("family disagrees with the EtherType");
    }
    if l4 < l3 + min_hdr || l4 > end {
        return Err("l4_off outside the IP packet");
    }
    let v4 = ip.family == Family::V4;
    if ip.src.to_v4().is_some() != v4 || (v4 && ip.dst.to_v4().is_none()) {
        return Err("address form disagrees with the family");
    }
    if (ip.frag == Fragment::Later) != ip.l4.is_none() {
        return Err("l4 present on a later fragment or missing on a first/whole one");
    }
    let avail = end - l4;
    match ip.l4 {
        Some(L4Info::Tcp(t))
            if avail < super::tcp::HEADER_LEN || usize::from(t.payload_len) + 20 > avail =>
        {
            return Err("TCP header or payload_len past the IP packet");
        }
        Some(L4Info::Udp { .. }) if avail < super::udp::HEADER_LEN => {
            return Err("UDP header past the IP packet");
        }
        Some(L4Info::IcmpEcho { .. } | L4Info::IcmpOther { .. }) if avail < icmp::HEADER_LEN => {
            return Err("ICMP header past the IP packet");
        }
        Some(L4Info::IcmpError { inner, .. }) => {
            let (il3, il4) = (usize::from(inner.l3_off), usize::from(inner.l4_off));
            if il3 != l4 + icmp::HEADER_LEN || il4 < il3 + min_hdr || il4 > end {
                return Err("ICMP error inner offsets out of place");
            }
            if inner.src.to_v4().is_some() != v4 && v4 {
                return Err("inner address form disagrees with the family");
            }
            if matches!(inner.proto, proto::TCP | proto::UDP) && il4 + 8 > end {
                return Err("inner ports past the IP packet");
            }
        }
        _ => {}
    }
    Ok(())
}
