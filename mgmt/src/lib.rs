//! The management process: `fwmgmt` (REST API + Prometheus metrics) and `fwctl` (CLI).
//!
//! `fwmgmt` talks to `fwd` only through the control socket ([`client`], with the types of
//! `fwd_proto`); it never links DPDK. See `docs/mgmt.md`.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod client;
pub mod error;
pub mod filter;
pub mod ha;
pub mod metrics;
pub mod schema;
