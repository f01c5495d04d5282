//! The nftables JSON form (`nft -j list ruleset`, libnftables-json(5)) read into and
//! written from the same AST. Fixtures in `testdata/` come from the kernel's `nft` 1.0.6.
//! Errors name the JSON path of the offending object (JSON has no line numbers here).

use super::Error;
use super::ast::*;
use super::names;
use super::parse::parse_value;
use super::print;
use super::validate;
use crate::nat::{NatFlags, NatKind};
use crate::wire::Addr;
use serde_json::{Map, Value as J, json};

fn jerr<T>(path: &str, msg: impl Into<String>) -> Result<T, Error> {
    Err(Error {
        line: 0,
        col: 0,
        token: path.to_owned(),
        msg: msg.into(),
    })
}

fn get_str<'a>(o: &'a Map<String, J>, k: &str, path: &str) -> Result<&'a str, Error> {
    match o.get(k).and_then(J::as_str) {
        Some(s) => Ok(s),
        None => jerr(path, format!("missing string `{k}`")),
    }
}

/// Reads `{"nftables": [...]}`.
pub fn from_json(v: &J) -> Result<Ruleset, Error> {
    let Some(items) = v.get("nftables").and_then(J::as_array) else {
        return jerr("$", "expected {\"nftables\": [...]}");
    };
    let mut rs = Ruleset::default();
    for (i, item) in items.iter().enumerate() {
        let path = format!("nftables[{i}]");
        let Some(obj) = item.as_object() else {
            return jerr(&path, "expected an object");
        };
        let Some((kind, body)) = obj.iter().next() else {
            return jerr(&path, "empty object");
        };
        let path = format!("{path}.{kind}");
        match kind.as_str() {
            "metainfo" => {}
            "flush" => {
                if body.get("ruleset").is_none() {
                    return jerr(&path, "only `flush ruleset` is supported");
                }
                rs.flush = true;
            }
            "table" => {
                let o = body
                    .as_object()
                    .ok_or_else(|| Error::json(&path, "expected object"))?;
                let fam = get_str(o, "family", &path)?;
                let family = TableFamily::from_name(fam)
                    .ok_or_else(|| Error::json(&path, format!("unsupported family {fam}")))?;
                if let Some(m) = validate::name_problem(get_str(o, "name", &path)?) {
                    return jerr(&path, format!("table name: {m}"));
                }
                rs.tables.push(Table {
                    family,
                    name: get_str(o, "name", &path)?.to_owned(),
                    sets: Vec::new(),
                    maps: Vec::new(),
                    helpers: Vec::new(),
                    chains: Vec::new(),
                    pos: Pos::default(),
                });
            }
            "set" | "map" | "chain" | "rule" | "ct helper" => {
                let o = body
                    .as_object()
                    .ok_or_else(|| Error::json(&path, "expected object"))?;
                let fam = get_str(o, "family", &path)?;
                let tname = get_str(o, "table", &path)?;
                let Some(t) = rs
                    .tables
                    .iter_mut()
                    .find(|t| t.family.name() == fam && t.name == tname)
                else {
                    return jerr(&path, format!("undefined table {fam} {tname}"));
                };
                match kind.as_str() {
                    "ct helper" => {
                        let mut h = super::helper::read_obj_json(o, &path)?;
                        if h.l3proto == Some(t.family) {
                            h.l3proto = None;
                        }
                        t.helpers.push(h);
                    }
                    "set" | "map" if kind == "map" || o.get("type").is_some_and(J::is_array) => {
                        let map = read_map(o, &path)?;
                        valid(validate::map(&map), &path)?;
                        t.maps.push(map);
                    }
                    "set" => {
                        let set = read_set(o, &path)?;
                        valid(validate::set(&set), &path)?;
                        t.sets.push(set);
                    }
                    "chain" => {
                        let chain = read_chain(o, &path)?;
                        if let Some(m) = validate::name_problem(&chain.name) {
                            return jerr(&path, format!("chain name: {m}"));
                        }
                        t.chains.push(chain);
                    }
                    _ => {
                        let cname = get_str(o, "chain", &path)?;
                        let rule = read_rule(o, &path)?;
                        valid(validate::rule(&rule), &path)?;
                        let Some(c) = t.chains.iter_mut().find(|c| c.name == cname) else {
                            return jerr(&path, format!("undefined chain {cname}"));
                        };
                        c.rules.push(rule);
                    }
                }
            }
            other => {
                return jerr(
                    &path,
                    format!("`{other}` is not supported by this appliance"),
                );
            }
        }
    }
    // The same rules as for text (names, strings, value ranges), checked per object above
    // with its path and here as a whole (duplicates): what is accepted prints as text that
    // reads back to the same ruleset.
    crate::rules::dynset::normalize(&mut rs);
    validate::ruleset(&rs)
        .map_err(|e| Error::json("nftables", format!("{} (`{}`)", e.msg, e.token)))?;
    Ok(rs)
}

/// The validator's verdict on one object, with the object's JSON path.
fn valid(r: Result<(), Error>, path: &str) -> Result<(), Error> {
    r.map_err(|e| Error::json(path, format!("{} (`{}`)", e.msg, e.token)))
}

fn read_set(o: &Map<String, J>, path: &str) -> Result<Set, Error> {
    let ty_name = get_str(o, "type", path)?;
    let ty = SetType::from_name(ty_name)
        .ok_or_else(|| Error::json(path, format!("unsupported set type {ty_name}")))?;
    let interval = match o.get("flags") {
        None => false,
        Some(J::String(s)) => s == "interval",
        Some(J::Array(a)) => a.iter().any(|f| f == "interval"),
        Some(_) => return jerr(path, "bad flags"),
    };
    let mut elements = Vec::new();
    let mut elem_timeouts = Vec::new();
    if let Some(e) = o.get("elem") {
        let list = e
            .as_array()
            .ok_or_else(|| Error::json(path, "elem must be a list"))?;
        for (i, x) in list.iter().enumerate() {
            let p = format!("{path}.elem[{i}]");
            // `{"elem": {"val": V, "timeout": S}}`: an element with its own timeout.
            let (x, timeout) = elem_timeout_json(x, &p)?;
            let v = read_value(ty.kind(), x, &p)?;
            if let Some(t) = timeout {
                elem_timeouts.push((v.clone(), t.saturating_mul(1000)));
            }
            elements.push(v);
        }
    }
    Ok(Set {
        name: get_str(o, "name", path)?.to_owned(),
        ty,
        interval,
        elements,
        elem_timeouts,
        dynamic: crate::rules::dynset::opts_from_json(o),
        pos: Pos::default(),
    })
}

/// `"ipv4_addr"`, `["ipv4_addr", "inet_service"]` or `"ipv4_addr . inet_service"`.
fn read_types(v: &J, path: &str) -> Result<Vec<SetType>, Error> {
    let names: Vec<&str> = match v {
        J::String(s) => s.split(" . ").collect(),
        J::Array(a) => a.iter().filter_map(J::as_str).collect(),
        _ => return jerr(path, "bad type"),
    };
    names
        .into_iter()
        .map(|n| {
            SetType::from_name(n)
                .ok_or_else(|| Error::json(path, format!("unsupported set type {n}")))
        })
        .collect()
}

/// A map, or a set keyed by a concatenation.
fn read_map(o: &Map<String, J>, path: &str) -> Result<crate::rules::ast::Map, Error> {
    let key = read_types(o.get("type").unwrap_or(&J::Null), path)?;
    let data = match o.get("map") {
        None => None,
        Some(J::String(s)) if s == "verdict" => Some(MapData::Verdict),
        Some(v) => Some(MapData::Types(read_types(v, path)?)),
    };
    let interval = match o.get("flags") {
        None => false,
        Some(J::String(s)) => s == "interval",
        Some(J::Array(a)) => a.iter().any(|f| f == "interval"),
        Some(_) => return jerr(path, "bad flags"),
    };
    let kinds: Vec<Kind> = key.iter().map(|t| t.kind()).collect();
    let (mut elements, mut elem_timeouts) = (Vec::new(), Vec::new());
    for (i, x) in o
        .get("elem")
        .map(|e| {
            e.as_array()
                .ok_or_else(|| Error::json(path, "elem must be a list"))
        })
        .transpose()?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{path}.elem[{i}]");
        let (k, d) = match (&data, x.as_array().map(Vec::as_slice)) {
            (None, _) => (x, None),
            (Some(_), Some([k, d])) => (k, Some(d)),
            _ => return jerr(&p, "a map element is [KEY, DATA]"),
        };
        // `{"elem": {"val": {"concat": […]}, "timeout": S}}`: its own timeout.
        let (k, timeout) = elem_timeout_json(k, &p)?;
        let e = read_kinds_elem(&kinds, k, &p)?;
        if let Some(t) = timeout {
            elem_timeouts.push((e.clone(), t.saturating_mul(1000)));
        }
        let v = match (&data, d) {
            (Some(MapData::Verdict), Some(d)) => match read_stmt(d, &p)? {
                Stmt::Verdict(v, _) => MapValue::Verdict(v),
                _ => return jerr(&p, format!("expected a verdict, got {d}")),
            },
            (Some(MapData::Types(ts)), Some(d)) => {
                let dk: Vec<Kind> = ts.iter().map(|t| t.kind()).collect();
                MapValue::Data(read_kinds_elem(&dk, d, &p)?)
            }
            _ => MapValue::None,
        };
        elements.push((e, v));
    }
    Ok(crate::rules::ast::Map {
        name: get_str(o, "name", path)?.to_owned(),
        dynamic: crate::rules::dynset::opts_from_json(o),
        key,
        data,
        interval,
        elements,
        elem_timeouts,
        pos: Pos::default(),
    })
}

/// An element that may carry its own timeout (`{"elem": {"val": V, "timeout": S}}`): V
/// and the timeout in seconds; anything else is V itself.
fn elem_timeout_json<'a>(x: &'a J, p: &str) -> Result<(&'a J, Option<u64>), Error> {
    Ok(match x.get("elem") {
        Some(e) => (
            e.get("val").unwrap_or(&J::Null),
            e.get("timeout")
                .map(|t| t.as_u64().ok_or_else(|| Error::json(p, "bad timeout")))
                .transpose()?,
        ),
        None => (x, None),
    })
}

fn read_chain(o: &Map<String, J>, path: &str) -> Result<Chain, Error> {
    let base = match o.get("hook") {
        None => None,
        Some(_) => {
            let ty = match get_str(o, "type", path)? {
                "filter" => ChainType::Filter,
                "nat" => ChainType::Nat,
                t => return jerr(path, format!("unsupported chain type {t}")),
            };
            let h = get_str(o, "hook", path)?;
            let hook = Hook::from_name(h)
                .ok_or_else(|| Error::json(path, format!("unsupported hook {h}")))?;
            let priority = o
                .get("prio")
                .and_then(J::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| Error::json(path, "missing prio"))?;
            let policy = match o.get("policy").and_then(J::as_str) {
                None | Some("accept") => Policy::Accept,
                Some("drop") => Policy::Drop,
                Some(p) => return jerr(path, format!("bad policy {p}")),
            };
            Some(BaseChain {
                ty,
                hook,
                priority,
                policy,
            })
        }
    };
    Ok(Chain {
        name: get_str(o, "name", path)?.to_owned(),
        base,
        rules: Vec::new(),
        pos: Pos::default(),
    })
}

fn read_rule(o: &Map<String, J>, path: &str) -> Result<Rule, Error> {
    let exprs = o
        .get("expr")
        .and_then(J::as_array)
        .ok_or_else(|| Error::json(path, "missing expr"))?;
    let mut stmts = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        stmts.push(read_stmt(e, &format!("{path}.expr[{i}]"))?);
    }
    let comment = match o.get("comment") {
        None | Some(J::Null) => None,
        Some(J::String(c)) => Some(c.clone()),
        Some(other) => return jerr(path, format!("comment must be a string, not {other}")),
    };
    Ok(Rule {
        stmts,
        comment,
        handle: o.get("handle").and_then(J::as_u64).unwrap_or(0),
        pos: Pos::default(),
    })
}

fn read_field(left: &J, path: &str) -> Result<(Field, Option<u64>), Error> {
    if let Some(and) = left.get("&").and_then(J::as_array) {
        let [inner, mask] = &and[..] else {
            return jerr(path, "`&` takes two operands");
        };
        let (f, _) = read_field(inner, path)?;
        let m = flag_bits(f.kind(), mask, path)?;
        return Ok((f, Some(m)));
    }
    if let Some(f) = super::facts::read_field_json(left, path) {
        return f.map(|f| (f, None));
    }
    let (a, b) = if let Some(p) = left.get("payload") {
        (
            p.get("protocol").and_then(J::as_str).unwrap_or(""),
            p.get("field").and_then(J::as_str).unwrap_or(""),
        )
    } else if let Some(m) = left.get("meta") {
        ("meta", m.get("key").and_then(J::as_str).unwrap_or(""))
    } else if let Some(m) = left.get("ct") {
        ("ct", m.get("key").and_then(J::as_str).unwrap_or(""))
    } else {
        return jerr(path, format!("unsupported match operand {left}"));
    };
    Field::from_words(a, b).map(|f| (f, None)).ok_or_else(|| {
        Error::json(
            path,
            format!("`{a} {b}` is not supported by this appliance"),
        )
    })
}

fn flag_bits(kind: Kind, v: &J, path: &str) -> Result<u64, Error> {
    match v {
        J::Number(n) => n.as_u64().ok_or_else(|| Error::json(path, "bad number")),
        J::String(s) => {
            names::lookup(kind, s).ok_or_else(|| Error::json(path, format!("unknown flag {s}")))
        }
        J::Array(a) => a
            .iter()
            .try_fold(0, |acc, x| Ok(acc | flag_bits(kind, x, path)?)),
        J::Object(o) if o.contains_key("|") => flag_bits(kind, &o["|"], path),
        _ => jerr(path, "bad flag value"),
    }
}

fn read_value(kind: Kind, v: &J, path: &str) -> Result<Value, Error> {
    let bad = |m: String| Error::json(path, m);
    match v {
        J::Number(_) if matches!(kind, Kind::Addr4 | Kind::Addr6 | Kind::IfName) => {
            Err(bad(format!("expected a string, got {v}")))
        }
        J::Number(_) | J::Bool(_) if matches!(kind, Kind::Millis | Kind::Presence) => {
            super::facts::read_value_json(kind, v)
                .map(Value::Num)
                .ok_or_else(|| bad(format!("bad value {v}")))
        }
        J::Number(n) => n
            .as_u64()
            .map(Value::Num)
            .ok_or_else(|| bad("bad number".into())),
        J::String(s) => parse_value(kind, s).map_err(bad),
        J::Object(o) => {
            if let Some(p) = o.get("prefix") {
                let addr = p.get("addr").and_then(J::as_str).unwrap_or("");
                let len = p.get("len").and_then(J::as_u64).unwrap_or(0);
                parse_value(kind, &format!("{addr}/{len}")).map_err(bad)
            } else if let Some(J::Array(r)) = o.get("range") {
                let [a, b] = &r[..] else {
                    return Err(bad("range takes two values".into()));
                };
                match (read_value(kind, a, path)?, read_value(kind, b, path)?) {
                    (Value::Num(a), Value::Num(b)) => Ok(Value::Range(a, b)),
                    (Value::Prefix(a, _), Value::Prefix(b, _)) => Ok(Value::AddrRange(a, b)),
                    _ => Err(bad("bad range".into())),
                }
            } else {
                Err(bad(format!("unsupported value {v}")))
            }
        }
        _ => Err(bad(format!("unsupported value {v}"))),
    }
}

fn read_match(m: &J, path: &str) -> Result<Match, Error> {
    let (field, mask) = read_field(m.get("left").unwrap_or(&J::Null), path)?;
    let kind = field.kind();
    let right = m.get("right").unwrap_or(&J::Null);
    let exact_flags = kind.is_flags()
        && right.get("set").is_none()
        && !right.as_str().is_some_and(|s| s.starts_with('@'));
    let op = match m.get("op").and_then(J::as_str).unwrap_or("==") {
        "in" => Op::Implicit,
        "==" if exact_flags => Op::Eq,
        "==" => Op::Implicit,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        ">" => Op::Gt,
        "<=" => Op::Le,
        ">=" => Op::Ge,
        o => return jerr(path, format!("unsupported op {o}")),
    };
    let rhs = match right {
        J::String(s) if s.starts_with('@') => Rhs::Named(s[1..].to_owned()),
        J::Object(o) if o.contains_key("set") => {
            let list = o["set"]
                .as_array()
                .ok_or_else(|| Error::json(path, "set must be a list"))?;
            let mut vals = Vec::new();
            for x in list {
                vals.push(if kind.is_flags() {
                    Value::Num(flag_bits(kind, x, path)?)
                } else {
                    read_value(kind, x, path)?
                });
            }
            Rhs::Set(vals)
        }
        _ if kind.is_flags() => Rhs::Values(vec![Value::Num(flag_bits(kind, right, path)?)]),
        _ => Rhs::Values(vec![read_value(kind, right, path)?]),
    };
    Ok(Match {
        field,
        mask,
        op,
        rhs,
    })
}

/// A map or concatenation key: one field or `{"concat": [FIELD, …]}`.
fn read_key(left: &J, path: &str) -> Result<Vec<Field>, Error> {
    let one = |f: &J| match read_field(f, path)? {
        (f, None) => Ok(f),
        _ => jerr(path, "a masked field in a map key"),
    };
    match left.get("concat").and_then(J::as_array) {
        Some(fields) => fields.iter().map(one).collect(),
        None => Ok(vec![one(left)?]),
    }
}

/// One element for `key`: a value, or `{"concat": [VALUE, …]}`.
fn read_elem(key: &[Field], v: &J, path: &str) -> Result<Elem, Error> {
    let kinds: Vec<Kind> = key.iter().map(|f| f.kind()).collect();
    read_kinds_elem(&kinds, v, path)
}

/// One element of values of `kinds`: a value, or `{"concat": [VALUE, …]}`.
fn read_kinds_elem(kinds: &[Kind], v: &J, path: &str) -> Result<Elem, Error> {
    let one = |&kind: &Kind, x: &J| {
        if kind.is_flags() {
            flag_bits(kind, x, path).map(Value::Num)
        } else {
            read_value(kind, x, path)
        }
    };
    match (kinds, v.get("concat").and_then(J::as_array)) {
        ([k], None) => Ok(vec![one(k, v)?]),
        (_, Some(vals)) if vals.len() == kinds.len() => {
            kinds.iter().zip(vals).map(|(k, x)| one(k, x)).collect()
        }
        _ => jerr(path, format!("element {v} does not fit the key")),
    }
}

/// `"@NAME"` or `{"set": [ITEM, …]}` with each item read by `item`.
fn read_elements<T>(
    v: &J,
    path: &str,
    item: impl Fn(&J) -> Result<T, Error>,
) -> Result<Elements<T>, Error> {
    if let Some(n) = v.as_str().and_then(|s| s.strip_prefix('@')) {
        return Ok(Elements::Named(n.to_owned()));
    }
    set_list(v, path)?
        .iter()
        .map(item)
        .collect::<Result<_, _>>()
        .map(Elements::Anon)
}

/// `{"map": {"key": K, "data": "@NAME" | {"set": [[k, ADDR | {"concat": [ADDR, PORT]}], …]}}}`
/// of a NAT statement.
fn read_nat_map(nat: NatStmt, m: &J, path: &str) -> Result<NatMap, Error> {
    let key = read_key(m.get("key").unwrap_or(&J::Null), path)?;
    let elements = read_elements(m.get("data").unwrap_or(&J::Null), path, |pair| {
        let Some([e, d]) = pair.as_array().map(Vec::as_slice) else {
            return jerr(path, "a NAT map element is [KEY, ADDRESS]");
        };
        let vals: Vec<&J> = match d.get("concat").and_then(J::as_array) {
            Some(v) => v.iter().collect(),
            None => vec![d],
        };
        let mut data = Vec::new();
        for (i, x) in vals.into_iter().enumerate() {
            let kind = match (i, x.as_str()) {
                (0, Some(a)) if a.contains(':') => Kind::Addr6,
                (0, _) => Kind::Addr4,
                _ => Kind::Port,
            };
            data.push(read_value(kind, x, path)?);
        }
        Ok((read_elem(&key, e, path)?, data))
    })?;
    Ok(NatMap { nat, key, elements })
}

fn set_list<'a>(v: &'a J, path: &str) -> Result<&'a [J], Error> {
    v.get("set")
        .and_then(J::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::json(path, "expected {\"set\": [...]}"))
}

fn read_lookup(m: &J, path: &str) -> Result<Lookup, Error> {
    let key = read_key(m.get("left").unwrap_or(&J::Null), path)?;
    let neg = match m.get("op").and_then(J::as_str).unwrap_or("==") {
        "==" | "in" => false,
        "!=" => true,
        o => return jerr(path, format!("unsupported op {o} for a concatenation")),
    };
    let elements = read_elements(m.get("right").unwrap_or(&J::Null), path, |e| {
        read_elem(&key, e, path)
    })?;
    Ok(Lookup { key, neg, elements })
}

fn read_vmap(m: &J, path: &str) -> Result<Vmap, Error> {
    let key = read_key(m.get("key").unwrap_or(&J::Null), path)?;
    let elements = read_elements(m.get("data").unwrap_or(&J::Null), path, |pair| {
        let Some([e, d]) = pair.as_array().map(Vec::as_slice) else {
            return jerr(path, "a verdict map element is [KEY, VERDICT]");
        };
        let Stmt::Verdict(v, _) = read_stmt(d, path)? else {
            return jerr(path, format!("expected a verdict, got {d}"));
        };
        Ok((read_elem(&key, e, path)?, v))
    })?;
    Ok(Vmap { key, elements })
}

fn nat_addr(v: &J, path: &str) -> Result<(Addr, Addr), Error> {
    let one = |s: &J| -> Result<Addr, Error> {
        let s = s
            .as_str()
            .ok_or_else(|| Error::json(path, "address must be a string"))?;
        s.parse::<std::net::IpAddr>()
            .map(Addr::from)
            .map_err(|_| Error::json(path, format!("bad address {s}")))
    };
    match v.get("range").and_then(J::as_array) {
        Some(r) if r.len() == 2 => Ok((one(&r[0])?, one(&r[1])?)),
        _ => {
            let a = one(v)?;
            Ok((a, a))
        }
    }
}

fn nat_port(v: &J, path: &str) -> Result<(u16, u16), Error> {
    let one = |x: &J| -> Result<u16, Error> {
        x.as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| Error::json(path, "bad port"))
    };
    match v.get("range").and_then(J::as_array) {
        Some(r) if r.len() == 2 => Ok((one(&r[0])?, one(&r[1])?)),
        _ => {
            let p = one(v)?;
            Ok((p, p))
        }
    }
}

fn read_stmt(e: &J, path: &str) -> Result<Stmt, Error> {
    let Some((k, body)) = e.as_object().and_then(|o| o.iter().next()) else {
        return jerr(path, "expected a one-key object");
    };
    let pos = Pos::default();
    Ok(match k.as_str() {
        "match" if body.get("left").is_some_and(|l| l.get("concat").is_some()) => {
            Stmt::Lookup(read_lookup(body, path)?, pos)
        }
        "match" => Stmt::Match(read_match(body, path)?, pos),
        "vmap" => Stmt::Vmap(read_vmap(body, path)?, pos),
        "set" | "meter" => Stmt::SetElem(
            crate::rules::dynset::elem_from_json(body, k == "meter", path, read_key, read_stmt)?,
            pos,
        ),
        "accept" => Stmt::Verdict(Verdict::Accept, pos),
        "drop" => Stmt::Verdict(Verdict::Drop, pos),
        "continue" => Stmt::Verdict(Verdict::Continue, pos),
        "return" => Stmt::Verdict(Verdict::Return, pos),
        "jump" | "goto" => {
            let t = body
                .get("target")
                .and_then(J::as_str)
                .ok_or_else(|| Error::json(path, "missing target"))?
                .to_owned();
            Stmt::Verdict(
                if k == "jump" {
                    Verdict::Jump(t)
                } else {
                    Verdict::Goto(t)
                },
                pos,
            )
        }
        "counter" => Stmt::Counter {
            packets: body.get("packets").and_then(J::as_u64).unwrap_or(0),
            bytes: body.get("bytes").and_then(J::as_u64).unwrap_or(0),
        },
        "notrack" => Stmt::Notrack,
        "log" => Stmt::Log {
            prefix: body.get("prefix").and_then(J::as_str).map(str::to_owned),
            level: body.get("level").and_then(J::as_str).map(str::to_owned),
        },
        "limit" => {
            if body
                .get("rate_unit")
                .and_then(J::as_str)
                .is_some_and(|u| u != "packets")
            {
                return jerr(path, "byte-rate limits are not supported by this appliance");
            }
            let per = body.get("per").and_then(J::as_str).unwrap_or("second");
            Stmt::Limit {
                rate: body
                    .get("rate")
                    .and_then(J::as_u64)
                    .filter(|&r| r > 0)
                    .ok_or_else(|| Error::json(path, "missing rate"))?,
                unit: TimeUnit::from_name(per).ok_or_else(|| Error::json(path, "bad unit"))?,
                burst: body
                    .get("burst")
                    .and_then(J::as_u64)
                    .and_then(|b| u32::try_from(b).ok())
                    .unwrap_or(DEFAULT_BURST),
                over: body.get("inv").and_then(J::as_bool).unwrap_or(false),
            }
        }
        "ct helper" => super::helper::read_stmt_json(body, path, pos)?,
        "ct count" => Stmt::CtCount {
            count: body
                .get("val")
                .and_then(J::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| Error::json(path, "missing val"))?,
            over: body.get("inv").and_then(J::as_bool).unwrap_or(false),
        },
        "mangle" if let Some(v) = super::mangle::read_mangle_json(body, path) => {
            Stmt::MssSet(v?, pos)
        }
        "mangle" if let Some(v) = super::mangle::read_dscp_json(body, path) => {
            let (f, n) = v?;
            Stmt::DscpSet(f, n, pos)
        }
        "mangle" => {
            let key = body.get("key").unwrap_or(&J::Null);
            let v = body
                .get("value")
                .and_then(J::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| Error::json(path, "mangle value must be a 32-bit number"))?;
            if key.get("meta").and_then(|m| m.get("key")) == Some(&json!("mark")) {
                Stmt::MetaMarkSet(v)
            } else if key.get("ct").and_then(|m| m.get("key")) == Some(&json!("mark")) {
                Stmt::CtMarkSet(v)
            } else {
                return jerr(
                    path,
                    format!("setting {key} is not supported by this appliance"),
                );
            }
        }
        "reject" => {
            let ty = body.get("type").and_then(J::as_str);
            let code = body.get("expr");
            let c = |t: &[(&str, u8)]| -> Result<u8, Error> {
                match code {
                    None => Ok(names::code_lookup(t, "port-unreachable").unwrap_or(3)),
                    Some(J::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(|| Error::json(path, "bad code")),
                    Some(J::String(n)) => names::code_lookup(t, n)
                        .ok_or_else(|| Error::json(path, format!("unknown code {n}"))),
                    Some(other) => jerr(path, format!("bad code {other}")),
                }
            };
            let r = match ty {
                None => Reject::Default,
                Some("tcp reset") => Reject::TcpReset,
                Some("icmp") => Reject::Icmp(c(names::REJECT_ICMP)?),
                Some("icmpv6") => Reject::Icmpv6(c(names::REJECT_ICMPV6)?),
                Some("icmpx") => Reject::Icmpx(c(names::REJECT_ICMPX)?),
                Some(t) => return jerr(path, format!("unsupported reject type {t}")),
            };
            Stmt::Reject(r, pos)
        }
        "snat" | "dnat" | "masquerade" | "redirect" => {
            let kind = match k.as_str() {
                "snat" => NatKind::Snat,
                "dnat" => NatKind::Dnat,
                "masquerade" => NatKind::Masquerade,
                _ => NatKind::Redirect,
            };
            let mut flags = NatFlags::default();
            let fl: Vec<&str> = match body.get("flags") {
                Some(J::String(s)) => vec![s.as_str()],
                Some(J::Array(a)) => a.iter().filter_map(J::as_str).collect(),
                _ => Vec::new(),
            };
            for f in fl {
                match f {
                    "random" => flags.random = true,
                    "fully-random" => flags.fully_random = true,
                    "persistent" => flags.persistent = true,
                    _ => return jerr(path, format!("unsupported NAT flag {f}")),
                }
            }
            let family = body
                .get("family")
                .and_then(J::as_str)
                .and_then(TableFamily::from_name);
            let mut nat = NatStmt {
                kind,
                family,
                addr: None,
                ports: None,
                flags,
            };
            if let Some(m) = body.get("addr").and_then(|a| a.get("map")) {
                return Ok(Stmt::NatMap(read_nat_map(nat, m, path)?, pos));
            }
            nat.addr = body.get("addr").map(|a| nat_addr(a, path)).transpose()?;
            nat.ports = body.get("port").map(|p| nat_port(p, path)).transpose()?;
            Stmt::Nat(nat, pos)
        }
        other => {
            return jerr(
                path,
                format!("`{other}` is not supported by this appliance"),
            );
        }
    })
}

// ---------------------------------------------------------------------------------------
// Writer

fn field_json(f: Field) -> J {
    if let Some(j) = super::facts::field_json(f) {
        return j;
    }
    let (a, b) = f.words();
    match a {
        "meta" => json!({"meta": {"key": b}}),
        "ct" => json!({"ct": {"key": b}}),
        _ => json!({"payload": {"protocol": a, "field": b}}),
    }
}

fn flags_json(kind: Kind, v: u64) -> J {
    match names::flag_names(kind, v) {
        Some(n) if n.len() == 1 => json!(n[0]),
        Some(n) => json!(n),
        None => json!(v),
    }
}

pub(crate) fn value_json(kind: Kind, v: &Value) -> J {
    match v {
        Value::Num(n) if kind.is_flags() => flags_json(kind, *n),
        Value::Num(n) if matches!(kind, Kind::Millis | Kind::Presence) => {
            super::facts::value_json(kind, *n)
        }
        Value::Range(a, b) if kind == Kind::Millis => json!({"range": [
            super::facts::value_json(kind, *a),
            super::facts::value_json(kind, *b)
        ]}),
        Value::Num(n) => match (kind, names::name_of(kind, *n)) {
            (Kind::Port | Kind::Mark, _) | (_, None) => json!(n),
            (_, Some(name)) => json!(name),
        },
        Value::Range(a, b) => json!({"range": [a, b]}),
        Value::Prefix(a, len) => {
            let full = if kind == Kind::Addr4 { 32 } else { 128 };
            if *len == full {
                json!(print::addr_text(kind, a))
            } else {
                json!({"prefix": {"addr": print::addr_text(kind, a), "len": len}})
            }
        }
        Value::AddrRange(a, b) => {
            json!({"range": [print::addr_text(kind, a), print::addr_text(kind, b)]})
        }
        Value::Str(s) => json!(s),
    }
}

fn match_json(m: &Match) -> J {
    let kind = m.field.kind();
    let mut left = field_json(m.field);
    if let Some(mask) = m.mask {
        left = json!({"&": [left, flags_json(kind, mask)]});
    }
    let op = match m.op {
        Op::Implicit if kind.is_flags() && matches!(m.rhs, Rhs::Values(_)) => "in",
        Op::Implicit | Op::Eq => "==",
        other => other.text(),
    };
    let right = match &m.rhs {
        Rhs::Values(v) if v.len() == 1 => value_json(kind, &v[0]),
        Rhs::Values(v) => J::Array(v.iter().map(|x| value_json(kind, x)).collect()),
        Rhs::Set(v) => json!({"set": v.iter().map(|x| value_json(kind, x)).collect::<Vec<_>>()}),
        Rhs::Named(n) => json!(format!("@{n}")),
    };
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn key_json(key: &[Field]) -> J {
    match key {
        [f] => field_json(*f),
        _ => json!({"concat": key.iter().map(|&f| field_json(f)).collect::<Vec<_>>()}),
    }
}

fn elem_json(key: &[Field], e: &[Value]) -> J {
    let kinds: Vec<Kind> = key.iter().map(|f| f.kind()).collect();
    kinds_elem_json(&kinds, e)
}

/// `"@NAME"` or `{"set": [ITEM, …]}`.
fn elements_json<T>(els: &Elements<T>, one: impl Fn(&T) -> J) -> J {
    match els {
        Elements::Named(n) => json!(format!("@{n}")),
        Elements::Anon(v) => json!({"set": v.iter().map(one).collect::<Vec<_>>()}),
    }
}

pub(crate) fn kinds_elem_json(kinds: &[Kind], e: &[Value]) -> J {
    let mut vals: Vec<J> = kinds
        .iter()
        .zip(e)
        .map(|(&k, v)| match (k, v) {
            // `nft -j` writes a presence inside a concatenation as 1 or 0.
            (Kind::Presence, Value::Num(n)) if kinds.len() > 1 => json!(n),
            _ => value_json(k, v),
        })
        .collect();
    match vals.len() {
        1 => vals.remove(0),
        _ => json!({"concat": vals}),
    }
}

fn verdict_json(v: &Verdict) -> J {
    stmt_json(&Stmt::Verdict(v.clone(), Pos::default()), None)
}

fn nat_map_json(n: &NatMap) -> J {
    let data = elements_json(&n.elements, |(e, d)| {
        json!([
            elem_json(&n.key, e),
            kinds_elem_json(&print::nat_data_kinds(d), d)
        ])
    });
    let mut o = nat_json(&n.nat);
    let kw = print::nat_keyword(n.nat.kind);
    let map = json!({"map": {"key": key_json(&n.key), "data": data}});
    match o.get_mut(kw) {
        Some(J::Object(body)) => {
            body.insert("addr".into(), map);
        }
        _ => o = json!({kw: {"addr": map}}),
    }
    o
}

fn map_json(fam: &str, table: &str, m: &crate::rules::ast::Map) -> J {
    let ty = match &m.key[..] {
        [t] => json!(t.name()),
        ts => json!(ts.iter().map(|t| t.name()).collect::<Vec<_>>()),
    };
    let mut o = json!({"family": fam, "name": m.name, "table": table, "type": ty});
    if let Some(d) = &m.data {
        o["map"] = json!(print::map_data_text(d));
    }
    if m.dynamic.any() {
        crate::rules::dynset::opts_json(&mut o, &m.dynamic, m.interval);
    } else if m.interval {
        o["flags"] = json!(["interval"]);
    }
    if !m.elements.is_empty() {
        let kinds: Vec<Kind> = m.key.iter().map(|t| t.kind()).collect();
        o["elem"] = J::Array(
            m.elements
                .iter()
                .map(|(e, v)| {
                    map_elem_json(
                        m,
                        with_timeout_json(kinds_elem_json(&kinds, e), m.elem_timeout(e)),
                        v,
                    )
                })
                .collect(),
        );
    }
    json!({m.keyword(): o})
}

/// A map element as `nft -j` writes it: `[KEY, DATA]` with the key's JSON `k` (a set of
/// concatenations: the key alone).
pub(crate) fn map_elem_json(m: &crate::rules::ast::Map, k: J, v: &MapValue) -> J {
    match (v, &m.data) {
        (MapValue::Verdict(d), _) => json!([k, verdict_json(d)]),
        (MapValue::Data(d), Some(MapData::Types(ts))) => {
            let dk: Vec<Kind> = ts.iter().map(|t| t.kind()).collect();
            json!([k, kinds_elem_json(&dk, d)])
        }
        _ => k,
    }
}

/// A declared element's JSON with its own timeout (ms), as `nft -j` writes it.
fn with_timeout_json(v: J, timeout_ms: Option<u64>) -> J {
    match timeout_ms {
        Some(ms) => json!({"elem": {"val": v, "timeout": ms / 1000}}),
        None => v,
    }
}

fn nat_json(n: &NatStmt) -> J {
    let kw = print::nat_keyword(n.kind);
    let mut o = Map::new();
    if let Some(f) = n.family {
        o.insert("family".into(), json!(f.name()));
    }
    if let Some((a, b)) = n.addr {
        o.insert(
            "addr".into(),
            if a == b {
                json!(a.to_string())
            } else {
                json!({"range": [a.to_string(), b.to_string()]})
            },
        );
    }
    if let Some((a, b)) = n.ports {
        o.insert(
            "port".into(),
            if a == b {
                json!(a)
            } else {
                json!({"range": [a, b]})
            },
        );
    }
    let flags = print::nat_flag_names(&n.flags);
    match flags.len() {
        0 => {}
        1 => {
            o.insert("flags".into(), json!(flags[0]));
        }
        _ => {
            o.insert("flags".into(), json!(flags));
        }
    }
    if o.is_empty() {
        json!({kw: null})
    } else {
        json!({kw: o})
    }
}

fn reject_json(ty: &str, t: &[(&'static str, u8)], c: u8) -> J {
    match names::code_name(t, c) {
        Some(n) => json!({"reject": {"type": ty, "expr": n}}),
        None => json!({"reject": {"type": ty, "expr": c}}),
    }
}

fn stmt_json(s: &Stmt, counter: Option<(u64, u64)>) -> J {
    match s {
        Stmt::Match(m, _) => match_json(m),
        Stmt::Verdict(v, _) => match v {
            Verdict::Jump(t) => json!({"jump": {"target": t}}),
            Verdict::Goto(t) => json!({"goto": {"target": t}}),
            other => json!({print::verdict(other): null}),
        },
        Stmt::Reject(r, _) => match r {
            Reject::Default => json!({"reject": null}),
            Reject::TcpReset => json!({"reject": {"type": "tcp reset"}}),
            Reject::Icmp(c) => reject_json("icmp", names::REJECT_ICMP, *c),
            Reject::Icmpv6(c) => reject_json("icmpv6", names::REJECT_ICMPV6, *c),
            Reject::Icmpx(c) => reject_json("icmpx", names::REJECT_ICMPX, *c),
        },
        Stmt::Counter { packets, bytes } => {
            let (p, b) = counter.unwrap_or((*packets, *bytes));
            json!({"counter": {"packets": p, "bytes": b}})
        }
        Stmt::Log { prefix, level } => {
            let mut o = Map::new();
            if let Some(p) = prefix {
                o.insert("prefix".into(), json!(p));
            }
            if let Some(l) = level {
                o.insert("level".into(), json!(l));
            }
            if o.is_empty() {
                json!({"log": null})
            } else {
                json!({"log": o})
            }
        }
        Stmt::Limit {
            rate,
            unit,
            burst,
            over,
        } => {
            let mut o = json!({"rate": rate, "burst": burst, "per": unit.name()});
            if *over {
                o["inv"] = json!(true);
            }
            json!({"limit": o})
        }
        Stmt::CtCount { count, over } => {
            let mut o = json!({"val": count});
            if *over {
                o["inv"] = json!(true);
            }
            json!({"ct count": o})
        }
        Stmt::Notrack => json!({"notrack": null}),
        Stmt::MetaMarkSet(m) => json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": m}}),
        Stmt::CtMarkSet(m) => json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": m}}),
        Stmt::Nat(n, _) => nat_json(n),
        Stmt::Lookup(l, _) => {
            let els = elements_json(&l.elements, |e| elem_json(&l.key, e));
            let op = if l.neg { "!=" } else { "==" };
            json!({"match": {"op": op, "left": key_json(&l.key), "right": els}})
        }
        Stmt::Vmap(v, _) => {
            let els = elements_json(&v.elements, |(e, d)| {
                json!([elem_json(&v.key, e), verdict_json(d)])
            });
            json!({"vmap": {"key": key_json(&v.key), "data": els}})
        }
        Stmt::NatMap(n, _) => nat_map_json(n),
        Stmt::SetElem(e, _) => {
            crate::rules::dynset::elem_json(e, key_json(&e.key), |s| stmt_json(s, None))
        }
        Stmt::MssSet(v, _) => super::mangle::mss_json(*v),
        Stmt::DscpSet(f, v, _) => {
            super::mangle::dscp_json(*f, value_json(Kind::Dscp, &Value::Num(u64::from(*v))))
        }
        Stmt::CtHelperSet(n, _) => json!({"ct helper": n}),
    }
}

/// Writes `{"nftables": [...]}`.
pub fn to_json(rs: &Ruleset) -> J {
    to_json_with(rs, &|_, _, _| None)
}

/// Writes JSON, filling `counter` statements from `counters`.
pub fn to_json_with(rs: &Ruleset, counters: print::CounterLookup<'_>) -> J {
    let mut items = vec![json!({"metainfo": {"json_schema_version": 1}})];
    if rs.flush {
        items.push(json!({"flush": {"ruleset": null}}));
    }
    for (ti, t) in rs.tables.iter().enumerate() {
        let fam = t.family.name();
        items.push(json!({"table": {"family": fam, "name": t.name, "handle": ti + 1}}));
        for (hi, h) in t.helpers.iter().enumerate() {
            items.push(super::helper::obj_json(t, h, hi + 2));
        }
        for s in &t.sets {
            let mut o =
                json!({"family": fam, "name": s.name, "table": t.name, "type": s.ty.name()});
            if s.dynamic.any() {
                crate::rules::dynset::opts_json(&mut o, &s.dynamic, s.interval);
            } else if s.interval {
                o["flags"] = json!(["interval"]);
            }
            if !s.elements.is_empty() {
                o["elem"] = J::Array(
                    s.elements
                        .iter()
                        .map(|v| with_timeout_json(value_json(s.ty.kind(), v), s.elem_timeout(v)))
                        .collect(),
                );
            }
            items.push(json!({"set": o}));
        }
        for m in &t.maps {
            items.push(map_json(fam, &t.name, m));
        }
        for (ci, c) in t.chains.iter().enumerate() {
            let mut o = json!({"family": fam, "table": t.name, "name": c.name});
            if let Some(b) = &c.base {
                o["type"] = json!(match b.ty {
                    ChainType::Filter => "filter",
                    ChainType::Nat => "nat",
                });
                o["hook"] = json!(b.hook.name());
                o["prio"] = json!(b.priority);
                o["policy"] = json!(match b.policy {
                    Policy::Accept => "accept",
                    Policy::Drop => "drop",
                });
            }
            items.push(json!({"chain": o}));
            let _ = ci;
        }
        for (ci, c) in t.chains.iter().enumerate() {
            for (ri, r) in c.rules.iter().enumerate() {
                let cnt = counters(ti, ci, ri);
                let mut o =
                    json!({"family": fam, "table": t.name, "chain": c.name, "handle": r.handle});
                if let Some(cm) = &r.comment {
                    o["comment"] = json!(cm);
                }
                o["expr"] = J::Array(r.stmts.iter().map(|s| stmt_json(s, cnt)).collect());
                items.push(json!({"rule": o}));
            }
        }
    }
    json!({"nftables": items})
}
