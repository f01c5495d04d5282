//! The contract between the rule language and the NAT engine: what a rule asks for
//! ([`NatAction`]), the tuple NAT works on ([`Tuple`]) and why a binding fails
//! ([`NatError`]). A leaf of `nat`: the engine's files import these, never the facade.

use crate::DropReason;
use crate::wire::Addr;

/// Which translation a rule asked for (nftables statements of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// `snat to ADDR[-ADDR][:PORT[-PORT]]` (postrouting): rewrite the source.
    Snat,
    /// `masquerade [to :PORT[-PORT]]` (postrouting): SNAT to the egress port's address.
    Masquerade,
    /// `dnat to ADDR[-ADDR][:PORT[-PORT]]` (prerouting/output): rewrite the destination.
    Dnat,
    /// `redirect [to :PORT[-PORT]]` (prerouting/output): DNAT to the ingress port's own
    /// address.
    Redirect,
}

/// An inclusive address and port range. `addr` is `None` where the statement gives no
/// address (masquerade, redirect, or `snat to :PORT`); `ports` is `None` where it gives no
/// port (keep the original port if free, else pick one from the default range as Linux
/// does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatRange {
    /// Lowest and highest address (equal for a single address).
    pub addr: Option<(Addr, Addr)>,
    /// Lowest and highest port (equal for a single port).
    pub ports: Option<(u16, u16)>,
}

/// Flags of the NAT statements (`nft` `random`, `fully-random`, `persistent`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatFlags {
    pub random: bool,
    pub fully_random: bool,
    pub persistent: bool,
}

/// The NAT decision for a new connection, produced by the `nat` chains of the ruleset
/// (consulted only for the first packet of a connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NatAction {
    pub kind: NatKind,
    pub range: NatRange,
    pub flags: NatFlags,
}

/// A connection tuple as NAT sees it: addresses, protocol and ports. For ICMP/ICMPv6 echo,
/// `sport` = `dport` = the identifier (the [`crate::wire::InnerTuple`] convention); for
/// protocols without ports both are 0. The family is the addresses' (IPv4-mapped or not).
///
/// This is NAT's own minimal key so that the engine does not depend on conntrack's
/// `FlowKey`; the two convert field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tuple {
    pub src: Addr,
    pub dst: Addr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Tuple {
    pub const fn new(src: Addr, dst: Addr, proto: u8, sport: u16, dport: u16) -> Self {
        Self {
            src,
            dst,
            proto,
            sport,
            dport,
        }
    }

    /// The tuple of the other direction (source and destination swapped).
    pub const fn inverse(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// Whether both addresses are IPv4 (mapped).
    pub fn is_v4(&self) -> bool {
        self.src.to_v4().is_some() && self.dst.to_v4().is_some()
    }
}

/// Why a NAT binding could not be made. Each maps to a counted [`DropReason`]; the flow is
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// Every candidate port (or the one fixed tuple) is taken, or none hashes to this worker.
    #[error("NAT port range exhausted")]
    PortExhausted,
    /// Masquerade/redirect without an interface address, or a range whose family differs
    /// from the packet's, or an empty range (high below low).
    #[error("no usable NAT address")]
    NoAddress,
    /// A source-NAT action passed where destination NAT is expected, or the reverse.
    #[error("NAT action in the wrong place (source vs destination)")]
    WrongKind,
}

impl NatError {
    /// The drop counter this error is counted under.
    pub const fn drop_reason(self) -> DropReason {
        match self {
            NatError::PortExhausted => DropReason::NatPortExhausted,
            NatError::NoAddress | NatError::WrongKind => DropReason::NatNoAddress,
        }
    }
}
