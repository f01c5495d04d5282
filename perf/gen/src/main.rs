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
use perfgen::frame::{self, Macs, Segment};
use perfgen::hist::{Histogram, Summary};
use perfgen::pace::Pacer;
use perfgen::tcp::{self, Client, ClientStats};
use serde::Serialize;

const BURST: usize = 32;
const POOL_MBUFS: u32 = 16383;

#[derive(Debug, Default, Serialize)]
struct Counters {
    tx_packets: u64,
    tx_bytes: u64,
    /// Built but refused by the TX queue (ring full): not sent, not counted in tx.
    tx_refused: u64,
    tx_nombuf: u64,
    rx_packets: u64,
    rx_bytes: u64,
    /// Received frames carrying a stamp of this run.
    rx_stamped: u64,
    rx_bad_checksum: u64,
    /// Frames that are not IPv4 UDP/TCP.
    rx_other: u64,
    /// Frames arriving on the TX port in UDP mode (e.g. ICMP errors from the device).
    rx_reverse: u64,
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
    /// UDP: one-way latency through the device; TCP: SYN to last ACK per connection.
    latency: Summary,
    tcp: Option<TcpReport>,
    ports: PortsReport,
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
    rx: PortStats,
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
        c.tx_refused += out.len() as u64;
    }
    segs.clear();
}

struct Io {
    pool: Mempool,
    txp: Port,
    rxp: Port,
    tx_name: String,
    rx_name: String,
    tx_rx: RxQueue,
    tx_tx: TxQueue,
    rx_rx: RxQueue,
    rx_tx: TxQueue,
}

fn open_port(eal: &Eal, id: PortId, pool: &Mempool) -> Result<(Port, RxQueue, TxQueue), String> {
    let mut p = Port::open(eal, id).map_err(|e| format!("port {id:?}: {e}"))?;
    let cfg = PortConfig {
        rx_desc: 1024,
        tx_desc: 1024,
        ..PortConfig::default()
    };
    p.configure(&cfg, pool)
        .map_err(|e| format!("configure port {id:?}: {e}"))?;
    let _ = p.set_promiscuous(true);
    let (mut rx, mut tx) = p.take_queues().map_err(|e| e.to_string())?;
    p.start().map_err(|e| format!("start port {id:?}: {e}"))?;
    match (rx.pop(), tx.pop()) {
        (Some(r), Some(t)) => Ok((p, r, t)),
        _ => Err(format!("port {id:?} has no queue")),
    }
}

fn setup(eal: &Eal, a: &Args) -> Result<Io, String> {
    let ids: Vec<PortId> = eal.ports().collect();
    let pick = |name: &Option<String>, k: usize| -> Result<PortId, String> {
        match name {
            Some(n) => eal.port_by_name(n).map_err(|e| format!("port {n}: {e}")),
            None => ids.get(k).copied().ok_or_else(|| {
                format!("need two DPDK ports, found {} (add --vdev=...)", ids.len())
            }),
        }
    };
    let (t, r) = (pick(&a.tx_port, 0)?, pick(&a.rx_port, 1)?);
    if t == r {
        return Err("--tx-port and --rx-port must differ".into());
    }
    let pool = Mempool::pktmbuf(eal, "perfgen", POOL_MBUFS, 256, 2048 + 128, eal.socket_id())
        .map_err(|e| format!("mempool: {e}"))?;
    let (txp, tx_rx, tx_tx) = open_port(eal, t, &pool)?;
    let (rxp, rx_rx, rx_tx) = open_port(eal, r, &pool)?;
    let wait = Duration::from_secs(a.link_timeout_s);
    for p in [&txp, &rxp] {
        let up = p.wait_link_up(wait).map(|l| l.up).unwrap_or(false);
        if !up {
            return Err(format!(
                "port {} link down after {} s (is the peer, e.g. testpmd, running?)",
                p.name().unwrap_or_default(),
                a.link_timeout_s
            ));
        }
    }
    Ok(Io {
        tx_name: txp.name().unwrap_or_default(),
        rx_name: rxp.name().unwrap_or_default(),
        pool,
        txp,
        rxp,
        tx_rx,
        tx_tx,
        rx_rx,
        rx_tx,
    })
}

/// Receives one burst on `q`; calls `f` with each frame; counts.
fn receive(q: &mut RxQueue, c: &mut Counters, mut f: impl FnMut(&[u8], &mut Counters)) -> usize {
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let n = q.rx_burst(&mut inb);
    for m in inb.drain(..) {
        f(m.data(), c);
    }
    n
}

fn run_udp(
    io: &mut Io,
    a: &Args,
    flows: &Flows,
    hz: u64,
    c: &mut Counters,
    h: &mut Histogram,
) -> f64 {
    let macs = Macs {
        src: io.txp.mac().unwrap_or([2, 0, 0, 0, 0, 0xfe]),
        dst: a.tx_mac,
    };
    let len = a.size - 4;
    let start = rdtsc();
    let end = start + secs_to_cycles(a.duration_s, hz);
    let mut pacer = Pacer::new(a.rate, hz, start, BURST);
    let mut seq = 0u64;
    let mut send_end = end;
    let mut drain_end = u64::MAX;
    let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    loop {
        let now = rdtsc();
        if drain_end == u64::MAX {
            let left = if a.count == 0 {
                u64::MAX
            } else {
                a.count - seq
            };
            let want = pacer.due(now).min(usize::try_from(left).unwrap_or(BURST));
            if want > 0 {
                if io.pool.alloc_bulk(&mut out, want) {
                    for m in out.iter_mut() {
                        let t = flows.tuple(seq);
                        if let Some(buf) = m.append(len) {
                            let _ = frame::udp(
                                buf,
                                &macs,
                                t.src,
                                t.dst,
                                t.sport,
                                t.dport,
                                len,
                                seq,
                                rdtsc(),
                            );
                        }
                        seq += 1;
                    }
                    let sent = io.tx_tx.tx_burst(&mut out);
                    c.tx_packets += sent as u64;
                    c.tx_bytes += (sent * len) as u64;
                    c.tx_refused += out.len() as u64;
                    out.clear();
                    pacer.sent(sent);
                } else {
                    c.tx_nombuf += 1;
                }
            }
            if now >= end || (a.count != 0 && seq >= a.count) {
                send_end = now;
                drain_end = now + a.drain_ms * hz / 1000;
            }
        } else if now >= drain_end {
            break;
        }
        receive(&mut io.rx_rx, c, |f, c| {
            let now = rdtsc();
            c.rx_packets += 1;
            c.rx_bytes += f.len() as u64;
            match frame::parse(f) {
                Some(p) => {
                    if !p.checksums_ok {
                        c.rx_bad_checksum += 1;
                    }
                    if let Some((_, tsc)) = p.stamp.filter(|&(_, tsc)| tsc >= start && tsc <= now) {
                        c.rx_stamped += 1;
                        h.record(cycles_to_ns(now - tsc, hz));
                    }
                }
                None => c.rx_other += 1,
            }
        });
        receive(&mut io.tx_rx, c, |_, c| c.rx_reverse += 1);
    }
    (send_end - start) as f64 / hz as f64
}

fn run_tcp(
    io: &mut Io,
    a: &Args,
    flows: &Flows,
    hz: u64,
    c: &mut Counters,
    h: &mut Histogram,
) -> Result<(f64, TcpReport), String> {
    let client_macs = Macs {
        src: io.txp.mac().unwrap_or([2, 0, 0, 0, 0, 0xfe]),
        dst: a.tx_mac,
    };
    let server_macs = Macs {
        src: io.rxp.mac().unwrap_or([2, 0, 0, 0, 0, 0xfd]),
        dst: a.rx_mac,
    };
    let mut client = Client::new(*flows, a.concurrency)?;
    let timeout = a.timeout_ms * hz / 1000;
    let start = rdtsc();
    let end = start + secs_to_cycles(a.duration_s, hz);
    let mut pacer = Pacer::new(a.rate, hz, start, BURST);
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
            if a.count != 0 {
                n = n.min(usize::try_from(a.count - client.stats.opened).unwrap_or(BURST));
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
            if now >= end || (a.count != 0 && client.stats.opened >= a.count) {
                sending = false;
                send_end = now;
            }
        } else if client.open_count() == 0 || now >= drain_end {
            break;
        } else if drain_end == u64::MAX {
            // Let connections in flight finish (or time out), bounded.
            drain_end = now + timeout.max(a.drain_ms * hz / 1000);
        }
        send_segments(&io.pool, &mut io.tx_tx, &client_macs, &mut to_server, c);
        // Far side: the reflector answers as the server.
        receive(&mut io.rx_rx, c, |f, c| {
            c.rx_packets += 1;
            c.rx_bytes += f.len() as u64;
            match frame::parse(f) {
                Some(p) => {
                    if !p.checksums_ok {
                        c.rx_bad_checksum += 1;
                    }
                    if let Some(r) = tcp::reflect(&p) {
                        to_client.push(r);
                        answers += 1;
                    }
                }
                None => c.rx_other += 1,
            }
        });
        send_segments(&io.pool, &mut io.rx_tx, &server_macs, &mut to_client, c);
        // Near side: the client.
        receive(&mut io.tx_rx, c, |f, c| {
            c.rx_packets += 1;
            c.rx_bytes += f.len() as u64;
            match frame::parse(f) {
                Some(p) => {
                    if !p.checksums_ok {
                        c.rx_bad_checksum += 1;
                    }
                    if let Some(t) = client.on_segment(&p, rdtsc(), &mut to_server) {
                        c.rx_stamped += 1;
                        h.record(cycles_to_ns(t, hz));
                    }
                }
                None => c.rx_other += 1,
            }
        });
        if iter.is_multiple_of(64) {
            client.expire(now, timeout);
        }
    }
    client.expire(u64::MAX, 0);
    let secs = (send_end - start) as f64 / hz as f64;
    Ok((
        secs,
        TcpReport {
            client: client.stats,
            conns_per_s: client.stats.completed as f64 / secs.max(1e-9),
            reflector_answers: answers,
        },
    ))
}

fn run(a: Args) -> Result<Report, String> {
    let flows = Flows::new(a.src_net, a.dst, a.dport, a.flows)?;
    let eal = Eal::init(&a.eal).map_err(|e| format!("EAL init: {e}"))?;
    let hz = eal.tsc_hz();
    let mut io = setup(&eal, &a)?;
    let mut c = Counters::default();
    let mut h = Histogram::default();
    let (send_s, tcp) = match a.mode {
        Mode::Udp => (run_udp(&mut io, &a, &flows, hz, &mut c, &mut h), None),
        Mode::Tcp => {
            let (s, t) = run_tcp(&mut io, &a, &flows, hz, &mut c, &mut h)?;
            (s, Some(t))
        }
    };
    let ports = PortsReport {
        tx: port_stats(&io.tx_name, io.txp.stats().unwrap_or_default()),
        rx: port_stats(&io.rx_name, io.rxp.stats().unwrap_or_default()),
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
        lost: if a.mode == Mode::Udp { lost } else { 0 },
        loss_ratio: if a.mode == Mode::Udp && c.tx_packets > 0 {
            lost as f64 / c.tx_packets as f64
        } else {
            0.0
        },
        latency: h.summary(),
        tcp,
        ports,
        counters: c,
        args: a,
    };
    // Shut down: queues first, then the ports, then EAL (Busy is harmless at exit).
    let Io {
        txp,
        rxp,
        tx_rx,
        tx_tx,
        rx_rx,
        rx_tx,
        pool,
        ..
    } = io;
    drop((tx_rx, tx_tx, rx_rx, rx_tx));
    for mut p in [txp, rxp] {
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
