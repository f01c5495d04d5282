//! Packet mbuf pools (`rte_pktmbuf_pool_create`).
//!
//! Pools are never freed individually: like every DPDK application, create them once at
//! start-up. Their memory goes back with `rte_eal_cleanup` (see [`crate::eal`] for when
//! that is allowed). This is what makes [`Mbuf`] sound without a reference to its pool: an
//! mbuf's pool outlives it.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::eal::{Eal, EalToken, SocketId};
use crate::error::{Error, Result};
use crate::ffi;
use crate::mbuf::Mbuf;

struct MempoolInner {
    ptr: NonNull<ffi::rte_mempool>,
    name: String,
    _eal: EalToken,
}

// SAFETY: a pktmbuf pool created here uses the default mempool ops (ring_mp_mc), whose get
// and put are safe from any number of threads at once (per-lcore caches are indexed by the
// calling thread's lcore id, and non-EAL threads bypass the cache); the pool is never freed
// while a handle exists. So the pointer may be shared and used from any thread.
unsafe impl Send for MempoolInner {}
// SAFETY: as above; all operations through `&Mempool` are thread-safe DPDK calls.
unsafe impl Sync for MempoolInner {}

/// A pool of packet mbufs. Cloning is cheap (shared handle); the pool lives until EAL
/// cleanup.
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<MempoolInner>,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner.name)
            .field("available", &self.available())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Mempool {
    /// `rte_pktmbuf_pool_create(name, n, cache_size, 0, data_room, socket)`: `n` mbufs
    /// (a power of two minus one is optimal), a per-lcore cache of `cache_size` (at most
    /// 512, and `n / 1.5` at most), `data_room` bytes of buffer per mbuf including the
    /// 128-byte headroom (`RTE_MBUF_DEFAULT_BUF_SIZE` = 2176 fits a 1518-byte frame).
    /// On failure the error says whether hugepage memory or the mempool driver is missing
    /// (see [`crate::diag`]).
    pub fn pktmbuf(
        eal: &Eal,
        name: &str,
        n: u32,
        cache_size: u32,
        data_room: u16,
        socket: SocketId,
    ) -> Result<Mempool> {
        const CALL: &str = "rte_pktmbuf_pool_create";
        if name.is_empty() || name.len() >= ffi::RTE_MEMPOOL_NAMESIZE as usize {
            return Err(Error::invalid(
                CALL,
                format!(
                    "pool name {name:?} must have 1 to {} bytes",
                    ffi::RTE_MEMPOOL_NAMESIZE - 1
                ),
            ));
        }
        let c = CString::new(name).map_err(|_| Error::invalid(CALL, "name contains NUL"))?;
        // SAFETY: EAL is initialised (&Eal); c is a valid C string; DPDK validates the
        // numeric arguments and returns NULL with rte_errno on failure.
        let ptr = unsafe {
            ffi::rte_pktmbuf_pool_create(c.as_ptr(), n, cache_size, 0, data_room, socket.0)
        };
        let Some(ptr) = NonNull::new(ptr) else {
            return Err(crate::diag::explain_mempool_error(eal, Error::last(CALL)));
        };
        let token = eal.token();
        token.register_pool(ptr);
        Ok(Mempool {
            inner: Arc::new(MempoolInner {
                ptr,
                name: name.to_owned(),
                _eal: token,
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::rte_mempool {
        self.inner.ptr.as_ptr()
    }

    /// The mempool ops (driver) the pool uses, e.g. "ring_mp_mc".
    pub fn ops_name(&self) -> String {
        // SAFETY: the pool is valid; ops_index was set at creation and indexes the global
        // ops table, whose entries are never removed.
        let idx = unsafe { (*self.as_ptr()).ops_index };
        crate::diag::mempool_ops_names()
            .into_iter()
            .nth(usize::try_from(idx).unwrap_or(usize::MAX))
            .unwrap_or_default()
    }

    /// Allocate one mbuf (`rte_pktmbuf_alloc`), reset, with the default headroom and
    /// length 0. `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is a valid pktmbuf pool; the call is thread-safe (see the Send
        // impl); the returned mbuf is exclusively ours (refcnt 1).
        let m = unsafe { ffi::shim_rte_pktmbuf_alloc(self.as_ptr()) };
        // SAFETY: a non-null result is a freshly allocated mbuf we now own.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    /// Append `count` mbufs to `out` (`rte_pktmbuf_alloc_bulk`): all or none. Returns
    /// false when the pool has fewer than `count` free mbufs or `out` lacks room.
    pub fn alloc_bulk<const N: usize>(&self, out: &mut ArrayVec<Mbuf, N>, count: usize) -> bool {
        if count > out.remaining_capacity() {
            return false;
        }
        let Ok(n) = u32::try_from(count) else {
            return false;
        };
        let len = out.len();
        let slots = out
            .as_mut_ptr()
            .wrapping_add(len)
            .cast::<*mut ffi::rte_mbuf>();
        // SAFETY: `count` slots from index `len` are within the ArrayVec's capacity;
        // Mbuf is #[repr(transparent)] over NonNull<rte_mbuf>, so the spare slots form an
        // array of `*mut rte_mbuf` for DPDK to fill.
        let ret = unsafe { ffi::shim_rte_pktmbuf_alloc_bulk(self.as_ptr(), slots, n) };
        if ret != 0 {
            return false;
        }
        // SAFETY: on success DPDK wrote `count` valid, exclusively owned, non-null mbuf
        // pointers into those slots, so the first len + count elements are initialised.
        unsafe { out.set_len(len + count) };
        true
    }

    /// Free mbufs in the pool (`rte_mempool_avail_count`, per-lcore caches included).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool; thread-safe read of counters.
        unsafe { ffi::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs allocated from the pool (`rte_mempool_in_use_count`): held by the caller,
    /// by RX descriptor rings, or in flight in TX rings.
    pub fn in_use(&self) -> u32 {
        // SAFETY: valid pool; thread-safe read of counters.
        unsafe { ffi::rte_mempool_in_use_count(self.as_ptr()) }
    }

    /// Total number of mbufs.
    pub fn capacity(&self) -> u32 {
        // SAFETY: valid pool; `size` is immutable after creation.
        unsafe { (*self.as_ptr()).size }
    }
}

/// The name in a fixed-size C char array.
pub(crate) fn c_array_str(arr: &[std::ffi::c_char]) -> String {
    // SAFETY: c_char and u8 have the same size and alignment; the slice is borrowed for the
    // duration of the copy only.
    let bytes = unsafe { std::slice::from_raw_parts(arr.as_ptr().cast::<u8>(), arr.len()) };
    CStr::from_bytes_until_nul(bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
}
