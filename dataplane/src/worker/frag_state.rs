//! The fragment stage's state (`frag.rs`): one worker's reassembly tables and the
//! datagram being processed. A leaf below `pipeline.rs` and `frag.rs`: it imports
//! neither.

use crate::conntrack::Tunables;
use crate::frag::{self, DatagramBuf, FragLimits, FragStats, Plan, ReasmTable, Reassembled};
use crate::wire::Family;

/// Room for the L2 header in front of a reassembled datagram (Ethernet with a VLAN tag;
/// tagged frames are refused later anyway).
const L2_ROOM: usize = 64;

/// Fragment counter slots of a worker (IPv4, then IPv6; [`FragStats::names`]).
pub const FRAG_COUNTERS: usize = 2 * FragStats::SLOTS;

/// One worker's reassembly tables, the datagram being processed and its emission.
#[derive(Debug)]
pub struct FragState {
    pub(super) v4: ReasmTable,
    pub(super) v6: ReasmTable,
    pub(super) dgram: DatagramBuf,
    /// The datagram's frame: the L2 header of the fragment that completed it, then the
    /// datagram (rewritten in place by the pipeline).
    pub(super) frame: Box<[u8]>,
    /// The datagram being processed or emitted, and where its IP header starts in `frame`.
    pub(super) current: Option<Reassembled>,
    pub(super) l3_off: usize,
    /// Set while the pipeline runs on the datagram (its MTU check is the original
    /// fragments', `exceeds_mtu`).
    pub(super) active: bool,
    /// The fragments still to emit.
    pub(super) plan: Option<Plan>,
}

impl FragState {
    /// Tables with the `ipfrag_*` / `ip6frag_*` limits of `t` (each allocated for its
    /// high threshold, at most the default: raising it later is refused by the tunables'
    /// range).
    pub fn new(t: &Tunables) -> Self {
        let table = |family, limits, default| {
            ReasmTable::new(family, limits).unwrap_or_else(|_| {
                ReasmTable::new(family, default).expect("the default limits are valid")
            })
        };
        FragState {
            v4: table(Family::V4, t.ipfrag, FragLimits::IPV4_DEFAULT),
            v6: table(Family::V6, t.ip6frag, FragLimits::IPV6_DEFAULT),
            dgram: DatagramBuf::new(),
            frame: vec![0u8; L2_ROOM + frag::MAX_DATAGRAM].into_boxed_slice(),
            current: None,
            l3_off: 0,
            active: false,
            plan: None,
        }
    }

    /// Applies the limits of `t` (validated by the tunables' ranges and `check_all`).
    pub fn set_limits(&mut self, t: &Tunables) -> Result<(), String> {
        self.v4.set_limits(t.ipfrag)?;
        self.v6.set_limits(t.ip6frag)
    }

    /// Drops the datagrams older than their `ipfrag_time` (between bursts).
    pub fn expire(&mut self, now_ns: u64) {
        self.v4.expire(now_ns);
        self.v6.expire(now_ns);
    }

    /// The counters, IPv4 slots then IPv6 (names: [`FragStats::names`]).
    pub fn counters(&self) -> [u64; FRAG_COUNTERS] {
        let mut out = [0u64; FRAG_COUNTERS];
        let (a, b) = out.split_at_mut(FragStats::SLOTS);
        a.copy_from_slice(&self.v4.stats().slots());
        b.copy_from_slice(&self.v6.stats().slots());
        out
    }

    /// Whether the pipeline is running on a reassembled datagram.
    #[inline]
    pub fn in_datagram(&self) -> bool {
        self.active
    }

    /// The reassembly table of `family` (tests, listing).
    pub fn table(&self, family: Family) -> &ReasmTable {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}
