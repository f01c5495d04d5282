//! The protocol's [`CtFilter`] on the engine's one connection filter
//! ([`conntrack::filter`](crate::conntrack::filter)): the conversion both ways of the
//! boundary (fields in, [`ControlError`] out), and evaluation on a [`CtEntry`] for the
//! event streams the server filters itself.

use crate::conntrack::filter::{CtMatcher, EntryFacts, FilterError, FilterFields, status_bits};
use crate::conntrack::tcp::TcpState;
use crate::control::proto::{ControlError, CtEntry, CtFilter, ErrorCode};
use crate::wire::{Addr, Family};

/// The engine's view of a protocol filter's fields.
pub fn fields(f: &CtFilter) -> FilterFields<'_> {
    FilterFields {
        src: f.src.as_deref(),
        dst: f.dst.as_deref(),
        reply_src: f.reply_src.as_deref(),
        reply_dst: f.reply_dst.as_deref(),
        sport: f.sport,
        dport: f.dport,
        proto: f.proto.as_deref(),
        state: f.state.as_deref(),
        mark: f.mark.as_deref(),
        zone: f.zone,
        family: f.family.as_deref(),
        status: f.status.as_deref(),
    }
}

impl From<FilterError> for ControlError {
    fn from(e: FilterError) -> ControlError {
        ControlError::new(ErrorCode::BadFilter, e.message).field(e.field)
    }
}

/// Compiling a protocol filter into the engine's matcher (`CtMatcher::new(&filter)` where
/// this trait is in scope); the error is a `bad_filter` naming the field.
pub trait MatcherFromFilter: Sized {
    fn new(f: &CtFilter) -> Result<Self, ControlError>;
}

impl MatcherFromFilter for CtMatcher {
    fn new(f: &CtFilter) -> Result<CtMatcher, ControlError> {
        Ok(CtMatcher::compile(&fields(f))?)
    }
}

/// What the filter looks at in a protocol entry (the inverse of
/// [`Snapshot::to_ct_entry`](crate::conntrack::Snapshot::to_ct_entry) for those fields).
pub fn entry_facts(e: &CtEntry) -> EntryFacts {
    EntryFacts {
        orig_src: Addr::from(e.orig.src),
        orig_dst: Addr::from(e.orig.dst),
        reply_src: Addr::from(e.reply.src),
        reply_dst: Addr::from(e.reply.dst),
        sport: e.orig.sport,
        dport: e.orig.dport,
        proto: e.proto_num,
        tcp_state: e.state.as_deref().and_then(TcpState::from_name),
        mark: e.mark,
        zone: e.zone,
        family: if e.orig.src.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        },
        status: e
            .status
            .iter()
            .filter_map(|s| status_bits(s))
            .fold(0, |acc, (set, _)| acc | set),
    }
}

/// A compiled filter the server evaluates on protocol entries (subscriptions, and checking
/// a filter before it is fanned out to the workers).
#[derive(Debug, Clone, Default)]
pub struct CompiledFilter(CtMatcher);

impl CompiledFilter {
    /// Compiles `f`; the error names the offending field.
    pub fn new(f: &CtFilter) -> Result<Self, ControlError> {
        Ok(CompiledFilter(CtMatcher::new(f)?))
    }

    /// Whether `e` matches every given field.
    pub fn matches(&self, e: &CtEntry) -> bool {
        self.0.matches_facts(&entry_facts(e))
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;
    use crate::conntrack::table::{ASSURED, DST_NAT, SEEN_REPLY, SRC_NAT, SYNCED};
    use crate::conntrack::{EntryId, FlowKey, Snapshot};
    use crate::wire::proto;

    /// Field by field on the protocol entry, as a reader of the API would: the reference
    /// the compiled filter must agree with.
    fn naive(f: &CtFilter, e: &CtEntry) -> bool {
        fn in_prefix(a: IpAddr, p: &str) -> bool {
            let (net, len) = match p.split_once('/') {
                Some((n, l)) => (n, l.parse::<u32>().unwrap()),
                None => (p, 128),
            };
            match (a, net.parse::<IpAddr>().unwrap()) {
                (IpAddr::V4(x), IpAddr::V4(y)) => {
                    let len = len.min(32);
                    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    u32::from(x) & m == u32::from(y) & m
                }
                (IpAddr::V6(x), IpAddr::V6(y)) => {
                    let m = if len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    u128::from(x) & m == u128::from(y) & m
                }
                _ => false,
            }
        }
        let num = |s: &str| match s.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).unwrap(),
            None => s.parse().unwrap(),
        };
        let mark_ok = f.mark.as_deref().is_none_or(|m| {
            let (v, mask) = match m.split_once('/') {
                Some((v, k)) => (num(v), num(k)),
                None => (num(m), u32::MAX),
            };
            e.mark & mask == v & mask
        });
        let proto_ok = f.proto.as_deref().is_none_or(|p| {
            let p = p.to_ascii_lowercase();
            p == e.proto
                || (p == "ipv6-icmp" && e.proto == "icmpv6")
                || p == e.proto_num.to_string()
        });
        let family_ok = f.family.as_deref().is_none_or(|x| {
            let x = match x {
                "inet" => "ipv4",
                "inet6" => "ipv6",
                x => x,
            };
            x == e.family
        });
        f.src.as_deref().is_none_or(|p| in_prefix(e.orig.src, p))
            && f.dst.as_deref().is_none_or(|p| in_prefix(e.orig.dst, p))
            && f.reply_src
                .as_deref()
                .is_none_or(|p| in_prefix(e.reply.src, p))
            && f.reply_dst
                .as_deref()
                .is_none_or(|p| in_prefix(e.reply.dst, p))
            && f.sport.is_none_or(|p| e.orig.sport == Some(p))
            && f.dport.is_none_or(|p| e.orig.dport == Some(p))
            && proto_ok
            && f.state.as_deref().is_none_or(|s| {
                e.state
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(s))
            })
            && f.zone.is_none_or(|z| z == e.zone)
            && family_ok
            && f.status
                .as_deref()
                .is_none_or(|s| e.status.contains(&s.to_ascii_uppercase()))
            && mark_ok
    }

    const V4: [[u8; 4]; 3] = [[198, 18, 0, 1], [198, 18, 1, 200], [203, 0, 113, 9]];
    const V4_NETS: &[&str] = &[
        "198.18.0.1",
        "198.18.0.0/24",
        "198.18.0.0/15",
        "198.18.1.128/25",
        "203.0.113.9/32",
        "0.0.0.0/0",
        "2001:db8::/32",
    ];
    const V6_NETS: &[&str] = &["2001:db8::1", "2001:db8::/64", "2001:db8:0:1::/64", "::/0"];
    const PROTOS: [u8; 5] = [proto::TCP, proto::UDP, proto::ICMP, proto::GRE, 200];

    fn addr(v6: bool, i: usize) -> Addr {
        if v6 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[7] = u8::try_from(i % 2).unwrap();
            a[15] = u8::try_from(i).unwrap() + 1;
            Addr(a)
        } else {
            Addr::from(IpAddr::from(V4[i]))
        }
    }

    prop_compose! {
        fn snapshot()(
            v6 in any::<bool>(),
            ends in prop::array::uniform4(0usize..3),
            ports in prop::array::uniform2(prop::sample::select(vec![53u16, 80, 443, 1000])),
            p in prop::sample::select(PROTOS.to_vec()),
            state in prop::option::of(0usize..10),
            status in prop::sample::subsequence(vec![SEEN_REPLY, ASSURED, SRC_NAT, DST_NAT, SYNCED], 0..=5),
            mark in prop::sample::select(vec![0u32, 0x10, 0x1f, 0xff00]),
            zone in 0u16..3,
        ) -> Snapshot {
            let proto = if v6 && p == proto::ICMP { proto::ICMPV6 } else { p };
            let family = if v6 { Family::V6 } else { Family::V4 };
            let key = |s: usize, d: usize, sp: u16, dp: u16| FlowKey {
                src: addr(v6, s), dst: addr(v6, d), sport: sp, dport: dp, zone, proto, family,
            };
            Snapshot {
                id: EntryId(1),
                orig: key(ends[0], ends[1], ports[0], ports[1]),
                reply: key(ends[2], ends[3], ports[1], ports[0]),
                tcp_state: (proto == proto::TCP).then(|| state.map(|i| TcpState::ALL[i])).flatten(),
                status: status.into_iter().fold(0, |a, b| a | b),
                mark,
                packets: [1, 0],
                bytes: [60, 0],
                timeout_s: 30,
                tcp_window: None,
            }
        }
    }

    fn pick(v: &[&'static str]) -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(v.to_vec()).prop_map(String::from))
    }

    prop_compose! {
        fn filter()(
            nets in prop::array::uniform4(prop::option::of(any::<bool>())),
            i in prop::array::uniform4(0usize..7),
            sport in prop::option::of(prop::sample::select(vec![53u16, 80, 1000])),
            dport in prop::option::of(prop::sample::select(vec![53u16, 443])),
            proto in pick(&["tcp", "UDP", "icmp", "icmpv6", "ipv6-icmp", "gre", "6", "200", "sctp"]),
            state in pick(&["ESTABLISHED", "syn_sent", "TIME_WAIT", "NONE"]),
            mark in pick(&["0x10", "16/0xf0", "0xff00/0xff00", "0"]),
            zone in prop::option::of(0u16..3),
            family in pick(&["ipv4", "ipv6", "inet", "inet6"]),
            status in pick(&["ASSURED", "seen_reply", "UNREPLIED", "SRC_NAT", "DST_NAT", "CONFIRMED", "SYNCED"]),
        ) -> CtFilter {
            let net = |k: usize| nets[k].map(|v6| {
                let list = if v6 { V6_NETS } else { V4_NETS };
                list[i[k] % list.len()].to_string()
            });
            CtFilter {
                src: net(0), dst: net(1), reply_src: net(2), reply_dst: net(3),
                sport, dport, proto, state, mark, zone, family, status,
            }
        }
    }

    proptest! {
        /// The compiled filter on a table entry, and on its protocol form, says exactly
        /// what the field-by-field reference says on the protocol form.
        #[test]
        fn compiled_filter_agrees_with_the_reference(s in snapshot(), f in filter()) {
            let e = s.to_ct_entry(0);
            let want = naive(&f, &e);
            prop_assert_eq!(CtMatcher::new(&f).unwrap().matches(&s), want, "table entry");
            prop_assert_eq!(CompiledFilter::new(&f).unwrap().matches(&e), want, "protocol entry");
        }
    }

    #[test]
    fn a_bad_field_is_a_bad_filter_naming_it() {
        let e = CompiledFilter::new(&CtFilter {
            dst: Some("198.18.0.0/40".into()),
            ..CtFilter::default()
        })
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadFilter);
        assert_eq!(e.field.as_deref(), Some("dst"));
        assert_eq!(e.message, "\"198.18.0.0/40\" is not an address or prefix");
    }
}
