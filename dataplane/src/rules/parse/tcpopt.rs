//! `tcp option …`: the matches on TCP options (`NAME exists|missing`, `maxseg size`,
//! `window count`) and, after `maxseg size`, MSS clamping (`set`, `mangle.rs`).

use super::cursor::{Parser, unsupported};
use crate::rules::Error;
use crate::rules::ast::{Field, Pos, Stmt};

/// The option fields nft names; those of them this appliance matches are `Field`s.
const OPTION_FIELDS: &[&str] = &[
    "kind", "length", "size", "count", "left", "right", "tsval", "tsecr",
];

impl Parser {
    /// After `tcp`, with `option` next.
    pub(super) fn tcp_option(&mut self, pos: Pos) -> Result<Stmt, Error> {
        let f = self.tcp_option_field()?;
        if self.peek_word() == Some("set") {
            if f == Field::TcpOptMaxsegSize {
                return self.mss_set(pos);
            }
            let (a, b) = f.words();
            let t = self.next();
            return self.err(
                &t,
                format!("setting `{a} {b}` is not supported by this appliance"),
            );
        }
        self.match_rest(f, pos)
    }

    /// The field after `tcp`, with `option` next: `option NAME` (a presence) or `option
    /// NAME FIELD`.
    pub(super) fn tcp_option_field(&mut self) -> Result<Field, Error> {
        self.next();
        let (name, np) = self.word("a TCP option name")?;
        let (words, at) = match self.peek_word() {
            Some(w) if OPTION_FIELDS.contains(&w) => {
                let (field, fp) = self.word("an option field")?;
                ((format!("tcp option {name}"), field), fp)
            }
            _ => (("tcp option".to_owned(), name), np),
        };
        Field::from_words(&words.0, &words.1).ok_or_else(|| {
            let what = format!("{} {}", words.0, words.1);
            Error::at(at, &words.1, unsupported(&what))
        })
    }
}
