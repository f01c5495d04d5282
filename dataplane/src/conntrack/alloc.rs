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
