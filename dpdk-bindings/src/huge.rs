//! Large fixed arrays in DPDK's hugepage memory (`rte_malloc_socket`), for tables that are
//! allocated once and read at random (the connection tables): reserved hugepages need no
//! compaction at start-up (a 10 M-entry table in transparent huge pages took 24 s once)
//! and keep TLB misses rare whatever the kernel does.
//!
//! [`HugeMem`] says where arrays go: made from a running [`Eal`] with hugepages, every
//! [`HugeArray`] is taken from DPDK's heap on its socket; when that is short (or EAL runs
//! with `--no-huge`, or there is no EAL: tests, benches), the array comes from the
//! ordinary heap with a transparent-huge-page hint instead, and
//! [`HugeArray::on_hugepages`] says so, so the caller can tell the user.
//!
//! Soundness: an array in DPDK memory holds an `EalToken`, so `rte_eal_cleanup` (which
//! unmaps that memory) cannot run while it lives; [`HugeMem`] itself holds only a weak
//! reference and does not keep EAL up. Elements are `Copy` (no destructor to run) and
//! every element is written before the array is handed out.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Weak;

use crate::eal::{Eal, EalShared, EalToken, SocketId};
use crate::ffi;

/// Where [`HugeArray`]s are placed: DPDK hugepage memory of `socket` while the EAL it was
/// made from runs (with hugepages), else the heap.
#[derive(Debug, Clone)]
pub struct HugeMem {
    eal: Weak<EalShared>,
    socket: SocketId,
}

impl HugeMem {
    /// DPDK hugepage memory on `socket` (`SocketId::ANY`: any) when `eal` runs with
    /// hugepages; `None` under `--no-huge` (DPDK's heap is ordinary memory then).
    pub fn new(eal: &Eal, socket: SocketId) -> Option<HugeMem> {
        eal.has_hugepages().then(|| HugeMem {
            eal: eal.token().downgrade(),
            socket,
        })
    }
}

/// A fixed-length array of `T`, in DPDK hugepage memory or on the heap (see the module
/// docs). Derefs to a slice.
pub struct HugeArray<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// `Some`: from `rte_malloc_socket` (keeps EAL up); `None`: from the global
    /// allocator with this layout (or dangling when the layout is empty).
    dpdk: Option<EalToken>,
    layout: Layout,
}

// SAFETY: the array owns its elements exclusively (no aliasing pointer is kept anywhere);
// DPDK heap memory may be used and freed (`rte_free` is thread-safe) from any thread, so
// moving the array moves nothing but the ownership of `T`s, which is sound for `T: Send`.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: shared access only gives `&[T]`, which is sound to share for `T: Sync`.
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

/// Below this the heap fallback does not ask for transparent huge pages.
const THP_MIN: usize = 4 << 20;
/// Alignment of every array (a cache line; DPDK's heap aligns to it anyway).
const ALIGN: usize = 64;

impl<T: Copy> HugeArray<T> {
    /// `n` copies of `v`, in hugepage memory when `mem` allows and DPDK's heap has room,
    /// else on the heap. Panics only if `n * size_of::<T>()` overflows `isize` (as `Vec`).
    pub fn filled(n: usize, v: T, mem: Option<&HugeMem>) -> HugeArray<T> {
        let layout = Layout::array::<T>(n)
            .and_then(|l| l.align_to(ALIGN.max(align_of::<T>())))
            .expect("array size fits isize");
        let (ptr, dpdk) = match mem.and_then(|m| Self::from_dpdk(m, layout)) {
            Some((p, token)) => (p, Some(token)),
            None => (Self::from_heap(layout), None),
        };
        for i in 0..n {
            // SAFETY: i < n and `ptr` was allocated for n T (`layout`), so the offset
            // stays inside the allocation.
            let slot = unsafe { ptr.as_ptr().add(i) };
            // SAFETY: `slot` is valid and aligned for a write of T, and nothing else
            // refers to the memory yet.
            unsafe { slot.write(v) };
        }
        HugeArray {
            ptr,
            len: n,
            dpdk,
            layout,
        }
    }

    fn from_dpdk(mem: &HugeMem, layout: Layout) -> Option<(NonNull<T>, EalToken)> {
        let token = EalToken::upgrade(&mem.eal)?;
        if layout.size() == 0 {
            return None;
        }
        let align = u32::try_from(layout.align()).ok()?;
        // SAFETY: EAL is up (we hold a token) and has hugepages; a NULL type string is
        // allowed; size and align are valid (align a power of two).
        let p =
            unsafe { ffi::rte_malloc_socket(std::ptr::null(), layout.size(), align, mem.socket.0) };
        NonNull::new(p.cast::<T>()).map(|p| (p, token))
    }

    fn from_heap(layout: Layout) -> NonNull<T> {
        if layout.size() == 0 {
            return NonNull::<T>::dangling();
        }
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc(layout) };
        let Some(p) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout);
        };
        if layout.size() >= THP_MIN {
            crate::time::advise_hugepages(p.as_ptr().addr(), layout.size());
        }
        p.cast()
    }

    /// Whether the array is in DPDK hugepage memory (false: on the heap).
    pub fn on_hugepages(&self) -> bool {
        self.dpdk.is_some()
    }

    /// Bytes the array takes.
    pub fn bytes(&self) -> usize {
        self.layout.size()
    }
}

impl<T: Copy> std::ops::Deref for HugeArray<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialised T (written in `filled`), owned by
        // self and alive until drop; dangling-but-aligned when len is 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> std::ops::DerefMut for HugeArray<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        if self.dpdk.is_some() {
            // SAFETY: allocated by rte_malloc_socket and not freed before; EAL is still
            // up (our token keeps rte_eal_cleanup from running). T is Copy: nothing to
            // drop first.
            unsafe { ffi::rte_free(self.ptr.as_ptr().cast()) };
        } else if self.layout.size() != 0 {
            // SAFETY: allocated by the global allocator with exactly this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) };
        }
    }
}

impl<T: Copy> std::fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeArray")
            .field("len", &self.len)
            .field("on_hugepages", &self.on_hugepages())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_eal_arrays_live_on_the_heap() {
        let mut a = HugeArray::filled(1000, 7u32, None);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|&x| x == 7));
        a[999] = 3;
        assert_eq!(a[999], 3);
        assert!(!a.on_hugepages());
        assert_eq!(a.as_ptr().addr() % ALIGN, 0);
        let e: HugeArray<u64> = HugeArray::filled(0, 1, None);
        assert!(e.is_empty());
        let big = HugeArray::filled(1 << 20, [1u8; 8], None);
        assert_eq!(big.bytes(), 8 << 20);
        assert_eq!(big[(1 << 20) - 1], [1; 8]);
    }
}
