//! The packet facts beyond the summary that the loaded ruleset reads
//! (`rules/compile/facts.rs`): gathered once per packet from the frame, completed per
//! hook with what the route gives, and the MSS clamping an evaluation asked for written
//! back before the packet leaves. A ruleset that reads none costs one test per packet.

use super::Pipeline;
use crate::route::NextHop;
use crate::rules::compile::{Facts, Needs, rt_mss};
use crate::wire::IpInfo;
use crate::wire::tcpopt::{self, Mss};

impl Pipeline {
    /// The frame's facts the loaded ruleset reads (the defaults when it reads none).
    pub(super) fn frame_facts(&self, frame: &[u8], ip: &IpInfo) -> Facts {
        let mut f = Facts::default();
        let Some(rules) = &self.rules else {
            return f;
        };
        let needs = rules.get().needs();
        if !needs.any() {
            return f;
        }
        if needs.has(Needs::MSS) {
            f.mss = tcpopt::find_mss(frame, ip);
        }
        f
    }

    /// The facts of one hook's evaluation: the frame's, the MSS an earlier hook lowered,
    /// and `rt mtu`'s MSS for output port `oif` (the smaller of its MTU and the MTU of
    /// the route back to the source, as Linux's `nft_rt`).
    pub(super) fn hook_facts(&self, needs: Needs, ip: &IpInfo, oif: Option<u16>) -> Facts {
        let mut f = self.facts;
        if let (Some(new), Mss::Found { off, .. }) = (self.mss_to, f.mss) {
            f.mss = Mss::Found { off, value: new };
        }
        if needs.has(Needs::RT_MSS) {
            let mtu = |p: u16| self.ports.get(usize::from(p)).map(|p| p.mtu);
            let out = oif.and_then(mtu);
            let back = match self.routes.next_hop(ip.family, ip.src) {
                Some(NextHop::Forward { port, .. }) => mtu(port),
                _ => None,
            };
            let path = match (out, back) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => 0,
            };
            f.rt_mss = rt_mss(ip.family, path);
        }
        f
    }

    /// Writes the MSS the hooks lowered (`tcp option maxseg size set`) into the frame,
    /// with the TCP checksum updated (not counted: neither is it in the kernel).
    pub(super) fn clamp_mss(&mut self, frame: &mut [u8], ip: &IpInfo) {
        if let (Some(new), Mss::Found { off, .. }) = (self.mss_to.take(), self.facts.mss) {
            // The offsets come from this frame's walk: within the frame.
            let _ = tcpopt::set_mss(frame, ip, off, new);
        }
    }
}
