//! Incremental changes to a ruleset AST: what nft's commands do (`add table`, `add chain`,
//! `add|insert|replace|delete rule`, `add|delete element`, `flush`, `delete`), applied one
//! at a time to a working copy. The command parser (`parse/cmd.rs`) reads a command and
//! calls these; [`super::parse::apply`] runs a whole script on a copy of the running
//! ruleset, so a script is all or nothing (the caller checks, compiles and publishes the
//! result as one generation).
//!
//! Handles: a rule keeps its handle for its whole life (`replace` keeps it too, as the
//! kernel does); a new rule gets one more than the largest handle its table has given out
//! ([`HandleMarks`], kept across generations by the caller), so a handle is never given
//! twice in a table's life. Errors carry the position of the command's token.

use std::collections::BTreeMap;

use super::Error;
use super::ast::*;

/// A table of `rs` by family and name.
pub fn table_index(rs: &Ruleset, family: TableFamily, name: &str) -> Option<usize> {
    rs.tables
        .iter()
        .position(|t| t.family == family && t.name == name)
}

/// A table of `rs`, or an error at `pos` naming it.
pub fn table_mut<'a>(
    rs: &'a mut Ruleset,
    family: TableFamily,
    name: &str,
    pos: Pos,
) -> Result<&'a mut Table, Error> {
    let i = table_index(rs, family, name).ok_or_else(|| {
        Error::at(
            pos,
            name,
            format!("no such table `{} {name}`", family.name()),
        )
    })?;
    Ok(&mut rs.tables[i])
}

/// A chain of `t`, or an error at `pos` naming it.
pub fn chain_mut<'a>(t: &'a mut Table, name: &str, pos: Pos) -> Result<&'a mut Chain, Error> {
    let tn = format!("{} {}", t.family.name(), t.name);
    t.chains
        .iter_mut()
        .find(|c| c.name == name)
        .ok_or_else(|| Error::at(pos, name, format!("no such chain `{name}` in table `{tn}`")))
}

/// The largest rule handle each table has given out in its life, kept by the caller from
/// one generation to the next: the kernel never gives a handle twice in a table's life,
/// not even that of the last rule after its deletion. A table deleted (or `flush
/// ruleset`) starts a new life, numbered from 1 again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandleMarks(BTreeMap<(&'static str, String), u64>);

impl HandleMarks {
    fn get(&self, t: &Table) -> u64 {
        self.0
            .get(&(t.family.name(), t.name.clone()))
            .copied()
            .unwrap_or(0)
    }

    fn raise(&mut self, t: &Table, h: u64) {
        let m = self.0.entry((t.family.name(), t.name.clone())).or_insert(0);
        *m = (*m).max(h);
    }

    /// Table `t` is gone: its next life numbers from 1.
    pub(crate) fn forget(&mut self, t: &Table) {
        self.0.remove(&(t.family.name(), t.name.clone()));
    }

    /// Every table is gone (`flush ruleset`, a whole new ruleset).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The marks of the tables of `rs` only, each at least its largest handle.
    pub fn observe(&mut self, rs: &Ruleset) {
        self.0.retain(|(f, n), _| {
            rs.tables
                .iter()
                .any(|t| t.family.name() == *f && t.name == *n)
        });
        for t in &rs.tables {
            let max = t
                .chains
                .iter()
                .flat_map(|c| &c.rules)
                .map(|r| r.handle)
                .max();
            self.raise(t, max.unwrap_or(0));
        }
    }
}

/// The handle a new rule of `t` gets: one more than the largest it has given out (its
/// rules' and `marks`'), which is then marked as given.
pub fn next_handle(t: &Table, marks: &mut HandleMarks) -> u64 {
    let h = t
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .map(|r| r.handle)
        .max()
        .unwrap_or(0)
        .max(marks.get(t))
        + 1;
    marks.raise(t, h);
    h
}

/// Adds a table (`add table`, a `table { … }` block): a new one is added as written
/// (its rules numbered from 1); into an existing one (`add`, not `create`) its sets,
/// chains and rules are merged as nft merges a block for a table that exists.
pub fn add_table(
    rs: &mut Ruleset,
    mut table: Table,
    create: bool,
    marks: &mut HandleMarks,
) -> Result<(), Error> {
    match table_index(rs, table.family, &table.name) {
        None => {
            marks.forget(&table);
            for r in table.chains.iter_mut().flat_map(|c| c.rules.iter_mut()) {
                r.handle = 0;
            }
            for r in 0..table.chains.len() {
                for i in 0..table.chains[r].rules.len() {
                    let h = next_handle(&table, marks);
                    table.chains[r].rules[i].handle = h;
                }
            }
            rs.tables.push(table);
            Ok(())
        }
        Some(_) if create => Err(Error::at(
            table.pos,
            &table.name,
            format!(
                "table `{} {}` exists (`create` refuses an existing table)",
                table.family.name(),
                table.name
            ),
        )),
        Some(i) => {
            for s in std::mem::take(&mut table.sets) {
                add_set(&mut rs.tables[i], s, false)?;
            }
            for m in std::mem::take(&mut table.maps) {
                add_map(&mut rs.tables[i], m, false)?;
            }
            for c in std::mem::take(&mut table.chains) {
                add_chain(&mut rs.tables[i], c, false, marks)?;
            }
            Ok(())
        }
    }
}

/// Adds a chain (`add chain`, a chain in a block): an existing one (`add`) keeps its
/// rules and gets the new ones after them; its type, hook and priority cannot change, its
/// policy may (as `nft add chain … { policy drop; }` does).
pub fn add_chain(
    t: &mut Table,
    mut chain: Chain,
    create: bool,
    marks: &mut HandleMarks,
) -> Result<(), Error> {
    for r in &mut chain.rules {
        r.handle = next_handle(t, marks);
    }
    let Some(old) = t.chains.iter_mut().find(|c| c.name == chain.name) else {
        t.chains.push(chain);
        return Ok(());
    };
    if create {
        return Err(Error::at(
            chain.pos,
            &chain.name,
            "chain exists (`create` refuses an existing chain)",
        ));
    }
    match (&mut old.base, chain.base) {
        (_, None) => {}
        (Some(a), Some(b)) if (a.ty, a.hook, a.priority) == (b.ty, b.hook, b.priority) => {
            a.policy = b.policy;
        }
        _ => {
            return Err(Error::at(
                chain.pos,
                &chain.name,
                "chain exists with another type, hook or priority (delete it first)",
            ));
        }
    }
    old.rules.append(&mut chain.rules);
    Ok(())
}

/// Adds a named set; an existing one (`add`) of the same type and flags gets the new
/// elements it lacks.
pub fn add_set(t: &mut Table, set: Set, create: bool) -> Result<(), Error> {
    let Some(old) = t.sets.iter_mut().find(|s| s.name == set.name) else {
        t.sets.push(set);
        return Ok(());
    };
    if create || (old.ty, old.interval) != (set.ty, set.interval) {
        return Err(Error::at(
            set.pos,
            &set.name,
            if create {
                "set exists (`create` refuses an existing set)"
            } else {
                "set exists with another type or flags"
            },
        ));
    }
    for e in set.elements {
        if !old.elements.contains(&e) {
            if let Some(ms) = set.elem_timeouts.iter().find(|(v, _)| *v == e) {
                old.elem_timeouts.push(ms.clone());
            }
            old.elements.push(e);
        }
    }
    Ok(())
}

/// Adds a named map or set of concatenations; an existing one (`add`) of the same key,
/// data and flags gets the new elements it lacks.
pub fn add_map(t: &mut Table, map: Map, create: bool) -> Result<(), Error> {
    let Some(old) = t.maps.iter_mut().find(|m| m.name == map.name) else {
        t.maps.push(map);
        return Ok(());
    };
    if create || (&old.key, &old.data, old.interval) != (&map.key, &map.data, map.interval) {
        return Err(Error::at(
            map.pos,
            &map.name,
            if create {
                "map exists (`create` refuses an existing map)"
            } else {
                "map exists with another type or flags"
            },
        ));
    }
    for e in map.elements {
        if !old.elements.iter().any(|x| x.0 == e.0) {
            if let Some(ms) = map.elem_timeouts.iter().find(|(k, _)| *k == e.0) {
                old.elem_timeouts.push(ms.clone());
            }
            old.elements.push(e);
        }
    }
    Ok(())
}

/// Where `add rule` / `insert rule` put a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// `add rule` (append) or `insert rule` (prepend) without a position.
    End { insert: bool },
    /// `position N` / `handle N`: after (add) or before (insert) the rule with handle N.
    Handle { handle: u64, insert: bool },
    /// `index N`: after (add) or before (insert) the chain's rule number N (0-based).
    Index { index: u64, insert: bool },
}

/// Adds a rule to a chain of `t` at `place`, giving it the table's next handle.
pub fn add_rule(
    t: &mut Table,
    chain: &str,
    chain_pos: Pos,
    mut rule: Rule,
    place: Place,
    place_pos: Pos,
    marks: &mut HandleMarks,
) -> Result<u64, Error> {
    chain_mut(t, chain, chain_pos)?;
    rule.handle = next_handle(t, marks);
    let h = rule.handle;
    let c = chain_mut(t, chain, chain_pos)?;
    let at = match place {
        Place::End { insert } => {
            if insert {
                0
            } else {
                c.rules.len()
            }
        }
        Place::Handle { handle, insert } => {
            let i = rule_index(c, handle, place_pos)?;
            if insert { i } else { i + 1 }
        }
        Place::Index { index, insert } => {
            let i = usize::try_from(index)
                .ok()
                .filter(|&i| i < c.rules.len())
                .ok_or_else(|| {
                    Error::at(
                        place_pos,
                        &index.to_string(),
                        format!("no rule at index {index} (the chain has {})", c.rules.len()),
                    )
                })?;
            if insert { i } else { i + 1 }
        }
    };
    c.rules.insert(at, rule);
    Ok(h)
}

fn rule_index(c: &Chain, handle: u64, pos: Pos) -> Result<usize, Error> {
    c.rules
        .iter()
        .position(|r| r.handle == handle)
        .ok_or_else(|| {
            Error::at(
                pos,
                &handle.to_string(),
                format!("no rule with handle {handle} in chain `{}`", c.name),
            )
        })
}

/// `replace rule … handle N`: the rule keeps its handle (its counter starts again).
pub fn replace_rule(
    c: &mut Chain,
    handle: u64,
    handle_pos: Pos,
    mut rule: Rule,
) -> Result<(), Error> {
    let i = rule_index(c, handle, handle_pos)?;
    rule.handle = handle;
    c.rules[i] = rule;
    Ok(())
}

/// `delete rule … handle N`.
pub fn delete_rule(c: &mut Chain, handle: u64, handle_pos: Pos) -> Result<(), Error> {
    let i = rule_index(c, handle, handle_pos)?;
    c.rules.remove(i);
    Ok(())
}

/// Whether a rule or a verdict map of `t` jumps to (or goes to) chain `name`.
fn chain_referenced(t: &Table, name: &str) -> bool {
    let to = |v: &Verdict| matches!(v, Verdict::Jump(n) | Verdict::Goto(n) if n == name);
    let in_rules = t.chains.iter().flat_map(|c| &c.rules).any(|r| {
        r.stmts.iter().any(|s| match s {
            Stmt::Verdict(v, _) => to(v),
            Stmt::Vmap(m, _) => m.elements.anon().iter().any(|(_, v)| to(v)),
            _ => false,
        })
    });
    let in_maps = t
        .maps
        .iter()
        .flat_map(|m| &m.elements)
        .any(|(_, v)| matches!(v, MapValue::Verdict(v) if to(v)));
    in_rules || in_maps
}

/// `delete chain`: refused while a rule jumps to it (the kernel's "Resource busy").
pub fn delete_chain(t: &mut Table, name: &str, pos: Pos) -> Result<(), Error> {
    chain_mut(t, name, pos)?;
    if chain_referenced(t, name) {
        return Err(Error::at(
            pos,
            name,
            "chain is the target of a `jump` or `goto`: delete those rules first",
        ));
    }
    t.chains.retain(|c| c.name != name);
    Ok(())
}

/// A named set of one type of `t`, or an error at `pos` naming it.
pub fn set_mut<'a>(t: &'a mut Table, name: &str, pos: Pos) -> Result<&'a mut Set, Error> {
    t.sets
        .iter_mut()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::at(pos, name, format!("no such set `{name}`")))
}

/// The types of the elements of a named set or map of `t`: the key's, and a map's data
/// (`None` for a set); an error at `pos` when `t` has none by that name.
pub fn element_type(
    t: &Table,
    name: &str,
    pos: Pos,
) -> Result<(Vec<SetType>, Option<MapData>), Error> {
    if let Some(s) = t.sets.iter().find(|s| s.name == name) {
        return Ok((vec![s.ty], None));
    }
    t.maps
        .iter()
        .find(|m| m.name == name)
        .map(|m| (m.key.clone(), m.data.clone()))
        .ok_or_else(|| Error::at(pos, name, format!("no such set or map `{name}`")))
}

/// `flush set|map`: removes every element of a named set or map.
pub fn flush_elements(t: &mut Table, name: &str, pos: Pos) -> Result<(), Error> {
    if let Some(m) = t.maps.iter_mut().find(|m| m.name == name) {
        m.elements.clear();
        m.elem_timeouts.clear();
        return Ok(());
    }
    let s = set_mut(t, name, pos)?;
    s.elements.clear();
    s.elem_timeouts.clear();
    Ok(())
}

/// `delete set|map`: a set is refused while a rule uses it (the kernel's "Resource
/// busy"); a map still used makes the result fail the checker.
pub fn delete_set(t: &mut Table, name: &str, pos: Pos) -> Result<(), Error> {
    if t.maps.iter().any(|m| m.name == name) {
        t.maps.retain(|m| m.name != name);
        return Ok(());
    }
    set_mut(t, name, pos)?;
    let used = t
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.stmts)
        .any(|s| matches!(s, Stmt::Match(m, _) if matches!(&m.rhs, Rhs::Named(n) if n == name)));
    if used {
        return Err(Error::at(
            pos,
            name,
            "set is used by a rule: delete those rules first",
        ));
    }
    t.sets.retain(|s| s.name != name);
    Ok(())
}

/// One element of an element command: its key (one value per key type; one value for a
/// set of one type), its data (a map's; [`MapValue::None`] for a set, and ignored by
/// `delete`) and where it was written (errors point there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub key: Elem,
    pub data: MapValue,
    pub pos: Pos,
    /// Its own `timeout` (ms; `add element … { 198.18.1.5 timeout 5s }`): only in a set
    /// with `flags timeout` or a `timeout`, as the kernel.
    pub timeout_ms: Option<u64>,
}

/// `add element` (an element whose key is there with the same data is left alone, with
/// other data it is an error), `create element` (a key that is there is an error) and
/// `delete element` (a key that is not there is an error; the data is not compared), as
/// the kernel does them, one element after the other. The caller validates the result.
pub fn change_elements(
    t: &mut Table,
    name: &str,
    pos: Pos,
    elements: Vec<Element>,
    op: ElementOp,
) -> Result<(), ElementError> {
    if let Some(m) = t.maps.iter_mut().find(|m| m.name == name) {
        let mut timeouts = Vec::new();
        for e in &elements {
            if let Some(ms) = own_timeout(e, op, &m.dynamic, name)?
                && !m.elements.iter().any(|x| x.0 == e.key)
            {
                timeouts.push((e.key.clone(), ms));
            }
        }
        let kinds: Vec<Kind> = m.key.iter().map(|t| t.kind()).collect();
        let r = change(
            &mut m.elements,
            elements.into_iter().map(|e| ((e.key, e.data), e.pos)),
            op,
            |x, y| x.0 == y.0,
            |x| crate::rules::print::kinds_elem(&kinds, &x.0),
        );
        let els = &m.elements;
        keep_timeouts(&mut m.elem_timeouts, timeouts, r.is_ok(), |k| {
            els.iter().any(|x| x.0 == *k)
        });
        return r;
    }
    let s = set_mut(t, name, pos).map_err(|e| fault(ElementFault::NoSet, e))?;
    let kind = s.ty.kind();
    let mut values = Vec::with_capacity(elements.len());
    let mut timeouts = Vec::new();
    for e in elements {
        let own = own_timeout(&e, op, &s.dynamic, name)?;
        match <[Value; 1]>::try_from(e.key) {
            Ok([v]) => {
                if let (Some(ms), false) = (own, s.elements.contains(&v)) {
                    timeouts.push((v.clone(), ms));
                }
                values.push((v, e.pos));
            }
            Err(key) => {
                return Err(fault(
                    ElementFault::Invalid,
                    Error::at(
                        e.pos,
                        name,
                        format!("an element of {} values for a set of one type", key.len()),
                    ),
                ));
            }
        }
    }
    let r = change(
        &mut s.elements,
        values.into_iter(),
        op,
        |x, y| x == y,
        |x| crate::rules::print::value(kind, x),
    );
    let els = &s.elements;
    keep_timeouts(&mut s.elem_timeouts, timeouts, r.is_ok(), |v| {
        els.contains(v)
    });
    r
}

/// The own timeout of element `e` of an add (`None` for a delete, which ignores it), an
/// error where the kernel refuses one: a set without `flags timeout` or `timeout`
/// ("Invalid argument"; a map alike).
fn own_timeout(
    e: &Element,
    op: ElementOp,
    opts: &DynOpts,
    name: &str,
) -> Result<Option<u64>, ElementError> {
    let Some(ms) = e.timeout_ms.filter(|_| op != ElementOp::Delete) else {
        return Ok(None);
    };
    if opts.timeout_flag {
        return Ok(Some(ms));
    }
    let msg = format!(
        "set `{name}` has no `flags timeout` or `timeout`: its elements have no timeout (the \
         kernel refuses it too)"
    );
    Err(fault(ElementFault::Invalid, Error::at(e.pos, name, msg)))
}

/// After an element change (`applied`: it succeeded): the added elements keep their own
/// timeout (`new`; one already there keeps its own, as an `add` of it changes nothing)
/// and a deleted element's goes with it (`kept`: still an element).
fn keep_timeouts<K: PartialEq>(
    own: &mut Vec<(K, u64)>,
    new: Vec<(K, u64)>,
    applied: bool,
    kept: impl Fn(&K) -> bool,
) {
    if applied {
        for (k, ms) in new {
            if !own.iter().any(|(x, _)| *x == k) {
                own.push((k, ms));
            }
        }
    }
    own.retain(|(k, _)| kept(k));
}

/// [`change_elements`] on the elements of one set or map.
fn change<T: PartialEq>(
    els: &mut Vec<T>,
    new: impl Iterator<Item = (T, Pos)>,
    op: ElementOp,
    same_key: impl Fn(&T, &T) -> bool,
    text: impl Fn(&T) -> String,
) -> Result<(), ElementError> {
    for (e, pos) in new {
        let at = els.iter().position(|x| same_key(x, &e));
        match (op, at) {
            (ElementOp::Add | ElementOp::Create, None) => els.push(e),
            (ElementOp::Add, Some(i)) if els[i] == e => {}
            (ElementOp::Add, Some(_)) => {
                return Err(fault(
                    ElementFault::Exists,
                    Error::at(
                        pos,
                        &text(&e),
                        "element exists with other data (delete it first)",
                    ),
                ));
            }
            (ElementOp::Create, Some(_)) => {
                return Err(fault(
                    ElementFault::Exists,
                    Error::at(
                        pos,
                        &text(&e),
                        "element exists (`create` refuses an existing element)",
                    ),
                ));
            }
            (ElementOp::Delete, Some(i)) => {
                els.remove(i);
            }
            (ElementOp::Delete, None) => {
                return Err(fault(
                    ElementFault::Missing,
                    Error::at(pos, &text(&e), "element does not exist"),
                ));
            }
        }
    }
    Ok(())
}

/// Why an element change failed (the API answers 404, 409 or 400 by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementFault {
    /// No set or map by that name.
    NoSet,
    /// `delete` of an element that is not there.
    Missing,
    /// `create` of an element that is there, or `add` of one with other data.
    Exists,
    /// An element that does not fit the set.
    Invalid,
}

/// A failed element change: why, and the error with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementError {
    pub fault: ElementFault,
    pub error: Error,
}

fn fault(fault: ElementFault, error: Error) -> ElementError {
    ElementError { fault, error }
}

impl From<ElementError> for Error {
    fn from(e: ElementError) -> Error {
        e.error
    }
}

/// What an element command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementOp {
    Add,
    Create,
    Delete,
}
