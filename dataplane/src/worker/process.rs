//! What the I/O edge drives: one packet processor per worker and one slow-path handler on
//! the main lcore. The real ones are the pipeline (`pipeline.rs`) and its slow path; the
//! trivial [`PortForward`] here moves frames between paired ports (0<->1, 2<->3, ...) and
//! lets the edge be run and tested before, and independently of, the pipeline.

use std::sync::Arc;

use crate::conntrack::alloc::Prefetch;
use crate::nat::alloc::Steering;
use crate::route::NeighborSnapshot;
use crate::wire::ParseOptions;
use crate::worker::Pipeline;
use crate::worker::counters::ProcCounters;
use crate::worker::{Action, WorkerCommand, WorkerReply};

/// A per-worker packet processor, called by the worker loop (no allocation, no locks, no
/// syscalls in `process`).
pub trait Process: Send {
    /// Decide what happens to one received frame. `frame` may be rewritten in place;
    /// [`Action::Reply`] frames are built in `scratch` (at least
    /// [`SCRATCH_LEN`](crate::worker::SCRATCH_LEN) bytes).
    fn process(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action;
    /// Decide what happens to a frame another worker handed to this one (from a handoff
    /// ring): the owner check is skipped, the frame must not bounce again. The default
    /// is [`Process::process`] (processors that own nothing).
    fn process_handoff(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        self.process(in_port, frame, now_ns, scratch)
    }
    /// [`Process::process`] or, for a frame from a handoff ring (`handed_off`),
    /// [`Process::process_handoff`], with the NIC's checksum verdicts for the frame
    /// (`opts`). The default ignores them (processors that parse nothing).
    fn process_offload(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        handed_off: bool,
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        let _ = opts;
        dispatch(self, handed_off, in_port, frame, now_ns, scratch)
    }
    /// The next fragment of an [`Action::Fragments`], written into `out`: its length, or
    /// `None` when there is none left or `out` is too short. The default has none
    /// (processors that do not reassemble).
    fn next_fragment(&mut self, out: &mut [u8]) -> Option<usize> {
        let _ = out;
        None
    }
    /// Before a vector (a received burst) is processed: whatever can be done for all its
    /// frames at once (hash their keys, prefetch the connection table's lines they will
    /// touch with `hint`: the edge gives [`Prefetch::Cpu`], a direct `prefetcht0` per
    /// line, no call). The default does nothing.
    fn prepare_vector(&mut self, frames: &[&[u8]], hint: Prefetch) {
        let _ = (frames, hint);
    }
    /// Frame `i` of the vector given to [`Process::prepare_vector`], in order: its
    /// action when the processor's fast path takes it, else `None` (the frame is
    /// unchanged and the edge calls [`Process::process_offload`] next). The default
    /// takes none.
    fn fast_path(
        &mut self,
        i: usize,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
    ) -> Option<Action> {
        let _ = (i, in_port, frame, opts, now_ns);
        None
    }
    /// After the vector's frames: whatever was deferred to once per vector.
    fn finish_vector(&mut self) {}
    /// Answer a control command (between bursts).
    fn command(&mut self, cmd: WorkerCommand) -> WorkerReply;
    /// Bounded periodic work (timers), about every millisecond.
    fn tick(&mut self, now_ns: u64);
    /// The processor's own counters, read by the I/O edge when it publishes its counters
    /// (about every millisecond, never per packet). The default is all zeros.
    fn proc_counters(&self) -> ProcCounters {
        ProcCounters::default()
    }
    /// Steering messages (DNAT reply tuples owned elsewhere, and their withdrawal) this
    /// processor created since the last call, each passed to `send`; the I/O edge calls it
    /// after each burst and puts each message on the ring to [`SteerMsg::to`]. The
    /// default has none.
    fn drain_steering(&mut self, send: &mut dyn FnMut(SteerMsg)) {
        let _ = send;
    }
    /// A steering message from another worker (the I/O edge calls it before each burst).
    /// The default ignores it.
    fn receive_steering(&mut self, msg: SteerMsg) {
        let _ = msg;
    }
    /// Adopt a new neighbour snapshot published by the slow path; returns the old one
    /// (the I/O edge hands it back to the main lcore, which frees it). The default keeps
    /// nothing.
    fn adopt_neighbors(&mut self, snap: Arc<NeighborSnapshot>) -> Arc<NeighborSnapshot> {
        snap
    }
}

/// A steering message between workers (docs/architecture.md, "Flow ownership").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SteerMsg {
    /// Packets with this reply tuple belong to `owner`: hand them there on a miss.
    Add(Steering),
    /// The connection died on `owner`: withdraw the record.
    Remove(Steering),
}

impl SteerMsg {
    /// The worker the message goes to (the one receiving the replies).
    pub fn to(&self) -> u16 {
        match self {
            SteerMsg::Add(s) | SteerMsg::Remove(s) => s.reply_worker,
        }
    }
}

impl Process for Pipeline {
    fn process(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        Pipeline::process(self, in_port, frame, now_ns, scratch)
    }

    fn process_handoff(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        Pipeline::process_handoff(self, in_port, frame, now_ns, scratch)
    }

    fn command(&mut self, cmd: WorkerCommand) -> WorkerReply {
        Pipeline::command(self, cmd)
    }

    fn next_fragment(&mut self, out: &mut [u8]) -> Option<usize> {
        Pipeline::next_fragment(self, out)
    }

    fn process_offload(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        handed_off: bool,
        now_ns: u64,
        scratch: &mut [u8],
    ) -> Action {
        Pipeline::process_frame(self, in_port, frame, opts, handed_off, now_ns, scratch)
    }

    fn prepare_vector(&mut self, frames: &[&[u8]], hint: Prefetch) {
        // One instance per arm: the edge's `Cpu` inlines the prefetch instruction at each
        // of the stages' hints (a `fn` pointer was an indirect call per line).
        match hint {
            Prefetch::Cpu => Pipeline::prepare_vector(self, frames, |p| Prefetch::Cpu.line(p)),
            other => Pipeline::prepare_vector(self, frames, |p| other.line(p)),
        }
    }

    fn fast_path(
        &mut self,
        i: usize,
        in_port: u16,
        frame: &mut [u8],
        opts: &ParseOptions,
        now_ns: u64,
    ) -> Option<Action> {
        Pipeline::fast_path(self, i, in_port, frame, opts, now_ns)
    }

    fn finish_vector(&mut self) {
        Pipeline::finish_vector(self);
    }

    fn tick(&mut self, now_ns: u64) {
        Pipeline::tick(self, now_ns);
    }

    fn proc_counters(&self) -> ProcCounters {
        Pipeline::proc_counters(self)
    }

    fn adopt_neighbors(&mut self, snap: Arc<NeighborSnapshot>) -> Arc<NeighborSnapshot> {
        Pipeline::adopt_neighbors(self, snap)
    }

    fn drain_steering(&mut self, send: &mut dyn FnMut(SteerMsg)) {
        for s in Pipeline::take_steering(self) {
            send(SteerMsg::Add(s));
        }
        for s in Pipeline::take_unsteering(self) {
            send(SteerMsg::Remove(s));
        }
    }

    fn receive_steering(&mut self, msg: SteerMsg) {
        match msg {
            SteerMsg::Add(s) => Pipeline::add_steering(self, s),
            SteerMsg::Remove(s) => Pipeline::remove_steering(self, &s),
        }
    }
}

/// What the I/O edge calls for one frame: [`Process::process_handoff`] for a frame from
/// a handoff ring (`handed_off`), [`Process::process`] for one from an RX queue.
#[inline]
pub fn dispatch<P: Process + ?Sized>(
    proc: &mut P,
    handed_off: bool,
    in_port: u16,
    frame: &mut [u8],
    now_ns: u64,
    scratch: &mut [u8],
) -> Action {
    if handed_off {
        proc.process_handoff(in_port, frame, now_ns, scratch)
    } else {
        proc.process(in_port, frame, now_ns, scratch)
    }
}

/// The slow path on the main lcore: ARP / neighbour discovery and frames waiting for a
/// neighbour. Returns frames to transmit through `emit(port, bytes)`.
pub trait SlowProcess: Send {
    /// One frame the workers gave up on; `frame` may be rewritten in place. Returns
    /// `Some((port, len))` to transmit the (rewritten) frame, `None` to drop it.
    fn handle(&mut self, in_port: u16, frame: &mut [u8], now_ns: u64) -> Option<(u16, u16)>;
    /// Periodic work (resolution retries); frames to send go to `emit`.
    fn tick(&mut self, now_ns: u64, emit: &mut dyn FnMut(u16, &[u8]));
}

/// Forwards every frame unchanged to the paired port (`port ^ 1`) when it exists, else
/// back out of the port it came in on. Owns nothing: every worker may process any frame.
#[derive(Debug, Clone)]
pub struct PortForward {
    ports: u16,
}

impl PortForward {
    /// A forwarder over `ports` ports.
    pub fn new(ports: u16) -> Self {
        PortForward { ports }
    }
}

impl Process for PortForward {
    fn process(&mut self, in_port: u16, frame: &mut [u8], _now: u64, _s: &mut [u8]) -> Action {
        let peer = in_port ^ 1;
        let port = if peer < self.ports { peer } else { in_port };
        match u16::try_from(frame.len()) {
            Ok(len) => Action::Forward { port, len },
            Err(_) => Action::Drop(crate::DropReason::BadIpLength),
        }
    }

    fn command(&mut self, cmd: WorkerCommand) -> WorkerReply {
        match cmd {
            WorkerCommand::CtList { .. } => WorkerReply::CtPage {
                entries: Vec::new(),
                next_cursor: None,
            },
            WorkerCommand::CtDelete { .. } => WorkerReply::Deleted {
                count: 0,
                more: false,
            },
            WorkerCommand::CtCount { .. } => WorkerReply::Count {
                count: 0,
                next_cursor: None,
            },
            WorkerCommand::CtStats => WorkerReply::Stats(Default::default()),
            WorkerCommand::HelperStats => WorkerReply::HelperStats(Default::default()),
            WorkerCommand::SetTunables(_) => WorkerReply::Done,
            WorkerCommand::TakeEvents { .. } => WorkerReply::Events {
                events: Vec::new(),
                lost: 0,
            },
            WorkerCommand::TakeRawEvents { .. } => WorkerReply::RawEvents {
                events: Vec::new(),
                lost: 0,
            },
            WorkerCommand::CtSync { records, .. } => WorkerReply::Synced {
                applied: 0,
                failed: records.len() as u64,
            },
        }
    }

    fn tick(&mut self, _now_ns: u64) {}
}

/// A slow path that drops everything (no neighbour resolution): used with
/// [`PortForward`], where hosts resolve each other across the bridge.
#[derive(Debug, Default, Clone)]
pub struct DropSlowPath {
    /// Frames dropped.
    pub dropped: u64,
}

impl SlowProcess for DropSlowPath {
    fn handle(&mut self, _in_port: u16, _frame: &mut [u8], _now_ns: u64) -> Option<(u16, u16)> {
        self.dropped += 1;
        None
    }

    fn tick(&mut self, _now_ns: u64, _emit: &mut dyn FnMut(u16, &[u8])) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::CtMatcher;

    #[test]
    fn forwards_to_the_paired_port() {
        let mut f = PortForward::new(3);
        let mut frame = [0u8; 60];
        let mut s = [0u8; 8];
        assert_eq!(
            f.process(0, &mut frame, 0, &mut s),
            Action::Forward { port: 1, len: 60 }
        );
        assert_eq!(
            f.process(1, &mut frame, 0, &mut s),
            Action::Forward { port: 0, len: 60 }
        );
        // Port 2 has no partner (only 3 ports): hairpin.
        assert_eq!(
            f.process(2, &mut frame, 0, &mut s),
            Action::Forward { port: 2, len: 60 }
        );
    }

    #[test]
    fn answers_commands_with_an_empty_table() {
        let mut f = PortForward::new(2);
        assert_eq!(
            f.command(WorkerCommand::CtCount {
                filter: CtMatcher::default(),
                cursor: 0,
                budget: 16,
            }),
            WorkerReply::Count {
                count: 0,
                next_cursor: None
            }
        );
        assert!(matches!(
            f.command(WorkerCommand::CtList {
                filter: CtMatcher::default(),
                cursor: 0,
                limit: 10
            }),
            WorkerReply::CtPage {
                next_cursor: None,
                ..
            }
        ));
    }
}
