//! What a connection holds outside its conntrack entry, released when the entry dies:
//! the `ct count` tokens of the rules it passed (`ct count over N` counts live
//! connections) and the steering record its DNAT reply tuple was given to another worker
//! (removed there when the connection is gone).
//!
//! A per-worker side table keyed by the entry's slot. Death is found by a bounded sweep
//! (`Table::contains`), so expiry, `conntrack -D`, flush and early drop are all seen
//! without a hook in conntrack. A slot reused by a new connection is replaced at insert
//! time (the pipeline is the only inserter), which releases the old holdings first.

use arrayvec::ArrayVec;
use rustc_hash::FxHashMap;

use crate::conntrack::{EntryId, Table};
use crate::nat::alloc::Steering;
use crate::rules::CtCountToken;
use crate::rules::compile::MAX_CT_TOKENS;

/// The holdings of one connection.
#[derive(Debug)]
pub struct Held {
    pub tokens: ArrayVec<CtCountToken, MAX_CT_TOKENS>,
    /// The steering record sent to `reply_worker` for this connection.
    pub steering: Option<Steering>,
}

#[derive(Debug)]
struct Slot {
    id: u32,
    held: Held,
}

/// Holdings by entry, swept for dead entries a bounded number per call.
#[derive(Debug, Default)]
pub struct HeldTable {
    slots: Vec<Slot>,
    at: FxHashMap<u32, u32>,
    cursor: usize,
}

impl HeldTable {
    /// A table with room for `reserve` connections before it grows.
    pub fn with_capacity(reserve: usize) -> Self {
        HeldTable {
            slots: Vec::with_capacity(reserve),
            at: FxHashMap::with_capacity_and_hasher(reserve, Default::default()),
            cursor: 0,
        }
    }

    /// Connections holding something.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Records the holdings of the connection just inserted at `id`. Holdings of an
    /// earlier connection in the same slot (dead: its slot was reused) are released and
    /// their steering record, if any, goes to `released`.
    pub fn insert(&mut self, id: EntryId, held: Held, released: &mut Vec<Steering>) {
        if held.tokens.is_empty() && held.steering.is_none() {
            if let Some(old) = self.remove_id(id.0) {
                released.extend(old.steering);
            }
            return;
        }
        match self.at.get(&id.0) {
            Some(&pos) => {
                let old = std::mem::replace(&mut self.slots[pos as usize].held, held);
                released.extend(old.steering);
            }
            None => {
                let pos = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.at.insert(id.0, pos);
                self.slots.push(Slot { id: id.0, held });
            }
        }
    }

    fn remove_id(&mut self, id: u32) -> Option<Held> {
        let pos = self.at.remove(&id)?;
        Some(self.remove_at(pos as usize))
    }

    fn remove_at(&mut self, pos: usize) -> Held {
        let slot = self.slots.swap_remove(pos);
        self.at.remove(&slot.id);
        if let Some(moved) = self.slots.get(pos) {
            self.at
                .insert(moved.id, u32::try_from(pos).unwrap_or(u32::MAX));
        }
        slot.held
    }

    /// Examines at most `budget` connections (resuming where the last call stopped) and
    /// releases those whose entry is gone; their steering records go to `released`.
    /// Returns the number released.
    pub fn sweep(&mut self, ct: &Table, budget: usize, released: &mut Vec<Steering>) -> usize {
        let mut n = 0;
        for _ in 0..budget {
            if self.cursor >= self.slots.len() {
                self.cursor = 0;
                break;
            }
            let id = self.slots[self.cursor].id;
            if ct.contains(EntryId(id)) {
                self.cursor += 1;
            } else {
                // The last slot moves into `cursor`: examined on the next step.
                let held = self.remove_at(self.cursor);
                released.extend(held.steering);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Tunables;
    use crate::nat::Tuple;
    use crate::wire::Addr;

    fn st(sport: u16, owner: u16) -> Steering {
        Steering {
            reply: Tuple::new(
                Addr::from_v4([198, 18, 0, 20]),
                Addr::from_v4([203, 0, 113, 9]),
                6,
                sport,
                80,
            ),
            reply_worker: 1,
            owner,
        }
    }

    fn held(s: Option<Steering>) -> Held {
        Held {
            tokens: ArrayVec::new(),
            steering: s,
        }
    }

    #[test]
    fn a_reused_slot_releases_the_old_holdings() {
        let mut h = HeldTable::with_capacity(4);
        let mut out = Vec::new();
        h.insert(EntryId(3), held(Some(st(1, 0))), &mut out);
        h.insert(EntryId(5), held(Some(st(2, 0))), &mut out);
        assert!(out.is_empty());
        h.insert(EntryId(3), held(Some(st(3, 0))), &mut out);
        assert_eq!(out, vec![st(1, 0)]);
        assert_eq!(h.len(), 2);
        // A new connection holding nothing in a slot that held something.
        h.insert(EntryId(5), held(None), &mut out);
        assert_eq!(out, vec![st(1, 0), st(2, 0)]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_sweep_releases_dead_entries_within_its_budget() {
        let ct = Table::new(64, Tunables::default(), 1);
        let mut h = HeldTable::with_capacity(4);
        let mut out = Vec::new();
        for i in 0..10u16 {
            h.insert(EntryId(u32::from(i)), held(Some(st(i, 0))), &mut out);
        }
        assert_eq!(h.sweep(&ct, 4, &mut out), 4, "bounded by the budget");
        assert_eq!(h.len(), 6);
        assert_eq!(h.sweep(&ct, 100, &mut out), 6);
        assert!(h.is_empty());
        let mut ports: Vec<u16> = out.iter().map(|s| s.reply.sport).collect();
        ports.sort_unstable();
        assert_eq!(ports, (0..10).collect::<Vec<_>>(), "each released once");
        // The index stays consistent after swap-removals: a later insert of a swept id.
        h.insert(EntryId(9), held(Some(st(99, 0))), &mut out);
        assert_eq!(h.len(), 1);
    }
}
