//! Allocation of the table's large arrays, with an optional huge-page hint.
//!
//! A 1 M-entry table is ~240 MiB touched at random: with 4 KiB pages nearly every lookup
//! also misses the TLB (a two-dimensional page walk in a VM). The daemon installs a hint
//! (`fwd`: `dpdk_bindings::advise_hugepages`, `madvise(MADV_HUGEPAGE)`) that is called
//! on each large array after it is reserved and before it is first written, so the
//! first touch faults in 2 MiB pages. This crate has no `unsafe` and no libc: without a
//! hint (tests, benches, mgmt) arrays are plain `Vec`s.

use std::sync::OnceLock;

/// `(address, length)` of freshly reserved, unwritten memory → whether the hint took.
pub type LargeAllocHint = fn(usize, usize) -> bool;

static HINT: OnceLock<LargeAllocHint> = OnceLock::new();

/// Arrays below this are left alone (a huge page would mostly be empty).
const MIN_BYTES: usize = 4 << 20;

/// Installs the hint for every table created afterwards (first call wins; returns
/// whether this call installed it).
pub fn set_large_alloc_hint(hint: LargeAllocHint) -> bool {
    HINT.set(hint).is_ok()
}

/// `n` copies of `v`, the hint applied before the first write when the array is large.
pub(crate) fn filled<T: Clone>(n: usize, v: T) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(n);
    let bytes = n.saturating_mul(size_of::<T>());
    if bytes >= MIN_BYTES
        && let Some(hint) = HINT.get()
    {
        hint(out.as_mut_ptr().addr(), bytes);
    }
    out.resize(n, v);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    fn record(_addr: usize, len: usize) -> bool {
        SEEN.fetch_add(len, Ordering::Relaxed);
        true
    }

    #[test]
    fn large_arrays_get_the_hint_small_ones_do_not() {
        set_large_alloc_hint(record);
        let before = SEEN.load(Ordering::Relaxed);
        let small = filled(1024, 7u64);
        assert_eq!(SEEN.load(Ordering::Relaxed), before);
        let big = filled(1 << 20, 3u64);
        assert!(SEEN.load(Ordering::Relaxed) >= before + (8 << 20));
        assert_eq!((small.len(), small[1023]), (1024, 7));
        assert_eq!((big.len(), big[(1 << 20) - 1]), (1 << 20, 3));
    }
}
