//! TCP handshakes for the new-connection test. The client (on the generator's first port)
//! opens connections over [`Flows`]: SYN; on the SYN-ACK it sends ACK, a data segment
//! (stamped) and FIN; on the server's FIN-ACK the last ACK, and the connection counts as
//! complete. The reflector (on the far port, behind the device under test) answers as the
//! server without state: SYN -> SYN-ACK, FIN -> FIN-ACK. Seven segments per connection,
//! the full lifecycle a conntrack sees (SYN_SENT .. TIME_WAIT).

use std::collections::VecDeque;

use crate::flows::Flows;
use crate::frame::{L4, Parsed, STAMP_LEN, Segment, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};

/// Length of the data segment's payload (one stamp).
const DATA_LEN: u32 = 18;
const _: () = assert!(DATA_LEN as usize == STAMP_LEN);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    SynSent,
    /// ACK, data and FIN sent; waiting for the server's FIN.
    FinWait,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    state: State,
    start: u64,
}

/// The client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientStats {
    pub opened: u64,
    pub completed: u64,
    /// Not completed within the timeout, or reset.
    pub failed: u64,
    /// Segments that matched no connection state (late, duplicated, foreign).
    pub unexpected: u64,
}

/// Handshake client over a flow set; a flow carries at most one connection at a time.
/// With several lanes (one per queue and lcore), lane `k` of `n` owns the flows
/// `k, k + n, k + 2n, ...`.
#[derive(Debug)]
pub struct Client {
    flows: Flows,
    conns: Vec<Conn>,
    lane: u64,
    lanes: u64,
    /// Connections opened by this lane so far (the next flow is `lane + next * lanes`).
    next: u64,
    pending: VecDeque<(u64, u64)>,
    concurrency: usize,
    pub stats: ClientStats,
}

/// Client initial sequence number of flow `i` (arbitrary, distinct between neighbours).
fn isn(i: u64) -> u32 {
    let low = u32::try_from(i & 0xffff_ffff).unwrap_or(0);
    low.wrapping_mul(2_654_435_761).wrapping_add(1)
}

impl Client {
    /// At most `concurrency` connections open at once. The flow count must fit in memory
    /// (16 bytes per flow).
    pub fn new(flows: Flows, concurrency: usize) -> Result<Self, String> {
        Self::lane(flows, concurrency, 0, 1)
    }

    /// Lane `lane` of `lanes` (see [`Client`]).
    pub fn lane(flows: Flows, concurrency: usize, lane: u64, lanes: u64) -> Result<Self, String> {
        if lanes == 0 || lane >= lanes || lanes > flows.count {
            return Err(format!(
                "tcp: lane {lane} of {lanes} over {} flows",
                flows.count
            ));
        }
        let n = usize::try_from(flows.count.div_ceil(lanes))
            .ok()
            .filter(|&n| n <= 1 << 26)
            .ok_or_else(|| format!("tcp: {} flows is more than 2^26 per lane", flows.count))?;
        Ok(Client {
            flows,
            conns: vec![
                Conn {
                    state: State::Idle,
                    start: 0
                };
                n
            ],
            lane,
            lanes,
            next: 0,
            pending: VecDeque::with_capacity(concurrency),
            concurrency: concurrency.max(1),
            stats: ClientStats::default(),
        })
    }

    /// Connections in progress.
    pub fn open_count(&self) -> u64 {
        self.stats.opened - self.stats.completed - self.stats.failed
    }

    /// Opens the next connection: its SYN, or `None` at the concurrency limit or when the
    /// next flow is still busy.
    pub fn open(&mut self, now: u64) -> Option<Segment> {
        if self.open_count() >= self.concurrency as u64 {
            return None;
        }
        let per_lane = self.conns.len() as u64;
        let mut j = self.next % per_lane;
        let mut i = self.lane + j * self.lanes;
        if i >= self.flows.count {
            // The last round of a lane can be short: wrap to its first flow.
            j = 0;
            i = self.lane;
            self.next = self.next.next_multiple_of(per_lane);
        }
        let slot = usize::try_from(j).ok()?;
        if self.conns[slot].state != State::Idle {
            return None;
        }
        self.next += 1;
        self.conns[slot] = Conn {
            state: State::SynSent,
            start: now,
        };
        self.pending.push_back((i, now));
        self.stats.opened += 1;
        let t = self.flows.tuple(i);
        Some(Segment {
            src: t.src,
            dst: t.dst,
            sport: t.sport,
            dport: t.dport,
            flags: TCP_SYN,
            seq: isn(i),
            ack: 0,
            stamp: None,
        })
    }

    /// Handles a segment that reached the client's port. Pushes the client's answers to
    /// `out`; returns the connection's lifetime in TSC cycles when it completes.
    pub fn on_segment(&mut self, p: &Parsed, now: u64, out: &mut Vec<Segment>) -> Option<u64> {
        let L4::Tcp {
            flags, seq, ack, ..
        } = p.l4
        else {
            self.stats.unexpected += 1;
            return None;
        };
        let Some(i) = self
            .flows
            .index(p.dst, p.dport)
            .filter(|i| i % self.lanes == self.lane)
        else {
            self.stats.unexpected += 1;
            return None;
        };
        let slot = usize::try_from(i / self.lanes).ok()?;
        let c = self.conns[slot];
        let base = isn(i);
        let reply = |flags, seq, ack, stamp| answer(p, flags, seq, ack, stamp);
        if flags & TCP_RST != 0 && c.state != State::Idle {
            self.conns[slot].state = State::Idle;
            self.stats.failed += 1;
            return None;
        }
        match c.state {
            State::SynSent
                if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK
                    && ack == base.wrapping_add(1) =>
            {
                let (s, a) = (base.wrapping_add(1), seq.wrapping_add(1));
                out.push(reply(TCP_ACK, s, a, None));
                out.push(reply(TCP_PSH | TCP_ACK, s, a, Some((i, now))));
                out.push(reply(TCP_FIN | TCP_ACK, s.wrapping_add(DATA_LEN), a, None));
                self.conns[slot].state = State::FinWait;
                None
            }
            State::FinWait if flags & TCP_FIN != 0 && ack == base.wrapping_add(DATA_LEN + 2) => {
                out.push(reply(TCP_ACK, ack, seq.wrapping_add(1), None));
                self.conns[slot].state = State::Idle;
                self.stats.completed += 1;
                Some(now.saturating_sub(c.start))
            }
            _ => {
                self.stats.unexpected += 1;
                None
            }
        }
    }

    /// Fails connections older than `timeout` cycles and forgets finished ones.
    pub fn expire(&mut self, now: u64, timeout: u64) {
        while let Some(&(i, start)) = self.pending.front() {
            let Ok(slot) = usize::try_from(i / self.lanes) else {
                break;
            };
            let c = self.conns[slot];
            let live = c.state != State::Idle && c.start == start;
            if live && now.saturating_sub(start) < timeout {
                break;
            }
            if live {
                self.conns[slot].state = State::Idle;
                self.stats.failed += 1;
            }
            self.pending.pop_front();
        }
    }
}

/// A segment answering `p` (addresses and ports swapped).
fn answer(p: &Parsed, flags: u8, seq: u32, ack: u32, stamp: Option<(u64, u64)>) -> Segment {
    Segment {
        src: p.dst,
        dst: p.src,
        sport: p.dport,
        dport: p.sport,
        flags,
        seq,
        ack,
        stamp,
    }
}

/// Server initial sequence number for a client address and port.
fn server_isn(p: &Parsed) -> u32 {
    u32::from(p.src).rotate_left(16) ^ u32::from(p.sport).wrapping_mul(40_503)
}

/// The stateless server: the answer to a segment that reached the far port, if any.
pub fn reflect(p: &Parsed) -> Option<Segment> {
    let L4::Tcp {
        flags,
        seq,
        ack,
        payload,
    } = p.l4
    else {
        return None;
    };
    let reply = |flags, seq, ack| answer(p, flags, seq, ack, None);
    if flags & TCP_RST != 0 {
        None
    } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        Some(reply(TCP_SYN | TCP_ACK, server_isn(p), seq.wrapping_add(1)))
    } else if flags & TCP_FIN != 0 {
        Some(reply(
            TCP_FIN | TCP_ACK,
            ack,
            seq.wrapping_add(u32::from(payload) + 1),
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::frame::{Macs, parse, tcp};

    const MACS: Macs = Macs {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };

    fn flows(n: u64) -> Flows {
        Flows::new(
            Ipv4Addr::new(198, 18, 0, 0),
            Ipv4Addr::new(198, 19, 0, 1),
            80,
            n,
        )
        .unwrap()
    }

    /// Through real frames: build, parse, as the wire would carry them.
    fn wire(s: &Segment) -> Parsed {
        let mut buf = [0u8; 80];
        let n = tcp(&mut buf, &MACS, s).unwrap();
        let p = parse(&buf[..n]).unwrap();
        assert!(p.checksums_ok);
        p
    }

    /// Runs client and reflector against each other with a perfect wire; returns the
    /// segments in order.
    fn handshake(c: &mut Client, now: u64) -> Vec<(u8, bool)> {
        let mut log = Vec::new();
        let syn = c.open(now).unwrap();
        let mut to_server = vec![syn];
        let mut done = None;
        for _ in 0..4 {
            let mut to_client = Vec::new();
            for s in to_server.drain(..) {
                log.push((s.flags, true));
                if let Some(r) = reflect(&wire(&s)) {
                    to_client.push(r);
                }
            }
            for r in to_client {
                log.push((r.flags, false));
                if let Some(t) = c.on_segment(&wire(&r), now + 10, &mut to_server) {
                    done = Some(t);
                }
            }
        }
        for s in to_server.drain(..) {
            log.push((s.flags, true));
            assert_eq!(reflect(&wire(&s)), None, "the last ACK needs no answer");
        }
        assert_eq!(done, Some(10));
        log
    }

    #[test]
    fn full_handshake_and_teardown() {
        let mut c = Client::new(flows(4), 8).unwrap();
        let log = handshake(&mut c, 100);
        assert_eq!(
            log,
            vec![
                (TCP_SYN, true),
                (TCP_SYN | TCP_ACK, false),
                (TCP_ACK, true),
                (TCP_PSH | TCP_ACK, true),
                (TCP_FIN | TCP_ACK, true),
                (TCP_FIN | TCP_ACK, false),
                (TCP_ACK, true),
            ]
        );
        assert_eq!(
            c.stats,
            ClientStats {
                opened: 1,
                completed: 1,
                failed: 0,
                unexpected: 0
            }
        );
        assert_eq!(c.open_count(), 0);
    }

    #[test]
    fn flows_are_reused_after_completion() {
        let mut c = Client::new(flows(2), 8).unwrap();
        for k in 0..5 {
            handshake(&mut c, k * 1000);
        }
        assert_eq!(c.stats.completed, 5);
    }

    #[test]
    fn lanes_split_the_flows_and_ignore_each_other() {
        let f = flows(10);
        let mut lanes: Vec<Client> = (0..3)
            .map(|k| Client::lane(f, 100, k, 3).unwrap())
            .collect();
        let mut opened = vec![Vec::new(); 3];
        for _ in 0..8 {
            for (k, c) in lanes.iter_mut().enumerate() {
                if let Some(s) = c.open(0) {
                    opened[k].push(f.index(s.src, s.sport).unwrap());
                }
            }
        }
        // Lane 0 owns flows 0, 3, 6, 9; lane 1: 1, 4, 7; lane 2: 2, 5, 8. Each opens each
        // of its flows once (they stay busy), then stops.
        assert_eq!(opened, vec![vec![0, 3, 6, 9], vec![1, 4, 7], vec![2, 5, 8]]);
        // A SYN-ACK for lane 1's flow 4 means nothing to lane 0.
        let t = f.tuple(4);
        let syn = Segment {
            src: t.src,
            dst: t.dst,
            sport: t.sport,
            dport: t.dport,
            flags: TCP_SYN,
            seq: isn(4),
            ack: 0,
            stamp: None,
        };
        let sa = wire(&reflect(&wire(&syn)).unwrap());
        let mut out = Vec::new();
        lanes[0].on_segment(&sa, 1, &mut out);
        assert_eq!(lanes[0].stats.unexpected, 1);
        lanes[1].on_segment(&sa, 1, &mut out);
        assert_eq!(out.len(), 3, "lane 1 answers ACK, data, FIN");
    }

    #[test]
    fn a_lane_wraps_to_its_first_flow() {
        let f = flows(5);
        let mut c = Client::lane(f, 100, 1, 2).unwrap(); // flows 1, 3
        for round in 0..3 {
            for want in [1, 3] {
                let s = c.open(0).unwrap();
                assert_eq!(f.index(s.src, s.sport), Some(want), "round {round}");
                c.expire(u64::MAX, 0); // fail it, freeing the flow
            }
        }
        assert!(Client::lane(f, 1, 2, 2).is_err());
    }

    #[test]
    fn concurrency_limit_and_timeouts() {
        let mut c = Client::new(flows(100), 3).unwrap();
        assert!(c.open(0).is_some());
        assert!(c.open(1).is_some());
        assert!(c.open(2).is_some());
        assert!(c.open(3).is_none(), "limit of 3 open");
        c.expire(50, 100);
        assert_eq!(c.stats.failed, 0, "not yet timed out");
        c.expire(101, 100);
        assert_eq!(c.stats.failed, 2, "the two older than 100 cycles");
        assert!(c.open(102).is_some());
        assert_eq!(c.open_count(), 2);
    }

    #[test]
    fn wrong_ack_and_foreign_segments_are_unexpected() {
        let mut c = Client::new(flows(4), 8).unwrap();
        let syn = c.open(0).unwrap();
        let mut sa = reflect(&wire(&syn)).unwrap();
        sa.ack = sa.ack.wrapping_add(5);
        let mut out = Vec::new();
        assert_eq!(c.on_segment(&wire(&sa), 1, &mut out), None);
        assert!(out.is_empty());
        sa.dport = 9; // not a client port
        c.on_segment(&wire(&sa), 1, &mut out);
        assert_eq!(c.stats.unexpected, 2);
        let mut rst = syn;
        (rst.src, rst.dst, rst.sport, rst.dport, rst.flags) =
            (syn.dst, syn.src, syn.dport, syn.sport, TCP_RST);
        c.on_segment(&wire(&rst), 2, &mut out);
        assert_eq!(c.stats.failed, 1, "a reset fails the connection");
    }
}
