//! The conntrack requests: statistics, listing with per-worker cursors, deletion and
//! sliced counting, each fanned out to every worker and merged.

use super::dispatch::internal;
use super::{Backend, COUNT_SLICE, Server};
use crate::conntrack::CtMatcher;
use crate::control::filter::MatcherFromFilter;
use crate::control::proto::{
    ConntrackStats, ControlError, CtCounters, CtFilter, ErrorCode, MAX_PAGE, Response, WorkerStats,
};
use crate::worker::{WorkerCommand, WorkerReply};

pub(super) fn encode_cursor(worker: usize, cursor: u64) -> String {
    format!("{worker}:{cursor}")
}

pub(super) fn decode_cursor(s: &str, workers: usize) -> Result<(usize, u64), ControlError> {
    let bad =
        || ControlError::new(ErrorCode::BadCursor, format!("bad cursor {s:?}")).field("cursor");
    let (w, c) = s.split_once(':').ok_or_else(bad)?;
    let w: usize = w.parse().map_err(|_| bad())?;
    let c: u64 = c.parse().map_err(|_| bad())?;
    if w >= workers {
        return Err(bad());
    }
    Ok((w, c))
}

impl<B: Backend> Server<B> {
    pub(super) fn ct_stats_response(&mut self) -> Result<Response, ControlError> {
        let workers = self.ct_stats()?;
        Ok(Response::ConntrackStats(ConntrackStats {
            total: sum_ct(&workers),
            workers,
        }))
    }

    pub(super) fn ct_stats(&mut self) -> Result<Vec<CtCounters>, ControlError> {
        self.ask_all(|_| WorkerCommand::CtStats)?
            .into_iter()
            .map(|r| match r {
                WorkerReply::Stats(s) => Ok(s.into()),
                WorkerReply::Error(e) => Err(e.into()),
                other => Err(internal(format!("unexpected reply {other:?}"))),
            })
            .collect()
    }

    /// Worker counters with each worker's `conntrack -S` (left zero when the workers
    /// cannot answer it, e.g. a processor without a connection table: the edge counters
    /// are still worth reporting).
    pub(super) fn workers_with_ct(&mut self) -> Result<Vec<WorkerStats>, ControlError> {
        let ct = match self.ct_stats() {
            Ok(ct) => ct,
            Err(e) if e.code == ErrorCode::Internal => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut ws = self.backend.worker_stats();
        for (w, c) in ws.iter_mut().zip(ct) {
            w.ct = c;
        }
        Ok(ws)
    }

    pub(super) fn ct_list(
        &mut self,
        filter: CtFilter,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Response, ControlError> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("limit must be 1 to {MAX_PAGE}"),
            )
            .field("limit"));
        }
        let filter = CtMatcher::new(&filter)?;
        let n = self.backend.workers();
        let (mut w, mut c) = match cursor.as_deref() {
            Some(s) => decode_cursor(s, n)?,
            None => (0, 0),
        };
        let mut entries = Vec::new();
        while w < n {
            let want = limit.saturating_sub(u32::try_from(entries.len()).unwrap_or(u32::MAX));
            if want == 0 {
                return Ok(Response::ConntrackPage {
                    entries,
                    next_cursor: Some(encode_cursor(w, c)),
                });
            }
            let r = self.ask(
                w,
                WorkerCommand::CtList {
                    filter: filter.clone(),
                    cursor: c,
                    limit: want,
                },
            )?;
            match r {
                WorkerReply::CtPage {
                    entries: page,
                    next_cursor,
                } => {
                    let worker = u16::try_from(w).unwrap_or(u16::MAX);
                    entries.extend(page.iter().map(|s| s.to_ct_entry(worker)));
                    match next_cursor {
                        Some(next) => c = next,
                        None => {
                            w += 1;
                            c = 0;
                        }
                    }
                }
                WorkerReply::Error(e) => return Err(e.into()),
                other => return Err(internal(format!("unexpected reply {other:?}"))),
            }
        }
        Ok(Response::ConntrackPage {
            entries,
            next_cursor: None,
        })
    }

    pub(super) fn ct_delete(
        &mut self,
        filter: CtFilter,
        all: bool,
    ) -> Result<Response, ControlError> {
        if filter.is_empty() && !all {
            return Err(ControlError::new(
                ErrorCode::RefusedUnfiltered,
                "an empty filter deletes every entry: set `all` to flush",
            ));
        }
        let filter = CtMatcher::new(&filter)?;
        let mut deleted = 0u64;
        for w in 0..self.backend.workers() {
            // Bounded: at most 10 000 rounds of 10 000 entries per worker.
            for _ in 0..10_000 {
                match self.ask(
                    w,
                    WorkerCommand::CtDelete {
                        filter: filter.clone(),
                        budget: 10_000,
                    },
                )? {
                    WorkerReply::Deleted { count, more } => {
                        deleted += count;
                        if !more {
                            break;
                        }
                    }
                    WorkerReply::Error(e) => return Err(e.into()),
                    other => return Err(internal(format!("unexpected reply {other:?}"))),
                }
            }
        }
        Ok(Response::Deleted { deleted })
    }

    /// Counts matching entries in slices of [`COUNT_SLICE`] slots per worker command, the
    /// workers in parallel: no command scans a whole table.
    pub(super) fn ct_count(&mut self, filter: CtFilter) -> Result<Response, ControlError> {
        let filter = CtMatcher::new(&filter)?;
        let mut next: Vec<Option<u64>> = vec![Some(0); self.backend.workers()];
        let mut count = 0u64;
        while next.iter().any(Option::is_some) {
            let cmds: Vec<(usize, WorkerCommand)> = next
                .iter()
                .enumerate()
                .filter_map(|(w, c)| {
                    Some((
                        w,
                        WorkerCommand::CtCount {
                            filter: filter.clone(),
                            cursor: (*c)?,
                            budget: COUNT_SLICE,
                        },
                    ))
                })
                .collect();
            for (w, r) in self.ask_each(cmds)? {
                match r {
                    WorkerReply::Count {
                        count: c,
                        next_cursor,
                    } => {
                        count += c;
                        next[w] = next_cursor;
                    }
                    WorkerReply::Error(e) => return Err(e.into()),
                    other => return Err(internal(format!("unexpected reply {other:?}"))),
                }
            }
        }
        Ok(Response::Count { count })
    }
}

fn sum_ct(v: &[CtCounters]) -> CtCounters {
    let mut t = CtCounters::default();
    for c in v {
        t.found += c.found;
        t.invalid += c.invalid;
        t.insert += c.insert;
        t.insert_failed += c.insert_failed;
        t.drop += c.drop;
        t.early_drop += c.early_drop;
        t.error += c.error;
        t.search_restart += c.search_restart;
        t.entries += c.entries;
        t.max += c.max;
    }
    t
}
