//! Fragments through the whole pipeline (`frag.rs`): the trains a Linux router forwarded
//! with masquerade (`frag/testdata`) go through fwd's pipeline with the same ruleset and
//! must come out byte for byte as Linux sent them; replies, arrival order, overlaps,
//! timeouts, tunables, and the handoff to the owning worker.

use std::sync::Arc;

use super::WorkerReply;
use super::counters::Counters;
use super::pipe_tests::{Pkt, assert_checksums};
use super::{Action, FragOut, Pipeline, PipelineConfig, PortInfo, SCRATCH_LEN, WorkerCommand};
use crate::DropReason;
use crate::conntrack::Tunables;
use crate::frag::testdata::{fragments, linux};
use crate::frag::{DatagramBuf, FragLimits, Outcome, ReasmTable};
use crate::route::{Mac, NeighConfig, NeighborCache, RouteTable, RouteTableBuilder};
use crate::wire::eth::HEADER_LEN as ETH_LEN;
use crate::wire::{Addr, Family};

const LAN_MAC: Mac = [2, 0, 0, 0, 0, 1];
const WAN_MAC: Mac = [2, 0, 0, 0, 0, 2];
const A_MAC: Mac = [2, 0, 0, 0, 1, 1];
const B_MAC: Mac = [2, 0, 0, 0, 2, 2];
const SEC: u64 = 1_000_000_000;

fn addr(s: &str) -> Addr {
    Addr::from(s.parse::<std::net::IpAddr>().unwrap())
}

/// The capture's router: a (198.18.0.1, 2001:db8:a::1) on port 0 "lan", b (198.51.100.2,
/// 2001:db8:b::2) on port 1 "wan", masquerade out of wan (`frag/testdata/capture.sh`).
const RULESET: &str = "table ip nat {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"wan\" masquerade\n }\n}\ntable ip6 nat6 {\n chain post {\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"wan\" masquerade\n }\n}\n";

fn routes() -> Arc<RouteTable> {
    let mut b = RouteTableBuilder::new();
    b.port_address(0, addr("198.18.0.254"), 24).unwrap();
    b.port_address(1, addr("198.51.100.254"), 24).unwrap();
    b.port_address(0, addr("2001:db8:a::fe"), 64).unwrap();
    b.port_address(1, addr("2001:db8:b::fe"), 64).unwrap();
    Arc::new(b.build())
}

fn config(hw_rss: bool) -> PipelineConfig {
    let port = |mac| PortInfo {
        mac,
        mtu: 1500,
        hw_rss,
    };
    PipelineConfig {
        ports: vec![port(LAN_MAC), port(WAN_MAC)],
        ct_capacity: 1024,
        tunables: Tunables::default(),
        owner: None,
        ct_seed: Some(0x5eed),
        expect: None,
        nat_node: Default::default(),
    }
}

/// Workers `0..n` of a router running [`RULESET`] (ownership in software when `n > 1`).
fn routers(n: u16) -> (Vec<Pipeline>, crate::rules::Publisher) {
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let compiled = crate::rules::load_text(RULESET, &names, usize::from(n)).unwrap();
    let publisher = crate::rules::Publisher::new(compiled);
    let mut c: NeighborCache<()> = NeighborCache::new(NeighConfig::default());
    c.add_static(0, addr("198.18.0.1"), A_MAC);
    c.add_static(0, addr("2001:db8:a::1"), A_MAC);
    c.add_static(1, addr("198.51.100.2"), B_MAC);
    c.add_static(1, addr("2001:db8:b::2"), B_MAC);
    let neigh = Arc::new(c.snapshot_if_changed().unwrap());
    let workers = (0..n)
        .map(|w| {
            Pipeline::new(
                w,
                n,
                &config(n == 1),
                routes(),
                neigh.clone(),
                Some(publisher.worker()),
            )
        })
        .collect();
    (workers, publisher)
}

fn router() -> Pipeline {
    let (mut w, _publisher) = routers(1);
    w.pop().unwrap()
}

/// An IP packet as an Ethernet frame from `src_mac` to `dst_mac`.
fn frame(ip: &[u8], dst_mac: Mac, src_mac: Mac) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + ip.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(if ip[0] >> 4 == 4 {
        &[8, 0]
    } else {
        &[0x86, 0xdd]
    });
    f.extend_from_slice(ip);
    f
}

/// What one frame became: the fragments the edge would take (with where they go), or the
/// action when it is not `Fragments`.
enum Out {
    Frames(FragOut, Vec<Vec<u8>>),
    Other(Action),
}

fn deliver(p: &mut Pipeline, port: u16, f: &[u8], now: u64, handed: bool) -> Out {
    let mut f = f.to_vec();
    let mut s = vec![0u8; SCRATCH_LEN];
    let a = if handed {
        p.process_handoff(port, &mut f, now, &mut s)
    } else {
        p.process(port, &mut f, now, &mut s)
    };
    let Action::Fragments { out, count } = a else {
        return Out::Other(a);
    };
    let mut frames = Vec::new();
    for _ in 0..count {
        let mut b = vec![0u8; 2048];
        let n = p.next_fragment(&mut b).expect("an announced fragment");
        b.truncate(n);
        frames.push(b);
    }
    assert_eq!(
        p.next_fragment(&mut [0u8; 2048]),
        None,
        "more than announced"
    );
    Out::Frames(out, frames)
}

/// Delivers a train; every frame but the last is held, the last one's fragments return.
fn train(p: &mut Pipeline, port: u16, frames: &[Vec<u8>]) -> (FragOut, Vec<Vec<u8>>) {
    for (i, f) in frames.iter().enumerate() {
        match deliver(p, port, f, SEC, false) {
            Out::Other(Action::Held) if i + 1 < frames.len() => {}
            Out::Frames(out, v) if i + 1 == frames.len() => return (out, v),
            Out::Frames(..) => panic!("fragment {i} completed early"),
            Out::Other(a) => panic!("fragment {i}: {a:?}"),
        }
    }
    panic!("empty train")
}

/// The Linux `in:` train of `family`, as frames from a.
fn linux_in(family: Family) -> Vec<Vec<u8>> {
    let prefix = if family == Family::V4 {
        "in: IP "
    } else {
        "in: IP6 "
    };
    linux(prefix)
        .iter()
        .map(|ip| frame(ip, LAN_MAC, A_MAC))
        .collect()
}

/// What Linux's router sent to b (`out:`), IPv6 with the fragment id of the input (Linux
/// picks a fresh one on output, `ipv6_select_ident`; fwd keeps the datagram's).
fn linux_out(family: Family) -> Vec<Vec<u8>> {
    let (outp, inp) = if family == Family::V4 {
        ("out: IP ", "in: IP ")
    } else {
        ("out: IP6 ", "in: IP6 ")
    };
    let ident = linux(inp)[0][44..48].to_vec();
    linux(outp)
        .into_iter()
        .map(|mut ip| {
            if family == Family::V6 {
                ip[44..48].copy_from_slice(&ident);
            }
            frame(&ip, B_MAC, WAN_MAC)
        })
        .collect()
}

/// Reassembles frames (Ethernet) with a fresh table: the datagram.
fn reassemble(family: Family, frames: &[Vec<u8>]) -> Vec<u8> {
    let limits = if family == Family::V4 {
        FragLimits::IPV4_DEFAULT
    } else {
        FragLimits::IPV6_DEFAULT
    };
    let mut t = ReasmTable::new(family, limits).unwrap();
    let mut out = DatagramBuf::new();
    for f in frames {
        if let Outcome::Complete(r) = t.push(0, &f[ETH_LEN..], &mut out).unwrap() {
            return out.bytes()[..r.len].to_vec();
        }
    }
    panic!("incomplete")
}

fn frag_counter(p: &Pipeline, name: &str) -> u64 {
    let c = Counters {
        proc: p.proc_counters(),
        ..Counters::default()
    };
    c.worker_stats(0, 0).frag[name]
}

fn check_masquerade_train(family: Family, order: &[usize]) {
    let mut p = router();
    let input = linux_in(family);
    let frames: Vec<_> = order.iter().map(|&i| input[i].clone()).collect();
    let (out, got) = train(&mut p, 0, &frames);
    assert_eq!(out, FragOut::Port(1));
    let want = linux_out(family);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "{family:?} fragment {i} differs from Linux's");
    }
    assert_eq!(p.conntrack().len(), 1, "the datagram is tracked once");
    let (v, p6) = if family == Family::V4 {
        ("ipv4.", "")
    } else {
        ("ipv6.", "Ip6")
    };
    assert_eq!(frag_counter(&p, &format!("{v}{p6}ReasmReqds")), 3);
    assert_eq!(frag_counter(&p, &format!("{v}{p6}ReasmOKs")), 1);
    assert_eq!(
        p.counters().rx,
        3,
        "the datagram is not counted as received"
    );
    assert_eq!(p.frag_state().table(family).mem(), 0);
}

#[test]
fn linux_v4_train_through_masquerade_leaves_as_linux_sent_it() {
    check_masquerade_train(Family::V4, &[0, 1, 2]);
}

#[test]
fn linux_v6_train_through_masquerade_leaves_as_linux_sent_it() {
    check_masquerade_train(Family::V6, &[0, 1, 2]);
}

#[test]
fn out_of_order_trains_leave_in_order_as_linux_sent_them() {
    check_masquerade_train(Family::V4, &[2, 0, 1]);
    check_masquerade_train(Family::V6, &[1, 2, 0]);
}

/// The echo of b's 4000 bytes, fragmented as b's kernel would: back through the router,
/// un-masqueraded on every fragment, L4 checksum right over the whole datagram.
#[test]
fn fragmented_replies_are_translated_back_on_every_fragment() {
    for family in [Family::V4, Family::V6] {
        let mut p = router();
        train(&mut p, 0, &linux_in(family));
        let (a, b, wan) = if family == Family::V4 {
            ("198.18.0.1", "198.51.100.2", "198.51.100.254")
        } else {
            ("2001:db8:a::1", "2001:db8:b::2", "2001:db8:b::fe")
        };
        let reply = Pkt {
            family,
            src: addr(b),
            dst: addr(wan),
            ttl: 64,
            dst_mac: WAN_MAC,
            src_mac: B_MAC,
        }
        .udp(7, 40000, 4000);
        let hl = if family == Family::V4 { 20 } else { 40 };
        let ends = if family == Family::V4 {
            [1480, 2960, 4008]
        } else {
            [1448, 2896, 4008]
        };
        let ip = &reply[ETH_LEN..];
        let frames: Vec<_> = fragments(family, ip, hl, &ends, 0x4242)
            .iter()
            .map(|f| frame(f, WAN_MAC, B_MAC))
            .collect();
        let (out, got) = train(&mut p, 1, &frames);
        assert_eq!(out, FragOut::Port(0));
        assert_eq!(got.len(), 3);
        for (g, f) in got.iter().zip(&frames) {
            assert_eq!(g.len(), f.len(), "{family:?}: the original boundaries");
            assert_eq!(&g[..12], &[A_MAC, LAN_MAC].concat()[..]);
        }
        let d = reassemble(family, &got);
        let mut whole = frame(&d, A_MAC, LAN_MAC);
        assert_checksums(&whole, ETH_LEN);
        let dst = if family == Family::V4 {
            Addr::from_v4(whole[ETH_LEN + 16..ETH_LEN + 20].try_into().unwrap())
        } else {
            Addr::from_v6(whole[ETH_LEN + 24..ETH_LEN + 40].try_into().unwrap())
        };
        assert_eq!(dst, addr(a), "{family:?}: un-masqueraded");
        let l4 = ETH_LEN + hl;
        assert_eq!(&whole[l4 + 2..l4 + 4], &40000u16.to_be_bytes());
        // The payload is b's, untouched.
        whole.drain(..l4 + 8);
        assert_eq!(whole, reply[ETH_LEN + hl + 8..].to_vec());
        assert_eq!(p.conntrack().len(), 1);
    }
}

/// Rewrites an IPv4 fragment's offset (and its header checksum).
fn set_v4_offset(f: &mut [u8], offset: u16) {
    let ip = &mut f[ETH_LEN..];
    let mf = ip[6] & 0x20;
    let fo = (offset / 8).to_be_bytes();
    ip[6] = mf | fo[0];
    ip[7] = fo[1];
    ip[10..12].fill(0);
    let c = super::pipe_build::checksum(&ip[..20], 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn overlapping_fragments_drop_the_datagram_and_are_counted() {
    let mut p = router();
    let mut frames = linux_in(Family::V4);
    set_v4_offset(&mut frames[1], 1472);
    assert!(matches!(
        deliver(&mut p, 0, &frames[0], SEC, false),
        Out::Other(Action::Held)
    ));
    assert!(matches!(
        deliver(&mut p, 0, &frames[1], SEC, false),
        Out::Other(Action::Drop(DropReason::FragInvalid))
    ));
    // The held first fragment and the overlapping one.
    assert_eq!(frag_counter(&p, "ipv4.frag_overlap"), 2);
    assert_eq!(frag_counter(&p, "ipv4.ReasmOverlaps"), 1);
    assert_eq!(frag_counter(&p, "ipv4.ReasmFails"), 1);
    assert_eq!(p.counters().drop_count(DropReason::FragInvalid), 1);
    // The last fragment alone starts a datagram that never completes: nothing tracked.
    assert!(matches!(
        deliver(&mut p, 0, &frames[2], SEC, false),
        Out::Other(Action::Held)
    ));
    assert_eq!(p.conntrack().len(), 0);
}

#[test]
fn incomplete_datagrams_time_out_after_ipfrag_time_which_is_tunable() {
    let mut p = router();
    let frames = linux_in(Family::V4);
    // Refused as a set: the low threshold above the high one.
    let bad = WorkerCommand::SetTunables(vec![
        ("ipfrag_high_thresh".into(), 1 << 20),
        ("ipfrag_low_thresh".into(), 2 << 20),
    ]);
    assert!(
        matches!(p.command(bad), WorkerReply::Error(e) if e.field.as_deref() == Some("ipfrag_low_thresh"))
    );
    let set = WorkerCommand::SetTunables(vec![("ipfrag_time".into(), 5)]);
    assert_eq!(p.command(set), WorkerReply::Done);
    assert_eq!(p.frag_state().table(Family::V4).limits().time_ns, 5 * SEC);
    // The IPv6 one is its own.
    assert_eq!(p.frag_state().table(Family::V6).limits().time_ns, 60 * SEC);
    assert!(matches!(
        deliver(&mut p, 0, &frames[0], SEC, false),
        Out::Other(Action::Held)
    ));
    p.tick(6 * SEC - 1);
    assert_eq!(frag_counter(&p, "ipv4.ReasmTimeout"), 0);
    p.tick(6 * SEC);
    assert_eq!(frag_counter(&p, "ipv4.ReasmTimeout"), 1);
    assert_eq!(frag_counter(&p, "ipv4.frag_timeout"), 1);
    // The rest no longer completes anything.
    for f in &frames[1..] {
        assert!(matches!(
            deliver(&mut p, 0, f, 6 * SEC, false),
            Out::Other(Action::Held)
        ));
    }
    assert_eq!(p.conntrack().len(), 0);
}

/// Without hardware RSS the fragments of one datagram reach one worker whatever their
/// ports; when another worker owns the flow, the datagram goes to it as its original
/// fragments, and the owner sends it on as Linux did.
#[test]
fn a_datagram_reassembled_by_another_worker_is_handed_to_the_owner() {
    for family in [Family::V4, Family::V6] {
        let input = linux_in(family);
        let (mut w, _publisher) = routers(2);
        // Whichever worker is not the owner hands off.
        let mut receiver = 0;
        let (out, frames) = train(&mut w[receiver], 0, &input);
        let (owner, handed) = match out {
            FragOut::Worker(o) => (usize::from(o), frames),
            _ => {
                receiver = 1;
                let (mut w2, _p2) = routers(2);
                let (out, frames) = train(&mut w2[receiver], 0, &input);
                w = w2;
                let FragOut::Worker(o) = out else {
                    panic!("neither worker hands off: {out:?}")
                };
                (usize::from(o), frames)
            }
        };
        assert_ne!(owner, receiver);
        assert_eq!(
            w[receiver].conntrack().len(),
            0,
            "the receiver tracks nothing"
        );
        // The original fragments, as received.
        let orig: Vec<_> = input.iter().map(|f| f[ETH_LEN..].to_vec()).collect();
        let handed_ip: Vec<_> = handed.iter().map(|f| f[ETH_LEN..].to_vec()).collect();
        assert!(handed_ip == orig, "{family:?}: the original fragments");
        let mut got = None;
        for (i, f) in handed.iter().enumerate() {
            match deliver(&mut w[owner], 0, f, SEC, true) {
                Out::Frames(out, v) => got = Some((i, out, v)),
                Out::Other(Action::Held) => {}
                Out::Other(a) => panic!("{a:?}"),
            }
        }
        let (i, out, v) = got.expect("the owner completes the datagram");
        assert_eq!((i, out), (2, FragOut::Port(1)));
        // As Linux sent it but for the source port: with several workers the port pools
        // pick one whose reply hashes to the owner (docs/nat.md).
        let want = linux_out(family);
        let lens: Vec<_> = v.iter().map(Vec::len).collect();
        assert_eq!(lens, want.iter().map(Vec::len).collect::<Vec<_>>());
        let (got_d, want_d) = (reassemble(family, &v), reassemble(family, &want));
        let hl = if family == Family::V4 { 20 } else { 40 };
        assert_eq!(
            got_d[..hl],
            want_d[..hl],
            "{family:?}: the masqueraded header"
        );
        assert!(
            got_d[hl + 8..] == want_d[hl + 8..],
            "{family:?}: the payload"
        );
        assert_checksums(&frame(&got_d, B_MAC, WAN_MAC), ETH_LEN);
        assert_eq!(w[owner].conntrack().len(), 1);
    }
}

/// The fast path leaves fragments to the full path, even those of a connection that has
/// a recipe: in one vector, the flow's whole packets are the fast path's, its fragments
/// are held and the datagram leaves as Linux sent it.
#[test]
fn fragments_of_a_flow_with_a_recipe_take_the_full_path() {
    let mut p = router();
    let small = |src: &str, dst: &str, sport, dport, macs: (Mac, Mac)| {
        Pkt {
            family: Family::V4,
            src: addr(src),
            dst: addr(dst),
            ttl: 64,
            dst_mac: macs.0,
            src_mac: macs.1,
        }
        .udp(sport, dport, 18)
    };
    let out = || small("198.18.0.1", "198.51.100.2", 40000, 7, (LAN_MAC, A_MAC));
    let back = small("198.51.100.2", "198.51.100.254", 7, 40000, (WAN_MAC, B_MAC));
    let mut s = vec![0u8; SCRATCH_LEN];
    for (port, f, t) in [
        (0, out(), SEC),
        (1, back, SEC + SEC / 10),
        (0, out(), 4 * SEC),
    ] {
        let a = p.process(port, &mut f.clone(), t, &mut s);
        assert!(matches!(a, Action::Forward { .. }), "{a:?}");
    }
    let mut frames = vec![out()];
    frames.extend(linux_in(Family::V4));
    frames.push(out());
    let mut fs: Vec<&mut [u8]> = frames.iter_mut().map(Vec::as_mut_slice).collect();
    let mut scratch = vec![vec![0u8; SCRATCH_LEN]; fs.len()];
    let mut ss: Vec<&mut [u8]> = scratch.iter_mut().map(Vec::as_mut_slice).collect();
    let mut acts = vec![Action::SlowPath; fs.len()];
    let fast = p.counters().proc.fast_path;
    p.process_vector(0, &mut fs, 4 * SEC + 1, &mut ss, &mut acts);
    assert_eq!(
        p.counters().proc.fast_path,
        fast + 2,
        "the whole packets are fast"
    );
    assert!(matches!(acts[0], Action::Forward { port: 1, .. }));
    assert_eq!(acts[1..3], [Action::Held, Action::Held]);
    assert_eq!(
        acts[3],
        Action::Fragments {
            out: FragOut::Port(1),
            count: 3
        }
    );
    assert!(matches!(acts[4], Action::Forward { port: 1, .. }));
    let mut got = Vec::new();
    let mut b = [0u8; 2048];
    while let Some(n) = p.next_fragment(&mut b) {
        got.push(b[..n].to_vec());
    }
    assert!(
        got == linux_out(Family::V4),
        "the datagram as Linux sent it"
    );
}
