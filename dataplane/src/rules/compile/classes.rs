//! The first-packet classes of a ruleset's address and port fields, cut at every interval
//! boundary of its matches (built by `lower`, kept in the compiled ruleset, read by
//! `rules::first`, whose module docs say why equal classes mean equal evaluation).

use super::ir::CStmt;
use crate::rules::ast::Field;

/// The partition of one address or port field.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cuts {
    /// Sorted, distinct starts of elementary intervals (besides 0).
    starts: Box<[u128]>,
    /// The field is also tested with a mask or bit set: the key holds the value itself.
    exact: bool,
}

impl Cuts {
    fn build(starts: Vec<u128>, exact: bool) -> Self {
        let mut s = starts;
        s.sort_unstable();
        s.dedup();
        Cuts {
            starts: s.into(),
            exact,
        }
    }

    /// The class of value `v`: its elementary interval, or `v` itself where exact.
    pub(crate) fn class(&self, v: u128) -> u128 {
        if self.exact {
            v
        } else {
            self.starts.partition_point(|&s| s <= v) as u128
        }
    }

    /// Number of classes (exact fields count as 0).
    #[cfg(test)]
    fn len(&self) -> usize {
        if self.exact { 0 } else { self.starts.len() + 1 }
    }
}

/// The partitions of a ruleset's address and port fields (built by `compile`).
#[derive(Clone, Debug, Default)]
pub(crate) struct FirstPartitions {
    pub(crate) src: Cuts,
    pub(crate) dst: Cuts,
    pub(crate) sport: Cuts,
    pub(crate) dport: Cuts,
    /// Some match reads a field the first-packet key does not hold
    /// ([`keyed`]): the ruleset's first packets are never cached.
    pub(crate) unkeyed: bool,
}

/// Whether `rules::first::FirstKey` holds everything a match on `f` reads. Exhaustive on purpose: a
/// new field must be decided here; one the key does not hold answers `false`, and a
/// ruleset that matches on it is evaluated for every first packet.
pub(crate) fn keyed(f: Field) -> bool {
    match f {
        Field::IpSaddr
        | Field::IpDaddr
        | Field::IpProtocol
        | Field::Ip6Saddr
        | Field::Ip6Daddr
        | Field::Ip6Nexthdr
        | Field::MetaL4proto
        | Field::MetaNfproto
        | Field::MetaMark
        | Field::TcpSport
        | Field::TcpDport
        | Field::TcpFlags
        | Field::UdpSport
        | Field::UdpDport
        | Field::ThSport
        | Field::ThDport
        | Field::IcmpType
        | Field::Icmpv6Type
        | Field::IcmpCode
        | Field::Icmpv6Code
        | Field::Iif
        | Field::Oif
        | Field::Iifname
        | Field::Oifname
        | Field::CtState
        | Field::CtStatus
        | Field::CtMark => true,
        // Facts beyond the summary (`facts.rs`): not in the key.
        Field::MetaPkttype
        | Field::IpDscp
        | Field::Ip6Dscp
        | Field::CtDirection
        | Field::CtExpiration
        | Field::CtOrigIpSaddr
        | Field::CtOrigIpDaddr
        | Field::CtReplyIpSaddr
        | Field::CtReplyIpDaddr
        | Field::CtOrigIp6Saddr
        | Field::CtOrigIp6Daddr
        | Field::CtReplyIp6Saddr
        | Field::CtReplyIp6Daddr
        | Field::CtOrigProtoSrc
        | Field::CtOrigProtoDst
        | Field::CtReplyProtoSrc
        | Field::CtReplyProtoDst
        | Field::FibDaddrType
        | Field::FibSaddrIifOif
        | Field::TcpOptMaxseg
        | Field::TcpOptWindow
        | Field::TcpOptSackPerm
        | Field::TcpOptTimestamp
        | Field::TcpOptMaxsegSize
        | Field::TcpOptWindowCount => false,
    }
}

/// Which partition a field's interval tests cut, if any.
fn dimension(f: Field) -> Option<usize> {
    match f {
        Field::IpSaddr | Field::Ip6Saddr => Some(0),
        Field::IpDaddr | Field::Ip6Daddr => Some(1),
        Field::TcpSport | Field::UdpSport | Field::ThSport => Some(2),
        Field::TcpDport | Field::UdpDport | Field::ThDport => Some(3),
        _ => None,
    }
}

impl FirstPartitions {
    /// The partitions cut by every match of `rules` (compiled statements).
    pub(crate) fn build<'a>(rules: impl Iterator<Item = &'a [CStmt]>) -> Self {
        let mut starts: [Vec<u128>; 4] = Default::default();
        let mut exact = [false; 4];
        let mut unkeyed = false;
        for stmts in rules {
            for s in stmts {
                // A hash-table key field is keyed by its value (the table's elements are
                // not cut into intervals).
                for &f in s.key_fields() {
                    unkeyed |= !keyed(f);
                    if let Some(d) = dimension(f) {
                        exact[d] = true;
                    }
                }
                let CStmt::Match(m) = s else { continue };
                unkeyed |= !keyed(m.field);
                let Some(d) = dimension(m.field) else {
                    continue;
                };
                match m.tested_intervals() {
                    Some(iv) => {
                        for &(lo, hi) in iv {
                            starts[d].push(lo);
                            if let Some(next) = hi.checked_add(1) {
                                starts[d].push(next);
                            }
                        }
                    }
                    None => exact[d] = true,
                }
            }
        }
        let [s, d, sp, dp] = starts;
        FirstPartitions {
            src: Cuts::build(s, exact[0]),
            dst: Cuts::build(d, exact[1]),
            sport: Cuts::build(sp, exact[2]),
            dport: Cuts::build(dp, exact[3]),
            unkeyed,
        }
    }

    /// Classes per field: source, destination, source port, destination port (0: the
    /// field is keyed by its value).
    #[cfg(test)]
    pub(crate) fn class_counts(&self) -> [usize; 4] {
        [
            self.src.len(),
            self.dst.len(),
            self.sport.len(),
            self.dport.len(),
        ]
    }
}
