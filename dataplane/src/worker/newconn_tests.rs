//! Tests of the split insert of forwarded NEW packets (`Pipeline::send_new`,
//! docs/conntrack.md "Insert"): a pipeline that prefetches the reply tuple's buckets and
//! rewrites the packet between the NAT binding and the insert must leave exactly what one
//! that inserts first leaves — the same actions, frames that leave, entry ids, worker, NAT and
//! conntrack counters, events and rule counters — over random bursts of new connections
//! with clashes, repeated flows, a full table and exhausted port ranges.

#![allow(clippy::cast_possible_truncation)] // test data generators

use proptest::prelude::*;

use super::first_tests::{l4_frame, names, reply_to};
use super::pipe_tests::{Pkt, assert_same_tables, config, neighbors, routes};
use super::pipeline::Pipeline;
use super::{Action, SCRATCH_LEN, WorkerCommand};
use crate::conntrack::FlowKey;
use crate::rules::Publisher;

const SEC: u64 = 1_000_000_000;

/// DNS to a 4-port SNAT range (exhausted at the fifth connection), the rest
/// masqueraded to the wan address 198.19.0.1; lan sources outside 198.18.0.0/24 (the
/// pool address itself) leave untranslated, so their reply tuples clash with SNAT
/// choices; one port dropped.
const RULESET: &str = r#"
table ip nat {
 chain post {
  type nat hook postrouting priority 100; policy accept;
  oifname "wan" ip saddr 198.18.0.0/24 udp dport 53 counter snat to 198.19.0.1:1000-1003
  oifname "wan" ip saddr 198.18.0.0/24 counter masquerade
 }
}
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy accept;
  ct state established counter accept
  udp dport 9 counter drop
  counter
 }
}
"#;

/// A pipeline with the split insert and one without, fed the same bursts.
struct Twin {
    staged: Pipeline,
    plain: Pipeline,
    pubs: [Publisher; 2],
    now: u64,
}

impl Twin {
    /// Tables of `capacity` entries, so a burst can fill them.
    fn new(capacity: u32) -> Self {
        let pubs =
            [0, 1].map(|_| Publisher::new(crate::rules::load_text(RULESET, &names(), 1).unwrap()));
        let mut cfg = config();
        cfg.ct_capacity = capacity;
        cfg.tunables
            .set("nf_conntrack_max", capacity.into())
            .unwrap();
        let mk = |p: &Publisher| Pipeline::new(0, 1, &cfg, routes(), neighbors(), Some(p.worker()));
        let (mut staged, mut plain) = (mk(&pubs[0]), mk(&pubs[1]));
        // The daemon's hint is a prefetch instruction; any function shows that the hint
        // changes nothing.
        staged.set_prefetch(|p| {
            std::hint::black_box(p);
        });
        plain.set_staged_insert(false);
        Twin {
            staged,
            plain,
            pubs,
            now: SEC,
        }
    }

    /// One burst on `port` through both as the I/O edge runs a vector (stages 1-2, then
    /// each frame through the fast path or the full pipeline): the same actions, bytes
    /// and entries. Returns the forwarded frames with their output ports.
    fn burst(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<(Vec<u8>, u16)> {
        let mut out = Vec::new();
        let views: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        self.staged.prepare_vector(&views, |_| {});
        self.plain.prepare_vector(&views, |_| {});
        let opts = crate::wire::VERIFY_ALL;
        for (i, f) in frames.iter().enumerate() {
            let (mut a, mut b) = (f.clone(), f.clone());
            let (mut sa, mut sb) = (vec![0u8; SCRATCH_LEN], vec![0u8; SCRATCH_LEN]);
            let run = |p: &mut Pipeline, fr: &mut Vec<u8>, s: &mut Vec<u8>| {
                p.fast_path(i, port, fr, &opts, self.now)
                    .unwrap_or_else(|| p.process(port, fr, self.now, s))
            };
            let x = run(&mut self.staged, &mut a, &mut sa);
            let y = run(&mut self.plain, &mut b, &mut sb);
            assert_eq!(x, y, "action of frame {i}");
            match x {
                Action::Reply { len, .. } => {
                    let len = usize::from(len);
                    assert_eq!(sa[..len], sb[..len], "reply");
                }
                // A dropped frame never leaves: the split insert may have rewritten it
                // before its insert was refused.
                Action::Drop(_) => {}
                _ => assert_eq!(a, b, "frame {i} as it left"),
            }
            if let Some(key) = FlowKey::peek(f) {
                assert_eq!(
                    self.staged.conntrack().lookup(&key),
                    self.plain.conntrack().lookup(&key),
                    "entry id of frame {i}"
                );
            }
            if let Action::Forward { port, .. } = x {
                out.push((a, port));
            }
        }
        self.staged.finish_vector();
        self.plain.finish_vector();
        out
    }

    fn tick(&mut self, dt: u64) {
        self.now += dt;
        self.staged.tick(self.now);
        self.plain.tick(self.now);
    }

    /// Everything observable agrees: worker and NAT counters, conntrack statistics and
    /// listing (slot order), rule counters, events.
    fn assert_same_state(&mut self) {
        assert_eq!(
            self.staged.counters(),
            self.plain.counters(),
            "worker counters"
        );
        assert_eq!(
            self.staged.proc_counters(),
            self.plain.proc_counters(),
            "published counters (NAT included)"
        );
        assert_same_tables(&mut self.staged, &mut self.plain, &self.pubs);
        let events = |p: &mut Pipeline| p.command(WorkerCommand::TakeEvents { max: 100_000 });
        assert_eq!(events(&mut self.staged), events(&mut self.plain), "events");
    }
}

/// A new packet from the lan: host 198.18.0.(9 + `host`) (or, for `host` 0, the pool address
/// 198.19.0.1 itself, not translated) to 203.0.113.`dst`; UDP, TCP SYN or echo.
#[derive(Clone, Debug)]
struct Out {
    host: u8,
    dst: u8,
    l4: u8,
    sport: u16,
    dport: u16,
}

impl Out {
    fn frame(&self) -> Vec<u8> {
        let src = if self.host == 0 {
            [198, 19, 0, 1]
        } else {
            [198, 18, 0, 9 + self.host]
        };
        let p = Pkt::v4(src, [203, 0, 113, self.dst]);
        l4_frame(&p, self.l4, self.sport, self.dport)
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// Frames from the lan in one vector (repeats: several misses of one flow).
    Burst(Vec<Out>),
    /// The replies to the forwarded frames of the last burst, in one vector.
    Replies,
    Tick(u64),
}

fn out() -> impl Strategy<Value = Out> {
    // Few hosts, servers and ports: repeated flows, kept ports that are taken, reply
    // tuples that clash with an untranslated flow of the pool address.
    (
        0u8..4,
        1u8..3,
        prop_oneof![4 => Just(0u8), 1 => Just(1), 1 => Just(2)],
        prop_oneof![1000u16..1006, 40000u16..40003],
        prop_oneof![Just(53u16), Just(80), Just(9)],
    )
        .prop_map(|(host, dst, l4, sport, dport)| Out {
            host,
            dst,
            l4,
            sport,
            dport,
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec(out(), 1..24).prop_map(Step::Burst),
        2 => Just(Step::Replies),
        1 => (0u64..4).prop_map(|s| Step::Tick(s * 20 * SEC)),
    ]
}

fn run(t: &mut Twin, steps: &[Step]) {
    let mut last: Vec<(Vec<u8>, u16)> = Vec::new();
    for s in steps {
        match s {
            Step::Burst(outs) => {
                let frames: Vec<Vec<u8>> = outs.iter().map(Out::frame).collect();
                last = t.burst(0, &frames);
            }
            Step::Replies => {
                let replies: Vec<Vec<u8>> = last
                    .iter()
                    .filter(|(_, port)| *port == 1)
                    .filter_map(|(f, port)| reply_to(f, *port))
                    .collect();
                if !replies.is_empty() {
                    t.burst(1, &replies);
                }
            }
            Step::Tick(dt) => t.tick(*dt),
        }
    }
    t.assert_same_state();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Split insert or not: the same actions, frames, entry ids, counters, events and
    /// rule counters over random bursts into a small table (full: early drop and refusal)
    /// through a 4-port SNAT range (exhaustion) and clashing untranslated flows.
    #[test]
    fn the_split_insert_leaves_what_insert_first_leaves(
        capacity in prop_oneof![Just(8u32), Just(24), Just(1024)],
        steps in proptest::collection::vec(step(), 1..16),
    ) {
        let mut t = Twin::new(capacity);
        run(&mut t, &steps);
    }
}

/// The cases the property test relies on do occur: a clash (an untranslated flow of
/// the pool address holds the reply tuple SNAT picks), port exhaustion, a full table,
/// and a repeated flow in one burst found as an entry by its second packet.
#[test]
fn bursts_reach_clashes_exhaustion_and_a_full_table() {
    let mut t = Twin::new(8);
    let o = |host, sport, dport| Out {
        host,
        dst: if dport == 53 && sport == 2000 { 2 } else { 1 },
        l4: 0,
        sport,
        dport,
    };
    // The pool address's own flow from port 1000, then a DNS flow from a host keeping
    // port 1000 (the pool does not know the untranslated flow): its reply tuple is the
    // first flow's. Then a flow keeping 1001, twice: the repeat finds the entry.
    let frames = [
        o(0, 1000, 53),
        o(1, 1000, 53),
        o(2, 1001, 53),
        o(2, 1001, 53),
    ];
    let fwd = t.burst(0, &frames.map(|o| o.frame()));
    let c = t.staged.conntrack().stats();
    assert_eq!(c.insert_failed, 1, "the clash");
    assert_eq!(fwd.len(), 3, "the clashing packet is dropped");
    assert_eq!((c.insert, c.found), (2, 1));
    // Four more DNS flows (to another server: no clash): three get the rest of
    // 1000-1003, the fourth none.
    let frames = (2..6).map(|h| o(h, 2000, 53).frame()).collect::<Vec<_>>();
    t.burst(0, &frames);
    let pool = crate::nat::PoolKey {
        addr: crate::wire::Addr::from_v4([198, 19, 0, 1]),
        proto: crate::wire::proto::UDP,
    };
    assert_eq!(t.staged.conntrack().port_pools().held(&pool), 4);
    assert_eq!(
        t.staged
            .counters()
            .drop_count(crate::DropReason::NatPortExhausted),
        1
    );
    // Full (8 entries): later new flows early-drop the unreplied ones.
    let frames = (10..20).map(|h| o(h, 3000, 80).frame()).collect::<Vec<_>>();
    t.burst(0, &frames);
    let c = t.staged.conntrack().stats();
    assert!(c.early_drop > 0, "{c:?}");
    assert_eq!(t.staged.conntrack().counters().entries, 8);
    t.assert_same_state();
}
