//! TSC time, cache prefetch and one vector compare, as safe functions (the data plane
//! forbids `unsafe`).

use crate::ffi;

/// Read the time-stamp counter (`rte_rdtsc`). Works without EAL (for benchmarks).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: executes rdtsc; no memory access, no precondition.
    unsafe { ffi::shim_rte_rdtsc() }
}

/// TSC frequency in Hz (`rte_get_tsc_hz`); 0 before EAL has measured it in `rte_eal_init`.
#[inline]
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a global set once by rte_eal_init (0 before); no precondition.
    unsafe { ffi::rte_get_tsc_hz() }
}

/// Prefetch the cache line at address `p` into all levels (`rte_prefetch0`). Safe for
/// any address: a prefetch is a hint that never faults and never dereferences (for
/// callers that compute addresses, as the connection table's burst prefetch does).
#[inline]
pub fn prefetch0_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never faults or dereferences, whatever the address
    // (Intel SDM, PREFETCHh); SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

macro_rules! prefetch_fn {
    ($(#[$m:meta])* $name:ident, $hint:ident) => {
        $(#[$m])*
        #[inline]
        pub fn $name<T: ?Sized>(r: &T) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: prefetch is a hint that never faults and does not dereference; the
            // address comes from a reference anyway. SSE is baseline on x86_64.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::$hint }>(
                    (r as *const T).cast::<i8>(),
                );
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = r;
        }
    };
}

prefetch_fn!(
    /// Prefetch the cache line of `r` into all cache levels (`rte_prefetch0`).
    prefetch0, _MM_HINT_T0
);
prefetch_fn!(
    /// Prefetch into L2 and up (`rte_prefetch1`).
    prefetch1, _MM_HINT_T1
);
prefetch_fn!(
    /// Prefetch into L3 and up (`rte_prefetch2`).
    prefetch2, _MM_HINT_T2
);
prefetch_fn!(
    /// Prefetch with a non-temporal hint (`rte_prefetch_non_temporal`).
    prefetch_non_temporal, _MM_HINT_NTA
);

/// Huge page size the kernel's transparent huge pages use on x86_64.
const THP_BYTES: usize = 2 << 20;

/// Asks the kernel to back the 2 MiB-aligned interior of `[addr, addr + len)` with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`, honoured when
/// `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`). For large
/// arrays allocated but not yet written (the connection table: random accesses over
/// hundreds of MiB miss the TLB on every lookup with 4 KiB pages). `false`: nothing
/// aligned to advise, or the kernel refused (no THP support, not mapped).
pub fn advise_hugepages(addr: usize, len: usize) -> bool {
    let start = addr.next_multiple_of(THP_BYTES);
    let end = addr.saturating_add(len) / THP_BYTES * THP_BYTES;
    if end <= start {
        return false;
    }
    // SAFETY: MADV_HUGEPAGE only changes how the kernel backs the range (madvise(2)); it
    // reads and writes no memory and unmaps nothing, whatever the range: an unmapped one
    // fails with ENOMEM. The pointer is never dereferenced.
    unsafe { ffi::shim_madvise_hugepage(std::ptr::without_provenance_mut(start), end - start) == 0 }
}

/// The lanes of `lanes` equal to `v`, as a bit mask (bit i for `lanes[i]`): two SSE2
/// 4-lane compares and a sign mask, instead of eight compares (an 8-way hash bucket's
/// signatures).
#[inline]
pub fn eq_mask8(lanes: &[u32; 8], v: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86_64 baseline, so the target feature the function
    // requires is always present.
    let m = unsafe { eq_mask8_sse2(lanes, v) };
    #[cfg(not(target_arch = "x86_64"))]
    let m = lanes
        .iter()
        .enumerate()
        .fold(0, |m, (i, &x)| m | u32::from(x == v) << i);
    m
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn eq_mask8_sse2(lanes: &[u32; 8], v: u32) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps,
        _mm_set1_epi32,
    };
    let p = lanes.as_ptr().cast::<__m128i>();
    // SAFETY: `lanes` is 32 readable bytes behind a reference; this reads the first 16
    // (an unaligned load is allowed).
    let lo = unsafe { _mm_loadu_si128(p) };
    // SAFETY: as above, the last 16 bytes (p + 1 is still inside the array).
    let hi = unsafe { _mm_loadu_si128(p.wrapping_add(1)) };
    let k = _mm_set1_epi32(v.cast_signed());
    let m_lo = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lo, k)));
    let m_hi = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(hi, k)));
    (m_lo | m_hi << 4).cast_unsigned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_mask8_flags_every_equal_lane() {
        let lanes = [5, 0, 5, 9, u32::MAX, 5, 0, 5];
        assert_eq!(eq_mask8(&lanes, 5), 0b1010_0101);
        assert_eq!(eq_mask8(&lanes, 0), 0b0100_0010);
        assert_eq!(eq_mask8(&lanes, u32::MAX), 0b0001_0000);
        assert_eq!(eq_mask8(&lanes, 7), 0);
    }

    #[test]
    fn rdtsc_without_eal_advances() {
        let a = rdtsc();
        let mut x = 0u64;
        for i in 0..1000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let b = rdtsc();
        assert!(b > a, "TSC did not advance: {a} -> {b} ({x})");
    }

    #[test]
    fn prefetch_accepts_any_reference() {
        let v = [1u8, 2, 3];
        prefetch0(&v);
        prefetch1(&v[..]);
        prefetch2(&v[1]);
        prefetch_non_temporal("str");
    }

    #[test]
    fn hugepage_advice_is_harmless_and_needs_an_aligned_interior() {
        // Nothing 2 MiB-aligned inside: refused without a system call.
        assert!(!advise_hugepages(4096, 4096));
        // A real 8 MiB allocation: advised or not depending on the kernel's THP mode,
        // never a fault, and the memory stays usable.
        let mut v = vec![0u8; 8 << 20];
        let _ = advise_hugepages(v.as_mut_ptr().addr(), v.len());
        v[5 << 20] = 7;
        assert_eq!(v.iter().map(|&b| u64::from(b)).sum::<u64>(), 7);
    }
}
