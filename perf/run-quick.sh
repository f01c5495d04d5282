#!/usr/bin/env bash
# The set that fits the 2-core development machine in a few minutes: the testpmd io
# baseline (1k, 100k, 1M flows, latency at 50%, TCP handshakes), then the same through fwd
# (plus new UDP flows/s and 10/1000/10000 rules) when a release fwd is built, all in one
# session (PERF_RUN_ID), then the report.
#
#   perf/run-quick.sh               # builds perfgen (release) if missing
#   DURATION=3 perf/run-quick.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export DURATION=${DURATION:-3}
[ -x "$repo/target/release/perfgen" ] || cargo build --release -p perfgen --manifest-path "$repo/Cargo.toml"
export PERF_RUN_ID=${PERF_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-quick}
export PERF_INVOCATION=${PERF_INVOCATION:-"DURATION=$DURATION perf/run-quick.sh"}
if [ -x "$repo/target/release/fwd" ]; then
    # run-appliance.sh runs the testpmd io baseline first, in the same session.
    FLOWS="1000 100000 1000000" RULE_COUNTS="10 1000 10000" "$here/run-appliance.sh" \
        || echo "run-quick.sh: appliance runs failed or skipped (see above)"
else
    echo "run-quick.sh: no release fwd (cargo build --release -p dataplane --bin fwd): appliance runs skipped"
    "$here/run-baseline.sh"
fi
py=python3
/usr/bin/python3 -c 'import matplotlib' 2> /dev/null && py=/usr/bin/python3
"$py" "$here/report.py"
