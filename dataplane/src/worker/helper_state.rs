//! The connection helpers' per-worker state (`helper.rs`): helper and expectation of
//! each entry slot, sequence-adjustment records. A leaf below `pipeline.rs` and
//! `helper.rs`: it imports neither.

use crate::conntrack::{EntryId, FlowKey};
use crate::helper::seqadj::SeqAdj;
use crate::helper::{ExpectTable, Expectation, HelperKind};
use crate::wire::{IpInfo, L4Info};
use crate::worker::counters::HelperCounters;
use std::sync::Arc;

/// Sequence-adjustment records of a worker: connections whose FTP NAT changed a
/// segment's length (128 KiB per worker).
const SEQADJ_RECORDS: usize = 4096;

/// One connection's sequence adjustment, for entry `id - 1` (0: free) whose slot has
/// `tag`.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SeqAdjRec {
    pub(super) id: u32,
    pub(super) tag: u32,
    pub(super) adj: SeqAdj,
}

/// Helper state of one entry slot (by [`EntryId`]); `tag` tells a stale slot (an entry
/// inserted without the pipeline, by HA sync) from the entry it was written for.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slot {
    pub(super) kind: u8,
    pub(super) expected: bool,
    pub(super) tag: u32,
    /// The slot of the master's last expectation in the table, plus one (0: none).
    pub(super) expect: u32,
    /// Its sequence-adjustment record, plus one (0: none).
    pub(super) seqadj: u32,
}

#[derive(Debug)]
pub(crate) struct HelperState {
    pub(super) expect: Arc<ExpectTable>,
    pub(super) slots: Vec<Slot>,
    pub(super) used: bool,
    /// `ct helper set` of the packet being processed.
    pub(super) pending: Option<HelperKind>,
    /// The expectation the packet being processed took (its connection is expected).
    pub(super) taken: Option<Expectation>,
    pub(super) counters: HelperCounters,
    /// The entry the packet being processed confirmed.
    pub(super) last_confirmed: Option<EntryId>,
    pub(super) seqadj: Vec<SeqAdjRec>,
    /// Where the search for a free sequence-adjustment record starts.
    pub(super) seqadj_next: usize,
}

pub(super) fn tag(k: &FlowKey) -> u32 {
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
            seqadj: vec![SeqAdjRec::default(); SEQADJ_RECORDS],
            seqadj_next: 0,
        }
    }

    /// No helper runs for the packet being processed, whatever its entry: none was
    /// ever used on this worker and the packet neither set one nor took an expectation.
    pub(super) fn idle(&self) -> bool {
        !self.used && self.pending.is_none() && self.taken.is_none()
    }

    /// The sequence adjustment of entry `id` (original tuple `orig`), if it has one.
    pub(super) fn seqadj_of(&self, id: EntryId, orig: &FlowKey) -> Option<SeqAdj> {
        let s = self.slot(id, orig)?;
        let r = self.seqadj.get((s.seqadj as usize).checked_sub(1)?)?;
        (r.id == id.0.wrapping_add(1) && r.tag == s.tag).then_some(r.adj)
    }

    pub(super) fn slot(&self, id: EntryId, orig: &FlowKey) -> Option<Slot> {
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
            // The entry the slot was written for is gone: so is its adjustment.
            if let Some(r) = (s.seqadj as usize)
                .checked_sub(1)
                .and_then(|i| self.seqadj.get_mut(i))
                && r.id == id.0.wrapping_add(1)
            {
                r.id = 0;
            }
            *s = Slot {
                kind,
                expected,
                tag: tag(orig),
                expect: 0,
                seqadj: 0,
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
