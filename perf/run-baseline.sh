#!/usr/bin/env bash
# Baseline: dpdk-testpmd --forward-mode=io between two memif ports, perfgen on the other
# ends. The limit of the path the appliance is measured on (same ports, same cores).
#
#   perf/run-baseline.sh                       # 1k, 100k, 1M flows at max rate one way and
#                                              # both ways (udp2), 1518-byte frames at 1k
#                                              # flows, latency at 50% load, TCP handshakes
#   FLOWS="1000" DURATION=3 perf/run-baseline.sh
#   UDP2=0 UDP1518=0 LATENCY=0 TCP=0 perf/run-baseline.sh   # 64-byte one-way runs only
#
# Results: perf/results/<time>-baseline-*.json. Needs root, hugepages, a release perfgen.
source "$(dirname "$0")/lib.sh"
require
FLOWS=${FLOWS:-"1000 100000 1000000"}

# testpmd is restarted for every generator run: DPDK 22.11's memif server can crash
# (SIGSEGV) when a client disconnects while the forwarding lcore polls the queue, the race
# described in docs/dpdk-bindings.md.
# One run on a fresh testpmd: io_run NAME EXTRA_JSON PERFGEN-ARGUMENTS...
io_run() {
    local name=$1 extra=$2
    shift 2
    start_testpmd
    run_gen "$@"
    save "$name" testpmd-io "$GEN" "$extra"
    cleanup_dut
}
max=0
for f in $FLOWS; do
    io_run "baseline-io-udp-$f" "{}" --mode udp --flows "$f" --rate 0 --label "baseline io, max rate"
    [ "$max" = 0 ] && max=$(jq -r '.rx_pps | floor' <<< "$GEN")
done
if [ "${UDP1518:-1}" != 0 ]; then
    # 1518-byte frames at 1 000 flows (fwd's udp1518-1000).
    io_run "baseline-io-udp1518-1000" "{}" --mode udp --flows 1000 --rate 0 --size 1518 \
        --label "baseline io, 1518-byte frames"
fi
if [ "${UDP2:-1}" != 0 ]; then
    # Both ways: perfgen's reflector answers every frame, testpmd io forwards the answers
    # back (port 1 -> port 0), as fwd's udp2-<flows>.
    for f in $FLOWS; do
        io_run "baseline-io-udp2-$f" "{}" --mode udp --flows "$f" --rate 0 --reflect \
            --label "baseline io, both ways"
    done
fi
if [ "${LATENCY:-1}" != 0 ]; then
    # Latency at half the measured maximum (first flow count), where queues are not
    # standing. One run; perf/run-latency.sh repeats it for figures.
    first=${FLOWS%% *}
    io_run "baseline-io-latency50-$first" "{\"load\": 0.5, \"max_pps\": $max}" --mode udp \
        --flows "$first" --rate $(( max / 2 )) --label "baseline io, 50% of max"
fi
if [ "${TCP:-1}" != 0 ]; then
    # New connections: TCP handshakes through the io forwarder (the generator's own limit).
    io_run "baseline-io-tcp" "{}" --mode tcp --flows 1000000 --rate 0 --concurrency 4096 \
        --label "baseline io, tcp handshakes"
fi
