//! The control thread's requests to a worker and the worker's answers, carried on its
//! command ring (a leaf: the pipeline answers them, the I/O edge and the control side
//! carry them). Both are in the engine's types: the control side compiles a protocol
//! filter into the [`CtMatcher`] it sends, and converts the answers (entries, events,
//! counters, errors) to the protocol's (`control::conntrack`), off the worker's lcore.

use super::counters::HelperCounters;
use crate::conntrack::{Counters, CtEvent, CtMatcher, RefusedTunable, Snapshot};

/// A per-worker operation requested by the control thread, carried on the worker's
/// command ring and answered between bursts (bounded work per call: long operations are
/// resumed with a cursor).
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerCommand {
    /// One page of the connection table.
    CtList {
        filter: CtMatcher,
        cursor: u64,
        limit: u32,
    },
    /// Delete matching entries (all when the filter is empty), at most `budget` per call.
    CtDelete { filter: CtMatcher, budget: u32 },
    /// Count matching entries in at most `budget` table slots from slot `cursor`.
    CtCount {
        filter: CtMatcher,
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
        entries: Vec<Snapshot>,
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
    Stats(Counters),
    HelperStats(HelperCounters),
    /// The answer to `TakeEvents`: the events and the events its ring lost since the
    /// previous take (the control side stamps the lines with the wall clock).
    Events {
        events: Vec<CtEvent>,
        lost: u64,
    },
    /// The answer to `TakeRawEvents`.
    RawEvents {
        events: Vec<CtEvent>,
        lost: u64,
    },
    /// Synced changes applied and refused.
    Synced {
        applied: u64,
        failed: u64,
    },
    Done,
    /// A refused `SetTunables` (the only command a worker refuses).
    Error(RefusedTunable),
}
