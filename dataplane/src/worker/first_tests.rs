//! Tests of the first-packet cache in the pipeline (`rules::first`): a pipeline that
//! takes the verdict and NAT decision of a cached class must leave exactly what one that
//! evaluates every hook leaves — the same actions, frames, ICMP replies, worker counters,
//! conntrack entries and statistics, and rule counters — over random first packets,
//! replies and ruleset swaps.

#![allow(clippy::cast_possible_truncation)] // test data generators

use proptest::prelude::*;

use super::pipe_tests::{
    GW1_MAC, HOST_MAC, Pkt, WAN_MAC, assert_same_tables, config, neighbors, routes,
};
use super::pipeline::Pipeline;
use super::{Action, SCRATCH_LEN};
use crate::rules::{PortsByName, Publisher};
use crate::wire::proto;

const SEC: u64 = 1_000_000_000;

/// Masquerade and DNAT; a filter with counters, sub-chains, reject and a concatenation.
const RS_NAT: &str = r#"
table ip nat {
 chain pre {
  type nat hook prerouting priority -100; policy accept;
  iifname "wan" udp dport 8080 counter dnat to 198.18.0.10:80
  iifname "wan" tcp dport 8000-8099 dnat to 198.18.0.10
 }
 chain post {
  type nat hook postrouting priority 100; policy accept;
  oifname "wan" ip daddr 203.0.113.0/25 counter masquerade
  oifname "wan" snat to 198.19.0.1
 }
}
table inet filter {
 chain sub {
  udp dport 53 counter accept
  tcp dport { 22, 25 } counter reject with tcp reset
  return
 }
 chain forward {
  type filter hook forward priority 0; policy drop;
  ct state established,related counter accept
  ct state invalid counter drop
  ip saddr . udp dport { 198.18.0.11 . 54, 198.18.0.10 . 55 } counter drop
  iifname "lan" jump sub
  iifname "lan" ip daddr 203.0.113.128/25 udp dport 1000-2000 counter reject
  iifname "lan" counter accept
  ct status dnat counter accept
 }
 chain input {
  type filter hook input priority 0; policy accept;
  icmp type echo-request counter accept
  udp dport 7 counter reject
 }
}
"#;

/// Filter only, a rate limit (stateful: never cached) on one port.
const RS_LIMIT: &str = r#"
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy accept;
  ct state established accept
  udp dport 54 limit rate 2/second counter accept
  udp dport 54 counter drop
  tcp flags & (syn|ack) == syn counter
  ip daddr 203.0.113.0/26 counter drop
 }
}
"#;

/// Everything accepted, SNAT to an address range.
const RS_OPEN: &str = r#"
table ip nat {
 chain post {
  type nat hook postrouting priority 100; policy accept;
  snat to 198.19.0.1-198.19.0.2
 }
}
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy accept;
  counter
 }
}
"#;

const RULESETS: [&str; 3] = [RS_NAT, RS_LIMIT, RS_OPEN];

pub(super) fn names() -> PortsByName {
    [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect()
}

/// A pipeline with the first-packet cache and one without, fed the same frames.
struct Twin {
    on: Pipeline,
    off: Pipeline,
    pubs: [Publisher; 2],
    now: u64,
}

impl Twin {
    fn new(ruleset: &str) -> Self {
        let pubs =
            [0, 1].map(|_| Publisher::new(crate::rules::load_text(ruleset, &names(), 1).unwrap()));
        let mk =
            |p: &Publisher| Pipeline::new(0, 1, &config(), routes(), neighbors(), Some(p.worker()));
        let (on, mut off) = (mk(&pubs[0]), mk(&pubs[1]));
        off.set_first_cache(false);
        Twin {
            on,
            off,
            pubs,
            now: SEC,
        }
    }

    /// One frame on `port` through both: the same action and bytes out.
    fn send(&mut self, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
        let (mut a, mut b) = (frame.to_vec(), frame.to_vec());
        let (mut sa, mut sb) = (vec![0u8; SCRATCH_LEN], vec![0u8; SCRATCH_LEN]);
        let x = self.on.process(port, &mut a, self.now, &mut sa);
        let y = self.off.process(port, &mut b, self.now, &mut sb);
        assert_eq!(x, y, "action");
        match x {
            Action::Reply { len, .. } => {
                let len = usize::from(len);
                assert_eq!(sa[..len], sb[..len], "reply");
            }
            _ => assert_eq!(a, b, "frame as it left"),
        }
        (x, a)
    }

    fn tick(&mut self, dt: u64) {
        self.now += dt;
        self.on.tick(self.now);
        self.off.tick(self.now);
    }

    fn swap(&mut self, ruleset: &str) {
        for p in &mut self.pubs {
            p.publish(crate::rules::load_text(ruleset, &names(), 1).unwrap());
        }
        self.tick(1);
    }

    /// Everything observable agrees but the cache's own counters.
    fn assert_same_state(&mut self) {
        assert_eq!(self.on.counters(), self.off.counters(), "worker counters");
        let (mut pa, mut pb) = (self.on.proc_counters(), self.off.proc_counters());
        assert_eq!(
            pb.first_cache_hits + pb.first_cache_misses,
            0,
            "off: never asked"
        );
        pa.first_cache_hits = 0;
        pa.first_cache_misses = 0;
        pb.first_cache_hits = 0;
        pb.first_cache_misses = 0;
        assert_eq!(pa, pb, "published counters");
        assert_same_tables(&mut self.on, &mut self.off, &self.pubs);
    }
}

/// A first packet (or, with `reply`, the answer to whatever the last one became).
#[derive(Clone, Debug)]
enum Step {
    /// From the lan host `host` (10 or 11) to 203.0.113.`dst`: UDP, TCP SYN or echo.
    Out {
        host: u8,
        dst: u8,
        l4: u8,
        sport: u16,
        dport: u16,
    },
    /// From 203.0.113.`src` on the wan to the appliance's wan address.
    In {
        src: u8,
        l4: u8,
        sport: u16,
        dport: u16,
    },
    /// The reply to the last forwarded frame.
    Reply,
    Tick(u64),
    Swap(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let dport = prop_oneof![
        Just(53u16),
        Just(54),
        Just(55),
        Just(22),
        Just(7),
        Just(80),
        1000u16..1004,
        Just(8080),
        8000u16..8002
    ];
    prop_oneof![
        8 => (10u8..12, prop_oneof![1u8..4, 126u8..130, Just(1)], 0u8..3, 1024u16..65535, dport.clone())
            .prop_map(|(host, dst, l4, sport, dport)| Step::Out { host, dst, l4, sport, dport }),
        3 => (1u8..3, 0u8..2, 1024u16..65535, dport)
            .prop_map(|(src, l4, sport, dport)| Step::In { src, l4, sport, dport }),
        2 => Just(Step::Reply),
        1 => (0u64..3).prop_map(|s| Step::Tick(s * SEC / 2)),
        1 => (0usize..RULESETS.len()).prop_map(Step::Swap),
    ]
}

pub(super) fn l4_frame(p: &Pkt, l4: u8, sport: u16, dport: u16) -> Vec<u8> {
    match l4 {
        0 => p.udp(sport, dport, 12),
        1 => p.tcp(sport, dport, 0x02, 1000, 0),
        _ => p.frame(crate::wire::build::L4Spec::IcmpEcho {
            request: true,
            id: sport,
            seq: 0,
            payload: &[0; 8],
        }),
    }
}

/// The frame that answers `f` (a forwarded frame as it left): addresses and ports
/// swapped, arriving on the other port from its next hop.
pub(super) fn reply_to(f: &[u8], out_port: u16) -> Option<Vec<u8>> {
    let ip = &f[14..];
    if ip[9] != proto::UDP && ip[9] != proto::TCP {
        return None;
    }
    let src: [u8; 4] = ip[12..16].try_into().ok()?;
    let dst: [u8; 4] = ip[16..20].try_into().ok()?;
    let sport = u16::from_be_bytes([ip[20], ip[21]]);
    let dport = u16::from_be_bytes([ip[22], ip[23]]);
    let mut p = Pkt::v4(dst, src);
    if out_port == 1 {
        p = p.dst_mac(WAN_MAC);
        p.src_mac = GW1_MAC;
    } else {
        p.src_mac = HOST_MAC;
    }
    Some(if ip[9] == proto::UDP {
        p.udp(dport, sport, 12)
    } else {
        p.tcp(dport, sport, 0x12, 5000, 1001)
    })
}

fn run(t: &mut Twin, steps: &[Step]) {
    let mut last: Option<(Vec<u8>, u16)> = None;
    for s in steps {
        match s {
            Step::Out {
                host,
                dst,
                l4,
                sport,
                dport,
            } => {
                let p = Pkt::v4([198, 18, 0, *host], [203, 0, 113, *dst]);
                let (a, f) = t.send(0, &l4_frame(&p, *l4, *sport, *dport));
                if let Action::Forward { port, .. } = a {
                    last = Some((f, port));
                }
            }
            Step::In {
                src,
                l4,
                sport,
                dport,
            } => {
                let mut p = Pkt::v4([203, 0, 113, *src], [198, 19, 0, 1]).dst_mac(WAN_MAC);
                p.src_mac = GW1_MAC;
                let (a, f) = t.send(1, &l4_frame(&p, *l4, *sport, *dport));
                if let Action::Forward { port, .. } = a {
                    last = Some((f, port));
                }
            }
            Step::Reply => {
                if let Some((f, port)) = &last
                    && let Some(r) = reply_to(f, *port)
                {
                    t.send(*port, &r);
                }
            }
            Step::Tick(dt) => t.tick(*dt),
            Step::Swap(i) => t.swap(RULESETS[*i]),
        }
    }
    t.assert_same_state();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With and without the cache: the same actions, bytes, counters, connections and
    /// rule counters over random first packets, replies, time and ruleset swaps.
    #[test]
    fn cached_first_packets_leave_what_evaluation_leaves(
        first in 0usize..RULESETS.len(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut t = Twin::new(RULESETS[first]);
        run(&mut t, &steps);
    }
}

/// The cache is used, and refused where it must be: a class seen before hits in every
/// hook it reaches; a swap makes the old generation's classes miss; a path through a
/// `limit` is evaluated each time.
#[test]
fn classes_hit_after_their_first_packet_and_miss_after_a_swap() {
    let mut t = Twin::new(RS_NAT);
    let out = |sport| Step::Out {
        host: 10,
        dst: 2,
        l4: 0,
        sport,
        dport: 80,
    };
    run(&mut t, &[out(40000)]);
    let pc = t.on.proc_counters();
    // Prerouting, forward, postrouting: evaluated and stored.
    assert_eq!((pc.first_cache_hits, pc.first_cache_misses), (0, 3));
    run(&mut t, &[out(40001), out(40002)]);
    let pc = t.on.proc_counters();
    assert_eq!((pc.first_cache_hits, pc.first_cache_misses), (6, 3));
    assert_eq!(t.on.conntrack().counters().entries, 3);
    // Masqueraded, each keeping its source port (one worker: every port is its own).
    assert_eq!((pc.nat_allocations, pc.nat_ports_kept), (3, 3));
    run(&mut t, &[Step::Swap(0), out(40003)]);
    let pc = t.on.proc_counters();
    assert_eq!(
        (pc.first_cache_hits, pc.first_cache_misses),
        (6, 6),
        "new generation"
    );
    // A rate-limited path is never cached: its misses grow with every packet.
    run(&mut t, &[Step::Swap(1)]);
    let before = t.on.proc_counters();
    let lim = |sport| Step::Out {
        host: 10,
        dst: 2,
        l4: 0,
        sport,
        dport: 54,
    };
    run(&mut t, &[lim(1), lim(2), lim(3), lim(4)]);
    let pc = t.on.proc_counters();
    // Prerouting and postrouting have no chains: skipped before any lookup. The forward
    // hook runs the limit every time (a miss each).
    assert_eq!(pc.first_cache_misses - before.first_cache_misses, 4);
    assert_eq!(pc.first_cache_hits - before.first_cache_hits, 0);
    // Every connection expires (30 s unreplied UDP timeout); the ticks are counted.
    let live = t.on.conntrack().counters().entries;
    let ticks = t.on.proc_counters().ct_expire_ticks;
    for _ in 0..10 {
        t.tick(30 * SEC);
    }
    let pc = t.on.proc_counters();
    assert_eq!(t.on.conntrack().counters().entries, 0);
    assert_eq!(pc.ct_expired, live);
    assert_eq!(pc.ct_expire_ticks, ticks + 10);
    t.assert_same_state();
}
