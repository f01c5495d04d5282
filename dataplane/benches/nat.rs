//! NAT costs: Toeplitz hash (IPv4/IPv6, with ports) and SNAT port allocation with 1, 4 and
//! 16 workers (the search tries about `workers` candidates), and the SNAT rewrite of one
//! UDP/IPv4 packet.
//!
//! `cargo bench -p dataplane --no-default-features --bench nat -- --warm-up-time 1 --measurement-time 2`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dataplane::conntrack::{Direction, FlowKey};
use dataplane::nat::apply;
use dataplane::nat::rss::Toeplitz;
use dataplane::nat::{
    NatAction, NatEnv, NatFlags, NatKind, NatRange, Owner, PoolKey, PortAllocator,
    SYMMETRIC_RSS_KEY, Tuple, TupleSet,
};
use dataplane::wire::{Addr, Parsed, TRUST_ALL, VERIFY_ALL, parse, proto, rewrite};
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

/// Masquerade to 198.51.100.1.
fn masquerade() -> (NatEnv, NatAction) {
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
    (env, masq)
}

/// A table whose pools hold `port` of `addr` for `proto` (a connection kept it).
fn holding(addr: Addr, proto: u8, port: u16) -> TupleSet {
    let mut t = TupleSet::default();
    assert!(t.hold(PoolKey { addr, proto }, port));
    t
}

fn alloc(c: &mut Criterion) {
    let (env, masq) = masquerade();
    for workers in [1u16, 4, 16] {
        let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 512, workers).unwrap();
        let mut al = PortAllocator::new(0).prepared(&owner);
        let mut t = holding(env.egress_addr.unwrap(), proto::TCP, 40000);
        let mut i = 0u32;
        // The kept port is held, so each allocation searches (the costly path); the
        // port found is given back, so the pool stays as it is.
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
                let b = al.bind(&orig, None, Some(&masq), &env, &owner, &mut t);
                if let Ok(b) = &b {
                    b.release(&mut t.pools);
                }
                b
            })
        });
    }
}

/// A UDP/IPv4 frame from 198.18.0.10:5353 to 203.0.113.9:53 with valid checksums.
fn udp_frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, proto::UDP, 0, 0]);
    f.extend_from_slice(&[198, 18, 0, 10, 203, 0, 113, 9]);
    f.extend_from_slice(&[0x14, 0xe9, 0, 53, 0, 20, 0, 0]);
    f.extend_from_slice(b"twelve bytes");
    // A non-zero UDP checksum so the update path runs (fill_checksums keeps 0 as "none").
    f[40] = 1;
    let Ok(Parsed::Ip(_, ip)) = parse(&f, &TRUST_ALL) else {
        panic!("bench frame does not parse")
    };
    rewrite::fill_checksums(&mut f, &ip).unwrap();
    f
}

fn rewrite_cost(c: &mut Criterion) {
    let f = udp_frame();
    let Ok(Parsed::Ip(_, ip)) = parse(&f, &VERIFY_ALL) else {
        panic!("bench frame does not verify")
    };
    let key = FlowKey::from_info(&ip, 0).unwrap();
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 1).unwrap();
    let (env, masq) = masquerade();
    // Port 5353 taken: address and port both change (the costlier rewrite).
    let b = PortAllocator::new(0)
        .bind(
            &Tuple::from_key(&key),
            None,
            Some(&masq),
            &env,
            &owner,
            &mut holding(env.egress_addr.unwrap(), proto::UDP, 5353),
        )
        .unwrap();
    c.bench_function("snat_rewrite_udp4_addr_port", |bn| {
        bn.iter_batched_ref(
            || f.clone(),
            |fr| apply(fr, &ip, &b, Direction::Original),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, hash, alloc, rewrite_cost);
criterion_main!(benches);
