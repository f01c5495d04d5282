//! Source ports in use, per (address, protocol), on one worker: the state the SNAT port
//! search reads instead of the connection table (`docs/nat.md`, "Port pools").
//!
//! A pool is a 65 536-bit bitmap (bit *p*: port *p* of that address and protocol is the
//! translated source of a live connection of this worker) and a 1 024-bit summary (bit
//! *j*: word *j* is full). Taking, testing and releasing a port is one bit operation; a
//! search reads one 64-bit word per 64 candidate ports, skipping full words through the
//! summary, and is told by the caller which ports of each word it may use (those whose
//! reply hashes to this worker). A search that finds nothing is remembered until the pool
//! releases a port, so a flood into an exhausted range costs one comparison per refusal.
//!
//! Pools live in a fixed slab allocated once ([`PortPools::new`]): the bitmaps are zeroed
//! memory, committed by the operating system only when a pool is first used. A pool whose
//! last port is released stays indexed (its address often comes back) but may be taken
//! over by a new (address, protocol) once no unused slot is left; when every slot holds a
//! port, a new address is refused ([`PortPools::slot`] answers `None`).
//!
//! The connection table owns the pools of its worker and releases an entry's port when the
//! entry dies, whatever kills it (expiry, early drop, `conntrack -D`, a TCP reopen).

use rustc_hash::FxHashMap;

use crate::conntrack::alloc::Prefetch;
use crate::wire::Addr;

/// 64-bit words of one pool's bitmap (one bit per port).
const WORDS: usize = 65_536 / 64;
/// Words of one pool's summary (one bit per bitmap word).
const SUMMARY: usize = WORDS / 64;
/// Exhausted searches remembered per pool.
const MEMO: usize = 4;
/// Entries of the memory of pools found recently (direct-mapped, [`recent_index`]).
const RECENT: usize = 256;

/// The (address, protocol) a pool holds ports of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The translated source address.
    pub addr: Addr,
    /// IP protocol (TCP, UDP, ICMP, ICMPv6): ports of different protocols are independent.
    pub proto: u8,
}

/// A pool in the slab (valid until [`PortPools::slot`] is called for another key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(u32);

/// An exhausted search: the caller's tag for its candidate function, and the range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Exhausted {
    tag: u32,
    lo: u16,
    hi: u16,
}

#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    key: Option<PoolKey>,
    in_use: u32,
    /// On the list of pools that may be taken over (it was empty when listed).
    listed: bool,
    memo: [Exhausted; MEMO],
    memo_len: u8,
    memo_next: u8,
}

/// Counters of the pools (per worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Pools set up for a new (address, protocol).
    pub created: u64,
    /// Of those, pools that took over the slot of an empty pool.
    pub recycled: u64,
    /// New (address, protocol) refused: every slot held ports.
    pub slots_full: u64,
    /// Bitmap words read by searches.
    pub words_scanned: u64,
    /// Searches answered by the memory of an earlier exhausted search.
    pub memo_hits: u64,
    /// Releases of a port that was not held (a bookkeeping error; ignored).
    pub bad_releases: u64,
}

/// The port pools of one worker. See the module docs.
#[derive(Debug)]
pub struct PortPools {
    /// `WORDS` words per slot.
    used: Vec<u64>,
    /// `SUMMARY` words per slot: bit `j` set when word `j` is full.
    full: Vec<u64>,
    meta: Vec<Meta>,
    index: FxHashMap<PoolKey, u32>,
    /// Slots never used so far start here.
    fresh: u32,
    /// Slots whose pool was empty when listed (candidates for a new key).
    empty: Vec<u32>,
    /// Pools found recently, by [`recent_index`]: the addresses of an SNAT range (and
    /// masquerade's one address) find their pool without hashing the key.
    recent: Box<[Option<(PoolKey, u32)>]>,
    stats: PoolStats,
    /// The cache-line prefetch hint (`PortPools::set_prefetch`; off by default).
    prefetch: Prefetch,
}

/// The entry of `key` in [`PortPools::recent`]: the address's last two bytes and the
/// protocol, no hash. The addresses of a range up to 256 long (consecutive last bytes)
/// take distinct entries.
fn recent_index(key: &PoolKey) -> usize {
    let a = &key.addr.0;
    (usize::from(a[15]) ^ usize::from(a[14]) << 4 ^ usize::from(key.proto) << 3) % RECENT
}

/// Bytes one pool slot reserves (bitmap, summary and bookkeeping).
pub const SLOT_BYTES: usize = (WORDS + SUMMARY) * 8 + size_of::<Meta>();

impl PortPools {
    /// A slab of `slots` pools (at least 1). The bitmaps are zeroed memory: pages are
    /// committed when a pool is first used.
    pub fn new(slots: u32) -> Self {
        let slots = slots.max(1);
        let n = slots as usize;
        PortPools {
            used: vec![0; n * WORDS],
            full: vec![0; n * SUMMARY],
            meta: vec![Meta::default(); n],
            // Twice the slots: removals leave tombstones, and hashbrown then rehashes in
            // place (no allocation) as long as it is at most half full.
            index: FxHashMap::with_capacity_and_hasher(2 * n, Default::default()),
            fresh: 0,
            empty: Vec::with_capacity(n),
            recent: vec![None; RECENT].into(),
            stats: PoolStats::default(),
            prefetch: Prefetch::Off,
        }
    }

    /// Sets the prefetch hint [`PortPools::hint_port`] and [`PortPools::hint_word`]
    /// issue (the connection table passes its own). Changes no result, only timing.
    pub fn set_prefetch(&mut self, hint: Prefetch) {
        self.prefetch = hint;
    }

    /// The slab for a connection table of `capacity` entries: one pool per 1 024 entries,
    /// between 16 and 4 096 (8.3 KiB each, committed only when used).
    pub fn for_capacity(capacity: u32) -> Self {
        Self::new((capacity / 1024).clamp(16, 4096))
    }

    /// Pools the slab holds.
    pub fn slots(&self) -> u32 {
        u32::try_from(self.meta.len()).unwrap_or(u32::MAX)
    }

    /// The counters.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Ports held by the pool of `key` (0 when it has none).
    pub fn held(&self, key: &PoolKey) -> u32 {
        self.index
            .get(key)
            .map_or(0, |&s| self.meta[s as usize].in_use)
    }

    /// Whether `port` of `key` is held.
    pub fn is_held(&self, key: &PoolKey, port: u16) -> bool {
        self.index.get(key).is_some_and(|&s| self.bit(s, port))
    }

    /// Prefetches the bitmap word of `port` of `key`, the line a [`PortPools::release`]
    /// of that port writes; nothing when `key` has no pool. Reads only the index, never
    /// the word itself.
    pub fn hint_port(&self, key: &PoolKey, port: u16) {
        let s = match self.recent[recent_index(key)] {
            Some((k, s)) if k == *key => s,
            _ => match self.index.get(key) {
                Some(&s) => s,
                None => return,
            },
        };
        self.hint_word(Slot(s), port);
    }

    /// Prefetches the bitmap word of `port` in pool `slot` (a search that starts there
    /// reads it first).
    pub fn hint_word(&self, slot: Slot, port: u16) {
        if let Some(w) = self
            .used
            .get(slot.0 as usize * WORDS + usize::from(port) / 64)
        {
            self.prefetch.line(std::ptr::from_ref(w).cast());
        }
    }

    fn bit(&self, s: u32, port: u16) -> bool {
        let p = usize::from(port);
        self.used[s as usize * WORDS + p / 64] & (1 << (p % 64)) != 0
    }

    fn find(&mut self, key: &PoolKey) -> Option<u32> {
        let r = recent_index(key);
        if let Some((k, s)) = self.recent[r]
            && k == *key
        {
            return Some(s);
        }
        let s = *self.index.get(key)?;
        self.recent[r] = Some((*key, s));
        Some(s)
    }

    /// The pool of `key`, set up when it has none: from an unused slot, else taking over
    /// an empty pool. `None` when every slot holds ports.
    pub fn slot(&mut self, key: PoolKey) -> Option<Slot> {
        if let Some(s) = self.find(&key) {
            return Some(Slot(s));
        }
        let s = if (self.fresh as usize) < self.meta.len() {
            self.fresh += 1;
            self.fresh - 1
        } else {
            loop {
                let Some(s) = self.empty.pop() else {
                    self.stats.slots_full += 1;
                    return None;
                };
                let m = &mut self.meta[s as usize];
                m.listed = false;
                if m.in_use == 0 {
                    if let Some(old) = m.key.take() {
                        self.index.remove(&old);
                        let r = &mut self.recent[recent_index(&old)];
                        if r.is_some_and(|(k, _)| k == old) {
                            *r = None;
                        }
                    }
                    self.stats.recycled += 1;
                    break s;
                }
            }
        };
        // A slot is all zero when fresh and when its pool emptied (every bit released).
        let m = &mut self.meta[s as usize];
        *m = Meta {
            key: Some(key),
            listed: true,
            ..Meta::default()
        };
        self.empty.push(s);
        self.index.insert(key, s);
        self.recent[recent_index(&key)] = Some((key, s));
        self.stats.created += 1;
        Some(Slot(s))
    }

    /// Takes `port` of pool `slot` if it is free.
    pub fn take(&mut self, slot: Slot, port: u16) -> bool {
        let s = slot.0 as usize;
        let (j, b) = (usize::from(port) / 64, usize::from(port) % 64);
        let w = &mut self.used[s * WORDS + j];
        if *w & (1 << b) != 0 {
            return false;
        }
        *w |= 1 << b;
        if *w == u64::MAX {
            self.full[s * SUMMARY + j / 64] |= 1 << (j % 64);
        }
        self.meta[s].in_use += 1;
        true
    }

    /// Takes the first free port of pool `slot` in `lo ..= hi` at or after `start`
    /// (wrapping to `lo`) among those `mine(j)` allows in word `j` (bit `b`: port
    /// `64 j + b`). `tag` names the `mine` function for the exhausted-search memory:
    /// equal tags must mean equal functions. `None`: every allowed port is held.
    pub fn take_first(
        &mut self,
        slot: Slot,
        (lo, hi): (u16, u16),
        start: u16,
        tag: u32,
        mine: impl Fn(usize) -> u64,
    ) -> Option<u16> {
        let s = slot.0 as usize;
        let memo = Exhausted { tag, lo, hi };
        {
            let m = &self.meta[s];
            if m.memo[..usize::from(m.memo_len)].contains(&memo) {
                self.stats.memo_hits += 1;
                return None;
            }
        }
        let start = start.clamp(lo, hi);
        let (wl, wh, ws) = (
            usize::from(lo) / 64,
            usize::from(hi) / 64,
            usize::from(start) / 64,
        );
        // Bits of word `j` inside the range.
        let in_range = |j: usize| -> u64 {
            let mut m = u64::MAX;
            if j == wl {
                m &= u64::MAX << (lo % 64);
            }
            if j == wh {
                m &= u64::MAX >> (63 - hi % 64);
            }
            m
        };
        let at_or_after = u64::MAX << (start % 64);
        // The start word from `start`, the words after it, the words from `lo` up to the
        // start word, and the start word below `start`.
        let passes = [
            (ws, ws, at_or_after),
            (ws + 1, wh, u64::MAX),
            (wl, ws, u64::MAX),
            (ws, ws, !at_or_after),
        ];
        let mut scanned = 0;
        let mut found = None;
        'passes: for (i, &(from, to, extra)) in passes.iter().enumerate() {
            let to = if i == 2 { to.saturating_sub(1) } else { to };
            if i == 2 && ws == wl {
                continue;
            }
            let mut j = from;
            while j <= to {
                let Some(next) = self.next_open(s, j, to) else {
                    break;
                };
                j = next;
                scanned += 1;
                let free = !self.used[s * WORDS + j] & in_range(j) & extra & mine(j);
                if free != 0 {
                    found = Some(j * 64 + free.trailing_zeros() as usize);
                    break 'passes;
                }
                j += 1;
            }
        }
        self.stats.words_scanned += scanned;
        let Some(p) = found.and_then(|p| u16::try_from(p).ok()) else {
            let m = &mut self.meta[s];
            let at = usize::from(m.memo_next);
            m.memo[at] = memo;
            m.memo_next = u8::try_from((at + 1) % MEMO).unwrap_or(0);
            m.memo_len = (m.memo_len + 1).min(u8::try_from(MEMO).unwrap_or(u8::MAX));
            return None;
        };
        let taken = self.take(slot, p);
        debug_assert!(taken, "the search returns a free port");
        Some(p)
    }

    /// The first word index in `from ..= to` of pool `s` that is not full.
    fn next_open(&self, s: usize, from: usize, to: usize) -> Option<usize> {
        let sum = &self.full[s * SUMMARY..(s + 1) * SUMMARY];
        let mut j = from;
        while j <= to {
            let open = !sum[j / 64] & (u64::MAX << (j % 64));
            if open != 0 {
                let k = (j & !63) + open.trailing_zeros() as usize;
                return (k <= to).then_some(k);
            }
            j = (j | 63) + 1;
        }
        None
    }

    /// Releases `port` of `key` (the connection holding it died). `false` (and counted)
    /// if it was not held.
    pub fn release(&mut self, key: &PoolKey, port: u16) -> bool {
        let Some(s) = self.find(key) else {
            self.stats.bad_releases += 1;
            return false;
        };
        let s = s as usize;
        let (j, b) = (usize::from(port) / 64, usize::from(port) % 64);
        let w = &mut self.used[s * WORDS + j];
        if *w & (1 << b) == 0 {
            self.stats.bad_releases += 1;
            return false;
        }
        *w &= !(1 << b);
        self.full[s * SUMMARY + j / 64] &= !(1 << (j % 64));
        let m = &mut self.meta[s];
        m.in_use -= 1;
        m.memo_len = 0;
        m.memo_next = 0;
        if m.in_use == 0 && !m.listed {
            m.listed = true;
            // Each slot is listed at most once: the list never outgrows its capacity.
            self.empty.push(u32::try_from(s).unwrap_or(u32::MAX));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    fn key(last: u8) -> PoolKey {
        PoolKey {
            addr: Addr::from_v4([198, 51, 100, last]),
            proto: proto::UDP,
        }
    }

    fn all(_: usize) -> u64 {
        u64::MAX
    }

    #[test]
    fn take_release_and_first_free_from_start_with_wrap() {
        let mut p = PortPools::new(2);
        let s = p.slot(key(1)).unwrap();
        assert!(p.take(s, 1030));
        assert!(!p.take(s, 1030));
        assert_eq!(p.take_first(s, (1024, 1031), 1030, 0, all), Some(1031));
        // Wraps to the low end of the range, skipping what is held.
        assert_eq!(p.take_first(s, (1024, 1031), 1030, 0, all), Some(1024));
        assert_eq!(p.held(&key(1)), 3);
        assert!(p.release(&key(1), 1030));
        assert!(!p.release(&key(1), 1030));
        assert_eq!(p.stats().bad_releases, 1);
        assert!(!p.is_held(&key(1), 1030));
        assert!(p.is_held(&key(1), 1031));
    }

    #[test]
    fn exhaustion_is_exact_and_remembered_until_a_release() {
        let mut p = PortPools::new(1);
        let s = p.slot(key(1)).unwrap();
        // Only odd ports are "mine".
        let odd = |_| 0xaaaa_aaaa_aaaa_aaaa_u64;
        let mut got = Vec::new();
        while let Some(port) = p.take_first(s, (100, 300), 200, 7, odd) {
            got.push(port);
        }
        got.sort_unstable();
        let expected: Vec<u16> = (100..=300).filter(|x| x % 2 == 1).collect();
        assert_eq!(got, expected);
        let scanned = p.stats().words_scanned;
        assert_eq!(p.take_first(s, (100, 300), 150, 7, odd), None);
        assert_eq!(p.stats().memo_hits, 1);
        assert_eq!(p.stats().words_scanned, scanned, "answered from memory");
        // Another tag (another candidate set) searches again: even ports are free.
        assert_eq!(p.take_first(s, (100, 300), 150, 8, all), Some(150));
        p.release(&key(1), 201);
        assert_eq!(p.take_first(s, (100, 300), 150, 7, odd), Some(201));
    }

    #[test]
    fn full_words_are_skipped_through_the_summary() {
        let mut p = PortPools::new(1);
        let s = p.slot(key(1)).unwrap();
        for port in 0..=65_535u16 {
            if port != 60_000 {
                assert!(p.take(s, port));
            }
        }
        let before = p.stats().words_scanned;
        assert_eq!(p.take_first(s, (1024, 65535), 1024, 0, all), Some(60_000));
        assert_eq!(p.stats().words_scanned - before, 1);
        assert_eq!(p.take_first(s, (0, 65535), 0, 0, all), None);
        assert_eq!(p.held(&key(1)), 65_536);
    }

    /// A key whose pool was taken over is forgotten by the memory of recent pools too: it
    /// neither releases nor finds the new key's ports.
    #[test]
    fn a_taken_over_pool_is_not_found_under_its_old_key() {
        let mut p = PortPools::new(2);
        let a = p.slot(key(1)).unwrap();
        let b = p.slot(key(2)).unwrap();
        assert!(p.take(a, 10) && p.take(b, 10));
        // Found (and remembered) under key 2, then emptied and taken over by key 3.
        assert!(p.release(&key(2), 10));
        let c = p.slot(key(3)).unwrap();
        assert_eq!(c, b);
        assert!(p.take(c, 10));
        assert!(!p.release(&key(2), 10), "key 2 has no pool any more");
        assert_eq!(p.stats().bad_releases, 1);
        assert!(p.is_held(&key(3), 10));
        assert!(p.slot(key(2)).is_none(), "every slot holds ports");
        // Keys of a range take distinct entries: each finds its own pool.
        let mut q = PortPools::new(64);
        let slots: Vec<Slot> = (0..64).map(|i| q.slot(key(i)).unwrap()).collect();
        for (i, &s) in (0..64).zip(&slots) {
            assert_eq!(q.slot(key(i)), Some(s));
            assert!(q.take(s, u16::from(i)));
        }
        for i in 0..64 {
            assert!(q.release(&key(i), u16::from(i)));
            assert_eq!(q.held(&key(i)), 0);
        }
    }

    #[test]
    fn empty_pools_are_taken_over_and_busy_slots_refuse_new_keys() {
        let mut p = PortPools::new(2);
        let a = p.slot(key(1)).unwrap();
        let b = p.slot(key(2)).unwrap();
        assert!(p.take(a, 10) && p.take(b, 10));
        assert!(p.slot(key(3)).is_none());
        assert_eq!(p.stats().slots_full, 1);
        p.release(&key(2), 10);
        let c = p.slot(key(3)).unwrap();
        assert_eq!(c, b, "the emptied slot is reused, zeroed by the releases");
        assert!(!p.is_held(&key(3), 10));
        assert_eq!(p.held(&key(2)), 0);
        assert!(p.take(c, 10));
        assert_eq!(p.stats().recycled, 1);
        // The key that lost its slot gets one again once another pool empties.
        p.release(&key(1), 10);
        assert!(p.slot(key(2)).is_some());
    }
}
