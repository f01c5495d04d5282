//! Fast-path recipes: what a later packet of one direction of a confirmed IPv4 TCP/UDP
//! connection needs, precomputed on one cache line, so that the worker's vector fast path
//! (`worker/fast.rs`, docs/pipeline.md "Fast path") touches the index bucket and that
//! line and nothing else.
//!
//! A child module of `table.rs` (it reads the table's private arrays). The table keeps two
//! recipes per entry slot (`2 * slot + direction`) beside the entry, built by the slow
//! path ([`Table::build_recipe`]) after it forwarded an established packet, and checked
//! and applied by the fast path ([`Table::recipe_match`], [`Table::recipe_commit`]).
//!
//! What keeps a recipe exact (the fast path must leave the table as the slow path would):
//!
//! - **Validity epoch**: the worker's epoch (ruleset generation, routes, neighbours,
//!   tunables) at build time; any change makes every recipe stale at once.
//! - **Tracker state**: a recipe exists only for an entry that saw a reply and is
//!   ASSURED, UDP (so every later packet refreshes to `udp_stream`) or TCP in
//!   ESTABLISHED. The slow path's tracker invalidates the entry's recipes when a packet
//!   changes its state or status, or refreshes it to another timeout than the recipe's
//!   (`Recipe::secs`), and when it rewrites a verdict-cache slot. TCP packets run
//!   the same window tracking on the fast path ([`TcpConn::packet`] on a copy, kept only
//!   when it answers ESTABLISHED with the recipe's timeout).
//! - **Deadline**: `deadline` is the last deadline the recipe saw written; every writer
//!   since uses the same timeout and a later `now`, so the entry's deadline is at least
//!   that. A packet whose deadline would not move writes nothing; one whose tick is at or
//!   past `deadline` (possibly expired) goes to the slow path. So both directions' valid
//!   recipes share one timeout ([`Table::build_recipe`] refuses a second one).
//! - **Counters**: the packets and bytes of the direction are kept here (pending) and
//!   added to the entry's accounting wherever it is read ([`Table::snapshot_at`]).
//! - **Slot reuse**: a destroyed entry's recipes are cleared (a new connection with the
//!   same tuple must not find the old translation).
//!
//! The entry itself carries one private status bit, `RECIPE` (a recipe was built since
//! the entry was inserted), so the slow path reads the recipe lines only for entries that
//! had one; the entry's 128 bytes have no room for more (the spare bytes hold the index
//! positions).

use super::lanes::eq_mask8;
use super::recipe_types::{
    FastKey, FastPlan, L4_UPDATE, REWRITE, Recipe, RecipeArgs, apply_delta, deltas, tuple_bytes,
};
use super::{
    ASSURED, CONFIRMED, KIND_TCP, KIND_UDP, Probe, RECIPE, SEEN_REPLY, Table, deadline_of, tick_le,
    tick_of,
};
use crate::conntrack::key::{Direction, hash_tuple_v4};
use crate::conntrack::tcp::{TcpState, TcpVerdict};
use crate::wire::fastparse::{IP_CSUM_OFF, TCP_CSUM_OFF, TTL_OFF, TUPLE_OFF, UDP_CSUM_OFF};
use crate::wire::{Family, TcpInfo, proto};

impl Table {
    fn recipe_index(slot: u32, dir: Direction) -> usize {
        slot as usize * 2 + dir.index()
    }

    /// Burst stage 1 for the fast path: [`Table::probe`] of the key of a frame's IPv4
    /// tuple (`t`: source, destination, ports as the frame carries them; zone 0), hashed
    /// from those 12 bytes (`hash_tuple_v4`, equal to the key's hash) without building
    /// the key.
    #[inline]
    pub fn probe_v4(&self, t: &[u8; 12], proto: u8, hint: &mut impl FnMut(*const u8)) -> Probe {
        let h = self.split(hash_tuple_v4(t, proto, &self.keys));
        hint(std::ptr::from_ref(&self.buckets[h.b1]).cast());
        hint(std::ptr::from_ref(&self.buckets[h.b2]).cast());
        Probe(h)
    }

    /// Burst stage 2 for the fast path, with the stage-1 hash: the first index
    /// reference whose signature matches in the probe's buckets (0: none), after `hint`
    /// was given the address of its recipe line (and, for TCP, of the entry's window
    /// state, which the fast path's tracker reads). The buckets are read here, once;
    /// [`Table::recipe_match`] then checks the recipe alone.
    #[inline]
    pub fn recipe_candidate(&self, p: &Probe, tcp: bool, hint: &mut impl FnMut(*const u8)) -> u32 {
        let h = p.0;
        for b in [h.b1, h.b2] {
            let bk = &self.buckets[b];
            let mut m = eq_mask8(&bk.sig, h.sig);
            while m != 0 {
                let r = bk.refs[m.trailing_zeros() as usize];
                m &= m - 1;
                if r != 0 {
                    let (slot, dir) = Self::split_ref(r);
                    hint(std::ptr::from_ref(&self.recipes[Self::recipe_index(slot, dir)]).cast());
                    if tcp {
                        let t: *const u8 = std::ptr::from_ref(&self.tcp[slot as usize]).cast();
                        hint(t);
                        hint(t.wrapping_add(47));
                    }
                    return r;
                }
            }
        }
        0
    }

    /// [`Table::lookup`] with the hash a burst's stage 1 computed ([`Table::probe`]) for
    /// the same key: the full path's lookup of a frame the fast path handed back.
    #[inline]
    pub fn lookup_probe(
        &self,
        key: &crate::conntrack::FlowKey,
        p: &Probe,
    ) -> Option<(super::EntryId, Direction)> {
        self.find(key, p.0)
    }

    /// [`Table::lookup_or_miss`] with the stage-1 hash ([`Table::lookup_probe`]).
    #[inline]
    pub fn lookup_probe_or_miss(
        &self,
        key: &crate::conntrack::FlowKey,
        p: &Probe,
    ) -> Result<(super::EntryId, Direction), super::Miss> {
        self.find(key, p.0).ok_or(super::Miss {
            h: p.0,
            inserts: self.stats.insert,
        })
    }

    /// The plan of the recipe named by index reference `cand` (from
    /// [`Table::recipe_candidate`]) when it is valid for `epoch` and holds `key`. A valid
    /// recipe's tuple is its live entry's, and tuples are unique in the table, so this is
    /// the entry a lookup of `key` finds, even if the index changed since stage 2 (slots
    /// never move; a freed slot's recipes are cleared). `None`: the slow path decides.
    #[inline(always)]
    pub fn recipe_match(&self, cand: u32, key: &FastKey, epoch: u64) -> Option<FastPlan> {
        if cand == 0 {
            return None;
        }
        let (slot, dir) = Self::split_ref(cand);
        let rc = self.recipes.get(Self::recipe_index(slot, dir))?;
        if rc.epoch != epoch
            || rc.key != key.tuple
            || rc.proto != key.proto
            || rc.in_port != key.in_port
        {
            return None;
        }
        Some(FastPlan {
            slot,
            dir,
            adj: rc.adj,
            path: rc.path,
        })
    }

    /// The rewrite of a frame of the fast path's shape (`wire::fastparse`: untagged
    /// IPv4 without options, `udp` or TCP) by the matched recipe, read in place: the
    /// translated tuple, the IPv4 header checksum by the recipe's sum (address changes
    /// and the TTL decrement), the TTL, the L4 checksum by its sum (a zero UDP checksum
    /// stays zero, a computed zero is sent as 0xFFFF, as `wire::rewrite`). The MACs are
    /// the caller's. `frame` is one `parse_fast` accepted (every offset written is inside
    /// such a frame).
    #[inline(always)]
    pub fn recipe_rewrite(&self, plan: &FastPlan, frame: &mut [u8], udp: bool) {
        let rc = &self.recipes[Self::recipe_index(plan.slot, plan.dir)];
        let csum_off = if udp { UDP_CSUM_OFF } else { TCP_CSUM_OFF };
        let h = frame;
        if rc.flags & REWRITE != 0 {
            h[TUPLE_OFF..TUPLE_OFF + 12].copy_from_slice(&rc.out);
        }
        let rd = |h: &[u8], o: usize| u16::from_be_bytes([h[o], h[o + 1]]);
        let c = apply_delta(rd(h, IP_CSUM_OFF), rc.ip_delta);
        h[IP_CSUM_OFF..IP_CSUM_OFF + 2].copy_from_slice(&c.to_be_bytes());
        h[TTL_OFF] = h[TTL_OFF].wrapping_sub(1);
        if rc.flags & L4_UPDATE != 0 {
            let old = rd(h, csum_off);
            // RFC 768: a zero UDP checksum over IPv4 means none, and stays; a computed
            // zero is sent as 0xFFFF (`wire::rewrite`).
            if !(udp && old == 0) {
                let mut c = apply_delta(old, rc.l4_delta);
                if udp && c == 0 {
                    c = 0xffff;
                }
                h[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
    }

    /// The conntrack part of a fast-path packet (what [`Table::update`] would do for it,
    /// which the recipe guarantees to be: no state or status change, the recipe's
    /// timeout): the expiry check, the TCP window tracking (`tcp`: the segment's summary),
    /// the deadline, the accounting, `found`. `false` (nothing changed) when the packet
    /// must take the slow path: possibly expired, or the tracker would not answer
    /// ESTABLISHED with the recipe's timeout.
    #[inline(always)]
    pub fn recipe_commit(
        &mut self,
        plan: &FastPlan,
        now: u64,
        ip_len: u16,
        tcp: Option<&TcpInfo>,
    ) -> bool {
        let ri = Self::recipe_index(plan.slot, plan.dir);
        let (deadline, secs) = {
            let r = &self.recipes[ri];
            (r.deadline, r.secs)
        };
        if tick_le(deadline, tick_of(now)) {
            return false;
        }
        let slot = plan.slot as usize;
        if let Some(t) = tcp {
            let mut conn = self.tcp[slot];
            match conn.packet(TcpState::Established, plan.dir, t, true, true, &self.tun) {
                TcpVerdict::Accept {
                    state: TcpState::Established,
                    timeout,
                } if timeout == secs => self.tcp[slot] = conn,
                _ => return false,
            }
        }
        let d = deadline_of(now, secs);
        if d != deadline {
            self.set_deadline(plan.slot, d);
            self.recipes[ri].deadline = d;
        }
        let r = &mut self.recipes[ri];
        if r.packets == u32::MAX {
            let c = &mut self.acct[slot];
            c.packets[plan.dir.index()] += u64::from(r.packets);
            c.bytes[plan.dir.index()] += r.bytes;
            r.packets = 0;
            r.bytes = 0;
        }
        r.packets += 1;
        r.bytes += u64::from(ip_len);
        self.stats.found += 1;
        true
    }

    /// Builds the recipe of direction `dir` of entry `id` after the slow path forwarded a
    /// packet of it with an accepted (cacheable) verdict, if the connection qualifies:
    /// IPv4 TCP/UDP, zone 0, both tuples distinct, a reply seen and ASSURED, UDP or TCP
    /// ESTABLISHED, and this very packet was the last one tracked (its timeout is the
    /// recipe's). Returns whether one was built.
    pub fn build_recipe(&mut self, id: super::EntryId, dir: Direction, args: &RecipeArgs) -> bool {
        let slot = id.0;
        let (last_slot, last_dir, secs) = self.last_track;
        if last_slot != slot || last_dir != dir || secs == 0 || args.epoch == 0 {
            return false;
        }
        let Some(e) = self.entries.get(slot as usize) else {
            return false;
        };
        let kind = e.kind();
        let ok_state = match kind {
            KIND_UDP => true,
            KIND_TCP => e.tcp_state() == TcpState::Established as u8,
            _ => false,
        };
        let status = SEEN_REPLY | ASSURED | CONFIRMED;
        let (here, there) = (e.tuple(dir), e.tuple(dir.flip()));
        if !ok_state
            || e.status & status != status
            || here.family != Family::V4
            || here.zone != 0
            || !matches!(here.proto, proto::TCP | proto::UDP)
            || e.orig == e.reply
        {
            return false;
        }
        // A valid recipe of the other direction with another timeout could write an
        // earlier deadline than this one saw (see the module docs).
        let other = &self.recipes[Self::recipe_index(slot, dir.flip())];
        if other.epoch == args.epoch && other.secs != secs {
            return false;
        }
        let target = there.inverse();
        let (Some(src), Some(dst), Some(nsrc), Some(ndst)) = (
            here.src.to_v4(),
            here.dst.to_v4(),
            target.src.to_v4(),
            target.dst.to_v4(),
        ) else {
            return false;
        };
        let key = tuple_bytes(src, dst, here.sport, here.dport);
        let out = tuple_bytes(nsrc, ndst, target.sport, target.dport);
        let (ip_delta, l4_delta) = deltas(&key, &out);
        let (proto_, deadline) = (here.proto, e.deadline);
        let mut flags = 0;
        if key != out {
            flags |= REWRITE;
        }
        if l4_delta.is_some() {
            flags |= L4_UPDATE;
        }
        let r = &mut self.recipes[Self::recipe_index(slot, dir)];
        *r = Recipe {
            key,
            proto: proto_,
            in_port: args.in_port,
            adj: args.adj,
            out,
            ip_delta,
            l4_delta: l4_delta.unwrap_or(0),
            epoch: args.epoch,
            secs,
            deadline,
            bytes: r.bytes,
            packets: r.packets,
            path: args.path,
            flags,
            _pad: 0,
        };
        self.entries[slot as usize].status |= RECIPE;
        true
    }

    /// Called by the tracker for every packet it tracked on the slow path: remembers the
    /// timeout it refreshed to (for [`Table::build_recipe`]) and invalidates the entry's
    /// recipes when the packet changed the state or status, or refreshed to another
    /// timeout than theirs.
    pub(super) fn recipe_tracked(
        &mut self,
        slot: u32,
        dir: Direction,
        timeout: Option<u32>,
        changed: bool,
    ) {
        self.last_track = (slot, dir, timeout.unwrap_or(0));
        if self.entries[slot as usize].status & RECIPE == 0 {
            return;
        }
        for d in [Direction::Original, Direction::Reply] {
            let r = &mut self.recipes[Self::recipe_index(slot, d)];
            if r.epoch != 0 && (changed || timeout.is_some_and(|t| t != r.secs)) {
                r.epoch = 0;
            }
        }
    }

    /// The verdict-cache slot of `dir` changed: that direction's recipe (which repeats
    /// the old verdict) is stale.
    pub(super) fn recipe_slot_changed(&mut self, slot: u32, dir: Direction) {
        if self.entries[slot as usize].status & RECIPE != 0 {
            self.recipes[Self::recipe_index(slot, dir)].epoch = 0;
        }
    }

    /// Clears both recipes of a slot being freed.
    pub(super) fn recipe_clear(&mut self, slot: u32) {
        if self.entries[slot as usize].status & RECIPE != 0 {
            for d in [Direction::Original, Direction::Reply] {
                self.recipes[Self::recipe_index(slot, d)] = Recipe::default();
            }
        }
    }

    /// Packets and bytes of each direction counted by recipes and not yet in the entry's
    /// accounting.
    pub(super) fn recipe_pending(&self, slot: u32) -> ([u64; 2], [u64; 2]) {
        let mut out = ([0; 2], [0; 2]);
        if self.entries[slot as usize].status & RECIPE != 0 {
            for d in [Direction::Original, Direction::Reply] {
                let r = &self.recipes[Self::recipe_index(slot, d)];
                out.0[d.index()] = u64::from(r.packets);
                out.1[d.index()] = r.bytes;
            }
        }
        out
    }

    /// Whether the recipe of `dir` of entry `id` is valid for `epoch` (tests).
    pub fn has_recipe(&self, id: super::EntryId, dir: Direction, epoch: u64) -> bool {
        self.entries.get(id.0 as usize).is_some_and(|e| e.live())
            && self.recipes[Self::recipe_index(id.0, dir)].epoch == epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::NO_PATH;
    use crate::wire::rewrite;
    use crate::wire::{Addr, Fragment, IpInfo, L4Info};
    use proptest::prelude::*;

    /// A UDP/IPv4 frame from the given tuple, with a valid checksum (or 0).
    fn frame(t: &[u8; 12], ttl: u8, zero_csum: bool, tcp: bool) -> (Vec<u8>, IpInfo) {
        let l4_len = if tcp { 20 } else { 12 };
        let total = 20 + l4_len;
        let mut f = vec![0u8; 14 + total];
        f[12] = 8;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
        f[22] = ttl;
        f[23] = if tcp { proto::TCP } else { proto::UDP };
        f[26..34].copy_from_slice(&t[0..8]);
        f[34..38].copy_from_slice(&t[8..12]);
        if tcp {
            f[46] = 0x50;
            f[47] = 0x10;
        } else {
            f[38..40].copy_from_slice(&12u16.to_be_bytes());
            f[42..46].copy_from_slice(&[0xff, 0xff, 0, 0]);
        }
        let a = |o: usize| Addr::from_v4([f[o], f[o + 1], f[o + 2], f[o + 3]]);
        let sport = u16::from_be_bytes([t[8], t[9]]);
        let dport = u16::from_be_bytes([t[10], t[11]]);
        let l4 = if tcp {
            L4Info::Tcp(TcpInfo {
                sport,
                dport,
                seq: 0,
                ack: 0,
                flags: crate::wire::TcpFlags(0x10),
                window: 0,
                payload_len: 0,
                wscale: None,
                sack_perm: false,
                mss: None,
            })
        } else {
            L4Info::Udp { sport, dport }
        };
        let ip = IpInfo {
            family: Family::V4,
            src: a(26),
            dst: a(30),
            proto: f[23],
            ttl,
            l3_off: 14,
            l4_off: 34,
            ip_len: u16::try_from(total).unwrap(),
            frag: Fragment::None,
            l4: Some(l4),
        };
        rewrite::fill_checksums_with(&mut f, &ip, false).unwrap();
        if zero_csum {
            f[40..42].copy_from_slice(&[0, 0]);
        }
        (f, ip)
    }

    /// What the slow path does: one RFC 1624 update per field that differs, then the TTL.
    fn slow(f: &mut [u8], ip: &IpInfo, out: &[u8; 12]) {
        let v4 = |o: usize| Addr::from_v4([out[o], out[o + 1], out[o + 2], out[o + 3]]);
        if f[26..30] != out[0..4] {
            rewrite::set_src_addr(f, ip, v4(0)).unwrap();
        }
        if f[30..34] != out[4..8] {
            rewrite::set_dst_addr(f, ip, v4(4)).unwrap();
        }
        if f[34..36] != out[8..10] {
            rewrite::set_src_port(f, ip, u16::from_be_bytes([out[8], out[9]])).unwrap();
        }
        if f[36..38] != out[10..12] {
            rewrite::set_dst_port(f, ip, u16::from_be_bytes([out[10], out[11]])).unwrap();
        }
        rewrite::decrement_ttl(f, ip).unwrap();
    }

    /// What the fast path does with the recipe's sums.
    fn fast(f: &mut [u8], key: &[u8; 12], out: &[u8; 12], tcp: bool) {
        let (ip_delta, l4_delta) = deltas(key, out);
        f[26..38].copy_from_slice(out);
        let c = u16::from_be_bytes([f[24], f[25]]);
        f[24..26].copy_from_slice(&apply_delta(c, ip_delta).to_be_bytes());
        f[22] -= 1;
        let off = if tcp { 50 } else { 40 };
        let c = u16::from_be_bytes([f[off], f[off + 1]]);
        if let Some(d) = l4_delta
            && (tcp || c != 0)
        {
            let mut n = apply_delta(c, d);
            if !tcp && n == 0 {
                n = 0xffff;
            }
            f[off..off + 2].copy_from_slice(&n.to_be_bytes());
        }
    }

    fn check(key: [u8; 12], out: [u8; 12], ttl: u8, zero: bool, tcp: bool) {
        let (mut a, ip) = frame(&key, ttl, zero, tcp);
        let mut b = a.clone();
        slow(&mut a, &ip, &out);
        fast(&mut b, &key, &out, tcp);
        assert_eq!(
            a, b,
            "key {key:?} out {out:?} ttl {ttl} zero {zero} tcp {tcp}"
        );
    }

    #[test]
    fn summed_deltas_leave_the_bytes_of_field_by_field_updates() {
        let k = [198, 18, 0, 10, 203, 0, 113, 5, 0x9c, 0x40, 0, 53];
        check(k, k, 64, false, false);
        let mut masq = k;
        masq[0..4].copy_from_slice(&[198, 19, 0, 1]);
        masq[8..10].copy_from_slice(&[0xff, 0xff]);
        check(k, masq, 2, false, false);
        check(k, masq, 255, true, false);
        check(k, masq, 64, false, true);
        // Words that go from 0xffff to 0 (the sums' zero cases).
        let all = [0xff; 12];
        check(all, [0; 12], 64, false, false);
        check([0; 12], all, 64, false, true);
    }

    /// The `RECIPE` status bit (the entry has recipe lines to look at) is never shown, and
    /// a freed slot's lines are cleared with it.
    #[test]
    fn the_recipe_bit_is_private_and_leaves_with_the_slot() {
        use crate::conntrack::testutil::{S, udp4};
        use crate::conntrack::{FlowKey, Tunables};
        let mut t = Table::new(16, Tunables::default(), 1);
        let out = udp4([198, 18, 0, 10], 40000, [203, 0, 113, 5], 53);
        let back = udp4([203, 0, 113, 5], 53, [198, 18, 0, 10], 40000);
        let key = FlowKey::from_info(&out, 0).unwrap();
        let id = t.insert(key, key.inverse(), &out, 0).unwrap();
        let args = RecipeArgs {
            in_port: 0,
            epoch: 7,
            adj: 0,
            path: NO_PATH,
        };
        t.update(id, Direction::Reply, &back, S / 10);
        assert!(
            !t.build_recipe(id, Direction::Reply, &args),
            "not assured yet"
        );
        t.update(id, Direction::Original, &out, 3 * S);
        assert!(t.build_recipe(id, Direction::Original, &args));
        assert!(t.has_recipe(id, Direction::Original, 7));
        assert_ne!(t.entries[id.0 as usize].status & RECIPE, 0);
        let shown = t.status(id).unwrap();
        assert_eq!(shown & RECIPE, 0, "private");
        assert_eq!(shown, SEEN_REPLY | ASSURED | CONFIRMED);
        assert_eq!(t.snapshot(id, 3 * S).unwrap().status, shown);
        assert!(t.remove(id, 4 * S));
        let line = Table::recipe_index(id.0, Direction::Original);
        assert_eq!(t.recipes[line], Recipe::default(), "cleared with the slot");
    }

    proptest! {
        #[test]
        fn summed_deltas_match_the_slow_path(
            key in any::<[u8; 12]>(),
            out in any::<[u8; 12]>(),
            keep in any::<[bool; 4]>(),
            ttl in 2u8..=255,
            zero in any::<bool>(),
            tcp in any::<bool>(),
        ) {
            let mut out = out;
            for (i, (lo, hi)) in [(0, 4), (4, 8), (8, 10), (10, 12)].into_iter().enumerate() {
                if keep[i] {
                    out[lo..hi].copy_from_slice(&key[lo..hi]);
                }
            }
            check(key, out, ttl, zero, tcp);
        }
    }
}
