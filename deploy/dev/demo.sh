#!/usr/bin/env bash
# `make demo`: run `fwd --demo` (deploy/examples/demo.yaml, embedded: two memif ports, fwd
# the memif server, one worker on core 1, no hugepages), drive ~10 s of traffic through it
# with perfgen (perf/gen: 64-byte UDP over 1 000 flows in random order, as fast as fwd
# takes them, from clients in 198.18.16.0/22 on lan to 198.18.2.2 behind wan, where perfgen's sink
# counts every frame and verifies the checksums of a stamped sample), then print the rate
# through fwd in Mpps, fwd's cycles per packet (its worker's busy cycles / packets
# received) and what fwd counted, read over its control socket; stop everything by PID.
# Exits 0 only if frames went through fwd (perfgen received them on the wan side, fwd
# counted them forwarded) with no bad checksum. Bounded: < 2 min.
#
# Needs root (memif sockets in /run/fwd). Overrides: FWD (default target/release/fwd),
# PERFGEN (target/release/perfgen), DEMO_SECONDS (10), DEMO_FLOWS (1000), GEN_CORE (0).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
FWD=${FWD:-$repo/target/release/fwd}
PERFGEN=${PERFGEN:-$repo/target/release/perfgen}
DEMO_SECONDS=${DEMO_SECONDS:-10}
DEMO_FLOWS=${DEMO_FLOWS:-1000}
GEN_CORE=${GEN_CORE:-0}
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
[ -x "$PERFGEN" ] || die "$PERFGEN missing: cargo build --release -p perfgen"
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
before=$(control stats) || die "stats request failed"

# perfgen's EAL: hugepages when enough are free (make demo reserves them), else none.
free_mb=$(awk '/HugePages_Free/ {f = $2} /Hugepagesize/ {s = $2} END {print f * s / 1024}' /proc/meminfo)
mem=(-m 256 --in-memory)
[ "${free_mb%.*}" -ge 320 ] || mem=(-m 256 --no-huge --no-shconf)
echo "== driving traffic for ${DEMO_SECONDS}s: perfgen, $DEMO_FLOWS UDP flows 198.18.16.0/22 -> 198.18.2.2:9 into lan, sink on wan (memif clients, core $GEN_CORE)"
timeout $((DEMO_SECONDS + 60)) "$PERFGEN" --mode udp --flows "$DEMO_FLOWS" --rate 0 \
    --duration "$DEMO_SECONDS" --src-net 198.18.16.0 --dst 198.18.2.2 \
    --tx-mac 02:00:00:00:01:01 --rx-mac 02:00:00:00:02:01 --settle-ms 300 \
    --json "$work/gen.json" --label "make demo" -- \
    -l "$GEN_CORE" --file-prefix "fwd-demo-gen-$$" --no-pci "${mem[@]}" \
    --vdev=net_memif0,role=client,socket=/run/fwd/demo-lan.sock,mac=02:00:00:00:01:02 \
    --vdev=net_memif1,role=client,socket=/run/fwd/demo-wan.sock,mac=02:00:00:00:02:02 \
    >"$work/gen.log" 2>&1 &
gen_pid=$!
# Live view while the generator runs: fwd's own throughput line and the connection table,
# every 2 s, over the control socket. Bounded by the generator's own duration.
for _ in $(seq 100); do grep -q "perfgen: sending" "$work/gen.log" 2>/dev/null && break; sleep 0.1; done
elapsed=0
while [ "$elapsed" -lt "$DEMO_SECONDS" ] && kill -0 "$gen_pid" 2>/dev/null; do
    step=$(( DEMO_SECONDS - elapsed < 2 ? DEMO_SECONDS - elapsed : 2 ))
    sleep "$step"
    elapsed=$((elapsed + step))
    count=$(control conntrack_count 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r.get("result", {}).get("count", "?"))' 2>/dev/null || echo "?")
    echo "   ${elapsed}s: connections tracked: $count  | fwd: $(grep -v '^EAL\|^TELEMETRY' "$work/fwd.log" | tail -1)"
done
status=0
wait "$gen_pid" || status=$?
gen_pid=
[ "$status" = 0 ] && [ -s "$work/gen.json" ] || { tail -20 "$work/gen.log" >&2; die "perfgen failed (status $status)"; }
after=$(control stats) || die "stats request failed"

echo "== what went through fwd"
# Worker counters (memif resets a port's counters when its peer goes away, the workers'
# do not): the difference over the run.
report=$(python3 - "$before" "$after" "$work/gen.json" <<'EOF'
import json, sys
b, a = (json.loads(x)["result"] for x in sys.argv[1:3])
g = json.load(open(sys.argv[3]))
def tot(s, k):
    return sum(w.get(k, 0) for w in s["workers"])
d = {k: tot(a, k) - tot(b, k) for k in ("rx_packets", "tx_packets", "forwarded", "busy_cycles")}
drops = {}
for w in a["workers"]:
    for k, v in w.get("drops", {}).items():
        if v:
            drops[k] = drops.get(k, 0) + v
c = g["counters"]
hz = g["tsc_hz"]
cpp = d["busy_cycles"] / d["rx_packets"] if d["rx_packets"] else 0
lat = g["latency"]
print(f"perfgen: sent {g['tx_pps'] / 1e6:.2f} Mpps, received through fwd {g['rx_pps'] / 1e6:.2f} Mpps "
      f"({c['rx_packets']:,} frames in {g['send_s']:.1f} s; {g['args']['flows']:,} flows, random order, 64 B)")
print(f"perfgen: checksums verified on a sample of {c['rx_verified']:,} frames, {c['rx_bad_checksum']} bad; "
      f"one-way latency p50 {lat['p50_ns'] / 1000:.1f} us, p99 {lat['p99_ns'] / 1000:.1f} us")
print(f"fwd worker: rx {d['rx_packets']:,} forwarded {d['forwarded']:,} tx {d['tx_packets']:,}; "
      f"{cpp:.0f} cycles per packet (busy cycles / packets received, TSC {hz / 1e6:,.0f} MHz); "
      f"drops since start {drops or 'none'}")
ok = c["rx_packets"] > 0 and d["forwarded"] > 0 and c["rx_bad_checksum"] == 0
print(f"RESULT {'ok' if ok else 'fail'} {c['rx_packets']} {g['rx_pps'] / 1e6:.2f} {cpp:.0f}")
EOF
) || { echo "$after"; die "could not read the results"; }
echo "$report" | grep -v '^RESULT'
read -r _ verdict received mpps cpp <<< "$(echo "$report" | grep '^RESULT')"

echo "== stopping fwd (SIGTERM)"
kill -TERM "$fwd_pid"
for _ in $(seq 200); do kill -0 "$fwd_pid" 2>/dev/null || break; sleep 0.1; done
status=0
wait "$fwd_pid" || status=$?
fwd_pid=
[ "$status" = 0 ] || echo "demo: fwd exited with status $status" >&2

if [ "$verdict" = ok ]; then
    echo "demo: OK, $received frames through fwd lan -> wan at $mpps Mpps, $cpp cycles/packet in fwd's worker"
    exit 0
fi
echo "--- fwd log ---" >&2; tail -30 "$work/fwd.log" >&2
echo "--- generator log ---" >&2; tail -30 "$work/gen.log" >&2
die "no frames through fwd, or bad checksums (see above)"
