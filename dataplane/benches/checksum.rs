//! The ones'-complement sum (`wire::checksum::sum_native`, what the L4 checksum
//! verification of every received segment runs) against the scalar add-with-carry loop it
//! replaced above `WIDE_MIN` bytes (`sum_scalar`), in the same run: 20 bytes (an IPv4
//! header), 34 (a 64-byte frame's UDP segment and addresses), 256, 1 488 (a 1518-byte
//! frame's UDP segment and addresses) and 9 000 (a jumbo frame). The `dpdk` feature (the
//! default) brings the AVX2 dispatch; `--no-default-features` measures the SSE2 build.
//!
//! Run: `cargo bench -p dataplane --bench checksum -- --warm-up-time 1 --measurement-time 2`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::wire::checksum::{fold, sum_native, sum_scalar};
use std::hint::black_box;

fn sums(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [20usize, 34, 256, 1488, 9000] {
        // Odd start: the frame's address field is 2 bytes past a 4-byte boundary.
        let buf: Vec<u8> = (0..len + 2)
            .map(|i| u8::try_from(i.wrapping_mul(151) % 256).unwrap_or(0))
            .collect();
        let data = &buf[2..];
        assert_eq!(fold(sum_native(data)), fold(sum_scalar(data)));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("scalar", len), data, |b, d| {
            b.iter(|| sum_scalar(black_box(d)));
        });
        g.bench_with_input(BenchmarkId::new("sum_native", len), data, |b, d| {
            b.iter(|| sum_native(black_box(d)));
        });
    }
    g.finish();
}

criterion_group!(benches, sums);
criterion_main!(benches);
