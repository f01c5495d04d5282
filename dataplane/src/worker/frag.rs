//! The fragment stage of the pipeline (Linux's `nf_defrag_ipv4` / `nf_defrag_ipv6` in
//! front of conntrack, `ip_do_fragment` / `ip6_fragment` behind it), on the engines of
//! `crate::frag`.
//!
//! `run_packet` sends a fragment here (one branch on the fragment bits the parse already
//! produced; non-fragments never enter). The fragment is copied into the worker's
//! reassembly table of its family and its frame is freed ([`Action::Held`]); the fragment
//! that completes a datagram makes the datagram a frame of its own (the completing
//! fragment's L2 header, then the datagram) that goes through the whole pipeline once:
//! owner check, conntrack, rules and NAT see one packet with its ports. What the pipeline
//! decides for it becomes [`Action::Fragments`]: the datagram leaves (forwarded, handed
//! to the owning worker, or given to the slow path for its neighbour) as fragments no
//! larger than the originals, which the I/O edge takes one by one with
//! [`Pipeline::next_fragment`] into buffers of its own.
//!
//! Cross-worker (`docs/conntrack.md`, "Fragments and flow ownership"): every fragment of a
//! datagram reaches one worker (RSS hashes fragments by addresses; without hardware RSS
//! the frames are reassembled before the software owner check, which would spread them
//! by ports). When the owner is another worker, the datagram crosses the existing handoff
//! ring as its original fragments, and the owner reassembles them again (a handed-off
//! frame skips the owner check). Cost: that datagram is reassembled twice; a full ring
//! loses a fragment (`handoff_drop`) and the owner's incomplete datagram times out
//! (`ReasmTimeout`).

use super::frag_state::FragState;
use super::{Action, Pipeline};
use crate::DropReason;
use crate::frag::{self, Outcome};
use crate::wire::{self, Family, IpInfo};
use crate::worker::FragOut;

impl Pipeline {
    /// A fragment (`ip.frag` is not `None`): held, refused (counted by the engine under
    /// its `FragDrop` and here under its `DropReason`), or the last one of its datagram,
    /// which then runs through the pipeline as one packet.
    pub(super) fn defrag(
        &mut self,
        in_port: u16,
        frame: &[u8],
        ip: &IpInfo,
        scratch: &mut [u8],
        handed_off: bool,
    ) -> Action {
        let l3 = usize::from(ip.l3_off);
        let st = &mut self.frag;
        let table = match ip.family {
            Family::V4 => &mut st.v4,
            Family::V6 => &mut st.v6,
        };
        let r = match table.push(self.now_ns, &frame[l3..], &mut st.dgram) {
            Err(why) => return self.drop(why.reason()),
            Ok(Outcome::Held) => return Action::Held,
            // The parse saw a fragment; the engine would only disagree on a header it
            // refuses.
            Ok(Outcome::NotFragment) => return self.drop(DropReason::FragInvalid),
            Ok(Outcome::Complete(r)) => r,
        };
        let mut buf = std::mem::take(&mut self.frag.frame);
        let len = l3 + r.len;
        buf[..l3].copy_from_slice(&frame[..l3]);
        buf[l3..len].copy_from_slice(&self.frag.dgram.bytes()[..r.len]);
        self.frag.current = Some(r);
        self.frag.l3_off = l3;
        self.frag.plan = None;
        self.frag.active = true;
        // The NIC's checksum verdicts were about the fragments: the datagram's L4
        // checksum is verified in software (as the tunables allow).
        let opts = self.parse_options(&wire::VERIFY_ALL);
        let now = self.now_ns;
        let a = self.run_packet(in_port, &mut buf[..len], &opts, now, scratch, handed_off);
        self.frag.active = false;
        // The datagram is not a received frame (its fragments were counted).
        self.counters.rx -= 1;
        self.frag.frame = buf;
        let out = match a {
            Action::Forward { port, .. } => Some((FragOut::Port(port), self.port_mtu(port))),
            // Unchanged: the original boundaries, for the owner to reassemble again.
            Action::Handoff { worker } => Some((FragOut::Worker(worker), usize::MAX)),
            // Complete but for the next hop's MAC: the slow path resolves it; the output
            // port is not known here, so the smallest port MTU bounds the fragments.
            Action::SlowPath => {
                let mtu = self.ports.iter().map(|p| usize::from(p.mtu)).min();
                Some((FragOut::SlowPath, mtu.unwrap_or(usize::MAX)))
            }
            _ => None,
        };
        let Some((out, mtu)) = out else {
            self.frag.current = None;
            return a;
        };
        match frag::plan(&r, mtu) {
            Ok(plan) => {
                let count = u16::try_from(plan.count()).unwrap_or(u16::MAX);
                self.frag.plan = Some(plan);
                Action::Fragments { out, count }
            }
            Err(reason) => {
                self.frag.current = None;
                self.drop(reason)
            }
        }
    }

    /// The next fragment of the datagram an [`Action::Fragments`] announced, written into
    /// `out` (L2 header included): its length, or `None` when every fragment was taken
    /// or `out` is too short for this one (the edge counts it).
    pub fn next_fragment(&mut self, out: &mut [u8]) -> Option<usize> {
        let st = &mut self.frag;
        let r = st.current?;
        let Some(piece) = st.plan.as_mut().and_then(Iterator::next) else {
            st.current = None;
            st.plan = None;
            return None;
        };
        let l3 = st.l3_off;
        out.get_mut(..l3)?.copy_from_slice(&st.frame[..l3]);
        let n = frag::write_fragment(&st.frame[l3..l3 + r.len], &r, piece, &mut out[l3..])?;
        Some(l3 + n)
    }

    /// Whether a packet longer than `mtu` must be refused (Linux `ip_exceeds_mtu` /
    /// `ip6_pkt_too_big` with `frag_max_size`): a reassembled datagram only when one of its
    /// original fragments was longer and it may not be refragmented (IPv4 with DF on
    /// every fragment, IPv6); any other packet always. Called only past the length check.
    pub(super) fn exceeds_mtu(&self, mtu: u16) -> bool {
        match self.frag.current {
            Some(r) if self.frag.active => {
                (r.geometry.df || r.geometry.family == Family::V6) && r.geometry.max_size > mtu
            }
            _ => true,
        }
    }

    fn port_mtu(&self, port: u16) -> usize {
        self.ports
            .get(usize::from(port))
            .map_or(usize::MAX, |p| usize::from(p.mtu))
    }

    /// The worker's reassembly state (tests and counters).
    pub fn frag_state(&self) -> &FragState {
        &self.frag
    }
}
