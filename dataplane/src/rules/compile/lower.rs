//! Lowering: a checked [`Ruleset`] → [`CompiledRuleset`] (values as sorted `u128`
//! intervals, named sets shared, one classifier per chain), charged against the compile
//! budget of [`Limits`].

use super::classes::FirstPartitions;
use super::dynstmt::DynSets;
use super::ir::{CMatch, CStmt, CVerdict, Test};
use super::keytable::{KeyTable, value_interval};
use super::ruleset::{
    BaseEntry, CChain, CRule, CompiledRuleset, LOOPBACK, PortsByName, WorkerBlock, u32_of,
};
use crate::nat::{NatAction, NatRange};
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::classify::Classifier;
use crate::rules::limits::{Budget, Limits};
use crate::wire::Family;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

/// [`check`](crate::rules::check::check) first.
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

/// The hash tables of the named maps and sets of concatenations, one per (table, name,
/// key fields) and shared by every rule that uses it with that key.
type MapTables<'a> = BTreeMap<(usize, &'a str, Vec<Field>), Arc<KeyTable>>;

/// Compiles a ruleset for `workers` workers within `limits`: the checker bounds rules, set
/// elements and rule evaluations per packet; the compile budget (`limits.compiled_mib`) is
/// charged before each allocation that grows with the input.
pub fn compile_with(
    rs: &Ruleset,
    ports: &PortsByName,
    workers: usize,
    limits: &Limits,
) -> Result<CompiledRuleset, Error> {
    crate::rules::check::check_with(rs, limits)?;
    let workers = workers.max(1);
    let mut budget = Budget::new(limits);
    let mut sets: SetTables<'_> = BTreeMap::new();
    let mut maps: MapTables<'_> = BTreeMap::new();
    let dyns = DynSets::collect(rs, ports, &mut budget)?;
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
                    (&mut sets, &mut maps, &mut budget, &dyns),
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
    let first = FirstPartitions::build(rules.iter().map(|r| &r.stmts[..]));
    let mut needs = super::facts::Needs::default();
    rules
        .iter()
        .flat_map(|r| r.stmts.iter())
        .for_each(|s| super::facts_eval::add_needs(&mut needs, s));
    Ok(CompiledRuleset {
        source: rs.clone(),
        first,
        needs,
        hooks,
        chains,
        chain_pos,
        rules,
        workers: blocks,
        carried: (0..n_rules).map(|_| Default::default()).collect(),
        ct_counts: (0..n_counts).map(|_| Arc::new(AtomicU32::new(0))).collect(),
        dynsets: dyns.entries.into(),
        generation: 0,
    })
}

type ChainLookup<'a> = &'a dyn Fn(&str) -> u32;

fn compile_rule<'a>(
    (ti, t): (usize, &'a Table),
    r: &Rule,
    ports: &PortsByName,
    workers: usize,
    chain_id: ChainLookup<'_>,
    (n_limits, n_counts): (&mut u32, &mut u32),
    (sets, maps, budget, dyns): (
        &mut SetTables<'a>,
        &mut MapTables<'a>,
        &mut Budget,
        &DynSets,
    ),
) -> Result<CRule, Error> {
    if !budget.charge((r.stmts.len() + 1).saturating_mul(size_of::<CStmt>())) {
        return Err(Error::at(r.pos, "rule", budget.exceeded()));
    }
    let mut stmts = Vec::new();
    let mut cacheable = true;
    let has_counter = r.stmts.iter().any(|s| matches!(s, Stmt::Counter { .. }));
    let mut counted = has_counter;
    let cverdict = |v: &Verdict| match v {
        Verdict::Accept => CVerdict::Accept,
        Verdict::Drop => CVerdict::Drop,
        Verdict::Continue => CVerdict::Continue,
        Verdict::Return => CVerdict::Return,
        Verdict::Jump(c) => CVerdict::Jump(chain_id(c)),
        Verdict::Goto(c) => CVerdict::Goto(chain_id(c)),
    };
    for s in &r.stmts {
        let terminal = matches!(s, Stmt::Verdict(..) | Stmt::Reject(..) | Stmt::Nat(..));
        if terminal && !counted {
            stmts.push(CStmt::Counter);
            counted = true;
        }
        stmts.push(match s {
            // A dynamic set's content changes with the traffic: never cached.
            Stmt::Match(..) | Stmt::Lookup(..) if let Some(d) = dyns.lower_match(ti, s) => {
                cacheable = false;
                d
            }
            Stmt::SetElem(e, pos) => {
                cacheable = false;
                dyns.lower_elem(ti, e, *pos)?
            }
            Stmt::Match(m, pos) => {
                cacheable &= flow_field(m.field);
                CStmt::Match(compile_match((ti, t), m, *pos, ports, sets, budget)?)
            }
            Stmt::Lookup(l, pos) => {
                cacheable &= l.key.iter().all(|&f| flow_field(f));
                let (table, _) = keyed_table(
                    (ti, t),
                    (&l.key, &l.elements, |e: &Elem| (e, MapValue::None)),
                    (ports, maps, budget),
                    (s, *pos),
                )?;
                CStmt::Lookup { table, neg: l.neg }
            }
            Stmt::Vmap(v, pos) => {
                let timed = dyns.timed_map(ti, &v.elements);
                // An element that may expire: never cached, as a dynamic set's match.
                cacheable &= timed.is_none() && v.key.iter().all(|&f| flow_field(f));
                let (table, data) = keyed_table(
                    (ti, t),
                    (&v.key, &v.elements, |(e, d): &(Elem, Verdict)| {
                        (e, MapValue::Verdict(d.clone()))
                    }),
                    (ports, maps, budget),
                    (s, *pos),
                )?;
                let verdicts = data
                    .iter()
                    .map(|d| match d {
                        MapValue::Verdict(v) => cverdict(v),
                        _ => CVerdict::Continue,
                    })
                    .collect();
                CStmt::Vmap {
                    table,
                    verdicts,
                    count: !counted,
                    timed,
                }
            }
            Stmt::NatMap(n, pos) => {
                let timed = dyns.timed_map(ti, &n.elements);
                cacheable &= timed.is_none() && n.key.iter().all(|&f| flow_field(f));
                let (table, data) = keyed_table(
                    (ti, t),
                    (&n.key, &n.elements, |(e, d): &(Elem, Elem)| {
                        (e, MapValue::Data(d.clone()))
                    }),
                    (ports, maps, budget),
                    (s, *pos),
                )?;
                let actions = data
                    .iter()
                    .map(|d| {
                        let (addr, port) = match d {
                            MapValue::Data(d) => (d.first(), d.get(1)),
                            _ => (None, None),
                        };
                        NatAction {
                            kind: n.nat.kind,
                            range: NatRange {
                                addr: match addr {
                                    Some(Value::Prefix(a, _)) => Some((*a, *a)),
                                    _ => None,
                                },
                                ports: match port {
                                    Some(Value::Num(p)) => u16::try_from(*p).ok().map(|p| (p, p)),
                                    _ => None,
                                },
                            },
                            flags: n.nat.flags,
                        }
                    })
                    .collect();
                CStmt::NatMap {
                    table,
                    actions,
                    count: !counted,
                    timed,
                }
            }
            Stmt::Counter { .. } => CStmt::Counter,
            Stmt::Verdict(v, _) => CStmt::Verdict(cverdict(v)),
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
            Stmt::MssSet(v, _) => {
                cacheable = false;
                CStmt::MssSet(*v)
            }
            // A mangling statement: every packet is evaluated (no verdict cache, no
            // fast-path recipe), as for the MSS.
            Stmt::DscpSet(f, v, _) => {
                cacheable = false;
                CStmt::DscpSet(*f == Field::Ip6Dscp, *v)
            }
            // Only a first packet's evaluation assigns it (the connection's later
            // packets see no effect, as the kernel ignores it on a confirmed entry): the
            // verdict of later packets may be cached; the first-packet cache may not
            // hold it (`stateful`).
            Stmt::CtHelperSet(n, pos) => CStmt::CtHelperSet(
                crate::rules::helper::resolve(t, n)
                    .ok_or_else(|| Error::at(*pos, n, "undefined ct helper"))?,
            ),
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

/// A match on this field depends only on the flow, direction and ct state (its verdict
/// may be cached in the conntrack entry). `ct direction`, the conntrack tuples and `fib`
/// do (a route table change starts a new verdict epoch); the DSCP, the packet type and
/// the time left do not.
fn flow_field(f: Field) -> bool {
    // The TCP options differ from segment to segment of a flow.
    !f.is_tcp_option()
        && !matches!(
            f,
            Field::TcpFlags
                | Field::MetaMark
                | Field::CtMark
                | Field::CtStatus
                | Field::MetaPkttype
                | Field::IpDscp
                | Field::Ip6Dscp
                | Field::CtExpiration
        )
}

/// The port indices an interface name stands for (`eth*` with `iifname`/`oifname`: every
/// port it prefixes; `lo`: none). An unknown name is an error for `iif`/`oif` (an index is
/// resolved when the rules are loaded) and matches nothing for `iifname`/`oifname`.
fn port_indices(f: Field, name: &str, ports: &PortsByName) -> Result<Vec<u16>, String> {
    let by_name = matches!(f, Field::Iifname | Field::Oifname);
    let pattern = name.strip_suffix('*');
    let hits: Vec<u16> = ports
        .iter()
        .filter(|(pname, _)| match pattern {
            Some(p) if by_name => pname.starts_with(p),
            _ => *pname == name,
        })
        .map(|(_, &idx)| idx)
        .collect();
    if hits.is_empty() && !by_name && name != LOOPBACK {
        return Err(format!("no port named `{name}`"));
    }
    Ok(hits)
}

/// The hash table of a concatenation or verdict map, charged to the budget.
fn key_table<'e>(
    key: &[Field],
    elements: impl Iterator<Item = &'e [Value]>,
    ports: &PortsByName,
    budget: &mut Budget,
    s: &Stmt,
    pos: Pos,
) -> Result<Arc<KeyTable>, Error> {
    let table = KeyTable::build(
        key,
        elements,
        &|f, name| port_indices(f, name, ports),
        &mut |n| budget.charge(n.saturating_mul(ENTRY_BYTES)),
    )
    .map_err(|m| Error::at(pos, &crate::rules::print::stmt(s), m))?;
    Ok(Arc::new(table))
}

/// The hash table of a statement's set or map and each element's data: built from the
/// elements written in place (`split` gives an element's key values and data), or the
/// named map's (built once per key and shared).
fn keyed_table<'a, T>(
    (ti, t): (usize, &'a Table),
    (key, source, split): (&[Field], &Elements<T>, impl Fn(&T) -> (&Elem, MapValue)),
    (ports, maps, budget): (&PortsByName, &mut MapTables<'a>, &mut Budget),
    (s, pos): (&Stmt, Pos),
) -> Result<(Arc<KeyTable>, Vec<MapValue>), Error> {
    let name = match source {
        Elements::Anon(v) => {
            let (els, data): (Vec<&Elem>, Vec<MapValue>) = v.iter().map(split).unzip();
            let table = key_table(
                key,
                els.into_iter().map(Vec::as_slice),
                ports,
                budget,
                s,
                pos,
            )?;
            return Ok((table, data));
        }
        Elements::Named(name) => name,
    };
    let m = t
        .maps
        .iter()
        .find(|m| &m.name == name)
        .ok_or_else(|| Error::at(pos, name, "undefined set or map"))?;
    let data = m.elements.iter().map(|(_, d)| d.clone()).collect();
    let k = (ti, m.name.as_str(), key.to_vec());
    if let Some(table) = maps.get(&k) {
        return Ok((Arc::clone(table), data));
    }
    let els = m.elements.iter().map(|(e, _)| e.as_slice());
    let table = key_table(key, els, ports, budget, s, pos)?;
    maps.insert(k, Arc::clone(&table));
    Ok((table, data))
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
            let hits = port_indices(m.field, name, ports)
                .map_err(|_| Error::at(pos, name, "no port of this name"))?;
            iv.extend(hits.into_iter().map(|i| (u128::from(i), u128::from(i))));
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
