//! Fan-out to the workers: one command per worker over its ring, the answers collected
//! with a deadline (late replies are owed and discarded), tunables pushed to every worker,
//! events drained.

#![allow(
    clippy::disallowed_types,
    reason = "control thread, not the data path: uptime and worker timeouts use Instant/SystemTime"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::dispatch::internal;
use super::{Backend, Server, TUNABLES_FILE};
use crate::conntrack::{EventKind, SYNCED, Synced};
use crate::control::proto::{ControlError, ErrorCode, EventLine, Response};
use crate::ha::wire::{self, Record};
use crate::worker::{WorkerCommand, WorkerReply};

/// Each worker's share of `nf_conntrack_max` across `n` workers (rounded up). `fwd` sizes
/// each worker's table with the share of the configured maximum, so every maximum up to
/// the configured one fits.
pub fn worker_share(max: u64, n: usize) -> u64 {
    let n = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
    max.div_ceil(n)
}

impl<B: Backend> Server<B> {
    /// Sends the effective tunables to every worker (at start).
    pub fn apply_tunables(&mut self) -> Result<(), ControlError> {
        let values = self.tunables.clone();
        self.push_tunables(&values)
    }

    pub(super) fn push_tunables(
        &mut self,
        values: &BTreeMap<String, u64>,
    ) -> Result<(), ControlError> {
        let n = self.backend.workers();
        let list: Vec<(String, u64)> = values
            .iter()
            .map(|(k, v)| {
                let v = if k == "nf_conntrack_max" {
                    worker_share(*v, n)
                } else {
                    *v
                };
                (k.clone(), v)
            })
            .collect();
        for r in self.ask_all(|_| WorkerCommand::SetTunables(list.clone()))? {
            if let WorkerReply::Error(e) = r {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Sends one command to each worker and waits for every reply (in worker order).
    pub(super) fn ask_all(
        &mut self,
        mut make: impl FnMut(usize) -> WorkerCommand,
    ) -> Result<Vec<WorkerReply>, ControlError> {
        let n = self.backend.workers();
        (0..n).map(|w| self.ask(w, make(w))).collect()
    }

    /// Sends one command to worker `w` and waits for its reply.
    pub(super) fn ask(
        &mut self,
        w: usize,
        cmd: WorkerCommand,
    ) -> Result<WorkerReply, ControlError> {
        let deadline = Instant::now() + self.cfg.worker_timeout;
        self.send_cmd(w, cmd, deadline)?;
        self.recv_reply(w, deadline)
    }

    /// Sends one command to each listed worker, then waits for each reply (the workers
    /// work in parallel); the replies come back with their worker.
    pub(super) fn ask_each(
        &mut self,
        cmds: Vec<(usize, WorkerCommand)>,
    ) -> Result<Vec<(usize, WorkerReply)>, ControlError> {
        let deadline = Instant::now() + self.cfg.worker_timeout;
        let mut sent = Vec::with_capacity(cmds.len());
        for (w, cmd) in cmds {
            self.send_cmd(w, cmd, deadline)?;
            sent.push(w);
        }
        let mut out = Vec::with_capacity(sent.len());
        let mut first_err = None;
        for w in sent {
            // Every sent command's reply is taken or marked owed, even after an error.
            match self.recv_reply(w, deadline) {
                Ok(r) => out.push((w, r)),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    pub(super) fn timeout(w: usize) -> ControlError {
        ControlError::new(
            ErrorCode::WorkerTimeout,
            format!("worker {w} did not answer in time"),
        )
    }

    /// Queues a command on worker `w`'s ring, retrying while it is full until `deadline`.
    pub(super) fn send_cmd(
        &mut self,
        w: usize,
        cmd: WorkerCommand,
        deadline: Instant,
    ) -> Result<(), ControlError> {
        let mut cmd = Some(Box::new(cmd));
        while let Some(c) = cmd.take() {
            // Discard replies to commands we gave up on earlier.
            while self.owed[w] > 0 && self.backend.try_recv(w).is_some() {
                self.owed[w] -= 1;
            }
            if let Err(c) = self.backend.send(w, c) {
                if Instant::now() >= deadline {
                    return Err(Self::timeout(w));
                }
                cmd = Some(c);
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    }

    /// Waits for worker `w`'s reply to the command sent last; past `deadline` the reply
    /// is owed (discarded when it comes).
    pub(super) fn recv_reply(
        &mut self,
        w: usize,
        deadline: Instant,
    ) -> Result<WorkerReply, ControlError> {
        loop {
            if self.owed[w] == 0
                && let Some(r) = self.backend.try_recv(w)
            {
                return Ok(r);
            }
            while self.owed[w] > 0 && self.backend.try_recv(w).is_some() {
                self.owed[w] -= 1;
            }
            if Instant::now() >= deadline {
                self.owed[w] += 1;
                return Err(Self::timeout(w));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Validates every value, applies them to every worker, then persists the result; a
    /// worker or persistence failure puts the previous values back on the workers, so a
    /// refused request changes nothing anywhere.
    pub(super) fn tuning_set(
        &mut self,
        values: BTreeMap<String, u64>,
    ) -> Result<Response, ControlError> {
        for (k, v) in &values {
            (self.check)(k, *v).map_err(|m| {
                ControlError::new(ErrorCode::BadTunable, format!("{k} = {v}: {m}")).field(k)
            })?;
        }
        let mut next = self.tunables.clone();
        next.extend(values.iter().map(|(k, v)| (k.clone(), *v)));
        let previous: BTreeMap<String, u64> = values
            .keys()
            .filter_map(|k| Some((k.clone(), *self.tunables.get(k)?)))
            .collect();
        let json = serde_json::to_vec_pretty(&next).map_err(|e| internal(e.to_string()))?;
        let applied = self.push_tunables(&values).and_then(|()| {
            self.state.write_atomic(TUNABLES_FILE, &json).map_err(|e| {
                ControlError::new(
                    ErrorCode::Persist,
                    format!("{}: {e}", self.state.path(TUNABLES_FILE).display()),
                )
            })
        });
        if let Err(e) = applied {
            if let Err(back) = self.push_tunables(&previous) {
                eprintln!("fwd: tunables: restoring the previous values failed: {back}");
            }
            return Err(e);
        }
        self.tunables = next;
        Ok(Response::Tuning {
            values: self.tunables.clone(),
        })
    }

    /// Drains up to [`RAW_TAKE`] events per worker unconverted and returns them as sync
    /// records (the binary stream, `subscribe_records`) and, when `lines`, as event lines
    /// too (for the JSON subscribers of the same poll).
    pub(super) fn take_raw_events(&mut self, lines: bool) -> TakenEvents {
        let mut out = TakenEvents::default();
        let now_ms = epoch_ms();
        for w in 0..self.backend.workers() {
            let Ok(WorkerReply::RawEvents { events, lost }) =
                self.ask(w, WorkerCommand::TakeRawEvents { max: RAW_TAKE })
            else {
                continue;
            };
            out.lost += lost;
            let worker = u16::try_from(w).unwrap_or(u16::MAX);
            for e in &events {
                if lines {
                    out.lines.push(e.to_line(now_ms, worker, 0));
                }
                if e.entry.status & SYNCED != 0 {
                    out.synced_skipped += 1;
                    continue;
                }
                let r = match e.kind {
                    EventKind::Destroy => Record::Destroy(e.entry.orig),
                    kind => Record::Upsert {
                        new: kind == EventKind::New,
                        entry: Synced::from_snapshot(&e.entry),
                    },
                };
                wire::put_record(&mut out.records, &r);
                out.count += 1;
            }
        }
        out.count += self.expect_records(&mut out.records);
        out
    }

    /// Drains up to 256 events per worker and returns them (only called while someone
    /// subscribes: events are taken from the workers), each line stamped with the wall
    /// clock in milliseconds since the Unix epoch when it was read, as the protocol says
    /// and as `take_raw_events` stamps them.
    pub(super) fn take_events(&mut self) -> (Vec<EventLine>, u64) {
        let mut out = Vec::new();
        let mut lost_total = 0;
        let now_ms = epoch_ms();
        for w in 0..self.backend.workers() {
            if let Ok(WorkerReply::Events { events, lost }) =
                self.ask(w, WorkerCommand::TakeEvents { max: 256 })
            {
                let worker = u16::try_from(w).unwrap_or(u16::MAX);
                out.extend(events.iter().map(|e| e.to_line(now_ms, worker, lost)));
                lost_total += lost;
            }
        }
        (out, lost_total)
    }
}

/// Events per worker a binary-stream poll takes at most (the event ring holds 4 096).
pub const RAW_TAKE: u32 = 1024;

/// What one poll took from the workers for the subscribers.
#[derive(Debug, Default)]
pub(super) struct TakenEvents {
    /// Event lines (only when JSON subscribers listen).
    pub lines: Vec<EventLine>,
    /// Sync wire records back to back, `SYNCED` entries left out.
    pub records: Vec<u8>,
    pub count: u64,
    pub synced_skipped: u64,
    /// Events the workers lost (full event rings).
    pub lost: u64,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
