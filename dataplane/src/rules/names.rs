//! Symbolic names of numeric values, as `nft` reads and prints them.

use super::ast::Kind;

const PROTOS: &[(&str, u64)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("sctp", 132),
];
const PROTO_ALIASES: &[(&str, u64)] = &[("icmpv6", 58)];
const NFPROTOS: &[(&str, u64)] = &[("ipv4", 2), ("ipv6", 10)];
const CT_STATES: &[(&str, u64)] = &[
    ("invalid", 1),
    ("established", 2),
    ("related", 4),
    ("new", 8),
    ("untracked", 64),
];
const CT_STATUS: &[(&str, u64)] = &[
    ("expected", 1),
    ("seen-reply", 2),
    ("assured", 4),
    ("confirmed", 8),
    ("snat", 16),
    ("dnat", 32),
    ("dying", 512),
];
const TCP_FLAGS: &[(&str, u64)] = &[
    ("fin", 1),
    ("syn", 2),
    ("rst", 4),
    ("psh", 8),
    ("ack", 16),
    ("urg", 32),
    ("ecn", 64),
    ("cwr", 128),
];
const ICMP_TYPES: &[(&str, u64)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
];
const ICMPV6_TYPES: &[(&str, u64)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
];
const SERVICES: &[(&str, u64)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("ntp", 123),
    ("https", 443),
];
/// nft's `icmp_code` names: `reject with icmp CODE` and `icmp code`.
pub const REJECT_ICMP: &[(&str, u8)] = &[
    ("net-unreachable", 0),
    ("host-unreachable", 1),
    ("prot-unreachable", 2),
    ("port-unreachable", 3),
    ("frag-needed", 4),
    ("net-prohibited", 9),
    ("host-prohibited", 10),
    ("admin-prohibited", 13),
];
/// nft's `icmpv6_code` names: `reject with icmpv6 CODE` and `icmpv6 code`.
pub const REJECT_ICMPV6: &[(&str, u8)] = &[
    ("no-route", 0),
    ("admin-prohibited", 1),
    ("addr-unreachable", 3),
    ("port-unreachable", 4),
    ("policy-fail", 5),
    ("reject-route", 6),
];
pub const REJECT_ICMPX: &[(&str, u8)] = &[
    ("no-route", 0),
    ("port-unreachable", 1),
    ("host-unreachable", 2),
    ("admin-prohibited", 3),
];
/// Standard chain priorities by name.
pub const PRIORITIES: &[(&str, i32)] = &[
    ("raw", -300),
    ("mangle", -150),
    ("dstnat", -100),
    ("filter", 0),
    ("security", 50),
    ("srcnat", 100),
];

fn table(kind: Kind) -> &'static [(&'static str, u64)] {
    match kind {
        Kind::Proto => PROTOS,
        Kind::Nfproto => NFPROTOS,
        Kind::CtState => CT_STATES,
        Kind::CtStatus => CT_STATUS,
        Kind::TcpFlags => TCP_FLAGS,
        Kind::IcmpType => ICMP_TYPES,
        Kind::Icmpv6Type => ICMPV6_TYPES,
        Kind::Pkttype | Kind::Dscp | Kind::CtDir | Kind::FibType | Kind::Presence => {
            super::facts::names(kind)
        }
        _ => &[],
    }
}

/// The code names of an ICMP code kind.
fn codes(kind: Kind) -> Option<&'static [(&'static str, u8)]> {
    match kind {
        Kind::IcmpCode => Some(REJECT_ICMP),
        Kind::Icmpv6Code => Some(REJECT_ICMPV6),
        _ => None,
    }
}

/// The number a symbolic name stands for in a field of `kind`.
pub fn lookup(kind: Kind, name: &str) -> Option<u64> {
    if let Some(t) = codes(kind) {
        return code_lookup(t, name).map(u64::from);
    }
    let extra: &[(&str, u64)] = match kind {
        Kind::Proto => PROTO_ALIASES,
        Kind::Port => SERVICES,
        _ => &[],
    };
    table(kind)
        .iter()
        .chain(extra)
        .find(|(n, _)| *n == name)
        .map(|&(_, v)| v)
}

/// The name `nft` prints for a value (`None`: print the number).
pub fn name_of(kind: Kind, v: u64) -> Option<&'static str> {
    if let Some(t) = codes(kind) {
        return code_name(t, u8::try_from(v).ok()?);
    }
    table(kind).iter().find(|&&(_, x)| x == v).map(|&(n, _)| n)
}

/// Names of the set bits of a flag value (`None` when a bit has no name).
pub fn flag_names(kind: Kind, v: u64) -> Option<Vec<&'static str>> {
    let mut out = Vec::new();
    let mut rest = v;
    for &(n, bit) in table(kind) {
        if v & bit != 0 {
            out.push(n);
            rest &= !bit;
        }
    }
    (rest == 0 && !out.is_empty()).then_some(out)
}

pub fn code_lookup(t: &[(&str, u8)], name: &str) -> Option<u8> {
    t.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

pub fn code_name(t: &[(&'static str, u8)], v: u8) -> Option<&'static str> {
    t.iter().find(|&&(_, x)| x == v).map(|&(n, _)| n)
}
