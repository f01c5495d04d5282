//! The per-lcore worker: the packet pipeline and the loop around it.
//!
//! This file is the seam between the two halves, written first so both can be built at
//! once:
//!
//! - the **pipeline** (`pipeline.rs`, pure Rust on byte slices, no EAL): parse, owner
//!   check, conntrack, rules, NAT, routing, neighbour lookup; it decides an [`Action`]
//!   for each frame and answers [`WorkerCommand`]s between bursts;
//! - the **I/O edge** (`io.rs`, feature `dpdk`): RX/TX bursts on the worker's queues,
//!   handoff rings, the slow-path ring, command rings, counters publication.
//!
//! See `docs/architecture.md` ("Worker loop").

use crate::DropReason;
use crate::control::proto::{ControlError, CtCounters, CtEntry, CtFilter, EventLine};

/// What the I/O edge does with one received frame after the pipeline ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Transmit the (possibly rewritten in place) frame, now `len` bytes long, on port
    /// `port`.
    Forward { port: u16, len: u16 },
    /// The pipeline built a new frame (an ICMP error, an echo reply, a TCP reset) of `len`
    /// bytes in the caller's scratch buffer: transmit it on `port`, drop the received one.
    Reply { port: u16, len: u16 },
    /// Another worker owns this flow: hand the frame to it unchanged (counted).
    Handoff { worker: u16 },
    /// ARP, IPv6 neighbour discovery, or a next hop without a resolved MAC: give the
    /// frame to the slow path (which queues a few per neighbour while resolving).
    SlowPath,
    /// Drop and count under `reason`.
    Drop(DropReason),
    /// A fragment copied into the worker's reassembly table (`frag.rs`): free the frame;
    /// nothing is sent yet, nothing is dropped.
    Held,
    /// The frame completed a datagram that leaves as `count` fragments, each taken with
    /// `Pipeline::next_fragment` (`Process::next_fragment`) into a buffer of the edge's,
    /// in order, to `out`; the received frame is freed.
    Fragments { out: FragOut, count: u16 },
}

/// Where the fragments of an [`Action::Fragments`] go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragOut {
    /// Transmitted on this port.
    Port(u16),
    /// Handed to this worker (the connection's owner), which reassembles them again.
    Worker(u16),
    /// Given to the slow path (next hop unresolved), each ready but for its MAC.
    SlowPath,
}

/// Minimum size of the scratch buffer passed with each frame (room for an ICMP error
/// quoting 576 bytes, plus VLAN-tagged Ethernet).
pub const SCRATCH_LEN: usize = 1536;

/// A per-worker operation requested by the control thread, carried on the worker's
/// command ring and answered between bursts (bounded work per call: long operations are
/// resumed with a cursor).
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerCommand {
    /// One page of the connection table.
    CtList {
        filter: CtFilter,
        cursor: u64,
        limit: u32,
    },
    /// Delete matching entries (all when the filter is empty), at most `budget` per call.
    CtDelete { filter: CtFilter, budget: u32 },
    /// Count matching entries in at most `budget` table slots from slot `cursor`.
    CtCount {
        filter: CtFilter,
        cursor: u64,
        budget: u32,
    },
    /// `conntrack -S` counters of this worker.
    CtStats,
    /// This worker's helper counters (docs/helpers.md).
    HelperStats,
    /// Apply tunables (sysctl name, value); `nf_conntrack_max` is the worker's share.
    SetTunables(Vec<(String, u64)>),
    /// Take up to `max` pending conntrack events.
    TakeEvents { max: u32 },
    /// Take up to `max` pending conntrack events unconverted (the control thread encodes
    /// them as sync records for the binary event stream, docs/ha.md).
    TakeRawEvents { max: u32 },
    /// Apply synced changes of connections this worker owns (docs/ha.md); `adopt`: the
    /// entries become ours (takeover) instead of the peer's copies.
    CtSync {
        records: Vec<crate::ha::wire::Record>,
        adopt: bool,
    },
}

/// The answer to a [`WorkerCommand`].
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerReply {
    CtPage {
        entries: Vec<CtEntry>,
        next_cursor: Option<u64>,
    },
    /// Entries deleted; `more` when the budget ran out before the table was scanned.
    Deleted {
        count: u64,
        more: bool,
    },
    /// Matching entries in the slice; `next_cursor` resumes, `None` when the table is done.
    Count {
        count: u64,
        next_cursor: Option<u64>,
    },
    Stats(CtCounters),
    HelperStats(pipeline::HelperCounters),
    Events {
        events: Vec<EventLine>,
        lost: u64,
    },
    /// The answer to `TakeRawEvents`.
    RawEvents {
        events: Vec<crate::conntrack::CtEvent>,
        lost: u64,
    },
    /// Synced changes applied and refused.
    Synced {
        applied: u64,
        failed: u64,
    },
    Done,
    Error(ControlError),
}

pub mod counters;
pub mod held;
#[cfg(feature = "dpdk")]
pub mod io;
mod pipe_build;
pub mod pipeline;
pub mod process;
pub mod slowpath;

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
