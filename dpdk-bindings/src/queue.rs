//! RX/TX queue handles and an allocation-free TX buffer.
//!
//! One handle per (port, queue), handed out by [`Port::take_queues`](crate::Port::take_queues):
//! `Send` so it can move to the lcore that polls it, not `Sync` and not `Clone`, so only
//! one thread at a time can call a burst function on a queue, as DPDK requires. Burst
//! vectors are caller-owned `ArrayVec`s: no allocation per poll.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;

use arrayvec::ArrayVec;

use crate::ffi;
use crate::mbuf::Mbuf;
use crate::port::{PortId, PortShared, QueueId};

/// An RX queue of a started port.
#[derive(Debug)]
pub struct RxQueue {
    port: PortId,
    queue: QueueId,
    _shared: Arc<PortShared>,
    _not_sync: PhantomData<Cell<()>>,
}

/// A TX queue of a started port.
#[derive(Debug)]
pub struct TxQueue {
    port: PortId,
    queue: QueueId,
    _shared: Arc<PortShared>,
    _not_sync: PhantomData<Cell<()>>,
}

impl RxQueue {
    pub(crate) fn new(port: PortId, queue: QueueId, shared: Arc<PortShared>) -> Self {
        RxQueue {
            port,
            queue,
            _shared: shared,
            _not_sync: PhantomData,
        }
    }

    /// The port.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// The queue index.
    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Receive up to the free capacity of `out` (`rte_eth_rx_burst`), appending to it.
    /// Returns the number received. A stopped port receives nothing.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, out: &mut ArrayVec<Mbuf, N>) -> usize {
        let free = u16::try_from(out.remaining_capacity()).unwrap_or(u16::MAX);
        if free == 0 {
            return 0;
        }
        let len = out.len();
        let slots = out
            .as_mut_ptr()
            .wrapping_add(len)
            .cast::<*mut ffi::rte_mbuf>();
        // SAFETY: (port, queue) was set up by Port::configure and this handle is its only
        // poller (not Sync, not Clone), as rte_eth_rx_burst requires; the port cannot be
        // reconfigured, stopped or closed while the handle lives. The `free` slots after
        // `len` are inside the ArrayVec's buffer, and Mbuf is #[repr(transparent)] over
        // NonNull<rte_mbuf>, so they form an array of `*mut rte_mbuf` for DPDK to fill.
        let got = unsafe { ffi::shim_rte_eth_rx_burst(self.port.0, self.queue.0, slots, free) };
        let got = usize::from(got).min(usize::from(free));
        // SAFETY: DPDK wrote `got` non-null mbuf pointers, each exclusively ours now, into
        // the slots after `len`.
        unsafe { out.set_len(len + got) };
        got
    }
}

impl TxQueue {
    pub(crate) fn new(port: PortId, queue: QueueId, shared: Arc<PortShared>) -> Self {
        TxQueue {
            port,
            queue,
            _shared: shared,
            _not_sync: PhantomData,
        }
    }

    /// The port.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// The queue index.
    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Send from the front of `pkts` (`rte_eth_tx_burst`). The packets sent leave the
    /// vector (the device frees them after transmission); those not sent stay, in order,
    /// for the caller to retry or drop. Returns the number sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, pkts: &mut ArrayVec<Mbuf, N>) -> usize {
        let n = u16::try_from(pkts.len()).unwrap_or(u16::MAX);
        if n == 0 {
            return 0;
        }
        // SAFETY: (port, queue) was set up by Port::configure and this handle is its only
        // user; the first `n` elements are initialised Mbufs, laid out as `*mut rte_mbuf`
        // (repr(transparent)); DPDK takes ownership of the first `sent` of them and does
        // not write to the array.
        let sent = unsafe {
            ffi::shim_rte_eth_tx_burst(
                self.port.0,
                self.queue.0,
                pkts.as_mut_ptr().cast::<*mut ffi::rte_mbuf>(),
                n,
            )
        };
        let sent = usize::from(sent).min(usize::from(n));
        // The device owns the sent mbufs now: remove them without running Drop.
        for m in pkts.drain(..sent) {
            let _ = m.into_raw();
        }
        sent
    }
}

/// Collects mbufs for one TX queue and sends them in bursts of `N`: `push` flushes when
/// the buffer is full, `flush` sends what is buffered (call it on a TSC deadline). What the
/// device does not take is freed and counted in [`dropped`](Self::dropped), like
/// `rte_eth_tx_buffer` with its default callback. No allocation.
#[derive(Debug)]
pub struct TxBuffer<const N: usize> {
    queue: TxQueue,
    pkts: ArrayVec<Mbuf, N>,
    sent: u64,
    dropped: u64,
}

impl<const N: usize> TxBuffer<N> {
    /// A buffer in front of `queue`.
    pub fn new(queue: TxQueue) -> Self {
        TxBuffer {
            queue,
            pkts: ArrayVec::new(),
            sent: 0,
            dropped: 0,
        }
    }

    /// Buffer `m`; when the buffer becomes full, flush it. Returns the packets sent by
    /// that flush (0 if none happened).
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> usize {
        // Full before the push only if N == 0; flush anyway so the push cannot fail.
        let mut sent = 0;
        if self.pkts.is_full() {
            sent += self.flush();
        }
        if let Err(e) = self.pkts.try_push(m) {
            // N == 0: nothing can be buffered.
            drop(e.element());
            self.dropped += 1;
            return sent;
        }
        if self.pkts.is_full() {
            sent += self.flush();
        }
        sent
    }

    /// Send everything buffered; drop (free) what the device refuses, in one
    /// `rte_pktmbuf_free_bulk` (one call and one return to the mempool for the lot,
    /// where dropping them one by one was a call and a put per frame). Returns the
    /// number sent.
    #[inline]
    pub fn flush(&mut self) -> usize {
        let sent = self.queue.tx_burst(&mut self.pkts);
        self.sent += sent as u64;
        let left = self.pkts.len();
        if left > 0 {
            self.dropped += left as u64;
            let n = u32::try_from(left).unwrap_or(u32::MAX);
            let ptrs = self.pkts.as_mut_ptr().cast::<*mut ffi::rte_mbuf>();
            // SAFETY: the first `left` elements are initialised, exclusively owned Mbufs
            // laid out as `*mut rte_mbuf` (repr(transparent)); rte_pktmbuf_free_bulk
            // frees each (and its segments) exactly once and does not keep the array.
            unsafe { ffi::rte_pktmbuf_free_bulk(ptrs, n) };
            // SAFETY: 0 is within capacity, and the elements given up were freed just
            // above: forgetting them (no Drop) is what keeps each freed exactly once.
            unsafe { self.pkts.set_len(0) };
        }
        sent
    }

    /// Packets buffered.
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Total packets sent through this buffer.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Total packets dropped because the device's TX queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The queue.
    pub fn queue(&self) -> &TxQueue {
        &self.queue
    }

    /// Flush and give the queue back.
    pub fn into_queue(mut self) -> TxQueue {
        self.flush();
        let TxBuffer { queue, pkts, .. } = self;
        drop(pkts);
        queue
    }
}
