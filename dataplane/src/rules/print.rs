//! AST back to nftables text, in the layout `nft list ruleset` uses.

use super::ast::*;
use super::names;
use crate::nat::NatKind;
use crate::wire::Addr;
use std::fmt::Write;

/// Per-rule counter values to print instead of the ones in the AST (`counter packets N
/// bytes M`), keyed by (table index, chain index, rule index).
pub type CounterLookup<'a> = &'a dyn Fn(usize, usize, usize) -> Option<(u64, u64)>;

/// Prints a ruleset as nftables text.
pub fn to_text(rs: &Ruleset) -> String {
    to_text_with(rs, &|_, _, _| None)
}

/// Where two rulesets differ, handles aside (`None`: they are the same).
pub fn first_difference(a: &Ruleset, b: &Ruleset) -> Option<(Pos, String)> {
    if a.flush != b.flush || a.tables.len() != b.tables.len() {
        return Some((Pos::default(), "ruleset".into()));
    }
    for (x, y) in a.tables.iter().zip(&b.tables) {
        if (x.family, &x.name, &x.sets, &x.maps, &x.helpers)
            != (y.family, &y.name, &y.sets, &y.maps, &y.helpers)
            || x.chains.len() != y.chains.len()
        {
            return Some((x.pos, x.name.clone()));
        }
        for (c, d) in x.chains.iter().zip(&y.chains) {
            if (&c.name, c.base) != (&d.name, d.base) || c.rules.len() != d.rules.len() {
                return Some((c.pos, c.name.clone()));
            }
            for (r, s) in c.rules.iter().zip(&d.rules) {
                if (&r.stmts, &r.comment) != (&s.stmts, &s.comment) {
                    return Some((r.pos, rule(r)));
                }
            }
        }
    }
    None
}

/// Prints a ruleset, filling `counter` statements from `counters`.
pub fn to_text_with(rs: &Ruleset, counters: CounterLookup<'_>) -> String {
    write_text(rs, counters, false)
}

/// Prints a ruleset as `nft -a list ruleset` does: each rule followed by `# handle N`
/// (the handle `replace rule`, `delete rule` and `position` name). The comment is
/// ignored when the text is read back.
pub fn to_text_with_handles(rs: &Ruleset, counters: CounterLookup<'_>) -> String {
    write_text(rs, counters, true)
}

fn write_text(rs: &Ruleset, counters: CounterLookup<'_>, handles: bool) -> String {
    let mut out = String::new();
    if rs.flush {
        out.push_str("flush ruleset\n");
    }
    for (ti, t) in rs.tables.iter().enumerate() {
        let _ = writeln!(out, "table {} {} {{", t.family.name(), t.name);
        let mut first = true;
        // nft lists a table's objects before its sets.
        for h in &t.helpers {
            if !first {
                out.push('\n');
            }
            first = false;
            crate::rules::helper::obj_text(&mut out, t, h);
        }
        for s in &t.sets {
            if !first {
                out.push('\n');
            }
            first = false;
            let _ = writeln!(out, "\tset {} {{", s.name);
            let _ = writeln!(out, "\t\ttype {}", s.ty.name());
            if s.dynamic.any() {
                crate::rules::dynset::opts_text(&mut out, &s.dynamic, s.interval);
            } else if s.interval {
                out.push_str("\t\tflags interval\n");
            }
            if !s.elements.is_empty() {
                let els: Vec<_> = s
                    .elements
                    .iter()
                    .map(|v| with_timeout(value(s.ty.kind(), v), s.elem_timeout(v)))
                    .collect();
                let _ = writeln!(out, "\t\telements = {{ {} }}", els.join(", "));
            }
            out.push_str("\t}\n");
        }
        for m in &t.maps {
            if !first {
                out.push('\n');
            }
            first = false;
            map_decl(&mut out, m);
        }
        for (ci, c) in t.chains.iter().enumerate() {
            if !first {
                out.push('\n');
            }
            first = false;
            let _ = writeln!(out, "\tchain {} {{", c.name);
            if let Some(b) = &c.base {
                let _ = writeln!(
                    out,
                    "\t\ttype {} hook {} priority {}; policy {};",
                    match b.ty {
                        ChainType::Filter => "filter",
                        ChainType::Nat => "nat",
                    },
                    b.hook.name(),
                    priority(b.priority),
                    match b.policy {
                        Policy::Accept => "accept",
                        Policy::Drop => "drop",
                    }
                );
            }
            for (ri, r) in c.rules.iter().enumerate() {
                let text = rule_with(r, counters(ti, ci, ri));
                if handles {
                    let _ = writeln!(out, "\t\t{text} # handle {}", r.handle);
                } else {
                    let _ = writeln!(out, "\t\t{text}");
                }
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
    }
    out
}

/// Types joined by ` . ` (`ipv4_addr . inet_service`).
pub fn types_text(ts: &[SetType]) -> String {
    ts.iter().map(|t| t.name()).collect::<Vec<_>>().join(" . ")
}

/// The data types of a map, as the listing writes them after ` : `.
pub fn map_data_text(d: &MapData) -> String {
    match d {
        MapData::Verdict => "verdict".into(),
        MapData::Types(ts) => types_text(ts),
    }
}

fn map_decl(out: &mut String, m: &Map) {
    let _ = writeln!(out, "\t{} {} {{", m.keyword(), m.name);
    let _ = write!(out, "\t\ttype {}", types_text(&m.key));
    if let Some(d) = &m.data {
        let _ = write!(out, " : {}", map_data_text(d));
    }
    out.push('\n');
    if m.dynamic.any() {
        crate::rules::dynset::opts_text(out, &m.dynamic, m.interval);
    } else if m.interval {
        out.push_str("\t\tflags interval\n");
    }
    if !m.elements.is_empty() {
        let kinds: Vec<Kind> = m.key.iter().map(|t| t.kind()).collect();
        let els: Vec<_> = m
            .elements
            .iter()
            .map(|(e, v)| map_elem(m, with_timeout(kinds_elem(&kinds, e), m.elem_timeout(e)), v))
            .collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", els.join(", "));
    }
    out.push_str("\t}\n");
}

/// A map element as the listing writes it: its key's text `k` (with its timeout), ` : `
/// and its data (a set of concatenations: the key alone).
pub fn map_elem(m: &Map, k: String, v: &MapValue) -> String {
    match (v, &m.data) {
        (MapValue::Verdict(d), _) => format!("{k} : {}", verdict(d)),
        (MapValue::Data(d), Some(MapData::Types(ts))) => {
            let dk: Vec<Kind> = ts.iter().map(|t| t.kind()).collect();
            format!("{k} : {}", kinds_elem(&dk, d))
        }
        _ => k,
    }
}

/// A declared element with its own timeout (ms): `198.18.1.4 timeout 10s`.
fn with_timeout(v: String, timeout_ms: Option<u64>) -> String {
    match timeout_ms {
        Some(ms) => format!("{v} timeout {}", crate::rules::dynset::duration_text(ms)),
        None => v,
    }
}

/// One element given its values' kinds (`198.18.1.2 . 22`).
pub fn kinds_elem(kinds: &[Kind], e: &[Value]) -> String {
    kinds
        .iter()
        .zip(e)
        .map(|(&k, v)| match (k, v) {
            // nft lists a presence inside a concatenation as its raw 1 or 0.
            (Kind::Presence, Value::Num(n)) if kinds.len() > 1 => n.to_string(),
            _ => set_element(k, v),
        })
        .collect::<Vec<_>>()
        .join(" . ")
}

/// The kinds of a NAT map's data values (an address of its own family, then a port).
pub fn nat_data_kinds(d: &[Value]) -> Vec<Kind> {
    d.iter()
        .map(|v| match v {
            Value::Prefix(a, _) | Value::AddrRange(a, _) if a.to_v4().is_none() => Kind::Addr6,
            Value::Prefix(..) | Value::AddrRange(..) => Kind::Addr4,
            _ => Kind::Port,
        })
        .collect()
}

/// `@NAME` or `{ e, … }` with each element printed by `one`.
fn elements_text<T>(els: &Elements<T>, one: impl Fn(&T) -> String) -> String {
    match els {
        Elements::Named(n) => format!("@{n}"),
        Elements::Anon(v) => {
            let v: Vec<_> = v.iter().map(one).collect();
            format!("{{ {} }}", v.join(", "))
        }
    }
}

fn priority(p: i32) -> String {
    match names::PRIORITIES.iter().find(|&&(_, v)| v == p) {
        Some((n, _)) => (*n).to_owned(),
        None => p.to_string(),
    }
}

/// One rule on one line.
pub fn rule(r: &Rule) -> String {
    rule_with(r, None)
}

fn rule_with(r: &Rule, counter: Option<(u64, u64)>) -> String {
    let mut parts: Vec<String> = r
        .stmts
        .iter()
        .map(|s| match (s, counter) {
            (Stmt::Counter { .. }, Some((p, b))) => format!("counter packets {p} bytes {b}"),
            _ => stmt(s),
        })
        .collect();
    if let Some(c) = &r.comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

pub fn stmt(s: &Stmt) -> String {
    match s {
        Stmt::Match(m, _) => match_text(m),
        Stmt::Verdict(v, _) => verdict(v),
        Stmt::Reject(r, _) => match r {
            Reject::Default => "reject".into(),
            Reject::TcpReset => "reject with tcp reset".into(),
            Reject::Icmp(c) => code("icmp", names::REJECT_ICMP, *c),
            Reject::Icmpv6(c) => code("icmpv6", names::REJECT_ICMPV6, *c),
            Reject::Icmpx(c) => code("icmpx", names::REJECT_ICMPX, *c),
        },
        Stmt::Counter { packets, bytes } => format!("counter packets {packets} bytes {bytes}"),
        Stmt::Log { prefix, level } => {
            let mut s = String::from("log");
            if let Some(p) = prefix {
                let _ = write!(s, " prefix \"{p}\"");
            }
            if let Some(l) = level {
                let _ = write!(s, " level {l}");
            }
            s
        }
        Stmt::Limit {
            rate,
            unit,
            burst,
            over,
        } => {
            let mut s = format!(
                "limit rate {}{rate}/{}",
                if *over { "over " } else { "" },
                unit.name()
            );
            if *burst != DEFAULT_BURST {
                let _ = write!(s, " burst {burst} packets");
            }
            s
        }
        Stmt::CtCount { count, over } => {
            format!("ct count {}{count}", if *over { "over " } else { "" })
        }
        Stmt::Notrack => "notrack".into(),
        Stmt::MetaMarkSet(m) => format!("meta mark set 0x{m:08x}"),
        Stmt::CtMarkSet(m) => format!("ct mark set 0x{m:08x}"),
        Stmt::Nat(n, _) => nat(n),
        Stmt::Lookup(l, _) => {
            let els = elements_text(&l.elements, |e| elem(&l.key, e));
            let op = if l.neg { " !=" } else { "" };
            format!("{}{op} {els}", key_text(&l.key))
        }
        Stmt::Vmap(v, _) => {
            let els = elements_text(&v.elements, |(e, d)| {
                format!("{} : {}", elem(&v.key, e), verdict(d))
            });
            format!("{} vmap {els}", key_text(&v.key))
        }
        Stmt::SetElem(e, _) => crate::rules::dynset::elem_text(e, &key_text(&e.key), stmt),
        Stmt::NatMap(n, _) => {
            let els = elements_text(&n.elements, |(e, d)| {
                format!(
                    "{} : {}",
                    elem(&n.key, e),
                    kinds_elem(&nat_data_kinds(d), d)
                )
            });
            let fam = n
                .nat
                .family
                .map(|f| format!(" {}", f.name()))
                .unwrap_or_default();
            let flags = nat_flag_names(&n.nat.flags);
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" {}", flags.join(","))
            };
            let kw = nat_keyword(n.nat.kind);
            format!("{kw}{fam} to {} map {els}{flags}", key_text(&n.key))
        }
        Stmt::MssSet(v, _) => super::mangle::mss_text(*v),
        Stmt::DscpSet(f, v, _) => {
            super::mangle::dscp_text(*f, &value(Kind::Dscp, &Value::Num(u64::from(*v))))
        }
        Stmt::CtHelperSet(n, _) => super::helper::stmt_text(n),
    }
}

/// A concatenation key (`ip saddr . tcp dport`).
fn key_text(key: &[Field]) -> String {
    key.iter()
        .map(|&f| field_text(f))
        .collect::<Vec<_>>()
        .join(" . ")
}

/// One element of a concatenated set or map (`198.18.1.2 . 22`).
fn elem(key: &[Field], e: &[Value]) -> String {
    let kinds: Vec<Kind> = key.iter().map(|f| f.kind()).collect();
    kinds_elem(&kinds, e)
}

fn code(kw: &str, t: &[(&'static str, u8)], c: u8) -> String {
    match names::code_name(t, c) {
        Some(n) => format!("reject with {kw} {n}"),
        None => format!("reject with {kw} {c}"),
    }
}

pub fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

/// `snat`, `dnat`, `masquerade` or `redirect`.
pub fn nat_keyword(k: NatKind) -> &'static str {
    match k {
        NatKind::Snat => "snat",
        NatKind::Dnat => "dnat",
        NatKind::Masquerade => "masquerade",
        NatKind::Redirect => "redirect",
    }
}

fn nat(n: &NatStmt) -> String {
    let mut s = nat_keyword(n.kind).to_owned();
    if let Some(f) = n.family {
        let _ = write!(s, " {}", f.name());
    }
    let ports = n.ports.map(|(a, b)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    });
    match (n.addr, ports) {
        (Some((a, b)), p) => {
            let v6 = a.to_v4().is_none();
            let addr = if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            };
            match p {
                Some(p) if v6 => {
                    let _ = write!(s, " to [{addr}]:{p}");
                }
                Some(p) => {
                    let _ = write!(s, " to {addr}:{p}");
                }
                None => {
                    let _ = write!(s, " to {addr}");
                }
            }
        }
        (None, Some(p)) => {
            let _ = write!(s, " to :{p}");
        }
        (None, None) => {}
    }
    let flags = nat_flag_names(&n.flags);
    if !flags.is_empty() {
        let _ = write!(s, " {}", flags.join(","));
    }
    s
}

/// The names of the set NAT flags, in nft's order.
pub fn nat_flag_names(f: &crate::nat::NatFlags) -> Vec<&'static str> {
    [
        (f.random, "random"),
        (f.fully_random, "fully-random"),
        (f.persistent, "persistent"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

fn field_text(f: Field) -> String {
    match f {
        Field::Iif | Field::Oif | Field::Iifname | Field::Oifname => f.words().1.to_owned(),
        _ => {
            let (a, b) = f.words();
            format!("{a} {b}")
        }
    }
}

fn match_text(m: &Match) -> String {
    let kind = m.field.kind();
    let mut s = field_text(m.field);
    if let Some(mask) = m.mask {
        if kind.is_flags() && m.op == Op::Eq {
            let _ = write!(s, " {} / {}", rhs(kind, &m.rhs), flags(kind, mask));
            return s;
        }
        let _ = write!(s, " & {}", flags_or(kind, mask));
    }
    if m.op != Op::Implicit {
        let _ = write!(s, " {}", m.op.text());
    } else if m.mask.is_some() {
        s.push_str(" ==");
    }
    let _ = write!(s, " {}", rhs(kind, &m.rhs));
    s
}

fn flags(kind: Kind, v: u64) -> String {
    match names::flag_names(kind, v) {
        Some(n) => n.join(","),
        None => format!("0x{v:x}"),
    }
}

fn flags_or(kind: Kind, v: u64) -> String {
    match names::flag_names(kind, v) {
        Some(n) if n.len() == 1 => n[0].to_owned(),
        Some(n) => format!("({})", n.join(" | ")),
        None => format!("0x{v:x}"),
    }
}

fn rhs(kind: Kind, r: &Rhs) -> String {
    match r {
        Rhs::Values(v) => v
            .iter()
            .map(|v| value(kind, v))
            .collect::<Vec<_>>()
            .join(","),
        Rhs::Set(v) => format!(
            "{{ {} }}",
            v.iter()
                .map(|v| set_element(kind, v))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Rhs::Named(n) => format!("@{n}"),
    }
}

/// One element of an anonymous set: a flag value of several bits is written as a number
/// (`a,b` would read as two elements).
fn set_element(kind: Kind, v: &Value) -> String {
    match v {
        Value::Num(n) if kind.is_flags() && n.count_ones() > 1 => format!("0x{n:x}"),
        _ => value(kind, v),
    }
}

/// An address as its field's family writes it (an IPv4-mapped address in an `ip6` field
/// stays IPv6).
pub fn addr_text(kind: Kind, a: &Addr) -> String {
    if kind == Kind::Addr6 {
        std::net::Ipv6Addr::from(a.0).to_string()
    } else {
        a.to_string()
    }
}

/// One value as nft prints it.
pub fn value(kind: Kind, v: &Value) -> String {
    match v {
        Value::Num(n) => num(kind, *n),
        // Numbers: names may hold `-` themselves (`echo-request`).
        Value::Range(a, b) if kind == Kind::Mark => format!("0x{a:08x}-0x{b:08x}"),
        // A DSCP range in hex even where a bound has a name (`0x01-0x04`, as nft).
        Value::Range(a, b) if kind == Kind::Dscp => format!("0x{a:02x}-0x{b:02x}"),
        Value::Range(a, b) if kind == Kind::Millis => {
            format!("{}-{}", num(kind, *a), num(kind, *b))
        }
        Value::Range(a, b) => format!("{a}-{b}"),
        Value::Prefix(a, len) => {
            let full = if kind == Kind::Addr4 { 32 } else { 128 };
            if *len == full {
                addr_text(kind, a)
            } else {
                format!("{}/{len}", addr_text(kind, a))
            }
        }
        Value::AddrRange(a, b) => format!("{}-{}", addr_text(kind, a), addr_text(kind, b)),
        Value::Str(s) => format!("\"{s}\""),
    }
}

fn num(kind: Kind, n: u64) -> String {
    if kind.is_flags() {
        return flags(kind, n);
    }
    match kind {
        Kind::Mark => format!("0x{n:08x}"),
        Kind::Port => n.to_string(),
        Kind::Millis => super::facts::millis_text(n),
        // nft writes a DSCP without a name in hex (`0x3f`).
        Kind::Dscp => names::name_of(kind, n).map_or_else(|| format!("0x{n:02x}"), str::to_owned),
        _ => names::name_of(kind, n).map_or_else(|| n.to_string(), str::to_owned),
    }
}
