//! Packet facts beyond the parsed summary that some statements read: the TCP MSS option
//! and the route's MSS for MSS clamping; the packet type, DSCP, conntrack direction,
//! tuples and time left, and the `fib` lookups for matches. The worker fills only the
//! facts the loaded ruleset reads ([`CompiledRuleset::needs`]); the rest keep their
//! defaults.
//!
//! None of these facts is part of the first-packet key: a ruleset matching on one is
//! never served from the first-packet cache (`classes.rs`, `keyed`), and the MSS
//! statement is marked stateful when it runs. The verdict cache (and so the fast path)
//! keeps the verdicts of rules reading the facts fixed for a flow and direction (`ct
//! direction`, the tuples, `fib`: a route change starts a new epoch); a rule reading the
//! DSCP, the packet type or the time left, or mangling, is not cacheable (`lower.rs`,
//! `flow_field`).

use super::ir::CStmt;
use super::ruleset::CompiledRuleset;
use crate::rules::ast::{Field, MssValue, addr_to_u128};
use crate::wire::tcpopt::Mss;
use crate::wire::{Addr, Family};

/// One direction's tuple of a connection: source, destination, ports (ICMP: the id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTuple {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
}

/// The facts of one packet (and hook) that only some rulesets read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The MSS option ([`Needs::MSS`]).
    pub mss: Mss,
    /// What `rt mtu` writes ([`Needs::RT_MSS`], [`rt_mss`]).
    pub rt_mss: u16,
    /// `meta pkttype`: 0 host, 1 broadcast, 2 multicast, 3 other ([`Needs::PKTTYPE`]).
    pub pkttype: u8,
    /// The DSCP, the top six bits of the IPv4 TOS / IPv6 traffic class ([`Needs::DSCP`]).
    pub dscp: u8,
    /// `ct direction` (0 original, 1 reply; `None`: no connection) ([`Needs::CT`]).
    pub ct_dir: Option<u8>,
    /// The connection's original and reply tuples ([`Needs::CT`]).
    pub ct_tuples: Option<[CtTuple; 2]>,
    /// Milliseconds until the connection expires (0 before it is confirmed, as in
    /// Linux) ([`Needs::CT_EXPIRATION`]).
    pub ct_expiration: Option<u32>,
    /// `fib daddr type` ([`Needs::FIB`]; `crate::rules::facts::FIB_TYPES` numbers).
    pub fib_daddr_type: u8,
    /// `fib saddr . iif oif`: the route back to the source leaves by the input port
    /// ([`Needs::FIB`]).
    pub fib_rpf: bool,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            mss: Mss::NotTcp,
            rt_mss: TCP_MSS_DEFAULT,
            pkttype: 0,
            dscp: 0,
            ct_dir: None,
            ct_tuples: None,
            ct_expiration: None,
            fib_daddr_type: 0,
            fib_rpf: false,
        }
    }
}

/// The facts a ruleset reads, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs(u32);

impl Needs {
    pub const MSS: u32 = 1;
    pub const RT_MSS: u32 = 1 << 1;
    pub const PKTTYPE: u32 = 1 << 2;
    pub const DSCP: u32 = 1 << 3;
    pub const CT: u32 = 1 << 4;
    pub const CT_EXPIRATION: u32 = 1 << 5;
    pub const FIB: u32 = 1 << 6;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Any fact at all (the worker's one test per packet).
    pub fn any(self) -> bool {
        self.0 != 0
    }

    pub(super) fn of_stmt(&mut self, s: &CStmt) {
        if let CStmt::Match(m) = s {
            self.0 |= Needs::of_field(m.field);
        }
        for &f in s.key_fields() {
            self.0 |= Needs::of_field(f);
        }
        if let CStmt::MssSet(v) = s {
            self.0 |= Needs::MSS;
            if *v == MssValue::RtMtu {
                self.0 |= Needs::RT_MSS;
            }
        }
    }
}

impl Needs {
    fn of_field(f: Field) -> u32 {
        match f {
            Field::MetaPkttype => Needs::PKTTYPE,
            Field::IpDscp | Field::Ip6Dscp => Needs::DSCP,
            Field::CtDirection => Needs::CT,
            f if f.is_ct_tuple() => Needs::CT,
            Field::CtExpiration => Needs::CT_EXPIRATION,
            Field::FibDaddrType | Field::FibSaddrIifOif => Needs::FIB,
            _ => 0,
        }
    }
}

/// The value of a fact field for the evaluator (`None`: the match fails, as the kernel's
/// expression breaks the rule: no connection, or an address of the other family).
pub(super) fn field_value(f: Field, ctx: &super::PacketCtx<'_>) -> Option<u128> {
    let x = &ctx.facts;
    let v4 = ctx.ip.family == Family::V4;
    let tuple = |reply: bool| x.ct_tuples.map(|t| t[usize::from(reply)]);
    let addr = |reply: bool, dst: bool, want_v4: bool| {
        let t = tuple(reply)?;
        (v4 == want_v4).then(|| addr_to_u128(if dst { t.dst } else { t.src }))
    };
    let port = |reply: bool, dst: bool| {
        tuple(reply).map(|t| u128::from(if dst { t.dport } else { t.sport }))
    };
    match f {
        Field::MetaPkttype => Some(u128::from(x.pkttype)),
        Field::IpDscp if v4 => Some(u128::from(x.dscp)),
        Field::Ip6Dscp if !v4 => Some(u128::from(x.dscp)),
        Field::CtDirection => x.ct_dir.map(u128::from),
        Field::CtExpiration => x.ct_expiration.map(u128::from),
        Field::CtOrigIpSaddr => addr(false, false, true),
        Field::CtOrigIpDaddr => addr(false, true, true),
        Field::CtReplyIpSaddr => addr(true, false, true),
        Field::CtReplyIpDaddr => addr(true, true, true),
        Field::CtOrigIp6Saddr => addr(false, false, false),
        Field::CtOrigIp6Daddr => addr(false, true, false),
        Field::CtReplyIp6Saddr => addr(true, false, false),
        Field::CtReplyIp6Daddr => addr(true, true, false),
        Field::CtOrigProtoSrc => port(false, false),
        Field::CtOrigProtoDst => port(false, true),
        Field::CtReplyProtoSrc => port(true, false),
        Field::CtReplyProtoDst => port(true, true),
        Field::FibDaddrType => Some(u128::from(x.fib_daddr_type)),
        Field::FibSaddrIifOif => Some(u128::from(x.fib_rpf)),
        _ => None,
    }
}

impl CompiledRuleset {
    /// The facts beyond the summary that this ruleset's statements read.
    pub fn needs(&self) -> Needs {
        self.needs
    }
}

/// The kernel's MSS when the route's MTU leaves none (`TCP_MSS_DEFAULT`).
pub const TCP_MSS_DEFAULT: u16 = 536;

/// The MSS `rt mtu` gives for a path MTU (the smaller of the output route's and the
/// route back to the source's, as Linux's `nft_rt` computes it): the MTU less the IP and
/// TCP headers (40 bytes for IPv4, 60 for IPv6), 536 when that leaves nothing.
pub fn rt_mss(family: Family, mtu: u16) -> u16 {
    let min = match family {
        Family::V4 => 40,
        Family::V6 => 60,
    };
    if mtu <= min {
        TCP_MSS_DEFAULT
    } else {
        mtu - min
    }
}

/// Runs `tcp option maxseg size set v`: `false` ends the rule (not TCP, or a malformed
/// MSS option: the kernel's `NFT_BREAK`). The option is only ever lowered; the value to
/// write goes to `res.mss` and later statements see it.
pub(super) fn mss_set(
    v: MssValue,
    ctx: &mut super::PacketCtx<'_>,
    res: &mut super::EvalResult,
) -> bool {
    res.stateful = true;
    match ctx.facts.mss {
        Mss::NotTcp | Mss::Malformed => false,
        Mss::Absent => true,
        Mss::Found { off, value } => {
            let new = match v {
                MssValue::Num(n) => n,
                MssValue::RtMtu => ctx.facts.rt_mss,
            };
            if new < value {
                ctx.facts.mss = Mss::Found { off, value: new };
                res.mss = Some(new);
            }
            true
        }
    }
}
