//! FakeDataplane: a control-socket server speaking the real protocol
//! (`fwd_proto`) over a real Unix socket, with in-memory state. It stands
//! in for `fwd` in the API and CLI tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fwd_proto::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::broadcast;

/// The fake's state; tests read and change it directly.
#[derive(Debug)]
pub struct FakeState {
    pub ruleset: String,
    pub generation: u64,
    pub entries: Vec<CtEntry>,
    pub tuning: BTreeMap<String, u64>,
    pub stats: Stats,
    /// What `conntrack_expect` answers.
    pub expect: ExpectList,
    /// Answer nothing (to test deadlines).
    pub stall: bool,
    /// Every request received, in order.
    pub log: Vec<Request>,
}

#[derive(Debug)]
pub struct FakeDataplane {
    pub path: PathBuf,
    pub state: Arc<Mutex<FakeState>>,
    events: broadcast::Sender<EventLine>,
    task: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _dir: tempfile::TempDir,
}

pub const INITIAL_RULESET: &str = "table inet filter {\n  chain input {\n    type filter hook input priority 0; policy drop;\n    ct state established,related accept\n    tcp dport 22 counter accept\n  }\n}\n";

/// Statements the fake's "parser" knows (the first word of a line).
const KEYWORDS: &[&str] = &[
    "table",
    "chain",
    "type",
    "policy",
    "ct",
    "tcp",
    "udp",
    "ip",
    "ip6",
    "icmp",
    "icmpv6",
    "iif",
    "oif",
    "iifname",
    "oifname",
    "meta",
    "counter",
    "accept",
    "drop",
    "reject",
    "jump",
    "goto",
    "return",
    "snat",
    "dnat",
    "masquerade",
    "log",
    "flush",
    "define",
    "set",
    "map",
    "elements",
    "}",
    "#",
];

pub fn tuple(src: &str, dst: &str, sport: u16, dport: u16) -> CtTuple {
    CtTuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        sport: Some(sport),
        dport: Some(dport),
        icmp_type: None,
        icmp_code: None,
        icmp_id: None,
        packets: 10,
        bytes: 1000,
    }
}

pub fn entry(i: u16, proto: &str) -> CtEntry {
    let src = format!("198.18.0.{}", i + 1);
    let (state, num) = match proto {
        "tcp" => (Some("ESTABLISHED".to_string()), 6),
        _ => (None, 17),
    };
    CtEntry {
        family: "ipv4".into(),
        proto: proto.into(),
        proto_num: num,
        state,
        timeout: 300,
        orig: tuple(
            &src,
            "203.0.113.1",
            40000 + i,
            if num == 6 { 443 } else { 53 },
        ),
        reply: tuple(
            "203.0.113.1",
            &src,
            if num == 6 { 443 } else { 53 },
            40000 + i,
        ),
        status: vec!["ASSURED".into(), "SEEN_REPLY".into()],
        mark: u32::from(i % 4),
        zone: 0,
        worker: i % 2,
        tcp_window: None,
    }
}

fn counters(k: u64) -> CtCounters {
    CtCounters {
        found: 100 * k,
        invalid: k,
        insert: 10 * k,
        insert_failed: 0,
        drop: 0,
        early_drop: 0,
        error: 0,
        search_restart: 0,
        entries: 10 + k,
        max: 131_072,
    }
}

/// One FTP data-connection expectation (active FTP: the server will connect from port
/// 20 of 203.0.113.9 to the client's announced port) and the counters.
pub fn initial_expect() -> ExpectList {
    ExpectList {
        expectations: vec![CtExpectation {
            family: "ipv4".into(),
            proto: "tcp".into(),
            proto_num: 6,
            timeout: 297,
            src: "203.0.113.9".parse().unwrap(),
            dst: "198.51.100.2".parse().unwrap(),
            sport: 0,
            dport: 50123,
            master_src: "198.51.100.2".parse().unwrap(),
            master_dst: "203.0.113.9".parse().unwrap(),
            master_sport: 40000,
            master_dport: 21,
            master_proto_num: 6,
            helper: "ftp".into(),
            master_worker: 1,
        }],
        counters: ExpectCounters {
            create: 5,
            new: 3,
            delete: 1,
            full: 2,
            count: 1,
            max: 4096,
        },
        workers: vec![
            HelperWorkerCounters {
                announced: 2,
                malformed: 1,
                related: 3,
            },
            HelperWorkerCounters {
                announced: 3,
                malformed: 0,
                related: 0,
            },
        ],
    }
}

pub fn initial_stats() -> Stats {
    let worker = |i: u16| WorkerStats {
        worker: i,
        lcore: u32::from(i) + 2,
        rx_packets: 1000 + u64::from(i),
        tx_packets: 900,
        drops: [("ct_invalid".to_string(), 7), ("no_route".to_string(), 3)].into(),
        handoff_tx: 5,
        handoff_rx: 6,
        handoff_drop: 1,
        nat_port_exhausted: 2,
        events_dropped: 0,
        busy_cycles: 250,
        total_cycles: 1000,
        ct: counters(u64::from(i) + 1),
        forwarded: 800,
        local_in: 40,
        echo_replies: 11,
        icmp_errors: 12 + u64::from(i),
        icmp_ratelimited: 4,
        tcp_resets: 2,
        verdict_cache_hits: 700,
        slow_path: 9,
        fast_path: 600,
        recipes_built: 3,
        first_cache_hits: 500,
        first_cache_misses: 20,
        nat_allocations: 300,
        nat_ports_kept: 100,
        nat_ports_searched: 200,
        nat_pool_words_scanned: 220,
        nat_pools_full: 1,
        ct_expired: 250,
        ct_expire_ticks: 50,
        frag: [
            ("ipv4.ReasmOKs".to_string(), 4),
            ("ipv4.ReasmMemPeak".to_string(), 2768),
            ("ipv6.Ip6ReasmFails".to_string(), 1),
        ]
        .into(),
    };
    let port = |i: u16, name: &str| PortStats {
        name: name.into(),
        port_id: i,
        driver: "net_null".into(),
        mac: format!("02:00:00:00:00:0{i}"),
        link_up: true,
        speed_mbps: 10_000,
        rx_queues: 2,
        tx_queues: 2,
        ipackets: 5000,
        opackets: 4000,
        ibytes: 500_000,
        obytes: 400_000,
        imissed: 1,
        ierrors: 0,
        oerrors: 0,
        rx_nombuf: 0,
    };
    Stats {
        ports: vec![port(0, "lan"), port(1, "wan")],
        workers: vec![worker(0), worker(1)],
        ruleset_generation: 1,
    }
}

pub fn initial_tuning() -> BTreeMap<String, u64> {
    [
        ("nf_conntrack_max", 262_144),
        ("nf_conntrack_tcp_loose", 1),
        ("nf_conntrack_tcp_be_liberal", 0),
        ("nf_conntrack_tcp_timeout_established", 432_000),
        ("nf_conntrack_tcp_timeout_syn_sent", 120),
        ("nf_conntrack_tcp_timeout_time_wait", 120),
        ("nf_conntrack_udp_timeout", 30),
        ("nf_conntrack_udp_timeout_stream", 120),
        ("nf_conntrack_icmp_timeout", 30),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Checks a ruleset text: known first words, balanced braces; returns its tables, chains
/// and rules.
pub fn check_ruleset(text: &str) -> Result<RulesetSummary, ControlError> {
    let mut depth = 0i32;
    let mut sum = RulesetSummary::default();
    for (n, line) in text.lines().enumerate() {
        let ln = u32::try_from(n).unwrap() + 1;
        let t = line.trim_start();
        if t.is_empty() {
            continue;
        }
        let col = u32::try_from(line.len() - t.len()).unwrap() + 1;
        let word = t.split_whitespace().next().unwrap();
        if !KEYWORDS.contains(&word) && !word.starts_with('#') {
            return Err(ControlError::new(
                ErrorCode::BadRuleset,
                format!("syntax error, unexpected {word:?}"),
            )
            .at(ln, col));
        }
        depth += i32::try_from(t.matches('{').count()).unwrap();
        depth -= i32::try_from(t.matches('}').count()).unwrap();
        if depth < 0 {
            return Err(ControlError::new(ErrorCode::BadRuleset, "unbalanced `}`").at(ln, col));
        }
        match word {
            "table" => sum.tables += 1,
            "chain" => sum.chains += 1,
            _ if (t.contains("accept") || t.contains("drop")) && !t.starts_with("type") => {
                sum.rules += 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        let last = u32::try_from(text.lines().count()).unwrap();
        return Err(
            ControlError::new(ErrorCode::BadRuleset, "missing `}` at end of input")
                .at(last.max(1), 1),
        );
    }
    Ok(sum)
}

fn rule_counters(text: &str, generation: u64) -> Vec<RuleCounter> {
    let (mut table, mut chain) = (String::new(), String::new());
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["table", _, name, ..] => table = (*name).to_string(),
            ["chain", name, ..] => chain = (*name).to_string(),
            _ if w.contains(&"counter") => out.push(RuleCounter {
                family: "inet".into(),
                table: table.clone(),
                chain: chain.clone(),
                handle: n as u64 + 1,
                packets: 42 * generation,
                bytes: 4200 * generation,
            }),
            _ => {}
        }
    }
    out
}

/// fwd's own connection filter (the one the server evaluates on entries it holds).
pub fn matches(f: &CtFilter, e: &CtEntry) -> bool {
    dataplane::control::filter::CompiledFilter::new(f).is_ok_and(|m| m.matches(e))
}

/// fwd's own validator (names and ranges; the real one also checks `nf_conntrack_max`
/// against each worker's table), so the fake cannot drift from it.
fn check_tunable(name: &str, v: u64) -> Result<(), ControlError> {
    dataplane::conntrack::tunables::check_tunable(name, v)
        .map_err(|m| ControlError::new(ErrorCode::BadTunable, m).field(name))
}

impl FakeState {
    /// Replaces (or with `dry_run` only checks) the fake's ruleset text.
    fn install(&mut self, text: String, dry_run: bool) -> Result<Response, ControlError> {
        let after = check_ruleset(&text)?;
        let before = check_ruleset(&self.ruleset)?;
        if !dry_run {
            self.ruleset = text;
            self.generation += 1;
        }
        Ok(Response::RulesetApplied {
            generation: self.generation,
            dry_run,
            rules: after.rules,
            before,
            after,
        })
    }

    fn handle(&mut self, req: Request) -> Result<Response, ControlError> {
        self.log.push(req.clone());
        Ok(match req {
            Request::TuningRanges => Response::TuningRanges {
                ranges: dataplane::conntrack::tunables::ranges()
                    .map(|(n, min, max)| (n.to_string(), TunableRange { min, max }))
                    .collect(),
            },
            Request::Status => Response::Status(Status {
                version: "fake".into(),
                protocol: PROTOCOL_VERSION,
                uptime_s: 1,
                ruleset_generation: self.generation,
                workers: 2,
                ports: 2,
                dpdk: "none".into(),
            }),
            Request::Stats => {
                let mut s = self.stats.clone();
                s.ruleset_generation = self.generation;
                Response::Stats(s)
            }
            Request::RulesetGet => Response::Ruleset(RulesetView {
                generation: self.generation,
                text: self.ruleset.clone(),
                // The JSON form of the text when it is a real ruleset (`fwctl nft -a` reads
                // the handles from it).
                json: dataplane::rules::parse::parse(&self.ruleset).map_or_else(
                    |_| serde_json::json!({"nftables": [{"metainfo": {"json_schema_version": 1}}]}),
                    |rs| dataplane::rules::json::to_json(&rs),
                ),
                counters: rule_counters(&self.ruleset, self.generation),
            }),
            Request::RuleCounters => Response::RuleCounters {
                generation: self.generation,
                counters: rule_counters(&self.ruleset, self.generation),
            },
            Request::RulesetReplace { ruleset, dry_run } => {
                let text = match ruleset {
                    RulesetSource::Text(t) => t,
                    RulesetSource::Json(v) => {
                        if !v["nftables"].is_array() {
                            return Err(ControlError::new(
                                ErrorCode::BadRuleset,
                                "`nftables` must be an array",
                            )
                            .at(1, 1));
                        }
                        "table inet json {\n}\n".to_string()
                    }
                };
                self.install(text, dry_run)?
            }
            Request::RulesetCommands { commands, dry_run } => {
                // The real command language on the fake's ruleset text.
                let bad = |e: dataplane::rules::Error| dataplane::control::view::control_error(&e);
                let base = dataplane::rules::parse::parse(&self.ruleset).map_err(bad)?;
                let next = dataplane::rules::parse::apply(&base, &commands).map_err(bad)?;
                let text = dataplane::rules::print::to_text(&next);
                self.install(text, dry_run)?
            }
            Request::SetElementsGet { family, table, set } => {
                let bad = |e: dataplane::rules::Error| dataplane::control::view::control_error(&e);
                let base = dataplane::rules::parse::parse(&self.ruleset).map_err(bad)?;
                Response::SetElements(dataplane::control::elements::view(
                    &base,
                    self.generation,
                    family,
                    &table,
                    &set,
                )?)
            }
            Request::SetElementsChange {
                family,
                table,
                set,
                change,
                elements,
                dry_run,
            } => {
                // fwd's own element change on the fake's ruleset text.
                let bad = |e: dataplane::rules::Error| dataplane::control::view::control_error(&e);
                let base = dataplane::rules::parse::parse(&self.ruleset).map_err(bad)?;
                let next = dataplane::control::elements::change(
                    &base, family, &table, &set, change, &elements,
                )?;
                self.install(dataplane::rules::print::to_text(&next), dry_run)?
            }
            Request::ConntrackList {
                filter,
                cursor,
                limit,
            } => {
                if limit == 0 || limit > MAX_PAGE {
                    return Err(
                        ControlError::new(ErrorCode::BadRequest, "limit out of range")
                            .field("limit"),
                    );
                }
                let start = match cursor {
                    None => 0,
                    Some(c) => c
                        .strip_prefix("c")
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|n| *n <= self.entries.len())
                        .ok_or_else(|| {
                            ControlError::new(ErrorCode::BadCursor, "stale or malformed cursor")
                        })?,
                };
                let mut entries = Vec::new();
                let mut i = start;
                while i < self.entries.len() && entries.len() < limit as usize {
                    if matches(&filter, &self.entries[i]) {
                        entries.push(self.entries[i].clone());
                    }
                    i += 1;
                }
                let rest = self.entries[i..].iter().any(|e| matches(&filter, e));
                Response::ConntrackPage {
                    entries,
                    next_cursor: rest.then(|| format!("c{i}")),
                }
            }
            Request::ConntrackCount { filter } => Response::Count {
                count: self.entries.iter().filter(|e| matches(&filter, e)).count() as u64,
            },
            Request::ConntrackDelete { filter, all } => {
                if filter.is_empty() && !all {
                    return Err(ControlError::new(
                        ErrorCode::RefusedUnfiltered,
                        "refusing to flush without all",
                    ));
                }
                let before = self.entries.len();
                self.entries.retain(|e| !matches(&filter, e));
                Response::Deleted {
                    deleted: (before - self.entries.len()) as u64,
                }
            }
            Request::ConntrackExpect { counters_only } => {
                let mut l = self.expect.clone();
                if counters_only {
                    l.expectations.clear();
                }
                Response::ConntrackExpect(l)
            }
            Request::ConntrackStats => {
                let workers: Vec<CtCounters> =
                    self.stats.workers.iter().map(|w| w.ct.clone()).collect();
                let mut total = CtCounters::default();
                for w in &workers {
                    total.found += w.found;
                    total.invalid += w.invalid;
                    total.insert += w.insert;
                    total.entries += w.entries;
                    total.max += w.max;
                }
                Response::ConntrackStats(ConntrackStats { workers, total })
            }
            Request::TuningGet => Response::Tuning {
                values: self.tuning.clone(),
            },
            Request::TuningSet { values } => {
                for (k, v) in &values {
                    check_tunable(k, *v)?;
                }
                self.tuning.extend(values);
                Response::Tuning {
                    values: self.tuning.clone(),
                }
            }
            Request::Ports => Response::Ports {
                ports: self.stats.ports.clone(),
            },
            Request::Workers => Response::Workers {
                workers: self.stats.workers.clone(),
            },
            Request::Subscribe { .. } | Request::SubscribeRecords => Response::Subscribed,
            Request::HaStatus => Response::HaStatus(HaCounters {
                cache_entries: 3,
                ..HaCounters::default()
            }),
            Request::HaApply { .. } | Request::HaApplyRecords { .. } | Request::HaCommit => {
                Response::HaApplied(HaCounters {
                    committed: 3,
                    commits: 1,
                    ..HaCounters::default()
                })
            }
            // Echoes the request: one GARP per IPv4 address, one NA per IPv6 one, and
            // 192.0.2.99 is "not fwd's".
            Request::HaTakeover { addresses } => {
                let foreign: std::net::IpAddr = [192, 0, 2, 99].into();
                let ours = addresses.iter().filter(|a| **a != foreign);
                Response::HaTakeover(HaTakeover {
                    counters: HaCounters {
                        committed: 3,
                        commits: 1,
                        ..HaCounters::default()
                    },
                    garp_sent: ours.clone().filter(|a| a.is_ipv4()).count() as u64,
                    na_sent: ours.filter(|a| a.is_ipv6()).count() as u64,
                    not_local: addresses.into_iter().filter(|a| *a == foreign).collect(),
                })
            }
        })
    }
}

impl FakeDataplane {
    /// Starts the fake with `n` conntrack entries (alternating tcp/udp).
    pub async fn start(n: u16) -> FakeDataplane {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let state = Arc::new(Mutex::new(FakeState {
            ruleset: INITIAL_RULESET.to_string(),
            generation: 1,
            entries: (0..n)
                .map(|i| entry(i, if i % 2 == 0 { "tcp" } else { "udp" }))
                .collect(),
            tuning: initial_tuning(),
            stats: initial_stats(),
            expect: initial_expect(),
            stall: false,
            log: Vec::new(),
        }));
        let (events, _) = broadcast::channel(1024);
        let listener = UnixListener::bind(&path).unwrap();
        let st = state.clone();
        let ev = events.clone();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let cs = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let h = tokio::spawn(serve(stream, st.clone(), ev.clone()));
                cs.lock().unwrap().push(h);
            }
        });
        FakeDataplane {
            path,
            state,
            events,
            task,
            conns,
            _dir: dir,
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    /// Sends an event to every subscriber whose filter matches; returns how many
    /// subscriptions are open.
    pub fn emit(&self, kind: EventType, entry: CtEntry) -> usize {
        self.events
            .send(EventLine {
                kind,
                timestamp_ms: 1_700_000_000_000,
                entry,
                lost: 0,
            })
            .unwrap_or(0)
    }

    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    /// Stops listening, closes every connection and removes the socket (fwd down).
    pub fn stop(&self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for FakeDataplane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    state: Arc<Mutex<FakeState>>,
    events: broadcast::Sender<EventLine>,
) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let env: RequestEnvelope = match serde_json::from_str(&line) {
            Ok(e) => e,
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
                    .unwrap_or(0);
                let resp = ResponseEnvelope::err(
                    id,
                    ControlError::new(ErrorCode::BadRequest, e.to_string()),
                );
                let _ = w
                    .write_all(format!("{}\n", serde_json::to_string(&resp).unwrap()).as_bytes())
                    .await;
                continue;
            }
        };
        let resp = if env.v != PROTOCOL_VERSION {
            ResponseEnvelope::err(
                env.id,
                ControlError::new(ErrorCode::UnsupportedVersion, "v1 only"),
            )
        } else {
            let sub = match &env.request {
                Request::Subscribe { filter, events } => Some((filter.clone(), events.clone())),
                _ => None,
            };
            let result = {
                let mut s = state.lock().unwrap();
                if s.stall {
                    None
                } else {
                    Some(s.handle(env.request))
                }
            };
            let Some(result) = result else { continue };
            if let (Some((filter, kinds)), Ok(_)) = (sub, &result) {
                let mut rx = events.subscribe();
                let ok = ResponseEnvelope::ok(env.id, Response::Subscribed);
                if w.write_all(format!("{}\n", serde_json::to_string(&ok).unwrap()).as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                while let Ok(ev) = rx.recv().await {
                    if (kinds.is_empty() || kinds.contains(&ev.kind)) && matches(&filter, &ev.entry)
                    {
                        let line = format!("{}\n", serde_json::to_string(&ev).unwrap());
                        if w.write_all(line.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
                return;
            }
            match result {
                Ok(r) => ResponseEnvelope::ok(env.id, r),
                Err(e) => ResponseEnvelope::err(env.id, e),
            }
        };
        if w.write_all(format!("{}\n", serde_json::to_string(&resp).unwrap()).as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
