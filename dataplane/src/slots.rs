//! One lock-free slot store, shared by the tables every worker reads and writes at once:
//! the dynamic sets' elements (`rules/compile/dynstore.rs`) and the helpers' expectations
//! (`helper/expect.rs`).
//!
//! A fixed array of slots (a power of two, at least twice the capacity asked for), open
//! addressing over a window of [`WINDOW`] slots from a hash of the key (the user hashes).
//! Each slot is a `state` word and `W` data words. `state` is [`EMPTY`] (never used: a
//! lookup may stop here), [`BUSY`] (being written), [`DEAD`] (deleted: free, a lookup goes
//! on), or the entry's expiry time in ns of the workers' clock (any value above `DEAD`).
//!
//! Readers check `state`, read the words, and check `state` again (a seqlock:
//! [`SlotStore::read`]). A writer claims a free slot with a compare-and-swap to `BUSY`
//! ([`SlotStore::claim`]), stores the words and publishes the expiry with a release store
//! ([`SlotStore::publish`]); an entry dies by a compare-and-swap of its state to `DEAD`
//! ([`SlotStore::kill`]), which only one of several racing takers wins. No locks, no
//! allocation. What a store counts (its length, its limit, statistics) is its user's.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

/// A slot never used.
pub(crate) const EMPTY: u64 = 0;
/// A slot being written (claimed, not yet published).
pub(crate) const BUSY: u64 = 1;
/// A free slot that held an entry.
pub(crate) const DEAD: u64 = 2;
/// Slots a key may sit in, from its hash on.
pub(crate) const WINDOW: usize = 16;

#[derive(Debug)]
struct Slot<const W: usize> {
    state: AtomicU64,
    w: [AtomicU64; W],
}

impl<const W: usize> Default for Slot<W> {
    fn default() -> Self {
        Slot {
            state: AtomicU64::new(EMPTY),
            w: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// What a consistent read of a slot saw (`T`: a word, or what a user makes of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Read<const R: usize, T = u64> {
    /// `EMPTY`, `BUSY` or `DEAD`.
    Free(u64),
    /// A published entry: its state (expiry) and its first `R` words.
    Live(u64, [T; R]),
    /// The slot changed while it was read.
    Changing,
}

/// The slots (see the module documentation).
#[derive(Debug)]
pub(crate) struct SlotStore<const W: usize> {
    slots: Box<[Slot<W>]>,
    mask: usize,
    gc_cursor: AtomicUsize,
}

impl<const W: usize> SlotStore<W> {
    /// Slots of a store for `capacity` entries: twice that, a power of two, at least four
    /// windows.
    pub(crate) fn slots_for(capacity: usize) -> usize {
        capacity
            .saturating_mul(2)
            .next_power_of_two()
            .max(WINDOW * 4)
    }

    /// Bytes one slot takes.
    pub(crate) const SLOT_BYTES: usize = size_of::<Slot<W>>();

    pub(crate) fn new(capacity: usize) -> Self {
        let n = Self::slots_for(capacity);
        SlotStore {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
            gc_cursor: AtomicUsize::new(0),
        }
    }

    /// Number of slots.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The slot `d` places after `home` (wrapping).
    pub(crate) fn idx(&self, home: usize, d: usize) -> usize {
        home.wrapping_add(d) & self.mask
    }

    /// The window of slots from `home` on.
    pub(crate) fn window(&self, home: usize) -> impl Iterator<Item = usize> + use<'_, W> {
        (0..WINDOW).map(move |d| self.idx(home, d))
    }

    /// Slot `i`'s state word.
    pub(crate) fn state(&self, i: usize) -> &AtomicU64 {
        &self.slots[i].state
    }

    /// Slot `i`'s data word `k` (for words a user updates in place, outside the seqlock).
    pub(crate) fn word(&self, i: usize, k: usize) -> &AtomicU64 {
        &self.slots[i].w[k]
    }

    /// A seqlock read of slot `i`'s state and its first `R` words (one try).
    pub(crate) fn read<const R: usize>(&self, i: usize) -> Read<R> {
        let s = &self.slots[i];
        let st = s.state.load(Ordering::Acquire);
        if st <= DEAD {
            return Read::Free(st);
        }
        let w: [u64; R] = std::array::from_fn(|k| s.w[k].load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        if s.state.load(Ordering::Relaxed) == st {
            Read::Live(st, w)
        } else {
            Read::Changing
        }
    }

    /// Claims slot `i` for writing if its state is still `from`.
    pub(crate) fn claim(&self, i: usize, from: u64) -> bool {
        let ok = self.slots[i]
            .state
            .compare_exchange(from, BUSY, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if ok {
            // The words written next are not seen before `BUSY` is.
            fence(Ordering::Release);
        }
        ok
    }

    /// Stores `words` into claimed slot `i` (from word 0) and publishes it live until
    /// `expiry` (at least `DEAD + 1`).
    pub(crate) fn publish(&self, i: usize, words: &[u64], expiry: u64) {
        let s = &self.slots[i];
        for (slot, &v) in s.w.iter().zip(words) {
            slot.store(v, Ordering::Relaxed);
        }
        s.state.store(expiry.max(DEAD + 1), Ordering::Release);
    }

    /// Frees claimed slot `i`.
    pub(crate) fn free(&self, i: usize) {
        self.slots[i].state.store(DEAD, Ordering::Release);
    }

    /// Kills slot `i` if its state is still `from` (a live entry): true for the one
    /// caller that did.
    pub(crate) fn kill(&self, i: usize, from: u64) -> bool {
        from > DEAD
            && self.slots[i]
                .state
                .compare_exchange(from, DEAD, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// The next `n` slots (at most all) of the rotating collection cursor.
    pub(crate) fn sweep(&self, n: usize) -> impl Iterator<Item = usize> + use<'_, W> {
        let start = self.gc_cursor.fetch_add(n, Ordering::Relaxed);
        (0..n.min(self.slots.len())).map(move |j| start.wrapping_add(j) & self.mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_slot_is_busy_until_published_and_dies_once() {
        let s = SlotStore::<3>::new(4);
        assert_eq!(s.slots(), WINDOW * 4);
        assert_eq!(s.read::<2>(5), Read::Free(EMPTY));
        assert!(s.claim(5, EMPTY));
        assert!(!s.claim(5, EMPTY), "claimed once");
        assert_eq!(s.read::<2>(5), Read::Free(BUSY));
        s.publish(5, &[7, 8], 1_000);
        assert_eq!(s.read::<2>(5), Read::Live(1_000, [7, 8]));
        assert!(!s.kill(5, 999), "not from another state");
        assert!(s.kill(5, 1_000));
        assert!(!s.kill(5, 1_000), "killed once");
        assert_eq!(s.read::<2>(5), Read::Free(DEAD));
    }

    #[test]
    fn windows_and_sweeps_wrap_around_the_table() {
        let s = SlotStore::<1>::new(1);
        let n = s.slots();
        let w: Vec<usize> = s.window(n - 2).collect();
        assert_eq!(w.len(), WINDOW);
        assert_eq!(&w[..3], &[n - 2, n - 1, 0]);
        let first: Vec<usize> = s.sweep(n - 1).collect();
        let next: Vec<usize> = s.sweep(3).collect();
        assert_eq!(first.len(), n - 1);
        assert_eq!(next, vec![n - 1, 0, 1]);
    }
}
