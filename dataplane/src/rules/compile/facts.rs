//! Packet facts beyond the parsed summary that some statements read: the TCP MSS option
//! and the route's MSS for MSS clamping; the packet type, DSCP, conntrack direction,
//! tuples and time left, the `fib` lookups and the TCP options for matches. The worker fills only the
//! facts the loaded ruleset reads (`CompiledRuleset::needs`, `facts_eval.rs`); the rest keep their
//! defaults.
//!
//! None of these facts is part of the first-packet key: a ruleset matching on one is
//! never served from the first-packet cache (`classes.rs`, `keyed`), and the MSS
//! statement is marked stateful when it runs. The verdict cache (and so the fast path)
//! keeps the verdicts of rules reading the facts fixed for a flow and direction (`ct
//! direction`, the tuples, `fib`: a route change starts a new epoch); a rule reading the
//! DSCP, the packet type, the time left or the TCP options (which differ from segment to
//! segment of a flow), or mangling, is not cacheable (`lower.rs`, `flow_field`).

use crate::rules::ast::Field;
use crate::wire::tcpopt::{Mss, Opts};
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
    /// What `tcp option …` matches read ([`Needs::TCP_OPTS`]).
    pub tcp_opts: Opts,
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
            tcp_opts: Opts::default(),
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
    pub const TCP_OPTS: u32 = 1 << 7;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// Any fact at all (the worker's one test per packet).
    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// Adds the facts a field reads.
    pub(super) fn add_field(&mut self, f: Field) {
        self.0 |= Needs::of_field(f);
    }

    pub(super) fn add(&mut self, bits: u32) {
        self.0 |= bits;
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
            f if f.is_tcp_option() => Needs::TCP_OPTS,
            _ => 0,
        }
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
