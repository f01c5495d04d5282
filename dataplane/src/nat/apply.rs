//! Packet rewrite for a NAT binding, on top of [`crate::wire::rewrite`] (incremental
//! checksums), and the conversions between NAT's [`Tuple`] and conntrack's [`FlowKey`].
//!
//! A packet of a NATed connection is rewritten so that the far side sees the other
//! direction's view of the tuple: original-direction packets leave with
//! [`Binding::translated`], reply-direction packets leave with `orig.inverse()`.
//!
//! ICMP errors carrying a NATed flow (RELATED, Linux `nf_nat_icmp_reply_translation`): the
//! embedded header is rewritten to the view of the side the error goes to, and the outer
//! addresses as Linux does: for each manipulation the connection has (source NAT,
//! destination NAT), the corresponding outer address is set whatever it was (the error may
//! come from a router on the path; its address is then replaced, hiding the inside).

use super::alloc::NatTable;
use super::pool::PortPools;
use super::{Binding, Tuple};
use crate::conntrack::{Direction, FlowKey, Table};
use crate::wire::rewrite::{self, RewriteError};
use crate::wire::{IpInfo, L4Info, proto};

impl Tuple {
    /// NAT's view of a conntrack key (ICMP echo: `sport` = `dport` = identifier).
    pub fn from_key(k: &FlowKey) -> Tuple {
        let id_only = matches!(k.proto, proto::ICMP | proto::ICMPV6);
        Tuple {
            src: k.src,
            dst: k.dst,
            proto: k.proto,
            sport: k.sport,
            dport: if id_only { k.sport } else { k.dport },
        }
    }

    /// The conntrack key of this tuple; `like` gives the zone, family and, for ICMP echo,
    /// the message type (conntrack keeps it in `dport`).
    pub fn to_key(&self, like: &FlowKey) -> FlowKey {
        let id_only = matches!(self.proto, proto::ICMP | proto::ICMPV6);
        FlowKey {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: if id_only { like.dport } else { self.dport },
            ..*like
        }
    }
}

/// The connection table of a worker as the [`NatTable`] of a new connection: `taken`
/// converts NAT tuples to keys of the zone and family of the connection's original key.
#[derive(Debug)]
pub struct CtNat<'a> {
    table: &'a mut Table,
    /// The key of the reply direction without NAT (zone, family, ICMP reply type).
    like: FlowKey,
}

impl<'a> CtNat<'a> {
    /// `table` for a connection whose original key is `orig`.
    pub fn new(table: &'a mut Table, orig: &FlowKey) -> Self {
        CtNat {
            table,
            like: orig.inverse(),
        }
    }
}

impl NatTable for CtNat<'_> {
    fn taken(&self, reply: &Tuple) -> bool {
        self.table.tuple_taken(&reply.to_key(&self.like))
    }

    fn ports(&mut self) -> &mut PortPools {
        self.table.port_pools_mut()
    }
}

impl Binding {
    /// The reply key to insert into conntrack for an entry whose original key is `orig`.
    pub fn reply_key(&self, orig: &FlowKey) -> FlowKey {
        self.reply.to_key(&orig.inverse())
    }
}

/// Rewrite `frame` (summarised by `ip`) of a connection with binding `b`, travelling in
/// direction `dir` (the direction conntrack found it in). Fields already equal to the
/// target are left alone, so an un-NATed binding changes nothing. An error leaves the
/// field that failed (and those after it) unchanged; the caller drops the packet.
pub fn apply(
    frame: &mut [u8],
    ip: &IpInfo,
    b: &Binding,
    dir: Direction,
) -> Result<(), RewriteError> {
    // What the packet must look like when it leaves.
    let target = match dir {
        Direction::Original => b.translated(),
        Direction::Reply => b.orig.inverse(),
    };
    match ip.l4 {
        Some(L4Info::IcmpError { inner, .. }) => {
            // The embedded packet travelled the other way; give it the view of this
            // error's receiver: the other direction's tuple on the far side.
            let inner_target = match dir {
                Direction::Original => b.reply,
                Direction::Reply => b.orig,
            };
            if inner.src != inner_target.src {
                rewrite::set_inner_src_addr(frame, ip, &inner, inner_target.src)?;
            }
            if inner.dst != inner_target.dst {
                rewrite::set_inner_dst_addr(frame, ip, &inner, inner_target.dst)?;
            }
            let echo = matches!(inner.proto, proto::ICMP | proto::ICMPV6);
            if inner.sport != inner_target.sport {
                rewrite::set_inner_sport(frame, ip, &inner, inner_target.sport)?;
            }
            if !echo && inner.dport != inner_target.dport {
                rewrite::set_inner_dport(frame, ip, &inner, inner_target.dport)?;
            }
            // Outer addresses by manipulation, as Linux.
            let (src_manip, dst_manip) = match dir {
                Direction::Original => (b.is_snat(), b.is_dnat()),
                Direction::Reply => (b.is_dnat(), b.is_snat()),
            };
            if src_manip && ip.src != target.src {
                rewrite::set_src_addr(frame, ip, target.src)?;
            }
            if dst_manip && ip.dst != target.dst {
                rewrite::set_dst_addr(frame, ip, target.dst)?;
            }
        }
        l4 => {
            if ip.src != target.src {
                rewrite::set_src_addr(frame, ip, target.src)?;
            }
            if ip.dst != target.dst {
                rewrite::set_dst_addr(frame, ip, target.dst)?;
            }
            let (sport, dport) = match l4 {
                Some(L4Info::Tcp(t)) => (t.sport, t.dport),
                Some(L4Info::Udp { sport, dport }) => (sport, dport),
                Some(L4Info::IcmpEcho { id, .. }) => {
                    if id != target.sport {
                        rewrite::set_src_port(frame, ip, target.sport)?;
                    }
                    return Ok(());
                }
                // Later fragments, portless protocols: addresses only.
                _ => return Ok(()),
            };
            if sport != target.sport {
                rewrite::set_src_port(frame, ip, target.sport)?;
            }
            if dport != target.dport {
                rewrite::set_dst_port(frame, ip, target.dport)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
