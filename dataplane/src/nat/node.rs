//! Active/active NAT port slices (`docs/ha.md`, "Active/active NAT port slices").
//!
//! Two (or more) boxes that both forward share the same masquerade / SNAT addresses, so
//! two of them could pick the same source port of the same (address, protocol) for two
//! different connections to the same server: the server would see one connection, and
//! the synced entries would overwrite each other. Each box therefore takes only its own
//! slice of every SNAT / masquerade port range: node `k` of `n` (numbered from 1, as
//! iptables' `CLUSTERIP --local-node` and `--total-nodes`) the `k`-th of `n` contiguous,
//! equal parts (the first parts one port shorter when the size does not divide).
//!
//! The slice is cut before the per-worker choice (the RSS-aligned search, or the
//! per-worker slice where the reply hash ignores ports), so workers and boxes compose: a
//! port is chosen by at most one worker of at most one box. Ranges with fewer ports than
//! nodes cannot be split: a ruleset with one is refused ([`check_ruleset`], with the
//! statement's line and column), and a binding that meets one anyway (never, after that
//! check) is refused as an exhausted range.

use super::{NatError, NatKind};
use crate::rules::Error;
use crate::rules::ast::{Elem, Elements, MapValue, NatStmt, Pos, Ruleset, Stmt, Value};

/// This box's share of every SNAT / masquerade port range: node `local` of `total`
/// (1-based). The default (1 of 1) is the whole range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSlice {
    local: u16,
    total: u16,
}

impl Default for NodeSlice {
    fn default() -> Self {
        NodeSlice { local: 1, total: 1 }
    }
}

impl NodeSlice {
    /// Node `local` of `total` (1-based); `None` unless `1 <= local <= total`.
    pub fn new(local: u16, total: u16) -> Option<Self> {
        (local >= 1 && local <= total).then_some(NodeSlice { local, total })
    }

    /// This node (1-based).
    pub fn local(&self) -> u16 {
        self.local
    }

    /// The number of nodes.
    pub fn total(&self) -> u16 {
        self.total
    }

    /// This node's part of `lo ..= hi`; `PortExhausted` when it is empty (a range with
    /// fewer ports than nodes).
    pub fn apply(&self, lo: u16, hi: u16) -> Result<(u16, u16), NatError> {
        if self.total <= 1 {
            return Ok((lo, hi));
        }
        split(lo, hi, self.local - 1, self.total)
    }

    /// Why `lo ..= hi` cannot be split among the nodes (`None`: it can).
    pub fn problem(&self, lo: u16, hi: u16) -> Option<String> {
        let size = u32::from(hi.saturating_sub(lo)) + 1;
        (self.total > 1 && lo <= hi && size < u32::from(self.total)).then(|| {
            format!(
                "the port range {lo}-{hi} has {size} port(s), fewer than the {} nodes of \
                 ha.total_nodes: active/active gives each node its own slice of every \
                 SNAT / masquerade port range",
                self.total
            )
        })
    }
}

/// Refuses a ruleset with a SNAT / masquerade port range (in a statement, an anonymous
/// NAT map or a named map a NAT map uses) that `slice` cannot split, naming the
/// statement's (or the named map's) position.
pub fn check_ruleset(rs: &Ruleset, slice: &NodeSlice) -> Result<(), Error> {
    if slice.total() <= 1 {
        return Ok(());
    }
    let source_nat = |n: &NatStmt| matches!(n.kind, NatKind::Snat | NatKind::Masquerade);
    let port_of = |d: &Elem| match d.get(1) {
        Some(Value::Num(p)) => u16::try_from(*p).ok(),
        _ => None,
    };
    let check = |pos: Pos, token: &str, (lo, hi): (u16, u16)| match slice.problem(lo, hi) {
        Some(msg) => Err(Error::at(pos, token, msg)),
        None => Ok(()),
    };
    for t in &rs.tables {
        for stmt in t
            .chains
            .iter()
            .flat_map(|c| &c.rules)
            .flat_map(|r| &r.stmts)
        {
            match stmt {
                Stmt::Nat(n, pos) if source_nat(n) => {
                    if let Some(r) = n.ports {
                        check(*pos, "to", r)?;
                    }
                }
                Stmt::NatMap(m, pos) if source_nat(&m.nat) => match &m.elements {
                    Elements::Anon(v) => {
                        for p in v.iter().filter_map(|(_, d)| port_of(d)) {
                            check(*pos, "map", (p, p))?;
                        }
                    }
                    Elements::Named(name) => {
                        let Some(map) = t.maps.iter().find(|m| &m.name == name) else {
                            continue;
                        };
                        for (_, v) in &map.elements {
                            if let Some(p) = match v {
                                MapValue::Data(d) => port_of(d),
                                _ => None,
                            } {
                                check(map.pos, name, (p, p))?;
                            }
                        }
                    }
                },
                _ => {}
            }
        }
    }
    Ok(())
}

/// Part `w` of `lo ..= hi` split evenly into `n` contiguous parts (a node's slice here,
/// a worker's in `alloc.rs`); `PortExhausted` when it is empty.
pub(super) fn split(lo: u16, hi: u16, w: u16, n: u16) -> Result<(u16, u16), NatError> {
    let size = u32::from(hi - lo) + 1;
    let n = u32::from(n.max(1));
    let w = u32::from(w);
    let a = u32::from(lo) + size * w / n;
    let b = u32::from(lo) + size * (w + 1) / n;
    if w >= n || b <= a {
        return Err(NatError::PortExhausted);
    }
    let a = u16::try_from(a).map_err(|_| NatError::PortExhausted)?;
    let b = u16::try_from(b - 1).map_err(|_| NatError::PortExhausted)?;
    Ok((a, b))
}

#[cfg(test)]
mod tests;
