//! The pure-Rust Toeplitz of `dataplane::nat::rss` against DPDK's own `rte_softrss` (through
//! `dpdk_bindings::softrss`) on random tuples, IPv4 and IPv6, with and without ports, for
//! the symmetric key and a random key. Needs the `dpdk` feature (links DPDK, no EAL).
#![cfg(feature = "dpdk")]

use dataplane::nat::rss::Toeplitz;
use dataplane::nat::{SYMMETRIC_RSS_KEY, Tuple};
use dataplane::wire::{Addr, proto};
use proptest::prelude::*;

/// The tuple as `rte_softrss` takes it: host-order words of the network-order input.
fn words(t: &Tuple, ports: bool) -> Vec<u32> {
    let mut bytes = Vec::new();
    match (t.src.to_v4(), t.dst.to_v4()) {
        (Some(s), Some(d)) => {
            bytes.extend_from_slice(&s);
            bytes.extend_from_slice(&d);
        }
        _ => {
            bytes.extend_from_slice(&t.src.0);
            bytes.extend_from_slice(&t.dst.0);
        }
    }
    if ports {
        bytes.extend_from_slice(&t.sport.to_be_bytes());
        bytes.extend_from_slice(&t.dport.to_be_bytes());
    }
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn tuple(v6: bool, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Tuple {
    let addr = |b: [u8; 16]| {
        if v6 {
            Addr::from_v6(b)
        } else {
            Addr::from_v4([b[0], b[1], b[2], b[3]])
        }
    };
    Tuple::new(addr(src), addr(dst), proto::TCP, sport, dport)
}

#[test]
fn symmetric_key_copy_matches_bindings() {
    assert_eq!(SYMMETRIC_RSS_KEY, dpdk_bindings::SYMMETRIC_RSS_KEY);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_rte_softrss(
        v6: bool, ports: bool, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16,
        key in prop::array::uniform32(any::<u8>()), key_tail: [u8; 8], symmetric: bool,
    ) {
        let mut k = [0u8; 40];
        k[..32].copy_from_slice(&key);
        k[32..].copy_from_slice(&key_tail);
        let k = if symmetric { SYMMETRIC_RSS_KEY } else { k };
        let t = tuple(v6, src, dst, sport, dport);
        let ours = Toeplitz::new(&k).unwrap();
        let w = words(&t, ports);
        let theirs = dpdk_bindings::softrss(&w, &k).unwrap();
        prop_assert_eq!(ours.hash_tuple(&t, ports), theirs);
        prop_assert_eq!(ours.hash_words(&w), theirs);
    }
}
