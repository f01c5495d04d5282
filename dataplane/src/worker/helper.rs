//! The worker's side of connection helpers (`crate::helper`, docs/helpers.md): which of
//! this worker's connections has a helper or was expected, the expectation a first packet
//! took, and the inspection of a helper connection's payload on the full path; with NAT,
//! the rewrite of FTP's announcement text, the TCP sequence adjustment that follows it
//! (`helper/ftp_nat.rs`, `helper/seqadj.rs`), and the NAT of an expected connection that
//! follows its master's.
//!
//! Nothing here runs for a packet until a connection with a helper or an expected
//! connection has been confirmed on this worker (`used`), apart from one load of the
//! shared expectation table's length for each first packet.

use super::helper_state::{SeqAdjRec, tag};
use super::{CtInfo, Pipeline};
use crate::conntrack::table::SYNCED;
use crate::conntrack::{Direction, EntryId, FlowKey};
use crate::drop::DropReason;
use crate::helper::ftp::{self, FtpError};
use crate::helper::ftp_nat::{self, MAX_TEXT};
use crate::helper::seqadj::SeqAdj;
use crate::helper::{EXPECT_TIMEOUT_S, ExpectNat, ExpectTable, Expectation, HelperKind, tftp};
use crate::nat::{NatAction, NatFlags, NatKind, NatRange};
use crate::route::Mac;
use crate::rules::ct_state;
use crate::wire::{Addr, IpInfo, L2Info, L4Info, TcpFlags, proto};
use crate::worker::Action;
use crate::worker::counters::HelperCounters;
use std::sync::Arc;

/// Ports FTP NAT tries, from the announced one up, for an expectation that another
/// master's does not already hold.
const PORT_TRIES: u16 = 64;

/// The announcement text FTP NAT writes over the parser's span of the payload.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rewrite {
    start: usize,
    end: usize,
    text: [u8; MAX_TEXT],
    len: usize,
}

/// `snat to ADDR` / `dnat to ADDR[:PORT]`: the translation of a connection that follows
/// its master.
fn to(kind: NatKind, addr: Addr, ports: Option<(u16, u16)>) -> NatAction {
    NatAction {
        kind,
        range: NatRange {
            addr: Some((addr, addr)),
            ports,
        },
        flags: NatFlags::default(),
    }
}

impl Pipeline {
    /// This worker's helper counters.
    pub fn helper_counters(&self) -> HelperCounters {
        self.helpers.counters
    }

    /// The expectation table this worker shares with the others.
    pub fn expectations(&self) -> &Arc<ExpectTable> {
        &self.helpers.expect
    }

    /// After the conntrack lookup: a first packet that matches an expectation is
    /// `ct state related` (and takes it); so is every original-direction packet of an
    /// expected connection until its first reply, as Linux's `resolve_normal_ct`.
    pub(super) fn helper_track(&mut self, mut ct: CtInfo, ip: &IpInfo) -> CtInfo {
        if ct.new_key.is_some() {
            if self.helpers.take(ip, self.now_ns) {
                ct.bit = ct_state::RELATED;
            }
        } else if self.helpers.used
            && ct.bit == ct_state::NEW
            && let Some((id, Direction::Original)) = ct.entry
            && let Some(orig) = self.ct.tuple(id, Direction::Original)
            && self.helpers.expected(id, &orig)
        {
            ct.bit = ct_state::RELATED;
        }
        ct
    }

    /// A connection with a helper takes the full path for every packet (its payload is
    /// inspected there): no verdict-cache slot, hence no fast-path recipe either.
    pub(super) fn helper_uncached(&mut self, ct: CtInfo) {
        if self.helpers.used
            && let Some((id, _)) = ct.entry
            && let Some(orig) = self.ct.tuple(id, Direction::Original)
            && self.helpers.helper_of(id, &orig).is_some()
        {
            self.cache = None;
        }
    }

    /// The `ct status` bits the rules see: the table's, with bit 0 (`expected`, Linux's
    /// `IPS_EXPECTED`) from the helper state rather than the table's `SYNCED`, which
    /// shares that bit inside the table.
    pub(super) fn helper_status(&self, ct: CtInfo, status: u32) -> u32 {
        let expected = match ct.entry {
            None => self.helpers.taken.is_some(),
            Some((id, _)) => self
                .ct
                .tuple(id, Direction::Original)
                .is_some_and(|o| self.helpers.expected(id, &o)),
        };
        status & !u32::from(SYNCED) | u32::from(expected)
    }

    /// The end of forwarding once every hook accepted and the connection is confirmed:
    /// runs the connection's helper (an announcement makes an expectation; with NAT its
    /// text is rewritten, `Action::Reply` from `scratch` where the frame grew), adjusts
    /// the TCP sequence numbers of a connection whose length changed, then MSS / DSCP
    /// and [`Pipeline::send_out`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn helper_send(
        &mut self,
        ct: CtInfo,
        frame: &mut [u8],
        scratch: &mut [u8],
        (l2, ip): (&L2Info, &IpInfo),
        target: Option<FlowKey>,
        port: u16,
        dst_mac: Option<Mac>,
    ) -> Action {
        let entry = ct.entry.or(self
            .helpers
            .last_confirmed
            .map(|id| (id, Direction::Original)));
        let Some((id, dir)) = entry.filter(|_| self.helpers.used) else {
            self.clamp_mss(frame, ip);
            return self.send_out(frame, l2, ip, ct, target, port, dst_mac);
        };
        let rewrite = match self.run_helper(id, dir, ip, frame) {
            Ok(r) => r,
            Err(r) => return self.drop(r),
        };
        let (len, ip, grown) = match rewrite {
            None => (frame.len(), *ip, false),
            Some(rw) => match self.ftp_mangle(id, dir, ip, frame, scratch, port, &rw) {
                Ok((n, new_ip)) if n <= frame.len() => {
                    frame[..n].copy_from_slice(&scratch[..n]);
                    (n, new_ip, false)
                }
                Ok((n, new_ip)) => (n, new_ip, true),
                Err(r) => return self.drop(r),
            },
        };
        let buf = if grown {
            &mut scratch[..len]
        } else {
            &mut frame[..len]
        };
        if let Some(orig) = self.ct.tuple(id, Direction::Original)
            && let Some(adj) = self.helpers.seqadj_of(id, &orig)
            && adj.active()
            && matches!(ip.l4, Some(L4Info::Tcp(_)))
        {
            let l4 = usize::from(ip.l4_off);
            let end = usize::from(ip.l3_off) + usize::from(ip.ip_len);
            let adjusted = buf
                .get_mut(l4..end)
                .is_some_and(|seg| adj.adjust(dir.index(), seg).is_ok());
            if !adjusted {
                return self.drop(DropReason::HelperMangle);
            }
        }
        if grown && dst_mac.is_none() {
            // A grown frame lives in the scratch buffer, which the slow path does not
            // take: dropped (the sender retransmits once the neighbour is resolved).
            return self.drop(DropReason::HelperMangle);
        }
        self.clamp_mss(buf, &ip);
        match self.send_out(buf, l2, &ip, ct, target, port, dst_mac) {
            Action::Forward { port, len } if grown => Action::Reply { port, len },
            a => a,
        }
    }

    /// FTP NAT of one announcement: the frame rebuilt into `scratch` with `rw`'s text,
    /// the length change recorded for the sequence adjustment of direction `dir`.
    /// Returns the new frame's length and summary.
    #[allow(clippy::too_many_arguments)]
    fn ftp_mangle(
        &mut self,
        id: EntryId,
        dir: Direction,
        ip: &IpInfo,
        frame: &[u8],
        scratch: &mut [u8],
        port: u16,
        rw: &Rewrite,
    ) -> Result<(usize, IpInfo), DropReason> {
        let Some(L4Info::Tcp(t)) = ip.l4 else {
            return Err(DropReason::HelperMangle);
        };
        let (n, new_ip) =
            ftp_nat::mangle(frame, ip, (rw.start, rw.end), &rw.text[..rw.len], scratch)
                .map_err(|_| DropReason::HelperMangle)?;
        let delta = i32::from(new_ip.ip_len) - i32::from(ip.ip_len);
        if delta == 0 {
            return Ok((n, new_ip));
        }
        // A reassembled datagram leaves as its fragments' boundaries allow: the same
        // length only. A segment the output MTU no longer takes is not sent either.
        let mtu = self
            .ports
            .get(usize::from(port))
            .map_or(u16::MAX, |p| p.mtu);
        if self.frag.in_datagram() || new_ip.ip_len > mtu {
            return Err(DropReason::HelperMangle);
        }
        let Some(i) = self.seqadj_record(id) else {
            return Err(DropReason::HelperMangle);
        };
        self.helpers.seqadj[i].adj.set(dir.index(), t.seq, delta);
        Ok((n, new_ip))
    }

    /// The sequence-adjustment record of helper connection `id`: its own, else a free
    /// one, else one whose connection is gone (`None`: every record is in use).
    fn seqadj_record(&mut self, id: EntryId) -> Option<usize> {
        let orig = self.ct.tuple(id, Direction::Original)?;
        let h = &mut self.helpers;
        let s = h.slot(id, &orig)?;
        let own = (s.seqadj as usize).checked_sub(1);
        if let Some(i) = own
            && h.seqadj
                .get(i)
                .is_some_and(|r| r.id == id.0 + 1 && r.tag == s.tag)
        {
            return Some(i);
        }
        let n = h.seqadj.len();
        let ct = &self.ct;
        let slots = &h.slots;
        let free = (0..n).map(|k| (h.seqadj_next + k) % n).find(|&i| {
            let r = h.seqadj[i];
            let Some(rid) = r.id.checked_sub(1) else {
                return true;
            };
            let live = slots.get(rid as usize).is_some_and(|o| {
                o.seqadj as usize == i + 1
                    && o.tag == r.tag
                    && ct
                        .tuple(EntryId(rid), Direction::Original)
                        .is_some_and(|k| tag(&k) == r.tag)
            });
            !live
        })?;
        h.seqadj[free] = SeqAdjRec {
            id: id.0 + 1,
            tag: s.tag,
            adj: SeqAdj::default(),
        };
        if let Some(slot) = h.slots.get_mut(id.0 as usize) {
            slot.seqadj = u32::try_from(free + 1).unwrap_or(0);
        }
        h.seqadj_next = (free + 1) % n;
        Some(free)
    }

    /// What the connection tracker sees of a packet of entry `id` travelling in `dir`:
    /// with a sequence adjustment, its ack in the raw space of the other direction's
    /// sender (Linux's `receiver_offset` in `tcp_in_window`). `None`: the packet as is.
    pub(super) fn helper_unadjust(
        &self,
        id: EntryId,
        dir: Direction,
        ip: &IpInfo,
    ) -> Option<IpInfo> {
        if !self.helpers.used {
            return None;
        }
        let Some(L4Info::Tcp(mut t)) = ip.l4 else {
            return None;
        };
        let orig = self.ct.tuple(id, Direction::Original)?;
        let adj = self.helpers.seqadj_of(id, &orig)?;
        if !adj.active() || !t.flags.contains(TcpFlags::ACK) {
            return None;
        }
        t.ack = adj.unadjust_ack(dir.index(), t.ack);
        Some(IpInfo {
            l4: Some(L4Info::Tcp(t)),
            ..*ip
        })
    }

    /// Prerouting NAT of a first packet: an expected connection whose expectation carries
    /// its master's NAT gets that destination (Linux's `nf_nat_follow_master`: the NAT
    /// chains are not consulted for it); any other keeps the rules' decision.
    pub(super) fn helper_follow_dnat(
        &self,
        rules: Option<NatAction>,
        ip: &IpInfo,
    ) -> Option<NatAction> {
        let Some(n) = self.helpers.taken.and_then(|e| e.nat) else {
            return rules;
        };
        let dport = match ip.l4 {
            Some(L4Info::Tcp(t)) => t.dport,
            Some(L4Info::Udp { dport, .. }) => dport,
            _ => return None,
        };
        (n.dst != ip.dst || n.dport != dport).then_some(to(
            NatKind::Dnat,
            n.dst,
            Some((n.dport, n.dport)),
        ))
    }

    /// Postrouting NAT of a first packet, as [`Pipeline::helper_follow_dnat`]: the
    /// master's source address for an expected connection that follows it (its port
    /// kept where free).
    pub(super) fn helper_follow_snat(
        &self,
        rules: Option<NatAction>,
        ip: &IpInfo,
    ) -> Option<NatAction> {
        let Some(n) = self.helpers.taken.and_then(|e| e.nat) else {
            return rules;
        };
        (n.src != ip.src).then_some(to(NatKind::Snat, n.src, None))
    }

    /// Runs entry `id`'s helper over a forwarded packet travelling in `dir` (before NAT
    /// rewrites it): an announcement makes an expectation, and where the connection is
    /// NATed its text is to be rewritten (`Some`, Linux's `nf_nat_ftp`). `Err`: drop the
    /// packet.
    pub(super) fn run_helper(
        &mut self,
        id: EntryId,
        dir: Direction,
        ip: &IpInfo,
        frame: &[u8],
    ) -> Result<Option<Rewrite>, DropReason> {
        let Some(orig) = self.ct.tuple(id, Direction::Original) else {
            return Ok(None);
        };
        let Some(kind) = self.helpers.helper_of(id, &orig) else {
            return Ok(None);
        };
        let end = usize::from(ip.l3_off) + usize::from(ip.ip_len);
        let (payload_len, from_client) = match (kind, ip.l4) {
            (HelperKind::Ftp, Some(L4Info::Tcp(t))) => (t.payload_len, dir == Direction::Original),
            (HelperKind::Tftp, Some(L4Info::Udp { .. })) if dir == Direction::Original => {
                (ip.ip_len.saturating_sub(ip.l4_off - ip.l3_off + 8), true)
            }
            _ => return Ok(None),
        };
        if payload_len == 0 {
            return Ok(None);
        }
        let Some(payload) = frame.get(end - usize::from(payload_len)..end) else {
            return Ok(None);
        };
        let Some(reply) = self.ct.tuple(id, Direction::Reply) else {
            return Ok(None);
        };
        // `this` is the packet's direction's tuple, `other` the other one's. The data
        // connection comes from the other side to where this packet goes after NAT:
        // Linux's `tuplehash[!dir].tuple.src` and `.dst`.
        let (this, other) = match dir {
            Direction::Original => (orig, reply),
            Direction::Reply => (reply, orig),
        };
        let (line, announced) = match kind {
            HelperKind::Tftp => {
                if !tftp::is_request(payload) {
                    return Ok(None);
                }
                // The server answers from a new port to the client's port: the reply
                // tuple's destination (`nf_conntrack_tftp.c`).
                (None, this.sport)
            }
            HelperKind::Ftp => match ftp::parse(payload, from_client, ip.family) {
                Ok(None) => return Ok(None),
                Err(FtpError::Partial) => return Err(DropReason::HelperPartial),
                Err(FtpError::Malformed) => {
                    self.helpers.counters.malformed += 1;
                    return Ok(None);
                }
                Ok(Some(line)) => {
                    // Linux records only an address that is the sender's own.
                    if line.addr.is_some_and(|a| a != ip.src) {
                        self.helpers.counters.malformed += 1;
                        return Ok(None);
                    }
                    (Some(line), line.port)
                }
            },
        };
        // A NATed master (Linux's `IPS_NAT_MASK`): the expected connection follows its
        // NAT, and an FTP line is rewritten to the address the other side sees.
        let natted = reply != orig.inverse();
        let (proto, dport) = match kind {
            HelperKind::Tftp => (proto::UDP, other.dport),
            HelperKind::Ftp => (proto::TCP, announced),
        };
        let mut e = Expectation {
            family: ip.family,
            proto,
            src: other.src,
            dst: other.dst,
            dport,
            helper: kind,
            master: orig,
            master_worker: self.worker_id,
            master_id: id.0,
            nat: natted.then_some(ExpectNat {
                src: this.dst,
                dst: this.src,
                dport: announced,
            }),
        };
        let now = self.now_ns;
        let h = &mut self.helpers;
        // One expectation per master (`max_expected` 1): the older one goes.
        if let Some(s) = h.slots.get(id.0 as usize)
            && s.expect != 0
        {
            h.expect.remove(s.expect - 1, e.master_worker, id.0, now);
        }
        if natted && kind == HelperKind::Ftp {
            // Linux's `nf_nat_exp_find_port`: the announced port, else the next one
            // that no other master's expectation holds.
            let mut tries = 0;
            while h.expect.held_by_other(
                e.family,
                e.proto,
                e.src,
                e.dst,
                e.dport,
                (e.master_worker, e.master_id),
                now,
            ) {
                tries += 1;
                e.dport = e.dport.wrapping_add(1);
                if tries == PORT_TRIES || e.dport == 0 {
                    return Err(DropReason::HelperExpectFull);
                }
            }
        }
        match h
            .expect
            .insert(&e, now + EXPECT_TIMEOUT_S * 1_000_000_000, now)
        {
            Ok(slot) => {
                if let Some(s) = h.slots.get_mut(id.0 as usize) {
                    s.expect = slot + 1;
                }
                h.counters.announced += 1;
            }
            Err(_) => return Err(DropReason::HelperExpectFull),
        }
        let Some(line) = line.filter(|_| natted) else {
            return Ok(None);
        };
        let mut rw = Rewrite {
            start: line.start,
            end: line.end,
            text: [0; MAX_TEXT],
            len: 0,
        };
        rw.len = ftp_nat::format(line.kind, ip.family, e.dst, e.dport, &mut rw.text)
            .ok_or(DropReason::HelperMangle)?;
        // The same text (a master NATed on the other side only): nothing to rewrite.
        if payload.get(line.start..line.end) == Some(&rw.text[..rw.len]) {
            return Ok(None);
        }
        Ok(Some(rw))
    }
}
