//! The server's state-sync state (used by `ha.rs`; here so `dispatch.rs`, which holds
//! it in `Server`, imports none of the files that add methods to `Server`).

use std::collections::HashMap;

use crate::conntrack::{FlowKey, Synced};
use crate::control::proto::HaCounters;
use crate::nat::Owner;

/// The external cache (a backup's synced entries, held outside the workers until
/// `ha_commit`), the counters, and the owner function entries are routed with.
#[derive(Debug, Default)]
pub struct HaState {
    pub(super) cache: HashMap<FlowKey, Synced>,
    pub(super) counters: HaCounters,
    pub(super) owner: Option<Owner>,
}
