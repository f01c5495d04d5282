//! The runtime store of a dynamic set: one table shared by every worker, so an element
//! one worker adds is matched by all at once (docs/rules.md, "Dynamic sets and meters").
//!
//! A fixed array of slots (twice the set's `size`, a power of two), open addressing over a
//! bounded window of [`WINDOW`] slots from the key's seeded hash: the lock-free slot store
//! of `crate::slots`, with three words per slot for a key of at most 128 bits and five for
//! a wider one (`ipv6_addr . inet_service`: only such a set pays the 16 bytes more a slot).
//! Each slot of a narrow store is four atomics:
//!
//! - `state`: [`EMPTY`] (never used: a lookup stops here), [`BUSY`] (being written),
//!   [`DEAD`] (deleted or collected: free, a lookup goes on), or the element's expiry time
//!   in ns of the workers' clock ([`NEVER`]: no timeout);
//! - `key`: the key's 128 bits (a wide store: 256 bits, four words);
//! - `tat`: the per-element `limit` (GCRA: the theoretical arrival time; 0: a full bucket).
//!
//! Readers check `state`, read the key, and check `state` again (a seqlock: a slot being
//! reused is never mistaken for its new or its old key). Writers claim a slot with a
//! compare-and-swap to `BUSY`; two workers adding the same key at once may claim two slots:
//! the later one in window order sees the earlier and frees itself, so one element stays.
//! No locks, no allocation: a lookup costs one hash and a few cache lines of one window; an
//! add one CAS and three stores more.
//!
//! `size` is counted as the kernel counts it: expired elements take room until they are
//! collected. An add that finds the set full collects a bounded sweep of expired slots
//! ([`GC_STEP`]) and then fails: the statement does not match (the kernel's dynset breaks
//! the rule), counted in `full`.

use super::dynir::ElemLimit;
use super::dynkey::Packed;
use super::ir::{CtCountToken, EvalResult, MAX_CT_TOKENS};
use crate::rules::ast::TableFamily;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::slots::{BUSY, DEAD, EMPTY, Read, SlotStore, WINDOW};

/// The state of an element without a timeout.
pub const NEVER: u64 = u64::MAX;
/// A narrow slot's words: the key's high and low halves, then the element's `tat`.
const WORDS: usize = 3;
/// A wide slot's words: the key's four 64-bit parts, highest first, then the `tat`.
const WIDE_WORDS: usize = 5;

/// The slots of a store: narrow (keys of at most 128 bits) or wide (at most 256).
#[derive(Debug)]
enum Slots {
    Narrow(SlotStore<WORDS>),
    Wide(SlotStore<WIDE_WORDS>),
}

/// `$body` with `$s` bound to the store's slots, whichever their width.
macro_rules! each {
    ($slots:expr, $s:ident => $body:expr) => {
        match $slots {
            Slots::Narrow($s) => $body,
            Slots::Wide($s) => $body,
        }
    };
}

impl Slots {
    fn slots(&self) -> usize {
        each!(self, s => s.slots())
    }

    fn idx(&self, home: usize, d: usize) -> usize {
        each!(self, s => s.idx(home, d))
    }

    fn state(&self, i: usize) -> &AtomicU64 {
        each!(self, s => s.state(i))
    }

    /// Slot `i`'s `tat` word.
    fn tat(&self, i: usize) -> &AtomicU64 {
        match self {
            Slots::Narrow(s) => s.word(i, WORDS - 1),
            Slots::Wide(s) => s.word(i, WIDE_WORDS - 1),
        }
    }

    fn claim(&self, i: usize, from: u64) -> bool {
        each!(self, s => s.claim(i, from))
    }

    fn free(&self, i: usize) {
        each!(self, s => s.free(i))
    }

    /// A seqlock read of slot `i`'s state and key (one try; the key as its one word).
    fn read(&self, i: usize) -> Read<1, Packed> {
        match self {
            Slots::Narrow(s) => match s.read::<2>(i) {
                Read::Live(st, [a, b]) => Read::Live(st, [Packed::from(join(a, b))]),
                Read::Free(st) => Read::Free(st),
                Read::Changing => Read::Changing,
            },
            Slots::Wide(s) => match s.read::<4>(i) {
                Read::Live(st, [a, b, c, d]) => Read::Live(
                    st,
                    [Packed {
                        hi: join(a, b),
                        lo: join(c, d),
                    }],
                ),
                Read::Free(st) => Read::Free(st),
                Read::Changing => Read::Changing,
            },
        }
    }

    /// Stores `key` (and a full bucket) into claimed slot `i`, live until `expiry`.
    fn publish(&self, i: usize, key: Packed, expiry: u64) {
        let [c, d] = halves(key.lo);
        match self {
            Slots::Narrow(s) => s.publish(i, &[c, d, 0], expiry),
            Slots::Wide(s) => {
                let [a, b] = halves(key.hi);
                s.publish(i, &[a, b, c, d, 0], expiry);
            }
        }
    }
}
/// Slots one full add sweeps for expired elements.
pub(crate) const GC_STEP: usize = 256;
/// Largest `size` of a dynamic set (its slots: twice that, 32 bytes each).
pub(crate) const MAX_SIZE: u32 = 1 << 22;
/// How long an adder waits for another adder's claimed slot to be published (a few ms
/// at most, spent only when the other adder was descheduled between claim and publish).
const CLAIM_SPINS: u32 = 1 << 20;

/// One dynamic set's elements, shared by every worker (see the module documentation).
#[derive(Debug)]
pub struct DynStore {
    slots: Slots,
    /// `ct count` connections per slot (empty when no statement counts connections).
    conns: Box<[Arc<AtomicU32>]>,
    /// Each slot's element's own lifetime in ns (0: none), what the listing writes as its
    /// `timeout` (empty in a set whose elements have no timeout). Written before the slot
    /// is published, read by the listing only.
    lifetimes: Box<[AtomicU64]>,
    size: u32,
    len: AtomicU32,
    seed: u64,
    /// Adds refused because the set was full.
    full: AtomicU64,
}

/// One element of a listing: the key and, for an element with a timeout, the time left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DynElement {
    pub key: Packed,
    /// Nanoseconds until it expires (`None`: no timeout).
    pub expires_ns: Option<u64>,
    /// Its own timeout in ns, where it differs from the set's (the kernel lists it then:
    /// `198.18.0.6 timeout 20s expires 19s996ms`).
    pub timeout_ns: Option<u64>,
}

impl DynStore {
    /// A store for at most `size` elements; `conns`: keep a `ct count` per element;
    /// `lifetimes`: keep each element's own timeout (a set whose elements have one);
    /// `wide`: keys of more than 128 bits.
    pub(crate) fn new(size: u32, conns: bool, lifetimes: bool, wide: bool) -> Self {
        let size = size.clamp(1, MAX_SIZE);
        let slots = if wide {
            Slots::Wide(SlotStore::new(size as usize))
        } else {
            Slots::Narrow(SlotStore::new(size as usize))
        };
        let n = slots.slots();
        DynStore {
            slots,
            conns: if conns {
                (0..n).map(|_| Arc::new(AtomicU32::new(0))).collect()
            } else {
                Box::default()
            },
            lifetimes: if lifetimes {
                (0..n).map(|_| AtomicU64::new(0)).collect()
            } else {
                Box::default()
            },
            size,
            len: AtomicU32::new(0),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64),
            full: AtomicU64::new(0),
        }
    }

    /// Bytes the slots of a store of `size` elements take (the compile budget).
    pub(crate) fn bytes(size: u32, conns: bool, lifetimes: bool, wide: bool) -> usize {
        let n = SlotStore::<WORDS>::slots_for(size.clamp(1, MAX_SIZE) as usize);
        n * (if wide {
            SlotStore::<WIDE_WORDS>::SLOT_BYTES
        } else {
            SlotStore::<WORDS>::SLOT_BYTES
        } + if conns { 32 } else { 0 }
            + if lifetimes { 8 } else { 0 })
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// Elements held now (expired ones not yet collected included, as the kernel counts).
    pub fn len(&self) -> u32 {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds refused because the set was full.
    pub fn full_count(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    fn home(&self, key: Packed) -> usize {
        let [hi, lo] = halves(key.lo);
        let mut h = lo ^ self.seed;
        h = (h ^ (h >> 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= hi.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        if key.hi != 0 {
            let [a, b] = halves(key.hi);
            h = (h ^ (h >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
            h ^= a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        }
        h = (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        // Only the low bits index the table (`mask` < 2^32 on any target).
        usize::try_from((h ^ (h >> 32)) & u64::from(u32::MAX)).unwrap_or(0)
    }

    /// The slot's state and whether it holds `key` (a consistent read: `None` while the
    /// slot changes under the reader).
    fn read(&self, i: usize, key: Packed) -> (u64, bool) {
        for _ in 0..4 {
            match self.slots.read(i) {
                Read::Free(st) => return (st, false),
                Read::Live(st, [k]) => return (st, k == key),
                Read::Changing => {}
            }
        }
        (BUSY, false)
    }

    /// The slot of a live (not expired at `now`) element `key`.
    pub(crate) fn lookup(&self, key: Packed, now: u64) -> Option<usize> {
        let home = self.home(key);
        for j in 0..WINDOW {
            let i = self.slots.idx(home, j);
            match self.read(i, key) {
                (EMPTY, _) => return None,
                (st, true) if st > now => return Some(i),
                _ => {}
            }
        }
        None
    }

    fn conns_of(&self, i: usize) -> u32 {
        self.conns.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Adds `key` (absent) expiring at `expiry` ([`NEVER`]); its slot, or `None` when the
    /// set is full (counted) or the key's window holds no free slot.
    pub(crate) fn insert(&self, key: Packed, expiry: u64, now: u64) -> Option<usize> {
        let home = self.home(key);
        let mut gc_done = false;
        'scan: loop {
            for j in 0..WINDOW {
                let i = self.slots.idx(home, j);
                let st = self.slots.state(i).load(Ordering::Acquire);
                let reclaim = st > DEAD && st <= now && self.conns_of(i) == 0;
                if !(st == EMPTY || st == DEAD || reclaim) {
                    continue;
                }
                // An expired element keeps its place in `len`; a free slot takes one.
                if !reclaim && !self.reserve() {
                    if gc_done {
                        break 'scan;
                    }
                    gc_done = true;
                    self.gc(now, GC_STEP);
                    continue 'scan;
                }
                if !self.slots.claim(i, st) {
                    if !reclaim {
                        self.len.fetch_sub(1, Ordering::Relaxed);
                    }
                    continue;
                }
                if let Some(l) = self.lifetimes.get(i) {
                    let own = if expiry == NEVER {
                        0
                    } else {
                        expiry.saturating_sub(now)
                    };
                    l.store(own, Ordering::Relaxed);
                }
                self.slots.publish(i, key, expiry);
                // Another worker may have added the same key at once: the first in window
                // order stays. Two adders of one key contend for the same free slots from
                // the same home, so the other one's slot lies before ours and is claimed
                // (BUSY) or published by now: wait out a claimed slot (a few stores; the
                // spin is bounded for an adder descheduled in between).
                for jj in 0..j {
                    let o = self.slots.idx(home, jj);
                    let mut seen = self.read(o, key);
                    let mut spins = 0;
                    while seen.0 == BUSY && spins < CLAIM_SPINS {
                        std::hint::spin_loop();
                        spins += 1;
                        seen = self.read(o, key);
                    }
                    if let (st, true) = seen
                        && st > now
                    {
                        self.retire(i);
                        return Some(o);
                    }
                }
                return Some(i);
            }
            break;
        }
        self.full.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Takes one place of `size`; false when the set is full.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l < self.size).then_some(l + 1)
            })
            .is_ok()
    }

    fn retire(&self, i: usize) {
        self.slots.free(i);
        self.len.fetch_sub(1, Ordering::Relaxed);
    }

    /// Restarts a live element's timeout (`update`): its expiry becomes `expiry` unless
    /// the slot changed meanwhile.
    pub(crate) fn refresh(&self, i: usize, expiry: u64) {
        let s = self.slots.state(i);
        let st = s.load(Ordering::Relaxed);
        if st > DEAD && st != NEVER {
            let _ = s.compare_exchange(
                st,
                expiry.max(DEAD + 1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Collects up to `n` slots from the sweep cursor: expired elements no connection
    /// counts against are freed.
    pub(crate) fn gc(&self, now: u64, n: usize) {
        each!(&self.slots, s => {
            for i in s.sweep(n) {
                let st = s.state(i).load(Ordering::Relaxed);
                if st > DEAD && st <= now && self.conns_of(i) == 0 && s.claim(i, st) {
                    self.retire(i);
                }
            }
        });
    }

    /// The per-element `limit` of slot `i` at `now`: true when the statement matches
    /// (within the rate, or over it for `over`).
    pub(crate) fn limit(&self, i: usize, l: &ElemLimit, now: u64) -> bool {
        let tat = self.slots.tat(i);
        let within = tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                let next = t.max(now).saturating_add(l.cost_ns);
                (next <= now.saturating_add(l.cap_ns)).then_some(next)
            })
            .is_ok();
        within != l.over
    }

    /// The per-element `ct count` of slot `i`: a first packet takes a slot (held in
    /// `res` until its connection dies); true when the statement matches.
    pub(crate) fn ct_count(
        &self,
        i: usize,
        (limit, over): (u32, bool),
        first_packet: bool,
        res: &mut EvalResult,
    ) -> bool {
        let Some(cell) = self.conns.get(i) else {
            return false;
        };
        let n = if first_packet && res.ct_count.len() < MAX_CT_TOKENS {
            let n = cell.fetch_add(1, Ordering::Relaxed) + 1;
            res.ct_count.push(CtCountToken(Arc::clone(cell)));
            n
        } else {
            cell.load(Ordering::Relaxed)
        };
        if over { n > limit } else { n <= limit }
    }

    /// The live elements at `now`, in slot order (the control thread: a listing).
    pub fn elements(&self, now: u64) -> Vec<DynElement> {
        let mut out = Vec::new();
        for i in 0..self.slots.slots() {
            let Read::Live(st, [key]) = self.slots.read(i) else {
                continue;
            };
            if st <= now {
                continue;
            }
            let own = self
                .lifetimes
                .get(i)
                .map_or(0, |l| l.load(Ordering::Relaxed));
            out.push(DynElement {
                key,
                expires_ns: (st != NEVER).then(|| st - now),
                timeout_ns: (own != 0).then_some(own),
            });
        }
        out
    }

    /// Deletes a live element (an API request); true when it was there.
    pub fn delete(&self, key: Packed, now: u64) -> bool {
        let Some(i) = self.lookup(key, now) else {
            return false;
        };
        let st = self.slots.state(i).load(Ordering::Relaxed);
        if st > DEAD && self.slots.claim(i, st) {
            self.retire(i);
            return true;
        }
        false
    }
}

/// The high and low 64 bits of a key.
fn halves(key: u128) -> [u64; 2] {
    let b = key.to_be_bytes();
    let (hi, lo) = b.split_at(8);
    [hi, lo].map(|h| u64::from_be_bytes(h.try_into().unwrap_or_default()))
}

/// A key from its high and low halves.
fn join(hi: u64, lo: u64) -> u128 {
    u128::from(hi) << 64 | u128::from(lo)
}

/// What a store was built for: a new generation adopts the old generation's store (and
/// its elements) only when this is the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DynDef {
    pub family: TableFamily,
    pub table: String,
    pub name: String,
    pub key: super::dynkey::DynKey,
    pub size: u32,
    pub timeout_ns: Option<u64>,
    pub conns: bool,
    /// The store of a map's elements with a timeout (`TimedMap`), not a dynamic set.
    pub map: bool,
}

/// One dynamic set or meter of the compiled ruleset.
#[derive(Debug)]
pub(crate) struct DynEntry {
    pub def: DynDef,
    pub store: Arc<DynStore>,
    /// Declared elements with a timeout (the element's own or the set's: key, lifetime in
    /// ns), added when the ruleset is installed (their expiry runs from then, on the
    /// workers' clock); empty once the store was adopted from the running generation.
    pub declared: Vec<(Packed, u64)>,
    /// Every declared element (key, lifetime in ns: [`NEVER`] for none), to tell an
    /// incremental change's new and dropped declarations from the running generation's.
    pub all_declared: Vec<(Packed, u64)>,
    /// Declared elements a change dropped (`delete element` in a command script): taken
    /// out of the adopted store when the ruleset is installed.
    pub dropped: Vec<Packed>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_store_tells_keys_apart_by_their_high_bits_and_only_it_pays_for_them() {
        let s = DynStore::new(64, false, true, true);
        let now = 1_000;
        let a = Packed { hi: 1, lo: 7 };
        let b = Packed { hi: 2, lo: 7 };
        let i = s.insert(a, NEVER, now).unwrap();
        assert_eq!(s.lookup(a, now), Some(i));
        assert_eq!(s.lookup(b, now), None, "same low bits, other high bits");
        assert!(s.insert(b, now + 50, now).is_some());
        let mut els = s.elements(now);
        els.sort_by_key(|e| e.key);
        assert_eq!(els.iter().map(|e| e.key).collect::<Vec<_>>(), [a, b]);
        assert_eq!(els[1].timeout_ns, Some(50));
        assert!(s.delete(a, now));
        assert_eq!(s.lookup(a, now), None);
        assert_eq!(s.lookup(b, now + 49).map(|_| ()), Some(()));
        assert_eq!(s.lookup(b, now + 50), None, "expired");
        // A narrow store's slot stays 32 bytes; a wide one takes 48.
        let n = SlotStore::<WORDS>::slots_for(64);
        assert_eq!(DynStore::bytes(64, false, false, false), n * 32);
        assert_eq!(DynStore::bytes(64, false, false, true), n * 48);
    }

    #[test]
    fn two_adders_of_the_same_wide_keys_keep_one_element_each() {
        let s = DynStore::new(4096, false, false, true);
        std::thread::scope(|sc| {
            for _ in 0..2 {
                let s = &s;
                sc.spawn(move || {
                    for k in 0..2000u128 {
                        let key = Packed { hi: k, lo: !k };
                        if s.lookup(key, 1).is_none() {
                            s.insert(key, NEVER, 1);
                        }
                    }
                });
            }
        });
        let mut keys: Vec<Packed> = s.elements(1).iter().map(|e| e.key).collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!((n, keys.len(), s.len()), (2000, 2000, 2000));
    }
}
