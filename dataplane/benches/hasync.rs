//! State sync, one connection update through every stage of the path (docs/ha.md,
//! "Throughput"), in batches of 1 024 records as the control thread takes them:
//!
//! - `worker/events_{off,on}`: a worker's conntrack insert of a new UDP flow and, later,
//!   its expiry (every 1 024 flows the clock jumps past their hour-long timeout), without
//!   and with events recorded; with them every 1 024th flow also takes the ring's events
//!   (each flow's NEW and DESTROY) as `TakeRawEvents` does. The difference is the
//!   worker's share of sync per connection.
//! - `fwd_stream`: fwd's control thread turning 1 024 events into a `subscribe_records`
//!   line (sync record, base64, JSON).
//! - `daemon_send_{1400,16000}`: the primary's daemon: the line parsed, base64 decoded,
//!   split, batched into datagrams of 1 400 / 16 000 bytes (header and CRC), the
//!   peer's ACKs taken.
//! - `daemon_receive_{1400,16000}`: the backup's daemon: each datagram decoded (CRC,
//!   records) and sequenced, its body collected, then one `ha_apply_records` request line
//!   (base64, JSON).
//! - `fwd_apply`: the backup fwd: the request line parsed, base64 decoded, records decoded
//!   and put into fwd's external cache (`ha::cache::SyncCache`), which grows as the
//!   stream runs.
//!
//! Each step is one batch of 1 024 records (criterion's throughput is per record).
//! `cargo bench -p dataplane --bench hasync`
//!
//! Instruction counts (repeatable on a loaded machine): `HASYNC_STEPS=N` runs N steps of
//! each scenario in `HASYNC_ONLY` (a comma list; all when unset) without criterion; under
//! `valgrind --tool=callgrind --toggle-collect='*hasync::step*'` the collected instructions
//! / (N * 1024) are one record's.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::conntrack::{CtEvent, EventKind, FlowKey, InsertHints, Synced, Table, Tunables};
use dataplane::control::proto::{HaTarget, RecordBatch, Request, RequestEnvelope};
use dataplane::ha::cache::SyncCache;
use dataplane::ha::ftfw::{Receiver, Sender};
use dataplane::ha::line;
use dataplane::ha::wire::{self, Record};
use dataplane::wire::{Addr, Family, Fragment, IpInfo, L4Info, proto};

/// Records per batch (the control thread's `RAW_TAKE`, the daemon's apply batch order).
const BATCH: usize = 1024;

/// UDP flow `i`: source 198.18.x.y (the low 17 bits of `i`) and port 1024 + the rest,
/// to 198.19.0.1:9 (perfgen's churn has this shape).
fn udp(i: u32) -> IpInfo {
    let src = u32::from_be_bytes([198, 18, 0, 0]) | (i & 0x1_ffff);
    let sport = 1024 + u16::try_from((i >> 17) & 0x7fff).unwrap_or(0);
    let (ttl, l3_off, l4_off, ip_len) = (64, 14, 34, 50);
    IpInfo {
        src: Addr::from_v4(src.to_be_bytes()),
        l4: Some(L4Info::Udp { sport, dport: 9 }),
        dst: Addr::from_v4([198, 19, 0, 1]),
        family: Family::V4,
        proto: proto::UDP,
        frag: Fragment::None,
        ttl,
        l3_off,
        l4_off,
        ip_len,
    }
}

/// `HASYNC_STEPS`: run each scenario this many times without criterion.
fn steps() -> Option<u64> {
    std::env::var("HASYNC_STEPS").ok()?.parse().ok()
}

/// Benchmarks `step` under `name` (or runs it [`steps`] times), if `name` is wanted.
fn run(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut step: impl FnMut()) {
    if !wanted(name) {
        return;
    }
    if let Some(n) = steps() {
        (0..n).for_each(|_| step());
    } else {
        g.bench_function(name, |b| b.iter(&mut step));
    }
}

fn wanted(name: &str) -> bool {
    std::env::var("HASYNC_ONLY").map_or(true, |v| v.split(',').any(|x| x == name))
}

/// A worker's table of `cap` entries, events on or off, hour-long UDP timeouts.
fn table(cap: u32, events: u8) -> Table {
    Table::new(
        cap,
        Tunables {
            max: cap,
            events,
            udp: 3600,
            ..Tunables::default()
        },
        0x1234_5678,
    )
}

/// New flows into a worker's table; with events, every `BATCH`-th step takes them.
struct Worker {
    t: Table,
    i: u32,
    now: u64,
    taken: Vec<CtEvent>,
}

impl Worker {
    #[inline(never)]
    fn step_worker(&mut self) {
        self.i = self.i.wrapping_add(1);
        self.now += 2_000;
        let p = udp(self.i);
        let k = FlowKey::from_info(&p, 0).expect("UDP has a key");
        if let Err(miss) = self.t.lookup_or_miss(&k) {
            let hints = InsertHints {
                miss: Some(miss),
                nat_port: false,
            };
            black_box(self.t.insert_with(k, k.inverse(), &p, self.now, hints).ok());
        }
        if self.i.is_multiple_of(u32::try_from(BATCH).unwrap_or(1)) {
            // This round's NEW events and the previous round's DESTROY events.
            self.taken = self.t.take_events(2 * BATCH).collect();
            black_box(&self.taken);
            // The round's flows expire (the table stays small).
            black_box(self.t.expire_tick(self.now + 7_200_000_000_000));
            self.now += 7_200_000_000_000;
        }
    }
}

/// `BATCH` NEW events of distinct UDP flows with their SNAT reply tuples.
fn events() -> Vec<CtEvent> {
    let n = u32::try_from(BATCH).unwrap_or(0);
    let mut t = table(4 * n, 1);
    for i in 0..n {
        let p = udp(i);
        let k = FlowKey::from_info(&p, 0).expect("UDP has a key");
        let mut reply = k.inverse();
        reply.dst = Addr::from_v4([203, 0, 113, 1]);
        reply.dport = 1024 + u16::try_from(i).unwrap_or(0);
        t.insert(k, reply, &p, 1_000_000_000).expect("room");
    }
    let e: Vec<CtEvent> = t.take_events(BATCH).collect();
    assert_eq!(e.len(), BATCH);
    e
}

/// fwd's control thread: events to a `subscribe_records` line.
#[inline(never)]
fn step_stream(events: &[CtEvent]) -> Vec<u8> {
    let mut records = Vec::new();
    for e in events {
        let r = match e.kind {
            EventKind::Destroy => Record::Destroy(e.entry.orig),
            kind => Record::Upsert {
                new: kind == EventKind::New,
                entry: Synced::from_snapshot(&e.entry),
            },
        };
        wire::put_record(&mut records, &r);
    }
    let mut line = Vec::new();
    line::put_record_batch(&mut line, &records, events.len() as u64, 0, 0);
    line
}

/// The primary's daemon: one stream line to datagrams (the peer acknowledging them).
#[inline(never)]
fn step_send(s: &mut Sender, line: &[u8]) -> Vec<Vec<u8>> {
    let b: RecordBatch = serde_json::from_slice(line).expect("a batch");
    let body = wire::base64_decode(&b.records).expect("base64");
    let parts = wire::split_records(&body).expect("records");
    let mut out: Vec<Vec<u8>> = parts
        .iter()
        .filter_map(|&(at, n)| s.push_raw(&body[at..at + n]))
        .collect();
    out.extend(s.flush());
    if let Some(last) = out.last() {
        s.on_ack(wire::decode(last).expect("ours").seq);
    }
    out
}

/// The backup's daemon: datagrams to one `ha_apply_records` request line.
#[inline(never)]
fn step_receive(r: &mut Receiver, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut records = Vec::new();
    for b in datagrams {
        let d = wire::decode(b).expect("ours");
        if r.on_datagram(&d).deliver {
            records.extend_from_slice(wire::data_body(b));
        }
    }
    let mut line = Vec::new();
    line::put_apply_records(&mut line, 1, &records, HaTarget::Cache);
    line
}

/// The backup fwd: a request line into the external cache (keys made distinct per step
/// by `round`, so the cache grows as it does under churn).
#[inline(never)]
fn step_apply(cache: &mut SyncCache, line: &[u8], round: u32) -> usize {
    // As the control socket reads a line: UTF-8 checked, then parsed.
    let text = std::str::from_utf8(line).expect("UTF-8");
    let env: RequestEnvelope = serde_json::from_str(text.trim()).expect("a request");
    let Request::HaApplyRecords { records, .. } = env.request else {
        unreachable!("built above")
    };
    let bytes = wire::base64_decode(&records).expect("base64");
    for r in wire::decode_records(&bytes).expect("records") {
        if let Record::Upsert { mut entry, .. } = r {
            entry.orig.zone = u16::try_from(round & 0xffff).unwrap_or(0);
            cache.insert(entry);
        }
    }
    cache.len()
}

fn hasync(c: &mut Criterion) {
    let mut g = c.benchmark_group("hasync");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, events) in [("worker/events_off", 0), ("worker/events_on", 1)] {
        if !wanted(name) {
            continue;
        }
        let mut w = Worker {
            t: table(1 << 16, events),
            i: 0,
            now: 1_000_000_000,
            taken: Vec::new(),
        };
        // A step here is one connection: run BATCH of them per measured step.
        run(&mut g, name, || {
            for _ in 0..BATCH {
                w.step_worker();
            }
        });
    }
    let ev = events();
    run(&mut g, "fwd_stream", || {
        black_box(step_stream(&ev));
    });
    let line = step_stream(&ev);
    for size in [wire::MAX_DATAGRAM, 16_000] {
        let mut s = Sender::with_datagram(1, 4096, size);
        run(&mut g, &format!("daemon_send_{size}"), || {
            black_box(step_send(&mut s, &line));
        });
        // The receiver sees a sequence continuing across steps.
        let mut s = Sender::with_datagram(1, 1 << 20, size);
        let mut r = Receiver::new(2, 64);
        let name = format!("daemon_receive_{size}");
        if wanted(&name) {
            let rounds: Vec<Vec<Vec<u8>>> = (0..64).map(|_| step_send(&mut s, &line)).collect();
            let mut k = 0;
            run(&mut g, &name, || {
                // Replays the rounds as fresh sequence numbers: the sender's queue and
                // the receiver's window stay as in a long stream.
                if k == rounds.len() {
                    k = 0;
                    r = Receiver::new(2, 64);
                }
                black_box(step_receive(&mut r, &rounds[k]));
                k += 1;
            });
        }
    }
    let mut r = Receiver::new(2, 64);
    let mut s = Sender::with_datagram(1, 1 << 20, 16_000);
    let request = step_receive(&mut r, &step_send(&mut s, &line));
    let mut cache = SyncCache::new();
    let mut round = 0u32;
    run(&mut g, "fwd_apply", || {
        round = round.wrapping_add(1);
        black_box(step_apply(&mut cache, &request, round));
    });
    g.finish();
}

criterion_group!(benches, hasync);
criterion_main!(benches);
