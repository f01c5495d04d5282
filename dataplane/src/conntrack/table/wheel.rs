//! The timer wheel: entries linked in the slot of their deadline, expiry in bounded
//! steps, and the per-tick budget that follows the insert rate (`docs/conntrack.md`,
//! "Timers").

use super::*;

/// Expiry steps per [`Table::expire_tick`] with no insert since the last tick: drains a
/// backlog at 256 entries per millisecond tick when nothing new arrives.
pub const EXPIRE_MIN: usize = 256;
/// The most steps one [`Table::expire_tick`] takes: 4 096 steps (entries reaped or
/// re-linked, slots advanced), about 0.4 ms at the ~100 ns a reap costs when none of its
/// lines is cached; with a tick per millisecond that keeps up with up to about 2 M
/// inserts a second (each insert buys two steps).
pub const EXPIRE_MAX: usize = 4096;
/// Due entries [`Table::expire`] has found but not yet deleted: their index buckets are
/// prefetched this many deletions ahead.
const REAP_AHEAD: usize = 8;

impl Table {
    fn link(&mut self, idx: u32, slot: usize) {
        let head = self.wheel[slot];
        let e = &mut self.entries[idx as usize];
        e.next = head;
        #[allow(clippy::cast_possible_truncation)] // slot <= SLOTS
        {
            e.prev = HEAD | slot as u32;
        }
        if head != NIL {
            self.entries[head as usize].prev = idx;
        }
        self.wheel[slot] = idx;
    }

    pub(super) fn unlink(&mut self, idx: u32) {
        let (p, n) = {
            let e = &self.entries[idx as usize];
            (e.prev, e.next)
        };
        if p == NIL {
            // Not linked.
        } else if p & HEAD != 0 {
            self.wheel[(p & !HEAD) as usize] = n;
        } else {
            self.entries[p as usize].next = n;
        }
        if n != NIL {
            self.entries[n as usize].prev = p;
        }
        let e = &mut self.entries[idx as usize];
        e.next = NIL;
        e.prev = NIL;
    }

    /// Links an entry into the slot of its deadline (never behind the wheel position).
    pub(super) fn schedule(&mut self, idx: u32) {
        let d = self.entries[idx as usize].deadline;
        let at = if tick_le(d, self.wheel_pos) {
            self.wheel_pos
        } else {
            d
        };
        self.link(idx, at as usize & (SLOTS - 1));
    }

    /// Sets a new timeout: one store when it moves later (the wheel finds the entry in
    /// its old slot and re-links it lazily), a re-link when it moves earlier.
    pub(super) fn refresh(&mut self, idx: u32, now: u64, secs: u32) {
        self.set_deadline(idx, deadline_of(now, secs));
    }

    /// [`Table::refresh`] to a computed deadline tick.
    pub(super) fn set_deadline(&mut self, idx: u32, d: u32) {
        let e = &mut self.entries[idx as usize];
        let old = e.deadline;
        e.deadline = d;
        if !tick_le(old, d) {
            self.unlink(idx);
            self.schedule(idx);
        }
    }

    /// Deletes entries whose deadline has passed, doing at most `budget` steps (one per
    /// entry examined or wheel slot advanced). Returns the number deleted. Call it every
    /// few bursts; work left over is resumed by the next call.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let now_tick = tick_of(now);
        if !self.wheel_started {
            self.wheel_pos = now_tick;
            self.wheel_started = true;
        }
        if self.wheel[PENDING] == NIL {
            let behind = now_tick.wrapping_sub(self.wheel_pos).cast_signed();
            if behind >= SLOTS_U32.cast_signed() {
                // More than a whole turn behind: every slot is due once.
                self.wheel_pos = now_tick.wrapping_sub(SLOTS_U32 - 1);
            }
        }
        let (mut work, mut expired) = (0, 0);
        // Due entries wait here, unlinked, for `REAP_AHEAD` steps while their index
        // buckets (two misses each) are fetched, and are then deleted in the order they
        // were found; the rest are deleted before returning. Nothing else runs in between,
        // so the result is that of deleting each one at once.
        let mut due = [NIL; REAP_AHEAD];
        let (mut due_head, mut due_len) = (0, 0);
        while work < budget {
            let idx = self.wheel[PENDING];
            if idx == NIL {
                if !tick_le(self.wheel_pos, now_tick) {
                    break;
                }
                let s = self.wheel_pos as usize & (SLOTS - 1);
                let head = self.wheel[s];
                self.wheel[s] = NIL;
                self.wheel[PENDING] = head;
                if head != NIL {
                    self.entries[head as usize].prev = HEAD | PENDING_U32;
                }
                self.wheel_pos = self.wheel_pos.wrapping_add(1);
                work += 1;
                continue;
            }
            self.unlink(idx);
            let (deadline, pos) = {
                let e = &self.entries[idx as usize];
                (e.deadline, e.pos)
            };
            if tick_le(deadline, now_tick) {
                self.prefetch_bucket(pos[0] as usize);
                self.prefetch_bucket(pos[1] as usize);
                self.prefetch_port(idx);
                if due_len == REAP_AHEAD {
                    let old = due[due_head];
                    self.reap(old, now);
                    due[due_head] = idx;
                    due_head = (due_head + 1) % REAP_AHEAD;
                } else {
                    due[(due_head + due_len) % REAP_AHEAD] = idx;
                    due_len += 1;
                }
                expired += 1;
            } else {
                self.schedule(idx);
            }
            work += 1;
        }
        for k in 0..due_len {
            self.reap(due[(due_head + k) % REAP_AHEAD], now);
        }
        expired
    }

    /// Deletes an entry the timer found due.
    fn reap(&mut self, idx: u32, now: u64) {
        self.stats.expired += 1;
        self.destroy(idx, now);
    }

    /// The expiry of one worker tick (about every millisecond): `EXPIRE_MIN` steps plus
    /// two per entry inserted since the previous tick, at most `EXPIRE_MAX`; at most
    /// `EXPIRE_MAX` while the table is at its maximum, so that due entries, not live
    /// ones, make room. Each insert thus pays for its own expiry (one reap, and a lazy
    /// re-link later) whatever the rate, and a tick never takes more than
    /// `EXPIRE_MAX` steps. Returns the entries deleted.
    pub fn expire_tick(&mut self, now: u64) -> usize {
        let inserted = self.stats.insert.wrapping_sub(self.inserts_at_tick);
        self.inserts_at_tick = self.stats.insert;
        let budget = if self.live >= self.max {
            EXPIRE_MAX
        } else {
            usize::try_from(inserted)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .saturating_add(EXPIRE_MIN)
                .min(EXPIRE_MAX)
        };
        self.events_idle(now);
        self.expire(now, budget)
    }
}
