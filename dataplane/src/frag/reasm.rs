//! The per-worker reassembly table (one per address family, as Linux keeps one `fqdir`
//! per family).
//!
//! Keys are Linux's: IPv4 (saddr, daddr, id, protocol), IPv6 (saddr, daddr, fragment id).
//! Memory is fixed at construction: an arena of [`CHUNK`]-byte chunks sized by the high
//! threshold, a slab of queues and a chained hash index. A queue is charged its own size
//! plus the chunks its fragments occupy; the table never holds more than `high_thresh`.
//!
//! Rules, in the order Linux applies them (`ip_frag_queue`, `nf_ct_frag6_queue`,
//! `inet_frag_queue_insert`):
//!
//! - last fragment (MF clear): an end below data already seen, or a second last fragment
//!   with another end, is malformed (IPv4 kills the datagram, IPv6 drops the fragment);
//! - other fragments: IPv4 trims the length to a multiple of 8, IPv6 kills the datagram
//!   when it is not one; data past a known end is malformed;
//! - an empty fragment is malformed; an end past 65535 (IPv4 counting the header) is
//!   oversize;
//! - a fragment inside a run of data already received is a duplicate (dropped, the
//!   datagram kept); any other overlap kills the datagram (RFC 5722; Linux since 4.19
//!   for IPv4 too). Runs are Linux's: a fragment extends the last run only when it
//!   starts where that run ends, so `[0,8) [8,16)` then `[4,12)` is a duplicate while
//!   `[8,16) [0,8)` then `[4,12)` is an overlap, exactly as in the kernel.
//!
//! An IPv6 atomic fragment (offset 0, M clear, RFC 6946) is not reassembled: it is a whole
//! datagram ([`Outcome::NotFragment`]), as in Linux.

use crate::DropReason;
use crate::wire::Family;
use crate::wire::checksum;
use crate::wire::ipv4::Ipv4Packet;
use crate::wire::ipv6::{self, Ipv6Packet, ext};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Bytes per arena chunk: the unit of memory accounting for fragment data.
pub const CHUNK: usize = 1024;
const CHUNKS_PER_DGRAM: usize = 65536 / CHUNK;
/// Most fragments one datagram may have (a 64 KiB datagram on a 1280-byte IPv6 MTU has
/// 52; Linux has no such limit, only memory).
pub const MAX_FRAGS: usize = 64;
/// Longest header kept per datagram: the IPv4 header with options, or the IPv6 header
/// with its unfragmentable extension headers.
pub const MAX_HDR: usize = 128;
/// Size of a [`DatagramBuf`]: the largest reassembled datagram.
pub const MAX_DATAGRAM: usize = MAX_HDR + 65535;
/// Largest `high_thresh` a table can be built with (the chunk index is 16 bits).
pub const MAX_HIGH_THRESH: usize = (u16::MAX as usize) * CHUNK;

const NIL: u32 = u32::MAX;
const NO_CHUNK: u16 = u16::MAX;

/// Reassembly limits, Linux's sysctls (`net.ipv4.ipfrag_*`, `net.ipv6.ip6frag_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    /// `ipfrag_high_thresh`: most bytes held; a fragment that needs more first evicts.
    pub high_thresh: usize,
    /// `ipfrag_low_thresh`: eviction frees the oldest datagrams until this much is held.
    pub low_thresh: usize,
    /// `ipfrag_time`: a datagram not complete this long after its first fragment arrived
    /// is dropped (nanoseconds; the sysctl is in seconds).
    pub time_ns: u64,
}

impl FragLimits {
    /// Linux's IPv4 defaults: 4 MiB, 3 MiB, 30 s.
    pub const IPV4_DEFAULT: FragLimits = FragLimits {
        high_thresh: 4 << 20,
        low_thresh: 3 << 20,
        time_ns: 30_000_000_000,
    };
    /// Linux's IPv6 defaults: 4 MiB, 3 MiB, 60 s.
    pub const IPV6_DEFAULT: FragLimits = FragLimits {
        high_thresh: 4 << 20,
        low_thresh: 3 << 20,
        time_ns: 60_000_000_000,
    };

    /// The sysctl names for `family`, in the order high, low, time.
    pub const fn sysctl_names(family: Family) -> [&'static str; 3] {
        match family {
            Family::V4 => ["ipfrag_high_thresh", "ipfrag_low_thresh", "ipfrag_time"],
            Family::V6 => ["ip6frag_high_thresh", "ip6frag_low_thresh", "ip6frag_time"],
        }
    }

    /// Sets one tunable by its sysctl name (time in seconds). Linux's bounds: the low
    /// threshold may not exceed the high one (and the high not go below the low).
    pub fn set_sysctl(&mut self, family: Family, name: &str, value: u64) -> Result<(), String> {
        let [high, low, time] = Self::sysctl_names(family);
        let v = usize::try_from(value).map_err(|_| format!("{name}: {value} too large"))?;
        if name == high {
            if v < self.low_thresh {
                return Err(format!("{name}: {v} below {low} ({})", self.low_thresh));
            }
            self.high_thresh = v;
        } else if name == low {
            if v > self.high_thresh {
                return Err(format!("{name}: {v} above {high} ({})", self.high_thresh));
            }
            self.low_thresh = v;
        } else if name == time {
            self.time_ns = value
                .checked_mul(1_000_000_000)
                .ok_or_else(|| format!("{name}: {value} too large"))?;
        } else {
            return Err(format!("unknown tunable {name}"));
        }
        Ok(())
    }
}

/// Why a fragment was dropped (each maps to a [`DropReason`]; the names are counter
/// names, stable like [`DropReason::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FragDrop {
    /// Overlaps another fragment partly: the datagram is dropped (RFC 5722).
    Overlap,
    /// Inside data already received: dropped, the datagram kept.
    Duplicate,
    /// Empty, past the datagram's end, a second last fragment with another end, an IPv6
    /// non-last fragment whose length is not a multiple of 8, or a bad header.
    Malformed,
    /// The datagram would exceed 65535 bytes.
    Oversize,
    /// More than [`MAX_FRAGS`] fragments, or an IPv6 header chain over [`MAX_HDR`].
    TooMany,
    /// `high_thresh` reached even after eviction.
    NoMemory,
    /// Held by a datagram that was not complete within `ipfrag_time`.
    Timeout,
    /// Held by a datagram evicted (oldest first) to make room.
    Evicted,
}

impl FragDrop {
    pub const ALL: [FragDrop; 8] = [
        FragDrop::Overlap,
        FragDrop::Duplicate,
        FragDrop::Malformed,
        FragDrop::Oversize,
        FragDrop::TooMany,
        FragDrop::NoMemory,
        FragDrop::Timeout,
        FragDrop::Evicted,
    ];

    /// Stable counter name.
    pub const fn name(self) -> &'static str {
        match self {
            FragDrop::Overlap => "frag_overlap",
            FragDrop::Duplicate => "frag_duplicate",
            FragDrop::Malformed => "frag_malformed",
            FragDrop::Oversize => "frag_oversize",
            FragDrop::TooMany => "frag_too_many",
            FragDrop::NoMemory => "frag_no_memory",
            FragDrop::Timeout => "frag_timeout",
            FragDrop::Evicted => "frag_evicted",
        }
    }

    /// The worker's drop counter this falls under.
    pub const fn reason(self) -> DropReason {
        match self {
            FragDrop::NoMemory | FragDrop::Timeout | FragDrop::Evicted => DropReason::FragDiscarded,
            _ => DropReason::FragInvalid,
        }
    }
}

/// Counters, by Linux's SNMP names (`/proc/net/snmp` `Ip:` / `/proc/net/snmp6` `Ip6`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragStats {
    /// `ReasmReqds`: fragments received.
    pub reasm_reqds: u64,
    /// `ReasmOKs`: datagrams reassembled.
    pub reasm_oks: u64,
    /// `ReasmFails`: datagrams given up (overlap, malformed, oversize, timeout, eviction).
    pub reasm_fails: u64,
    /// `ReasmTimeout`: datagrams dropped by `ipfrag_time`.
    pub reasm_timeout: u64,
    /// `ReasmOverlaps`: datagrams dropped for overlapping fragments.
    pub reasm_overlaps: u64,
    /// Datagrams evicted to make room (Linux before 4.17 counted them in `ReasmFails`
    /// only; this is our own counter, `ReasmEvictions`).
    pub reasm_evictions: u64,
    /// The most bytes held at once since the table was built (`ReasmMemPeak`, our own
    /// name): a high-water mark of [`ReasmTable::mem`], never above `ipfrag_high_thresh`.
    pub mem_peak: u64,
    /// Fragments dropped, by [`FragDrop`]: the refused ones (returned as `Err`) and the
    /// held ones discarded with their datagram (timeout, eviction, or a fragment that
    /// killed it).
    pub drops: [u64; FragDrop::ALL.len()],
}

impl FragStats {
    /// Counter slots of [`FragStats::slots`]: the six datagram counters, the memory
    /// high-water mark, then the dropped fragments by [`FragDrop`].
    pub const SLOTS: usize = 7 + FragDrop::ALL.len();

    /// The counters as slots, in the order of [`FragStats::names`].
    pub fn slots(&self) -> [u64; Self::SLOTS] {
        let d = self.drops;
        [
            self.reasm_reqds,
            self.reasm_oks,
            self.reasm_fails,
            self.reasm_timeout,
            self.reasm_overlaps,
            self.reasm_evictions,
            self.mem_peak,
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            d[5],
            d[6],
            d[7],
        ]
    }

    /// The names of the slots for `family`: Linux's `/proc/net/snmp` (`Ip:`) and
    /// `/proc/net/snmp6` (`Ip6`) names, our `ReasmEvictions`, the [`FragDrop`] names.
    pub fn names(family: Family) -> [&'static str; Self::SLOTS] {
        let d = FragDrop::ALL.map(FragDrop::name);
        let snmp = match family {
            Family::V4 => [
                "ReasmReqds",
                "ReasmOKs",
                "ReasmFails",
                "ReasmTimeout",
                "ReasmOverlaps",
                "ReasmEvictions",
                "ReasmMemPeak",
            ],
            Family::V6 => [
                "Ip6ReasmReqds",
                "Ip6ReasmOKs",
                "Ip6ReasmFails",
                "Ip6ReasmTimeout",
                "Ip6ReasmOverlaps",
                "Ip6ReasmEvictions",
                "Ip6ReasmMemPeak",
            ],
        };
        [
            snmp[0], snmp[1], snmp[2], snmp[3], snmp[4], snmp[5], snmp[6], d[0], d[1], d[2], d[3],
            d[4], d[5], d[6], d[7],
        ]
    }
}

impl Default for FragStats {
    fn default() -> Self {
        FragStats {
            reasm_reqds: 0,
            reasm_oks: 0,
            reasm_fails: 0,
            reasm_timeout: 0,
            reasm_overlaps: 0,
            reasm_evictions: 0,
            mem_peak: 0,
            drops: [0; FragDrop::ALL.len()],
        }
    }
}

/// A reassembly queue's key. IPv4 addresses are stored in the first 4 bytes; IPv6 keys
/// have `proto == 0` (the protocol is not part of Linux's IPv6 key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub id: u32,
    pub proto: u8,
}

/// Where a reassembled datagram came from: what refragmentation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub family: Family,
    /// The IPv4 identification or the IPv6 fragment id.
    pub ident: u32,
    /// Largest original fragment, IP header included (Linux's `frag_max_size`).
    pub max_size: u16,
    /// IPv4: every fragment had DF set (Linux's `IPSKB_FRAG_PMTU`: DF is kept on the
    /// datagram and refragmentation past the MTU is refused).
    pub df: bool,
    /// IPv6: offset in the reassembled header of the next-header byte that named the
    /// fragment header (6 for the fixed header).
    pub nh_off: u8,
    /// Number of original fragments.
    pub n: u8,
    /// End offset (in the fragmentable part) of each original fragment, in order; the
    /// first starts at 0 and each next one where the previous ended.
    pub ends: [u16; MAX_FRAGS],
}

impl Geometry {
    /// The original fragment boundaries as (offset, length) in the fragmentable part.
    pub fn pieces(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        let ends = &self.ends[..usize::from(self.n)];
        ends.iter().scan(0u16, |start, &end| {
            let s = *start;
            *start = end;
            Some((s, end - s))
        })
    }
}

/// A reassembled datagram: `DatagramBuf::bytes()[..len]`, header first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// Whole datagram length (header included).
    pub len: usize,
    /// Header length: IPv4 IHL*4, IPv6 the fixed header plus the unfragmentable
    /// extension headers (the fragment header is removed, as Linux does).
    pub hdr_len: usize,
    pub geometry: Geometry,
}

/// What became of a pushed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a fragment (or an IPv6 atomic fragment): process the packet as it is.
    NotFragment,
    /// Copied into the table; the caller frees the packet and forwards nothing yet.
    Held,
    /// This fragment completed its datagram, now in the caller's buffer.
    Complete(Reassembled),
}

/// Caller-owned output buffer for a reassembled datagram ([`MAX_DATAGRAM`] bytes,
/// allocated once per worker).
pub struct DatagramBuf(Box<[u8]>);

impl DatagramBuf {
    pub fn new() -> Self {
        DatagramBuf(vec![0u8; MAX_DATAGRAM].into_boxed_slice())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl std::fmt::Debug for DatagramBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatagramBuf({} bytes)", self.0.len())
    }
}

impl std::fmt::Debug for ReasmTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReasmTable")
            .field("family", &self.family)
            .field("limits", &self.limits)
            .field("datagrams", &self.live)
            .field("mem", &self.mem)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Default for DatagramBuf {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone, Copy, Default)]
struct Frag {
    start: u16,
    end: u16,
    /// Appended to the run of the fragment before it (Linux `fragrun_append_to_last`).
    joins_prev: bool,
}

#[derive(Clone)]
struct Queue {
    key: FragKey,
    created: u64,
    older: u32,
    newer: u32,
    hnext: u32,
    /// Linux `q.len`: the datagram's end if the last fragment came, else the highest end.
    len: u32,
    last_in: bool,
    /// Linux `q.meat`: bytes received.
    meat: u32,
    nfrags: u8,
    frags: [Frag; MAX_FRAGS],
    nchunks: u16,
    chunks: [u16; CHUNKS_PER_DGRAM],
    /// Header of the offset-0 fragment (0 until it arrives).
    hdr_len: u8,
    nh_off: u8,
    next_proto: u8,
    hdr: [u8; MAX_HDR],
    max_size: u16,
    max_df_size: u16,
}

impl Queue {
    fn empty() -> Self {
        Queue {
            key: FragKey::default(),
            created: 0,
            older: NIL,
            newer: NIL,
            hnext: NIL,
            len: 0,
            last_in: false,
            meat: 0,
            nfrags: 0,
            frags: [Frag::default(); MAX_FRAGS],
            nchunks: 0,
            chunks: [NO_CHUNK; CHUNKS_PER_DGRAM],
            hdr_len: 0,
            nh_off: 0,
            next_proto: 0,
            hdr: [0; MAX_HDR],
            max_size: 0,
            max_df_size: 0,
        }
    }
}

/// Bytes charged for a queue besides its chunks.
pub const QUEUE_COST: usize = size_of::<Queue>();

/// The fields of one fragment, family-independent.
struct Incoming<'a> {
    key: FragKey,
    offset: u32,
    end: u32,
    more: bool,
    df: bool,
    /// Fragment's size on the wire (IP header included).
    size: u16,
    /// Header to keep if this is the offset-0 fragment (IPv6: without the fragment header).
    hdr: &'a [u8],
    nh_off: u8,
    next_proto: u8,
    data: &'a [u8],
}

/// How an insert ended, besides success.
enum Refused {
    /// Drop this fragment, keep the datagram.
    Fragment(FragDrop),
    /// Drop this fragment and the whole datagram.
    Datagram(FragDrop),
}

/// One family's reassembly table for one worker.
pub struct ReasmTable {
    family: Family,
    limits: FragLimits,
    /// `high_thresh` the memory was sized for: the most `limits.high_thresh` can be.
    capacity: usize,
    queues: Box<[Queue]>,
    free_queues: Vec<u32>,
    buckets: Box<[u32]>,
    oldest: u32,
    newest: u32,
    live: usize,
    arena: Box<[u8]>,
    free_chunks: Vec<u16>,
    mem: usize,
    hasher: RandomState,
    stats: FragStats,
}

impl ReasmTable {
    /// Allocates everything for `limits.high_thresh` (at most [`MAX_HIGH_THRESH`]); the
    /// high threshold can later be lowered, or raised up to this value.
    pub fn new(family: Family, limits: FragLimits) -> Result<Self, String> {
        if limits.low_thresh > limits.high_thresh {
            return Err("low threshold above high threshold".into());
        }
        if limits.high_thresh > MAX_HIGH_THRESH {
            return Err(format!("high threshold above {MAX_HIGH_THRESH}"));
        }
        let capacity = limits.high_thresh;
        let nchunks = capacity / CHUNK;
        let nqueues = capacity / (QUEUE_COST + CHUNK) + 1;
        let nbuckets = (nqueues * 2).next_power_of_two();
        Ok(ReasmTable {
            family,
            limits,
            capacity,
            queues: vec![Queue::empty(); nqueues].into_boxed_slice(),
            free_queues: (0..nqueues).rev().map(sat_u32).collect(),
            buckets: vec![NIL; nbuckets].into_boxed_slice(),
            oldest: NIL,
            newest: NIL,
            live: 0,
            arena: vec![0u8; nchunks * CHUNK].into_boxed_slice(),
            free_chunks: (0..nchunks).rev().map(sat_u16).collect(),
            mem: 0,
            hasher: RandomState::new(),
            stats: FragStats::default(),
        })
    }

    pub fn limits(&self) -> FragLimits {
        self.limits
    }

    /// Replaces the limits; the high threshold may not exceed the one the table was built
    /// with. Lowering it takes effect (by eviction) on the next fragment.
    pub fn set_limits(&mut self, limits: FragLimits) -> Result<(), String> {
        if limits.low_thresh > limits.high_thresh {
            return Err("low threshold above high threshold".into());
        }
        if limits.high_thresh > self.capacity {
            return Err(format!(
                "high threshold {} above the {} this table was allocated for",
                limits.high_thresh, self.capacity
            ));
        }
        self.limits = limits;
        Ok(())
    }

    pub fn stats(&self) -> &FragStats {
        &self.stats
    }

    /// Adds `bytes` to the memory held and to its high-water mark.
    fn charge(&mut self, bytes: usize) {
        self.mem += bytes;
        self.stats.mem_peak = self.stats.mem_peak.max(self.mem as u64);
    }

    /// Bytes held now (Linux `frag_mem_limit`).
    pub fn mem(&self) -> usize {
        self.mem
    }

    /// Datagrams being reassembled now.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Drops the datagrams older than `ipfrag_time` (call between bursts; `push` does it
    /// too). Returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut n = 0;
        while self.oldest != NIL {
            let q = &self.queues[self.oldest as usize];
            if now.saturating_sub(q.created) < self.limits.time_ns {
                break;
            }
            self.stats.reasm_timeout += 1;
            self.stats.reasm_fails += 1;
            self.kill(self.oldest, FragDrop::Timeout);
            n += 1;
        }
        n
    }

    /// Takes one packet (from its IP header on; the parse step has checked the IPv4
    /// header checksum) at time `now` (ns). A fragment is copied and the caller frees
    /// it; when it completes its datagram, the datagram is written to `out`.
    pub fn push(
        &mut self,
        now: u64,
        packet: &[u8],
        out: &mut DatagramBuf,
    ) -> Result<Outcome, FragDrop> {
        let r = self.push_inner(now, packet, out);
        if let Err(why) = r {
            self.stats.drops[why as usize] += 1;
        }
        r
    }

    fn push_inner(
        &mut self,
        now: u64,
        packet: &[u8],
        out: &mut DatagramBuf,
    ) -> Result<Outcome, FragDrop> {
        let inc = match self.family {
            Family::V4 => incoming_v4(packet)?,
            Family::V6 => incoming_v6(packet)?,
        };
        let Some(inc) = inc else {
            return Ok(Outcome::NotFragment);
        };
        self.stats.reasm_reqds += 1;
        self.expire(now);
        let qi = match self.find(&inc.key) {
            Some(qi) => qi,
            None => self.create(now, inc.key)?,
        };
        match self.insert(qi, &inc) {
            Ok(()) => {}
            Err(Refused::Fragment(r)) => {
                if self.queues[qi as usize].nfrags == 0 {
                    self.unlink(qi);
                }
                return Err(r);
            }
            Err(Refused::Datagram(r)) => {
                if r == FragDrop::Overlap {
                    self.stats.reasm_overlaps += 1;
                }
                self.stats.reasm_fails += 1;
                self.kill(qi, r);
                return Err(r);
            }
        }
        let q = &self.queues[qi as usize];
        if !(q.last_in && q.meat == q.len && q.hdr_len != 0) {
            return Ok(Outcome::Held);
        }
        if usize::from(q.hdr_len) + q.len as usize > self.max_total() {
            // Linux `out_oversize`: a first fragment with a longer header than the one
            // the other fragments were checked against.
            self.stats.reasm_fails += 1;
            self.kill(qi, FragDrop::Oversize);
            return Err(FragDrop::Oversize);
        }
        let r = self.assemble(qi, out.bytes_mut());
        self.stats.reasm_oks += 1;
        self.unlink(qi);
        Ok(Outcome::Complete(r))
    }

    /// Largest reassembled datagram: 65535 bytes for IPv4, 40 + 65535 for IPv6.
    fn max_total(&self) -> usize {
        match self.family {
            Family::V4 => 65535,
            Family::V6 => ipv6::HEADER_LEN + 65535,
        }
    }

    fn bucket(&self, key: &FragKey) -> usize {
        usize::try_from(self.hasher.hash_one(key) & (self.buckets.len() as u64 - 1)).unwrap_or(0)
    }

    fn find(&self, key: &FragKey) -> Option<u32> {
        let mut i = self.buckets[self.bucket(key)];
        while i != NIL {
            let q = &self.queues[i as usize];
            if q.key == *key {
                return Some(i);
            }
            i = q.hnext;
        }
        None
    }

    fn create(&mut self, now: u64, key: FragKey) -> Result<u32, FragDrop> {
        self.reserve(QUEUE_COST, NIL)?;
        let qi = match self.free_queues.pop() {
            Some(qi) => qi,
            None => {
                // Cannot happen while the accounting holds (slots cover high_thresh).
                if self.oldest == NIL {
                    return Err(FragDrop::NoMemory);
                }
                self.evict_one();
                self.free_queues.pop().ok_or(FragDrop::NoMemory)?
            }
        };
        self.charge(QUEUE_COST);
        let b = self.bucket(&key);
        let q = &mut self.queues[qi as usize];
        *q = Queue::empty();
        q.key = key;
        q.created = now;
        q.hnext = self.buckets[b];
        q.older = self.newest;
        self.buckets[b] = qi;
        if self.newest != NIL {
            self.queues[self.newest as usize].newer = qi;
        } else {
            self.oldest = qi;
        }
        self.newest = qi;
        self.live += 1;
        Ok(qi)
    }

    /// Makes room for `need` more bytes within `high_thresh`, evicting the oldest
    /// datagrams (never `keep`) down to `low_thresh` when it is exceeded.
    fn reserve(&mut self, need: usize, keep: u32) -> Result<(), FragDrop> {
        if self.mem + need <= self.limits.high_thresh {
            return Ok(());
        }
        while self.mem + need > self.limits.low_thresh {
            let victim = if keep != NIL && self.oldest == keep {
                self.queues[keep as usize].newer
            } else {
                self.oldest
            };
            if victim == NIL {
                break;
            }
            self.stats.reasm_evictions += 1;
            self.stats.reasm_fails += 1;
            self.kill(victim, FragDrop::Evicted);
        }
        if self.mem + need <= self.limits.high_thresh {
            Ok(())
        } else {
            Err(FragDrop::NoMemory)
        }
    }

    fn evict_one(&mut self) {
        self.stats.reasm_evictions += 1;
        self.stats.reasm_fails += 1;
        self.kill(self.oldest, FragDrop::Evicted);
    }

    /// Frees a datagram whose held fragments are dropped for `why`.
    fn kill(&mut self, qi: u32, why: FragDrop) {
        self.stats.drops[why as usize] += u64::from(self.queues[qi as usize].nfrags);
        self.unlink(qi);
    }

    /// Removes a queue from the index and the age list and frees its memory.
    fn unlink(&mut self, qi: u32) {
        let (key, older, newer, hnext, nchunks) = {
            let q = &self.queues[qi as usize];
            (q.key, q.older, q.newer, q.hnext, q.nchunks)
        };
        let b = self.bucket(&key);
        if self.buckets[b] == qi {
            self.buckets[b] = hnext;
        } else {
            let mut i = self.buckets[b];
            while i != NIL {
                let next = self.queues[i as usize].hnext;
                if next == qi {
                    self.queues[i as usize].hnext = hnext;
                    break;
                }
                i = next;
            }
        }
        if older != NIL {
            self.queues[older as usize].newer = newer;
        } else {
            self.oldest = newer;
        }
        if newer != NIL {
            self.queues[newer as usize].older = older;
        } else {
            self.newest = older;
        }
        for c in self.queues[qi as usize].chunks {
            if c != NO_CHUNK {
                self.free_chunks.push(c);
            }
        }
        self.mem -= QUEUE_COST + usize::from(nchunks) * CHUNK;
        self.queues[qi as usize].nchunks = 0;
        self.queues[qi as usize].nfrags = 0;
        self.free_queues.push(qi);
        self.live -= 1;
    }

    /// Linux's checks and `inet_frag_queue_insert`, then the copy.
    fn insert(&mut self, qi: u32, inc: &Incoming<'_>) -> Result<(), Refused> {
        let v4 = self.family == Family::V4;
        // Malformed: IPv4 gives up the datagram (`discard_qp`), IPv6 the fragment.
        let malformed = |r| {
            if v4 {
                Refused::Datagram(r)
            } else {
                Refused::Fragment(r)
            }
        };
        let mut end = inc.end;
        if end > 65535 || (v4 && end + u32::from(inc.size) - sat_u32(inc.data.len()) > 65535) {
            return Err(malformed(FragDrop::Oversize));
        }
        let q = &mut self.queues[qi as usize];
        if !inc.more {
            if end < q.len || (q.last_in && end != q.len) {
                return Err(malformed(FragDrop::Malformed));
            }
            q.last_in = true;
            q.len = end;
        } else {
            if end & 7 != 0 {
                if !v4 {
                    return Err(Refused::Datagram(FragDrop::Malformed));
                }
                end &= !7;
            }
            if end > q.len {
                if q.last_in {
                    return Err(malformed(FragDrop::Malformed));
                }
                q.len = end;
            }
        }
        if end <= inc.offset {
            return Err(malformed(FragDrop::Malformed));
        }
        let (start, end16) = (sat_u16(inc.offset as usize), sat_u16(end as usize));
        let pos = runs_insert(&q.frags[..usize::from(q.nfrags)], start, end16)?;
        if usize::from(q.nfrags) == MAX_FRAGS {
            return Err(Refused::Datagram(FragDrop::TooMany));
        }
        if start == 0 && inc.hdr.len() > MAX_HDR {
            return Err(Refused::Datagram(FragDrop::TooMany));
        }
        // Memory: chunks this fragment touches that the queue lacks.
        let (c0, c1) = (usize::from(start) / CHUNK, (usize::from(end16) - 1) / CHUNK);
        let missing = q.chunks[c0..=c1].iter().filter(|&&c| c == NO_CHUNK).count();
        self.reserve(missing * CHUNK, qi)
            .map_err(Refused::Fragment)?;
        let q = &mut self.queues[qi as usize];
        for c in c0..=c1 {
            if q.chunks[c] == NO_CHUNK {
                // `reserve` guarantees a chunk: the arena holds high_thresh / CHUNK.
                let Some(free) = self.free_chunks.pop() else {
                    return Err(Refused::Fragment(FragDrop::NoMemory));
                };
                q.chunks[c] = free;
                q.nchunks += 1;
                self.mem += CHUNK;
                self.stats.mem_peak = self.stats.mem_peak.max(self.mem as u64);
            }
        }
        let data = &inc.data[..usize::from(end16 - start)];
        let mut off = usize::from(start);
        let mut rest = data;
        while !rest.is_empty() {
            let c = q.chunks[off / CHUNK];
            let within = off % CHUNK;
            let n = rest.len().min(CHUNK - within);
            let at = usize::from(c) * CHUNK + within;
            self.arena[at..at + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            off += n;
        }
        let n = usize::from(q.nfrags);
        q.frags.copy_within(pos..n, pos + 1);
        let joins_prev = pos == n && pos > 0 && q.frags[pos - 1].end == start;
        q.frags[pos] = Frag {
            start,
            end: end16,
            joins_prev,
        };
        q.nfrags += 1;
        q.meat += u32::from(end16 - start);
        if start == 0 {
            q.hdr[..inc.hdr.len()].copy_from_slice(inc.hdr);
            q.hdr_len = u8::try_from(inc.hdr.len()).unwrap_or(u8::MAX);
            q.nh_off = inc.nh_off;
            q.next_proto = inc.next_proto;
        }
        let size = inc.size - sat_u16((inc.end - u32::from(end16)) as usize);
        q.max_size = q.max_size.max(size);
        if inc.df {
            q.max_df_size = q.max_df_size.max(size);
        }
        Ok(())
    }

    /// Writes the complete datagram of `qi` to `out`.
    fn assemble(&self, qi: u32, out: &mut [u8]) -> Reassembled {
        let q = &self.queues[qi as usize];
        let hl = usize::from(q.hdr_len);
        let len = q.len as usize;
        out[..hl].copy_from_slice(&q.hdr[..hl]);
        let mut off = 0;
        while off < len {
            let c = usize::from(q.chunks[off / CHUNK]);
            let n = (len - off).min(CHUNK);
            out[hl + off..hl + off + n].copy_from_slice(&self.arena[c * CHUNK..c * CHUNK + n]);
            off += n;
        }
        let df = q.max_df_size == q.max_size;
        match self.family {
            Family::V4 => {
                let mut ip = Ipv4Packet::new_unchecked(&mut out[..hl + len]);
                ip.set_total_len(sat_u16(hl + len));
                ip.set_frag(df, false, 0);
                ip.fill_checksum();
            }
            Family::V6 => {
                out[usize::from(q.nh_off)] = q.next_proto;
                let mut ip = Ipv6Packet::new_unchecked(&mut out[..hl + len]);
                ip.set_payload_len(sat_u16(hl - ipv6::HEADER_LEN + len));
            }
        }
        let mut ends = [0u16; MAX_FRAGS];
        for (e, f) in ends.iter_mut().zip(&q.frags[..usize::from(q.nfrags)]) {
            *e = f.end;
        }
        Reassembled {
            len: hl + len,
            hdr_len: hl,
            geometry: Geometry {
                family: self.family,
                ident: q.key.id,
                max_size: q.max_size,
                df: self.family == Family::V4 && df,
                nh_off: q.nh_off,
                n: q.nfrags,
                ends,
            },
        }
    }
}

/// Linux `inet_frag_queue_insert` over the runs formed by `frags` (sorted by offset):
/// the index to insert `[start, end)` at, or why not.
fn runs_insert(frags: &[Frag], start: u16, end: u16) -> Result<usize, Refused> {
    let Some(last) = frags.last() else {
        return Ok(0);
    };
    if last.end < end {
        // The common case: after the tail.
        if start < last.end {
            return Err(Refused::Datagram(FragDrop::Overlap));
        }
        return Ok(frags.len());
    }
    // Walk the runs: [run_start, run_end) with the index of their first fragment.
    let mut i = 0;
    while i < frags.len() {
        let run_start = frags[i].start;
        let mut j = i;
        while j + 1 < frags.len() && frags[j + 1].joins_prev {
            j += 1;
        }
        let run_end = frags[j].end;
        if end <= run_start {
            return Ok(i);
        }
        if start < run_end {
            return Err(if start >= run_start && end <= run_end {
                Refused::Fragment(FragDrop::Duplicate)
            } else {
                Refused::Datagram(FragDrop::Overlap)
            });
        }
        i = j + 1;
    }
    // Not reached: `end <= last.end` means some run ends at or after `end`.
    Ok(frags.len())
}

fn incoming_v4(packet: &[u8]) -> Result<Option<Incoming<'_>>, FragDrop> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|_| FragDrop::Malformed)?;
    let offset = u32::from(ip.frag_offset());
    if offset == 0 && !ip.more_frags() {
        return Ok(None);
    }
    let hl = ip.header_len();
    let data = &packet[hl..usize::from(ip.total_len())];
    let mut key = FragKey {
        id: u32::from(ip.ident()),
        proto: ip.protocol(),
        ..FragKey::default()
    };
    key.src[..4].copy_from_slice(&ip.src_addr());
    key.dst[..4].copy_from_slice(&ip.dst_addr());
    Ok(Some(Incoming {
        key,
        offset,
        end: offset + sat_u32(data.len()),
        more: ip.more_frags(),
        df: ip.dont_frag(),
        size: ip.total_len(),
        hdr: &packet[..hl],
        nh_off: 0,
        next_proto: ip.protocol(),
        data,
    }))
}

/// Finds the fragment header among the unfragmentable headers (hop-by-hop, routing,
/// destination options) of an IPv6 packet: (its offset in the payload, the offset in the
/// packet of the next-header byte naming it).
fn find_frag_header(payload: &[u8], mut next: u8) -> Result<Option<(usize, usize)>, FragDrop> {
    let mut off = 0usize;
    let mut nh_at = 6usize;
    for _ in 0..=ipv6::MAX_EXT_HEADERS {
        match next {
            ext::FRAGMENT => {
                if off + 8 > payload.len() {
                    return Err(FragDrop::Malformed);
                }
                return Ok(Some((off, nh_at)));
            }
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                let h = payload.get(off..off + 2).ok_or(FragDrop::Malformed)?;
                nh_at = ipv6::HEADER_LEN + off;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            _ => return Ok(None),
        }
    }
    Err(FragDrop::Malformed)
}

fn incoming_v6(packet: &[u8]) -> Result<Option<Incoming<'_>>, FragDrop> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|_| FragDrop::Malformed)?;
    let payload = &packet[ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(ip.payload_len())];
    let Some((fh, nh_at)) = find_frag_header(payload, ip.next_header())? else {
        return Ok(None);
    };
    let h = &payload[fh..fh + 8];
    let fo = u16::from_be_bytes([h[2], h[3]]);
    let offset = u32::from(fo & 0xfff8);
    let more = fo & 1 != 0;
    if offset == 0 && !more {
        return Ok(None);
    }
    let unfrag = ipv6::HEADER_LEN + fh;
    let data = &payload[fh + 8..];
    let key = FragKey {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        proto: 0,
    };
    Ok(Some(Incoming {
        key,
        offset,
        end: offset + sat_u32(data.len()),
        more,
        df: false,
        size: sat_u16(ipv6::HEADER_LEN + payload.len()),
        hdr: &packet[..unfrag],
        nh_off: u8::try_from(nh_at).unwrap_or(u8::MAX),
        next_proto: h[0],
        data,
    }))
}

/// `x` as u16 (callers have bounded it; saturates otherwise).
pub(super) fn sat_u16(x: usize) -> u16 {
    u16::try_from(x).unwrap_or(u16::MAX)
}

fn sat_u32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The IPv4 header checksum of `hdr` is complete (used by tests and refragmentation).
pub fn v4_header_ok(hdr: &[u8]) -> bool {
    checksum::verify(checksum::sum(hdr))
}
