//! Takeover announcements (docs/ha.md, "Takeover"): the control thread asks, the slow
//! path (which owns the data ports' slow TX queues and already sends ARP and ND) sends a
//! gratuitous ARP / unsolicited neighbour advertisement for each service address, and
//! reports what it sent.
//!
//! The request crosses threads through one atomic generation number; the address list
//! sits behind a mutex that the slow path takes only when the generation moved (never
//! on a worker, never per packet).

#![allow(
    clippy::disallowed_types,
    reason = "control thread and slow path (main lcore), never a worker: the mutex is taken \
              only while a takeover is pending, the wait's clock runs on the control thread"
)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::wire::Addr;

/// What one announcement round sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announced {
    /// Gratuitous ARP frames (IPv4 service addresses).
    pub garp: u64,
    /// Unsolicited neighbour advertisements (IPv6 service addresses).
    pub na: u64,
    /// Requested addresses that are not one of fwd's own (nothing sent for them).
    pub not_local: Vec<Addr>,
}

/// The shared request / result slot between the control thread and the slow path.
#[derive(Debug, Default)]
pub struct Announcer {
    requested: AtomicU64,
    done: AtomicU64,
    /// The addresses of the newest request (empty: every address of every port), and
    /// the result of the newest round served.
    slot: Mutex<(Vec<Addr>, Announced)>,
}

impl Announcer {
    /// Asks for one round for `addrs` (empty: all of fwd's own addresses); returns the
    /// request's generation for [`Announcer::wait`].
    pub fn request(&self, addrs: Vec<Addr>) -> u64 {
        let mut s = self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.0 = addrs;
        self.requested.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The slow path's check (one atomic load when nothing is asked): the newest
    /// request's generation and addresses, if it was not served yet.
    pub fn pending(&self) -> Option<(u64, Vec<Addr>)> {
        let want = self.requested.load(Ordering::Acquire);
        if want == self.done.load(Ordering::Acquire) {
            return None;
        }
        let s = self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some((
            self.requested.load(Ordering::Acquire).max(want),
            s.0.clone(),
        ))
    }

    /// The slow path served request `generation` (and every older one).
    pub fn finish(&self, generation: u64, result: Announced) {
        let mut s = self
            .slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.1 = result;
        self.done.fetch_max(generation, Ordering::AcqRel);
    }

    /// Waits (polling every millisecond, at most `timeout`) until request `generation`
    /// was served; its result, or `None` when the slow path did not answer in time.
    pub fn wait(&self, generation: u64, timeout: Duration) -> Option<Announced> {
        let start = Instant::now();
        loop {
            if self.done.load(Ordering::Acquire) >= generation {
                let s = self
                    .slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                return Some(s.1.clone());
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_pending_until_finished() {
        let a = Announcer::default();
        assert_eq!(a.pending(), None);
        let addr = Addr::from_v4([198, 18, 0, 1]);
        let g = a.request(vec![addr]);
        assert_eq!(a.pending(), Some((g, vec![addr])));
        assert_eq!(a.wait(g, Duration::ZERO), None);
        let r = Announced {
            garp: 1,
            ..Announced::default()
        };
        a.finish(g, r.clone());
        assert_eq!(a.pending(), None);
        assert_eq!(a.wait(g, Duration::ZERO), Some(r));
    }
}
