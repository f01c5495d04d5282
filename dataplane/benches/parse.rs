//! Cost of `wire::parse` per packet: TCP/IPv4 (60-byte SYN with options, 1000-byte data
//! segment), UDP/IPv4 (64-byte frame), TCP/IPv6 (SYN with options), each with software
//! checksum verification (`VERIFY_ALL`) and with the NIC's verdict trusted (`hw: Good`).
//!
//! Run: `cargo bench -p dataplane --no-default-features --bench parse --
//! --warm-up-time 1 --measurement-time 2`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::wire::build::{EthSpec, Frame, IpSpec, L4Spec, TcpSpec};
use dataplane::wire::{Addr, HwCsum, ParseOptions, TcpFlags, VERIFY_ALL, parse};
use std::hint::black_box;

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let eth = EthSpec {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
        vlan: None,
    };
    let v4 = IpSpec::new(
        Addr::from_v4([198, 18, 0, 1]),
        Addr::from_v4([198, 19, 0, 1]),
    );
    let v6 = IpSpec::new(
        Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        Addr::from_v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
    );
    let syn = TcpSpec {
        sport: 40000,
        dport: 443,
        seq: 1,
        flags: TcpFlags(TcpFlags::SYN),
        window: 64240,
        mss: Some(1460),
        wscale: Some(7),
        sack_perm: true,
        timestamps: Some((1, 0)),
        ..TcpSpec::default()
    };
    let data = [0xabu8; 1000];
    let seg = TcpSpec {
        flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
        mss: None,
        wscale: None,
        sack_perm: false,
        payload: &data,
        ..syn
    };
    let payload = [0u8; 18];
    let udp = L4Spec::Udp {
        sport: 5000,
        dport: 53,
        payload: &payload,
    };
    let mk = |ip, l4| Frame::ip(eth, ip, l4).to_vec().expect("frame builds");
    vec![
        ("tcp4_syn", mk(v4, L4Spec::Tcp(syn))),
        ("tcp4_1000B", mk(v4, L4Spec::Tcp(seg))),
        ("udp4_64B", mk(v4, udp)),
        ("tcp6_syn", mk(v6, L4Spec::Tcp(syn))),
    ]
}

fn bench(c: &mut Criterion) {
    let trust = ParseOptions::with_offload(HwCsum::Good, HwCsum::Good);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, f) in frames() {
        assert!(parse(&f, &VERIFY_ALL).is_ok(), "{name} parses");
        g.bench_function(format!("{name}/sw_csum"), |b| {
            b.iter(|| parse(black_box(&f), black_box(&VERIFY_ALL)))
        });
        g.bench_function(format!("{name}/offload"), |b| {
            b.iter(|| parse(black_box(&f), black_box(&trust)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
