//! nft command scripts: `flush ruleset`, `table { … }` blocks and the commands
//! (`add|create table|chain|set|rule|element`, `insert|replace|delete rule`,
//! `delete|flush table|chain|set`, `delete element`), each read and applied to the
//! working ruleset in turn (an element's value kind is its set's, which an earlier
//! command of the same script may have made).

use super::cursor::{Parser, unsupported};
use super::lexer::Tok;
use super::ruleset::Keyed;
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::edit::{self, ElementOp, HandleMarks, Place};

const EXPECTED: &str =
    "expected `table`, `flush`, `add`, `create`, `insert`, `replace`, `delete` or `list`";

/// One element of a named set or map given as text, as the element API sends it: its
/// key (`198.18.1.2 . 22`) and, for a map, its data (`accept`, `198.18.1.2 . 8080`; may
/// be left out to delete). Each text holds exactly one value of its type (anything more
/// is an error), so nothing but the element is ever read from it.
pub fn element(
    key: &[SetType],
    data: Option<&MapData>,
    key_text: &str,
    data_text: Option<&str>,
) -> Result<(Elem, MapValue), Error> {
    let whole = |text: &str, f: &mut dyn FnMut(&mut Parser) -> Result<(), Error>| {
        let mut p = Parser {
            toks: super::lexer::lex(text)?,
            i: 0,
        };
        f(&mut p)?;
        match p.peek().tok {
            Tok::Eof => Ok(()),
            _ => {
                let t = p.next();
                p.err(&t, "expected the end of the element")
            }
        }
    };
    let mut k = Vec::new();
    whole(key_text, &mut |p| {
        k = p.map_element(key, None, false).and_then(no_timeout)?;
        Ok(())
    })?;
    let v = match (data, data_text) {
        (_, None) => MapValue::None,
        (None, Some(t)) => {
            return Err(Error::at(Pos::default(), t, "a set element has no data"));
        }
        (Some(d), Some(t)) => {
            let mut v = MapValue::None;
            whole(t, &mut |p| {
                v = match d {
                    MapData::Verdict => MapValue::Verdict(p.verdict()?),
                    MapData::Types(ts) => {
                        MapValue::Data(p.map_element(ts, None, false).and_then(no_timeout)?)
                    }
                };
                Ok(())
            })?;
            v
        }
    };
    Ok((k, v))
}

/// An element's key or data without a `timeout` (the element API sends it apart).
fn no_timeout((e, _, timeout): (Elem, MapValue, Option<u64>)) -> Result<Elem, Error> {
    match timeout {
        Some(_) => Err(Error::at(
            Pos::default(),
            "timeout",
            "the timeout is the element's `timeout` field, not part of its value",
        )),
        None => Ok(e),
    }
}

/// Whether a word starts a command other than `table` and `flush ruleset`.
pub(super) fn is_command(w: &str) -> bool {
    matches!(
        w,
        "add" | "create" | "insert" | "replace" | "delete" | "destroy" | "list"
    )
}

impl Parser {
    /// Reads and applies every command of the script to `rs`.
    pub(super) fn script(
        &mut self,
        rs: &mut Ruleset,
        marks: &mut HandleMarks,
    ) -> Result<(), Error> {
        loop {
            self.skip_separators();
            let t = self.next();
            let w = match &t.tok {
                Tok::Eof => return Ok(()),
                Tok::Word(w) => w.clone(),
                _ => return self.err(&t, EXPECTED),
            };
            match w.as_str() {
                "table" => {
                    let table = self.table(t.pos)?;
                    edit::add_table(rs, table, false, marks)?;
                }
                "flush" => self.flush(rs, marks)?,
                "add" | "create" => self.add(rs, w == "create", marks)?,
                "insert" => {
                    self.expect_word("rule")?;
                    self.add_rule(rs, true, marks)?;
                }
                "replace" => {
                    self.expect_word("rule")?;
                    let (ti, chain, cpos) = self.chain_ref(rs)?;
                    let (handle, hpos) = self.handle_clause(true)?;
                    let rule = self.rule(handle)?;
                    let c = edit::chain_mut(&mut rs.tables[ti], &chain, cpos)?;
                    edit::replace_rule(c, handle, hpos, rule)?;
                }
                "delete" | "destroy" => self.delete(rs, marks)?,
                "list" => self.list(rs)?,
                "reset" | "rename" | "monitor" | "describe" | "get" | "export" | "import" => {
                    return self.err(
                        &t,
                        format!("`{w}` is not a command a script may carry here"),
                    );
                }
                _ => return self.err(&t, EXPECTED),
            }
            if !self.at_end_of_statement() {
                let t = self.next();
                return self.err(&t, "expected the end of the command");
            }
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<Pos, Error> {
        let t = self.next();
        match &t.tok {
            Tok::Word(x) if x == w => Ok(t.pos),
            _ => self.err(&t, format!("expected `{w}`")),
        }
    }

    /// `[FAMILY] NAME` of a table (the family defaults to `ip`, as in nft).
    fn table_name(&mut self) -> Result<(TableFamily, String, Pos), Error> {
        let (w, p) = self.word("table family or name")?;
        if matches!(w.as_str(), "arp" | "bridge" | "netdev") {
            return Err(Error::at(p, &w, unsupported(&format!("table family {w}"))));
        }
        if let Some(f) = TableFamily::from_name(&w)
            && self.peek_word().is_some()
        {
            let (n, np) = self.word("table name")?;
            return Ok((f, n, np));
        }
        Ok((TableFamily::Ip, w, p))
    }

    /// `[FAMILY] TABLE` that exists: its index.
    fn table_ref(&mut self, rs: &Ruleset) -> Result<usize, Error> {
        let (f, n, p) = self.table_name()?;
        edit::table_index(rs, f, &n)
            .ok_or_else(|| Error::at(p, &n, format!("no such table `{} {n}`", f.name())))
    }

    /// `[FAMILY] TABLE CHAIN`: the table's index and the chain's name and position.
    fn chain_ref(&mut self, rs: &Ruleset) -> Result<(usize, String, Pos), Error> {
        let ti = self.table_ref(rs)?;
        let (c, cp) = self.word("chain name")?;
        Ok((ti, c, cp))
    }

    /// `handle N` (required) or, with `required` false, nothing.
    fn handle_clause(&mut self, required: bool) -> Result<(u64, Pos), Error> {
        if !required && self.peek_word() != Some("handle") {
            return Ok((0, self.peek().pos));
        }
        self.expect_word("handle")?;
        self.number("handle")
    }

    fn number(&mut self, what: &str) -> Result<(u64, Pos), Error> {
        let (w, p) = self.word(what)?;
        let n = w
            .parse::<u64>()
            .map_err(|_| Error::at(p, &w, format!("expected a {what} number")))?;
        Ok((n, p))
    }

    fn add(
        &mut self,
        rs: &mut Ruleset,
        create: bool,
        marks: &mut HandleMarks,
    ) -> Result<(), Error> {
        let (what, wp) = self.word("`table`, `chain`, `rule`, `set` or `element`")?;
        match what.as_str() {
            "table" => {
                let start = self.i;
                let (f, n, p) = self.table_name()?;
                let table = if self.is_punct('{') {
                    self.i = start;
                    self.table(p)?
                } else {
                    Table {
                        family: f,
                        name: n,
                        sets: Vec::new(),
                        maps: Vec::new(),
                        helpers: Vec::new(),
                        chains: Vec::new(),
                        pos: p,
                    }
                };
                edit::add_table(rs, table, create, marks)
            }
            "chain" => {
                let ti = self.table_ref(rs)?;
                let (name, np) = self.word("chain name")?;
                let chain = if self.is_punct('{') {
                    self.i -= 1;
                    let mut h = 0;
                    self.chain(np, &mut h)?
                } else {
                    Chain {
                        name,
                        base: None,
                        rules: Vec::new(),
                        pos: np,
                    }
                };
                edit::add_chain(&mut rs.tables[ti], chain, create, marks)
            }
            "set" | "map" => {
                let ti = self.table_ref(rs)?;
                let pos = self.peek().pos;
                match self.keyed(pos, what == "map")? {
                    Keyed::Set(set) => {
                        crate::rules::validate::set(&set)?;
                        edit::add_set(&mut rs.tables[ti], set, create)
                    }
                    Keyed::Map(map) => edit::add_map(&mut rs.tables[ti], map, create),
                }
            }
            "rule" if !create => self.add_rule(rs, false, marks),
            "element" => self.element(
                rs,
                if create {
                    ElementOp::Create
                } else {
                    ElementOp::Add
                },
            ),
            _ => Err(Error::at(
                wp,
                &what,
                if matches!(
                    what.as_str(),
                    "flowtable" | "counter" | "quota" | "limit" | "ct" | "secmark" | "synproxy"
                ) {
                    unsupported(&format!("add {what}"))
                } else {
                    "expected `table`, `chain`, `rule`, `set` or `element`".into()
                },
            )),
        }
    }

    /// `add rule` / `insert rule`: `[FAMILY] TABLE CHAIN [position N | handle N | index
    /// N] STATEMENTS`.
    fn add_rule(
        &mut self,
        rs: &mut Ruleset,
        insert: bool,
        marks: &mut HandleMarks,
    ) -> Result<(), Error> {
        let (ti, chain, cpos) = self.chain_ref(rs)?;
        let ppos = self.peek().pos;
        let place = match self.peek_word() {
            Some("position" | "handle") => {
                self.next();
                let (handle, _) = self.number("handle")?;
                Place::Handle { handle, insert }
            }
            Some("index") => {
                self.next();
                let (index, _) = self.number("index")?;
                Place::Index { index, insert }
            }
            _ => Place::End { insert },
        };
        let rule = self.rule(0)?;
        edit::add_rule(&mut rs.tables[ti], &chain, cpos, rule, place, ppos, marks)?;
        Ok(())
    }

    /// `add|create|delete element [FAMILY] TABLE SET { ELEMENT, … }` on a named set or
    /// map (an element of a map is `KEY : DATA`; `delete` needs only the key).
    fn element(&mut self, rs: &mut Ruleset, op: ElementOp) -> Result<(), Error> {
        let ti = self.table_ref(rs)?;
        let (name, np) = self.word("set name")?;
        let (key, data) = edit::element_type(&rs.tables[ti], &name, np)?;
        let elements = self.brace_list(|p| {
            let pos = p.peek().pos;
            let (key, data, timeout_ms) =
                p.map_element(&key, data.as_ref(), op == ElementOp::Delete)?;
            Ok(edit::Element {
                key,
                data,
                pos,
                timeout_ms,
            })
        })?;
        Ok(edit::change_elements(
            &mut rs.tables[ti],
            &name,
            np,
            elements,
            op,
        )?)
    }

    /// `list ruleset|tables|chains|sets|maps [FAMILY]`, `list table [F] T`, `list chain
    /// [F] T C`, `list set|map [F] T S`: `nft -f` accepts these (and prints a listing);
    /// here they change nothing, but what they name must exist, as in nft.
    fn list(&mut self, rs: &Ruleset) -> Result<(), Error> {
        let (what, wp) = self.word("`ruleset`, `table`, `chain`, `set` or `map`")?;
        match what.as_str() {
            "ruleset" | "tables" | "chains" | "sets" | "maps" => {
                if self
                    .peek_word()
                    .is_some_and(|f| TableFamily::from_name(f).is_some())
                {
                    self.next();
                }
            }
            "table" => {
                self.table_ref(rs)?;
            }
            "chain" => {
                let (ti, chain, cpos) = self.chain_ref(rs)?;
                let mut t = rs.tables[ti].clone();
                edit::chain_mut(&mut t, &chain, cpos)?;
            }
            "set" | "map" => {
                let ti = self.table_ref(rs)?;
                let (name, np) = self.word("set name")?;
                edit::element_type(&rs.tables[ti], &name, np)?;
            }
            _ => return Err(Error::at(wp, &what, unsupported(&format!("list {what}")))),
        }
        Ok(())
    }

    fn flush(&mut self, rs: &mut Ruleset, marks: &mut HandleMarks) -> Result<(), Error> {
        let (what, wp) = self.word("`ruleset`, `table`, `chain`, `set` or `map`")?;
        match what.as_str() {
            "ruleset" => {
                if let Some(f) = self.peek_word()
                    && TableFamily::from_name(f).is_some()
                {
                    let t = self.next();
                    return self.err(&t, unsupported("flush ruleset FAMILY"));
                }
                rs.tables.clear();
                marks.clear();
                rs.flush = true;
            }
            "table" => {
                let ti = self.table_ref(rs)?;
                // The rules only: the kernel keeps the elements of sets and maps.
                for c in &mut rs.tables[ti].chains {
                    c.rules.clear();
                }
            }
            "chain" => {
                let (ti, chain, cpos) = self.chain_ref(rs)?;
                edit::chain_mut(&mut rs.tables[ti], &chain, cpos)?
                    .rules
                    .clear();
            }
            "set" | "map" => {
                let ti = self.table_ref(rs)?;
                let (name, np) = self.word("set name")?;
                edit::flush_elements(&mut rs.tables[ti], &name, np)?;
            }
            _ => return Err(Error::at(wp, &what, unsupported(&format!("flush {what}")))),
        }
        Ok(())
    }

    fn delete(&mut self, rs: &mut Ruleset, marks: &mut HandleMarks) -> Result<(), Error> {
        let (what, wp) = self.word("`table`, `chain`, `rule`, `set` or `element`")?;
        match what.as_str() {
            "table" => {
                let ti = self.table_ref(rs)?;
                marks.forget(&rs.tables.remove(ti));
                Ok(())
            }
            "chain" => {
                let (ti, chain, cpos) = self.chain_ref(rs)?;
                edit::delete_chain(&mut rs.tables[ti], &chain, cpos)
            }
            "rule" => {
                let (ti, chain, cpos) = self.chain_ref(rs)?;
                let (handle, hpos) = self.handle_clause(true)?;
                let c = edit::chain_mut(&mut rs.tables[ti], &chain, cpos)?;
                edit::delete_rule(c, handle, hpos)
            }
            "set" | "map" => {
                let ti = self.table_ref(rs)?;
                let (name, np) = self.word("set name")?;
                edit::delete_set(&mut rs.tables[ti], &name, np)
            }
            "element" => self.element(rs, ElementOp::Delete),
            _ => Err(Error::at(
                wp,
                &what,
                "expected `table`, `chain`, `rule`, `set` or `element`",
            )),
        }
    }
}
