//! In-place packet mutation for NAT and the router, with incremental checksum updates
//! (RFC 1624): addresses, ports / ICMP echo identifiers, TTL / hop limit, and the embedded
//! datagram of ICMP / ICMPv6 errors.
//!
//! Every function takes the frame and the offsets from the [`IpInfo`] (and [`InnerTuple`])
//! that [`parse`](super::parse()) produced for it, reads the old value from the frame (so
//! a stale summary does not corrupt checksums), and returns an error instead of panicking
//! if an offset is out of bounds or the packet has no such field. Checksums updated:
//!
//! | change | IPv4 header | TCP | UDP | ICMP | ICMPv6 |
//! |---|---|---|---|---|---|
//! | address | yes | yes (pseudo-header) | yes, unless 0 over IPv4 | no | yes (pseudo-header) |
//! | port / echo id | – | yes | yes, unless 0 over IPv4 | yes | yes |
//! | TTL / hop limit | yes | – | – | – | – |
//!
//! A UDP-over-IPv4 checksum of 0 means "none" (RFC 768) and stays 0; an update that
//! computes 0 writes 0xffff instead. A first fragment's L4 checksum covers the whole
//! datagram; the incremental update is still right for it. Later fragments have no L4
//! header: only the IP header changes.
//!
//! ICMP error rewrite (`set_inner_*`): changes the embedded header's field, its IPv4
//! header checksum, its L4 checksum when the quote holds it (TCP needs 18 bytes), and the
//! outer ICMP/ICMPv6 checksum for every byte that changed. The outer addresses are changed
//! with `set_src_addr` / `set_dst_addr` as for any packet.

use super::checksum;
use super::{Addr, Family, InnerTuple, IpInfo, L4Info, proto};

/// Why a rewrite was refused. The frame is unchanged when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// The new address is of the other family.
    FamilyMismatch,
    /// The packet has no such field (no ports, a later fragment, not an ICMP error).
    NoSuchField,
    /// An offset from the summary falls outside the frame.
    OutOfBounds,
    /// TTL / hop limit is 0 or 1: forwarding would take it to 0 (send time exceeded).
    TtlExpired,
}

type R<T = ()> = Result<T, RewriteError>;

fn rd16(frame: &[u8], off: usize) -> R<u16> {
    let b = frame.get(off..off + 2).ok_or(RewriteError::OutOfBounds)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn wr16(frame: &mut [u8], off: usize, v: u16) -> R {
    frame
        .get_mut(off..off + 2)
        .ok_or(RewriteError::OutOfBounds)?
        .copy_from_slice(&v.to_be_bytes());
    Ok(())
}

/// A checksum field to update: its offset, whether the IPv4 UDP zero rule applies (a zero
/// field means "no checksum" and stays), and whether a computed 0x0000 is written as
/// 0xFFFF: UDP (RFC 768, RFC 8200 §8.1: zero means "none") and ICMPv4, which has no
/// pseudo-header, so an all-zero message is possible and only 0xFFFF verifies for it
/// (RFC 1624 §3: the incremental update yields 0x0000 there). Both values verify in every
/// other case, and `fill_checksums` writes the same.
#[derive(Clone, Copy)]
struct Csum {
    off: usize,
    udp4: bool,
    zero_ffff: bool,
}

/// Updates the checksum at `c` for a covered field that changed from `old` to `new`;
/// returns the (old, new) checksum values so a checksum covering this one can follow.
fn adjust(frame: &mut [u8], c: Csum, old: &[u8], new: &[u8]) -> R<(u16, u16)> {
    let before = rd16(frame, c.off)?;
    if c.udp4 && before == 0 {
        return Ok((0, 0));
    }
    let mut after = checksum::update_bytes(before, old, new);
    if c.zero_ffff && after == 0 {
        after = 0xffff;
    }
    wr16(frame, c.off, after)?;
    Ok((before, after))
}

/// Fixed-size copy of up to 16 bytes at `off` (no allocation).
fn read_field(frame: &[u8], off: usize, len: usize) -> R<([u8; 16], usize)> {
    let src = frame.get(off..off + len).ok_or(RewriteError::OutOfBounds)?;
    let mut a = [0u8; 16];
    a[..len].copy_from_slice(src);
    Ok((a, len))
}

/// Writes `new` at `off` and updates every checksum in `csums` (all checked for bounds
/// first, so a refused rewrite leaves the frame untouched).
fn patch(frame: &mut [u8], off: usize, new: &[u8], csums: &[Csum]) -> R {
    let (old, len) = read_field(frame, off, new.len())?;
    for c in csums {
        rd16(frame, c.off)?;
    }
    for &c in csums {
        adjust(frame, c, &old[..len], new)?;
    }
    frame[off..off + len].copy_from_slice(new);
    Ok(())
}

fn addr_bytes(family: Family, a: &Addr) -> R<&[u8]> {
    match family {
        Family::V4 if a.to_v4().is_some() => Ok(&a.0[12..]),
        Family::V6 if a.to_v4().is_none() => Ok(&a.0[..]),
        _ => Err(RewriteError::FamilyMismatch),
    }
}

/// Offsets of the address fields within an IP header.
fn addr_off(family: Family, dst: bool) -> usize {
    match (family, dst) {
        (Family::V4, false) => super::ipv4::SRC_OFF,
        (Family::V4, true) => super::ipv4::DST_OFF,
        (Family::V6, false) => super::ipv6::SRC_OFF,
        (Family::V6, true) => super::ipv6::DST_OFF,
    }
}

/// The L4 checksum that covers the IP pseudo-header, if any.
fn pseudo_csum(ip: &IpInfo) -> Option<Csum> {
    let l4 = usize::from(ip.l4_off);
    let v4 = ip.family == Family::V4;
    match ip.l4? {
        L4Info::Tcp(_) => Some(Csum {
            off: l4 + super::tcp::CHECKSUM_OFF,
            udp4: false,
            zero_ffff: false,
        }),
        L4Info::Udp { .. } => Some(Csum {
            off: l4 + super::udp::CHECKSUM_OFF,
            udp4: v4,
            zero_ffff: true,
        }),
        L4Info::IcmpEcho { .. } | L4Info::IcmpError { .. } | L4Info::IcmpOther { .. } if !v4 => {
            Some(Csum {
                off: l4 + super::icmp::CHECKSUM_OFF,
                udp4: false,
                zero_ffff: false,
            })
        }
        _ => None,
    }
}

fn set_addr(frame: &mut [u8], ip: &IpInfo, new: Addr, dst: bool) -> R {
    let bytes = addr_bytes(ip.family, &new)?;
    let l3 = usize::from(ip.l3_off);
    let mut csums = [Csum {
        off: 0,
        udp4: false,
        zero_ffff: false,
    }; 2];
    let mut n = 0;
    if ip.family == Family::V4 {
        csums[n] = Csum {
            off: l3 + super::ipv4::CHECKSUM_OFF,
            udp4: false,
            zero_ffff: false,
        };
        n += 1;
    }
    if let Some(c) = pseudo_csum(ip) {
        csums[n] = c;
        n += 1;
    }
    patch(frame, l3 + addr_off(ip.family, dst), bytes, &csums[..n])
}

/// Sets the source address (SNAT / masquerade).
pub fn set_src_addr(frame: &mut [u8], ip: &IpInfo, new: Addr) -> R {
    set_addr(frame, ip, new, false)
}

/// Sets the destination address (DNAT, or the reply direction of SNAT).
pub fn set_dst_addr(frame: &mut [u8], ip: &IpInfo, new: Addr) -> R {
    set_addr(frame, ip, new, true)
}

fn set_port(frame: &mut [u8], ip: &IpInfo, new: u16, dst: bool) -> R {
    let l4 = usize::from(ip.l4_off);
    let v4 = ip.family == Family::V4;
    let (field, csum) = match ip.l4.ok_or(RewriteError::NoSuchField)? {
        L4Info::Tcp(_) => (
            usize::from(dst) * 2,
            Csum {
                off: l4 + super::tcp::CHECKSUM_OFF,
                udp4: false,
                zero_ffff: false,
            },
        ),
        L4Info::Udp { .. } => (
            usize::from(dst) * 2,
            Csum {
                off: l4 + super::udp::CHECKSUM_OFF,
                udp4: v4,
                zero_ffff: true,
            },
        ),
        L4Info::IcmpEcho { .. } => (
            super::icmp::IDENT_OFF,
            Csum {
                off: l4 + super::icmp::CHECKSUM_OFF,
                udp4: false,
                zero_ffff: v4,
            },
        ),
        _ => return Err(RewriteError::NoSuchField),
    };
    patch(frame, l4 + field, &new.to_be_bytes(), &[csum])
}

/// Sets the TCP/UDP source port, or the ICMP/ICMPv6 echo identifier.
pub fn set_src_port(frame: &mut [u8], ip: &IpInfo, new: u16) -> R {
    set_port(frame, ip, new, false)
}

/// Sets the TCP/UDP destination port, or the ICMP/ICMPv6 echo identifier.
pub fn set_dst_port(frame: &mut [u8], ip: &IpInfo, new: u16) -> R {
    set_port(frame, ip, new, true)
}

/// Decrements the IPv4 TTL (updating the header checksum) or the IPv6 hop limit and
/// returns the new value. `TtlExpired` (frame unchanged) when it is 0 or 1.
pub fn decrement_ttl(frame: &mut [u8], ip: &IpInfo) -> R<u8> {
    let l3 = usize::from(ip.l3_off);
    match ip.family {
        Family::V4 => {
            let off = l3 + super::ipv4::TTL_OFF;
            let word = rd16(frame, off)?;
            let csum_off = l3 + super::ipv4::CHECKSUM_OFF;
            let csum = rd16(frame, csum_off)?;
            let ttl = word.to_be_bytes()[0];
            if ttl <= 1 {
                return Err(RewriteError::TtlExpired);
            }
            let new = word - 0x0100;
            wr16(frame, csum_off, checksum::update16(csum, word, new))?;
            wr16(frame, off, new)?;
            Ok(ttl - 1)
        }
        Family::V6 => {
            let b = frame
                .get_mut(l3 + super::ipv6::HOP_LIMIT_OFF)
                .ok_or(RewriteError::OutOfBounds)?;
            if *b <= 1 {
                return Err(RewriteError::TtlExpired);
            }
            *b -= 1;
            Ok(*b)
        }
    }
}

/// Outer ICMP checksum location of an ICMP error, and the end of the quote.
fn error_ctx(ip: &IpInfo) -> R<(Csum, usize)> {
    match ip.l4 {
        Some(L4Info::IcmpError { .. }) => Ok((
            Csum {
                off: usize::from(ip.l4_off) + super::icmp::CHECKSUM_OFF,
                udp4: false,
                zero_ffff: ip.family == Family::V4,
            },
            usize::from(ip.l3_off) + usize::from(ip.ip_len),
        )),
        _ => Err(RewriteError::NoSuchField),
    }
}

/// The embedded L4 checksum that a change of `what` affects, if it lies inside the quote.
fn inner_l4_csum(ip: &IpInfo, inner: &InnerTuple, end: usize, addr_change: bool) -> Option<Csum> {
    let l4 = usize::from(inner.l4_off);
    let v4 = ip.family == Family::V4;
    let (off, udp4, zero_ffff) = match inner.proto {
        proto::TCP => (l4 + super::tcp::CHECKSUM_OFF, false, false),
        proto::UDP => (l4 + super::udp::CHECKSUM_OFF, v4, true),
        proto::ICMPV6 if !v4 => (l4 + super::icmp::CHECKSUM_OFF, false, false),
        proto::ICMP if v4 && !addr_change => (l4 + super::icmp::CHECKSUM_OFF, false, true),
        _ => return None,
    };
    (off + 2 <= end).then_some(Csum {
        off,
        udp4,
        zero_ffff,
    })
}

/// Changes `new.len()` bytes at `off` inside an ICMP error's quote: the inner checksums in
/// `inner_csums`, then the outer ICMP checksum for the field and for each inner checksum.
fn patch_inner(
    frame: &mut [u8],
    ip: &IpInfo,
    off: usize,
    new: &[u8],
    inner_csums: &[Option<Csum>],
) -> R {
    let (outer, end) = error_ctx(ip)?;
    if off + new.len() > end {
        return Err(RewriteError::OutOfBounds);
    }
    let (old, len) = read_field(frame, off, new.len())?;
    rd16(frame, outer.off)?;
    for c in inner_csums.iter().flatten() {
        rd16(frame, c.off)?;
    }
    let mut outer_sum = checksum::update_bytes(rd16(frame, outer.off)?, &old[..len], new);
    for c in inner_csums.iter().flatten() {
        let (before, after) = adjust(frame, *c, &old[..len], new)?;
        outer_sum = checksum::update16(outer_sum, before, after);
    }
    wr16(frame, outer.off, outer_sum)?;
    frame[off..off + len].copy_from_slice(new);
    Ok(())
}

fn set_inner_addr(frame: &mut [u8], ip: &IpInfo, inner: &InnerTuple, new: Addr, dst: bool) -> R {
    let bytes = addr_bytes(ip.family, &new)?;
    let (_, end) = error_ctx(ip)?;
    let il3 = usize::from(inner.l3_off);
    let ip_csum = (ip.family == Family::V4).then_some(Csum {
        off: il3 + super::ipv4::CHECKSUM_OFF,
        udp4: false,
        zero_ffff: false,
    });
    let l4_csum = inner_l4_csum(ip, inner, end, true);
    patch_inner(
        frame,
        ip,
        il3 + addr_off(ip.family, dst),
        bytes,
        &[ip_csum, l4_csum],
    )
}

/// Sets the embedded packet's source address in an ICMP/ICMPv6 error.
pub fn set_inner_src_addr(frame: &mut [u8], ip: &IpInfo, inner: &InnerTuple, new: Addr) -> R {
    set_inner_addr(frame, ip, inner, new, false)
}

/// Sets the embedded packet's destination address in an ICMP/ICMPv6 error.
pub fn set_inner_dst_addr(frame: &mut [u8], ip: &IpInfo, inner: &InnerTuple, new: Addr) -> R {
    set_inner_addr(frame, ip, inner, new, true)
}

fn set_inner_port(frame: &mut [u8], ip: &IpInfo, inner: &InnerTuple, new: u16, dst: bool) -> R {
    let (_, end) = error_ctx(ip)?;
    let il4 = usize::from(inner.l4_off);
    let is_icmp = matches!(
        (inner.proto, ip.family),
        (proto::ICMP, Family::V4) | (proto::ICMPV6, Family::V6)
    );
    let field = match inner.proto {
        proto::TCP | proto::UDP => il4 + usize::from(dst) * 2,
        _ if is_icmp && inner.sport == inner.dport && is_echo(ip.family, inner.icmp_type) => {
            il4 + super::icmp::IDENT_OFF
        }
        _ => return Err(RewriteError::NoSuchField),
    };
    let l4_csum = inner_l4_csum(ip, inner, end, false);
    patch_inner(frame, ip, field, &new.to_be_bytes(), &[l4_csum])
}

fn is_echo(family: Family, t: u8) -> bool {
    match family {
        Family::V4 => matches!(
            t,
            super::icmp::v4::ECHO_REQUEST | super::icmp::v4::ECHO_REPLY
        ),
        Family::V6 => matches!(
            t,
            super::icmp::v6::ECHO_REQUEST | super::icmp::v6::ECHO_REPLY
        ),
    }
}

/// Sets the embedded packet's source port (or echo identifier) in an ICMP error.
pub fn set_inner_sport(frame: &mut [u8], ip: &IpInfo, inner: &InnerTuple, new: u16) -> R {
    set_inner_port(frame, ip, inner, new, false)
}

/// Sets the embedded packet's destination port (or echo identifier) in an ICMP error.
pub fn set_inner_dport(frame: &mut [u8], ip: &IpInfo, inner: &InnerTuple, new: u16) -> R {
    set_inner_port(frame, ip, inner, new, true)
}

/// Recomputes the IPv4 header checksum and, for a non-fragment, the L4 checksum from
/// scratch (TCP, UDP — a zero UDP/IPv4 checksum stays zero —, ICMP, ICMPv6). Used by the
/// builders, by tests as the reference for the incremental functions, and by the fuzzers.
pub fn fill_checksums(frame: &mut [u8], ip: &IpInfo) -> R {
    fill_checksums_with(frame, ip, true)
}

/// As [`fill_checksums`]; `keep_udp4_zero: false` computes a UDP/IPv4 checksum even when
/// the field is 0 (the builders use that).
pub(crate) fn fill_checksums_with(frame: &mut [u8], ip: &IpInfo, keep_udp4_zero: bool) -> R {
    let l3 = usize::from(ip.l3_off);
    let l4 = usize::from(ip.l4_off);
    let end = l3 + usize::from(ip.ip_len);
    if end > frame.len() || l4 > end {
        return Err(RewriteError::OutOfBounds);
    }
    if ip.family == Family::V4 {
        let hl = l4 - l3;
        wr16(frame, l3 + super::ipv4::CHECKSUM_OFF, 0)?;
        let c = checksum::checksum(&frame[l3..l3 + hl]);
        wr16(frame, l3 + super::ipv4::CHECKSUM_OFF, c)?;
    }
    if ip.frag != super::Fragment::None {
        return Ok(());
    }
    let Some(l4info) = ip.l4 else { return Ok(()) };
    let v4 = ip.family == Family::V4;
    let (csum_off, pseudo, seg_end) = match l4info {
        L4Info::Tcp(_) => (l4 + super::tcp::CHECKSUM_OFF, true, end),
        L4Info::Udp { .. } => {
            if keep_udp4_zero && v4 && rd16(frame, l4 + super::udp::CHECKSUM_OFF)? == 0 {
                return Ok(());
            }
            (
                l4 + super::udp::CHECKSUM_OFF,
                true,
                l4 + usize::from(rd16(frame, l4 + 4)?),
            )
        }
        L4Info::IcmpEcho { .. } | L4Info::IcmpError { .. } | L4Info::IcmpOther { .. } => {
            (l4 + super::icmp::CHECKSUM_OFF, !v4, end)
        }
        L4Info::Other => return Ok(()),
    };
    if seg_end > end || seg_end < l4 {
        return Err(RewriteError::OutOfBounds);
    }
    wr16(frame, csum_off, 0)?;
    let mut s = checksum::sum(&frame[l4..seg_end]);
    if pseudo {
        let len = u32::try_from(seg_end - l4).unwrap_or(0);
        let ps = match ip.family {
            Family::V4 => {
                let a = &frame[l3 + 12..l3 + 20];
                let src = [a[0], a[1], a[2], a[3]];
                let dst = [a[4], a[5], a[6], a[7]];
                checksum::pseudo_v4(src, dst, ip.proto, u16::try_from(len).unwrap_or(0))
            }
            Family::V6 => {
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&frame[l3 + 8..l3 + 24]);
                dst.copy_from_slice(&frame[l3 + 24..l3 + 40]);
                checksum::pseudo_v6(&src, &dst, ip.proto, len)
            }
        };
        s = checksum::add(s, ps);
    }
    let mut c = checksum::finish(s);
    // UDP: zero means "no checksum"; ICMPv4 (no pseudo-header): an all-zero message
    // needs 0xFFFF. The incremental updates write the same (`Csum::zero_ffff`).
    if c == 0 && (matches!(l4info, L4Info::Udp { .. }) || !pseudo) {
        c = 0xffff;
    }
    wr16(frame, csum_off, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testdata::captures;
    use crate::wire::{Parsed, TRUST_ALL, VERIFY_ALL, parse};
    use proptest::prelude::*;

    fn ip_of(frame: &[u8]) -> IpInfo {
        match parse(frame, &VERIFY_ALL).unwrap() {
            Parsed::Ip(_, ip) => ip,
            p => panic!("{p:?}"),
        }
    }

    /// Byte equality where a checksum of 0x0000 and one of 0xffff count as equal (both
    /// are ones'-complement zero; an incremental update and a recompute may differ there).
    fn equivalent(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len()
            && (0..a.len()).step_by(2).all(|i| {
                let x = &a[i..(i + 2).min(a.len())];
                let y = &b[i..(i + 2).min(b.len())];
                x == y
                    || (x.len() == 2
                        && matches!((x, y), ([0, 0], [0xff, 0xff]) | ([0xff, 0xff], [0, 0])))
            })
    }

    fn ip_frames() -> Vec<(String, Vec<u8>)> {
        captures()
            .into_iter()
            .filter(|(_, f)| matches!(parse(f, &VERIFY_ALL), Ok(Parsed::Ip(..))))
            .collect()
    }

    /// Reference: change the field raw, then recompute the checksums from scratch.
    fn reference(frame: &[u8], ip: &IpInfo, off: usize, new: &[u8]) -> Vec<u8> {
        let mut r = frame.to_vec();
        r[off..off + new.len()].copy_from_slice(new);
        fill_checksums(&mut r, ip).unwrap();
        r
    }

    fn other_addr(ip: &IpInfo, seed: u8) -> Addr {
        match ip.family {
            Family::V4 => Addr::from_v4([203, 0, 113, seed]),
            Family::V6 => Addr::from_v6([
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, seed, 0x12, 0x34,
            ]),
        }
    }

    #[test]
    fn addresses_match_full_recompute_on_every_capture() {
        for (desc, f) in ip_frames() {
            let ip = ip_of(&f);
            for dst in [false, true] {
                let new = other_addr(&ip, 7);
                let off = usize::from(ip.l3_off) + addr_off(ip.family, dst);
                let want = reference(&f, &ip, off, addr_bytes(ip.family, &new).unwrap());
                let mut got = f.clone();
                if dst {
                    set_dst_addr(&mut got, &ip, new).unwrap();
                } else {
                    set_src_addr(&mut got, &ip, new).unwrap();
                }
                if ip.frag == crate::wire::Fragment::None {
                    assert!(equivalent(&got, &want), "{desc} dst={dst}");
                }
                parse(&got, &VERIFY_ALL).unwrap_or_else(|e| panic!("{desc}: {e:?}"));
            }
        }
    }

    #[test]
    fn ports_and_echo_ids_match_full_recompute() {
        let mut n = 0;
        for (desc, f) in ip_frames() {
            let ip = ip_of(&f);
            if ip.frag != crate::wire::Fragment::None {
                continue;
            }
            let l4 = usize::from(ip.l4_off);
            for dst in [false, true] {
                let off = match ip.l4 {
                    Some(L4Info::Tcp(_) | L4Info::Udp { .. }) => l4 + usize::from(dst) * 2,
                    Some(L4Info::IcmpEcho { .. }) => l4 + 4,
                    _ => {
                        assert_eq!(
                            set_src_port(&mut f.clone(), &ip, 1),
                            Err(RewriteError::NoSuchField)
                        );
                        continue;
                    }
                };
                let want = reference(&f, &ip, off, &40000u16.to_be_bytes());
                let mut got = f.clone();
                if dst {
                    set_dst_port(&mut got, &ip, 40000).unwrap();
                } else {
                    set_src_port(&mut got, &ip, 40000).unwrap();
                }
                assert!(equivalent(&got, &want), "{desc}");
                n += 1;
            }
        }
        assert!(n >= 40, "only {n} port rewrites exercised");
    }

    #[test]
    fn ttl_and_hop_limit() {
        for (desc, f) in ip_frames() {
            let ip = ip_of(&f);
            let mut got = f.clone();
            if ip.ttl <= 1 {
                assert_eq!(decrement_ttl(&mut got, &ip), Err(RewriteError::TtlExpired));
                assert_eq!(got, f, "{desc}");
                continue;
            }
            let new = decrement_ttl(&mut got, &ip).unwrap();
            assert_eq!(new, ip.ttl - 1, "{desc}");
            let ttl_off = usize::from(ip.l3_off) + if ip.family == Family::V4 { 8 } else { 7 };
            let want = reference(&f, &ip, ttl_off, &[new]);
            assert!(equivalent(&got, &want), "{desc}");
        }
        let f = captures()
            .into_iter()
            .find(|(d, _)| d.contains("echo request, id 14507"))
            .unwrap()
            .1;
        let ip = ip_of(&f);
        let mut g = f.clone();
        g[22] = 1;
        assert_eq!(decrement_ttl(&mut g, &ip), Err(RewriteError::TtlExpired));
        assert_eq!(g[22], 1);
    }

    #[test]
    fn udp4_zero_checksum_stays_zero() {
        let mut f = captures()
            .into_iter()
            .find(|(d, _)| d.contains("5003: UDP"))
            .unwrap()
            .1;
        f[40..42].copy_from_slice(&[0, 0]);
        let ip = ip_of(&f);
        set_src_addr(&mut f, &ip, Addr::from_v4([192, 0, 2, 9])).unwrap();
        set_dst_port(&mut f, &ip, 53).unwrap();
        assert_eq!(&f[40..42], &[0, 0]);
        assert!(parse(&f, &VERIFY_ALL).is_ok());
    }

    #[test]
    fn refusals_leave_the_frame_alone() {
        let f = captures()
            .into_iter()
            .find(|(d, _)| d.contains("Flags [S]"))
            .unwrap()
            .1;
        let ip = ip_of(&f);
        let mut g = f.clone();
        assert_eq!(
            set_src_addr(&mut g, &ip, Addr::from_v6([0x20; 16])),
            Err(RewriteError::FamilyMismatch)
        );
        assert_eq!(
            set_src_addr(&mut g[..30], &ip, Addr::from_v4([1, 2, 3, 4])),
            Err(RewriteError::OutOfBounds)
        );
        assert_eq!(
            set_dst_port(&mut g[..50], &ip, 9),
            Err(RewriteError::OutOfBounds)
        );
        let inner = InnerTuple {
            src: ip.src,
            dst: ip.dst,
            proto: 6,
            sport: 1,
            dport: 2,
            icmp_type: 0,
            l3_off: 42,
            l4_off: 62,
        };
        assert_eq!(
            set_inner_src_addr(&mut g, &ip, &inner, ip.src),
            Err(RewriteError::NoSuchField)
        );
        assert_eq!(g, f);
    }

    /// Reference for an ICMP error: edit the quoted packet raw, recompute its checksums
    /// by parsing the quote as a packet of its own, then recompute the outer checksums.
    fn inner_reference(
        f: &[u8],
        ip: &IpInfo,
        inner: &InnerTuple,
        off: usize,
        new: &[u8],
    ) -> Vec<u8> {
        let mut r = f.to_vec();
        r[off..off + new.len()].copy_from_slice(new);
        let il3 = usize::from(inner.l3_off);
        let end = usize::from(ip.l3_off) + usize::from(ip.ip_len);
        let mut quoted = f[..14].to_vec();
        quoted.extend_from_slice(&r[il3..end]);
        let Ok(Parsed::Ip(_, qip)) = parse(&quoted, &TRUST_ALL) else {
            panic!("quote does not parse")
        };
        fill_checksums(&mut quoted, &qip).unwrap();
        r[il3..end].copy_from_slice(&quoted[14..]);
        fill_checksums(&mut r, ip).unwrap();
        r
    }

    #[test]
    fn icmp_error_inner_rewrite_matches_full_recompute() {
        for needle in ["udp port 5003 unreachable", "udp port 5004, length 61"] {
            let f = captures()
                .into_iter()
                .find(|(d, _)| d.contains(needle))
                .unwrap()
                .1;
            let ip = ip_of(&f);
            let Some(L4Info::IcmpError { inner, .. }) = ip.l4 else {
                panic!()
            };
            let il3 = usize::from(inner.l3_off);
            let il4 = usize::from(inner.l4_off);
            for dst in [false, true] {
                let new = other_addr(&ip, 99);
                let want = inner_reference(
                    &f,
                    &ip,
                    &inner,
                    il3 + addr_off(ip.family, dst),
                    addr_bytes(ip.family, &new).unwrap(),
                );
                let mut got = f.clone();
                if dst {
                    set_inner_dst_addr(&mut got, &ip, &inner, new).unwrap();
                } else {
                    set_inner_src_addr(&mut got, &ip, &inner, new).unwrap();
                }
                assert!(equivalent(&got, &want), "{needle} addr dst={dst}");
                let want = inner_reference(
                    &f,
                    &ip,
                    &inner,
                    il4 + usize::from(dst) * 2,
                    &1234u16.to_be_bytes(),
                );
                let mut got = f.clone();
                if dst {
                    set_inner_dport(&mut got, &ip, &inner, 1234).unwrap();
                } else {
                    set_inner_sport(&mut got, &ip, &inner, 1234).unwrap();
                }
                assert!(equivalent(&got, &want), "{needle} port dst={dst}");
                let Ok(Parsed::Ip(_, after)) = parse(&got, &VERIFY_ALL) else {
                    panic!()
                };
                let Some(L4Info::IcmpError { inner: i2, .. }) = after.l4 else {
                    panic!()
                };
                assert_eq!(if dst { i2.dport } else { i2.sport }, 1234);
            }
        }
    }

    proptest! {
        #[test]
        fn random_rewrites_keep_checksums_valid(
            pick in any::<prop::sample::Index>(),
            seed in any::<u8>(),
            port in any::<u16>(),
            ops in proptest::collection::vec(0u8..7, 1..6),
        ) {
            let all = ip_frames();
            let mut f = all[pick.index(all.len())].1.clone();
            let ip = ip_of(&f);
            for op in ops {
                let r = match op {
                    0 => set_src_addr(&mut f, &ip, other_addr(&ip, seed)),
                    1 => set_dst_addr(&mut f, &ip, other_addr(&ip, seed.wrapping_add(1))),
                    2 => set_src_port(&mut f, &ip, port),
                    3 => set_dst_port(&mut f, &ip, port.wrapping_add(1)),
                    4 => decrement_ttl(&mut f, &ip).map(|_| ()),
                    _ => match ip.l4 {
                        Some(L4Info::IcmpError { inner, .. }) => {
                            if op == 5 { set_inner_src_addr(&mut f, &ip, &inner, other_addr(&ip, seed)) }
                            else { set_inner_dport(&mut f, &ip, &inner, port) }
                        }
                        _ => Ok(()),
                    },
                };
                prop_assert!(matches!(r, Ok(()) | Err(RewriteError::NoSuchField | RewriteError::TtlExpired)));
                let reparsed = parse(&f, &VERIFY_ALL);
                prop_assert!(reparsed.is_ok(), "{:?}", reparsed);
            }
        }
    }
}
