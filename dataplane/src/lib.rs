//! The firewall/NAT data plane.
//!
//! Layers, bottom up; a module imports only modules listed before it (see
//! `docs/architecture.md`, "Layers"; `tests/import_graph.rs` checks that files import
//! no cycles and that the engine does not import `control`, with today's exceptions
//! listed there):
//!
//! - [`drop`]: [`DropReason`], the counted reasons a packet is dropped.
//! - [`wire`]: zero-copy header views and the parse step that turns a frame into a small
//!   `Copy` [`wire::Parsed`] summary, or a [`DropReason`].
//! - [`frag`]: IP reassembly for tracking and refragmentation on output (per-worker
//!   tables with Linux's `ipfrag_*` limits; byte slices in, caller-owned buffers out).
//! - [`route`]: interfaces, connected and static routes, neighbour tables.
//! - [`conntrack`]: flow keys, the per-worker connection table, protocol trackers with
//!   Linux `nf_conntrack` semantics, timers, statistics and events. (Today it still speaks
//!   `control::proto` types for counters, events, listings and tunable errors, and reads
//!   `config`'s tunable check: phase 2 gives it its own types.)
//! - [`nat`]: SNAT / masquerade / DNAT bindings, port allocation aligned with RSS,
//!   incremental checksum rewrite (uses conntrack's `FlowKey`).
//! - [`rules`]: the nftables-syntax rule language, its JSON form, the compiled ruleset
//!   and its evaluation (NAT statements produce [`nat`] actions).
//! - [`config`]: the `fwd` configuration file: schema, validation, runtime plans.
//! - [`worker`]: the per-lcore run-to-completion loop (its I/O edge needs the `dpdk`
//!   feature; the packet pipeline itself works on byte slices).
//! - [`control`]: the control-socket protocol spoken between `fwd` and `mgmt`, the server
//!   (persistence, ruleset replacement, fan-out of commands to the workers) and the
//!   protocol's view of a ruleset. (`worker` still imports `control::proto` for its
//!   command replies and `control` imports `worker`'s command types: phase 2 moves the
//!   protocol to its own crate.)
//!
//! Everything except the I/O edge works on `&[u8]` and plain structs, so it is tested,
//! fuzzed and benchmarked without EAL or hugepages.
#![forbid(unsafe_code)]

pub mod config;
pub mod conntrack;
pub mod control;
pub mod drop;
pub mod frag;
pub mod ha;
pub mod nat;
pub mod route;
pub mod rules;
pub mod wire;
pub mod worker;

pub use drop::DropReason;
