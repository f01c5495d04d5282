//! The nftables text parser: a small lexer and a recursive-descent parser over it.
//! Every error carries the line and column of the offending token.

use super::Error;
use super::ast::*;
use super::names;
use crate::nat::{NatFlags, NatKind};
use crate::wire::Addr;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(char),
    Newline,
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    pos: Pos,
}

impl Token {
    fn text(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Punct(c) => c.to_string(),
            Tok::Newline => "newline".into(),
            Tok::Eof => "end of input".into(),
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-' | '*' | '[' | ']' | '$')
}

fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut col = 1u32;
    let mut it = src.chars().peekable();
    while let Some(&c) = it.peek() {
        let pos = Pos { line, col };
        if c == '\n' {
            it.next();
            out.push(Token {
                tok: Tok::Newline,
                pos,
            });
            line += 1;
            col = 1;
        } else if c == '\\' {
            // Line continuation.
            it.next();
            col += 1;
            if it.peek() == Some(&'\n') {
                it.next();
                line += 1;
                col = 1;
            }
        } else if c.is_whitespace() {
            it.next();
            col += 1;
        } else if c == '#' {
            while let Some(&c) = it.peek() {
                if c == '\n' {
                    break;
                }
                it.next();
                col += 1;
            }
        } else if c == '"' {
            it.next();
            col += 1;
            let mut s = String::new();
            loop {
                match it.next() {
                    Some('"') => {
                        col += 1;
                        break;
                    }
                    Some('\n') | None => {
                        return Err(Error::at(pos, "\"", "unterminated string"));
                    }
                    Some(ch) => {
                        col += 1;
                        s.push(ch);
                    }
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                pos,
            });
        } else if is_word_char(c) {
            let mut s = String::new();
            while let Some(&c) = it.peek() {
                if !is_word_char(c) {
                    break;
                }
                s.push(c);
                it.next();
                col += 1;
            }
            out.push(Token {
                tok: Tok::Word(s),
                pos,
            });
        } else if "{};,()|&!=<>@".contains(c) {
            it.next();
            col += 1;
            out.push(Token {
                tok: Tok::Punct(c),
                pos,
            });
        } else {
            return Err(Error::at(pos, &c.to_string(), "unexpected character"));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: Pos { line, col },
    });
    Ok(out)
}

/// Parses nftables text into a [`Ruleset`].
pub fn parse(src: &str) -> Result<Ruleset, Error> {
    let toks = lex(src)?;
    let mut p = Parser { toks, i: 0 };
    let rs = p.ruleset()?;
    super::validate::ruleset(&rs)?;
    Ok(rs)
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

fn unsupported(what: &str) -> String {
    format!("`{what}` is not supported by this appliance")
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn err<T>(&self, t: &Token, msg: impl Into<String>) -> Result<T, Error> {
        Err(Error::at(t.pos, &t.text(), msg))
    }
    fn peek_word(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    fn is_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }
    fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.next();
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.next();
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, c: char) -> Result<(), Error> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            self.err(&t, format!("expected `{c}`"))
        }
    }
    fn word(&mut self, what: &str) -> Result<(String, Pos), Error> {
        let t = self.next();
        match t.tok {
            Tok::Word(w) => Ok((w, t.pos)),
            _ => self.err(&t, format!("expected {what}")),
        }
    }
    fn word_or_str(&mut self, what: &str) -> Result<(String, Pos), Error> {
        let t = self.next();
        match t.tok {
            Tok::Word(w) | Tok::Str(w) => Ok((w, t.pos)),
            _ => self.err(&t, format!("expected {what}")),
        }
    }
    fn string(&mut self, what: &str) -> Result<String, Error> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            Tok::Word(w) => Ok(w),
            _ => self.err(&t, format!("expected {what}")),
        }
    }
    fn skip_separators(&mut self) {
        while matches!(self.peek().tok, Tok::Newline | Tok::Punct(';')) {
            self.next();
        }
    }
    fn at_end_of_statement(&self) -> bool {
        matches!(
            self.peek().tok,
            Tok::Newline | Tok::Punct(';') | Tok::Punct('}') | Tok::Eof
        )
    }

    fn ruleset(&mut self) -> Result<Ruleset, Error> {
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

    fn table(&mut self, pos: Pos) -> Result<Table, Error> {
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

    fn set(&mut self, pos: Pos) -> Result<Set, Error> {
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

    fn chain(&mut self, pos: Pos, handle: &mut u64) -> Result<Chain, Error> {
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

    fn priority(&mut self) -> Result<i32, Error> {
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

    fn rule(&mut self, handle: u64) -> Result<Rule, Error> {
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

    fn stmt(&mut self) -> Result<Stmt, Error> {
        let t = self.next();
        let w = match &t.tok {
            Tok::Word(w) => w.clone(),
            _ => return self.err(&t, "expected a statement"),
        };
        let pos = t.pos;
        match w.as_str() {
            "accept" => Ok(Stmt::Verdict(Verdict::Accept, pos)),
            "drop" => Ok(Stmt::Verdict(Verdict::Drop, pos)),
            "continue" => Ok(Stmt::Verdict(Verdict::Continue, pos)),
            "return" => Ok(Stmt::Verdict(Verdict::Return, pos)),
            "jump" | "goto" => {
                let (target, _) = self.word("chain name")?;
                Ok(Stmt::Verdict(
                    if w == "jump" {
                        Verdict::Jump(target)
                    } else {
                        Verdict::Goto(target)
                    },
                    pos,
                ))
            }
            "reject" => self.reject(pos),
            "counter" => {
                let (mut packets, mut bytes) = (0, 0);
                if self.eat_word("packets") {
                    packets = self.number_word()?;
                    if !self.eat_word("bytes") {
                        let t = self.next();
                        return self.err(&t, "expected `bytes`");
                    }
                    bytes = self.number_word()?;
                }
                Ok(Stmt::Counter { packets, bytes })
            }
            "log" => {
                let (mut prefix, mut level) = (None, None);
                loop {
                    if self.eat_word("prefix") {
                        prefix = Some(self.string("log prefix")?);
                    } else if self.eat_word("level") {
                        level = Some(self.word("log level")?.0);
                    } else if matches!(
                        self.peek_word(),
                        Some("group" | "flags" | "snaplen" | "queue-threshold")
                    ) {
                        let t = self.next();
                        return self.err(&t, unsupported(&format!("log {}", t.text())));
                    } else {
                        break;
                    }
                }
                Ok(Stmt::Log { prefix, level })
            }
            "limit" => self.limit(),
            "notrack" => Ok(Stmt::Notrack),
            "snat" | "dnat" | "masquerade" | "redirect" => self.nat(&w, pos),
            "ct" => self.ct(pos),
            "meta" => {
                let (k, kp) = self.word("meta key")?;
                self.meta_key(&k, kp)
            }
            "iif" | "oif" | "iifname" | "oifname" | "mark" | "l4proto" | "nfproto" => {
                self.meta_key(&w, pos)
            }
            "ip" | "ip6" | "tcp" | "udp" | "th" | "icmp" | "icmpv6" => {
                let (k, kp) = self.word("header field")?;
                match Field::from_words(&w, &k) {
                    Some(f) => self.match_rest(f, pos),
                    None => Err(Error::at(kp, &k, unsupported(&format!("{w} {k}")))),
                }
            }
            "queue" | "fwd" | "dup" | "meter" | "tproxy" | "synproxy" | "quota" | "numgen"
            | "jhash" | "symhash" | "osf" | "socket" | "rt" | "fib" | "exthdr" | "ether"
            | "vlan" | "arp" | "sctp" | "dccp" | "udplite" | "ah" | "esp" | "comp" | "add"
            | "update" | "delete" | "set" | "map" | "vmap" | "flow" | "xt" => {
                self.err(&t, unsupported(&w))
            }
            _ => self.err(&t, "unknown statement"),
        }
    }

    fn meta_key(&mut self, k: &str, kp: Pos) -> Result<Stmt, Error> {
        let field = match k {
            "l4proto" => Field::MetaL4proto,
            "nfproto" => Field::MetaNfproto,
            "iif" => Field::Iif,
            "oif" => Field::Oif,
            "iifname" => Field::Iifname,
            "oifname" => Field::Oifname,
            "mark" => {
                if self.eat_word("set") {
                    let v = self.number_word()?;
                    return u32::try_from(v)
                        .map(Stmt::MetaMarkSet)
                        .map_err(|_| Error::at(kp, k, "mark does not fit 32 bits"));
                }
                Field::MetaMark
            }
            _ => return Err(Error::at(kp, k, unsupported(&format!("meta {k}")))),
        };
        self.match_rest(field, kp)
    }

    fn ct(&mut self, pos: Pos) -> Result<Stmt, Error> {
        let (k, kp) = self.word("ct key")?;
        match k.as_str() {
            "state" => self.match_rest(Field::CtState, pos),
            "status" => self.match_rest(Field::CtStatus, pos),
            "mark" => {
                if self.eat_word("set") {
                    let v = self.number_word()?;
                    return u32::try_from(v)
                        .map(Stmt::CtMarkSet)
                        .map_err(|_| Error::at(kp, &k, "mark does not fit 32 bits"));
                }
                self.match_rest(Field::CtMark, pos)
            }
            "count" => {
                let over = self.eat_word("over");
                let n = self.number_word()?;
                let count = u32::try_from(n).map_err(|_| Error::at(kp, &k, "count too large"))?;
                Ok(Stmt::CtCount { count, over })
            }
            "helper" => Err(Error::at(
                pos,
                "ct helper",
                "`ct helper` is not supported by this appliance (no conntrack helpers)",
            )),
            _ => Err(Error::at(kp, &k, unsupported(&format!("ct {k}")))),
        }
    }

    fn number_word(&mut self) -> Result<u64, Error> {
        let (w, p) = self.word("number")?;
        parse_num(&w).ok_or_else(|| Error::at(p, &w, "expected a number"))
    }

    fn reject(&mut self, _pos: Pos) -> Result<Stmt, Error> {
        if !self.eat_word("with") {
            return Ok(Stmt::Reject(Reject::Default, _pos));
        }
        let (k, kp) = self.word("`tcp`, `icmp`, `icmpv6` or `icmpx`")?;
        let r = match k.as_str() {
            "tcp" => {
                if !self.eat_word("reset") {
                    let t = self.next();
                    return self.err(&t, "expected `reset`");
                }
                Reject::TcpReset
            }
            "icmp" | "icmpv6" | "icmpx" => {
                self.eat_word("type");
                let (c, cp) = self.word("ICMP code name")?;
                let table = match k.as_str() {
                    "icmp" => names::REJECT_ICMP,
                    "icmpv6" => names::REJECT_ICMPV6,
                    _ => names::REJECT_ICMPX,
                };
                let code = names::code_lookup(table, &c)
                    .or_else(|| c.parse().ok())
                    .ok_or_else(|| Error::at(cp, &c, "unknown reject code"))?;
                match k.as_str() {
                    "icmp" => Reject::Icmp(code),
                    "icmpv6" => Reject::Icmpv6(code),
                    _ => Reject::Icmpx(code),
                }
            }
            _ => return Err(Error::at(kp, &k, "expected `tcp reset` or an ICMP type")),
        };
        Ok(Stmt::Reject(r, _pos))
    }

    fn limit(&mut self) -> Result<Stmt, Error> {
        if !self.eat_word("rate") {
            let t = self.next();
            return self.err(&t, "expected `rate`");
        }
        let over = self.eat_word("over");
        let (w, p) = self.word("rate N/unit")?;
        let (n, unit) = if let Some((n, u)) = w.split_once('/') {
            (n.to_owned(), u.to_owned())
        } else {
            // `10 / second` or `10 mbytes/second`.
            let (u, up) = self.word("`/unit`")?;
            match u.strip_prefix('/') {
                Some("") => (w.clone(), self.word("time unit")?.0),
                Some(rest) => (w.clone(), rest.to_owned()),
                None => return Err(Error::at(up, &u, unsupported("byte-rate limits"))),
            }
        };
        let rate = parse_num(&n).ok_or_else(|| Error::at(p, &w, "expected a rate number"))?;
        let unit =
            TimeUnit::from_name(&unit).ok_or_else(|| Error::at(p, &w, "unknown time unit"))?;
        if rate == 0 {
            return Err(Error::at(p, &w, "rate must be positive"));
        }
        let mut burst = DEFAULT_BURST;
        if self.eat_word("burst") {
            let (b, bp) = self.word("burst")?;
            burst = b
                .parse()
                .map_err(|_| Error::at(bp, &b, "expected a burst number"))?;
            match self.peek_word() {
                Some("packets") => {
                    self.next();
                }
                Some("bytes" | "kbytes" | "mbytes") => {
                    let t = self.next();
                    return self.err(&t, unsupported("byte bursts"));
                }
                _ => {}
            }
        }
        Ok(Stmt::Limit {
            rate,
            unit,
            burst,
            over,
        })
    }

    fn nat(&mut self, kw: &str, pos: Pos) -> Result<Stmt, Error> {
        let kind = match kw {
            "snat" => NatKind::Snat,
            "dnat" => NatKind::Dnat,
            "masquerade" => NatKind::Masquerade,
            _ => NatKind::Redirect,
        };
        let mut st = NatStmt {
            kind,
            family: None,
            addr: None,
            ports: None,
            flags: NatFlags::default(),
        };
        if matches!(kind, NatKind::Snat | NatKind::Dnat) {
            if let Some(f) = self.peek_word().and_then(TableFamily::from_name)
                && f != TableFamily::Inet
            {
                self.next();
                st.family = Some(f);
            }
            if !self.eat_word("to") {
                let t = self.next();
                return self.err(&t, format!("expected `to` after `{kw}`"));
            }
            let (w, wp) = self.word("address")?;
            let (addr, ports) = parse_nat_target(&w).map_err(|m| Error::at(wp, &w, m))?;
            if addr.is_none() {
                return Err(Error::at(wp, &w, format!("`{kw}` needs an address")));
            }
            st.addr = addr;
            st.ports = ports;
        } else if self.eat_word("to") {
            let (w, wp) = self.word("`:PORT`")?;
            let (addr, ports) = parse_nat_target(&w).map_err(|m| Error::at(wp, &w, m))?;
            if addr.is_some() || ports.is_none() {
                return Err(Error::at(
                    wp,
                    &w,
                    format!("`{kw} to` takes only `:PORT[-PORT]`"),
                ));
            }
            st.ports = ports;
        }
        while let Some(f) = self.peek_word().map(str::to_owned) {
            match f.as_str() {
                "random" => st.flags.random = true,
                "fully-random" => st.flags.fully_random = true,
                "persistent" => st.flags.persistent = true,
                _ => break,
            }
            self.next();
            self.eat_punct(',');
        }
        Ok(Stmt::Nat(st, pos))
    }

    /// After a field: `[& MASK] [OP] RHS` or `VALUE / MASK`.
    fn match_rest(&mut self, field: Field, pos: Pos) -> Result<Stmt, Error> {
        let kind = field.kind();
        let mut mask = None;
        if self.eat_punct('&') {
            let paren = self.eat_punct('(');
            mask = Some(self.flag_expr(kind)?);
            if paren {
                self.expect_punct(')')?;
            }
        }
        let op = self.op()?;
        if mask.is_some() && !matches!(op, Op::Eq | Op::Ne) {
            let t = self.peek().clone();
            return self.err(&t, "a masked match needs `==` or `!=`");
        }
        let rhs = if self.eat_punct('@') {
            let (n, _) = self.word("set name")?;
            Rhs::Named(n)
        } else if self.is_punct('{') {
            Rhs::Set(self.brace_values(kind)?)
        } else if kind.is_flags() {
            let v = self.flag_expr(kind)?;
            if self.peek_word() == Some("/") {
                self.next();
                if mask.is_some() || op != Op::Implicit {
                    let t = self.peek().clone();
                    return self.err(&t, "`/ MASK` with another mask or operator");
                }
                mask = Some(self.flag_expr(kind)?);
                return Ok(Stmt::Match(
                    Match {
                        field,
                        mask,
                        op: Op::Eq,
                        rhs: Rhs::Values(vec![Value::Num(v)]),
                    },
                    pos,
                ));
            }
            Rhs::Values(vec![Value::Num(v)])
        } else {
            let v = self.value(kind)?;
            if self.is_punct(',') {
                let t = self.peek().clone();
                return self.err(&t, "use `{ a, b }` for a list of values");
            }
            Rhs::Values(vec![v])
        };
        // `==` means the same as no operator except for an exact flag value.
        let op = if op == Op::Eq && !(kind.is_flags() && matches!(rhs, Rhs::Values(_))) {
            Op::Implicit
        } else {
            op
        };
        if !matches!(op, Op::Implicit | Op::Eq | Op::Ne) {
            let ok = matches!(&rhs, Rhs::Values(v) if matches!(v[..], [Value::Num(_)]));
            if !ok {
                return Err(Error::at(pos, op.text(), "`<`/`>` need a single number"));
            }
        }
        Ok(Stmt::Match(
            Match {
                field,
                mask,
                op,
                rhs,
            },
            pos,
        ))
    }

    fn op(&mut self) -> Result<Op, Error> {
        let t = self.peek().clone();
        let op = match &t.tok {
            Tok::Punct('=') => {
                self.next();
                self.expect_punct('=')?;
                Op::Eq
            }
            Tok::Punct('!') => {
                self.next();
                self.expect_punct('=')?;
                Op::Ne
            }
            Tok::Punct('<') => {
                self.next();
                if self.eat_punct('=') { Op::Le } else { Op::Lt }
            }
            Tok::Punct('>') => {
                self.next();
                if self.eat_punct('=') { Op::Ge } else { Op::Gt }
            }
            Tok::Word(w) => match w.as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "lt" => Op::Lt,
                "gt" => Op::Gt,
                "le" => Op::Le,
                "ge" => Op::Ge,
                _ => return Ok(Op::Implicit),
            },
            _ => return Ok(Op::Implicit),
        };
        if matches!(t.tok, Tok::Word(_)) {
            self.next();
        }
        Ok(op)
    }

    /// Flag names joined by `|` or `,`, OR-ed into one bit mask.
    fn flag_expr(&mut self, kind: Kind) -> Result<u64, Error> {
        let mut bits = 0;
        loop {
            let (w, p) = self.word("flag name")?;
            let v = names::lookup(kind, &w)
                .or_else(|| parse_num(&w))
                .ok_or_else(|| Error::at(p, &w, "unknown flag name"))?;
            bits |= v;
            if !(self.eat_punct('|') || self.eat_punct(',')) {
                return Ok(bits);
            }
        }
    }

    fn brace_values(&mut self, kind: Kind) -> Result<Vec<Value>, Error> {
        self.expect_punct('{')?;
        let mut out = Vec::new();
        loop {
            while matches!(self.peek().tok, Tok::Newline) {
                self.next();
            }
            if self.eat_punct('}') {
                break;
            }
            out.push(self.value(kind)?);
            while matches!(self.peek().tok, Tok::Newline) {
                self.next();
            }
            if !self.eat_punct(',') {
                self.expect_punct('}')?;
                break;
            }
        }
        if out.is_empty() {
            let t = self.peek().clone();
            return self.err(&t, "empty set");
        }
        Ok(out)
    }

    fn value(&mut self, kind: Kind) -> Result<Value, Error> {
        let (w, p) = if kind == Kind::IfName {
            self.word_or_str("interface name")?
        } else {
            self.word("value")?
        };
        parse_value(kind, &w).map_err(|m| Error::at(p, &w, m))
    }
}

pub(crate) fn parse_num(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

fn parse_addr(kind: Kind, s: &str) -> Result<Addr, String> {
    match kind {
        Kind::Addr4 => s
            .parse::<std::net::Ipv4Addr>()
            .map(|a| Addr::from_v4(a.octets()))
            .map_err(|_| "expected an IPv4 address".into()),
        _ => s
            .parse::<std::net::Ipv6Addr>()
            .map(|a| Addr::from_v6(a.octets()))
            .map_err(|_| "expected an IPv6 address".into()),
    }
}

/// Parses one value of `kind` from a word.
pub(crate) fn parse_value(kind: Kind, w: &str) -> Result<Value, String> {
    match kind {
        Kind::Addr4 | Kind::Addr6 => {
            let max = if kind == Kind::Addr4 { 32 } else { 128 };
            if let Some((a, l)) = w.split_once('/') {
                let len: u8 = l.parse().map_err(|_| "bad prefix length".to_string())?;
                if len > max {
                    return Err("prefix length too long".into());
                }
                let a = parse_addr(kind, a)?;
                if super::compile::addr_to_u128(a) & !prefix_mask(kind, len) != 0 {
                    return Err("address has bits set beyond the prefix length".into());
                }
                Ok(Value::Prefix(a, len))
            } else if let Some((a, b)) = w.split_once('-') {
                let (a, b) = (parse_addr(kind, a)?, parse_addr(kind, b)?);
                if a > b {
                    return Err("empty address range".into());
                }
                Ok(Value::AddrRange(a, b))
            } else {
                Ok(Value::Prefix(parse_addr(kind, w)?, max))
            }
        }
        Kind::IfName => {
            let v = Value::Str(w.to_owned());
            match super::validate::value_problem(kind, &v) {
                Some(m) => Err(m),
                None => Ok(v),
            }
        }
        _ => {
            let max = super::validate::max_value(kind);
            let num = |s: &str| -> Result<u64, String> {
                let v = names::lookup(kind, s)
                    .or_else(|| parse_num(s))
                    .ok_or_else(|| format!("unknown value `{s}`"))?;
                if v > max {
                    return Err(format!("value {v} out of range (max {max})"));
                }
                Ok(v)
            };
            if let Some(v) = names::lookup(kind, w) {
                return Ok(Value::Num(v));
            }
            if let Some((a, b)) = w.split_once('-')
                && !a.is_empty()
            {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err("empty range".into());
                }
                return Ok(Value::Range(a, b));
            }
            num(w).map(Value::Num)
        }
    }
}

/// Mask of the top `len` bits of the family's part of a 128-bit address.
pub(crate) fn prefix_mask(kind: Kind, len: u8) -> u128 {
    let len = if kind == Kind::Addr4 {
        u32::from(len) + 96
    } else {
        u32::from(len)
    };
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

type NatTarget = (Option<(Addr, Addr)>, Option<(u16, u16)>);

/// `ADDR[-ADDR][:PORT[-PORT]]`, `[V6]:PORT`, `:PORT[-PORT]`.
pub(crate) fn parse_nat_target(w: &str) -> Result<NatTarget, String> {
    let (addr_part, port_part) = if let Some(rest) = w.strip_prefix('[') {
        let (a, after) = rest.split_once(']').ok_or("missing `]`")?;
        match after {
            "" => (a, None),
            _ => (
                a,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected `:PORT` after `]`")?,
                ),
            ),
        }
    } else if let Some(p) = w.strip_prefix(':') {
        ("", Some(p))
    } else if w.contains('.') {
        match w.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (w, None),
        }
    } else {
        (w, None)
    };
    let addr = if addr_part.is_empty() {
        None
    } else {
        let kind = if addr_part.contains(':') {
            Kind::Addr6
        } else {
            Kind::Addr4
        };
        match addr_part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_addr(kind, a)?, parse_addr(kind, b)?);
                if a > b {
                    return Err("empty address range".into());
                }
                Some((a, b))
            }
            None => {
                let a = parse_addr(kind, addr_part)?;
                Some((a, a))
            }
        }
    };
    let ports = match port_part {
        None => None,
        Some(p) => {
            let num = |s: &str| -> Result<u16, String> {
                s.parse::<u16>().map_err(|_| format!("bad port `{s}`"))
            };
            let (a, b) = match p.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(p)?, num(p)?),
            };
            if a > b {
                return Err("empty port range".into());
            }
            Some((a, b))
        }
    };
    Ok((addr, ports))
}
