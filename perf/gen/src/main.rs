//! `perfgen`: the DPDK edge of the load generator (see `lib.rs` for the logic and
//! `perf/README.md` for the method). One main lcore polls both ports: it sends on the TX
//! port, counts and timestamps what arrives on the RX port (UDP), or plays the TCP client
//! on the TX port and the server (reflector) on the RX port.

use std::process::ExitCode;
use std::time::Duration;

use arrayvec::ArrayVec;
use dpdk_bindings::{Eal, Mbuf, Mempool, Port, PortConfig, PortId, RxQueue, Stats, TxQueue, rdtsc};
use perfgen::args::{Args, Mode};
use perfgen::flows::Flows;
use perfgen::frame::{self, MIN_UDP_FRAME, Macs, Parsed, Peek, Segment};
use perfgen::hist::{Histogram, Summary};
use perfgen::order::{Order, Sequence};
use perfgen::pace::Pacer;
use perfgen::tcp::{self, Client, ClientStats};
use perfgen::template::Template;
use serde::Serialize;

const BURST: usize = 32;
const POOL_MBUFS: u32 = 16383;

#[derive(Debug, Default, Serialize)]
struct Counters {
    tx_packets: u64,
    tx_bytes: u64,
    /// UDP: frames the TX queue refused (ring full), retried on the next burst, summed
    /// over bursts; TCP: segments refused and dropped (the handshake timeout covers them).
    tx_retries: u64,
    /// UDP: frames still refused when sending stopped (freed, not counted in tx).
    tx_unsent: u64,
    tx_nombuf: u64,
    rx_packets: u64,
    rx_bytes: u64,
    /// Received frames carrying a stamp of this run.
    rx_stamped: u64,
    /// Received frames whose checksums were verified (UDP: the stamped sample and
    /// whatever is not plain UDP; TCP: every segment), and those that failed.
    rx_verified: u64,
    rx_bad_checksum: u64,
    /// Frames that are not IPv4 UDP/TCP.
    rx_other: u64,
    /// Frames arriving on the TX port in UDP mode that are not answers of this run (e.g.
    /// ICMP errors from the device).
    rx_reverse: u64,
    /// `--reflect`: frames the rx port answered (sent back), and answers its TX queue
    /// refused (freed, not retried).
    reflected: u64,
    reflect_unsent: u64,
    /// `--reflect`: answers that came back through the device to the TX port (stamped
    /// UDP frames of this run).
    rx_replies: u64,
    /// `--established`: UDP frames of the established flows sent, and received at the
    /// sink before the flood started and from then on.
    tx_established: u64,
    rx_established_alone: u64,
    rx_established_flood: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.tx_retries += o.tx_retries;
        self.tx_unsent += o.tx_unsent;
        self.tx_nombuf += o.tx_nombuf;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.rx_stamped += o.rx_stamped;
        self.rx_verified += o.rx_verified;
        self.rx_bad_checksum += o.rx_bad_checksum;
        self.rx_other += o.rx_other;
        self.rx_reverse += o.rx_reverse;
        self.reflected += o.reflected;
        self.reflect_unsent += o.reflect_unsent;
        self.rx_replies += o.rx_replies;
        self.tx_established += o.tx_established;
        self.rx_established_alone += o.rx_established_alone;
        self.rx_established_flood += o.rx_established_flood;
    }
}

/// What one lane (queue pair and lcore) measured.
#[derive(Debug, Default)]
struct LaneResult {
    c: Counters,
    h: Histogram,
    /// `--reflect`: round trip (tx port, device, reflector, device, tx port).
    rtt: Histogram,
    send_s: f64,
    tcp: Option<(ClientStats, u64)>,
}

/// What every lane shares (cloned into each lcore's closure).
#[derive(Debug, Clone)]
struct Ctx {
    pool: Mempool,
    a: Args,
    flows: Flows,
    /// UDP: the order flows are sent in.
    seq: Sequence,
    hz: u64,
    client_macs: Macs,
    server_macs: Macs,
}

impl Ctx {
    /// Lane `k`'s share of a total (rate or count): the total split evenly, the remainder
    /// to the first lanes. 0 stays 0 (unlimited).
    fn share(&self, total: u64, k: u16) -> u64 {
        let n = u64::from(self.a.queues);
        total / n + u64::from(u64::from(k) < total % n)
    }
}

/// The rx port's queues of a lane: its RX queues and its TX queue (answers).
type RxSide = (Vec<RxQueue>, TxQueue);

/// One queue pair on each port (the rx port's pair absent with `--tx-only`). Lane 0 also
/// polls the RX queues beyond `--queues` (`--rx-queues`).
#[derive(Debug)]
struct Lane {
    k: u16,
    tx_rx: Vec<RxQueue>,
    tx_tx: TxQueue,
    rx: Option<RxSide>,
}

#[derive(Debug, Serialize)]
struct Report {
    tool: &'static str,
    dpdk: String,
    tsc_hz: u64,
    args: Args,
    /// Seconds from the first packet to the end of sending.
    send_s: f64,
    counters: Counters,
    tx_pps: f64,
    rx_pps: f64,
    /// RX bit rate on the wire (frame + FCS + preamble + inter-frame gap: +24 bytes).
    rx_wire_gbps: f64,
    lost: i64,
    loss_ratio: f64,
    /// UDP: one-way latency through the device; TCP: SYN to last ACK per connection; SYN
    /// flood: none (SYNs carry no stamp).
    latency: Summary,
    /// `--reflect`: answers received per second of sending (the reverse direction), and
    /// answers sent by the reflector but not received back.
    reply_pps: f64,
    reply_lost: i64,
    /// `--reflect`: round trip of the answered frames (through the device both ways).
    reply_latency: Option<Summary>,
    tcp: Option<TcpReport>,
    /// `--established`: the established flows' rate alone and during the flood.
    established: Option<EstablishedReport>,
    /// `--warm-up`: the pass before the measurement.
    warm_up: Option<WarmReport>,
    ports: PortsReport,
}

/// `--warm-up`: the pass that opened and answered every flow before the measurement.
#[derive(Debug, Serialize)]
struct WarmReport {
    sent: u64,
    /// Answered by the rx port, and those answers back on the tx port.
    reflected: u64,
    answers_back: u64,
    send_s: f64,
}

#[derive(Debug, Serialize)]
struct EstablishedReport {
    flows: u64,
    offered_pps: u64,
    /// Received per second before the flood (the first --flood-after-ms) and after.
    alone_pps: f64,
    flood_pps: f64,
    /// `flood_pps / alone_pps`.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct TcpReport {
    client: ClientStats,
    conns_per_s: f64,
    reflector_answers: u64,
}

#[derive(Debug, Serialize)]
struct PortStats {
    name: String,
    ipackets: u64,
    opackets: u64,
    imissed: u64,
    ierrors: u64,
    oerrors: u64,
    rx_nombuf: u64,
}

#[derive(Debug, Serialize)]
struct PortsReport {
    tx: PortStats,
    /// `None` with `--tx-only`.
    rx: Option<PortStats>,
}

fn port_stats(name: &str, s: Stats) -> PortStats {
    PortStats {
        name: name.to_string(),
        ipackets: s.ipackets,
        opackets: s.opackets,
        imissed: s.imissed,
        ierrors: s.ierrors,
        oerrors: s.oerrors,
        rx_nombuf: s.rx_nombuf,
    }
}

/// Seconds (at most 600, checked by `Args::parse`) to TSC cycles.
fn secs_to_cycles(s: f64, hz: u64) -> u64 {
    let us = u64::try_from(Duration::from_secs_f64(s).as_micros()).unwrap_or(600_000_000);
    u64::try_from(u128::from(us) * u128::from(hz) / 1_000_000).unwrap_or(u64::MAX)
}

fn cycles_to_ns(c: u64, hz: u64) -> u64 {
    u64::try_from(u128::from(c) * 1_000_000_000 / u128::from(hz.max(1))).unwrap_or(u64::MAX)
}

/// Sends `segs` on `tx` as frames, counting what went, what the queue refused and what
/// found no mbuf.
fn send_segments(
    pool: &Mempool,
    tx: &mut TxQueue,
    macs: &Macs,
    segs: &mut Vec<Segment>,
    c: &mut Counters,
) {
    for chunk in segs.chunks(BURST) {
        let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        for s in chunk {
            let Some(mut m) = pool.alloc() else {
                c.tx_nombuf += 1;
                continue;
            };
            let Some(buf) = m.append(frame::MIN_FRAME + frame::STAMP_LEN) else {
                c.tx_nombuf += 1;
                continue;
            };
            match frame::tcp(buf, macs, s) {
                Some(n) => {
                    let extra = buf.len() - n;
                    m.trim(extra);
                    out.push(m);
                }
                None => c.tx_nombuf += 1,
            }
        }
        let bytes = |v: &ArrayVec<Mbuf, BURST>| v.iter().map(|m| m.len() as u64).sum::<u64>();
        let before = bytes(&out);
        let sent = tx.tx_burst(&mut out);
        c.tx_packets += sent as u64;
        c.tx_bytes += before - bytes(&out); // what stays in `out` was refused
        c.tx_retries += out.len() as u64;
    }
    segs.clear();
}

struct Io {
    pool: Mempool,
    txp: Port,
    /// `None` with `--tx-only`.
    rxp: Option<Port>,
    tx_name: String,
    rx_name: String,
    lanes: Vec<Lane>,
}

/// A started port, its RX queues grouped by lane, its TX queues.
type Opened = (Port, Vec<Vec<RxQueue>>, Vec<TxQueue>);

/// Opens port `id` with `rxq` RX and `txq` TX queues and hands out the RX queues grouped
/// by lane: queue k to lane k, and the queues beyond `txq` to lane 0 as well.
fn open_port(eal: &Eal, id: PortId, pool: &Mempool, txq: u16, rxq: u16) -> Result<Opened, String> {
    let mut p = Port::open(eal, id).map_err(|e| format!("port {id:?}: {e}"))?;
    let cfg = PortConfig {
        rx_queues: rxq,
        tx_queues: txq,
        rx_desc: 1024,
        tx_desc: 1024,
        ..PortConfig::default()
    };
    p.configure(&cfg, pool)
        .map_err(|e| format!("configure port {id:?}: {e}"))?;
    let _ = p.set_promiscuous(true);
    let (rx, tx) = p.take_queues().map_err(|e| e.to_string())?;
    p.start().map_err(|e| format!("start port {id:?}: {e}"))?;
    if rx.len() != usize::from(rxq) || tx.len() != usize::from(txq) {
        return Err(format!(
            "port {id:?}: got {} RX / {} TX queues, asked {rxq} / {txq}",
            rx.len(),
            tx.len()
        ));
    }
    let mut lanes: Vec<Vec<RxQueue>> = (0..txq).map(|_| Vec::new()).collect();
    for (i, q) in rx.into_iter().enumerate() {
        lanes[if i < usize::from(txq) { i } else { 0 }].push(q);
    }
    Ok((p, lanes, tx))
}

fn setup(eal: &Eal, a: &Args) -> Result<Io, String> {
    let ids: Vec<PortId> = eal.ports().collect();
    let pick = |name: &Option<String>, k: usize| -> Result<PortId, String> {
        match name {
            Some(n) => eal.port_by_name(n).map_err(|e| format!("port {n}: {e}")),
            None => ids.get(k).copied().ok_or_else(|| {
                let need = if a.tx_only && !a.warm_up {
                    "one DPDK port"
                } else {
                    "two DPDK ports"
                };
                format!("need {need}, found {} (add --vdev=...)", ids.len())
            }),
        }
    };
    let t = pick(&a.tx_port, 0)?;
    let r = if a.tx_only && !a.warm_up {
        None
    } else {
        Some(pick(&a.rx_port, 1)?)
    };
    if r == Some(t) {
        return Err("--tx-port and --rx-port must differ".into());
    }
    let pool = Mempool::pktmbuf(eal, "perfgen", POOL_MBUFS, 256, 2048 + 128, eal.socket_id())
        .map_err(|e| format!("mempool: {e}"))?;
    let q = a.queues;
    let (txp, tx_rx, tx_tx) = open_port(eal, t, &pool, q, a.rx_queues)?;
    let (rxp, rx_queues) = match r {
        Some(r) => {
            let (p, rx, tx) = open_port(eal, r, &pool, q, a.rx_queues)?;
            (Some(p), rx.into_iter().zip(tx).map(Some).collect())
        }
        None => (None, (0..q).map(|_| None).collect::<Vec<_>>()),
    };
    let wait = Duration::from_secs(a.link_timeout_s);
    for p in std::iter::once(&txp).chain(rxp.as_ref()) {
        let up = p.wait_link_up(wait).map(|l| l.up).unwrap_or(false);
        if !up {
            return Err(format!(
                "port {} link down after {} s (is the peer, e.g. testpmd, running?)",
                p.name().unwrap_or_default(),
                a.link_timeout_s
            ));
        }
    }
    // Asleep, not polling: the device's memif control thread may need this core.
    std::thread::sleep(Duration::from_millis(a.settle_ms));
    Ok(Io {
        tx_name: txp.name().unwrap_or_default(),
        rx_name: rxp
            .as_ref()
            .map(|p| p.name().unwrap_or_default())
            .unwrap_or_default(),
        pool,
        txp,
        rxp,
        lanes: tx_rx
            .into_iter()
            .zip(tx_tx)
            .zip(rx_queues)
            .zip(0..q)
            .map(|(((tx_rx, tx_tx), rx), k)| Lane {
                k,
                tx_rx,
                tx_tx,
                rx,
            })
            .collect(),
    })
}

/// Receives one burst on `q`, counts every frame, verifies its checksums, and calls `f`
/// with each IPv4 UDP/TCP one and the TSC read once right after the burst arrived (one
/// read per burst, not per frame). For TCP, where every segment is parsed anyway.
fn receive(q: &mut RxQueue, c: &mut Counters, mut f: impl FnMut(&Parsed, &mut Counters, u64)) {
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    if q.rx_burst(&mut inb) == 0 {
        return;
    }
    let now = rdtsc();
    for m in inb.drain(..) {
        c.rx_packets += 1;
        c.rx_bytes += m.len() as u64;
        match frame::parse(m.data()) {
            Some(p) => {
                verified(c, &p);
                f(&p, c, now);
            }
            None => c.rx_other += 1,
        }
    }
}

fn verified(c: &mut Counters, p: &Parsed) {
    c.rx_verified += 1;
    if !p.checksums_ok {
        c.rx_bad_checksum += 1;
    }
}

/// The stamp of `p` if it was sent in this run (between `start` and `now`).
fn own_stamp(p: &Parsed, start: u64, now: u64) -> Option<u64> {
    p.stamp
        .map(|(_, tsc)| tsc)
        .filter(|&tsc| tsc >= start && tsc <= now)
}

/// What a UDP-mode receiver found in one frame.
enum Seen {
    /// Plain UDP, not parsed (only counted).
    Udp,
    /// Parsed and verified; `Some(tsc)` when it carries a stamp of this run.
    Parsed(Parsed, Option<u64>),
    /// Not IPv4 UDP/TCP.
    Other,
}

/// Looks at one received frame in UDP mode: unstamped UDP is only counted; the stamped
/// sample (and anything unusual) is parsed and its checksums verified.
#[inline]
fn look(data: &[u8], c: &mut Counters, start: u64, now: u64) -> Seen {
    if frame::peek(data) == Peek::Unstamped {
        return Seen::Udp;
    }
    match frame::parse(data) {
        Some(p) => {
            verified(c, &p);
            let own = own_stamp(&p, start, now);
            Seen::Parsed(p, own)
        }
        None => Seen::Other,
    }
}

/// The sink on the rx port: counts every frame, times and verifies the stamped sample;
/// with `--reflect` also answers every UDP frame on the same port (see
/// [`frame::reflect_udp`]).
fn sink(lane: &mut Lane, x: &Ctx, c: &mut Counters, h: &mut Histogram, start: u64) {
    let Some((rxs, tx)) = lane.rx.as_mut() else {
        return;
    };
    for rx in rxs {
        sink_burst(rx, tx, x, c, h, start);
    }
}

fn sink_burst(
    rx: &mut RxQueue,
    tx: &mut TxQueue,
    x: &Ctx,
    c: &mut Counters,
    h: &mut Histogram,
    start: u64,
) {
    let (hz, reflect) = (x.hz, x.a.reflect);
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    if rx.rx_burst(&mut inb) == 0 {
        return;
    }
    let now = rdtsc();
    let established = x.a.established > 0;
    let alone = now < flood_start(x, start);
    let mut back: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    for mut m in inb.drain(..) {
        c.rx_packets += 1;
        c.rx_bytes += m.len() as u64;
        match look(m.data(), c, start, now) {
            // The established flows' frames (the flood is TCP).
            Seen::Udp if established && alone => c.rx_established_alone += 1,
            Seen::Udp if established => c.rx_established_flood += 1,
            Seen::Udp => {}
            Seen::Parsed(_, own) => {
                if let Some(tsc) = own {
                    c.rx_stamped += 1;
                    h.record(cycles_to_ns(now - tsc, hz));
                }
            }
            Seen::Other => {
                c.rx_other += 1;
                continue;
            }
        }
        if reflect && frame::reflect_udp(m.data_mut(), &x.server_macs) {
            back.push(m);
        }
    }
    if !back.is_empty() {
        let sent = tx.tx_burst(&mut back);
        c.reflected += sent as u64;
        c.reflect_unsent += back.len() as u64; // freed when `back` drops
    }
}

/// The TX port's receive side in UDP mode: answers (`--reflect`) are counted, the stamped
/// sample timed (round trip) and verified; anything else is counted as `rx_reverse`.
/// Answers are not forward-direction frames: only their own counters move.
fn replies(lane: &mut Lane, x: &Ctx, c: &mut Counters, rtt: &mut Histogram, start: u64) {
    for q in &mut lane.tx_rx {
        if !x.a.reflect {
            c.rx_reverse += discard(q);
            continue;
        }
        let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        if q.rx_burst(&mut inb) == 0 {
            continue;
        }
        let now = rdtsc();
        for m in inb.drain(..) {
            match look(m.data(), c, start, now) {
                Seen::Udp => c.rx_replies += 1,
                Seen::Parsed(p, own)
                    if p.l4 == frame::L4::Udp && (own.is_some() || p.stamp.is_none()) =>
                {
                    c.rx_replies += 1;
                    if let Some(tsc) = own {
                        rtt.record(cycles_to_ns(now - tsc, x.hz));
                    }
                }
                Seen::Parsed(..) | Seen::Other => c.rx_reverse += 1,
            }
        }
    }
}

/// Receives and frees one burst on `q`; returns how many frames there were.
fn discard(q: &mut RxQueue) -> u64 {
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    q.rx_burst(&mut inb) as u64
}

/// When a lane that started at TSC `start` starts its SYNs (`--flood-after-ms`).
fn flood_start(x: &Ctx, start: u64) -> u64 {
    start + x.a.flood_after_ms * x.hz / 1000
}

/// UDP (`--mode udp`) or SYN-flood (`--mode syn`) frames from a template, in the order of
/// `x.seq`, paced; the sink counts (and verifies the stamped or non-UDP) arrivals. With
/// `--established`, the established flows' UDP frames go first in each burst, paced on
/// their own, and the SYNs start after `--flood-after-ms`.
fn run_udp(lane: &mut Lane, x: &Ctx) -> Result<LaneResult, String> {
    let (a, hz) = (&x.a, x.hz);
    let mut r = LaneResult::default();
    let (c, h, rtt) = (&mut r.c, &mut r.h, &mut r.rtt);
    let count = x.share(a.count, lane.k);
    let len = a.size - 4;
    let tpl = match a.mode {
        Mode::Syn => Template::syn(&x.client_macs, x.flows.dst, x.flows.dport),
        _ => Template::udp(&x.client_macs, x.flows.dst, x.flows.dport, len),
    }
    .ok_or_else(|| format!("--size {}: no {:?} frame of that size", a.size, a.mode))?;
    let len = tpl.len();
    let mut flows = x.seq.cursor(u64::from(lane.k), u64::from(a.queues));
    let start = rdtsc();
    let end = start + secs_to_cycles(a.duration_s, hz);
    let mut pacer = Pacer::new(x.share(a.rate, lane.k), hz, start, BURST);
    let est = if a.established > 0 {
        let t = Template::udp(&x.client_macs, x.flows.dst, 9, MIN_UDP_FRAME)
            .ok_or("no UDP template for the established flows")?;
        Some((t, x.share(a.established_rate, lane.k)))
    } else {
        None
    };
    let mut est_pacer = Pacer::new(est.as_ref().map_or(0, |e| e.1), hz, start, BURST);
    // Lane k sends established flows k, k + queues, ...
    let mut est_flow = u64::from(lane.k);
    let flood_at = flood_start(x, start);
    let mut seq = 0u64;
    // Frames until the next stamped one.
    let mut to_stamp = 0u64;
    let mut send_end = end;
    let mut drain_end = u64::MAX;
    let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    loop {
        let now = rdtsc();
        if drain_end == u64::MAX {
            let left = if count == 0 { u64::MAX } else { count - seq };
            let want = if now >= flood_at {
                pacer.due(now).min(usize::try_from(left).unwrap_or(BURST))
            } else {
                0
            };
            let est_want = if est.is_some() { est_pacer.due(now) } else { 0 };
            // Frames the queue refused last time stay in `out` and go first.
            let fresh = (want + est_want).min(BURST).saturating_sub(out.len());
            let est_n = est_want.min(fresh);
            if fresh > 0 {
                let first = out.len();
                if x.pool.alloc_bulk(&mut out, fresh) {
                    // One TSC read per burst: the frames of a burst leave together.
                    let tsc = rdtsc();
                    let (ests, syns) = out[first..].split_at_mut(est_n);
                    if let Some((t, _)) = &est {
                        for m in ests.iter_mut() {
                            let (src, sport) = x.flows.source(est_flow % a.established);
                            est_flow += u64::from(a.queues);
                            if let Some(buf) = m.append(t.len()) {
                                t.write(buf, src, sport, None);
                            }
                        }
                        c.tx_established += est_n as u64;
                        est_pacer.sent(est_n);
                    }
                    for m in syns.iter_mut() {
                        let (src, sport) = x.flows.source(flows.next_flow());
                        let stamp = if to_stamp == 0 {
                            to_stamp = a.stamp_every - 1;
                            Some((seq, tsc))
                        } else {
                            to_stamp -= 1;
                            None
                        };
                        if let Some(buf) = m.append(len) {
                            tpl.write(buf, src, sport, stamp);
                        }
                        seq += 1;
                    }
                } else {
                    c.tx_nombuf += 1;
                }
            }
            if !out.is_empty() {
                let sent = lane.tx_tx.tx_burst(&mut out);
                c.tx_packets += sent as u64;
                c.tx_bytes += (sent * len) as u64;
                c.tx_retries += out.len() as u64;
                pacer.sent(sent);
            }
            if now >= end || (count != 0 && seq >= count && out.is_empty()) {
                c.tx_unsent += out.len() as u64;
                out.clear();
                send_end = now;
                drain_end = now + a.drain_ms * hz / 1000;
            }
        } else if now >= drain_end {
            break;
        }
        sink(lane, x, c, h, start);
        replies(lane, x, c, rtt, start);
    }
    r.send_s = (send_end - start) as f64 / hz as f64;
    Ok(r)
}

fn run_tcp(lane: &mut Lane, x: &Ctx) -> Result<LaneResult, String> {
    let (a, hz) = (&x.a, x.hz);
    let mut r = LaneResult::default();
    let (c, h) = (&mut r.c, &mut r.h);
    let count = x.share(a.count, lane.k);
    let (rx_rx, rx_tx) = lane.rx.as_mut().ok_or("tcp needs the rx port")?;
    let mut client = Client::lane(
        x.flows,
        a.concurrency,
        u64::from(lane.k),
        u64::from(a.queues),
    )?;
    let timeout = a.timeout_ms * hz / 1000;
    let start = rdtsc();
    let end = start + secs_to_cycles(a.duration_s, hz);
    let mut pacer = Pacer::new(x.share(a.rate, lane.k), hz, start, BURST);
    let (mut to_server, mut to_client) = (Vec::with_capacity(4 * BURST), Vec::with_capacity(BURST));
    let mut answers = 0u64;
    let mut send_end = end;
    let mut sending = true;
    let mut drain_end = u64::MAX;
    let mut iter = 0u64;
    loop {
        let now = rdtsc();
        iter += 1;
        if sending {
            let mut n = pacer.due(now);
            if count != 0 {
                n = n.min(usize::try_from(count - client.stats.opened).unwrap_or(BURST));
            }
            let mut opened = 0;
            for _ in 0..n {
                match client.open(now) {
                    Some(s) => {
                        to_server.push(s);
                        opened += 1;
                    }
                    None => break,
                }
            }
            pacer.sent(opened);
            if now >= end || (count != 0 && client.stats.opened >= count) {
                sending = false;
                send_end = now;
            }
        } else if client.open_count() == 0 || now >= drain_end {
            break;
        } else if drain_end == u64::MAX {
            // Let connections in flight finish (or time out), bounded.
            drain_end = now + timeout.max(a.drain_ms * hz / 1000);
        }
        send_segments(&x.pool, &mut lane.tx_tx, &x.client_macs, &mut to_server, c);
        // Far side: the reflector answers as the server.
        for q in rx_rx.iter_mut() {
            receive(q, c, |p, _, _| {
                if let Some(r) = tcp::reflect(p) {
                    to_client.push(r);
                    answers += 1;
                }
            });
        }
        send_segments(&x.pool, rx_tx, &x.server_macs, &mut to_client, c);
        // Near side: the client.
        for q in &mut lane.tx_rx {
            receive(q, c, |p, c, now| {
                if let Some(t) = client.on_segment(p, now, &mut to_server) {
                    c.rx_stamped += 1;
                    h.record(cycles_to_ns(t, hz));
                }
            });
        }
        if iter.is_multiple_of(64) {
            client.expire(now, timeout);
        }
    }
    client.expire(u64::MAX, 0);
    r.send_s = (send_end - start) as f64 / hz as f64;
    r.tcp = Some((client.stats, answers));
    Ok(r)
}

/// Runs lane `lane` in the chosen mode.
/// `--warm-up`'s pass (lane 0, the only one): every flow once at 1 M frames/s with the rx
/// port answering (as `--reflect`) and 1 s of draining; then the rx port's queues are
/// taken out of the lane (returned, to be dropped after the measurement), so the
/// measured `--tx-only` run does not poll them.
fn warm_up(lane: &mut Lane, x: &Ctx) -> Result<(WarmReport, Option<RxSide>), String> {
    let mut a = x.a.clone();
    (a.tx_only, a.reflect, a.count, a.rate) = (false, true, a.flows, 1_000_000);
    (a.drain_ms, a.duration_s) = (1000, 60.0);
    let wx = Ctx { a, ..x.clone() };
    let r = run_udp(lane, &wx)?;
    let report = WarmReport {
        sent: r.c.tx_packets,
        reflected: r.c.reflected,
        answers_back: r.c.rx_replies,
        send_s: r.send_s,
    };
    Ok((report, lane.rx.take()))
}

fn run_lane(lane: &mut Lane, x: &Ctx) -> Result<LaneResult, String> {
    match x.a.mode {
        // A SYN flood is the UDP loop with SYN frames (unstamped, never answered).
        Mode::Udp | Mode::Syn => run_udp(lane, x),
        Mode::Tcp => run_tcp(lane, x),
    }
}

fn run(a: Args) -> Result<Report, String> {
    let flows = Flows::new(a.src_net, a.dst, a.dport, a.flows)?;
    // TCP opens its flows in its own order (tcp::Client); the table is for UDP.
    let order = if a.mode != Mode::Tcp {
        a.order
    } else {
        Order::Seq
    };
    let seq = Sequence::new(order, a.flows, a.seed)?;
    let eal = Eal::init(&a.eal).map_err(|e| format!("EAL init: {e}"))?;
    let hz = eal.tsc_hz();
    if a.rate != 0 && a.rate < u64::from(a.queues) || a.count != 0 && a.count < u64::from(a.queues)
    {
        return Err("--rate and --count must be 0 or at least --queues".into());
    }
    let workers: Vec<_> = eal
        .worker_lcores()
        .take(usize::from(a.queues) - 1)
        .collect();
    if workers.len() + 1 < usize::from(a.queues) {
        return Err(format!(
            "--queues {} needs {} lcores; EAL has {} (give -l / --lcores more)",
            a.queues,
            a.queues,
            workers.len() + 1
        ));
    }
    let mut io = setup(&eal, &a)?;
    let x = Ctx {
        pool: io.pool.clone(),
        a: a.clone(),
        flows,
        seq,
        hz,
        client_macs: Macs {
            src: io.txp.mac().unwrap_or([2, 0, 0, 0, 0, 0xfe]),
            dst: a.tx_mac,
        },
        server_macs: Macs {
            src: io
                .rxp
                .as_ref()
                .and_then(|p| p.mac().ok())
                .unwrap_or([2, 0, 0, 0, 0, 0xfd]),
            dst: a.rx_mac,
        },
    };
    // Lane 0 on the main lcore, lane k on worker lcore k.
    let mut lanes = std::mem::take(&mut io.lanes).into_iter();
    let mut main_lane = lanes.next().ok_or("no queue")?;
    let (warm, parked) = if a.warm_up {
        eprintln!("perfgen: warm-up");
        let (w, parked) = warm_up(&mut main_lane, &x)?;
        // A pause (--settle-ms) in which scripts read the device's counters, so its
        // measured window starts with the sending below, not during it.
        eprintln!("perfgen: warmed up");
        std::thread::sleep(Duration::from_millis(a.settle_ms));
        (Some(w), parked)
    } else {
        (None, None)
    };
    // Scripts wait for this line (e.g. to count the device's cycles while traffic flows).
    eprintln!("perfgen: sending");
    let (done, results) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for (mut lane, lcore) in lanes.zip(workers) {
        let (x, done) = (x.clone(), done.clone());
        let h = eal
            .launch_on(lcore, move || {
                let _ = done.send(run_lane(&mut lane, &x));
                0
            })
            .map_err(|e| format!("launch on {lcore}: {e}"))?;
        handles.push(h);
    }
    let mut all = vec![run_lane(&mut main_lane, &x)];
    drop(main_lane);
    drop(parked);
    for h in handles {
        h.join();
    }
    drop(done);
    all.extend(results.iter());
    let mut c = Counters::default();
    let mut h = Histogram::default();
    let mut rtt = Histogram::default();
    let mut send_s = 0f64;
    let mut tcp: Option<TcpReport> = None;
    for r in all {
        let r = r?;
        c.add(&r.c);
        h.merge(&r.h);
        rtt.merge(&r.rtt);
        send_s = send_s.max(r.send_s);
        if let Some((stats, answers)) = r.tcp {
            let t = tcp.get_or_insert(TcpReport {
                client: ClientStats::default(),
                conns_per_s: 0.0,
                reflector_answers: 0,
            });
            t.client.opened += stats.opened;
            t.client.completed += stats.completed;
            t.client.failed += stats.failed;
            t.client.unexpected += stats.unexpected;
            t.reflector_answers += answers;
        }
    }
    if let Some(t) = tcp.as_mut() {
        t.conns_per_s = t.client.completed as f64 / send_s.max(1e-9);
    }
    let ports = PortsReport {
        tx: port_stats(&io.tx_name, io.txp.stats().unwrap_or_default()),
        rx: io
            .rxp
            .as_ref()
            .map(|p| port_stats(&io.rx_name, p.stats().unwrap_or_default())),
    };
    let lost = i64::try_from(c.tx_packets).unwrap_or(i64::MAX)
        - i64::try_from(c.rx_packets).unwrap_or(i64::MAX);
    let rx_pps = c.rx_packets as f64 / send_s.max(1e-9);
    let report = Report {
        tool: "perfgen",
        dpdk: Eal::version(),
        tsc_hz: hz,
        send_s,
        tx_pps: c.tx_packets as f64 / send_s.max(1e-9),
        rx_pps,
        rx_wire_gbps: (c.rx_bytes + 24 * c.rx_packets) as f64 * 8.0 / send_s.max(1e-9) / 1e9,
        // --tx-only: nothing is received here; the device's counters tell what arrived.
        lost: if a.mode != Mode::Tcp && !a.tx_only {
            lost
        } else {
            0
        },
        loss_ratio: if a.mode != Mode::Tcp && !a.tx_only && c.tx_packets > 0 {
            lost as f64 / c.tx_packets as f64
        } else {
            0.0
        },
        latency: h.summary(),
        reply_pps: c.rx_replies as f64 / send_s.max(1e-9),
        reply_lost: i64::try_from(c.reflected).unwrap_or(i64::MAX)
            - i64::try_from(c.rx_replies).unwrap_or(i64::MAX),
        reply_latency: a.reflect.then(|| rtt.summary()),
        established: (a.established > 0).then(|| {
            let alone_s = a.flood_after_ms as f64 / 1000.0;
            let alone_pps = c.rx_established_alone as f64 / alone_s.max(1e-9);
            let flood_pps = c.rx_established_flood as f64 / (send_s - alone_s).max(1e-9);
            EstablishedReport {
                flows: a.established,
                offered_pps: a.established_rate,
                alone_pps,
                flood_pps,
                ratio: flood_pps / alone_pps.max(1e-9),
            }
        }),
        tcp,
        warm_up: warm,
        ports,
        counters: c,
        args: a,
    };
    // Shut down: queues first, then the ports, then EAL (Busy is harmless at exit).
    drop(x);
    let Io { txp, rxp, pool, .. } = io;
    for mut p in std::iter::once(txp).chain(rxp) {
        let _ = p.stop();
        let _ = p.close();
    }
    drop(pool);
    let _ = eal.cleanup();
    Ok(report)
}

fn main() -> ExitCode {
    let a = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.starts_with("perfgen:") => {
            print!("{e}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("perfgen: {e}");
            return ExitCode::from(2);
        }
    };
    let json = a.json.clone();
    match run(a) {
        Ok(r) => {
            let text = serde_json::to_string_pretty(&r).unwrap_or_default();
            match json {
                Some(path) => {
                    if let Err(e) = std::fs::write(&path, text + "\n") {
                        eprintln!("perfgen: {path}: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                None => {
                    use std::io::Write;
                    // A closed pipe (`| head`) is not worth a panic.
                    let _ = writeln!(std::io::stdout(), "{text}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("perfgen: {e}");
            ExitCode::FAILURE
        }
    }
}
