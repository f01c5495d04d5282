//! The per-worker connection table: entry slab, cuckoo index, trackers, statistics and
//! events; insertion and early drop in [`insert`], the timer wheel in [`wheel`]. See
//! `docs/conntrack.md` for the layout and the timer design.

use std::collections::VecDeque;

pub(super) mod insert;
pub(super) mod sync;
pub(super) mod wheel;

use super::alloc::{Prefetch, Slab, on_hugepages};
use super::key::{Direction, FlowKey, is_icmp, splitmix};
pub use super::state::EntryId;
use super::state::{CtState, InsertError, InvalidReason, NewFlow, Outcome};
use super::tcp::{TcpConn, TcpState, TcpVerdict, TcpWindow};
use super::tunables::{MAX_ENTRIES, TunableError, Tunables};
use crate::nat::alloc::pool_port;
use crate::nat::pool::PortPools;
use crate::wire::{Family, IpInfo, L4Info, TcpFlags, proto};

#[path = "lanes.rs"]
mod lanes;
#[path = "recipe.rs"]
mod recipe;
#[path = "recipe_types.rs"]
mod recipe_types;
use lanes::{WAYS, eq_mask8};
use recipe_types::Recipe;
pub use recipe_types::{FastKey, FastPlan, NO_PATH, RecipeArgs, apply_delta};

// Status bits, numbered as Linux's `enum ip_conntrack_status` (IPS_*_BIT).
pub const SEEN_REPLY: u8 = 1 << 1;
pub const ASSURED: u8 = 1 << 2;
/// In the table (Linux: confirmed). A slot without it is free.
pub const CONFIRMED: u8 = 1 << 3;
pub const SRC_NAT: u8 = 1 << 4;
pub const DST_NAT: u8 = 1 << 5;
/// Inserted by state sync from a peer ([`Table::apply_synced`]), not created by a packet
/// here: the sync daemon does not send its events back (docs/ha.md, "Loops"). Bit 0 is
/// Linux's `IPS_EXPECTED`, which this table has no use for yet (no helpers); the other
/// free bits are taken.
pub const SYNCED: u8 = 1 << 0;
/// The entry holds its translated source port in the table's port pools (released when
/// it dies). Private: masked out of what [`Table::status`] and snapshots show.
const PORT_HELD: u8 = 1 << 7;
/// A fast-path recipe was built at this slot since the entry was inserted: its lines
/// (`recipe.rs`) may hold a valid recipe or pending counters. Private, as `PORT_HELD`.
const RECIPE: u8 = 1 << 6;
/// The status bits only the table sees.
const PRIVATE: u8 = PORT_HELD | RECIPE;

/// Per-protocol state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum L4State {
    #[default]
    Generic,
    Tcp(TcpConn),
    /// UDP: the tick after which a replied flow counts as a stream (Linux `stream_ts`,
    /// first packet + 2 s).
    Udp {
        stream_tick: u32,
    },
    Icmp,
}

/// Which tracker an entry uses, kept in the hot part so only TCP entries read the
/// cold TCP state.
const KIND_GENERIC: u8 = 0;
const KIND_TCP: u8 = 1;
const KIND_UDP: u8 = 2;
const KIND_ICMP: u8 = 3;

/// The hot part of one connection: 128 bytes (two cache lines), everything a lookup,
/// the timer wheel, removal and the rules engine read, and the whole tracker state of
/// non-TCP entries. The accounting counters ([`Acct`]) and the TCP window state
/// ([`TcpConn`]) live in side arrays at the same slot.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Entry {
    orig: FlowKey,
    reply: FlowKey,
    /// Expiry tick (wrapping u32 ticks of [`TICK_NS`]).
    deadline: u32,
    /// Timer-wheel list links; `next` chains the free list while the slot is unused.
    next: u32,
    prev: u32,
    mark: u32,
    /// Opaque slots for the rules engine (a cached verdict), one per direction: the
    /// two directions of a connection take different paths through the hooks.
    verdict: [u64; 2],
    /// Opaque slot for `ct count` bookkeeping.
    count_slot: u16,
    /// `KIND_* << 4 | TcpState` (the tracker, and the TCP state: 0 for other trackers).
    state: u8,
    status: u8,
    /// UDP: the tick after which a replied flow counts as a stream (see [`L4State`]).
    stream_tick: u32,
    /// The index bucket holding each direction's reference (kept up to date by cuckoo
    /// moves), so removal needs no hashing.
    pos: [u32; 2],
}

/// Accounting counters of a connection (Linux `acct` extension), 32 bytes aligned to
/// 32, so one cache line. Written by every tracked packet, read by listings/events.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(32))]
struct Acct {
    packets: [u64; 2],
    bytes: [u64; 2],
}

/// Bytes of the hot part of an entry (what the per-packet lookup touches).
pub const ENTRY_BYTES: usize = size_of::<Entry>();
/// Bytes of the side arrays per entry: accounting counters and TCP window state.
pub const COLD_BYTES: usize = size_of::<Acct>() + size_of::<TcpConn>();

impl Entry {
    const EMPTY: Entry = Entry {
        orig: EMPTY_KEY,
        reply: EMPTY_KEY,
        deadline: 0,
        next: NIL,
        prev: NIL,
        mark: 0,
        verdict: [0; 2],
        count_slot: 0,
        state: 0,
        status: 0,
        stream_tick: 0,
        pos: [0; 2],
    };

    fn tuple(&self, dir: Direction) -> &FlowKey {
        match dir {
            Direction::Original => &self.orig,
            Direction::Reply => &self.reply,
        }
    }

    fn live(&self) -> bool {
        self.status & CONFIRMED != 0
    }

    /// `KIND_*`: the tracker ([`L4State`] variant).
    fn kind(&self) -> u8 {
        self.state >> 4
    }

    /// The TCP state (low nibble of `state`; [`TcpState::None`] for other trackers).
    fn tcp_state(&self) -> u8 {
        self.state & 0x0f
    }
}

const EMPTY_KEY: FlowKey = FlowKey {
    src: crate::wire::Addr([0; 16]),
    dst: crate::wire::Addr([0; 16]),
    sport: 0,
    dport: 0,
    zone: 0,
    proto: 0,
    family: Family::V4,
};

const NIL: u32 = u32::MAX;
/// Bit of an index reference: the entry was not ASSURED when the reference was written.
/// Set for every new entry; early drop looks only at references with it, and clears it
/// when the entry turns out to be ASSURED by now (entry ids stay below 2^30, so the
/// reference itself never reaches this bit).
const HINT: u32 = 1 << 31;
/// `prev` of a list head: this bit plus the wheel slot number.
const HEAD: u32 = 1 << 31;

/// Timer tick: 2^28 ns (about 268 ms). Entries expire at most one tick (plus the
/// caller's expiry interval) after their deadline, never before.
pub const TICK_SHIFT: u32 = 28;
pub const TICK_NS: u64 = 1 << TICK_SHIFT;
/// Wheel slots (a power of two): 4096 ticks, about 18 minutes per turn. Entries due
/// later are visited once per turn and re-linked.
const SLOTS: usize = 4096;
/// The extra list head that holds a slot being expired when a budget ran out.
const PENDING: usize = SLOTS;
const SLOTS_U32: u32 = 4096;
const PENDING_U32: u32 = SLOTS_U32;

#[allow(clippy::cast_possible_truncation)] // wrapping tick arithmetic on purpose
fn tick_of(ns: u64) -> u32 {
    (ns >> TICK_SHIFT) as u32
}

/// `a <= b` on wrapping ticks.
fn tick_le(a: u32, b: u32) -> bool {
    b.wrapping_sub(a).cast_signed() >= 0
}

/// Deadline tick for a timeout of `secs` seconds from `now`: rounded up, so never early.
fn deadline_of(now: u64, secs: u32) -> u32 {
    tick_of(
        now.saturating_add(u64::from(secs) * 1_000_000_000)
            .saturating_add(TICK_NS - 1),
    )
}

/// One cache line of the index: 8 signatures and 8 references (`(entry << 1 | dir) + 1`,
/// 0 = empty).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub struct Bucket {
    sig: [u32; WAYS],
    refs: [u32; WAYS],
}

/// `conntrack -S` counters of one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub found: u64,
    pub invalid: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub error: u64,
    /// Always 0: the cuckoo index never restarts a lookup (kept for `conntrack -S`).
    pub search_restart: u64,
    /// Events lost because the event ring was full.
    pub events_dropped: u64,
    /// Entries deleted by the timer.
    pub expired: u64,
}

/// `conntrack -S` of one table: its [`Stats`], live entries and its share of
/// `nf_conntrack_max` (the control side converts it to the protocol's counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub stats: Stats,
    pub entries: u64,
    pub max: u64,
}

/// A copy of an entry's visible state, for events and listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: EntryId,
    pub orig: FlowKey,
    pub reply: FlowKey,
    /// TCP state (`None` for other protocols).
    pub tcp_state: Option<TcpState>,
    pub status: u8,
    pub mark: u32,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// Whole seconds until expiry (0 when due).
    pub timeout_s: u64,
    /// TCP window tracking (`None` for other protocols).
    pub tcp_window: Option<TcpWindow>,
}

/// What happened to an entry (`conntrack -E`): inserted, changed, deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

/// One conntrack event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: EventKind,
    pub entry: Snapshot,
}

/// Default capacity of the per-worker event ring.
pub const EVENT_RING: usize = 4096;

/// A key's hash between the two stages of a burst prefetch ([`Table::probe`]).
#[derive(Clone, Copy, Debug)]
pub struct Probe(Hashed);

/// A lookup that missed ([`Table::lookup_or_miss`]): the key's hash, for
/// [`Table::insert_with`] to insert the key without hashing or looking it up again.
#[derive(Clone, Copy, Debug)]
pub struct Miss {
    h: Hashed,
    /// `stats.insert` at the time of the miss: an insert since makes the miss stale.
    inserts: u64,
}

/// Which of the two candidate buckets and the signature of a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hashed {
    b1: usize,
    b2: usize,
    sig: u32,
}

/// The per-worker connection table. See the module docs.
#[derive(Debug)]
pub struct Table {
    entries: Slab<Entry>,
    acct: Slab<Acct>,
    /// TCP window state; meaningful for TCP entries only.
    tcp: Slab<TcpConn>,
    free: u32,
    live: u32,
    max: u32,
    buckets: Slab<Bucket>,
    mask: usize,
    keys: [u64; 4],
    wheel: Vec<u32>,
    /// Next tick to expire; every tick before it has been processed.
    wheel_pos: u32,
    wheel_started: bool,
    tun: Tunables,
    stats: Stats,
    events: VecDeque<CtEvent>,
    event_cap: usize,
    /// `nf_conntrack_events` = 2 (auto): events are recorded while someone takes them.
    events_live: bool,
    /// [`Table::take_events`] calls, and the count when the idle clock last restarted.
    takes: u64,
    takes_seen: u64,
    /// When events were last taken (or the first tick): the idle clock of auto mode.
    idle_since: Option<u64>,
    /// `stats.insert` at the last [`Table::expire_tick`].
    inserts_at_tick: u64,
    /// Source ports held by this worker's SNAT connections (`nat::pool`).
    ports: PortPools,
    /// Fast-path recipes, two per slot (`recipe.rs`).
    recipes: Slab<Recipe>,
    /// Slot, direction and timeout (0: none) of the last packet the tracker refreshed.
    last_track: (u32, Direction, u32),
    /// Resume point of an interrupted [`Table::delete_matching`].
    pub(crate) delete_cursor: u32,
    /// The cache-line prefetch the table issues ahead of its own misses (expiry's index
    /// buckets, an insert's reply buckets and free slot): chosen by the edge
    /// ([`Table::set_prefetch`], [`Table::use_cpu_prefetch`]), off until then. A hint
    /// only: nothing is read through the addresses it is given.
    prefetch: Prefetch,
}

/// Auto events (`nf_conntrack_events` = 2) stop this long after the last take, and the
/// ring is emptied: nobody subscribes any more.
pub const EVENT_IDLE_NS: u64 = 10_000_000_000;

impl Table {
    /// A table for `capacity` entries, allocated now (nothing is allocated later). The
    /// index has `2 * capacity / 8 * 1.25` buckets rounded up to a power of two (two
    /// references per entry, load at most 80 %). `seed` keys the hash.
    pub fn new(capacity: u32, tunables: Tunables, seed: u64) -> Table {
        Self::with_event_ring(capacity, tunables, seed, EVENT_RING)
    }

    /// [`Table::new`] with an event ring of `events` slots.
    pub fn with_event_ring(capacity: u32, tunables: Tunables, seed: u64, events: usize) -> Table {
        // Below 2^30: a reference (`(entry << 1 | direction) + 1`) then leaves bit 31 to
        // `HINT`.
        let capacity = capacity.clamp(1, u32::try_from(MAX_ENTRIES).unwrap_or(u32::MAX));
        let refs = 2 * capacity as usize;
        let nb = (refs * 5 / 4).div_ceil(WAYS).next_power_of_two().max(2);
        let mut entries = super::alloc::filled(capacity as usize, Entry::EMPTY);
        for (i, e) in entries.iter_mut().enumerate() {
            e.next = u32::try_from(i + 1).unwrap_or(NIL);
        }
        if let Some(last) = entries.last_mut() {
            last.next = NIL;
        }
        let mut s = seed;
        let keys = [
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
            splitmix(&mut s),
        ];
        let max = tunables.max.min(capacity);
        Table {
            acct: super::alloc::filled(entries.len(), Acct::default()),
            tcp: super::alloc::filled(entries.len(), TcpConn::default()),
            entries,
            free: 0,
            live: 0,
            max,
            buckets: super::alloc::filled(nb, Bucket::default()),
            mask: nb - 1,
            keys,
            wheel: vec![NIL; SLOTS + 1],
            wheel_pos: 0,
            wheel_started: false,
            tun: Tunables { max, ..tunables },
            stats: Stats::default(),
            events: VecDeque::with_capacity(events),
            event_cap: events,
            events_live: true,
            takes: 0,
            takes_seen: 0,
            idle_since: None,
            inserts_at_tick: 0,
            ports: PortPools::for_capacity(capacity),
            recipes: super::alloc::filled(2 * capacity as usize, Recipe::default()),
            last_track: (NIL, Direction::Original, 0),
            delete_cursor: 0,
            prefetch: Prefetch::Off,
        }
    }

    /// Sets a function the table calls with the address of each cache line it would
    /// prefetch ahead of its own misses (tests watch the hints with it). Changes no
    /// result, only timing.
    pub fn set_prefetch(&mut self, hint: fn(*const u8)) {
        self.prefetch = Prefetch::Fn(hint);
        self.ports.set_prefetch(self.prefetch);
    }

    /// Makes the table issue the CPU's prefetch ahead of its own cache misses (the
    /// daemon's workers; a direct, inlined `prefetcht0` at each hint). Changes no result,
    /// only timing; without the `dpdk` feature there is no prefetch to issue.
    pub fn use_cpu_prefetch(&mut self) {
        self.prefetch = Prefetch::Cpu;
        self.ports.set_prefetch(self.prefetch);
    }

    /// Hints the index bucket `b` (a cache line).
    #[inline]
    fn prefetch_bucket(&self, b: usize) {
        if let Some(bk) = self.buckets.get(b) {
            self.prefetch.line(std::ptr::from_ref(bk).cast());
        }
    }

    /// Hints the accounting counters of entry slot `idx` (one cache line).
    #[inline]
    fn prefetch_acct(&self, idx: u32) {
        if let Some(a) = self.acct.get(idx as usize) {
            self.prefetch.line(std::ptr::from_ref(a).cast());
        }
    }

    /// Hints both cache lines of entry slot `idx` (an insert writes it whole).
    #[inline]
    fn prefetch_entry(&self, idx: u32) {
        if let Some(e) = self.entries.get(idx as usize) {
            let p: *const u8 = std::ptr::from_ref(e).cast();
            self.prefetch.line(p);
            self.prefetch.line(p.wrapping_add(64));
        }
    }

    /// Entries the table was allocated for.
    pub fn capacity(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
    }

    /// Live entries.
    pub fn len(&self) -> u32 {
        self.live
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes allocated per entry: hot part, cold part and the share of the index.
    pub fn bytes_per_entry(&self) -> usize {
        self.memory() / self.entries.len()
    }

    /// Bytes allocated for entries (hot part and side arrays) and the index (not the event
    /// ring or the timer wheel, which do not grow with the capacity).
    pub fn memory(&self) -> usize {
        self.entries.len() * (ENTRY_BYTES + COLD_BYTES)
            + self.recipes.len() * size_of::<Recipe>()
            + self.buckets.len() * size_of::<Bucket>()
    }

    /// Whether every large array of the table is in DPDK hugepage memory (`alloc.rs`);
    /// false outside EAL, under `--no-huge`, or when hugepages were short.
    pub fn on_hugepages(&self) -> bool {
        on_hugepages(&self.entries)
            && on_hugepages(&self.acct)
            && on_hugepages(&self.tcp)
            && on_hugepages(&self.buckets)
            && on_hugepages(&self.recipes)
    }

    /// Bytes per entry of the index and the hot parts only: what lookups touch.
    pub fn hot_bytes_per_entry(&self) -> usize {
        (self.entries.len() * ENTRY_BYTES + self.buckets.len() * size_of::<Bucket>())
            / self.entries.len()
    }

    /// The tunables in force.
    pub fn tunables(&self) -> &Tunables {
        &self.tun
    }

    /// Sets one tunable by sysctl name. `nf_conntrack_max` is this worker's share and may
    /// not exceed the allocated capacity; lowering it below the live count refuses new
    /// entries until enough have expired.
    pub fn set_tunable(&mut self, name: &str, value: u64) -> Result<(), TunableError> {
        if name == "nf_conntrack_max" && value > u64::from(self.capacity()) {
            return Err(TunableError::Range {
                name: name.to_string(),
                value,
                min: 1,
                max: self.capacity().into(),
            });
        }
        self.tun.set(name, value)?;
        self.max = self.tun.max;
        Ok(())
    }

    /// Sets the worker's share of `nf_conntrack_max` (see [`Table::set_tunable`]).
    pub fn set_max(&mut self, max: u32) -> Result<(), TunableError> {
        self.set_tunable("nf_conntrack_max", max.into())
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The `conntrack -S` counters: stats, live entries, maximum.
    pub fn counters(&self) -> Counters {
        Counters {
            stats: self.stats,
            entries: self.live.into(),
            max: self.max.into(),
        }
    }

    // ---------------------------------------------------------------- index

    #[inline]
    fn hashed(&self, key: &FlowKey) -> Hashed {
        self.split(key.hash(&self.keys))
    }

    /// Buckets and signature of a 64-bit hash.
    #[inline]
    fn split(&self, h: u64) -> Hashed {
        #[allow(clippy::cast_possible_truncation)] // bucket index and signature halves
        let (b1, sig) = ((h as usize) & self.mask, (h >> 32) as u32);
        Hashed {
            b1,
            b2: self.alt(b1, sig),
            sig,
        }
    }

    /// The other bucket of a signature: an involution (`alt(alt(b)) == b`), so entries can
    /// be moved without their key.
    #[inline]
    fn alt(&self, b: usize, sig: u32) -> usize {
        let f = (u64::from(sig).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize;
        (b ^ (f | 1)) & self.mask
    }

    /// The reference in bucket `b` whose entry's tuple is `key`: the ways whose signature
    /// is `sig` are found together ([`eq_mask8`]), then only those are read, lowest
    /// way first. A miss, the common case of a new connection, reads no entry.
    #[inline]
    fn find_in(&self, b: usize, sig: u32, key: &FlowKey) -> Option<(EntryId, Direction)> {
        let bk = &self.buckets[b];
        let mut ways = eq_mask8(&bk.sig, sig);
        while ways != 0 {
            let i = ways.trailing_zeros() as usize;
            ways &= ways - 1;
            let r = bk.refs[i];
            if r != 0 {
                let (idx, dir) = Self::split_ref(r);
                if self.entries[idx as usize].tuple(dir) == key {
                    return Some((EntryId(idx), dir));
                }
            }
        }
        None
    }

    #[inline]
    fn find(&self, key: &FlowKey, h: Hashed) -> Option<(EntryId, Direction)> {
        self.find_in(h.b1, h.sig, key)
            .or_else(|| self.find_in(h.b2, h.sig, key))
    }

    /// The entry and direction a key belongs to. Does not check expiry
    /// ([`Table::update`] does).
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(EntryId, Direction)> {
        self.find(key, self.hashed(key))
    }

    /// [`Table::lookup`] that keeps a miss for [`Table::insert_with`] (the new
    /// connection's key is then neither hashed nor looked up again).
    #[inline]
    pub fn lookup_or_miss(&self, key: &FlowKey) -> Result<(EntryId, Direction), Miss> {
        let h = self.hashed(key);
        self.find(key, h).ok_or_else(|| {
            // The slot an insert of this key would take: its lines arrive while the
            // rules and NAT run.
            self.prefetch_entry(self.free);
            Miss {
                h,
                inserts: self.stats.insert,
            }
        })
    }

    /// Looks up a burst: hashes every key, prefetches both candidate buckets, then looks
    /// up. `out[i]` answers `keys[i]`; at most `min(keys.len(), out.len())` are done.
    pub fn lookup_burst(&self, keys: &[FlowKey], out: &mut [Option<(EntryId, Direction)>]) {
        self.lookup_burst_with(keys, out, |_b: &Bucket| {});
    }

    /// [`Table::lookup_burst`] with the caller's prefetch hint (the daemon passes
    /// `dpdk_bindings::prefetch0`; the default is a no-op, since `dataplane` has no
    /// `unsafe` to issue one itself).
    pub fn lookup_burst_with<P: Fn(&Bucket)>(
        &self,
        keys: &[FlowKey],
        out: &mut [Option<(EntryId, Direction)>],
        prefetch: P,
    ) {
        const CHUNK: usize = 32;
        let n = keys.len().min(out.len());
        let mut hs = [Hashed {
            b1: 0,
            b2: 0,
            sig: 0,
        }; CHUNK];
        let mut base = 0;
        while base < n {
            let m = (n - base).min(CHUNK);
            for i in 0..m {
                let h = self.hashed(&keys[base + i]);
                prefetch(&self.buckets[h.b1]);
                prefetch(&self.buckets[h.b2]);
                hs[i] = h;
            }
            for i in 0..m {
                out[base + i] = self.find(&keys[base + i], hs[i]);
            }
            base += m;
        }
    }

    /// Burst prefetch, stage 1: the hash of `key` (kept by the caller for stage 2) after
    /// `hint` was given the addresses of its two candidate index buckets. The caller
    /// issues the prefetch (`dataplane` has no `unsafe`); addresses are never read here.
    #[inline]
    pub fn probe(&self, key: &FlowKey, hint: &mut impl FnMut(*const u8)) -> Probe {
        let h = self.hashed(key);
        hint(std::ptr::from_ref(&self.buckets[h.b1]).cast());
        hint(std::ptr::from_ref(&self.buckets[h.b2]).cast());
        Probe(h)
    }

    /// Burst prefetch, stage 2 (once the buckets of a burst have had time to arrive): the
    /// addresses of both cache lines of every hot entry whose signature matches in the
    /// probe's buckets, so the lookup and update that follow find them in cache.
    #[inline]
    pub fn probe_entries(&self, p: &Probe, hint: &mut impl FnMut(*const u8)) {
        let h = p.0;
        for b in [h.b1, h.b2] {
            let bk = &self.buckets[b];
            for i in 0..WAYS {
                let r = bk.refs[i];
                if r != 0 && bk.sig[i] == h.sig {
                    let e: *const u8 =
                        std::ptr::from_ref(&self.entries[Self::split_ref(r).0 as usize]).cast();
                    hint(e);
                    hint(e.wrapping_add(64));
                }
            }
        }
    }

    /// Whether a tuple is tracked in either direction (NAT port allocation).
    pub fn tuple_taken(&self, key: &FlowKey) -> bool {
        self.lookup(key).is_some()
    }

    fn make_ref(idx: u32, dir: Direction) -> u32 {
        ((idx << 1) | dir as u32) + 1
    }

    /// The entry index and direction of a non-zero reference (inverse of `make_ref`; the
    /// early-drop mark [`HINT`] is ignored).
    fn split_ref(r: u32) -> (u32, Direction) {
        let r = (r & !HINT) - 1;
        (r >> 1, Direction::from_bit(r))
    }

    /// Writes reference `r` with signature `sig` into way `i` of bucket `b`, and records
    /// the bucket in the entry (removal finds the reference there).
    fn place(&mut self, b: usize, i: usize, r: u32, sig: u32) {
        let bk = &mut self.buckets[b];
        bk.refs[i] = r;
        bk.sig[i] = sig;
        let (idx, dir) = Self::split_ref(r);
        // Bucket indices are below 2^31 (the index has at most 2^31 buckets).
        self.entries[idx as usize].pos[dir.index()] = u32::try_from(b).unwrap_or(u32::MAX);
    }

    /// Adds a reference, moving others along a cuckoo path (breadth-first, bounded) when
    /// both buckets are full. `false` when no path was found (nothing changed then).
    fn index_insert(&mut self, h: Hashed, r: u32) -> bool {
        for b in [h.b1, h.b2] {
            if let Some(i) = self.buckets[b].refs.iter().position(|&x| x == 0) {
                self.place(b, i, r, h.sig);
                return true;
            }
        }
        // BFS over buckets: node = (bucket, parent node, slot in parent's bucket).
        const NODES: usize = 256;
        let mut nodes = [(0usize, u16::MAX, 0u8); NODES];
        let mut len = 0;
        nodes[len] = (h.b1, u16::MAX, 0);
        len += 1;
        if h.b2 != h.b1 {
            nodes[len] = (h.b2, u16::MAX, 0);
            len += 1;
        }
        let mut head = 0;
        while head < len {
            let (b, _, _) = nodes[head];
            for s in 0..WAYS {
                let nb = self.alt(b, self.buckets[b].sig[s]);
                if nb == b {
                    continue;
                }
                if let Some(free) = self.buckets[nb].refs.iter().position(|&x| x == 0) {
                    // Found: move along the path back to the root.
                    let (mut to_b, mut to_s) = (nb, free);
                    let (mut from_node, mut from_s) = (head, s);
                    loop {
                        let from_b = nodes[from_node].0;
                        let (mr, ms) = {
                            let f = &self.buckets[from_b];
                            (f.refs[from_s], f.sig[from_s])
                        };
                        self.place(to_b, to_s, mr, ms);
                        let (_, parent, pslot) = nodes[from_node];
                        if parent == u16::MAX {
                            self.place(from_b, from_s, r, h.sig);
                            return true;
                        }
                        to_b = from_b;
                        to_s = from_s;
                        from_node = usize::from(parent);
                        from_s = usize::from(pslot);
                    }
                }
                if len < NODES {
                    #[allow(clippy::cast_possible_truncation)] // head < NODES, s < WAYS
                    {
                        nodes[len] = (nb, head as u16, s as u8);
                    }
                    len += 1;
                }
            }
            head += 1;
        }
        false
    }

    /// Removes the reference of `idx` in direction `dir` from the bucket the entry
    /// records for it (no hashing).
    fn remove_ref(&mut self, idx: u32, dir: Direction) {
        let r = Self::make_ref(idx, dir);
        let b = self.entries[idx as usize].pos[dir.index()] as usize;
        let bk = &mut self.buckets[b];
        let found = bk.refs.iter().position(|&x| x & !HINT == r);
        debug_assert!(
            found.is_some(),
            "entry {idx} {dir:?}: reference not in bucket {b}"
        );
        if let Some(i) = found {
            bk.refs[i] = 0;
            bk.sig[i] = 0;
        }
    }

    // ---------------------------------------------------------------- entries

    /// Whether events are recorded now (`nf_conntrack_events`: 0 never, 1 always, 2 while
    /// someone takes them).
    #[inline]
    fn events_on(&self) -> bool {
        match self.tun.events {
            0 => false,
            1 => true,
            _ => self.events_live,
        }
    }

    /// The idle clock of auto events (from [`Table::expire_tick`]): restarted by every
    /// take; past [`EVENT_IDLE_NS`] without one, recording stops and the ring is emptied.
    fn events_idle(&mut self, now: u64) {
        match self.idle_since {
            Some(t) if self.takes == self.takes_seen => {
                if self.events_live && now.saturating_sub(t) > EVENT_IDLE_NS {
                    self.events_live = false;
                    self.events.clear();
                }
            }
            _ => {
                self.takes_seen = self.takes;
                self.idle_since = Some(now);
            }
        }
    }

    /// Queues an event of entry `idx` if events are recorded: without a subscriber this is
    /// one inlined test.
    #[inline]
    fn emit(&mut self, kind: EventKind, idx: u32, now: u64) {
        if self.event_cap != 0 && self.events_on() {
            self.record(kind, idx, now);
        }
    }

    #[inline(never)]
    fn record(&mut self, kind: EventKind, idx: u32, now: u64) {
        if self.events.len() >= self.event_cap {
            self.stats.events_dropped += 1;
            return;
        }
        let snap = self.snapshot_at(idx, now);
        self.events.push_back(CtEvent { kind, entry: snap });
    }

    /// Takes up to `max` queued events (oldest first). A take is a subscriber: in auto mode (`nf_conntrack_events` = 2) it turns recording
    /// on until no take has come for [`EVENT_IDLE_NS`].
    pub fn take_events(&mut self, max: usize) -> impl Iterator<Item = CtEvent> + '_ {
        self.takes += 1;
        self.events_live = true;
        let n = max.min(self.events.len());
        self.events.drain(..n)
    }

    /// Events waiting in the ring.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Removes a live entry: index references (from the buckets the entry records, no
    /// hashing), timer link, DESTROY event, its NAT port, free list.
    fn destroy(&mut self, idx: u32, now: u64) {
        self.emit(EventKind::Destroy, idx, now);
        self.recipe_clear(idx);
        self.remove_ref(idx, Direction::Original);
        self.remove_ref(idx, Direction::Reply);
        self.unlink(idx);
        let e = &mut self.entries[idx as usize];
        let (status, reply) = (e.status, e.reply);
        *e = Entry {
            next: self.free,
            ..Entry::EMPTY
        };
        self.free = idx;
        self.live -= 1;
        if status & PORT_HELD != 0 {
            self.release_port(&reply);
        }
    }

    /// The source-port pools of this worker's SNAT connections (released here when an
    /// entry holding a port dies).
    pub fn port_pools(&self) -> &PortPools {
        &self.ports
    }

    /// The port pools, for NAT to take ports from (`nat::CtNat`).
    pub fn port_pools_mut(&mut self) -> &mut PortPools {
        &mut self.ports
    }

    fn get(&self, id: EntryId) -> Option<&Entry> {
        self.entries.get(id.0 as usize).filter(|e| e.live())
    }

    fn get_mut(&mut self, id: EntryId) -> Option<&mut Entry> {
        self.entries.get_mut(id.0 as usize).filter(|e| e.live())
    }

    /// Deletes an entry (`conntrack -D` of one entry). `false` if it was not live.
    pub fn remove(&mut self, id: EntryId, now: u64) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.destroy(id.0, now);
        true
    }

    /// Whether the entry is live (its id not stale).
    pub fn contains(&self, id: EntryId) -> bool {
        self.get(id).is_some()
    }

    /// The entry's tuple in one direction.
    pub fn tuple(&self, id: EntryId, dir: Direction) -> Option<FlowKey> {
        self.get(id).map(|e| *e.tuple(dir))
    }

    /// TCP state of a TCP entry.
    pub fn tcp_state(&self, id: EntryId) -> Option<TcpState> {
        self.get(id)
            .filter(|e| e.kind() == KIND_TCP)
            .map(|e| TcpState::from_u8(e.tcp_state()))
    }

    /// Status bits ([`SEEN_REPLY`], [`ASSURED`], [`SRC_NAT`], [`DST_NAT`], ...).
    pub fn status(&self, id: EntryId) -> Option<u8> {
        self.get(id).map(|e| e.status & !PRIVATE)
    }

    /// `ct mark`.
    pub fn mark(&self, id: EntryId) -> Option<u32> {
        self.get(id).map(|e| e.mark)
    }

    /// Sets `ct mark`.
    pub fn set_mark(&mut self, id: EntryId, mark: u32) {
        if let Some(e) = self.get_mut(id) {
            e.mark = mark;
        }
    }

    /// The rules engine's opaque verdict-cache slot of direction `dir`.
    pub fn verdict_slot(&self, id: EntryId, dir: Direction) -> Option<u64> {
        self.get(id).map(|e| e.verdict[dir as usize])
    }

    /// Sets the verdict-cache slot of direction `dir`.
    pub fn set_verdict_slot(&mut self, id: EntryId, dir: Direction, v: u64) {
        if let Some(e) = self.get_mut(id)
            && e.verdict[dir as usize] != v
        {
            e.verdict[dir as usize] = v;
            self.recipe_slot_changed(id.0, dir);
        }
    }

    /// Clears the verdict-cache slots of every entry (the rules engine's epoch wrapped).
    pub fn clear_verdict_slots(&mut self) {
        for e in self.entries.iter_mut() {
            e.verdict = [0; 2];
        }
    }

    /// The `ct count` bookkeeping slot.
    pub fn count_slot(&self, id: EntryId) -> Option<u16> {
        self.get(id).map(|e| e.count_slot)
    }

    /// Sets the `ct count` bookkeeping slot.
    pub fn set_count_slot(&mut self, id: EntryId, v: u16) {
        if let Some(e) = self.get_mut(id) {
            e.count_slot = v;
        }
    }

    /// Packets and bytes seen in a direction.
    pub fn counters_of(&self, id: EntryId, dir: Direction) -> Option<(u64, u64)> {
        self.get(id).map(|_| {
            let c = &self.acct[id.0 as usize];
            let (p, b) = self.recipe_pending(id.0);
            (
                c.packets[dir.index()] + p[dir.index()],
                c.bytes[dir.index()] + b[dir.index()],
            )
        })
    }

    /// Nanoseconds from `now` until the entry expires (0 when due).
    pub fn timeout_ns(&self, id: EntryId, now: u64) -> Option<u64> {
        self.get(id).map(|e| remaining_ns(e.deadline, now))
    }

    /// A copy of the entry's visible state.
    pub fn snapshot(&self, id: EntryId, now: u64) -> Option<Snapshot> {
        self.get(id).map(|_| self.snapshot_at(id.0, now))
    }

    pub(crate) fn snapshot_at(&self, idx: u32, now: u64) -> Snapshot {
        let e = &self.entries[idx as usize];
        let c = &self.acct[idx as usize];
        let (p, b) = self.recipe_pending(idx);
        Snapshot {
            id: EntryId(idx),
            orig: e.orig,
            reply: e.reply,
            tcp_state: (e.kind() == KIND_TCP).then(|| TcpState::from_u8(e.tcp_state())),
            status: e.status & !PRIVATE,
            mark: e.mark,
            packets: [c.packets[0] + p[0], c.packets[1] + p[1]],
            bytes: [c.bytes[0] + b[0], c.bytes[1] + b[1]],
            timeout_s: remaining_ns(e.deadline, now) / 1_000_000_000,
            tcp_window: (e.kind() == KIND_TCP).then(|| self.tcp[idx as usize]),
        }
    }

    /// Whether the slot index holds a live entry (for scans).
    pub(crate) fn live_at(&self, idx: u32) -> bool {
        self.entries.get(idx as usize).is_some_and(Entry::live)
    }

    // ---------------------------------------------------------------- trackers

    fn timeout_for(&self, family: Family, p: u8) -> u32 {
        match p {
            proto::UDP => self.tun.udp,
            _ if is_icmp(family, p) => match family {
                Family::V4 => self.tun.icmp,
                Family::V6 => self.tun.icmpv6,
            },
            _ => self.tun.generic,
        }
    }

    /// Decides what a packet whose key missed is: the start of a connection, an ICMP
    /// error about a tracked one (RELATED), untracked, or invalid. Counts `invalid` and
    /// `error` like Linux.
    pub fn classify_new(&mut self, info: &IpInfo, zone: u16, now: u64) -> NewFlow {
        let Some(l4) = info.l4 else {
            self.stats.invalid += 1;
            return NewFlow::Invalid(InvalidReason::Fragment);
        };
        match l4 {
            L4Info::IcmpError { .. } => {
                if let Some(key) = FlowKey::from_info(info, zone)
                    && let Some((id, dir)) = self.lookup(&key)
                    && self.related_ok(id, dir, info, now)
                {
                    return NewFlow::Related(id, dir);
                }
                self.stats.error += 1;
                NewFlow::Invalid(InvalidReason::IcmpNoFlow)
            }
            L4Info::IcmpOther { icmp_type, .. } => {
                // MLD (130-132, 143) and neighbour discovery (133-137) are untracked in
                // Linux (`noct_valid_new`); other ICMP without a connection is invalid.
                if info.family == Family::V6 && matches!(icmp_type, 130..=137 | 143) {
                    NewFlow::Untracked
                } else {
                    self.stats.invalid += 1;
                    NewFlow::Invalid(InvalidReason::IcmpType)
                }
            }
            L4Info::IcmpEcho { request: false, .. } => {
                self.stats.invalid += 1;
                NewFlow::Invalid(InvalidReason::IcmpType)
            }
            L4Info::Tcp(t) => match TcpConn::new(&t, &self.tun) {
                Ok(_) => FlowKey::from_info(info, zone)
                    .map_or(NewFlow::Invalid(InvalidReason::Fragment), NewFlow::New),
                Err(r) => {
                    self.stats.invalid += 1;
                    NewFlow::Invalid(r)
                }
            },
            _ => match FlowKey::from_info(info, zone) {
                Some(k) => NewFlow::New(k),
                None => {
                    self.stats.invalid += 1;
                    NewFlow::Invalid(InvalidReason::Fragment)
                }
            },
        }
    }

    /// Linux `nf_conntrack_inet_error`: the error must be addressed to the source of
    /// the datagram it quotes (as seen in the error's direction), and the entry alive.
    fn related_ok(&self, id: EntryId, dir: Direction, info: &IpInfo, now: u64) -> bool {
        let Some(e) = self.get(id) else {
            return false;
        };
        !tick_le(e.deadline, tick_of(now)) && e.tuple(dir).dst == info.dst
    }

    /// Runs the tracker for a packet of a tracked connection (`lookup` gave `id` and
    /// `dir`): state, timeout, counters, status bits, events. Counts `found` and
    /// `invalid`.
    pub fn update(&mut self, id: EntryId, dir: Direction, info: &IpInfo, now: u64) -> Outcome {
        let Some(e) = self.get(id) else {
            return Outcome::Gone;
        };
        if tick_le(e.deadline, tick_of(now)) {
            self.stats.expired += 1;
            self.destroy(id.0, now);
            return Outcome::Gone;
        }
        self.stats.found += 1;
        if let Some(L4Info::IcmpError { .. }) = info.l4 {
            // An error quoting this connection: RELATED, and it does not refresh it.
            if self.related_ok(id, dir, info, now) {
                return Outcome::Tracked {
                    ct: CtState::Related,
                    changed: false,
                    destroyed: false,
                };
            }
            self.stats.error += 1;
            return Outcome::Invalid(InvalidReason::IcmpNoFlow);
        }
        let out = self.track(id.0, dir, info, now, true);
        if let Outcome::Invalid(_) = out {
            self.stats.invalid += 1;
        }
        out
    }

    /// The tracker proper (shared by the first packet in `insert` and `update`).
    /// `announce`: queue an UPDATE event on change (not for the first packet, whose
    /// result the NEW event carries).
    fn track(
        &mut self,
        idx: u32,
        dir: Direction,
        info: &IpInfo,
        now: u64,
        announce: bool,
    ) -> Outcome {
        let (status, old_state) = {
            let e = &self.entries[idx as usize];
            (e.status, e.tcp_state())
        };
        let l4 = {
            let e = &self.entries[idx as usize];
            match e.kind() {
                KIND_TCP => L4State::Tcp(self.tcp[idx as usize]),
                KIND_UDP => L4State::Udp {
                    stream_tick: e.stream_tick,
                },
                KIND_ICMP => L4State::Icmp,
                _ => L4State::Generic,
            }
        };
        let seen_reply = status & SEEN_REPLY != 0;
        let assured = status & ASSURED != 0;
        let ct = if dir == Direction::Reply || seen_reply {
            CtState::Established
        } else {
            CtState::New
        };
        let mut new_status = status;
        let mut new_state = old_state;
        let mut timeout = None;
        let mut kill = false;
        match (l4, info.l4) {
            (L4State::Tcp(mut conn), Some(L4Info::Tcp(t))) => {
                let old = TcpState::from_u8(old_state);
                match conn.packet(old, dir, &t, seen_reply, assured, &self.tun) {
                    TcpVerdict::Accept {
                        state,
                        timeout: secs,
                    } => {
                        new_state = state as u8;
                        let rst = t.flags.contains(TcpFlags::RST);
                        let syn_only =
                            t.flags.contains(TcpFlags::SYN) && !t.flags.contains(TcpFlags::ACK);
                        if !seen_reply && rst {
                            // Only answer was a RST: not a connection (Linux kills it).
                            kill = true;
                        } else if !seen_reply && syn_only && old == TcpState::SynSent {
                            // Retransmitted SYN: no refresh, else port reuse keeps an
                            // unanswered entry alive forever (Linux 5.15+).
                        } else {
                            timeout = Some(secs);
                        }
                        if seen_reply
                            && !assured
                            && matches!(old, TcpState::SynRecv | TcpState::Established)
                            && state == TcpState::Established
                        {
                            new_status |= ASSURED;
                        }
                    }
                    TcpVerdict::Ignore => {}
                    TcpVerdict::Invalid(r) => return Outcome::Invalid(r),
                    TcpVerdict::Reopen => {
                        self.destroy(idx, now);
                        return Outcome::Gone;
                    }
                }
                self.tcp[idx as usize] = conn;
            }
            (L4State::Tcp(_), _) => return Outcome::Invalid(InvalidReason::TcpState),
            (L4State::Udp { stream_tick }, _) => {
                if seen_reply {
                    if !tick_le(tick_of(now), stream_tick) {
                        timeout = Some(self.tun.udp_stream);
                        new_status |= ASSURED;
                    } else {
                        timeout = Some(self.tun.udp);
                    }
                } else {
                    timeout = Some(self.tun.udp);
                }
            }
            (L4State::Icmp | L4State::Generic, _) => {
                let (f, p) = {
                    let e = &self.entries[idx as usize];
                    (e.orig.family, e.orig.proto)
                };
                timeout = Some(self.timeout_for(f, p));
            }
        }
        if dir == Direction::Reply {
            new_status |= SEEN_REPLY;
        }
        {
            let c = &mut self.acct[idx as usize];
            let d = dir.index();
            c.packets[d] += 1;
            c.bytes[d] += u64::from(info.ip_len);
            let e = &mut self.entries[idx as usize];
            e.state = (e.state & 0xf0) | new_state;
            e.status = new_status;
        }
        let changed = new_state != old_state || new_status != status;
        self.recipe_tracked(idx, dir, timeout, changed);
        if kill {
            self.destroy(idx, now);
            return Outcome::Tracked {
                ct,
                changed,
                destroyed: true,
            };
        }
        if let Some(secs) = timeout {
            self.refresh(idx, now, secs);
        }
        if changed && announce {
            self.emit(EventKind::Update, idx, now);
        }
        Outcome::Tracked {
            ct,
            changed,
            destroyed: false,
        }
    }
}

fn remaining_ns(deadline: u32, now: u64) -> u64 {
    let left = deadline.wrapping_sub(tick_of(now)).cast_signed();
    if left <= 0 {
        0
    } else {
        (u64::from(left.cast_unsigned()) << TICK_SHIFT).saturating_sub(now & (TICK_NS - 1))
    }
}

#[cfg(test)]
mod tests;
