use super::*;

fn cfg(role: &str, queue: u64) -> HaConfig {
    HaConfig::parse(&format!(
        r#"{{"role": "{role}", "peer": "198.18.9.2:7400", "bind": "198.18.9.1:7400",
            "queue": {queue}, "ack_every": 2, "alive_ms": 100}}"#
    ))
    .unwrap()
}

/// A masqueraded UDP flow 198.18.1.2:PORT -> 198.18.2.2:53 leaving as 198.18.2.1:PORT+1000.
fn entry(port: u16, status: &[&str]) -> CtEntry {
    serde_json::from_value(serde_json::json!({
        "family": "ipv4", "proto": "udp", "proto_num": 17, "timeout": 30,
        "orig": {"src": "198.18.1.2", "dst": "198.18.2.2", "sport": port, "dport": 53,
                 "packets": 1, "bytes": 60},
        "reply": {"src": "198.18.2.2", "dst": "198.18.2.1", "sport": 53, "dport": port + 1000,
                  "packets": 1, "bytes": 60},
        "status": status, "mark": 7, "zone": 0, "worker": 0
    }))
    .unwrap()
}

fn event(kind: EventType, e: CtEntry) -> EventLine {
    EventLine {
        kind,
        timestamp_ms: 0,
        entry: e,
        lost: 0,
    }
}

/// The fields sync carries (counters and the owning worker are the receiver's own).
fn carried(e: &CtEntry) -> (String, u8, [Option<u16>; 4], Vec<String>, u32) {
    let mut st: Vec<String> = e
        .status
        .iter()
        .filter(|s| *s == "ASSURED" || *s == "SEEN_REPLY")
        .cloned()
        .collect();
    st.sort();
    (
        format!(
            "{} {} {} {}",
            e.orig.src, e.orig.dst, e.reply.src, e.reply.dst
        ),
        e.proto_num,
        [e.orig.sport, e.orig.dport, e.reply.sport, e.reply.dport],
        st,
        e.mark,
    )
}

#[test]
fn config_defaults_and_errors_name_the_field() {
    let c = HaConfig::parse(
        r#"{"role": "backup", "peer": "198.18.9.1:7400", "bind": "198.18.9.2:7400"}"#,
    )
    .unwrap();
    assert_eq!(c.role, Role::Backup);
    assert_eq!(c.role.target(), HaTarget::Cache);
    assert_eq!((c.queue, c.ack_every, c.alive_ms), (4096, 16, 500));
    assert_eq!(c.datagram_bytes, wire::MAX_DATAGRAM);
    assert!(c.service_addresses.is_empty());
    let base = r#""peer": "198.18.9.1:7400", "bind": "198.18.9.2:7400""#;
    for (text, field) in [
        (format!(r#"{{"role": "leader", {base}}}"#), "role"),
        (
            r#"{"role": "primary", "peer": "x", "bind": "198.18.9.2:7400"}"#.to_string(),
            "peer",
        ),
        (
            r#"{"role": "primary", "peer": "198.18.9.1:7400", "bind": "198.18.9.2:0"}"#.to_string(),
            "bind",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "queue": 1}}"#),
            "queue",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "ack_every": 0}}"#),
            "ack_every",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "queue": 16, "ack_every": 9}}"#),
            "ack_every",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "alive_ms": 10}}"#),
            "alive_ms",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "datagram_bytes": 100}}"#),
            "datagram_bytes",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "datagram_bytes": 65536}}"#),
            "datagram_bytes",
        ),
        (
            format!(r#"{{"role": "primary", {base}, "service_addresses": ["198.51.100.1", "x"]}}"#),
            "service_addresses[1]",
        ),
    ] {
        let e = HaConfig::parse(&text).unwrap_err();
        assert_eq!(e.field, field, "{text}: {e}");
    }
    let e = HaConfig::parse(&format!(r#"{{"role": "primary", {base}, "qeue": 5}}"#)).unwrap_err();
    assert!(e.field.starts_with("line 1 column"), "{e}");
    assert!(e.message.contains("qeue"), "{e}");
}

#[test]
fn events_reach_the_peer_as_changes_and_synced_entries_are_never_sent_back() {
    let now = Instant::now();
    let mut a = Sync::new(cfg("primary", 64), 1);
    let mut b = Sync::new(cfg("backup", 64), 2);
    let sent = [
        event(EventType::New, entry(40000, &["UNREPLIED"])),
        event(
            EventType::Update,
            entry(40000, &["SEEN_REPLY", "ASSURED", "SRC_NAT"]),
        ),
        event(EventType::Destroy, entry(40000, &["SEEN_REPLY", "ASSURED"])),
    ];
    for e in &sent {
        assert!(a.event(e).is_none(), "one datagram holds them all");
    }
    // The peer's own entries: an UPDATE and a DESTROY of them are never sent back.
    assert!(
        a.event(&event(EventType::Update, entry(41000, &["SYNCED"])))
            .is_none()
    );
    assert!(
        a.event(&event(EventType::Destroy, entry(41000, &["SYNCED"])))
            .is_none()
    );
    let d = a.flush().expect("a datagram");
    assert!(a.flush().is_none());
    let inc = b.datagram(&d, now);
    assert_eq!(
        inc.changes().len(),
        3,
        "the two SYNCED events were left out"
    );
    let kinds: Vec<EventType> = inc.changes().iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [EventType::New, EventType::Update, EventType::Destroy]
    );
    assert_eq!(carried(&inc.changes()[1].entry), carried(&sent[1].entry));
    assert_eq!(inc.changes()[2].entry.orig.sport, Some(40000));
    // First datagram of a peer: B asks for its whole table.
    let resync: Vec<Datagram> = inc.send.iter().map(|b| wire::decode(b).unwrap()).collect();
    assert!(resync.iter().any(|d| d.kind == Kind::Resync), "{resync:?}");
    for r in &inc.send {
        let back = a.datagram(r, now);
        assert_eq!(back.dump, wire::decode(r).unwrap().kind == Kind::Resync);
    }
    let st = a.status(now);
    assert_eq!(st.counters.events, 5);
    assert_eq!(st.counters.events_synced_skipped, 2);
    assert_eq!(
        (st.counters.sent_datagrams, st.counters.sent_records),
        (1, 3)
    );
    assert!(st.peer.up);
    // B acknowledges on A's ALIVE: A's queue empties.
    for d in a.alive() {
        for r in b.datagram(&d, now).send {
            a.datagram(&r, now);
        }
    }
    assert_eq!(a.queued(), 0);
    assert_eq!(a.status(now).counters.acked, 1);
}

#[test]
fn a_lost_datagram_is_nacked_and_sent_again() {
    let now = Instant::now();
    let mut a = Sync::new(cfg("active-active", 64), 1);
    let mut b = Sync::new(cfg("active-active", 64), 2);
    let mut dgrams = Vec::new();
    for p in 0..3u16 {
        a.event(&event(EventType::New, entry(50000 + p, &["UNREPLIED"])));
        dgrams.push(a.flush().unwrap());
    }
    assert_eq!(b.datagram(&dgrams[0], now).changes().len(), 1);
    // dgrams[1] is lost; dgrams[2] reveals the hole.
    let inc = b.datagram(&dgrams[2], now);
    assert_eq!(inc.changes().len(), 1);
    let nack = inc
        .send
        .iter()
        .find(|r| wire::decode(r).unwrap().kind == Kind::Nack)
        .expect("a NACK");
    let again = a.datagram(nack, now).send;
    assert_eq!(again, vec![dgrams[1].clone()]);
    let inc = b.datagram(&again[0], now);
    assert_eq!(inc.changes()[0].entry.orig.sport, Some(50001));
    assert_eq!(b.status(now).missing, 0);
    assert_eq!(a.status(now).counters.retransmitted, 1);
}

#[test]
fn overflow_is_counted_and_the_peer_asks_for_a_resync() {
    let now = Instant::now();
    let mut a = Sync::new(cfg("primary", 16), 1);
    let mut b = Sync::new(cfg("backup", 16), 2);
    let mut dgrams = Vec::new();
    for p in 0..20u16 {
        a.event(&event(EventType::New, entry(30000 + p, &["UNREPLIED"])));
        dgrams.push(a.flush().unwrap());
    }
    let st = a.status(now).counters;
    assert_eq!((st.lost_datagrams, st.lost_records), (4, 4));
    // B saw only the first and the last: it NACKs 1..=18, A holds 4..=18 and SKIPs 1..=3.
    b.datagram(&dgrams[0], now);
    let inc = b.datagram(&dgrams[19], now);
    let nack = inc
        .send
        .iter()
        .find(|r| wire::decode(r).unwrap().kind == Kind::Nack)
        .unwrap();
    let answer = a.datagram(nack, now).send;
    assert_eq!(answer.len(), 1 + 15);
    let mut asked = false;
    for d in &answer {
        for r in b.datagram(d, now).send {
            asked |= wire::decode(&r).unwrap().kind == Kind::Resync;
        }
    }
    assert!(asked, "a SKIP makes the backup ask for the whole table");
    assert_eq!(b.status(now).counters.peer_lost_datagrams, 3);
    assert_eq!(a.status(now).counters.skips, 1);
}

#[test]
fn bad_datagrams_are_counted_by_reason_and_change_nothing() {
    let now = Instant::now();
    let mut a = Sync::new(cfg("primary", 64), 1);
    let mut b = Sync::new(cfg("backup", 64), 2);
    a.event(&event(EventType::New, entry(40000, &["UNREPLIED"])));
    let mut d = a.flush().unwrap();
    let last = d.len() - 1;
    d[last] ^= 0xff;
    let inc = b.datagram(&d, now);
    assert!(inc.changes().is_empty() && inc.send.is_empty());
    assert!(b.datagram(b"xx", now).changes().is_empty());
    let st = b.status(now);
    assert_eq!(st.counters.decode_errors.get("checksum"), Some(&1));
    assert_eq!(st.counters.decode_errors.get("truncated"), Some(&1));
    assert!(!st.peer.up, "garbage is not a sign of life");
}

#[test]
fn a_dump_sends_our_entries_as_updates_and_leaves_the_peers_out() {
    let now = Instant::now();
    let mut a = Sync::new(cfg("primary", 64), 1);
    let mut b = Sync::new(cfg("backup", 64), 2);
    let mut apply = Vec::new();
    for p in 0..40u16 {
        let st: &[&str] = if p % 4 == 0 {
            &["SYNCED"]
        } else {
            &["SEEN_REPLY"]
        };
        if let Some(d) = a.dump_entry(&entry(20000 + p, st)) {
            apply.extend(b.datagram(&d, now).changes());
        }
    }
    apply.extend(b.datagram(&a.flush().unwrap(), now).changes());
    assert_eq!(a.status(now).counters.resync_records, 30);
    assert_eq!(apply.len(), 30);
    assert!(apply.iter().all(|c| c.kind == EventType::Update));
    assert!(apply.iter().all(|c| c.entry.orig.sport.unwrap() % 4 != 0));
}

/// The batch fwd's `subscribe_records` stream would carry for these events (what the
/// control thread encodes from the workers' snapshots).
fn batch_of(events: &[EventLine]) -> RecordBatch {
    let mut body = Vec::new();
    let mut count = 0;
    for e in events {
        let s = Synced::from_ct_entry(&e.entry).unwrap();
        let r = match e.kind {
            EventType::Destroy => Record::Destroy(s.orig),
            kind => Record::Upsert {
                new: kind == EventType::New,
                entry: s,
            },
        };
        wire::put_record(&mut body, &r);
        count += 1;
    }
    RecordBatch {
        records: wire::base64_encode(&body),
        count,
        lost: 0,
        synced_skipped: 0,
    }
}

#[test]
fn the_binary_stream_delivers_the_same_changes_as_the_json_events() {
    let now = Instant::now();
    let events: Vec<EventLine> = (0..50u16)
        .map(|i| {
            let kind = [EventType::New, EventType::Update, EventType::Destroy][usize::from(i % 3)];
            event(kind, entry(30000 + i, &["SEEN_REPLY", "ASSURED"]))
        })
        .collect();
    // JSON: one event at a time through the core.
    let (mut a, mut b) = (
        Sync::new(cfg("primary", 64), 1),
        Sync::new(cfg("backup", 64), 2),
    );
    let mut dgrams: Vec<Vec<u8>> = events.iter().filter_map(|e| a.event(e)).collect();
    dgrams.extend(a.flush());
    let json: Vec<HaChange> = dgrams
        .iter()
        .flat_map(|d| b.datagram(d, now).changes())
        .collect();
    // Binary: the same events as fwd's record batches (in two lines), forwarded raw.
    let (mut a2, mut b2) = (
        Sync::new(cfg("primary", 64), 1),
        Sync::new(cfg("backup", 64), 2),
    );
    let mut raw = a2.record_batch(&batch_of(&events[..20]));
    raw.extend(a2.record_batch(&batch_of(&events[20..])));
    raw.extend(a2.flush());
    assert_eq!(raw, dgrams, "byte for byte the datagrams of the JSON path");
    let mut count = 0;
    let mut body = Vec::new();
    for d in &raw {
        let inc = b2.datagram(d, now);
        count += inc.count;
        body.extend_from_slice(&inc.records);
    }
    assert_eq!(count, 50);
    let bin: Vec<HaChange> = wire::decode_records(&body)
        .unwrap()
        .iter()
        .filter_map(record_change)
        .collect();
    assert_eq!(bin, json);
    assert_eq!(json.len(), 50);
    let st = a2.status(now).counters;
    assert_eq!((st.events, st.events_bad, st.sent_records), (50, 0, 50));
}

#[test]
fn a_bad_record_batch_is_counted_and_sends_nothing() {
    let mut a = Sync::new(cfg("primary", 64), 1);
    let mut b = batch_of(&[event(EventType::New, entry(1, &["SEEN_REPLY"]))]);
    let good = b.clone();
    b.records = "!!".into();
    assert!(a.record_batch(&b).is_empty());
    let mut short = good.clone();
    let mut body = wire::base64_decode(&good.records).unwrap();
    body.pop();
    short.records = wire::base64_encode(&body);
    assert!(a.record_batch(&short).is_empty());
    // A count that disagrees with the records is refused too.
    let mut miscount = good.clone();
    miscount.count = 2;
    assert!(a.record_batch(&miscount).is_empty());
    assert!(a.flush().is_none(), "nothing was batched");
    let mut skipped = good;
    skipped.synced_skipped = 3;
    skipped.lost = 4;
    a.record_batch(&skipped);
    let c = a.status(Instant::now()).counters;
    assert_eq!(c.events_bad, 4);
    assert_eq!(
        (c.events, c.events_synced_skipped, c.events_lost),
        (1 + 1 + 2 + 4, 3, 4)
    );
    assert!(a.flush().is_some());
}

/// fwd reports a loss at once in a batch of no records: counted, nothing sent.
#[test]
fn a_loss_only_batch_is_counted_at_once_and_sends_nothing() {
    let mut a = Sync::new(cfg("primary", 64), 1);
    let mut b = batch_of(&[]);
    b.lost = 7;
    assert!(a.record_batch(&b).is_empty());
    let c = a.status(Instant::now()).counters;
    assert_eq!((c.events, c.events_lost, c.events_bad), (0, 7, 0));
    assert!(a.flush().is_none(), "nothing was batched");
}

/// A RESYNC dump sends our expectations as EXPECT records after the entries; the peer's
/// own (master `SYNCED_MASTER`) are left out.
#[test]
fn a_dump_sends_our_expectations_and_leaves_the_peers_out() {
    let view = |master_worker: u16| fwd_proto::CtExpectation {
        family: "ipv4".into(),
        proto: "tcp".into(),
        proto_num: 6,
        timeout: 299,
        src: "203.0.113.9".parse().unwrap(),
        dst: "198.51.100.1".parse().unwrap(),
        sport: 0,
        dport: 50000,
        master_src: "198.18.0.2".parse().unwrap(),
        master_dst: "203.0.113.9".parse().unwrap(),
        master_sport: 40000,
        master_dport: 21,
        master_proto_num: 6,
        helper: "ftp".into(),
        master_worker,
    };
    let mut a = Sync::new(cfg("primary", 64), 1);
    assert!(a.dump_expect(&view(wire::SYNCED_MASTER)).is_none());
    assert!(a.dump_expect(&view(0)).is_none(), "batched, not full yet");
    let d = wire::decode(&a.flush().unwrap()).unwrap();
    let [Record::Expect(e)] = d.records[..] else {
        panic!("{:?}", d.records)
    };
    assert_eq!(
        (e.key.dport, e.master.sport, e.timeout_s),
        (50000, 40000, 299)
    );
    assert_eq!(a.status(Instant::now()).counters.resync_records, 1);
}
