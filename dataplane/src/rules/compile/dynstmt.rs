//! Dynamic sets in the compiled ruleset: one [`DynStore`] per dynamic set or meter
//! (shared by every rule and every worker), the statements that read and update it, and
//! their evaluation.

use super::dynir::{DynStmt, ElemLimit};
use super::dynstore::{DynDef, DynElement, DynEntry, DynStore, NEVER};
use super::eval::field_value;
use super::ir::{CStmt, EvalResult, PacketCtx};
use super::keytable::value_interval;
use super::ruleset::{CompiledRuleset, u32_of};
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::limits::Budget;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The dynamic sets of a ruleset while it is lowered: (table index, name) → entry index.
#[derive(Debug, Default)]
pub(super) struct DynSets {
    pub(super) entries: Vec<DynEntry>,
    by_name: BTreeMap<(usize, String), u32>,
}

fn set_type_of(kind: Kind) -> Option<SetType> {
    Some(match kind {
        Kind::Addr4 => SetType::Ipv4Addr,
        Kind::Addr6 => SetType::Ipv6Addr,
        Kind::Port => SetType::InetService,
        Kind::Proto => SetType::InetProto,
        Kind::Mark => SetType::Mark,
        _ => return None,
    })
}

/// The store's key of value `v` of a dynamic set of type `ty`: `None` for a range, a
/// shorter prefix or a name (a dynamic set's elements are single values).
pub fn dyn_key(ty: SetType, v: &Value) -> Option<u128> {
    value_interval(ty.kind(), v)
        .filter(|(lo, hi)| lo == hi)
        .map(|(lo, _)| lo)
}

/// The set statements of table `t`'s rules.
fn elem_stmts(t: &Table) -> impl Iterator<Item = (&SetElem, Pos)> {
    t.chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.stmts)
        .filter_map(|s| match s {
            Stmt::SetElem(e, pos) => Some((e, *pos)),
            _ => None,
        })
}

impl DynSets {
    /// A store for every set with dynamic options or updated by a statement, and for
    /// every meter; the declared elements of a dynamic set are added without a timeout.
    pub(super) fn collect(rs: &Ruleset, budget: &mut Budget) -> Result<Self, Error> {
        let mut out = DynSets::default();
        for (ti, t) in rs.tables.iter().enumerate() {
            let mut wanted: Vec<(String, SetType, DynOptsLite, Pos, Vec<Value>)> = Vec::new();
            for s in &t.sets {
                let updated = elem_stmts(t).any(|(e, _)| e.meter.is_none() && e.set == s.name);
                if s.dynamic.any() || updated {
                    let size = s.dynamic.size.unwrap_or(DEFAULT_SIZE);
                    wanted.push((
                        s.name.clone(),
                        s.ty,
                        (size, s.dynamic.timeout_ms),
                        s.pos,
                        s.elements.clone(),
                    ));
                    if s.interval || set_type_of(s.ty.kind()).is_none() {
                        return Err(Error::at(
                            s.pos,
                            &s.name,
                            "a dynamic set holds addresses, ports, protocols or marks, \
                             without intervals",
                        ));
                    }
                }
            }
            for (e, pos) in elem_stmts(t) {
                if let Some(size) = e.meter
                    && !wanted.iter().any(|w| w.0 == e.set)
                {
                    let ty = set_type_of(e.key.kind()).ok_or_else(|| {
                        Error::at(
                            pos,
                            &e.set,
                            "a meter key is an address, port, protocol or mark",
                        )
                    })?;
                    wanted.push((e.set.clone(), ty, (size, None), pos, Vec::new()));
                }
            }
            for (name, ty, (size, timeout_ms), pos, elements) in wanted {
                let conns = elem_stmts(t).any(|(e, _)| {
                    e.set == name && e.stmts.iter().any(|s| matches!(s, Stmt::CtCount { .. }))
                });
                if size > super::dynstore::MAX_SIZE || !budget.charge(DynStore::bytes(size, conns))
                {
                    return Err(Error::at(pos, &name, budget.exceeded()));
                }
                let store = DynStore::new(size, conns);
                for v in &elements {
                    let key = dyn_key(ty, v).ok_or_else(|| {
                        Error::at(pos, &name, "a dynamic set's elements are single values")
                    })?;
                    if store.insert(key, NEVER, 0).is_none() {
                        return Err(Error::at(pos, &name, "more elements than the set's size"));
                    }
                }
                out.by_name
                    .insert((ti, name.clone()), u32_of(out.entries.len()));
                out.entries.push(DynEntry {
                    def: DynDef {
                        family: t.family,
                        table: t.name.clone(),
                        name,
                        ty,
                        size,
                        timeout_ns: timeout_ms.map(|ms| ms.saturating_mul(1_000_000)),
                        conns,
                    },
                    store: Arc::new(store),
                });
            }
        }
        Ok(out)
    }

    /// `FIELD [!=] @SET` on a dynamic set: its statement (`None`: not a dynamic set).
    pub(super) fn lower_match(&self, ti: usize, m: &Match) -> Option<CStmt> {
        let Rhs::Named(n) = &m.rhs else { return None };
        let &set = self.by_name.get(&(ti, n.clone()))?;
        Some(CStmt::Dyn(DynStmt::Match {
            set,
            field: m.field,
            neg: m.op == Op::Ne,
        }))
    }

    /// An `add`/`update`/`meter` statement.
    pub(super) fn lower_elem(&self, ti: usize, e: &SetElem, pos: Pos) -> Result<CStmt, Error> {
        let &set = self
            .by_name
            .get(&(ti, e.set.clone()))
            .ok_or_else(|| Error::at(pos, &e.set, "undefined set"))?;
        let def = &self.entries[set as usize].def;
        let mut limit = None;
        let mut count = None;
        for s in &e.stmts {
            match s {
                Stmt::Limit {
                    rate,
                    unit,
                    burst,
                    over,
                } => {
                    // One bucket per element shared by every worker: the rate as written.
                    let cost = (unit.nanos() / (*rate).max(1)).max(1);
                    limit = Some(ElemLimit {
                        cost_ns: cost,
                        cap_ns: cost.saturating_mul(u64::from((*burst).max(1))),
                        over: *over,
                    });
                }
                Stmt::CtCount { count: n, over } => count = Some((*n, *over)),
                _ => {}
            }
        }
        Ok(CStmt::Dyn(DynStmt::Elem {
            set,
            field: e.key,
            op: e.op,
            timeout_ns: e
                .timeout_ms
                .map(|ms| ms.saturating_mul(1_000_000))
                .or(def.timeout_ns),
            limit,
            count,
        }))
    }
}

/// (size, default timeout in ms).
type DynOptsLite = (u32, Option<u64>);

impl CompiledRuleset {
    /// Runs a dynamic-set statement: true when the rule goes on (the element is there, or
    /// was added and its `limit`/`ct count` match), false when the rule ends here.
    pub(super) fn exec_dyn(
        &self,
        d: &DynStmt,
        ctx: &PacketCtx<'_>,
        now: u64,
        res: &mut EvalResult,
    ) -> bool {
        // The outcome depends on what other packets did: never cached.
        res.stateful = true;
        match d {
            DynStmt::Match { set, field, neg } => {
                let Some(v) = field_value(*field, ctx) else {
                    return false;
                };
                let hit = self.dynsets[*set as usize].store.lookup(v, now).is_some();
                hit != *neg
            }
            DynStmt::Elem {
                set,
                field,
                op,
                timeout_ns,
                limit,
                count,
            } => {
                let Some(v) = field_value(*field, ctx) else {
                    return false;
                };
                let store = &self.dynsets[*set as usize].store;
                let expiry = timeout_ns.map_or(NEVER, |t| now.saturating_add(t));
                let i = match store.lookup(v, now) {
                    Some(i) => {
                        if *op == SetOp::Update && timeout_ns.is_some() {
                            store.refresh(i, expiry);
                        }
                        i
                    }
                    None => match store.insert(v, expiry, now) {
                        Some(i) => i,
                        None => return false,
                    },
                };
                if let Some(l) = limit
                    && !store.limit(i, l, now)
                {
                    return false;
                }
                if let Some(c) = count
                    && !store.ct_count(i, *c, ctx.first_packet, res)
                {
                    return false;
                }
                true
            }
        }
    }

    /// The live elements of dynamic set (or meter) `name` of table `family`/`table` at
    /// `now_ns` (the workers' clock): `None` when the ruleset has no such dynamic set.
    /// What `nft list set` shows of a dynamic set; the element API lists it.
    pub fn dynset_elements(
        &self,
        family: TableFamily,
        table: &str,
        name: &str,
        now_ns: u64,
    ) -> Option<(SetType, Vec<DynElement>)> {
        let e = self.dynset(family, table, name)?;
        Some((e.def.ty, e.store.elements(now_ns)))
    }

    /// The key type and store of a dynamic set or meter (the element API).
    pub fn dynset_typed(
        &self,
        family: TableFamily,
        table: &str,
        name: &str,
    ) -> Option<(SetType, &Arc<DynStore>)> {
        self.dynset(family, table, name)
            .map(|e| (e.def.ty, &e.store))
    }

    /// The store of a dynamic set (tests, the control thread).
    pub fn dynset_store(
        &self,
        family: TableFamily,
        table: &str,
        name: &str,
    ) -> Option<&Arc<DynStore>> {
        self.dynset(family, table, name).map(|e| &e.store)
    }

    fn dynset(&self, family: TableFamily, table: &str, name: &str) -> Option<&DynEntry> {
        self.dynsets
            .iter()
            .find(|e| e.def.family == family && e.def.table == table && e.def.name == name)
    }

    /// Takes over the stores (and so the elements) of `old`'s dynamic sets that this
    /// ruleset defines the same way (an incremental change keeps a set's elements, as the
    /// kernel does). Call before publishing.
    pub fn adopt_dynsets(&mut self, old: &CompiledRuleset) {
        for e in self.dynsets.iter_mut() {
            if let Some(o) = old.dynsets.iter().find(|o| o.def == e.def) {
                e.store = Arc::clone(&o.store);
            }
        }
    }
}
