//! NAT costs: Toeplitz hash (IPv4/IPv6, with ports) and SNAT port allocation with 1, 4 and
//! 16 workers (the search tries about `workers` candidates).
//!
//! `cargo bench -p dataplane --no-default-features --bench nat -- --warm-up-time 1 --measurement-time 2`

use criterion::{Criterion, criterion_group, criterion_main};
use dataplane::nat::rss::Toeplitz;
use dataplane::nat::{
    NatAction, NatEnv, NatFlags, NatKind, NatRange, Owner, PortAllocator, SYMMETRIC_RSS_KEY, Tuple,
};
use dataplane::wire::{Addr, proto};
use std::hint::black_box;

fn hash(c: &mut Criterion) {
    let h = Toeplitz::new(&SYMMETRIC_RSS_KEY).unwrap();
    let v4 = Tuple::new(
        Addr::from_v4([198, 18, 0, 1]),
        Addr::from_v4([203, 0, 113, 9]),
        proto::TCP,
        40000,
        443,
    );
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    let mut b = a;
    a[15] = 1;
    b[15] = 2;
    let v6 = Tuple::new(Addr::from_v6(a), Addr::from_v6(b), proto::TCP, 40000, 443);
    c.bench_function("toeplitz_v4_ports", |bn| {
        bn.iter(|| h.hash_tuple(black_box(&v4), true))
    });
    c.bench_function("toeplitz_v6_ports", |bn| {
        bn.iter(|| h.hash_tuple(black_box(&v6), true))
    });
}

fn alloc(c: &mut Criterion) {
    let env = NatEnv {
        egress_addr: Some(Addr::from_v4([198, 51, 100, 1])),
        ingress_addr: None,
    };
    let masq = NatAction {
        kind: NatKind::Masquerade,
        range: NatRange {
            addr: None,
            ports: None,
        },
        flags: NatFlags::default(),
    };
    for workers in [1u16, 4, 16] {
        let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 512, workers).unwrap();
        let mut al = PortAllocator::new(0);
        let mut i = 0u32;
        // Every kept port is "taken", so each allocation searches (the costly path).
        c.bench_function(&format!("snat_search_{workers}_workers"), |bn| {
            bn.iter(|| {
                i = i.wrapping_add(1);
                let [_, _, h, l] = i.to_be_bytes();
                let orig = Tuple::new(
                    Addr::from_v4([198, 18, h, l]),
                    Addr::from_v4([203, 0, 113, 9]),
                    proto::TCP,
                    40000,
                    443,
                );
                let kept = orig.sport;
                al.bind(&orig, None, Some(&masq), &env, &owner, |t| t.dport == kept)
            })
        });
    }
}

criterion_group!(benches, hash, alloc);
criterion_main!(benches);
