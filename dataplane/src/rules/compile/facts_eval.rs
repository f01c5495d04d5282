//! The evaluator's side of the packet facts (`facts.rs`): which facts a compiled
//! statement reads, the value of a fact field, and the MSS statement.

use super::facts::Needs;
use super::ir::{CStmt, EvalResult, PacketCtx};
use super::ruleset::CompiledRuleset;
use crate::rules::ast::{Field, MssValue, addr_to_u128};
use crate::wire::Family;
use crate::wire::tcpopt::{Mss, OptKind};

/// Adds the facts statement `s` reads to `needs`.
pub(super) fn add_needs(needs: &mut Needs, s: &CStmt) {
    if let CStmt::Match(m) = s {
        needs.add_field(m.field);
    }
    for &f in s.key_fields() {
        needs.add_field(f);
    }
    if let CStmt::MssSet(v) = s {
        needs.add(Needs::MSS);
        if *v == MssValue::RtMtu {
            needs.add(Needs::RT_MSS);
        }
    }
}

impl CompiledRuleset {
    /// The facts beyond the summary that this ruleset's statements read.
    pub fn needs(&self) -> Needs {
        self.needs
    }
}

/// `ip dscp set` (`v6` false) / `ip6 dscp set`: the packet's DSCP becomes `d` for the
/// rest of the evaluation and is written before it leaves. A packet of the other family
/// ends the rule (the kernel's implied `meta nfproto` dependency in an inet table).
pub(super) fn dscp_set(v6: bool, d: u8, ctx: &mut PacketCtx<'_>, res: &mut EvalResult) -> bool {
    res.stateful = true;
    if (ctx.ip.family == Family::V6) != v6 {
        return false;
    }
    ctx.facts.dscp = d;
    res.dscp = Some(d);
    true
}

/// The value of a fact field for the evaluator (`None`: the match fails, as the kernel's
/// expression breaks the rule: no connection, or an address of the other family).
pub(super) fn field_value(f: Field, ctx: &PacketCtx<'_>) -> Option<u128> {
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
        f if f.is_tcp_option() => tcp_option(f, x.tcp_opts),
        _ => None,
    }
}

/// The value of a `tcp option …` field (`None`: the option or its field is not there, or
/// a field of a packet that is not TCP; `wire::tcpopt::Opts`). A presence reads 0 on a
/// packet that is not TCP, as the kernel's (`nft_exthdr_tcp_eval` with the presence flag
/// writes 0 where it finds no TCP header, and nft 1.0.6 adds no `meta l4proto tcp`):
/// `tcp option maxseg missing` matches a UDP datagram.
fn tcp_option(f: Field, o: crate::wire::tcpopt::Opts) -> Option<u128> {
    if !o.tcp {
        return matches!(
            f,
            Field::TcpOptMaxseg
                | Field::TcpOptWindow
                | Field::TcpOptSackPerm
                | Field::TcpOptTimestamp
        )
        .then_some(0);
    }
    let exists = |k| Some(u128::from(o.has(k)));
    match f {
        Field::TcpOptMaxseg => exists(OptKind::Maxseg),
        Field::TcpOptWindow => exists(OptKind::Window),
        Field::TcpOptSackPerm => exists(OptKind::SackPerm),
        Field::TcpOptTimestamp => exists(OptKind::Timestamp),
        Field::TcpOptMaxsegSize => o.mss.map(u128::from),
        Field::TcpOptWindowCount => o.wscale.map(u128::from),
        _ => None,
    }
}

/// Runs `tcp option maxseg size set v`: `false` ends the rule (not TCP, or a malformed
/// MSS option: the kernel's `NFT_BREAK`). The option is only ever lowered; the value to
/// write goes to `res.mss` and later statements see it.
pub(super) fn mss_set(v: MssValue, ctx: &mut PacketCtx<'_>, res: &mut EvalResult) -> bool {
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
                ctx.facts.tcp_opts.mss = ctx.facts.tcp_opts.mss.map(|_| new);
                res.mss = Some(new);
            }
            true
        }
    }
}
