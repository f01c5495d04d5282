//! MSS clamping through the whole pipeline (`tcp option maxseg size set N|rt mtu`): the
//! bytes of the forwarded SYN, its checksums, and no verdict cache or fast-path recipe
//! for the connections the rule touches.

use super::pipe_tests::{Pkt, assert_checksums, config, from_wan, neighbors, routes, run};
use super::pipeline::Pipeline;
use super::{Action, SCRATCH_LEN};
use crate::wire::TcpFlags;
use crate::wire::build::{L4Spec, TcpSpec};

/// A TCP segment lan host → wan server (or back) with `opts` as its options.
pub(super) fn seg(p: &Pkt, sport: u16, dport: u16, flags: u8, opts: &[u8]) -> Vec<u8> {
    p.frame(L4Spec::Tcp(TcpSpec {
        sport,
        dport,
        seq: 1000,
        ack: if flags & 0x10 != 0 { 1001 } else { 0 },
        flags: TcpFlags(flags),
        window: 64240,
        raw_options: opts,
        ..TcpSpec::default()
    }))
}

/// A pipeline running `rules` with the wan port's MTU `wan_mtu`.
pub(super) fn pipeline(rules: &str, wan_mtu: u16) -> (Pipeline, crate::rules::Publisher) {
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let publisher =
        crate::rules::Publisher::new(crate::rules::load_text(rules, &names, 1).unwrap());
    let mut cfg = config();
    cfg.ports[1].mtu = wan_mtu;
    let p = Pipeline::new(0, 1, &cfg, routes(), neighbors(), Some(publisher.worker()));
    (p, publisher)
}

const CLAMP: &str = "table inet f {
	chain fwd {
		type filter hook forward priority filter; policy accept;
		tcp flags syn / syn,rst tcp option maxseg size set rt mtu counter
		tcp flags syn tcp option maxseg size set 1400 counter
	}
}
";

/// TCP options of the frame (IPv4, no IP options).
fn opts(f: &[u8]) -> &[u8] {
    let doff = usize::from(f[14 + 20 + 12] >> 4) * 4;
    &f[14 + 40..14 + 20 + doff]
}

#[test]
fn a_forwarded_syn_leaves_with_the_clamped_mss_and_valid_checksums() {
    let (mut p, publisher) = pipeline(CLAMP, 1300);
    let mut s = vec![0u8; SCRATCH_LEN];
    let lan = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]);
    // MSS 1460 at an odd offset (after one NOP), window scale, SACK permitted.
    let mut syn = seg(
        &lan,
        40000,
        80,
        0x02,
        &[1, 2, 4, 0x05, 0xb4, 4, 2, 0, 1, 3, 3, 7],
    );
    let before = syn.clone();
    assert!(matches!(
        run(&mut p, 0, &mut syn, &mut s),
        Action::Forward { port: 1, .. }
    ));
    // rt mtu: min(wan 1300, lan 1500) - 40 = 1260 = 0x04ec; `set 1400` does not raise it.
    assert_eq!(opts(&syn), &[1, 2, 4, 0x04, 0xec, 4, 2, 0, 1, 3, 3, 7]);
    assert_checksums(&syn, 14);
    // Beyond the MACs, only the TTL, the MSS value and the two checksums changed.
    let changed: Vec<usize> = (12..syn.len()).filter(|&i| syn[i] != before[i]).collect();
    let may = [14 + 8, 14 + 10, 14 + 11, 14 + 36, 14 + 37, 14 + 43, 14 + 44];
    assert!(changed.iter().all(|i| may.contains(i)), "{changed:?}");
    assert!(
        [14 + 8, 14 + 43, 14 + 44]
            .iter()
            .all(|i| changed.contains(i))
    );
    // A smaller MSS is left alone; so is a SYN without the option.
    for o in [&[2u8, 4, 0x04, 0x00][..], &[1, 1, 1, 1]] {
        let mut f = seg(&lan, 40001 + u16::from(o[0]), 80, 0x02, o);
        assert!(matches!(
            run(&mut p, 0, &mut f, &mut s),
            Action::Forward { .. }
        ));
        assert_eq!(opts(&f), o);
        assert_checksums(&f, 14);
    }
    // Both rules counted each SYN (an absent option does not end the rule).
    let c = publisher.current().counters();
    assert_eq!((c[0].0, c[1].0), (3, 3));
}

#[test]
fn the_syn_ack_is_clamped_too_and_the_flow_is_never_cached() {
    let (mut p, _publisher) = pipeline(CLAMP, 1500);
    let mut s = vec![0u8; SCRATCH_LEN];
    let lan = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]);
    let wan = Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]);
    let mut syn = seg(&lan, 40000, 80, 0x02, &[2, 4, 0x23, 0x28]);
    assert!(matches!(
        run(&mut p, 0, &mut syn, &mut s),
        Action::Forward { port: 1, .. }
    ));
    assert_eq!(opts(&syn), &[2, 4, 0x05, 0x78], "9000 → 1400");
    for _ in 0..2 {
        let mut syn_ack = from_wan(seg(&wan, 80, 40000, 0x12, &[2, 4, 0x05, 0xb4]));
        assert!(matches!(
            run(&mut p, 1, &mut syn_ack, &mut s),
            Action::Forward { port: 0, .. }
        ));
        assert_eq!(opts(&syn_ack), &[2, 4, 0x05, 0x78], "1460 → 1400");
        assert_checksums(&syn_ack, 14);
    }
    for _ in 0..3 {
        let mut ack = seg(&lan, 40000, 80, 0x10, &[]);
        assert!(matches!(
            run(&mut p, 0, &mut ack, &mut s),
            Action::Forward { .. }
        ));
    }
    let c = p.counters().proc;
    assert_eq!(
        c.verdict_cache_hits, 0,
        "a rule with a mangle statement is never cached"
    );
    assert_eq!(c.recipes_built, 0, "so no fast-path recipe either");
}
