//! Cost of going through the C shim (an out-of-line call into DPDK's inline function)
//! compared with the same instruction inlined, and of a software Toeplitz hash. No EAL
//! needed: `cargo bench -p dpdk-bindings --bench shim -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dpdk_bindings::{SYMMETRIC_RSS_KEY, rdtsc, softrss};

fn bench(c: &mut Criterion) {
    c.bench_function("rdtsc via shim (rte_rdtsc)", |b| {
        b.iter(|| black_box(rdtsc()))
    });
    #[cfg(target_arch = "x86_64")]
    c.bench_function("rdtsc inline (_rdtsc baseline)", |b| {
        // SAFETY: rdtsc has no preconditions.
        b.iter(|| black_box(unsafe { core::arch::x86_64::_rdtsc() }))
    });
    let tuple = [0xc612_0001u32, 0xcb00_7109, (40000 << 16) | 443];
    c.bench_function("softrss ipv4+ports (rte_softrss)", |b| {
        b.iter(|| black_box(softrss(black_box(&tuple), &SYMMETRIC_RSS_KEY)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
