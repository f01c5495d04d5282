//! Dynamic sets in the rule language: the set options (`flags dynamic,timeout; timeout
//! 10m; size 65535;`), the statements that add elements from the data path (`add @bl {
//! ip saddr limit rate over 5/minute }`, `update @bl { ip saddr timeout 1m }`, `meter m {
//! ip saddr limit rate 5/second }`), their text and JSON forms as nft 1.0.6 lists them.
//!
//! The runtime store the workers share is `compile/dynstore.rs`; the design and its cost
//! per packet are in docs/rules.md ("Dynamic sets and meters").

use super::Error;
use super::ast::{DEFAULT_SIZE, DynOpts, Field, Pos, SetElem, SetOp, Stmt};
use serde_json::{Value as J, json};
use std::fmt::Write as _;

/// Parses nft's time form: `10m`, `1h30m`, `30s`, `500ms`, `1d` (a bare number: seconds).
pub fn parse_duration(w: &str) -> Option<u64> {
    if let Ok(secs) = w.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut rest = w;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(ms)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// nft's time form of `ms` milliseconds (`1h30m`, `10m`, `500ms`; 0: `0s`).
pub fn duration_text(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut left = ms;
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if left >= len {
            let _ = write!(out, "{}{unit}", left / len);
            left %= len;
        }
    }
    out
}

/// The lines of a set declaration the options add, after `type`, as nft lists them
/// (`size`, `flags`, `timeout`).
pub(crate) fn opts_text(out: &mut String, o: &DynOpts, interval: bool) {
    if let Some(n) = o.size {
        let _ = writeln!(out, "\t\tsize {n}");
    }
    let mut flags = Vec::new();
    if o.dynamic {
        flags.push("dynamic");
    }
    if interval {
        flags.push("interval");
    }
    if o.timeout_flag {
        flags.push("timeout");
    }
    // nft 1.0.6 leaves out a `flags timeout` line that only repeats the `timeout` below
    // (`set c { type ipv4_addr; flags timeout; timeout 30s; }` lists `timeout 30s`).
    let implied = flags == ["timeout"] && o.timeout_ms.is_some();
    if !flags.is_empty() && !implied {
        let _ = writeln!(out, "\t\tflags {}", flags.join(","));
    }
    if let Some(t) = o.timeout_ms {
        let _ = writeln!(out, "\t\ttimeout {}", duration_text(t));
    }
}

/// The statement's text (`add @bl { ip saddr timeout 1m limit rate over 5/minute }`).
pub(crate) fn elem_text(e: &SetElem, key: &str, stmt: impl Fn(&Stmt) -> String) -> String {
    let mut inner = key.to_owned();
    if let Some(t) = e.timeout_ms {
        let _ = write!(inner, " timeout {}", duration_text(t));
    }
    for s in &e.stmts {
        let _ = write!(inner, " {}", stmt(s));
    }
    match e.meter {
        Some(size) => format!("meter {} size {size} {{ {inner} }}", e.set),
        None => format!("{} @{} {{ {inner} }}", e.op.name(), e.set),
    }
}

/// The set options in a JSON `set` object (nft 1.0.6 writes `size`, the `timeout` flag and
/// `timeout` in seconds; it leaves the `dynamic` flag out).
pub(crate) fn opts_json(o: &mut J, d: &DynOpts, interval: bool) {
    if let Some(n) = d.size {
        o["size"] = json!(n);
    }
    let mut flags = Vec::new();
    if interval {
        flags.push("interval");
    }
    if d.timeout_flag {
        flags.push("timeout");
    }
    if !flags.is_empty() {
        o["flags"] = json!(flags);
    }
    if let Some(t) = d.timeout_ms {
        o["timeout"] = json!(t / 1000);
    }
}

/// Reads the set options of a JSON `set` object. JSON does not carry the `dynamic` flag
/// (nft leaves it out): a set with a `size` or a timeout is read as dynamic only through
/// the statements that update it.
pub(crate) fn opts_from_json(o: &serde_json::Map<String, J>) -> DynOpts {
    let has_flag = |f: &str| match o.get("flags") {
        Some(J::String(s)) => s == f,
        Some(J::Array(a)) => a.iter().any(|x| x == f),
        _ => false,
    };
    let timeout_ms = o
        .get("timeout")
        .and_then(J::as_u64)
        .map(|s| s.saturating_mul(1000));
    DynOpts {
        dynamic: has_flag("dynamic"),
        timeout_flag: has_flag("timeout") || timeout_ms.is_some(),
        timeout_ms,
        size: o
            .get("size")
            .and_then(J::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
    }
}

/// The statement as nft -j writes it: `{"set": {"op", "elem", "set", "stmt"}}` or
/// `{"meter": {"key", "stmt", "size", "name"}}`.
pub(crate) fn elem_json(e: &SetElem, key: J, stmt: impl Fn(&Stmt) -> J) -> J {
    let key = match e.timeout_ms {
        Some(t) => json!({"elem": {"val": key, "timeout": t / 1000}}),
        None => key,
    };
    let stmts: Vec<J> = e.stmts.iter().map(stmt).collect();
    match e.meter {
        Some(size) => {
            let mut o = json!({"key": key});
            // nft writes a meter's one statement as an object.
            match stmts.len() {
                0 => {}
                1 => o["stmt"] = stmts[0].clone(),
                _ => o["stmt"] = J::Array(stmts),
            }
            o["size"] = json!(size);
            o["name"] = json!(e.set);
            json!({ "meter": o })
        }
        None => {
            let mut o = json!({"op": e.op.name(), "elem": key, "set": format!("@{}", e.set)});
            if !stmts.is_empty() {
                o["stmt"] = J::Array(stmts);
            }
            json!({ "set": o })
        }
    }
}

/// Reads a JSON `set` (`meter`: `meter`) statement body; `field` reads a key, `stmt` a
/// nested statement.
pub(crate) fn elem_from_json(
    body: &J,
    meter: bool,
    path: &str,
    field: impl Fn(&J, &str) -> Result<Vec<Field>, Error>,
    stmt: impl Fn(&J, &str) -> Result<Stmt, Error>,
) -> Result<SetElem, Error> {
    let key_v = body
        .get(if meter { "key" } else { "elem" })
        .ok_or_else(|| Error::json(path, "missing the element key"))?;
    let (key_v, timeout_ms) = match key_v.get("elem") {
        Some(inner) => (
            inner
                .get("val")
                .ok_or_else(|| Error::json(path, "missing elem.val"))?,
            inner
                .get("timeout")
                .and_then(J::as_u64)
                .map(|s| s.saturating_mul(1000)),
        ),
        None => (key_v, None),
    };
    let key = field(key_v, path)?;
    let stmts = match body.get("stmt") {
        None => Vec::new(),
        Some(J::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| stmt(s, &format!("{path}.stmt[{i}]")))
            .collect::<Result<_, _>>()?,
        Some(one) => vec![stmt(one, &format!("{path}.stmt"))?],
    };
    let (op, set, size) = if meter {
        let name = body
            .get("name")
            .and_then(J::as_str)
            .ok_or_else(|| Error::json(path, "missing meter name"))?;
        let size = body
            .get("size")
            .and_then(J::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(DEFAULT_SIZE);
        (SetOp::Update, name.to_owned(), Some(size))
    } else {
        let op = match body.get("op").and_then(J::as_str) {
            Some("add") => SetOp::Add,
            Some("update") => SetOp::Update,
            Some(o) => return Err(Error::json(path, format!("set op `{o}` is not supported"))),
            None => return Err(Error::json(path, "missing op")),
        };
        let set = body
            .get("set")
            .and_then(J::as_str)
            .and_then(|s| s.strip_prefix('@'))
            .ok_or_else(|| Error::json(path, "set must be `@NAME`"))?;
        (op, set.to_owned(), None)
    };
    Ok(SetElem {
        op,
        set,
        key,
        timeout_ms,
        stmts,
        meter: size,
    })
}

/// Gives every dynamic set the form the kernel lists: a set with `flags dynamic`, a
/// `size`, or updated by a rule of its table has both (`size 65535` when none was
/// written). Run by the text parser and the JSON reader, so that JSON (which has no
/// `dynamic` flag) reads back what the text said.
pub(crate) fn normalize(rs: &mut super::ast::Ruleset) {
    for t in &mut rs.tables {
        let updated: Vec<String> = t
            .chains
            .iter()
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.stmts)
            .filter_map(|s| match s {
                Stmt::SetElem(e, _) if e.meter.is_none() => Some(e.set.clone()),
                _ => None,
            })
            .collect();
        let sets = t.sets.iter_mut().map(|s| (&s.name, &mut s.dynamic));
        let concat = t.maps.iter_mut().filter(|m| m.data.is_none());
        for (name, d) in sets.chain(concat.map(|m| (&m.name, &mut m.dynamic))) {
            if d.dynamic || d.size.is_some() || updated.contains(name) {
                d.dynamic = true;
                d.size.get_or_insert(DEFAULT_SIZE);
            }
        }
    }
}

/// Why a timeout cannot be written (`None`: it can): nft's JSON form counts whole seconds.
pub(crate) fn timeout_problem(ms: u64) -> Option<String> {
    (ms == 0 || !ms.is_multiple_of(1000))
        .then(|| "a timeout is a positive number of whole seconds (`30s`, `10m`)".into())
}

/// What the text form cannot express in a set's dynamic options (`None`: fine).
pub(crate) fn opts_problem(o: &DynOpts) -> Option<String> {
    if o.size == Some(0) {
        return Some("a set's size must be positive".into());
    }
    o.timeout_ms.and_then(timeout_problem)
}

/// What the text form cannot express in a set statement (`None`: fine; the set's name
/// is the validator's): a meter's size, its timeout, the element statements (`limit` with a positive rate, `ct
/// count`, `counter`).
pub(crate) fn elem_problem(e: &SetElem) -> Option<String> {
    if e.meter == Some(0) {
        return Some("a meter's size must be positive".into());
    }
    if let Some(m) = e.timeout_ms.and_then(timeout_problem) {
        return Some(m);
    }
    e.stmts.iter().find_map(|s| match s {
        Stmt::Limit { rate: 0, .. } => Some("rate must be positive".into()),
        Stmt::Limit { .. } | Stmt::CtCount { .. } | Stmt::Counter { .. } => None,
        _ => Some("only `limit`, `ct count` and `counter` may stand in a set element".into()),
    })
}

/// Checks one statement against the table's sets: the set exists (a meter declares its
/// own), its type fits the key, the element statements are `limit`, `ct count` or
/// `counter`, and the set is not an interval set.
pub(crate) fn check_elem(e: &SetElem, pos: Pos, t: &super::ast::Table) -> Result<(), Error> {
    if let Some(m) = elem_problem(e) {
        return Err(Error::at(pos, &e.set, m));
    }
    let declared = t.sets.iter().any(|s| s.name == e.set) || t.maps.iter().any(|m| m.name == e.set);
    if e.meter.is_some() {
        if declared {
            return Err(Error::at(
                pos,
                &e.set,
                "a meter has the name of a set of this table",
            ));
        }
        return Ok(());
    }
    let (types, interval) = match (
        t.sets.iter().find(|s| s.name == e.set),
        t.maps.iter().find(|m| m.name == e.set && m.data.is_none()),
    ) {
        (Some(s), _) => (vec![s.ty], s.interval),
        (None, Some(m)) => (m.key.clone(), m.interval),
        (None, None) => return Err(Error::at(pos, &e.set, "undefined set")),
    };
    let kinds = types.iter().map(|t| t.kind());
    if !kinds.eq(e.key.iter().map(|f| f.kind())) {
        return Err(Error::at(
            pos,
            &e.set,
            format!(
                "set `{}` holds {} values, the key is `{}`",
                e.set,
                types
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(" . "),
                e.key
                    .iter()
                    .map(|f| format!("{} {}", f.words().0, f.words().1))
                    .collect::<Vec<_>>()
                    .join(" . "),
            ),
        ));
    }
    if interval {
        return Err(Error::at(
            pos,
            &e.set,
            "an interval set cannot be updated from the data path",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_as_nft() {
        for (text, ms) in [
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("30s", 30_000),
            ("500ms", 500),
            ("1d", 86_400_000),
            ("7", 7000),
        ] {
            assert_eq!(parse_duration(text), Some(ms), "{text}");
        }
        assert_eq!(duration_text(5_400_000), "1h30m");
        assert_eq!(duration_text(600_000), "10m");
        assert_eq!(duration_text(61_500), "1m1s500ms");
        for bad in ["", "m", "10x", "1.5s", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
