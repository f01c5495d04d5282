//! The one connection filter (`conntrack -L/-D/-C` and event subscriptions): compiled
//! once from its text fields, evaluated on a table [`Snapshot`] (listing, counting,
//! deleting on the worker) or on [`EntryFacts`] the control side builds from an entry it
//! holds (event streams). The engine owns it; the control side converts its protocol's
//! filter into [`FilterFields`] and a [`FilterError`] into its error.

use super::table::{ASSURED, CONFIRMED, DST_NAT, SEEN_REPLY, SRC_NAT, SYNCED, Snapshot};
use super::tcp::TcpState;
// A prefix matches addresses of its own family only, as `conntrack -d ::/0` lists no
// IPv4 entry.
use crate::route::Prefix;
use crate::wire::{Addr, Family, proto};

/// Protocol names a filter takes (any number 0..=255 too) and their numbers; the first
/// name of a number is the one `conntrack -L` prints.
pub const PROTOCOLS: &[(&str, u8)] = &[
    ("tcp", proto::TCP),
    ("udp", proto::UDP),
    ("icmp", proto::ICMP),
    ("icmpv6", proto::ICMPV6),
    ("ipv6-icmp", proto::ICMPV6),
    ("gre", proto::GRE),
    ("sctp", proto::SCTP),
];

/// Status flags a filter takes: (name, bits that must be set, bits that must be clear).
/// `SYNCED` (entries an HA peer installed) is accepted as well, but not published.
pub const STATUS_FLAGS: &[(&str, u8, u8)] = &[
    ("ASSURED", ASSURED, 0),
    ("SEEN_REPLY", SEEN_REPLY, 0),
    ("UNREPLIED", 0, SEEN_REPLY),
    ("SRC_NAT", SRC_NAT, 0),
    ("DST_NAT", DST_NAT, 0),
    ("CONFIRMED", CONFIRMED, 0),
];

/// A constant array of `len` names, the `i`th given by `name` (`const` has no closures).
macro_rules! name_array {
    ($len:expr, |$i:ident| $name:expr) => {{
        let mut names = [""; $len];
        let mut $i = 0;
        while $i < $len {
            names[$i] = $name;
            $i += 1;
        }
        names
    }};
}

/// The names of [`PROTOCOLS`].
pub const PROTO_NAMES: [&str; PROTOCOLS.len()] = name_array!(PROTOCOLS.len(), |i| PROTOCOLS[i].0);

/// The names of [`STATUS_FLAGS`].
pub const STATUS_NAMES: [&str; STATUS_FLAGS.len()] =
    name_array!(STATUS_FLAGS.len(), |i| STATUS_FLAGS[i].0);

/// TCP state names as `conntrack` prints them.
pub const TCP_STATES: [&str; TcpState::ALL.len()] =
    name_array!(TcpState::ALL.len(), |i| TcpState::ALL[i].name());

/// The text fields of a filter, as the control protocol carries them; `None` = any.
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterFields<'a> {
    pub src: Option<&'a str>,
    pub dst: Option<&'a str>,
    pub reply_src: Option<&'a str>,
    pub reply_dst: Option<&'a str>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub proto: Option<&'a str>,
    pub state: Option<&'a str>,
    pub mark: Option<&'a str>,
    pub zone: Option<u16>,
    pub family: Option<&'a str>,
    pub status: Option<&'a str>,
}

/// A field that does not compile: its name and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub field: &'static str,
    pub message: String,
}

/// What a filter looks at in one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFacts {
    pub orig_src: Addr,
    pub orig_dst: Addr,
    pub reply_src: Addr,
    pub reply_dst: Addr,
    /// Original ports (`None` for protocols without ports).
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub proto: u8,
    pub tcp_state: Option<TcpState>,
    pub mark: u32,
    pub zone: u16,
    pub family: Family,
    /// Status bits (`table::ASSURED`, ...).
    pub status: u8,
}

impl EntryFacts {
    /// The facts of a table entry.
    pub fn of(s: &Snapshot) -> EntryFacts {
        let o = &s.orig;
        let ports = has_ports(o.proto);
        EntryFacts {
            orig_src: o.src,
            orig_dst: o.dst,
            reply_src: s.reply.src,
            reply_dst: s.reply.dst,
            sport: ports.then_some(o.sport),
            dport: ports.then_some(o.dport),
            proto: o.proto,
            tcp_state: s.tcp_state,
            mark: s.mark,
            zone: o.zone,
            family: o.family,
            status: s.status,
        }
    }
}

/// Whether `conntrack` shows ports for a protocol.
pub fn has_ports(p: u8) -> bool {
    matches!(p, proto::TCP | proto::UDP | proto::SCTP)
}

/// A compiled filter: every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtMatcher {
    src: Option<Prefix>,
    dst: Option<Prefix>,
    reply_src: Option<Prefix>,
    reply_dst: Option<Prefix>,
    sport: Option<u16>,
    dport: Option<u16>,
    proto: Option<u8>,
    state: Option<TcpState>,
    mark: Option<(u32, u32)>,
    zone: Option<u16>,
    family: Option<Family>,
    /// (bits that must be set, bits that must be clear)
    status: Option<(u8, u8)>,
}

fn bad(field: &'static str, message: String) -> FilterError {
    FilterError { field, message }
}

fn prefix(field: &'static str, v: Option<&str>) -> Result<Option<Prefix>, FilterError> {
    v.map(|s| {
        s.parse::<Prefix>()
            .ok()
            .ok_or_else(|| bad(field, format!("{s:?} is not an address or prefix")))
    })
    .transpose()
}

fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Protocol number of a `conntrack -p` name or number.
pub fn proto_number(s: &str) -> Option<u8> {
    let s = s.to_ascii_lowercase();
    PROTOCOLS
        .iter()
        .find(|(name, _)| *name == s)
        .map(|&(_, n)| n)
        .or_else(|| s.parse().ok())
}

/// The name `conntrack -L` prints for a protocol number.
pub fn proto_name(p: u8) -> String {
    PROTOCOLS
        .iter()
        .find(|&&(_, n)| n == p)
        .map_or_else(|| p.to_string(), |(name, _)| (*name).to_string())
}

/// The (set, clear) bits of a status flag name (case-insensitive), `SYNCED` included.
pub fn status_bits(s: &str) -> Option<(u8, u8)> {
    let s = s.to_ascii_uppercase();
    if s == "SYNCED" {
        return Some((SYNCED, 0));
    }
    STATUS_FLAGS
        .iter()
        .find(|(name, _, _)| *name == s)
        .map(|&(_, set, clear)| (set, clear))
}

impl CtMatcher {
    /// Compiles a filter; the error names the offending field.
    pub fn compile(f: &FilterFields<'_>) -> Result<CtMatcher, FilterError> {
        let proto = f
            .proto
            .map(|s| proto_number(s).ok_or_else(|| bad("proto", format!("unknown protocol {s:?}"))))
            .transpose()?;
        let state = f
            .state
            .map(|s| {
                TcpState::from_name(s)
                    .ok_or_else(|| bad("state", format!("unknown TCP state {s:?}")))
            })
            .transpose()?;
        let mark = f
            .mark
            .map(|s| {
                let (v, m) = match s.split_once('/') {
                    Some((v, m)) => (parse_u32(v), parse_u32(m)),
                    None => (parse_u32(s), Some(u32::MAX)),
                };
                v.zip(m)
                    .ok_or_else(|| bad("mark", format!("{s:?} is not VALUE or VALUE/MASK")))
            })
            .transpose()?;
        let family = f
            .family
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "ipv4" | "inet" => Ok(Family::V4),
                "ipv6" | "inet6" => Ok(Family::V6),
                _ => Err(bad("family", format!("{s:?} is not ipv4 or ipv6"))),
            })
            .transpose()?;
        let status = f
            .status
            .map(|s| {
                status_bits(s).ok_or_else(|| bad("status", format!("unknown status flag {s:?}")))
            })
            .transpose()?;
        Ok(CtMatcher {
            src: prefix("src", f.src)?,
            dst: prefix("dst", f.dst)?,
            reply_src: prefix("reply_src", f.reply_src)?,
            reply_dst: prefix("reply_dst", f.reply_dst)?,
            sport: f.sport,
            dport: f.dport,
            proto,
            state,
            mark,
            zone: f.zone,
            family,
            status,
        })
    }

    /// Whether no field is set (matches everything).
    pub fn is_empty(&self) -> bool {
        *self == CtMatcher::default()
    }

    /// Whether a table entry matches.
    pub fn matches(&self, s: &Snapshot) -> bool {
        self.matches_facts(&EntryFacts::of(s))
    }

    /// Whether an entry with these facts matches.
    pub fn matches_facts(&self, e: &EntryFacts) -> bool {
        self.src.is_none_or(|p| p.contains(e.orig_src))
            && self.dst.is_none_or(|p| p.contains(e.orig_dst))
            && self.reply_src.is_none_or(|p| p.contains(e.reply_src))
            && self.reply_dst.is_none_or(|p| p.contains(e.reply_dst))
            && self.sport.is_none_or(|p| e.sport == Some(p))
            && self.dport.is_none_or(|p| e.dport == Some(p))
            && self.proto.is_none_or(|p| p == e.proto)
            && self.state.is_none_or(|st| e.tcp_state == Some(st))
            && self.mark.is_none_or(|(v, m)| e.mark & m == v & m)
            && self.zone.is_none_or(|z| z == e.zone)
            && self.family.is_none_or(|f| f == e.family)
            && self
                .status
                .is_none_or(|(set, clear)| e.status & set == set && e.status & clear == 0)
    }
}
