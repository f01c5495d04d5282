//! The compiled form of the dynamic-set statements (`dynstmt.rs` lowers and runs them;
//! `dynstore.rs` is the store they work on).

use crate::rules::ast::{Field, SetOp};

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
