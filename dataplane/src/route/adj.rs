//! The worker's adjacency table: what the fast path writes to send a frame out of a
//! port to a resolved next hop (output port, destination and source MACs, the port's
//! MTU), in a small dense array that stays in cache, indexed by a `u16` kept in each
//! fast-path recipe. The route lookup (LPM) and the neighbour lookup (hash map) run once,
//! when the slow path builds a recipe; the fast path reads one 16-byte adjacency.
//!
//! Adjacencies are only valid for the worker epoch they were made in (routes and
//! neighbours are part of it): [`AdjTable::sync`] empties the table when the epoch moves,
//! at the same time as every recipe naming them becomes stale. The table never
//! allocates after [`AdjTable::with_capacity`]; when full, no recipe is built.

use rustc_hash::FxHashMap;

use super::neigh::Mac;
use super::table::PortIndex;

/// One output: port, MACs, MTU (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adjacency {
    /// The next hop's MAC.
    pub dst: Mac,
    /// The output port's MAC.
    pub src: Mac,
    pub port: PortIndex,
    /// The output port's L3 MTU.
    pub mtu: u16,
}

/// The adjacencies of one worker epoch.
#[derive(Clone, Debug)]
pub struct AdjTable {
    entries: Vec<Adjacency>,
    index: FxHashMap<(PortIndex, Mac), u16>,
    cap: usize,
    epoch: u64,
}

impl AdjTable {
    /// Room for `cap` adjacencies (at most 65 536), allocated now.
    pub fn with_capacity(cap: usize) -> Self {
        let cap = cap.min(usize::from(u16::MAX) + 1);
        let mut index = FxHashMap::default();
        index.reserve(cap);
        AdjTable {
            entries: Vec::with_capacity(cap),
            index,
            cap,
            epoch: 0,
        }
    }

    /// Empties the table when `epoch` differs from the one it was filled in.
    pub fn sync(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.entries.clear();
            self.index.clear();
            self.epoch = epoch;
        }
    }

    /// The index of `a`, added if new; `None` when the table is full.
    pub fn intern(&mut self, a: Adjacency) -> Option<u16> {
        if let Some(&i) = self.index.get(&(a.port, a.dst)) {
            if self.entries[usize::from(i)] == a {
                return Some(i);
            }
            return None;
        }
        if self.entries.len() >= self.cap {
            return None;
        }
        let i = u16::try_from(self.entries.len()).ok()?;
        self.entries.push(a);
        self.index.insert((a.port, a.dst), i);
        Some(i)
    }

    /// Adjacency `i`.
    #[inline]
    pub fn get(&self, i: u16) -> Option<&Adjacency> {
        self.entries.get(usize::from(i))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adj(port: u16, last: u8) -> Adjacency {
        Adjacency {
            dst: [2, 0, 0, 0, 9, last],
            src: [2, 0, 0, 0, 0, 1],
            port,
            mtu: 1500,
        }
    }

    #[test]
    fn interns_once_per_port_and_mac_and_empties_on_a_new_epoch() {
        let mut t = AdjTable::with_capacity(2);
        t.sync(1);
        assert_eq!(t.intern(adj(0, 1)), Some(0));
        assert_eq!(t.intern(adj(1, 1)), Some(1));
        assert_eq!(t.intern(adj(0, 1)), Some(0));
        assert_eq!(t.intern(adj(0, 2)), None, "full");
        assert_eq!(t.get(1), Some(&adj(1, 1)));
        t.sync(1);
        assert_eq!(t.len(), 2, "same epoch: kept");
        t.sync(2);
        assert!(t.is_empty());
        assert_eq!(t.intern(adj(0, 2)), Some(0));
    }
}
