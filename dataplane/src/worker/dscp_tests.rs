//! `ip dscp set` / `ip6 dscp set` through the whole pipeline: the bytes of the forwarded
//! packet (only the DSCP bits, the TTL and the IPv4 header checksum change), every packet
//! of the flow rewritten (no verdict cache, no fast-path recipe).

use super::mss_tests::pipeline;
use super::pipe_tests::{Pkt, assert_checksums, run};
use super::{Action, SCRATCH_LEN};

const RULES: &str = "table inet f {
	chain fwd {
		type filter hook forward priority filter; policy accept;
		udp dport 53 ip dscp set ef counter
		udp dport 53 ip6 dscp set cs1 counter
	}
}
";

/// A UDP datagram to `dport`; IPv4 with the ECN bits 01 (header checksum refilled).
fn udp(p: &Pkt, dport: u16) -> Vec<u8> {
    let mut f = p.udp(40000, dport, 4);
    if f[14] >> 4 == 4 {
        f[15] = 0x01;
        f[24..26].fill(0);
        let c = crate::wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    f
}

#[test]
fn every_packet_leaves_with_the_dscp_set_and_valid_checksums() {
    let (mut p, publisher) = pipeline(RULES, 1500);
    let mut s = vec![0u8; SCRATCH_LEN];
    let lan = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]);
    for _ in 0..3 {
        let mut f = udp(&lan, 53);
        let before = f.clone();
        assert!(matches!(
            run(&mut p, 0, &mut f, &mut s),
            Action::Forward { port: 1, .. }
        ));
        assert_eq!(f[14 + 1], (0x2e << 2) | 0x01, "ef, ECN kept");
        assert_checksums(&f, 14);
        // Beyond the MACs only the TOS, the TTL and the header checksum changed.
        let changed: Vec<usize> = (12..f.len()).filter(|&i| f[i] != before[i]).collect();
        assert!(
            changed.iter().all(|i| [15, 22, 24, 25].contains(i)),
            "{changed:?}"
        );
    }
    // Another port: untouched.
    let mut other = udp(&lan, 54);
    run(&mut p, 0, &mut other, &mut s);
    assert_eq!(other[14 + 1], 0x01);
    assert_checksums(&other, 14);
    let six = Pkt::v6("2001:db8:1::10", "2001:db8:99::5");
    let mut f = udp(&six, 53);
    f[14 + 1] = 0x0f; // flow label bits (no IPv6 header checksum)
    assert!(matches!(
        run(&mut p, 0, &mut f, &mut s),
        Action::Forward { port: 1, .. }
    ));
    // Traffic class 0x20 (cs1 << 2): version 6, the flow label kept.
    assert_eq!(&f[14..16], &[0x62, 0x0f]);
    assert_checksums(&f, 14);
    let c = publisher.current().counters();
    assert_eq!(
        (c[0].0, c[1].0),
        (3, 1),
        "each family's rule counted its own"
    );
    let c = p.counters().proc;
    assert_eq!(c.verdict_cache_hits, 0, "a mangling rule is never cached");
    assert_eq!(c.recipes_built, 0, "so no fast-path recipe either");
}
