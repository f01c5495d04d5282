//! The I/O edge of a worker (feature `dpdk`): the loop of docs/architecture.md ("Worker
//! loop") around a [`Process`]or, and the slow-path loop of the main lcore.
//!
//! One iteration: drain the handoff rings, `rx_burst` up to [`BURST`] from each owned RX
//! queue; each burst is one vector for the processor (`prepare_vector` for all frames,
//! then frame by frame the fast path or, failing that, the full pipeline, then
//! `finish_vector`), then act (transmit through the per-port [`TxBuffer`], hand off to
//! the owner, give to the slow path, or drop and count), flush the TX buffers (one
//! `tx_burst` per port and vector). Receive counters are added per burst; the NIC's
//! checksum verdicts (`ol_flags`) go with each frame. About every millisecond (TSC): the processor's `tick`, up to
//! [`COMMANDS_PER_TICK`] control commands, counter publication. No allocation, lock or
//! syscall per packet: the only allocations are the boxed control replies, between bursts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrayvec::ArrayVec;
use dpdk_bindings::{CksumStatus, Consumer, Mbuf, Producer, RxQueue, TxBuffer, rdtsc};

use arc_swap::ArcSwap;
use std::sync::atomic::AtomicU64;

use crate::conntrack::alloc::Prefetch;
use crate::route::NeighborSnapshot;
use crate::wire::{HwCsum, ParseOptions};
use crate::worker::clock::TscClock;
use crate::worker::counters::{CounterBlock, Counters, MAX_PORTS};
use crate::worker::process::{Process, SlowProcess, SteerMsg};
use crate::worker::slowpath::{SlowOut, SlowPath};
use crate::worker::{Action, FragOut, SCRATCH_LEN, WorkerCommand, WorkerReply};

/// Frames per RX burst and per TX buffer.
pub const BURST: usize = 32;

/// Control commands answered per tick (each is bounded work).
pub const COMMANDS_PER_TICK: usize = 4;

/// Frames on the handoff and slow-path rings carry their input port index in 2 bytes of
/// headroom (little endian), so nothing depends on the PMD stamping `mbuf.port` (net_ring
/// does not). Returns false (frame to be dropped) when there is no headroom.
#[inline]
fn tag_port(m: &mut Mbuf, port: u16) -> bool {
    match m.prepend(2) {
        Some(h) => {
            h.copy_from_slice(&port.to_le_bytes());
            true
        }
        None => false,
    }
}

/// Removes the tag written by [`tag_port`] and returns the port.
#[inline]
fn untag_port(m: &mut Mbuf) -> Option<u16> {
    let d = m.data();
    let port = u16::from_le_bytes([*d.first()?, *d.get(1)?]);
    m.adj(2).then_some(port)
}

/// The NIC's checksum verdict as the parser takes it (`*_CKSUM_NONE`: the data is
/// intact, treated as good).
fn hw_csum(s: CksumStatus) -> HwCsum {
    match s {
        CksumStatus::Unknown => HwCsum::Unknown,
        CksumStatus::Good | CksumStatus::IntegrityOk => HwCsum::Good,
        CksumStatus::Bad => HwCsum::Bad,
    }
}

/// The parse options for a received mbuf: software verification where the NIC gave no
/// verdict (a port without RX checksum offload never gives one).
#[inline]
fn offload_opts(m: &Mbuf) -> ParseOptions {
    ParseOptions::with_offload(hw_csum(m.ip_cksum()), hw_csum(m.l4_cksum()))
}

/// Neighbour snapshots the slow path publishes and the workers adopt between bursts.
#[derive(Debug)]
pub struct NeighShare {
    current: ArcSwap<NeighborSnapshot>,
    generation: AtomicU64,
}

impl NeighShare {
    /// Starts with `initial` (generation 0).
    pub fn new(initial: Arc<NeighborSnapshot>) -> Self {
        NeighShare {
            current: ArcSwap::new(initial),
            generation: AtomicU64::new(0),
        }
    }

    /// Publishes a new snapshot (slow path).
    pub fn publish(&self, snap: NeighborSnapshot) {
        self.current.store(Arc::new(snap));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<NeighborSnapshot> {
        self.current.load_full()
    }
}

/// A worker's side of [`NeighShare`]: the generation it runs, and the ring on which it
/// hands replaced snapshots back to the main lcore (which frees them).
#[derive(Debug)]
pub struct NeighWorker {
    pub share: Arc<NeighShare>,
    pub seen: u64,
    pub back: Producer<Box<Arc<NeighborSnapshot>>>,
}

/// Everything one worker polls and sends on.
#[derive(Debug)]
pub struct WorkerIo {
    /// This worker's index.
    pub index: u16,
    /// Owned RX queues with their port index.
    pub rx: Vec<(u16, RxQueue)>,
    /// This worker's TX queue of every port, by port index (`None`: this worker does not
    /// transmit there; frames for it are counted as `edge_drop`).
    pub tx: Vec<Option<TxBuffer<BURST>>>,
    /// Handoff producers to every other worker (`None` at our own index).
    pub handoff_out: Vec<Option<Producer<Mbuf>>>,
    /// Handoff consumers from every other worker.
    pub handoff_in: Vec<Consumer<Mbuf>>,
    /// Steering message producers to every other worker (`None` at our own index).
    pub steer_out: Vec<Option<Producer<Box<SteerMsg>>>>,
    /// Steering message consumers from every other worker.
    pub steer_in: Vec<Consumer<Box<SteerMsg>>>,
    /// Frames for the slow path.
    pub slow: Producer<Mbuf>,
    /// Control commands in, replies out.
    pub commands: Consumer<Box<WorkerCommand>>,
    pub replies: Producer<Box<WorkerReply>>,
    /// Where counters are published.
    pub published: Arc<CounterBlock>,
    /// Neighbour snapshots to adopt (`None`: the processor needs none).
    pub neigh: Option<NeighWorker>,
    /// TSC frequency.
    pub tsc_hz: u64,
    /// Where the buffers of refragmented datagrams come from (`Action::Fragments`;
    /// `None`: those fragments are counted as `edge_drop`).
    pub pool: Option<dpdk_bindings::Mempool>,
}

/// The workers' clock now (nanoseconds since the TSC started), for the control thread
/// (the same conversion as the loops').
pub fn tsc_now_ns() -> u64 {
    TscClock::new(dpdk_bindings::tsc_hz()).ns(rdtsc())
}

impl WorkerIo {
    /// Runs the loop until `stop` is set; returns the final counters (also published).
    pub fn run<P: Process>(mut self, proc: &mut P, stop: &AtomicBool) -> Counters {
        let mut c = Counters::default();
        let mut scratch = [0u8; SCRATCH_LEN];
        let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        // Lengths of the frames buffered in each TX buffer, to count what the device takes.
        let mut pending: Vec<ArrayVec<u32, BURST>> =
            (0..self.tx.len()).map(|_| ArrayVec::new()).collect();
        let tick_cycles = (self.tsc_hz / 1000).max(1);
        let clock = TscClock::new(self.tsc_hz);
        let start = rdtsc();
        let mut last_tick = start;
        while !stop.load(Ordering::Relaxed) {
            let t0 = rdtsc();
            let now_ns = clock.ns(t0);
            let mut work = self.receive_steering(proc, &mut c);
            let mut ports: ArrayVec<u16, BURST> = ArrayVec::new();
            for ring in 0..self.handoff_in.len() {
                burst.clear();
                let n = self.handoff_in[ring].dequeue_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                c.handoff_rx += n as u64;
                work += n;
                // Each frame carries its input port; a frame without the tag is dropped.
                ports.clear();
                burst.retain(|m| match untag_port(m) {
                    Some(p) => {
                        ports.push(p);
                        true
                    }
                    None => {
                        c.edge_drop += 1;
                        false
                    }
                });
                self.vector(
                    proc,
                    &mut c,
                    &mut pending,
                    &mut burst,
                    &ports,
                    now_ns,
                    &mut scratch,
                    false,
                );
            }
            for q in 0..self.rx.len() {
                burst.clear();
                let port = self.rx[q].0;
                let n = self.rx[q].1.rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                work += n;
                if let Some(s) = c.rx_packets.get_mut(usize::from(port)) {
                    *s += n as u64;
                    c.rx_bytes[usize::from(port)] +=
                        burst.iter().map(|m| u64::from(m.pkt_len())).sum::<u64>();
                }
                ports.clear();
                ports.extend(std::iter::repeat_n(port, n));
                self.vector(
                    proc,
                    &mut c,
                    &mut pending,
                    &mut burst,
                    &ports,
                    now_ns,
                    &mut scratch,
                    true,
                );
            }
            // Every iteration: `tick` and commands (between bursts) also retire connections.
            self.send_steering(proc, &mut c);
            self.flush_tx(&mut c, &mut pending);
            let t1 = rdtsc();
            if work > 0 {
                c.busy_cycles += t1.wrapping_sub(t0);
            }
            if t1.wrapping_sub(last_tick) >= tick_cycles {
                last_tick = t1;
                proc.tick(now_ns);
                self.adopt(proc);
                self.serve_commands(proc, &mut c);
                self.publish(proc, &mut c, t1.wrapping_sub(start));
            }
        }
        self.flush_tx(&mut c, &mut pending);
        self.publish(proc, &mut c, rdtsc().wrapping_sub(start));
        c
    }

    /// Flushes every non-empty TX buffer and counts what the device took and refused.
    fn flush_tx(&mut self, c: &mut Counters, pending: &mut [ArrayVec<u32, BURST>]) {
        for (p, (tx, pend)) in self.tx.iter_mut().zip(pending).enumerate() {
            if let Some(tx) = tx
                && !tx.is_empty()
            {
                let sent = tx.flush();
                settle(c, p, pend, sent);
            }
        }
    }

    /// Applies every steering message waiting on the rings from the other workers (before
    /// each burst, so a reply that arrives after its record is steered). Returns how many.
    fn receive_steering<P: Process>(&mut self, proc: &mut P, c: &mut Counters) -> usize {
        let mut n = 0;
        for ring in &mut self.steer_in {
            while let Some(msg) = ring.dequeue() {
                proc.receive_steering(*msg);
                n += 1;
            }
        }
        c.steer_rx += n as u64;
        n
    }

    /// Sends the steering messages the processor created (after each burst, before its
    /// frames are transmitted). One box per message: they are made per new DNAT
    /// connection whose reply belongs elsewhere (and per death of one), not per packet.
    fn send_steering<P: Process>(&mut self, proc: &mut P, c: &mut Counters) {
        let outs = &mut self.steer_out;
        proc.drain_steering(&mut |msg| {
            let ring = outs.get_mut(usize::from(msg.to())).and_then(Option::as_mut);
            match ring.map(|p| p.enqueue(Box::new(msg))) {
                Some(Ok(())) => c.steer_tx += 1,
                // Full ring (the receiver is far behind) or no such worker: the record
                // is lost; the replies of that connection are dropped as untracked.
                _ => c.steer_drop += 1,
            }
        });
    }

    /// Publishes the edge's counters with the processor's (read here, not per packet).
    fn publish<P: Process>(&self, proc: &P, c: &mut Counters, total: u64) {
        c.total_cycles = total;
        c.proc = proc.proc_counters();
        c.tx_dropped = self.tx.iter().flatten().map(TxBuffer::dropped).sum();
        self.published.publish(c);
    }

    fn adopt<P: Process>(&mut self, proc: &mut P) {
        let Some(n) = self.neigh.as_mut() else {
            return;
        };
        let g = n.share.generation.load(Ordering::Acquire);
        if g == n.seen {
            return;
        }
        n.seen = g;
        let old = proc.adopt_neighbors(n.share.current());
        // Full ring: the main lcore is behind; the old snapshot is freed here instead.
        let _ = n.back.enqueue(Box::new(old));
    }

    fn serve_commands<P: Process>(&mut self, proc: &mut P, c: &mut Counters) {
        for _ in 0..COMMANDS_PER_TICK {
            let Some(cmd) = self.commands.dequeue() else {
                break;
            };
            let reply = Box::new(proc.command(*cmd));
            c.commands += 1;
            // The control thread waits for one reply per command; a full ring means it
            // gave up on us, and the reply is dropped.
            let _ = self.replies.enqueue(reply);
        }
    }

    /// One vector (an RX burst, or a burst from a handoff ring; `ports[i]` is the input
    /// port of `burst[i]`): the processor's stages 1–2 for every frame, then each frame
    /// through its fast path or, failing that, its full pipeline, in order; then its
    /// stage 4. The burst is drained.
    #[allow(
        clippy::too_many_arguments,
        reason = "the loop's state, passed by reference"
    )]
    #[inline]
    fn vector<P: Process>(
        &mut self,
        proc: &mut P,
        c: &mut Counters,
        pending: &mut [ArrayVec<u32, BURST>],
        burst: &mut ArrayVec<Mbuf, BURST>,
        ports: &[u16],
        now_ns: u64,
        scratch: &mut [u8; SCRATCH_LEN],
        may_hand_off: bool,
    ) {
        for m in burst.iter() {
            m.prefetch_data();
        }
        {
            let frames: ArrayVec<&[u8], BURST> = burst.iter().map(Mbuf::data).collect();
            proc.prepare_vector(&frames, Prefetch::Cpu);
        }
        for (i, (mut m, &port)) in burst.drain(..).zip(ports).enumerate() {
            let opts = offload_opts(&m);
            if m.nb_segs() == 1
                && let Some(a) = proc.fast_path(i, port, m.data_mut(), &opts, now_ns)
            {
                self.act(c, pending, port, m, a, scratch, may_hand_off);
                continue;
            }
            self.handle(
                proc,
                c,
                pending,
                port,
                m,
                &opts,
                now_ns,
                scratch,
                may_hand_off,
            );
        }
        proc.finish_vector();
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the loop's state, passed by reference"
    )]
    #[inline]
    fn handle<P: Process>(
        &mut self,
        proc: &mut P,
        c: &mut Counters,
        pending: &mut [ArrayVec<u32, BURST>],
        port: u16,
        mut m: Mbuf,
        opts: &ParseOptions,
        now_ns: u64,
        scratch: &mut [u8; SCRATCH_LEN],
        may_hand_off: bool,
    ) {
        if m.nb_segs() > 1 && m.linearize().is_err() {
            c.edge_drop += 1;
            return;
        }
        let action = proc.process_offload(port, m.data_mut(), opts, !may_hand_off, now_ns, scratch);
        if let Action::Fragments { out, count } = action {
            drop(m);
            self.emit_fragments(proc, c, pending, port, out, count, scratch, may_hand_off);
            return;
        }
        self.act(c, pending, port, m, action, scratch, may_hand_off);
    }

    /// The fragments of a datagram the processor reassembled (`Action::Fragments`), each
    /// in a buffer from the pool, sent where `out` says as a frame of that action would
    /// be; a buffer that cannot be had is counted as `edge_drop` (with the fragments
    /// after it).
    #[allow(
        clippy::too_many_arguments,
        reason = "the loop's state, passed by reference"
    )]
    fn emit_fragments<P: Process>(
        &mut self,
        proc: &mut P,
        c: &mut Counters,
        pending: &mut [ArrayVec<u32, BURST>],
        port: u16,
        out: FragOut,
        count: u16,
        scratch: &[u8; SCRATCH_LEN],
        may_hand_off: bool,
    ) {
        for i in 0..count {
            let Some(mut m) = self.pool.as_ref().and_then(dpdk_bindings::Mempool::alloc) else {
                c.edge_drop += u64::from(count - i);
                return;
            };
            let room = m.tailroom();
            let Some(n) = m.append(room).and_then(|buf| proc.next_fragment(buf)) else {
                c.edge_drop += u64::from(count - i);
                return;
            };
            if !m.trim(room - n) {
                c.edge_drop += 1;
                continue;
            }
            let action = match out {
                FragOut::Port(p) => Action::Forward {
                    port: p,
                    len: u16::try_from(n).unwrap_or(u16::MAX),
                },
                FragOut::Worker(worker) => Action::Handoff { worker },
                FragOut::SlowPath => Action::SlowPath,
            };
            self.act(c, pending, port, m, action, scratch, may_hand_off);
        }
    }

    /// What the edge does with a frame once the processor decided `action`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the loop's state, passed by reference"
    )]
    #[inline]
    fn act(
        &mut self,
        c: &mut Counters,
        pending: &mut [ArrayVec<u32, BURST>],
        port: u16,
        mut m: Mbuf,
        action: Action,
        scratch: &[u8; SCRATCH_LEN],
        may_hand_off: bool,
    ) {
        match action {
            Action::Forward { port: out, len } => {
                if set_len(&mut m, usize::from(len)) {
                    self.transmit(c, pending, out, m);
                } else {
                    c.edge_drop += 1;
                }
            }
            Action::Reply { port: out, len } => {
                let len = usize::from(len);
                if len <= SCRATCH_LEN && set_len(&mut m, len) {
                    m.data_mut().copy_from_slice(&scratch[..len]);
                    self.transmit(c, pending, out, m);
                } else {
                    c.edge_drop += 1;
                }
            }
            Action::Handoff { worker } => {
                let ring = self
                    .handoff_out
                    .get_mut(usize::from(worker))
                    .and_then(Option::as_mut);
                match ring {
                    Some(p) if may_hand_off && tag_port(&mut m, port) => match p.enqueue(m) {
                        Ok(()) => c.handoff_tx += 1,
                        Err(m) => {
                            c.handoff_drop += 1;
                            drop(m);
                        }
                    },
                    // A frame handed to us must not bounce again (owner disagreement).
                    _ => c.handoff_drop += 1,
                }
            }
            Action::SlowPath if tag_port(&mut m, port) => match self.slow.enqueue(m) {
                Ok(()) => c.slowpath_tx += 1,
                Err(m) => {
                    c.slowpath_drop += 1;
                    drop(m);
                }
            },
            Action::SlowPath => c.slowpath_drop += 1,
            Action::Drop(reason) => {
                c.drops[reason as usize] += 1;
            }
            // A held fragment: its frame is freed, nothing else happens.
            Action::Held => {}
            // Only `handle` gets these (the processor's full path), and emits them.
            Action::Fragments { .. } => c.edge_drop += 1,
        }
    }

    /// Buffers `m` on `port`'s TX queue; counted as transmitted (or refused) when the
    /// buffer is flushed, by [`settle`].
    #[inline]
    fn transmit(
        &mut self,
        c: &mut Counters,
        pending: &mut [ArrayVec<u32, BURST>],
        port: u16,
        m: Mbuf,
    ) {
        let p = usize::from(port);
        match (
            self.tx.get_mut(p).and_then(Option::as_mut),
            pending.get_mut(p),
        ) {
            (Some(tx), Some(pend)) => {
                // The buffer flushes when it fills, so it never holds BURST frames here.
                if pend.try_push(m.pkt_len()).is_err() {
                    c.edge_drop += 1;
                    return;
                }
                let sent = tx.push(m);
                if tx.is_empty() {
                    settle(c, p, pend, sent);
                }
            }
            _ => c.edge_drop += 1,
        }
    }
}

/// Counts one flush of port `p`'s TX buffer that held the frames of lengths `pending`, of
/// which the device took `sent`: `tx_burst` takes a prefix, so those are transmitted and
/// the rest were refused (freed by the buffer), counted as [`DropReason::TxRefused`].
///
/// [`DropReason::TxRefused`]: crate::DropReason::TxRefused
fn settle(c: &mut Counters, p: usize, pending: &mut ArrayVec<u32, BURST>, sent: usize) {
    let refused = pending.len().saturating_sub(sent);
    c.drops[crate::DropReason::TxRefused as usize] += refused as u64;
    if p < MAX_PORTS {
        c.tx_packets[p] += (pending.len() - refused) as u64;
        c.tx_bytes[p] += pending[..pending.len() - refused]
            .iter()
            .map(|&l| u64::from(l))
            .sum::<u64>();
    }
    pending.clear();
}

/// Sets the (single-segment) frame length to `len`; false if the buffer cannot hold it.
#[inline]
fn set_len(m: &mut Mbuf, len: usize) -> bool {
    let cur = m.len();
    if len == cur {
        true
    } else if len < cur {
        m.trim(cur - len)
    } else {
        m.append(len - cur).is_some()
    }
}

/// The main lcore's loop: frames from every worker's slow-path ring through `slow`, sent
/// on the slow path's own TX queue of each port; `slow.tick` every millisecond. Sleeps
/// 100 µs when idle (nothing here is hot). Runs until `stop` is set.
#[derive(Debug)]
pub struct SlowPathIo {
    pub from_workers: Vec<Consumer<Mbuf>>,
    pub tx: Vec<Option<TxBuffer<BURST>>>,
    pub pool: dpdk_bindings::Mempool,
    pub tsc_hz: u64,
    /// Frames handled / sent / dropped.
    pub handled: u64,
    pub sent: u64,
    pub dropped: u64,
}

impl SlowPathIo {
    /// End of one slow-path iteration: flush, `between` every ~10 ms, a short sleep when
    /// there was nothing to do.
    fn end_iteration(
        &mut self,
        now: u64,
        last_between: &mut u64,
        tick_cycles: u64,
        work: usize,
        between: &mut dyn FnMut(),
    ) {
        self.flush_all();
        if now.wrapping_sub(*last_between) >= tick_cycles * 10 {
            *last_between = now;
            between();
        }
        if work == 0 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    fn flush_all(&mut self) {
        for tx in self.tx.iter_mut().flatten() {
            if !tx.is_empty() {
                tx.flush();
            }
        }
    }

    /// Runs `slow` (frames rewritten in place, [`SlowProcess`]) until `stop` is set,
    /// calling `between` (signal checks) every ~10 ms: the loop [`Self::run_pipeline`]
    /// runs, with `slow` in the pipeline's place.
    pub fn run<S: SlowProcess>(
        &mut self,
        slow: &mut S,
        stop: &AtomicBool,
        between: &mut dyn FnMut(),
    ) {
        self.run_stage(&mut InPlace(slow), stop, between);
    }

    /// The pipeline's slow path ([`SlowPath`] on mbufs): frames from the workers, its
    /// output transmitted on the slow path's TX queues, neighbour snapshots published to
    /// `share` when they change, replaced snapshots from the workers freed here. Runs
    /// until `stop` is set, calling `between` every ~10 ms.
    pub fn run_pipeline(
        &mut self,
        slow: &mut SlowPath<Mbuf>,
        share: &NeighShare,
        returned: &mut [Consumer<Box<Arc<NeighborSnapshot>>>],
        stop: &AtomicBool,
        between: &mut dyn FnMut(),
    ) {
        let mut stage = PipelineStage {
            slow,
            share,
            returned,
        };
        self.run_stage(&mut stage, stop, between);
    }

    /// The one slow-path loop: frames from every worker's ring through `stage`, a tick
    /// every millisecond, then what the stage put out transmitted on the slow path's TX
    /// queues (a frame for a port without one, or one that finds no mbuf, is dropped).
    fn run_stage(
        &mut self,
        stage: &mut dyn SlowStage,
        stop: &AtomicBool,
        between: &mut dyn FnMut(),
    ) {
        let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        let mut out: Vec<SlowOut<Mbuf>> = Vec::with_capacity(64);
        let tick_cycles = (self.tsc_hz / 1000).max(1);
        let clock = TscClock::new(self.tsc_hz);
        let mut last_tick = rdtsc();
        let mut last_between = last_tick;
        while !stop.load(Ordering::Relaxed) {
            let now = rdtsc();
            let now_ns = clock.ns(now);
            let mut work = 0;
            for ring in 0..self.from_workers.len() {
                burst.clear();
                work += self.from_workers[ring].dequeue_burst(&mut burst);
                for mut m in burst.drain(..) {
                    self.handled += 1;
                    match untag_port(&mut m) {
                        Some(port) => stage.handle(port, m, now_ns, &mut out),
                        None => self.dropped += 1,
                    }
                }
            }
            if now.wrapping_sub(last_tick) >= tick_cycles {
                last_tick = now;
                stage.tick(now_ns, &mut out);
            }
            for o in out.drain(..) {
                match o {
                    SlowOut::Transmit { port, frame } => {
                        match self.tx.get_mut(usize::from(port)).and_then(Option::as_mut) {
                            Some(tx) => {
                                tx.push(frame);
                                self.sent += 1;
                            }
                            None => self.dropped += 1,
                        }
                    }
                    SlowOut::Send { port, frame } => {
                        let tx = self.tx.get_mut(usize::from(port)).and_then(Option::as_mut);
                        match (tx, self.pool.alloc()) {
                            (Some(tx), Some(mut m)) => match m.append(frame.len()) {
                                Some(buf) => {
                                    buf.copy_from_slice(&frame);
                                    tx.push(m);
                                    self.sent += 1;
                                }
                                None => self.dropped += 1,
                            },
                            _ => self.dropped += 1,
                        }
                    }
                    SlowOut::Consumed(_) => {}
                    SlowOut::Drop { .. } => self.dropped += 1,
                }
            }
            self.end_iteration(now, &mut last_between, tick_cycles, work, between);
        }
        self.flush_all();
    }
}

/// What [`SlowPathIo`]'s loop runs: one frame at a time (its port tag removed), and a
/// tick every millisecond; both put what is to be sent or freed in `out`.
trait SlowStage {
    fn handle(&mut self, port: u16, frame: Mbuf, now_ns: u64, out: &mut Vec<SlowOut<Mbuf>>);
    fn tick(&mut self, now_ns: u64, out: &mut Vec<SlowOut<Mbuf>>);
}

/// The pipeline's slow path with where its neighbour snapshots go.
struct PipelineStage<'a> {
    slow: &'a mut SlowPath<Mbuf>,
    share: &'a NeighShare,
    // The rings' type (a thin pointer per slot), as `run_pipeline` takes it.
    #[allow(clippy::redundant_allocation)]
    returned: &'a mut [Consumer<Box<Arc<NeighborSnapshot>>>],
}

impl SlowStage for PipelineStage<'_> {
    fn handle(&mut self, port: u16, frame: Mbuf, now_ns: u64, out: &mut Vec<SlowOut<Mbuf>>) {
        self.slow.handle(port, frame, now_ns / 1_000_000, out);
    }

    fn tick(&mut self, now_ns: u64, out: &mut Vec<SlowOut<Mbuf>>) {
        self.slow.tick(now_ns / 1_000_000, out);
        if let Some(snap) = self.slow.snapshot_if_changed() {
            self.share.publish(snap);
        }
        for r in self.returned.iter_mut() {
            while r.dequeue().is_some() {}
        }
    }
}

/// A [`SlowProcess`] (frames rewritten in place) as a stage.
struct InPlace<'a, S>(&'a mut S);

impl<S: SlowProcess> SlowStage for InPlace<'_, S> {
    fn handle(&mut self, port: u16, mut frame: Mbuf, now_ns: u64, out: &mut Vec<SlowOut<Mbuf>>) {
        match self.0.handle(port, frame.data_mut(), now_ns) {
            Some((port, len)) if set_len(&mut frame, usize::from(len)) => {
                out.push(SlowOut::Transmit { port, frame });
            }
            // The loop counts a drop without reading its reason; a `SlowProcess` gives
            // none.
            _ => out.push(SlowOut::Drop {
                frame,
                reason: crate::DropReason::FilterDrop,
            }),
        }
    }

    fn tick(&mut self, now_ns: u64, out: &mut Vec<SlowOut<Mbuf>>) {
        self.0.tick(now_ns, &mut |port, bytes| {
            out.push(SlowOut::Send {
                port,
                frame: bytes.to_vec(),
            });
        });
    }
}
