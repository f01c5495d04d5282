#!/usr/bin/env bash
# The appliance: fwd in place of testpmd (same memif ports, same cores), routing lan -> wan
# with perf/rulesets/router.nft (filter + masquerade). Scenarios:
#   udp-<flows>      established-flow throughput, 64-byte frames, max rate (after a warm-up
#                    pass that opens every flow)
#   latency50        latency percentiles at 50% of the 1k-flow maximum
#   newconn-udp      single-packet UDP flows over 16 M tuples (far above conntrack.max)
#   tcp              TCP handshakes (SYN .. last ACK) through NAT, reflector on wan
#   rules-<n>        new-flow rate with n rules in the forward chain (perf/gen-rules.sh)
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
SCENARIOS=${SCENARIOS:-"udp latency50 newconn-udp tcp rules"}
RULE_COUNTS=${RULE_COUNTS:-"10 1000 10000"}
require_fwd
if [ "${BASELINE:-1}" != 0 ] && [[ " ${SCENARIOS:-udp} " == *" udp "* ]]; then
    FLOWS="$FLOWS" "$PERF_DIR/run-baseline.sh"
fi
EXTRA_META=$(jq -n --arg p "${FWD_PROCESSOR:-pipeline}" '{fwd_processor: $p}')

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
# save with fwd's counters (drops by reason, conntrack) appended: fsave NAME [EXTRA_JSON]
fsave() {
    local extra
    extra=$(jq -n --argjson a "${2:-"{}"}" --argjson s "$(fwd_stats)" '$a + {fwd_stats: $s}')
    save "$1" fwd "$GEN" "$extra"
}
MAX_UDP=0

write_fwd_config "$PERF_DIR/rulesets/router.nft"
start_fwd
if has udp || has latency50; then
    for f in $FLOWS; do
        run_gen --mode udp --flows "$f" --count "$f" --rate 1000000 # opens every flow
        run_gen --mode udp --flows "$f" --rate 0 --label "fwd router+masquerade, established"
        has udp && fsave "fwd-udp-$f"
        [ "$MAX_UDP" = 0 ] && MAX_UDP=$(jq -r '.rx_pps | floor' <<< "$GEN")
    done
fi
if has latency50; then
    first=${FLOWS%% *}
    run_gen --mode udp --flows "$first" --rate $(( MAX_UDP / 2 )) --label "fwd, 50% of max"
    fsave "fwd-latency50-$first" "{\"load\": 0.5, \"max_pps\": $MAX_UDP}"
fi
if has newconn-udp; then
    run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, single-packet UDP flows"
    fsave "fwd-newconn-udp"
fi
if has tcp; then
    run_gen --mode tcp --flows 1000000 --dport 80 --rate 0 --concurrency 4096 --label "fwd, tcp handshakes via masquerade"
    fsave "fwd-tcp"
fi
cleanup_dut

if has rules; then
    for n in $RULE_COUNTS; do
        "$PERF_DIR/gen-rules.sh" "$n" > "$RUN_DIR/rules.nft"
        write_fwd_config "$RUN_DIR/rules.nft"
        start_fwd
        run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, $n rules, new flows"
        fsave "fwd-rules-$n" "{\"rules\": $n}"
        cleanup_dut
    done
fi
