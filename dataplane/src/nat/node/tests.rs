use super::*;
use crate::nat::rss::SYMMETRIC_RSS_KEY;
use crate::nat::{NatAction, NatEnv, NatFlags, NatRange, Owner, PortAllocator, Tuple, TupleSet};
use crate::wire::{Addr, proto};
use proptest::prelude::*;
use std::collections::BTreeSet;

const PUBLIC: Addr = Addr::from_v4([198, 51, 100, 1]);
const REMOTE: Addr = Addr::from_v4([203, 0, 113, 9]);

fn env() -> NatEnv {
    NatEnv {
        egress_addr: Some(PUBLIC),
        ingress_addr: None,
    }
}

/// Every port the `workers` workers of node `slice` hand out for connections of protocol
/// `p` from distinct clients to one server, masquerading within `ports`, until each
/// worker's search is exhausted; and the refusals counted `exhausted`.
fn drain(
    slice: NodeSlice,
    workers: u16,
    p: u8,
    ports: (u16, u16),
    client_port: u16,
) -> (Vec<u16>, u64) {
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, workers).unwrap();
    let action = NatAction {
        kind: NatKind::Masquerade,
        range: NatRange {
            addr: None,
            ports: Some(ports),
        },
        flags: NatFlags::default(),
    };
    let (mut got, mut exhausted) = (Vec::new(), 0);
    for w in 0..workers {
        let mut al = PortAllocator::new(w).with_node_slice(slice);
        let mut table = TupleSet::default();
        for i in 0u32.. {
            let [_, _, c, d] = i.to_be_bytes();
            let client = Addr::from_v4([198, 18, c, d]);
            let orig = if p == proto::ICMP {
                Tuple::new(client, REMOTE, p, client_port, client_port)
            } else {
                Tuple::new(client, REMOTE, p, client_port, 443)
            };
            match al.bind(&orig, None, Some(&action), &env(), &owner, &mut table) {
                Ok(b) => {
                    assert!(table.insert(&b), "a reply tuple given twice by one worker");
                    got.push(b.reply.dport);
                }
                Err(NatError::PortExhausted) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        // Asked again: still refused, and counted every time.
        let orig = Tuple::new(PUBLIC, REMOTE, p, 1, 443);
        assert!(
            al.bind(&orig, None, Some(&action), &env(), &owner, &mut table)
                .is_err()
        );
        exhausted += al.stats().exhausted;
    }
    (got, exhausted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Two or three active/active nodes, each with one to four workers, never hand out
    /// the same port of one (address, protocol) for any range; each node's ports are its
    /// slice; together the nodes use every port of the range, once; each worker that
    /// ran dry counted its refusals.
    #[test]
    fn nodes_never_share_a_port_and_together_use_the_range_once(
        lo in 1u16..65000,
        size in 1u16..1500,
        total in 2u16..=3,
        workers in 1u16..=4,
        icmp in any::<bool>(),
        client_port in 1u16..65535,
    ) {
        let hi = lo.saturating_add(size - 1);
        let p = if icmp { proto::ICMP } else { proto::TCP };
        let mut seen = BTreeSet::new();
        let mut sum = 0usize;
        for local in 1..=total {
            let slice = NodeSlice::new(local, total).unwrap();
            let (got, exhausted) = drain(slice, workers, p, (lo, hi), client_port);
            let own: BTreeSet<u16> = got.iter().copied().collect();
            prop_assert_eq!(own.len(), got.len(), "a port given twice within node {}", local);
            match slice.apply(lo, hi) {
                Ok((a, b)) => {
                    prop_assert!(own.iter().all(|p| (a..=b).contains(p)));
                    // TCP: the RSS-aligned search gives every port of the slice to
                    // exactly one worker. ICMP ids (hashed on addresses only): each
                    // worker has a per-worker slice of the node's slice, which may be
                    // empty when the node's slice has fewer ids than workers.
                    if p == proto::TCP || usize::from(b - a) + 1 >= usize::from(workers) {
                        prop_assert_eq!(own.len(), usize::from(b - a) + 1);
                    }
                }
                Err(_) => {
                    prop_assert!(own.is_empty());
                    prop_assert!(slice.problem(lo, hi).is_some());
                }
            }
            // Each worker: one refusal when its search ran dry, one for the retry.
            prop_assert_eq!(exhausted, 2 * u64::from(workers));
            for port in own {
                prop_assert!(seen.insert(port), "port {} given by two nodes", port);
            }
            sum += got.len();
        }
        let all = usize::from(hi - lo) + 1;
        if all >= usize::from(total * workers) || p == proto::TCP && all >= usize::from(total) {
            prop_assert_eq!(sum, all, "the nodes together use every port once");
        }
    }
}

#[test]
fn slices_are_contiguous_cover_the_range_and_refuse_bad_nodes() {
    assert_eq!(NodeSlice::new(0, 2), None);
    assert_eq!(NodeSlice::new(3, 2), None);
    let one = NodeSlice::default();
    assert_eq!(one.apply(1024, 65535), Ok((1024, 65535)));
    let a = NodeSlice::new(1, 2).unwrap();
    let b = NodeSlice::new(2, 2).unwrap();
    assert_eq!(a.apply(1024, 65535), Ok((1024, 33279)));
    assert_eq!(b.apply(1024, 65535), Ok((33280, 65535)));
    assert_eq!(a.apply(5000, 5001), Ok((5000, 5000)));
    assert_eq!(b.apply(5000, 5001), Ok((5001, 5001)));
    // One port cannot be split: node 1 gets nothing.
    assert_eq!(a.apply(5000, 5000), Err(NatError::PortExhausted));
    assert!(a.problem(5000, 5000).unwrap().contains("ha.total_nodes"));
    assert_eq!(a.problem(5000, 5001), None);
    assert_eq!(one.problem(5000, 5000), None);
}

#[test]
fn a_ruleset_with_a_range_too_small_to_split_is_refused_at_its_statement() {
    let parse = |s: &str| crate::rules::parse::parse(s).unwrap();
    let two = NodeSlice::new(2, 2).unwrap();
    let ok = parse(
        "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  \
         masquerade to :1024-1025\n  snat to 198.51.100.1\n  dnat to 198.18.0.2:80\n }\n}\n",
    );
    assert_eq!(check_ruleset(&ok, &two), Ok(()));
    let one_port = parse(
        "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  \
         snat to 198.51.100.1:5000\n }\n}\n",
    );
    let e = check_ruleset(&one_port, &two).unwrap_err();
    assert_eq!((e.line, e.col), (4, 3), "{e:?}");
    assert!(e.msg.contains("5000-5000") && e.msg.contains("ha.total_nodes"));
    // One node: nothing to split.
    assert_eq!(check_ruleset(&one_port, &NodeSlice::default()), Ok(()));
    let three = NodeSlice::new(1, 3).unwrap();
    let two_ports = parse(
        "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  \
         masquerade to :6000-6001\n }\n}\n",
    );
    assert_eq!(check_ruleset(&two_ports, &two), Ok(()));
    assert!(check_ruleset(&two_ports, &three).is_err());
    let map = parse(
        "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  \
         snat to ip saddr map { 198.18.0.1 : 198.51.100.1 . 7000 }\n }\n}\n",
    );
    let e = check_ruleset(&map, &two).unwrap_err();
    assert_eq!(e.line, 4, "{e:?}");
}
