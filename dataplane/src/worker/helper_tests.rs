//! Connection helpers through the whole pipeline (docs/helpers.md): FTP's passive and
//! active data connections and TFTP's answer are `ct state related` (`ct status
//! expected`) under a ruleset that drops every other new connection, also when the data
//! connection's first packet reaches another worker; the control connection is never
//! cached; a partial announcement is dropped and counted.

use super::pipe_tests::{Pkt, config, from_wan, neighbors, routes};
use super::pipeline::Pipeline;
use super::{Action, SCRATCH_LEN};
use crate::drop::DropReason;
use crate::helper::ExpectTable;
use crate::wire::build::L4Spec;
use crate::wire::proto;
use std::sync::Arc;

const RULES: &str = "table ip f {
	ct helper ftp-standard {
		type \"ftp\" protocol tcp
	}
	ct helper tftp-x {
		type \"tftp\" protocol udp
	}
	chain fwd {
		type filter hook forward priority filter; policy drop;
		ct state established counter accept
		ct state related ct status expected counter accept
		tcp dport 21 ct state new ct helper set \"ftp-standard\" accept
		udp dport 69 ct state new ct helper set \"tftp-x\" accept
	}
}
";

const CLIENT: [u8; 4] = [198, 18, 0, 10];
const SERVER: [u8; 4] = [203, 0, 113, 5];

fn pipeline(
    worker: u16,
    workers: u16,
    expect: &Arc<ExpectTable>,
) -> (Pipeline, crate::rules::Publisher) {
    pipeline_with(RULES, worker, workers, expect)
}

pub(super) fn pipeline_with(
    rules: &str,
    worker: u16,
    workers: u16,
    expect: &Arc<ExpectTable>,
) -> (Pipeline, crate::rules::Publisher) {
    let names: crate::rules::PortsByName = [("lan".to_string(), 0u16), ("wan".to_string(), 1u16)]
        .into_iter()
        .collect();
    let publisher = crate::rules::Publisher::new(
        crate::rules::load_text(rules, &names, usize::from(workers)).unwrap(),
    );
    let mut cfg = config();
    cfg.expect = Some(Arc::clone(expect));
    let p = Pipeline::new(
        worker,
        workers,
        &cfg,
        routes(),
        neighbors(),
        Some(publisher.worker()),
    );
    (p, publisher)
}

fn seg(p: &Pkt, sport: u16, dport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    p.tcp_data(sport, dport, flags, seq, ack, payload)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

/// Runs a frame from the lan (port 0) or the wan (port 1) as a handed-off packet (no
/// owner check: the tests choose the worker).
fn go(p: &mut Pipeline, port: u16, f: Vec<u8>) -> Action {
    go_out(p, port, f).0
}

/// [`go`], with the frame that leaves (the scratch buffer's for a frame that grew).
pub(super) fn go_out(p: &mut Pipeline, port: u16, mut f: Vec<u8>) -> (Action, Vec<u8>) {
    let mut s = vec![0u8; SCRATCH_LEN];
    if port == 1 {
        f = from_wan(f);
    }
    let a = p.process_handoff(port, &mut f, 1_000, &mut s);
    let out = match a {
        Action::Forward { len, .. } => f[..usize::from(len)].to_vec(),
        Action::Reply { len, .. } => s[..usize::from(len)].to_vec(),
        _ => f,
    };
    (a, out)
}

/// A UDP datagram from `k` carrying `payload`.
pub(super) fn udp(k: &Pkt, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    k.frame(L4Spec::Udp {
        sport,
        dport,
        payload,
    })
}

fn forwarded(a: Action, port: u16) -> bool {
    matches!(a, Action::Forward { port: p, .. } if p == port)
}

/// The FTP control connection's handshake: client 40000 → server 21.
fn control(p: &mut Pipeline) {
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, CLIENT);
    assert!(forwarded(go(p, 0, seg(&c, 40000, 21, SYN, 100, 0, &[])), 1));
    assert!(forwarded(
        go(p, 1, seg(&s, 21, 40000, SYN | ACK, 500, 101, &[])),
        0
    ));
    assert!(forwarded(
        go(p, 0, seg(&c, 40000, 21, ACK, 101, 501, &[])),
        1
    ));
}

#[test]
fn passive_ftp_data_connection_is_related_and_others_are_dropped() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, publisher) = pipeline(0, 1, &t);
    control(&mut p);
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, CLIENT);
    // Before any announcement the data port is closed.
    assert!(!forwarded(
        go(&mut p, 0, seg(&c, 40001, 10000, SYN, 7, 0, &[])),
        1
    ));
    let pasv = b"227 Entering Passive Mode (203,0,113,5,39,16).\r\n";
    assert!(forwarded(
        go(&mut p, 1, seg(&s, 21, 40000, PSH_ACK, 501, 101, pasv)),
        0
    ));
    assert_eq!(t.len(), 1);
    let (e, left) = t.list(1_000)[0];
    assert_eq!((e.src, e.dst, e.dport), (c.src, s.src, 10000));
    assert_eq!(left, 300_000_000_000 - 1_000 + 1_000);
    // The client's data connection (any source port) is related and expected.
    assert!(forwarded(
        go(&mut p, 0, seg(&c, 40002, 10000, SYN, 9, 0, &[])),
        1
    ));
    assert!(t.is_empty(), "an expectation is used once");
    // Its next original-direction packet before a reply is still related; the reply
    // and what follows are established.
    assert!(forwarded(
        go(&mut p, 0, seg(&c, 40002, 10000, SYN, 9, 0, &[])),
        1
    ));
    assert!(forwarded(
        go(&mut p, 1, seg(&s, 10000, 40002, SYN | ACK, 900, 10, &[])),
        0
    ));
    assert!(forwarded(
        go(&mut p, 0, seg(&c, 40002, 10000, ACK, 10, 901, &[])),
        1
    ));
    // A second data connection to the same port is new: dropped.
    assert!(!forwarded(
        go(&mut p, 0, seg(&c, 40003, 10000, SYN, 9, 0, &[])),
        1
    ));
    let counters = publisher.current().counters();
    // The established rule: the control connection's SYN-ACK, ACK and 227, the data
    // connection's SYN-ACK and ACK; the related rule: the data SYN and its retransmission.
    assert_eq!((counters[0].0, counters[1].0), (5, 2));
    assert_eq!(p.helper_counters().related, 1);
    assert_eq!(p.helper_counters().announced, 1);
    // The control connection is never cached (its payload is inspected on the full
    // path).
    let hits = p.counters().proc.verdict_cache_hits;
    for _ in 0..3 {
        assert!(forwarded(
            go(&mut p, 0, seg(&c, 40000, 21, ACK, 101, 501, &[])),
            1
        ));
    }
    assert_eq!(p.counters().proc.verdict_cache_hits, hits);
    for _ in 0..3 {
        assert!(forwarded(
            go(&mut p, 0, seg(&c, 40002, 10000, ACK, 10, 901, &[])),
            1
        ));
    }
    assert!(p.counters().proc.verdict_cache_hits > hits);
}

#[test]
fn active_ftp_port_makes_the_servers_connection_related_on_another_worker() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut w0, _p0) = pipeline(0, 2, &t);
    let (mut w1, _p1) = pipeline(1, 2, &t);
    control(&mut w0);
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, CLIENT);
    let port = b"PORT 198,18,0,10,157,0\r\n";
    assert!(forwarded(
        go(&mut w0, 0, seg(&c, 40000, 21, PSH_ACK, 101, 501, port)),
        1
    ));
    // The server's connection from port 20 lands on worker 1: related there.
    assert!(forwarded(
        go(&mut w1, 1, seg(&s, 20, 40192, SYN, 77, 0, &[])),
        0
    ));
    assert_eq!(w1.helper_counters().related, 1);
    assert_eq!(t.stats().new, 1);
    // A PORT naming another host than the sender makes no expectation (counted).
    let other = b"PORT 198,18,0,99,157,1\r\n";
    assert!(forwarded(
        go(
            &mut w0,
            0,
            seg(&c, 40000, 21, PSH_ACK, 101 + 24, 501, other)
        ),
        1
    ));
    assert!(t.is_empty());
    assert_eq!(w0.helper_counters().malformed, 1);
    assert!(!forwarded(
        go(&mut w1, 1, seg(&s, 20, 40193, SYN, 77, 0, &[])),
        0
    ));
}

#[test]
fn a_new_announcement_replaces_the_masters_older_expectation() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline(0, 1, &t);
    control(&mut p);
    let c = Pkt::v4(CLIENT, SERVER);
    let mut seq = 101;
    for port in [b"PORT 198,18,0,10,157,0\r\n", b"PORT 198,18,0,10,157,9\r\n"] {
        assert!(forwarded(
            go(&mut p, 0, seg(&c, 40000, 21, PSH_ACK, seq, 501, port)),
            1
        ));
        seq += 24;
    }
    let l = t.list(1_000);
    assert_eq!(l.len(), 1, "max_expected 1");
    assert_eq!(l[0].0.dport, 157 * 256 + 9);
    assert_eq!(t.stats().delete, 1);
}

#[test]
fn a_partial_line_is_dropped_and_a_full_table_drops_the_announcement() {
    let t = Arc::new(ExpectTable::new(1));
    t.set_max(1);
    let (mut p, _publisher) = pipeline(0, 1, &t);
    control(&mut p);
    let c = Pkt::v4(CLIENT, SERVER);
    let a = go(
        &mut p,
        0,
        seg(&c, 40000, 21, PSH_ACK, 101, 501, b"PORT 198,18,0,10,15"),
    );
    assert_eq!(a, Action::Drop(DropReason::HelperPartial));
    // Fill the table from elsewhere, then announce.
    let mut other = t.list(0);
    assert!(other.is_empty());
    other.clear();
    let stranger = crate::helper::Expectation {
        dport: 1,
        master_id: 999,
        ..crate::helper::Expectation {
            family: crate::wire::Family::V4,
            proto: proto::TCP,
            src: c.dst,
            dst: c.src,
            dport: 1,
            helper: crate::helper::HelperKind::Ftp,
            master: crate::conntrack::FlowKey {
                src: c.src,
                dst: c.dst,
                sport: 1,
                dport: 21,
                zone: 0,
                proto: proto::TCP,
                family: crate::wire::Family::V4,
            },
            master_worker: 5,
            master_id: 999,
            nat: None,
        }
    };
    t.insert(&stranger, u64::MAX - 1, 0).unwrap();
    let a = go(
        &mut p,
        0,
        seg(
            &c,
            40000,
            21,
            PSH_ACK,
            101,
            501,
            b"PORT 198,18,0,10,157,0\r\n",
        ),
    );
    assert_eq!(a, Action::Drop(DropReason::HelperExpectFull));
    assert_eq!(t.stats().full, 1);
    assert_eq!(p.counters().drops[DropReason::HelperExpectFull as usize], 1);
}

#[test]
fn tftp_answer_from_a_new_server_port_is_related() {
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline(0, 1, &t);
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, CLIENT);
    // Without a request, the server's data is a new inbound flow: dropped.
    assert!(!forwarded(
        go(&mut p, 1, udp(&s, 3333, 50000, b"\x00\x03\x00\x01x")),
        0
    ));
    assert!(forwarded(
        go(&mut p, 0, udp(&c, 50000, 69, b"\x00\x01f\x00octet\x00")),
        1
    ));
    assert_eq!(t.len(), 1);
    assert!(forwarded(
        go(&mut p, 1, udp(&s, 3334, 50000, b"\x00\x03\x00\x01x")),
        0
    ));
    assert_eq!(p.helper_counters().related, 1);
}

#[test]
fn without_a_helper_the_control_connection_is_cached() {
    // The counterpart of the passive test's "never cached": the same packets under the
    // same rules less `ct helper set` hit the verdict cache.
    let rules = RULES.replace(" ct helper set \"ftp-standard\"", "");
    let t = Arc::new(ExpectTable::new(64));
    let (mut p, _publisher) = pipeline_with(&rules, 0, 1, &t);
    control(&mut p);
    let c = Pkt::v4(CLIENT, SERVER);
    let hits = p.counters().proc.verdict_cache_hits;
    for _ in 0..3 {
        assert!(forwarded(
            go(&mut p, 0, seg(&c, 40000, 21, ACK, 101, 501, &[])),
            1
        ));
    }
    assert!(p.counters().proc.verdict_cache_hits > hits);
    // And a 227 makes no expectation.
    let s = Pkt::v4(SERVER, CLIENT);
    let pasv = b"227 Entering Passive Mode (203,0,113,5,39,16).\r\n";
    assert!(forwarded(
        go(&mut p, 1, seg(&s, 21, 40000, PSH_ACK, 501, 101, pasv)),
        0
    ));
    assert!(t.is_empty());
}

/// HA failover (docs/ha.md, "Expectations in sync"): the primary's FTP control
/// connection and the expectation its 227 made travel as sync records (encoded and
/// decoded); the backup commits the entry and its control thread puts the expectation in
/// the shared table; then the client's data connection (any source port) is related on
/// the backup, once, and the control connection carries on.
#[test]
fn after_a_failover_the_data_connection_the_primary_expected_is_related_on_the_backup() {
    use crate::conntrack::{FlowKey, Synced};
    use crate::ha::wire::{Record, SyncedExpect, decode_records, put_record};
    use crate::worker::{WorkerCommand, WorkerReply};
    let tp = Arc::new(ExpectTable::new(64));
    let (mut p, _pp) = pipeline(0, 1, &tp);
    control(&mut p);
    let c = Pkt::v4(CLIENT, SERVER);
    let s = Pkt::v4(SERVER, CLIENT);
    let pasv = b"227 Entering Passive Mode (203,0,113,5,39,16).\r\n";
    assert!(forwarded(
        go(&mut p, 1, seg(&s, 21, 40000, PSH_ACK, 501, 101, pasv)),
        0
    ));
    // What the sync carries: the control connection's entry and the expectation.
    let key = FlowKey {
        src: c.src,
        dst: c.dst,
        sport: 40000,
        dport: 21,
        zone: 0,
        proto: proto::TCP,
        family: crate::wire::Family::V4,
    };
    let (id, _) = p.conntrack().lookup(&key).unwrap();
    let entry = Synced::from_snapshot(&p.conntrack().snapshot(id, 1_000).unwrap());
    let (e, left) = tp.list(1_000)[0];
    let mut body = Vec::new();
    put_record(&mut body, &Record::Upsert { new: true, entry });
    put_record(
        &mut body,
        &Record::Expect(SyncedExpect::from_expectation(&e, left)),
    );
    let recs = decode_records(&body).unwrap();
    // The backup: the entry committed (adopted) into its worker, the expectation into
    // the shared table (what `ha_apply_records` and `ha_commit` do).
    let tb = Arc::new(ExpectTable::new(64));
    let (mut b, publisher) = pipeline(0, 1, &tb);
    let Record::Expect(x) = recs[1] else {
        panic!("{recs:?}")
    };
    tb.insert(
        &x.to_expectation(),
        1_000 + u64::from(x.timeout_s) * 1_000_000_000,
        1_000,
    )
    .unwrap();
    let r = b.command(WorkerCommand::CtSync {
        records: recs[..1].to_vec(),
        adopt: true,
    });
    assert!(
        matches!(
            r,
            WorkerReply::Synced {
                applied: 1,
                failed: 0
            }
        ),
        "{r:?}"
    );
    assert!(forwarded(
        go(&mut b, 0, seg(&c, 40002, 10000, SYN, 9, 0, &[])),
        1
    ));
    assert_eq!(b.helper_counters().related, 1);
    assert!(tb.is_empty(), "used once");
    assert!(!forwarded(
        go(&mut b, 0, seg(&c, 40003, 10000, SYN, 9, 0, &[])),
        1
    ));
    // The control connection continues on the backup (established rule).
    assert!(forwarded(
        go(
            &mut b,
            0,
            seg(
                &c,
                40000,
                21,
                ACK,
                101,
                501 + u32::try_from(pasv.len()).unwrap(),
                &[]
            )
        ),
        1
    ));
    let counters = publisher.current().counters();
    assert_eq!((counters[0].0, counters[1].0), (1, 1));
}
