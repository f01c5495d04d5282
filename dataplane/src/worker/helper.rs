//! The worker's side of connection helpers (`crate::helper`, docs/helpers.md): which of
//! this worker's connections has a helper or was expected, the expectation a first packet
//! took, and the inspection of a helper connection's payload on the full path.
//!
//! Nothing here runs for a packet until a connection with a helper or an expected
//! connection has been confirmed on this worker (`used`), apart from one load of the
//! shared expectation table's length for each first packet.

use super::{CtInfo, Pipeline};
use crate::conntrack::table::SYNCED;
use crate::conntrack::{Direction, EntryId, FlowKey};
use crate::drop::DropReason;
use crate::helper::ftp::{self, FtpError, FtpKind};
use crate::helper::{EXPECT_TIMEOUT_S, ExpectTable, Expectation, HelperKind, tftp};
use crate::rules::ct_state;
use crate::wire::{IpInfo, L4Info, proto};
use crate::worker::Action;
use std::sync::Arc;

/// Helper state of one entry slot (by [`EntryId`]); `tag` tells a stale slot (an entry
/// inserted without the pipeline, by HA sync) from the entry it was written for.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    kind: u8,
    expected: bool,
    tag: u32,
    /// The slot of the master's last expectation in the table, plus one (0: none).
    expect: u32,
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

#[derive(Debug)]
pub(crate) struct HelperState {
    pub(super) expect: Arc<ExpectTable>,
    slots: Vec<Slot>,
    used: bool,
    /// `ct helper set` of the packet being processed.
    pub(super) pending: Option<HelperKind>,
    /// The expectation the packet being processed took (its connection is expected).
    pub(super) taken: Option<Expectation>,
    pub(super) counters: HelperCounters,
    /// The entry the packet being processed confirmed.
    last_confirmed: Option<EntryId>,
}

fn tag(k: &FlowKey) -> u32 {
    let a = u32::from_be_bytes([k.src.0[12], k.src.0[13], k.src.0[14], k.src.0[15]]);
    let b = u32::from_be_bytes([k.dst.0[12], k.dst.0[13], k.dst.0[14], k.dst.0[15]]);
    (a ^ b.rotate_left(16)) ^ (u32::from(k.sport) << 16 | u32::from(k.dport)) | 1
}

impl HelperState {
    pub(crate) fn new(expect: Arc<ExpectTable>, capacity: u32) -> Self {
        HelperState {
            expect,
            slots: vec![Slot::default(); capacity as usize],
            used: false,
            pending: None,
            taken: None,
            counters: HelperCounters::default(),
            last_confirmed: None,
        }
    }

    /// No helper runs for the packet being processed, whatever its entry: none was
    /// ever used on this worker and the packet neither set one nor took an expectation.
    pub(super) fn idle(&self) -> bool {
        !self.used && self.pending.is_none() && self.taken.is_none()
    }

    fn slot(&self, id: EntryId, orig: &FlowKey) -> Option<Slot> {
        if !self.used {
            return None;
        }
        self.slots
            .get(id.0 as usize)
            .copied()
            .filter(|s| s.tag == tag(orig) && (s.kind != 0 || s.expected))
    }

    /// The helper of entry `id` (original tuple `orig`).
    pub(super) fn helper_of(&self, id: EntryId, orig: &FlowKey) -> Option<HelperKind> {
        self.slot(id, orig)
            .and_then(|s| HelperKind::from_u8(s.kind))
    }

    /// Whether entry `id` was expected (Linux `IPS_EXPECTED`).
    pub(super) fn expected(&self, id: EntryId, orig: &FlowKey) -> bool {
        self.slot(id, orig).is_some_and(|s| s.expected)
    }

    /// A first packet: takes the expectation it matches, if any.
    pub(super) fn take(&mut self, ip: &IpInfo, now: u64) -> bool {
        self.taken = None;
        if self.expect.is_empty() {
            return false;
        }
        let dport = match ip.l4 {
            Some(L4Info::Tcp(t)) => t.dport,
            Some(L4Info::Udp { dport, .. }) => dport,
            _ => return false,
        };
        self.taken = self
            .expect
            .take(ip.family, ip.proto, ip.src, ip.dst, dport, now);
        if self.taken.is_some() {
            self.counters.related += 1;
        }
        self.taken.is_some()
    }

    /// Entry `id` was confirmed: record its helper and whether it was expected.
    pub(super) fn confirmed(&mut self, id: EntryId, orig: &FlowKey) {
        self.last_confirmed = Some(id);
        let kind = self.pending.take().map_or(0, |k| k as u8);
        let expected = self.taken.take().is_some();
        if kind == 0 && !expected && !self.used {
            return;
        }
        self.used = true;
        if let Some(s) = self.slots.get_mut(id.0 as usize) {
            *s = Slot {
                kind,
                expected,
                tag: tag(orig),
                expect: 0,
            };
        }
    }

    /// Forgets what the packet being processed brought (it started no connection).
    pub(super) fn reset(&mut self) {
        self.pending = None;
        self.taken = None;
        self.last_confirmed = None;
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

    /// A forwarded packet, after confirmation: runs its connection's helper. `Some`: the
    /// helper dropped it.
    pub(super) fn helper_inspect(
        &mut self,
        ct: CtInfo,
        ip: &IpInfo,
        frame: &[u8],
    ) -> Option<Action> {
        if !self.helpers.used {
            return None;
        }
        let (id, dir) = ct.entry.or(self
            .helpers
            .last_confirmed
            .map(|id| (id, Direction::Original)))?;
        match self.run_helper(id, dir, ip, frame) {
            Ok(()) => None,
            Err(r) => Some(self.drop(r)),
        }
    }

    /// Runs entry `id`'s helper over a forwarded packet travelling in `dir` (before NAT
    /// rewrites it): an announcement makes an expectation. `Err`: drop the packet.
    pub(super) fn run_helper(
        &mut self,
        id: EntryId,
        dir: Direction,
        ip: &IpInfo,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        let Some(orig) = self.ct.tuple(id, Direction::Original) else {
            return Ok(());
        };
        let Some(kind) = self.helpers.helper_of(id, &orig) else {
            return Ok(());
        };
        let end = usize::from(ip.l3_off) + usize::from(ip.ip_len);
        let (payload_len, from_client) = match (kind, ip.l4) {
            (HelperKind::Ftp, Some(L4Info::Tcp(t))) => (t.payload_len, dir == Direction::Original),
            (HelperKind::Tftp, Some(L4Info::Udp { .. })) if dir == Direction::Original => {
                (ip.ip_len.saturating_sub(ip.l4_off - ip.l3_off + 8), true)
            }
            _ => return Ok(()),
        };
        if payload_len == 0 {
            return Ok(());
        }
        let Some(payload) = frame.get(end - usize::from(payload_len)..end) else {
            return Ok(());
        };
        let Some(reply) = self.ct.tuple(id, Direction::Reply) else {
            return Ok(());
        };
        // The data connection comes from the other side (its address as the other
        // direction's tuple has it), Linux's `tuplehash[!dir].tuple.src`.
        let peer = match dir {
            Direction::Original => reply.src,
            Direction::Reply => orig.src,
        };
        let (dst, dport, proto) = match kind {
            HelperKind::Tftp => {
                if !tftp::is_request(payload) {
                    return Ok(());
                }
                // The server answers from a new port to the client's port: the reply
                // tuple's destination (`nf_conntrack_tftp.c`).
                (reply.dst, reply.dport, proto::UDP)
            }
            HelperKind::Ftp => match ftp::parse(payload, from_client, ip.family) {
                Ok(None) => return Ok(()),
                Err(FtpError::Partial) => return Err(DropReason::HelperPartial),
                Err(FtpError::Malformed) => {
                    self.helpers.counters.malformed += 1;
                    return Ok(());
                }
                Ok(Some(line)) => {
                    let addr = line.addr.unwrap_or(ip.src);
                    // Linux records only an address that is the sender's own.
                    if addr != ip.src && line.kind != FtpKind::Epsv {
                        self.helpers.counters.malformed += 1;
                        return Ok(());
                    }
                    (addr, line.port, proto::TCP)
                }
            },
        };
        let e = Expectation {
            family: ip.family,
            proto,
            src: peer,
            dst,
            dport,
            helper: kind,
            master: orig,
            master_worker: self.worker_id,
            master_id: id.0,
        };
        let now = self.now_ns;
        let h = &mut self.helpers;
        // One expectation per master (`max_expected` 1): the older one goes.
        if let Some(s) = h.slots.get(id.0 as usize)
            && s.expect != 0
        {
            h.expect.remove(s.expect - 1, e.master_worker, id.0, now);
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
                Ok(())
            }
            Err(_) => Err(DropReason::HelperExpectFull),
        }
    }
}
