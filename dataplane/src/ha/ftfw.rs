//! Reliable delivery in the manner of conntrackd's FT-FW mode (docs/ha.md, "Reliability"):
//! every DATA datagram has a sequence number; the receiver acknowledges the in-order
//! prefix every few datagrams and NACKs holes at once; the sender keeps what it sent in a
//! bounded queue until acknowledged and retransmits NACKed datagrams from it. A hole the
//! sender no longer holds (queue overflow) is answered with SKIP: both sides count the lost
//! records, and the receiver asks for a resync (a full table dump).
//!
//! State machines only: datagrams in, datagrams out; the daemon does the I/O.

use std::collections::{BTreeSet, VecDeque};

use super::wire::{self, Datagram, Kind, MAX_DATAGRAM, Record};

/// `a` comes before `b` in wrapping sequence space.
pub fn seq_before(a: u32, b: u32) -> bool {
    a.wrapping_sub(b).cast_signed() < 0
}

/// Sender counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub datagrams: u64,
    pub records: u64,
    pub retransmitted: u64,
    /// Datagrams acknowledged (left the queue).
    pub acked: u64,
    /// Records dropped from a full queue before they were acknowledged.
    pub lost_records: u64,
    pub lost_datagrams: u64,
    /// SKIP datagrams sent (NACKed ranges no longer held).
    pub skips: u64,
}

#[derive(Debug)]
struct Queued {
    seq: u32,
    records: u64,
    bytes: Vec<u8>,
}

/// The sending side: batches records into datagrams, keeps them until acknowledged.
#[derive(Debug)]
pub struct Sender {
    session: u32,
    next_seq: u32,
    queue: VecDeque<Queued>,
    cap: usize,
    /// Largest datagram built (bytes, header included).
    max_datagram: usize,
    /// The records of the open batch, encoded back to back, and how many.
    batch: Vec<u8>,
    batch_count: usize,
    stats: SenderStats,
}

impl Sender {
    /// A sender with session id `session` (random per start) holding at most `cap`
    /// unacknowledged datagrams.
    pub fn new(session: u32, cap: usize) -> Sender {
        Self::with_datagram(session, cap, MAX_DATAGRAM)
    }

    /// [`Sender::new`] building datagrams of up to `max_datagram` bytes (clamped to
    /// [`wire::DATAGRAM_RANGE`]).
    pub fn with_datagram(session: u32, cap: usize, max_datagram: usize) -> Sender {
        let (lo, hi) = wire::DATAGRAM_RANGE;
        let max_datagram = max_datagram.clamp(lo, hi);
        Sender {
            session,
            next_seq: 0,
            queue: VecDeque::with_capacity(cap.min(65_536)),
            cap: cap.max(1),
            max_datagram,
            batch: Vec::with_capacity(max_datagram),
            batch_count: 0,
            stats: SenderStats::default(),
        }
    }

    pub fn session(&self) -> u32 {
        self.session
    }

    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// Datagrams waiting for an acknowledgement.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Adds a record to the batch. When it does not fit, the batch so far is sealed and
    /// returned (send it); the record starts the next one.
    pub fn push(&mut self, r: Record) -> Option<Vec<u8>> {
        let out = self.room(wire::record_len(&r));
        wire::put_record(&mut self.batch, &r);
        self.batch_count += 1;
        out
    }

    /// Adds one record already encoded (the binary event stream's, split with
    /// [`wire::split_records`]): copied as it is, never decoded. As [`Sender::push`].
    pub fn push_raw(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        let out = self.room(record.len());
        self.batch.extend_from_slice(record);
        self.batch_count += 1;
        out
    }

    /// Seals the batch if `n` more bytes would not fit in a datagram.
    fn room(&mut self, n: usize) -> Option<Vec<u8>> {
        if wire::HEADER_LEN + self.batch.len() + n > self.max_datagram
            || self.batch_count == usize::from(u16::MAX)
        {
            self.flush()
        } else {
            None
        }
    }

    /// Seals the records batched so far into a datagram (`None` when there are none).
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.batch_count == 0 {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let count = u16::try_from(self.batch_count).unwrap_or(u16::MAX);
        let bytes = wire::encode_data_raw(self.session, seq, count, &self.batch);
        let records = self.batch_count as u64;
        self.batch.clear();
        self.batch_count = 0;
        if self.queue.len() == self.cap
            && let Some(old) = self.queue.pop_front()
        {
            self.stats.lost_records += old.records;
            self.stats.lost_datagrams += 1;
        }
        self.queue.push_back(Queued {
            seq,
            records,
            bytes: bytes.clone(),
        });
        self.stats.datagrams += 1;
        self.stats.records += records;
        Some(bytes)
    }

    /// The peer has everything up to `to`: those datagrams leave the queue.
    pub fn on_ack(&mut self, to: u32) {
        while let Some(q) = self.queue.front() {
            if seq_before(to, q.seq) {
                break;
            }
            self.queue.pop_front();
            self.stats.acked += 1;
        }
    }

    /// The peer misses `from..=to`: what the queue still holds is sent again; the part
    /// it no longer holds is answered with one SKIP.
    pub fn on_nack(&mut self, from: u32, to: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if seq_before(to, from) || !seq_before(to, self.next_seq) {
            return out; // not a range we sent
        }
        let oldest = self.queue.front().map_or(self.next_seq, |q| q.seq);
        if seq_before(from, oldest) {
            let last = if seq_before(to, oldest) {
                to
            } else {
                oldest.wrapping_sub(1)
            };
            out.push(wire::encode_control(
                Kind::Skip,
                self.session,
                self.next_seq,
                Some((from, last)),
            ));
            self.stats.skips += 1;
        }
        for q in &self.queue {
            if !seq_before(q.seq, from) && !seq_before(to, q.seq) {
                out.push(q.bytes.clone());
                self.stats.retransmitted += 1;
            }
        }
        out
    }

    /// ALIVE: tells the receiver our next sequence number (it NACKs a lost tail).
    pub fn alive(&self) -> Vec<u8> {
        wire::encode_control(Kind::Alive, self.session, self.next_seq, None)
    }
}

/// Receiver counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub datagrams: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub nacks: u64,
    pub acks: u64,
    /// Sequence numbers the sender said it no longer holds (SKIP) or that were too many
    /// to track: their records are lost.
    pub lost_datagrams: u64,
    /// Times the peer's session changed (it restarted).
    pub peer_restarts: u64,
}

/// What the daemon does with one received datagram.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Apply the datagram's records.
    pub deliver: bool,
    /// Send these back to the peer (ACK, NACK).
    pub replies: Vec<Vec<u8>>,
    /// State was lost (SKIP, a hole too large, a peer restart): ask for a resync.
    pub want_resync: bool,
}

/// Most holes tracked at once; a larger gap is counted lost and triggers a resync.
pub const MAX_MISSING: usize = 4096;

/// The receiving side.
#[derive(Debug)]
pub struct Receiver {
    /// Our own session id (stamped on ACK/NACK).
    own: u32,
    peer: Option<u32>,
    expected: u32,
    missing: BTreeSet<u32>,
    ack_every: u32,
    unacked: u32,
    stats: ReceiverStats,
}

impl Receiver {
    /// A receiver that acknowledges every `ack_every` datagrams.
    pub fn new(own_session: u32, ack_every: u32) -> Receiver {
        Receiver {
            own: own_session,
            peer: None,
            expected: 0,
            missing: BTreeSet::new(),
            ack_every: ack_every.max(1),
            unacked: 0,
            stats: ReceiverStats::default(),
        }
    }

    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// The peer's session, once one datagram arrived.
    pub fn peer_session(&self) -> Option<u32> {
        self.peer
    }

    /// Holes not filled yet.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    fn nack(&mut self, from: u32, to: u32) -> Vec<u8> {
        self.stats.nacks += 1;
        wire::encode_control(Kind::Nack, self.own, 0, Some((from, to)))
    }

    fn ack(&mut self) -> Vec<u8> {
        self.unacked = 0;
        self.stats.acks += 1;
        let upto = self
            .missing
            .iter()
            .next()
            .map_or(self.expected, |&m| m)
            .wrapping_sub(1);
        wire::encode_control(Kind::Ack, self.own, 0, Some((upto, upto)))
    }

    /// Marks `from..=to` missing (NACK); a gap above [`MAX_MISSING`] is counted lost.
    fn gap(&mut self, from: u32, to: u32, r: &mut Received) {
        let n = to.wrapping_sub(from) as usize + 1;
        if self.missing.len() + n > MAX_MISSING {
            self.stats.lost_datagrams += n as u64;
            r.want_resync = true;
            return;
        }
        let mut s = from;
        for _ in 0..n {
            self.missing.insert(s);
            s = s.wrapping_add(1);
        }
        let nack = self.nack(from, to);
        r.replies.push(nack);
    }

    /// Feeds one datagram from the peer (DATA, ALIVE or SKIP; ACK, NACK and RESYNC are
    /// for the sender and the daemon).
    pub fn on_datagram(&mut self, d: &Datagram) -> Received {
        let mut r = Received::default();
        if self.peer != Some(d.session) {
            if self.peer.is_some() {
                self.stats.peer_restarts += 1;
                r.want_resync = true;
            }
            self.peer = Some(d.session);
            self.missing.clear();
            self.expected = d.seq;
            self.unacked = 0;
        }
        match d.kind {
            Kind::Data => {
                self.stats.datagrams += 1;
                if d.seq == self.expected {
                    r.deliver = true;
                    self.expected = d.seq.wrapping_add(1);
                } else if seq_before(self.expected, d.seq) {
                    let (from, to) = (self.expected, d.seq.wrapping_sub(1));
                    self.gap(from, to, &mut r);
                    r.deliver = true;
                    self.expected = d.seq.wrapping_add(1);
                } else if self.missing.remove(&d.seq) {
                    r.deliver = true;
                } else {
                    self.stats.duplicates += 1;
                }
                if r.deliver {
                    self.stats.delivered += 1;
                    self.unacked += 1;
                    if self.unacked >= self.ack_every {
                        let a = self.ack();
                        r.replies.push(a);
                    }
                }
            }
            Kind::Alive => {
                if seq_before(self.expected, d.seq) {
                    let (from, to) = (self.expected, d.seq.wrapping_sub(1));
                    self.gap(from, to, &mut r);
                    self.expected = d.seq;
                }
                let a = self.ack();
                r.replies.push(a);
            }
            Kind::Skip => {
                if let Some((from, to)) = d.range {
                    let gone: Vec<u32> = self
                        .missing
                        .iter()
                        .copied()
                        .filter(|&s| !seq_before(s, from) && !seq_before(to, s))
                        .collect();
                    for s in &gone {
                        self.missing.remove(s);
                    }
                    self.stats.lost_datagrams += gone.len() as u64;
                    r.want_resync = true;
                }
            }
            Kind::Ack | Kind::Nack | Kind::Resync => {}
        }
        r
    }
}

#[cfg(test)]
mod tests;
