//! Burst-level cost of established flows: the vector fast path (`prepare_vector`,
//! `fast_path` per frame, `finish_vector`, what the I/O edge runs per RX burst) against
//! the per-packet pipeline (`Pipeline::process`, the full path with its verdict cache),
//! in the same run, without EAL.
//!
//! Traffic: 64-byte UDP/IPv4 frames (18 bytes of payload, software checksum verification
//! of the IPv4 header and the UDP checksum) of N established, ASSURED flows from lan to
//! wan, the issue's ruleset (`ct state established,related accept`, `iifname "lan"
//! oifname "wan" accept`, SNAT to 64 wan addresses: one address holds at most 64 512
//! connections per worker whatever the servers, docs/nat.md), flows in random order (a fixed
//! permutation, so the hardware prefetcher cannot hide table misses). Each iteration
//! copies a vector of frames from the per-flow templates into the receive buffers (as a
//! NIC or memif delivers them; `copy_only` measures that part alone) and processes it.
//! Throughput is per packet.
//!
//! Run: `cargo bench -p dataplane --bench fastpath -- --warm-up-time 1
//! --measurement-time 3` (the default features: the prefetch instruction comes from
//! `dpdk-bindings`; no EAL is started).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use dataplane::conntrack::Tunables;
use dataplane::conntrack::alloc::Prefetch;
use dataplane::rules::{Publisher, load_text};
use dataplane::wire::VERIFY_ALL;
use dataplane::worker::process::Process;
use dataplane::worker::{Action, Pipeline, SCRATCH_LEN};

mod common;
use common::{GW_MAC, LAN_MAC, WAN_MAC};
const SEC: u64 = 1_000_000_000;
const FRAME: usize = 60;

const RULESET: &str = r#"
table ip nat {
 chain post {
  type nat hook postrouting priority 100; policy accept;
  oifname "wan" snat to 198.19.0.64-198.19.0.127
 }
}
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy drop;
  ct state established,related accept
  iifname "lan" oifname "wan" accept
 }
}
"#;

fn sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    u16::try_from(s).unwrap_or(0)
}

/// A 60-byte UDP/IPv4 frame (64 on the wire) with valid checksums.
fn udp_frame(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    macs: ([u8; 6], [u8; 6]),
) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[0..6].copy_from_slice(&macs.0);
    f[6..12].copy_from_slice(&macs.1);
    f[12..14].copy_from_slice(&[8, 0]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&46u16.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    let c = !fold(sum(&f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap_or(0);
    }
    let pseudo = sum(&src) + sum(&dst) + 17 + 26;
    let mut c = !fold(pseudo + sum(&f[34..60]));
    if c == 0 {
        c = 0xffff;
    }
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

fn pipeline(capacity: u32) -> (Pipeline, Publisher) {
    let names = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let publisher = Publisher::new(load_text(RULESET, &names, 1).unwrap());
    let tunables = Tunables {
        max: capacity,
        ..Tunables::default()
    };
    let p = common::router(16, capacity, tunables, Some(publisher.worker()));
    (p, publisher)
}

/// The lan→wan frame of flow `i`.
fn flow(i: u32) -> [u8; FRAME] {
    // Sources from 198.18.2.0 up (not in 198.18.0.0/24, which holds the port's address).
    let [_, a, b, c] = (i + 512).to_be_bytes();
    let src = [198, 18, a, b];
    let dst = [203, 0, c % 100, a ^ b];
    udp_frame(
        src,
        dst,
        1024 + u16::from(c),
        53,
        (LAN_MAC, [2, 0, 0, 0, 1, 10]),
    )
}

/// `n` established, ASSURED flows with their recipe built (first packet, the reply, one
/// more packet 3 s later); returns the pipeline and the lan→wan frames.
fn established(n: u32) -> (Pipeline, Publisher, Vec<[u8; FRAME]>) {
    // At least 128 NAT pools (one per 1 024 entries): the 64 SNAT addresses times UDP.
    let (mut p, publisher) = pipeline((n + n / 4 + 1024).max(1 << 17));
    // The table's own hints as the daemon's workers issue them (`daemon::launch`).
    p.use_cpu_prefetch();
    let mut s = vec![0u8; SCRATCH_LEN];
    let frames: Vec<[u8; FRAME]> = (0..n).map(flow).collect();
    for (i, f) in frames.iter().enumerate() {
        let mut x = *f;
        let a = p.process(0, &mut x, SEC, &mut s);
        assert!(
            matches!(a, Action::Forward { port: 1, .. }),
            "flow {i} of {n}: {a:?}"
        );
        // The reply: from the wan side to the translated source.
        let mut r = udp_frame(
            [x[30], x[31], x[32], x[33]],
            [x[26], x[27], x[28], x[29]],
            u16::from_be_bytes([x[36], x[37]]),
            u16::from_be_bytes([x[34], x[35]]),
            (WAN_MAC, GW_MAC),
        );
        // Tracked (the lan hosts have no neighbour entries: it waits for resolution).
        let a = p.process(1, &mut r, SEC + SEC / 2, &mut s);
        assert_eq!(a, Action::SlowPath);
    }
    for f in &frames {
        let mut x = *f;
        let a = p.process(0, &mut x, 4 * SEC, &mut s);
        assert!(matches!(a, Action::Forward { port: 1, .. }), "{a:?}");
    }
    assert_eq!(p.counters().proc.recipes_built, u64::from(n));
    (p, publisher, frames)
}

/// A fixed pseudo-random permutation of `0..n` (splitmix-driven Fisher-Yates).
fn permutation(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..u32::try_from(n).unwrap()).collect();
    let mut s = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..n).rev() {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let j = usize::try_from((z ^ (z >> 31)) % (i as u64 + 1)).unwrap();
        v.swap(i, j);
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fastpath");
    let mut scratch = vec![0u8; SCRATCH_LEN];
    for flows in [1_000u32, 1_000_000] {
        let (mut p, _publisher, templates) = established(flows);
        let order = permutation(templates.len());
        let fast_before = p.counters().proc.fast_path;
        // Frames `vector_fast_path` ran (none when a name filter left it out).
        let mut fast_frames = 0u64;
        for vec_len in [32usize, 256] {
            let mut bufs = vec![[0u8; FRAME]; vec_len];
            let mut at = 0usize;
            let mut next = |bufs: &mut [[u8; FRAME]]| {
                for b in bufs.iter_mut() {
                    *b = templates[order[at] as usize];
                    at = (at + 1) % order.len();
                }
            };
            g.throughput(Throughput::Elements(vec_len as u64));
            let id = |what: &str| BenchmarkId::new(what, format!("{flows}_flows/{vec_len}"));
            g.bench_function(id("copy_only"), |b| {
                b.iter(|| {
                    next(&mut bufs);
                    black_box(&mut bufs);
                })
            });
            g.bench_function(id("vector_fast_path"), |b| {
                b.iter(|| {
                    next(&mut bufs);
                    fast_vector(&mut p, &mut bufs, &mut scratch);
                    fast_frames += vec_len as u64;
                })
            });
            if vec_len == 32 {
                g.bench_function(id("per_packet_pipeline"), |b| {
                    b.iter(|| {
                        next(&mut bufs);
                        slow_vector(&mut p, &mut bufs, &mut scratch);
                    })
                });
            }
        }
        // Every frame of an established flow is the fast path's; checked only where the
        // group ran (a name filter may have left `vector_fast_path` out).
        let fast = p.counters().proc.fast_path - fast_before;
        assert_eq!(
            fast, fast_frames,
            "{flows} flows: the fast path took {fast} of the {fast_frames} frames"
        );
    }
    g.finish();
}

/// One vector through the fast path, as the I/O edge runs it. The stages are separate
/// functions so that callgrind's inclusive counts split the cost per stage.
#[inline(never)]
fn fast_vector(p: &mut Pipeline, bufs: &mut [[u8; FRAME]], scratch: &mut [u8]) {
    stage_prepare(p, bufs);
    stage_apply(p, bufs, scratch);
    stage_finish(p);
}

/// Stages 1-2: key, hash, bucket prefetch, bucket scan, recipe prefetch. Called
/// through the `Process` trait with the hint the I/O edge gives (`WorkerIo::vector`).
#[inline(never)]
fn stage_prepare(p: &mut Pipeline, bufs: &[[u8; FRAME]]) {
    let frames: arrayvec::ArrayVec<&[u8], 256> = bufs.iter().map(|f| &f[..]).collect();
    Process::prepare_vector(p, &frames, Prefetch::Cpu);
}

/// Stage 3: each frame through the fast path, or the full pipeline when it declines.
#[inline(never)]
fn stage_apply(p: &mut Pipeline, bufs: &mut [[u8; FRAME]], scratch: &mut [u8]) {
    for (i, f) in bufs.iter_mut().enumerate() {
        let a = match p.fast_path(i, 0, f, &VERIFY_ALL, 5 * SEC) {
            Some(a) => a,
            None => p.process(0, f, 5 * SEC, scratch),
        };
        black_box(a);
    }
}

/// Stage 4: the rule credits of the vector.
#[inline(never)]
fn stage_finish(p: &mut Pipeline) {
    p.finish_vector();
}

/// One vector through the per-packet pipeline.
#[inline(never)]
fn slow_vector(p: &mut Pipeline, bufs: &mut [[u8; FRAME]], scratch: &mut [u8]) {
    for f in bufs.iter_mut() {
        black_box(p.process(0, f, 5 * SEC, scratch));
    }
}

/// Instruction counts per packet under callgrind: `FASTPATH_COUNT=fast|slow,FLOWS,VEC`
/// (or `clock,N`: [`clock_mode`])
/// runs 1000 vectors of VEC frames of FLOWS flows through one path and nothing else
/// timed; count only inside `fast_vector` / `slow_vector` (`valgrind --tool=callgrind
/// --toggle-collect='*fast_vector*' target/release/deps/fastpath-…`) and divide by
/// 1000 × VEC. The copy of the frames is outside. `callgrind_annotate --inclusive=yes`
/// then shows the stages (`stage_prepare`, `stage_apply`, `stage_finish`) apart.
fn count_mode(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    if let ["clock", n] = parts[..] {
        return clock_mode(n.parse().unwrap());
    }
    let (path, flows, vec_len) = match parts[..] {
        [p, f, v] => (p, f.parse::<u32>().unwrap(), v.parse::<usize>().unwrap()),
        _ => panic!("FASTPATH_COUNT=fast|slow,FLOWS,VEC"),
    };
    let (mut p, _publisher, templates) = established(flows);
    let order = permutation(templates.len());
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut bufs = vec![[0u8; FRAME]; vec_len];
    let mut at = 0;
    for _ in 0..1000 {
        for b in bufs.iter_mut() {
            *b = templates[order[at] as usize];
            at = (at + 1) % order.len();
        }
        match path {
            "fast" => fast_vector(&mut p, &mut bufs, &mut scratch),
            _ => slow_vector(&mut p, &mut bufs, &mut scratch),
        }
    }
    eprintln!(
        "{path}: {} packets, {} fast",
        1000 * vec_len,
        p.counters().proc.fast_path
    );
}

/// The worker loop's TSC-to-ns conversion, once per loop iteration: the 128-bit division
/// the loops ran before (`clock_exact`) and the multiply-shift they run now
/// (`clock_fast`), N readings each (`FASTPATH_COUNT=clock,N`; toggle-collect each
/// function and divide by N). Timed by criterion in [`bench_clock`].
fn clock_mode(n: u64) {
    let hz = black_box(2_494_140_000u64);
    // Readings of a TSC up some hours, as a running worker has (the division's slow path
    // starts once `tsc * 1e9` passes 64 bits, after ~7 s at 2.5 GHz).
    let start = hz * 3600 * 5;
    let a = clock_exact(start, n, hz);
    let b = clock_fast(start, n, dataplane::worker::clock::TscClock::new(hz));
    eprintln!("clock: {n} conversions each, sums {a} / {b}");
}

#[inline(never)]
fn clock_exact(start: u64, n: u64, hz: u64) -> u64 {
    (0..n).fold(0u64, |acc, i| {
        acc.wrapping_add(dataplane::worker::clock::tsc_to_ns_exact(
            black_box(start + i * 97),
            hz,
        ))
    })
}

#[inline(never)]
fn clock_fast(start: u64, n: u64, clock: dataplane::worker::clock::TscClock) -> u64 {
    (0..n).fold(0u64, |acc, i| {
        acc.wrapping_add(clock.ns(black_box(start + i * 97)))
    })
}

/// The same two conversions timed (`fastpath_clock/exact`, `/tsc_clock`): 1 000 readings
/// of a TSC 5 h up per iteration.
fn bench_clock(c: &mut Criterion) {
    let mut g = c.benchmark_group("fastpath_clock");
    let hz = black_box(2_494_140_000u64);
    let start = hz * 3600 * 5;
    g.throughput(Throughput::Elements(1000));
    g.bench_function("exact", |b| b.iter(|| clock_exact(start, 1000, hz)));
    let clock = dataplane::worker::clock::TscClock::new(hz);
    g.bench_function("tsc_clock", |b| b.iter(|| clock_fast(start, 1000, clock)));
    g.finish();
}

criterion_group!(benches, bench_clock, bench);

fn main() {
    if let Ok(spec) = std::env::var("FASTPATH_COUNT") {
        count_mode(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
