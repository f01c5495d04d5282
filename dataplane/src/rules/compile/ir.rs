//! The compiled form of rules (the statement IR the lowering produces and the classifier
//! and evaluator read) and the facts and outcomes of one evaluation.

use super::facts::Facts;
use super::keytable::KeyTable;
use crate::nat::NatAction;
use crate::rules::ast::{Field, Reject};
use crate::wire::IpInfo;
use arrayvec::ArrayVec;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// The packet and connection facts the rules read. `mark` and `ct_mark` are updated by
/// `meta mark set` / `ct mark set` during evaluation (later rules see the new value).
#[derive(Clone, Copy, Debug)]
pub struct PacketCtx<'a> {
    pub ip: &'a IpInfo,
    /// Ingress port index (`None`: locally generated, the output hook).
    pub iif: Option<u16>,
    /// Egress port index (`None` before routing: prerouting and input).
    pub oif: Option<u16>,
    /// One conntrack state bit ([`ct_state`]).
    pub ct_state: u8,
    /// Conntrack status bits (nft `ct status` values).
    pub ct_status: u32,
    pub ct_mark: u32,
    pub mark: u32,
    /// Packet length in bytes (for counters).
    pub len: u32,
    /// First packet of a connection: `nat` chains are consulted only then. The caller
    /// (the worker pipeline) sets it on a conntrack miss that creates an entry.
    pub first_packet: bool,
    /// Facts only some statements read (`facts.rs`; the defaults where the ruleset reads
    /// none).
    pub facts: Facts,
}

/// `ct state` bits as nftables numbers them.
pub mod ct_state {
    pub const INVALID: u8 = 1;
    pub const ESTABLISHED: u8 = 2;
    pub const RELATED: u8 = 4;
    pub const NEW: u8 = 8;
    pub const UNTRACKED: u8 = 64;
}

/// The final verdict of a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Drop,
    Reject(Reject),
}

/// A rule of the compiled ruleset: its index and its handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub id: u32,
    pub handle: u64,
}

/// A held `ct count` slot: the connection counts against its rule until this is dropped
/// (store it in the conntrack entry; drop it when the connection dies).
#[derive(Debug)]
pub struct CtCountToken(pub(super) Arc<AtomicU32>);

impl Drop for CtCountToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// At most this many `ct count` tokens are held per connection; further `ct count`
/// statements on the same path are evaluated without holding a slot.
pub const MAX_CT_TOKENS: usize = 4;

/// At most this many counted rules are listed per [`EvalResult::counted`]; a longer path
/// sets [`EvalResult::counted_overflow`].
pub const MAX_COUNTED: usize = 16;

/// The outcome of one hook.
#[derive(Debug)]
pub struct EvalResult {
    pub verdict: Decision,
    /// The rule whose verdict decided (`None`: a chain policy or no chain at all).
    pub rule: Option<RuleRef>,
    /// The NAT decision of the `nat` chains (first packet only).
    pub nat: Option<NatAction>,
    pub notrack: bool,
    /// `meta mark set` (the last one evaluated).
    pub meta_mark: Option<u32>,
    /// `ct mark set` (the last one evaluated).
    pub ct_mark: Option<u32>,
    /// A `log` statement ran: its rule (the caller logs, rate-limited).
    pub log: Option<RuleRef>,
    /// The verdict depends only on the flow, direction and ct state: it may be cached in
    /// the conntrack entry for this generation.
    pub cacheable: bool,
    /// `ct count` slots the new connection holds.
    pub ct_count: ArrayVec<CtCountToken, MAX_CT_TOKENS>,
    /// Ids of the rules whose counter this evaluation bumped, in order (a rule counted
    /// twice is listed twice). With `cacheable`, a later packet of the flow would count
    /// the same rules: [`CompiledRuleset::credit`] them instead of evaluating.
    pub counted: ArrayVec<u32, MAX_COUNTED>,
    /// More than [`MAX_COUNTED`] counter bumps: `counted` is incomplete.
    pub counted_overflow: bool,
    /// A statement with state or a side effect ran (`limit`, `ct count`, `log`, mark
    /// setting): another packet of the same first-packet class
    /// ([`crate::rules::first::FirstKey`]) may be treated differently, so this result is
    /// not cached for first packets.
    pub stateful: bool,
    /// `tcp option maxseg size set`: the lowered MSS to write (the option's offset is in
    /// [`PacketCtx::facts`]).
    pub mss: Option<u16>,
    /// `ip|ip6 dscp set`: the DSCP to write before the packet leaves.
    pub dscp: Option<u8>,
    /// `ct helper set`: the helper the new connection gets (Linux assigns it before
    /// confirmation; a confirmed connection keeps its own).
    pub helper: Option<crate::helper::HelperKind>,
}

impl EvalResult {
    pub(super) fn new() -> Self {
        EvalResult {
            verdict: Decision::Accept,
            rule: None,
            nat: None,
            notrack: false,
            meta_mark: None,
            ct_mark: None,
            log: None,
            cacheable: true,
            ct_count: ArrayVec::new(),
            counted: ArrayVec::new(),
            counted_overflow: false,
            stateful: false,
            mss: None,
            dscp: None,
            helper: None,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Test {
    /// Value within one of the sorted, disjoint inclusive intervals (a named set's table
    /// is shared by every rule that uses it).
    In(Arc<[(u128, u128)]>),
    /// Any of the bits set.
    AnyBits(u128),
    /// `value & mask == expect`.
    Masked { mask: u128, expect: u128 },
}

#[derive(Clone, Debug)]
pub(crate) struct CMatch {
    pub field: Field,
    pub(super) neg: bool,
    pub(super) test: Test,
}

impl CMatch {
    /// The intervals a packet's field must fall in, when that is what the match tests.
    pub(crate) fn intervals(&self) -> Option<&[(u128, u128)]> {
        match (&self.test, self.neg) {
            (Test::In(v), false) => Some(v),
            _ => None,
        }
    }

    /// The intervals the match tests the field against (negated or not); `None` for a
    /// mask or bit test.
    pub(crate) fn tested_intervals(&self) -> Option<&[(u128, u128)]> {
        match &self.test {
            Test::In(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum CVerdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(u32),
    Goto(u32),
}

#[derive(Clone, Debug)]
pub(crate) enum CStmt {
    Match(CMatch),
    Counter,
    Verdict(CVerdict),
    Reject(Reject),
    Log,
    Limit {
        slot: u32,
        cost_ns: u64,
        cap_ns: u64,
        over: bool,
    },
    CtCount {
        slot: u32,
        limit: u32,
        over: bool,
    },
    Notrack,
    MetaMarkSet(u32),
    CtMarkSet(u32),
    /// `ct helper set`: the helper a new connection gets.
    CtHelperSet(crate::helper::HelperKind),
    Nat(NatAction),
    /// A concatenation in an anonymous set (`!=`: `neg`).
    Lookup {
        table: Arc<KeyTable>,
        neg: bool,
    },
    /// A verdict map: the element's verdict; no element: the rule ends. `count`: the rule
    /// has no counter before this statement, so a hit bumps the rule's counter.
    /// `timed`: a named map whose elements may time out (an expired element is no hit).
    Vmap {
        table: Arc<KeyTable>,
        verdicts: Box<[CVerdict]>,
        count: bool,
        timed: Option<super::dynir::TimedMap>,
    },
    /// A NAT map: the element's NAT action ends the chain; no element: the rule ends.
    /// `count` as for [`CStmt::Vmap`].
    NatMap {
        table: Arc<KeyTable>,
        actions: Box<[NatAction]>,
        count: bool,
        timed: Option<super::dynir::TimedMap>,
    },
    /// A dynamic set's match or update (`compile/dynstmt.rs`).
    Dyn(super::dynir::DynStmt),
    /// `tcp option maxseg size set` (MSS clamping).
    MssSet(crate::rules::ast::MssValue),
    /// `ip dscp set` (false) / `ip6 dscp set` (true): the DSCP to write.
    DscpSet(bool, u8),
}

impl CStmt {
    /// The key fields of a hash-table lookup (`Lookup`, `Vmap`, `NatMap`).
    pub(crate) fn key_fields(&self) -> &[Field] {
        match self {
            CStmt::Lookup { table, .. }
            | CStmt::Vmap { table, .. }
            | CStmt::NatMap { table, .. } => table.fields(),
            _ => &[],
        }
    }
}
