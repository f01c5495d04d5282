//! Per-packet cost of the worker pipeline (`Pipeline::process`), without EAL.
//!
//! - `forward_established_*`: a routed UDP packet of a tracked flow with a resolved next
//!   hop (parse with software checksum verification, conntrack lookup + update, the
//!   forward chain, LPM over 100 routes, TTL decrement, MAC rewrite), with a 10-rule
//!   ruleset and with none.
//! - `new_flow_v4_udp_10_rules`: every packet starts a connection: classify, prerouting,
//!   route, forward (10th rule accepts), postrouting, conntrack insert.
//! - `echo_reply_v4`: an echo request to an own address answered in place.
//!
//! Run: `cargo bench -p dataplane --no-default-features --bench pipeline --
//! --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::conntrack::Tunables;
use dataplane::rules::{Publisher, WorkerRuleset, load_text};
use dataplane::worker::{Action, Pipeline, SCRATCH_LEN};

mod common;
use common::LAN_MAC;

fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !u16::try_from(s).unwrap_or(0)
}

/// Ethernet + IPv4 + `l4` (proto `p`), TTL 64.
fn frame_v4(src: [u8; 4], dst: [u8; 4], p: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20];
    f[0..6].copy_from_slice(&LAN_MAC);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 10]);
    f[12..14].copy_from_slice(&[8, 0]);
    let total = u16::try_from(20 + l4.len()).unwrap();
    f[14] = 0x45;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[22] = 64;
    f[23] = p;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let c = csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(l4);
    f
}

fn pipeline(rules: Option<WorkerRuleset>) -> Pipeline {
    common::router(24, 65_536, Tunables::default(), rules)
}

/// A forward chain of 10 rules; the UDP flows of the bench match the 10th.
fn ten_rules() -> WorkerRuleset {
    let mut text = String::from(
        "table inet filter {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n",
    );
    for port in 1..=9 {
        text.push_str(&format!("  tcp dport {} accept\n", 1000 + port));
    }
    text.push_str("  udp dport 53 accept\n }\n}\n");
    let names = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let compiled = load_text(&text, &names, 1).unwrap();
    Publisher::new(compiled).worker()
}

fn udp_frame(sport: u16) -> Vec<u8> {
    let mut udp = vec![0u8; 8 + 18];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    // UDP checksum 0: "no checksum" for IPv4 (RFC 768), so no pseudo-header work here.
    frame_v4([198, 18, 0, 10], [203, 0, 50, 7], 17, &udp)
}

// The bench times batches itself (a fresh table per batch, so new flows never hit a full
// table); the data-plane ban on `Instant` does not apply to a bench harness.
#[allow(clippy::disallowed_types)]
fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    let mut scratch = vec![0u8; SCRATCH_LEN];

    // A tracked flow, 10-rule ruleset loaded. The first packet creates the entry (a first
    // packet never fills the entry's verdict slot, `Pipeline::cache_key`), the second
    // evaluates the chains and caches the verdict in the entry, the third and every later
    // one takes it. The set-up sends all three before timing, so even a `--test` run of
    // one iteration measures the cached case and the check does not depend on how many
    // iterations criterion chose.
    let mut p = pipeline(Some(ten_rules()));
    let template = udp_frame(4000);
    let mut f = template.clone();
    for n in 0..3 {
        f.copy_from_slice(&template);
        let a = p.process(0, &mut f, 1 + n, &mut scratch);
        assert!(matches!(a, Action::Forward { port: 1, .. }), "{a:?}");
    }
    assert_eq!(
        p.counters().proc.verdict_cache_hits,
        1,
        "the third packet of the flow did not take the cached verdict"
    );
    g.bench_function("forward_established_v4_udp_10_rules", |b| {
        b.iter(|| {
            // Restore the headers the pipeline rewrote (MACs, TTL, checksum).
            f[..34].copy_from_slice(&template[..34]);
            black_box(p.process(0, black_box(&mut f), 4, &mut scratch))
        })
    });
    let c = p.counters();
    assert_eq!(
        c.proc.verdict_cache_hits + 2,
        c.rx,
        "a timed packet missed the verdict cache"
    );

    // Routing only: no ruleset, conntrack still on.
    let mut p = pipeline(None);
    let mut f = template.clone();
    g.bench_function("forward_established_v4_udp_no_rules", |b| {
        b.iter(|| {
            f[..34].copy_from_slice(&template[..34]);
            black_box(p.process(0, black_box(&mut f), 2, &mut scratch))
        })
    });

    // New flows: every packet a new source port, accepted by the 10th rule, inserted.
    let frames: Vec<Vec<u8>> = (1..=60_000u16).map(udp_frame).collect();
    g.bench_function("new_flow_v4_udp_10_rules", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(frames.len() as u64);
                let mut p = pipeline(Some(ten_rules()));
                let mut batch: Vec<Vec<u8>> = frames[..usize::try_from(n).unwrap()].to_vec();
                let t = std::time::Instant::now();
                for f in &mut batch {
                    let a = p.process(0, f, 2, &mut scratch);
                    debug_assert!(matches!(a, Action::Forward { .. }));
                    black_box(a);
                }
                total += t.elapsed();
                left -= n;
            }
            total
        })
    });

    let mut p = pipeline(None);
    let mut echo = vec![0u8; 8 + 56];
    echo[0] = 8;
    let c = csum(&echo);
    echo[2..4].copy_from_slice(&c.to_be_bytes());
    let template = frame_v4([198, 18, 0, 10], [198, 18, 0, 1], 1, &echo);
    let mut f = template.clone();
    g.bench_function("echo_reply_v4", |b| {
        b.iter(|| {
            f.copy_from_slice(&template);
            black_box(p.process(0, black_box(&mut f), 1, &mut scratch))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
