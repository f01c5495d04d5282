//! Allocation of the table's large arrays (entries, side arrays, recipes, index).
//!
//! A 1 M-entry table is hundreds of MiB touched at random: with 4 KiB pages nearly every
//! lookup would also miss the TLB. With the `dpdk` feature the arrays are
//! [`dpdk_bindings::HugeArray`]s: in DPDK's hugepage memory once the daemon has called
//! [`use_dpdk_memory`] (after EAL init, with hugepages), else — EAL without hugepages, or
//! its hugepages short, or no EAL at all (tests, benches) — on the heap with a
//! transparent-huge-page hint; [`Table::on_hugepages`](super::Table::on_hugepages) tells
//! which. Without the feature (the pure library `mgmt` links) they are plain `Vec`s.
//! Either way they are allocated once, when the table is made, and never grow.

#[cfg(feature = "dpdk")]
mod imp {
    use std::sync::OnceLock;

    use dpdk_bindings::{HugeArray, HugeMem};

    /// A table array.
    pub type Slab<T> = HugeArray<T>;

    static MEM: OnceLock<HugeMem> = OnceLock::new();

    /// Puts every table made afterwards in `mem` (first call wins; returns whether this
    /// call set it).
    pub fn use_dpdk_memory(mem: HugeMem) -> bool {
        MEM.set(mem).is_ok()
    }

    pub(crate) fn filled<T: Copy>(n: usize, v: T) -> Slab<T> {
        HugeArray::filled(n, v, MEM.get())
    }

    pub(crate) fn on_hugepages<T: Copy>(s: &Slab<T>) -> bool {
        s.on_hugepages()
    }
}

#[cfg(not(feature = "dpdk"))]
mod imp {
    /// A table array.
    pub type Slab<T> = Vec<T>;

    pub(crate) fn filled<T: Copy>(n: usize, v: T) -> Slab<T> {
        vec![v; n]
    }

    pub(crate) fn on_hugepages<T>(_: &Slab<T>) -> bool {
        false
    }
}

#[cfg(feature = "dpdk")]
pub use imp::use_dpdk_memory;
pub(crate) use imp::{Slab, filled, on_hugepages};

/// The cache-line prefetch the table (and its port pools) issue ahead of their own misses:
/// expiry's index buckets, an insert's reply buckets and free slot, a NAT binding's bitmap
/// word. A hint only: nothing is read through the addresses it is given, and no result
/// depends on it.
///
/// `Cpu` is a direct call the compiler inlines into the hot loops (a `prefetcht0`); a
/// stored `fn` pointer would be an indirect call at every hint, which cost the worker
/// about 3 % of its cycles. `Fn` is for tests that watch the hints.
#[derive(Clone, Copy, Debug, Default)]
pub enum Prefetch {
    /// No hint (the default: tests, benches, the pure library).
    #[default]
    Off,
    /// The CPU's prefetch (`dpdk_bindings::prefetch0_addr`; without the `dpdk` feature,
    /// which the pure library `mgmt` links, there is no `unsafe` to issue one: no hint).
    Cpu,
    /// A caller's function, called with each address (tests).
    Fn(fn(*const u8)),
}

impl Prefetch {
    /// Issues the hint for the cache line at `p`.
    #[inline(always)]
    pub fn line(self, p: *const u8) {
        match self {
            Prefetch::Off => {}
            #[cfg(feature = "dpdk")]
            Prefetch::Cpu => dpdk_bindings::prefetch0_addr(p),
            #[cfg(not(feature = "dpdk"))]
            Prefetch::Cpu => {}
            Prefetch::Fn(f) => f(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_filled_and_outside_eal_not_on_hugepages() {
        let small = filled(1024, 7u64);
        let big = filled(1 << 20, 3u64);
        assert_eq!((small.len(), small[1023]), (1024, 7));
        assert_eq!((big.len(), big[(1 << 20) - 1]), (1 << 20, 3));
        assert!(!on_hugepages(&big), "no EAL in unit tests");
    }
}
