//! `conntrack_expect`: the shared expectation table (`conntrack -L expect`), its
//! counters and each worker's helper counters.

use super::dispatch::internal;
use super::{Backend, Server};
use crate::conntrack::listing::proto_name;
use crate::control::proto::{
    ControlError, CtExpectation, ExpectCounters, ExpectList, HelperWorkerCounters, Response,
};
use crate::helper::{ExpectStats, Expectation};
use crate::wire::Family;
use crate::worker::{WorkerCommand, WorkerReply};

/// The protocol's form of one expectation with `left_ns` to live (rounded up to seconds,
/// as the kernel's listing never shows 0 for a live one).
pub fn expectation_view(e: &Expectation, left_ns: u64) -> CtExpectation {
    CtExpectation {
        family: match e.family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
        .to_string(),
        proto: proto_name(e.proto),
        proto_num: e.proto,
        timeout: left_ns.div_ceil(1_000_000_000),
        src: e.src.to_ip(),
        dst: e.dst.to_ip(),
        sport: 0,
        dport: e.dport,
        master_src: e.master.src.to_ip(),
        master_dst: e.master.dst.to_ip(),
        master_sport: e.master.sport,
        master_dport: e.master.dport,
        master_proto_num: e.master.proto,
        helper: e.helper.name().to_string(),
        master_worker: e.master_worker,
    }
}

pub fn expect_counters(s: &ExpectStats) -> ExpectCounters {
    ExpectCounters {
        create: s.create,
        new: s.new,
        delete: s.delete,
        full: s.full,
        count: s.count,
        max: s.max,
    }
}

impl<B: Backend> Server<B> {
    pub(super) fn ct_expect(&mut self, counters_only: bool) -> Result<Response, ControlError> {
        let Some(table) = self.backend.expectations().cloned() else {
            return Ok(Response::ConntrackExpect(ExpectList::default()));
        };
        let now = self.backend.now_ns();
        let listed = if counters_only {
            Vec::new()
        } else {
            table.list(now)
        };
        let mut expectations: Vec<CtExpectation> = listed
            .iter()
            .map(|(e, left)| expectation_view(e, *left))
            .collect();
        expectations.sort_by(|a, b| {
            (a.timeout, a.src, a.dst, a.dport).cmp(&(b.timeout, b.src, b.dst, b.dport))
        });
        let counters = expect_counters(&table.stats());
        let workers = self
            .ask_all(|_| WorkerCommand::HelperStats)?
            .into_iter()
            .map(|r| match r {
                WorkerReply::HelperStats(c) => Ok(HelperWorkerCounters {
                    announced: c.announced,
                    malformed: c.malformed,
                    related: c.related,
                }),
                WorkerReply::Error(e) => Err(e.into()),
                other => Err(internal(format!("unexpected reply {other:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Response::ConntrackExpect(ExpectList {
            expectations,
            counters,
            workers,
        }))
    }
}
