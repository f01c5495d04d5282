//! Typed single-producer/single-consumer rings over `rte_ring`.
//!
//! [`Ring::spsc`] creates an `rte_ring` with `RING_F_SP_ENQ | RING_F_SC_DEQ` and returns a
//! [`Producer`] and a [`Consumer`]: each is `Send` but neither `Sync` nor `Clone`, and
//! every operation takes `&mut self`, so the single-producer/single-consumer contract of
//! the ring is enforced by the types. Items are owned pointers ([`RingItem`]: [`Mbuf`] for
//! handing packets between workers, `Box<T>` for commands and replies between the control
//! thread and workers). Items still in the ring when both ends are gone are dropped
//! (mbufs freed, boxes dropped) before `rte_ring_free`.

use std::cell::Cell;
use std::ffi::{CString, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::eal::{Eal, EalToken, SocketId};
use crate::error::{Error, Result};
use crate::ffi;
use crate::mbuf::Mbuf;

/// A value that is one owning, non-null pointer and can travel through an `rte_ring`.
///
/// # Safety
/// Implementors must have the size and layout of `*mut c_void` (a single non-null
/// pointer), [`into_raw`](Self::into_raw) must give up ownership of that pointer and
/// [`from_raw`](Self::from_raw) must take it back, so that an array of `Self` can be
/// handed to DPDK as `void **` and the bits read back as `Self`.
pub unsafe trait RingItem: Send + Sized {
    /// Give up ownership, returning the pointer.
    fn into_raw(self) -> NonNull<c_void>;
    /// Take ownership back.
    ///
    /// # Safety
    /// `ptr` must come from `into_raw` of the same type and not have been reclaimed yet.
    unsafe fn from_raw(ptr: NonNull<c_void>) -> Self;
}

// SAFETY: Mbuf is #[repr(transparent)] over NonNull<rte_mbuf>; into_raw/from_raw transfer
// ownership of that pointer.
unsafe impl RingItem for Mbuf {
    fn into_raw(self) -> NonNull<c_void> {
        Mbuf::into_raw(self).cast()
    }
    unsafe fn from_raw(ptr: NonNull<c_void>) -> Self {
        // SAFETY: the caller guarantees `ptr` came from Mbuf::into_raw and is owned.
        unsafe { Mbuf::from_raw(ptr.cast()) }
    }
}

// SAFETY: for T: Sized, Box<T> is guaranteed to be represented as a single non-null
// pointer; Box::into_raw/from_raw transfer ownership of it.
unsafe impl<T: Send> RingItem for Box<T> {
    fn into_raw(self) -> NonNull<c_void> {
        NonNull::from(Box::leak(self)).cast()
    }
    unsafe fn from_raw(ptr: NonNull<c_void>) -> Self {
        // SAFETY: the caller guarantees `ptr` came from into_raw of a Box<T> and is owned.
        unsafe { Box::from_raw(ptr.cast::<T>().as_ptr()) }
    }
}

struct RingInner<T: RingItem> {
    ptr: NonNull<ffi::rte_ring>,
    name: String,
    _eal: EalToken,
    _items: PhantomData<T>,
}

// SAFETY: the ring pointer is shared by exactly one Producer and one Consumer; rte_ring's
// SP enqueue and SC dequeue may run concurrently on two threads (that is the ring's
// purpose), the count functions are lock-free reads, and the items it carries are Send.
unsafe impl<T: RingItem> Send for RingInner<T> {}
// SAFETY: as above; the only operations through a shared RingInner are the producer's
// enqueue, the consumer's dequeue (each from its own single handle) and counter reads.
unsafe impl<T: RingItem> Sync for RingInner<T> {}

impl<T: RingItem> Drop for RingInner<T> {
    fn drop(&mut self) {
        // Both ends are gone: drain and drop what is left, then free the ring.
        let mut buf = [std::ptr::null_mut::<c_void>(); 32];
        loop {
            // SAFETY: we are the last user of the ring (both handles dropped); buf holds 32
            // pointer slots.
            let n = unsafe {
                ffi::shim_rte_ring_dequeue_burst(
                    self.ptr.as_ptr(),
                    buf.as_mut_ptr(),
                    32,
                    std::ptr::null_mut(),
                )
            };
            if n == 0 {
                break;
            }
            for p in buf.iter().take(n as usize) {
                if let Some(p) = NonNull::new(*p) {
                    // SAFETY: every pointer in the ring came from T::into_raw and is
                    // reclaimed exactly once here.
                    drop(unsafe { T::from_raw(p) });
                }
            }
        }
        // SAFETY: the ring was created by rte_ring_create and nobody uses it any more.
        unsafe { ffi::rte_ring_free(self.ptr.as_ptr()) }
    }
}

/// Constructor namespace for typed rings.
#[derive(Debug)]
pub struct Ring<T>(PhantomData<T>);

impl<T: RingItem> Ring<T> {
    /// Create a single-producer/single-consumer ring holding up to `capacity` items
    /// (`rte_ring_create` with `RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ`). The name
    /// must be unique in the process (up to 29 bytes).
    pub fn spsc(
        eal: &Eal,
        name: &str,
        capacity: u32,
        socket: SocketId,
    ) -> Result<(Producer<T>, Consumer<T>)> {
        const CALL: &str = "rte_ring_create";
        // The memzone name is "RG_" + name and must fit RTE_MEMZONE_NAMESIZE (32).
        if name.is_empty() || name.len() > ffi::RTE_RING_NAMESIZE as usize {
            return Err(Error::invalid(
                CALL,
                format!(
                    "ring name {name:?} must have 1 to {} bytes",
                    ffi::RTE_RING_NAMESIZE
                ),
            ));
        }
        let c = CString::new(name).map_err(|_| Error::invalid(CALL, "name contains NUL"))?;
        let flags = ffi::RING_F_SP_ENQ | ffi::RING_F_SC_DEQ | ffi::RING_F_EXACT_SZ;
        // SAFETY: EAL is initialised (&Eal); c is a valid C string; DPDK validates
        // capacity and returns NULL with rte_errno on failure.
        let ptr = unsafe { ffi::rte_ring_create(c.as_ptr(), capacity, socket.0, flags) };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::last(CALL))?;
        let inner = Arc::new(RingInner::<T> {
            ptr,
            name: name.to_owned(),
            _eal: eal.token(),
            _items: PhantomData,
        });
        Ok((
            Producer {
                inner: inner.clone(),
                _not_sync: PhantomData,
            },
            Consumer {
                inner,
                _not_sync: PhantomData,
            },
        ))
    }
}

impl<T: RingItem> RingInner<T> {
    fn count(&self) -> u32 {
        // SAFETY: valid ring; lock-free read of head/tail indexes.
        unsafe { ffi::shim_rte_ring_count(self.ptr.as_ptr()) }
    }
    fn capacity(&self) -> u32 {
        // SAFETY: valid ring; reads an immutable field.
        unsafe { ffi::shim_rte_ring_get_capacity(self.ptr.as_ptr()) }
    }
}

/// The enqueue end of an SPSC ring.
pub struct Producer<T: RingItem> {
    inner: Arc<RingInner<T>>,
    _not_sync: PhantomData<Cell<()>>,
}

/// The dequeue end of an SPSC ring.
pub struct Consumer<T: RingItem> {
    inner: Arc<RingInner<T>>,
    _not_sync: PhantomData<Cell<()>>,
}

impl<T: RingItem> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("ring", &self.inner.name)
            .field("count", &self.inner.count())
            .finish()
    }
}

impl<T: RingItem> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("ring", &self.inner.name)
            .field("count", &self.inner.count())
            .finish()
    }
}

const _: () = assert!(size_of::<Mbuf>() == size_of::<*mut c_void>());

impl<T: RingItem> Producer<T> {
    /// Enqueue one item; gives it back if the ring is full.
    #[inline]
    pub fn enqueue(&mut self, item: T) -> std::result::Result<(), T> {
        let raw = item.into_raw();
        let p = raw.as_ptr();
        // SAFETY: this handle is the ring's only producer (SP flag; not Sync/Clone; &mut);
        // one valid pointer slot is passed.
        let n = unsafe {
            ffi::shim_rte_ring_enqueue_burst(self.inner.ptr.as_ptr(), &p, 1, std::ptr::null_mut())
        };
        if n == 1 {
            Ok(())
        } else {
            // SAFETY: the ring did not take `p`, which came from into_raw just above.
            Err(unsafe { T::from_raw(raw) })
        }
    }

    /// Enqueue from the front of `items` as many as fit; they leave the vector, the rest
    /// stay. Returns the number enqueued.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, items: &mut ArrayVec<T, N>) -> usize {
        let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
        if n == 0 {
            return 0;
        }
        // SAFETY: only producer (see `enqueue`); T has the layout of `*mut c_void`
        // (RingItem contract), so the first `n` initialised elements form a `void *` array;
        // the ring copies the pointers, taking ownership of the first `done`.
        let done = unsafe {
            ffi::shim_rte_ring_enqueue_burst(
                self.inner.ptr.as_ptr(),
                items.as_ptr().cast::<*mut c_void>(),
                n,
                std::ptr::null_mut(),
            )
        };
        let done = (done as usize).min(items.len());
        // The ring owns these now: remove them without dropping.
        for it in items.drain(..done) {
            let _ = it.into_raw();
        }
        done
    }

    /// Items currently in the ring.
    pub fn len(&self) -> u32 {
        self.inner.count()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Usable capacity.
    pub fn capacity(&self) -> u32 {
        self.inner.capacity()
    }
}

impl<T: RingItem> Consumer<T> {
    /// Dequeue one item.
    #[inline]
    pub fn dequeue(&mut self) -> Option<T> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: this handle is the ring's only consumer (SC flag; not Sync/Clone; &mut);
        // one writable pointer slot is passed.
        let n = unsafe {
            ffi::shim_rte_ring_dequeue_burst(
                self.inner.ptr.as_ptr(),
                &mut p,
                1,
                std::ptr::null_mut(),
            )
        };
        if n == 1 {
            // SAFETY: the pointer came from T::into_raw on the producer side and is now
            // ours alone.
            NonNull::new(p).map(|p| unsafe { T::from_raw(p) })
        } else {
            None
        }
    }

    /// Dequeue up to the free capacity of `out`, appending. Returns the number dequeued.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, out: &mut ArrayVec<T, N>) -> usize {
        let free = u32::try_from(out.remaining_capacity()).unwrap_or(u32::MAX);
        if free == 0 {
            return 0;
        }
        let len = out.len();
        let slots = out.as_mut_ptr().wrapping_add(len).cast::<*mut c_void>();
        // SAFETY: only consumer (see `dequeue`); the `free` slots after `len` are inside the
        // ArrayVec's buffer and T has the layout of `*mut c_void` (RingItem contract).
        let got = unsafe {
            ffi::shim_rte_ring_dequeue_burst(
                self.inner.ptr.as_ptr(),
                slots,
                free,
                std::ptr::null_mut(),
            )
        };
        let got = (got as usize).min(free as usize);
        // SAFETY: DPDK wrote `got` pointers that came from T::into_raw (non-null, owned by
        // us now) into the slots after `len`.
        unsafe { out.set_len(len + got) };
        got
    }

    /// Items currently in the ring.
    pub fn len(&self) -> u32 {
        self.inner.count()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
