//! Entries that come from a peer's state sync (docs/ha.md): written whole from what the
//! peer's table said, not created by a packet here, and never announced as events of
//! their own (the sync daemon would send them back: a loop).
//!
//! An entry applied as the peer's copy carries [`SYNCED`]; its later events (an UPDATE
//! when a packet of an asymmetric path moves it here, its DESTROY) show the bit, so the
//! daemon knows the peer owns it. An entry *adopted* on takeover ([`Table::apply_synced`]
//! with `adopt`) is ours from then on and carries no mark.

use super::*;

/// A connection as state sync carries it: everything needed to recreate the entry with
/// its NAT binding (the reply tuple; SRC_NAT / DST_NAT are derived from the difference as
/// in [`Table::insert`]), its tracker state and its mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synced {
    pub orig: FlowKey,
    pub reply: FlowKey,
    /// TCP state (`None` for other protocols).
    pub tcp_state: Option<TcpState>,
    /// TCP window tracking; `None` for other protocols, or when the peer did not send it
    /// (the entry then accepts the next segments as `nf_conntrack_tcp_loose` pickup does).
    pub tcp_window: Option<TcpWindow>,
    /// Visible status bits ([`SEEN_REPLY`], [`ASSURED`], ...; the NAT bits are recomputed).
    pub status: u8,
    pub mark: u32,
    /// Seconds left; `None`: the timeout of the entry's state from our tunables (what a
    /// packet would set now: the backup's cache holds entries without a clock).
    pub timeout_s: Option<u32>,
}

impl Synced {
    /// The sync form of a snapshot (an event or a listing), with its remaining timeout.
    pub fn from_snapshot(s: &Snapshot) -> Synced {
        Synced {
            orig: s.orig,
            reply: s.reply,
            tcp_state: s.tcp_state,
            tcp_window: s.tcp_window,
            status: s.status & (SEEN_REPLY | ASSURED),
            mark: s.mark,
            timeout_s: Some(u32::try_from(s.timeout_s).unwrap_or(u32::MAX)),
        }
    }

    /// A snapshot of the synced state (no table slot: `id` 0, no counters), for listings
    /// of a cache that holds entries outside the workers.
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            id: EntryId(0),
            orig: self.orig,
            reply: self.reply,
            tcp_state: self.tcp_state,
            status: self.status | CONFIRMED,
            mark: self.mark,
            packets: [0; 2],
            bytes: [0; 2],
            timeout_s: self.timeout_s.map_or(0, u64::from),
            tcp_window: self.tcp_window,
        }
    }
}

/// What [`Table::apply_synced`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncApplied {
    /// A new entry.
    Inserted(EntryId),
    /// The entry of this original tuple was overwritten with the synced state.
    Updated(EntryId),
}

impl Table {
    /// Writes a synced entry: overwrites the entry of its original tuple, or creates it
    /// (room made as for a packet: due entries reaped, else an unassured one early-dropped).
    /// No event is queued. `adopt`: the entry becomes ours (takeover commit), else it is
    /// marked [`SYNCED`]. A source-NAT entry takes its translated port from this table's
    /// pools when it is free there, so local connections never pick it.
    pub fn apply_synced(
        &mut self,
        s: &Synced,
        adopt: bool,
        now: u64,
    ) -> Result<SyncApplied, InsertError> {
        let kind = match s.orig.proto {
            proto::TCP => KIND_TCP,
            proto::UDP => KIND_UDP,
            p if is_icmp(s.orig.family, p) => KIND_ICMP,
            _ => KIND_GENERIC,
        };
        let tcp_state = if kind == KIND_TCP {
            s.tcp_state.unwrap_or(TcpState::Established)
        } else {
            TcpState::None
        };
        let status_bits = (s.status & (SEEN_REPLY | ASSURED)) | if adopt { 0 } else { SYNCED };
        let secs = s.timeout_s.unwrap_or_else(|| match kind {
            KIND_TCP => self.tun.tcp[tcp_state as usize],
            KIND_UDP if s.status & ASSURED != 0 => self.tun.udp_stream,
            _ => self.timeout_for(s.orig.family, s.orig.proto),
        });
        let window = match (kind, s.tcp_window) {
            // Adopted on takeover: the positions are stale, keep scales and options.
            (KIND_TCP, Some(w)) if adopt => w.unanchored(),
            (KIND_TCP, Some(w)) => w,
            _ => TcpConn::default(),
        };
        if let Some((id, Direction::Original)) = self.lookup(&s.orig)
            && adopt
            && self.entries[id.0 as usize].reply != s.reply
        {
            // Takeover: a packet that reached this box before the commit was picked up
            // with a binding of its own; the binding the server knows wins (docs/ha.md,
            // "Before the commit"): ours goes (its DESTROY event, its port released).
            self.remove(id, now);
        }
        if let Some((id, _)) = self.lookup(&s.orig) {
            let e = &mut self.entries[id.0 as usize];
            if e.reply != s.reply {
                // Same original tuple, another binding: not the peer's connection.
                return Err(self.clash());
            }
            e.state = kind << 4 | tcp_state as u8;
            e.status = (e.status & (CONFIRMED | SRC_NAT | DST_NAT | PRIVATE)) | status_bits;
            e.mark = s.mark;
            self.tcp[id.0 as usize] = window;
            self.refresh(id.0, now, secs);
            // The fast path's recipes repeat the old state and timeout.
            self.recipe_slot_changed(id.0, Direction::Original);
            self.recipe_slot_changed(id.0, Direction::Reply);
            return Ok(SyncApplied::Updated(id));
        }
        let ho = self.hashed(&s.orig);
        let hr = self.hashed(&s.reply);
        if self.find(&s.reply, hr).is_some() {
            return Err(self.clash());
        }
        if self.live >= self.max && self.expire(now, 8) == 0 && !self.early_drop(ho, now) {
            self.stats.drop += 1;
            return Err(InsertError::Full);
        }
        let idx = self.free;
        if idx == NIL {
            self.stats.drop += 1;
            return Err(InsertError::Full);
        }
        let inv = s.orig.inverse();
        let mut status = CONFIRMED | status_bits;
        if s.reply.src != inv.src || s.reply.sport != inv.sport {
            status |= DST_NAT;
        }
        if s.reply.dst != inv.dst || s.reply.dport != inv.dport {
            status |= SRC_NAT;
        }
        let next_free = self.entries[idx as usize].next;
        self.entries[idx as usize] = Entry {
            orig: s.orig,
            reply: s.reply,
            deadline: deadline_of(now, secs),
            next: NIL,
            prev: NIL,
            mark: s.mark,
            verdict: [0; 2],
            count_slot: 0,
            state: kind << 4 | tcp_state as u8,
            status,
            // Replied long ago as far as we know: a stream at once.
            stream_tick: tick_of(now),
            pos: [0; 2],
        };
        let hint = if status & ASSURED == 0 { HINT } else { 0 };
        self.index_new(idx, next_free, ho, hr, hint)?;
        self.free = next_free;
        self.live += 1;
        if !self.wheel_started {
            self.wheel_pos = tick_of(now);
            self.wheel_started = true;
        }
        self.acct[idx as usize] = Acct::default();
        self.tcp[idx as usize] = window;
        if status & SRC_NAT != 0 && self.hold_port(&s.reply) {
            self.entries[idx as usize].status |= PORT_HELD;
        }
        self.schedule(idx);
        self.stats.insert += 1;
        Ok(SyncApplied::Inserted(EntryId(idx)))
    }

    /// Deletes the entry of a synced original tuple (the peer's DESTROY). `false` when it
    /// is not tracked here.
    pub fn remove_synced(&mut self, orig: &FlowKey, now: u64) -> bool {
        match self.lookup(orig) {
            Some((id, Direction::Original)) => self.remove(id, now),
            _ => false,
        }
    }

    /// Takes the translated source port of a reply tuple from the pools (the inverse of
    /// [`Table::release_port`]); `false` when it is taken already or no pool is free.
    fn hold_port(&mut self, reply: &FlowKey) -> bool {
        let port = if is_icmp(reply.family, reply.proto) {
            reply.sport
        } else {
            reply.dport
        };
        let (key, port) = pool_port(&reply.dst, reply.proto, port);
        match self.ports.slot(key) {
            Some(slot) => self.ports.take(slot, port),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
