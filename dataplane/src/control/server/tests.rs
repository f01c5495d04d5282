use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::control::proto::{
    ControlError, CtEntry, CtFilter, CtTuple, ErrorCode, EventLine, EventType, PortStats, Request,
    Response, ResponseEnvelope, RulesetSource, RulesetSummary, TunableRange, WorkerStats,
};
use crate::rules::PortsByName;
use crate::rules::limits::Limits;
use crate::worker::{WorkerCommand, WorkerReply};

fn entry(worker: u16, i: u8) -> CtEntry {
    let t = |a: u8| CtTuple {
        src: IpAddr::from([198, 18, 1, a]),
        dst: IpAddr::from([198, 18, 2, 2]),
        sport: Some(1000 + u16::from(a)),
        dport: Some(80),
        icmp_type: None,
        icmp_code: None,
        icmp_id: None,
        packets: 1,
        bytes: 60,
    };
    CtEntry {
        family: "ipv4".into(),
        proto: "tcp".into(),
        proto_num: 6,
        state: Some("ESTABLISHED".into()),
        timeout: 100,
        orig: t(i),
        reply: t(i),
        status: vec!["ASSURED".into()],
        mark: 0,
        zone: 0,
        worker,
        tcp_window: None,
    }
}

/// `entry(worker, i)` as a worker's table holds it.
fn snapshot(worker: u16, i: u8) -> crate::conntrack::Snapshot {
    crate::conntrack::Synced::from_ct_entry(&entry(worker, i))
        .unwrap()
        .to_snapshot()
}

/// A fake worker: a table, and whether it answers at all.
#[derive(Default)]
struct FakeWorker {
    table: Vec<crate::conntrack::Snapshot>,
    /// Table slots a count scans (entry `i` sits in slot `i`); 0: the table's length.
    slots: u64,
    /// (cursor, budget) of every count command.
    counts: Vec<(u64, u32)>,
    /// Refuse `SetTunables` (as a worker whose table is too small would).
    refuse_tunables: bool,
    replies: VecDeque<WorkerReply>,
    mute: bool,
    tunables: Vec<(String, u64)>,
    events: Vec<crate::conntrack::CtEvent>,
    raw_events: Vec<crate::conntrack::CtEvent>,
    /// Events the worker's ring lost, reported by the next `TakeRawEvents`.
    raw_lost: u64,
    /// Every `CtSync` command: its records and `adopt`.
    synced: Vec<(Vec<crate::ha::wire::Record>, bool)>,
    helper: crate::worker::pipeline::HelperCounters,
}

#[derive(Default)]
struct Fake {
    workers: Vec<FakeWorker>,
    /// The workers' clock `now_ns` reports.
    now_ns: u64,
    expect: Option<Arc<crate::helper::ExpectTable>>,
}

impl Backend for Fake {
    fn workers(&self) -> usize {
        self.workers.len()
    }
    fn send(&mut self, w: usize, cmd: Box<WorkerCommand>) -> Result<(), Box<WorkerCommand>> {
        let fw = &mut self.workers[w];
        let reply = match *cmd {
            WorkerCommand::CtList { cursor, limit, .. } => {
                let start = usize::try_from(cursor).unwrap();
                let end = (start + limit as usize).min(fw.table.len());
                WorkerReply::CtPage {
                    entries: fw.table[start..end].to_vec(),
                    next_cursor: (end < fw.table.len()).then_some(end as u64),
                }
            }
            WorkerCommand::CtDelete { budget, .. } => {
                let n = (budget as usize).min(fw.table.len());
                fw.table.drain(..n);
                WorkerReply::Deleted {
                    count: n as u64,
                    more: !fw.table.is_empty(),
                }
            }
            WorkerCommand::CtCount { cursor, budget, .. } => {
                fw.counts.push((cursor, budget));
                let slots = fw.slots.max(fw.table.len() as u64);
                let end = (cursor + u64::from(budget)).min(slots);
                let n = (cursor..end).filter(|&i| i < fw.table.len() as u64).count();
                WorkerReply::Count {
                    count: n as u64,
                    next_cursor: (end < slots).then_some(end),
                }
            }
            WorkerCommand::HelperStats => WorkerReply::HelperStats(fw.helper),
            WorkerCommand::CtStats => WorkerReply::Stats(crate::conntrack::Counters {
                entries: fw.table.len() as u64,
                ..Default::default()
            }),
            WorkerCommand::SetTunables(_) if fw.refuse_tunables => WorkerReply::Error(
                crate::conntrack::RefusedTunable::new(None, "refused by the worker"),
            ),
            WorkerCommand::SetTunables(v) => {
                fw.tunables = v;
                WorkerReply::Done
            }
            WorkerCommand::TakeEvents { .. } => WorkerReply::Events {
                events: std::mem::take(&mut fw.events),
                lost: 0,
            },
            WorkerCommand::TakeRawEvents { .. } => WorkerReply::RawEvents {
                events: std::mem::take(&mut fw.raw_events),
                lost: std::mem::take(&mut fw.raw_lost),
            },
            WorkerCommand::CtSync { records, adopt } => {
                let n = records.len() as u64;
                fw.synced.push((records, adopt));
                WorkerReply::Synced {
                    applied: n,
                    failed: 0,
                }
            }
        };
        if !fw.mute {
            fw.replies.push_back(reply);
        }
        Ok(())
    }
    fn try_recv(&mut self, w: usize) -> Option<WorkerReply> {
        self.workers[w].replies.pop_front()
    }
    fn port_stats(&mut self) -> Vec<PortStats> {
        vec![PortStats {
            name: "lan".into(),
            ipackets: 7,
            ..PortStats::default()
        }]
    }
    fn worker_stats(&self) -> Vec<WorkerStats> {
        (0..self.workers.len())
            .map(|w| WorkerStats {
                worker: u16::try_from(w).unwrap(),
                rx_packets: 10,
                ..WorkerStats::default()
            })
            .collect()
    }
    fn dpdk_version(&self) -> String {
        "DPDK test".into()
    }
    fn now_ns(&self) -> u64 {
        self.now_ns
    }
    fn expectations(&self) -> Option<&Arc<crate::helper::ExpectTable>> {
        self.expect.as_ref()
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fwd-server-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn server(tables: &[usize], name: &str) -> (Server<Fake>, PathBuf) {
    let mut fake = Fake::default();
    for (w, &n) in tables.iter().enumerate() {
        let mut fw = FakeWorker::default();
        for i in 0..n {
            fw.table.push(snapshot(
                u16::try_from(w).unwrap(),
                u8::try_from(i).unwrap(),
            ));
        }
        fake.workers.push(fw);
    }
    let dir = tmpdir(name);
    let cfg = ServerConfig {
        worker_timeout: Duration::from_millis(50),
        version: "test".into(),
        max_entries: 5000,
        announcer: None,
    };
    let tun = BTreeMap::from([("nf_conntrack_max".to_string(), 1000)]);
    (
        Server::new(
            fake,
            cfg,
            StateDir::new(&dir),
            Box::new(crate::conntrack::check_tunable),
            tun,
        ),
        dir,
    )
}

fn ask(s: &mut Server<Fake>, line: &str) -> ResponseEnvelope {
    s.handle_line(line, true).0
}

#[test]
fn status_stats_ports_workers() {
    let (mut s, _) = server(&[1, 2], "status");
    let r = ask(&mut s, r#"{"v":1,"id":5,"request":{"op":"status"}}"#);
    assert_eq!(r.id, 5);
    match r.into_result().unwrap() {
        Response::Status(st) => {
            assert_eq!((st.workers, st.ports), (2, 1));
            assert_eq!(st.dpdk, "DPDK test");
        }
        other => panic!("{other:?}"),
    }
    match ask(&mut s, r#"{"v":1,"id":6,"request":{"op":"stats"}}"#)
        .into_result()
        .unwrap()
    {
        Response::Stats(st) => {
            assert_eq!(st.ports[0].ipackets, 7);
            assert_eq!(st.workers.len(), 2);
            // conntrack counters merged in from each worker's command reply.
            assert_eq!(st.workers[1].ct.entries, 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        ask(&mut s, r#"{"v":1,"id":7,"request":{"op":"workers"}}"#).into_result(),
        Ok(Response::Workers { workers }) if workers.len() == 2
    ));
}

#[test]
fn bad_lines_answer_errors_with_the_id() {
    let (mut s, _) = server(&[0], "bad");
    let r = ask(&mut s, r#"{"v":1,"id":9,"request":{"op":"reboot"}}"#);
    assert_eq!(r.id, 9);
    assert_eq!(r.into_result().unwrap_err().code, ErrorCode::BadRequest);
    let r = ask(&mut s, r#"{"v":2,"id":3,"request":{"op":"status"}}"#);
    assert_eq!(
        r.into_result().unwrap_err().code,
        ErrorCode::UnsupportedVersion
    );
    let r = ask(&mut s, "not json");
    assert_eq!(r.into_result().unwrap_err().code, ErrorCode::BadRequest);
    let r = ask(&mut s, r#"{"v":1,"id":1,"request":{"op":"ruleset_get"}}"#);
    assert!(r.into_result().unwrap_err().message.contains("no ruleset"));
}

#[test]
fn listing_pages_across_workers_with_cursors() {
    let (mut s, _) = server(&[3, 0, 2], "list");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10, "listing does not end");
        let req = Request::ConntrackList {
            filter: CtFilter::default(),
            cursor: cursor.clone(),
            limit: 2,
        };
        match s.request(req).unwrap() {
            Response::ConntrackPage {
                entries,
                next_cursor,
            } => {
                assert!(entries.len() <= 2);
                seen.extend(entries.iter().map(|e| (e.worker, e.orig.sport)));
                cursor = next_cursor;
            }
            other => panic!("{other:?}"),
        }
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    let mut d = seen.clone();
    d.sort_unstable();
    d.dedup();
    assert_eq!(d.len(), 5, "an entry was listed twice: {seen:?}");
    assert_eq!(
        s.request(Request::ConntrackList {
            filter: CtFilter::default(),
            cursor: Some("9:0".into()),
            limit: 2
        })
        .unwrap_err()
        .code,
        ErrorCode::BadCursor
    );
    assert_eq!(
        s.request(Request::ConntrackList {
            filter: CtFilter::default(),
            cursor: None,
            limit: 0
        })
        .unwrap_err()
        .code,
        ErrorCode::BadRequest
    );
}

#[test]
fn count_delete_and_flush() {
    let (mut s, _) = server(&[3, 2], "delete");
    let count = |s: &mut Server<Fake>| match s
        .request(Request::ConntrackCount {
            filter: CtFilter::default(),
        })
        .unwrap()
    {
        Response::Count { count } => count,
        other => panic!("{other:?}"),
    };
    assert_eq!(count(&mut s), 5);
    let err = s
        .request(Request::ConntrackDelete {
            filter: CtFilter::default(),
            all: false,
        })
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::RefusedUnfiltered);
    assert_eq!(count(&mut s), 5);
    let bad = CtFilter {
        src: Some("198.18.1.300".into()),
        ..CtFilter::default()
    };
    assert_eq!(
        s.request(Request::ConntrackDelete {
            filter: bad,
            all: false
        })
        .unwrap_err()
        .code,
        ErrorCode::BadFilter
    );
    assert_eq!(
        s.request(Request::ConntrackDelete {
            filter: CtFilter::default(),
            all: true
        })
        .unwrap(),
        Response::Deleted { deleted: 5 }
    );
    assert_eq!(count(&mut s), 0);
}

#[test]
fn tuning_is_validated_persisted_and_applied_as_a_share() {
    let (mut s, dir) = server(&[0, 0, 0], "tuning");
    let bad = BTreeMap::from([
        ("nf_conntrack_max".to_string(), 9000),
        ("nf_conntrack_tcp_loose".to_string(), 7),
    ]);
    let e = s.request(Request::TuningSet { values: bad }).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadTunable);
    assert_eq!(e.field.as_deref(), Some("nf_conntrack_tcp_loose"));
    assert!(
        !dir.join(TUNABLES_FILE).exists(),
        "a refused change was persisted"
    );
    assert!(s.backend.workers[0].tunables.is_empty());

    let good = BTreeMap::from([("nf_conntrack_max".to_string(), 9001)]);
    match s.request(Request::TuningSet { values: good }).unwrap() {
        Response::Tuning { values } => assert_eq!(values["nf_conntrack_max"], 9001),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.backend.workers[2].tunables,
        vec![("nf_conntrack_max".to_string(), 3001)]
    );
    let persisted = StateDir::new(&dir)
        .load_tunables(&crate::conntrack::check_tunable)
        .unwrap();
    assert_eq!(persisted["nf_conntrack_max"], 9001);
    let _ = std::fs::remove_dir_all(dir);
}

fn set_tunables(s: &mut Server<Fake>, values: &[(&str, u64)]) -> Result<Response, ControlError> {
    s.request(Request::TuningSet {
        values: values.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
    })
}

fn running_tunables(s: &mut Server<Fake>) -> BTreeMap<String, u64> {
    match s.request(Request::TuningGet).unwrap() {
        Response::Tuning { values } => values,
        other => panic!("{other:?}"),
    }
}

#[test]
fn persist_failure_is_not_applied() {
    let (mut s, dir) = server(&[0], "persistfail");
    // The state "directory" is a file: writing into it fails.
    std::fs::write(&dir, b"x").unwrap();
    let e = set_tunables(&mut s, &[("nf_conntrack_max", 5)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Persist);
    // Applied first, then put back when the file could not be written.
    assert_eq!(
        s.backend.workers[0].tunables,
        vec![("nf_conntrack_max".to_string(), 1000)]
    );
    assert_eq!(running_tunables(&mut s)["nf_conntrack_max"], 1000);
    let _ = std::fs::remove_file(dir);
}

#[test]
fn a_silent_worker_times_out_and_its_late_reply_is_discarded() {
    let (mut s, _) = server(&[1, 1], "timeout");
    s.backend.workers[1].mute = true;
    let e = s
        .request(Request::ConntrackCount {
            filter: CtFilter::default(),
        })
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WorkerTimeout);
    // The late reply arrives now; the next request must not take it for its own.
    s.backend.workers[1].replies.push_back(WorkerReply::Count {
        count: 99,
        next_cursor: None,
    });
    s.backend.workers[1].mute = false;
    assert_eq!(
        s.request(Request::ConntrackCount {
            filter: CtFilter::default()
        })
        .unwrap(),
        Response::Count { count: 2 }
    );
}

#[test]
fn state_dir_replaces_atomically() {
    let dir = tmpdir("state");
    let st = StateDir::new(&dir);
    assert_eq!(st.read("x").unwrap(), None);
    st.write_atomic("x", b"one").unwrap();
    st.write_atomic("x", b"two").unwrap();
    assert_eq!(st.read("x").unwrap().as_deref(), Some(&b"two"[..]));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary file left behind: {names:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Serves `s` on `listener` in a thread (bounded: about 10 s of polls at most) and
/// connects to `path`: the stop flag, the thread, the writer and the line reader.
fn serve_and_connect(
    mut s: Server<Fake>,
    listener: std::os::unix::net::UnixListener,
    path: &std::path::Path,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
    UnixStream,
    BufReader<UnixStream>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut polls = 0;
        s.serve(&listener, &stop2, &mut |_| {
            polls += 1;
            if polls > 5000 {
                stop2.store(true, Ordering::Relaxed);
            }
        });
    });
    let c = UnixStream::connect(path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let w = c.try_clone().unwrap();
    (stop, t, w, BufReader::new(c))
}

#[test]
fn serves_a_socket_with_mode_0600_and_streams_events() {
    let dir = tmpdir("sock");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.sock");
    let listener = bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (mut s, _) = server(&[1], "sockstate");
    let mut ev = crate::conntrack::CtEvent {
        kind: crate::conntrack::EventKind::New,
        entry: snapshot(0, 1),
    };
    s.backend.workers[0].events.push(ev);
    ev.kind = crate::conntrack::EventKind::Destroy;
    s.backend.workers[0].events.push(ev);
    let (stop, t, mut w, mut r) = serve_and_connect(s, listener, &path);
    w.write_all(b"{\"v\":1,\"id\":1,\"request\":{\"op\":\"status\"}}\ngarbage\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let resp: ResponseEnvelope = serde_json::from_str(&line).unwrap();
    assert!(matches!(resp.into_result(), Ok(Response::Status(_))));
    line.clear();
    r.read_line(&mut line).unwrap();
    let resp: ResponseEnvelope = serde_json::from_str(&line).unwrap();
    assert_eq!(resp.into_result().unwrap_err().code, ErrorCode::BadRequest);
    w.write_all(
        b"{\"v\":1,\"id\":2,\"request\":{\"op\":\"subscribe\",\"events\":[\"DESTROY\"]}}\n",
    )
    .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    let resp: ResponseEnvelope = serde_json::from_str(&line).unwrap();
    assert_eq!(resp.into_result().unwrap(), Response::Subscribed);
    line.clear();
    r.read_line(&mut line).unwrap();
    let ev: EventLine = serde_json::from_str(&line).unwrap();
    assert_eq!(
        ev.kind,
        EventType::Destroy,
        "the NEW event was not filtered out"
    );
    // Wall-clock milliseconds since the Unix epoch (after 2023-11-14), not a worker's uptime.
    assert!(ev.timestamp_ms > 1_700_000_000_000, "{}", ev.timestamp_ms);
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn filters_match_prefixes_and_ports() {
    let e = entry(0, 5);
    let f = |f: CtFilter| CompiledFilter::new(&f).unwrap().matches(&e);
    assert!(f(CtFilter::default()));
    assert!(f(CtFilter {
        src: Some("198.18.1.0/24".into()),
        dport: Some(80),
        proto: Some("tcp".into()),
        ..CtFilter::default()
    }));
    assert!(!f(CtFilter {
        src: Some("198.18.1.6".into()),
        ..CtFilter::default()
    }));
    assert!(!f(CtFilter {
        proto: Some("udp".into()),
        ..CtFilter::default()
    }));
    assert!(f(CtFilter {
        proto: Some("6".into()),
        status: Some("ASSURED".into()),
        ..CtFilter::default()
    }));
}

const GOOD: &str = "table inet filter {\n  chain input {\n    type filter hook input priority filter; policy drop;\n    tcp dport 22 accept\n  }\n}\n";

fn with_rules(name: &str) -> (Server<Fake>, PathBuf) {
    let (s, dir) = server(&[0, 0], name);
    let ports = PortsByName::from([("lan".to_string(), 0), ("wan".to_string(), 1)]);
    let rules =
        RulesetState::load(&StateDir::new(&dir), None, ports, 2, Limits::default()).unwrap();
    (s.with_rules(rules), dir)
}

#[test]
fn ruleset_replace_checks_persists_and_bumps_the_generation() {
    let (mut s, dir) = with_rules("rules");
    assert_eq!(s.generation(), 1);
    let bad = RulesetSource::Text(
        "table inet filter {\n  chain input {\n    tcp dprt 22 accept\n  }\n}\n".into(),
    );
    let e = s.replace_ruleset(&bad, false).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRuleset);
    assert_eq!(e.line, Some(3), "{e:?}");
    assert!(e.column.is_some());
    assert!(!dir.join(RULESET_FILE).exists());

    let good = RulesetSource::Text(GOOD.into());
    // From no ruleset to GOOD's one table, one chain, one rule.
    let applied = |generation, dry_run| Response::RulesetApplied {
        generation,
        dry_run,
        rules: 1,
        before: RulesetSummary::default(),
        after: RulesetSummary {
            tables: 1,
            chains: 1,
            rules: 1,
        },
    };
    assert_eq!(s.replace_ruleset(&good, true).unwrap(), applied(1, true));
    assert!(!dir.join(RULESET_FILE).exists(), "a dry run persisted");
    assert_eq!(s.replace_ruleset(&good, false).unwrap(), applied(2, false));
    assert_eq!(
        std::fs::read_to_string(dir.join(RULESET_FILE)).unwrap(),
        GOOD
    );
    match s.request(Request::RulesetGet).unwrap() {
        Response::Ruleset(v) => {
            assert_eq!(v.generation, 2);
            assert!(v.text.contains("tcp dport 22 accept"), "{}", v.text);
        }
        other => panic!("{other:?}"),
    }
    match s.request(Request::Status).unwrap() {
        Response::Status(st) => assert_eq!(st.ruleset_generation, 2),
        other => panic!("{other:?}"),
    }
    // A restart loads the persisted ruleset, not the (absent) config file.
    let ports = PortsByName::from([("lan".to_string(), 0)]);
    let again = RulesetState::load(
        &StateDir::new(&dir),
        Some(dir.join("nope.nft")),
        ports,
        1,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(again.current().rule_count(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sighup_reload_reads_the_config_file_and_keeps_the_old_one_on_error() {
    let dir = tmpdir("hup");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.nft");
    std::fs::write(&file, GOOD).unwrap();
    let state_dir = dir.join("state");
    let ports = PortsByName::from([("lan".to_string(), 0)]);
    let rules = RulesetState::load(
        &StateDir::new(&state_dir),
        Some(file.clone()),
        ports,
        1,
        Limits::default(),
    )
    .unwrap();
    assert_eq!(rules.current().rule_count(), 1);
    let (s, _) = server(&[0], "hupsrv");
    let mut s = Server {
        state: StateDir::new(&state_dir),
        ..s
    }
    .with_rules(rules);
    std::fs::write(&file, "table ip t {\n  chain c {\n    bogus\n  }\n}\n").unwrap();
    let msg = s.reload_ruleset_file();
    assert!(msg.contains(":3:") && msg.contains("ruleset kept"), "{msg}");
    assert_eq!(s.generation(), 1);
    std::fs::write(
        &file,
        GOOD.replace("22", "22, 80")
            .replace("dport 22, 80", "dport { 22, 80 }"),
    )
    .unwrap();
    let msg = s.reload_ruleset_file();
    assert!(msg.contains("generation 2"), "{msg}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_tuning_refused_by_a_worker_changes_nothing_anywhere() {
    // Issue 15: `nf_conntrack_max` beyond the tables was refused (400) by the workers, yet
    // tunables.json held it and the request's other value afterwards.
    let (mut s, dir) = server(&[0, 0], "tunrefused");
    s.backend.workers[1].refuse_tunables = true;
    let e = set_tunables(
        &mut s,
        &[("nf_conntrack_max", 800), ("nf_conntrack_udp_timeout", 7)],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadTunable);
    assert!(
        !dir.join(TUNABLES_FILE).exists(),
        "a refused change was persisted"
    );
    // Worker 0 took the change and was given its previous value back.
    assert_eq!(
        s.backend.workers[0].tunables,
        vec![("nf_conntrack_max".to_string(), 500)]
    );
    let values = running_tunables(&mut s);
    assert_eq!(values["nf_conntrack_max"], 1000);
    assert!(!values.contains_key("nf_conntrack_udp_timeout"));
}

#[test]
fn the_max_share_rounds_up_so_every_maximum_fits() {
    // 262 145 over 2 workers: each table holds 131 073 (fwd sizes them with this share).
    assert_eq!(worker_share(262_145, 2), 131_073);
    assert_eq!(worker_share(262_144, 2), 131_072);
    assert!((1..=64u64).all(|m| worker_share(m, 3) * 3 >= m));
}

#[test]
fn filtered_counts_scan_bounded_slices_of_every_worker() {
    // Issue 15: a filtered count was one scan of each whole table in one command.
    let (mut s, _) = server(&[3, 2], "slices");
    for w in &mut s.backend.workers {
        w.slots = 40_000;
    }
    let filter = CtFilter {
        dport: Some(80),
        ..CtFilter::default()
    };
    assert_eq!(
        s.request(Request::ConntrackCount { filter }).unwrap(),
        Response::Count { count: 5 }
    );
    for w in &s.backend.workers {
        assert_eq!(
            w.counts,
            [
                (0, COUNT_SLICE),
                (16_384, COUNT_SLICE),
                (32_768, COUNT_SLICE)
            ]
        );
    }
}

fn replace(s: &mut Server<Fake>, text: &str) -> Result<Response, ControlError> {
    s.replace_ruleset(&RulesetSource::Text(text.into()), false)
}

#[test]
fn an_empty_ruleset_needs_flush_ruleset_and_changes_are_reported() {
    let (mut s, dir) = with_rules("empty");
    replace(&mut s, GOOD).unwrap();
    for empty in ["", "\n  # nothing\n"] {
        let e = replace(&mut s, empty).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRuleset);
        assert!(e.message.contains("flush ruleset"), "{e:?}");
    }
    let e = s
        .replace_ruleset(
            &RulesetSource::Json(serde_json::json!({"nftables": []})),
            true,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRuleset);
    assert_eq!(s.generation(), 2, "an empty write changed the ruleset");
    assert_eq!(
        std::fs::read_to_string(dir.join(RULESET_FILE)).unwrap(),
        GOOD
    );
    match replace(&mut s, "flush ruleset\n").unwrap() {
        Response::RulesetApplied {
            generation,
            rules,
            before,
            after,
            ..
        } => {
            assert_eq!((generation, rules), (3, 0));
            assert_eq!((before.tables, before.chains, before.rules), (1, 1, 1));
            assert_eq!(after, RulesetSummary::default());
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_that_would_persist_as_unreadable_text_is_refused() {
    let (mut s, dir) = with_rules("jsonquote");
    let j = serde_json::json!({"nftables": [
        {"table": {"family": "inet", "name": "f"}},
        {"chain": {"family": "inet", "table": "f", "name": "input", "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "f", "chain": "input",
                  "comment": "say \"hi\"", "expr": [{"accept": null}]}}
    ]});
    let e = s
        .replace_ruleset(&RulesetSource::Json(j), false)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRuleset);
    assert!(
        e.field
            .as_deref()
            .is_some_and(|f| f.starts_with("nftables[2]")),
        "{e:?}"
    );
    assert!(!dir.join(RULESET_FILE).exists());
    assert_eq!(s.generation(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rulesets_over_the_limits_are_refused_at_check_time() {
    let (mut s, dir) = with_rules("limits");
    // Issue 15's jump fan-out: 16 chains of 4 jumps, 4^15 evaluations per packet.
    let mut bomb = String::from(
        "table inet j {\n chain input {\n  type filter hook input priority filter; policy accept;\n",
    );
    bomb += &"  jump c1\n".repeat(4);
    bomb += " }\n";
    for i in 1..16 {
        bomb += &format!(" chain c{i} {{\n");
        bomb += &if i < 15 {
            format!("  jump c{}\n", i + 1).repeat(4)
        } else {
            "  counter\n".to_string()
        };
        bomb += " }\n";
    }
    bomb += "}\n";
    let e = s
        .replace_ruleset(&RulesetSource::Text(bomb), true)
        .unwrap_err();
    assert!(e.message.contains("limits.rule_evaluations"), "{e:?}");
    let big = format!("# {}\n{GOOD}", "x".repeat(5 << 20));
    let e = s
        .replace_ruleset(&RulesetSource::Text(big), true)
        .unwrap_err();
    assert!(e.message.contains("limits.ruleset_bytes"), "{e:?}");
    assert!(!dir.join(RULESET_FILE).exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_active_active_node_refuses_a_nat_port_range_it_cannot_split() {
    let dir = tmpdir("aaslice");
    std::fs::create_dir_all(&dir).unwrap();
    let one_port = "table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n  ip protocol tcp snat to 198.51.100.1:5000\n }\n}\n";
    let file = dir.join("rules.nft");
    std::fs::write(&file, one_port).unwrap();
    let node = crate::nat::NodeSlice::new(1, 2).unwrap();
    let load = |f: Option<PathBuf>| {
        RulesetState::load_sliced(
            &StateDir::new(dir.join("state")),
            f,
            PortsByName::new(),
            1,
            Limits::default(),
            node,
        )
    };
    let e = load(Some(file.clone())).unwrap_err();
    assert!(
        e.contains("rules.nft:4:") && e.contains("ha.total_nodes"),
        "{e}"
    );
    let rules = load(None).unwrap();
    let (s, _) = server(&[0], "aaslicesrv");
    let mut s = s.with_rules(rules);
    let e = s
        .replace_ruleset(&RulesetSource::Text(one_port.into()), true)
        .unwrap_err();
    assert!(e.message.contains("ha.total_nodes"), "{e:?}");
    let two = one_port.replace(":5000", ":5000-5001");
    assert!(s.replace_ruleset(&RulesetSource::Text(two), true).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_persisted_ruleset_that_does_not_read_stops_the_start() {
    let dir = tmpdir("badstate");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(RULESET_FILE),
        "table inet f {\n\tchain input {\n\t\taccept comment \"say \"hi\"\"\n\t}\n}\n",
    )
    .unwrap();
    let good = dir.join("good.nft");
    std::fs::write(&good, GOOD).unwrap();
    let e = RulesetState::load(
        &StateDir::new(&dir),
        Some(good),
        PortsByName::new(),
        1,
        Limits::default(),
    )
    .unwrap_err();
    assert!(e.contains("ruleset.nft:3:"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn subscriptions_are_capped() {
    let (mut s, _) = server(&[0], "subcap");
    let line = r#"{"v":1,"id":4,"request":{"op":"subscribe"}}"#;
    let (resp, sub) = s.handle_line(line, false);
    assert!(sub.is_none());
    assert_eq!(resp.error.map(|e| e.code), Some(ErrorCode::Busy));
    let (resp, sub) = s.handle_line(line, true);
    assert!(sub.is_some() && resp.error.is_none());
}

#[test]
fn tuning_ranges_are_the_validators() {
    let (mut s, _) = server(&[0], "ranges");
    let Response::TuningRanges { ranges } = s.request(Request::TuningRanges).unwrap() else {
        panic!("no ranges");
    };
    assert_eq!(
        ranges["nf_conntrack_max"],
        TunableRange { min: 1, max: 5000 }
    );
    assert_eq!(
        ranges["nf_conntrack_tcp_loose"],
        TunableRange { min: 0, max: 1 }
    );
    assert_eq!(ranges.len(), crate::conntrack::tunables::NAMES.len());
}

fn ha_request(s: &mut Server<Fake>, req: Request) -> crate::control::proto::HaCounters {
    match s.request(req).unwrap() {
        Response::HaApplied(c) | Response::HaStatus(c) => c,
        other => panic!("{other:?}"),
    }
}

fn changes(kind: EventType, n: u8) -> Vec<crate::control::proto::HaChange> {
    (0..n)
        .map(|i| crate::control::proto::HaChange {
            kind,
            entry: entry(0, i),
        })
        .collect()
}

#[test]
fn ha_cache_holds_entries_until_commit_sends_them_to_their_owners() {
    use crate::control::proto::HaTarget;
    use crate::ha::wire::Record;
    let (mut s, _) = server(&[0, 0], "ha_cache");
    let c = ha_request(
        &mut s,
        Request::HaApply {
            changes: changes(EventType::New, 40),
            target: HaTarget::Cache,
        },
    );
    assert_eq!((c.applied, c.failed, c.cache_entries), (40, 0, 40));
    // Nothing reached a worker yet.
    assert!(s.backend.workers.iter().all(|w| w.synced.is_empty()));
    // A destroy removes from the cache; one of an unknown entry is refused.
    let mut d = changes(EventType::Destroy, 1);
    d[0].entry = entry(0, 200);
    d.extend(changes(EventType::Destroy, 1));
    let c = ha_request(
        &mut s,
        Request::HaApply {
            changes: d,
            target: HaTarget::Cache,
        },
    );
    assert_eq!((c.applied, c.failed, c.cache_entries), (1, 1, 39));
    let c = ha_request(&mut s, Request::HaCommit);
    assert_eq!((c.committed, c.commits, c.cache_entries), (39, 1, 0));
    let owner = crate::nat::Owner::spread(&crate::nat::SYMMETRIC_RSS_KEY, 128, 2).unwrap();
    let mut seen = 0;
    for (w, fw) in s.backend.workers.iter().enumerate() {
        for (records, adopt) in &fw.synced {
            assert!(*adopt);
            for r in records {
                let Record::Upsert { entry, .. } = r else {
                    panic!("{r:?}")
                };
                let t = crate::nat::Tuple::from_key(&entry.orig);
                assert_eq!(usize::from(owner.owner(&t)), w);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 39);
    // Both workers got some (40 tuples spread over 2 workers).
    assert!(s.backend.workers.iter().all(|w| !w.synced.is_empty()));
}

#[test]
fn ha_apply_to_workers_bypasses_the_cache_and_bad_entries_name_their_field() {
    use crate::control::proto::HaTarget;
    let (mut s, _) = server(&[0, 0, 0], "ha_workers");
    let c = ha_request(
        &mut s,
        Request::HaApply {
            changes: changes(EventType::Update, 10),
            target: HaTarget::Workers,
        },
    );
    assert_eq!((c.applied, c.cache_entries), (10, 0));
    let sent: usize = s
        .backend
        .workers
        .iter()
        .flat_map(|w| &w.synced)
        .map(|(r, adopt)| {
            assert!(!adopt);
            r.len()
        })
        .sum();
    assert_eq!(sent, 10);
    let mut bad = changes(EventType::New, 3);
    bad[2].entry.family = "ipx".into();
    let e = s
        .request(Request::HaApply {
            changes: bad,
            target: HaTarget::Cache,
        })
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("changes[2].entry.family"));
    // All or nothing: the good ones before it were not applied.
    assert_eq!(ha_request(&mut s, Request::HaStatus).cache_entries, 0);
}

#[test]
fn ruleset_commands_apply_atomically_and_keep_untouched_counters() {
    use crate::rules::compile::ct_state;
    use crate::rules::tests::{ctx, tcp, v4};
    let (mut s, dir) = with_rules("cmds");
    replace(&mut s, GOOD).unwrap();
    let ssh = tcp(v4([198, 18, 0, 1]), v4([198, 18, 0, 2]), 1000, 22, 0x02);
    let running = s.rules.as_ref().unwrap().current();
    running.eval(
        crate::rules::Hook::Input,
        &mut ctx(&ssh, ct_state::NEW),
        0,
        1,
    );
    drop(running);
    // A failing command: nothing changes, the error names its line and column.
    let e = s
        .ruleset_commands(
            "add rule inet filter input udp dport 53 accept\ndelete rule inet filter input handle 9\n",
            false,
        )
        .unwrap_err();
    assert_eq!(
        (e.code, e.line, e.column),
        (ErrorCode::BadRuleset, Some(2), Some(38))
    );
    assert_eq!(s.generation(), 2);
    let e = s.ruleset_commands("# nothing\n\n", false).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRuleset);
    let dry = s
        .ruleset_commands("add rule inet filter input udp dport 53 accept\n", true)
        .unwrap();
    assert!(matches!(
        dry,
        Response::RulesetApplied {
            generation: 2,
            dry_run: true,
            rules: 2,
            ..
        }
    ));
    let r = ask(
        &mut s,
        r#"{"v":1,"id":7,"request":{"op":"ruleset_commands","commands":"add rule inet filter input udp dport 53 accept"}}"#,
    );
    assert!(
        matches!(
            r.result,
            Some(Response::RulesetApplied {
                generation: 3,
                dry_run: false,
                rules: 2,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(
        std::fs::read_to_string(dir.join(RULESET_FILE))
            .unwrap()
            .contains("udp dport 53 accept")
    );
    let counters = match s.request(Request::RuleCounters).unwrap() {
        Response::RuleCounters { counters, .. } => counters,
        other => panic!("{other:?}"),
    };
    let packets: Vec<(u64, u64)> = counters.iter().map(|c| (c.handle, c.packets)).collect();
    assert_eq!(packets, [(1, 1), (2, 0)], "the SSH rule kept its count");
    s.ruleset_commands("delete rule inet filter input handle 2\n", false)
        .unwrap();
    // The deleted rule's handle is not given again (the kernel's rule).
    s.ruleset_commands("add rule inet filter input udp dport 54 accept\n", false)
        .unwrap();
    let counters = match s.request(Request::RuleCounters).unwrap() {
        Response::RuleCounters { counters, .. } => counters,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        counters.iter().map(|c| c.handle).collect::<Vec<_>>(),
        [1, 3]
    );
    s.ruleset_commands("delete rule inet filter input handle 3\n", false)
        .unwrap();
    match s.request(Request::RulesetGet).unwrap() {
        Response::Ruleset(v) => {
            assert_eq!(v.generation, 6);
            assert!(!v.text.contains("dport 53"), "{}", v.text);
            assert_eq!(v.counters[0].packets, 1);
        }
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn set_elements_list_add_delete_as_one_generation_each() {
    use crate::control::proto::{ElementChange, SetElement, TableFamilyName};
    use crate::rules::compile::ct_state;
    use crate::rules::tests::{ctx, tcp, v4};
    let (mut s, dir) = with_rules("elements");
    replace(
        &mut s,
        "table inet filter {\n  map fw { type ipv4_addr . inet_service : verdict; elements = { 198.18.0.1 . 22 : accept } }\n  set bl { type ipv4_addr; flags interval; }\n  chain input {\n    type filter hook input priority filter; policy drop;\n    ip saddr @bl drop\n    ip saddr . tcp dport vmap @fw\n  }\n}\n",
    )
    .unwrap();
    let ssh = tcp(v4([198, 18, 0, 1]), v4([198, 18, 0, 2]), 1000, 22, 0x02);
    s.rules.as_ref().unwrap().current().eval(
        crate::rules::Hook::Input,
        &mut ctx(&ssh, ct_state::NEW),
        0,
        1,
    );
    let el = |key: &str, data: Option<&str>| SetElement {
        key: key.into(),
        data: data.map(Into::into),
        timeout: None,
        expires: None,
    };
    let change = |s: &mut Server<Fake>, set: &str, change, elements| {
        s.request(Request::SetElementsChange {
            family: None,
            table: "filter".into(),
            set: set.into(),
            change,
            elements,
            dry_run: false,
        })
    };
    let r = change(
        &mut s,
        "fw",
        ElementChange::Add,
        vec![
            el("198.18.0.3 . 80", Some("drop")),
            el("198.18.0.1 . 22", Some("accept")),
        ],
    )
    .unwrap();
    assert!(
        matches!(r, Response::RulesetApplied { generation: 3, .. }),
        "{r:?}"
    );
    change(
        &mut s,
        "bl",
        ElementChange::Add,
        vec![el("203.0.113.0/24", None)],
    )
    .unwrap();
    let view = match s
        .request(Request::SetElementsGet {
            family: Some(TableFamilyName::Inet),
            table: "filter".into(),
            set: "fw".into(),
        })
        .unwrap()
    {
        Response::SetElements(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!((view.generation, view.keyword.as_str()), (4, "map"));
    assert_eq!(view.key_type, "ipv4_addr . inet_service");
    assert_eq!(view.data_type.as_deref(), Some("verdict"));
    assert_eq!(
        view.elements,
        [
            el("198.18.0.1 . 22", Some("accept")),
            el("198.18.0.3 . 80", Some("drop"))
        ]
    );
    assert!(view.text.contains("map fw {"), "{}", view.text);
    // Errors: each a code the API maps to its status, naming the field; nothing changes.
    let e = change(
        &mut s,
        "fw",
        ElementChange::Add,
        vec![el("198.18.0.3 . 80", Some("accept"))],
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("elements[0]")),
        "{e:?}"
    );
    let e = change(
        &mut s,
        "fw",
        ElementChange::Delete,
        vec![el("198.18.0.3 . 80", None), el("198.18.0.9 . 80", None)],
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::NotFound, Some("elements[1]")),
        "{e:?}"
    );
    let e = change(
        &mut s,
        "fw",
        ElementChange::Add,
        vec![el("198.18.0.3", Some("drop"))],
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::BadRequest, Some("elements[0].key"))
    );
    let e = change(
        &mut s,
        "fw",
        ElementChange::Add,
        vec![el("198.18.0.3 . 1; flush ruleset", Some("drop"))],
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("elements[0].key"), "{e:?}");
    let e = change(
        &mut s,
        "fw",
        ElementChange::Add,
        vec![el("198.18.0.4 . 1", None)],
    )
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("elements[0].data"));
    let e = change(&mut s, "nope", ElementChange::Add, vec![el("1", None)]).unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::NotFound, Some("set"))
    );
    let mut timed = el("203.0.113.9", None);
    timed.timeout = Some(60);
    let e = change(&mut s, "bl", ElementChange::Add, vec![timed]).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("elements[0].timeout"));
    assert_eq!(s.generation(), 4, "no failed change made a generation");
    // Delete (the data is not compared); the vmap rule kept its counter throughout.
    change(
        &mut s,
        "fw",
        ElementChange::Delete,
        vec![el("198.18.0.3 . 80", Some("accept"))],
    )
    .unwrap();
    let counters = match s.request(Request::RuleCounters).unwrap() {
        Response::RuleCounters { counters, .. } => counters,
        other => panic!("{other:?}"),
    };
    let packets: Vec<(u64, u64)> = counters.iter().map(|c| (c.handle, c.packets)).collect();
    assert_eq!(packets, [(1, 0), (2, 1)]);
    let persisted = std::fs::read_to_string(dir.join(RULESET_FILE)).unwrap();
    assert!(
        persisted.contains("elements = { 198.18.0.1 . 22 : accept }"),
        "{persisted}"
    );
    assert!(
        persisted.contains("elements = { 203.0.113.0/24 }"),
        "{persisted}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ha_takeover_commits_then_has_the_slow_path_announce() {
    use crate::control::proto::{HaTakeover, HaTarget};
    use crate::route::{NeighConfig, RouteTableBuilder};
    use crate::worker::{PortInfo, SlowOut, SlowPath};
    let (mut s, _) = server(&[0, 0], "ha_takeover");
    // Without a slow path the takeover is refused before anything is committed.
    s.request(Request::HaApply {
        changes: changes(EventType::New, 5),
        target: HaTarget::Cache,
    })
    .unwrap();
    let e = s
        .request(Request::HaTakeover { addresses: vec![] })
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    assert_eq!(ha_request(&mut s, Request::HaStatus).cache_entries, 5);

    let announcer = Arc::new(crate::ha::announce::Announcer::default());
    s.cfg.announcer = Some(announcer.clone());
    let mut b = RouteTableBuilder::new();
    let own: IpAddr = "198.18.0.1".parse().unwrap();
    let own6: IpAddr = "2001:db8::1".parse().unwrap();
    b.port_address(1, own.into(), 24).unwrap();
    b.port_address(0, own6.into(), 64).unwrap();
    let port = PortInfo {
        mac: [2, 0, 0, 0, 0, 7],
        mtu: 1500,
        hw_rss: false,
    };
    let mut slow = SlowPath::<Vec<u8>>::new(
        vec![port, port],
        Arc::new(b.build()),
        NeighConfig::default(),
    );
    slow.set_announcer(announcer);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let slow_thread = std::thread::spawn(move || {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        for now in 0..20_000u64 {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            slow.tick(now, &mut out);
            frames.extend(out.drain(..).filter_map(|o| match o {
                SlowOut::Send { port, frame } => Some((port, frame)),
                _ => None,
            }));
            std::thread::sleep(Duration::from_micros(200));
        }
        frames
    });
    let foreign: IpAddr = "198.18.0.2".parse().unwrap();
    let takeover = |s: &mut Server<Fake>, addresses| match s
        .request(Request::HaTakeover { addresses })
        .unwrap()
    {
        Response::HaTakeover(t) => t,
        other => panic!("{other:?}"),
    };
    let t = takeover(&mut s, vec![own, own6, foreign]);
    assert_eq!(
        t,
        HaTakeover {
            counters: crate::control::proto::HaCounters {
                cache_entries: 0,
                applied: 10,
                failed: 0,
                committed: 5,
                commits: 1,
            },
            garp_sent: 1,
            na_sent: 1,
            not_local: vec![foreign],
        }
    );
    let synced: usize = s
        .backend
        .workers
        .iter()
        .flat_map(|w| &w.synced)
        .map(|(r, _)| r.len())
        .sum();
    assert_eq!(synced, 5, "the cache reached the workers");
    // Idempotent: nothing left to commit, the addresses announced again.
    let t = takeover(&mut s, vec![]);
    assert_eq!((t.counters.committed, t.counters.commits), (5, 2));
    assert_eq!((t.garp_sent, t.na_sent), (1, 1));
    stop.store(true, Ordering::Relaxed);
    let frames = slow_thread.join().unwrap();
    assert_eq!(frames.len(), 4);
    for (port, f) in &frames {
        if f[12..14] == [0x08, 0x06] {
            assert_eq!(*port, 1);
            assert_eq!(&f[20..22], &[0, 1], "ARP request");
            assert_eq!(
                (&f[28..32], &f[38..42]),
                (&[198, 18, 0, 1][..], &[198, 18, 0, 1][..])
            );
        } else {
            assert_eq!(*port, 0);
            assert_eq!(f[54], 136, "neighbour advertisement");
        }
    }
}

#[test]
fn a_dynamic_sets_listing_holds_the_data_paths_elements_with_their_expiry() {
    use crate::control::proto::TableFamilyName;
    use crate::rules::ast::TableFamily;
    let (mut s, dir) = with_rules("dynlist");
    // Installed at 0 s on the workers' clock: the declared elements' timeouts start then.
    replace(
        &mut s,
        "table ip filter {\n  set bl {\n    type ipv4_addr\n    flags dynamic,timeout\n    timeout 10m\n    elements = { 198.18.0.9, 198.18.0.8 timeout 5m }\n  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n    ip saddr @bl drop\n  }\n}\n",
    )
    .unwrap();
    let sec = 1_000_000_000u64;
    let now = 100 * sec;
    s.backend.now_ns = now;
    // A store key: an IPv4 address in its 32 bits (`rules::compile::DynKey`).
    let key = |o: [u8; 4]| crate::rules::compile::Packed::from(u128::from(u32::from_be_bytes(o)));
    {
        let cur = s.rules.as_ref().unwrap().current();
        let store = cur
            .dynset_store(TableFamily::Ip, "filter", "bl")
            .expect("a dynamic set has a store");
        // Added by the data path 2 s ago with the set's 10 m timeout.
        assert!(
            store
                .insert(
                    key([198, 18, 0, 7]),
                    now - 2 * sec + 600 * sec,
                    now - 2 * sec
                )
                .is_some()
        );
    }
    let r = s
        .set_elements(Some(TableFamilyName::Ip), "filter", "bl")
        .unwrap();
    let Response::SetElements(v) = r else {
        panic!("{r:?}")
    };
    let mut got: Vec<(String, Option<u64>)> = v
        .elements
        .iter()
        .map(|e| (e.key.clone(), e.expires))
        .collect();
    got.sort();
    // The live one has 598 s left; the declared ones, installed 100 s ago, the set's
    // 10 m and their own 5 m less that (as `nft list set` after `nft -f`).
    assert_eq!(
        got,
        [
            ("198.18.0.7".to_string(), Some(598)),
            ("198.18.0.8".to_string(), Some(200)),
            ("198.18.0.9".to_string(), Some(500))
        ]
    );
    let line = v
        .text
        .lines()
        .find(|l| l.trim_start().starts_with("elements = "))
        .unwrap_or_else(|| panic!("{}", v.text));
    assert!(line.contains("198.18.0.7 expires 9m58s"), "{}", v.text);
    // Its own timeout, not the set's: written as nft 1.0.6 writes it.
    assert!(
        line.contains("198.18.0.8 timeout 5m expires 3m20s"),
        "{}",
        v.text
    );
    let own: Vec<_> = v.elements.iter().map(|e| e.timeout).collect();
    assert_eq!(own.iter().flatten().collect::<Vec<_>>(), [&300], "{own:?}");
    assert!(line.contains("198.18.0.9 expires 8m20s"), "{}", v.text);
    assert_eq!(v.text.matches("elements = ").count(), 1, "{}", v.text);
    // Expired: gone from the listing (`.8` 5 m and `.9` 10 m after the install, `.7` at
    // 698 s).
    s.backend.now_ns = now + 499 * sec;
    assert_eq!(keys_of(&s, "filter", "bl"), ["198.18.0.7", "198.18.0.9"]);
    s.backend.now_ns = now + 500 * sec;
    assert_eq!(keys_of(&s, "filter", "bl"), ["198.18.0.7"]);
    s.backend.now_ns = now + 598 * sec;
    assert!(keys_of(&s, "filter", "bl").is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn element_changes_on_a_dynamic_set_act_on_the_data_paths_elements() {
    use crate::control::proto::{ElementChange, SetElement};
    use crate::rules::ast::TableFamily;
    use crate::rules::compile::{Decision, ct_state};
    use crate::rules::tests::{ctx, tcp, v4};
    let (mut s, dir) = with_rules("dynchange");
    replace(
        &mut s,
        "table ip filter {\n  set bl {\n    type ipv4_addr\n    flags dynamic,timeout\n    timeout 10m\n    elements = { 198.18.0.9 }\n  }\n  set plain {\n    type ipv4_addr\n    flags dynamic\n  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n    ip saddr @bl drop\n    ip saddr @plain drop\n  }\n}\n",
    )
    .unwrap();
    let sec = 1_000_000_000u64;
    let now = 100 * sec;
    s.backend.now_ns = now;
    // A store key: an IPv4 address in its 32 bits (`rules::compile::DynKey`).
    let key = |o: [u8; 4]| crate::rules::compile::Packed::from(u128::from(u32::from_be_bytes(o)));
    let store = |s: &Server<Fake>, set: &str| {
        let cur = s.rules.as_ref().unwrap().current();
        Arc::clone(cur.dynset_store(TableFamily::Ip, "filter", set).unwrap())
    };
    // Added by the data path (as `add @bl { ip saddr }` would).
    assert!(
        store(&s, "bl")
            .insert(key([198, 18, 0, 7]), now + 600 * sec, now)
            .is_some()
    );
    let el = |k: &str, timeout: Option<u64>| SetElement {
        key: k.into(),
        data: None,
        timeout,
        expires: None,
    };
    let change = |s: &mut Server<Fake>, set: &str, change, elements, dry_run| {
        s.request(Request::SetElementsChange {
            family: None,
            table: "filter".into(),
            set: set.into(),
            change,
            elements,
            dry_run,
        })
    };
    let drops = |s: &Server<Fake>, src: [u8; 4]| {
        let p = tcp(v4(src), v4([198, 18, 1, 1]), 1000, 22, 0x02);
        let cur = s.rules.as_ref().unwrap().current();
        let r = cur.eval(
            crate::rules::Hook::Input,
            &mut ctx(&p, ct_state::NEW),
            0,
            now + sec,
        );
        r.verdict == Decision::Drop
    };
    let gen0 = s.generation();
    // Add: into the store, with the set's timeout or the element's; no new generation.
    let r = change(
        &mut s,
        "bl",
        ElementChange::Add,
        vec![el("198.18.0.5", None), el("198.18.0.6", Some(30))],
        false,
    )
    .unwrap();
    assert!(
        matches!(r, Response::RulesetApplied { generation, dry_run: false, .. } if generation == gen0),
        "{r:?}"
    );
    assert!(drops(&s, [198, 18, 0, 5]) && drops(&s, [198, 18, 0, 6]));
    let got = listed(&s, "bl", |e| e.expires);
    assert_eq!(
        got,
        [
            ("198.18.0.5".to_string(), Some(600)),
            ("198.18.0.6".to_string(), Some(30)),
            ("198.18.0.7".to_string(), Some(600)),
            ("198.18.0.9".to_string(), Some(500))
        ]
    );
    // Add of a live element: nothing changes (its expiry included); create: conflict.
    change(
        &mut s,
        "bl",
        ElementChange::Add,
        vec![el("198.18.0.6", None)],
        false,
    )
    .unwrap();
    let e = store(&s, "bl").elements(now);
    let six = e.iter().find(|x| x.key == key([198, 18, 0, 6])).unwrap();
    assert_eq!(six.expires_ns, Some(30 * sec));
    let e = change(
        &mut s,
        "bl",
        ElementChange::Create,
        vec![el("198.18.0.8", None), el("198.18.0.5", None)],
        false,
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("elements[1]")),
        "{e:?}"
    );
    assert!(
        !drops(&s, [198, 18, 0, 8]),
        "a refused create added nothing"
    );
    // Delete: a missing element refuses the whole request.
    let e = change(
        &mut s,
        "bl",
        ElementChange::Delete,
        vec![el("198.18.0.7", None), el("198.18.0.4", None)],
        false,
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::NotFound, Some("elements[1]")),
        "{e:?}"
    );
    assert!(drops(&s, [198, 18, 0, 7]));
    // A dry run changes nothing.
    change(
        &mut s,
        "bl",
        ElementChange::Delete,
        vec![el("198.18.0.7", None)],
        true,
    )
    .unwrap();
    assert!(drops(&s, [198, 18, 0, 7]));
    // The data path's element is deleted from the store.
    change(
        &mut s,
        "bl",
        ElementChange::Delete,
        vec![el("198.18.0.7", None)],
        false,
    )
    .unwrap();
    assert!(!drops(&s, [198, 18, 0, 7]));
    assert_eq!(s.generation(), gen0);
    // A declared element leaves the store and the declaration (a new generation that
    // keeps the store: the other elements stay).
    change(
        &mut s,
        "bl",
        ElementChange::Delete,
        vec![el("198.18.0.9", None)],
        false,
    )
    .unwrap();
    assert!(s.generation() > gen0);
    assert!(!drops(&s, [198, 18, 0, 9]));
    assert!(drops(&s, [198, 18, 0, 5]), "the store was kept");
    let src = s.rules.as_ref().unwrap().current().source().clone();
    assert!(
        src.tables[0].sets[0].elements.is_empty(),
        "{:?}",
        src.tables[0].sets[0]
    );
    // Faults name their field.
    for (set, els, field) in [
        (
            "plain",
            vec![el("198.18.0.1", Some(5))],
            "elements[0].timeout",
        ),
        ("bl", vec![el("198.18.0.0/24", None)], "elements[0].key"),
        ("bl", vec![el("nonsense", None)], "elements[0].key"),
        (
            "bl",
            vec![SetElement {
                data: Some("accept".into()),
                ..el("198.18.0.1", None)
            }],
            "elements[0].data",
        ),
    ] {
        let e = change(&mut s, set, ElementChange::Add, els, false).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::BadRequest, Some(field)),
            "{e:?}"
        );
    }
    // A set without a timeout keeps its elements until deleted.
    change(
        &mut s,
        "plain",
        ElementChange::Add,
        vec![el("198.18.0.3", None)],
        false,
    )
    .unwrap();
    let e = store(&s, "plain").elements(now + 100_000 * sec);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].expires_ns, None);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_meter_lists_and_loses_elements_as_a_dynamic_set() {
    use crate::control::proto::{ElementChange, SetElement};
    use crate::rules::ast::TableFamily;
    let (mut s, dir) = with_rules("meter");
    replace(
        &mut s,
        "table ip t {\n  chain c {\n    type filter hook input priority filter; policy accept;\n    tcp dport 22 meter m size 128 { ip saddr limit rate 5/second } accept\n  }\n}\n",
    )
    .unwrap();
    let now = 50_000_000_000u64;
    s.backend.now_ns = now;
    let key = crate::rules::compile::Packed::from(u128::from(u32::from_be_bytes([198, 18, 0, 7])));
    {
        let cur = s.rules.as_ref().unwrap().current();
        let store = cur.dynset_store(TableFamily::Ip, "t", "m").unwrap();
        assert!(store.insert(key, u64::MAX, now).is_some());
    }
    let Response::SetElements(v) = s.set_elements(None, "t", "m").unwrap() else {
        panic!()
    };
    let keys: Vec<&str> = v.elements.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["198.18.0.7"], "{}", v.text);
    // As `nft list meter` (nft 1.0.6) writes it.
    assert!(
        v.text
            .contains("\tmeter m {\n\t\ttype ipv4_addr\n\t\tsize 128\n\t\tflags dynamic\n"),
        "{}",
        v.text
    );
    assert_eq!(v.keyword, "meter");
    assert!(v.text.contains("elements = { 198.18.0.7 }"), "{}", v.text);
    s.request(Request::SetElementsChange {
        family: None,
        table: "t".into(),
        set: "m".into(),
        change: ElementChange::Delete,
        elements: vec![SetElement {
            key: "198.18.0.7".into(),
            data: None,
            timeout: None,
            expires: None,
        }],
        dry_run: false,
    })
    .unwrap();
    assert!(keys_of(&s, "t", "m").is_empty());
    let e = s.set_elements(None, "t", "nope").unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let _ = std::fs::remove_dir_all(dir);
}

/// The sync record of a change as `ha_apply` would read it.
fn change_record(c: &crate::control::proto::HaChange) -> crate::ha::wire::Record {
    use crate::ha::wire::Record;
    let s = crate::conntrack::Synced::from_ct_entry(&c.entry).unwrap();
    match c.kind {
        EventType::Destroy => Record::Destroy(s.orig),
        kind => Record::Upsert {
            new: kind == EventType::New,
            entry: s,
        },
    }
}

fn records_text(recs: &[crate::ha::wire::Record]) -> String {
    let mut body = Vec::new();
    for r in recs {
        crate::ha::wire::put_record(&mut body, r);
    }
    crate::ha::wire::base64_encode(&body)
}

#[test]
fn ha_apply_records_applies_what_ha_apply_does_and_refuses_bad_batches_whole() {
    use crate::control::proto::HaTarget;
    let (mut json, _) = server(&[0, 0], "ha_rec_json");
    let (mut bin, _) = server(&[0, 0], "ha_rec_bin");
    let mut all = changes(EventType::New, 30);
    let mut gone = changes(EventType::Destroy, 3);
    gone[2].entry = entry(0, 200); // not in the cache: refused by both
    all.extend(gone);
    let recs: Vec<_> = all.iter().map(change_record).collect();
    let a = ha_request(
        &mut json,
        Request::HaApply {
            changes: all,
            target: HaTarget::Cache,
        },
    );
    let b = ha_request(
        &mut bin,
        Request::HaApplyRecords {
            records: records_text(&recs),
            target: HaTarget::Cache,
        },
    );
    assert_eq!(a, b);
    assert_eq!((b.applied, b.failed, b.cache_entries), (32, 1, 28));
    assert_eq!(
        json.ha.cache, bin.ha.cache,
        "the same entries, field by field"
    );
    // To the workers: each record reaches its owner, as with ha_apply.
    let c = ha_request(
        &mut bin,
        Request::HaApplyRecords {
            records: records_text(&recs[..10]),
            target: HaTarget::Workers,
        },
    );
    assert_eq!((c.applied, c.failed), (10, 0));
    // A truncated batch, a garbled record, text that is not base64: refused whole,
    // naming `records` (and the record), nothing applied.
    let mut body = Vec::new();
    for r in &recs[..4] {
        crate::ha::wire::put_record(&mut body, r);
    }
    let good = crate::ha::wire::record_len(&recs[0]);
    let mut garbled = body.clone();
    garbled[2 * good] = 77;
    for (text, says) in [
        (
            crate::ha::wire::base64_encode(&body[..body.len() - 1]),
            "records[3]",
        ),
        (crate::ha::wire::base64_encode(&garbled), "records[2]"),
        ("%%%".to_string(), "not base64"),
    ] {
        let (mut s, _) = server(&[0], "ha_rec_bad");
        let e = s
            .request(Request::HaApplyRecords {
                records: text,
                target: HaTarget::Cache,
            })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(e.field.as_deref(), Some("records"));
        assert!(e.message.contains(says), "{}", e.message);
        assert_eq!(ha_request(&mut s, Request::HaStatus).cache_entries, 0);
    }
}

/// Raw events of worker-table snapshots: `entry(0, i)` with `kind`, SYNCED when asked.
fn raw_event(kind: crate::conntrack::EventKind, i: u8, synced: bool) -> crate::conntrack::CtEvent {
    let mut snap = snapshot(0, i);
    if synced {
        snap.status |= crate::conntrack::SYNCED;
    }
    crate::conntrack::CtEvent { kind, entry: snap }
}

#[test]
fn a_raw_take_gives_sync_records_and_the_same_lines_as_the_json_take() {
    use crate::ha::wire::{Record, decode_records};
    let (mut s, _) = server(&[0, 0], "rawtake");
    let evs = [
        raw_event(crate::conntrack::EventKind::New, 1, false),
        raw_event(crate::conntrack::EventKind::Update, 2, true),
        raw_event(crate::conntrack::EventKind::Destroy, 3, false),
    ];
    s.backend.workers[1].raw_events = evs.to_vec();
    let t = s.take_raw_events(true);
    assert_eq!((t.count, t.synced_skipped, t.lost), (2, 1, 0));
    let recs = decode_records(&t.records).unwrap();
    assert_eq!(
        recs,
        vec![
            Record::Upsert {
                new: true,
                entry: crate::conntrack::Synced::from_snapshot(&evs[0].entry)
            },
            Record::Destroy(evs[2].entry.orig),
        ]
    );
    // JSON subscribers of the same poll get every event (the SYNCED one too) as lines.
    assert_eq!(t.lines.len(), 3);
    for (l, e) in t.lines.iter().zip(&evs) {
        assert_eq!(l.kind, EventType::from(e.kind));
        assert_eq!(l.entry, e.entry.to_ct_entry(1));
        assert!(l.timestamp_ms > 1_700_000_000_000, "{}", l.timestamp_ms);
    }
    // Taken: a second poll finds nothing; no lines without JSON subscribers.
    let t = s.take_raw_events(false);
    assert_eq!((t.count, t.lines.len(), t.records.len()), (0, 0, 0));
}

/// Serves `s` with a `subscribe_records` client: the first batch line it reads.
fn first_record_batch(
    s: Server<Fake>,
    dir: &std::path::Path,
) -> crate::control::proto::RecordBatch {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("control.sock");
    let listener = bind(&path).unwrap();
    let (stop, t, mut w, mut r) = serve_and_connect(s, listener, &path);
    w.write_all(b"{\"v\":1,\"id\":7,\"request\":{\"op\":\"subscribe_records\"}}\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let resp: ResponseEnvelope = serde_json::from_str(&line).unwrap();
    assert_eq!(resp.into_result().unwrap(), Response::Subscribed);
    line.clear();
    r.read_line(&mut line).unwrap();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let _ = std::fs::remove_dir_all(dir);
    serde_json::from_str(&line).unwrap()
}

#[test]
fn subscribe_records_streams_batches_over_the_socket() {
    use crate::ha::wire::{Record, base64_decode, decode_records};
    let (mut s, _) = server(&[1], "subrecstate");
    s.backend.workers[0].raw_events = vec![
        raw_event(crate::conntrack::EventKind::Update, 5, false),
        raw_event(crate::conntrack::EventKind::Destroy, 6, true),
    ];
    let b = first_record_batch(s, &tmpdir("subrec"));
    assert_eq!((b.count, b.synced_skipped, b.lost), (1, 1, 0));
    let recs = decode_records(&base64_decode(&b.records).unwrap()).unwrap();
    let Record::Upsert { new: false, entry } = recs[0] else {
        panic!("{recs:?}")
    };
    assert_eq!(entry.orig.sport, 1005);
}

/// Events lost in a worker's ring reach the record subscriber at the next poll, in a
/// batch of no records, not only with the next event (which may never come).
#[test]
fn a_record_subscriber_hears_of_lost_events_without_waiting_for_new_ones() {
    let (mut s, _) = server(&[1, 1], "subloststate");
    s.backend.workers[0].raw_lost = 3;
    s.backend.workers[1].raw_lost = 4;
    let b = first_record_batch(s, &tmpdir("sublost"));
    assert_eq!((b.count, b.synced_skipped, b.lost), (0, 0, 7));
    assert_eq!(b.records, "");
}

#[test]
fn conntrack_expect_lists_the_shared_table_and_helper_counters() {
    use crate::conntrack::FlowKey;
    use crate::helper::{ExpectTable, Expectation, HelperKind};
    use crate::wire::{Addr, Family};
    let list = |s: &mut Server<Fake>, counters_only: bool| match s
        .request(Request::ConntrackExpect { counters_only })
        .unwrap()
    {
        Response::ConntrackExpect(l) => l,
        other => panic!("wrong response {other:?}"),
    };
    let (mut s, dir) = server(&[0, 0], "expect");
    // Without a table: an empty answer, not an error.
    let l = list(&mut s, false);
    assert!(l.expectations.is_empty());
    let t = Arc::new(ExpectTable::new(64));
    let a = |x: [u8; 4]| Addr::from_v4(x);
    let master = FlowKey {
        src: a([198, 51, 100, 2]),
        dst: a([203, 0, 113, 9]),
        sport: 40000,
        dport: 21,
        zone: 0,
        proto: 6,
        family: Family::V4,
    };
    let e = Expectation {
        family: Family::V4,
        proto: 6,
        src: a([203, 0, 113, 9]),
        dst: a([198, 51, 100, 2]),
        dport: 50123,
        helper: HelperKind::Ftp,
        master,
        master_worker: 1,
        master_id: 7,
        nat: None,
    };
    let now = 1_000_000_000;
    t.insert(&e, now + 299_500_000_000, now).unwrap();
    s.backend.expect = Some(t.clone());
    s.backend.now_ns = now;
    s.backend.workers[1].helper.announced = 3;
    s.backend.workers[0].helper.related = 2;
    let l = list(&mut s, false);
    assert_eq!(l.expectations.len(), 1);
    let x = &l.expectations[0];
    assert_eq!(x.timeout, 300, "299.5 s left shows as 300, rounded up");
    assert_eq!(x.src, "203.0.113.9".parse::<IpAddr>().unwrap());
    assert_eq!(x.dst, "198.51.100.2".parse::<IpAddr>().unwrap());
    assert_eq!((x.sport, x.dport, x.proto.as_str()), (0, 50123, "tcp"));
    assert_eq!((x.master_sport, x.master_dport), (40000, 21));
    assert_eq!(x.master_src, "198.51.100.2".parse::<IpAddr>().unwrap());
    assert_eq!((x.helper.as_str(), x.master_worker), ("ftp", 1));
    assert_eq!(
        (l.counters.create, l.counters.count, l.counters.max),
        (1, 1, 64)
    );
    assert_eq!(l.workers.len(), 2);
    assert_eq!((l.workers[0].related, l.workers[1].announced), (2, 3));
    // Past its expiry it is no longer listed.
    s.backend.now_ns = now + 300_000_000_000;
    let l = list(&mut s, false);
    assert!(l.expectations.is_empty());
    // The scrape's form: counters, no listing.
    s.backend.now_ns = now;
    let l = list(&mut s, true);
    assert!(l.expectations.is_empty());
    assert_eq!((l.counters.count, l.workers.len()), (1, 2));
    // The wire form without the flag is the full listing.
    let r: Request = serde_json::from_str(r#"{"op":"conntrack_expect"}"#).unwrap();
    assert_eq!(
        r,
        Request::ConntrackExpect {
            counters_only: false
        }
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Expectations in sync (docs/ha.md, "Expectations"): the primary's control thread puts
/// an expectation its helper made on the record stream once (not again while unchanged;
/// never one that came from the peer), and its destroy when it is gone; the backup
/// applies it to its shared table at once, where the expected data connection finds it,
/// and removes it on the destroy.
#[test]
fn expectations_go_out_on_the_record_stream_and_the_peer_finds_the_data_connection() {
    use crate::conntrack::FlowKey;
    use crate::control::proto::HaTarget;
    use crate::ha::wire::{ExpectKey, Record, SYNCED_MASTER, SyncedExpect, decode_records};
    use crate::helper::{ExpectTable, Expectation, HelperKind};
    use crate::wire::{Addr, Family};
    const S: u64 = 1_000_000_000;
    let a = |x: [u8; 4]| Addr::from_v4(x);
    let e = Expectation {
        family: Family::V4,
        proto: 6,
        src: a([203, 0, 113, 9]),
        dst: a([198, 51, 100, 1]),
        dport: 50000,
        helper: HelperKind::Ftp,
        master: FlowKey {
            src: a([198, 18, 0, 2]),
            dst: a([203, 0, 113, 9]),
            sport: 40000,
            dport: 21,
            zone: 0,
            proto: 6,
            family: Family::V4,
        },
        master_worker: 1,
        master_id: 7,
        nat: None,
    };
    let (mut p, _) = server(&[0, 0], "ha_expect_p");
    let t = Arc::new(ExpectTable::new(64));
    p.backend.expect = Some(t.clone());
    p.backend.now_ns = 10 * S;
    let slot = t.insert(&e, 310 * S, 10 * S).unwrap();
    let recs = |t: &fanout::TakenEvents| {
        assert_eq!(t.count, decode_records(&t.records).unwrap().len() as u64);
        decode_records(&t.records).unwrap()
    };
    let first = p.take_raw_events(false);
    let sent = SyncedExpect::from_expectation(&e, 300 * S);
    assert_eq!(recs(&first), vec![Record::Expect(sent)]);
    assert_eq!(sent.timeout_s, 300);
    assert_eq!(
        p.take_raw_events(false).count,
        0,
        "unchanged: not sent again"
    );
    // One that came from the peer moves the counters but is not sent back.
    let peer = Expectation {
        dport: 50001,
        master_worker: SYNCED_MASTER,
        ..e
    };
    t.insert(&peer, 300 * S, 10 * S).unwrap();
    assert_eq!(p.take_raw_events(false).count, 0);

    // The backup: applied to its table at once (target cache), found by the data
    // connection's first packet (any source port).
    let apply = |b: &mut Server<Fake>, t: &fanout::TakenEvents, target| {
        let records = crate::ha::wire::base64_encode(&t.records);
        ha_request(b, Request::HaApplyRecords { records, target })
    };
    let (mut b, _) = server(&[0, 0], "ha_expect_b");
    let bt = Arc::new(ExpectTable::new(64));
    b.backend.expect = Some(bt.clone());
    b.backend.now_ns = 1000 * S;
    let c = apply(&mut b, &first, HaTarget::Cache);
    assert_eq!((c.applied, c.failed, c.cache_entries), (1, 0, 0));
    let listed = bt.list(1000 * S);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, sent.to_expectation());
    assert_eq!(
        listed[0].1,
        300 * S,
        "the time the primary said it had left"
    );

    // The primary's expectation goes (replaced, used or removed): its destroy follows.
    assert!(t.remove(slot, 1, 7, 11 * S));
    let gone = p.take_raw_events(false);
    assert_eq!(recs(&gone), vec![Record::ExpectDestroy(ExpectKey::of(&e))]);
    let c = apply(&mut b, &gone, HaTarget::Workers);
    assert_eq!((c.applied, c.failed), (1, 0));
    assert!(bt.is_empty());
    // Applied again: nothing to remove, counted failed.
    let c = apply(&mut b, &gone, HaTarget::Cache);
    assert_eq!((c.applied, c.failed), (0, 1));
    // Announced again later: sent again with its new time left.
    t.insert(&e, 400 * S, 20 * S).unwrap();
    let again = p.take_raw_events(false);
    assert!(matches!(recs(&again)[..], [Record::Expect(x)] if x.timeout_s == 390));
    // On the backup the data connection's first packet (any source port) takes it:
    // `ct state related` there after a failover.
    apply(&mut b, &again, HaTarget::Cache);
    let took = bt
        .take(Family::V4, 6, e.src, e.dst, 50000, 1000 * S)
        .unwrap();
    assert_eq!((took.master, took.master_worker), (e.master, SYNCED_MASTER));
    assert!(bt.is_empty());
    // A table dump (RESYNC) carries the listing's form: the same record, the peer's own
    // left out.
    let view = expectation_view(&e, 300 * S);
    assert_eq!(SyncedExpect::from_view(&view), Some(sent));
    let theirs = expectation_view(&peer, 300 * S);
    assert_eq!(SyncedExpect::from_view(&theirs), None);
}

#[test]
fn concatenated_dynamic_set_elements_list_and_change_in_nfts_form() {
    use crate::control::proto::{ElementChange, ErrorCode, SetElement};
    use crate::rules::ast::TableFamily;
    use crate::rules::compile::ct_state;
    use crate::rules::tests::{ctx, tcp, v4};
    let (mut s, dir) = with_rules("dynconcat");
    replace(
        &mut s,
        "table ip filter {\n  set pairs {\n    type ipv4_addr . inet_service\n    flags dynamic,timeout\n    timeout 10m\n    elements = { 198.18.0.9 . 22 }\n  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n    ip saddr . tcp dport @pairs drop\n  }\n}\n",
    )
    .unwrap();
    let sec = 1_000_000_000u64;
    let now = 100 * sec;
    s.backend.now_ns = now;
    let el = |k: &str, timeout: Option<u64>| SetElement {
        key: k.into(),
        data: None,
        timeout,
        expires: None,
    };
    let change = |s: &mut Server<Fake>, change, elements| {
        s.request(Request::SetElementsChange {
            family: None,
            table: "filter".into(),
            set: "pairs".into(),
            change,
            elements,
            dry_run: false,
        })
    };
    change(
        &mut s,
        ElementChange::Add,
        vec![el("198.18.0.7 . 80", Some(5))],
    )
    .unwrap();
    let Response::SetElements(v) = s.set_elements(None, "filter", "pairs").unwrap() else {
        panic!()
    };
    let mut keys: Vec<(&str, Option<u64>)> = v
        .elements
        .iter()
        .map(|e| (e.key.as_str(), e.expires))
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [("198.18.0.7 . 80", Some(5)), ("198.18.0.9 . 22", Some(500))]
    );
    assert!(
        v.text.contains("198.18.0.7 . 80 timeout 5s expires 5s"),
        "{}",
        v.text
    );
    assert_eq!(v.key_type, "ipv4_addr . inet_service");
    let drops = |s: &Server<Fake>, src: [u8; 4], port: u16| {
        let p = tcp(v4(src), v4([198, 18, 1, 1]), 1000, port, 0x02);
        let cur = s.rules.as_ref().unwrap().current();
        let r = cur.eval(
            crate::rules::Hook::Input,
            &mut ctx(&p, ct_state::NEW),
            0,
            now + sec,
        );
        r.verdict == crate::rules::compile::Decision::Drop
    };
    assert!(drops(&s, [198, 18, 0, 7], 80));
    assert!(!drops(&s, [198, 18, 0, 7], 22), "the pair, not the address");
    assert!(drops(&s, [198, 18, 0, 9], 22));
    // A delete of the declared pair takes it out of the store and the declaration.
    change(
        &mut s,
        ElementChange::Delete,
        vec![el("198.18.0.9 . 22", None)],
    )
    .unwrap();
    assert!(!drops(&s, [198, 18, 0, 9], 22));
    let cur = s.rules.as_ref().unwrap().current();
    assert_eq!(cur.source().tables[0].maps[0].elements.len(), 0);
    let store = cur
        .dynset_store(TableFamily::Ip, "filter", "pairs")
        .unwrap();
    assert_eq!(store.elements(now).len(), 1);
    // A key that is not a pair is refused with its field.
    let e = change(&mut s, ElementChange::Add, vec![el("198.18.0.7", None)]).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(e.field.as_deref(), Some("elements[0].key"), "{e:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_element_command_with_a_timeout_reaches_the_running_dynamic_set() {
    use crate::rules::compile::ct_state;
    use crate::rules::tests::{ctx, tcp, v4};
    let (mut s, dir) = with_rules("elemcmd");
    replace(
        &mut s,
        "table ip filter {\n  set bl {\n    type ipv4_addr . inet_service\n    flags dynamic,timeout\n    timeout 10m\n  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n    ip saddr . tcp dport @bl drop\n  }\n}\n",
    )
    .unwrap();
    let sec = 1_000_000_000u64;
    let now = 100 * sec;
    s.backend.now_ns = now;
    // `fwctl nft 'add element …'`: an incremental change; the element is in the live
    // store from this generation on, with its own 5 s.
    s.ruleset_commands(
        "add element ip filter bl { 198.18.0.5 . 22 timeout 5s }\n",
        false,
    )
    .unwrap();
    let drops = |s: &Server<Fake>, at: u64| {
        let p = tcp(v4([198, 18, 0, 5]), v4([198, 18, 1, 1]), 1000, 22, 0x02);
        let cur = s.rules.as_ref().unwrap().current();
        let r = cur.eval(
            crate::rules::Hook::Input,
            &mut ctx(&p, ct_state::NEW),
            1,
            at,
        );
        r.verdict == crate::rules::compile::Decision::Drop
    };
    assert!(drops(&s, now + 5 * sec - 1));
    assert!(!drops(&s, now + 5 * sec));
    let Response::SetElements(v) = s.set_elements(None, "filter", "bl").unwrap() else {
        panic!()
    };
    let els: Vec<_> = v
        .elements
        .iter()
        .map(|e| (e.key.as_str(), e.timeout, e.expires))
        .collect();
    assert_eq!(els, [("198.18.0.5 . 22", Some(5), Some(5))]);
    assert!(
        v.text.contains("198.18.0.5 . 22 timeout 5s expires 5s"),
        "{}",
        v.text
    );
    // A set without `flags timeout`: refused with the element's line and column.
    let e = s
        .ruleset_commands(
            "add table ip u\nadd set ip u p { type ipv4_addr; }\nadd element ip u p { 198.18.0.6 timeout 5s }\n",
            false,
        )
        .unwrap_err();
    assert_eq!((e.line, e.column), (Some(3), Some(22)), "{e:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn element_changes_on_a_set_of_ipv6_address_and_port_act_on_the_data_path() {
    use crate::control::proto::{ElementChange, SetElement};
    use crate::rules::compile::{Decision, ct_state};
    use crate::rules::tests::{ctx, tcp};
    use crate::wire::Addr;
    let (mut s, dir) = with_rules("dynwide");
    replace(
        &mut s,
        "table ip6 filter {\n  set bl {\n    type ipv6_addr . inet_service\n    flags dynamic,timeout\n    timeout 10m\n  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n    tcp dport 22 add @bl { ip6 saddr . tcp dport }\n    ip6 saddr . tcp dport @bl drop\n  }\n}\n",
    )
    .unwrap();
    let sec = 1_000_000_000u64;
    let now = 100 * sec;
    s.backend.now_ns = now;
    let v6 = |t: &str| Addr(t.parse::<std::net::Ipv6Addr>().unwrap().octets());
    let drops = |s: &Server<Fake>, src: &str, dport: u16| {
        let p = tcp(v6(src), v6("2001:db8::ff"), 1000, dport, 0x02);
        let cur = s.rules.as_ref().unwrap().current();
        let r = cur.eval(
            crate::rules::Hook::Input,
            &mut ctx(&p, ct_state::NEW),
            0,
            now + sec,
        );
        r.verdict == Decision::Drop
    };
    let change = |s: &mut Server<Fake>, change, keys: &[&str]| {
        s.request(Request::SetElementsChange {
            family: None,
            table: "filter".into(),
            set: "bl".into(),
            change,
            elements: keys
                .iter()
                .map(|k| SetElement {
                    key: (*k).into(),
                    data: None,
                    timeout: Some(30),
                    expires: None,
                })
                .collect(),
            dry_run: false,
        })
    };
    // Added over the API (as `nft add element ip6 filter bl { 2001:db8::5 . 443 timeout
    // 30s }`), matched by the data path; the data path's own add is listed beside it.
    change(&mut s, ElementChange::Add, &["2001:db8::5 . 443"]).unwrap();
    assert!(drops(&s, "2001:db8::5", 443));
    assert!(!drops(&s, "2001:db8::5", 80));
    assert!(!drops(&s, "2002:db8::5", 443), "other high bits, other key");
    assert!(
        drops(&s, "2001:db8::6", 22),
        "added by the first rule, matched by the next"
    );
    let got = listed(&s, "bl", |e| e.timeout);
    assert_eq!(
        got,
        [
            ("2001:db8::5 . 443".to_string(), Some(30)),
            ("2001:db8::6 . 22".to_string(), None)
        ]
    );
    // Deleted over the API: no longer matched.
    change(&mut s, ElementChange::Delete, &["2001:db8::5 . 443"]).unwrap();
    assert!(!drops(&s, "2001:db8::5", 443));
    let _ = std::fs::remove_dir_all(dir);
}

/// Table `filter`'s set `set` as the control API lists it: each element's key and `f` of
/// it, sorted.
fn listed(
    s: &Server<Fake>,
    set: &str,
    f: impl Fn(&crate::control::proto::SetElement) -> Option<u64>,
) -> Vec<(String, Option<u64>)> {
    listed_in(s, "filter", set, f)
}

/// [`listed`] for a set of table `table`.
fn listed_in(
    s: &Server<Fake>,
    table: &str,
    set: &str,
    f: impl Fn(&crate::control::proto::SetElement) -> Option<u64>,
) -> Vec<(String, Option<u64>)> {
    let Response::SetElements(v) = s.set_elements(None, table, set).unwrap() else {
        panic!()
    };
    let mut got: Vec<_> = v.elements.iter().map(|e| (e.key.clone(), f(e))).collect();
    got.sort();
    got
}

/// The keys of table `table`'s set `set` as the control API lists them, sorted.
fn keys_of(s: &Server<Fake>, table: &str, set: &str) -> Vec<String> {
    listed_in(s, table, set, |_| None)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// A verdict map with element timeouts over the element API and `fwctl nft`: an element
/// added with its own `timeout` (and one without) acts on the data path until it expires,
/// the listing merges the elements that never expire with the live ones (`timeout`,
/// `expires`; an expired one left out, as `nft list map`), and a timeout on a map
/// without `flags timeout` is refused at the element's `timeout` field.
#[test]
fn map_elements_with_a_timeout_over_the_api_expire_and_list_as_nft() {
    use crate::control::proto::{ElementChange, SetElement};
    use crate::rules::compile::{Decision, ct_state};
    use crate::rules::tests::{ctx, tcp, v4};
    let (mut s, dir) = with_rules("maptimeout");
    replace(
        &mut s,
        "table ip filter {\n  map m {\n    type ipv4_addr : verdict\n    flags timeout\n    elements = { 198.18.0.4 timeout 10s : drop }\n  }\n  map p {\n    type ipv4_addr : verdict\n  }\n  chain input {\n    type filter hook input priority filter; policy accept;\n    ip saddr vmap @m\n  }\n}\n",
    )
    .unwrap();
    let sec = 1_000_000_000u64;
    let now = s.backend.now_ns;
    let drops = |s: &Server<Fake>, last: u8, at: u64| {
        let p = tcp(v4([198, 18, 0, last]), v4([198, 18, 1, 1]), 1000, 22, 0x02);
        let cur = s.rules.as_ref().unwrap().current();
        let r = cur.eval(
            crate::rules::Hook::Input,
            &mut ctx(&p, ct_state::NEW),
            0,
            at,
        );
        r.verdict == Decision::Drop
    };
    let add = |s: &mut Server<Fake>, set: &str, key: &str, timeout| {
        s.request(Request::SetElementsChange {
            family: None,
            table: "filter".into(),
            set: set.into(),
            change: ElementChange::Add,
            elements: vec![SetElement {
                key: key.into(),
                data: Some("drop".into()),
                timeout,
                expires: None,
            }],
            dry_run: false,
        })
    };
    add(&mut s, "m", "198.18.0.5", Some(30)).unwrap();
    add(&mut s, "m", "198.18.0.6", None).unwrap();
    s.ruleset_commands(
        "add element ip filter m { 198.18.0.7 timeout 5s : drop }\n",
        false,
    )
    .unwrap();
    assert!(drops(&s, 4, now + 10 * sec - 1));
    assert!(!drops(&s, 4, now + 10 * sec), "declared 10 s: expired");
    assert!(drops(&s, 5, now + 30 * sec - 1));
    assert!(!drops(&s, 5, now + 30 * sec));
    assert!(drops(&s, 6, now + 1000 * sec), "no timeout: never expires");
    assert!(!drops(&s, 7, now + 5 * sec));
    s.backend.now_ns = now + 6 * sec;
    let got = listed(&s, "m", |e| {
        e.timeout.map(|t| t * 1000 + e.expires.unwrap_or(0))
    });
    assert_eq!(
        got,
        [
            ("198.18.0.4".to_string(), Some(10_004)),
            ("198.18.0.5".to_string(), Some(30_024)),
            ("198.18.0.6".to_string(), None),
        ],
        "own timeout and seconds left; `.7` expired"
    );
    let Response::SetElements(v) = s.set_elements(None, "filter", "m").unwrap() else {
        panic!()
    };
    assert!(
        v.text.contains(
            "elements = { 198.18.0.4 timeout 10s expires 4s : drop, 198.18.0.5 timeout 30s expires 24s : drop, 198.18.0.6 : drop }"
        ),
        "{}",
        v.text
    );
    let e = add(&mut s, "p", "198.18.0.8", Some(30)).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("elements[0].timeout"), "{e:?}");
    let _ = std::fs::remove_dir_all(dir);
}
