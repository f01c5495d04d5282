//! The parser's cursor over the tokens: peeking, consuming and error helpers shared by the
//! ruleset structure ([`super::ruleset`]) and the statements ([`super::stmt`]).

use super::lexer::{Tok, Token};
use crate::rules::Error;
use crate::rules::ast::Pos;

pub(super) struct Parser {
    pub(super) toks: Vec<Token>,
    pub(super) i: usize,
}

pub(super) fn unsupported(what: &str) -> String {
    format!("`{what}` is not supported by this appliance")
}

impl Parser {
    pub(super) fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    pub(super) fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    pub(super) fn err<T>(&self, t: &Token, msg: impl Into<String>) -> Result<T, Error> {
        Err(Error::at(t.pos, &t.text(), msg))
    }
    pub(super) fn peek_word(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    pub(super) fn is_punct(&self, c: char) -> bool {
        self.peek().tok == Tok::Punct(c)
    }
    pub(super) fn eat_punct(&mut self, c: char) -> bool {
        if self.is_punct(c) {
            self.next();
            true
        } else {
            false
        }
    }
    pub(super) fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.next();
            true
        } else {
            false
        }
    }
    pub(super) fn expect_punct(&mut self, c: char) -> Result<(), Error> {
        let t = self.next();
        if t.tok == Tok::Punct(c) {
            Ok(())
        } else {
            self.err(&t, format!("expected `{c}`"))
        }
    }
    pub(super) fn word(&mut self, what: &str) -> Result<(String, Pos), Error> {
        let t = self.next();
        match t.tok {
            Tok::Word(w) => Ok((w, t.pos)),
            _ => self.err(&t, format!("expected {what}")),
        }
    }
    pub(super) fn word_or_str(&mut self, what: &str) -> Result<(String, Pos), Error> {
        let t = self.next();
        match t.tok {
            Tok::Word(w) | Tok::Str(w) => Ok((w, t.pos)),
            _ => self.err(&t, format!("expected {what}")),
        }
    }
    pub(super) fn string(&mut self, what: &str) -> Result<String, Error> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            Tok::Word(w) => Ok(w),
            _ => self.err(&t, format!("expected {what}")),
        }
    }
    pub(super) fn skip_separators(&mut self) {
        while matches!(self.peek().tok, Tok::Newline | Tok::Punct(';')) {
            self.next();
        }
    }
    pub(super) fn at_end_of_statement(&self) -> bool {
        matches!(
            self.peek().tok,
            Tok::Newline | Tok::Punct(';') | Tok::Punct('}') | Tok::Eof
        )
    }
}
