//! What the pipeline decides for one received frame, for the I/O edge to carry out (a leaf:
//! the pipeline, its fast path and the edge all name it).

use crate::DropReason;

/// What the I/O edge does with one received frame after the pipeline ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Transmit the (possibly rewritten in place) frame, now `len` bytes long, on port
    /// `port`.
    Forward { port: u16, len: u16 },
    /// The pipeline built a new frame (an ICMP error, an echo reply, a TCP reset) of `len`
    /// bytes in the caller's scratch buffer: transmit it on `port`, drop the received one.
    Reply { port: u16, len: u16 },
    /// Another worker owns this flow: hand the frame to it unchanged (counted).
    Handoff { worker: u16 },
    /// ARP, IPv6 neighbour discovery, or a next hop without a resolved MAC: give the
    /// frame to the slow path (which queues a few per neighbour while resolving).
    SlowPath,
    /// Drop and count under `reason`.
    Drop(DropReason),
    /// A fragment copied into the worker's reassembly table (`frag.rs`): free the frame;
    /// nothing is sent yet, nothing is dropped.
    Held,
    /// The frame completed a datagram that leaves as `count` fragments, each taken with
    /// `Pipeline::next_fragment` (`Process::next_fragment`) into a buffer of the edge's,
    /// in order, to `out`; the received frame is freed.
    Fragments { out: FragOut, count: u16 },
}

/// Where the fragments of an [`Action::Fragments`] go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragOut {
    /// Transmitted on this port.
    Port(u16),
    /// Handed to this worker (the connection's owner), which reassembles them again.
    Worker(u16),
    /// Given to the slow path (next hop unresolved), each ready but for its MAC.
    SlowPath,
}

/// Minimum size of the scratch buffer passed with each frame (room for an ICMP error
/// quoting 576 bytes, plus VLAN-tagged Ethernet).
pub const SCRATCH_LEN: usize = 1536;
