//! [`Mbuf`]: an owned `rte_mbuf`, freed on drop, whose packet data is a byte slice.
//!
//! Only the first segment is exposed as a slice: the data path handles single-segment
//! packets (the default `data_room` holds a 1518-byte frame); [`Mbuf::nb_segs`] lets the
//! caller drop chains, or [`Mbuf::linearize`] them when the first buffer has room.
//!
//! Plain fields (`buf_addr`, `data_off`, `data_len`, `ol_flags`, `hash.rss`) are read
//! directly through the bindgen struct; anything with logic (alloc, free, append, prepend,
//! adj, trim) goes through the C shim to DPDK's inline functions.

use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::ffi;
use crate::flags::TxFlags;
use crate::port::PortId;

/// An owned packet buffer. 8 bytes (`#[repr(transparent)]` over `NonNull<rte_mbuf>`), so an
/// `ArrayVec<Mbuf, 32>` is a small array, and a burst of them can be handed to DPDK as
/// `struct rte_mbuf **`. Freed with `rte_pktmbuf_free` when dropped.
///
/// Invariant: the mbuf is exclusively owned (refcnt 1, direct, not referenced by any
/// other `Mbuf` or by DPDK), and its pool outlives it (pools are never freed before EAL
/// cleanup, which waits for all mbufs; see [`crate::eal`]).
#[repr(transparent)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is the sole owner of its rte_mbuf (invariant above), so moving it to
// another thread moves exclusive access with it; freeing it from any thread is sound
// because the pools this crate creates use the multi-producer/multi-consumer ring ops and
// per-lcore caches keyed by the freeing thread's own lcore id.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only allows reading the packet bytes and metadata; nothing mutates
// through a shared reference.
unsafe impl Sync for Mbuf {}

const _: () = assert!(size_of::<Mbuf>() == 8);
const _: () = assert!(size_of::<Option<Mbuf>>() == 8);

/// Checksum verification result delivered by the NIC in `ol_flags`
/// (`RTE_MBUF_F_RX_{IP,L4}_CKSUM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CksumStatus {
    /// Not checked by the device: verify in software.
    Unknown,
    /// Checked and correct.
    Good,
    /// Checked and wrong.
    Bad,
    /// The checksum field in the packet is not correct but the data is intact (DPDK's
    /// `*_CKSUM_NONE`, e.g. a virtual device that skipped it): treat as good.
    IntegrityOk,
}

impl CksumStatus {
    fn from_bits(flags: u64, mask: u64, good: u64, bad: u64) -> Self {
        match flags & mask {
            0 => CksumStatus::Unknown,
            x if x == good => CksumStatus::Good,
            x if x == bad => CksumStatus::Bad,
            _ => CksumStatus::IntegrityOk,
        }
    }
}

/// TX offload request for one mbuf: header lengths and `RTE_MBUF_F_TX_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOffload {
    /// L2 header length (at most 127).
    pub l2_len: u8,
    /// L3 header length (at most 511).
    pub l3_len: u16,
    /// L4 header length (at most 255; only for segmentation offloads).
    pub l4_len: u8,
    /// What to compute.
    pub flags: TxFlags,
}

/// All TX flags [`Mbuf::set_tx_offload`] manages (cleared before setting the new ones).
const TX_FLAGS_MANAGED: u64 = TxFlags::IPV4.bits()
    | TxFlags::IPV6.bits()
    | TxFlags::IP_CKSUM.bits()
    | ffi::RTE_MBUF_F_TX_L4_MASK;

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must point to a valid pktmbuf that the caller owns exclusively (refcnt 1,
    /// direct, no other owner will use or free it), from a pool that outlives the `Mbuf`.
    #[inline]
    pub unsafe fn from_raw(ptr: NonNull<ffi::rte_mbuf>) -> Mbuf {
        Mbuf(ptr)
    }

    /// Give up ownership without freeing (the inverse of [`Mbuf::from_raw`]).
    #[inline]
    pub fn into_raw(self) -> NonNull<ffi::rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// The raw pointer, still owned by `self`.
    #[inline]
    pub fn as_ptr(&self) -> *mut ffi::rte_mbuf {
        self.0.as_ptr()
    }

    #[inline]
    fn raw(&self) -> &ffi::rte_mbuf {
        // SAFETY: the mbuf is valid and exclusively ours (type invariant); a shared borrow
        // of self gives a shared view of the struct.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn data_ptr(&self) -> *mut u8 {
        let m = self.raw();
        // rte_pktmbuf_mtod: buf_addr + data_off, which stays inside the buffer (DPDK keeps
        // data_off + data_len <= buf_len).
        m.buf_addr
            .cast::<u8>()
            .wrapping_add(usize::from(m.data_off))
    }

    /// The packet bytes of the first segment (`rte_pktmbuf_mtod`, `data_len` bytes).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let len = usize::from(self.raw().data_len);
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer
        // (DPDK invariant data_off + data_len <= buf_len). The buffer is mapped memory
        // (hugepages or anonymous), zero-filled by the kernel and afterwards only written,
        // so every byte is initialised; it is reachable only through this exclusively
        // owned Mbuf, borrowed shared here.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), len) }
    }

    /// The packet bytes of the first segment, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.raw().data_len);
        // SAFETY: as in `data`, and the borrow of self is exclusive, so no other reference
        // to these bytes exists (the mbuf is direct with refcnt 1: nobody shares the buffer).
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), len) }
    }

    /// Length of the first segment's data (`data_len`).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    /// Whether the first segment is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw().data_len == 0
    }

    /// Length of the whole packet over all segments (`pkt_len`).
    #[inline]
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// Number of segments (1 unless the packet is a chain).
    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.raw().nb_segs
    }

    /// Free bytes before the data (`rte_pktmbuf_headroom`).
    pub fn headroom(&self) -> usize {
        // SAFETY: valid mbuf; the function only reads fields.
        usize::from(unsafe { ffi::shim_rte_pktmbuf_headroom(self.as_ptr()) })
    }

    /// Free bytes after the data in the last segment (`rte_pktmbuf_tailroom`).
    pub fn tailroom(&self) -> usize {
        // SAFETY: valid mbuf; the function only reads fields.
        usize::from(unsafe { ffi::shim_rte_pktmbuf_tailroom(self.as_ptr()) })
    }

    /// Grow the packet by `n` bytes at the end (`rte_pktmbuf_append`) and return them
    /// (uninitialised content from earlier use, so write all of it). `None` if the last
    /// segment lacks tailroom; nothing changes then.
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let len = u16::try_from(n).ok()?;
        if self.nb_segs() != 1 {
            // The appended bytes would be in the last segment, not in `data_mut`.
            return None;
        }
        // SAFETY: valid, exclusively owned mbuf; the function checks the tailroom and
        // returns NULL without changing anything when it is too small.
        let p = unsafe { ffi::shim_rte_pktmbuf_append(self.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK returned a pointer to `n` bytes inside this mbuf's buffer, now part
        // of the data; the &mut borrow of self makes them exclusively ours.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
    }

    /// Grow the packet by `n` bytes at the front (`rte_pktmbuf_prepend`) and return them.
    /// `None` if the headroom is too small.
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let len = u16::try_from(n).ok()?;
        // SAFETY: valid, exclusively owned mbuf; the function checks the headroom.
        let p = unsafe { ffi::shim_rte_pktmbuf_prepend(self.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: `n` bytes at the new start of data, inside the buffer, ours via &mut.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
    }

    /// Remove `n` bytes from the front (`rte_pktmbuf_adj`), e.g. to strip a header.
    /// False (no change) if the first segment is shorter than `n`.
    pub fn adj(&mut self, n: usize) -> bool {
        let Ok(len) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: valid, exclusively owned mbuf; the function checks len <= data_len.
        !unsafe { ffi::shim_rte_pktmbuf_adj(self.as_ptr(), len) }.is_null()
    }

    /// Remove `n` bytes from the end (`rte_pktmbuf_trim`). False (no change) if the last
    /// segment is shorter than `n`.
    pub fn trim(&mut self, n: usize) -> bool {
        let Ok(len) = u16::try_from(n) else {
            return false;
        };
        // SAFETY: valid, exclusively owned mbuf; the function checks len <= data_len of
        // the last segment.
        unsafe { ffi::shim_rte_pktmbuf_trim(self.as_ptr(), len) == 0 }
    }

    /// Copy a chained packet into its first segment and free the rest
    /// (`rte_pktmbuf_linearize`); fails if the first buffer is too small.
    pub fn linearize(&mut self) -> Result<()> {
        // SAFETY: valid, exclusively owned mbuf; the function frees only the chained
        // segments it owns through this mbuf.
        let ret = unsafe { ffi::shim_rte_pktmbuf_linearize(self.as_ptr()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(Error::invalid(
                "rte_pktmbuf_linearize",
                "packet does not fit in the first segment",
            ))
        }
    }

    /// The input port (set by the PMD on RX), `None` if invalid.
    #[inline]
    pub fn port(&self) -> Option<PortId> {
        let p = self.raw().port;
        (p != u16::MAX).then_some(PortId(p))
    }

    /// Raw offload flags (`ol_flags`).
    #[inline]
    pub fn ol_flags(&self) -> u64 {
        self.raw().ol_flags
    }

    /// Packet type found by the PMD (`packet_type`, `RTE_PTYPE_*`), 0 when unknown.
    #[inline]
    pub fn packet_type(&self) -> u32 {
        // SAFETY: `packet_type` is a u32 member of a union of plain integer bitfields;
        // every bit pattern is a valid u32.
        unsafe { self.raw().__bindgen_anon_1.packet_type }
    }

    /// The RSS hash computed by the device, when it delivered one
    /// (`RTE_MBUF_F_RX_RSS_HASH` set; needs [`RxOffloads::RSS_HASH`](crate::RxOffloads)).
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        if self.ol_flags() & u64::from(ffi::RTE_MBUF_F_RX_RSS_HASH) == 0 {
            return None;
        }
        // SAFETY: the outer union's only member is `hash`, a union of plain integers and
        // structs of integers: any bit pattern is valid.
        let hash = unsafe { self.raw().__bindgen_anon_2.hash };
        // SAFETY: as above; with RTE_MBUF_F_RX_RSS_HASH set the PMD wrote `rss`.
        Some(unsafe { hash.rss })
    }

    /// IPv4 header checksum status from the device.
    #[inline]
    pub fn ip_cksum(&self) -> CksumStatus {
        CksumStatus::from_bits(
            self.ol_flags(),
            u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_MASK),
            u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_GOOD),
            u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_BAD),
        )
    }

    /// TCP/UDP checksum status from the device.
    #[inline]
    pub fn l4_cksum(&self) -> CksumStatus {
        CksumStatus::from_bits(
            self.ol_flags(),
            u64::from(ffi::RTE_MBUF_F_RX_L4_CKSUM_MASK),
            u64::from(ffi::RTE_MBUF_F_RX_L4_CKSUM_GOOD),
            u64::from(ffi::RTE_MBUF_F_RX_L4_CKSUM_BAD),
        )
    }

    /// Request TX checksum offload: sets `l2_len`, `l3_len`, `l4_len` and replaces the
    /// IPV4/IPV6/IP_CKSUM/L4 flags in `ol_flags`. The port must have been configured with
    /// the matching [`TxOffloads`](crate::TxOffloads). Fails if a length does not fit its
    /// bitfield (7, 9, 8 bits).
    pub fn set_tx_offload(&mut self, o: TxOffload) -> Result<()> {
        if o.l2_len > 127 || o.l3_len > 511 {
            return Err(Error::invalid(
                "set_tx_offload",
                format!("l2_len {} / l3_len {} out of range", o.l2_len, o.l3_len),
            ));
        }
        // SAFETY: valid mbuf, exclusively owned and borrowed mutably through &mut self.
        let m = unsafe { self.0.as_mut() };
        // SAFETY: the tx_offload union's members are a u64 and bitfields over that same
        // u64: every bit pattern is valid, so viewing it as the bitfield struct is sound.
        let tx = unsafe { &mut m.__bindgen_anon_3.__bindgen_anon_1 };
        tx.set_l2_len(u64::from(o.l2_len));
        tx.set_l3_len(u64::from(o.l3_len));
        tx.set_l4_len(u64::from(o.l4_len));
        m.ol_flags = (m.ol_flags & !TX_FLAGS_MANAGED) | o.flags.bits();
        Ok(())
    }

    /// The TX offload lengths and flags currently set.
    pub fn tx_offload(&self) -> TxOffload {
        // SAFETY: the union's members are plain integers over one initialised u64.
        let tx = unsafe { self.raw().__bindgen_anon_3.__bindgen_anon_1 };
        TxOffload {
            l2_len: u8::try_from(tx.l2_len()).unwrap_or(u8::MAX),
            l3_len: u16::try_from(tx.l3_len()).unwrap_or(u16::MAX),
            l4_len: u8::try_from(tx.l4_len()).unwrap_or(u8::MAX),
            flags: TxFlags(self.ol_flags() & TX_FLAGS_MANAGED),
        }
    }

    /// Prefetch the first cache line of packet data.
    #[inline]
    pub fn prefetch_data(&self) {
        crate::time::prefetch0_addr(self.data_ptr().cast_const());
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf exclusively (type invariant) and its pool is alive;
        // rte_pktmbuf_free returns it (and any chained segments) to the pool exactly once.
        unsafe { ffi::shim_rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

impl AsRef<[u8]> for Mbuf {
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf {
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("ptr", &self.0)
            .field("len", &self.len())
            .field("nb_segs", &self.nb_segs())
            .field("port", &self.port())
            .field("ol_flags", &format_args!("{:#x}", self.ol_flags()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cksum_status_decoding() {
        let mask = u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_MASK);
        let good = u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_GOOD);
        let bad = u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_BAD);
        let s = |f| CksumStatus::from_bits(f, mask, good, bad);
        assert_eq!(s(0), CksumStatus::Unknown);
        assert_eq!(s(good | 1), CksumStatus::Good);
        assert_eq!(s(bad), CksumStatus::Bad);
        assert_eq!(
            s(u64::from(ffi::RTE_MBUF_F_RX_IP_CKSUM_NONE)),
            CksumStatus::IntegrityOk
        );
    }

    #[test]
    fn burst_array_is_small() {
        assert_eq!(size_of::<arrayvec::ArrayVec<Mbuf, 32>>(), 32 * 8 + 8);
    }
}
