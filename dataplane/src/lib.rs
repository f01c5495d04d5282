//! The firewall/NAT data plane.
//!
//! Layers, bottom up; a module imports only modules listed before it, but for two pairs
//! whose files still import no cycle: `conntrack`'s table owns `nat`'s port pools and
//! `nat` reads `rules`' AST to check NAT statements (see `docs/architecture.md`, "Layers";
//! `tests/import_graph.rs` checks that files import no cycles and that the engine does
//! not import `control`):
//!
//! - `fwd_proto` (its own crate, `proto/`): the control protocol's types, plain serde
//!   data; re-exported as [`control::proto`]. Only `control` (and `ha`'s wire, `daemon`)
//!   names it: the modules below answer in their own types.
//! - [`drop`]: [`DropReason`], the counted reasons a packet is dropped.
//! - `slots`: the lock-free slot store shared by every worker (dynamic sets'
//!   elements, the helpers' expectations).
//! - [`wire`]: zero-copy header views and the parse step that turns a frame into a small
//!   `Copy` [`wire::Parsed`] summary, or a [`DropReason`]; `wire::build`, the one frame
//!   builder (the router's own packets, the tests, the benches, perfgen).
//! - [`frag`]: IP reassembly for tracking and refragmentation on output (per-worker
//!   tables with Linux's `ipfrag_*` limits; byte slices in, caller-owned buffers out).
//! - [`route`]: interfaces, connected and static routes, neighbour tables.
//! - [`conntrack`]: flow keys, the per-worker connection table, protocol trackers with
//!   Linux `nf_conntrack` semantics, timers, statistics and events; the types its files
//!   share are in `conntrack::state`. It answers in its own types (counters, event kinds,
//!   snapshots, a refused tunable), converted by `control`.
//! - [`nat`]: SNAT / masquerade / DNAT bindings, port allocation aligned with RSS,
//!   incremental checksum rewrite (uses conntrack's `FlowKey`).
//! - [`helper`]: the FTP and TFTP connection helpers and their expectation table.
//! - [`rules`]: the nftables-syntax rule language, its JSON form, the compiled ruleset
//!   and its evaluation (NAT statements produce [`nat`] actions).
//! - [`config`]: the `fwd` configuration file: schema, validation, runtime plans.
//! - [`ha`]: the state-sync wire format and its reliable transport (used by `mgmt`'s
//!   sync daemon; the data plane applies what it carries through `control`).
//! - [`worker`]: the per-lcore run-to-completion loop (its I/O edge needs the `dpdk`
//!   feature; the packet pipeline itself works on byte slices) and the slow-path loop; the
//!   pipeline's `Action` and the control side's `WorkerCommand` / `WorkerReply` (in the
//!   engine's types) are leaf files below both.
//! - [`control`]: the server (persistence, ruleset replacement, fan-out of commands to
//!   the workers), the protocol's view of a ruleset and of a connection filter, and the
//!   conversions of the engine's answers to the protocol's types (`control::conntrack`,
//!   `control::worker`).
//! - `daemon` (with the `dpdk` feature): the `fwd` daemon's wiring (ports, rings,
//!   workers on their lcores, the control thread, teardown), which `bin/fwd.rs` calls.
//!
//! Everything except the I/O edge works on `&[u8]` and plain structs, so it is tested,
//! fuzzed and benchmarked without EAL or hugepages.
#![forbid(unsafe_code)]

pub mod config;
pub mod conntrack;
pub mod control;
#[cfg(feature = "dpdk")]
pub mod daemon;
pub mod drop;
pub mod frag;
pub mod ha;
pub mod helper;
pub mod nat;
pub mod route;
pub mod rules;
pub(crate) mod slots;
pub mod wire;
pub mod worker;

pub use drop::DropReason;
