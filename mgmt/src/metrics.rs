//! `/metrics`: Prometheus text built at scrape time from three control requests (`stats`,
//! `rule_counters` and `conntrack_expect` with `counters_only`, each answered by fwd's
//! control thread from counters that it reads without stopping a worker), with a short
//! deadline. A fresh registry is built per
//! scrape: fwd's counters are absolute, so there is no state to keep between scrapes, and
//! a worker or port that disappears stops being exported.
//!
//! Names follow node_exporter's conntrack and network metrics where they exist; every
//! metric is documented in `docs/metrics.md`.

use std::time::Duration;

use fwd_proto::{self as proto, Request, Response};
use prometheus::core::Collector;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::client::ControlClient;
use crate::ha::{HaHandle, SyncStatus};

/// Names of every metric family this module may export (for tests and docs).
pub const NAMES: &[&str] = &[
    "fwd_up",
    "fwd_ruleset_generation",
    "fwd_conntrack_entries",
    "fwd_conntrack_entries_limit",
    "fwd_conntrack_found_total",
    "fwd_conntrack_invalid_total",
    "fwd_conntrack_insert_total",
    "fwd_conntrack_insert_failed_total",
    "fwd_conntrack_drop_total",
    "fwd_conntrack_early_drop_total",
    "fwd_conntrack_error_total",
    "fwd_conntrack_search_restart_total",
    "fwd_conntrack_events_dropped_total",
    "fwd_port_up",
    "fwd_port_speed_mbps",
    "fwd_port_receive_packets_total",
    "fwd_port_transmit_packets_total",
    "fwd_port_receive_bytes_total",
    "fwd_port_transmit_bytes_total",
    "fwd_port_receive_missed_total",
    "fwd_port_receive_errors_total",
    "fwd_port_transmit_errors_total",
    "fwd_port_receive_nombuf_total",
    "fwd_worker_receive_packets_total",
    "fwd_worker_transmit_packets_total",
    "fwd_worker_drops_total",
    "fwd_worker_frag_total",
    "fwd_worker_frag_mem_peak_bytes",
    "fwd_worker_handoff_sent_total",
    "fwd_worker_handoff_received_total",
    "fwd_worker_handoff_dropped_total",
    "fwd_worker_busy_cycles_total",
    "fwd_worker_cycles_total",
    "fwd_worker_conntrack_entries",
    "fwd_nat_port_exhausted_total",
    "fwd_worker_forwarded_packets_total",
    "fwd_worker_local_packets_total",
    "fwd_worker_slow_path_packets_total",
    "fwd_verdict_cache_hits_total",
    "fwd_echo_replies_sent_total",
    "fwd_icmp_errors_sent_total",
    "fwd_icmp_errors_ratelimited_total",
    "fwd_tcp_resets_sent_total",
    "fwd_first_cache_hits_total",
    "fwd_first_cache_misses_total",
    "fwd_nat_allocations_total",
    "fwd_nat_ports_kept_total",
    "fwd_nat_ports_searched_total",
    "fwd_nat_pool_words_scanned_total",
    "fwd_nat_pools_full_total",
    "fwd_conntrack_expired_total",
    "fwd_conntrack_expire_ticks_total",
    "fwd_rule_packets_total",
    "fwd_rule_bytes_total",
    "fwd_conntrack_expect_entries",
    "fwd_conntrack_expect_entries_limit",
    "fwd_conntrack_expect_created_total",
    "fwd_conntrack_expect_taken_total",
    "fwd_conntrack_expect_deleted_total",
    "fwd_conntrack_expect_full_total",
    "fwd_worker_helper_announced_total",
    "fwd_worker_helper_malformed_total",
    "fwd_worker_helper_related_total",
    "fwmgmt_scrape_errors",
];

/// Names of the state-sync families, exported when fwmgmt runs with `--ha`.
pub const HA_NAMES: &[&str] = &[
    "fwd_ha_peer_up",
    "fwd_ha_records_total",
    "fwd_ha_datagrams_total",
    "fwd_ha_retransmitted_total",
    "fwd_ha_lost_records_total",
    "fwd_ha_peer_lost_datagrams_total",
    "fwd_ha_decode_errors_total",
    "fwd_ha_queue",
    "fwd_ha_queue_limit",
    "fwd_ha_apply_total",
    "fwd_ha_resyncs_total",
    "fwd_ha_cache_entries",
];

/// Builds the families from one scrape's answers.
struct Families {
    registry: Registry,
}

impl Families {
    fn new() -> Self {
        Families {
            registry: Registry::new(),
        }
    }

    /// Registers `metric` (built from a static name) and returns it.
    fn add<M: Collector + Clone + 'static>(&self, metric: prometheus::Result<M>) -> M {
        let m = metric.expect("static metric name and labels are valid");
        self.registry
            .register(Box::new(m.clone()))
            .expect("each metric is registered once per scrape");
        m
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric data, which we never build.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A counter family read from one field: name, help, getter.
type Field<T> = (&'static str, &'static str, fn(&T) -> u64);

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One counter family per field, labelled by worker, from each worker's row.
fn per_worker_counters<T>(f: &Families, fields: &[Field<T>], rows: &[(u16, &T)]) {
    for (name, help, get) in fields {
        let c = f.counter_vec(name, help, &["worker"]);
        for (worker, row) in rows {
            c.with_label_values(&[&worker.to_string()]).inc_by(get(row));
        }
    }
}

fn add_stats(f: &Families, stats: &proto::Stats) {
    f.gauge(
        "fwd_ruleset_generation",
        "Generation of the running ruleset.",
    )
    .set(clamp(stats.ruleset_generation));

    // Conntrack: totals as node_exporter's node_nf_conntrack_entries(_limit); the
    // `conntrack -S` counters per worker (sum() them for node_exporter's totals).
    let entries: u64 = stats.workers.iter().map(|w| w.ct.entries).sum();
    let limit: u64 = stats.workers.iter().map(|w| w.ct.max).sum();
    f.gauge(
        "fwd_conntrack_entries",
        "Live connection-tracking entries (all workers).",
    )
    .set(clamp(entries));
    f.gauge(
        "fwd_conntrack_entries_limit",
        "Maximum connection-tracking entries (nf_conntrack_max).",
    )
    .set(clamp(limit));
    let w = &["worker"];
    let ct: [Field<proto::CtCounters>; 8] = [
        (
            "fwd_conntrack_found_total",
            "Lookups that found an entry (conntrack -S found).",
            |c| c.found,
        ),
        (
            "fwd_conntrack_invalid_total",
            "Packets that could not be tracked (conntrack -S invalid).",
            |c| c.invalid,
        ),
        (
            "fwd_conntrack_insert_total",
            "Entries inserted (conntrack -S insert).",
            |c| c.insert,
        ),
        (
            "fwd_conntrack_insert_failed_total",
            "Insertions that failed (conntrack -S insert_failed).",
            |c| c.insert_failed,
        ),
        (
            "fwd_conntrack_drop_total",
            "Packets dropped because the table was full (conntrack -S drop).",
            |c| c.drop,
        ),
        (
            "fwd_conntrack_early_drop_total",
            "Unassured entries evicted to make room (conntrack -S early_drop).",
            |c| c.early_drop,
        ),
        (
            "fwd_conntrack_error_total",
            "Packets with errors (conntrack -S error).",
            |c| c.error,
        ),
        (
            "fwd_conntrack_search_restart_total",
            "Lookups restarted (conntrack -S search_restart).",
            |c| c.search_restart,
        ),
    ];
    let rows: Vec<(u16, &proto::CtCounters)> =
        stats.workers.iter().map(|ws| (ws.worker, &ws.ct)).collect();
    per_worker_counters(f, &ct, &rows);
    let per_worker: [Field<proto::WorkerStats>; 26] = [
        (
            "fwd_worker_receive_packets_total",
            "Packets received from the worker's RX queues.",
            |w| w.rx_packets,
        ),
        (
            "fwd_worker_transmit_packets_total",
            "Packets transmitted by the worker.",
            |w| w.tx_packets,
        ),
        (
            "fwd_worker_handoff_sent_total",
            "Packets handed to the worker owning their flow.",
            |w| w.handoff_tx,
        ),
        (
            "fwd_worker_handoff_received_total",
            "Packets received from other workers.",
            |w| w.handoff_rx,
        ),
        (
            "fwd_worker_handoff_dropped_total",
            "Packets lost because a handoff ring was full.",
            |w| w.handoff_drop,
        ),
        (
            "fwd_worker_busy_cycles_total",
            "TSC cycles of loop iterations that carried packets.",
            |w| w.busy_cycles,
        ),
        (
            "fwd_worker_cycles_total",
            "TSC cycles since the worker started.",
            |w| w.total_cycles,
        ),
        (
            "fwd_nat_port_exhausted_total",
            "NAT allocations that failed because no port was free.",
            |w| w.nat_port_exhausted,
        ),
        (
            "fwd_conntrack_events_dropped_total",
            "Conntrack events lost because the event ring was full.",
            |w| w.events_dropped,
        ),
        (
            "fwd_worker_forwarded_packets_total",
            "Packets routed out of a port.",
            |w| w.forwarded,
        ),
        (
            "fwd_worker_local_packets_total",
            "Packets addressed to the appliance (past the input chain).",
            |w| w.local_in,
        ),
        (
            "fwd_worker_slow_path_packets_total",
            "Packets given to the slow path (ARP, ND, unresolved next hops).",
            |w| w.slow_path,
        ),
        (
            "fwd_verdict_cache_hits_total",
            "Packets whose filter verdict came from the connection's verdict cache.",
            |w| w.verdict_cache_hits,
        ),
        ("fwd_echo_replies_sent_total", "Echo replies sent.", |w| {
            w.echo_replies
        }),
        (
            "fwd_icmp_errors_sent_total",
            "ICMP/ICMPv6 errors sent (time exceeded, unreachable, packet too big).",
            |w| w.icmp_errors,
        ),
        (
            "fwd_icmp_errors_ratelimited_total",
            "ICMP/ICMPv6 errors not sent because the worker's rate limit was spent.",
            |w| w.icmp_ratelimited,
        ),
        (
            "fwd_tcp_resets_sent_total",
            "TCP resets sent by reject.",
            |w| w.tcp_resets,
        ),
        (
            "fwd_first_cache_hits_total",
            "First-packet cache lookups (one per hook a new connection's first packet reaches) answered without evaluating the rules.",
            |w| w.first_cache_hits,
        ),
        (
            "fwd_first_cache_misses_total",
            "First-packet cache lookups that evaluated the rules.",
            |w| w.first_cache_misses,
        ),
        ("fwd_nat_allocations_total", "NAT bindings made.", |w| {
            w.nat_allocations
        }),
        (
            "fwd_nat_ports_kept_total",
            "Source-NAT bindings that kept the original source port.",
            |w| w.nat_ports_kept,
        ),
        (
            "fwd_nat_ports_searched_total",
            "NAT bindings that searched the port pools.",
            |w| w.nat_ports_searched,
        ),
        (
            "fwd_nat_pool_words_scanned_total",
            "Port-pool bitmap words read by NAT port searches (64 ports each).",
            |w| w.nat_pool_words_scanned,
        ),
        (
            "fwd_nat_pools_full_total",
            "Connections to a new NAT address refused: every port-pool slot held ports.",
            |w| w.nat_pools_full,
        ),
        (
            "fwd_conntrack_expired_total",
            "Connections deleted by the timer wheel.",
            |w| w.ct_expired,
        ),
        (
            "fwd_conntrack_expire_ticks_total",
            "Expiry ticks run (about one per millisecond).",
            |w| w.ct_expire_ticks,
        ),
    ];
    let rows: Vec<(u16, &proto::WorkerStats)> =
        stats.workers.iter().map(|ws| (ws.worker, ws)).collect();
    per_worker_counters(f, &per_worker, &rows);
    let wentries = f.gauge_vec(
        "fwd_worker_conntrack_entries",
        "Live connection-tracking entries owned by the worker.",
        w,
    );
    let drops = f.counter_vec(
        "fwd_worker_drops_total",
        "Packets dropped by the worker, by drop reason.",
        &["worker", "reason"],
    );
    for ws in &stats.workers {
        let id = ws.worker.to_string();
        wentries.with_label_values(&[&id]).set(clamp(ws.ct.entries));
        for (reason, n) in &ws.drops {
            drops.with_label_values(&[&id, reason]).inc_by(*n);
        }
    }
    let frag = f.counter_vec(
        "fwd_worker_frag_total",
        "IP reassembly, by family and counter: Linux's SNMP names (ReasmReqds, ReasmOKs, \
         ReasmFails, ReasmTimeout, ReasmOverlaps; Ip6 prefix for IPv6), ReasmEvictions, and \
         the fragments dropped by reason (frag_*).",
        &["worker", "family", "counter"],
    );
    let frag_peak = f.gauge_vec(
        "fwd_worker_frag_mem_peak_bytes",
        "Most bytes the worker's reassembly table of the family held at once (at most \
         ipfrag_high_thresh / ip6frag_high_thresh).",
        &["worker", "family"],
    );
    for ws in &stats.workers {
        let id = ws.worker.to_string();
        for (key, n) in &ws.frag {
            match key.split_once('.') {
                Some((family, counter)) if counter.ends_with("ReasmMemPeak") => {
                    frag_peak.with_label_values(&[&id, family]).set(clamp(*n));
                }
                Some((family, counter)) => {
                    frag.with_label_values(&[&id, family, counter]).inc_by(*n);
                }
                None => {}
            }
        }
    }

    // Ports, after node_exporter's node_network_* names.
    let p = &["port"];
    let up = f.gauge_vec("fwd_port_up", "1 when the port's link is up.", p);
    let speed = f.gauge_vec("fwd_port_speed_mbps", "Link speed in Mbit/s.", p);
    for ps in &stats.ports {
        up.with_label_values(&[&ps.name]).set(i64::from(ps.link_up));
        speed
            .with_label_values(&[&ps.name])
            .set(i64::from(ps.speed_mbps));
    }
    let port: [Field<proto::PortStats>; 8] = [
        (
            "fwd_port_receive_packets_total",
            "Packets received on the port.",
            |p| p.ipackets,
        ),
        (
            "fwd_port_transmit_packets_total",
            "Packets transmitted on the port.",
            |p| p.opackets,
        ),
        (
            "fwd_port_receive_bytes_total",
            "Bytes received on the port.",
            |p| p.ibytes,
        ),
        (
            "fwd_port_transmit_bytes_total",
            "Bytes transmitted on the port.",
            |p| p.obytes,
        ),
        (
            "fwd_port_receive_missed_total",
            "Packets the NIC dropped because RX queues were full.",
            |p| p.imissed,
        ),
        (
            "fwd_port_receive_errors_total",
            "Erroneous received packets.",
            |p| p.ierrors,
        ),
        (
            "fwd_port_transmit_errors_total",
            "Failed transmissions.",
            |p| p.oerrors,
        ),
        (
            "fwd_port_receive_nombuf_total",
            "RX mbuf allocation failures.",
            |p| p.rx_nombuf,
        ),
    ];
    for (name, help, get) in port {
        let c = f.counter_vec(name, help, p);
        for ps in &stats.ports {
            c.with_label_values(&[&ps.name]).inc_by(get(ps));
        }
    }
}

fn add_rules(f: &Families, counters: &[proto::RuleCounter]) {
    let labels = &["family", "table", "chain", "handle"];
    let packets = f.counter_vec(
        "fwd_rule_packets_total",
        "Packets matched by the rule's counter.",
        labels,
    );
    let bytes = f.counter_vec(
        "fwd_rule_bytes_total",
        "Bytes matched by the rule's counter.",
        labels,
    );
    for c in counters {
        let l = [c.family.as_str(), &c.table, &c.chain, &c.handle.to_string()];
        packets.with_label_values(&l).inc_by(c.packets);
        bytes.with_label_values(&l).inc_by(c.bytes);
    }
}

/// The expectation table's counters and each worker's helper counters
/// (`conntrack_expect` with `counters_only`; docs/helpers.md).
fn add_expect(f: &Families, l: &proto::ExpectList) {
    let c = &l.counters;
    f.gauge(
        "fwd_conntrack_expect_entries",
        "Expectations held (conntrack -L expect; expired ones not yet collected included).",
    )
    .set(clamp(c.count));
    f.gauge(
        "fwd_conntrack_expect_entries_limit",
        "Maximum expectations (nf_conntrack_expect_max).",
    )
    .set(clamp(c.max));
    let counters: [(&str, &str, u64); 4] = [
        (
            "fwd_conntrack_expect_created_total",
            "Expectations added (conntrack -S expect_create).",
            c.create,
        ),
        (
            "fwd_conntrack_expect_taken_total",
            "Connections that matched an expectation (conntrack -S expect_new).",
            c.new,
        ),
        (
            "fwd_conntrack_expect_deleted_total",
            "Expectations removed unused: expired, replaced or flushed (conntrack -S expect_delete).",
            c.delete,
        ),
        (
            "fwd_conntrack_expect_full_total",
            "Announcements refused because nf_conntrack_expect_max was reached.",
            c.full,
        ),
    ];
    for (name, help, v) in counters {
        f.counter(name, help).inc_by(v);
    }
    let per: [Field<proto::HelperWorkerCounters>; 3] = [
        (
            "fwd_worker_helper_announced_total",
            "Helper announcements (FTP PORT/EPRT/227/229, TFTP requests) that made an expectation.",
            |h| h.announced,
        ),
        (
            "fwd_worker_helper_malformed_total",
            "Helper announcement lines that did not parse or named another address than the sender's.",
            |h| h.malformed,
        ),
        (
            "fwd_worker_helper_related_total",
            "First packets that matched an expectation (ct state related).",
            |h| h.related,
        ),
    ];
    let rows: Vec<(u16, &proto::HelperWorkerCounters)> = (0..).zip(&l.workers).collect();
    per_worker_counters(f, &per, &rows);
}

/// Builds the exposition from the answers (or errors) of one scrape.
pub fn render(
    stats: Option<&proto::Stats>,
    rules: Option<&[proto::RuleCounter]>,
    expect: Option<&proto::ExpectList>,
    errors: u64,
) -> String {
    let f = Families::new();
    f.gauge(
        "fwd_up",
        "1 when fwd answered the scrape on its control socket.",
    )
    .set(i64::from(stats.is_some()));
    f.gauge(
        "fwmgmt_scrape_errors",
        "Control requests of this scrape that failed (0, 1 or 2).",
    )
    .set(clamp(errors));
    if let Some(s) = stats {
        add_stats(&f, s);
    }
    if let Some(r) = rules {
        add_rules(&f, r);
    }
    if let Some(l) = expect {
        add_expect(&f, l);
    }
    f.encode()
}

/// `dataplane::ha::wire::DecodeError::name` of every decode error.
const DECODE_REASONS: [&str; 7] = [
    "truncated",
    "magic",
    "version",
    "checksum",
    "type",
    "record",
    "trailing",
];

/// The state-sync daemon's families (`fwmgmt --ha`), and fwd's cache size when known.
fn add_ha(f: &Families, s: &SyncStatus, fwd: Option<&proto::HaCounters>) {
    let c = &s.counters;
    f.gauge(
        "fwd_ha_peer_up",
        "1 when the sync peer was heard within three ALIVE intervals.",
    )
    .set(i64::from(s.peer.up));
    let dir = f.counter_vec(
        "fwd_ha_records_total",
        "Connection changes sent to the peer (dir=tx, resync dumps included) and received from it (dir=rx, delivered datagrams' records applied by fwd).",
        &["dir"],
    );
    dir.with_label_values(&["tx"]).inc_by(c.sent_records);
    dir.with_label_values(&["rx"])
        .inc_by(c.applied + c.apply_failed);
    let d = f.counter_vec(
        "fwd_ha_datagrams_total",
        "DATA datagrams sent (dir=tx) and received (dir=rx).",
        &["dir"],
    );
    d.with_label_values(&["tx"]).inc_by(c.sent_datagrams);
    d.with_label_values(&["rx"]).inc_by(c.received_datagrams);
    f.counter(
        "fwd_ha_retransmitted_total",
        "DATA datagrams sent again after a NACK.",
    )
    .inc_by(c.retransmitted);
    let lost = f.counter_vec(
        "fwd_ha_lost_records_total",
        "Connection changes lost: reason=queue (pushed out of the full retransmission queue), apply (dropped before fwd applied them), subscription (events fwd's subscription lost).",
        &["reason"],
    );
    lost.with_label_values(&["queue"]).inc_by(c.lost_records);
    lost.with_label_values(&["apply"]).inc_by(c.apply_lost);
    lost.with_label_values(&["subscription"])
        .inc_by(c.events_lost);
    f.counter(
        "fwd_ha_peer_lost_datagrams_total",
        "The peer's datagrams known lost (SKIP, holes too large).",
    )
    .inc_by(c.peer_lost_datagrams);
    let dec = f.counter_vec(
        "fwd_ha_decode_errors_total",
        "Sync datagrams refused by the decoder, by reason.",
        &["reason"],
    );
    // Every reason shown from the start (0 until one happens).
    for r in DECODE_REASONS {
        dec.with_label_values(&[r]);
    }
    for (r, n) in &c.decode_errors {
        dec.with_label_values(&[r.as_str()]).inc_by(*n);
    }
    f.gauge(
        "fwd_ha_queue",
        "Sent datagrams waiting for the peer's acknowledgement.",
    )
    .set(clamp(s.queue));
    f.gauge(
        "fwd_ha_queue_limit",
        "Size of the retransmission queue (datagrams).",
    )
    .set(clamp(s.queue_cap));
    let a = f.counter_vec(
        "fwd_ha_apply_total",
        "The peer's changes fwd applied (result=ok) or refused (result=failed).",
        &["result"],
    );
    a.with_label_values(&["ok"]).inc_by(c.applied);
    a.with_label_values(&["failed"]).inc_by(c.apply_failed);
    let r = f.counter_vec(
        "fwd_ha_resyncs_total",
        "Resyncs requested from the peer (dir=requested) and table dumps served to it (dir=served).",
        &["dir"],
    );
    r.with_label_values(&["requested"])
        .inc_by(c.resyncs_requested);
    r.with_label_values(&["served"]).inc_by(c.resyncs_served);
    if let Some(h) = fwd {
        f.gauge(
            "fwd_ha_cache_entries",
            "Entries in fwd's external cache (the peer's, until a commit).",
        )
        .set(clamp(h.cache_entries));
    }
}

/// One scrape: `stats` and `rule_counters`, each within `timeout`; with the sync daemon,
/// its counters and fwd's `ha_status` too (not counted as a scrape error).
pub async fn scrape(client: &ControlClient, timeout: Duration, ha: Option<&HaHandle>) -> String {
    let (stats, rules, expect) = tokio::join!(
        client.call_within(Request::Stats, timeout),
        client.call_within(Request::RuleCounters, timeout),
        client.call_within(
            Request::ConntrackExpect {
                counters_only: true
            },
            timeout
        )
    );
    let mut errors = 0;
    let stats = match stats {
        Ok(Response::Stats(s)) => Some(s),
        _ => {
            errors += 1;
            None
        }
    };
    let rules = match rules {
        Ok(Response::RuleCounters { counters, .. }) => Some(counters),
        _ => {
            errors += 1;
            None
        }
    };
    // Not a scrape error when it fails (as `ha_status`): its families are left out.
    let expect = match expect {
        Ok(Response::ConntrackExpect(l)) => Some(l),
        _ => None,
    };
    let mut text = render(stats.as_ref(), rules.as_deref(), expect.as_ref(), errors);
    if let Some(h) = ha {
        let fwd = match client.call_within(Request::HaStatus, timeout).await {
            Ok(Response::HaStatus(c)) => Some(c),
            _ => None,
        };
        let f = Families::new();
        add_ha(&f, &h.status(), fwd.as_ref());
        text.push_str(&f.encode());
    }
    text
}
