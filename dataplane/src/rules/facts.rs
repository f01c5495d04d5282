//! The language side of the match facts beyond the packet summary (`fib`, `ct
//! direction`, `ct original|reply …`, `ct expiration`, `meta pkttype`, `ip|ip6 dscp`):
//! their value names, time values and `nft -j` forms, as nft 1.0.6 writes them. The
//! parser's part is in `parse/facts.rs`, the values the worker fills in
//! `compile/facts.rs`.

use super::Error;
use super::ast::{Field, Kind};
use serde_json::{Value as J, json};

const PKTTYPES: &[(&str, u64)] = &[
    ("host", 0),
    ("unicast", 0),
    ("broadcast", 1),
    ("multicast", 2),
    ("other", 3),
];

/// nft's `dscp` names (the first name of a value is the one listed).
const DSCP: &[(&str, u64)] = &[
    ("cs0", 0x00),
    ("cs1", 0x08),
    ("cs2", 0x10),
    ("cs3", 0x18),
    ("cs4", 0x20),
    ("cs5", 0x28),
    ("cs6", 0x30),
    ("cs7", 0x38),
    ("df", 0x00),
    ("be", 0x00),
    ("lephb", 0x01),
    ("af11", 0x0a),
    ("af12", 0x0c),
    ("af13", 0x0e),
    ("af21", 0x12),
    ("af22", 0x14),
    ("af23", 0x16),
    ("af31", 0x1a),
    ("af32", 0x1c),
    ("af33", 0x1e),
    ("af41", 0x22),
    ("af42", 0x24),
    ("af43", 0x26),
    ("va", 0x2c),
    ("ef", 0x2e),
];

const CT_DIRS: &[(&str, u64)] = &[("original", 0), ("reply", 1)];

/// Route types (`fib … type`), the kernel's `RTN_*` numbers.
pub(crate) const FIB_TYPES: &[(&str, u64)] = &[
    ("unspec", 0),
    ("unicast", 1),
    ("local", 2),
    ("broadcast", 3),
    ("anycast", 4),
    ("multicast", 5),
    ("blackhole", 6),
    ("unreachable", 7),
    ("prohibit", 8),
];

const PRESENCE: &[(&str, u64)] = &[("missing", 0), ("exists", 1)];

/// The value names of a fact kind.
pub(crate) fn names(kind: Kind) -> &'static [(&'static str, u64)] {
    match kind {
        Kind::Pkttype => PKTTYPES,
        Kind::Dscp => DSCP,
        Kind::CtDir => CT_DIRS,
        Kind::FibType => FIB_TYPES,
        Kind::Presence => PRESENCE,
        _ => &[],
    }
}

const TIME_UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// A time as nft writes it (`1m30s`, `500ms`, a bare number of seconds) in milliseconds.
pub(crate) fn parse_millis(s: &str) -> Option<u64> {
    if let Ok(secs) = s.parse::<u64>() {
        return secs.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (&(_, ms), tail) = (
            TIME_UNITS.iter().find(|(u, _)| *u == &rest[..unit])?,
            &rest[unit..],
        );
        total = total.checked_add(n.checked_mul(ms)?)?;
        rest = tail;
    }
    (!s.is_empty()).then_some(total)
}

/// Milliseconds as nft lists a time (`1m30s`; 0 is `0s`).
pub(crate) fn millis_text(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for &(u, n) in TIME_UNITS {
        if rest >= n {
            out.push_str(&format!("{}{u}", rest / n));
            rest %= n;
        }
    }
    out
}

/// The `nft -j` operand of the fields whose form is not `meta`/`ct`/`payload` with one
/// key (`None`: the generic form).
pub(crate) fn field_json(f: Field) -> Option<J> {
    let ct = |dir: &str, key: &str| json!({"ct": {"key": key, "dir": dir}});
    Some(match f {
        Field::FibDaddrType => json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        Field::FibSaddrIifOif => json!({"fib": {"result": "oif", "flags": ["saddr", "iif"]}}),
        f if f.is_tcp_option() => return super::tcpopt::field_json(f),
        f if f.is_ct_tuple() => {
            let (a, b) = f.words();
            ct(a.trim_start_matches("ct "), b)
        }
        _ => return None,
    })
}

/// Reads the operands [`field_json`] writes (`None`: not one of them).
pub(crate) fn read_field_json(left: &J, path: &str) -> Option<Result<Field, Error>> {
    if let Some(found) = super::tcpopt::read_field_json(left, path) {
        return Some(found);
    }
    if let Some(fib) = left.get("fib") {
        let result = fib.get("result").and_then(J::as_str).unwrap_or("");
        let flags: Vec<&str> = fib
            .get("flags")
            .map(|f| match f {
                J::String(s) => vec![s.as_str()],
                J::Array(a) => a.iter().filter_map(J::as_str).collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        return Some(match (result, &flags[..]) {
            ("type", ["daddr"]) => Ok(Field::FibDaddrType),
            ("oif", ["saddr", "iif"]) => Ok(Field::FibSaddrIifOif),
            _ => Err(Error::json(
                path,
                format!(
                    "`fib {} {result}` is not supported by this appliance",
                    flags.join(" . ")
                ),
            )),
        });
    }
    let ct = left.get("ct")?;
    let dir = ct.get("dir").and_then(J::as_str)?;
    let key = ct.get("key").and_then(J::as_str).unwrap_or("");
    Some(Field::from_words(&format!("ct {dir}"), key).ok_or_else(|| {
        Error::json(
            path,
            format!("`ct {dir} {key}` is not supported by this appliance"),
        )
    }))
}

/// The `nft -j` form of a time (whole seconds as a number, else the text form) or a
/// presence (`true`/`false`).
pub(crate) fn value_json(kind: Kind, n: u64) -> J {
    match kind {
        Kind::Presence => json!(n != 0),
        _ if n.is_multiple_of(1000) => json!(n / 1000),
        _ => json!(millis_text(n)),
    }
}

/// Reads a number of seconds or a boolean written by [`value_json`].
pub(crate) fn read_value_json(kind: Kind, v: &J) -> Option<u64> {
    match (kind, v) {
        (Kind::Presence, J::Bool(b)) => Some(u64::from(*b)),
        (Kind::Presence, J::Number(n)) => n.as_u64(),
        (Kind::Millis, J::Number(n)) => n.as_u64()?.checked_mul(1000),
        _ => None,
    }
}
