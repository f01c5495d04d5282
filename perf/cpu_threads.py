#!/usr/bin/env python3
"""CPU time per thread of chosen processes, for perf/run-hasync.sh's breakdown.

    cpu_threads.py snap OUT NAME=PID...   writes every thread's user+system ticks
    cpu_threads.py diff BEFORE AFTER       prints {"NAME/thread": seconds} (JSON), the
                                           CPU each thread used between the two snaps

Threads are read from /proc/PID/task/*/stat (utime + stime, in clock ticks); a thread
that ended between the snaps is left out (its time is not in AFTER).
"""
import json
import os
import sys


def snap(out, named):
    hz = os.sysconf("SC_CLK_TCK")
    threads = {}
    for arg in named:
        name, pid = arg.split("=", 1)
        if not pid:
            continue
        # The process and its children (perfgen runs under `timeout`).
        pids = [pid]
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                pids += f.read().split()
        except OSError:
            pass
        for p in pids:
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{p}/task/{tid}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks = int(fields[11]) + int(fields[12])
                cpu = int(fields[36])
                threads[f"{p}/{tid}"] = {"name": name, "comm": comm, "ticks": ticks,
                                         "cpu": cpu}
    with open(out, "w") as f:
        json.dump({"hz": hz, "threads": threads}, f)


def diff(before, after):
    with open(before) as f:
        a = json.load(f)
    with open(after) as f:
        b = json.load(f)
    out = {}
    for key, t in b["threads"].items():
        t0 = a["threads"].get(key)
        used = t["ticks"] - (t0["ticks"] if t0 else 0)
        label = f'{t["name"]}/{t["comm"]}'
        out[label] = round(out.get(label, 0) + used / b["hz"], 2)
    out = {k: v for k, v in sorted(out.items()) if v > 0}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "snap":
        snap(sys.argv[2], sys.argv[3:])
    else:
        diff(sys.argv[2], sys.argv[3])
