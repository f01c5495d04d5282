//! The vocabulary the tracker's files share, defined below all of them: per-packet `ct
//! state`, why a packet is invalid, the TCP states, entry ids, and what the table's
//! lookups and inserts answer. `mod.rs` re-exports every name.

use super::key::{Direction, FlowKey};

/// TCP connection-tracking states, numbered as Linux's `enum tcp_conntrack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    /// Number of states (the size of per-state arrays).
    pub const COUNT: usize = 10;

    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The state stored as a byte.
    pub fn from_u8(v: u8) -> TcpState {
        Self::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(TcpState::None)
    }

    /// The name `conntrack -L` prints.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// The state of a `conntrack` name (case-insensitive).
    pub fn from_name(s: &str) -> Option<TcpState> {
        Self::ALL
            .into_iter()
            .find(|st| st.name().eq_ignore_ascii_case(s))
    }
}

/// Index of an entry in its worker's table. Valid until the entry is deleted (by
/// [`Table::remove`](super::Table::remove), expiry, early drop, or an [`Outcome`] that says so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub u32);

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

/// What [`Table::classify_new`](super::Table::classify_new) says about a packet whose key missed.
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

/// What [`Table::update`](super::Table::update) did with a packet of a tracked connection.
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
    /// the packet must be classified as new ([`Table::classify_new`](super::Table::classify_new)).
    Gone,
}

/// Why [`Table::insert`](super::Table::insert) refused a new entry.
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
