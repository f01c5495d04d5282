//! The compiled ruleset and its evaluation.
//!
//! [`compile`] turns a checked [`Ruleset`] into an immutable [`CompiledRuleset`]: base
//! chains grouped by hook and sorted by priority, rules as flat statement arrays with every
//! value turned into sorted `u128` intervals, and one [`Classifier`] per chain that picks
//! the rules a packet can match. [`CompiledRuleset::eval`] walks the chains with nftables
//! semantics; [`CompiledRuleset::eval_linear`] does the same with every rule as a candidate
//! (the oracle the classifier is tested against).
//!
//! Mutable state lives in per-worker blocks of relaxed atomics with one writer each
//! (counters, `limit` buckets); `ct count` connection counts are shared atomics per rule,
//! touched only by new connections.
//!
//! The statement IR is in [`ir`], the ruleset's shape in [`ruleset`], the lowering in
//! [`lower`], the evaluator in [`eval`], the hash tables of
//! concatenations and verdict maps in [`keytable`].

mod classes;
mod dynir;
mod dynkey;
mod dynstmt;
mod dynstore;
mod eval;
mod facts;
mod facts_eval;
mod ir;
mod keytable;
mod lower;
mod ruleset;

pub use super::ast::addr_to_u128;
pub(crate) use classes::Cuts;
pub use dynkey::{DynKey, Packed};
pub use dynstmt::MapElement;
pub use dynstore::{DynElement, DynStore, NEVER};
pub(crate) use eval::icmp_code;
pub use facts::{CtTuple, Facts, Needs, TCP_MSS_DEFAULT, rt_mss};
pub(crate) use ir::CStmt;
pub use ir::{
    CtCountToken, Decision, EvalResult, MAX_COUNTED, MAX_CT_TOKENS, PacketCtx, RuleRef, ct_state,
};
pub use lower::{compile, compile_with};
pub use ruleset::{CompiledRuleset, LOOPBACK, PortsByName, ct_state_name};
