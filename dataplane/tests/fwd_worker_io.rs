//! The worker I/O edge on real EAL lcores (root; `--no-huge`): two `net_ring` port pairs,
//! two workers. Worker 0 polls port 0 and hands every frame to worker 1 (or gives marked
//! frames to the slow path); worker 1 forwards them out of port 1. Proves the handoff
//! rings (with the in-port tag), the slow-path ring and its TX, the command ring, the
//! steering-message rings (worker 0 makes a DNAT steering record per slow-path frame and
//! withdraws the first; worker 1 must hold the others), the published counters (the
//! edge's and the processors' own, `Process::proc_counters`), and a
//! clean stop. Bounded: gives up after 20 s.

#![cfg(feature = "dpdk")]
#![allow(
    clippy::disallowed_types,
    reason = "test: a wall-clock deadline bounds the run"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use dataplane::conntrack::{Counters, Stats};
use dataplane::nat::Tuple;
use dataplane::nat::alloc::Steering;
use dataplane::wire::Addr;
use dataplane::worker::counters::{CounterBlock, ProcCounters};
use dataplane::worker::io::{BURST, SlowPathIo, WorkerIo};
use dataplane::worker::process::{Process, SlowProcess, SteerMsg};
use dataplane::worker::{Action, WorkerCommand, WorkerReply};
use dpdk_bindings::{Eal, Mbuf, Mempool, Port, PortConfig, Ring, RxQueue, TxBuffer, TxQueue};

mod common;
use common::netns::is_root;

const FRAMES: u32 = 600;
const SLOW_EVERY: u32 = 10;

/// Worker 0: marked frames (byte 14 == 0xff) to the slow path, others to worker 1.
/// Worker 1: forward to port 1, and check the in-port survived the handoff.
struct Steer {
    worker: u16,
    seen: u64,
    wrong_port: u64,
    /// Worker 0: steering messages not yet taken by the edge.
    outbox: Vec<SteerMsg>,
    /// Worker 1: records in force (reply source port), and malformed messages.
    steered: std::collections::BTreeSet<u16>,
    bad_steer: u64,
}

/// The steering record of slow-path frame `seq`: its reply goes to worker 1, owner 0.
fn record(seq: u32) -> Steering {
    Steering {
        reply: Tuple::new(
            Addr::from_v4([198, 51, 100, 2]),
            Addr::from_v4([203, 0, 113, 1]),
            6,
            u16::try_from(seq).unwrap(),
            80,
        ),
        reply_worker: 1,
        owner: 0,
    }
}

impl Process for Steer {
    fn process(&mut self, in_port: u16, frame: &mut [u8], _now: u64, _s: &mut [u8]) -> Action {
        self.seen += 1;
        if in_port != 0 {
            self.wrong_port += 1;
        }
        let len = u16::try_from(frame.len()).unwrap();
        if self.worker == 0 && frame[14] == 0xff {
            let seq = u32::from_be_bytes(frame[20..24].try_into().unwrap());
            self.outbox.push(SteerMsg::Add(record(seq)));
            if seq == 0 {
                self.outbox.push(SteerMsg::Remove(record(seq)));
            }
        }
        match self.worker {
            0 if frame[14] == 0xff => Action::SlowPath,
            0 => Action::Handoff { worker: 1 },
            _ => Action::Forward { port: 1, len },
        }
    }
    fn command(&mut self, cmd: WorkerCommand) -> WorkerReply {
        match cmd {
            WorkerCommand::CtCount { .. } => WorkerReply::Count {
                count: self.seen,
                next_cursor: None,
            },
            WorkerCommand::CtStats => WorkerReply::Stats(Counters {
                stats: Stats {
                    error: self.wrong_port + self.bad_steer,
                    ..Stats::default()
                },
                entries: self.steered.len() as u64,
                ..Counters::default()
            }),
            _ => WorkerReply::Done,
        }
    }
    fn tick(&mut self, _now_ns: u64) {}
    fn proc_counters(&self) -> ProcCounters {
        ProcCounters {
            local_in: self.seen,
            ..ProcCounters::default()
        }
    }
    fn drain_steering(&mut self, send: &mut dyn FnMut(SteerMsg)) {
        self.outbox.drain(..).for_each(send);
    }
    fn receive_steering(&mut self, msg: SteerMsg) {
        let (SteerMsg::Add(s) | SteerMsg::Remove(s)) = msg;
        if self.worker != 1 || msg.to() != 1 || s.owner != 0 {
            self.bad_steer += 1;
        }
        let port = s.reply.sport;
        match msg {
            SteerMsg::Add(_) => self.steered.insert(port),
            SteerMsg::Remove(_) => self.steered.remove(&port),
        };
    }
}

/// Sends slow-path frames back out of their input port with byte 15 set.
struct Echo;

impl SlowProcess for Echo {
    fn handle(&mut self, in_port: u16, frame: &mut [u8], _now: u64) -> Option<(u16, u16)> {
        frame[15] = 0xee;
        Some((in_port, u16::try_from(frame.len()).unwrap()))
    }
    fn tick(&mut self, _now_ns: u64, _emit: &mut dyn FnMut(u16, &[u8])) {}
}

fn frame(seq: u32) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = if seq.is_multiple_of(SLOW_EVERY) {
        0xff
    } else {
        0x45
    };
    f[20..24].copy_from_slice(&seq.to_be_bytes());
    f
}

fn open(eal: &Eal, id: dpdk_bindings::PortId, pool: &Mempool) -> Port {
    let mut p = Port::open(eal, id).unwrap();
    p.configure(
        &PortConfig {
            rx_desc: 1024,
            tx_desc: 1024,
            ..PortConfig::default()
        },
        pool,
    )
    .unwrap();
    p
}

/// EAL for one test: in memory, no hugepages, lcores as given, its own file prefix.
fn eal(name: &str, lcores: &str, prefix: &str) -> Eal {
    Eal::init([
        name,
        "--lcores",
        lcores,
        "--file-prefix",
        &format!("{prefix}-{}", std::process::id()),
        "-m",
        "128",
        "--no-huge",
        "--no-shconf",
        "--no-pci",
        "--no-telemetry",
        "--log-level=*:notice",
    ])
    .expect("EAL init")
}

type Queues = (Vec<RxQueue>, Vec<TxQueue>);

/// Two started `net_ring` pairs named `<tag>0` / `<tag>1`: the worker's ports 0 and 1
/// (a0, a1) and the harness's ends (h0, h1); port 1's rings hold `wan_depth` frames. The
/// ports (to close) and their queues in the order a0, a1, h0, h1.
fn ring_ports(eal: &Eal, pool: &Mempool, tag: &str, wan_depth: u32) -> (Vec<Port>, [Queues; 4]) {
    let (a0, h0) = eal.ring_port_pair(&format!("{tag}0"), 1024).unwrap();
    let (a1, h1) = eal.ring_port_pair(&format!("{tag}1"), wan_depth).unwrap();
    let mut ports: Vec<Port> = [a0, a1, h0, h1]
        .iter()
        .map(|&id| open(eal, id, pool))
        .collect();
    let queues: Vec<Queues> = ports.iter_mut().map(|p| p.take_queues().unwrap()).collect();
    for p in &mut ports {
        p.start().unwrap();
    }
    let Ok(queues) = <[Queues; 4]>::try_from(queues) else {
        unreachable!("four ports")
    };
    (ports, queues)
}

#[test]
fn fwd_worker_io_handoff_slowpath_commands_counters() {
    if !is_root() {
        eprintln!("skipped: needs root for EAL");
        return;
    }
    let eal = eal("fwd-io-test", "0@0,1@1,2@1", "fwd-io");
    let pool = Mempool::pktmbuf(&eal, "fwdio_pool", 8191, 64, 2176, eal.socket_id()).unwrap();
    let (ports, [mut a0q, mut a1q, mut h0q, mut h1q]) = ring_ports(&eal, &pool, "fwdio", 1024);

    let s = eal.socket_id();
    let (ho_p, ho_c) = Ring::<Mbuf>::spsc(&eal, "fwdio_ho01", 1024, s).unwrap();
    let (st_p, st_c) = Ring::<Box<SteerMsg>>::spsc(&eal, "fwdio_st01", 1024, s).unwrap();
    let (sp0_p, sp0_c) = Ring::<Mbuf>::spsc(&eal, "fwdio_sp0", 1024, s).unwrap();
    let (sp1_p, sp1_c) = Ring::<Mbuf>::spsc(&eal, "fwdio_sp1", 1024, s).unwrap();
    let (c0p, c0c) = Ring::<Box<WorkerCommand>>::spsc(&eal, "fwdio_c0", 8, s).unwrap();
    let (r0p, r0c) = Ring::<Box<WorkerReply>>::spsc(&eal, "fwdio_r0", 8, s).unwrap();
    let (mut c1p, c1c) = Ring::<Box<WorkerCommand>>::spsc(&eal, "fwdio_c1", 8, s).unwrap();
    let (r1p, mut r1c) = Ring::<Box<WorkerReply>>::spsc(&eal, "fwdio_r1", 8, s).unwrap();
    let blocks = [
        Arc::new(CounterBlock::default()),
        Arc::new(CounterBlock::default()),
    ];
    let stop = Arc::new(AtomicBool::new(false));

    let w0 = WorkerIo {
        index: 0,
        rx: vec![(0, a0q.0.pop().unwrap())],
        tx: vec![None, None],
        handoff_out: vec![None, Some(ho_p)],
        handoff_in: Vec::new(),
        steer_out: vec![None, Some(st_p)],
        steer_in: Vec::new(),
        slow: sp0_p,
        commands: c0c,
        replies: r0p,
        published: blocks[0].clone(),
        neigh: None,
        tsc_hz: eal.tsc_hz(),
        pool: None,
    };
    let w1 = WorkerIo {
        index: 1,
        rx: Vec::new(),
        tx: vec![None, Some(TxBuffer::new(a1q.1.pop().unwrap()))],
        handoff_out: vec![None, None],
        handoff_in: vec![ho_c],
        steer_out: vec![None, None],
        steer_in: vec![st_c],
        slow: sp1_p,
        commands: c1c,
        replies: r1p,
        published: blocks[1].clone(),
        neigh: None,
        tsc_hz: eal.tsc_hz(),
        pool: None,
    };
    let lcores: Vec<_> = eal.worker_lcores().collect();
    let handles: Vec<_> = [w0, w1]
        .into_iter()
        .zip(&lcores)
        .enumerate()
        .map(|(i, (io, l))| {
            let stop = stop.clone();
            eal.launch_on(*l, move || {
                let mut p = Steer {
                    worker: u16::try_from(i).unwrap(),
                    seen: 0,
                    wrong_port: 0,
                    outbox: Vec::new(),
                    steered: Default::default(),
                    bad_steer: 0,
                };
                io.run(&mut p, &stop);
                0
            })
            .unwrap()
        })
        .collect();

    // Inject every frame into port 0 from its peer.
    let mut inject = h0q.1.pop().unwrap();
    let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    for seq in 0..FRAMES {
        let mut m = pool.alloc().unwrap();
        m.append(64).unwrap().copy_from_slice(&frame(seq));
        out.push(m);
        if out.is_full() || seq == FRAMES - 1 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !out.is_empty() {
                inject.tx_burst(&mut out);
                assert!(Instant::now() < deadline, "port 0 does not take frames");
            }
        }
    }

    // The slow path on the main lcore; it also collects what comes out.
    let mut slow = SlowPathIo {
        from_workers: vec![sp0_c, sp1_c],
        tx: vec![Some(TxBuffer::new(a0q.1.pop().unwrap())), None],
        pool: pool.clone(),
        tsc_hz: eal.tsc_hz(),
        handled: 0,
        sent: 0,
        dropped: 0,
    };
    let want_slow = FRAMES.div_ceil(SLOW_EVERY);
    let want_fwd = FRAMES - want_slow;
    let mut got_fwd = Vec::new();
    let mut got_slow = Vec::new();
    let mut rx1 = h1q.0.pop().unwrap();
    let mut rx0 = h0q.0.pop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut asked = false;
    let mut reply = None;
    let mut stats = None;
    let stop2 = stop.clone();
    slow.run(&mut Echo, &stop2, &mut || {
        let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        while rx1.rx_burst(&mut inb) > 0 {
            got_fwd.extend(inb.drain(..).map(|m| m.data().to_vec()));
        }
        while rx0.rx_burst(&mut inb) > 0 {
            got_slow.extend(inb.drain(..).map(|m| m.data().to_vec()));
        }
        let all = got_fwd.len() == want_fwd as usize
            && got_slow.len() == want_slow as usize
            && blocks[1].read().steer_rx == u64::from(want_slow) + 1;
        if all && !asked {
            asked = c1p
                .enqueue(Box::new(WorkerCommand::CtCount {
                    filter: Default::default(),
                    cursor: 0,
                    budget: u32::MAX,
                }))
                .is_ok()
                && c1p.enqueue(Box::new(WorkerCommand::CtStats)).is_ok();
        }
        if asked && reply.is_none() {
            reply = r1c.dequeue();
        }
        if reply.is_some() && stats.is_none() {
            stats = r1c.dequeue();
        }
        // Counters are published every ~1 ms: wait until they show everything.
        let published = blocks[1].read().tx_packets[1] == u64::from(want_fwd);
        if (stats.is_some() && published) || Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
        }
    });
    for h in handles {
        assert_eq!(h.join(), 0);
    }

    assert_eq!(got_fwd.len(), want_fwd as usize, "forwarded frames");
    assert_eq!(got_slow.len(), want_slow as usize, "slow-path frames");
    // Every frame intact (the handoff tag removed), in order, none twice.
    let fwd_seqs: Vec<u32> = got_fwd
        .iter()
        .map(|f| {
            assert_eq!(f.len(), 64);
            u32::from_be_bytes(f[20..24].try_into().unwrap())
        })
        .collect();
    let want: Vec<u32> = (0..FRAMES)
        .filter(|s| !s.is_multiple_of(SLOW_EVERY))
        .collect();
    assert_eq!(fwd_seqs, want);
    for f in &got_fwd {
        let seq = u32::from_be_bytes(f[20..24].try_into().unwrap());
        assert_eq!(f[..], frame(seq)[..]);
    }
    for f in &got_slow {
        assert_eq!((f[14], f[15]), (0xff, 0xee), "slow path did not rewrite");
    }
    assert_eq!(
        *reply.unwrap(),
        WorkerReply::Count {
            count: u64::from(want_fwd),
            next_cursor: None
        }
    );
    // Every steering record reached worker 1 through the edge, the withdrawn one is gone.
    match *stats.expect("CtStats reply") {
        WorkerReply::Stats(st) => {
            assert_eq!(st.stats.error, 0, "wrong in-port or misaddressed steering");
            assert_eq!(
                st.entries,
                u64::from(want_slow) - 1,
                "steering records held"
            );
        }
        other => panic!("unexpected reply {other:?}"),
    }

    let c0 = blocks[0].read();
    let c1 = blocks[1].read();
    assert_eq!(c0.rx_packets[0], u64::from(FRAMES));
    assert_eq!(c0.rx_bytes[0], u64::from(FRAMES) * 64);
    assert_eq!(c0.handoff_tx, u64::from(want_fwd));
    assert_eq!(c0.slowpath_tx, u64::from(want_slow));
    assert_eq!(c1.handoff_rx, u64::from(want_fwd));
    assert_eq!(c1.tx_packets[1], u64::from(want_fwd));
    assert_eq!(c1.rx_packets.iter().sum::<u64>(), 0);
    assert_eq!(
        c0.handoff_drop + c1.handoff_drop + c0.edge_drop + c1.edge_drop,
        0
    );
    assert!(c0.busy_cycles > 0 && c0.busy_cycles <= c0.total_cycles);
    assert_eq!(c1.commands, 2);
    // The processors' own counters ride along with the edge's.
    assert_eq!(c0.proc.local_in, u64::from(FRAMES));
    assert_eq!(c1.proc.local_in, u64::from(want_fwd));
    assert_eq!(c0.steer_tx, u64::from(want_slow) + 1);
    assert_eq!(c1.steer_rx, u64::from(want_slow) + 1);
    assert_eq!(c0.steer_drop + c1.steer_drop + c1.steer_tx, 0);
    assert_eq!(
        (slow.handled, slow.sent, slow.dropped),
        (u64::from(want_slow), u64::from(want_slow), 0)
    );

    drop(slow);
    drop((rx0, rx1, inject, h0q, h1q, a0q, a1q));
    drop((c0p, r0c, c1p, r1c));
    for p in ports {
        p.close().unwrap();
    }
    drop(pool);
    eal.cleanup().expect("EAL cleanup: every mbuf returned");
}

/// A TX queue that refuses frames: port 1's peer is never drained, so its ring (64
/// slots) fills. What the device took is `tx_packets`, the rest is counted as
/// `tx_refused` drops and freed (EAL cleanup checks every mbuf came back).
#[test]
fn fwd_worker_io_counts_refused_tx_as_drops() {
    if !is_root() {
        eprintln!("skipped: needs root for EAL");
        return;
    }
    let eal = eal("fwd-io-txfull", "0@0,1@1", "fwd-txf");
    let pool = Mempool::pktmbuf(&eal, "txf_pool", 4095, 64, 2176, eal.socket_id()).unwrap();
    let (ports, [mut a0q, mut a1q, mut h0q, mut h1q]) = ring_ports(&eal, &pool, "txf", 64);
    let s = eal.socket_id();
    let (sp_p, sp_c) = Ring::<Mbuf>::spsc(&eal, "txf_sp", 64, s).unwrap();
    let (cp, cc) = Ring::<Box<WorkerCommand>>::spsc(&eal, "txf_c", 8, s).unwrap();
    let (rp, rc) = Ring::<Box<WorkerReply>>::spsc(&eal, "txf_r", 8, s).unwrap();
    let block = Arc::new(CounterBlock::default());

    // Every frame waits on port 0 before the worker starts.
    let mut inject = h0q.1.pop().unwrap();
    let mut out: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    for seq in 0..FRAMES {
        let mut m = pool.alloc().unwrap();
        m.append(64).unwrap().copy_from_slice(&frame(seq));
        out.push(m);
        if out.is_full() || seq == FRAMES - 1 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !out.is_empty() {
                inject.tx_burst(&mut out);
                assert!(Instant::now() < deadline, "port 0 does not take frames");
            }
        }
    }

    let io = WorkerIo {
        index: 0,
        rx: vec![(0, a0q.0.pop().unwrap())],
        tx: vec![None, Some(TxBuffer::new(a1q.1.pop().unwrap()))],
        handoff_out: vec![None],
        handoff_in: Vec::new(),
        steer_out: vec![None],
        steer_in: Vec::new(),
        slow: sp_p,
        commands: cc,
        replies: rp,
        published: block.clone(),
        neigh: None,
        tsc_hz: eal.tsc_hz(),
        pool: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let lcore = eal.worker_lcores().next().unwrap();
    let stop2 = stop.clone();
    let handle = eal
        .launch_on(lcore, move || {
            io.run(&mut dataplane::worker::process::PortForward::new(2), &stop2);
            0
        })
        .unwrap();
    let refused = |c: &dataplane::worker::counters::Counters| {
        c.drops[dataplane::DropReason::TxRefused as usize]
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = block.read();
        if c.tx_packets[1] + refused(&c) == u64::from(FRAMES) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(handle.join(), 0);

    let mut delivered = 0u64;
    let mut inb: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    let mut rx1 = h1q.0.pop().unwrap();
    while rx1.rx_burst(&mut inb) > 0 {
        delivered += inb.len() as u64;
        inb.clear();
    }
    let c = block.read();
    assert_eq!(c.rx_packets[0], u64::from(FRAMES));
    assert!(refused(&c) > 0, "the full queue refused nothing: {c:?}");
    assert_eq!(c.tx_packets[1] + refused(&c), u64::from(FRAMES));
    assert_eq!(
        c.tx_packets[1], delivered,
        "tx_packets counts only what the device took"
    );
    assert_eq!(c.tx_bytes[1], delivered * 64);
    assert_eq!(c.tx_dropped, refused(&c));

    drop((rx1, inject, h0q, h1q, a0q, a1q, sp_c, cp, rc));
    for p in ports {
        p.close().unwrap();
    }
    drop(pool);
    eal.cleanup().expect("EAL cleanup: every mbuf returned");
}
