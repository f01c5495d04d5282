//! Dynamic sets in the compiled ruleset: one [`DynStore`] per dynamic set or meter
//! (shared by every rule and every worker), the statements that read and update it, and
//! their evaluation.

use super::dynir::{DynStmt, ElemLimit, TimedMap};
use super::dynkey::{DynKey, Packed, push};
use super::dynstore::{DynDef, DynElement, DynEntry, DynStore, NEVER};
use super::eval::field_value;
use super::ir::{CStmt, EvalResult, PacketCtx};
use super::ruleset::{CompiledRuleset, PortsByName, u32_of};
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::limits::Budget;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// A live element of a map with timeouts: its index in the map's declaration, and the
/// store's reading where it has a timeout (`None`: it never expires).
pub type MapElement = (usize, Option<DynElement>);

/// The dynamic sets of a ruleset while it is lowered: (table index, name) → entry index.
#[derive(Debug, Default)]
pub(super) struct DynSets {
    pub(super) entries: Vec<DynEntry>,
    by_name: BTreeMap<(usize, String), u32>,
    /// The maps whose elements may time out: (table index, name) → their store.
    timed_maps: BTreeMap<(usize, String), TimedMap>,
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

/// One dynamic set of a table before its store is made.
struct Wanted {
    name: String,
    key: DynKey,
    size: u32,
    timeout_ms: Option<u64>,
    /// Its elements may have a timeout (`flags timeout`, a `timeout`).
    timeouts: bool,
    pos: Pos,
    /// Declared elements with their own `timeout` (ms).
    elements: Vec<(Elem, Option<u64>)>,
    /// A map with timeouts: only its elements with a timeout go into the store (the others
    /// stay in the map's hash table alone), and no statement adds to it.
    map: bool,
}

/// A set's or map's declaration as [`wanted`] reads it: name, key types, options,
/// `flags interval`, position, elements with their own timeouts.
type Decl<'a> = (
    &'a String,
    Vec<SetType>,
    DynOpts,
    bool,
    Pos,
    Vec<(Elem, Option<u64>)>,
);

/// A map's (or set of concatenations') declaration.
fn of_map(m: &Map) -> Decl<'_> {
    let els = m
        .elements
        .iter()
        .map(|(e, _)| (e.clone(), m.elem_timeout(e)))
        .collect();
    (&m.name, m.key.clone(), m.dynamic, m.interval, m.pos, els)
}

/// The dynamic sets a table declares (sets and sets of concatenations with dynamic
/// options or updated by a statement) and its meters.
fn wanted(t: &Table, ports: &PortsByName) -> Result<Vec<Wanted>, Error> {
    let updated = |name: &str| elem_stmts(t).any(|(e, _)| e.meter.is_none() && e.set == name);
    let sets = t.sets.iter().map(|s| {
        let els = s
            .elements
            .iter()
            .map(|v| (vec![v.clone()], s.elem_timeout(v)))
            .collect();
        (&s.name, vec![s.ty], s.dynamic, s.interval, s.pos, els)
    });
    // Sets of concatenations, then the maps whose elements may time out.
    let concat = t.maps.iter().filter(|m| m.data.is_none());
    let timed = t
        .maps
        .iter()
        .filter(|m| m.data.is_some() && m.dynamic.timeout_flag);
    let mut out = Vec::new();
    let n_sets = t.sets.len() + concat.clone().count();
    for (i, (name, types, opts, interval, pos, elements)) in
        sets.chain(concat.chain(timed).map(of_map)).enumerate()
    {
        let map = i >= n_sets;
        if !(map || opts.any() || updated(name)) {
            continue;
        }
        if interval {
            return Err(Error::at(pos, name, "a dynamic set has no intervals"));
        }
        let key = DynKey::new(types, ports).map_err(|m| Error::at(pos, name, m))?;
        out.push(Wanted {
            name: name.clone(),
            key,
            size: opts.size.unwrap_or(DEFAULT_SIZE),
            timeout_ms: opts.timeout_ms,
            timeouts: opts.timeout_flag || opts.timeout_ms.is_some(),
            pos,
            elements,
            map,
        });
    }
    for (e, pos) in elem_stmts(t) {
        if let Some(size) = e.meter
            && !out.iter().any(|w| w.name == e.set)
        {
            let key = DynKey::of_fields(&e.key, ports).map_err(|m| Error::at(pos, &e.set, m))?;
            out.push(Wanted {
                name: e.set.clone(),
                key,
                size,
                timeout_ms: None,
                timeouts: false,
                pos,
                elements: Vec::new(),
                map: false,
            });
        }
    }
    Ok(out)
}

impl DynSets {
    /// A store for every set with dynamic options or updated by a statement, and for
    /// every meter. The declared elements of a dynamic set without a timeout are added
    /// now; those with one (theirs or the set's) when the ruleset is installed
    /// ([`CompiledRuleset::start_declared`]).
    pub(super) fn collect(
        rs: &Ruleset,
        ports: &PortsByName,
        budget: &mut Budget,
    ) -> Result<Self, Error> {
        let mut out = DynSets::default();
        for (ti, t) in rs.tables.iter().enumerate() {
            for w in wanted(t, ports)? {
                let conns = elem_stmts(t).any(|(e, _)| {
                    e.set == w.name && e.stmts.iter().any(|s| matches!(s, Stmt::CtCount { .. }))
                });
                let lifetimes = w.timeouts
                    || elem_stmts(t).any(|(e, _)| e.set == w.name && e.timeout_ms.is_some());
                if w.size > super::dynstore::MAX_SIZE
                    || !budget.charge(DynStore::bytes(w.size, conns, lifetimes, w.key.wide()))
                {
                    return Err(Error::at(w.pos, &w.name, budget.exceeded()));
                }
                let store = DynStore::new(w.size, conns, lifetimes, w.key.wide());
                let (mut declared, mut all_declared) = (Vec::new(), Vec::new());
                let mut map_keys = Vec::new();
                for (e, own) in &w.elements {
                    if w.map && own.or(w.timeout_ms).is_none() {
                        // Never expires: the map's hash table alone holds it.
                        map_keys.push(None);
                        continue;
                    }
                    let key = w.key.key(e).ok_or_else(|| {
                        Error::at(
                            w.pos,
                            &w.name,
                            "a dynamic set's elements are single values (interface names: \
                             a port's)",
                        )
                    })?;
                    let lifetime = own
                        .or(w.timeout_ms)
                        .map_or(NEVER, |ms| ms.saturating_mul(1_000_000));
                    map_keys.push(Some(key));
                    all_declared.push((key, lifetime));
                    if lifetime != NEVER {
                        declared.push((key, lifetime));
                        if declared.len() + store.len() as usize > w.size as usize {
                            return Err(Error::at(
                                w.pos,
                                &w.name,
                                "more elements than the set's size",
                            ));
                        }
                    } else if store.insert(key, NEVER, 0).is_none() {
                        return Err(Error::at(
                            w.pos,
                            &w.name,
                            "more elements than the set's size",
                        ));
                    }
                }
                let id = u32_of(out.entries.len());
                if w.map {
                    let keys = map_keys.into();
                    out.timed_maps
                        .insert((ti, w.name.clone()), TimedMap { set: id, keys });
                } else {
                    out.by_name.insert((ti, w.name.clone()), id);
                }
                out.entries.push(DynEntry {
                    def: DynDef {
                        family: t.family,
                        table: t.name.clone(),
                        name: w.name,
                        key: w.key,
                        size: w.size,
                        timeout_ns: w.timeout_ms.map(|ms| ms.saturating_mul(1_000_000)),
                        conns,
                        map: w.map,
                    },
                    store: Arc::new(store),
                    declared,
                    all_declared,
                    dropped: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    /// `KEY [!=] @SET` on a dynamic set (`m`: one field, `l`: a concatenation): its
    /// statement (`None`: not a dynamic set).
    pub(super) fn lower_match(&self, ti: usize, s: &Stmt) -> Option<CStmt> {
        let (key, neg, name): (Box<[Field]>, bool, &String) = match s {
            Stmt::Match(
                Match {
                    field,
                    op,
                    rhs: Rhs::Named(n),
                    ..
                },
                _,
            ) => (Box::new([*field]), *op == Op::Ne, n),
            Stmt::Lookup(
                Lookup {
                    key,
                    neg,
                    elements: Elements::Named(n),
                },
                _,
            ) => (key.clone().into(), *neg, n),
            _ => return None,
        };
        let &set = self.by_name.get(&(ti, name.clone()))?;
        Some(CStmt::Dyn(DynStmt::Match { set, key, neg }))
    }

    /// The store of named map `els` of table `ti` when its elements may time out.
    pub(super) fn timed_map<T>(&self, ti: usize, els: &Elements<T>) -> Option<TimedMap> {
        match els {
            Elements::Named(name) => self.timed_maps.get(&(ti, name.clone())).cloned(),
            Elements::Anon(_) => None,
        }
    }

    /// An `add`/`update`/`meter` statement.
    pub(super) fn lower_elem(&self, ti: usize, e: &SetElem, pos: Pos) -> Result<CStmt, Error> {
        let &set = self
            .by_name
            .get(&(ti, e.set.clone()))
            .ok_or_else(|| Error::at(pos, &e.set, "undefined set"))?;
        let def = &self.entries[set as usize].def;
        if !def
            .key
            .types
            .iter()
            .map(|t| t.kind())
            .eq(e.key.iter().map(|f| f.kind()))
        {
            return Err(Error::at(
                pos,
                &e.set,
                format!("the key does not fit `{}`", def.key.type_text()),
            ));
        }
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
            key: e.key.clone().into(),
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

/// The packet's store key for `key` (`None` when a field does not apply to it).
fn packet_key(key: &[Field], ctx: &PacketCtx<'_>) -> Option<Packed> {
    let mut acc = Packed::default();
    for &f in key {
        let v = field_value(f, ctx)?;
        acc = push(acc, f.kind(), v)?;
    }
    Some(acc)
}

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
            DynStmt::Match { set, key, neg } => {
                let Some(v) = packet_key(key, ctx) else {
                    return false;
                };
                let hit = self.dynsets[*set as usize].store.lookup(v, now).is_some();
                hit != *neg
            }
            DynStmt::Elem {
                set,
                key,
                op,
                timeout_ns,
                limit,
                count,
            } => {
                let Some(v) = packet_key(key, ctx) else {
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

    /// Whether element `e` (a hit in the hash table of map `timed`) is live at `now`: one
    /// that never expires is; one with a timeout while the store holds it. The outcome
    /// depends on the time: the evaluation is `stateful` (no first-packet cache).
    pub(super) fn live_elem(
        &self,
        timed: Option<&TimedMap>,
        e: u32,
        now: u64,
        res: &mut EvalResult,
    ) -> bool {
        let Some(Some(key)) = timed.and_then(|t| t.keys.get(e as usize)) else {
            return true;
        };
        res.stateful = true;
        timed.is_some_and(|t| {
            self.dynsets[t.set as usize]
                .store
                .lookup(*key, now)
                .is_some()
        })
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
    ) -> Option<(&DynKey, Vec<DynElement>)> {
        let e = self.dynset(family, table, name)?;
        let mut els = e.store.elements(now_ns);
        for x in &mut els {
            // The kernel lists an element's timeout where it is not the set's.
            if x.timeout_ns == e.def.timeout_ns {
                x.timeout_ns = None;
            }
        }
        Some((&e.def.key, els))
    }

    /// The key type and store of a dynamic set or meter (the element API).
    pub fn dynset_typed(
        &self,
        family: TableFamily,
        table: &str,
        name: &str,
    ) -> Option<(&DynKey, &Arc<DynStore>)> {
        self.dynset(family, table, name)
            .map(|e| (&e.def.key, &e.store))
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
        self.dynset_or_map(family, table, name)
            .filter(|e| !e.def.map)
    }

    fn dynset_or_map(&self, family: TableFamily, table: &str, name: &str) -> Option<&DynEntry> {
        self.dynsets
            .iter()
            .find(|e| e.def.family == family && e.def.table == table && e.def.name == name)
    }

    /// The live elements of map `name` of table `family`/`table` whose elements may time
    /// out (`flags timeout`, `timeout`), at `now_ns` (the workers' clock): each element
    /// of the declaration by its index, with the store's reading for one with a timeout
    /// (`None`: it never expires; its own timeout only where it is not the map's), an
    /// expired one left out. `None` when the map has no timeouts. What `nft list map`
    /// shows: the hash table's elements and the store's, merged.
    pub fn timed_map_elements(
        &self,
        family: TableFamily,
        table: &str,
        name: &str,
        now_ns: u64,
    ) -> Option<(&DynKey, Vec<MapElement>)> {
        let e = self
            .dynset_or_map(family, table, name)
            .filter(|e| e.def.map)?;
        let m = self
            .source
            .tables
            .iter()
            .find(|t| t.family == family && t.name == table)?
            .maps
            .iter()
            .find(|m| m.name == name)?;
        let live: std::collections::HashMap<Packed, DynElement> = e
            .store
            .elements(now_ns)
            .into_iter()
            .map(|mut x| {
                if x.timeout_ns == e.def.timeout_ns {
                    x.timeout_ns = None;
                }
                (x.key, x)
            })
            .collect();
        let mut out = Vec::with_capacity(m.elements.len());
        for (i, (k, _)) in m.elements.iter().enumerate() {
            if m.elem_timeout(k).or(m.dynamic.timeout_ms).is_none() {
                out.push((i, None));
            } else if let Some(x) = e.def.key.key(k).and_then(|p| live.get(&p)) {
                out.push((i, Some(*x)));
            }
        }
        Some((&e.def.key, out))
    }

    /// Takes over the stores (and so the elements) of `old`'s dynamic sets that this
    /// ruleset defines the same way (an incremental change keeps a set's elements, as the
    /// kernel does). Call before publishing.
    pub fn adopt_dynsets(&mut self, old: &CompiledRuleset) {
        for e in self.dynsets.iter_mut() {
            if let Some(o) = old.dynsets.iter().find(|o| o.def == e.def) {
                // The running elements stay as they are (an expired one stays expired, as
                // `nft add rule` leaves the kernel's elements alone); what the change
                // declared anew is added (`add element` in a command script, with its own
                // timeout or the set's) and what it dropped is taken out.
                let had: HashSet<Packed> = o.all_declared.iter().map(|x| x.0).collect();
                let has: HashSet<Packed> = e.all_declared.iter().map(|x| x.0).collect();
                e.store = Arc::clone(&o.store);
                e.declared = e
                    .all_declared
                    .iter()
                    .filter(|x| !had.contains(&x.0))
                    .copied()
                    .collect();
                e.dropped = o
                    .all_declared
                    .iter()
                    .filter(|x| !has.contains(&x.0))
                    .map(|x| x.0)
                    .collect();
            }
        }
    }

    /// Adds the declared elements that have a timeout, expiring `timeout` after `now_ns`
    /// (the workers' clock when the ruleset is installed: the kernel starts an element's
    /// timeout when `nft -f` adds it). Call once, before publishing (after
    /// [`Self::adopt_dynsets`]: an adopted store keeps its elements and their expiry, as
    /// the kernel keeps them across `add rule`); an element already live is left alone.
    pub fn start_declared(&self, now_ns: u64) {
        for e in &self.dynsets {
            for &key in &e.dropped {
                e.store.delete(key, now_ns);
            }
            for &(key, ns) in &e.declared {
                if e.store.lookup(key, now_ns).is_none() {
                    e.store.insert(key, now_ns.saturating_add(ns), now_ns);
                }
            }
        }
    }
}
