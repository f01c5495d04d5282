//! The elements of named sets and maps for the control requests `set_elements_get` and
//! `set_elements_change` (the element API, docs/mgmt.md): a listing like `nft list set`,
//! and `nft add|create|delete element` applied with the same edit layer as nft command
//! scripts ([`rules::edit::change_elements`]) to a copy of the running ruleset. These
//! work on the ruleset's AST only; the server compiles and publishes the result as one
//! generation in which every rule keeps its counter.
//!
//! Errors name the request field they are about (`table`, `set`, `elements[2].key`) and
//! carry the code the API maps to its status: `not_found` (404) for a table, set or
//! element to delete that is not there, `conflict` (409) for an element that is there
//! (`create`, or `add` with other data), `bad_request` (400) for the rest.

use crate::control::proto::{
    ControlError, ElementChange, ErrorCode, SetElement, SetElementsView, TableFamilyName,
};
use crate::rules::ast::{Kind, MapData, MapValue, Pos, Ruleset, SetType, Table, TableFamily};
use crate::rules::compile::{DynElement, DynKey, DynStore, MapElement, NEVER, Packed};
use crate::rules::edit::{self, Element, ElementFault, ElementOp};
use crate::rules::{self, dynlist, print};

pub(crate) fn family_of(f: TableFamilyName) -> TableFamily {
    match f {
        TableFamilyName::Ip => TableFamily::Ip,
        TableFamilyName::Ip6 => TableFamily::Ip6,
        TableFamilyName::Inet => TableFamily::Inet,
    }
}

fn family_name(f: TableFamily) -> TableFamilyName {
    match f {
        TableFamily::Ip => TableFamilyName::Ip,
        TableFamily::Ip6 => TableFamilyName::Ip6,
        TableFamily::Inet => TableFamilyName::Inet,
    }
}

/// The table `name` of `family`, or with no family the one table by that name.
pub fn table_index(
    rs: &Ruleset,
    family: Option<TableFamilyName>,
    name: &str,
) -> Result<usize, ControlError> {
    let mut found = rs
        .tables
        .iter()
        .enumerate()
        .filter(|(_, t)| t.name == name && family.is_none_or(|f| t.family == family_of(f)));
    match (found.next(), found.next()) {
        (Some((i, _)), None) => Ok(i),
        (None, _) => Err(
            ControlError::new(ErrorCode::NotFound, format!("no such table `{name}`"))
                .field("table"),
        ),
        (Some(_), Some(_)) => Err(ControlError::new(
            ErrorCode::BadRequest,
            format!("tables `{name}` of several families: name the family"),
        )
        .field("family")),
    }
}

fn no_set(name: &str) -> ControlError {
    ControlError::new(ErrorCode::NotFound, format!("no such set or map `{name}`")).field("set")
}

/// The elements of set or map `set` of a table as the listing writes them.
pub fn view(
    rs: &Ruleset,
    generation: u64,
    family: Option<TableFamilyName>,
    table: &str,
    set: &str,
) -> Result<SetElementsView, ControlError> {
    let t = &rs.tables[table_index(rs, family, table)?];
    let mut one = Table {
        sets: Vec::new(),
        maps: Vec::new(),
        helpers: Vec::new(),
        chains: Vec::new(),
        ..t.clone()
    };
    let (key_type, data_type, interval, keyword, elements);
    if let Some(s) = t.sets.iter().find(|s| s.name == set) {
        let kind = s.ty.kind();
        elements = s
            .elements
            .iter()
            .map(|v| element(print::value(kind, v), None))
            .collect();
        (key_type, data_type, interval, keyword) =
            (s.ty.name().to_string(), None, s.interval, "set");
        one.sets.push(s.clone());
    } else if let Some(m) = t.maps.iter().find(|m| m.name == set) {
        let key_kinds = kinds(&m.key);
        elements = m
            .elements
            .iter()
            .map(|(k, v)| {
                let data = match (v, &m.data) {
                    (MapValue::Verdict(d), _) => Some(print::verdict(d)),
                    (MapValue::Data(d), Some(MapData::Types(ts))) => {
                        Some(print::kinds_elem(&kinds(ts), d))
                    }
                    _ => None,
                };
                element(print::kinds_elem(&key_kinds, k), data)
            })
            .collect();
        key_type = print::types_text(&m.key);
        data_type = m.data.as_ref().map(print::map_data_text);
        (interval, keyword) = (m.interval, m.keyword());
        one.maps.push(m.clone());
    } else {
        return Err(no_set(set));
    }
    Ok(SetElementsView {
        generation,
        family: family_name(t.family),
        table: t.name.clone(),
        set: set.to_string(),
        keyword: keyword.to_string(),
        key_type,
        data_type,
        flags: if interval {
            vec!["interval".into()]
        } else {
            Vec::new()
        },
        elements,
        text: print::to_text(&Ruleset {
            flush: false,
            tables: vec![one],
        }),
    })
}

/// A copy of `rs` whose table `t` declares meter `name` as the dynamic set the kernel
/// makes of it (`type T [. T]…; size N; flags dynamic[,timeout];`, `timeout` when a
/// statement of the meter gives its elements one), for its listing.
pub(crate) fn with_meter(rs: &Ruleset, t: &Table, name: &str, key: &DynKey, size: u32) -> Ruleset {
    let mut out = rs.clone();
    let timeout = t
        .chains
        .iter()
        .flat_map(|c| &c.rules)
        .flat_map(|r| &r.stmts)
        .any(|s| matches!(s, rules::ast::Stmt::SetElem(e, _) if e.set == name && e.timeout_ms.is_some()));
    let dynamic = rules::ast::DynOpts {
        dynamic: true,
        timeout_flag: timeout,
        size: Some(size),
        ..Default::default()
    };
    if let Some(tt) = out
        .tables
        .iter_mut()
        .find(|x| x.family == t.family && x.name == t.name)
    {
        match &key.types[..] {
            [ty] => tt.sets.push(rules::ast::Set {
                name: name.to_string(),
                ty: *ty,
                interval: false,
                elements: Vec::new(),
                elem_timeouts: Vec::new(),
                dynamic,
                pos: Pos::default(),
            }),
            types => tt.maps.push(rules::ast::Map {
                name: name.to_string(),
                key: types.to_vec(),
                data: None,
                interval: false,
                elements: Vec::new(),
                elem_timeouts: Vec::new(),
                dynamic,
                pos: Pos::default(),
            }),
        }
    }
    out
}

/// A meter's listing as `nft list meter` writes it: `meter NAME { … }` where a set's
/// says `set NAME { … }` (keyword `meter`).
pub(crate) fn as_meter(mut v: SetElementsView) -> SetElementsView {
    let set_head = format!("\t{} {} {{", v.keyword, v.set);
    v.keyword = "meter".into();
    v.text = v
        .text
        .replacen(&set_head, &format!("\tmeter {} {{", v.set), 1);
    v
}

fn element(key: String, data: Option<String>) -> SetElement {
    SetElement {
        key,
        data,
        timeout: None,
        expires: None,
    }
}

/// A dynamic set's (or meter's) listing holds the data path's elements: `live`, read from
/// its store at the workers' clock, replaces the declared ones (which the store holds
/// too), each with the whole seconds until it expires rounded up (`expires`), and the
/// text gains them as `nft list set` writes them (`elements = { 198.18.0.1 expires
/// 9m58s784ms }`, in the store's order).
pub(crate) fn live(v: &mut SetElementsView, key: &DynKey, live: &[DynElement]) {
    v.elements = live
        .iter()
        .map(|e| SetElement {
            key: key.text(e.key),
            data: None,
            timeout: e.timeout_ns.map(|ns| ns / 1_000_000_000),
            expires: e.expires_ns.map(|ns| ns.div_ceil(1_000_000_000)),
        })
        .collect();
    let els: Vec<String> = live.iter().map(|e| dynlist::element_text(key, e)).collect();
    with_elements_line(v, &els);
}

/// A map whose elements may time out (`flags timeout`, `timeout`) lists what the workers
/// see, as `nft list map` does: its declared elements less the expired ones, each one with
/// a timeout with its `expires` (and its own `timeout` where it is not the map's), read
/// from the store at the workers' clock (`live`: `CompiledRuleset::timed_map_elements`).
pub(crate) fn timed_map(
    v: &mut SetElementsView,
    m: &rules::ast::Map,
    key: &DynKey,
    live: &[MapElement],
) {
    let declared = std::mem::take(&mut v.elements);
    let mut text = Vec::with_capacity(live.len());
    for (i, x) in live {
        let Some(mut e) = declared.get(*i).cloned() else {
            continue;
        };
        e.timeout = x.and_then(|x| x.timeout_ns).map(|ns| ns / 1_000_000_000);
        e.expires = x
            .and_then(|x| x.expires_ns)
            .map(|ns| ns.div_ceil(1_000_000_000));
        v.elements.push(e);
        text.push(dynlist::map_element(m, key, *i, x.as_ref()).0);
    }
    with_elements_line(v, &text);
}

/// `v`'s text with its `elements = { … }` line holding `els` (none: no line).
fn with_elements_line(v: &mut SetElementsView, els: &[String]) {
    let mut lines: Vec<String> = v
        .text
        .lines()
        .filter(|l| !l.trim_start().starts_with("elements = "))
        .map(str::to_string)
        .collect();
    let head = format!("\t{} {} {{", v.keyword, v.set);
    let start = lines.iter().position(|l| *l == head);
    let end = start.and_then(|s| lines[s..].iter().position(|l| l == "\t}").map(|e| s + e));
    if let (Some(end), false) = (end, els.is_empty()) {
        lines.insert(end, format!("\t\telements = {{ {} }}", els.join(", ")));
    }
    v.text = lines.join("\n") + "\n";
}

fn op_of(op: ElementChange) -> ElementOp {
    match op {
        ElementChange::Add => ElementOp::Add,
        ElementChange::Create => ElementOp::Create,
        ElementChange::Delete => ElementOp::Delete,
    }
}

fn not_empty(elements: &[SetElement]) -> Result<(), ControlError> {
    if elements.is_empty() {
        return Err(
            ControlError::new(ErrorCode::BadRequest, "no elements: nothing was changed")
                .field("elements"),
        );
    }
    Ok(())
}

fn kinds(ts: &[SetType]) -> Vec<Kind> {
    ts.iter().map(|t| t.kind()).collect()
}

/// A copy of `rs` with `elements` added to, created in or deleted from set or map `set`
/// (all of them or none), validated; the caller compiles and publishes it.
pub fn change(
    rs: &Ruleset,
    family: Option<TableFamilyName>,
    table: &str,
    set: &str,
    op: ElementChange,
    elements: &[SetElement],
) -> Result<Ruleset, ControlError> {
    let ti = table_index(rs, family, table)?;
    not_empty(elements)?;
    let (key, data) =
        edit::element_type(&rs.tables[ti], set, Pos::default()).map_err(|_| no_set(set))?;
    let op = op_of(op);
    let t = &rs.tables[ti];
    let timeouts = t
        .sets
        .iter()
        .find(|s| s.name == set)
        .map(|s| s.dynamic)
        .or_else(|| t.maps.iter().find(|m| m.name == set).map(|m| m.dynamic))
        .is_some_and(|o| o.timeout_flag);
    let mut parsed = Vec::with_capacity(elements.len());
    for (i, e) in elements.iter().enumerate() {
        let bad = |field: &str, msg: String| {
            ControlError::new(
                ErrorCode::BadRequest,
                format!("elements[{i}].{field}: {msg}"),
            )
            .field(format!("elements[{i}].{field}"))
        };
        if e.expires.is_some() {
            return Err(bad("expires", "`expires` is listed, not sent".into()));
        }
        if e.timeout.is_some() && !timeouts {
            return Err(bad(
                "timeout",
                format!(
                    "`{set}` has no `flags timeout` or `timeout`: its elements have no timeout"
                ),
            ));
        }
        if data.is_some() && e.data.is_none() && op != ElementOp::Delete {
            return Err(bad("data", "a map element needs its data".into()));
        }
        let (k, v) = rules::parse::element(&key, data.as_ref(), &e.key, None)
            .map_err(|x| bad("key", x.to_string()))?;
        let v = match &e.data {
            None => v,
            Some(d) => {
                rules::parse::element(&key, data.as_ref(), &e.key, Some(d))
                    .map_err(|x| bad("data", x.to_string()))?
                    .1
            }
        };
        // The element's index travels in its position: an error of the edit layer names
        // the element by it.
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        parsed.push(Element {
            key: k,
            data: v,
            pos: Pos { line, col: 1 },
            // Only in a set or map with `flags timeout` or a `timeout` (the edit layer
            // refuses it elsewhere, as the kernel).
            timeout_ms: e.timeout.map(|s| s.saturating_mul(1000)),
        });
    }
    let mut next = rs.clone();
    edit::change_elements(&mut next.tables[ti], set, Pos::default(), parsed, op).map_err(|e| {
        let code = match e.fault {
            ElementFault::NoSet => return no_set(set),
            ElementFault::Missing => ErrorCode::NotFound,
            ElementFault::Exists => ErrorCode::Conflict,
            ElementFault::Invalid => ErrorCode::BadRequest,
        };
        let i = e.error.line.saturating_sub(1);
        ControlError::new(
            code,
            format!("elements[{i}]: {} (`{}`)", e.error.msg, e.error.token),
        )
        .field(format!("elements[{i}]"))
    })?;
    rules::validate::ruleset(&next).map_err(|e| {
        ControlError::new(ErrorCode::BadRequest, format!("elements: {}", e.msg)).field("elements")
    })?;
    Ok(next)
}

/// A change of a dynamic set's (or meter's) live elements, checked against its store and
/// ready to apply ([`live_change`]).
#[derive(Debug)]
pub struct LiveChange {
    op: ElementOp,
    /// Each element's key and, for an add, its expiry (ns of the workers' clock).
    keys: Vec<(Packed, u64)>,
    /// For a delete of declared elements: the ruleset without them (to publish first, so
    /// that a later ruleset does not bring them back).
    pub declaration: Option<Ruleset>,
}

/// `nft add|create|delete element` on a dynamic set or meter `set` of table `ti` (key type
/// `ty`) acts on the elements the data path sees, as the kernel's does: an add inserts the
/// absent elements into `store` with the element's `timeout` or the set's, a delete
/// removes live elements (data-path ones included). Checked whole before anything
/// changes: a `create` of a live element is a conflict, a delete of one that is not live
/// not found. Elements added here live in the store only (as the data path's do: a
/// restart or a change of the set's definition drops them); a delete of a declared
/// element also takes it out of the declaration.
pub fn live_change(
    rs: &Ruleset,
    ti: usize,
    set: &str,
    (ty, store): (&DynKey, &DynStore),
    op: ElementChange,
    elements: &[SetElement],
    now: u64,
) -> Result<LiveChange, ControlError> {
    not_empty(elements)?;
    let t = &rs.tables[ti];
    let declared = t.sets.iter().position(|s| s.name == set);
    let declared_concat = t
        .maps
        .iter()
        .position(|m| m.name == set && m.data.is_none());
    // A meter has no declaration, and no default timeout.
    let opts = match (declared, declared_concat) {
        (Some(i), _) => t.sets[i].dynamic,
        (None, Some(i)) => t.maps[i].dynamic,
        (None, None) => Default::default(),
    };
    let op = op_of(op);
    let mut keys = Vec::with_capacity(elements.len());
    for (i, e) in elements.iter().enumerate() {
        let err = |code, field: &str, msg: &str| {
            let at = format!("elements[{i}]{}", if field.is_empty() { "" } else { "." });
            ControlError::new(code, format!("{at}{field}: {msg}")).field(format!("{at}{field}"))
        };
        let bad = |field: &str, msg: &str| err(ErrorCode::BadRequest, field, msg);
        if e.data.is_some() {
            return Err(bad("data", "a set element has no data"));
        }
        if e.expires.is_some() {
            return Err(bad("expires", "`expires` is listed, not sent"));
        }
        if e.timeout.is_some() && !(opts.timeout_flag || opts.timeout_ms.is_some()) {
            return Err(bad(
                "timeout",
                &format!("set `{set}` has no `flags timeout`: its elements have no timeout"),
            ));
        }
        let (k, _) = rules::parse::element(&ty.types, None, &e.key, None)
            .map_err(|x| bad("key", &x.to_string()))?;
        let key = ty.key(&k).ok_or_else(|| {
            bad(
                "key",
                "a dynamic set's elements are single values (an interface name: a port's)",
            )
        })?;
        let ttl_ms = e
            .timeout
            .map(|s| s.saturating_mul(1000))
            .or(opts.timeout_ms);
        let expiry = ttl_ms.map_or(NEVER, |ms| now.saturating_add(ms.saturating_mul(1_000_000)));
        let live = store.lookup(key, now).is_some();
        match op {
            ElementOp::Create if live => {
                return Err(err(ErrorCode::Conflict, "", "the element exists"));
            }
            ElementOp::Delete if !live => {
                return Err(err(ErrorCode::NotFound, "", "no such element"));
            }
            _ => {}
        }
        keys.push((key, expiry));
    }
    let mut declaration = None;
    if op == ElementOp::Delete {
        let gone =
            |e: &[rules::ast::Value]| ty.key(e).is_some_and(|k| keys.iter().any(|x| x.0 == k));
        let hit = declared.is_some_and(|i| {
            t.sets[i]
                .elements
                .iter()
                .any(|v| gone(std::slice::from_ref(v)))
        }) || declared_concat
            .is_some_and(|i| t.maps[i].elements.iter().any(|(e, _)| gone(e)));
        if hit {
            let mut next = rs.clone();
            let nt = &mut next.tables[ti];
            if let Some(i) = declared {
                nt.sets[i]
                    .elements
                    .retain(|v| !gone(std::slice::from_ref(v)));
            }
            if let Some(i) = declared_concat {
                nt.maps[i].elements.retain(|(e, _)| !gone(e));
            }
            declaration = Some(next);
        }
    }
    Ok(LiveChange {
        op,
        keys,
        declaration,
    })
}

impl LiveChange {
    /// Applies the change to `store` at `now`. An add that finds the set full takes back
    /// what it added and fails (nothing changed), as the kernel's transaction does.
    pub fn apply(&self, set: &str, store: &DynStore, now: u64) -> Result<(), ControlError> {
        if self.op == ElementOp::Delete {
            for &(k, _) in &self.keys {
                store.delete(k, now);
            }
            return Ok(());
        }
        let mut added = Vec::new();
        for (i, &(k, expiry)) in self.keys.iter().enumerate() {
            if store.lookup(k, now).is_some() {
                continue;
            }
            if store.insert(k, expiry, now).is_none() {
                for &a in &added {
                    store.delete(a, now);
                }
                return Err(ControlError::new(
                    ErrorCode::Conflict,
                    format!(
                        "elements[{i}]: set `{set}` is full ({} elements): nothing was added",
                        store.size()
                    ),
                )
                .field(format!("elements[{i}]")));
            }
            added.push(k);
        }
        Ok(())
    }
}
