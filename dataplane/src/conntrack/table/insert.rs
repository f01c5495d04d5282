//! Creating the entry of a connection's first packet, and early drop (`docs/conntrack.md`,
//! "Insert").
//!
//! The first packet's tracker result (state, timeout, counters) is computed before
//! anything is written; the entry is then written whole, linked straight into the wheel
//! slot of its real deadline, and indexed. A caller that has just missed on the original
//! key hands over the miss ([`InsertHints::miss`]): its hash is reused and the key is not
//! looked up again; only the reply tuple is checked for a clash.

use super::*;

/// What the caller of [`Table::insert_with`] already did.
#[derive(Clone, Copy, Debug, Default)]
pub struct InsertHints {
    /// The lookup of the original key that just missed ([`Table::lookup_or_miss`]): its
    /// hash is reused and the key is not looked up again. Ignored (the key is looked up)
    /// when an entry was inserted since the miss.
    pub miss: Option<Miss>,
    /// The reply's translated source port (ICMP: identifier) was taken from this table's
    /// port pools for this connection (`nat::Binding::port_held`): the entry holds it and
    /// releases it when it dies; a refused insert releases it at once.
    pub nat_port: bool,
}

/// The state a first packet gives its connection.
struct First {
    kind: u8,
    tcp: Option<TcpConn>,
    tcp_state: u8,
    /// `None`: the tracker ignored the packet (the entry is due at once, as before).
    timeout: Option<u32>,
    stream_tick: u32,
}

/// Buckets around the new key's two buckets that early drop looks into.
const DROP_BUCKETS: usize = 8;
/// Entries early drop reads at most (references marked not-assured that turn out to be
/// ASSURED by now; each such mark is cleared, so it is read once).
const DROP_EXAMINE: usize = 8;

impl Table {
    /// Creates an entry for the first packet of a connection. `orig` is the packet's key
    /// (from [`NewFlow::New`]); `reply` is the tuple replies will carry: `orig.inverse()`
    /// without NAT, the translated tuple with NAT (the SRC_NAT / DST_NAT status bits are
    /// derived from the difference). The packet is tracked as the first of the
    /// connection (state, timeout, counters) and a NEW event is queued.
    pub fn insert(
        &mut self,
        orig: FlowKey,
        reply: FlowKey,
        info: &IpInfo,
        now: u64,
    ) -> Result<EntryId, InsertError> {
        self.insert_with(orig, reply, info, now, InsertHints::default())
    }

    /// The first stage of an insert, for a caller that has other work to do before it
    /// (the pipeline rewrites the packet meanwhile): hashes the new connection's `reply`
    /// tuple and prefetches its two index buckets (read for a clash, then written) and
    /// the free slot's counters. Pass the result to [`Table::insert_prepared`]. Changes
    /// no result, only timing.
    pub fn prepare_insert(&self, reply: &FlowKey) -> Probe {
        let h = self.hashed(reply);
        self.prefetch_bucket(h.b1);
        self.prefetch_bucket(h.b2);
        self.prefetch_acct(self.free);
        Probe(h)
    }

    /// [`Table::insert`] with what the caller already did (see [`InsertHints`]).
    pub fn insert_with(
        &mut self,
        orig: FlowKey,
        reply: FlowKey,
        info: &IpInfo,
        now: u64,
        hints: InsertHints,
    ) -> Result<EntryId, InsertError> {
        self.insert_inner(orig, reply, info, now, hints, None)
    }

    /// [`Table::insert_with`] after [`Table::prepare_insert`] of `reply` (`probe`, its
    /// hash: the reply is not hashed again).
    pub fn insert_prepared(
        &mut self,
        orig: FlowKey,
        reply: FlowKey,
        info: &IpInfo,
        now: u64,
        hints: InsertHints,
        probe: Probe,
    ) -> Result<EntryId, InsertError> {
        self.insert_inner(orig, reply, info, now, hints, Some(probe))
    }

    fn insert_inner(
        &mut self,
        orig: FlowKey,
        reply: FlowKey,
        info: &IpInfo,
        now: u64,
        hints: InsertHints,
        probe: Option<Probe>,
    ) -> Result<EntryId, InsertError> {
        // Every refusal breaks out of this block, so a port the entry was to hold is
        // released in one place.
        let r = 'insert: {
            // The reply's buckets (looked up for a clash, then written) and the free slot's
            // counters are fetched together while the first packet is tracked, instead of
            // one miss after the other.
            let hr = match probe {
                Some(Probe(h)) => {
                    debug_assert_eq!(h, self.hashed(&reply), "the probe is of the reply");
                    h
                }
                None => self.prepare_insert(&reply).0,
            };
            let first = match self.first_packet(&orig, info, now) {
                Ok(f) => f,
                Err(r) => {
                    self.stats.invalid += 1;
                    break 'insert Err(InsertError::Invalid(r));
                }
            };
            let ho = match hints.miss {
                Some(m) if m.inserts == self.stats.insert => {
                    debug_assert_eq!(m.h, self.hashed(&orig), "the miss is of this key");
                    m.h
                }
                _ => {
                    let h = self.hashed(&orig);
                    if self.find(&orig, h).is_some() {
                        break 'insert Err(self.clash());
                    }
                    h
                }
            };
            if self.find(&reply, hr).is_some() {
                break 'insert Err(self.clash());
            }
            // Full: reap due entries first (a few steps), else drop an unassured one.
            if self.live >= self.max && self.expire(now, 8) == 0 && !self.early_drop(ho, now) {
                self.stats.drop += 1;
                break 'insert Err(InsertError::Full);
            }
            let idx = self.free;
            if idx == NIL {
                self.stats.drop += 1;
                break 'insert Err(InsertError::Full);
            }
            let inv = orig.inverse();
            let mut status = CONFIRMED;
            if reply.src != inv.src || reply.sport != inv.sport {
                status |= DST_NAT;
            }
            if reply.dst != inv.dst || reply.dport != inv.dport {
                status |= SRC_NAT;
            }
            if hints.nat_port {
                status |= PORT_HELD;
            }
            let next_free = self.entries[idx as usize].next;
            self.entries[idx as usize] = Entry {
                orig,
                reply,
                deadline: first.timeout.map_or(tick_of(now), |s| deadline_of(now, s)),
                next: NIL,
                prev: NIL,
                mark: 0,
                verdict: [0; 2],
                count_slot: 0,
                state: first.kind << 4 | first.tcp_state,
                status,
                stream_tick: first.stream_tick,
                pos: [0; 2],
            };
            if let Err(e) = self.index_new(idx, next_free, ho, hr, HINT) {
                break 'insert Err(e);
            }
            self.free = next_free;
            self.live += 1;
            if !self.wheel_started {
                self.wheel_pos = tick_of(now);
                self.wheel_started = true;
            }
            self.acct[idx as usize] = Acct {
                packets: [1, 0],
                bytes: [u64::from(info.ip_len), 0],
            };
            if let Some(c) = first.tcp {
                self.tcp[idx as usize] = c;
            }
            self.schedule(idx);
            self.stats.insert += 1;
            self.emit(EventKind::New, idx, now);
            Ok(EntryId(idx))
        };
        if r.is_err() && hints.nat_port {
            self.release_port(&reply);
        }
        r
    }

    /// Indexes both tuples of the entry just written at `idx` (references marked with
    /// `hint`); when the index has no room, undoes it (the slot back on the free list
    /// before `next_free`) and counts the failure.
    pub(super) fn index_new(
        &mut self,
        idx: u32,
        next_free: u32,
        ho: Hashed,
        hr: Hashed,
        hint: u32,
    ) -> Result<(), InsertError> {
        let indexed = self.index_insert(ho, Self::make_ref(idx, Direction::Original) | hint)
            && (self.index_insert(hr, Self::make_ref(idx, Direction::Reply) | hint) || {
                self.remove_ref(idx, Direction::Original);
                false
            });
        if indexed {
            return Ok(());
        }
        self.entries[idx as usize] = Entry {
            next: next_free,
            ..Entry::EMPTY
        };
        self.stats.insert_failed += 1;
        self.stats.drop += 1;
        Err(InsertError::IndexFull)
    }

    pub(super) fn clash(&mut self) -> InsertError {
        self.stats.insert_failed += 1;
        self.stats.drop += 1;
        InsertError::Clash
    }

    /// The tracker's verdict on the first packet of a connection (what `track` decides
    /// for an original-direction packet of an entry without state or status).
    fn first_packet(
        &self,
        orig: &FlowKey,
        info: &IpInfo,
        now: u64,
    ) -> Result<First, InvalidReason> {
        let plain = |kind, timeout| First {
            kind,
            tcp: None,
            tcp_state: 0,
            timeout: Some(timeout),
            stream_tick: 0,
        };
        match info.l4 {
            Some(L4Info::Tcp(t)) => {
                let mut c = TcpConn::new(&t, &self.tun)?;
                let none = TcpState::None;
                match c.packet(none, Direction::Original, &t, false, false, &self.tun) {
                    // A RST never starts a connection (`TcpConn::new` refuses it): an
                    // accepted one would be killed at once, as `track` does.
                    TcpVerdict::Accept { .. } if t.flags.contains(TcpFlags::RST) => {
                        Err(InvalidReason::TcpState)
                    }
                    TcpVerdict::Accept { state, timeout } => Ok(First {
                        kind: KIND_TCP,
                        tcp: Some(c),
                        tcp_state: state as u8,
                        timeout: Some(timeout),
                        stream_tick: 0,
                    }),
                    TcpVerdict::Ignore => Ok(First {
                        kind: KIND_TCP,
                        tcp: Some(c),
                        tcp_state: none as u8,
                        timeout: None,
                        stream_tick: 0,
                    }),
                    TcpVerdict::Invalid(r) => Err(r),
                    TcpVerdict::Reopen => Err(InvalidReason::TcpState),
                }
            }
            Some(L4Info::Udp { .. }) => Ok(First {
                stream_tick: tick_of(now.saturating_add(2_000_000_000)),
                ..plain(KIND_UDP, self.tun.udp)
            }),
            Some(L4Info::IcmpEcho { request: true, .. }) => {
                Ok(plain(KIND_ICMP, self.timeout_for(orig.family, orig.proto)))
            }
            Some(L4Info::Other) => Ok(plain(
                KIND_GENERIC,
                self.timeout_for(orig.family, orig.proto),
            )),
            _ => Err(InvalidReason::IcmpType),
        }
    }

    /// Table full: delete a not-yet-assured entry near the new key (Linux `early_drop`:
    /// a bounded look at a few buckets), or an entry found past its deadline. Only
    /// references marked not-assured ([`HINT`]) are considered, so an index full of
    /// ASSURED connections costs no entry reads; a mark found stale is cleared. At most
    /// [`DROP_EXAMINE`] entries are read. `true` when room was made.
    pub(super) fn early_drop(&mut self, h: Hashed, now: u64) -> bool {
        let now_tick = tick_of(now);
        let mut examined = 0;
        for k in 0..DROP_BUCKETS {
            let b = (if k % 2 == 0 { h.b1 } else { h.b2 } + k / 2) & self.mask;
            for i in 0..WAYS {
                let r = self.buckets[b].refs[i];
                if r & HINT == 0 {
                    continue;
                }
                let (idx, _) = Self::split_ref(r);
                let (deadline, status) = {
                    let e = &self.entries[idx as usize];
                    (e.deadline, e.status)
                };
                if tick_le(deadline, now_tick) {
                    self.stats.expired += 1;
                    self.destroy(idx, now);
                    return true;
                }
                if status & ASSURED == 0 {
                    self.destroy(idx, now);
                    self.stats.early_drop += 1;
                    return true;
                }
                self.buckets[b].refs[i] = r & !HINT;
                examined += 1;
                if examined == DROP_EXAMINE {
                    return false;
                }
            }
        }
        false
    }

    /// Gives the port an entry held back to the pools (its translated source).
    pub(super) fn release_port(&mut self, reply: &FlowKey) {
        let (key, port) = held_port(reply);
        self.ports.release(&key, port);
    }

    /// Prefetches the port-pool bitmap word the death of entry `idx` will write, when
    /// it holds a NAT port (expiry issues it a few deletions ahead, with the buckets).
    pub(super) fn prefetch_port(&self, idx: u32) {
        let e = &self.entries[idx as usize];
        if e.status & PORT_HELD != 0 {
            let (key, port) = held_port(&e.reply);
            self.ports.hint_port(&key, port);
        }
    }
}

/// The pool and port a reply tuple holds (the translated source port, or ICMP id).
fn held_port(reply: &FlowKey) -> (crate::nat::pool::PoolKey, u16) {
    let port = if is_icmp(reply.family, reply.proto) {
        reply.sport
    } else {
        reply.dport
    };
    pool_port(&reply.dst, reply.proto, port)
}
