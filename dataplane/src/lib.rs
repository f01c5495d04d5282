//! The firewall/NAT data plane.
//!
//! Layers, bottom up (see `docs/architecture.md`):
//!
//! - [`wire`]: zero-copy header views and the parse step that turns a frame into a small
//!   `Copy` [`wire::Parsed`] summary, or a [`DropReason`].
//! - [`conntrack`]: flow keys, the per-worker connection table, protocol trackers with
//!   Linux `nf_conntrack` semantics, timers, statistics and events.
//! - [`rules`]: the nftables-syntax rule language, its JSON form, the compiled ruleset
//!   and its evaluation.
//! - [`nat`]: SNAT / masquerade / DNAT bindings, port allocation aligned with RSS,
//!   incremental checksum rewrite.
//! - [`route`]: interfaces, connected and static routes, neighbour tables.
//! - [`worker`]: the per-lcore run-to-completion loop (its I/O edge needs the `dpdk`
//!   feature; the packet pipeline itself works on byte slices).
//! - [`control`]: the control-socket protocol spoken between `fwd` and `mgmt`.
//!
//! Everything except the I/O edge works on `&[u8]` and plain structs, so it is tested,
//! fuzzed and benchmarked without EAL or hugepages.
#![forbid(unsafe_code)]

pub mod config;
pub mod conntrack;
pub mod control;
pub mod drop;
pub mod nat;
pub mod route;
pub mod rules;
pub mod wire;
pub mod worker;

pub use drop::DropReason;
