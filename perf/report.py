#!/usr/bin/env python3
"""Builds perf/results/REPORT.md and the plots from the JSON results in perf/results/.

    python3 perf/report.py                 # latest result per scenario
    python3 perf/report.py --results DIR --out DIR

The newest file of each scenario wins. The appliance's throughput is reported as a ratio
of the testpmd io baseline with the same flow count. Plots need matplotlib
(Debian: python3-matplotlib); without it the report is written without them."""
import argparse
import glob
import json
import os
import re
import statistics
import sys


def load(results):
    """The newest result of each scenario, and every result (for same-session pairing)."""
    latest = {}
    every = []
    for path in sorted(glob.glob(os.path.join(results, "*.json"))):
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            print(f"report.py: skipping {path}: {e}", file=sys.stderr)
            continue
        if "scenario" not in r or "generator" not in r:
            continue
        r["_file"] = os.path.basename(path)
        # File names start with a UTC timestamp: sorted order is time order.
        latest[r["scenario"]] = r
        every.append(r)
    return latest, every


def same_session_baseline(every, fwd_result):
    """The newest testpmd io result with the fwd result's flow count and session id."""
    run_id = fwd_result.get("run_id")
    flows = fwd_result["generator"]["args"]["flows"]
    found = None
    for r in every:
        if run_id and r.get("run_id") == run_id and r["scenario"] == f"baseline-io-udp-{flows}" \
                and r["generator"]["args"]["rate"] == 0:
            found = r
    return found


def load_range(latest):
    loads = sorted(float(r["machine"]["loadavg"].split()[0])
                   for r in latest.values() if r["machine"].get("loadavg"))
    if not loads:
        return "not recorded"
    return f"{loads[0]:.1f}" if loads[0] == loads[-1] else f"{loads[0]:.1f} to {loads[-1]:.1f}"


def contention_warning(latest):
    """A warning when the machine was busier than its cores while results were taken."""
    busy = [r for r in latest.values()
            if float(r["machine"].get("loadavg", "0").split()[0]) > r["machine"]["cores"]]
    if not busy:
        return []
    return ["",
            f"**Warning: {len(busy)} of {len(latest)} results were taken with a load average "
            "above the core count.** The generator and the DUT then share their cores with "
            "other work, time slices bound the rate (a memif ring's worth of frames per slice) "
            "and latency shows scheduling delays: these figures measure the machine's load, "
            "not the DUT. Retake them on an idle machine.", ""]


def mpps(x):
    return f"{x / 1e6:.2f}"


def us(ns):
    return f"{ns / 1000:.1f}"


def throughput_rows(latest, dut, kind="udp"):
    """(flows, generator, result) of the newest `<dut>-<kind>-<flows>` results (kind udp:
    one way, udp2: both ways)."""
    prefix = {"fwd": "fwd", "testpmd-io": "baseline-io"}[dut]
    pat = re.compile(rf"^{prefix}-{kind}-(\d+)$")
    rows = []
    for name, r in latest.items():
        if pat.match(name) and r["generator"]["args"]["rate"] == 0:
            rows.append((r["generator"]["args"]["flows"], r["generator"], r))
    return sorted(rows, key=lambda t: t[0])


def both_ways_pps(g):
    """Frames received per second in both directions (forward + answers)."""
    return g["rx_pps"] + g.get("reply_pps", 0)


def latency_runs(every, scenario):
    """The repeated runs (`rep` set, perf/run-latency.sh) of a latency scenario in the
    newest session that has them; else the newest single run. Returns (runs, run_id)."""
    reps = [r for r in every if r["scenario"] == scenario and "rep" in r]
    if reps:
        run_id = max(reps, key=lambda r: r["_file"]).get("run_id")
        return [r for r in reps if r.get("run_id") == run_id], run_id
    single = [r for r in every if r["scenario"] == scenario]
    return (single[-1:], single[-1].get("run_id")) if single else ([], None)


def spread(values):
    """'median [min - max]' of a list of numbers (microseconds), or the one value."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.1f} (one run)"
    return f"{statistics.median(values):,.1f} [{min(values):,.1f} - {max(values):,.1f}]"


def ct_rate_cell(r):
    """fwd's own count of new connections per second (conntrack inserts), if recorded."""
    c = r.get("ct_rate") if r else None
    if not c or c.get("inserts_per_s") is None:
        return "-"
    extra = f", early drop {c['early_drop']:,}" if c.get("early_drop") else ""
    return f"{c['inserts_per_s']:,.0f}{extra}"


def session_result(every, run_id, scenario):
    """The newest result of a scenario in one session, else None."""
    found = None
    for r in every:
        if r["scenario"] == scenario and r.get("run_id") == run_id:
            found = r
    return found


def both_ways_section(latest):
    """udp2-<flows>: every frame answered by perfgen's reflector, both directions through
    the DUT at max rate."""
    base = {f: (g, r) for f, g, r in throughput_rows(latest, "testpmd-io", "udp2")}
    fwd = {f: (g, r) for f, g, r in throughput_rows(latest, "fwd", "udp2")}
    if not base and not fwd:
        return []
    out = ["", "## Both ways (udp2: every frame answered by perfgen's reflector through the "
           "DUT, max rate)", "",
           "| flows | testpmd io Mpps (fwd + rev) | fwd Mpps (fwd + rev) | fwd / io | fwd answers lost |",
           "|---:|---:|---:|---:|---:|"]
    for f in sorted(set(base) | set(fwd)):
        b, w = base.get(f, (None, None))[0], fwd.get(f, (None, None))[0]
        cell = lambda g: (f"{mpps(both_ways_pps(g))} ({mpps(g['rx_pps'])} + "  # noqa: E731
                          f"{mpps(g.get('reply_pps', 0))})") if g else "-"
        ratio = f"{both_ways_pps(w) / both_ways_pps(b):.2f}" if b and w and both_ways_pps(b) else "-"
        out.append(f"| {f:,} | {cell(b)} | {cell(w)} | {ratio} | "
                   f"{w.get('reply_lost', '-') if w else '-'} |")
    return out


def big_frames_section(latest):
    """udp1518-1000: 1518-byte frames, 1 000 established flows, one way, max rate."""
    b = latest.get("baseline-io-udp1518-1000")
    w = latest.get("fwd-udp1518-1000")
    if not b and not w:
        return []
    cell = lambda r: (f"{mpps(r['generator']['rx_pps'])} Mpps = "  # noqa: E731
                      f"{r['generator']['rx_wire_gbps']:.1f} Gbit/s") if r else "-"
    ratio = f"{w['generator']['rx_pps'] / b['generator']['rx_pps']:.2f}" \
        if b and w and b["generator"]["rx_pps"] else "-"
    same = "yes" if b and w and b.get("run_id") == w.get("run_id") else "no"
    return ["", "## 1518-byte frames (1 000 established flows, one way, max rate)", "",
            "| testpmd io | fwd | fwd / io | same session |", "|---:|---:|---:|---|",
            f"| {cell(b)} | {cell(w)} | {ratio} | {same} |",
            "", "Gbit/s on the wire: frame + FCS + 20 bytes of preamble and gap. memif copies "
            "every frame, so large frames cost the path per byte, not only per packet."]


def rounds(every, flows=1000):
    """perf/run-latency.sh's max-rate runs of the newest session, paired by round:
    (io Mpps list, fwd Mpps list, per-round fwd / io list, session)."""
    w, run_id = latency_runs(every, f"fwd-latmax-{flows}")
    b, _ = latency_runs(every, f"baseline-io-latmax-{flows}")
    w = [r for r in w if "rep" in r]
    b = {r["rep"]: r for r in b if "rep" in r and r.get("run_id") == run_id}
    if not w or not b:
        return None
    mp = lambda r: r["generator"]["rx_pps"] / 1e6  # noqa: E731
    ratios = [mp(r) / mp(b[r["rep"]]) for r in w if r["rep"] in b and mp(b[r["rep"]])]
    return [mp(r) for r in b.values()], [mp(r) for r in w], ratios, run_id


def rounds_section(every):
    r = rounds(every)
    if not r:
        return []
    io, fwd, ratios, run_id = r
    return ["", "## Max rate at 1 000 flows, repeated rounds (perf/run-latency.sh: io and fwd "
            "alternated; median [min - max])", "",
            "| rounds | testpmd io Mpps | fwd Mpps | fwd / io of each round | session |",
            "|---:|---:|---:|---:|---|",
            f"| {len(fwd)} | {spread3(io)} | {spread3(fwd)} | {spread3(ratios)} | `{run_id}` |"]


def spread3(values):
    """'median [min - max]' with three decimals (Mpps, ratios)."""
    if not values:
        return "-"
    return f"{statistics.median(values):.3f} [{min(values):.3f} - {max(values):.3f}]"


def latency_section(every):
    """Latency at 50% load: median [range] over the repeats of perf/run-latency.sh."""
    out = ["", "## Latency at 50% of each DUT's max (median [min - max] over repeats)", ""]
    rows = []
    for dut, scen in (("testpmd io", "baseline-io-latency50-1000"), ("fwd", "fwd-latency50-1000")):
        runs, run_id = latency_runs(every, scen)
        if not runs:
            continue
        col = lambda q: [r["generator"]["latency"][q] / 1000 for r in runs]  # noqa: E731
        rows.append(f"| {dut} | {len(runs)} | {mpps(runs[0]['generator']['args']['rate'])} | "
                    f"{spread(col('p50_ns'))} | {spread(col('p99_ns'))} | "
                    f"{spread(col('p999_ns'))} | {min(col('min_ns')):,.1f} | `{run_id}` |")
    if not rows:
        return out + ["Not measured (`perf/run-latency.sh`)."]
    return out + ["| DUT | runs | rate Mpps | p50 us | p99 us | p99.9 us | min us | session |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"] + rows


def table_section(latest):
    """perf/run-table.sh: fill time, memory per entry, throughput with the table full."""
    rows = sorted((r["table"]["entries"], r) for n, r in latest.items()
                  if n.startswith("fwd-table-") and "table" in r)
    if not rows:
        return []
    out = ["", "## Connection table (perf/run-table.sh: filter.nft, no NAT; one worker)", "",
           "| entries | fill time s | entries/s (first half / second half) | B/entry by RSS "
           "(layout) | fwd RSS MiB | 1 M established flows, Mpps | result file |",
           "|---:|---:|---|---:|---:|---:|---|"]
    for n, r in rows:
        fl, m, g = r["table"]["fill"], r["table"]["memory"], r["generator"]
        fs = f"{fl['fill_s']:.1f}" if fl.get("fill_s") is not None else "not reached"
        rate = (f"{fl['entries_per_s']:,.0f} ({fl['first_half_per_s']:,.0f} / "
                f"{fl['second_half_per_s']:,.0f})") if fl.get("entries_per_s") else "-"
        bpe = m.get("bytes_per_entry_rss_filled")
        out.append(f"| {n:,} | {fs} | {rate} | {f'{bpe:.0f}' if bpe else '-'} "
                   f"({m['bytes_per_entry_layout']:.1f}) of {m['ct_max']:,} | "
                   f"{m['rss_kib_filled'] / 1024:,.0f} | {mpps(g['rx_pps'])} | {r['_file']} |")
    out += ["", "B/entry: fwd's RSS after the fill minus its RSS with a 64 Ki-entry table, per "
            "entry of capacity (the table is allocated whole at start; its pages are committed "
            "on first touch); layout: docs/conntrack.md (`Table::memory`)."]
    return out


PEER_NAMES = {"fwd": "fwd", "ovs": "Open vSwitch-DPDK", "io": "testpmd io",
              "gen": "perfgen alone"}
# peers-<dut>[-zc]-<flows>[-<size>]: `-zc` for MEMIF_ZC=1 runs (the DUT a zero-copy memif
# client, lib.sh).
PEER_RE = re.compile(r"^peers-(io|fwd|ovs|gen)(-zc)?-(\d+)(?:-(\d+))?$")


def fwd_variant(r):
    """Which fwd a result measured: its binary (the worktree's name for a
    `.../<tree>/target/<profile>/fwd`, else the file's name) and the tunables set before
    the warm-up. A session may hold main's and a branch's fwd, with and without tunables:
    each is a row of its own."""
    b = r.get("fwd_binary") or ""
    parts = b.split("/")
    if len(parts) >= 4 and parts[-3] == "target":
        label = parts[-4]
    else:
        label = parts[-1] or "fwd"
    tuning = r.get("fwd_tuning") or {}
    if tuning:
        label += " (" + ", ".join(f"{k}={v}" for k, v in sorted(tuning.items())) + ")"
    return label


def peers_session(every, run_id=None):
    """perf/run-peers.sh results of one session (the newest that has any, or `run_id`):
    (run_id, {(zero_copy, size, flows): {"io"|"fwd"|"ovs"|"gen": [results, one per
    repeat]}})."""
    peers = [r for r in every if PEER_RE.match(r["scenario"])]
    if not peers:
        return None, {}
    rid = run_id or max(peers, key=lambda r: r["_file"]).get("run_id")
    table = {}
    for r in peers:
        if r.get("run_id") != rid:
            continue
        dut, zc, flows, size = PEER_RE.match(r["scenario"]).groups()
        table.setdefault((bool(zc), int(size or 64), int(flows)), {}).setdefault(dut, []).append(r)
    return rid, table


def peer_pps(r):
    """The DUT's own count of frames it sent on (forwarded) per second of sending, else
    what the generator got into it."""
    d = r.get("dut_counters") or {}
    return d.get("pps") or r["generator"]["tx_pps"]


def peer_cpp(r):
    d = r.get("dut_counters") or {}
    return d.get("cycles_per_packet")


def peer_perf(r, event):
    p = r.get("perf_stat") or {}
    return p.get(f"{event}_per_packet") if p.get("state") == "ok" else None


def median_cell(values, fmt):
    """'median [min - max]' of the repeats (just the value for one), '-' for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m = fmt(statistics.median(values))
    return m if len(values) == 1 else f"{m} [{fmt(min(values))} - {fmt(max(values))}]"


def peers_table(every, run_id=None):
    """The side-by-side table (markdown lines) of one perf/run-peers.sh session: per
    memif mode (copying, or zero-copy with `MEMIF_ZC=1`), frame size, flow count and DUT
    the median [min - max] over its repeats; one row per fwd build and tunables
    (`fwd_variant`), so main's and a branch's runs of one session are never pooled."""
    rid, table = peers_session(every, run_id)
    if not table:
        return []
    allr = [r for cell in table.values() for runs in cell.values() for r in runs]
    anyr = max(allr, key=lambda r: r["_file"])
    m = anyr["machine"]
    perf = {(r.get("perf_stat") or {}).get("state", "not recorded") for r in allr}
    hz = anyr["generator"].get("tsc_hz", 0)
    # fwd's runs split by variant, in the order the session first ran each.
    cells = {}
    for key, cell in table.items():
        fwd = {}
        for r in sorted(cell.get("fwd", []), key=lambda r: r["_file"]):
            fwd.setdefault(fwd_variant(r), []).append(r)
        cells[key] = (cell, fwd)
    reps = sorted({len(runs) for cell, fwd in cells.values()
                   for runs in [*(v for d, v in cell.items() if d != "fwd"), *fwd.values()]})
    out = [f"Session `{rid}` ({anyr['date']}; {m['cpu']}, {m['cores']} cores, TSC "
           f"{hz / 1e6:,.0f} MHz; DPDK {anyr['dpdk']}; commit {anyr['commit'][:12]}"
           + (" (dirty tree)" if anyr.get("dirty") else "") + f"): `{anyr.get('invocation', '?')}`; "
           f"{'/'.join(map(str, reps))} run(s) per cell, median [min - max].",
           "",
           "| memif | flows | frame | fwd build | fwd Mpps | fwd cycles/pkt | OVS-DPDK Mpps | "
           "OVS cycles/pkt | testpmd io Mpps | io cycles/pkt | fwd / OVS | fwd / io (best) | "
           "perfgen alone Mpps |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    io_best = {}
    for (zc, size, _), cell in table.items():
        for r in cell.get("io", []):
            io_best[zc, size] = max(io_best.get((zc, size), 0), peer_pps(r))
    mpps = lambda v: f"{v / 1e6:.2f}"  # noqa: E731
    cyc = lambda v: f"{v:,.0f}"  # noqa: E731
    has_perf = False
    for (zc, size, flows), (cell, fwd) in sorted(cells.items()):
        rate = {d: statistics.median(peer_pps(r) for r in runs)
                for d, runs in cell.items() if d != "fwd"}
        # testpmd io is the path's limit: interference only lowers a run, and io never
        # reads a frame, so its limit is the same for every flow count: its best run.
        if io_best.get((zc, size)):
            rate["io"] = io_best[zc, size]

        def col(runs, f, fmt):
            return median_cell([f(r) for r in runs], fmt)

        def ratio(a, b):
            return f"{a / b:.2f}" if a is not None and b else "-"
        for label, runs in (fwd.items() or [("-", [])]):
            f = statistics.median(peer_pps(r) for r in runs) if runs else None
            out.append(f"| {'zero-copy' if zc else 'copying'} | {flows:,} | {size} B | {label} | "
                       f"{col(runs, peer_pps, mpps)} | {col(runs, peer_cpp, cyc)} | "
                       f"{col(cell.get('ovs', []), peer_pps, mpps)} | "
                       f"{col(cell.get('ovs', []), peer_cpp, cyc)} | "
                       f"{col(cell.get('io', []), peer_pps, mpps)} | "
                       f"{col(cell.get('io', []), peer_cpp, cyc)} | {ratio(f, rate.get('ovs'))} | "
                       f"{ratio(f, rate.get('io'))} | {col(cell.get('gen', []), peer_pps, mpps)} |")
        has_perf |= any(peer_perf(r, "instructions") for runs in cell.values() for r in runs)
    out += ["", "Rates: frames the DUT sent on per second of the generator's sending (its own "
            "counter: testpmd's net_null TX, fwd's `forwarded`, OVS's net_null port TX); "
            "cycles/pkt: the DUT's own busy cycles (loop iterations or polls that had "
            "packets, PMD included) per packet received (TSC cycles). fwd / OVS: of the "
            "medians; fwd / io: fwd's median over testpmd io's best run of the session at "
            "that frame size and memif mode (io is the path's limit: interference on a "
            "shared machine only lowers a run, and io never reads a frame, so the flow count "
            "does not change it). memif: copying (the DUT serves and its PMD copies every "
            "frame) or zero-copy (`MEMIF_ZC=1`: the DUT a zero-copy client, the generator "
            "copies). fwd build: the binary (its worktree's name) and the tunables set "
            "before the warm-up. perfgen alone: the generator into a net_null port of its "
            "own, no DUT: its ceiling on one core. perf stat (cycles, instructions per "
            "packet): " + "; ".join(sorted(perf)) + "."]
    if has_perf:
        out += ["", "| memif | flows | frame | DUT | cycles/pkt (perf) | instructions/pkt (perf) |",
                "|---|---:|---:|---|---:|---:|"]
        for (zc, size, flows), (cell, fwd) in sorted(cells.items()):
            duts = [(f"fwd {label}", runs) for label, runs in fwd.items()]
            duts += [(PEER_NAMES[d], cell.get(d, [])) for d in ("ovs", "io")]
            for name, runs in duts:
                if any(peer_perf(r, "instructions") for r in runs):
                    out.append(f"| {'zero-copy' if zc else 'copying'} | {flows:,} | {size} B | "
                               f"{name} | "
                               f"{median_cell([peer_perf(r, 'cycles') for r in runs], cyc)} | "
                               f"{median_cell([peer_perf(r, 'instructions') for r in runs], cyc)} |")
    return out


def peers_section(every):
    t = peers_table(every)
    if not t:
        return []
    return ["", "## Peers side by side (perf/run-peers.sh: generator sending only, DUT "
            "egress a sink, established flows in random order)", ""] + t


def figures(latest, every, path):
    """perf/FIGURES.md's table: fwd against testpmd io of the same session, one row per
    figure, with the script invocation and the result files. Latency rows: median [range]
    over the repeats of perf/run-latency.sh; table rows: the newest perf/run-table.sh
    results (their own session)."""
    fwd = [r for r in latest.values() if r["dut"] == "fwd"]
    if not fwd:
        sys.exit("report.py --figures: no fwd results")
    run_id = max((r for r in fwd if not r["scenario"].startswith("fwd-table-")),
                 key=lambda r: r["_file"], default=max(fwd, key=lambda r: r["_file"])).get("run_id")
    rows = []

    def put(what, w, b, wv, bv, unit, note=""):
        ratio = f"{wv / bv:.2f}" if bv else "-"
        bcell = f"{bv:,.{unit}f}" if bv is not None else "-"
        files = w["_file"] + (f", {b['_file']}" if b else "")
        rows.append(f"| {what} | {wv:,.{unit}f} | {bcell} | {ratio} | "
                    f"{w['machine']['loadavg'].split()[0]} | {note} | "
                    f"`{w.get('invocation', '?')}`: {files} |")

    def row(what, fname, bname, metric, unit, note="", session=True):
        w = session_result(every, run_id, fname) if session else latest.get(fname)
        b = session_result(every, run_id, bname) if bname else None
        if not w:
            rows.append(f"| {what} | not measured | | | | | |")
            return
        put(what, w, b, metric(w), metric(b) if b else None, unit, note)

    mp = lambda r: r["generator"]["rx_pps"] / 1e6  # noqa: E731
    both = lambda r: both_ways_pps(r["generator"]) / 1e6  # noqa: E731
    for f in (1000, 100000, 1000000):
        row(f"UDP established (replied), {f:,} flows, 64 B, one way (Mpps)", f"fwd-udp-{f}",
            f"baseline-io-udp-{f}", mp, 3)
    for f in (1000, 100000, 1000000):
        if session_result(every, run_id, f"fwd-udp2-{f}"):
            row(f"UDP both ways (every frame answered), {f:,} flows, 64 B (Mpps, sum of "
                "directions)", f"fwd-udp2-{f}", f"baseline-io-udp2-{f}", both, 3)
    if session_result(every, run_id, "fwd-udp1518-1000"):
        row("UDP established, 1,000 flows, 1518 B, one way (Gbit/s on the wire)",
            "fwd-udp1518-1000", "baseline-io-udp1518-1000",
            lambda r: r["generator"]["rx_wire_gbps"], 2)
    rd = rounds(every)
    if rd:
        io, fw, ratios, rid = rd
        rows.append(f"| UDP established (replied), 1,000 flows, 64 B, max rate, {len(fw)} "
                    f"alternated rounds (Mpps; median [min - max]) | {spread3(fw)} | "
                    f"{spread3(io)} | {statistics.median(ratios):.2f} "
                    f"[{min(ratios):.2f} - {max(ratios):.2f}] | - | ratio: median of each "
                    f"round's fwd / io | session `{rid}` (perf/run-latency.sh) |")
    for q in ("p50_ns", "p99_ns", "p999_ns"):
        wr, _ = latency_runs(every, "fwd-latency50-1000")
        br, _ = latency_runs(every, "baseline-io-latency50-1000")
        if not wr:
            rows.append(f"| latency {q[:-3]} at 50% of max, 1k flows (us) | not measured | | | | | |")
            continue
        wv = [r["generator"]["latency"][q] / 1000 for r in wr]
        bv = [r["generator"]["latency"][q] / 1000 for r in br]
        ratio = f"{statistics.median(wv) / statistics.median(bv):.2f}" if bv else "-"
        files = f"{len(wr)} + {len(br)} runs, session `{wr[0].get('run_id')}`"
        rows.append(f"| latency {q[:-3]} at 50% of max, 1k flows (us; median [min - max]) | "
                    f"{spread(wv)} | {spread(bv)} | {ratio} | "
                    f"{wr[0]['machine']['loadavg'].split()[0]} | lower is better | "
                    f"`{wr[0].get('invocation', '?')}`: {files} |")
    ins = lambda r: (r.get("ct_rate") or {}).get("inserts_per_s") or r["generator"]["rx_pps"]  # noqa: E731
    io_path = lambda r: r["generator"]["rx_pps"]  # noqa: E731
    w = session_result(every, run_id, "fwd-newconn-udp")
    if w:
        b = session_result(every, run_id, "baseline-io-udp-1000000")
        put("new UDP connections/s (fwd conntrack inserts/s; single-packet flows, 16 M tuples, "
            "fresh fwd)", w, b, ins(w), io_path(b) if b else None, 0,
            f"perfgen rx {w['generator']['rx_pps']:,.0f}/s; io column: io max pps at 1M flows "
            "(io tracks nothing)")
    else:
        rows.append("| new UDP connections/s | not measured | | | | | |")
    w = session_result(every, run_id, "fwd-newconn-full")
    if w and w.get("ct_rate"):
        c = w["ct_rate"]
        put(f"new UDP connections/s at a full table ({w.get('ct_max', c['max']):,} entries, "
            "fwd inserts/s)", w, None, ins(w), None, 0,
            f"{c['early_drop'] / c['seconds']:,.0f} early drops/s over the run (the first "
            f"{c['max']:,} inserts needed none); {c['drop']:,} dropped for want of room")
    row("TCP handshakes/s (SYN .. last ACK, via SNAT, fresh fwd)", "fwd-tcp", "baseline-io-tcp",
        lambda r: r["generator"]["tcp"]["conns_per_s"], 0,
        "io column: generator+reflector limit")
    for n in (10, 1000, 10000):
        w = session_result(every, run_id, f"fwd-rules-{n}")
        if not w:
            rows.append(f"| new UDP connections/s, {n:,} rules in forward | not measured | | | | | |")
            continue
        b = session_result(every, run_id, "baseline-io-udp-1000000")
        put(f"new UDP connections/s (fwd inserts/s), {n:,} rules in forward", w, b, ins(w),
            io_path(b) if b else None, 0, "io column: io max pps at 1M flows")
    for n in sorted(r["table"]["entries"] for k, r in latest.items()
                    if k.startswith("fwd-table-") and "table" in r):
        w = latest[f"fwd-table-{n}"]
        fl, m = w["table"]["fill"], w["table"]["memory"]
        b = session_result(every, w.get("run_id"), "baseline-io-udp-1000000")
        io_note = "io: udp-1000000 of the same session"
        if not b:
            b = latest.get("baseline-io-udp-1000000")
            io_note = "io: newest udp-1000000 (another session)"
        if fl.get("fill_s") is not None:
            put(f"time to fill {n:,} entries, single-packet flows (s)", w, None, fl["fill_s"],
                None, 1, f"{fl['entries_per_s']:,.0f} entries/s (first half "
                f"{fl['first_half_per_s']:,.0f}, second half {fl['second_half_per_s']:,.0f}); "
                "filter.nft, no NAT")
        put(f"UDP established, 1,000,000 flows, table holding {n:,} (Mpps)", w, b, mp(w),
            mp(b) if b else None, 3, io_note)
        if m.get("bytes_per_entry_rss_filled"):
            put(f"memory per entry, table of {m['ct_max']:,} with {n:,} live (B, by RSS)", w,
                None, m["bytes_per_entry_rss_filled"], None, 0,
                f"layout {m['bytes_per_entry_layout']:.1f} B (docs/conntrack.md); fwd RSS "
                f"{m['rss_kib_filled'] / 1024:,.0f} MiB")
    any_r = max(fwd, key=lambda r: r["_file"])
    m = any_r["machine"]
    head = [
        f"Session `{run_id}`, {any_r['date']}; {m['cpu']}, {m['cores']} cores, "
        f"kernel {m['kernel']}; DPDK {any_r['dpdk']}; commit {any_r['commit'][:12]}"
        + (" (dirty tree)" if any_r.get("dirty") else "") + ".",
        "",
        "| figure | fwd | testpmd io | fwd / io | load avg | note | command: result files |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    with open(path, "w") as f:
        f.write("\n".join(head + rows) + "\n")
    print(f"report.py: wrote the figures table to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--results", default=os.path.join(here, "results"))
    ap.add_argument("--out", default=None, help="default: the results directory")
    ap.add_argument("--figures", default=None, metavar="FILE",
                    help="also write the fwd-vs-io table of the newest session to FILE")
    ap.add_argument("--peers", default=None, metavar="FILE",
                    help="also write the side-by-side table (fwd, OVS-DPDK, testpmd io) of "
                    "the newest perf/run-peers.sh session to FILE")
    a = ap.parse_args()
    out = a.out or a.results
    latest, every = load(a.results)
    if not latest:
        sys.exit(f"report.py: no results in {a.results} (run perf/run-quick.sh)")

    base = {f: g for f, g, _ in throughput_rows(latest, "testpmd-io")}
    fwd_rows = throughput_rows(latest, "fwd")
    fwd = {f: g for f, g, _ in fwd_rows}
    fwd_cpp = {f: (r.get("fwd_window") or {}).get("cycles_per_packet") for f, _, r in fwd_rows}
    # The ratio divides fwd by the baseline of the same session (same machine conditions)
    # where there is one; else by the newest baseline, flagged.
    paired = {}
    for f, _, r in fwd_rows:
        b = same_session_baseline(every, r)
        if b:
            base[f] = b["generator"]
            paired[f] = True
    any_r = next(iter(latest.values()))
    m = any_r["machine"]
    lines = [
        "# perf results",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}; DPDK {any_r['dpdk']}.",
        "Generated by `perf/report.py` from the newest result of each scenario in this",
        "directory; each JSON file holds the exact commands, the commit and the date.",
        "64-byte frames (60 bytes + FCS), one DUT forwarding core, generator on the other core.",
        "1-minute load average when the results were saved (other work on the machine skews "
        f"the figures): {load_range(latest)}.",
        "",
        *contention_warning(latest),
        "## Throughput vs flows (UDP, max rate)",
        "",
        "| flows | testpmd io rx Mpps | fwd rx Mpps | fwd cycles/pkt | fwd / io | fwd loss | same session | result files |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for f in sorted(set(base) | set(fwd)):
        b, w = base.get(f), fwd.get(f)
        bcell = f"{mpps(b['rx_pps'])} ({b['loss_ratio'] * 100:.3f}% lost)" if b else "-"
        wcell = mpps(w["rx_pps"]) if w else "not measured"
        ratio = "-"
        if b and w and b["rx_pps"] > 0:
            q = w["rx_pps"] / b["rx_pps"]
            # The io forwarder is the limit of the path: above it, conditions differed.
            ratio = f"{q:.2f}" + (" (not comparable: above the path limit)" if q > 1.05 else "")
        loss = f"{w['loss_ratio'] * 100:.3f}%" if w else "-"
        files = ", ".join(sorted({r["_file"] for r in every
                                  if r["generator"] is b or r["generator"] is w}))
        same = "yes" if paired.get(f) else ("no" if b and w else "-")
        cpp = f"{fwd_cpp[f]:,.0f}" if fwd_cpp.get(f) else "-"
        lines.append(f"| {f:,} | {bcell} | {wcell} | {cpp} | {ratio} | {loss} | {same} | {files} |")
    procs = sorted({r.get("fwd_processor", "?") for r in latest.values() if r["dut"] == "fwd"})
    if procs:
        lines += ["", f"fwd ran with the processor: {', '.join(procs)} (`PortForward` is the "
                  "bridge fwd used before the firewall pipeline was wired in: I/O edge only, "
                  "no conntrack, rules or NAT)."]
    lines += ["", "fwd's udp-<flows> entries are replied (ESTABLISHED): a warm-up pass sends one "
              "packet per flow and perfgen's reflector answers each through fwd's reverse NAT "
              "(`warmup` in each result: fwd's count of entries with SEEN_REPLY); the "
              "measurement pass is one way."]
    lines += both_ways_section(latest)
    lines += big_frames_section(latest)
    lines += rounds_section(every)
    lines += latency_section(every)
    lines += table_section(latest)
    lines += peers_section(every)
    lines += ["", "## Latency, each newest run (UDP, one way through the DUT, generator TSC stamps)", "",
              "| scenario | load | rx Mpps | p50 us | p90 us | p99 us | p99.9 us | max us |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in sorted(latest.items()):
        g = r["generator"]
        if g["args"]["mode"] == "udp" and g["latency"]["samples"]:
            ld = r.get("load", "max")
            lat = g["latency"]
            lines.append(f"| {name} | {ld} | {mpps(g['rx_pps'])} | {us(lat['p50_ns'])} | "
                         f"{us(lat['p90_ns'])} | {us(lat['p99_ns'])} | {us(lat['p999_ns'])} | "
                         f"{us(lat['max_ns'])} |")
    lines += ["", "## New connections", "",
              "fwd inserts/s: fwd's own count of conntrack inserts (its `stats` before and "
              "after the run, on a fresh fwd) per second of sending: the true new-connection "
              "rate (results before 2026-11-30 23:00 ran newconn-udp on a fwd whose table "
              "still held the udp-<flows> entries, and have no such column).", "",
              "| scenario | kind | completed/s (perfgen) | fwd inserts/s | failed | "
              "p50 setup us | p99 setup us |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in sorted(latest.items()):
        g = r["generator"]
        if g.get("tcp"):
            t, lat = g["tcp"], g["latency"]
            lines.append(f"| {name} | TCP handshake | {t['conns_per_s']:,.0f} | "
                         f"{ct_rate_cell(r)} | {t['client']['failed']} | {us(lat['p50_ns'])} | "
                         f"{us(lat['p99_ns'])} |")
        elif "newconn" in name or "rules" in name:
            lines.append(f"| {name} | single-packet UDP | {g['rx_pps']:,.0f} | "
                         f"{ct_rate_cell(r)} | {g['lost']} lost | - | - |")
    lines += ["", "## fwd counters after each run (cumulative since fwd started)", "",
              "| scenario | worker rx | worker tx | drops by reason | conntrack entries | "
              "NAT exhausted | busy |", "|---|---:|---:|---|---:|---:|---:|"]
    for name, r in sorted(latest.items()):
        st = r.get("fwd_stats")
        if r["dut"] != "fwd" or not st:
            continue
        ws = st.get("workers", [])
        drops = {}
        for w in ws:
            for k, v in w.get("drops", {}).items():
                drops[k] = drops.get(k, 0) + v
        dtext = ", ".join(f"{k} {v:,}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1])
                          if v) or "none"
        total = sum(w.get("total_cycles", 0) for w in ws)
        busy = f"{sum(w.get('busy_cycles', 0) for w in ws) / total:.2f}" if total else "-"
        lines.append(f"| {name} | {sum(w.get('rx_packets', 0) for w in ws):,} | "
                     f"{sum(w.get('tx_packets', 0) for w in ws):,} | {dtext} | "
                     f"{sum(w.get('ct', {}).get('entries', 0) for w in ws):,} | "
                     f"{sum(w.get('nat_port_exhausted', 0) for w in ws):,} | {busy} |")
    scaling = {}  # perf/run-scaling.sh results (the 16-core machine)
    for name, r in latest.items():
        if name.startswith("scaling-") and "tcp" not in name:
            scaling.setdefault(r["dut"], {})[r["workers"]] = r["generator"]["rx_pps"]
    lines += ["", "## Scaling (UDP, max rate)", ""]
    if scaling:
        lines += ["| DUT | workers | rx Mpps | per worker Mpps | efficiency |",
                  "|---|---:|---:|---:|---:|"]
        for dut, d in sorted(scaling.items()):
            one = d.get(1)
            for w in sorted(d):
                eff = f"{d[w] / (w * one):.2f}" if one else "-"
                lines.append(f"| {dut} | {w} | {mpps(d[w])} | {mpps(d[w] / w)} | {eff} |")
    else:
        lines.append("Not measured: `perf/run-scaling.sh` needs 2 x workers + 1 cores "
                     "(the 16-core machine, which was not lent to the sessions that took "
                     "these figures); no throughput-vs-workers plot without it.")
    lines.append("")

    plot = os.path.join(out, "throughput-vs-flows.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        both = lambda dut: {f: {"rx_pps": both_ways_pps(g)}  # noqa: E731
                            for f, g, _ in throughput_rows(latest, dut, "udp2")}
        for label, d, style in (("testpmd io (path limit)", base, "o--"),
                                ("fwd (router + SNAT, replied flows)", fwd, "s-"),
                                ("testpmd io, both ways", both("testpmd-io"), "^:"),
                                ("fwd, both ways", both("fwd"), "v-.")):
            if d:
                xs = sorted(d)
                ax.plot(xs, [d[x]["rx_pps"] / 1e6 for x in xs], style, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("flows")
        ax.set_ylabel("Mpps received (64-byte frames)")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend()
        ax.set_title(f"Throughput vs flows, 1 DUT core ({m['cores']}-core machine)")
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        lines.insert(8, f"![throughput vs flows]({os.path.basename(plot)})\n")
        if scaling:
            wplot = os.path.join(out, "throughput-vs-workers.png")
            fig, ax = plt.subplots(figsize=(7, 4))
            for dut, d in sorted(scaling.items()):
                xs = sorted(d)
                ax.plot(xs, [d[x] / 1e6 for x in xs], "o-", label=dut)
            ax.set_xlabel("workers")
            ax.set_ylabel("Mpps received (64-byte frames)")
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(wplot, dpi=100)
            lines.append(f"![throughput vs workers]({os.path.basename(wplot)})")
    except ImportError:
        lines.append("(matplotlib missing: no plot; apt-get install python3-matplotlib)")
    report = os.path.join(out, "REPORT.md")
    with open(report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"report.py: wrote {report}" + (f" and {plot}" if os.path.exists(plot) else ""))
    if a.figures:
        figures(latest, every, a.figures)
    if a.peers:
        t = peers_table(every)
        if not t:
            sys.exit("report.py --peers: no perf/run-peers.sh results")
        with open(a.peers, "w") as f:
            f.write("\n".join(t) + "\n")
        print(f"report.py: wrote the side-by-side table to {a.peers}")


if __name__ == "__main__":
    main()
