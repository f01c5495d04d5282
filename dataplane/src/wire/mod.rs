//! Zero-copy header views and the parse step.
//!
//! Each protocol has its own file with a view type in the smoltcp style
//! (`new_unchecked` / `new_checked` / `check_len`; after `check_len` succeeds no accessor
//! panics). [`parse`](self) turns a whole Ethernet frame into a [`Parsed`] summary, the
//! small `Copy` value the rest of the pipeline (conntrack, rules, NAT, routing) works on,
//! or into a [`DropReason`](crate::DropReason).
//!
//! `summary.rs` holds the summary types: they are the contract between the parser and its
//! consumers. See `docs/wire.md` for the decisions behind them.

pub mod arp;
pub mod build;
pub mod checksum;
pub mod dscp;
pub mod eth;
pub mod fastparse;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod parse;
pub mod rewrite;
mod summary;
pub mod tcp;
pub mod tcpopt;
pub mod udp;

#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;

pub use parse::{HwCsum, ParseOptions, TRUST_ALL, VERIFY_ALL, check_invariants, parse};
pub use summary::{
    Addr, ArpInfo, Family, Fragment, InnerTuple, IpInfo, L2Info, L4Info, Parsed, TcpFlags, TcpInfo,
    proto,
};
