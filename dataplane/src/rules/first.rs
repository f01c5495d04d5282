//! The verdict cache of first packets: which facts of a new packet decide what the hooks
//! do with it, as one key, so that a new connection of a class seen before takes the
//! verdict, NAT decision and counted rules of its class without evaluating
//! (`docs/rules.md`, "First-packet verdict cache").
//!
//! Every match of a compiled ruleset tests one field against sorted intervals, a bit
//! mask or a set of bits. For the interval tests of the address and port fields, the
//! boundaries of all intervals of the ruleset cut each field's value space into
//! elementary intervals: two values in one elementary interval pass or fail every such
//! test alike. [`FirstKey`] holds, for a packet, the index of its elementary interval for
//! source and destination address and port (or the value itself where a field is also
//! tested with a mask), and the exact value of every other field a match can read
//! (family, protocol, TCP flags, ICMP type, ports in and out, `ct state`, `ct status`,
//! marks). Two packets with equal keys take the same path through every chain: the same
//! matches pass, so the same rules count, the same verdict and NAT statement decide.
//!
//! What the key does not hold is state: `limit` (time), `ct count` (other connections),
//! `log` (a side effect per packet) and mark setting. An evaluation that reached one of
//! those is not cached ([`EvalResult::stateful`]).
//!
//! The key is exact, not minimal: a field no rule reads has one class, but a boundary of
//! a rule that cannot be reached in this hook still splits classes. Classes are
//! invalidated with the ruleset: a [`FirstCache`] entry carries the generation it was
//! made under.
//!
//! A match on a field the key does not hold (`compile/classes.rs`, `keyed`, answers `false`) makes the whole
//! ruleset's first packets uncacheable ([`CompiledRuleset::first_cacheable`]). Sets of
//! concatenations and verdict maps key their fields by value.
//!
//! The worker pipeline looks a first packet's key up before it evaluates each hook
//! (prerouting, forward or input, postrouting) and fills the cache after a miss
//! (`docs/pipeline.md`, "First-packet cache").

use super::Hook;
use super::compile::{
    CompiledRuleset, Cuts, Decision, EvalResult, MAX_COUNTED, PacketCtx, RuleRef, addr_to_u128,
};
use crate::nat::NatAction;
use crate::wire::{Family, IpInfo, L4Info};
use arrayvec::ArrayVec;

/// No value (the field does not apply to the packet: the match fails).
const NONE: u32 = u32::MAX;

/// The class of a first packet: equal keys, equal evaluation (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FirstKey {
    src: u128,
    dst: u128,
    sport: u32,
    dport: u32,
    iif: u32,
    oif: u32,
    ct_status: u32,
    ct_mark: u32,
    mark: u32,
    /// `0x100 | flags` for TCP, 0 otherwise.
    tcp_flags: u16,
    /// `0x100 | type` for ICMP/ICMPv6 messages with a type, 0 otherwise.
    icmp_type: u16,
    /// `0x100 | code` for ICMP/ICMPv6 messages, 0 otherwise.
    icmp_code: u16,
    proto: u8,
    v6: bool,
    ct_state: u8,
    first: bool,
}

impl CompiledRuleset {
    /// Whether first packets of this ruleset may be cached by class: every field its
    /// matches read is held by [`FirstKey`].
    pub fn first_cacheable(&self) -> bool {
        !self.first.unkeyed
    }

    /// The first-packet class of the packet `ctx` describes (its `ct state`, status,
    /// marks, ports in and out as the hook sees them).
    pub fn first_key(&self, ctx: &PacketCtx<'_>) -> FirstKey {
        let fields = ClassInput::of(ctx.ip);
        self.first_key_with(ctx, self.first_classes(&fields))
    }

    /// The address and port classes of `fields` under this ruleset's partitions.
    fn first_classes(&self, fields: &ClassInput) -> Classes {
        let p = &self.first;
        // Port classes are below 2^17 (at most two starts per port value).
        let port = |c: &Cuts, v: Option<u16>| {
            v.map_or(NONE, |v| {
                u32::try_from(c.class(u128::from(v))).unwrap_or(NONE - 1)
            })
        };
        Classes {
            src: p.src.class(fields.src),
            dst: p.dst.class(fields.dst),
            sport: port(&p.sport, fields.ports.map(|x| x.0)),
            dport: port(&p.dport, fields.ports.map(|x| x.1)),
        }
    }

    /// [`Self::first_key`] with the packet's address and port classes already known.
    fn first_key_with(&self, ctx: &PacketCtx<'_>, c: Classes) -> FirstKey {
        let ip = ctx.ip;
        let flags = match ip.l4 {
            Some(L4Info::Tcp(t)) => 0x100 | u16::from(t.flags.0),
            _ => 0,
        };
        let icmp_type = match ip.l4 {
            Some(L4Info::IcmpEcho { request, .. }) => {
                let t = match (ip.family, request) {
                    (Family::V4, true) => 8,
                    (Family::V4, false) => 0,
                    (Family::V6, true) => 128,
                    (Family::V6, false) => 129,
                };
                0x100 | t
            }
            Some(L4Info::IcmpError { icmp_type, .. } | L4Info::IcmpOther { icmp_type, .. }) => {
                0x100 | u16::from(icmp_type)
            }
            _ => 0,
        };
        FirstKey {
            src: c.src,
            dst: c.dst,
            sport: c.sport,
            dport: c.dport,
            iif: ctx.iif.map_or(NONE, u32::from),
            oif: ctx.oif.map_or(NONE, u32::from),
            ct_status: ctx.ct_status,
            ct_mark: ctx.ct_mark,
            mark: ctx.mark,
            tcp_flags: flags,
            icmp_type,
            icmp_code: crate::rules::compile::icmp_code(ip).map_or(0, |c| 0x100 | u16::from(c)),
            proto: ip.proto,
            v6: ip.family == Family::V6,
            ct_state: ctx.ct_state,
            first: ctx.first_packet,
        }
    }
}

/// The fields a packet's address and port classes are computed from: addresses, and the
/// ports of TCP and UDP. Equal inputs under one ruleset give equal classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClassInput {
    src: u128,
    dst: u128,
    ports: Option<(u16, u16)>,
}

impl ClassInput {
    fn of(ip: &IpInfo) -> Self {
        let ports = match ip.l4 {
            Some(L4Info::Tcp(t)) => Some((t.sport, t.dport)),
            Some(L4Info::Udp { sport, dport }) => Some((sport, dport)),
            _ => None,
        };
        ClassInput {
            src: addr_to_u128(ip.src),
            dst: addr_to_u128(ip.dst),
            ports,
        }
    }
}

/// A packet's address and port classes (the part of [`FirstKey`] that the hook does not
/// change while NAT leaves the packet's addresses and ports alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Classes {
    src: u128,
    dst: u128,
    sport: u32,
    dport: u32,
}

/// What a cached class's evaluation of one hook gave: everything the worker acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstVerdict {
    pub verdict: Decision,
    pub rule: Option<RuleRef>,
    pub nat: Option<NatAction>,
    pub notrack: bool,
    /// The rules to credit (`CompiledRuleset::credit`) for a packet of the class.
    pub counted: ArrayVec<u32, MAX_COUNTED>,
}

impl FirstVerdict {
    /// The cacheable part of an evaluation; `None` when it may not be cached (it reached
    /// a stateful statement, or counted more rules than it lists).
    pub fn of(r: &EvalResult) -> Option<Self> {
        (!r.stateful && !r.counted_overflow && r.ct_count.is_empty()).then(|| FirstVerdict {
            verdict: r.verdict,
            rule: r.rule,
            nat: r.nat,
            notrack: r.notrack,
            counted: r.counted.clone(),
        })
    }
}

#[derive(Clone, Debug)]
struct Slot {
    generation: u64,
    hook: Hook,
    key: FirstKey,
    verdict: FirstVerdict,
}

/// One worker's cache of first-packet verdicts: direct-mapped, `2^k` slots allocated
/// once, keyed by (ruleset generation, hook, [`FirstKey`]). A slot of an older
/// generation never answers.
#[derive(Debug)]
pub struct FirstCache {
    slots: Box<[Option<Slot>]>,
    mask: usize,
    /// The classes last computed, with the generation and the fields they came from: the
    /// hooks of one packet (and packets alike in addresses and ports) reuse them.
    last: Option<(u64, ClassInput, Classes)>,
    pub hits: u64,
    pub misses: u64,
}

impl FirstCache {
    /// A cache of `slots` entries (rounded up to a power of two, at least 1).
    pub fn new(slots: usize) -> Self {
        let n = slots.max(1).next_power_of_two();
        FirstCache {
            slots: vec![None; n].into(),
            mask: n - 1,
            last: None,
            hits: 0,
            misses: 0,
        }
    }

    /// [`CompiledRuleset::first_key`] of the packet `ctx` describes, reusing the address and
    /// port classes of the previous call when the ruleset generation, addresses and ports
    /// are the same (a packet's later hooks: only NAT changes those fields).
    pub fn key(&mut self, rs: &CompiledRuleset, ctx: &PacketCtx<'_>) -> FirstKey {
        let generation = rs.generation();
        let fields = ClassInput::of(ctx.ip);
        let classes = match self.last {
            Some((g, f, c)) if g == generation && f == fields => c,
            _ => {
                let c = rs.first_classes(&fields);
                self.last = Some((generation, fields, c));
                c
            }
        };
        rs.first_key_with(ctx, classes)
    }

    /// The slot of (`hook`, `key`): the key's fields packed into seven words, folded
    /// with one multiply each (a fraction of hashing every field on its own). Only the
    /// slot depends on it: a slot answers an equal key only.
    #[allow(clippy::cast_possible_truncation)] // folding the key's halves and words on purpose
    fn index(&self, hook: Hook, key: &FirstKey) -> usize {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let k = key;
        let half = |v: u128| (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        let words = [
            half(k.src),
            half(k.dst),
            u64::from(k.sport) | u64::from(k.dport) << 32,
            u64::from(k.iif) | u64::from(k.oif) << 32,
            u64::from(k.ct_status) | u64::from(k.ct_mark) << 32,
            u64::from(k.mark) | u64::from(k.tcp_flags) << 32 | u64::from(k.icmp_type) << 48,
            u64::from(k.icmp_code)
                | u64::from(k.proto) << 16
                | u64::from(k.ct_state) << 24
                | u64::from(k.v6) << 32
                | u64::from(k.first) << 33
                | (hook as u64) << 40,
        ];
        let h = words
            .iter()
            .fold(0u64, |h, &w| (h ^ w).wrapping_mul(K).rotate_left(23));
        // The high bits of a product mix best.
        (h.wrapping_mul(K) >> 40) as usize & self.mask
    }

    /// The verdict cached for `key` in `hook` under ruleset `generation`. Inlined: the
    /// pipeline asks once per hook of every first packet.
    #[inline]
    pub fn get(&mut self, generation: u64, hook: Hook, key: &FirstKey) -> Option<&FirstVerdict> {
        let i = self.index(hook, key);
        match &self.slots[i] {
            Some(s) if s.generation == generation && s.hook == hook && s.key == *key => {
                self.hits += 1;
                self.slots[i].as_ref().map(|s| &s.verdict)
            }
            _ => {
                self.misses += 1;
                None
            }
        }
    }

    /// Remembers the evaluation `r` of `hook` for `key` under `generation`, if it may be
    /// cached ([`FirstVerdict::of`]). `true` when stored.
    pub fn put(&mut self, generation: u64, hook: Hook, key: FirstKey, r: &EvalResult) -> bool {
        let Some(verdict) = FirstVerdict::of(r) else {
            return false;
        };
        let i = self.index(hook, &key);
        self.slots[i] = Some(Slot {
            generation,
            hook,
            key,
            verdict,
        });
        true
    }
}

#[cfg(test)]
mod tests;
