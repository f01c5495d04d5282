//! Packet facts beyond the parsed summary that some statements read: the TCP MSS option
//! and the route's MSS for MSS clamping. The worker fills only the facts the loaded
//! ruleset reads ([`CompiledRuleset::needs`]); the rest keep their defaults.
//!
//! None of these facts is part of the first-packet key or the verdict cache's key: a
//! statement reading one is marked stateful when it runs (the first-packet cache does
//! not keep the outcome) and its rule is not cacheable (no verdict-cache slot, so no
//! fast-path recipe either).

use super::ir::CStmt;
use super::ruleset::CompiledRuleset;
use crate::rules::ast::MssValue;
use crate::wire::Family;
use crate::wire::tcpopt::Mss;

/// The facts of one packet (and hook) that only some rulesets read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The MSS option ([`Needs::MSS`]).
    pub mss: Mss,
    /// What `rt mtu` writes ([`Needs::RT_MSS`], [`rt_mss`]).
    pub rt_mss: u16,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            mss: Mss::NotTcp,
            rt_mss: TCP_MSS_DEFAULT,
        }
    }
}

/// The facts a ruleset reads, as bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs(u32);

impl Needs {
    pub const MSS: u32 = 1;
    pub const RT_MSS: u32 = 1 << 1;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Any fact at all (the worker's one test per packet).
    pub fn any(self) -> bool {
        self.0 != 0
    }

    pub(super) fn of_stmt(&mut self, s: &CStmt) {
        if let CStmt::MssSet(v) = s {
            self.0 |= Needs::MSS;
            if *v == MssValue::RtMtu {
                self.0 |= Needs::RT_MSS;
            }
        }
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
