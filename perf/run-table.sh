#!/usr/bin/env bash
# Connection table size (issue 7): memory per entry, time to fill N entries, and the
# established throughput of TABLE_FLOWS (1 M) flows while the table holds N.
#
# For each N in TABLE_SIZES, a fresh fwd with conntrack.max = CT_MAX (default 10 Mi
# entries, one worker) and UDP timeouts of an hour, so nothing expires while it fills,
# and perf/rulesets/filter.nft (router.nft without SNAT: see that file). perfgen sends N
# single-packet UDP flows (distinct tuples) at max rate while a poller reads fwd's entry
# count (control op stats) every 0.1 s; the fill time is from the first sample with an
# entry to the first with N. Then a warm-up answers the first TABLE_FLOWS flows (replied
# entries, as udp-<flows>) and perfgen sends them one way at max rate for DURATION s.
#
# Memory: fwd allocates each worker's table whole at start (conntrack Table::new on the
# worker's lcore, on the heap in transparent huge pages, written whole before fwd opens
# its control socket; `start_ms` is how long fwd took to open it). Measured as fwd's RSS with
# CT_MAX entries minus its RSS with CT_SMALL (64 Ki) entries, per entry of capacity, right
# after start and after the fill, beside the layout's figure (docs/conntrack.md: 128 + 32
# + 48 bytes of entry arrays plus the index's 64-byte buckets, next power of two of
# 2 x capacity x 1.25 / 8).
#
#   perf/run-table.sh                         # N = 1 M and 10 M (fwd takes ~2.5 GB RAM)
#   TABLE_SIZES=1000000 DURATION=3 perf/run-table.sh
#
# Results: perf/results/<time>-fwd-table-<N>.json (the generator is the throughput run;
# `table` holds the fill and the memory). Needs root, hugepages, release fwd and perfgen.
source "$(dirname "$0")/lib.sh"
require
require_fwd
TABLE_SIZES=${TABLE_SIZES:-"1000000 10000000"}
TABLE_FLOWS=${TABLE_FLOWS:-1000000}
export CT_MAX=${CT_MAX:-10485760}
CT_SMALL=65536
export CT_TIMEOUTS="    nf_conntrack_udp_timeout: 3600
    nf_conntrack_udp_timeout_stream: 3600"
RULESET=${TABLE_RULESET:-$PERF_DIR/rulesets/filter.nft}
EXTRA_META=$(jq -n --arg p "${FWD_PROCESSOR:-pipeline}" '{fwd_processor: $p}')
cap600() { if [ "$1" -gt 600 ]; then echo 600; else echo "$1"; fi; }

# fwd's RSS with a small table, the reference for the per-entry figure.
CT_MAX=$CT_SMALL write_fwd_config "$RULESET" > /dev/null
start_fwd
sleep 1
rss_small=$(dut_rss_kib)
cleanup_dut
write_fwd_config "$RULESET"

for n in $TABLE_SIZES; do
    [ "$n" -le "$CT_MAX" ] || die "table size $n is above CT_MAX $CT_MAX"
    [ "$TABLE_FLOWS" -le "$n" ] || die "TABLE_FLOWS $TABLE_FLOWS is above the table size $n"
    start_fwd
    start_ms=$FWD_START_MS
    sleep 1
    rss_start=$(dut_rss_kib)
    before=$(fwd_stats)
    limit=$(cap600 $(( n / 50000 + 40 )))
    ct_poll "$RUN_DIR/fill.txt" "$n" "$limit" 0.1 &
    poll_pid=$!
    DURATION=$(cap600 $(( n / 50000 + 20 ))) run_gen --mode udp --flows "$n" --count "$n" --rate 0 \
        --label "fwd, fill the table: $n single-packet flows"
    wait "$poll_pid" || echo "run-table.sh: the poller failed (fill time unknown)" >&2
    fill_gen=$GEN
    after=$(fwd_stats)
    rss_filled=$(dut_rss_kib)
    fill=$(jq -R -s --argjson n "$n" '
        [split("\n")[] | select(length > 0) | split(" ") | {t: (.[0] | tonumber), e: (.[1] | tonumber)}] as $s
        | ($s | map(select(.e > 0)) | first) as $a
        | ($s | map(select(.e >= ($n / 2))) | first) as $h
        | ($s | map(select(.e >= $n)) | first) as $b
        | {target: $n, poll_interval_s: 0.1, samples: ($s | length), entries_last: ($s | last | .e),
           fill_s: (if $a and $b then $b.t - $a.t else null end),
           entries_per_s: (if $a and $b and $b.t > $a.t then $n / ($b.t - $a.t) else null end),
           first_half_per_s: (if $a and $h and $h.t > $a.t then ($n / 2) / ($h.t - $a.t) else null end),
           second_half_per_s: (if $h and $b and $b.t > $h.t then ($n / 2) / ($b.t - $h.t) else null end),
           series: [$s | to_entries[] | select(.key % 10 == 0) | .value]}' "$RUN_DIR/fill.txt")
    fill=$(jq -n --argjson f "$fill" --argjson g "$fill_gen" --argjson r "$(ct_rate "$before" "$after" "$(jq -r .send_s <<< "$fill_gen")")" \
        '$f + {generator: {send_s: $g.send_s, tx_packets: $g.counters.tx_packets, rx_packets: $g.counters.rx_packets,
           tx_retries: $g.counters.tx_retries, tx_pps: $g.tx_pps, rx_pps: $g.rx_pps}, ct_rate: $r}')
    jq -r '"  fill: \(.target) entries in \(.fill_s // "?") s (\(.entries_per_s // 0 | floor)/s; first half \(.first_half_per_s // 0 | floor)/s, second half \(.second_half_per_s // 0 | floor)/s); perfgen sent \(.generator.tx_packets) in \(.generator.send_s * 100 | round / 100) s; fwd inserted \(.ct_rate.inserts // "?"), failed \(.ct_rate.insert_failed // "?")"' <<< "$fill"
    memory=$(jq -n --argjson cap "$CT_MAX" --argjson small "$CT_SMALL" --argjson rs "$rss_small" \
        --argjson r0 "$rss_start" --argjson r1 "$rss_filled" --argjson st "$start_ms" '
        def pow2($x): reduce range(0; 40) as $i (1; if . < $x then . * 2 else . end);
        def layout($c): ($c * 208 + pow2(($c * 2 * 1.25 / 8) | ceil) * 64);
        {ct_max: $cap, ct_small: $small, start_ms: $st, rss_kib_small_table: $rs, rss_kib_start: $r0, rss_kib_filled: $r1,
         bytes_per_entry_rss_start: ((($r0 - $rs) * 1024) / ($cap - $small)),
         bytes_per_entry_rss_filled: ((($r1 - $rs) * 1024) / ($cap - $small)),
         bytes_per_entry_layout: (layout($cap) / $cap),
         table_bytes_layout: layout($cap),
         note: "fwd RSS with ct_max entries minus RSS with ct_small entries (one worker), per entry of capacity, right after start and after the fill (pages are committed on first touch); layout: docs/conntrack.md (Table::memory)"}')
    jq -r '"  memory: fwd ready in \(.start_ms) ms; \(.bytes_per_entry_rss_filled | floor) B/entry of capacity by RSS after the fill (\(.bytes_per_entry_rss_start | floor) at start; layout \(.bytes_per_entry_layout * 10 | floor / 10)); RSS \(.rss_kib_start / 1024 | floor) MiB at start, \(.rss_kib_filled / 1024 | floor) MiB filled"' <<< "$memory"
    warm_up "$TABLE_FLOWS"
    run_gen --mode udp --flows "$TABLE_FLOWS" --rate 0 --label "fwd, $TABLE_FLOWS established flows, table holds $n"
    fsave "fwd-table-$n" "$(jq -n --argjson f "$fill" --argjson m "$memory" --argjson w "$WARM" \
        '{table: {entries: $f.target, fill: $f, memory: $m}, warmup: $w}')"
    cleanup_dut
done
