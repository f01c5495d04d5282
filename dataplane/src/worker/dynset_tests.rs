//! A dynamic set in the pipeline: a rule on a dynamic set is evaluated for every packet
//! (never from the verdict cache, so no fast-path recipe), so a source added by one
//! connection's packet blocks its other, established connections at once, as in the
//! kernel.

use super::pipe_tests::{Pkt, from_wan, with_ruleset};
use super::pipeline::Pipeline;
use super::{Action, SCRATCH_LEN};
use crate::DropReason;

const SEC: u64 = 1_000_000_000;

const RS_BLOCK: &str = r#"
table inet filter {
 set bl { type ipv4_addr; flags dynamic,timeout; timeout 10m; }
 chain forward {
  type filter hook forward priority 0; policy accept;
  ip saddr @bl drop
  udp dport 22 add @bl { ip saddr }
 }
}
"#;

/// The same without the dynamic set: its flow goes fast.
const RS_PLAIN: &str = r#"
table inet filter {
 chain forward {
  type filter hook forward priority 0; policy accept;
  udp dport 22 drop
 }
}
"#;

/// A vector of `n` copies of `frame` on `port`: the actions.
fn burst(p: &mut Pipeline, port: u16, frame: &[u8], n: usize, now: u64) -> Vec<Action> {
    let mut fs: Vec<Vec<u8>> = vec![frame.to_vec(); n];
    let mut ss = vec![vec![0u8; SCRATCH_LEN]; n];
    let mut acts = vec![Action::SlowPath; n];
    let mut fa: Vec<&mut [u8]> = fs.iter_mut().map(Vec::as_mut_slice).collect();
    let mut sa: Vec<&mut [u8]> = ss.iter_mut().map(Vec::as_mut_slice).collect();
    p.process_vector(port, &mut fa, now, &mut sa, &mut acts);
    acts
}

/// An assured UDP flow lan → wan (out, reply, then a stream 3 s later); returns the
/// fast-path count after 10 more vectors of 4 packets each way, all forwarded.
fn assured_flow(p: &mut Pipeline, now: &mut u64) -> u64 {
    let out = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 18);
    let back = from_wan(Pkt::v4([203, 0, 113, 5], [198, 18, 0, 10]).udp(53, 40000, 18));
    burst(p, 0, &out, 1, *now);
    burst(p, 1, &back, 1, *now + SEC / 10);
    *now += 3 * SEC;
    for _ in 0..10 {
        *now += SEC / 10;
        for (port, f) in [(0, &out), (1, &back)] {
            for a in burst(p, port, f, 4, *now) {
                assert!(matches!(a, Action::Forward { .. }), "{a:?}");
            }
        }
    }
    p.counters().proc.fast_path
}

#[test]
fn a_flow_through_a_dynamic_set_rule_never_goes_fast_and_is_blocked_at_once() {
    // The control: the same flow under a plain ruleset goes fast.
    let (mut plain, _pp) = with_ruleset(RS_PLAIN);
    let mut now = SEC;
    assert!(assured_flow(&mut plain, &mut now) > 0);

    let (mut p, _pubs) = with_ruleset(RS_BLOCK);
    let mut now = SEC;
    assert_eq!(assured_flow(&mut p, &mut now), 0, "no recipe for the flow");
    assert_eq!(p.counters().proc.verdict_cache_hits, 0);
    // A new connection from the same source to port 22 adds it to the set ...
    let probe = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40001, 22, 8);
    assert!(matches!(
        burst(&mut p, 0, &probe, 1, now)[0],
        Action::Forward { .. }
    ));
    // ... and the established flow's next packets are dropped.
    let out = Pkt::v4([198, 18, 0, 10], [203, 0, 113, 5]).udp(40000, 53, 18);
    for a in burst(&mut p, 0, &out, 3, now + 1) {
        assert_eq!(a, Action::Drop(DropReason::FilterDrop));
    }
    // Another host is not in the set.
    let other = Pkt::v4([198, 18, 0, 11], [203, 0, 113, 5]).udp(40000, 53, 18);
    assert!(matches!(
        burst(&mut p, 0, &other, 1, now + 2)[0],
        Action::Forward { .. }
    ));
}
