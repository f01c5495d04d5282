//! The fast path's state (`fast.rs`): the vector being processed and the packet noted
//! for a recipe. A leaf below `pipeline.rs` and `fast.rs`: it imports neither.

use crate::conntrack::{FlowKey, Probe};
use arrayvec::ArrayVec;

/// Most frames in one vector (longer slices are handled by the full path beyond it).
pub const MAX_VECTOR: usize = 256;

/// Distinct rule paths whose credits one vector accumulates before crediting early.
const CREDIT_SLOTS: usize = 8;

/// Stage-1 results of the vector being processed.
#[derive(Debug, Default)]
pub(super) struct VectorState {
    /// Per frame with the fast shape: its key's hash, then (stage 2) the index
    /// reference whose recipe the fast path checks (0: none).
    pub(super) probes: ArrayVec<Option<(Probe, u32)>, MAX_VECTOR>,
    /// Rule credits not yet given: (path, packets, bytes).
    pub(super) credits: ArrayVec<(u16, u64, u64), CREDIT_SLOTS>,
    /// Frames the fast path forwarded in this vector, not yet in the worker counters
    /// (added once per vector by `finish_vector`).
    pub(super) forwarded: u64,
    /// The key and stage-1 hash of the frame the fast path just gave back to the full
    /// path, which looks it up with that hash (`Pipeline::lookup`) instead of hashing it
    /// again; cleared once that frame is processed.
    pub(super) handed: Option<(FlowKey, Probe)>,
}

/// A forwarded packet of an established connection, noted by `send_out` for
/// [`Pipeline::build_recipe`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Sent {
    pub entry: (crate::conntrack::EntryId, crate::conntrack::Direction),
    pub port: u16,
    pub dst_mac: crate::route::Mac,
}
