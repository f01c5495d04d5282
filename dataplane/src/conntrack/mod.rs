//! Connection tracking with Linux `nf_conntrack` semantics, one [`Table`] per worker.
//!
//! - [`key`]: [`FlowKey`] (40 bytes) built from the parser's [`IpInfo`](crate::wire::IpInfo)
//!   summary, and [`Direction`].
//! - [`table`]: the fixed-capacity entry slab, a bucketized cuckoo index that maps both the
//!   original and the reply tuple of every entry, the timer wheel, stats and events.
//! - [`tcp`]: the TCP state machine and window tracking of `nf_conntrack_proto_tcp.c`;
//!   UDP, ICMP/ICMPv6 echo and the generic tracker live in `table.rs` (a few lines each).
//! - [`tunables`]: the `nf_conntrack_*` sysctls with Linux defaults.
//! - [`filter`]: the one connection filter (listing, deletion, counts, event streams).
//! - [`listing`]: `conntrack -L/-D/-C` table scans and the conversion to the control
//!   protocol.
//!
//! Time is a `now` argument in nanoseconds from any monotonic origin (the worker's TSC
//! converted). The design note is `docs/conntrack.md`.

pub mod alloc;
pub mod filter;
pub mod key;
pub mod listing;
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
pub use key::{Direction, FlowKey, random_seed};
pub use table::insert::InsertHints;
pub use table::sync::{SyncApplied, Synced};
pub use table::wheel::{EXPIRE_MAX, EXPIRE_MIN};
pub use table::{
    Bucket, CtEvent, EntryId, FastKey, FastPlan, Miss, NO_PATH, Probe, RecipeArgs, SYNCED,
    Snapshot, Stats, Table, apply_delta,
};
pub use tcp::{TcpState, TcpWindow};
pub use tunables::{TunableError, Tunables, check_tunable};

/// `ct state` as nftables reports it for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    /// The packet starts a connection, or belongs to one that has not seen a reply yet
    /// (original direction).
    New,
    /// The packet belongs to a connection that has seen traffic both ways (or is a reply).
    Established,
    /// An ICMP/ICMPv6 error about a tracked connection.
    Related,
    /// Not trackable, or refused by the protocol tracker.
    Invalid,
    /// Deliberately not tracked (IPv6 neighbour discovery and MLD, as Linux does).
    Untracked,
}

/// Why a packet is `ct state invalid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// TCP flag combination Linux rejects (`tcp_valid_flags`).
    TcpFlags,
    /// TCP segment the state table marks invalid (`sIV`).
    TcpState,
    /// TCP segment other than a SYN for an unknown connection with `nf_conntrack_tcp_loose=0`.
    TcpNoLoose,
    /// TCP segment outside the tracked window.
    TcpWindow,
    /// ICMP/ICMPv6 error whose embedded tuple matches no connection, or whose outer
    /// destination is not the embedded source.
    IcmpNoFlow,
    /// ICMP/ICMPv6 message that cannot start a connection (an echo reply, an unknown type).
    IcmpType,
    /// A later IP fragment: no L4 header to track by (reassemble before conntrack).
    Fragment,
}

/// What [`Table::classify_new`] says about a packet whose key missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewFlow {
    /// A new connection may start with this key (insert it if the rules accept).
    New(FlowKey),
    /// An ICMP error about the connection `EntryId`; it travels in `Direction`.
    Related(EntryId, Direction),
    /// `ct state invalid`.
    Invalid(InvalidReason),
    /// `ct state untracked`: let it through the rules without an entry.
    Untracked,
}

/// What [`Table::update`] did with a packet of a tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The packet belongs to the entry.
    Tracked {
        /// `ct state` of this packet.
        ct: CtState,
        /// The entry's TCP state or status bits changed (an UPDATE event was queued).
        changed: bool,
        /// The entry was deleted after this packet (a RST answering an unreplied SYN);
        /// its id is stale now.
        destroyed: bool,
    },
    /// The tracker refused the packet: `ct state invalid`; the entry is unchanged.
    Invalid(InvalidReason),
    /// The entry had expired, or a SYN reopens a closed connection: the entry is gone and
    /// the packet must be classified as new ([`Table::classify_new`]).
    Gone,
}

/// Why [`Table::insert`] refused a new entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The table holds `nf_conntrack_max` entries and none could be early-dropped.
    #[error("conntrack table full")]
    Full,
    /// The original or reply tuple is already tracked.
    #[error("tuple already tracked")]
    Clash,
    /// The index found no room for a tuple (cuckoo path search exhausted).
    #[error("conntrack index full")]
    IndexFull,
    /// The packet cannot start a connection.
    #[error("packet cannot start a connection: {0:?}")]
    Invalid(InvalidReason),
}
