//! The shape of a compiled ruleset: chains, rules, base-chain lists per hook, per-worker
//! counter blocks; what the lowering builds and the evaluator walks.

use super::classes::FirstPartitions;
use super::ir::CStmt;
use crate::rules::ast::{Kind, Ruleset};
use crate::rules::classify::Classifier;
use crate::rules::names;
use crate::wire::Family;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The appliance's port names and their port indices (from the fwd config).
pub type PortsByName = BTreeMap<String, u16>;

/// The loopback interface name: the appliance has no loopback port, so `iif lo` compiles
/// to a match that no DPDK port satisfies (traffic of the appliance's own stack does not
/// pass the rules).
pub const LOOPBACK: &str = "lo";

#[derive(Debug)]
pub(crate) struct CRule {
    pub stmts: Box<[CStmt]>,
    pub handle: u64,
    pub chain: u32,
    pub index: u32,
    pub cacheable: bool,
}

#[derive(Debug)]
pub(crate) struct CChain {
    /// Global rule ids, in chain order.
    pub rules: Box<[u32]>,
    /// `0..rules.len()`: the linear candidate list.
    pub(super) all: Box<[u32]>,
    pub(super) classifier: Classifier,
    pub(super) policy_drop: bool,
}

#[derive(Debug)]
pub(super) struct BaseEntry {
    pub(super) chain: u32,
    pub(super) family: Option<Family>,
    pub(super) nat: bool,
}

/// Per-worker mutable state: one writer (the worker), relaxed atomics so the control
/// thread may read at any time.
#[derive(Debug)]
pub(super) struct WorkerBlock {
    /// packets, bytes per rule.
    pub(super) counters: Box<[[AtomicU64; 2]]>,
    /// credit (ns), last refill time (ns) per `limit` statement.
    pub(super) limits: Box<[[AtomicU64; 2]]>,
}

/// An immutable compiled ruleset (plus its per-worker counter blocks).
#[derive(Debug)]
pub struct CompiledRuleset {
    pub(crate) source: Ruleset,
    pub(super) hooks: [Vec<BaseEntry>; 5],
    pub(crate) chains: Vec<CChain>,
    /// Chain id → (table index, chain index in the table).
    pub(crate) chain_pos: Vec<(u32, u32)>,
    pub(crate) rules: Vec<CRule>,
    pub(super) workers: Box<[WorkerBlock]>,
    /// packets, bytes per rule carried over from earlier generations (an unchanged rule
    /// of an incremental change keeps its count); written on the control thread only.
    pub(super) carried: Box<[[AtomicU64; 2]]>,
    pub(super) ct_counts: Box<[Arc<AtomicU32>]>,
    /// The dynamic sets and meters (`compile/dynstmt.rs`), shared by every worker.
    pub(super) dynsets: Box<[super::dynstore::DynEntry]>,
    pub(crate) generation: u64,
    /// The first-packet classes of the address and port fields (`rules/first.rs`).
    pub(crate) first: FirstPartitions,
    /// The packet facts beyond the summary the rules read (`facts.rs`).
    pub(super) needs: super::facts::Needs,
}

/// Compiles a ruleset for `workers` workers within the default [`Limits`]. Runs
pub(super) fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Name of a ct state bit (for messages).
pub fn ct_state_name(bit: u8) -> &'static str {
    names::name_of(Kind::CtState, u64::from(bit)).unwrap_or("?")
}
