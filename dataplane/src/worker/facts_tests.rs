//! The facts the worker fills for fact matches (`facts.rs`): `fib daddr type`, `ct
//! direction`, `ct original|reply`, `ip dscp`, `meta pkttype` seen through the whole
//! pipeline, and no cached verdict (so no fast-path recipe) for rules reading a
//! per-packet fact.

use super::pipe_tests::{Pkt, from_wan, run, with_ruleset};
use super::{Action, SCRATCH_LEN};
use crate::DropReason;

const RULES: &str = "table inet f {
	chain pre {
		type filter hook prerouting priority filter; policy accept;
		fib daddr type local counter
		meta pkttype host counter
	}
	chain fwd {
		type filter hook forward priority filter; policy drop;
		ip dscp ef counter drop
		ct direction reply ct original ip saddr 198.18.0.10 counter accept
		ct direction original ct reply ip saddr 203.0.113.5 counter accept
	}
	chain in {
		type filter hook input priority filter; policy drop;
		fib saddr . iif oif missing counter drop
		counter accept
	}
}
";

/// The UDP frame of `pkt` with TOS byte `tos`, checksums valid (UDP does not cover it;
/// the IPv4 header checksum is updated).
fn with_tos(mut f: Vec<u8>, tos: u8) -> Vec<u8> {
    let old = u16::from_be_bytes([f[14], f[15]]);
    f[15] = tos;
    let new = u16::from_be_bytes([f[14], f[15]]);
    let c = u16::from_be_bytes([f[24], f[25]]);
    let c = crate::wire::checksum::update16(c, old, new);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn the_worker_fills_each_fact_a_ruleset_reads() {
    let (mut p, publisher) = with_ruleset(RULES);
    let mut s = vec![0u8; SCRATCH_LEN];
    let counts = || -> Vec<u64> { publisher.current().counters().iter().map(|c| c.0).collect() };
    let out = || Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 8);
    let back = || from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(53, 40000, 8));
    assert!(matches!(
        run(&mut p, 0, &mut out(), &mut s),
        Action::Forward { port: 1, .. }
    ));
    // prerouting: not local, host; forward: original, reply source 203.0.113.5.
    assert_eq!(counts(), vec![0, 1, 0, 0, 1, 0, 0]);
    assert!(matches!(
        run(&mut p, 1, &mut back(), &mut s),
        Action::Forward { port: 0, .. }
    ));
    assert_eq!(
        counts(),
        vec![0, 2, 0, 1, 1, 0, 0],
        "reply of 198.18.0.10's connection"
    );
    // DSCP EF (TOS 0xb8) is dropped whatever the connection.
    assert_eq!(
        run(&mut p, 0, &mut with_tos(out(), 0xb8), &mut s),
        Action::Drop(DropReason::FilterDrop)
    );
    assert_eq!(counts(), vec![0, 3, 1, 1, 1, 0, 0]);
    for _ in 0..3 {
        assert!(matches!(
            run(&mut p, 0, &mut out(), &mut s),
            Action::Forward { .. }
        ));
    }
    let c = p.counters().proc;
    assert_eq!(
        c.verdict_cache_hits, 0,
        "a dscp match is read for every packet"
    );
    assert_eq!(c.recipes_built, 0);
    // To the appliance: local; from the lan subnet on the lan port: the route back exists.
    let mut ping = Pkt::v4([198, 18, 0, 10], [198, 18, 0, 1]).udp(40001, 7, 8);
    let _ = run(&mut p, 0, &mut ping, &mut s);
    let n = counts();
    assert_eq!((n[0], n[5], n[6]), (1, 0, 1));
    // The same source arriving on the wan port fails the reverse-path check.
    let mut spoofed = from_wan(Pkt::v4([198, 18, 0, 10], [198, 19, 0, 1]).udp(40002, 7, 8));
    assert_eq!(
        run(&mut p, 1, &mut spoofed, &mut s),
        Action::Drop(DropReason::FilterDrop)
    );
    let n = counts();
    assert_eq!((n[0], n[5], n[6]), (2, 1, 1));
}
