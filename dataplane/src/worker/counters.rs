//! Per-worker counters: plain `u64`s the worker bumps, copied every millisecond into the
//! worker's block of `AtomicU64`s (relaxed stores, one writer) that the control thread
//! reads at any time. A scrape never waits for a worker.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::DropReason;

/// Most ports a worker keeps per-port counters for (configs with more are refused).
pub const MAX_PORTS: usize = 16;

/// The counters of one worker (one writer: the worker itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per port index: frames received from this port's RX queues.
    pub rx_packets: [u64; MAX_PORTS],
    pub rx_bytes: [u64; MAX_PORTS],
    /// Per port index: frames this port's TX queue took (refused ones are
    /// `drops[TxRefused]`).
    pub tx_packets: [u64; MAX_PORTS],
    pub tx_bytes: [u64; MAX_PORTS],
    /// Frames the TX queue refused (freed).
    pub tx_dropped: u64,
    /// Drops decided by the pipeline, by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
    /// Frames handed to another worker / received from one / lost (ring full).
    pub handoff_tx: u64,
    pub handoff_rx: u64,
    pub handoff_drop: u64,
    /// Frames given to the slow path / lost because its ring was full.
    pub slowpath_tx: u64,
    pub slowpath_drop: u64,
    /// Chained mbufs that could not be linearised, and replies that did not fit the mbuf.
    pub edge_drop: u64,
    /// Cycles of loop iterations that carried packets, and all cycles.
    pub busy_cycles: u64,
    pub total_cycles: u64,
    /// Control commands answered.
    pub commands: u64,
    /// Steering messages sent to other workers / received / lost (ring full, no ring).
    pub steer_tx: u64,
    pub steer_rx: u64,
    pub steer_drop: u64,
}

impl Counters {
    /// Number of `u64` slots in the flat form.
    pub const SLOTS: usize = 4 * MAX_PORTS + DropReason::COUNT + 13;

    /// Visits every slot in a fixed order (the same for write and read).
    fn slots_mut(&mut self) -> impl Iterator<Item = &mut u64> {
        self.rx_packets
            .iter_mut()
            .chain(self.rx_bytes.iter_mut())
            .chain(self.tx_packets.iter_mut())
            .chain(self.tx_bytes.iter_mut())
            .chain(self.drops.iter_mut())
            .chain([
                &mut self.tx_dropped,
                &mut self.handoff_tx,
                &mut self.handoff_rx,
                &mut self.handoff_drop,
                &mut self.slowpath_tx,
                &mut self.slowpath_drop,
                &mut self.edge_drop,
                &mut self.busy_cycles,
                &mut self.total_cycles,
                &mut self.commands,
                &mut self.steer_tx,
                &mut self.steer_rx,
                &mut self.steer_drop,
            ])
    }

    /// Sum over all ports of received frames.
    pub fn rx_total(&self) -> u64 {
        self.rx_packets.iter().sum()
    }

    /// Sum over all ports of transmitted frames.
    pub fn tx_total(&self) -> u64 {
        self.tx_packets.iter().sum()
    }

    /// Adds `other` slot by slot (for totals).
    pub fn add(&mut self, other: &Counters) {
        let mut o = other.clone();
        for (a, b) in self.slots_mut().zip(o.slots_mut()) {
            *a = a.wrapping_add(*b);
        }
    }
}

/// The published copy of one worker's [`Counters`].
#[derive(Debug)]
pub struct CounterBlock {
    slots: Box<[AtomicU64]>,
}

impl Default for CounterBlock {
    fn default() -> Self {
        CounterBlock {
            slots: (0..Counters::SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl CounterBlock {
    /// Copies `c` into the block (the worker, every ~1 ms). Relaxed: each slot is a
    /// monotonic counter read on its own.
    pub fn publish(&self, c: &Counters) {
        let mut c = c.clone();
        for (slot, v) in self.slots.iter().zip(c.slots_mut()) {
            slot.store(*v, Ordering::Relaxed);
        }
    }

    /// Reads the last published values (any thread, any time).
    pub fn read(&self) -> Counters {
        let mut c = Counters::default();
        for (slot, v) in self.slots.iter().zip(c.slots_mut()) {
            *v = slot.load(Ordering::Relaxed);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_count_matches_fields() {
        let mut c = Counters::default();
        assert_eq!(c.slots_mut().count(), Counters::SLOTS);
    }

    #[test]
    fn publish_then_read_round_trips_every_field() {
        let mut c = Counters::default();
        for (i, v) in c.slots_mut().enumerate() {
            *v = i as u64 * 3 + 1;
        }
        let block = CounterBlock::default();
        assert_eq!(block.read(), Counters::default());
        block.publish(&c);
        assert_eq!(block.read(), c);
        assert_eq!(
            block.read().drops[DropReason::Truncated as usize],
            c.drops[0]
        );
    }

    #[test]
    fn add_sums_slotwise() {
        let mut a = Counters::default();
        a.rx_packets[1] = 5;
        a.handoff_tx = 2;
        let mut b = a.clone();
        b.drops[3] = 7;
        a.add(&b);
        assert_eq!(a.rx_packets[1], 10);
        assert_eq!(a.handoff_tx, 4);
        assert_eq!(a.drops[3], 7);
        assert_eq!(a.rx_total(), 10);
    }
}
