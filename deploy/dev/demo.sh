#!/usr/bin/env bash
# `make demo`: run `fwd --demo` (deploy/examples/demo.yaml, embedded: two memif ports, fwd
# the memif server, one worker, no hugepages), drive ~10 s of traffic into it with
# dpdk-testpmd txonly into lan (198.18.1.2 -> 198.18.2.2) and rxonly on wan (memif clients),
# print what fwd did (its control socket, queried with python3), stop everything by PID.
# Exits 0 only if fwd forwarded packets (wan port tx > 0). Bounded: < 2 min.
#
# Needs root (memif sockets in /run/fwd). Overrides: FWD (default target/release/fwd),
# TESTPMD (dpdk-testpmd), DEMO_SECONDS (10).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
FWD=${FWD:-$repo/target/release/fwd}
TESTPMD=${TESTPMD:-dpdk-testpmd}
DEMO_SECONDS=${DEMO_SECONDS:-10}
SOCK=/run/fwd/demo.sock
work=$(mktemp -d /tmp/fwd-demo.XXXXXX)
fwd_pid=
gen_pid=
sink_pid=

die() { echo "demo: $*" >&2; exit 1; }

cleanup() {
    # Only the processes this script started, by PID.
    for pid in $gen_pid $sink_pid $fwd_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    [ -n "${DEMO_KEEP:-}" ] && echo "logs in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || die "needs root (memif sockets under /run/fwd)"
[ -x "$FWD" ] || die "$FWD missing: make release"
command -v "$TESTPMD" >/dev/null || die "$TESTPMD missing: make setup"
command -v python3 >/dev/null || die "python3 missing"
if [ -e "$SOCK" ]; then
    # A live socket is another fwd --demo; a dead one is left over from a killed run.
    if timeout 5 python3 -c 'import socket,sys;socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$SOCK" 2>/dev/null; then
        die "$SOCK answers: another fwd --demo is running (stop it first)"
    fi
    rm -f "$SOCK"
fi
mkdir -p /run/fwd
rm -f /run/fwd/demo-lan.sock /run/fwd/demo-wan.sock

# One control request on fwd's socket; prints the JSON response line.
control() {
    timeout 10 python3 - "$SOCK" "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(json.dumps({"v": 1, "id": 1, "request": {"op": sys.argv[2]}}).encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    buf += chunk
print(buf.decode().strip())
EOF
}

echo "== starting $FWD --demo"
"$FWD" --demo --stats-interval 2 >"$work/fwd.log" 2>&1 &
fwd_pid=$!
for _ in $(seq 300); do
    [ -S "$SOCK" ] && break
    kill -0 "$fwd_pid" 2>/dev/null || { cat "$work/fwd.log" >&2; die "fwd exited early"; }
    sleep 0.1
done
[ -S "$SOCK" ] || { cat "$work/fwd.log" >&2; die "no control socket after 30 s"; }

echo "== driving traffic for ${DEMO_SECONDS}s: dpdk-testpmd txonly 198.18.1.2 -> 198.18.2.2 into lan, rxonly on wan (memif clients)"
# Two testpmd instances: the sink drains wan (rxonly), so fwd's wan TX ring never stays
# full; the generator sends on lan to fwd's lan MAC; fwd routes the frames out wan to the
# static neighbour 198.18.2.2.
pmd() { # NAME VDEV MODE-ARGS...
    local name=$1 vdev=$2
    shift 2
    timeout -s INT $((DEMO_SECONDS + 60)) "$TESTPMD" -l 0,1 --no-huge --no-shconf -m 256 \
        --no-pci --file-prefix "fwd-demo-$name-$$" --vdev="$vdev" \
        -- --total-num-mbufs=8192 --stats-period 2 "$@" </dev/null >"$work/$name.log" 2>&1 &
}
pmd sink net_memif1,role=client,socket=/run/fwd/demo-wan.sock,mac=02:00:00:00:02:02 \
    --forward-mode=rxonly
sink_pid=$!
pmd gen net_memif0,role=client,socket=/run/fwd/demo-lan.sock,mac=02:00:00:00:01:02 \
    --forward-mode=txonly --tx-ip=198.18.1.2,198.18.2.2 --eth-peer=0,02:00:00:00:01:01
gen_pid=$!
# Each needs a few seconds to start (mbuf pool without hugepages); count the demo time
# from the generator's first frames, waiting at most 40 s for both.
for _ in $(seq 400); do
    grep -q 'Start automatic packet forwarding' "$work/gen.log" 2>/dev/null &&
        grep -q 'Start automatic packet forwarding' "$work/sink.log" 2>/dev/null && break
    kill -0 "$gen_pid" 2>/dev/null && kill -0 "$sink_pid" 2>/dev/null || break
    sleep 0.1
done
# Live view while the generator runs: fwd's own throughput lines go to its log; here the
# connection table, every 2 s, over the control socket.
elapsed=0
while [ "$elapsed" -lt "$DEMO_SECONDS" ]; do
    step=$(( DEMO_SECONDS - elapsed < 2 ? DEMO_SECONDS - elapsed : 2 ))
    sleep "$step"
    elapsed=$((elapsed + step))
    count=$(control conntrack_count 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("result", {}).get("count", "?"))' 2>/dev/null || echo "?")
    echo "   ${elapsed}s: connections tracked: $count  | fwd: $(grep -v '^EAL\|^TELEMETRY' "$work/fwd.log" | tail -1)"
done
# Read the counters while both are still connected: memif resets a port's ring count
# (and so what rte_eth_stats_get sums) when its peer goes away.
stats=$(control stats) || die "stats request failed"
for pid in $gen_pid $sink_pid; do
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
done
gen_pid=
sink_pid=
sleep 0.2

echo "== fwd's throughput lines"
grep -v '^EAL\|^TELEMETRY' "$work/fwd.log" | tail -8 || true

echo "== what fwd did (control socket $SOCK, read at the end of the traffic)"
report=$(python3 - "$stats" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
if "error" in r:
    print("error:", r["error"]); sys.exit(2)
res = r["result"]
for p in res.get("ports", []):
    print(f"port {p['name']:4}: rx {p.get('ipackets', 0):>12} pkts  tx {p.get('opackets', 0):>12} pkts"
          f"  rx missed {p.get('imissed', 0)}  tx errors {p.get('oerrors', 0)}")
for i, w in enumerate(res.get("workers", [])):
    drops = {k: v for k, v in (w.get("drops") or {}).items() if v} if isinstance(w.get("drops"), dict) else w.get("drops")
    print(f"worker {i}: rx {w.get('rx_packets', 0)} tx {w.get('tx_packets', 0)} drops {drops}")
# What left the wan port (the PMD's count): frames routed lan -> wan and accepted.
wan = [p for p in res.get("ports", []) if p["name"] == "wan"]
print(f"FORWARDED {wan[0].get('opackets', 0) if wan else 0}")
EOF
) || { echo "$stats"; die "could not read stats"; }
echo "$report" | grep -v '^FORWARDED'
forwarded=$(echo "$report" | sed -n 's/^FORWARDED //p')

echo "== stopping fwd (SIGTERM)"
kill -TERM "$fwd_pid"
for _ in $(seq 200); do kill -0 "$fwd_pid" 2>/dev/null || break; sleep 0.1; done
status=0
wait "$fwd_pid" || status=$?
fwd_pid=
[ "$status" = 0 ] || echo "demo: fwd exited with status $status" >&2

if [ "${forwarded:-0}" -gt 0 ]; then
    echo "demo: OK, fwd forwarded $forwarded packets lan -> wan in ${DEMO_SECONDS}s"
    exit 0
fi
echo "--- fwd log ---" >&2; tail -30 "$work/fwd.log" >&2
echo "--- generator log ---" >&2; tail -30 "$work/gen.log" >&2
echo "--- sink log ---" >&2; tail -30 "$work/sink.log" >&2
die "no packets forwarded"
