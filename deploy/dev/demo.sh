#!/usr/bin/env bash
# `make demo`: run `fwd --demo` (deploy/examples/demo.yaml, embedded: two memif ports, fwd
# the memif server, one worker, no hugepages), drive ~10 s of traffic into it with
# dpdk-testpmd txonly as the memif client (198.18.1.2 -> 198.18.2.2, routed lan -> wan),
# print what fwd did (its control socket, queried with python3), stop everything by PID.
# Exits 0 only if fwd forwarded packets (wan tx > 0). Bounded: < 2 min.
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

die() { echo "demo: $*" >&2; exit 1; }

cleanup() {
    # Only the processes this script started, by PID.
    for pid in $gen_pid $fwd_pid; do
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
[ -e "$SOCK" ] && die "$SOCK exists: another fwd --demo running? (stop it first)"
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

echo "== driving traffic for ${DEMO_SECONDS}s: dpdk-testpmd txonly 198.18.1.2 -> 198.18.2.2 (memif client)"
# txonly sends on both ports; only the lan port's peer MAC (fwd's lan) matters here: those
# frames are routed out wan to the static neighbour 198.18.2.2.
timeout -s INT $((DEMO_SECONDS + 60)) "$TESTPMD" -l 0,1 --no-huge --no-shconf -m 512 --no-pci \
    --file-prefix "fwd-demo-gen-$$" \
    --vdev=net_memif0,role=client,socket=/run/fwd/demo-lan.sock,mac=02:00:00:00:01:02 \
    --vdev=net_memif1,role=client,socket=/run/fwd/demo-wan.sock,mac=02:00:00:00:02:02 \
    -- --forward-mode=txonly --tx-ip=198.18.1.2,198.18.2.2 --total-num-mbufs=16384 \
    --eth-peer=0,02:00:00:00:01:01 --eth-peer=1,02:00:00:00:02:01 \
    --stats-period 2 </dev/null >"$work/gen.log" 2>&1 &
gen_pid=$!
# The generator needs a few seconds to start (mbuf pool without hugepages); count the
# demo time from its first frames, waiting at most 40 s for them.
for _ in $(seq 400); do
    grep -q 'Start automatic packet forwarding' "$work/gen.log" 2>/dev/null && break
    kill -0 "$gen_pid" 2>/dev/null || break
    sleep 0.1
done
sleep "$DEMO_SECONDS"
kill -INT "$gen_pid" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$gen_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$gen_pid" 2>/dev/null && kill -KILL "$gen_pid" 2>/dev/null
wait "$gen_pid" 2>/dev/null || true
gen_pid=
sleep 0.2

echo "== fwd's throughput lines"
grep -v '^EAL\|^TELEMETRY' "$work/fwd.log" | tail -8 || true

echo "== what fwd did (control socket $SOCK)"
stats=$(control stats) || die "stats request failed"
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
# The workers' transmitted frames: what fwd routed (memif port counters may read 0).
print(f"FORWARDED {sum(w.get('tx_packets', 0) for w in res.get('workers', []))}")
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
    echo "demo: OK, fwd forwarded $forwarded packets in ${DEMO_SECONDS}s"
    exit 0
fi
echo "--- fwd log ---" >&2; tail -30 "$work/fwd.log" >&2
echo "--- generator log ---" >&2; tail -30 "$work/gen.log" >&2
die "no packets forwarded"
