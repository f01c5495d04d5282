//! State sync on fwd's side (docs/ha.md): a peer's changes applied to the external cache
//! (backup) or to the owning workers (active/active), and the takeover commit that moves
//! the cache into the workers.
//!
//! Each entry goes to the worker that owns its original tuple: the software owner
//! function every worker uses without a configured one (symmetric key, RETA of 128 spread
//! over the workers, `worker::pipeline`), which is also what the NIC's RSS is programmed
//! to (`daemon/ports.rs`). A DNAT entry whose reply tuple another worker owns has no steering
//! record on the new box yet (docs/ha.md, "Limits").

use super::dispatch::internal;
use super::{Backend, Server};
use crate::conntrack::{FlowKey, Synced};
use crate::control::proto::{
    ControlError, ErrorCode, EventType, HaChange, HaCounters, HaTakeover, HaTarget, Response,
};
use crate::ha::wire::{ExpectKey, Record, SYNCED_MASTER, SyncedExpect, put_record};
use crate::nat::{Owner, SYMMETRIC_RSS_KEY, Tuple};

use crate::wire::Addr;
use crate::worker::{WorkerCommand, WorkerReply};
use std::net::IpAddr;
use std::time::Duration;

/// How long a takeover waits for the slow path's announcements (it serves them on its
/// next millisecond tick).
const ANNOUNCE_WAIT: Duration = Duration::from_secs(1);

/// Records per worker command (bounded work between bursts).
pub const SYNC_SLICE: usize = 1024;

impl<B: Backend> Server<B> {
    /// `ha_apply`.
    pub(super) fn ha_apply(
        &mut self,
        changes: &[HaChange],
        target: HaTarget,
    ) -> Result<Response, ControlError> {
        let mut records = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            let s = Synced::from_ct_entry(&c.entry).map_err(|mut e| {
                e.field = Some(format!(
                    "changes[{i}].entry.{}",
                    e.field.unwrap_or_default()
                ));
                e
            })?;
            records.push(match c.kind {
                EventType::Destroy => Record::Destroy(s.orig),
                kind => Record::Upsert {
                    new: kind == EventType::New,
                    entry: s,
                },
            });
        }
        self.apply_synced_records(records, target)
    }

    /// `ha_apply_records`: the binary form (base64 of wire records back to back), decoded
    /// and checked as a whole before anything is applied.
    pub(super) fn ha_apply_records(
        &mut self,
        records: &str,
        target: HaTarget,
    ) -> Result<Response, ControlError> {
        let bytes = crate::ha::wire::base64_decode(records).map_err(|m| {
            ControlError::new(ErrorCode::BadRequest, format!("not base64: {m}")).field("records")
        })?;
        let records = crate::ha::wire::decode_records(&bytes).map_err(|e| {
            let at = match e {
                crate::ha::wire::DecodeError::Record { index, offset } => {
                    format!("records[{index}]: malformed record at byte {offset}")
                }
                e => e.to_string(),
            };
            ControlError::new(ErrorCode::BadRequest, at).field("records")
        })?;
        self.apply_synced_records(records, target)
    }

    /// Applies decoded records to the cache or the workers; answers what this request did.
    fn apply_synced_records(
        &mut self,
        records: Vec<Record>,
        target: HaTarget,
    ) -> Result<Response, ControlError> {
        let before = self.ha.counters;
        let records = self.apply_expectations(records);
        match target {
            HaTarget::Cache => {
                let max = usize::try_from(self.cfg.max_entries).unwrap_or(usize::MAX);
                for r in records {
                    let ok = match r {
                        Record::Upsert { entry, .. } => {
                            (self.ha.cache.len() < max || self.ha.cache.contains_key(&entry.orig))
                                && self.ha.cache.insert(entry)
                        }
                        Record::Destroy(k) => self.ha.cache.remove(&k).is_some(),
                        Record::Expect(_) | Record::ExpectDestroy(_) => false,
                    };
                    self.count(ok, 1);
                }
            }
            HaTarget::Workers => self.apply_on_workers(records, false)?,
        }
        let mut c = self.ha_counters();
        c.applied -= before.applied;
        c.failed -= before.failed;
        Ok(Response::HaApplied(c))
    }

    /// Applies the expectation records to the shared expectation table at once, whatever
    /// the target (docs/ha.md, "Expectations"): marked as the peer's
    /// ([`SYNCED_MASTER`]), with the time the peer said they have left. Returns the other
    /// records.
    fn apply_expectations(&mut self, records: Vec<Record>) -> Vec<Record> {
        if !records
            .iter()
            .any(|r| matches!(r, Record::Expect(_) | Record::ExpectDestroy(_)))
        {
            return records;
        }
        let table = self.backend.expectations().cloned();
        let now = self.backend.now_ns();
        let mut rest = Vec::with_capacity(records.len());
        for r in records {
            let ok = match (&r, &table) {
                (Record::Expect(e), Some(t)) => {
                    let expiry = now.saturating_add(u64::from(e.timeout_s) * 1_000_000_000);
                    t.insert(&e.to_expectation(), expiry, now).is_ok()
                }
                (Record::ExpectDestroy(k), Some(t)) => {
                    t.remove_key(k.family, k.proto, k.src, k.dst, k.dport, now)
                }
                (Record::Expect(_) | Record::ExpectDestroy(_), None) => false,
                _ => {
                    rest.push(r);
                    continue;
                }
            };
            self.count(ok, 1);
        }
        rest
    }

    /// The expectation table's changes since the last call as sync records, appended to
    /// `out` (the binary event stream): the table is listed only when its counters moved
    /// since the last listing; an expectation not sent yet (or re-announced with a new
    /// expiry) goes out as EXPECT, one sent before and gone since as EXPECT_DESTROY. The
    /// peer's own ([`SYNCED_MASTER`]) are never sent back.
    pub(super) fn expect_records(&mut self, out: &mut Vec<u8>) -> u64 {
        let Some(table) = self.backend.expectations().cloned() else {
            return 0;
        };
        let st = table.stats();
        let stamp = st.create.wrapping_add(st.new).wrapping_add(st.delete);
        if self.ha.expect_stamp == Some(stamp) {
            return 0;
        }
        self.ha.expect_stamp = Some(stamp);
        let now = self.backend.now_ns();
        let mut count = 0;
        let mut live = std::collections::HashSet::new();
        for (e, left) in table.list(now) {
            if e.master_worker == SYNCED_MASTER {
                continue;
            }
            let key = ExpectKey::of(&e);
            live.insert(key);
            let expiry = now.saturating_add(left);
            // The same expectation within a second of the expiry sent: nothing new.
            let same = self
                .ha
                .expect_sent
                .get(&key)
                .is_some_and(|&(m, x)| m == e.master && x.abs_diff(expiry) < 1_000_000_000);
            if same {
                continue;
            }
            self.ha.expect_sent.insert(key, (e.master, expiry));
            put_record(
                out,
                &Record::Expect(SyncedExpect::from_expectation(&e, left)),
            );
            count += 1;
        }
        let gone: Vec<ExpectKey> = self
            .ha
            .expect_sent
            .keys()
            .filter(|k| !live.contains(*k))
            .copied()
            .collect();
        for k in gone {
            self.ha.expect_sent.remove(&k);
            put_record(out, &Record::ExpectDestroy(k));
            count += 1;
        }
        count
    }

    /// `ha_commit`: the cache into the owning workers, adopted.
    pub(super) fn ha_commit(&mut self) -> Result<Response, ControlError> {
        let records: Vec<Record> = self
            .ha
            .cache
            .drain()
            .map(|entry| Record::Upsert { new: true, entry })
            .collect();
        let before = self.ha.counters;
        self.apply_on_workers(records, true)?;
        let c = &mut self.ha.counters;
        c.commits += 1;
        c.committed += c.applied - before.applied;
        Ok(Response::HaApplied(self.ha_counters()))
    }

    /// `ha_takeover`: the commit, then the announcements, sent by the slow path (asked
    /// only after the commit succeeded, so the box forwards the synced connections before
    /// traffic is moved to it).
    pub(super) fn ha_takeover(&mut self, addresses: &[IpAddr]) -> Result<Response, ControlError> {
        let Some(a) = self.cfg.announcer.clone() else {
            return Err(internal(
                "no slow path to announce the service addresses from",
            ));
        };
        let Response::HaApplied(counters) = self.ha_commit()? else {
            return Err(internal("ha_commit gave no counters"));
        };
        let generation = a.request(addresses.iter().map(|&ip| Addr::from(ip)).collect());
        let r = a.wait(generation, ANNOUNCE_WAIT).ok_or_else(|| {
            ControlError::new(
                ErrorCode::WorkerTimeout,
                format!(
                    "the slow path did not send the announcements within {} ms (the commit \
                     is done; ask again)",
                    ANNOUNCE_WAIT.as_millis()
                ),
            )
        })?;
        Ok(Response::HaTakeover(HaTakeover {
            counters,
            garp_sent: r.garp,
            na_sent: r.na,
            not_local: r.not_local.into_iter().map(Addr::to_ip).collect(),
        }))
    }

    /// `ha_status`.
    pub(super) fn ha_counters(&self) -> HaCounters {
        HaCounters {
            cache_entries: self.ha.cache.len() as u64,
            ..self.ha.counters
        }
    }

    fn count(&mut self, ok: bool, n: u64) {
        if ok {
            self.ha.counters.applied += n;
        } else {
            self.ha.counters.failed += n;
        }
    }

    /// The worker that owns an original tuple.
    fn owner_of(&mut self, k: &FlowKey) -> Result<usize, ControlError> {
        let n = u16::try_from(self.backend.workers()).unwrap_or(u16::MAX);
        if self.ha.owner.as_ref().is_none_or(|o| o.workers() != n) {
            let o = Owner::spread(&SYMMETRIC_RSS_KEY, 128, n)
                .map_err(|e| internal(format!("owner function: {e}")))?;
            self.ha.owner = Some(o);
        }
        let o = self
            .ha
            .owner
            .as_ref()
            .ok_or_else(|| internal("no owner function"))?;
        Ok(usize::from(o.owner(&Tuple::from_key(k))))
    }

    /// Sends records to their owners in slices of [`SYNC_SLICE`], the workers in parallel.
    fn apply_on_workers(&mut self, records: Vec<Record>, adopt: bool) -> Result<(), ControlError> {
        let n = self.backend.workers();
        let mut per: Vec<Vec<Record>> = vec![Vec::new(); n];
        for r in records {
            let k = match &r {
                Record::Upsert { entry, .. } => entry.orig,
                Record::Destroy(k) => *k,
                // Applied by `apply_expectations`, never routed to a worker.
                Record::Expect(_) | Record::ExpectDestroy(_) => {
                    self.count(false, 1);
                    continue;
                }
            };
            let w = self.owner_of(&k)?;
            per.get_mut(w)
                .ok_or_else(|| internal(format!("owner {w} of {n} workers")))?
                .push(r);
        }
        while per.iter().any(|v| !v.is_empty()) {
            let cmds: Vec<(usize, WorkerCommand)> = per
                .iter_mut()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(w, v)| {
                    let rest = v.split_off(v.len().min(SYNC_SLICE));
                    let records = std::mem::replace(v, rest);
                    (w, WorkerCommand::CtSync { records, adopt })
                })
                .collect();
            for (w, reply) in self.ask_each(cmds)? {
                match reply {
                    WorkerReply::Synced { applied, failed } => {
                        self.count(true, applied);
                        self.count(false, failed);
                    }
                    WorkerReply::Error(e) => return Err(e.into()),
                    other => {
                        return Err(ControlError::new(
                            ErrorCode::Internal,
                            format!("worker {w}: unexpected reply {other:?} to ct_sync"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
