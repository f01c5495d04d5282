//! Matches on TCP options through the whole pipeline (`tcp option … exists|missing`,
//! `tcp option maxseg size`, `tcp option window count`) with real SYNs: which rule each
//! segment meets, a non-TCP packet matching none of them, and no verdict cache for a
//! flow whose segments carry different options.

use super::mss_tests::{pipeline, seg};
use super::pipe_tests::{Pkt, from_wan, run};
use super::{Action, SCRATCH_LEN};

const RULES: &str = "table inet f {
	chain fwd {
		type filter hook forward priority filter; policy accept;
		tcp option maxseg missing counter
		tcp option maxseg size < 1000 counter drop
		tcp option window count > 7 counter drop
		tcp option sack-perm exists tcp option maxseg size { 1400, 1460 } counter
		tcp option timestamp exists counter
		tcp option maxseg size 1460 tcp option maxseg size set 1400 tcp option maxseg size 1400 counter
	}
}
";

/// Counters moved since `before`, rule by rule.
fn moved(p: &crate::rules::Publisher, before: &[u64]) -> Vec<u64> {
    let now: Vec<u64> = p.current().counters().iter().map(|c| c.0).collect();
    now.iter().zip(before).map(|(a, b)| a - b).collect()
}

fn packets(p: &crate::rules::Publisher) -> Vec<u64> {
    p.current().counters().iter().map(|c| c.0).collect()
}

#[test]
fn syns_meet_the_rules_their_options_match() {
    let (mut p, publisher) = pipeline(RULES, 1500);
    let mut s = vec![0u8; SCRATCH_LEN];
    let lan = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]);
    // (options, forwarded, the counters that move)
    let cases: &[(&[u8], bool, [u64; 6])] = &[
        // MSS 1460 after a NOP, SACK permitted, window scale 7: rules 4 and 6 (the
        // clamp rule reads the MSS it lowered).
        (
            &[1, 2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7, 0],
            true,
            [0, 0, 0, 1, 0, 1],
        ),
        // No options at all.
        (&[1, 1, 1, 1], true, [1, 0, 0, 0, 0, 0]),
        // MSS 536: dropped by rule 2.
        (&[2, 4, 0x02, 0x18], false, [0, 1, 0, 0, 0, 0]),
        // Window scale 14: dropped by rule 3.
        (&[2, 4, 0x05, 0x78, 1, 3, 3, 14], false, [0, 0, 1, 0, 0, 0]),
        // MSS 1400 without SACK permitted, a timestamp: rule 5 only.
        (
            &[2, 4, 0x05, 0x78, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0],
            true,
            [0, 0, 0, 0, 1, 0],
        ),
        // The option past the end-of-list byte still counts (the kernel's walk).
        (&[0, 0, 0, 0, 4, 2, 0, 0], true, [1, 0, 0, 0, 0, 0]),
    ];
    for (i, (o, forwarded, want)) in cases.iter().enumerate() {
        let before = packets(&publisher);
        let sport = 40000 + u16::try_from(i).unwrap();
        let mut f = seg(&lan, sport, 80, 0x02, o);
        let a = run(&mut p, 0, &mut f, &mut s);
        assert_eq!(
            matches!(a, Action::Forward { port: 1, .. }),
            *forwarded,
            "{o:?}: {a:?}"
        );
        assert_eq!(moved(&publisher, &before), want, "{o:?}");
    }
    // A UDP datagram has no MSS option: `maxseg missing` matches it (as in the kernel:
    // nft 1.0.6 adds no `meta l4proto tcp` before a presence), the fields do not.
    let before = packets(&publisher);
    let mut u = lan.udp(5353, 53, 8);
    assert!(matches!(
        run(&mut p, 0, &mut u, &mut s),
        Action::Forward { port: 1, .. }
    ));
    assert_eq!(moved(&publisher, &before), [1, 0, 0, 0, 0, 0]);
}

#[test]
fn a_flow_matched_on_its_options_is_never_verdict_cached() {
    let rules = "table inet f {
	chain fwd {
		type filter hook forward priority filter; policy accept;
		tcp option sack-perm exists counter
		tcp option maxseg missing counter
	}
}
";
    let (mut p, publisher) = pipeline(rules, 1500);
    let mut s = vec![0u8; SCRATCH_LEN];
    let lan = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]);
    let wan = Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]);
    let mut syn = seg(&lan, 40000, 80, 0x02, &[2, 4, 0x05, 0xb4, 4, 2, 1, 1]);
    assert!(matches!(
        run(&mut p, 0, &mut syn, &mut s),
        Action::Forward { port: 1, .. }
    ));
    let mut syn_ack = from_wan(seg(&wan, 80, 40000, 0x12, &[2, 4, 0x05, 0xb4]));
    assert!(matches!(
        run(&mut p, 1, &mut syn_ack, &mut s),
        Action::Forward { port: 0, .. }
    ));
    for _ in 0..3 {
        let mut ack = seg(&lan, 40000, 80, 0x10, &[]);
        assert!(matches!(
            run(&mut p, 0, &mut ack, &mut s),
            Action::Forward { .. }
        ));
    }
    // Each segment was judged on its own options: the SYN alone has SACK permitted,
    // the three ACKs alone lack an MSS.
    assert_eq!(packets(&publisher), [1, 3]);
    let c = p.counters().proc;
    assert_eq!(
        c.verdict_cache_hits, 0,
        "a rule reading TCP options is not cached"
    );
}
