//! NAT: SNAT / masquerade / DNAT bindings, port allocation aligned with flow ownership
//! (RSS), and the reply tuple a NATed connection is tracked under.
//!
//! This file holds the contract between the rule language (which decides *what* NAT a new
//! connection gets: [`NatAction`]) and the NAT engine (which turns that into a translated
//! reply tuple, chooses ports, and rewrites packets). See `docs/architecture.md`, "Flow
//! ownership", for why the port choice depends on the owning worker.

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
