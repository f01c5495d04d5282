//! New connections in steady state, one worker's share of the work per connection:
//!
//! - `ct_newconn/udp_steady`: a new UDP flow every 2 µs of virtual time (500 k/s) with a
//!   1 s UDP timeout in a 2^20-entry table, the worker's expiry every 1 ms of virtual
//!   time (`Table::expire_tick`): miss lookup, insert, and the expiry each insert causes.
//!   Expiry keeps up, so the table holds about 650 k entries and never fills.
//! - `ct_newconn/udp_full`: the same into a full table of unreplied flows (262 144 entries,
//!   timeouts of an hour): every insert early-drops one.
//! - `ct_newconn/flood_into_assured`: unreplied flows into a full table half of whose
//!   entries are ASSURED (a SYN flood against established connections): early drop must
//!   find the not-assured half.
//! - `nat_newconn/masquerade_fill_{50,90,99}_w{1,4}`: SNAT of a new connection to one
//!   public address and one server (perfgen's shape) with 50 / 90 / 99 % of the worker's
//!   ports of the default range in use: port choice, insert, and removal of the oldest
//!   connection (so the fill stays put), on 1 and 4 workers (worker 0's share).
//! - `pipeline_newconn/snat_steady`: the whole worker pipeline (`Pipeline::process`) on
//!   single-packet UDP flows from 198.18.0.0/16 through perf/rulesets/router.nft (the
//!   appliance scenario's ruleset: forward chain, SNAT to a 64-address pool), a new flow
//!   every 2 µs of virtual time with a 1 s UDP timeout and the worker's tick every 1 ms
//!   (`Pipeline::tick`): parse, miss, three hooks of rules, route, NAT binding, rewrite,
//!   insert, and the expiry each insert causes. Writing the frame is not in the step.
//!   Events as in a daemon nobody subscribes to: the worker idles past the auto events'
//!   window (`EVENT_IDLE_NS`) before the first flow, so no event is recorded.
//!
//! `cargo bench -p dataplane --no-default-features --bench newconn -- --warm-up-time 1 --measurement-time 3`
//!
//! Instruction counts (repeatable on a loaded machine): with `NEWCONN_STEPS=N` each scenario
//! named in `NEWCONN_ONLY` (all when unset) runs its set-up and then N steps without
//! criterion; under `valgrind --tool=callgrind --toggle-collect='*::step'` the collected
//! instructions / N are one step's.

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::conntrack::table::EVENT_IDLE_NS;
use dataplane::conntrack::{EntryId, FlowKey, InsertHints, Table, Tunables};
use dataplane::nat::{
    CtNat, NatAction, NatEnv, NatFlags, NatKind, NatRange, Owner, PortAllocator, SYMMETRIC_RSS_KEY,
    Tuple,
};
use dataplane::rules::{Publisher, load_text};
use dataplane::wire::{Addr, Family, Fragment, IpInfo, L4Info, proto};
use dataplane::worker::{Action, Pipeline, SCRATCH_LEN};

mod common;

/// UDP flow `i` (distinct for 2^32 values): 198.18.0.0/15 x source ports 1024.. to
/// 198.19.0.1:9, as perfgen sends.
fn udp(i: u32) -> IpInfo {
    let a = i & 0x1_ffff;
    let [_, b, c, d] = a.to_be_bytes();
    IpInfo {
        family: Family::V4,
        src: Addr::from_v4([198, 18 | b, c, d]),
        dst: Addr::from_v4([198, 19, 0, 1]),
        proto: proto::UDP,
        ttl: 64,
        l3_off: 14,
        l4_off: 34,
        ip_len: 50,
        frag: Fragment::None,
        l4: Some(L4Info::Udp {
            sport: 1024 + u16::try_from((i >> 17) & 0x7fff).unwrap_or(0),
            dport: 9,
        }),
    }
}

fn key(p: &IpInfo) -> FlowKey {
    FlowKey::from_info(p, 0).expect("UDP has a key")
}

/// Benchmarks `step` under `name`, or (with `NEWCONN_STEPS`) runs it that many times.
fn run(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut step: impl FnMut()) {
    match std::env::var("NEWCONN_STEPS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) => {
            for _ in 0..n {
                step();
            }
        }
        None => {
            g.bench_function(name, |b| b.iter(&mut step));
        }
    }
}

/// Whether scenario `name` is to be set up (`NEWCONN_ONLY`: a comma list; all when unset).
fn wanted(name: &str) -> bool {
    std::env::var("NEWCONN_ONLY").map_or(true, |v| v.split(',').any(|x| x == name))
}

/// One worker's conntrack step for a packet at virtual time `now`: update on a hit,
/// insert on a miss (reusing the miss).
fn packet(t: &mut Table, p: &IpInfo, now: u64) {
    let k = key(p);
    match t.lookup_or_miss(&k) {
        Ok((id, dir)) => {
            black_box(t.update(id, dir, p, now));
        }
        Err(miss) => {
            let hints = InsertHints {
                miss: Some(miss),
                nat_port: false,
            };
            black_box(t.insert_with(k, k.inverse(), p, now, hints).ok());
        }
    }
}

/// New flows at `ns_per_flow` of virtual time each, the worker's tick every 1 ms.
struct Stream {
    t: Table,
    i: u32,
    now: u64,
    ns_per_flow: u64,
    next_tick: u64,
}

impl Stream {
    fn new(t: Table, ns_per_flow: u64, start: u32) -> Self {
        Stream {
            t,
            i: start,
            now: 1_000_000_000,
            ns_per_flow,
            next_tick: 0,
        }
    }

    #[inline(never)]
    fn step(&mut self) {
        self.i = self.i.wrapping_add(1);
        self.now += self.ns_per_flow;
        packet(&mut self.t, &udp(self.i), self.now);
        if self.now >= self.next_tick {
            self.next_tick = self.now + 1_000_000;
            black_box(self.t.expire_tick(self.now));
        }
    }
}

fn table(cap: u32, tun: Tunables) -> Table {
    Table::new(
        cap,
        Tunables {
            max: cap,
            events: 0,
            ..tun
        },
        0x1234_5678,
    )
}

fn conntrack(c: &mut Criterion) {
    let mut g = c.benchmark_group("ct_newconn");
    g.throughput(Throughput::Elements(1));

    // 500 k new flows/s of virtual time, 1 s UDP timeout: ~650 k live in 2^20 slots.
    let tun = Tunables {
        udp: 1,
        ..Tunables::default()
    };
    if wanted("udp_steady") {
        let mut s = Stream::new(table(1 << 20, tun), 2_000, 0);
        for _ in 0..2_000_000 {
            s.step();
        }
        run(&mut g, "udp_steady", || s.step());
        eprintln!(
            "udp_steady: {} live of {}, {:?}",
            s.t.len(),
            s.t.capacity(),
            s.t.stats()
        );
    }

    // A full table of unreplied flows with hour-long timeouts: every insert early-drops.
    let cap = 1 << 18;
    let tun = Tunables {
        udp: 3600,
        ..Tunables::default()
    };
    if wanted("udp_full") {
        let mut s = Stream::new(table(cap, tun.clone()), 1_000, 0);
        for _ in 0..cap {
            s.step();
        }
        run(&mut g, "udp_full", || s.step());
        eprintln!("udp_full: {} live, {:?}", s.t.len(), s.t.stats());
    }
    if !wanted("flood_into_assured") {
        g.finish();
        return;
    }

    // Half the table ASSURED (replied, then traffic 3 s later), the other half and every
    // new flow unreplied.
    let mut t = table(cap, tun);
    let t0 = 1_000_000_000;
    for i in 0..cap / 2 {
        let p = udp(i);
        let k = key(&p);
        let id = t.insert(k, k.inverse(), &p, t0).expect("room");
        let mut back = p;
        back.src = p.dst;
        back.dst = p.src;
        if let Some(L4Info::Udp { sport, dport }) = p.l4 {
            back.l4 = Some(L4Info::Udp {
                sport: dport,
                dport: sport,
            });
        }
        t.update(id, dataplane::conntrack::Direction::Reply, &back, t0 + 1);
        t.update(
            id,
            dataplane::conntrack::Direction::Original,
            &p,
            t0 + 3_000_000_000,
        );
    }
    let mut s = Stream::new(t, 1_000, cap / 2);
    s.now = t0 + 4_000_000_000;
    for _ in 0..cap {
        s.step();
    }
    run(&mut g, "flood_into_assured", || s.step());
    eprintln!("flood_into_assured: {} live, {:?}", s.t.len(), s.t.stats());
    g.finish();
}

/// SNAT of new connections to one server at a constant fill of the worker's ports.
struct Natted {
    t: Table,
    al: PortAllocator,
    owner: Owner,
    live: VecDeque<EntryId>,
    i: u32,
    now: u64,
}

impl Natted {
    const ENV: NatEnv = NatEnv {
        egress_addr: Some(Addr::from_v4([203, 0, 113, 1])),
        ingress_addr: None,
    };
    const MASQ: NatAction = NatAction {
        kind: NatKind::Masquerade,
        range: NatRange {
            addr: None,
            ports: None,
        },
        flags: NatFlags {
            random: false,
            fully_random: false,
            persistent: false,
        },
    };

    fn new(workers: u16, fill: f64) -> Self {
        let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, workers).expect("valid RETA");
        let mut n = Natted {
            t: table(1 << 17, Tunables::default()),
            al: PortAllocator::new(0).prepared(&owner),
            owner,
            live: VecDeque::new(),
            i: 0,
            now: 1_000_000_000,
        };
        // Worker 0's share of 1024..=65535 for the one remote endpoint.
        let share = 64_512.0 / f64::from(workers);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let target = (share * fill) as usize;
        while n.live.len() < target {
            n.open();
        }
        n
    }

    /// A new connection of worker 0 (every source port kept would be too easy: all share
    /// one source port, so each one searches).
    fn open(&mut self) {
        let p = loop {
            self.i = self.i.wrapping_add(1);
            let mut p = udp(self.i);
            p.l4 = Some(L4Info::Udp {
                sport: 40_000,
                dport: 9,
            });
            let t = Tuple::new(p.src, p.dst, p.proto, 40_000, 9);
            if self.owner.owner(&t) == 0 {
                break p;
            }
        };
        self.now += 1_000;
        let k = key(&p);
        let Err(miss) = self.t.lookup_or_miss(&k) else {
            return;
        };
        let orig = Tuple::new(p.src, p.dst, p.proto, 40_000, 9);
        let b = self.al.bind(
            &orig,
            None,
            Some(&Self::MASQ),
            &Self::ENV,
            &self.owner,
            &mut CtNat::new(&mut self.t, &k),
        );
        if let Ok(b) = b {
            let hints = InsertHints {
                miss: Some(miss),
                nat_port: b.port_held,
            };
            let reply = b.reply_key(&k);
            if let Ok(id) = self.t.insert_with(k, reply, &p, self.now, hints) {
                self.live.push_back(id);
            }
        }
    }

    #[inline(never)]
    fn step(&mut self) {
        self.open();
        if let Some(id) = self.live.pop_front() {
            self.t.remove(id, self.now);
        }
    }
}

fn nat(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat_newconn");
    g.throughput(Throughput::Elements(1));
    for workers in [1u16, 4] {
        for fill in [50u32, 90, 99] {
            let name = format!("masquerade_fill_{fill}_w{workers}");
            if !wanted(&name) {
                continue;
            }
            let mut n = Natted::new(workers, f64::from(fill) / 100.0);
            run(&mut g, &name, || n.step());
            eprintln!(
                "masquerade fill {fill} % w{workers}: {} live, {:?}, pools {:?}",
                n.live.len(),
                n.al.stats(),
                n.t.port_pools().stats()
            );
        }
    }
    g.finish();
}

/// New UDP flows through the appliance's router ruleset with SNAT, one `process` each.
struct Piped {
    p: Pipeline,
    /// The frame as sent (`frame` is rewritten in place by each `process`).
    template: [u8; 14 + 20 + 8 + 18],
    frame: [u8; 14 + 20 + 8 + 18],
    scratch: Vec<u8>,
    i: u32,
    now: u64,
    next_tick: u64,
}

impl Piped {
    fn new() -> Self {
        let names = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
            .into_iter()
            .collect();
        let text = include_str!("../../perf/rulesets/router.nft");
        let rules = Publisher::new(load_text(text, &names, 1).expect("router.nft loads")).worker();
        let tun = Tunables {
            max: 1 << 20,
            udp: 1,
            udp_stream: 1,
            ..Tunables::default()
        };
        let mut frame = [0u8; 14 + 20 + 8 + 18];
        frame[0..6].copy_from_slice(&common::LAN_MAC);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 1, 10]);
        frame[12..14].copy_from_slice(&[8, 0]);
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&46u16.to_be_bytes());
        frame[22] = 64;
        frame[23] = proto::UDP;
        frame[30..34].copy_from_slice(&[203, 0, 50, 7]);
        frame[36..38].copy_from_slice(&9u16.to_be_bytes());
        frame[38..40].copy_from_slice(&26u16.to_be_bytes());
        // Production without a subscriber: `nf_conntrack_events` = 2 (auto) records events
        // only until EVENT_IDLE_NS has passed without a take. The worker idles that long
        // before the first flow, so the steps pay what a daemon nobody subscribes to pays.
        let mut p = common::router(16, 1 << 20, tun, Some(rules));
        let idle = 1_000_000_000 + EVENT_IDLE_NS + 1_000_000;
        p.tick(1_000_000_000);
        p.tick(idle);
        Piped {
            p,
            template: frame,
            frame,
            scratch: vec![0; SCRATCH_LEN],
            i: 0,
            now: idle,
            next_tick: 0,
        }
    }

    /// Writes flow `i`'s frame: 198.18.0.0/16 x source ports 1024.. to 203.0.50.7:9
    /// (distinct for 2^16 x 64 512 flows), UDP checksum 0, IPv4 checksum computed.
    fn next_frame(&mut self) {
        self.i = self.i.wrapping_add(1);
        let [_, _, c, d] = self.i.to_be_bytes();
        self.frame = self.template;
        let f = &mut self.frame;
        f[26..30].copy_from_slice(&[198, 18, c, d]);
        let sport = 1024 + u16::try_from((self.i >> 16) % 64_512).unwrap_or(0);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[24..26].fill(0);
        let mut sum: u32 = f[14..34]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let c = !u16::try_from(sum).unwrap_or(0);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }

    #[inline(never)]
    fn step(&mut self) -> Action {
        self.now += 2_000;
        let a = self
            .p
            .process(0, &mut self.frame, self.now, &mut self.scratch);
        if self.now >= self.next_tick {
            self.next_tick = self.now + 1_000_000;
            self.p.tick(self.now);
        }
        a
    }
}

fn pipeline(c: &mut Criterion) {
    if !wanted("snat_steady") {
        return;
    }
    let mut g = c.benchmark_group("pipeline_newconn");
    g.throughput(Throughput::Elements(1));
    let mut s = Piped::new();
    for _ in 0..1_000_000 {
        s.next_frame();
        let a = s.step();
        assert!(matches!(a, Action::Forward { port: 1, .. }), "{a:?}");
    }
    run(&mut g, "snat_steady", || {
        s.next_frame();
        black_box(s.step());
    });
    let stats = s.p.conntrack().stats();
    assert_eq!(
        (s.p.conntrack().pending_events(), stats.events_dropped),
        (0, 0),
        "no event is recorded without a subscriber"
    );
    eprintln!("snat_steady: {} live, {stats:?}", s.p.conntrack().len());
    g.finish();
}

criterion_group!(benches, conntrack, nat, pipeline);
criterion_main!(benches);
