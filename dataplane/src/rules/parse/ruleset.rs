//! The ruleset structure: tables, sets, chains (base chain headers, priorities) and rules.

use super::cursor::{Parser, unsupported};
use super::lexer::Tok;
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::names;

/// A `set` or `map` declaration: a set of one type, or a map / set of concatenations.
pub(crate) enum Keyed {
    Set(Set),
    Map(Map),
}

impl Parser {
    pub(super) fn ruleset(&mut self) -> Result<Ruleset, Error> {
        let mut rs = Ruleset::default();
        loop {
            self.skip_separators();
            let t = self.next();
            match &t.tok {
                Tok::Eof => return Ok(rs),
                Tok::Word(w) if w == "flush" => {
                    let (what, pos) = self.word("`ruleset`")?;
                    if what != "ruleset" {
                        return Err(Error::at(pos, &what, unsupported(&format!("flush {what}"))));
                    }
                    if !rs.tables.is_empty() {
                        return Err(Error::at(
                            t.pos,
                            "flush",
                            "`flush ruleset` after tables is not supported",
                        ));
                    }
                    rs.flush = true;
                }
                Tok::Word(w) if w == "table" => {
                    let table = self.table(t.pos)?;
                    if rs
                        .tables
                        .iter()
                        .any(|x| x.family == table.family && x.name == table.name)
                    {
                        return Err(Error::at(table.pos, &table.name, "duplicate table"));
                    }
                    rs.tables.push(table);
                }
                _ => return self.err(&t, "expected `table` or `flush ruleset`"),
            }
        }
    }

    pub(super) fn table(&mut self, pos: Pos) -> Result<Table, Error> {
        let (mut name, mut npos) = self.word("table family or name")?;
        let mut family = TableFamily::Ip;
        if let Some(f) = TableFamily::from_name(&name) {
            if !self.is_punct('{') {
                family = f;
                (name, npos) = self.word("table name")?;
            }
        } else if matches!(name.as_str(), "arp" | "bridge" | "netdev") {
            return Err(Error::at(
                npos,
                &name,
                unsupported(&format!("table family {name}")),
            ));
        }
        let _ = npos;
        self.expect_punct('{')?;
        let mut table = Table {
            family,
            name,
            sets: Vec::new(),
            maps: Vec::new(),
            helpers: Vec::new(),
            chains: Vec::new(),
            pos,
        };
        let mut handle = 0u64;
        loop {
            self.skip_separators();
            let t = self.next();
            match &t.tok {
                Tok::Punct('}') => return Ok(table),
                Tok::Word(w) if w == "chain" => {
                    let chain = self.chain(t.pos, &mut handle)?;
                    if table.chains.iter().any(|c| c.name == chain.name) {
                        return Err(Error::at(chain.pos, &chain.name, "duplicate chain"));
                    }
                    table.chains.push(chain);
                }
                Tok::Word(w) if w == "set" || w == "map" => {
                    let (name, npos) = match self.keyed(t.pos, w == "map")? {
                        Keyed::Set(set) => {
                            let n = (set.name.clone(), set.pos);
                            table.sets.push(set);
                            n
                        }
                        Keyed::Map(map) => {
                            let n = (map.name.clone(), map.pos);
                            table.maps.push(map);
                            n
                        }
                    };
                    let same = |n: &String| *n == name;
                    if table
                        .sets
                        .iter()
                        .map(|s| &s.name)
                        .filter(|n| same(n))
                        .count()
                        + table
                            .maps
                            .iter()
                            .map(|m| &m.name)
                            .filter(|n| same(n))
                            .count()
                        > 1
                    {
                        return Err(Error::at(npos, &name, "duplicate set"));
                    }
                }
                Tok::Word(w) if w == "ct" && self.peek_word() == Some("helper") => {
                    self.next();
                    let mut h = self.ct_helper_obj(t.pos)?;
                    // The table's own family is the default nft lists: one form.
                    if h.l3proto == Some(table.family) {
                        h.l3proto = None;
                    }
                    if table.helpers.iter().any(|x| x.name == h.name) {
                        return Err(Error::at(h.pos, &h.name, "duplicate ct helper"));
                    }
                    table.helpers.push(h);
                }
                Tok::Word(w)
                    if matches!(
                        w.as_str(),
                        "flowtable" | "ct" | "counter" | "quota" | "limit"
                    ) =>
                {
                    return self.err(&t, unsupported(w));
                }
                _ => return self.err(&t, "expected `chain`, `set` or `}`"),
            }
        }
    }

    /// One type of a set or map declaration (`ipv4_addr`), or a `typeof` field's type.
    fn set_type(&mut self, typeof_: bool) -> Result<SetType, Error> {
        if !typeof_ {
            let (tn, tp) = self.word("set type")?;
            return SetType::from_name(&tn)
                .ok_or_else(|| Error::at(tp, &tn, unsupported(&format!("set type {tn}"))));
        }
        let (a, ap) = self.word("field")?;
        let (b, _) = self.word("field")?;
        let f = Field::from_words(&a, &b)
            .ok_or_else(|| Error::at(ap, &a, "unknown field in `typeof`"))?;
        SetType::of_kind(f.kind())
            .ok_or_else(|| Error::at(ap, &a, unsupported("typeof of this field")))
    }

    /// Types joined by ` . ` (`ipv4_addr . inet_service`).
    fn set_types(&mut self, typeof_: bool) -> Result<Vec<SetType>, Error> {
        let mut v = vec![self.set_type(typeof_)?];
        while self.peek_word() == Some(".") {
            let t = self.next();
            if v.len() == MAX_CONCAT {
                return self.err(
                    &t,
                    format!("more than {MAX_CONCAT} types in a concatenation"),
                );
            }
            v.push(self.set_type(typeof_)?);
        }
        Ok(v)
    }

    /// A `set` or `map` declaration after its keyword: a [`Set`] for a set of one type, a
    /// [`Map`] for a map or a set of concatenations.
    pub(super) fn keyed(&mut self, pos: Pos, is_map: bool) -> Result<Keyed, Error> {
        let (name, _) = self.word(if is_map { "map name" } else { "set name" })?;
        self.expect_punct('{')?;
        let mut key: Option<Vec<SetType>> = None;
        let mut data = None;
        let mut interval = false;
        let mut dynamic = DynOpts::default();
        let mut elements: Vec<(Elem, MapValue)> = Vec::new();
        let mut elem_timeouts: Vec<(Elem, u64)> = Vec::new();
        loop {
            self.skip_separators();
            let t = self.next();
            match &t.tok {
                Tok::Punct('}') => break,
                Tok::Word(w) if w == "type" || w == "typeof" => {
                    key = Some(self.set_types(w == "typeof")?);
                    if self.peek_word() == Some(":") {
                        let c = self.next();
                        if !is_map {
                            return self.err(&c, "a set has no data type (declare a `map`)");
                        }
                        data = Some(if self.eat_word("verdict") {
                            MapData::Verdict
                        } else {
                            MapData::Types(self.set_types(w == "typeof")?)
                        });
                    }
                    if is_map && data.is_none() {
                        return self.err(&t, "a map type is `KEY : verdict` or `KEY : TYPE`");
                    }
                }
                Tok::Word(w) if w == "flags" => loop {
                    let (f, fp) = self.word("set flag")?;
                    match f.as_str() {
                        "interval" => interval = true,
                        "constant" => {}
                        "dynamic" if !is_map => dynamic.dynamic = true,
                        "timeout" => dynamic.timeout_flag = true,
                        _ => return Err(Error::at(fp, &f, unsupported(&format!("set flag {f}")))),
                    }
                    if !self.eat_punct(',') {
                        break;
                    }
                },
                Tok::Word(w) if w == "auto-merge" => {}
                Tok::Word(w) if w == "timeout" => {
                    dynamic.timeout_ms = Some(self.duration()?);
                    dynamic.timeout_flag = true;
                }
                Tok::Word(w) if w == "size" && !is_map => dynamic.size = Some(self.set_size()?),
                Tok::Word(w) if w == "elements" => {
                    self.expect_punct('=')?;
                    let Some(k) = &key else {
                        return self.err(&t, "set `type` must come before `elements`");
                    };
                    let k = k.clone();
                    let data = data.clone();
                    let mut timeouts = Vec::new();
                    elements = self.brace_list(|p| {
                        let (e, v, timeout) = p.map_element(&k, data.as_ref(), false)?;
                        if let Some(ms) = timeout {
                            timeouts.push((e.clone(), ms));
                        }
                        Ok((e, v))
                    })?;
                    elem_timeouts = timeouts;
                }
                _ => return self.err(&t, "expected `type`, `flags`, `elements` or `}`"),
            }
        }
        let key = key.ok_or_else(|| Error::at(pos, &name, "set has no `type`"))?;
        if dynamic.any() && interval {
            return Err(Error::at(
                pos,
                &name,
                unsupported("a dynamic set with intervals"),
            ));
        }
        if let ([ty], None) = (&key[..], &data) {
            return Ok(Keyed::Set(Set {
                name,
                ty: *ty,
                interval,
                dynamic,
                elements: elements.into_iter().flat_map(|(e, _)| e).collect(),
                elem_timeouts: elem_timeouts
                    .into_iter()
                    .flat_map(|(e, ms)| e.into_iter().map(move |v| (v, ms)))
                    .collect(),
                pos,
            }));
        }
        Ok(Keyed::Map(Map {
            name,
            key,
            data,
            interval,
            elements,
            elem_timeouts,
            dynamic,
            pos,
        }))
    }

    /// One element of a set or map: `KEY [. KEY]… [timeout T]` and, for a map (`data`),
    /// ` : DATA` (a verdict or values); with `data_optional` (`delete element`) the data
    /// may be left out, and is then [`MapValue::None`]. The element's own timeout (ms)
    /// comes back beside it.
    pub(super) fn map_element(
        &mut self,
        key: &[SetType],
        data: Option<&MapData>,
        data_optional: bool,
    ) -> Result<(Elem, MapValue, Option<u64>), Error> {
        let kinds: Vec<Kind> = key.iter().map(|t| t.kind()).collect();
        let e = self.elem_of(&kinds)?;
        let timeout = if self.eat_word("timeout") {
            Some(self.duration()?)
        } else {
            None
        };
        let Some(d) = data else {
            return Ok((e, MapValue::None, timeout));
        };
        if data_optional && self.peek_word() != Some(":") {
            return Ok((e, MapValue::None, timeout));
        }
        let c = self.next();
        if c.tok != Tok::Word(":".into()) {
            return self.err(&c, "expected ` : ` and the element's data");
        }
        let v = match d {
            MapData::Verdict => MapValue::Verdict(self.verdict()?),
            MapData::Types(ts) => {
                let kinds: Vec<Kind> = ts.iter().map(|t| t.kind()).collect();
                MapValue::Data(self.elem_of(&kinds)?)
            }
        };
        Ok((e, v, timeout))
    }

    pub(super) fn chain(&mut self, pos: Pos, handle: &mut u64) -> Result<Chain, Error> {
        let (name, _) = self.word("chain name")?;
        self.expect_punct('{')?;
        let mut chain = Chain {
            name,
            base: None,
            rules: Vec::new(),
            pos,
        };
        let mut policy = None;
        loop {
            self.skip_separators();
            let t = self.peek().clone();
            match &t.tok {
                Tok::Punct('}') => {
                    self.next();
                    break;
                }
                Tok::Eof => return self.err(&t, "expected `}`"),
                Tok::Word(w) if w == "type" => {
                    self.next();
                    let (ty, tp) = self.word("chain type")?;
                    let ty = match ty.as_str() {
                        "filter" => ChainType::Filter,
                        "nat" => ChainType::Nat,
                        _ => {
                            return Err(Error::at(
                                tp,
                                &ty,
                                unsupported(&format!("chain type {ty}")),
                            ));
                        }
                    };
                    if !self.eat_word("hook") {
                        let t = self.next();
                        return self.err(&t, "expected `hook`");
                    }
                    let (h, hp) = self.word("hook")?;
                    let hook = Hook::from_name(&h)
                        .ok_or_else(|| Error::at(hp, &h, unsupported(&format!("hook {h}"))))?;
                    if self.peek_word() == Some("device") {
                        let t = self.next();
                        return self.err(&t, unsupported("device"));
                    }
                    if !self.eat_word("priority") {
                        let t = self.next();
                        return self.err(&t, "expected `priority`");
                    }
                    let priority = self.priority()?;
                    chain.base = Some(BaseChain {
                        ty,
                        hook,
                        priority,
                        policy: Policy::Accept,
                    });
                }
                Tok::Word(w) if w == "policy" => {
                    self.next();
                    let (p, pp) = self.word("policy")?;
                    policy = Some(match p.as_str() {
                        "accept" => Policy::Accept,
                        "drop" => Policy::Drop,
                        _ => return Err(Error::at(pp, &p, "policy must be `accept` or `drop`")),
                    });
                    if chain.base.is_none() {
                        return Err(Error::at(t.pos, "policy", "`policy` in a regular chain"));
                    }
                }
                _ => {
                    *handle += 1;
                    let rule = self.rule(*handle)?;
                    chain.rules.push(rule);
                }
            }
        }
        if let (Some(b), Some(p)) = (chain.base.as_mut(), policy) {
            b.policy = p;
        }
        Ok(chain)
    }

    pub(super) fn priority(&mut self) -> Result<i32, Error> {
        let (w, p) = self.word("priority")?;
        let mut v = if let Some(&(_, v)) = names::PRIORITIES.iter().find(|(n, _)| *n == w) {
            v
        } else {
            w.parse::<i32>()
                .map_err(|_| Error::at(p, &w, "expected a priority number or name"))?
        };
        // `filter + 10` / `filter - 10` (the lexer keeps `-10` as one word).
        if let Some(next) = self.peek_word().map(str::to_owned)
            && let Some(rest) = next.strip_prefix('-')
        {
            let t = self.next();
            let n: i32 = if rest.is_empty() {
                self.word("number")?
                    .0
                    .parse()
                    .map_err(|_| Error::at(t.pos, &next, "bad priority offset"))?
            } else {
                rest.parse()
                    .map_err(|_| Error::at(t.pos, &next, "bad priority offset"))?
            };
            v -= n;
        }
        Ok(v)
    }

    pub(super) fn rule(&mut self, handle: u64) -> Result<Rule, Error> {
        let pos = self.peek().pos;
        let mut rule = Rule {
            stmts: Vec::new(),
            comment: None,
            handle,
            pos,
        };
        while !self.at_end_of_statement() {
            if self.eat_word("comment") {
                rule.comment = Some(self.string("comment text")?);
                if !self.at_end_of_statement() {
                    let t = self.next();
                    return self.err(&t, "nothing may follow a rule's comment");
                }
                break;
            }
            let stmt = self.stmt()?;
            rule.stmts.push(stmt);
        }
        if rule.stmts.is_empty() {
            let t = self.next();
            return self.err(&t, "empty rule");
        }
        Ok(rule)
    }
}
