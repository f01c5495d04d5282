#!/usr/bin/env bash
# Latency at 50 % load, repeated (one run on a shared 2-core VM says little): the maximum
# rate of testpmd io and of fwd at LAT_FLOWS (1 000) flows first, then REPEATS (5) pairs
# of DURATION-second runs at half of each one's own maximum, testpmd io and fwd
# alternated, each on a fresh DUT (fwd: router.nft + SNAT, every flow answered first, as
# udp-<flows>). report.py gives the median, range and minimum of p50/p99/p99.9 over the
# repeats of the newest session.
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
# Results: perf/results/<time>-{baseline-io,fwd}-latency50-<flows>.json, one per run,
# with `rep` (1..REPEATS), `repeats`, `load` and `max_pps`; the maximum-rate runs as
# <time>-{baseline-io,fwd}-latmax-<flows>.json.
source "$(dirname "$0")/lib.sh"
require
require_fwd
REPEATS=${REPEATS:-5}
LAT_FLOWS=${LAT_FLOWS:-1000}
EXTRA_META=$(jq -n --arg p "${FWD_PROCESSOR:-pipeline}" '{fwd_processor: $p}')
f=$LAT_FLOWS

start_testpmd
run_gen --mode udp --flows "$f" --rate 0 --label "baseline io, max rate (for latency at 50%)"
save "baseline-io-latmax-$f" testpmd-io "$GEN"
io_max=$(jq -r '.rx_pps | floor' <<< "$GEN")
cleanup_dut
write_fwd_config "$PERF_DIR/rulesets/router.nft"
start_fwd
warm_up "$f"
run_gen --mode udp --flows "$f" --rate 0 --label "fwd, max rate (for latency at 50%)"
fsave "fwd-latmax-$f" "{\"warmup\": $WARM}"
fwd_max=$(jq -r '.rx_pps | floor' <<< "$GEN")
cleanup_dut

# The fields of one repeat's result: meta MAX_PPS (reads $rep).
meta() { echo "{\"load\": 0.5, \"max_pps\": $1, \"rep\": $rep, \"repeats\": $REPEATS}"; }
for rep in $(seq "$REPEATS"); do
    start_testpmd
    run_gen --mode udp --flows "$f" --rate $(( io_max / 2 )) --label "baseline io, 50% of max, run $rep"
    save "baseline-io-latency50-$f" testpmd-io "$GEN" "$(meta "$io_max")"
    cleanup_dut
    start_fwd
    warm_up "$f"
    run_gen --mode udp --flows "$f" --rate $(( fwd_max / 2 )) --label "fwd, 50% of max, run $rep"
    fsave "fwd-latency50-$f" "$(jq -n --argjson m "$(meta "$fwd_max")" --argjson w "$WARM" '$m + {warmup: $w}')"
    cleanup_dut
done
jq -r -s 'group_by(.dut)[] | "\(.[0].dut): p50 \(map(.generator.latency.p50_ns / 1000 | floor) | sort) us, p99 \(map(.generator.latency.p99_ns / 1000 | floor) | sort) us"' \
    $(ls -t "$RESULTS"/*-latency50-"$f".json | head -$(( 2 * REPEATS )))
