//! `perfgen`: the load generator of `perf/`, pure logic (no DPDK) so it is unit-tested on
//! byte slices; `main.rs` is the DPDK edge (EAL, two ports, the polling loop).
//!
//! - [`flows`]: flow index <-> addresses, only in 198.18.0.0/15 and documentation ranges.
//! - [`frame`]: Ethernet/IPv4/UDP and TCP frames with correct checksums, a payload carrying
//!   a TSC timestamp and sequence number, and a parser for what comes back.
//! - [`template`]: the prebuilt UDP frame or TCP SYN of a run; per frame only the source
//!   address and port, the stamp (on a UDP sample) and the two checksums (incrementally)
//!   are written.
//! - [`order`]: the order flows are sent in (random permutation, Zipf, or sequential),
//!   precomputed as a table.
//! - [`pace`]: TSC-based packet pacing (rate limit or unlimited).
//! - [`hist`]: a log-linear latency histogram with percentiles.
//! - [`tcp`]: the handshake client (SYN, ACK, data, FIN, last ACK) and the stateless
//!   reflector that answers as the server on the far port (SYN-ACK, FIN-ACK).
//! - [`args`]: the command line.

pub mod args;
pub mod flows;
pub mod frame;
pub mod hist;
pub mod order;
pub mod pace;
pub mod tcp;
pub mod template;
