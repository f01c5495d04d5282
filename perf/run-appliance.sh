#!/usr/bin/env bash
# The appliance: fwd in place of testpmd (same memif ports, same cores), routing lan -> wan
# with perf/rulesets/router.nft (filter + source NAT to a pool). Scenarios:
#   udp-<flows>      established-flow throughput, 64-byte frames, max rate, one way, after
#                    a warm-up pass that opens every flow and answers it (perfgen
#                    --reflect), so every entry has seen a reply (ESTABLISHED, as in Linux)
#   udp1518-1000     1 000 established flows, 1518-byte frames, one way, max rate
#   udp2-<flows>     the same flows both ways at max rate: every frame answered by the
#                    reflector, the answers through fwd's reverse NAT (scenario udp2)
#   latency50        latency percentiles at 50% of the 1k-flow maximum (one run; for
#                    figures use perf/run-latency.sh, which repeats it)
#   newconn-udp      single-packet UDP flows over 16 M tuples, on a fresh fwd
#   newconn-full     the same with conntrack.max NEWCONN_FULL_MAX (256 Ki): the table fills
#                    in the first second and every new connection then needs an early
#                    drop (an unreplied entry evicted), as in Linux at nf_conntrack_max
#   tcp              TCP handshakes (SYN .. last ACK) through NAT, reflector on wan, on a
#                    fresh fwd
#   rules-<n>        new-flow rate with n rules in the forward chain (perf/gen-rules.sh)
# newconn-udp, tcp and rules-<n> also hold `ct_rate`: fwd's own count of conntrack
# inserts (new connections) per second of sending, early drops and lookups that found an
# entry, from its `stats` before and after the run.
#
#   perf/run-appliance.sh
#   SCENARIOS="udp tcp" FLOWS=1000 perf/run-appliance.sh
#
# Results: perf/results/<time>-fwd-*.json. Needs root, hugepages, release fwd and perfgen.
# FWD_PROCESSOR (default "pipeline") is recorded in each result: set it to "PortForward"
# while fwd still runs its bridge processor instead of the firewall pipeline.
#
# The testpmd io baseline (perf/run-baseline.sh, same memif ports, same cores, same flow
# counts) runs first in the same session (PERF_RUN_ID) so report.py's fwd / io ratio
# compares runs taken under the same machine conditions; BASELINE=0 skips it.
source "$(dirname "$0")/lib.sh"
require
FLOWS=${FLOWS:-"1000 100000 1000000"}
SCENARIOS=${SCENARIOS:-"udp udp2 udp1518 latency50 newconn-udp newconn-full tcp rules"}
RULE_COUNTS=${RULE_COUNTS:-"10 1000 10000"}
require_fwd
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
flag() { if has "$1"; then echo 1; else echo 0; fi; }
if [ "${BASELINE:-1}" != 0 ] && { has udp || has udp2; }; then
    FLOWS="$FLOWS" LATENCY=$(flag latency50) UDP2=$(flag udp2) UDP1518=$(flag udp1518) TCP=$(flag tcp) \
        "$PERF_DIR/run-baseline.sh"
fi
EXTRA_META=$(jq -n --arg p "${FWD_PROCESSOR:-pipeline}" '{fwd_processor: $p}')

MAX_UDP=0
write_fwd_config "$PERF_DIR/rulesets/router.nft"
start_fwd
if has udp || has udp2 || has latency50; then
    for f in $FLOWS; do
        warm_up "$f"
        run_gen --mode udp --flows "$f" --rate 0 --label "fwd router+snat, established (replied), one way"
        has udp && fsave "fwd-udp-$f" "{\"warmup\": $WARM}"
        [ "$MAX_UDP" = 0 ] && MAX_UDP=$(jq -r '.rx_pps | floor' <<< "$GEN")
        if has udp2; then
            run_gen --mode udp --flows "$f" --rate 0 --reflect --label "fwd router+snat, both ways"
            fsave "fwd-udp2-$f" "{\"warmup\": $WARM}"
        fi
    done
fi
if has udp1518; then
    # Flows 0..999 were answered by the udp warm-ups when they ran with 1 000 or more flows.
    if ! { has udp || has udp2 || has latency50; } || [ "$(echo "$FLOWS" | tr ' ' '\n' | sort -n | tail -1)" -lt 1000 ]; then
        warm_up 1000
    fi
    run_gen --mode udp --flows 1000 --rate 0 --size 1518 --label "fwd router+snat, established, 1518-byte frames"
    fsave "fwd-udp1518-1000" "{\"warmup\": $WARM}"
fi
if has latency50; then
    first=${FLOWS%% *}
    run_gen --mode udp --flows "$first" --rate $(( MAX_UDP / 2 )) --label "fwd, 50% of max"
    fsave "fwd-latency50-$first" "{\"load\": 0.5, \"max_pps\": $MAX_UDP}"
fi
cleanup_dut

# New connections on a fresh fwd each: nothing left in the table from the runs above (the
# 16 M single-packet flows start with the same tuples as udp-<flows>).
if has newconn-udp; then
    start_fwd
    before=$(fwd_stats)
    run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, single-packet UDP flows"
    fsave "fwd-newconn-udp" "{}" "$before"
    cleanup_dut
fi
if has newconn-full; then
    CT_MAX=${NEWCONN_FULL_MAX:-262144} write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    start_fwd
    before=$(fwd_stats)
    run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, single-packet UDP flows, full table"
    fsave "fwd-newconn-full" "{\"ct_max\": ${NEWCONN_FULL_MAX:-262144}}" "$before"
    cleanup_dut
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
fi
if has tcp; then
    start_fwd
    before=$(fwd_stats)
    run_gen --mode tcp --flows 1000000 --dport 80 --rate 0 --concurrency 4096 --label "fwd, tcp handshakes via snat"
    fsave "fwd-tcp" "{}" "$before"
    cleanup_dut
fi

if has rules; then
    for n in $RULE_COUNTS; do
        "$PERF_DIR/gen-rules.sh" "$n" > "$RUN_DIR/rules.nft"
        write_fwd_config "$RUN_DIR/rules.nft"
        start_fwd
        before=$(fwd_stats)
        run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, $n rules, new flows"
        fsave "fwd-rules-$n" "{\"rules\": $n}" "$before"
        cleanup_dut
    done
fi
