//! The expectation table: data connections a helper announced (Linux
//! `nf_conntrack_expect.c`), one table shared by every worker.
//!
//! An expectation is (family, protocol, source address, destination address, destination
//! port) with the source port a wildcard, as every expectation the FTP and TFTP helpers
//! make. The first packet of the data connection may land on any worker (RSS hashes its
//! unknown source port), so the table is shared, lock-free, on the slot store dynamic sets
//! share their elements on (`crate::slots`): a fixed array of slots, open addressing over
//! a window of `WINDOW` (16) slots from a seeded hash of the key, each slot guarded by a
//! `state` word that is `EMPTY`, `BUSY` (being written), `DEAD`, or the expiry time
//! in ns of the workers' clock. Readers check `state`, read the words, and check `state`
//! again (a seqlock). A worker takes an expectation with a compare-and-swap of `state`
//! from its expiry to `DEAD`, so exactly one connection matches it (Linux unlinks an
//! expectation when it is used). No lock, no allocation; a connection miss costs one load
//! of `len` while the table is empty, and one hash plus a window otherwise.
//!
//! Limits as Linux: `nf_conntrack_expect_max` expectations in all (a helper that cannot
//! add one counts `full` and the packet that announced it is dropped, as Linux's FTP
//! helper drops it), and each master connection holds at most its helper's
//! `max_expected` (1 for FTP and TFTP: a new announcement replaces the older one).

use super::HelperKind;
use crate::conntrack::FlowKey;
use crate::wire::{Addr, Family};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Largest `nf_conntrack_expect_max` a table may be built for (the tunable's bound,
/// defined beside it so that conntrack does not import the helpers).
pub use crate::conntrack::tunables::MAX_EXPECT;
use crate::slots::{DEAD, EMPTY, Read, SlotStore};
const WORDS: usize = 15;
/// Slots one add at the limit sweeps for expired expectations.
const GC_STEP: usize = 256;

/// One expected connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub family: Family,
    pub proto: u8,
    /// Who will open the data connection.
    pub src: Addr,
    /// Where to.
    pub dst: Addr,
    pub dport: u16,
    pub helper: HelperKind,
    /// The master (control) connection's original tuple.
    pub master: FlowKey,
    /// The worker that holds the master and the master's entry id there.
    pub master_worker: u16,
    pub master_id: u32,
    /// Where the expected connection is translated when the master is NATed (Linux's
    /// `nf_nat_follow_master`); `None`: the rules' NAT chains decide, as for any
    /// connection.
    pub nat: Option<ExpectNat>,
}

/// The translation of an expected connection that follows its NATed master: its source
/// becomes `src` (the port kept if free) and its destination `dst`:`dport` (the address
/// and port the announcement named before FTP NAT rewrote them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectNat {
    pub src: Addr,
    pub dst: Addr,
    pub dport: u16,
}

/// Counters by Linux's `conntrack -S` names where they exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectStats {
    /// Expectations added (`expect_create`).
    pub create: u64,
    /// Connections that matched an expectation (`expect_new`).
    pub new: u64,
    /// Expectations removed unused: replaced, expired, or with their master
    /// (`expect_delete`).
    pub delete: u64,
    /// Adds refused: `nf_conntrack_expect_max` reached or no room in the window.
    pub full: u64,
    /// Held now (expired ones not yet collected included, as the kernel counts).
    pub count: u64,
    /// `nf_conntrack_expect_max`.
    pub max: u64,
}

/// Why [`ExpectTable::insert`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectError {
    Full,
}

/// The shared expectation table (see the module documentation).
#[derive(Debug)]
pub struct ExpectTable {
    slots: SlotStore<WORDS>,
    capacity: u32,
    max: AtomicU32,
    len: AtomicU32,
    seed: u64,
    create: AtomicU64,
    new: AtomicU64,
    delete: AtomicU64,
    full: AtomicU64,
}

fn meta(e: &Expectation) -> u64 {
    u64::from(e.family as u8)
        | u64::from(e.proto) << 8
        | u64::from(e.dport) << 16
        | u64::from(e.helper as u8) << 32
        | e.nat.map_or(0, |n| 1 << 40 | u64::from(n.dport) << 48)
}

#[allow(clippy::cast_possible_truncation)] // the low half, on purpose
fn halves(a: Addr) -> [u64; 2] {
    let v = u128::from_be_bytes(a.0);
    [(v >> 64) as u64, v as u64]
}

fn addr(hi: u64, lo: u64) -> Addr {
    Addr((u128::from(hi) << 64 | u128::from(lo)).to_be_bytes())
}

fn encode(e: &Expectation) -> [u64; WORDS] {
    let [s0, s1] = halves(e.src);
    let [d0, d1] = halves(e.dst);
    let [m0, m1] = halves(e.master.src);
    let [m2, m3] = halves(e.master.dst);
    let nat = e.nat.map_or([0; 4], |n| {
        let [a, b] = halves(n.src);
        let [c, d] = halves(n.dst);
        [a, b, c, d]
    });
    [
        s0,
        s1,
        d0,
        d1,
        meta(e),
        u64::from(e.master_worker) << 32 | u64::from(e.master_id),
        m0,
        m1,
        m2,
        m3,
        u64::from(e.master.sport)
            | u64::from(e.master.dport) << 16
            | u64::from(e.master.proto) << 32
            | u64::from(e.master.zone) << 40,
        nat[0],
        nat[1],
        nat[2],
        nat[3],
    ]
}

#[allow(clippy::cast_possible_truncation)] // bit fields `encode` packed
fn decode(w: &[u64; WORDS]) -> Option<Expectation> {
    let family = match w[4] as u8 {
        4 => Family::V4,
        6 => Family::V6,
        _ => return None,
    };
    let helper = HelperKind::from_u8((w[4] >> 32) as u8)?;
    Some(Expectation {
        family,
        proto: (w[4] >> 8) as u8,
        src: addr(w[0], w[1]),
        dst: addr(w[2], w[3]),
        dport: (w[4] >> 16) as u16,
        helper,
        master: FlowKey {
            src: addr(w[6], w[7]),
            dst: addr(w[8], w[9]),
            sport: w[10] as u16,
            dport: (w[10] >> 16) as u16,
            proto: (w[10] >> 32) as u8,
            zone: (w[10] >> 40) as u16,
            family,
        },
        master_worker: (w[5] >> 32) as u16,
        master_id: w[5] as u32,
        nat: (w[4] >> 40 & 1 == 1).then(|| ExpectNat {
            src: addr(w[11], w[12]),
            dst: addr(w[13], w[14]),
            dport: (w[4] >> 48) as u16,
        }),
    })
}

/// The words that identify an expectation (what a lookup compares).
fn key_words(family: Family, proto: u8, src: Addr, dst: Addr, dport: u16) -> [u64; 5] {
    let [s0, s1] = halves(src);
    let [d0, d1] = halves(dst);
    let m = u64::from(family as u8) | u64::from(proto) << 8 | u64::from(dport) << 16;
    [s0, s1, d0, d1, m]
}

impl ExpectTable {
    /// A table for at most `max` expectations (`nf_conntrack_expect_max`, clamped to
    /// 1..=[`MAX_EXPECT`]); the limit may later be lowered, or raised up to this.
    pub fn new(max: u32) -> Self {
        let capacity = max.clamp(1, MAX_EXPECT);
        ExpectTable {
            slots: SlotStore::new(capacity as usize),
            capacity,
            max: AtomicU32::new(capacity),
            len: AtomicU32::new(0),
            seed: std::collections::hash_map::RandomState::new().hash_one(0xe4_u64),
            create: AtomicU64::new(0),
            new: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }
    }

    /// The most `nf_conntrack_expect_max` may be set to for this table.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Sets `nf_conntrack_expect_max` (clamped to the capacity).
    pub fn set_max(&self, max: u32) {
        self.max
            .store(max.clamp(1, self.capacity), Ordering::Relaxed);
    }

    /// Expectations held now (expired ones not yet collected included).
    pub fn len(&self) -> u32 {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> ExpectStats {
        ExpectStats {
            create: self.create.load(Ordering::Relaxed),
            new: self.new.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
            full: self.full.load(Ordering::Relaxed),
            count: u64::from(self.len()),
            max: u64::from(self.max.load(Ordering::Relaxed)),
        }
    }

    #[allow(clippy::cast_possible_truncation)] // masked to the table
    fn home(&self, k: &[u64; 5]) -> usize {
        let h = std::hash::BuildHasherDefault::<rustc_hash::FxHasher>::default()
            .hash_one((self.seed, k));
        self.slots.idx(h as usize, 0)
    }

    /// A consistent copy of slot `i`'s words and its state (`None`: not live at `now`).
    fn read(&self, i: usize, now: u64) -> Option<(u64, [u64; WORDS])> {
        match self.slots.read::<WORDS>(i) {
            Read::Live(st, w) if st > now => Some((st, w)),
            _ => None,
        }
    }

    /// Claims slot `i` for writing when it is free or expired at `now`.
    fn claim(&self, i: usize, now: u64) -> bool {
        let st = self.slots.state(i).load(Ordering::Relaxed);
        let expired = st > DEAD && st <= now;
        if !(st == EMPTY || st == DEAD || expired) {
            return false;
        }
        if !self.slots.claim(i, st) {
            return false;
        }
        if expired {
            self.len.fetch_sub(1, Ordering::Relaxed);
            self.delete.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Adds `e`, live until `expiry` (ns); returns its slot (the master keeps it to
    /// replace it later, [`ExpectTable::remove`]).
    pub fn insert(&self, e: &Expectation, expiry: u64, now: u64) -> Result<u32, ExpectError> {
        let k = key_words(e.family, e.proto, e.src, e.dst, e.dport);
        // An identical expectation (the same line announced again) is replaced.
        if let Some(i) = self.find(&k, now) {
            self.kill(i);
        }
        if self.len() >= self.max.load(Ordering::Relaxed) {
            self.gc(now, GC_STEP);
        }
        if self.len() >= self.max.load(Ordering::Relaxed) {
            self.full.fetch_add(1, Ordering::Relaxed);
            return Err(ExpectError::Full);
        }
        for i in self.slots.window(self.home(&k)) {
            if !self.claim(i, now) {
                continue;
            }
            self.len.fetch_add(1, Ordering::Relaxed);
            self.create.fetch_add(1, Ordering::Relaxed);
            self.slots.publish(i, &encode(e), expiry);
            return Ok(u32::try_from(i).unwrap_or(u32::MAX));
        }
        self.full.fetch_add(1, Ordering::Relaxed);
        Err(ExpectError::Full)
    }

    /// Whether a live expectation of this tuple belongs to another master than
    /// (`worker`, `id`): FTP NAT then announces the next port (Linux's
    /// `nf_nat_exp_find_port`).
    #[allow(clippy::too_many_arguments)]
    pub fn held_by_other(
        &self,
        family: Family,
        proto: u8,
        src: Addr,
        dst: Addr,
        dport: u16,
        (worker, id): (u16, u32),
        now: u64,
    ) -> bool {
        let k = key_words(family, proto, src, dst, dport);
        self.find(&k, now).is_some_and(|i| {
            self.read(i, now)
                .is_some_and(|(_, w)| w[5] != u64::from(worker) << 32 | u64::from(id))
        })
    }

    fn find(&self, k: &[u64; 5], now: u64) -> Option<usize> {
        self.slots.window(self.home(k)).find(|&i| {
            self.read(i, now)
                .is_some_and(|(_, w)| w[..4] == k[..4] && w[4] & 0xffff_ffff == k[4])
        })
    }

    /// Collects expired expectations in `n` slots from a rotating cursor (an add at the
    /// limit, and the workers' timer tick).
    pub fn gc(&self, now: u64, n: usize) {
        for i in self.slots.sweep(n) {
            let st = self.slots.state(i).load(Ordering::Relaxed);
            if st > DEAD && st <= now {
                self.kill(i);
            }
        }
    }

    /// Marks a live slot dead (counted as a delete).
    fn kill(&self, i: usize) -> bool {
        let st = self.slots.state(i).load(Ordering::Relaxed);
        if self.slots.kill(i, st) {
            self.len.fetch_sub(1, Ordering::Relaxed);
            self.delete.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Takes the expectation a new connection's first packet matches (its source port
    /// is not compared): the expectation is gone afterwards, counted as `expect_new`.
    pub fn take(
        &self,
        family: Family,
        proto: u8,
        src: Addr,
        dst: Addr,
        dport: u16,
        now: u64,
    ) -> Option<Expectation> {
        if self.is_empty() {
            return None;
        }
        let k = key_words(family, proto, src, dst, dport);
        for i in self.slots.window(self.home(&k)) {
            let Some((st, w)) = self.read(i, now) else {
                continue;
            };
            if w[..4] != k[..4] || w[4] & 0xffff_ffff != k[4] {
                continue;
            }
            if self.slots.kill(i, st) {
                self.len.fetch_sub(1, Ordering::Relaxed);
                self.new.fetch_add(1, Ordering::Relaxed);
                return decode(&w);
            }
        }
        None
    }

    /// Removes the expectation at `slot` if the master (`worker`, `id`) still owns it
    /// (a master replacing its older expectation, or dying).
    pub fn remove(&self, slot: u32, worker: u16, id: u32, now: u64) -> bool {
        let i = self.slots.idx(slot as usize, 0);
        match self.read(i, now) {
            Some((_, w)) if w[5] == u64::from(worker) << 32 | u64::from(id) => self.kill(i),
            _ => false,
        }
    }

    /// Removes the live expectation of this key, whoever made it (state sync: the peer's
    /// expectation was used or removed there).
    pub fn remove_key(
        &self,
        family: Family,
        proto: u8,
        src: Addr,
        dst: Addr,
        dport: u16,
        now: u64,
    ) -> bool {
        let k = key_words(family, proto, src, dst, dport);
        self.find(&k, now).is_some_and(|i| self.kill(i))
    }

    /// Every live expectation and the nanoseconds it has left (`conntrack -L expect`).
    pub fn list(&self, now: u64) -> Vec<(Expectation, u64)> {
        (0..self.slots.slots())
            .filter_map(|i| {
                let (st, w) = self.read(i, now)?;
                Some((decode(&w)?, st - now))
            })
            .collect()
    }

    /// Deletes every expectation (`conntrack -F expect`); returns how many.
    pub fn flush(&self, now: u64) -> u32 {
        let mut n = 0;
        for i in 0..self.slots.slots() {
            if self.read(i, now).is_some() && self.kill(i) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    fn a(x: u8) -> Addr {
        Addr::from_v4([198, 51, 100, x])
    }

    fn exp(dport: u16, id: u32) -> Expectation {
        Expectation {
            family: Family::V4,
            proto: proto::TCP,
            src: a(1),
            dst: a(2),
            dport,
            helper: HelperKind::Ftp,
            master: FlowKey {
                src: a(2),
                dst: a(1),
                sport: 40000,
                dport: 21,
                zone: 0,
                proto: proto::TCP,
                family: Family::V4,
            },
            master_worker: 3,
            master_id: id,
            nat: None,
        }
    }

    #[test]
    fn an_expectation_is_taken_once_whatever_the_source_port() {
        let t = ExpectTable::new(16);
        assert!(
            t.take(Family::V4, proto::TCP, a(1), a(2), 5000, 0)
                .is_none()
        );
        t.insert(&exp(5000, 7), 1_000, 0).unwrap();
        assert_eq!(t.len(), 1);
        // Other tuples do not match.
        assert!(
            t.take(Family::V4, proto::UDP, a(1), a(2), 5000, 1)
                .is_none()
        );
        assert!(
            t.take(Family::V4, proto::TCP, a(2), a(1), 5000, 1)
                .is_none()
        );
        assert!(
            t.take(Family::V4, proto::TCP, a(1), a(2), 5001, 1)
                .is_none()
        );
        let e = t.take(Family::V4, proto::TCP, a(1), a(2), 5000, 1).unwrap();
        assert_eq!(e, exp(5000, 7));
        assert!(
            t.take(Family::V4, proto::TCP, a(1), a(2), 5000, 2)
                .is_none()
        );
        let s = t.stats();
        assert_eq!((s.create, s.new, s.delete, s.count), (1, 1, 0, 0));
    }

    #[test]
    fn expired_expectations_do_not_match_and_are_reclaimed() {
        let t = ExpectTable::new(1);
        t.insert(&exp(5000, 1), 100, 0).unwrap();
        assert!(
            t.take(Family::V4, proto::TCP, a(1), a(2), 5000, 100)
                .is_none()
        );
        assert!(t.list(100).is_empty());
        // Full until the expired one is collected by an add in its window, or refused.
        let r = t.insert(&exp(5000, 2), 300, 150);
        assert!(r.is_ok(), "the same key's expired slot is reused");
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().delete, 1);
    }

    #[test]
    fn the_limit_refuses_and_counts() {
        let t = ExpectTable::new(4);
        t.set_max(2);
        t.insert(&exp(1, 1), 1_000, 0).unwrap();
        t.insert(&exp(2, 2), 1_000, 0).unwrap();
        assert_eq!(t.insert(&exp(3, 3), 1_000, 0), Err(ExpectError::Full));
        assert_eq!(t.stats().full, 1);
        // Re-announcing an existing expectation replaces it.
        t.insert(&exp(2, 2), 2_000, 0).unwrap();
        assert_eq!(t.len(), 2);
        let l = t.list(10);
        assert_eq!(l.len(), 2);
        assert!(l.iter().any(|(e, left)| e.dport == 2 && *left == 1_990));
        assert_eq!(t.flush(10), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn the_nat_of_an_expectation_round_trips_and_other_masters_are_seen() {
        let t = ExpectTable::new(16);
        let e = Expectation {
            nat: Some(ExpectNat {
                src: a(7),
                dst: Addr::from_v4([198, 18, 0, 9]),
                dport: 40_001,
            }),
            ..exp(5000, 4)
        };
        t.insert(&e, 1_000, 0).unwrap();
        assert!(!t.held_by_other(Family::V4, proto::TCP, a(1), a(2), 5000, (3, 4), 1));
        assert!(t.held_by_other(Family::V4, proto::TCP, a(1), a(2), 5000, (3, 5), 1));
        assert!(!t.held_by_other(Family::V4, proto::TCP, a(1), a(2), 5001, (3, 5), 1));
        assert_eq!(t.list(1)[0].0, e);
        assert_eq!(t.take(Family::V4, proto::TCP, a(1), a(2), 5000, 1), Some(e));
    }

    #[test]
    fn remove_checks_the_master() {
        let t = ExpectTable::new(4);
        let s = t.insert(&exp(9, 5), 1_000, 0).unwrap();
        assert!(!t.remove(s, 3, 6, 0), "another master");
        assert!(!t.remove(s, 2, 5, 0), "another worker");
        assert!(t.remove(s, 3, 5, 0));
        assert!(t.is_empty());
    }

    #[test]
    fn two_threads_take_one_expectation_once() {
        let t = std::sync::Arc::new(ExpectTable::new(256));
        for p in 0..200 {
            t.insert(&exp(p, p.into()), u64::MAX - 1, 0).unwrap();
        }
        let got: Vec<usize> = (0..2)
            .map(|_| {
                let t = std::sync::Arc::clone(&t);
                std::thread::spawn(move || {
                    (0..200)
                        .filter(|&p| t.take(Family::V4, proto::TCP, a(1), a(2), p, 1).is_some())
                        .count()
                })
            })
            .map(|h| h.join().unwrap())
            .collect();
        assert_eq!(got.iter().sum::<usize>(), 200);
        assert_eq!(t.stats().new, 200);
    }
}
