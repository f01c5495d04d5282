#!/usr/bin/env bash
# Scaling: 1, 2, 4, 6 DUT workers (testpmd io, then fwd when built), perfgen with as many
# queue pairs and lcores on cores of its own, 100k UDP flows at max rate, plus TCP
# handshakes through fwd. Needs 2 x max(WORKERS) + 1 cores (13 for 6 workers: the lent
# 16-core machine); refuses on a smaller one. Not run yet: the 16-core machine was not
# available to the session that wrote it.
#
#   perf/run-scaling.sh
#   WORKERS="1 2" FLOWS=100000 perf/run-scaling.sh
#
# Layout for w workers: perfgen lanes on cores 0..w-1, the DUT's main lcore on core w, its
# workers on cores w+1..2w. Results: perf/results/<time>-scaling-{io,fwd}-w<w>.json; the
# report gives the per-worker rate and the efficiency rate(w) / (w x rate(1)).
source "$(dirname "$0")/lib.sh"
require
WORKERS=${WORKERS:-"1 2 4 6"}
FLOW_COUNT=${FLOWS:-100000}
most=0
for w in $WORKERS; do [ "$w" -gt "$most" ] && most=$w; done
need=$(( 2 * most + 1 ))
[ "$(nproc)" -ge "$need" ] || die "$most workers need $need cores (generator and DUT on their own); this machine has $(nproc)"
with_fwd=1
( require_fwd ) 2> /dev/null || { with_fwd=0; echo "run-scaling.sh: no usable release fwd: testpmd io only"; }

for w in $WORKERS; do
    QUEUES=$w
    GEN_CORES=0-$(( w - 1 ))
    DUT_MAIN=$w
    DUT_CORES=$(seq -s, $(( w + 1 )) $(( 2 * w )))
    start_testpmd
    run_gen --mode udp --flows "$FLOW_COUNT" --rate 0 --label "scaling, testpmd io, $w workers"
    save "scaling-io-w$w" testpmd-io "$GEN" "{\"workers\": $w}"
    cleanup_dut
    if [ "$with_fwd" = 1 ]; then
        write_fwd_config "$PERF_DIR/rulesets/router.nft"
        start_fwd
        warm_up "$FLOW_COUNT" # opens and answers every flow: replied (established) entries
        run_gen --mode udp --flows "$FLOW_COUNT" --rate 0 --label "scaling, fwd, $w workers"
        save "scaling-fwd-w$w" fwd "$GEN" "{\"workers\": $w}"
        run_gen --mode tcp --flows 1000000 --rate 0 --label "scaling, fwd tcp, $w workers"
        save "scaling-fwd-tcp-w$w" fwd "$GEN" "{\"workers\": $w}"
        cleanup_dut
    fi
done
