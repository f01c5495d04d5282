//! The rule language: nftables text and JSON, checked, compiled and evaluated.
//!
//! - [`parse`](parse::parse): nftables text → [`ast::Ruleset`] (errors carry line:column).
//! - [`json`]: the `nft -j` JSON form ↔ the same AST; [`print`]: AST → text.
//! - [`check`](check::check): undefined chains/sets, jump loops, NAT placement, families.
//! - [`compile`](compile::compile): AST → immutable [`CompiledRuleset`] with a tuple-space
//!   classifier per chain ([`classify`]); [`CompiledRuleset::eval`] evaluates a hook.
//! - [`first`]: first-packet classes ([`FirstKey`]) and their verdict cache.
//! - [`generation`]: generations ([`Publisher`] / [`WorkerRuleset`]).
//!
//! See `docs/rules.md` for the supported subset and the deviations from the kernel.

pub mod ast;
pub mod check;
pub mod classify;
pub mod compile;
pub mod dynlist;
pub mod dynset;
pub mod edit;
mod error;
mod facts;
pub mod first;
pub mod generation;
pub mod helper;
mod ident;
pub mod iptables;
pub mod json;
pub mod limits;
pub mod mangle;
mod names;
pub mod parse;
pub mod print;
mod tcpopt;
pub mod validate;

#[cfg(test)]
mod dscp_tests;
#[cfg(test)]
mod dynset_tests;
#[cfg(test)]
mod edit_tests;
#[cfg(test)]
mod facts_tests;
#[cfg(test)]
mod mangle_tests;
#[cfg(test)]
mod map_timeouts_tests;
#[cfg(test)]
mod maps_tests;
#[cfg(test)]
mod named_maps_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod tcpopt_tests;
#[cfg(test)]
pub(crate) mod tests;

pub use ast::{Hook, Ruleset};
pub use compile::{
    CompiledRuleset, CtCountToken, Decision, EvalResult, PacketCtx, PortsByName, RuleRef, compile,
    compile_with, ct_state,
};
pub use error::Error;
pub use first::{FirstCache, FirstKey, FirstVerdict};
pub use generation::{Publisher, WorkerRuleset};

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

/// Prints a ruleset as text and checks that the text parses back to the same ruleset
/// (handles aside: the parser numbers rules itself). This is the only form in which a
/// ruleset is persisted, so the state directory always holds what `fwd` can read again.
pub fn to_text_verified(rs: &Ruleset) -> Result<String, Error> {
    let text = print::to_text(rs);
    let back = parse::parse(&text).map_err(|e| Error {
        msg: format!(
            "the ruleset prints as text that does not read back: {}",
            e.msg
        ),
        ..e
    })?;
    match print::first_difference(rs, &back) {
        None => Ok(text),
        Some((pos, what)) => Err(Error::at(
            pos,
            &what,
            "the ruleset prints as text that reads back differently",
        )),
    }
}
