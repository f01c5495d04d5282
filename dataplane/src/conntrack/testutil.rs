//! Builders of `IpInfo` summaries for tests (the parser is written elsewhere).

use crate::wire::{Addr, Family, Fragment, InnerTuple, IpInfo, L4Info, TcpFlags, TcpInfo, proto};

pub const SYN: u8 = TcpFlags::SYN;
pub const ACK: u8 = TcpFlags::ACK;
pub const FIN: u8 = TcpFlags::FIN;
pub const RST: u8 = TcpFlags::RST;
pub const PSH: u8 = TcpFlags::PSH;

/// Nanoseconds per second.
pub const S: u64 = 1_000_000_000;

fn ip(family: Family, src: Addr, dst: Addr, p: u8, l4: L4Info, len: u16) -> IpInfo {
    IpInfo {
        family,
        src,
        dst,
        proto: p,
        ttl: 64,
        l3_off: 14,
        l4_off: if family == Family::V4 { 34 } else { 54 },
        ip_len: len,
        frag: Fragment::None,
        l4: Some(l4),
    }
}

/// A TCP segment without payload (window 64240, no options).
pub fn tcp4(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> IpInfo {
    tcp_data(
        Addr::from_v4(src),
        sport,
        Addr::from_v4(dst),
        dport,
        flags,
        seq,
        ack,
        0,
    )
}

/// A TCP segment with `len` payload bytes.
#[allow(clippy::too_many_arguments)]
pub fn tcp_data(
    src: Addr,
    sport: u16,
    dst: Addr,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    len: u16,
) -> IpInfo {
    let family = if src.to_v4().is_some() {
        Family::V4
    } else {
        Family::V6
    };
    let t = TcpInfo {
        sport,
        dport,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 64240,
        payload_len: len,
        wscale: (flags & SYN != 0).then_some(7),
        sack_perm: flags & SYN != 0,
        mss: (flags & SYN != 0).then_some(1460),
    };
    ip(family, src, dst, proto::TCP, L4Info::Tcp(t), 40 + len)
}

pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> IpInfo {
    udp(Addr::from_v4(src), sport, Addr::from_v4(dst), dport)
}

pub fn udp(src: Addr, sport: u16, dst: Addr, dport: u16) -> IpInfo {
    let family = if src.to_v4().is_some() {
        Family::V4
    } else {
        Family::V6
    };
    ip(
        family,
        src,
        dst,
        proto::UDP,
        L4Info::Udp { sport, dport },
        128,
    )
}

pub fn echo4(src: [u8; 4], dst: [u8; 4], request: bool, id: u16) -> IpInfo {
    ip(
        Family::V4,
        Addr::from_v4(src),
        Addr::from_v4(dst),
        proto::ICMP,
        L4Info::IcmpEcho {
            request,
            id,
            seq: 1,
        },
        84,
    )
}

pub fn echo6(src: Addr, dst: Addr, request: bool, id: u16) -> IpInfo {
    ip(
        Family::V6,
        src,
        dst,
        proto::ICMPV6,
        L4Info::IcmpEcho {
            request,
            id,
            seq: 1,
        },
        104,
    )
}

/// An ICMP destination-unreachable (port unreachable) from `src` to `dst` quoting the
/// packet `quoted`.
pub fn icmp_err4(src: [u8; 4], dst: [u8; 4], quoted: &IpInfo) -> IpInfo {
    let (sport, dport, icmp_type) = match quoted.l4 {
        Some(L4Info::Tcp(t)) => (t.sport, t.dport, 0),
        Some(L4Info::Udp { sport, dport }) => (sport, dport, 0),
        Some(L4Info::IcmpEcho { request, id, .. }) => (id, id, if request { 8 } else { 0 }),
        _ => (0, 0, 0),
    };
    let inner = InnerTuple {
        src: quoted.src,
        dst: quoted.dst,
        proto: quoted.proto,
        sport,
        dport,
        icmp_type,
        l3_off: 42,
        l4_off: 62,
    };
    ip(
        Family::V4,
        Addr::from_v4(src),
        Addr::from_v4(dst),
        proto::ICMP,
        L4Info::IcmpError {
            icmp_type: 3,
            code: 3,
            inner,
        },
        56,
    )
}

pub fn gre4(src: [u8; 4], dst: [u8; 4]) -> IpInfo {
    ip(
        Family::V4,
        Addr::from_v4(src),
        Addr::from_v4(dst),
        proto::GRE,
        L4Info::Other,
        100,
    )
}

pub fn v6(last: u8) -> Addr {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = last;
    Addr::from_v6(a)
}
