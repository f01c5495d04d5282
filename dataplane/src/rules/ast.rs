//! The ruleset AST: what the text parser and the JSON reader produce, what the printers,
//! the checker and the compiler consume.
//!
//! Values are already typed (an address is an [`Addr`], a protocol a number): the printer
//! turns numbers back into the names `nft list ruleset` prints. Positions ([`Pos`]) locate
//! errors; they compare equal to each other so that round-trip tests compare meaning, not
//! layout.

use crate::nat::NatFlags;
use crate::wire::{Addr, Family};

/// A 1-based line and column in the source text (0:0 for JSON input or built ASTs).
/// Every `Pos` equals every other: positions never take part in AST equality.
#[derive(Clone, Copy, Debug, Default, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl PartialEq for Pos {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::hash::Hash for Pos {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A whole ruleset (`nft -f` file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// The file starts with `flush ruleset` (replace everything). The appliance always
    /// replaces the whole ruleset; this only records what was written.
    pub flush: bool,
    pub tables: Vec<Table>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableFamily {
    Ip,
    Ip6,
    Inet,
}

impl TableFamily {
    pub fn name(self) -> &'static str {
        match self {
            TableFamily::Ip => "ip",
            TableFamily::Ip6 => "ip6",
            TableFamily::Inet => "inet",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "ip" => TableFamily::Ip,
            "ip6" => TableFamily::Ip6,
            "inet" => TableFamily::Inet,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub family: TableFamily,
    pub name: String,
    pub sets: Vec<Set>,
    /// Maps and sets keyed by a concatenation (`map m { type K : V; … }`, `set s { type A .
    /// B; … }`).
    pub maps: Vec<Map>,
    /// `ct helper NAME { type "ftp" protocol tcp; }` objects (`rules/helper.rs`).
    pub helpers: Vec<CtHelperObj>,
    pub chains: Vec<Chain>,
    pub pos: Pos,
}

/// A `ct helper` object: which helper (`type "ftp"`), on which layer-4 protocol, for
/// which layer-3 family (`l3proto`; the table's family when absent, as nft lists it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtHelperObj {
    pub name: String,
    pub kind: String,
    pub proto: u8,
    pub l3proto: Option<TableFamily>,
    pub pos: Pos,
}

/// Element type of a named set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetType {
    Ipv4Addr,
    Ipv6Addr,
    InetService,
    InetProto,
    Mark,
    IfName,
}

impl SetType {
    pub fn name(self) -> &'static str {
        match self {
            SetType::Ipv4Addr => "ipv4_addr",
            SetType::Ipv6Addr => "ipv6_addr",
            SetType::InetService => "inet_service",
            SetType::InetProto => "inet_proto",
            SetType::Mark => "mark",
            SetType::IfName => "ifname",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "ipv4_addr" => SetType::Ipv4Addr,
            "ipv6_addr" => SetType::Ipv6Addr,
            "inet_service" => SetType::InetService,
            "inet_proto" => SetType::InetProto,
            "mark" => SetType::Mark,
            "ifname" => SetType::IfName,
            _ => return None,
        })
    }
    /// The set type whose elements are values of `kind` (`None`: no set type holds them).
    pub fn of_kind(kind: Kind) -> Option<Self> {
        Some(match kind {
            Kind::Addr4 => SetType::Ipv4Addr,
            Kind::Addr6 => SetType::Ipv6Addr,
            Kind::Port => SetType::InetService,
            Kind::Proto => SetType::InetProto,
            Kind::Mark => SetType::Mark,
            Kind::IfName => SetType::IfName,
            _ => return None,
        })
    }
    /// The value kind of the set's elements.
    pub fn kind(self) -> Kind {
        match self {
            SetType::Ipv4Addr => Kind::Addr4,
            SetType::Ipv6Addr => Kind::Addr6,
            SetType::InetService => Kind::Port,
            SetType::InetProto => Kind::Proto,
            SetType::Mark => Kind::Mark,
            SetType::IfName => Kind::IfName,
        }
    }
}

/// A named set (`set NAME { type T; [flags interval;] elements = { … } }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub ty: SetType,
    pub interval: bool,
    pub elements: Vec<Value>,
    /// Declared elements' own `timeout` (`198.18.1.4 timeout 10s`), in milliseconds, in
    /// `elements` order; only in a set with a timeout (the others take the set's).
    pub elem_timeouts: Vec<(Value, u64)>,
    /// `flags dynamic,timeout`, `timeout`, `size` (a set the data path updates).
    pub dynamic: DynOpts,
    pub pos: Pos,
}

impl Set {
    /// The own `timeout` (milliseconds) of declared element `v`.
    pub fn elem_timeout(&self, v: &Value) -> Option<u64> {
        self.elem_timeouts
            .iter()
            .find(|(e, _)| e == v)
            .map(|&(_, ms)| ms)
    }
}

/// What the elements of a named map map to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapData {
    /// `type K : verdict` (used with `vmap @NAME`).
    Verdict,
    /// `type K : T [. T]…` (used with `snat|dnat to KEY map @NAME`).
    Types(Vec<SetType>),
}

/// What one element of a [`Map`] maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapValue {
    /// A set of concatenations: no data.
    None,
    Verdict(Verdict),
    /// One value per data type.
    Data(Elem),
}

/// A named map (`map NAME { type K [. K]… : verdict|T [. T]…; [flags interval;] elements =
/// { k : v, … } }`) or a named set keyed by a concatenation (`set NAME { type A . B; … }`,
/// `data` `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    pub name: String,
    pub key: Vec<SetType>,
    pub data: Option<MapData>,
    pub interval: bool,
    pub elements: Vec<(Elem, MapValue)>,
    /// Declared elements' own `timeout` (ms; `198.18.1.2 . 22 timeout 10s`, a map's
    /// `198.18.1.2 timeout 10s : accept`), as [`Set::elem_timeouts`].
    pub elem_timeouts: Vec<(Elem, u64)>,
    /// A set of concatenations the data path updates (`flags dynamic,timeout`, `timeout`,
    /// `size`); for a map only `flags timeout` and `timeout` (its elements may expire:
    /// docs/rules.md, "Element timeouts in maps").
    pub dynamic: DynOpts,
    pub pos: Pos,
}

impl Map {
    /// `set` or `map`, as the listing writes it.
    pub fn keyword(&self) -> &'static str {
        if self.data.is_some() { "map" } else { "set" }
    }

    /// The own `timeout` (milliseconds) of declared element `e` of a set of
    /// concatenations.
    pub fn elem_timeout(&self, e: &[Value]) -> Option<u64> {
        self.elem_timeouts
            .iter()
            .find(|(x, _)| x == e)
            .map(|&(_, ms)| ms)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Hook::ALL.into_iter().find(|h| h.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChainType {
    Filter,
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

/// `type T hook H priority P; policy X;`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub ty: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// `None` for a regular chain (reached by `jump`/`goto` only).
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
    pub pos: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Statements in order (matches are statements, as in nftables).
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
    /// Handle: assigned in order by the parser (per table, 1-based), or read from JSON.
    pub handle: u64,
    pub pos: Pos,
}

/// What a match reads from the packet or its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    IpSaddr,
    IpDaddr,
    IpProtocol,
    Ip6Saddr,
    Ip6Daddr,
    Ip6Nexthdr,
    MetaL4proto,
    MetaNfproto,
    MetaMark,
    TcpSport,
    TcpDport,
    TcpFlags,
    UdpSport,
    UdpDport,
    ThSport,
    ThDport,
    IcmpType,
    Icmpv6Type,
    IcmpCode,
    Icmpv6Code,
    Iif,
    Oif,
    Iifname,
    Oifname,
    CtState,
    CtStatus,
    CtMark,
    MetaPkttype,
    IpDscp,
    Ip6Dscp,
    CtDirection,
    CtExpiration,
    CtOrigIpSaddr,
    CtOrigIpDaddr,
    CtReplyIpSaddr,
    CtReplyIpDaddr,
    CtOrigIp6Saddr,
    CtOrigIp6Daddr,
    CtReplyIp6Saddr,
    CtReplyIp6Daddr,
    CtOrigProtoSrc,
    CtOrigProtoDst,
    CtReplyProtoSrc,
    CtReplyProtoDst,
    FibDaddrType,
    FibSaddrIifOif,
    /// `tcp option maxseg|window|sack-perm|timestamp exists|missing` (`tcpopt.rs`).
    TcpOptMaxseg,
    TcpOptWindow,
    TcpOptSackPerm,
    TcpOptTimestamp,
    /// `tcp option maxseg size`, `tcp option window count`.
    TcpOptMaxsegSize,
    TcpOptWindowCount,
}

/// How the values of a field are written and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Addr4,
    Addr6,
    Proto,
    Nfproto,
    Port,
    Mark,
    TcpFlags,
    IcmpType,
    Icmpv6Type,
    IcmpCode,
    Icmpv6Code,
    IfName,
    CtState,
    CtStatus,
    /// `meta pkttype`: host, broadcast, multicast, other.
    Pkttype,
    /// `ip dscp`, `ip6 dscp`: 0..=63 (cs0…cs7, af11…af43, ef).
    Dscp,
    /// `ct direction`: original (0), reply (1).
    CtDir,
    /// `ct expiration`: milliseconds, written as `1m30s`.
    Millis,
    /// `fib … type`: the route type (unicast, local, …).
    FibType,
    /// `fib … oif missing|exists`, `tcp option … exists|missing`.
    Presence,
    /// A plain 16-bit number (`tcp option maxseg size`).
    Uint16,
    /// A plain 8-bit number (`tcp option window count`).
    Uint8,
}

impl Kind {
    /// Bitmask kinds: a bare list means "any of these bits".
    pub fn is_flags(self) -> bool {
        matches!(self, Kind::TcpFlags | Kind::CtState | Kind::CtStatus)
    }
}

impl Field {
    pub const ALL: [Field; 52] = [
        Field::IpSaddr,
        Field::IpDaddr,
        Field::IpProtocol,
        Field::Ip6Saddr,
        Field::Ip6Daddr,
        Field::Ip6Nexthdr,
        Field::MetaL4proto,
        Field::MetaNfproto,
        Field::MetaMark,
        Field::TcpSport,
        Field::TcpDport,
        Field::TcpFlags,
        Field::UdpSport,
        Field::UdpDport,
        Field::ThSport,
        Field::ThDport,
        Field::IcmpType,
        Field::Icmpv6Type,
        Field::IcmpCode,
        Field::Icmpv6Code,
        Field::Iif,
        Field::Oif,
        Field::Iifname,
        Field::Oifname,
        Field::CtState,
        Field::CtStatus,
        Field::CtMark,
        Field::MetaPkttype,
        Field::IpDscp,
        Field::Ip6Dscp,
        Field::CtDirection,
        Field::CtExpiration,
        Field::CtOrigIpSaddr,
        Field::CtOrigIpDaddr,
        Field::CtReplyIpSaddr,
        Field::CtReplyIpDaddr,
        Field::CtOrigIp6Saddr,
        Field::CtOrigIp6Daddr,
        Field::CtReplyIp6Saddr,
        Field::CtReplyIp6Daddr,
        Field::CtOrigProtoSrc,
        Field::CtOrigProtoDst,
        Field::CtReplyProtoSrc,
        Field::CtReplyProtoDst,
        Field::FibDaddrType,
        Field::FibSaddrIifOif,
        Field::TcpOptMaxseg,
        Field::TcpOptWindow,
        Field::TcpOptSackPerm,
        Field::TcpOptTimestamp,
        Field::TcpOptMaxsegSize,
        Field::TcpOptWindowCount,
    ];

    /// The two words of the text syntax (`("ip", "saddr")`, `("meta", "mark")`).
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Field::IpSaddr => ("ip", "saddr"),
            Field::IpDaddr => ("ip", "daddr"),
            Field::IpProtocol => ("ip", "protocol"),
            Field::Ip6Saddr => ("ip6", "saddr"),
            Field::Ip6Daddr => ("ip6", "daddr"),
            Field::Ip6Nexthdr => ("ip6", "nexthdr"),
            Field::MetaL4proto => ("meta", "l4proto"),
            Field::MetaNfproto => ("meta", "nfproto"),
            Field::MetaMark => ("meta", "mark"),
            Field::TcpSport => ("tcp", "sport"),
            Field::TcpDport => ("tcp", "dport"),
            Field::TcpFlags => ("tcp", "flags"),
            Field::UdpSport => ("udp", "sport"),
            Field::UdpDport => ("udp", "dport"),
            Field::ThSport => ("th", "sport"),
            Field::ThDport => ("th", "dport"),
            Field::IcmpType => ("icmp", "type"),
            Field::Icmpv6Type => ("icmpv6", "type"),
            Field::IcmpCode => ("icmp", "code"),
            Field::Icmpv6Code => ("icmpv6", "code"),
            Field::Iif => ("meta", "iif"),
            Field::Oif => ("meta", "oif"),
            Field::Iifname => ("meta", "iifname"),
            Field::Oifname => ("meta", "oifname"),
            Field::CtState => ("ct", "state"),
            Field::CtStatus => ("ct", "status"),
            Field::CtMark => ("ct", "mark"),
            Field::MetaPkttype => ("meta", "pkttype"),
            Field::IpDscp => ("ip", "dscp"),
            Field::Ip6Dscp => ("ip6", "dscp"),
            Field::CtDirection => ("ct", "direction"),
            Field::CtExpiration => ("ct", "expiration"),
            Field::CtOrigIpSaddr => ("ct original", "ip saddr"),
            Field::CtOrigIpDaddr => ("ct original", "ip daddr"),
            Field::CtReplyIpSaddr => ("ct reply", "ip saddr"),
            Field::CtReplyIpDaddr => ("ct reply", "ip daddr"),
            Field::CtOrigIp6Saddr => ("ct original", "ip6 saddr"),
            Field::CtOrigIp6Daddr => ("ct original", "ip6 daddr"),
            Field::CtReplyIp6Saddr => ("ct reply", "ip6 saddr"),
            Field::CtReplyIp6Daddr => ("ct reply", "ip6 daddr"),
            Field::CtOrigProtoSrc => ("ct original", "proto-src"),
            Field::CtOrigProtoDst => ("ct original", "proto-dst"),
            Field::CtReplyProtoSrc => ("ct reply", "proto-src"),
            Field::CtReplyProtoDst => ("ct reply", "proto-dst"),
            Field::FibDaddrType => ("fib daddr", "type"),
            Field::FibSaddrIifOif => ("fib saddr . iif", "oif"),
            Field::TcpOptMaxseg => ("tcp option", "maxseg"),
            Field::TcpOptWindow => ("tcp option", "window"),
            Field::TcpOptSackPerm => ("tcp option", "sack-perm"),
            Field::TcpOptTimestamp => ("tcp option", "timestamp"),
            Field::TcpOptMaxsegSize => ("tcp option maxseg", "size"),
            Field::TcpOptWindowCount => ("tcp option window", "count"),
        }
    }

    /// A field of a connection's original or reply tuple (`ct original ip saddr`, `ct
    /// reply proto-dst`, …).
    pub fn is_ct_tuple(self) -> bool {
        matches!(
            self,
            Field::CtOrigIpSaddr
                | Field::CtOrigIpDaddr
                | Field::CtReplyIpSaddr
                | Field::CtReplyIpDaddr
                | Field::CtOrigIp6Saddr
                | Field::CtOrigIp6Daddr
                | Field::CtReplyIp6Saddr
                | Field::CtReplyIp6Daddr
                | Field::CtOrigProtoSrc
                | Field::CtOrigProtoDst
                | Field::CtReplyProtoSrc
                | Field::CtReplyProtoDst
        )
    }

    /// A match on the TCP options (`tcp option …`).
    pub fn is_tcp_option(self) -> bool {
        matches!(
            self,
            Field::TcpOptMaxseg
                | Field::TcpOptWindow
                | Field::TcpOptSackPerm
                | Field::TcpOptTimestamp
                | Field::TcpOptMaxsegSize
                | Field::TcpOptWindowCount
        )
    }

    pub fn from_words(a: &str, b: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.words() == (a, b))
    }

    pub fn kind(self) -> Kind {
        match self {
            Field::IpSaddr | Field::IpDaddr => Kind::Addr4,
            Field::Ip6Saddr | Field::Ip6Daddr => Kind::Addr6,
            Field::IpProtocol | Field::Ip6Nexthdr | Field::MetaL4proto => Kind::Proto,
            Field::MetaNfproto => Kind::Nfproto,
            Field::MetaMark | Field::CtMark => Kind::Mark,
            Field::TcpSport
            | Field::TcpDport
            | Field::UdpSport
            | Field::UdpDport
            | Field::ThSport
            | Field::ThDport => Kind::Port,
            Field::TcpFlags => Kind::TcpFlags,
            Field::IcmpType => Kind::IcmpType,
            Field::Icmpv6Type => Kind::Icmpv6Type,
            Field::IcmpCode => Kind::IcmpCode,
            Field::Icmpv6Code => Kind::Icmpv6Code,
            Field::Iif | Field::Oif | Field::Iifname | Field::Oifname => Kind::IfName,
            Field::CtState => Kind::CtState,
            Field::CtStatus => Kind::CtStatus,
            Field::MetaPkttype => Kind::Pkttype,
            Field::IpDscp | Field::Ip6Dscp => Kind::Dscp,
            Field::CtDirection => Kind::CtDir,
            Field::CtExpiration => Kind::Millis,
            Field::CtOrigIpSaddr
            | Field::CtOrigIpDaddr
            | Field::CtReplyIpSaddr
            | Field::CtReplyIpDaddr => Kind::Addr4,
            Field::CtOrigIp6Saddr
            | Field::CtOrigIp6Daddr
            | Field::CtReplyIp6Saddr
            | Field::CtReplyIp6Daddr => Kind::Addr6,
            Field::CtOrigProtoSrc
            | Field::CtOrigProtoDst
            | Field::CtReplyProtoSrc
            | Field::CtReplyProtoDst => Kind::Port,
            Field::FibDaddrType => Kind::FibType,
            Field::FibSaddrIifOif
            | Field::TcpOptMaxseg
            | Field::TcpOptWindow
            | Field::TcpOptSackPerm
            | Field::TcpOptTimestamp => Kind::Presence,
            Field::TcpOptMaxsegSize => Kind::Uint16,
            Field::TcpOptWindowCount => Kind::Uint8,
        }
    }

    /// The table family this field needs (`ip saddr` only in `ip`/`inet` tables).
    pub fn family(self) -> Option<TableFamily> {
        match self {
            Field::IpSaddr
            | Field::IpDaddr
            | Field::IpProtocol
            | Field::IcmpType
            | Field::IcmpCode
            | Field::IpDscp
            | Field::CtOrigIpSaddr
            | Field::CtOrigIpDaddr
            | Field::CtReplyIpSaddr
            | Field::CtReplyIpDaddr => Some(TableFamily::Ip),
            Field::Ip6Saddr
            | Field::Ip6Daddr
            | Field::Ip6Nexthdr
            | Field::Icmpv6Type
            | Field::Icmpv6Code
            | Field::Ip6Dscp
            | Field::CtOrigIp6Saddr
            | Field::CtOrigIp6Daddr
            | Field::CtReplyIp6Saddr
            | Field::CtReplyIp6Daddr => Some(TableFamily::Ip6),
            _ => None,
        }
    }

    /// The L4 protocol a field implies (`tcp dport` implies `meta l4proto tcp`).
    pub fn l4proto(self) -> Option<u8> {
        use crate::wire::proto;
        match self {
            Field::TcpSport | Field::TcpDport | Field::TcpFlags => Some(proto::TCP),
            // An option's field is read from a TCP header only (the kernel breaks the rule
            // elsewhere); a presence (`exists`/`missing`) applies to every packet: nft
            // 1.0.6 adds no `meta l4proto tcp` and reads a presence of 0 without one.
            Field::TcpOptMaxsegSize | Field::TcpOptWindowCount => Some(proto::TCP),
            Field::UdpSport | Field::UdpDport => Some(proto::UDP),
            Field::IcmpType | Field::IcmpCode => Some(proto::ICMP),
            Field::Icmpv6Type | Field::Icmpv6Code => Some(proto::ICMPV6),
            _ => None,
        }
    }
}

/// One value of a match or a set element.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// A number (port, protocol, mark, flag bits, ICMP type).
    Num(u64),
    /// An inclusive range of numbers (`1000-2000`).
    Range(u64, u64),
    /// An address with a prefix length in bits of its family (a host: 32 or 128).
    Prefix(Addr, u8),
    /// An inclusive address range (`10.0.0.1-10.0.0.9`).
    AddrRange(Addr, Addr),
    /// An interface name (`"eth0"`, `"eth*"` with a trailing wildcard).
    Str(String),
}

/// An address as one 128-bit number: the route's (one prefix arithmetic for routes,
/// the connection filter and rules).
pub use crate::route::addr_to_u128;

/// Most prefixes one range may expand to (a classifier dimension, a set element field).
const MAX_PREFIXES: usize = 64;

/// Splits `[lo, hi]` of a `width`-bit field into prefixes (value, length); `false` when it
/// needs more than [`MAX_PREFIXES`].
pub(crate) fn prefixes(lo: u128, hi: u128, width: u32, out: &mut Vec<(u128, u8)>) -> bool {
    let mut lo = lo;
    loop {
        if out.len() > MAX_PREFIXES {
            return false;
        }
        // Largest aligned block at `lo` that stays within `hi`.
        let mut bits = lo.trailing_zeros().min(width);
        while bits > 0 && (bits >= 128 || lo + ((1u128 << bits) - 1) > hi) {
            bits -= 1;
        }
        if bits == width {
            out.push((0, 0));
            return true;
        }
        let len = u8::try_from(width - bits).unwrap_or(0);
        out.push((lo, len));
        let end = lo + ((1u128 << bits) - 1);
        if end >= hi {
            return true;
        }
        lo = end + 1;
    }
}

/// Mask of the top `len` bits of the family's part of a 128-bit address
/// ([`crate::route::prefix_mask`] of the kind's family; other kinds count as 128 bits).
pub(crate) fn prefix_mask(kind: Kind, len: u8) -> u128 {
    let family = if kind == Kind::Addr4 {
        Family::V4
    } else {
        Family::V6
    };
    crate::route::prefix_mask(family, len)
}

/// The right-hand side of a match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rhs {
    /// One value, or a bare comma list for flag kinds (`established,related`).
    Values(Vec<Value>),
    /// An anonymous set `{ a, b }`.
    Set(Vec<Value>),
    /// A named set `@NAME`.
    Named(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// No operator written: equality, set membership, or "any of these bits" for flag
    /// kinds.
    Implicit,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Op {
    pub fn text(self) -> &'static str {
        match self {
            Op::Implicit => "",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }
}

/// `FIELD [& MASK] [OP] RHS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub field: Field,
    /// `tcp flags & (syn|ack) == syn` (text) / `tcp flags syn / syn,ack` (nft's output).
    pub mask: Option<u64>,
    pub op: Op,
    pub rhs: Rhs,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
}

/// `reject [with …]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Plain `reject`: ICMP port unreachable (TCP: still ICMP, as the kernel does).
    Default,
    TcpReset,
    /// ICMP (v4) destination-unreachable code.
    Icmp(u8),
    /// ICMPv6 destination-unreachable code.
    Icmpv6(u8),
    /// `icmpx` (inet tables): family-independent code 0..=3.
    Icmpx(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl TimeUnit {
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Second => "second",
            TimeUnit::Minute => "minute",
            TimeUnit::Hour => "hour",
            TimeUnit::Day => "day",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "second" => TimeUnit::Second,
            "minute" => TimeUnit::Minute,
            "hour" => TimeUnit::Hour,
            "day" => TimeUnit::Day,
            _ => return None,
        })
    }
    pub fn nanos(self) -> u64 {
        match self {
            TimeUnit::Second => 1_000_000_000,
            TimeUnit::Minute => 60_000_000_000,
            TimeUnit::Hour => 3_600_000_000_000,
            TimeUnit::Day => 86_400_000_000_000,
        }
    }
}

/// NAT statement (`snat`, `dnat`, `masquerade`, `redirect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatStmt {
    pub kind: crate::nat::NatKind,
    /// `snat ip to` / `dnat ip6 to` in inet tables; `None` when not written.
    pub family: Option<TableFamily>,
    pub addr: Option<(Addr, Addr)>,
    pub ports: Option<(u16, u16)>,
    pub flags: NatFlags,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Match(Match, Pos),
    Verdict(Verdict, Pos),
    Reject(Reject, Pos),
    /// `counter [packets N bytes M]` (the numbers are what a listing printed).
    Counter {
        packets: u64,
        bytes: u64,
    },
    /// `log [prefix "…"] [level L]` (rate-limited by the appliance).
    Log {
        prefix: Option<String>,
        level: Option<String>,
    },
    /// `limit rate [over] N/UNIT [burst M packets]`.
    Limit {
        rate: u64,
        unit: TimeUnit,
        burst: u32,
        over: bool,
    },
    /// `ct count [over] N`.
    CtCount {
        count: u32,
        over: bool,
    },
    Notrack,
    MetaMarkSet(u32),
    CtMarkSet(u32),
    Nat(NatStmt, Pos),
    /// A concatenated key tested against an anonymous set
    /// (`ip saddr . tcp dport { 198.18.1.2 . 22 }`).
    Lookup(Lookup, Pos),
    /// A verdict map (`ct state vmap { established : accept, invalid : drop }`).
    Vmap(Vmap, Pos),
    /// NAT to the address (and port) a map gives for the packet's key (`dnat ip to tcp
    /// dport map @fp`, `snat to ip saddr map { 198.18.0.0/24 : 203.0.113.1 }`).
    NatMap(NatMap, Pos),
    /// `add|update @SET { KEY [timeout T] [STMT]… }` or `meter NAME size N { … }`: an
    /// element added to a dynamic set from the data path (`rules/dynset.rs`).
    SetElem(SetElem, Pos),
    /// `tcp option maxseg size set N|rt mtu`: MSS clamping (`mangle.rs`).
    MssSet(MssValue, Pos),
    /// `ip dscp set N` / `ip6 dscp set N` (the field: [`Field::IpDscp`] or
    /// [`Field::Ip6Dscp`]; N 0..=63): rewrites the packet's DSCP (`mangle.rs`).
    DscpSet(Field, u8, Pos),
    /// `ct helper set "NAME"`: the new connection gets the table's helper object NAME.
    CtHelperSet(String, Pos),
}

/// What `tcp option maxseg size set` writes: a number, or `rt mtu` (the route's MTU less
/// the IP and TCP headers). The kernel only ever lowers the option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MssValue {
    Num(u16),
    RtMtu,
}

/// The elements of a statement's set or map: written in place, or a named one (`@NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Elements<T> {
    Anon(Vec<T>),
    Named(String),
}

impl<T> Elements<T> {
    /// The elements written in place (none for a named set or map).
    pub fn anon(&self) -> &[T] {
        match self {
            Elements::Anon(v) => v,
            Elements::Named(_) => &[],
        }
    }
}

/// Most fields in one concatenation.
pub const MAX_CONCAT: usize = 4;

/// One element of a set or map keyed by a concatenation: one value per key field.
pub type Elem = Vec<Value>;

/// `KEY [!=] { e, … }` where `KEY` is two or more fields joined by `.` (one field is a
/// [`Match`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub key: Vec<Field>,
    pub neg: bool,
    pub elements: Elements<Elem>,
}

/// `KEY vmap { e : VERDICT, … }` (`KEY`: one field or a concatenation). A packet whose key
/// is in the map takes the element's verdict; one whose key is not ends the rule as a
/// failed match does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmap {
    pub key: Vec<Field>,
    pub elements: Elements<(Elem, Verdict)>,
}

/// `snat|dnat [ip|ip6] to KEY map { k : ADDR [. PORT], … }` or `… map @NAME`: the element
/// holding the packet's key gives the address (and port); no element: the rule ends as a
/// failed match does (the kernel's lookup breaks the rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatMap {
    /// Kind, family and flags (`addr` and `ports` are `None`).
    pub nat: NatStmt,
    pub key: Vec<Field>,
    /// Each element's data: an address (`Value::Prefix` of a host), then optionally a port
    /// (`Value::Num`).
    pub elements: Elements<(Elem, Elem)>,
}

/// Default `limit` burst (nft's default).
pub const DEFAULT_BURST: u32 = 5;

/// The options of a set the data path may update. All `false`/`None`: a plain set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DynOpts {
    /// `flags dynamic`.
    pub dynamic: bool,
    /// `flags timeout` (implied by `timeout T`).
    pub timeout_flag: bool,
    /// `timeout T`: the default lifetime of an element, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `size N`: most elements.
    pub size: Option<u32>,
}

impl DynOpts {
    /// Any option written: the set lives in a runtime store.
    pub fn any(&self) -> bool {
        *self != DynOpts::default()
    }
}

/// The default and largest `size` of a dynamic set without one (nft gives a meter 65535;
/// the kernel grows a hash set without a size: the appliance bounds it).
pub const DEFAULT_SIZE: u32 = 65_535;

/// `add` or `update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetOp {
    /// Adds the element when it is absent (an existing element keeps its expiry).
    Add,
    /// Adds the element, or restarts an existing element's timeout.
    Update,
}

impl SetOp {
    pub fn name(self) -> &'static str {
        match self {
            SetOp::Add => "add",
            SetOp::Update => "update",
        }
    }
}

/// `add|update @SET { KEY [timeout T] [limit …|ct count …|counter]… }`, or `meter NAME
/// [size N] { … }` (`meter` set: the statement declares its own set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetElem {
    pub op: SetOp,
    pub set: String,
    /// One field or a concatenation (`ip saddr . tcp dport`).
    pub key: Vec<Field>,
    pub timeout_ms: Option<u64>,
    /// Per-element statements: `limit`, `ct count`, `counter`.
    pub stmts: Vec<Stmt>,
    /// `meter NAME size N`: the size of the meter's own set.
    pub meter: Option<u32>,
}
