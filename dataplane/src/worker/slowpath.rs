//! The slow path: ARP and IPv6 neighbour discovery, and packets waiting for a next hop's
//! link-layer address. Runs on the EAL main lcore, off the per-packet hot path (it may
//! allocate); pure logic here, the I/O edge feeds it frames and transmits its output.
//!
//! - ARP requests for the appliance's own addresses are answered (in place) and teach the
//!   sender's MAC; replies and gratuitous ARP update existing entries (`arp_accept = 0`).
//! - IPv6 neighbour solicitations for own addresses are answered with an advertisement
//!   (R|S|O) and teach the source link-layer address; advertisements update entries.
//! - A frame a worker forwarded without a known destination MAC (already routed, TTL
//!   decremented, NAT applied, source MAC set) is routed again on its destination to find
//!   the next hop, queued in [`NeighborCache`] (a few per neighbour), and released with
//!   its MAC when the neighbour answers; failure and overflow are counted drops.
//! - [`SlowPath::snapshot_if_changed`] publishes neighbour snapshots for the workers.

use std::sync::Arc;

use super::pipe_build::{self as build, L2Out};
use super::pipeline::PortInfo;
use crate::DropReason;
use crate::ha::announce::{Announced, Announcer};
use crate::route::neigh::Action as NeighAction;
use crate::route::{Mac, NeighConfig, NeighborCache, NeighborSnapshot, NextHop, RouteTable};
use crate::wire::ArpInfo;
use crate::wire::{self, Addr, Family, L4Info, Parsed};

/// What the I/O edge does after the slow path handled a frame or a tick.
#[derive(Debug, PartialEq, Eq)]
pub enum SlowOut<P> {
    /// Transmit `frame` on `port` (a released packet with its MACs filled in, or a request
    /// answered in place).
    Transmit { port: u16, frame: P },
    /// Transmit a frame the slow path built (a probe or an advertisement).
    Send { port: u16, frame: Vec<u8> },
    /// The frame was consumed (learned from, or answered with a separate frame): free it.
    Consumed(P),
    /// Drop the frame, counted under `reason`.
    Drop { frame: P, reason: DropReason },
}

/// Slow-path counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowCounters {
    pub drops: [u64; DropReason::COUNT],
    pub arp_replies: u64,
    pub na_sent: u64,
    pub probes_sent: u64,
    /// Queued packets released after resolution.
    pub released: u64,
    /// ARP / ND frames not about our addresses (learned from where allowed, else ignored).
    pub ignored: u64,
    /// Gratuitous ARP frames sent by takeovers (docs/ha.md).
    pub garp_sent: u64,
    /// Unsolicited neighbour advertisements sent by takeovers.
    pub unsolicited_na_sent: u64,
    /// ARP requests / solicitations for a standby service address left unanswered, and
    /// IPv6 solicitations not sent because their source would be one (docs/ha.md).
    pub standby_silent: u64,
}

impl Default for SlowCounters {
    fn default() -> Self {
        SlowCounters {
            drops: [0; DropReason::COUNT],
            arp_replies: 0,
            na_sent: 0,
            probes_sent: 0,
            released: 0,
            ignored: 0,
            garp_sent: 0,
            unsolicited_na_sent: 0,
            standby_silent: 0,
        }
    }
}

/// The slow path's state. `P` is the frame type (an mbuf in `fwd`, a `Vec<u8>` in tests).
#[derive(Debug)]
pub struct SlowPath<P> {
    ports: Vec<PortInfo>,
    routes: Arc<RouteTable>,
    cache: NeighborCache<P>,
    counters: SlowCounters,
    /// Takeover announcements asked for by the control thread (docs/ha.md).
    announcer: Option<Arc<Announcer>>,
    /// Service addresses kept silent while this box is an HA backup (docs/ha.md, "Backup
    /// role"): no ARP / NS answers for them, no probes from them; a takeover's
    /// announcement removes the addresses it announces.
    standby: Vec<Addr>,
}

const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const ALL_NODES: Addr = Addr::from_v6([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

impl<P: AsRef<[u8]> + AsMut<[u8]>> SlowPath<P> {
    pub fn new(ports: Vec<PortInfo>, routes: Arc<RouteTable>, config: NeighConfig) -> Self {
        SlowPath {
            ports,
            routes,
            cache: NeighborCache::new(config),
            counters: SlowCounters::default(),
            announcer: None,
            standby: Vec::new(),
        }
    }

    /// Keeps `addrs` silent until a takeover announces them (an HA backup's service
    /// addresses, from the config's `ha` section).
    pub fn set_standby(&mut self, addrs: Vec<Addr>) {
        self.standby = addrs;
    }

    /// The service addresses still kept silent.
    pub fn standby(&self) -> &[Addr] {
        &self.standby
    }

    /// Serves the takeover announcements `a` asks for, from [`SlowPath::tick`].
    pub fn set_announcer(&mut self, a: Arc<Announcer>) {
        self.announcer = Some(a);
    }

    /// A static neighbour entry (never probed, never expires).
    pub fn add_static(&mut self, port: u16, addr: Addr, mac: Mac) {
        self.cache.add_static(port, addr, mac);
    }

    pub fn counters(&self) -> &SlowCounters {
        &self.counters
    }

    /// The neighbour cache (its statistics, its size).
    pub fn cache(&self) -> &NeighborCache<P> {
        &self.cache
    }

    /// A new snapshot for the workers if a MAC appeared, changed or went away.
    pub fn snapshot_if_changed(&mut self) -> Option<NeighborSnapshot> {
        self.cache.snapshot_if_changed()
    }

    /// Replaces the route table (configuration reload).
    pub fn set_routes(&mut self, routes: Arc<RouteTable>) {
        self.routes = routes;
    }

    fn port_mac(&self, port: u16) -> Mac {
        self.ports.get(usize::from(port)).map_or([0; 6], |p| p.mac)
    }

    fn drop(&mut self, frame: P, reason: DropReason, out: &mut Vec<SlowOut<P>>) {
        self.counters.drops[reason as usize] += 1;
        out.push(SlowOut::Drop { frame, reason });
    }

    fn release(&mut self, port: u16, mac: Mac, mut frame: P, out: &mut Vec<SlowOut<P>>) {
        let src = self.port_mac(port);
        let f = frame.as_mut();
        if f.len() < 12 {
            return self.drop(frame, DropReason::Truncated, out);
        }
        f[0..6].copy_from_slice(&mac);
        f[6..12].copy_from_slice(&src);
        self.counters.released += 1;
        out.push(SlowOut::Transmit { port, frame });
    }

    fn learn(
        &mut self,
        port: u16,
        addr: Addr,
        mac: Mac,
        create: bool,
        now_ms: u64,
        out: &mut Vec<SlowOut<P>>,
    ) {
        for p in self.cache.learn(port, addr, mac, create, now_ms) {
            self.release(port, mac, p, out);
        }
    }

    /// Handles a frame the worker gave to the slow path, received on `in_port` (for a
    /// frame waiting for a neighbour, the port it arrived on; its egress port is found
    /// again by route lookup).
    pub fn handle(&mut self, in_port: u16, frame: P, now_ms: u64, out: &mut Vec<SlowOut<P>>) {
        let parsed = match wire::parse(frame.as_ref(), &wire::VERIFY_ALL) {
            Ok(p) => p,
            Err(r) => return self.drop(frame, r, out),
        };
        match parsed {
            Parsed::Arp(_, a) => self.arp(in_port, frame, a, now_ms, out),
            Parsed::Ip(l2, ip) => match ip.l4 {
                Some(L4Info::IcmpOther { icmp_type, .. })
                    if ip.family == Family::V6 && (133..=137).contains(&icmp_type) =>
                {
                    if ip.ttl != 255 {
                        // RFC 4861 §7.1.1: hop limit must be 255 (not forwarded).
                        return self.drop(frame, DropReason::BadIcmp, out);
                    }
                    let l4 = usize::from(ip.l4_off);
                    let end = usize::from(ip.l3_off) + usize::from(ip.ip_len);
                    let f = frame.as_ref();
                    let (Some(target), Some(opts)) = (
                        f.get(l4 + 8..l4 + 24)
                            .and_then(|t| <[u8; 16]>::try_from(t).ok()),
                        f.get(l4 + 24..end),
                    ) else {
                        self.counters.ignored += 1;
                        return out.push(SlowOut::Consumed(frame));
                    };
                    let target = Addr::from_v6(target);
                    match icmp_type {
                        ND_NS => {
                            let slla = ll_option(opts, 1);
                            self.solicit(
                                in_port, frame, ip.src, l2.src_mac, target, slla, now_ms, out,
                            );
                        }
                        ND_NA => {
                            if let Some(mac) = ll_option(opts, 2) {
                                self.learn(in_port, target, mac, false, now_ms, out);
                            }
                            out.push(SlowOut::Consumed(frame));
                        }
                        _ => {
                            self.counters.ignored += 1;
                            out.push(SlowOut::Consumed(frame));
                        }
                    }
                }
                _ => self.resolve(frame, ip.family, ip.dst, now_ms, out),
            },
        }
    }

    fn arp(
        &mut self,
        in_port: u16,
        mut frame: P,
        a: ArpInfo,
        now_ms: u64,
        out: &mut Vec<SlowOut<P>>,
    ) {
        let sender = Addr::from_v4(a.sender_ip);
        let target = Addr::from_v4(a.target_ip);
        let ours = self.routes.local_port(target) == Some(in_port);
        let valid_sender = a.sender_ip != [0; 4] && a.sender_mac[0] & 1 == 0;
        if a.operation == 1 && ours && self.standby.contains(&target) {
            // An HA backup: the primary answers for it (docs/ha.md, "Backup role").
            // It still learns the asker, so that it forwards at once after a takeover.
            self.counters.standby_silent += 1;
            if valid_sender {
                self.learn(in_port, sender, a.sender_mac, true, now_ms, out);
            }
            return out.push(SlowOut::Consumed(frame));
        }
        if a.operation == 1 && ours {
            if valid_sender {
                self.learn(in_port, sender, a.sender_mac, true, now_ms, out);
            }
            let mac = self.port_mac(in_port);
            let reply = ArpInfo {
                operation: 2,
                sender_mac: mac,
                sender_ip: a.target_ip,
                target_mac: a.sender_mac,
                target_ip: a.sender_ip,
            };
            // Answer in place: the request frame is at least as long as the reply.
            if build::arp(frame.as_mut(), a.sender_mac, &reply).is_some() {
                self.counters.arp_replies += 1;
                out.push(SlowOut::Transmit {
                    port: in_port,
                    frame,
                });
            } else {
                let mut v = vec![0u8; 60];
                let _ = build::arp(&mut v, a.sender_mac, &reply);
                self.counters.arp_replies += 1;
                out.push(SlowOut::Send {
                    port: in_port,
                    frame: v,
                });
                out.push(SlowOut::Consumed(frame));
            }
            return;
        }
        if valid_sender {
            self.learn(in_port, sender, a.sender_mac, false, now_ms, out);
        }
        if !ours {
            self.counters.ignored += 1;
        }
        out.push(SlowOut::Consumed(frame));
    }

    #[allow(clippy::too_many_arguments)]
    fn solicit(
        &mut self,
        in_port: u16,
        frame: P,
        src: Addr,
        src_mac: Mac,
        target: Addr,
        slla: Option<Mac>,
        now_ms: u64,
        out: &mut Vec<SlowOut<P>>,
    ) {
        if self.routes.local_port(target) != Some(in_port) {
            self.counters.ignored += 1;
            return out.push(SlowOut::Consumed(frame));
        }
        if self.standby.contains(&target) {
            self.counters.standby_silent += 1;
            return out.push(SlowOut::Consumed(frame));
        }
        let unspecified = src.0 == [0; 16];
        if let (Some(mac), false) = (slla, unspecified) {
            self.learn(in_port, src, mac, true, now_ms, out);
        }
        // RFC 4861 §7.2.4: to the solicitation's source, or all-nodes (S clear) for DAD.
        let (dst, flags, eth_dst) = if unspecified {
            (
                ALL_NODES,
                build::NA_ROUTER | build::NA_OVERRIDE,
                [0x33, 0x33, 0, 0, 0, 1],
            )
        } else {
            (
                src,
                build::NA_ROUTER | build::NA_SOLICITED | build::NA_OVERRIDE,
                slla.unwrap_or(src_mac),
            )
        };
        let l2 = L2Out {
            dst: eth_dst,
            src: self.port_mac(in_port),
        };
        let mut v = vec![0u8; 128];
        if let Some(len) = build::neighbor_message(&mut v, l2, target, dst, ND_NA, flags, target) {
            v.truncate(len);
            self.counters.na_sent += 1;
            out.push(SlowOut::Send {
                port: in_port,
                frame: v,
            });
        }
        out.push(SlowOut::Consumed(frame));
    }

    fn resolve(
        &mut self,
        frame: P,
        family: Family,
        dst: Addr,
        now_ms: u64,
        out: &mut Vec<SlowOut<P>>,
    ) {
        let (port, neighbor) = match self.routes.next_hop(family, dst) {
            Some(NextHop::Forward { port, neighbor }) => (port, neighbor),
            Some(NextHop::Blackhole) => return self.drop(frame, DropReason::Blackhole, out),
            None => return self.drop(frame, DropReason::NoRoute, out),
        };
        let action = self.cache.resolve(port, neighbor, frame, now_ms);
        self.neigh_action(action, port, out);
    }

    fn neigh_action(&mut self, action: NeighAction<P>, port: u16, out: &mut Vec<SlowOut<P>>) {
        match action {
            NeighAction::None => {}
            NeighAction::Probe {
                port,
                addr,
                unicast,
            } => self.probe(port, addr, unicast, out),
            NeighAction::Send { mac, packet } => self.release(port, mac, packet, out),
            NeighAction::Dropped(p) => self.drop(p, DropReason::NeighborUnresolved, out),
        }
    }

    /// An ARP request (IPv4) or neighbour solicitation (IPv6) for `addr` on `port`.
    fn probe(&mut self, port: u16, addr: Addr, unicast: Option<Mac>, out: &mut Vec<SlowOut<P>>) {
        let mac = self.port_mac(port);
        let mut v = vec![0u8; 128];
        let len = match addr.to_v4() {
            Some(target_ip) => {
                // A standby address must not reach the neighbours' caches: probe from
                // 0.0.0.0 as RFC 5227 does (hosts answer it without learning).
                let sender_ip = self
                    .routes
                    .port_address(port, Family::V4)
                    .filter(|a| !self.standby.contains(a))
                    .and_then(Addr::to_v4)
                    .unwrap_or([0; 4]);
                let req = ArpInfo {
                    operation: 1,
                    sender_mac: mac,
                    sender_ip,
                    target_mac: [0; 6],
                    target_ip,
                };
                build::arp(&mut v, unicast.unwrap_or(build::BROADCAST), &req)
            }
            None => {
                let Some(src) = self.routes.port_address(port, Family::V6) else {
                    return;
                };
                if self.standby.contains(&src) {
                    // A solicitation's source is learned by its receivers.
                    self.counters.standby_silent += 1;
                    return;
                }
                let (dst, eth) = match unicast {
                    Some(m) => (addr, m),
                    None => build::solicited_node(addr),
                };
                let l2 = L2Out { dst: eth, src: mac };
                build::neighbor_message(&mut v, l2, src, dst, ND_NS, 0, addr)
            }
        };
        if let Some(len) = len {
            v.truncate(len);
            self.counters.probes_sent += 1;
            out.push(SlowOut::Send { port, frame: v });
        }
    }

    /// Timers: probe retries, failed resolutions (their queued packets become drops).
    pub fn tick(&mut self, now_ms: u64, out: &mut Vec<SlowOut<P>>) {
        if let Some(a) = &self.announcer
            && let Some((generation, addrs)) = a.pending()
        {
            let a = a.clone();
            let result = self.announce(&addrs, out);
            a.finish(generation, result);
        }
        let (probes, dropped) = self.cache.tick(now_ms);
        for a in probes {
            self.neigh_action(a, 0, out);
        }
        for p in dropped {
            self.drop(p, DropReason::NeighborUnresolved, out);
        }
    }
}

impl<P: AsRef<[u8]> + AsMut<[u8]>> SlowPath<P> {
    /// Takeover (docs/ha.md): for each of `addrs` that is one of our own addresses (all
    /// of them when `addrs` is empty), on the port that owns it, a gratuitous ARP as
    /// `arping -U` and keepalived send it (a broadcast request, sender = target = the
    /// address, target MAC zero) or an unsolicited neighbour advertisement (RFC 4861
    /// §7.2.6: to all-nodes, Override set, Solicited clear, our target link-layer
    /// address), so that hosts and switches move the address to this box's ports.
    ///
    /// The announced addresses leave standby first (this box now answers for them).
    pub fn announce(&mut self, addrs: &[Addr], out: &mut Vec<SlowOut<P>>) -> Announced {
        if addrs.is_empty() {
            self.standby.clear();
        } else {
            self.standby.retain(|s| !addrs.contains(s));
        }
        let mut r = Announced::default();
        let targets: Vec<(Addr, u16)> = if addrs.is_empty() {
            self.routes.local_addresses()
        } else {
            addrs
                .iter()
                .filter_map(|a| match self.routes.local_port(*a) {
                    Some(p) => Some((*a, p)),
                    None => {
                        r.not_local.push(*a);
                        None
                    }
                })
                .collect()
        };
        for (addr, port) in targets {
            let mac = self.port_mac(port);
            let mut v = vec![0u8; 128];
            let len = match addr.to_v4() {
                Some(ip) => {
                    let garp = ArpInfo {
                        operation: 1,
                        sender_mac: mac,
                        sender_ip: ip,
                        target_mac: [0; 6],
                        target_ip: ip,
                    };
                    build::arp(&mut v, build::BROADCAST, &garp)
                }
                None => {
                    let l2 = L2Out {
                        dst: [0x33, 0x33, 0, 0, 0, 1],
                        src: mac,
                    };
                    let flags = build::NA_ROUTER | build::NA_OVERRIDE;
                    build::neighbor_message(&mut v, l2, addr, ALL_NODES, ND_NA, flags, addr)
                }
            };
            let Some(len) = len else { continue };
            v.truncate(len);
            if addr.to_v4().is_some() {
                self.counters.garp_sent += 1;
                r.garp += 1;
            } else {
                self.counters.unsolicited_na_sent += 1;
                r.na += 1;
            }
            out.push(SlowOut::Send { port, frame: v });
        }
        r
    }
}

/// The MAC of the first link-layer address option of `kind` (1 source, 2 target) in an
/// ND options area (RFC 4861 §4.6.1).
fn ll_option(mut opts: &[u8], kind: u8) -> Option<Mac> {
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == kind && len >= 8 {
            return opts[2..8].try_into().ok();
        }
        opts = &opts[len..];
    }
    None
}
