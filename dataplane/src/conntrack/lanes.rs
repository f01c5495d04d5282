//! A bucket's lanes (`table.rs`): how many ways, and which of them hold a value. A leaf
//! below `table.rs` and `recipe.rs`: it imports neither.

/// Ways (references) per index bucket.
pub(super) const WAYS: usize = 8;

/// The lanes equal to `v`, as a bit mask (SSE2 from `dpdk-bindings` where there is one).
#[cfg(feature = "dpdk")]
pub(super) use dpdk_bindings::eq_mask8;

#[cfg(not(feature = "dpdk"))]
pub(super) fn eq_mask8(lanes: &[u32; WAYS], v: u32) -> u32 {
    lanes
        .iter()
        .enumerate()
        .fold(0, |m, (i, &x)| m | u32::from(x == v) << i)
}
