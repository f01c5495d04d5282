//! The compiled form of the dynamic-set statements (`dynstmt.rs` lowers and runs them;
//! `dynstore.rs` is the store they work on).

use super::dynkey::Packed;
use crate::rules::ast::{Field, SetOp};
use std::sync::Arc;

/// A named map whose elements may time out (`flags timeout`, `timeout 30s`): its
/// elements stay in the map's hash table, and each one with a timeout (its own or the
/// map's) also has its key in the store of dynamic set `set`, which says whether it is
/// still live (docs/rules.md, "Element timeouts in maps").
#[derive(Clone, Debug)]
pub(crate) struct TimedMap {
    pub set: u32,
    /// Per element of the map (the hash table's element index): its store key where it
    /// has a timeout, `None` where it never expires.
    pub keys: Arc<[Option<Packed>]>,
}

/// A compiled statement on a dynamic set.
#[derive(Clone, Debug)]
pub(crate) enum DynStmt {
    /// `KEY [!=] @SET`: the packet's key (one field or a concatenation) is a live element.
    Match {
        set: u32,
        key: Box<[Field]>,
        neg: bool,
    },
    /// `add|update @SET { KEY [timeout T] [limit …] [ct count …] }` and `meter`.
    Elem {
        set: u32,
        key: Box<[Field]>,
        op: SetOp,
        timeout_ns: Option<u64>,
        limit: Option<ElemLimit>,
        count: Option<(u32, bool)>,
    },
}

/// A per-element `limit` (costs in ns of the workers' clock).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ElemLimit {
    pub cost_ns: u64,
    pub cap_ns: u64,
    pub over: bool,
}
