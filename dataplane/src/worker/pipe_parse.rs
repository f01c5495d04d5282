//! Interim frame parser for the pipeline: SEAM(wire).
//!
//! `wire::parse` (the zero-copy parser with full validation) is being written by another
//! branch at the same time. Until it lands on `main`, the pipeline and the slow path call
//! this minimal parser, which fills the same contract type ([`Parsed`]) with the checks
//! the router needs: lengths, IPv4 IHL / header checksum, fragments, TCP data offset,
//! ICMP error inner tuples. It does not verify L4 checksums, walks no IPv6 extension
//! headers (the next header after the fixed header is the protocol) and has no VLAN
//! support beyond one tag. Replace the body of [`parse`] with a call to `wire::parse` when
//! it exists; the signature is the same.

use crate::DropReason;
use crate::wire::{
    Addr, ArpInfo, Family, Fragment, InnerTuple, IpInfo, L2Info, L4Info, Parsed, TcpFlags, TcpInfo,
    proto,
};

pub(crate) const ETH_IPV4: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
pub(crate) const ETH_ARP: u16 = 0x0806;
const ETH_VLAN: u16 = 0x8100;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn addr4(b: &[u8], off: usize) -> Option<Addr> {
    let s = b.get(off..off + 4)?;
    Some(Addr::from_v4([s[0], s[1], s[2], s[3]]))
}

fn addr6(b: &[u8], off: usize) -> Option<Addr> {
    let s: [u8; 16] = b.get(off..off + 16)?.try_into().ok()?;
    Some(Addr::from_v6(s))
}

fn off16(v: usize) -> Result<u16, DropReason> {
    u16::try_from(v).map_err(|_| DropReason::BadIpLength)
}

/// Parses one Ethernet frame into the pipeline's summary.
pub fn parse(frame: &[u8]) -> Result<Parsed, DropReason> {
    use DropReason as D;
    let mut ethertype = be16(frame, 12).ok_or(D::Truncated)?;
    let mut l3 = 14usize;
    let mut vlan = None;
    if ethertype == ETH_VLAN {
        let tci = be16(frame, 14).ok_or(D::Truncated)?;
        vlan = Some(tci & 0x0fff);
        ethertype = be16(frame, 16).ok_or(D::Truncated)?;
        l3 = 18;
        if ethertype == ETH_VLAN {
            return Err(D::BadVlan);
        }
    }
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&frame[0..6]);
    src_mac.copy_from_slice(&frame[6..12]);
    let l2 = L2Info {
        dst_mac,
        src_mac,
        vlan,
        ethertype,
        l3_off: off16(l3)?,
    };
    match ethertype {
        ETH_ARP => parse_arp(frame, l2).map(|a| Parsed::Arp(l2, a)),
        ETH_IPV4 => parse_v4(frame, l3).map(|ip| Parsed::Ip(l2, ip)),
        ETH_IPV6 => parse_v6(frame, l3).map(|ip| Parsed::Ip(l2, ip)),
        _ => Err(D::UnsupportedEthertype),
    }
}

fn parse_arp(f: &[u8], l2: L2Info) -> Result<ArpInfo, DropReason> {
    let o = usize::from(l2.l3_off);
    let a = f.get(o..o + 28).ok_or(DropReason::Truncated)?;
    // Ethernet (1), IPv4 (0x0800), hlen 6, plen 4.
    if a[0..6] != [0, 1, 8, 0, 6, 4] {
        return Err(DropReason::BadArp);
    }
    let operation = u16::from_be_bytes([a[6], a[7]]);
    if operation != 1 && operation != 2 {
        return Err(DropReason::BadArp);
    }
    let mut info = ArpInfo {
        operation,
        sender_mac: [0; 6],
        sender_ip: [0; 4],
        target_mac: [0; 6],
        target_ip: [0; 4],
    };
    info.sender_mac.copy_from_slice(&a[8..14]);
    info.sender_ip.copy_from_slice(&a[14..18]);
    info.target_mac.copy_from_slice(&a[18..24]);
    info.target_ip.copy_from_slice(&a[24..28]);
    Ok(info)
}

fn parse_v4(f: &[u8], l3: usize) -> Result<IpInfo, DropReason> {
    use DropReason as D;
    let h = f.get(l3..l3 + 20).ok_or(D::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(D::BadIpVersion);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(D::BadIhl);
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if total < ihl || l3 + total > f.len() {
        return Err(if l3 + ihl > f.len() {
            D::BadIhl
        } else {
            D::BadIpLength
        });
    }
    if super::pipe_build::checksum(&f[l3..l3 + ihl], 0) != 0 {
        return Err(D::BadIpChecksum);
    }
    let frag_field = u16::from_be_bytes([h[6], h[7]]);
    let more = frag_field & 0x2000 != 0;
    let offset = frag_field & 0x1fff;
    let frag = match (offset, more) {
        (0, false) => Fragment::None,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    let src = addr4(h, 12).ok_or(D::Truncated)?;
    let dst = addr4(h, 16).ok_or(D::Truncated)?;
    let proto = h[9];
    let l4 = l3 + ihl;
    let end = l3 + total;
    let l4info = if frag == Fragment::Later {
        None
    } else {
        Some(parse_l4(f, Family::V4, proto, l4, end)?)
    };
    Ok(IpInfo {
        family: Family::V4,
        src,
        dst,
        proto,
        ttl: h[8],
        l3_off: off16(l3)?,
        l4_off: off16(l4)?,
        ip_len: off16(total)?,
        frag,
        l4: l4info,
    })
}

fn parse_v6(f: &[u8], l3: usize) -> Result<IpInfo, DropReason> {
    use DropReason as D;
    let h = f.get(l3..l3 + 40).ok_or(D::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(D::BadIpVersion);
    }
    let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let total = 40 + payload;
    if l3 + total > f.len() {
        return Err(D::BadIpLength);
    }
    let proto = h[6];
    let src = addr6(h, 8).ok_or(D::Truncated)?;
    let dst = addr6(h, 24).ok_or(D::Truncated)?;
    let l4 = l3 + 40;
    Ok(IpInfo {
        family: Family::V6,
        src,
        dst,
        proto,
        ttl: h[7],
        l3_off: off16(l3)?,
        l4_off: off16(l4)?,
        ip_len: off16(total)?,
        frag: Fragment::None,
        l4: Some(parse_l4(f, Family::V6, proto, l4, l3 + total)?),
    })
}

fn parse_l4(f: &[u8], family: Family, p: u8, l4: usize, end: usize) -> Result<L4Info, DropReason> {
    use DropReason as D;
    let seg = f.get(l4..end).ok_or(D::Truncated)?;
    match p {
        proto::TCP => {
            if seg.len() < 20 {
                return Err(D::Truncated);
            }
            let doff = usize::from(seg[12] >> 4) * 4;
            if doff < 20 || doff > seg.len() {
                return Err(D::BadTcpHeader);
            }
            Ok(L4Info::Tcp(TcpInfo {
                sport: u16::from_be_bytes([seg[0], seg[1]]),
                dport: u16::from_be_bytes([seg[2], seg[3]]),
                seq: be32(seg, 4).ok_or(D::Truncated)?,
                ack: be32(seg, 8).ok_or(D::Truncated)?,
                flags: TcpFlags(seg[13]),
                window: u16::from_be_bytes([seg[14], seg[15]]),
                payload_len: off16(seg.len() - doff)?,
                wscale: None,
                sack_perm: false,
                mss: None,
            }))
        }
        proto::UDP => {
            if seg.len() < 8 {
                return Err(D::Truncated);
            }
            Ok(L4Info::Udp {
                sport: u16::from_be_bytes([seg[0], seg[1]]),
                dport: u16::from_be_bytes([seg[2], seg[3]]),
            })
        }
        proto::ICMP | proto::ICMPV6 => {
            if (p == proto::ICMP) != (family == Family::V4) {
                return Ok(L4Info::Other);
            }
            if seg.len() < 8 {
                return Err(D::BadIcmp);
            }
            let (t, code) = (seg[0], seg[1]);
            let v4 = family == Family::V4;
            let echo = if v4 { [8, 0] } else { [128, 129] };
            if t == echo[0] || t == echo[1] {
                return Ok(L4Info::IcmpEcho {
                    request: t == echo[0],
                    id: u16::from_be_bytes([seg[4], seg[5]]),
                    seq: u16::from_be_bytes([seg[6], seg[7]]),
                });
            }
            let is_err = if v4 {
                matches!(t, 3 | 4 | 5 | 11 | 12)
            } else {
                matches!(t, 1..=4)
            };
            if !is_err {
                return Ok(L4Info::IcmpOther { icmp_type: t, code });
            }
            let inner = inner_tuple(f, family, l4 + 8, end).ok_or(D::BadIcmp)?;
            Ok(L4Info::IcmpError {
                icmp_type: t,
                code,
                inner,
            })
        }
        _ => Ok(L4Info::Other),
    }
}

fn inner_tuple(f: &[u8], family: Family, l3: usize, end: usize) -> Option<InnerTuple> {
    let (src, dst, p, l4) = match family {
        Family::V4 => {
            let h = f.get(l3..(l3 + 20).min(end))?;
            if h.len() < 20 || h[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(h[0] & 0x0f) * 4;
            (addr4(h, 12)?, addr4(h, 16)?, h[9], l3 + ihl)
        }
        Family::V6 => {
            let h = f.get(l3..(l3 + 40).min(end))?;
            if h.len() < 40 || h[0] >> 4 != 6 {
                return None;
            }
            (addr6(h, 8)?, addr6(h, 24)?, h[6], l3 + 40)
        }
    };
    let seg = f.get(l4..(l4 + 8).min(end))?;
    if seg.len() < 8 {
        return None;
    }
    let (sport, dport, icmp_type) = match p {
        proto::TCP | proto::UDP => (
            u16::from_be_bytes([seg[0], seg[1]]),
            u16::from_be_bytes([seg[2], seg[3]]),
            0,
        ),
        proto::ICMP | proto::ICMPV6 => {
            let id = u16::from_be_bytes([seg[4], seg[5]]);
            (id, id, seg[0])
        }
        _ => (0, 0, 0),
    };
    Some(InnerTuple {
        src,
        dst,
        proto: p,
        sport,
        dport,
        icmp_type,
        l3_off: u16::try_from(l3).ok()?,
        l4_off: u16::try_from(l4).ok()?,
    })
}
