//! What the nftables text can express, checked on any AST.
//!
//! The text parser enforces these rules as it reads; the JSON reader builds an AST from
//! objects that could hold anything (a comment with a quote, a table name with a space, a
//! port of 70000, a reversed range). [`ruleset`] runs on both, so JSON input is held to
//! exactly the rules of text input, and whatever passes prints as text that parses back to
//! the same AST: the appliance persists rulesets as text and must be able to read its own
//! state directory ([`super::to_text_verified`] checks that once more before
//! anything is written).
//!
//! Names follow nft's scanner (`string` in `scanner.l`): a letter, `_` or `.`, then
//! letters, digits and `/ - _ .`, at most [`MAX_NAME`] bytes. Strings (comments, log
//! prefixes, interface names) are written between double quotes without escapes, so they
//! may hold neither `"` nor a line break; nft's own length limits apply.

use super::Error;
use super::ast::*;
use crate::nat::NatKind;
use crate::wire::Addr;

pub use super::ident::{MAX_NAME, name_problem};
/// Longest rule comment in bytes (`NFTNL_UDATA_COMMENT_MAXLEN`).
pub const MAX_COMMENT: usize = 128;
/// Longest `log prefix` in bytes (`NF_LOG_PREFIXLEN` is 128 with the NUL).
pub const MAX_LOG_PREFIX: usize = 127;
/// Longest interface name in bytes (`IFNAMSIZ` is 16 with the NUL).
pub const MAX_IFNAME: usize = 15;
/// The `log level` names nft knows.
pub const LOG_LEVELS: [&str; 9] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug", "audit",
];

/// Why `s` cannot be written as a quoted string of at most `max` bytes.
pub fn string_problem(what: &str, s: &str, max: usize) -> Option<String> {
    if s.len() > max {
        return Some(format!("{what} has {} bytes, at most {max}", s.len()));
    }
    if s.contains(['"', '\n']) {
        return Some(format!(
            "{what} may not contain a double quote or a line break"
        ));
    }
    None
}

/// Largest number a value of `kind` may be.
pub fn max_value(kind: Kind) -> u64 {
    match kind {
        Kind::Port | Kind::Uint16 => 65535,
        Kind::Mark | Kind::CtStatus | Kind::Millis => u64::from(u32::MAX),
        Kind::Dscp => 63,
        Kind::Presence => 1,
        _ => 255,
    }
}

fn addr_fits(kind: Kind, a: &Addr) -> bool {
    match kind {
        Kind::Addr4 => a.to_v4().is_some(),
        _ => true,
    }
}

/// Why `v` is not a value of `kind` as the text parser would produce it.
pub fn value_problem(kind: Kind, v: &Value) -> Option<String> {
    let full = if kind == Kind::Addr4 { 32 } else { 128 };
    match (kind, v) {
        (Kind::Addr4 | Kind::Addr6, Value::Prefix(a, len)) => {
            if !addr_fits(kind, a) {
                Some(format!("{a} is not an IPv4 address"))
            } else if *len > full {
                Some("prefix length too long".into())
            } else if addr_to_u128(*a) & !prefix_mask(kind, *len) != 0 {
                Some("address has bits set beyond the prefix length".into())
            } else {
                None
            }
        }
        (Kind::Addr4 | Kind::Addr6, Value::AddrRange(a, b)) => {
            if !addr_fits(kind, a) || !addr_fits(kind, b) {
                Some("an address range of another family".into())
            } else if a > b {
                Some("empty address range".into())
            } else {
                None
            }
        }
        (Kind::Addr4 | Kind::Addr6, _) => Some("expected an address or prefix".into()),
        (Kind::IfName, Value::Str(s)) if s.is_empty() => {
            Some("interface names have 1 to 15 characters".into())
        }
        (Kind::IfName, Value::Str(s)) => string_problem("an interface name", s, MAX_IFNAME),
        (Kind::IfName, _) => Some("expected an interface name".into()),
        (_, Value::Num(n)) if *n > max_value(kind) => {
            Some(format!("value {n} out of range (max {})", max_value(kind)))
        }
        (_, Value::Num(_)) => None,
        (_, Value::Range(..)) if kind.is_flags() => {
            Some("flags are matched by name or number, not a range".into())
        }
        (_, Value::Range(a, b)) if *b > max_value(kind) => {
            Some(format!("value {b} out of range (max {})", max_value(kind)))
        }
        (_, Value::Range(a, b)) if a > b => Some("empty range".into()),
        (_, Value::Range(..)) => None,
        _ => Some("this value does not fit the match".into()),
    }
}

/// Checks the whole ruleset; the first problem is returned with its position (0:0 and the
/// object's name for a JSON-built AST).
pub fn ruleset(rs: &Ruleset) -> Result<(), Error> {
    let at = |pos: Pos, token: &str, msg: String| Err(Error::at(pos, token, msg));
    for (ti, t) in rs.tables.iter().enumerate() {
        if let Some(m) = name_problem(&t.name) {
            return at(t.pos, &t.name, format!("table name: {m}"));
        }
        if rs.tables[..ti]
            .iter()
            .any(|x| x.family == t.family && x.name == t.name)
        {
            return at(t.pos, &t.name, "duplicate table".into());
        }
        for (si, s) in t.sets.iter().enumerate() {
            set(s)?;
            if t.sets[..si].iter().any(|x| x.name == s.name) {
                return at(s.pos, &s.name, "duplicate set".into());
            }
        }
        for (mi, m) in t.maps.iter().enumerate() {
            map(m)?;
            if t.maps[..mi].iter().any(|x| x.name == m.name)
                || t.sets.iter().any(|x| x.name == m.name)
            {
                return at(m.pos, &m.name, "duplicate set".into());
            }
        }
        for (ci, c) in t.chains.iter().enumerate() {
            if let Some(m) = name_problem(&c.name) {
                return at(c.pos, &c.name, format!("chain name: {m}"));
            }
            if t.chains[..ci].iter().any(|x| x.name == c.name) {
                return at(c.pos, &c.name, "duplicate chain".into());
            }
            for r in &c.rules {
                rule(r)?;
            }
        }
    }
    Ok(())
}

/// Checks a named set: its name and elements.
pub fn set(s: &Set) -> Result<(), Error> {
    if let Some(m) = name_problem(&s.name) {
        return Err(Error::at(s.pos, &s.name, format!("set name: {m}")));
    }
    for v in &s.elements {
        if let Some(m) = value_problem(s.ty.kind(), v) {
            return Err(Error::at(s.pos, &s.name, format!("set element: {m}")));
        }
    }
    for (v, ms) in &s.elem_timeouts {
        if let Some(m) = elem_timeout_problem(&s.dynamic, s.elements.contains(v), *ms) {
            return Err(Error::at(s.pos, &s.name, m));
        }
    }
    match super::dynset::opts_problem(&s.dynamic) {
        Some(m) => Err(Error::at(s.pos, &s.name, m)),
        None => Ok(()),
    }
}

/// What is wrong with a declared element's own timeout of `ms` in a set with `opts`
/// (`declared`: the element is one of the set's).
fn elem_timeout_problem(opts: &DynOpts, declared: bool, ms: u64) -> Option<String> {
    if !opts.timeout_flag {
        return Some(
            "an element `timeout` needs a set with `flags timeout` or a `timeout` (the kernel \
             refuses it too)"
                .into(),
        );
    }
    if !declared {
        return Some("a timeout of no element".into());
    }
    super::dynset::timeout_problem(ms).map(|m| format!("set element: {m}"))
}

/// Checks a named map or set of concatenations: its name, types and elements.
pub fn map(m: &Map) -> Result<(), Error> {
    let err = |msg: String| Err(Error::at(m.pos, &m.name, msg));
    if let Some(p) = name_problem(&m.name) {
        return err(format!("set name: {p}"));
    }
    if let Some(p) = super::dynset::opts_problem(&m.dynamic) {
        return err(p);
    }
    // A map's elements may time out (`flags timeout`, `timeout 30s`); the data path
    // does not add to a map here (`update @m { … : … }`), so it has no `size` nor
    // `flags dynamic`, and its timed elements are exact keys (no `flags interval`).
    if m.data.is_some() && (m.dynamic.dynamic || m.dynamic.size.is_some()) {
        return err(
            "a map is not dynamic here (only sets are): no `flags dynamic` nor `size`".into(),
        );
    }
    if m.data.is_some() && m.dynamic.timeout_flag && m.interval {
        return err(
            "`flags interval` with timeouts in a map is not supported by this appliance".into(),
        );
    }
    for (e, ms) in &m.elem_timeouts {
        let declared = m.elements.iter().any(|(x, _)| x == e);
        if let Some(p) = elem_timeout_problem(&m.dynamic, declared, *ms) {
            return err(p);
        }
    }
    let min = if m.data.is_some() { 1 } else { 2 };
    if !(min..=MAX_CONCAT).contains(&m.key.len()) {
        return err(format!("a key of {min} to {MAX_CONCAT} types"));
    }
    let kinds: Vec<Kind> = m.key.iter().map(|t| t.kind()).collect();
    let data_kinds: Option<Vec<Kind>> = match &m.data {
        Some(MapData::Types(ts)) => {
            if ts.is_empty() || ts.len() > MAX_CONCAT {
                return err(format!("data of 1 to {MAX_CONCAT} types"));
            }
            Some(ts.iter().map(|t| t.kind()).collect())
        }
        _ => None,
    };
    for (e, v) in &m.elements {
        if let Some(p) = kinds_problem(&kinds, e) {
            return err(format!("element: {p}"));
        }
        let ok = match (&m.data, v) {
            (None, MapValue::None) => true,
            (Some(MapData::Verdict), MapValue::Verdict(d)) => match d {
                Verdict::Jump(c) | Verdict::Goto(c) => {
                    if let Some(p) = name_problem(c) {
                        return err(format!("chain name: {p}"));
                    }
                    true
                }
                _ => true,
            },
            (Some(MapData::Types(_)), MapValue::Data(d)) => {
                if let Some(p) = data_kinds.as_deref().and_then(|k| kinds_problem(k, d)) {
                    return err(format!("element data: {p}"));
                }
                true
            }
            _ => false,
        };
        if !ok {
            return err("an element's data does not fit the map's type".into());
        }
    }
    Ok(())
}

/// One value per kind, each fitting its kind.
fn kinds_problem(kinds: &[Kind], e: &[Value]) -> Option<String> {
    if e.len() != kinds.len() {
        return Some(format!(
            "an element of {} values for a key of {}",
            e.len(),
            kinds.len()
        ));
    }
    kinds.iter().zip(e).find_map(|(&kind, v)| {
        if kind.is_flags() && !matches!(v, Value::Num(_)) {
            return Some("flags are matched by name or number, not a range".into());
        }
        value_problem(kind, v)
    })
}

/// The data of a NAT map element: one host address, then optionally one port.
fn nat_data_problem(d: &[Value]) -> Option<String> {
    let kinds = super::print::nat_data_kinds(d);
    let host = |v: &Value, k: Kind| matches!(v, Value::Prefix(_, l) if u32::from(*l) == if k == Kind::Addr4 { 32 } else { 128 });
    match (d, &kinds[..]) {
        ([a], [k]) if host(a, *k) => None,
        ([a, Value::Num(p)], [k, Kind::Port]) if host(a, *k) && *p <= 65535 => None,
        _ => Some("NAT map data is an address, or an address . port".into()),
    }
}

/// Checks one rule: its statements and comment.
pub fn rule(r: &Rule) -> Result<(), Error> {
    let err = |token: &str, m: String| Err(Error::at(r.pos, token, m));
    if r.stmts.is_empty() {
        return err("rule", "empty rule".into());
    }
    if let Some(c) = &r.comment
        && let Some(m) = string_problem("a comment", c, MAX_COMMENT)
    {
        return err("comment", m);
    }
    for s in &r.stmts {
        match s {
            Stmt::Match(m, pos) => {
                if let Some(msg) = match_problem(m) {
                    return Err(Error::at(*pos, &super::print::stmt(s), msg));
                }
            }
            Stmt::DscpSet(f, v, pos) if *v > 63 || !matches!(f, Field::IpDscp | Field::Ip6Dscp) => {
                return Err(Error::at(*pos, &super::print::stmt(s), "a DSCP is 0-63"));
            }
            Stmt::SetElem(e, pos) => {
                if let Some(m) = name_problem(&e.set)
                    .map(|p| format!("set name: {p}"))
                    .or_else(|| super::dynset::elem_problem(e))
                {
                    return Err(Error::at(*pos, &super::print::stmt(s), m));
                }
            }
            Stmt::Verdict(Verdict::Jump(c) | Verdict::Goto(c), pos) => {
                if let Some(m) = name_problem(c) {
                    return Err(Error::at(*pos, c, format!("chain name: {m}")));
                }
            }
            Stmt::Lookup(Lookup { key, elements, .. }, pos) => {
                let elems = elements.anon().iter().map(Vec::as_slice);
                if let Some(m) = concat_problem(key, 2, elems, elements) {
                    return Err(Error::at(*pos, &super::print::stmt(s), m));
                }
            }
            Stmt::NatMap(NatMap { nat, key, elements }, pos) => {
                let elems = elements.anon().iter().map(|(e, _)| e.as_slice());
                let data = elements
                    .anon()
                    .iter()
                    .find_map(|(_, d)| nat_data_problem(d));
                let nat = if matches!(nat.kind, NatKind::Snat | NatKind::Dnat) {
                    (nat.family == Some(TableFamily::Inet))
                        .then(|| "the NAT family is ip or ip6".into())
                } else {
                    Some("only snat and dnat take a map".into())
                };
                if let Some(m) = concat_problem(key, 1, elems, elements).or(data).or(nat) {
                    return Err(Error::at(*pos, &super::print::stmt(s), m));
                }
            }
            Stmt::Vmap(Vmap { key, elements }, pos) => {
                let elems = elements.anon().iter().map(|(e, _)| e.as_slice());
                let chain = elements.anon().iter().find_map(|(_, d)| match d {
                    Verdict::Jump(c) | Verdict::Goto(c) => {
                        name_problem(c).map(|m| format!("chain name: {m}"))
                    }
                    _ => None,
                });
                if let Some(m) = concat_problem(key, 1, elems, elements).or(chain) {
                    return Err(Error::at(*pos, &super::print::stmt(s), m));
                }
            }
            Stmt::Log { prefix, level } => {
                if let Some(p) = prefix
                    && let Some(m) = string_problem("a log prefix", p, MAX_LOG_PREFIX)
                {
                    return err("log", m);
                }
                if let Some(l) = level
                    && !LOG_LEVELS.contains(&l.as_str())
                {
                    return err(
                        l,
                        format!("unknown log level; one of {}", LOG_LEVELS.join(", ")),
                    );
                }
            }
            Stmt::Limit { rate: 0, .. } => return err("limit", "rate must be positive".into()),
            Stmt::Nat(n, pos) => {
                if let Some(m) = nat_problem(n) {
                    return Err(Error::at(*pos, &super::print::stmt(s), m));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A concatenation key of `min..=MAX_CONCAT` fields and elements that fit it (one value
/// of the field's kind per field, no empty set).
fn concat_problem<'a, T>(
    key: &[Field],
    min: usize,
    mut elements: impl ExactSizeIterator<Item = &'a [Value]>,
    source: &Elements<T>,
) -> Option<String> {
    if !(min..=MAX_CONCAT).contains(&key.len()) {
        return Some(format!("a key of {min} to {MAX_CONCAT} fields"));
    }
    if let Elements::Named(n) = source {
        return name_problem(n).map(|m| format!("set name: {m}"));
    }
    if elements.len() == 0 {
        return Some("empty set".into());
    }
    let kinds: Vec<Kind> = key.iter().map(|f| f.kind()).collect();
    elements.find_map(|e| kinds_problem(&kinds, e))
}

fn match_problem(m: &Match) -> Option<String> {
    let kind = m.field.kind();
    let single_num = matches!(&m.rhs, Rhs::Values(v) if matches!(v[..], [Value::Num(_)]));
    // The operators the parser produces: `==` only for an exact flag value, `<`/`>` only
    // on one number, a mask only with `==`/`!=`.
    let op_ok = match m.op {
        Op::Eq => kind.is_flags() && matches!(m.rhs, Rhs::Values(_)),
        Op::Implicit | Op::Ne => true,
        Op::Lt | Op::Gt | Op::Le | Op::Ge => single_num && m.mask.is_none(),
    };
    if !op_ok {
        return Some(format!(
            "operator `{}` does not fit this match",
            m.op.text()
        ));
    }
    if m.mask.is_some() && kind.is_flags() && m.op == Op::Implicit {
        return Some("a masked flag match needs `==` or `!=`".into());
    }
    let values = match &m.rhs {
        Rhs::Values(v) if v.len() != 1 => {
            return Some("a match compares with one value (a list is `{ a, b }`)".into());
        }
        Rhs::Set(v) if v.is_empty() => return Some("empty set".into()),
        Rhs::Values(_) if kind.is_flags() && !single_num => {
            return Some("flags are matched by name or number, not a range".into());
        }
        Rhs::Values(v) | Rhs::Set(v) => v,
        Rhs::Named(n) => return name_problem(n).map(|p| format!("set name: {p}")),
    };
    values.iter().find_map(|v| value_problem(kind, v))
}

fn nat_problem(n: &NatStmt) -> Option<String> {
    let addressed = matches!(n.kind, NatKind::Snat | NatKind::Dnat);
    if addressed && n.addr.is_none() {
        return Some("snat and dnat need an address".into());
    }
    if !addressed && (n.addr.is_some() || n.family.is_some()) {
        return Some("masquerade and redirect take only `to :PORT[-PORT]`".into());
    }
    if n.family == Some(TableFamily::Inet) {
        return Some("the NAT family is ip or ip6".into());
    }
    if let Some((a, b)) = n.addr {
        if a.to_v4().is_some() != b.to_v4().is_some() {
            return Some("an address range of two families".into());
        }
        if a > b {
            return Some("empty address range".into());
        }
    }
    if let Some((a, b)) = n.ports
        && a > b
    {
        return Some("empty port range".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::rules::{json, parse};
    use serde_json::json;

    fn rule_json(rule: serde_json::Value) -> serde_json::Value {
        let mut r = json!({"family": "inet", "table": "f", "chain": "input"});
        for (k, v) in rule.as_object().unwrap() {
            r[k] = v.clone();
        }
        json!({"nftables": [
            {"table": {"family": "inet", "name": "f"}},
            {"chain": {"family": "inet", "table": "f", "name": "input", "type": "filter",
                       "hook": "input", "prio": 0, "policy": "accept"}},
            {"rule": r}
        ]})
    }

    fn refused(v: &serde_json::Value, needle: &str) {
        let e = json::from_json(v).unwrap_err();
        assert!(e.msg.contains(needle), "{e}");
        assert!(
            e.token.starts_with("nftables["),
            "JSON errors name the object: {e}"
        );
    }

    #[test]
    fn json_is_held_to_the_text_rules() {
        // Issue 15: a quote in a comment was applied and persisted as text that does not
        // parse (`nothing may follow a rule's comment`).
        refused(
            &rule_json(json!({"comment": "say \"hi\"", "expr": [{"accept": null}]})),
            "double quote",
        );
        let port = |right| {
            rule_json(json!({"expr": [{"match": {"op": "==",
                "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": right}}]}))
        };
        refused(&port(json!(70000)), "out of range");
        refused(&port(json!({"range": [2000, 1000]})), "empty range");
        let mut spaced = rule_json(json!({"expr": [{"accept": null}]}));
        spaced["nftables"][0]["table"]["name"] = json!("a b");
        refused(&spaced, "a name holds only");
        refused(
            &rule_json(json!({"expr": [{"log": {"level": "loud"}}]})),
            "log level",
        );
        refused(
            &rule_json(
                json!({"expr": [{"snat": {"addr": "198.18.0.1", "port": {"range": [9, 1]}}}]}),
            ),
            "empty port range",
        );
        refused(&rule_json(json!({"expr": []})), "empty rule");
        // The same ruleset with a plain comment is fine, and so is its text.
        let ok = rule_json(json!({"comment": "say hi", "expr": [{"accept": null}]}));
        let rs = json::from_json(&ok).unwrap();
        let back = parse::parse(&crate::rules::to_text_verified(&rs).unwrap()).unwrap();
        assert_eq!(crate::rules::print::first_difference(&rs, &back), None);
    }

    #[test]
    fn text_is_held_to_the_same_rules() {
        for (src, needle) in [
            ("table inet a$b { }", "a name holds only"),
            ("table inet f { chain c { log level loud } }", "log level"),
            ("table inet f { chain c { iifname \"eth0\" accept } }", ""),
        ] {
            match parse::parse(src) {
                Ok(_) => assert!(needle.is_empty(), "{src} parsed"),
                Err(e) => assert!(!needle.is_empty() && e.msg.contains(needle), "{src}: {e}"),
            }
        }
    }
}
