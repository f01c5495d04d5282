//! Ruleset generations: the control thread publishes compiled rulesets, workers adopt the
//! newest one between bursts, and the old one is dropped on the control thread once every
//! worker has moved on (QSBR-style: a worker never runs a ruleset's `Drop`).
//!
//! The [`Publisher`] holds the current generation in an `ArcSwap`. Each [`WorkerRuleset`]
//! keeps its own `Arc` (so evaluation is a plain pointer read, no atomics) and, when it
//! sees a newer generation in [`WorkerRuleset::refresh`], swaps it in and hands the old
//! `Arc` back to the control thread on a channel. [`Publisher::reclaim`] drains that channel
//! and drops the generations no worker and no publisher holds any more.

use super::compile::CompiledRuleset;
use arc_swap::ArcSwap;
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
    pending: Vec<Arc<CompiledRuleset>>,
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

    /// Publishes a new ruleset; returns its generation number.
    pub fn publish(&mut self, mut next: CompiledRuleset) -> u64 {
        let g = self.generation.load(Ordering::Relaxed) + 1;
        next.generation = g;
        let old = self.current.swap(Arc::new(next));
        self.generation.store(g, Ordering::Release);
        self.pending.push(old);
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
                self.pending.push(old);
            }
        }
        // `strong_count == 1`: only this list holds it (workers handed theirs back).
        self.pending.retain(|a| Arc::strong_count(a) > 1);
        self.pending.len()
    }
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
