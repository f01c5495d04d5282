//! Semantic checks on a parsed ruleset: undefined chains and sets, jump loops, NAT
//! statements outside `nat` chains or on the wrong hook, family mismatches.

use super::Error;
use super::ast::*;
use super::limits::Limits;
use crate::nat::NatKind;

/// Deepest jump stack the kernel allows (`NFT_JUMP_STACK_SIZE`).
pub const MAX_JUMP_DEPTH: usize = 16;

/// Checks a ruleset within the default [`Limits`]; the first problem found is returned
/// with its location.
pub fn check(rs: &Ruleset) -> Result<(), Error> {
    check_with(rs, &Limits::default())
}

/// Checks a ruleset within `limits` (rules, set elements, rule evaluations per packet).
pub fn check_with(rs: &Ruleset, limits: &Limits) -> Result<(), Error> {
    let (mut rules, mut elements) = (0usize, 0usize);
    for t in &rs.tables {
        elements += t.sets.iter().map(|s| s.elements.len()).sum::<usize>();
        elements += t.maps.iter().map(|m| m.elements.len()).sum::<usize>();
        for c in &t.chains {
            rules += c.rules.len();
            for r in &c.rules {
                for s in &r.stmts {
                    elements += match s {
                        Stmt::Match(
                            Match {
                                rhs: Rhs::Set(v), ..
                            },
                            _,
                        ) => v.len(),
                        Stmt::Lookup(l, _) => l.elements.anon().len(),
                        Stmt::Vmap(v, _) => v.elements.anon().len(),
                        Stmt::NatMap(n, _) => n.elements.anon().len(),
                        _ => 0,
                    };
                }
            }
        }
    }
    let over = |what: &str, n: usize, max: usize, name: &str| {
        Err(Error::at(
            Pos::default(),
            "ruleset",
            format!("{n} {what}, more than the limit of {max} (limits.{name})"),
        ))
    };
    if rules > limits.rules {
        return over("rules", rules, limits.rules, "rules");
    }
    if elements > limits.set_elements {
        return over(
            "set elements",
            elements,
            limits.set_elements,
            "set_elements",
        );
    }
    let mut evaluations = 0u64;
    for t in &rs.tables {
        check_table(t, limits, &mut evaluations)?;
    }
    Ok(())
}

fn chain_index(t: &Table, name: &str) -> Option<usize> {
    t.chains.iter().position(|c| c.name == name)
}

fn check_table(t: &Table, limits: &Limits, evaluations: &mut u64) -> Result<(), Error> {
    super::helper::check(t)?;
    for s in &t.sets {
        let ok = !matches!(
            (s.ty, t.family),
            (SetType::Ipv4Addr, TableFamily::Ip6) | (SetType::Ipv6Addr, TableFamily::Ip)
        );
        if !ok {
            return Err(Error::at(
                s.pos,
                &s.name,
                "set type does not fit the table family",
            ));
        }
        for v in &s.elements {
            if matches!(
                v,
                Value::Prefix(..) | Value::AddrRange(..) | Value::Range(..)
            ) && !s.interval
                && !matches!(v, Value::Prefix(_, l) if u32::from(*l) == if s.ty == SetType::Ipv4Addr { 32 } else { 128 })
            {
                return Err(Error::at(
                    s.pos,
                    &s.name,
                    "ranges and prefixes need `flags interval`",
                ));
            }
        }
    }
    for m in &t.maps {
        check_map(t, m)?;
    }
    // Per chain: its jump/goto targets (indices), and whether it holds NAT.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); t.chains.len()];
    for (ci, c) in t.chains.iter().enumerate() {
        if let Some(b) = &c.base
            && b.ty == ChainType::Nat
            && b.hook == Hook::Forward
        {
            return Err(Error::at(
                c.pos,
                &c.name,
                "nat chains cannot use the forward hook",
            ));
        }
        for r in &c.rules {
            check_rule(t, r, &mut edges[ci])?;
        }
    }
    // Jump loops and depth: one DFS with memoised depths (linear in chains + jumps).
    let mut depth: Vec<Option<usize>> = vec![None; t.chains.len()];
    let mut on_stack = vec![false; t.chains.len()];
    for start in 0..t.chains.len() {
        jump_depth(t, &edges, start, &mut depth, &mut on_stack)?;
    }
    // Evaluation cost: no loops are left, so the cost of a chain is its own rules plus the
    // cost of every chain each jump/goto site reaches (memoised: linear in chains + jumps,
    // while the paths it counts may be exponentially many).
    let mut cost: Vec<Option<u64>> = vec![None; t.chains.len()];
    for (ci, c) in t.chains.iter().enumerate() {
        if c.base.is_none() {
            continue;
        }
        *evaluations = evaluations.saturating_add(chain_cost(t, &edges, ci, &mut cost));
        if *evaluations > limits.rule_evaluations {
            return Err(Error::at(
                c.pos,
                &c.name,
                format!(
                    "a packet may run through {} rule evaluations along the jumps from this \
                     chain and the base chains before it, more than the limit of {} \
                     (limits.rule_evaluations)",
                    evaluations, limits.rule_evaluations
                ),
            ));
        }
    }
    // NAT statements: only in chains reachable from nat base chains, on the right hook;
    // `rt mtu` only where the packet has a route.
    for c in &t.chains {
        let Some(b) = &c.base else { continue };
        let ci = chain_index(t, &c.name).unwrap_or(0);
        let mut seen = vec![false; t.chains.len()];
        let mut todo = vec![ci];
        while let Some(x) = todo.pop() {
            if std::mem::replace(&mut seen[x], true) {
                continue;
            }
            todo.extend(edges[x].iter().copied());
            for r in &t.chains[x].rules {
                for s in &r.stmts {
                    match s {
                        Stmt::Nat(n, pos) => check_nat(t, b, n, *pos)?,
                        Stmt::MssSet(v, pos) => super::mangle::check_mss(b.hook, *v, *pos)?,
                        Stmt::NatMap(m, pos) => {
                            for a in nat_map_addrs(t, m) {
                                let n = NatStmt {
                                    addr: Some((a, a)),
                                    ..m.nat
                                };
                                check_nat(t, b, &n, *pos).map_err(|mut e| {
                                    e.token = super::print::stmt(s);
                                    e
                                })?;
                            }
                            check_nat(t, b, &m.nat, *pos).map_err(|mut e| {
                                e.token = super::print::stmt(s);
                                e
                            })?;
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// The addresses a NAT map may give (its elements' data, written or named).
fn nat_map_addrs<'a>(t: &'a Table, m: &'a NatMap) -> impl Iterator<Item = crate::wire::Addr> + 'a {
    let named = match &m.elements {
        Elements::Named(n) => t.maps.iter().find(|x| &x.name == n),
        Elements::Anon(_) => None,
    };
    let anon = m.elements.anon().iter().map(|(_, d)| d.first());
    let named = named
        .into_iter()
        .flat_map(|x| &x.elements)
        .map(|(_, v)| match v {
            MapValue::Data(d) => d.first(),
            _ => None,
        });
    anon.chain(named).filter_map(|v| match v {
        Some(Value::Prefix(a, _)) => Some(*a),
        _ => None,
    })
}

/// A named map or set of concatenations: types that fit the table's family, ranges and
/// prefixes only with `flags interval`, jump targets that exist.
fn check_map(t: &Table, m: &Map) -> Result<(), Error> {
    let wrong_family = |ty: &SetType| {
        matches!(
            (ty, t.family),
            (SetType::Ipv4Addr, TableFamily::Ip6) | (SetType::Ipv6Addr, TableFamily::Ip)
        )
    };
    let data_types = match &m.data {
        Some(MapData::Types(ts)) => &ts[..],
        _ => &[],
    };
    if m.key.iter().chain(data_types).any(wrong_family) {
        return Err(Error::at(
            m.pos,
            &m.name,
            "set type does not fit the table family",
        ));
    }
    for (e, v) in &m.elements {
        let wide = m.key.iter().zip(e).any(|(ty, v)| match v {
            Value::Prefix(_, l) => u32::from(*l) != if *ty == SetType::Ipv4Addr { 32 } else { 128 },
            Value::AddrRange(..) | Value::Range(..) => true,
            _ => false,
        });
        if wide && !m.interval {
            return Err(Error::at(
                m.pos,
                &m.name,
                "ranges and prefixes need `flags interval`",
            ));
        }
        if let MapValue::Verdict(Verdict::Jump(c) | Verdict::Goto(c)) = v {
            jump_target(t, c, m.pos)?;
        }
    }
    Ok(())
}

/// The named map `@name` used by statement `s` with key `key`: it exists, its key types
/// fit the key's fields and it holds `data` (`None`: a set of concatenations).
fn named_map<'a>(
    t: &'a Table,
    name: &str,
    key: &[Field],
    data: fn(&Option<MapData>) -> bool,
    pos: Pos,
) -> Result<&'a Map, Error> {
    let token = format!("@{name}");
    let Some(m) = t.maps.iter().find(|m| m.name == name) else {
        return Err(Error::at(pos, &token, "undefined set or map"));
    };
    let fits =
        m.key.len() == key.len() && m.key.iter().zip(key).all(|(ty, f)| ty.kind() == f.kind());
    if !fits {
        return Err(Error::at(
            pos,
            &token,
            format!(
                "{} of type {} does not fit this key",
                m.keyword(),
                super::print::types_text(&m.key)
            ),
        ));
    }
    if !data(&m.data) {
        return Err(Error::at(
            pos,
            &token,
            "this set or map does not hold what the statement needs",
        ));
    }
    Ok(m)
}

fn check_nat(t: &Table, b: &BaseChain, n: &NatStmt, pos: Pos) -> Result<(), Error> {
    let name = super::print::stmt(&Stmt::Nat(*n, pos));
    if b.ty != ChainType::Nat {
        return Err(Error::at(
            pos,
            &name,
            "NAT statement in a chain that is not of type nat",
        ));
    }
    let ok = match n.kind {
        NatKind::Snat | NatKind::Masquerade => matches!(b.hook, Hook::Postrouting | Hook::Input),
        NatKind::Dnat | NatKind::Redirect => matches!(b.hook, Hook::Prerouting | Hook::Output),
    };
    if !ok {
        return Err(Error::at(
            pos,
            &name,
            format!(
                "this NAT statement is not valid in a {} chain",
                b.hook.name()
            ),
        ));
    }
    if let Some((a, _)) = n.addr {
        let v4 = a.to_v4().is_some();
        let bad = match t.family {
            TableFamily::Ip => !v4,
            TableFamily::Ip6 => v4,
            TableFamily::Inet => match n.family {
                Some(TableFamily::Ip) => !v4,
                Some(TableFamily::Ip6) => v4,
                _ => false,
            },
        };
        if bad {
            return Err(Error::at(pos, &name, "NAT address family does not fit"));
        }
    }
    Ok(())
}

/// Rule evaluations a packet entering chain `c` may cost in the worst case (saturating).
fn chain_cost(t: &Table, edges: &[Vec<usize>], c: usize, memo: &mut [Option<u64>]) -> u64 {
    if let Some(v) = memo[c] {
        return v;
    }
    let mut v = u64::try_from(t.chains[c].rules.len()).unwrap_or(u64::MAX);
    for &next in &edges[c] {
        v = v.saturating_add(chain_cost(t, edges, next, memo));
    }
    memo[c] = Some(v);
    v
}

/// Longest jump chain starting at `c` (1 for a chain that jumps nowhere); errors on a loop
/// or a depth beyond [`MAX_JUMP_DEPTH`].
fn jump_depth(
    t: &Table,
    edges: &[Vec<usize>],
    c: usize,
    depth: &mut [Option<usize>],
    on_stack: &mut [bool],
) -> Result<usize, Error> {
    if let Some(d) = depth[c] {
        return Ok(d);
    }
    let chain = &t.chains[c];
    if on_stack[c] {
        return Err(Error::at(
            chain.pos,
            &chain.name,
            "jump loop through this chain",
        ));
    }
    on_stack[c] = true;
    let mut d = 1;
    for &next in &edges[c] {
        d = d.max(1 + jump_depth(t, edges, next, depth, on_stack)?);
    }
    on_stack[c] = false;
    if d > MAX_JUMP_DEPTH {
        return Err(Error::at(
            chain.pos,
            &chain.name,
            "jumps nested deeper than 16",
        ));
    }
    depth[c] = Some(d);
    Ok(d)
}

fn check_rule(t: &Table, r: &Rule, edges: &mut Vec<usize>) -> Result<(), Error> {
    let mut l4_known = false;
    for s in &r.stmts {
        match s {
            Stmt::Lookup(Lookup { key, .. }, pos)
            | Stmt::Vmap(Vmap { key, .. }, pos)
            | Stmt::NatMap(NatMap { key, .. }, pos) => {
                for &f in key {
                    l4_known |= field_fits(t, f, *pos, s)?;
                }
                match s {
                    Stmt::Vmap(v, _) => {
                        let named = match &v.elements {
                            Elements::Named(n) => {
                                let m = named_map(
                                    t,
                                    n,
                                    key,
                                    |d| matches!(d, Some(MapData::Verdict)),
                                    *pos,
                                )?;
                                m.elements
                                    .iter()
                                    .filter_map(|(_, v)| match v {
                                        MapValue::Verdict(d) => Some(d),
                                        _ => None,
                                    })
                                    .collect()
                            }
                            Elements::Anon(els) => els.iter().map(|(_, d)| d).collect::<Vec<_>>(),
                        };
                        for d in named {
                            if let Verdict::Jump(c) | Verdict::Goto(c) = d {
                                edges.push(jump_target(t, c, *pos)?);
                            }
                        }
                    }
                    Stmt::Lookup(l, _) => {
                        if let Elements::Named(n) = &l.elements {
                            named_map(t, n, key, |d| d.is_none(), *pos)?;
                        }
                    }
                    Stmt::NatMap(n, _) => {
                        let port = match &n.elements {
                            Elements::Named(name) => {
                                let m = named_map(
                                    t,
                                    name,
                                    key,
                                    |d| {
                                        matches!(d, Some(MapData::Types(ts)) if matches!(
                                            ts[..],
                                            [SetType::Ipv4Addr | SetType::Ipv6Addr]
                                                | [SetType::Ipv4Addr | SetType::Ipv6Addr, SetType::InetService]
                                        ))
                                    },
                                    *pos,
                                )?;
                                matches!(&m.data, Some(MapData::Types(ts)) if ts.len() == 2)
                            }
                            Elements::Anon(els) => els.iter().any(|(_, d)| d.len() == 2),
                        };
                        if port && !l4_known {
                            return Err(Error::at(
                                *pos,
                                &super::print::stmt(s),
                                "transport protocol mapping is only valid after transport \
                                 protocol match",
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Stmt::Match(m, pos) => {
                l4_known |= field_fits(t, m.field, *pos, s)?;
                if let Rhs::Named(n) = &m.rhs {
                    let Some(set) = t.sets.iter().find(|x| &x.name == n) else {
                        return Err(Error::at(*pos, &format!("@{n}"), "undefined set"));
                    };
                    if set.ty.kind() != m.field.kind() {
                        return Err(Error::at(
                            *pos,
                            &format!("@{n}"),
                            format!("set of type {} does not fit this match", set.ty.name()),
                        ));
                    }
                }
            }
            Stmt::DscpSet(f, _, pos) => {
                field_fits(t, *f, *pos, s)?;
            }
            Stmt::SetElem(e, pos) => {
                for &f in &e.key {
                    l4_known |= field_fits(t, f, *pos, s)?;
                }
                super::dynset::check_elem(e, *pos, t)?;
            }
            Stmt::Verdict(Verdict::Jump(c) | Verdict::Goto(c), pos) => {
                edges.push(jump_target(t, c, *pos)?);
            }
            Stmt::Nat(n, pos) if n.ports.is_some() && !l4_known => {
                return Err(Error::at(
                    *pos,
                    &super::print::stmt(s),
                    "transport protocol mapping is only valid after transport protocol match",
                ));
            }
            Stmt::Reject(Reject::TcpReset, pos) if !l4_known => {
                return Err(Error::at(
                    *pos,
                    "reject",
                    "`reject with tcp reset` needs a tcp match first",
                ));
            }
            Stmt::Reject(Reject::Icmp(_), pos) if t.family == TableFamily::Ip6 => {
                return Err(Error::at(*pos, "reject", "`icmp` reject in an ip6 table"));
            }
            Stmt::Reject(Reject::Icmpv6(_), pos) if t.family == TableFamily::Ip => {
                return Err(Error::at(*pos, "reject", "`icmpv6` reject in an ip table"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The chain a `jump`/`goto` (a statement's or a verdict map element's) reaches.
fn jump_target(t: &Table, c: &str, pos: Pos) -> Result<usize, Error> {
    let Some(ci) = chain_index(t, c) else {
        return Err(Error::at(pos, c, "undefined chain"));
    };
    if t.chains[ci].base.is_some() {
        return Err(Error::at(pos, c, "cannot jump to a base chain"));
    }
    Ok(ci)
}

/// Checks that a field of statement `s` may apply in table `t`; true when it fixes the
/// transport protocol (`tcp dport`, `meta l4proto`).
fn field_fits(t: &Table, f: Field, pos: Pos, s: &Stmt) -> Result<bool, Error> {
    match (f.family(), t.family) {
        (Some(TableFamily::Ip), TableFamily::Ip6) | (Some(TableFamily::Ip6), TableFamily::Ip) => {
            return Err(Error::at(
                pos,
                &super::print::stmt(s),
                format!(
                    "this match cannot apply in a table of family {}",
                    t.family.name()
                ),
            ));
        }
        _ => {}
    }
    Ok(f.l4proto().is_some()
        || matches!(
            f,
            Field::IpProtocol
                | Field::Ip6Nexthdr
                | Field::MetaL4proto
                | Field::ThDport
                | Field::ThSport
        ))
}
