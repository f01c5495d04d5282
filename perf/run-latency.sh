#!/usr/bin/env bash
# Throughput and latency at 50 % load, repeated and alternated (one run on a shared 2-core
# VM says little): REPEATS (5) rounds at LAT_FLOWS (1 000) flows, each: testpmd io at max
# rate, then at half of that rate; fwd (fresh, router.nft + SNAT, every flow answered
# first, as udp-<flows>) at max rate, then at half of that. DURATION seconds per run.
# report.py gives the median and range over the rounds of the newest session: max rate
# and the fwd / io ratio of each round (neighbours in time), latency p50/p99/p99.9.
#
# Core layout: perfgen (one lcore: builds, stamps, sends, receives, verifies) on CORE_GEN
# (0); the DUT's forwarding lcore on CORE_DUT (1). The DUT's main lcore shares core 0
# with perfgen: testpmd's only prints statistics; fwd's runs its slow path, its control
# thread and the memif control thread. One-way latency is the TSC stamped by perfgen at
# transmission to the TSC when its burst arrives back, same host, same TSC.
#
#   perf/run-latency.sh
#   REPEATS=3 DURATION=3 perf/run-latency.sh
#
# Results: perf/results/<time>-{baseline-io,fwd}-{latmax,latency50}-<flows>.json, one per
# run, with `rep` (1..REPEATS) and `repeats` (latency50 also `load` and `max_pps`).
source "$(dirname "$0")/lib.sh"
require
require_fwd
REPEATS=${REPEATS:-5}
LAT_FLOWS=${LAT_FLOWS:-1000}
EXTRA_META=$(jq -n --arg p "${FWD_PROCESSOR:-pipeline}" '{fwd_processor: $p}')
f=$LAT_FLOWS

write_fwd_config "$PERF_DIR/rulesets/router.nft"
# The fields of one repeat's results: meta [MAX_PPS] (reads $rep).
meta() {
    echo "{\"rep\": $rep, \"repeats\": $REPEATS${1:+, \"load\": 0.5, \"max_pps\": $1}}"
}
for rep in $(seq "$REPEATS"); do
    start_testpmd
    run_gen --mode udp --flows "$f" --rate 0 --label "baseline io, max rate, run $rep"
    save "baseline-io-latmax-$f" testpmd-io "$GEN" "$(meta)"
    io_max=$(jq -r '.rx_pps | floor' <<< "$GEN")
    cleanup_dut
    start_testpmd
    run_gen --mode udp --flows "$f" --rate $(( io_max / 2 )) --label "baseline io, 50% of max, run $rep"
    save "baseline-io-latency50-$f" testpmd-io "$GEN" "$(meta "$io_max")"
    cleanup_dut
    start_fwd
    warm_up "$f"
    run_gen --mode udp --flows "$f" --rate 0 --label "fwd, max rate, run $rep"
    fsave "fwd-latmax-$f" "$(jq -n --argjson m "$(meta)" --argjson w "$WARM" '$m + {warmup: $w}')"
    fwd_max=$(jq -r '.rx_pps | floor' <<< "$GEN")
    run_gen --mode udp --flows "$f" --rate $(( fwd_max / 2 )) --label "fwd, 50% of max, run $rep"
    fsave "fwd-latency50-$f" "$(jq -n --argjson m "$(meta "$fwd_max")" --argjson w "$WARM" '$m + {warmup: $w}')"
    cleanup_dut
done
for kind in latmax latency50; do
    jq -r -s --arg k "$kind" 'group_by(.dut)[] | "\($k) \(.[0].dut): rx Mpps \(map(.generator.rx_pps / 1e4 | floor / 100)), p50 \(map(.generator.latency.p50_ns / 1000 | floor)) us, p99 \(map(.generator.latency.p99_ns / 1000 | floor)) us"' \
        $(ls -t "$RESULTS"/*-"$kind"-"$f".json | head -$(( 2 * REPEATS )) | sort)
done
