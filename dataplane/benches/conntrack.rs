//! Conntrack table: hit and miss lookups at 1 k / 100 k / 1 M entries, a 32-key burst
//! lookup, the per-packet update of an established flow, and the insert + expire rate.
//!
//! `cargo bench -p dataplane --no-default-features --bench conntrack -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::conntrack::{FlowKey, Table, Tunables};
use dataplane::wire::{Addr, Family, Fragment, IpInfo, L4Info, proto};

/// A UDP packet of flow `i`: 198.18.x.y:(1024 + i % 50000) -> 203.0.113.1:53.
fn udp(i: u32) -> IpInfo {
    let [_, b, c, d] = i.to_be_bytes();
    IpInfo {
        family: Family::V4,
        src: Addr::from_v4([198, 18 | (b & 1), c, d]),
        dst: Addr::from_v4([203, 0, 113, 1]),
        proto: proto::UDP,
        ttl: 64,
        l3_off: 14,
        l4_off: 34,
        ip_len: 64,
        frag: Fragment::None,
        l4: Some(L4Info::Udp {
            sport: 1024 + u16::try_from(i % 50_000).unwrap_or(0),
            dport: 53,
        }),
    }
}

fn key(i: u32) -> FlowKey {
    FlowKey::from_info(&udp(i), 0).expect("UDP has a key")
}

fn filled(n: u32) -> Table {
    let tun = Tunables {
        max: n,
        ..Tunables::default()
    };
    let mut t = Table::new(n, tun, 0x1234_5678);
    for i in 0..n {
        let k = key(i);
        t.insert(k, k.inverse(), &udp(i), 0).expect("capacity is n");
    }
    t
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_lookup");
    g.throughput(Throughput::Elements(1));
    for n in [1_000u32, 100_000, 1_000_000] {
        let t = filled(n);
        // Keys visited in a scattered order so the 1 M case misses the caches.
        let probe: Vec<FlowKey> = (0..4096u32)
            .map(|j| key(j.wrapping_mul(2_654_435_761) % n))
            .collect();
        let miss: Vec<FlowKey> = (0..4096u32).map(|j| key(n + j)).collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("hit", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(t.lookup(&probe[i]))
            })
        });
        g.bench_function(BenchmarkId::new("miss", n), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(t.lookup(&miss[i]))
            })
        });
        let mut out = [None; 32];
        let mut base = 0usize;
        g.throughput(Throughput::Elements(32));
        g.bench_function(BenchmarkId::new("burst32_hit", n), |b| {
            b.iter(|| {
                base = (base + 32) & 4095;
                t.lookup_burst(&probe[base..base + 32], &mut out);
                black_box(&out);
            })
        });
        g.throughput(Throughput::Elements(1));
    }
    g.finish();
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_update");
    g.throughput(Throughput::Elements(1));
    let mut t = filled(100_000);
    let pkts: Vec<IpInfo> = (0..4096u32).map(|j| udp(j * 24 % 100_000)).collect();
    let mut i = 0usize;
    let mut now = 0u64;
    g.bench_function("lookup_and_update_100k", |b| {
        b.iter(|| {
            i = (i + 1) & 4095;
            now += 100;
            let k = FlowKey::from_info(&pkts[i], 0).expect("key");
            if let Some((id, dir)) = t.lookup(&k) {
                black_box(t.update(id, dir, &pkts[i], now));
            }
        })
    });
    g.finish();
}

fn insert_expire(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_insert_expire");
    g.throughput(Throughput::Elements(1));
    // One new flow per 10 µs of virtual time with a 1 s UDP timeout: about 100 k live
    // entries in steady state, so every insert is matched by an expiry; expire a few
    // entries per insert as the worker would between bursts.
    let tun = Tunables {
        udp: 1,
        max: 1 << 21,
        ..Tunables::default()
    };
    let mut t = Table::with_event_ring(1 << 21, tun, 7, 0);
    let mut i = 0u32;
    let mut now = 0u64;
    g.bench_function("udp_new_flow", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            now += 10_000;
            let p = udp(i);
            let k = FlowKey::from_info(&p, 0).expect("key");
            // Reused tuples (i wraps the port range) are tracked already: update them.
            match t.lookup(&k) {
                Some((id, dir)) => {
                    black_box(t.update(id, dir, &p, now));
                }
                None => {
                    black_box(t.insert(k, k.inverse(), &p, now).ok());
                }
            }
            if i.is_multiple_of(16) {
                black_box(t.expire(now, 64));
            }
        })
    });
    g.finish();
    eprintln!(
        "insert_expire: {} live, stats {:?}, bytes/entry {}",
        t.len(),
        t.stats(),
        t.bytes_per_entry()
    );
}

criterion_group!(benches, lookups, update, insert_expire);
criterion_main!(benches);
