//! The control path between `fwd` and its clients.
//!
//! - [`conntrack`]: the protocol's form of the tracker's counters, entries, events and
//!   errors (the engine returns its own types; this converts them).
//! - [`filter`]: the protocol's connection filter on the engine's compiled one.
//! - [`worker`]: the protocol's view of a worker's published counters.
//! - [`proto`]: the versioned request/response protocol (JSON Lines over a Unix socket),
//!   shared with `mgmt`, which must not link DPDK, so it only uses plain data types.
pub mod conntrack;
pub mod elements;
pub mod filter;
pub mod server;
pub mod state;
pub mod view;
pub mod worker;

/// The protocol lives in its own crate (`proto/`, package `fwd-proto`) so that clients use
/// it without the data plane; re-exported here under its old path.
pub use fwd_proto as proto;
