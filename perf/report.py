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
        g = r["generator"]
        if run_id and r.get("run_id") == run_id and r["dut"] == "testpmd-io" \
                and g["args"]["mode"] == "udp" and g["args"]["rate"] == 0 \
                and g["args"]["flows"] == flows:
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


def throughput_rows(latest, dut):
    rows = []
    for name, r in latest.items():
        g = r["generator"]
        if r["dut"] == dut and g["args"]["mode"] == "udp" and g["args"]["rate"] == 0 \
                and name.split("-")[-1].isdigit() and "rules" not in name:
            rows.append((g["args"]["flows"], g, r))
    return sorted(rows, key=lambda t: t[0])


def session_result(every, run_id, scenario):
    """The newest result of a scenario in one session, else None."""
    found = None
    for r in every:
        if r["scenario"] == scenario and r.get("run_id") == run_id:
            found = r
    return found


def figures(latest, every, path):
    """perf/FIGURES.md's table: fwd against testpmd io of the same session, one row per
    figure, with the script invocation and the result files."""
    fwd = [r for r in latest.values() if r["dut"] == "fwd"]
    if not fwd:
        sys.exit("report.py --figures: no fwd results")
    run_id = max(fwd, key=lambda r: r["_file"]).get("run_id")
    rows = []

    def row(what, fname, bname, metric, unit, note=""):
        w = session_result(every, run_id, fname)
        b = session_result(every, run_id, bname) if bname else None
        if not w:
            rows.append(f"| {what} | not measured | | | | | |")
            return
        wv, bv = metric(w["generator"]), (metric(b["generator"]) if b else None)
        ratio = f"{wv / bv:.2f}" if bv else "-"
        bcell = f"{bv:,.{unit}f}" if bv is not None else "-"
        files = w["_file"] + (f", {b['_file']}" if b else "")
        rows.append(f"| {what} | {wv:,.{unit}f} | {bcell} | {ratio} | "
                    f"{w['machine']['loadavg'].split()[0]} | {note} | "
                    f"`{w.get('invocation', '?')}`: {files} |")

    mp = lambda g: g["rx_pps"] / 1e6  # noqa: E731
    for f in (1000, 100000, 1000000):
        row(f"UDP established, {f:,} flows, 64 B (Mpps)", f"fwd-udp-{f}",
            f"baseline-io-udp-{f}", mp, 3)
    lat = lambda q: (lambda g: g["latency"][q] / 1000)  # noqa: E731
    for q in ("p50_ns", "p99_ns", "p999_ns"):
        row(f"latency {q[:-3]} at 50% of max, 1k flows (us)", "fwd-latency50-1000",
            "baseline-io-latency50-1000", lat(q), 1, "lower is better")
    row("new UDP flows/s (single-packet flows, 16 M tuples)", "fwd-newconn-udp",
        "baseline-io-udp-1000000", lambda g: g["rx_pps"], 0,
        "io column: io max pps at 1M flows (io tracks nothing)")
    row("TCP handshakes/s (SYN .. last ACK, via SNAT)", "fwd-tcp", "baseline-io-tcp",
        lambda g: g["tcp"]["conns_per_s"], 0, "io column: generator+reflector limit")
    for n in (10, 1000, 10000):
        row(f"new UDP flows/s, {n:,} rules in forward", f"fwd-rules-{n}",
            "baseline-io-udp-1000000", lambda g: g["rx_pps"], 0,
            "io column: io max pps at 1M flows")
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
    a = ap.parse_args()
    out = a.out or a.results
    latest, every = load(a.results)
    if not latest:
        sys.exit(f"report.py: no results in {a.results} (run perf/run-quick.sh)")

    base = {f: g for f, g, _ in throughput_rows(latest, "testpmd-io")}
    fwd_rows = throughput_rows(latest, "fwd")
    fwd = {f: g for f, g, _ in fwd_rows}
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
        "| flows | testpmd io rx Mpps | fwd rx Mpps | fwd / io | fwd loss | same session | result files |",
        "|---:|---:|---:|---:|---:|---|---|",
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
        lines.append(f"| {f:,} | {bcell} | {wcell} | {ratio} | {loss} | {same} | {files} |")
    procs = sorted({r.get("fwd_processor", "?") for r in latest.values() if r["dut"] == "fwd"})
    if procs:
        lines += ["", f"fwd ran with the processor: {', '.join(procs)} (`PortForward` is the "
                  "bridge fwd used before the firewall pipeline was wired in: I/O edge only, "
                  "no conntrack, rules or NAT)."]
    lines += ["", "## Latency (UDP, one way through the DUT, generator TSC stamps)", "",
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
              "| scenario | kind | completed/s | failed | p50 setup us | p99 setup us |",
              "|---|---|---:|---:|---:|---:|"]
    for name, r in sorted(latest.items()):
        g = r["generator"]
        if g.get("tcp"):
            t, lat = g["tcp"], g["latency"]
            lines.append(f"| {name} | TCP handshake | {t['conns_per_s']:,.0f} | "
                         f"{t['client']['failed']} | {us(lat['p50_ns'])} | {us(lat['p99_ns'])} |")
        elif "newconn" in name or "rules" in name:
            lines.append(f"| {name} | single-packet UDP | {g['rx_pps']:,.0f} | "
                         f"{g['lost']} lost | - | - |")
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
    scaling = {}
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
                     "(the 16-core machine).")
    lines.append("")

    plot = os.path.join(out, "throughput-vs-flows.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, d, style in (("testpmd io (path limit)", base, "o--"),
                                ("fwd (router + masquerade)", fwd, "s-")):
            if d:
                xs = sorted(d)
                ax.plot(xs, [d[x]["rx_pps"] / 1e6 for x in xs], style, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("flows")
        ax.set_ylabel("Mpps received (64-byte frames)")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
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


if __name__ == "__main__":
    main()
