//! Per-worker counters: plain `u64`s the worker bumps, copied every millisecond into the
//! worker's block of `AtomicU64`s (relaxed stores, one writer) that the control thread
//! reads at any time. A scrape never waits for a worker.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::DropReason;
use crate::frag::FragStats;

/// Most ports a worker keeps per-port counters for (configs with more are refused).
pub const MAX_PORTS: usize = 16;

/// The counters of one worker (one writer: the worker itself).
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The processor's own counters, read from [`Process::proc_counters`] when the edge
    /// publishes (not per packet).
    ///
    /// [`Process::proc_counters`]: crate::worker::process::Process::proc_counters
    pub proc: ProcCounters,
}

// Written out: `[u64; N]` has no `Default` beyond 32 elements (`DropReason::COUNT`).
impl Default for Counters {
    fn default() -> Self {
        Counters {
            rx_packets: [0; MAX_PORTS],
            rx_bytes: [0; MAX_PORTS],
            tx_packets: [0; MAX_PORTS],
            tx_bytes: [0; MAX_PORTS],
            tx_dropped: 0,
            drops: [0; DropReason::COUNT],
            handoff_tx: 0,
            handoff_rx: 0,
            handoff_drop: 0,
            slowpath_tx: 0,
            slowpath_drop: 0,
            edge_drop: 0,
            busy_cycles: 0,
            total_cycles: 0,
            commands: 0,
            steer_tx: 0,
            steer_rx: 0,
            steer_drop: 0,
            proc: ProcCounters::default(),
        }
    }
}

/// Counters a packet processor keeps beyond its [`Action`](crate::worker::Action)s (which
/// the edge counts itself): what the pipeline sent on its own, and how it decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcCounters {
    /// Frames forwarded (routed) to another port.
    pub forwarded: u64,
    /// Frames addressed to the appliance (after the input chain).
    pub local_in: u64,
    /// Echo replies sent.
    pub echo_replies: u64,
    /// ICMP/ICMPv6 errors sent.
    pub icmp_errors: u64,
    /// ICMP/ICMPv6 errors not sent because the worker's rate limit was reached.
    pub icmp_ratelimited: u64,
    /// TCP resets sent by `reject`.
    pub tcp_resets: u64,
    /// Packets whose filter verdict came from the connection's verdict cache.
    pub verdict_cache_hits: u64,
    /// Frames given to the slow path (ARP, ND, unresolved next hops).
    pub slow_path: u64,
    /// Frames handed to the owning worker.
    pub handoffs: u64,
    /// Neighbour or route snapshots adopted.
    pub snapshots_adopted: u64,
    /// Conntrack events lost because the event ring was full.
    pub events_dropped: u64,
    /// Packets forwarded by the vector fast path (from a connection's recipe; they are
    /// counted in `forwarded` too).
    pub fast_path: u64,
    /// Fast-path recipes built by the full pipeline.
    pub recipes_built: u64,
    /// First-packet cache lookups (one per hook a first packet reaches) answered from the
    /// cache / evaluated (`rules::first`).
    pub first_cache_hits: u64,
    pub first_cache_misses: u64,
    /// NAT bindings made (`NatStats::allocations`).
    pub nat_allocations: u64,
    /// Source-NAT bindings that kept the original source port or ICMP id.
    pub nat_ports_kept: u64,
    /// Bindings that searched their port range in the port pools.
    pub nat_ports_searched: u64,
    /// Port-pool bitmap words the searches read (64 ports each).
    pub nat_pool_words_scanned: u64,
    /// New (address, protocol) pools refused: every pool slot held ports.
    pub nat_pools_full: u64,
    /// Connections the timer wheel deleted.
    pub ct_expired: u64,
    /// Expiry ticks run (`ct_expired` / `ct_expire_ticks`: deleted per tick).
    pub ct_expire_ticks: u64,
    /// Packets the processor dropped but answered (ICMP error, TCP reset) by reason: the
    /// edge counts an [`Action::Reply`](crate::worker::Action::Reply) there, not a drop.
    pub replied_drops: [u64; DropReason::COUNT],
    /// IP reassembly counters, IPv4 then IPv6 (`FragStats::names`).
    pub frag: [u64; 2 * FragStats::SLOTS],
}

impl Default for ProcCounters {
    fn default() -> Self {
        ProcCounters {
            forwarded: 0,
            local_in: 0,
            echo_replies: 0,
            icmp_errors: 0,
            icmp_ratelimited: 0,
            tcp_resets: 0,
            verdict_cache_hits: 0,
            slow_path: 0,
            handoffs: 0,
            snapshots_adopted: 0,
            events_dropped: 0,
            fast_path: 0,
            recipes_built: 0,
            first_cache_hits: 0,
            first_cache_misses: 0,
            nat_allocations: 0,
            nat_ports_kept: 0,
            nat_ports_searched: 0,
            nat_pool_words_scanned: 0,
            nat_pools_full: 0,
            ct_expired: 0,
            ct_expire_ticks: 0,
            replied_drops: [0; DropReason::COUNT],
            frag: [0; 2 * FragStats::SLOTS],
        }
    }
}

impl ProcCounters {
    /// Number of `u64` slots.
    pub const SLOTS: usize = 22 + DropReason::COUNT + 2 * FragStats::SLOTS;

    fn slots_mut(&mut self) -> impl Iterator<Item = &mut u64> {
        [
            &mut self.forwarded,
            &mut self.local_in,
            &mut self.echo_replies,
            &mut self.icmp_errors,
            &mut self.icmp_ratelimited,
            &mut self.tcp_resets,
            &mut self.verdict_cache_hits,
            &mut self.slow_path,
            &mut self.handoffs,
            &mut self.snapshots_adopted,
            &mut self.events_dropped,
            &mut self.fast_path,
            &mut self.recipes_built,
            &mut self.first_cache_hits,
            &mut self.first_cache_misses,
            &mut self.nat_allocations,
            &mut self.nat_ports_kept,
            &mut self.nat_ports_searched,
            &mut self.nat_pool_words_scanned,
            &mut self.nat_pools_full,
            &mut self.ct_expired,
            &mut self.ct_expire_ticks,
        ]
        .into_iter()
        .chain(self.replied_drops.iter_mut())
        .chain(self.frag.iter_mut())
    }

    /// Drops of `reason` the processor answered with a reply.
    pub fn replied(&self, reason: DropReason) -> u64 {
        self.replied_drops[reason as usize]
    }
}

impl Counters {
    /// Number of `u64` slots in the flat form.
    pub const SLOTS: usize = 4 * MAX_PORTS + DropReason::COUNT + 13 + ProcCounters::SLOTS;

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
            .chain(self.proc.slots_mut())
    }

    /// Drops of `reason`: the edge's (the processor's `Action::Drop`s, refused TX) and
    /// those the processor answered with a reply.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].wrapping_add(self.proc.replied(reason))
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

/// Helper counters of one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HelperCounters {
    /// Announcements parsed (PORT, EPRT, 227, 229, TFTP requests) that made an
    /// expectation.
    pub announced: u64,
    /// Announcement lines that did not parse, or named another address than their
    /// sender's (no expectation; the packet goes on, as Linux).
    pub malformed: u64,
    /// First packets that matched an expectation (`ct state related`).
    pub related: u64,
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
        assert_ne!(block.read().proc.events_dropped, 0);
        assert_eq!(block.read().proc, c.proc);
    }

    #[test]
    fn worker_stats_carry_the_drop_and_processor_counters() {
        let mut c = Counters::default();
        c.rx_packets[0] = 4;
        c.rx_packets[2] = 1;
        c.drops[DropReason::NatPortExhausted as usize] = 6;
        c.drops[DropReason::TtlExceeded as usize] = 2;
        c.proc.replied_drops[DropReason::TtlExceeded as usize] = 3;
        c.proc.events_dropped = 3;
        c.proc.icmp_errors = 7;
        c.proc.icmp_ratelimited = 8;
        c.proc.verdict_cache_hits = 9;
        c.proc.forwarded = 10;
        c.proc.first_cache_hits = 11;
        c.proc.first_cache_misses = 12;
        c.proc.nat_allocations = 13;
        c.proc.nat_pool_words_scanned = 14;
        c.proc.ct_expired = 15;
        c.proc.ct_expire_ticks = 16;
        let block = CounterBlock::default();
        block.publish(&c);
        let w = block.read().worker_stats(1, 5);
        assert_eq!((w.worker, w.lcore, w.rx_packets), (1, 5, 5));
        assert_eq!(w.nat_port_exhausted, 6, "from drops[NatPortExhausted]");
        assert_eq!(w.drops["nat_port_exhausted"], 6);
        assert_eq!(w.drops["ttl_exceeded"], 5, "dropped plus answered");
        assert_eq!(w.events_dropped, 3);
        assert_eq!((w.icmp_errors, w.icmp_ratelimited), (7, 8));
        assert_eq!((w.verdict_cache_hits, w.forwarded), (9, 10));
        assert_eq!((w.first_cache_hits, w.first_cache_misses), (11, 12));
        assert_eq!((w.nat_allocations, w.nat_pool_words_scanned), (13, 14));
        assert_eq!((w.ct_expired, w.ct_expire_ticks), (15, 16));
    }

    #[test]
    fn add_sums_slotwise() {
        let mut a = Counters::default();
        a.rx_packets[1] = 5;
        a.handoff_tx = 2;
        let mut b = a.clone();
        b.drops[3] = 7;
        b.proc.icmp_ratelimited = 9;
        a.add(&b);
        assert_eq!(a.rx_packets[1], 10);
        assert_eq!(a.handoff_tx, 4);
        assert_eq!(a.drops[3], 7);
        assert_eq!(a.proc.icmp_ratelimited, 9);
        assert_eq!(a.rx_total(), 10);
    }
}
