//! The backup's external cache (docs/ha.md, "Throughput"): synced entries held outside
//! the workers until the takeover commit.
//!
//! Stored dense: the entries in a `Vec` in no particular order, and an index from an
//! entry's original tuple to its slot. The hash map then moves 4-byte slots (not whole
//! entries) when it grows, and its table is a fraction of the size, so more of it stays in
//! cache while a million synced entries arrive. A removal moves the last entry into the
//! freed slot (`swap_remove`) and fixes that entry's slot in the index.

use std::collections::HashMap;

use crate::conntrack::{FlowKey, KeyedState, Synced};

/// Synced entries by original tuple (`Synced::orig`).
#[derive(Debug, Default, Clone)]
pub struct SyncCache {
    entries: Vec<Synced>,
    /// `entries[slot].orig` → `slot`.
    index: HashMap<FlowKey, u32, KeyedState>,
}

impl SyncCache {
    /// An empty cache.
    pub fn new() -> Self {
        SyncCache::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry with this original tuple is held.
    pub fn contains_key(&self, k: &FlowKey) -> bool {
        self.index.contains_key(k)
    }

    /// The entry with this original tuple.
    pub fn get(&self, k: &FlowKey) -> Option<&Synced> {
        let &slot = self.index.get(k)?;
        self.entries.get(slot as usize)
    }

    /// Puts `entry` under its original tuple, replacing the one held there. Returns
    /// whether it is held: false only when the cache already has `u32::MAX` entries (the
    /// slots are 32-bit; fwd's `max_entries` stops it long before).
    pub fn insert(&mut self, entry: Synced) -> bool {
        if let Some(&slot) = self.index.get(&entry.orig)
            && let Some(e) = self.entries.get_mut(slot as usize)
        {
            *e = entry;
            return true;
        }
        let Ok(slot) = u32::try_from(self.entries.len()) else {
            return false;
        };
        if slot == u32::MAX {
            return false;
        }
        self.index.insert(entry.orig, slot);
        self.entries.push(entry);
        true
    }

    /// Removes the entry with this original tuple and returns it.
    pub fn remove(&mut self, k: &FlowKey) -> Option<Synced> {
        let slot = self.index.remove(k)?;
        let at = slot as usize;
        if at >= self.entries.len() {
            return None;
        }
        let gone = self.entries.swap_remove(at);
        // The entry moved into the freed slot (none when the last one was removed).
        if let Some(moved) = self.entries.get(at)
            && let Some(s) = self.index.get_mut(&moved.orig)
        {
            *s = slot;
        }
        Some(gone)
    }

    /// Takes every entry out (the cache is empty afterwards, its memory kept).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Synced> {
        self.index.clear();
        self.entries.drain(..)
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> std::slice::Iter<'_, Synced> {
        self.entries.iter()
    }
}

/// The same entries, whatever their order.
impl PartialEq for SyncCache {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|e| other.get(&e.orig) == Some(e))
    }
}

impl Eq for SyncCache {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Addr, Family};
    use proptest::prelude::*;

    /// Entry `k` (one of a few keys, so that operations hit the same ones), carrying
    /// `mark` so that a replacement is visible.
    fn entry(k: u8, mark: u32) -> Synced {
        let orig = FlowKey {
            src: Addr::from_v4([198, 18, 0, k]),
            dst: Addr::from_v4([198, 19, 0, 1]),
            sport: 40000,
            dport: 9,
            zone: 0,
            proto: 17,
            family: Family::V4,
        };
        Synced {
            orig,
            reply: orig.inverse(),
            tcp_state: None,
            tcp_window: None,
            status: 0,
            mark,
            timeout_s: Some(30),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Remove(u8),
        Drain,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..24, any::<u32>()).prop_map(|(k, m)| Op::Insert(k, m)),
            4 => (0u8..24).prop_map(Op::Remove),
            1 => Just(Op::Drain),
        ]
    }

    proptest! {
        /// Against a reference `HashMap`: after every operation the same answer, the
        /// same length, the same entry under every key; a drain yields exactly the
        /// reference's entries.
        #[test]
        fn behaves_as_a_hash_map(ops in prop::collection::vec(op(), 0..300)) {
            let mut c = SyncCache::new();
            let mut r: HashMap<FlowKey, Synced> = Default::default();
            for o in ops {
                match o {
                    Op::Insert(k, m) => {
                        let e = entry(k, m);
                        prop_assert!(c.insert(e));
                        r.insert(e.orig, e);
                    }
                    Op::Remove(k) => {
                        let key = entry(k, 0).orig;
                        prop_assert_eq!(c.remove(&key), r.remove(&key));
                    }
                    Op::Drain => {
                        let mut got: Vec<Synced> = c.drain().collect();
                        let mut want: Vec<Synced> = r.drain().map(|(_, e)| e).collect();
                        got.sort_by_key(|e| e.orig.src);
                        want.sort_by_key(|e| e.orig.src);
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(c.len(), r.len());
                prop_assert_eq!(c.is_empty(), r.is_empty());
                for k in 0u8..24 {
                    let key = entry(k, 0).orig;
                    prop_assert_eq!(c.contains_key(&key), r.contains_key(&key));
                    prop_assert_eq!(c.get(&key), r.get(&key));
                }
            }
        }
    }

    #[test]
    fn equality_ignores_order() {
        let (a, b) = (entry(1, 1), entry(2, 2));
        let (mut x, mut y) = (SyncCache::new(), SyncCache::new());
        x.insert(a);
        x.insert(b);
        y.insert(b);
        y.insert(a);
        assert_eq!(x, y);
        y.insert(entry(2, 3));
        assert_ne!(x, y, "a different mark under the same key");
        y.remove(&b.orig);
        assert_ne!(x, y, "one entry fewer");
    }
}
