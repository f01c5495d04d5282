//! Rule statements: matches (field, operator, values), verdicts, reject, limit, NAT, marks.

use super::cursor::{Parser, unsupported};
use super::lexer::Tok;
use super::value::{parse_nat_target, parse_num, parse_value};
use crate::nat::{NatFlags, NatKind};
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::names;

impl Parser {
    pub(super) fn stmt(&mut self) -> Result<Stmt, Error> {
        let t = self.next();
        let w = match &t.tok {
            Tok::Word(w) => w.clone(),
            _ => return self.err(&t, "expected a statement"),
        };
        let pos = t.pos;
        match w.as_str() {
            "accept" | "drop" | "continue" | "return" | "jump" | "goto" => {
                Ok(Stmt::Verdict(self.verdict_rest(&w)?, pos))
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
            "iif" | "oif" | "iifname" | "oifname" | "mark" | "l4proto" | "nfproto" | "pkttype" => {
                self.meta_key(&w, pos)
            }
            "fib" => self.fib(pos),
            "tcp" if self.peek_word() == Some("option") => self.tcp_option(pos),
            "ip" | "ip6" | "tcp" | "udp" | "th" | "icmp" | "icmpv6" => {
                let (k, kp) = self.word("header field")?;
                match Field::from_words(&w, &k) {
                    Some(f @ (Field::IpDscp | Field::Ip6Dscp))
                        if self.peek_word() == Some("set") =>
                    {
                        self.dscp_set(f, pos)
                    }
                    Some(f) => self.match_rest(f, pos),
                    None => Err(Error::at(kp, &k, unsupported(&format!("{w} {k}")))),
                }
            }
            "add" if self.is_punct('@') => self.set_elem_stmt(SetOp::Add, pos),
            "update" if self.is_punct('@') => self.set_elem_stmt(SetOp::Update, pos),
            "meter" => self.meter_stmt(pos),
            "queue" | "fwd" | "dup" | "tproxy" | "synproxy" | "quota" | "numgen" | "jhash"
            | "symhash" | "osf" | "socket" | "rt" | "exthdr" | "ether" | "vlan" | "arp"
            | "sctp" | "dccp" | "udplite" | "ah" | "esp" | "comp" | "add" | "update" | "delete"
            | "set" | "map" | "vmap" | "flow" | "xt" => self.err(&t, unsupported(&w)),
            _ => self.err(&t, "unknown statement"),
        }
    }

    /// A verdict after its first word (`accept`, `jump CHAIN`, …).
    pub(super) fn verdict_rest(&mut self, w: &str) -> Result<Verdict, Error> {
        Ok(match w {
            "accept" => Verdict::Accept,
            "drop" => Verdict::Drop,
            "continue" => Verdict::Continue,
            "return" => Verdict::Return,
            _ => {
                let (target, _) = self.word("chain name")?;
                if w == "jump" {
                    Verdict::Jump(target)
                } else {
                    Verdict::Goto(target)
                }
            }
        })
    }

    pub(super) fn meta_key(&mut self, k: &str, kp: Pos) -> Result<Stmt, Error> {
        if k == "mark" && self.eat_word("set") {
            let v = self.number_word()?;
            return u32::try_from(v)
                .map(Stmt::MetaMarkSet)
                .map_err(|_| Error::at(kp, k, "mark does not fit 32 bits"));
        }
        let field = Field::from_words("meta", k)
            .ok_or_else(|| Error::at(kp, k, unsupported(&format!("meta {k}"))))?;
        self.match_rest(field, kp)
    }

    /// One field of a concatenation (after a `.`).
    fn key_field(&mut self) -> Result<Field, Error> {
        let (w, p) = self.word("a field")?;
        let (a, b) = match w.as_str() {
            "iif" | "oif" | "iifname" | "oifname" | "mark" | "l4proto" | "nfproto" | "pkttype" => {
                ("meta".to_owned(), w.clone())
            }
            "fib" => return self.fib_field(),
            "tcp" if self.peek_word() == Some("option") => return self.tcp_option_field(),
            _ => (w.clone(), self.word("a field")?.0),
        };
        if a == "ct"
            && matches!(
                b.as_str(),
                "direction" | "expiration" | "original" | "reply"
            )
        {
            return self.ct_fact_field(&b, p);
        }
        Field::from_words(&a, &b)
            .ok_or_else(|| Error::at(p, &w, unsupported(&format!("{a} {b} in a concatenation"))))
    }

    /// After the first field of a concatenation or a verdict map key:
    /// `[. FIELD]… vmap { e : VERDICT, … }` or `. FIELD [. FIELD]… [!=] { e, … }`.
    fn concat_rest(&mut self, first: Field, pos: Pos) -> Result<Stmt, Error> {
        let key = self.key_rest(first)?;
        if self.eat_word("vmap") {
            let elements = self.elements(|p| {
                let e = p.elem(&key)?;
                let t = p.next();
                if t.tok != Tok::Word(":".into()) {
                    return p.err(&t, "expected ` : ` and a verdict");
                }
                Ok((e, p.verdict()?))
            })?;
            return Ok(Stmt::Vmap(Vmap { key, elements }, pos));
        }
        let t = self.peek().clone();
        let neg = match self.op()? {
            Op::Implicit | Op::Eq => false,
            Op::Ne => true,
            _ => return self.err(&t, "a concatenation is compared with `{ … }`"),
        };
        if !self.is_punct('{') && !self.is_punct('@') {
            let t = self.peek().clone();
            return self.err(&t, "expected `{` or `@SET` after a concatenation");
        }
        let elements = self.elements(|p| p.elem(&key))?;
        Ok(Stmt::Lookup(Lookup { key, neg, elements }, pos))
    }

    /// A dynamic-set statement's key: `FIELD [. FIELD]…` (`ip saddr . tcp dport`).
    pub(super) fn set_key(&mut self) -> Result<Vec<Field>, Error> {
        let first = self.key_field()?;
        self.key_rest(first)
    }

    /// The fields after a key's first: `[. FIELD]…`.
    fn key_rest(&mut self, first: Field) -> Result<Vec<Field>, Error> {
        let mut key = vec![first];
        while self.peek_word() == Some(".") {
            let t = self.next();
            if key.len() == MAX_CONCAT {
                return self.err(
                    &t,
                    format!("more than {MAX_CONCAT} fields in a concatenation"),
                );
            }
            key.push(self.key_field()?);
        }
        Ok(key)
    }

    /// `@NAME` or `{ ITEM, … }`.
    fn elements<T>(
        &mut self,
        item: impl FnMut(&mut Self) -> Result<T, Error>,
    ) -> Result<Elements<T>, Error> {
        if self.eat_punct('@') {
            return Ok(Elements::Named(self.word("set name")?.0));
        }
        self.brace_list(item).map(Elements::Anon)
    }

    /// A verdict (`accept`, `jump CHAIN`, …) where only a verdict may stand.
    pub(super) fn verdict(&mut self) -> Result<Verdict, Error> {
        let (w, wp) = self.word("a verdict")?;
        if !matches!(
            w.as_str(),
            "accept" | "drop" | "continue" | "return" | "jump" | "goto"
        ) {
            return Err(Error::at(wp, &w, "expected a verdict"));
        }
        self.verdict_rest(&w)
    }

    /// One element of a concatenated key: `v1 . v2 …`.
    fn elem(&mut self, key: &[Field]) -> Result<Elem, Error> {
        let kinds: Vec<Kind> = key.iter().map(|f| f.kind()).collect();
        self.elem_of(&kinds)
    }

    /// One value per kind, joined by ` . `.
    pub(super) fn elem_of(&mut self, kinds: &[Kind]) -> Result<Elem, Error> {
        let mut e = Vec::with_capacity(kinds.len());
        for (i, &k) in kinds.iter().enumerate() {
            if i > 0 && !self.eat_word(".") {
                let t = self.next();
                return self.err(&t, "expected ` . ` and the next value of the concatenation");
            }
            e.push(self.value(k)?);
        }
        Ok(e)
    }

    /// After `snat|dnat [ip|ip6] to`: `KEY map @NAME` or `KEY map { k : ADDR [. PORT], … }`.
    fn nat_map(&mut self, nat: NatStmt, pos: Pos) -> Result<Stmt, Error> {
        let first = self.key_field()?;
        let key = self.key_rest(first)?;
        if !self.eat_word("map") {
            let t = self.next();
            return self.err(&t, "expected `map` after the key");
        }
        let elements = self.elements(|p| {
            let e = p.elem(&key)?;
            let t = p.next();
            if t.tok != Tok::Word(":".into()) {
                return p.err(&t, "expected ` : ` and an address");
            }
            let (w, wp) = p.word("address")?;
            let kind = if w.contains(':') {
                Kind::Addr6
            } else {
                Kind::Addr4
            };
            let mut d = vec![parse_value(kind, &w).map_err(|m| Error::at(wp, &w, m))?];
            if p.eat_word(".") {
                d.push(p.value(Kind::Port)?);
            }
            Ok((e, d))
        })?;
        let mut nat = nat;
        nat.flags = self.nat_flags();
        Ok(Stmt::NatMap(NatMap { nat, key, elements }, pos))
    }

    /// `random`, `fully-random`, `persistent` (comma or space separated).
    fn nat_flags(&mut self) -> NatFlags {
        let mut flags = NatFlags::default();
        while let Some(f) = self.peek_word().map(str::to_owned) {
            match f.as_str() {
                "random" => flags.random = true,
                "fully-random" => flags.fully_random = true,
                "persistent" => flags.persistent = true,
                _ => break,
            }
            self.next();
            self.eat_punct(',');
        }
        flags
    }

    pub(super) fn ct(&mut self, pos: Pos) -> Result<Stmt, Error> {
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
            "direction" | "expiration" | "original" | "reply" => self.ct_fact(&k, kp, pos),
            "helper" => self.ct_helper_stmt(pos),
            _ => Err(Error::at(kp, &k, unsupported(&format!("ct {k}")))),
        }
    }

    pub(super) fn number_word(&mut self) -> Result<u64, Error> {
        let (w, p) = self.word("number")?;
        parse_num(&w).ok_or_else(|| Error::at(p, &w, "expected a number"))
    }

    pub(super) fn reject(&mut self, _pos: Pos) -> Result<Stmt, Error> {
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

    pub(super) fn limit(&mut self) -> Result<Stmt, Error> {
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

    pub(super) fn nat(&mut self, kw: &str, pos: Pos) -> Result<Stmt, Error> {
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
            if matches!(
                self.peek_word(),
                Some(
                    "ip" | "ip6"
                        | "tcp"
                        | "udp"
                        | "th"
                        | "meta"
                        | "ct"
                        | "iif"
                        | "oif"
                        | "iifname"
                        | "oifname"
                        | "mark"
                        | "l4proto"
                        | "nfproto"
                        | "icmp"
                        | "icmpv6"
                        | "fib"
                        | "pkttype"
                )
            ) {
                return self.nat_map(st, pos);
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
        st.flags = self.nat_flags();
        Ok(Stmt::Nat(st, pos))
    }

    /// After a field: `[& MASK] [OP] RHS` or `VALUE / MASK`.
    pub(super) fn match_rest(&mut self, field: Field, pos: Pos) -> Result<Stmt, Error> {
        if matches!(self.peek_word(), Some("." | "vmap")) {
            return self.concat_rest(field, pos);
        }
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

    pub(super) fn op(&mut self) -> Result<Op, Error> {
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
    pub(super) fn flag_expr(&mut self, kind: Kind) -> Result<u64, Error> {
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

    pub(super) fn brace_values(&mut self, kind: Kind) -> Result<Vec<Value>, Error> {
        self.brace_list(|p| p.value(kind))
    }

    /// `{ ITEM, … }` (not empty; newlines allowed between items).
    pub(super) fn brace_list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        self.expect_punct('{')?;
        let mut out = Vec::new();
        loop {
            while matches!(self.peek().tok, Tok::Newline) {
                self.next();
            }
            if self.eat_punct('}') {
                break;
            }
            out.push(item(self)?);
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

    pub(super) fn value(&mut self, kind: Kind) -> Result<Value, Error> {
        let (w, p) = if kind == Kind::IfName {
            self.word_or_str("interface name")?
        } else {
            self.word("value")?
        };
        parse_value(kind, &w).map_err(|m| Error::at(p, &w, m))
    }
}
