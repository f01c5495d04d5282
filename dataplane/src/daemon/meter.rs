//! The throughput line `fwd --stats-interval N` prints from the slow path's loop.

use std::sync::Arc;

use crate::worker::counters::CounterBlock;

/// Prints a throughput line every `interval` seconds (TSC based).
pub(super) struct Meter {
    every: u64,
    last_tsc: u64,
    last_rx: u64,
    last_tx: u64,
    hz: u64,
}

impl Meter {
    pub(super) fn new(interval: u64, hz: u64) -> Self {
        Meter {
            every: interval.saturating_mul(hz),
            last_tsc: dpdk_bindings::rdtsc(),
            last_rx: 0,
            last_tx: 0,
            hz,
        }
    }

    pub(super) fn maybe_print(&mut self, blocks: &[Arc<CounterBlock>]) {
        if self.every == 0 {
            return;
        }
        let now = dpdk_bindings::rdtsc();
        let dt = now.wrapping_sub(self.last_tsc);
        if dt < self.every {
            return;
        }
        let (mut rx, mut tx, mut drops, mut busy, mut total) = (0, 0, 0, 0, 0);
        for b in blocks {
            let c = b.read();
            rx += c.rx_total();
            tx += c.tx_total();
            drops += c.drops.iter().sum::<u64>() + c.handoff_drop + c.edge_drop;
            busy += c.busy_cycles;
            total += c.total_cycles;
        }
        let secs = dt as f64 / self.hz.max(1) as f64;
        println!(
            "rx {:.0} pps  tx {:.0} pps  total rx {rx} tx {tx} dropped {drops}  busy {:.1}%",
            (rx - self.last_rx) as f64 / secs,
            (tx - self.last_tx) as f64 / secs,
            100.0 * busy as f64 / total.max(1) as f64
        );
        self.last_tsc = now;
        self.last_rx = rx;
        self.last_tx = tx;
    }
}
