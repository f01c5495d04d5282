//! The ruleset structure: tables, sets, chains (base chain headers, priorities) and rules.

use super::cursor::{Parser, unsupported};
use super::lexer::Tok;
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::names;

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
                Tok::Word(w) if w == "set" => {
                    let set = self.set(t.pos)?;
                    if table.sets.iter().any(|s| s.name == set.name) {
                        return Err(Error::at(set.pos, &set.name, "duplicate set"));
                    }
                    table.sets.push(set);
                }
                Tok::Word(w)
                    if matches!(
                        w.as_str(),
                        "map" | "flowtable" | "ct" | "counter" | "quota" | "limit"
                    ) =>
                {
                    return self.err(&t, unsupported(w));
                }
                _ => return self.err(&t, "expected `chain`, `set` or `}`"),
            }
        }
    }

    pub(super) fn set(&mut self, pos: Pos) -> Result<Set, Error> {
        let (name, _) = self.word("set name")?;
        self.expect_punct('{')?;
        let mut ty = None;
        let mut interval = false;
        let mut elements = Vec::new();
        let mut elem_toks = None;
        loop {
            self.skip_separators();
            let t = self.next();
            match &t.tok {
                Tok::Punct('}') => break,
                Tok::Word(w) if w == "type" => {
                    let (tn, tp) = self.word("set type")?;
                    ty = Some(SetType::from_name(&tn).ok_or_else(|| {
                        Error::at(tp, &tn, unsupported(&format!("set type {tn}")))
                    })?);
                }
                Tok::Word(w) if w == "typeof" => {
                    let (a, ap) = self.word("field")?;
                    let (b, _) = self.word("field")?;
                    let f = Field::from_words(&a, &b)
                        .ok_or_else(|| Error::at(ap, &a, "unknown field in `typeof`"))?;
                    ty = Some(match f.kind() {
                        Kind::Addr4 => SetType::Ipv4Addr,
                        Kind::Addr6 => SetType::Ipv6Addr,
                        Kind::Port => SetType::InetService,
                        Kind::Proto => SetType::InetProto,
                        Kind::Mark => SetType::Mark,
                        Kind::IfName => SetType::IfName,
                        _ => return Err(Error::at(ap, &a, unsupported("typeof of this field"))),
                    });
                }
                Tok::Word(w) if w == "flags" => loop {
                    let (f, fp) = self.word("set flag")?;
                    match f.as_str() {
                        "interval" => interval = true,
                        "constant" => {}
                        _ => return Err(Error::at(fp, &f, unsupported(&format!("set flag {f}")))),
                    }
                    if !self.eat_punct(',') {
                        break;
                    }
                },
                Tok::Word(w) if w == "auto-merge" => {}
                Tok::Word(w) if w == "elements" => {
                    self.expect_punct('=')?;
                    let Some(ty) = ty else {
                        return self.err(&t, "set `type` must come before `elements`");
                    };
                    elem_toks = Some(t.pos);
                    elements = self.brace_values(ty.kind())?;
                }
                _ => return self.err(&t, "expected `type`, `flags`, `elements` or `}`"),
            }
        }
        let _ = elem_toks;
        let ty = ty.ok_or_else(|| Error::at(pos, &name, "set has no `type`"))?;
        Ok(Set {
            name,
            ty,
            interval,
            elements,
            pos,
        })
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
