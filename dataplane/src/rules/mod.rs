//! The rule language: nftables text and JSON, checked, compiled and evaluated.
//!
//! - [`parse`](parse::parse): nftables text → [`ast::Ruleset`] (errors carry line:column).
//! - [`json`]: the `nft -j` JSON form ↔ the same AST; [`print`]: AST → text.
//! - [`check`](check::check): undefined chains/sets, jump loops, NAT placement, families.
//! - [`compile`](compile::compile): AST → immutable [`CompiledRuleset`] with a tuple-space
//!   classifier per chain ([`classify`]); [`CompiledRuleset::eval`] evaluates a hook.
//! - [`generation`]: generations ([`Publisher`] / [`WorkerRuleset`]).
//! - [`view`]: the control protocol's `RulesetView` / `RuleCounter`.
//!
//! See `docs/rules.md` for the supported subset and the deviations from the kernel.

pub mod ast;
pub mod check;
pub mod classify;
pub mod compile;
pub mod generation;
pub mod json;
pub mod limits;
mod names;
pub mod parse;
pub mod print;
pub mod validate;
pub mod view;

#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod tests;

pub use ast::{Hook, Ruleset};
pub use compile::{
    CompiledRuleset, CtCountToken, Decision, EvalResult, PacketCtx, PortsByName, RuleRef, compile,
    compile_with, ct_state,
};
pub use generation::{Publisher, WorkerRuleset};

/// A ruleset error: where (1-based line and column; 0:0 for JSON, where `token` is the
/// JSON path), the offending token, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {msg} (at `{token}`)")]
pub struct Error {
    pub line: u32,
    pub col: u32,
    pub token: String,
    pub msg: String,
}

impl Error {
    pub(crate) fn at(pos: ast::Pos, token: &str, msg: impl Into<String>) -> Self {
        Error {
            line: pos.line,
            col: pos.col,
            token: token.to_owned(),
            msg: msg.into(),
        }
    }

    pub(crate) fn json(path: &str, msg: impl Into<String>) -> Self {
        Error {
            line: 0,
            col: 0,
            token: path.to_owned(),
            msg: msg.into(),
        }
    }
}

/// Parses text, checks it and compiles it within the default [`limits::Limits`].
pub fn load_text(src: &str, ports: &PortsByName, workers: usize) -> Result<CompiledRuleset, Error> {
    load_text_with(src, ports, workers, &limits::Limits::default())
}

/// Parses text, checks it and compiles it within `limits` (the text's size is checked
/// before it is parsed).
pub fn load_text_with(
    src: &str,
    ports: &PortsByName,
    workers: usize,
    limits: &limits::Limits,
) -> Result<CompiledRuleset, Error> {
    limits.check_text(src)?;
    compile_with(&parse::parse(src)?, ports, workers, limits)
}
