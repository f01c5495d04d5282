//! The control protocol's view of a worker's counters ([`WorkerStats`]), written on the
//! control thread from the block the worker publishes (`worker::counters`).

use std::collections::BTreeMap;

use crate::DropReason;
use crate::control::proto::{CtCounters, WorkerStats};
use crate::frag::FragStats;
use crate::wire::Family;
use crate::worker::counters::Counters;

impl Counters {
    /// The control protocol's view of worker `worker` on `lcore` (its `ct` counters are
    /// filled by the control thread from a `CtStats` command).
    pub fn worker_stats(&self, worker: u16, lcore: u32) -> WorkerStats {
        WorkerStats {
            worker,
            lcore,
            rx_packets: self.rx_total(),
            tx_packets: self.tx_total(),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), self.drop_count(*r)))
                .collect::<BTreeMap<_, _>>(),
            handoff_tx: self.handoff_tx,
            handoff_rx: self.handoff_rx,
            handoff_drop: self.handoff_drop,
            nat_port_exhausted: self.drop_count(DropReason::NatPortExhausted),
            events_dropped: self.proc.events_dropped,
            busy_cycles: self.busy_cycles,
            total_cycles: self.total_cycles,
            ct: CtCounters::default(),
            forwarded: self.proc.forwarded,
            local_in: self.proc.local_in,
            echo_replies: self.proc.echo_replies,
            icmp_errors: self.proc.icmp_errors,
            icmp_ratelimited: self.proc.icmp_ratelimited,
            tcp_resets: self.proc.tcp_resets,
            verdict_cache_hits: self.proc.verdict_cache_hits,
            slow_path: self.proc.slow_path,
            fast_path: self.proc.fast_path,
            recipes_built: self.proc.recipes_built,
            first_cache_hits: self.proc.first_cache_hits,
            first_cache_misses: self.proc.first_cache_misses,
            nat_allocations: self.proc.nat_allocations,
            nat_ports_kept: self.proc.nat_ports_kept,
            nat_ports_searched: self.proc.nat_ports_searched,
            nat_pool_words_scanned: self.proc.nat_pool_words_scanned,
            nat_pools_full: self.proc.nat_pools_full,
            ct_expired: self.proc.ct_expired,
            ct_expire_ticks: self.proc.ct_expire_ticks,
            frag: [Family::V4, Family::V6]
                .into_iter()
                .enumerate()
                .flat_map(|(i, f)| {
                    let prefix = if f == Family::V4 { "ipv4" } else { "ipv6" };
                    let slots = &self.proc.frag[i * FragStats::SLOTS..];
                    FragStats::names(f)
                        .into_iter()
                        .zip(slots)
                        .map(move |(n, v)| (format!("{prefix}.{n}"), *v))
                })
                .collect(),
        }
    }
}
