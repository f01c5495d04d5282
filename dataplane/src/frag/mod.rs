//! IP fragment reassembly for tracking, and refragmentation on output (Linux's
//! `nf_defrag_ipv4` / `nf_defrag_ipv6` and `ip_do_fragment` / `ip6_fragment`).
//!
//! - [`reasm`]: the per-worker reassembly table. Fixed memory allocated once (a chunk
//!   arena sized by `ipfrag_high_thresh`, a queue slab, a hash index), Linux's keys,
//!   limits, overlap rules and SNMP counter names. A complete datagram is written into a
//!   caller-owned [`DatagramBuf`] together with its [`Geometry`] (the original fragment
//!   boundaries and the largest fragment's size).
//! - [`refrag`]: turns a (NAT-rewritten) datagram and its geometry back into fragments no
//!   larger than the originals and the output MTU, written into caller-provided buffers.
//!
//! Design, semantics and the differences from Linux: `docs/conntrack.md`, "IP fragments".
//! Everything here works on byte slices; nothing allocates after construction.

pub mod reasm;
pub mod refrag;

#[cfg(test)]
pub(crate) mod testdata;
#[cfg(test)]
mod tests;

pub use reasm::{
    DatagramBuf, FragDrop, FragKey, FragLimits, FragStats, Geometry, MAX_DATAGRAM, MAX_FRAGS,
    MAX_HDR, Outcome, ReasmTable, Reassembled,
};
pub use refrag::{Piece, Plan, plan, write_fragment};
