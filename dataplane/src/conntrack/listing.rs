//! `conntrack -L / -C / -D` for the control socket: bounded scans of the table with a
//! compiled filter ([`super::filter`]), and the conversion to the control protocol's
//! [`CtEntry`].

use super::filter::has_ports;
pub use super::filter::{CtMatcher, proto_name, proto_number};
use super::key::FlowKey;
use super::table::sync::Synced;
use super::table::{ASSURED, CtEvent, DST_NAT, SEEN_REPLY, SRC_NAT, SYNCED, Snapshot, Table};
use super::tcp::TcpState;
use crate::wire::{Addr, Family};
use fwd_proto::{ControlError, CtEntry, CtTuple, ErrorCode, EventLine};

impl Synced {
    /// The synced form of a control-protocol entry (what [`Snapshot::to_ct_entry`] wrote):
    /// the inverse conversion, for entries a sync peer sent. Errors name the field.
    pub fn from_ct_entry(e: &CtEntry) -> Result<Synced, ControlError> {
        let bad = |field: &str, msg: String| {
            let mut err = ControlError::new(ErrorCode::BadRequest, msg);
            err.field = Some(field.to_string());
            err
        };
        let family = match e.family.as_str() {
            "ipv4" => Family::V4,
            "ipv6" => Family::V6,
            f => return Err(bad("family", format!("{f:?} is not ipv4 or ipv6"))),
        };
        let key = |name: &str, t: &CtTuple| -> Result<FlowKey, ControlError> {
            let v4 = t.src.is_ipv4() && t.dst.is_ipv4();
            if v4 != (family == Family::V4) {
                return Err(bad(name, "address family differs from the entry's".into()));
            }
            let icmp = super::key::is_icmp(family, e.proto_num);
            let (sport, dport) = if icmp {
                (t.icmp_id.unwrap_or(0), t.icmp_type.map_or(0, u16::from))
            } else {
                (t.sport.unwrap_or(0), t.dport.unwrap_or(0))
            };
            Ok(FlowKey {
                src: Addr::from(t.src),
                dst: Addr::from(t.dst),
                sport,
                dport,
                zone: e.zone,
                proto: e.proto_num,
                family,
            })
        };
        let tcp_state = match &e.state {
            Some(n) => Some(
                TcpState::from_name(n)
                    .ok_or_else(|| bad("state", format!("unknown TCP state {n:?}")))?,
            ),
            None => None,
        };
        let mut status = 0;
        for f in &e.status {
            status |= match f.as_str() {
                "SEEN_REPLY" => SEEN_REPLY,
                "ASSURED" => ASSURED,
                "UNREPLIED" | "SRC_NAT" | "DST_NAT" | "SYNCED" | "CONFIRMED" => 0,
                _ => return Err(bad("status", format!("unknown status flag {f:?}"))),
            };
        }
        Ok(Synced {
            orig: key("orig", &e.orig)?,
            reply: key("reply", &e.reply)?,
            tcp_state,
            tcp_window: e.tcp_window.map(Into::into),
            status,
            mark: e.mark,
            timeout_s: Some(u32::try_from(e.timeout).unwrap_or(u32::MAX)),
        })
    }
}

fn tuple(k: &FlowKey, packets: u64, bytes: u64) -> CtTuple {
    let icmp = super::key::is_icmp(k.family, k.proto);
    let ports = has_ports(k.proto);
    CtTuple {
        src: k.src.to_ip(),
        dst: k.dst.to_ip(),
        sport: ports.then_some(k.sport),
        dport: ports.then_some(k.dport),
        icmp_type: icmp.then(|| u8::try_from(k.dport).unwrap_or(u8::MAX)),
        icmp_code: icmp.then_some(0),
        icmp_id: icmp.then_some(k.sport),
        packets,
        bytes,
    }
}

impl Snapshot {
    /// The control protocol's form of the entry.
    pub fn to_ct_entry(&self, worker: u16) -> CtEntry {
        let o = &self.orig;
        let mut status = Vec::new();
        if self.status & SEEN_REPLY == 0 {
            status.push("UNREPLIED".to_string());
        } else {
            status.push("SEEN_REPLY".to_string());
        }
        if self.status & ASSURED != 0 {
            status.push("ASSURED".to_string());
        }
        if self.status & SRC_NAT != 0 {
            status.push("SRC_NAT".to_string());
        }
        if self.status & DST_NAT != 0 {
            status.push("DST_NAT".to_string());
        }
        if self.status & SYNCED != 0 {
            status.push("SYNCED".to_string());
        }
        CtEntry {
            family: match o.family {
                Family::V4 => "ipv4",
                Family::V6 => "ipv6",
            }
            .to_string(),
            proto: proto_name(o.proto),
            proto_num: o.proto,
            state: self.tcp_state.map(|s| s.name().to_string()),
            timeout: self.timeout_s,
            orig: tuple(o, self.packets[0], self.bytes[0]),
            reply: tuple(&self.reply, self.packets[1], self.bytes[1]),
            status,
            mark: self.mark,
            zone: o.zone,
            worker,
            tcp_window: self.tcp_window.map(Into::into),
        }
    }
}

impl CtEvent {
    /// The event-stream line for this event.
    pub fn to_line(&self, timestamp_ms: u64, worker: u16, lost: u64) -> EventLine {
        EventLine {
            kind: self.kind,
            timestamp_ms,
            entry: self.entry.to_ct_entry(worker),
            lost,
        }
    }
}

/// Slots scanned per listed entry before a page is cut short (bounds the work of a page
/// over a sparse table or a filter that matches little), between these bounds.
const SCAN_PER_ENTRY: usize = 64;
const SCAN_MIN: usize = 16_384;
const SCAN_MAX: usize = 65_536;
/// Most entries one call converts (the control thread asks again for the rest of a page).
pub const ENTRIES_PER_CALL: usize = 1024;

impl Table {
    /// One page of matching entries starting at slot `cursor`: at most `limit` (and
    /// [`ENTRIES_PER_CALL`]) entries and a bounded number of slots scanned. `next` is
    /// `None` when the table is done.
    pub fn iter_page(
        &self,
        cursor: u64,
        limit: u32,
        m: &CtMatcher,
        now: u64,
        worker: u16,
    ) -> (Vec<CtEntry>, Option<u64>) {
        let cap = u64::from(self.capacity());
        let limit = (limit as usize).min(ENTRIES_PER_CALL);
        let budget = (limit * SCAN_PER_ENTRY).clamp(SCAN_MIN, SCAN_MAX);
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut i = cursor;
        let mut scanned = 0;
        while i < cap && out.len() < limit && scanned < budget {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            if self.live_at(idx) {
                let s = self.snapshot_at(idx, now);
                if m.matches(&s) {
                    out.push(s.to_ct_entry(worker));
                }
            }
            i += 1;
            scanned += 1;
        }
        (out, (i < cap).then_some(i))
    }

    /// Counts matching entries from slot `cursor`, scanning at most `budget` slots. An
    /// empty filter from cursor 0 is answered at once from the live count (no scan).
    pub fn count_matching(&self, m: &CtMatcher, cursor: u64, budget: usize) -> (u64, Option<u64>) {
        if cursor == 0 && m.is_empty() {
            return (self.len().into(), None);
        }
        let cap = u64::from(self.capacity());
        let end = cap.min(cursor.saturating_add(budget as u64));
        let mut n = 0;
        for i in cursor..end {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            if self.live_at(idx) && (m.is_empty() || m.matches(&self.snapshot_at(idx, 0))) {
                n += 1;
            }
        }
        (n, (end < cap).then_some(end))
    }

    /// Deletes matching entries, scanning at most `budget` slots per call and resuming
    /// where the previous call stopped. Returns `(deleted, more)`; `more` is false once
    /// the whole table has been scanned (the next call starts a new pass).
    pub fn delete_matching(&mut self, m: &CtMatcher, budget: usize, now: u64) -> (u64, bool) {
        let cap = self.capacity();
        let start = self.delete_cursor.min(cap);
        let end = u32::try_from(u64::from(start) + budget as u64)
            .unwrap_or(u32::MAX)
            .min(cap);
        let mut n = 0;
        for idx in start..end {
            if self.live_at(idx) && m.matches(&self.snapshot_at(idx, now)) {
                self.remove(super::EntryId(idx), now);
                n += 1;
            }
        }
        let more = end < cap;
        self.delete_cursor = if more { end } else { 0 };
        (n, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::testutil::*;
    use crate::conntrack::{Direction, Tunables};
    use crate::control::filter::MatcherFromFilter;
    use fwd_proto::CtFilter;

    fn filled() -> Table {
        let mut t = Table::new(64, Tunables::default(), 5);
        for p in 0..10u16 {
            let q = udp4([198, 18, 0, 1], 1000 + p, [198, 18, 0, 2], 53);
            let k = FlowKey::from_info(&q, 0).unwrap();
            t.insert(k, k.inverse(), &q, 0).unwrap();
        }
        for p in 0..5u16 {
            let q = tcp4([198, 18, 1, 1], 2000 + p, [198, 51, 100, 7], 80, SYN, 1, 0);
            let k = FlowKey::from_info(&q, 0).unwrap();
            t.insert(k, k.inverse(), &q, 0).unwrap();
        }
        t
    }

    fn filter(f: CtFilter) -> CtMatcher {
        CtMatcher::new(&f).unwrap()
    }

    #[test]
    fn filters_compile_and_match() {
        let t = filled();
        let all = CtMatcher::default();
        assert_eq!(t.count_matching(&all, 0, 1 << 20).0, 15);
        // Empty filter: the live count, whatever the budget.
        assert_eq!(t.count_matching(&all, 0, 1), (15, None));
        let tcp = filter(CtFilter {
            proto: Some("tcp".into()),
            ..CtFilter::default()
        });
        assert_eq!(t.count_matching(&tcp, 0, 1 << 20).0, 5);
        let net = filter(CtFilter {
            src: Some("198.18.1.0/24".into()),
            dport: Some(80),
            state: Some("syn_sent".into()),
            ..CtFilter::default()
        });
        assert_eq!(t.count_matching(&net, 0, 1 << 20).0, 5);
        let unreplied = filter(CtFilter {
            status: Some("UNREPLIED".into()),
            family: Some("ipv4".into()),
            ..CtFilter::default()
        });
        assert_eq!(t.count_matching(&unreplied, 0, 1 << 20).0, 15);
        let mark = filter(CtFilter {
            mark: Some("0x10/0xf0".into()),
            ..CtFilter::default()
        });
        assert_eq!(t.count_matching(&mark, 0, 1 << 20).0, 0);
    }

    #[test]
    fn bad_filters_name_the_field() {
        for (f, field) in [
            (
                CtFilter {
                    src: Some("198.18.0.0/33".into()),
                    ..CtFilter::default()
                },
                "src",
            ),
            (
                CtFilter {
                    proto: Some("bogus".into()),
                    ..CtFilter::default()
                },
                "proto",
            ),
            (
                CtFilter {
                    state: Some("OPEN".into()),
                    ..CtFilter::default()
                },
                "state",
            ),
            (
                CtFilter {
                    mark: Some("x/1".into()),
                    ..CtFilter::default()
                },
                "mark",
            ),
        ] {
            let e = CtMatcher::new(&f).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadFilter);
            assert_eq!(e.field.as_deref(), Some(field));
        }
    }

    #[test]
    fn pages_cover_the_table_once() {
        let t = filled();
        let mut cursor = Some(0);
        let mut seen = Vec::new();
        while let Some(c) = cursor {
            let (page, next) = t.iter_page(c, 4, &CtMatcher::default(), 0, 2);
            assert!(page.len() <= 4);
            seen.extend(page);
            cursor = next;
        }
        assert_eq!(seen.len(), 15);
        let e = seen.iter().find(|e| e.proto == "tcp").unwrap();
        assert_eq!(e.state.as_deref(), Some("SYN_SENT"));
        assert_eq!(e.timeout, 120);
        assert_eq!(e.worker, 2);
        assert_eq!(e.status, ["UNREPLIED"]);
        assert_eq!(e.orig.dport, Some(80));
        assert_eq!(e.reply.sport, Some(80));
        assert_eq!((e.orig.packets, e.orig.bytes), (1, 40));
    }

    #[test]
    fn icmp_entry_prints_type_code_id() {
        let mut t = Table::new(8, Tunables::default(), 5);
        let q = echo4([198, 18, 0, 1], [198, 18, 0, 2], true, 99);
        let k = FlowKey::from_info(&q, 0).unwrap();
        let id = t.insert(k, k.inverse(), &q, 0).unwrap();
        let e = t.snapshot(id, 0).unwrap().to_ct_entry(0);
        assert_eq!((e.orig.icmp_type, e.orig.icmp_id), (Some(8), Some(99)));
        assert_eq!(e.reply.icmp_type, Some(0));
        assert_eq!(e.orig.sport, None);
        assert_eq!(e.proto, "icmp");
        assert_eq!(t.tuple(id, Direction::Reply), Some(k.inverse()));
    }

    #[test]
    fn delete_matching_is_bounded_and_resumes() {
        let mut t = filled();
        let udp = filter(CtFilter {
            proto: Some("udp".into()),
            ..CtFilter::default()
        });
        let mut total = 0;
        let mut calls = 0;
        loop {
            let (n, more) = t.delete_matching(&udp, 8, 0);
            total += n;
            calls += 1;
            if !more {
                break;
            }
        }
        assert_eq!(total, 10);
        assert_eq!(calls, 8, "64 slots, 8 per call");
        assert_eq!(t.len(), 5);
        let lines: Vec<_> = t
            .take_events(100)
            .filter(|e| e.kind == fwd_proto::EventType::Destroy)
            .map(|e| e.to_line(7, 1, 0))
            .collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0].entry.proto, "udp");
    }
}
