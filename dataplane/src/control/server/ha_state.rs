//! The server's state-sync state (used by `ha.rs`; here so `dispatch.rs`, which holds
//! it in `Server`, imports none of the files that add methods to `Server`).

use std::collections::HashMap;

use crate::conntrack::FlowKey;
use crate::control::proto::HaCounters;
use crate::ha::cache::SyncCache;
use crate::ha::wire::ExpectKey;
use crate::nat::Owner;

/// The external cache (a backup's synced entries, held outside the workers until
/// `ha_commit`), the counters, and the owner function entries are routed with.
#[derive(Debug, Default)]
pub struct HaState {
    /// Dense entries behind a keyed index ([`SyncCache`]): a million synced entries arrive
    /// at the sync's rate (docs/ha.md, "Throughput").
    pub(super) cache: SyncCache,
    pub(super) counters: HaCounters,
    pub(super) owner: Option<Owner>,
    /// The expectation table's counters (create + new + delete) when it was last listed
    /// for the record stream: listed again only when they moved.
    /// `None`: list it at the next poll.
    pub(super) expect_stamp: Option<u64>,
    /// Expectations sent on the record stream: their master and expiry (ns), so that an
    /// unchanged one is not sent again and a vanished one is sent as a destroy.
    pub(super) expect_sent: HashMap<ExpectKey, (FlowKey, u64)>,
}
