//! Connection tracking with Linux `nf_conntrack` semantics, one [`Table`] per worker.
//!
//! - [`state`]: the types the other files share ([`CtState`], [`InvalidReason`],
//!   [`TcpState`], [`EntryId`], [`NewFlow`], [`Outcome`], [`InsertError`]), below them all.
//! - [`key`]: [`FlowKey`] (40 bytes) built from the parser's [`IpInfo`](crate::wire::IpInfo)
//!   summary, and [`Direction`].
//! - [`table`]: the fixed-capacity entry slab, a bucketized cuckoo index that maps both the
//!   original and the reply tuple of every entry, the timer wheel, stats and events.
//! - [`tcp`]: the TCP state machine and window tracking of `nf_conntrack_proto_tcp.c`;
//!   UDP, ICMP/ICMPv6 echo and the generic tracker live in `table.rs` (a few lines each).
//! - [`tunables`]: the `nf_conntrack_*` sysctls with Linux defaults.
//! - [`filter`]: the one connection filter (listing, deletion, counts, event streams).
//! - [`listing`]: `conntrack -L/-D/-C` table scans, pages of [`Snapshot`]s.
//!
//! The tracker answers in its own types ([`Counters`], [`EventKind`], [`Snapshot`],
//! [`RefusedTunable`]); `control::conntrack` converts them to the control protocol's.
//!
//! Time is a `now` argument in nanoseconds from any monotonic origin (the worker's TSC
//! converted). The design note is `docs/conntrack.md`.

pub mod alloc;
pub mod filter;
pub mod key;
pub mod listing;
pub mod state;
pub mod table;
pub mod tcp;
pub mod tunables;
pub mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(feature = "dpdk")]
pub use alloc::use_dpdk_memory;
pub use filter::CtMatcher;
pub use key::{Direction, FlowKey, KeyedHasher, KeyedState, random_seed};
pub use state::{CtState, EntryId, InsertError, InvalidReason, NewFlow, Outcome, TcpState};
pub use table::insert::InsertHints;
pub use table::sync::{SyncApplied, Synced};
pub use table::wheel::{EXPIRE_MAX, EXPIRE_MIN};
pub use table::{
    Bucket, Counters, CtEvent, EventKind, FastKey, FastPlan, Miss, NO_PATH, Probe, RecipeArgs,
    SYNCED, Snapshot, Stats, Table, apply_delta,
};
pub use tcp::TcpWindow;
pub use tunables::{RefusedTunable, TunableError, Tunables, check_tunable};
