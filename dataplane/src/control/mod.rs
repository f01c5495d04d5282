//! The control path between `fwd` and its clients.
//!
//! - [`proto`]: the versioned request/response protocol (JSON Lines over a Unix socket),
//!   shared with `mgmt`, which must not link DPDK, so it only uses plain data types.
pub mod elements;
pub mod proto;
pub mod server;
pub mod state;
pub mod view;
