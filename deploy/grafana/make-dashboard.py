#!/usr/bin/env python3
"""Writes fwd-dashboard.json (Grafana 9+ dashboard for fwd). Edit here, then run:
    python3 deploy/grafana/make-dashboard.py > deploy/grafana/fwd-dashboard.json
Metric names follow mgmt's docs/metrics.md; deploy/ci/check.sh checks the JSON."""
import json

DS = {"type": "prometheus", "uid": "${datasource}"}


def ts(pid, title, targets, x, y, w=12, h=8, unit="short", stack=False, desc=""):
    return {
        "id": pid, "type": "timeseries", "title": title, "description": desc,
        "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, "custom": {
            "stacking": {"mode": "normal" if stack else "none"}, "fillOpacity": 10}},
            "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi"}},
        "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": l}
                    for i, (e, l) in enumerate(targets)],
    }


def stat(pid, title, expr, x, y, w=4, h=4, unit="short", thresholds=None):
    return {
        "id": pid, "type": "stat", "title": title, "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {
            "mode": "absolute",
            "steps": thresholds or [{"color": "green", "value": None}]}}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
        "targets": [{"refId": "A", "datasource": DS, "expr": expr}],
    }


SEL = 'instance=~"$instance"'
panels = [
    stat(1, "fwd up", f'fwd_up{{{SEL}}}', 0, 0, thresholds=[
        {"color": "red", "value": None}, {"color": "green", "value": 1}]),
    stat(2, "Conntrack fill", f'fwd_conntrack_entries{{{SEL}}} / fwd_conntrack_entries_limit{{{SEL}}}',
         4, 0, unit="percentunit", thresholds=[
             {"color": "green", "value": None}, {"color": "orange", "value": 0.75},
             {"color": "red", "value": 0.9}]),
    stat(3, "Ruleset generation", f'fwd_ruleset_generation{{{SEL}}}', 8, 0),
    stat(4, "New conns/s", f'sum(rate(fwd_conntrack_insert_total{{{SEL}}}[1m]))', 12, 0, unit="cps"),
    stat(5, "Drops/s", f'sum(rate(fwd_worker_drops_total{{{SEL}}}[1m]))', 16, 0, unit="pps",
         thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 100}]),
    stat(6, "NAT exhaustion (5m)", f'sum(increase(fwd_nat_port_exhausted_total{{{SEL}}}[5m]))',
         20, 0, thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
    ts(10, "Packets/s per port",
       [(f'rate(fwd_port_receive_packets_total{{{SEL}}}[$__rate_interval])', "{{port}} rx"),
        (f'-rate(fwd_port_transmit_packets_total{{{SEL}}}[$__rate_interval])', "{{port}} tx"),
        (f'rate(fwd_port_receive_missed_total{{{SEL}}}[$__rate_interval])', "{{port}} rx missed")],
       0, 4, unit="pps", desc="RX up, TX down"),
    ts(11, "Bits/s per port",
       [(f'8 * rate(fwd_port_receive_bytes_total{{{SEL}}}[$__rate_interval])', "{{port}} rx"),
        (f'-8 * rate(fwd_port_transmit_bytes_total{{{SEL}}}[$__rate_interval])', "{{port}} tx")],
       12, 4, unit="bps", desc="RX up, TX down"),
    ts(12, "Drops by reason",
       [(f'sum by (reason) (rate(fwd_worker_drops_total{{{SEL}}}[$__rate_interval]))', "{{reason}}")],
       0, 12, unit="pps", stack=True),
    ts(13, "Conntrack entries vs limit",
       [(f'fwd_conntrack_entries{{{SEL}}}', "entries"),
        (f'fwd_conntrack_entries_limit{{{SEL}}}', "limit (nf_conntrack_max)")],
       12, 12),
    ts(14, "New connections/s",
       [(f'sum(rate(fwd_conntrack_insert_total{{{SEL}}}[$__rate_interval]))', "insert"),
        (f'sum(rate(fwd_conntrack_insert_failed_total{{{SEL}}}[$__rate_interval]))', "insert_failed")],
       0, 20, unit="cps"),
    ts(15, "Early drops and table-full drops",
       [(f'sum(rate(fwd_conntrack_early_drop_total{{{SEL}}}[$__rate_interval]))', "early_drop"),
        (f'sum(rate(fwd_conntrack_drop_total{{{SEL}}}[$__rate_interval]))', "drop")],
       12, 20, unit="pps"),
    ts(16, "NAT port exhaustion",
       [(f'sum(rate(fwd_nat_port_exhausted_total{{{SEL}}}[$__rate_interval]))', "exhausted")],
       0, 28, unit="cps"),
    ts(17, "Worker busy",
       [(f'rate(fwd_worker_busy_cycles_total{{{SEL}}}[$__rate_interval]) / rate(fwd_worker_cycles_total{{{SEL}}}[$__rate_interval])', "worker {{worker}}")],
       12, 28, unit="percentunit",
       desc="Share of TSC cycles spent in loop iterations that carried packets, per worker lcore"),
    ts(18, "Ruleset generation",
       [(f'fwd_ruleset_generation{{{SEL}}}', "generation")], 0, 36, w=24, h=6),
]

dashboard = {
    "uid": "fwd-overview", "title": "fwd: firewall data plane", "tags": ["fwd", "dpdk"],
    "timezone": "utc", "schemaVersion": 38, "version": 1, "editable": True,
    "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus",
         "label": "Data source", "current": {}},
        {"name": "instance", "type": "query", "datasource": DS, "label": "Appliance",
         "query": {"query": "label_values(fwd_up, instance)", "refId": "instance"},
         "definition": "label_values(fwd_up, instance)", "includeAll": True,
         "multi": True, "refresh": 2, "current": {}},
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
print(json.dumps(dashboard, indent=2))
