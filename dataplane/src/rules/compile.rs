//! The compiled ruleset and its evaluation.
//!
//! [`compile`] turns a checked [`Ruleset`] into an immutable [`CompiledRuleset`]: base
//! chains grouped by hook and sorted by priority, rules as flat statement arrays with every
//! value turned into sorted `u128` intervals, and one [`Classifier`] per chain that picks
//! the rules a packet can match. [`CompiledRuleset::eval`] walks the chains with nftables
//! semantics; [`CompiledRuleset::eval_linear`] does the same with every rule as a candidate
//! (the oracle the classifier is tested against).
//!
//! Mutable state lives in per-worker blocks of relaxed atomics with one writer each
//! (counters, `limit` buckets); `ct count` connection counts are shared atomics per rule,
//! touched only by new connections.

use super::Error;
use super::ast::*;
use super::classify::{Classifier, MAX_TUPLES, PacketKey};
use super::limits::{Budget, Limits};
use super::names;
use crate::nat::{NatAction, NatRange};
use crate::wire::{Addr, Family, IpInfo, L4Info, proto};
use arrayvec::ArrayVec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// The appliance's port names and their port indices (from the fwd config).
pub type PortsByName = BTreeMap<String, u16>;

/// The loopback interface name: the appliance has no loopback port, so `iif lo` compiles
/// to a match that no DPDK port satisfies (traffic of the appliance's own stack does not
/// pass the rules).
pub const LOOPBACK: &str = "lo";

pub fn addr_to_u128(a: Addr) -> u128 {
    u128::from_be_bytes(a.0)
}

/// The packet and connection facts the rules read. `mark` and `ct_mark` are updated by
/// `meta mark set` / `ct mark set` during evaluation (later rules see the new value).
#[derive(Clone, Copy, Debug)]
pub struct PacketCtx<'a> {
    pub ip: &'a IpInfo,
    /// Ingress port index (`None`: locally generated, the output hook).
    pub iif: Option<u16>,
    /// Egress port index (`None` before routing: prerouting and input).
    pub oif: Option<u16>,
    /// One conntrack state bit ([`ct_state`]).
    pub ct_state: u8,
    /// Conntrack status bits (nft `ct status` values).
    pub ct_status: u32,
    pub ct_mark: u32,
    pub mark: u32,
    /// Packet length in bytes (for counters).
    pub len: u32,
    /// First packet of a connection: `nat` chains are consulted only then. The caller
    /// (the worker pipeline) sets it on a conntrack miss that creates an entry.
    pub first_packet: bool,
}

/// `ct state` bits as nftables numbers them.
pub mod ct_state {
    pub const INVALID: u8 = 1;
    pub const ESTABLISHED: u8 = 2;
    pub const RELATED: u8 = 4;
    pub const NEW: u8 = 8;
    pub const UNTRACKED: u8 = 64;
}

/// The final verdict of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Drop,
    Reject(Reject),
}

/// A rule of the compiled ruleset: its index and its handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub id: u32,
    pub handle: u64,
}

/// A held `ct count` slot: the connection counts against its rule until this is dropped
/// (store it in the conntrack entry; drop it when the connection dies).
#[derive(Debug)]
pub struct CtCountToken(Arc<AtomicU32>);

impl Drop for CtCountToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// At most this many `ct count` tokens are held per connection; further `ct count`
/// statements on the same path are evaluated without holding a slot.
pub const MAX_CT_TOKENS: usize = 4;

/// At most this many counted rules are listed per [`EvalResult::counted`]; a longer path
/// sets [`EvalResult::counted_overflow`].
pub const MAX_COUNTED: usize = 16;

/// The outcome of one hook.
#[derive(Debug)]
pub struct EvalResult {
    pub verdict: Decision,
    /// The rule whose verdict decided (`None`: a chain policy or no chain at all).
    pub rule: Option<RuleRef>,
    /// The NAT decision of the `nat` chains (first packet only).
    pub nat: Option<NatAction>,
    pub notrack: bool,
    /// `meta mark set` (the last one evaluated).
    pub meta_mark: Option<u32>,
    /// `ct mark set` (the last one evaluated).
    pub ct_mark: Option<u32>,
    /// A `log` statement ran: its rule (the caller logs, rate-limited).
    pub log: Option<RuleRef>,
    /// The verdict depends only on the flow, direction and ct state: it may be cached in
    /// the conntrack entry for this generation.
    pub cacheable: bool,
    /// `ct count` slots the new connection holds.
    pub ct_count: ArrayVec<CtCountToken, MAX_CT_TOKENS>,
    /// Ids of the rules whose counter this evaluation bumped, in order (a rule counted
    /// twice is listed twice). With `cacheable`, a later packet of the flow would count
    /// the same rules: [`CompiledRuleset::credit`] them instead of evaluating.
    pub counted: ArrayVec<u32, MAX_COUNTED>,
    /// More than [`MAX_COUNTED`] counter bumps: `counted` is incomplete.
    pub counted_overflow: bool,
}

impl EvalResult {
    fn new() -> Self {
        EvalResult {
            verdict: Decision::Accept,
            rule: None,
            nat: None,
            notrack: false,
            meta_mark: None,
            ct_mark: None,
            log: None,
            cacheable: true,
            ct_count: ArrayVec::new(),
            counted: ArrayVec::new(),
            counted_overflow: false,
        }
    }
}

#[derive(Clone, Debug)]
enum Test {
    /// Value within one of the sorted, disjoint inclusive intervals (a named set's table
    /// is shared by every rule that uses it).
    In(Arc<[(u128, u128)]>),
    /// Any of the bits set.
    AnyBits(u128),
    /// `value & mask == expect`.
    Masked { mask: u128, expect: u128 },
}

#[derive(Clone, Debug)]
pub(crate) struct CMatch {
    pub field: Field,
    neg: bool,
    test: Test,
}

impl CMatch {
    /// The intervals a packet's field must fall in, when that is what the match tests.
    pub(crate) fn intervals(&self) -> Option<&[(u128, u128)]> {
        match (&self.test, self.neg) {
            (Test::In(v), false) => Some(v),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CVerdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(u32),
    Goto(u32),
}

#[derive(Clone, Debug)]
pub(crate) enum CStmt {
    Match(CMatch),
    Counter,
    Verdict(CVerdict),
    Reject(Reject),
    Log,
    Limit {
        slot: u32,
        cost_ns: u64,
        cap_ns: u64,
        over: bool,
    },
    CtCount {
        slot: u32,
        limit: u32,
        over: bool,
    },
    Notrack,
    MetaMarkSet(u32),
    CtMarkSet(u32),
    Nat(NatAction),
}

#[derive(Debug)]
pub(crate) struct CRule {
    pub stmts: Box<[CStmt]>,
    pub handle: u64,
    pub chain: u32,
    pub index: u32,
    cacheable: bool,
}

#[derive(Debug)]
pub(crate) struct CChain {
    /// Global rule ids, in chain order.
    pub rules: Box<[u32]>,
    /// `0..rules.len()`: the linear candidate list.
    all: Box<[u32]>,
    classifier: Classifier,
    policy_drop: bool,
}

#[derive(Debug)]
struct BaseEntry {
    chain: u32,
    family: Option<Family>,
    nat: bool,
}

/// Per-worker mutable state: one writer (the worker), relaxed atomics so the control
/// thread may read at any time.
#[derive(Debug)]
struct WorkerBlock {
    /// packets, bytes per rule.
    counters: Box<[[AtomicU64; 2]]>,
    /// credit (ns), last refill time (ns) per `limit` statement.
    limits: Box<[[AtomicU64; 2]]>,
}

/// An immutable compiled ruleset (plus its per-worker counter blocks).
#[derive(Debug)]
pub struct CompiledRuleset {
    pub(crate) source: Ruleset,
    hooks: [Vec<BaseEntry>; 5],
    pub(crate) chains: Vec<CChain>,
    /// Chain id → (table index, chain index in the table).
    pub(crate) chain_pos: Vec<(u32, u32)>,
    pub(crate) rules: Vec<CRule>,
    workers: Box<[WorkerBlock]>,
    ct_counts: Box<[Arc<AtomicU32>]>,
    pub(crate) generation: u64,
}

/// Compiles a ruleset for `workers` workers within the default [`Limits`]. Runs
/// [`check`](super::check::check) first.
pub fn compile(
    rs: &Ruleset,
    ports: &PortsByName,
    workers: usize,
) -> Result<CompiledRuleset, Error> {
    compile_with(rs, ports, workers, &Limits::default())
}

/// Bytes charged to the compile budget per classifier entry (hash slot, key, candidate
/// list) and per per-worker counter or bucket.
const ENTRY_BYTES: usize = 128;
const SLOT_BYTES: usize = 16;

/// The compiled interval tables of the named sets, one per (table, set, by-name) and
/// shared by every rule that uses the set.
type SetTables<'a> = BTreeMap<(usize, &'a str, bool), Arc<[(u128, u128)]>>;

/// Compiles a ruleset for `workers` workers within `limits`: the checker bounds rules, set
/// elements and rule evaluations per packet; the compile budget (`limits.compiled_mib`) is
/// charged before each allocation that grows with the input.
pub fn compile_with(
    rs: &Ruleset,
    ports: &PortsByName,
    workers: usize,
    limits: &Limits,
) -> Result<CompiledRuleset, Error> {
    super::check::check_with(rs, limits)?;
    let workers = workers.max(1);
    let mut budget = Budget::new(limits);
    let mut sets: SetTables<'_> = BTreeMap::new();
    let mut chain_ids = BTreeMap::new();
    let mut chain_pos = Vec::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            chain_ids.insert((ti, c.name.as_str()), u32_of(chain_pos.len()));
            chain_pos.push((u32_of(ti), u32_of(ci)));
        }
    }
    let n_rules: usize = rs
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum();
    // Per-worker counters, rule records and chain lists: known before anything is built.
    if !budget.charge(
        n_rules
            .saturating_mul(workers)
            .saturating_mul(SLOT_BYTES)
            .saturating_add(n_rules.saturating_mul(size_of::<CRule>() + 8)),
    ) {
        return Err(Error::at(Pos::default(), "ruleset", budget.exceeded()));
    }
    let mut rules = Vec::with_capacity(n_rules);
    let mut chains = Vec::new();
    let mut hooks: [Vec<(i32, BaseEntry)>; 5] = Default::default();
    let (mut n_limits, mut n_counts) = (0u32, 0u32);
    for (ti, t) in rs.tables.iter().enumerate() {
        for c in &t.chains {
            let cid = chain_ids[&(ti, c.name.as_str())];
            let mut ids = Vec::new();
            let mut compiled = Vec::new();
            for (ri, r) in c.rules.iter().enumerate() {
                let cr = compile_rule(
                    (ti, t),
                    r,
                    ports,
                    workers,
                    &|name| chain_ids[&(ti, name)],
                    (&mut n_limits, &mut n_counts),
                    (&mut sets, &mut budget),
                )?;
                ids.push(u32_of(rules.len()));
                compiled.push(cr.stmts.clone());
                rules.push(CRule {
                    chain: cid,
                    index: u32_of(ri),
                    ..cr
                });
            }
            let classifier = Classifier::build(&compiled, &mut |n| {
                budget.charge(n.saturating_mul(ENTRY_BYTES))
            })
            .ok_or_else(|| Error::at(c.pos, &c.name, budget.exceeded()))?;
            chains.push(CChain {
                all: (0..u32_of(ids.len())).collect(),
                rules: ids.into(),
                classifier,
                policy_drop: c.base.is_some_and(|b| b.policy == Policy::Drop),
            });
            if let Some(b) = &c.base {
                let family = match t.family {
                    TableFamily::Ip => Some(Family::V4),
                    TableFamily::Ip6 => Some(Family::V6),
                    TableFamily::Inet => None,
                };
                hooks[b.hook as usize].push((
                    b.priority,
                    BaseEntry {
                        chain: cid,
                        family,
                        nat: b.ty == ChainType::Nat,
                    },
                ));
            }
        }
    }
    let hooks = hooks.map(|mut v| {
        v.sort_by_key(|(p, _)| *p); // stable: equal priorities keep file order
        v.into_iter().map(|(_, e)| e).collect()
    });
    if !budget.charge(
        (n_limits as usize)
            .saturating_mul(workers)
            .saturating_mul(SLOT_BYTES),
    ) {
        return Err(Error::at(Pos::default(), "ruleset", budget.exceeded()));
    }
    let blocks = (0..workers)
        .map(|_| WorkerBlock {
            counters: (0..n_rules).map(|_| Default::default()).collect(),
            limits: (0..n_limits).map(|_| Default::default()).collect(),
        })
        .collect();
    Ok(CompiledRuleset {
        source: rs.clone(),
        hooks,
        chains,
        chain_pos,
        rules,
        workers: blocks,
        ct_counts: (0..n_counts).map(|_| Arc::new(AtomicU32::new(0))).collect(),
        generation: 0,
    })
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

type ChainLookup<'a> = &'a dyn Fn(&str) -> u32;

fn compile_rule<'a>(
    (ti, t): (usize, &'a Table),
    r: &Rule,
    ports: &PortsByName,
    workers: usize,
    chain_id: ChainLookup<'_>,
    (n_limits, n_counts): (&mut u32, &mut u32),
    (sets, budget): (&mut SetTables<'a>, &mut Budget),
) -> Result<CRule, Error> {
    if !budget.charge((r.stmts.len() + 1).saturating_mul(size_of::<CStmt>())) {
        return Err(Error::at(r.pos, "rule", budget.exceeded()));
    }
    let mut stmts = Vec::new();
    let mut cacheable = true;
    let has_counter = r.stmts.iter().any(|s| matches!(s, Stmt::Counter { .. }));
    let mut counted = has_counter;
    for s in &r.stmts {
        let terminal = matches!(s, Stmt::Verdict(..) | Stmt::Reject(..) | Stmt::Nat(..));
        if terminal && !counted {
            stmts.push(CStmt::Counter);
            counted = true;
        }
        stmts.push(match s {
            Stmt::Match(m, pos) => {
                if matches!(
                    m.field,
                    Field::TcpFlags | Field::MetaMark | Field::CtMark | Field::CtStatus
                ) {
                    cacheable = false;
                }
                CStmt::Match(compile_match((ti, t), m, *pos, ports, sets, budget)?)
            }
            Stmt::Counter { .. } => CStmt::Counter,
            Stmt::Verdict(v, _) => CStmt::Verdict(match v {
                Verdict::Accept => CVerdict::Accept,
                Verdict::Drop => CVerdict::Drop,
                Verdict::Continue => CVerdict::Continue,
                Verdict::Return => CVerdict::Return,
                Verdict::Jump(c) => CVerdict::Jump(chain_id(c)),
                Verdict::Goto(c) => CVerdict::Goto(chain_id(c)),
            }),
            Stmt::Reject(x, _) => CStmt::Reject(*x),
            Stmt::Log { .. } => {
                cacheable = false;
                CStmt::Log
            }
            Stmt::Limit {
                rate,
                unit,
                burst,
                over,
            } => {
                cacheable = false;
                let slot = *n_limits;
                *n_limits += 1;
                // Each worker gets 1/workers of the rate and of the burst (at least one
                // packet of burst).
                let cost = u128::from(unit.nanos()) * workers as u128 / u128::from(*rate);
                let cost_ns = u64::try_from(cost.max(1)).unwrap_or(u64::MAX);
                let share = u64::from(*burst / u32_of(workers)).max(1);
                CStmt::Limit {
                    slot,
                    cost_ns,
                    cap_ns: cost_ns.saturating_mul(share),
                    over: *over,
                }
            }
            Stmt::CtCount { count, over } => {
                cacheable = false;
                let slot = *n_counts;
                *n_counts += 1;
                CStmt::CtCount {
                    slot,
                    limit: *count,
                    over: *over,
                }
            }
            Stmt::Notrack => CStmt::Notrack,
            Stmt::MetaMarkSet(m) => {
                cacheable = false;
                CStmt::MetaMarkSet(*m)
            }
            Stmt::CtMarkSet(m) => {
                cacheable = false;
                CStmt::CtMarkSet(*m)
            }
            Stmt::Nat(n, _) => CStmt::Nat(NatAction {
                kind: n.kind,
                range: NatRange {
                    addr: n.addr,
                    ports: n.ports,
                },
                flags: n.flags,
            }),
        });
    }
    if !counted {
        stmts.push(CStmt::Counter);
    }
    Ok(CRule {
        stmts: stmts.into(),
        handle: r.handle,
        chain: 0,
        index: 0,
        cacheable,
    })
}

fn value_interval(kind: Kind, v: &Value) -> Option<(u128, u128)> {
    Some(match v {
        Value::Num(n) => (u128::from(*n), u128::from(*n)),
        Value::Range(a, b) => (u128::from(*a), u128::from(*b)),
        Value::Prefix(a, len) => {
            let m = super::parse::prefix_mask(kind, *len);
            let lo = addr_to_u128(*a) & m;
            (lo, lo | !m)
        }
        Value::AddrRange(a, b) => (addr_to_u128(*a), addr_to_u128(*b)),
        Value::Str(_) => return None,
    })
}

/// Sorts and merges intervals.
fn normalize(mut v: Vec<(u128, u128)>) -> Arc<[(u128, u128)]> {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.into()
}

fn compile_match<'a>(
    (ti, t): (usize, &'a Table),
    m: &Match,
    pos: Pos,
    ports: &PortsByName,
    sets: &mut SetTables<'a>,
    budget: &mut Budget,
) -> Result<CMatch, Error> {
    let kind = m.field.kind();
    let neg = m.op == Op::Ne;
    let by_name = matches!(m.field, Field::Iifname | Field::Oifname);
    let (values, shared): (&[Value], _) = match &m.rhs {
        Rhs::Values(v) | Rhs::Set(v) => (v, None),
        Rhs::Named(n) => {
            let set = t
                .sets
                .iter()
                .find(|s| &s.name == n)
                .ok_or_else(|| Error::at(pos, n, "undefined set"))?;
            (&set.elements[..], Some((ti, set.name.as_str(), by_name)))
        }
    };
    let plain = m.mask.is_none()
        && !(kind.is_flags() && m.op != Op::Eq && matches!(m.rhs, Rhs::Values(_)))
        && matches!(m.op, Op::Implicit | Op::Eq | Op::Ne);
    // A named set's interval table is built once and shared (the same test for `==` and
    // `!=`; `<`/`>` never take a set).
    if plain
        && let Some(key) = shared
        && let Some(iv) = sets.get(&key)
    {
        return Ok(CMatch {
            field: m.field,
            neg,
            test: Test::In(Arc::clone(iv)),
        });
    }
    if !budget.charge(values.len().saturating_mul(32)) {
        return Err(Error::at(pos, "set", budget.exceeded()));
    }
    let test = if kind == Kind::IfName {
        let mut iv = Vec::new();
        for v in values {
            let Value::Str(name) = v else {
                return Err(Error::at(pos, "", "expected an interface name"));
            };
            let pattern = name.strip_suffix('*');
            let mut found = name == LOOPBACK;
            for (pname, &idx) in ports {
                let hit = match pattern {
                    Some(p) if by_name => pname.starts_with(p),
                    _ => pname == name,
                };
                if hit {
                    iv.push((u128::from(idx), u128::from(idx)));
                    found = true;
                }
            }
            if !found && !by_name {
                return Err(Error::at(pos, name, "no port of this name"));
            }
        }
        Test::In(normalize(iv))
    } else if let Some(mask) = m.mask {
        let Some(Value::Num(v)) = values.first() else {
            return Err(Error::at(pos, "&", "a masked match needs one value"));
        };
        Test::Masked {
            mask: u128::from(mask),
            expect: u128::from(*v),
        }
    } else if kind.is_flags() && m.op != Op::Eq && matches!(m.rhs, Rhs::Values(_)) {
        let bits = values.iter().fold(0u128, |acc, v| match v {
            Value::Num(n) => acc | u128::from(*n),
            _ => acc,
        });
        Test::AnyBits(bits)
    } else {
        let mut iv = Vec::with_capacity(values.len());
        for v in values {
            let (lo, hi) = value_interval(kind, v)
                .ok_or_else(|| Error::at(pos, "", "value does not fit this match"))?;
            let (lo, hi) = match m.op {
                Op::Lt => (0, lo.saturating_sub(1)),
                Op::Le => (0, hi),
                Op::Gt => (hi.saturating_add(1), u128::MAX),
                Op::Ge => (lo, u128::MAX),
                _ => (lo, hi),
            };
            if lo <= hi && !(m.op == Op::Lt && lo == 0 && v == &Value::Num(0)) {
                iv.push((lo, hi));
            }
        }
        Test::In(normalize(iv))
    };
    if plain && let (Some(key), Test::In(iv)) = (shared, &test) {
        sets.insert(key, Arc::clone(iv));
    }
    Ok(CMatch {
        field: m.field,
        neg,
        test,
    })
}

fn ports_of(ip: &IpInfo) -> Option<(u16, u16)> {
    match ip.l4 {
        Some(L4Info::Tcp(t)) => Some((t.sport, t.dport)),
        Some(L4Info::Udp { sport, dport }) => Some((sport, dport)),
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
fn field_value(f: Field, ctx: &PacketCtx<'_>) -> Option<u128> {
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
        Field::Iif | Field::Iifname => ctx.iif.map(u128::from),
        Field::Oif | Field::Oifname => ctx.oif.map(u128::from),
        Field::CtState => Some(u128::from(ctx.ct_state)),
        Field::CtStatus => Some(u128::from(ctx.ct_status)),
        _ => None,
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
        let mut stack: ArrayVec<Frame<'_>, { super::check::MAX_JUMP_DEPTH + 1 }> = ArrayVec::new();
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
                    bump(&block.counters[id as usize], ctx.len);
                    if res.counted.try_push(id).is_err() {
                        res.counted_overflow = true;
                    }
                }
                CStmt::Verdict(v) => {
                    return match v {
                        CVerdict::Accept => Step::Verdict(Decision::Accept),
                        CVerdict::Drop => Step::Verdict(Decision::Drop),
                        CVerdict::Continue => Step::Next,
                        CVerdict::Return => Step::Return,
                        CVerdict::Jump(c) => Step::Jump(*c),
                        CVerdict::Goto(c) => Step::Goto(*c),
                    };
                }
                CStmt::Reject(r) => return Step::Verdict(Decision::Reject(*r)),
                CStmt::Log => {
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
                CStmt::Notrack => res.notrack = true,
                CStmt::MetaMarkSet(m) => {
                    ctx.mark = *m;
                    res.meta_mark = Some(*m);
                }
                CStmt::CtMarkSet(m) => {
                    ctx.ct_mark = *m;
                    res.ct_mark = Some(*m);
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
        let block = &self.workers[worker % self.workers.len()];
        for &id in rules {
            if let Some(c) = block.counters.get(id as usize) {
                bump(c, len);
            }
        }
    }

    /// Packets and bytes per rule id, summed over workers.
    pub fn counters(&self) -> Vec<(u64, u64)> {
        let mut out = vec![(0u64, 0u64); self.rules.len()];
        for b in self.workers.iter() {
            for (o, c) in out.iter_mut().zip(b.counters.iter()) {
                o.0 += c[0].load(Relaxed);
                o.1 += c[1].load(Relaxed);
            }
        }
        out
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

/// One packet of `len` bytes on a (packets, bytes) counter (one writer: plain load/store).
fn bump(c: &[AtomicU64; 2], len: u32) {
    c[0].store(c[0].load(Relaxed) + 1, Relaxed);
    c[1].store(c[1].load(Relaxed) + u64::from(len), Relaxed);
}

/// Name of a ct state bit (for messages).
pub fn ct_state_name(bit: u8) -> &'static str {
    names::name_of(Kind::CtState, u64::from(bit)).unwrap_or("?")
}
