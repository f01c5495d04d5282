#!/usr/bin/env bash
# Baseline: dpdk-testpmd --forward-mode=io between two memif ports, perfgen on the other
# ends. The limit of the path the appliance is measured on (same ports, same cores).
#
#   perf/run-baseline.sh                       # 1k, 100k, 1M flows at max rate, latency at
#                                              # 50% load, TCP handshakes
#   FLOWS="1000" DURATION=3 perf/run-baseline.sh
#
# Results: perf/results/<time>-baseline-*.json. Needs root, hugepages, a release perfgen.
source "$(dirname "$0")/lib.sh"
require
FLOWS=${FLOWS:-"1000 100000 1000000"}

start_testpmd
max=0
for f in $FLOWS; do
    run_gen --mode udp --flows "$f" --rate 0 --label "baseline io, max rate"
    save "baseline-io-udp-$f" testpmd-io "$GEN"
    [ "$max" = 0 ] && max=$(jq -r '.rx_pps | floor' <<< "$GEN")
done
# Latency at half the measured maximum (first flow count), where queues are not standing.
first=${FLOWS%% *}
half=$(( max / 2 ))
run_gen --mode udp --flows "$first" --rate "$half" --label "baseline io, 50% of max"
save "baseline-io-latency50-$first" testpmd-io "$GEN" "{\"load\": 0.5, \"max_pps\": $max}"
# New connections: TCP handshakes through the io forwarder (the generator's own limit).
run_gen --mode tcp --flows 1000000 --rate 0 --concurrency 4096 --label "baseline io, tcp handshakes"
save "baseline-io-tcp" testpmd-io "$GEN"
cleanup_dut
