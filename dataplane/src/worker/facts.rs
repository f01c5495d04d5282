//! The packet facts beyond the summary that the loaded ruleset reads
//! (`rules/compile/facts.rs`): gathered once per packet from the frame, completed per
//! hook with what the route gives, and the MSS clamping an evaluation asked for written
//! back before the packet leaves. A ruleset that reads none costs one test per packet.

use super::{CtInfo, Pipeline};
use crate::conntrack::{Direction, FlowKey};
use crate::route::NextHop;
use crate::rules::compile::{CtTuple, Facts, Needs, rt_mss};
use crate::wire::tcpopt::{self, Mss};
use crate::wire::{Addr, Family, IpInfo, L2Info};

fn ct_tuple(k: FlowKey) -> CtTuple {
    CtTuple {
        src: k.src,
        dst: k.dst,
        sport: k.sport,
        dport: k.dport,
    }
}

/// `meta pkttype` of a frame received on a port with MAC `mac` (0 host, 1 broadcast, 2
/// multicast, 3 other).
fn pkttype(l2: &L2Info, mac: [u8; 6]) -> u8 {
    match l2.dst_mac {
        m if m == mac => 0,
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff] => 1,
        [m, ..] if m & 1 != 0 => 2,
        _ => 3,
    }
}

/// The DSCP of the packet at `ip.l3_off` (IPv4 TOS or IPv6 traffic class, top 6 bits).
fn dscp(frame: &[u8], ip: &IpInfo) -> u8 {
    let l3 = usize::from(ip.l3_off);
    let (b0, b1) = (
        frame.get(l3).copied().unwrap_or(0),
        frame.get(l3 + 1).copied().unwrap_or(0),
    );
    match ip.family {
        Family::V4 => b1 >> 2,
        Family::V6 => (((b0 & 0x0f) << 4) | (b1 >> 4)) >> 2,
    }
}

fn is_multicast(a: Addr) -> bool {
    match a.to_v4() {
        Some(v4) => (224..240).contains(&v4[0]),
        None => a.0[0] == 0xff,
    }
}

impl Pipeline {
    /// The frame's facts the loaded ruleset reads (the defaults when it reads none). The
    /// original tuple of a packet that starts a connection is its own, before NAT.
    pub(super) fn frame_facts(
        &self,
        frame: &[u8],
        l2: &L2Info,
        in_port: u16,
        ip: &IpInfo,
    ) -> Facts {
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
        if needs.has(Needs::TCP_OPTS) {
            f.tcp_opts = tcpopt::read_opts(frame, ip);
        }
        if needs.has(Needs::PKTTYPE) {
            f.pkttype = pkttype(l2, self.port_mac(in_port));
        }
        if needs.has(Needs::DSCP) {
            f.dscp = dscp(frame, ip);
        }
        if needs.has(Needs::CT) {
            f.ct_tuples = FlowKey::from_info(ip, 0).map(|k| [ct_tuple(k), ct_tuple(k.inverse())]);
        }
        f
    }

    /// The facts of one hook's evaluation of `ip` (the view: its destination after
    /// prerouting NAT): the frame's, the MSS an earlier hook lowered, `rt mtu`'s MSS for
    /// output port `oif` (the smaller of its MTU and the MTU of the route back to the
    /// source, as Linux's `nft_rt`), the connection's direction, tuples and time left,
    /// and the `fib` lookups.
    pub(super) fn hook_facts(
        &self,
        needs: Needs,
        ip: &IpInfo,
        (iif, oif): (Option<u16>, Option<u16>),
        ct: CtInfo,
    ) -> Facts {
        let mut f = self.facts;
        if needs.has(Needs::CT | Needs::CT_EXPIRATION) {
            self.ct_facts(&mut f, ip, ct);
        }
        if needs.has(Needs::FIB) {
            f.fib_daddr_type = if self.routes.local_port(ip.dst).is_some() {
                2
            } else if ip.dst.to_v4() == Some([255; 4]) {
                3
            } else if is_multicast(ip.dst) {
                5
            } else {
                match self.routes.next_hop(ip.family, ip.dst) {
                    Some(NextHop::Forward { .. }) => 1,
                    Some(NextHop::Blackhole) => 6,
                    None => 7,
                }
            };
            f.fib_rpf = self.routes.local_port(ip.src).is_none()
                && matches!(
                    self.routes.next_hop(ip.family, ip.src),
                    Some(NextHop::Forward { port, .. }) if Some(port) == iif
                );
        }
        if let (Some(new), Mss::Found { off, .. }) = (self.mss_to, f.mss) {
            f.mss = Mss::Found { off, value: new };
            f.tcp_opts.mss = f.tcp_opts.mss.map(|_| new);
        }
        if let Some(d) = self.dscp_to {
            f.dscp = d;
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

    /// `ct direction`, the tuples and `ct expiration`: the entry's; for a packet that
    /// starts a connection, direction original, its own tuple and the inverse of the
    /// view's (after DNAT, as Linux's reply tuple once NAT is set up), 0 ms left (Linux:
    /// the timeout is not running before the confirmation); none without a connection.
    fn ct_facts(&self, f: &mut Facts, ip: &IpInfo, ct: CtInfo) {
        match (ct.entry, ct.new_key) {
            (Some((id, dir)), _) => {
                f.ct_dir = Some(u8::from(dir == Direction::Reply));
                f.ct_tuples = match (
                    self.ct.tuple(id, Direction::Original),
                    self.ct.tuple(id, Direction::Reply),
                ) {
                    (Some(o), Some(r)) => Some([ct_tuple(o), ct_tuple(r)]),
                    _ => None,
                };
                f.ct_expiration = self
                    .ct
                    .timeout_ns(id, self.now_ns)
                    .map(|ns| u32::try_from(ns / 1_000_000).unwrap_or(u32::MAX));
            }
            (None, Some(_)) => {
                f.ct_dir = Some(0);
                if let (Some([o, _]), Some(v)) = (f.ct_tuples, FlowKey::from_info(ip, 0)) {
                    f.ct_tuples = Some([o, ct_tuple(v.inverse())]);
                }
                f.ct_expiration = Some(0);
            }
            (None, None) => {
                f.ct_dir = None;
                f.ct_tuples = None;
                f.ct_expiration = None;
            }
        }
    }

    /// Writes the MSS the hooks lowered (`tcp option maxseg size set`) into the frame,
    /// with the TCP checksum updated (not counted: neither is it in the kernel).
    /// And the DSCP they set (`ip|ip6 dscp set`), with the IPv4 header checksum updated.
    pub(super) fn clamp_mss(&mut self, frame: &mut [u8], ip: &IpInfo) {
        if let (Some(new), Mss::Found { off, .. }) = (self.mss_to.take(), self.facts.mss) {
            // The offsets come from this frame's walk: within the frame.
            let _ = tcpopt::set_mss(frame, ip, off, new);
        }
        if let Some(d) = self.dscp_to.take() {
            let _ = crate::wire::dscp::set_dscp(frame, ip, d);
        }
    }
}
