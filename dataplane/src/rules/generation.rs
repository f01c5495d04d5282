//! Ruleset generations: the control thread publishes compiled rulesets, workers adopt the
//! newest one between bursts, and the old one is dropped on the control thread once every
//! worker has moved on (QSBR-style: a worker never runs a ruleset's `Drop`).
//!
//! The [`Publisher`] holds the current generation in an `ArcSwap`. Each [`WorkerRuleset`]
//! keeps its own `Arc` (so evaluation is a plain pointer read, no atomics) and, when it
//! sees a newer generation in [`WorkerRuleset::refresh`], swaps it in and hands the old
//! `Arc` back to the control thread on a channel. [`Publisher::reclaim`] drains that channel
//! and drops the generations no worker and no publisher holds any more.

use super::ast::{Rule, TableFamily};
use super::compile::CompiledRuleset;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

/// The control thread's side.
#[derive(Debug)]
pub struct Publisher {
    current: Arc<ArcSwap<CompiledRuleset>>,
    generation: Arc<AtomicU64>,
    retired_tx: Sender<Arc<CompiledRuleset>>,
    retired_rx: Receiver<Arc<CompiledRuleset>>,
    /// Generations handed back but still held elsewhere (by a slower worker).
    pending: Vec<Retired>,
}

/// A generation no longer current. `snapshot`: its counters when it was replaced by
/// [`Publisher::publish_keeping_counters`]; what its workers counted after that is carried
/// into the current generation when the last worker lets it go.
#[derive(Debug)]
struct Retired {
    rs: Arc<CompiledRuleset>,
    snapshot: Option<Vec<(u64, u64)>>,
}

/// A worker's side: its current generation.
#[derive(Debug)]
pub struct WorkerRuleset {
    current: Arc<ArcSwap<CompiledRuleset>>,
    generation: Arc<AtomicU64>,
    held: Arc<CompiledRuleset>,
    retired_tx: Sender<Arc<CompiledRuleset>>,
}

impl Publisher {
    /// Starts with `initial` as generation 1.
    pub fn new(mut initial: CompiledRuleset) -> Self {
        initial.generation = 1;
        let (retired_tx, retired_rx) = channel();
        Publisher {
            current: Arc::new(ArcSwap::from_pointee(initial)),
            generation: Arc::new(AtomicU64::new(1)),
            retired_tx,
            retired_rx,
            pending: Vec::new(),
        }
    }

    /// A handle for one worker (call on the control thread, move it to the worker).
    pub fn worker(&self) -> WorkerRuleset {
        WorkerRuleset {
            current: Arc::clone(&self.current),
            generation: Arc::clone(&self.generation),
            held: self.current.load_full(),
            retired_tx: self.retired_tx.clone(),
        }
    }

    /// Publishes a new ruleset; returns its generation number. Its counters start at
    /// zero (a whole-ruleset replacement, as `nft -f` of a file after `flush ruleset`).
    pub fn publish(&mut self, next: CompiledRuleset) -> u64 {
        self.publish_inner(next, None)
    }

    /// Publishes a new ruleset whose rules that did not change (same table, chain,
    /// handle and statements: what an incremental change leaves alone) keep their
    /// counters: the running generation's counts now, plus, once every worker has moved
    /// on, what they counted in it meanwhile. Returns the generation number.
    pub fn publish_keeping_counters(&mut self, mut next: CompiledRuleset) -> u64 {
        let old = self.current();
        next.adopt_dynsets(&old);
        let snapshot = old.counters();
        for (o, n) in same_rules(&old, &next) {
            next.carry(n, snapshot[o as usize]);
        }
        self.publish_inner(next, Some(snapshot))
    }

    fn publish_inner(
        &mut self,
        mut next: CompiledRuleset,
        snapshot: Option<Vec<(u64, u64)>>,
    ) -> u64 {
        let g = self.generation.load(Ordering::Relaxed) + 1;
        next.generation = g;
        let old = self.current.swap(Arc::new(next));
        self.generation.store(g, Ordering::Release);
        self.pending.push(Retired { rs: old, snapshot });
        self.reclaim();
        g
    }

    /// The running generation.
    pub fn current(&self) -> Arc<CompiledRuleset> {
        self.current.load_full()
    }

    /// Drops retired generations no worker holds any more; returns how many are still
    /// held somewhere.
    pub fn reclaim(&mut self) -> usize {
        // A handed-back `Arc` is one reference less; dropping it here frees nothing
        // unless it was the last, which is the point: the control thread frees.
        while let Ok(old) = self.retired_rx.try_recv() {
            if Arc::strong_count(&old) == 1 {
                self.pending.push(Retired {
                    rs: old,
                    snapshot: None,
                });
            }
        }
        // `strong_count == 1`: only this list holds it (workers handed theirs back), so
        // its counters are final.
        let current = self.current();
        self.pending.retain(|r| {
            if Arc::strong_count(&r.rs) > 1 {
                return true;
            }
            if let Some(snap) = &r.snapshot {
                let now = r.rs.counters();
                for (o, n) in same_rules(&r.rs, &current) {
                    let (a, b) = (now[o as usize], snap[o as usize]);
                    current.carry(n, (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1)));
                }
            }
            false
        });
        self.pending.len()
    }
}

/// Rule ids (old, new) of the rules `new` has unchanged from `old`: the same table
/// (family and name), chain, handle, statements and comment.
fn same_rules(old: &CompiledRuleset, new: &CompiledRuleset) -> Vec<(u32, u32)> {
    let by_key: HashMap<RuleKey<'_>, (u32, &Rule)> = rules_by_key(old).collect();
    rules_by_key(new)
        .filter_map(|(k, (n, rule))| {
            let &(o, before) = by_key.get(&k)?;
            (before.stmts == rule.stmts && before.comment == rule.comment).then_some((o, n))
        })
        .collect()
}

/// A rule's identity across generations: table family and name, chain, handle.
type RuleKey<'a> = (TableFamily, &'a str, &'a str, u64);

fn rules_by_key(rs: &CompiledRuleset) -> impl Iterator<Item = (RuleKey<'_>, (u32, &Rule))> {
    (0..u32::try_from(rs.rule_count()).unwrap_or(u32::MAX)).filter_map(move |id| {
        let (t, c, r, handle) = rs.rule_location(id)?;
        let table = &rs.source().tables[t];
        let chain = &table.chains[c];
        let key: RuleKey<'_> = (table.family, &table.name, &chain.name, handle);
        Some((key, (id, &chain.rules[r])))
    })
}

impl WorkerRuleset {
    /// The generation this worker evaluates with.
    pub fn get(&self) -> &CompiledRuleset {
        &self.held
    }

    /// Between bursts: adopt the newest generation if there is one. Returns whether it
    /// changed. The old `Arc` goes back to the control thread, never dropped here.
    pub fn refresh(&mut self) -> bool {
        if self.generation.load(Ordering::Acquire) == self.held.generation {
            return false;
        }
        let next = self.current.load_full();
        let old = std::mem::replace(&mut self.held, next);
        if let Err(e) = self.retired_tx.send(old) {
            // The publisher is gone (shutdown): nothing to hand back to.
            drop(e);
        }
        true
    }
}

impl Drop for WorkerRuleset {
    fn drop(&mut self) {
        // Hand the last generation back too, so the control thread frees it.
        let held = std::mem::replace(&mut self.held, self.current.load_full());
        let _ = self.retired_tx.send(held);
    }
}
