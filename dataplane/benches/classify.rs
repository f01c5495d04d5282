//! New-flow classification cost against rule count: the tuple-space classifier
//! (`eval`) and the linear oracle (`eval_linear`) at 10, 1 000 and 10 000 rules.
//!
//! Rules are `ip saddr A ip daddr B tcp dport P ct state new accept` with distinct
//! (A, B, P), as a generated per-host allow list looks; the probe packet matches the
//! last rule (the worst case for a linear scan) or none (policy drop).
//!
//! Run: `cargo bench -p dataplane --no-default-features --bench classify --
//! --warm-up-time 1 --measurement-time 2`

// Synthetic addresses and ports wrap on purpose.
#![allow(clippy::cast_possible_truncation)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dataplane::rules::{Hook, PacketCtx, PortsByName, ct_state, load_text};
use dataplane::wire::{Addr, Family, Fragment, IpInfo, L4Info, TcpFlags, TcpInfo, proto};
use std::hint::black_box;

fn ruleset(n: usize) -> String {
    let mut s = String::from(
        "table ip t {\n chain f {\n  type filter hook forward priority 0; policy drop;\n  ct state established,related accept\n",
    );
    for i in 0..n {
        let (a, b) = ((i >> 8) as u8, i as u8);
        s += &format!(
            "  ip saddr 10.{a}.{b}.1 ip daddr 192.0.2.{} tcp dport {} ct state new accept\n",
            i % 200,
            1000 + (i % 5000)
        );
    }
    s += " }\n}\n";
    s
}

fn packet(i: usize) -> IpInfo {
    let (a, b) = ((i >> 8) as u8, i as u8);
    IpInfo {
        family: Family::V4,
        src: Addr::from_v4([10, a, b, 1]),
        dst: Addr::from_v4([192, 0, 2, (i % 200) as u8]),
        proto: proto::TCP,
        ttl: 64,
        l3_off: 14,
        l4_off: 34,
        ip_len: 60,
        frag: Fragment::None,
        l4: Some(L4Info::Tcp(TcpInfo {
            sport: 40000,
            dport: 1000 + (i % 5000) as u16,
            seq: 0,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 1000,
            payload_len: 0,
            wscale: None,
            sack_perm: false,
            mss: None,
        })),
    }
}

fn bench(c: &mut Criterion) {
    let ports = PortsByName::new();
    let mut g = c.benchmark_group("new_flow");
    for n in [10usize, 1_000, 10_000] {
        let rs = load_text(&ruleset(n), &ports, 1).unwrap();
        let hit = packet(n - 1);
        let ctx = |ip| PacketCtx {
            ip,
            iif: Some(0),
            oif: Some(1),
            ct_state: ct_state::NEW,
            ct_status: 0,
            ct_mark: 0,
            mark: 0,
            len: 60,
            first_packet: true,
            facts: Default::default(),
        };
        g.bench_with_input(BenchmarkId::new("classifier_last_rule", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    rs.eval(Hook::Forward, &mut ctx(black_box(&hit)), 0, 1)
                        .verdict,
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("linear_last_rule", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    rs.eval_linear(Hook::Forward, &mut ctx(black_box(&hit)), 0, 1)
                        .verdict,
                )
            })
        });
        let mut miss = packet(n - 1);
        miss.dst = Addr::from_v4([198, 51, 100, 1]);
        g.bench_with_input(BenchmarkId::new("classifier_no_match", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    rs.eval(Hook::Forward, &mut ctx(black_box(&miss)), 0, 1)
                        .verdict,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
