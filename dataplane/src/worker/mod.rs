//! The per-lcore worker: the packet pipeline and the loop around it.
//!
//! The seam between the two halves is two leaf files, so both can be built at once and
//! neither imports the other's module: `action.rs` ([`Action`], what the pipeline decides
//! for a frame) and `command.rs` ([`WorkerCommand`] / [`WorkerReply`], what the control
//! thread asks between bursts):
//!
//! - the **pipeline** (`pipeline.rs`, pure Rust on byte slices, no EAL): parse, owner
//!   check, conntrack, rules, NAT, routing, neighbour lookup; it decides an [`Action`]
//!   for each frame and answers [`WorkerCommand`]s between bursts;
//! - the **I/O edge** (`io.rs`, feature `dpdk`): RX/TX bursts on the worker's queues,
//!   handoff rings, the slow-path ring, command rings, counters publication.
//!
//! See `docs/architecture.md` ("Worker loop").

pub mod action;
pub mod clock;
pub mod command;
pub mod counters;
pub mod held;
#[cfg(feature = "dpdk")]
pub mod io;
mod pipe_build;
pub mod pipeline;
pub mod process;
pub mod slowpath;

pub use action::{Action, FragOut, SCRATCH_LEN};
pub use command::{WorkerCommand, WorkerReply};
pub use pipeline::{Counters, Pipeline, PipelineConfig, PortInfo};
pub use slowpath::{SlowOut, SlowPath};
#[cfg(test)]
mod announce_tests;
#[cfg(test)]
mod dscp_tests;
#[cfg(test)]
mod dynset_tests;
#[cfg(test)]
mod facts_tests;
#[cfg(test)]
mod fast_tests;
#[cfg(test)]
mod first_tests;
#[cfg(test)]
mod frag_tests;
#[cfg(test)]
mod ftp_nat_tests;
#[cfg(test)]
mod helper_tests;
#[cfg(test)]
mod mss_tests;
#[cfg(test)]
mod newconn_tests;
#[cfg(test)]
mod pipe_tests;
#[cfg(test)]
mod tcpopt_tests;
