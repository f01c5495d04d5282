//! Dynamic-set statements (`add @s { … }`, `update @s { … }`, `meter NAME { … }`) and the
//! dynamic-set options of a set declaration (`rules/dynset.rs` holds the forms).

use super::cursor::{Parser, unsupported};
use super::value::parse_num;
use crate::rules::Error;
use crate::rules::ast::*;
use crate::rules::dynset::parse_duration;

impl Parser {
    /// A time (`10m`, `1h30m`) in milliseconds.
    pub(super) fn duration(&mut self) -> Result<u64, Error> {
        let (w, p) = self.word("a time (`10m`, `30s`)")?;
        let ms =
            parse_duration(&w).ok_or_else(|| Error::at(p, &w, "expected a time such as `10m`"))?;
        match crate::rules::dynset::timeout_problem(ms) {
            Some(m) => Err(Error::at(p, &w, m)),
            None => Ok(ms),
        }
    }

    /// `size N` after its keyword.
    pub(super) fn set_size(&mut self) -> Result<u32, Error> {
        let (w, p) = self.word("set size")?;
        parse_num(&w)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| Error::at(p, &w, "expected a positive set size"))
    }

    /// `add|update @SET { KEY [timeout T] [STMT]… }` after `add`/`update`.
    pub(super) fn set_elem_stmt(&mut self, op: SetOp, pos: Pos) -> Result<Stmt, Error> {
        self.expect_punct('@')?;
        let (set, _) = self.word("set name")?;
        self.elem_body(op, set, None, pos)
    }

    /// `meter NAME [size N] { KEY [timeout T] STMT }` after `meter`.
    pub(super) fn meter_stmt(&mut self, pos: Pos) -> Result<Stmt, Error> {
        let (name, _) = self.word("meter name")?;
        let size = if self.eat_word("size") {
            self.set_size()?
        } else {
            DEFAULT_SIZE
        };
        self.elem_body(SetOp::Update, name, Some(size), pos)
    }

    fn elem_body(
        &mut self,
        op: SetOp,
        set: String,
        meter: Option<u32>,
        pos: Pos,
    ) -> Result<Stmt, Error> {
        self.expect_punct('{')?;
        let key = self.set_key()?;
        let mut timeout_ms = None;
        if self.eat_word("timeout") {
            timeout_ms = Some(self.duration()?);
        }
        if self.eat_word("expires") {
            let t = self.next();
            return self.err(&t, unsupported("`expires` in a set statement"));
        }
        let mut stmts = Vec::new();
        while !self.is_punct('}') {
            let t = self.peek().clone();
            let s = self.stmt()?;
            if !matches!(
                s,
                Stmt::Limit { .. } | Stmt::CtCount { .. } | Stmt::Counter { .. }
            ) {
                return self.err(
                    &t,
                    "only `limit`, `ct count` and `counter` may stand in a set element",
                );
            }
            stmts.push(s);
        }
        self.expect_punct('}')?;
        Ok(Stmt::SetElem(
            SetElem {
                op,
                set,
                key,
                timeout_ms,
                stmts,
                meter,
            },
            pos,
        ))
    }
}
