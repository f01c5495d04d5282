//! Tests of the vector fast path (`fast.rs`): it must leave exactly what the full
//! pipeline alone would leave — the same frames out, byte for byte, the same actions,
//! conntrack entries (state, timeouts, counters), statistics, events, rule counters and
//! worker counters — for any sequence of packets, ruleset swaps, route and neighbour
//! changes and tunables. Each test runs a [`Twin`]: one pipeline fed vectors through the
//! fast path, one fed the same frames one by one through the full pipeline.

#![allow(clippy::cast_possible_truncation)] // test data generators

use std::sync::Arc;

use proptest::prelude::*;

use super::pipe_tests::{
    GW1_MAC, GW2_MAC, HOST_MAC, Pkt, WAN_MAC, assert_checksums, assert_same_tables, config, routes,
};
use super::pipeline::Pipeline;
use super::{Action, SCRATCH_LEN, WorkerCommand, WorkerReply};
use crate::route::{
    Mac, NeighConfig, NeighborCache, NeighborSnapshot, RouteTable, RouteTableBuilder,
};
use crate::rules::{PortsByName, Publisher};
use crate::wire::build::{L4Spec, TcpSpec};
use crate::wire::{Addr, TcpFlags};

const HOST2_MAC: Mac = [2, 0, 0, 0, 1, 11];
const SEC: u64 = 1_000_000_000;

/// Masquerade out of wan, DNAT of wan:8080 to 198.18.0.10:80, stateful filter.
const RS_MASQ: &str = r#"
table ip nat {
 chain pre {
  type nat hook prerouting priority -100; policy accept;
  iifname "wan" udp dport 8080 dnat to 198.18.0.10:80
  iifname "wan" tcp dport 8080 dnat to 198.18.0.10:80
 }
 chain post {
  type nat hook postrouting priority 100; policy accept;
  oifname "wan" masquerade
 }
}
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy drop;
  ct state established,related counter accept
  ct state invalid counter drop
  iifname "lan" accept
  ct status dnat accept
 }
}
"#;

/// SNAT to the wan address; UDP port 54 dropped even when established.
const RS_SNAT: &str = r#"
table ip nat {
 chain post {
  type nat hook postrouting priority 100; policy accept;
  oifname "wan" snat to 198.19.0.1
 }
}
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy drop;
  counter
  udp dport 54 counter drop
  udp sport 54 counter drop
  ct state established,related counter accept
  iifname "lan" counter accept
 }
 chain post {
  type filter hook postrouting priority 0; policy accept;
  oifname "wan" counter
 }
}
"#;

/// No NAT: a plain stateful filter.
const RS_PLAIN: &str = r#"
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy drop;
  ct state established,related accept
  iifname "lan" accept
 }
}
"#;

/// Everything accepted and counted.
const RS_OPEN: &str = r#"
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy accept;
  counter
 }
}
"#;

const RULESETS: [&str; 4] = [RS_MASQ, RS_SNAT, RS_PLAIN, RS_OPEN];

fn names() -> PortsByName {
    [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect()
}

/// The routes of `pipe_tests`, or (`alt`) with 203.0.113.128/25 through the first
/// gateway instead of the second.
fn route_table(alt: bool) -> Arc<RouteTable> {
    if !alt {
        return routes();
    }
    let a = |o: [u8; 4]| Addr::from_v4(o);
    let mut b = RouteTableBuilder::new();
    b.port_address(0, a([198, 18, 0, 1]), 24).unwrap();
    b.port_address(1, a([198, 19, 0, 1]), 24).unwrap();
    b.static_route(
        "203.0.113.0/24".parse().unwrap(),
        a([198, 19, 0, 254]),
        None,
    )
    .unwrap();
    Arc::new(b.build())
}

/// The neighbours of the test network; the first gateway's MAC is `gw1`.
struct Neighbours(NeighborCache<()>);

impl Neighbours {
    fn new() -> Self {
        let mut c = NeighborCache::new(NeighConfig::default());
        let a = |o: [u8; 4]| Addr::from_v4(o);
        c.add_static(0, a([198, 18, 0, 10]), HOST_MAC);
        c.add_static(0, a([198, 18, 0, 11]), HOST2_MAC);
        c.add_static(1, a([198, 19, 0, 254]), GW1_MAC);
        c.add_static(1, a([198, 19, 0, 253]), GW2_MAC);
        Neighbours(c)
    }

    fn set_gw1(&mut self, mac: Mac) -> Arc<NeighborSnapshot> {
        self.0.add_static(1, Addr::from_v4([198, 19, 0, 254]), mac);
        self.snapshot()
    }

    fn snapshot(&mut self) -> Arc<NeighborSnapshot> {
        Arc::new(self.0.snapshot_if_changed().expect("a change to publish"))
    }
}

/// A pipeline fed through the fast path and one fed through the full pipeline only.
struct Twin {
    fast: Pipeline,
    slow: Pipeline,
    pubs: [Publisher; 2],
    neigh: Neighbours,
    now: u64,
    /// Forwarded frames must verify (off when the test sends broken checksums).
    check_sums: bool,
}

impl Twin {
    fn new(ruleset: &str) -> Self {
        let mut neigh = Neighbours::new();
        let snap = neigh.snapshot();
        let pubs =
            [0, 1].map(|_| Publisher::new(crate::rules::load_text(ruleset, &names(), 1).unwrap()));
        let mk = |p: &Publisher| {
            Pipeline::new(0, 1, &config(), routes(), snap.clone(), Some(p.worker()))
        };
        Twin {
            fast: mk(&pubs[0]),
            slow: mk(&pubs[1]),
            pubs,
            neigh,
            now: SEC,
            check_sums: true,
        }
    }

    /// One vector of frames received on `port`: the fast twin runs it as a vector, the
    /// slow twin frame by frame; actions, frames and replies must agree. Returns the
    /// actions and the frames as they left.
    fn burst(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<(Action, Vec<u8>)> {
        let mut a: Vec<Vec<u8>> = frames.to_vec();
        let mut b: Vec<Vec<u8>> = frames.to_vec();
        let mut sa = vec![vec![0u8; SCRATCH_LEN]; frames.len()];
        let mut acts = vec![Action::SlowPath; frames.len()];
        {
            let mut fa: Vec<&mut [u8]> = a.iter_mut().map(Vec::as_mut_slice).collect();
            let mut ss: Vec<&mut [u8]> = sa.iter_mut().map(Vec::as_mut_slice).collect();
            self.fast
                .process_vector(port, &mut fa, self.now, &mut ss, &mut acts);
        }
        let mut out = Vec::new();
        let mut s = vec![0u8; SCRATCH_LEN];
        for (i, f) in b.iter_mut().enumerate() {
            let want = self.slow.process(port, f, self.now, &mut s);
            assert_eq!(acts[i], want, "action of frame {i}");
            match want {
                Action::Reply { len, .. } => {
                    let len = usize::from(len);
                    assert_eq!(sa[i][..len], s[..len], "reply to frame {i}");
                }
                _ => assert_eq!(a[i], *f, "frame {i} as it left"),
            }
            if self.check_sums && matches!(want, Action::Forward { .. }) {
                assert_checksums(f, 14);
            }
            out.push((want, f.clone()));
        }
        out
    }

    fn tick(&mut self, dt: u64) {
        self.now += dt;
        self.fast.tick(self.now);
        self.slow.tick(self.now);
    }

    fn swap(&mut self, ruleset: &str) {
        for p in &mut self.pubs {
            p.publish(crate::rules::load_text(ruleset, &names(), 1).unwrap());
        }
        self.tick(1);
    }

    fn routes(&mut self, alt: bool) {
        let r = route_table(alt);
        drop(self.fast.adopt_routes(r.clone()));
        drop(self.slow.adopt_routes(r));
    }

    fn gw1(&mut self, mac: Mac) {
        let snap = self.neigh.set_gw1(mac);
        drop(self.fast.adopt_neighbors(snap.clone()));
        drop(self.slow.adopt_neighbors(snap));
    }

    fn tunables(&mut self, list: &[(&str, u64)]) {
        let list: Vec<(String, u64)> = list.iter().map(|(n, v)| ((*n).to_string(), *v)).collect();
        for p in [&mut self.fast, &mut self.slow] {
            assert_eq!(
                p.command(WorkerCommand::SetTunables(list.clone())),
                WorkerReply::Done
            );
        }
    }

    /// Everything observable agrees: worker counters (but the fast path's own),
    /// conntrack statistics, every entry as `conntrack -L` lists it, the events, the
    /// rule counters.
    fn assert_same_state(&mut self) {
        let mut cf = self.fast.counters().clone();
        assert!(cf.proc.fast_path <= cf.proc.forwarded);
        cf.proc.fast_path = 0;
        cf.proc.recipes_built = 0;
        // The slow twin builds recipes too (it runs the same pipeline), never uses them.
        let mut cs = self.slow.counters().clone();
        assert_eq!(cs.proc.fast_path, 0);
        cs.proc.recipes_built = 0;
        assert_eq!(cf, cs, "worker counters");
        assert_same_tables(&mut self.fast, &mut self.slow, &self.pubs);
        let events = |p: &mut Pipeline| p.command(WorkerCommand::TakeEvents { max: 100_000 });
        assert_eq!(events(&mut self.fast), events(&mut self.slow), "events");
    }

    fn fast_count(&self) -> u64 {
        self.fast.counters().proc.fast_path
    }
}

fn tcp(pk: &Pkt, sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    pk.frame(L4Spec::Tcp(TcpSpec {
        sport,
        dport,
        seq,
        ack,
        flags: TcpFlags(flags),
        window: 8192,
        payload: &data,
        ..TcpSpec::default()
    }))
}

fn lan(src: [u8; 4], dst: [u8; 4]) -> Pkt {
    let mut p = Pkt::v4(src, dst);
    if src == [198, 18, 0, 11] {
        p.src_mac = HOST2_MAC;
    }
    p
}

fn wan(src: [u8; 4], dst: [u8; 4]) -> Pkt {
    Pkt::v4(src, dst).dst_mac(WAN_MAC).src_mac_of(GW1_MAC)
}

impl Pkt {
    fn src_mac_of(mut self, m: Mac) -> Self {
        self.src_mac = m;
        self
    }
}

/// A masqueraded UDP flow: new, replied, then (after the 2 s that make it a stream,
/// ASSURED) fast in both directions, the bytes and state always those of the full path.
#[test]
fn an_assured_udp_flow_is_forwarded_by_the_fast_path_as_the_full_path_would() {
    let mut t = Twin::new(RS_MASQ);
    let out = || lan([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 18);
    let first = t.burst(0, &[out()]);
    let (ms, _, mport, _) = super::pipe_tests::tuple_of(&first[0].1);
    assert_eq!(ms, [198, 19, 0, 1], "masqueraded");
    let back = || wan([203, 0, 113, 5], [198, 19, 0, 1]).udp(53, mport, 18);
    t.tick(SEC / 10);
    t.burst(1, &[back()]);
    assert_eq!(t.fast_count(), 0);
    t.tick(3 * SEC);
    // Each direction: the first packet is the full path's (ASSURED now, recipe built),
    // the rest of the vector is the fast path's.
    t.burst(0, &[out(), out(), out(), out()]);
    t.burst(1, &[back(), back(), back()]);
    assert_eq!(t.fast_count(), 3 + 2);
    t.assert_same_state();
    for _ in 0..5 {
        t.tick(SEC / 3);
        t.burst(0, &[out(), out()]);
        t.burst(1, &[back(), back()]);
    }
    assert_eq!(t.fast_count(), 5 + 20);
    t.assert_same_state();
    // TTL 1: the full path answers time exceeded; the recipe stays.
    t.burst(
        0,
        &[
            lan([198, 18, 0, 10], [203, 0, 113, 5])
                .ttl(1)
                .udp(40000, 53, 18),
            out(),
        ],
    );
    assert_eq!(t.fast_count(), 26);
    t.assert_same_state();
}

/// A TCP connection: the handshake and the close take the full path, the data between
/// them the fast path, with the window tracking run on every packet (an out-of-window
/// segment is refused by the tracker and decided by the full path).
#[test]
fn established_tcp_data_is_fast_and_tracked_exactly() {
    let mut t = Twin::new(RS_MASQ);
    let (c, s) = ([198, 18, 0, 10], [203, 0, 113, 5]);
    let syn = tcp(&lan(c, s), 40002, 80, 0x02, 1000, 0, 0);
    let out = t.burst(0, &[syn]);
    let (_, _, mport, _) = super::pipe_tests::tuple_of(&out[0].1);
    let m = [198, 19, 0, 1];
    t.burst(1, &[tcp(&wan(s, m), 80, mport, 0x12, 5000, 1001, 0)]);
    t.burst(0, &[tcp(&lan(c, s), 40002, 80, 0x10, 1001, 5001, 0)]);
    let (mut cs, mut ss) = (1001u32, 5001u32);
    for round in 0..4 {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(tcp(&lan(c, s), 40002, 80, 0x18, cs, ss, 100));
            cs += 100;
        }
        t.burst(0, &v);
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(tcp(&wan(s, m), 80, mport, 0x18, ss, cs, 200));
            ss += 200;
        }
        t.burst(1, &v);
        t.tick(SEC / 4);
        assert!(t.fast_count() > round, "data goes fast");
        t.assert_same_state();
    }
    // Out of window (far ahead), then FIN both ways, then a late ACK.
    t.burst(
        0,
        &[tcp(&lan(c, s), 40002, 80, 0x18, cs + 10_000_000, ss, 100)],
    );
    t.burst(0, &[tcp(&lan(c, s), 40002, 80, 0x11, cs, ss, 0)]);
    t.burst(1, &[tcp(&wan(s, m), 80, mport, 0x11, ss, cs + 1, 0)]);
    t.burst(0, &[tcp(&lan(c, s), 40002, 80, 0x10, cs + 1, ss + 1, 0)]);
    t.assert_same_state();
}

/// Recipes are invalidated by a ruleset swap, a route change and a neighbour MAC change:
/// the next packet takes the full path (which sees the change), later ones are fast
/// again with the new outcome.
#[test]
fn ruleset_route_and_neighbour_changes_force_the_slow_path() {
    let mut t = Twin::new(RS_PLAIN);
    let out = || lan([198, 18, 0, 11], [203, 0, 113, 200]).udp(40001, 54, 10);
    let back = || wan([203, 0, 113, 200], [198, 18, 0, 11]).udp(54, 40001, 10);
    t.burst(0, &[out()]);
    t.burst(1, &[back()]);
    t.tick(3 * SEC);
    t.burst(0, &[out(), out()]);
    let fast = t.fast_count();
    assert_eq!(fast, 1);
    let via = |r: &[(Action, Vec<u8>)]| (r[0].0, r[0].1[0..6].to_vec());
    // Route change: 203.0.113.128/25 now through the first gateway.
    t.routes(true);
    let r = t.burst(0, &[out(), out()]);
    assert_eq!(
        t.fast_count(),
        fast + 1,
        "the first packet after the change is slow"
    );
    assert_eq!(via(&r), (r[1].0, GW1_MAC.to_vec()));
    assert_eq!(r[1].1[0..6], GW1_MAC, "the fast path follows the new route");
    // Neighbour change: the first gateway's MAC changes.
    let new_mac = [2, 0, 0, 0, 2, 99];
    t.gw1(new_mac);
    let r = t.burst(0, &[out(), out()]);
    assert_eq!(t.fast_count(), fast + 2);
    assert_eq!(
        (r[0].1[0..6].to_vec(), r[1].1[0..6].to_vec()),
        (new_mac.to_vec(), new_mac.to_vec())
    );
    // Ruleset swap: port 54 is dropped, established or not.
    t.swap(RS_SNAT);
    let r = t.burst(0, &[out(), out()]);
    assert_eq!(
        t.fast_count(),
        fast + 2,
        "nothing fast: dropped by the new ruleset"
    );
    assert!(r.iter().all(|(a, _)| matches!(a, Action::Drop(_))));
    t.swap(RS_OPEN);
    t.burst(0, &[out(), out(), out()]);
    assert_eq!(t.fast_count(), fast + 4);
    // Tunables: recipes hold timeouts.
    t.tunables(&[("nf_conntrack_udp_timeout_stream", 300)]);
    t.burst(0, &[out(), out()]);
    assert_eq!(t.fast_count(), fast + 5);
    t.assert_same_state();
}

/// A recipe whose connection died (expired) is never used, even by a new connection
/// with the same tuple in the same slot (its translation may differ).
#[test]
fn a_dead_connections_recipe_is_gone_with_it() {
    let mut t = Twin::new(RS_MASQ);
    let out = || lan([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    let first = t.burst(0, &[out()]);
    let (_, _, mport, _) = super::pipe_tests::tuple_of(&first[0].1);
    t.burst(
        1,
        &[wan([203, 0, 113, 5], [198, 19, 0, 1]).udp(53, mport, 8)],
    );
    t.tick(3 * SEC);
    t.burst(0, &[out(), out()]);
    assert_eq!(t.fast_count(), 1);
    // 120 s stream timeout, then expiry.
    for _ in 0..4 {
        t.tick(60 * SEC);
    }
    assert_eq!(t.fast.conntrack().len(), 0);
    t.burst(0, &[out(), out()]);
    assert_eq!(t.fast_count(), 1, "new connection: no recipe yet");
    t.assert_same_state();
}

// ------------------------------------------------------------------ property test

/// One flow of the property test: its tuple as the originator sends it.
#[derive(Clone, Copy, Debug)]
struct Flow {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    tcp: bool,
    /// Originates on the wan side (a DNAT target).
    inbound: bool,
}

const FLOWS: [Flow; 7] = [
    Flow {
        src: [198, 18, 0, 10],
        dst: [203, 0, 113, 5],
        sport: 40000,
        dport: 53,
        tcp: false,
        inbound: false,
    },
    Flow {
        src: [198, 18, 0, 11],
        dst: [203, 0, 113, 200],
        sport: 40001,
        dport: 54,
        tcp: false,
        inbound: false,
    },
    Flow {
        src: [198, 18, 0, 10],
        dst: [203, 0, 113, 5],
        sport: 40002,
        dport: 80,
        tcp: true,
        inbound: false,
    },
    Flow {
        src: [198, 18, 0, 11],
        dst: [203, 0, 113, 200],
        sport: 40003,
        dport: 443,
        tcp: true,
        inbound: false,
    },
    Flow {
        src: [203, 0, 113, 7],
        dst: [198, 19, 0, 1],
        sport: 5000,
        dport: 8080,
        tcp: false,
        inbound: true,
    },
    Flow {
        src: [203, 0, 113, 7],
        dst: [198, 19, 0, 1],
        sport: 5001,
        dport: 8080,
        tcp: true,
        inbound: true,
    },
    Flow {
        src: [198, 18, 0, 10],
        dst: [203, 0, 113, 200],
        sport: 40006,
        dport: 4000,
        tcp: false,
        inbound: false,
    },
];

/// One packet of the property test.
#[derive(Clone, Copy, Debug)]
struct Spec {
    flow: usize,
    reply: bool,
    /// TCP: what it is (see `Gen::frame`); UDP: `kind % 4 == 3` sends no checksum.
    kind: u8,
    payload: u8,
    /// 0–12: normal; 13: TTL 1; 14: TTL 2; 15: bad L4 checksum; 16: first fragment
    /// (MF); 17: broadcast destination MAC.
    shape: u8,
}

#[derive(Clone, Debug)]
enum Op {
    Burst(Vec<Spec>),
    Tick(u64),
    Swap(usize),
    Routes(bool),
    Gw1(u8),
    Tunable(u8),
}

/// Source, destination, source port, destination port.
type Tuple4 = ([u8; 4], [u8; 4], u16, u16);

/// The generator's per-flow memory: sequence numbers, and the tuple the originator's
/// last forwarded packet left with (what the far side answers).
struct Gen {
    seq: [[u32; 2]; FLOWS.len()],
    wire: [Option<Tuple4>; FLOWS.len()],
}

impl Gen {
    fn frame(&mut self, s: &Spec) -> (u16, Vec<u8>) {
        let f = FLOWS[s.flow];
        let d = usize::from(s.reply);
        let (src, dst, sport, dport) = match (s.reply, self.wire[s.flow]) {
            (false, _) => (f.src, f.dst, f.sport, f.dport),
            (true, Some((a, b, sp, dp))) => (b, a, dp, sp),
            (true, None) => (f.dst, f.src, f.dport, f.sport),
        };
        let from_lan = f.inbound == s.reply;
        let port = if from_lan { 0 } else { 1 };
        let mut pk = if from_lan {
            lan(src, dst)
        } else {
            wan(src, dst)
        };
        match s.shape {
            13 => pk.ttl = 1,
            14 => pk.ttl = 2,
            17 => pk.dst_mac = [0xff; 6],
            _ => {}
        }
        let payload = usize::from(s.payload % 48);
        let mut frame = if f.tcp {
            let [mine, theirs] = if s.reply {
                [self.seq[s.flow][1], self.seq[s.flow][0]]
            } else {
                [self.seq[s.flow][0], self.seq[s.flow][1]]
            };
            let (flags, seq, ack, len, advance) = match s.kind % 16 {
                0 => (0x02, mine, 0, 0, 1),
                1 => (0x12, mine, theirs, 0, 1),
                2..=4 => (0x10, mine, theirs, 0, 0),
                5..=10 => (0x18, mine, theirs, payload, payload as u32),
                11 => (0x11, mine, theirs, 0, 1),
                12 => (0x14, mine, theirs, 0, 0),
                13 => (0x18, mine.wrapping_add(50_000_000), theirs, payload, 0),
                14 => (0x03, mine, 0, 0, 0),
                _ => (0x10, mine, theirs.wrapping_add(1), 0, 0),
            };
            self.seq[s.flow][d] = mine.wrapping_add(advance);
            tcp(&pk, sport, dport, flags, seq, ack, len)
        } else {
            let mut fr = pk.udp(sport, dport, payload);
            if s.kind % 4 == 3 {
                fr[40..42].copy_from_slice(&[0, 0]);
            }
            fr
        };
        match s.shape {
            15 => {
                let off = if f.tcp { 50 } else { 40 };
                frame[off] ^= 0x55;
            }
            16 => {
                frame[20] |= 0x20;
                frame[24..26].copy_from_slice(&[0, 0]);
                let c = crate::wire::checksum::checksum(&frame[14..34]);
                frame[24..26].copy_from_slice(&c.to_be_bytes());
            }
            _ => {}
        }
        (port, frame)
    }

    /// Remembers the tuple of a forwarded original-direction packet.
    fn note(&mut self, s: &Spec, action: Action, frame: &[u8]) {
        if !s.reply && matches!(action, Action::Forward { .. }) {
            self.wire[s.flow] = Some(super::pipe_tests::tuple_of(frame));
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..FLOWS.len(),
        any::<bool>(),
        any::<u8>(),
        any::<u8>(),
        0u8..18,
    )
        .prop_map(|(flow, reply, kind, payload, shape)| Spec {
            flow,
            reply,
            kind,
            payload,
            shape,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => prop::collection::vec(spec(), 1..24).prop_map(Op::Burst),
        4 => prop_oneof![0u64..SEC, Just(3 * SEC), Just(40 * SEC), Just(130 * SEC)].prop_map(Op::Tick),
        1 => (0..RULESETS.len()).prop_map(Op::Swap),
        1 => any::<bool>().prop_map(Op::Routes),
        1 => any::<u8>().prop_map(Op::Gw1),
        1 => any::<u8>().prop_map(Op::Tunable),
    ]
}

fn run_ops(first: usize, ops: &[Op]) -> u64 {
    let mut t = Twin::new(RULESETS[first]);
    t.check_sums = false;
    let mut g = Gen {
        seq: [[1000, 900_000]; FLOWS.len()],
        wire: [None; FLOWS.len()],
    };
    for op in ops {
        match op {
            Op::Burst(specs) => {
                let frames: Vec<(u16, Vec<u8>, Spec)> = specs
                    .iter()
                    .map(|s| {
                        let (p, f) = g.frame(s);
                        (p, f, *s)
                    })
                    .collect();
                // Consecutive frames of one port form one vector (an RX burst).
                let mut i = 0;
                while i < frames.len() {
                    let port = frames[i].0;
                    let j = frames[i..]
                        .iter()
                        .position(|f| f.0 != port)
                        .map_or(frames.len(), |k| i + k);
                    let v: Vec<Vec<u8>> = frames[i..j].iter().map(|f| f.1.clone()).collect();
                    let res = t.burst(port, &v);
                    for ((a, f), (_, _, s)) in res.iter().zip(&frames[i..j]) {
                        g.note(s, *a, f);
                    }
                    i = j;
                }
            }
            Op::Tick(dt) => t.tick(*dt),
            Op::Swap(r) => t.swap(RULESETS[*r]),
            Op::Routes(alt) => t.routes(*alt),
            Op::Gw1(b) => t.gw1([2, 0, 0, 0, 3, *b]),
            Op::Tunable(v) => match v % 3 {
                0 => t.tunables(&[("nf_conntrack_udp_timeout_stream", 60 + u64::from(*v))]),
                1 => t.tunables(&[("nf_conntrack_checksum", u64::from(v % 2))]),
                _ => t.tunables(&[("nf_conntrack_tcp_be_liberal", u64::from(v % 2))]),
            },
        }
        t.assert_same_state();
    }
    t.fast_count()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The property of issue 13: for any sequence of packets (flows both ways, TCP
    /// flags and sequence numbers, TTLs, broken checksums, fragments, NAT rulesets),
    /// ruleset swaps, route and neighbour changes and tunables between the vectors, the
    /// fast path's frames equal the full path's byte for byte, and so do the conntrack
    /// entries, statistics and events, the rule counters and the worker counters.
    #[test]
    fn the_fast_path_leaves_exactly_what_the_full_path_leaves(
        first in 0..RULESETS.len(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run_ops(first, &ops);
    }
}

/// The property test's generator does reach the fast path (a long random run forwards a
/// good share of its packets there), so the property is not vacuous.
#[test]
fn random_runs_do_exercise_the_fast_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut total = 0;
    for _ in 0..8 {
        let ops = prop::collection::vec(op(), 60..80)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        total += run_ops(0, &ops);
    }
    eprintln!("fast-path packets: {total}");
    assert!(total > 100, "only {total} fast-path packets");
}
