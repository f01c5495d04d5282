//! The nftables text parser: a small lexer ([`lexer`]) and a recursive-descent parser over
//! it ([`cursor`] the token cursor, [`ruleset`] tables/sets/chains/rules, [`stmt`] the
//! statements); [`value`] parses single values (shared with the JSON reader). Every error
//! carries the line and column of the offending token.

mod cursor;
mod lexer;
mod ruleset;
mod stmt;
mod value;

pub(crate) use value::parse_value;

use super::Error;
use super::ast::Ruleset;

/// Parses nftables text into a [`Ruleset`].
pub fn parse(src: &str) -> Result<Ruleset, Error> {
    let toks = lexer::lex(src)?;
    let mut p = cursor::Parser { toks, i: 0 };
    let rs = p.ruleset()?;
    super::validate::ruleset(&rs)?;
    Ok(rs)
}
