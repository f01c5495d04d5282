#!/usr/bin/env bash
# The set that fits the 2-core development machine in about five minutes, all in one
# session (PERF_RUN_ID), then the report:
#   - the testpmd io baseline (1k, 100k, 1M flows one way and both ways, 1518-byte frames
#     at 1k flows, TCP handshakes),
#   - the same through fwd (replied flows one way and both ways), new UDP connections/s
#     and TCP handshakes on fresh fwds, 10/1000/10000 rules (perf/run-appliance.sh),
#   - REPEATS (5) rounds at 1k flows, io and fwd alternated: max rate, then latency at
#     50 % of it (perf/run-latency.sh),
#   - the connection table: fill 1 M and 10 M entries, 1 M flows established while it
#     holds them (perf/run-table.sh; TABLE_SIZES="" skips it; fwd takes ~2.5 GB of RAM).
# The appliance parts need a release fwd.
#
#   perf/run-quick.sh               # builds perfgen (release) if missing
#   DURATION=3 REPEATS=3 perf/run-quick.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export DURATION=${DURATION:-3}
[ -x "$repo/target/release/perfgen" ] || cargo build --release -p perfgen --manifest-path "$repo/Cargo.toml"
export PERF_RUN_ID=${PERF_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-quick}
export PERF_INVOCATION=${PERF_INVOCATION:-"DURATION=$DURATION${REPEATS:+ REPEATS=$REPEATS}${TABLE_SIZES+ TABLE_SIZES=\"$TABLE_SIZES\"} perf/run-quick.sh"}
fwd=${FWD:-$repo/target/release/fwd}
if [ -x "$fwd" ]; then
    # run-appliance.sh runs the testpmd io baseline first, in the same session.
    FLOWS="1000 100000 1000000" RULE_COUNTS="10 1000 10000" SCENARIOS="udp udp2 udp1518 newconn-udp newconn-full tcp rules" \
        "$here/run-appliance.sh" || echo "run-quick.sh: appliance runs failed (see above)"
    "$here/run-latency.sh" || echo "run-quick.sh: latency runs failed (see above)"
    if [ -n "${TABLE_SIZES-1000000 10000000}" ]; then
        TABLE_SIZES="${TABLE_SIZES-1000000 10000000}" "$here/run-table.sh" \
            || echo "run-quick.sh: table runs failed (see above)"
    fi
else
    echo "run-quick.sh: no release fwd (cargo build --release -p dataplane --bin fwd): appliance runs skipped"
    "$here/run-baseline.sh"
fi
py=python3
/usr/bin/python3 -c 'import matplotlib' 2> /dev/null && py=/usr/bin/python3
"$py" "$here/report.py" ${RESULTS:+--results "$RESULTS"}
