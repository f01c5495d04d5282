//! Evaluation: [`CompiledRuleset::eval`] walks a hook's base chains with nftables
//! semantics, the classifier choosing the candidate rules; counters, `limit` buckets and
//! `ct count` slots are updated on the way.

use super::ir::*;
use super::ruleset::CompiledRuleset;
#[cfg(test)]
use super::ruleset::u32_of;
use crate::rules::ast::*;
use crate::rules::check::MAX_JUMP_DEPTH;
use crate::rules::classify::{MAX_TUPLES, PacketKey};
use crate::wire::{Addr, Family, IpInfo, L4Info, proto};
use arrayvec::ArrayVec;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

fn ports_of(ip: &IpInfo) -> Option<(u16, u16)> {
    match ip.l4 {
        Some(L4Info::Tcp(t)) => Some((t.sport, t.dport)),
        Some(L4Info::Udp { sport, dport }) => Some((sport, dport)),
        _ => None,
    }
}

/// The ICMP/ICMPv6 code (echo messages: 0).
pub(crate) fn icmp_code(ip: &IpInfo) -> Option<u8> {
    match ip.l4? {
        L4Info::IcmpEcho { .. } => Some(0),
        L4Info::IcmpError { code, .. } | L4Info::IcmpOther { code, .. } => Some(code),
        _ => None,
    }
}

fn icmp_type(ip: &IpInfo) -> Option<u8> {
    let v6 = ip.family == Family::V6;
    match ip.l4? {
        L4Info::IcmpEcho { request, .. } => Some(match (v6, request) {
            (false, true) => 8,
            (false, false) => 0,
            (true, true) => 128,
            (true, false) => 129,
        }),
        L4Info::IcmpError { icmp_type, .. } | L4Info::IcmpOther { icmp_type, .. } => {
            Some(icmp_type)
        }
        _ => None,
    }
}

/// The value of a field for a packet (`None`: the field does not apply, the match fails).
pub(super) fn field_value(f: Field, ctx: &PacketCtx<'_>) -> Option<u128> {
    let ip = ctx.ip;
    let v4 = ip.family == Family::V4;
    let v = |x: Addr| Some(addr_to_u128(x));
    match f {
        Field::IpSaddr if v4 => v(ip.src),
        Field::IpDaddr if v4 => v(ip.dst),
        Field::IpProtocol if v4 => Some(u128::from(ip.proto)),
        Field::Ip6Saddr if !v4 => v(ip.src),
        Field::Ip6Daddr if !v4 => v(ip.dst),
        Field::Ip6Nexthdr if !v4 => Some(u128::from(ip.proto)),
        Field::MetaL4proto => Some(u128::from(ip.proto)),
        Field::MetaNfproto => Some(if v4 { 2 } else { 10 }),
        Field::MetaMark => Some(u128::from(ctx.mark)),
        Field::CtMark => Some(u128::from(ctx.ct_mark)),
        Field::TcpSport | Field::TcpDport | Field::TcpFlags if ip.proto != proto::TCP => None,
        Field::UdpSport | Field::UdpDport if ip.proto != proto::UDP => None,
        Field::TcpFlags => match ip.l4? {
            L4Info::Tcp(t) => Some(u128::from(t.flags.0)),
            _ => None,
        },
        Field::TcpSport | Field::UdpSport | Field::ThSport => {
            ports_of(ip).map(|(s, _)| u128::from(s))
        }
        Field::TcpDport | Field::UdpDport | Field::ThDport => {
            ports_of(ip).map(|(_, d)| u128::from(d))
        }
        Field::IcmpType if v4 && ip.proto == proto::ICMP => icmp_type(ip).map(u128::from),
        Field::Icmpv6Type if !v4 && ip.proto == proto::ICMPV6 => icmp_type(ip).map(u128::from),
        Field::IcmpCode if v4 && ip.proto == proto::ICMP => icmp_code(ip).map(u128::from),
        Field::Icmpv6Code if !v4 && ip.proto == proto::ICMPV6 => icmp_code(ip).map(u128::from),
        Field::Iif | Field::Iifname => ctx.iif.map(u128::from),
        Field::Oif | Field::Oifname => ctx.oif.map(u128::from),
        Field::CtState => Some(u128::from(ctx.ct_state)),
        Field::CtStatus => Some(u128::from(ctx.ct_status)),
        _ => super::facts_eval::field_value(f, ctx),
    }
}

fn matches(m: &CMatch, ctx: &PacketCtx<'_>) -> bool {
    let Some(v) = field_value(m.field, ctx) else {
        return false;
    };
    let hit = match &m.test {
        Test::In(iv) => {
            // Sorted disjoint intervals: the last one starting at or below v.
            let i = iv.partition_point(|&(lo, _)| lo <= v);
            i > 0 && v <= iv[i - 1].1
        }
        Test::AnyBits(b) => v & b != 0,
        Test::Masked { mask, expect } => v & mask == *expect,
    };
    hit != m.neg
}

enum Step {
    Next,
    Verdict(Decision),
    Return,
    Jump(u32),
    Goto(u32),
    /// A NAT statement decided: the chain ends with accept.
    NatDone,
}

/// A chain being walked: its id and the candidate lists still to merge.
struct Frame<'a> {
    chain: u32,
    lists: ArrayVec<&'a [u32], { MAX_TUPLES + 1 }>,
}

impl Frame<'_> {
    /// The next candidate rule position (smallest head across the lists).
    fn next(&mut self) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        for (i, l) in self.lists.iter().enumerate() {
            if let Some(&h) = l.first()
                && best.is_none_or(|(_, b)| h < b)
            {
                best = Some((i, h));
            }
        }
        let (i, h) = best?;
        // Skip this position in every list (a rule may sit in several tuples).
        for l in self.lists.iter_mut() {
            if l.first() == Some(&h) {
                *l = &l[1..];
            }
        }
        let _ = i;
        Some(h)
    }
}

impl CompiledRuleset {
    /// The generation number the publisher gave this ruleset (0 before publishing).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The ruleset this was compiled from.
    pub fn source(&self) -> &Ruleset {
        &self.source
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Number of workers the counter blocks were sized for.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Whether `hook` has a base chain: without one, [`eval`](Self::eval) accepts with
    /// nothing counted, no NAT and no state touched (the worker skips the hook).
    pub fn has_base_chains(&self, hook: Hook) -> bool {
        !self.hooks[hook as usize].is_empty()
    }

    /// Evaluates every base chain of `hook` (by priority) for one packet, with the
    /// classifier choosing candidate rules. `worker` selects the counter block; each
    /// worker index must be used by one thread only.
    pub fn eval(
        &self,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        worker: usize,
        now_ns: u64,
    ) -> EvalResult {
        self.eval_with(hook, ctx, worker, now_ns, true)
    }

    /// The same as [`eval`](Self::eval) with every rule a candidate: the oracle.
    pub fn eval_linear(
        &self,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        worker: usize,
        now_ns: u64,
    ) -> EvalResult {
        self.eval_with(hook, ctx, worker, now_ns, false)
    }

    fn eval_with(
        &self,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        worker: usize,
        now_ns: u64,
        classify: bool,
    ) -> EvalResult {
        let mut res = EvalResult::new();
        let worker = worker % self.workers.len();
        let key = PacketKey::of(ctx.ip);
        for base in &self.hooks[hook as usize] {
            if base.family.is_some_and(|f| f != ctx.ip.family) {
                continue;
            }
            if base.nat && (!ctx.first_packet || res.nat.is_some()) {
                continue;
            }
            let d = self.run_chain(base.chain, ctx, &key, worker, now_ns, classify, &mut res);
            if d != Decision::Accept {
                res.verdict = d;
                // A dropped connection holds no ct count slots.
                res.ct_count.clear();
                return res;
            }
        }
        res.verdict = Decision::Accept;
        res
    }

    fn frame<'a>(&'a self, chain: u32, key: &PacketKey, classify: bool) -> Frame<'a> {
        let c = &self.chains[chain as usize];
        let mut lists = ArrayVec::new();
        if classify {
            c.classifier.candidates(key, &mut lists);
        } else {
            lists.push(&c.all[..]);
        }
        Frame { chain, lists }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_chain(
        &self,
        base: u32,
        ctx: &mut PacketCtx<'_>,
        key: &PacketKey,
        worker: usize,
        now: u64,
        classify: bool,
        res: &mut EvalResult,
    ) -> Decision {
        let policy = if self.chains[base as usize].policy_drop {
            Decision::Drop
        } else {
            Decision::Accept
        };
        let mut stack: ArrayVec<Frame<'_>, { MAX_JUMP_DEPTH + 1 }> = ArrayVec::new();
        let mut frame = self.frame(base, key, classify);
        loop {
            let Some(pos) = frame.next() else {
                match stack.pop() {
                    Some(f) => {
                        frame = f;
                        continue;
                    }
                    None => {
                        if policy == Decision::Drop {
                            res.rule = None;
                        }
                        return policy;
                    }
                }
            };
            let id = self.chains[frame.chain as usize].rules[pos as usize];
            match self.exec_rule(id, ctx, worker, now, res) {
                Step::Next => {}
                Step::Verdict(d) => {
                    res.rule = Some(RuleRef {
                        id,
                        handle: self.rules[id as usize].handle,
                    });
                    return d;
                }
                Step::NatDone => return Decision::Accept,
                Step::Return => match stack.pop() {
                    Some(f) => frame = f,
                    None => return policy,
                },
                Step::Jump(c) => {
                    let callee = self.frame(c, key, classify);
                    if stack
                        .try_push(std::mem::replace(&mut frame, callee))
                        .is_err()
                    {
                        // Cannot happen for checked rulesets (depth is bounded there).
                        return Decision::Drop;
                    }
                }
                Step::Goto(c) => frame = self.frame(c, key, classify),
            }
        }
    }

    fn exec_rule(
        &self,
        id: u32,
        ctx: &mut PacketCtx<'_>,
        worker: usize,
        now: u64,
        res: &mut EvalResult,
    ) -> Step {
        let rule = &self.rules[id as usize];
        res.cacheable &= rule.cacheable;
        let block = &self.workers[worker];
        for s in rule.stmts.iter() {
            match s {
                CStmt::Match(m) => {
                    if !matches(m, ctx) {
                        return Step::Next;
                    }
                }
                CStmt::Counter => {
                    count_rule(&block.counters[id as usize], id, ctx.len, res);
                }
                CStmt::Verdict(v) => return step(v),
                CStmt::Lookup { table, neg } => match table.lookup(|f| field_value(f, ctx)) {
                    Some(hit) if hit.is_some() != *neg => {}
                    _ => return Step::Next,
                },
                CStmt::Vmap {
                    table,
                    verdicts,
                    count,
                    timed,
                } => {
                    let Some(Some(e)) = table.lookup(|f| field_value(f, ctx)) else {
                        return Step::Next;
                    };
                    if !self.live_elem(timed.as_ref(), e, now, res) {
                        return Step::Next;
                    }
                    if *count {
                        count_rule(&block.counters[id as usize], id, ctx.len, res);
                    }
                    return verdicts.get(e as usize).map_or(Step::Next, step);
                }
                CStmt::NatMap {
                    table,
                    actions,
                    count,
                    timed,
                } => {
                    let Some(Some(e)) = table.lookup(|f| field_value(f, ctx)) else {
                        return Step::Next;
                    };
                    if !self.live_elem(timed.as_ref(), e, now, res) {
                        return Step::Next;
                    }
                    let Some(a) = actions.get(e as usize) else {
                        return Step::Next;
                    };
                    if *count {
                        count_rule(&block.counters[id as usize], id, ctx.len, res);
                    }
                    res.nat.get_or_insert(*a);
                    res.rule = Some(RuleRef {
                        id,
                        handle: rule.handle,
                    });
                    return Step::NatDone;
                }
                CStmt::Reject(r) => return Step::Verdict(Decision::Reject(*r)),
                CStmt::Log => {
                    res.stateful = true;
                    res.log = Some(RuleRef {
                        id,
                        handle: rule.handle,
                    });
                }
                CStmt::Limit {
                    slot,
                    cost_ns,
                    cap_ns,
                    over,
                } => {
                    res.stateful = true;
                    let [credit, last] = &block.limits[*slot as usize];
                    let prev = last.load(Relaxed);
                    // First use: a full bucket.
                    let mut c = if prev == 0 {
                        *cap_ns
                    } else {
                        credit
                            .load(Relaxed)
                            .saturating_add(now.saturating_sub(prev))
                            .min(*cap_ns)
                    };
                    let within = c >= *cost_ns;
                    if within {
                        c -= cost_ns;
                    }
                    credit.store(c, Relaxed);
                    last.store(now.max(1), Relaxed);
                    if within == *over {
                        return Step::Next;
                    }
                }
                CStmt::CtCount { slot, limit, over } => {
                    res.stateful = true;
                    let cell = &self.ct_counts[*slot as usize];
                    let n = if ctx.first_packet && !res.ct_count.is_full() {
                        let n = cell.fetch_add(1, Relaxed) + 1;
                        res.ct_count.push(CtCountToken(Arc::clone(cell)));
                        n
                    } else {
                        cell.load(Relaxed)
                    };
                    let hit = if *over { n > *limit } else { n <= *limit };
                    if !hit {
                        return Step::Next;
                    }
                }
                CStmt::Dyn(d) => {
                    if !self.exec_dyn(d, ctx, now, res) {
                        return Step::Next;
                    }
                }
                CStmt::Notrack => res.notrack = true,
                CStmt::MetaMarkSet(m) => {
                    res.stateful = true;
                    ctx.mark = *m;
                    res.meta_mark = Some(*m);
                }
                CStmt::CtMarkSet(m) => {
                    res.stateful = true;
                    ctx.ct_mark = *m;
                    res.ct_mark = Some(*m);
                }
                CStmt::CtHelperSet(h) => {
                    res.stateful = true;
                    if ctx.first_packet {
                        res.helper = Some(*h);
                    }
                }
                CStmt::MssSet(v) => {
                    if !super::facts_eval::mss_set(*v, ctx, res) {
                        return Step::Next;
                    }
                }
                CStmt::DscpSet(v6, d) => {
                    if !super::facts_eval::dscp_set(*v6, *d, ctx, res) {
                        return Step::Next;
                    }
                }
                CStmt::Nat(a) => {
                    res.nat.get_or_insert(*a);
                    res.rule = Some(RuleRef {
                        id,
                        handle: rule.handle,
                    });
                    return Step::NatDone;
                }
            }
        }
        Step::Next
    }

    /// Number of distinct interval tables the rules' matches hold (tests: a named set used
    /// by many rules is one table).
    #[cfg(test)]
    pub(crate) fn interval_tables(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.rules {
            for s in r.stmts.iter() {
                if let CStmt::Match(CMatch {
                    test: Test::In(iv), ..
                }) = s
                {
                    seen.insert(iv.as_ptr() as usize);
                }
            }
        }
        seen.len()
    }

    /// Candidate rules the classifier yields for a packet in chain `chain` (tests).
    #[cfg(test)]
    pub(crate) fn candidate_count(&self, chain: usize, ip: &IpInfo) -> (usize, usize) {
        let mut f = self.frame(u32_of(chain), &PacketKey::of(ip), true);
        let mut n = 0;
        while f.next().is_some() {
            n += 1;
        }
        (n, self.chains[chain].classifier.tuple_count())
    }

    /// Credits one packet of `len` bytes to the counter of each rule in `rules` (ids from
    /// [`EvalResult::counted`]) on `worker`'s block, without evaluating: what a cached
    /// verdict's packet would have counted. Ids out of range are ignored. The same
    /// one-writer-per-worker rule as [`eval`](Self::eval).
    pub fn credit(&self, worker: usize, rules: &[u32], len: u32) {
        self.credit_n(worker, rules, 1, u64::from(len));
    }

    /// [`credit`](Self::credit) for `packets` packets of `bytes` bytes in all (a vector's
    /// worth of cached-verdict packets at once).
    pub fn credit_n(&self, worker: usize, rules: &[u32], packets: u64, bytes: u64) {
        let block = &self.workers[worker % self.workers.len()];
        for &id in rules {
            if let Some(c) = block.counters.get(id as usize) {
                bump_n(c, packets, bytes);
            }
        }
    }

    /// Packets and bytes per rule id, summed over workers (plus what an unchanged rule
    /// carried over from earlier generations).
    pub fn counters(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self
            .carried
            .iter()
            .map(|c| (c[0].load(Relaxed), c[1].load(Relaxed)))
            .collect();
        for b in self.workers.iter() {
            for (o, c) in out.iter_mut().zip(b.counters.iter()) {
                o.0 += c[0].load(Relaxed);
                o.1 += c[1].load(Relaxed);
            }
        }
        out
    }

    /// Adds packets and bytes to a rule's carried-over count (control thread only: the
    /// generation publisher, `generation.rs`). Ids out of range are ignored.
    pub(crate) fn carry(&self, id: u32, (packets, bytes): (u64, u64)) {
        if let Some(c) = self.carried.get(id as usize) {
            c[0].fetch_add(packets, Relaxed);
            c[1].fetch_add(bytes, Relaxed);
        }
    }

    /// Rule id of (table index, chain index, rule index) in the source ruleset.
    pub fn rule_id(&self, table: usize, chain: usize, rule: usize) -> Option<u32> {
        let cid = self
            .chain_pos
            .iter()
            .position(|&(t, c)| t as usize == table && c as usize == chain)?;
        self.chains[cid].rules.get(rule).copied()
    }

    /// The source location of a rule id: (table index, chain index, rule index, handle).
    pub fn rule_location(&self, id: u32) -> Option<(usize, usize, usize, u64)> {
        let r = self.rules.get(id as usize)?;
        let (t, c) = self.chain_pos[r.chain as usize];
        Some((t as usize, c as usize, r.index as usize, r.handle))
    }
}

fn step(v: &CVerdict) -> Step {
    match v {
        CVerdict::Accept => Step::Verdict(Decision::Accept),
        CVerdict::Drop => Step::Verdict(Decision::Drop),
        CVerdict::Continue => Step::Next,
        CVerdict::Return => Step::Return,
        CVerdict::Jump(c) => Step::Jump(*c),
        CVerdict::Goto(c) => Step::Goto(*c),
    }
}

/// One packet of `len` bytes on rule `id`'s counter `c`, listed in `res.counted`.
fn count_rule(c: &[AtomicU64; 2], id: u32, len: u32, res: &mut EvalResult) {
    bump(c, len);
    if res.counted.try_push(id).is_err() {
        res.counted_overflow = true;
    }
}

/// One packet of `len` bytes on a (packets, bytes) counter (one writer: plain load/store).
fn bump(c: &[AtomicU64; 2], len: u32) {
    bump_n(c, 1, u64::from(len));
}

/// Adds packets and bytes to a rule's counter pair (one writer: load + store).
fn bump_n(c: &[AtomicU64; 2], packets: u64, bytes: u64) {
    c[0].store(c[0].load(Relaxed) + packets, Relaxed);
    c[1].store(c[1].load(Relaxed) + bytes, Relaxed);
}
