//! `conntrack -L / -C / -D` for the control socket: bounded scans of the table with a
//! compiled filter ([`super::filter`]). A listing page is [`Snapshot`]s: the control side
//! writes the protocol's entries from them (`control::conntrack`), off the worker.

pub use super::filter::{CtMatcher, proto_name, proto_number};
use super::table::{Snapshot, Table};

/// Slots scanned per listed entry before a page is cut short (bounds the work of a page
/// over a sparse table or a filter that matches little), between these bounds.
const SCAN_PER_ENTRY: usize = 64;
const SCAN_MIN: usize = 16_384;
const SCAN_MAX: usize = 65_536;
/// Most entries one call copies (the control thread asks again for the rest of a page).
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
    ) -> (Vec<Snapshot>, Option<u64>) {
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
                    out.push(s);
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
    use crate::conntrack::{EventKind, FlowKey};
    use crate::control::filter::MatcherFromFilter;
    use crate::control::proto::{CtFilter, ErrorCode};

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
            let (page, next) = t.iter_page(c, 4, &CtMatcher::default(), 0);
            assert!(page.len() <= 4);
            seen.extend(page.iter().map(|s| s.to_ct_entry(2)));
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
            .filter(|e| e.kind == EventKind::Destroy)
            .map(|e| e.to_line(7, 1, 0))
            .collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0].entry.proto, "udp");
    }
}
