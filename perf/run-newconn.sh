#!/usr/bin/env bash
# New connections in steady state (issue 14): the rate at which fwd creates connections
# when entries also die at that rate, counted by fwd itself (its conntrack `insert`
# counter, control op stats, polled every POLL_S seconds during the run).
#
#   udp      single-packet UDP flows (16 M tuples, one server) through the router ruleset
#            with SNAT (perf/rulesets/router.nft), UDP timeouts shortened to UDP_TIMEOUT
#            (2 s) so that entries expire throughout a DURATION (20 s) run: the steady
#            rate is taken from 2 x UDP_TIMEOUT + 1 s on, when as many entries die as are
#            made (`entries` flat). conntrack.max CT_MAX_UDP (4 Mi): at 1 M/s about
#            2 x UDP_TIMEOUT x 1 M entries are live or waiting for expiry, so a 2 Mi table
#            would fill and the run would measure early drop (the `full` scenario) instead;
#            a run whose `early_drop` rate is not 0 says so after the steady line.
#   full     the same into a full table: conntrack.max FULL_MAX (256 Ki), timeouts of an
#            hour; from the second the table is full on, every new connection early-drops
#            an unreplied one.
#   tcp      TCP connections through SNAT (perfgen --mode tcp: SYN, SYN-ACK, ACK, data, FIN
#            both ways, last ACK), TCP timeouts shortened (TIME_WAIT 2 s, ...) so that the
#            closed connections expire during the run; steady rate from 2 x the longest
#            shortened timeout on.
#   syn      a SYN flood (perfgen --mode syn: one SYN per flow, 16 M flows from
#            198.18.0.0/16 x ports, never answered) through SNAT: every SYN is a new
#            connection in SYN_SENT; the SYN_SENT timeout shortened to SYN_TIMEOUT (2 s)
#            so that the unanswered entries expire throughout; steady rate from
#            2 x SYN_TIMEOUT + 1 s on. The SYNs arriving at the far port (perfgen's rx)
#            are the accepted ones.
#   synfull  the same flood into a full table: conntrack.max FULL_MAX, SYN_SENT timeout of
#            an hour; from the second the table is full on, every SYN early-drops an
#            unreplied (SYN_SENT) entry (`early_drop` rate beside `insert`; `drop`: the
#            SYNs refused when no entry could be dropped).
#   synmix   the SYN flood of `synfull` beside established traffic (perfgen --established:
#            EST_FLOWS (1000) UDP flows at EST_RATE (100 k) packets/s, answered by the
#            reflector; the SYNs start FLOOD_AFTER_MS (3 s) later, when those flows are
#            ASSURED): `established` in the generator's JSON gives their received rate alone
#            and during the flood (ratio; target >= 0.9), and the series counts fwd's ASSURED
#            entries every poll (`assured`): early drop must never evict one, so it stays
#            at EST_FLOWS from before the flood to the end.
#   memory   (not in the default set) bytes per conntrack entry: fwd's RSS with a table of
#            MEM_MAX (10 Mi) entries minus its RSS with 64 Ki, per entry (run-table.sh's
#            method, without the fill: the table is written whole at start).
#
# BASE_FWD (a second fwd binary, e.g. main's) runs each scenario too, right before FWD,
# in the same session: quote FWD / BASE_FWD, not the absolute rates. Results:
# perf/results/newconn/<time>-fwd-newconn-<scenario>[-base].json, with `steady` (the series
# and the steady-state rate) beside lib.sh's `ct_rate` (over the whole run).
#
#   perf/run-newconn.sh
#   SCENARIOS="udp full" DURATION=20 BASE_FWD=/work/main/target/release/fwd perf/run-newconn.sh
#
# Results go to perf/results/newconn/ (RESULTS), apart from run-appliance.sh's
# newconn-udp / newconn-full (a 4 s run on a fresh fwd: no entry expires there), which
# report.py reads from perf/results/.
#
# Needs root, hugepages, release fwd and perfgen (lib.sh `require`).
RESULTS=${RESULTS:-$(cd "$(dirname "$0")" && pwd)/results/newconn}
source "$(dirname "$0")/lib.sh"
require
DURATION=${DURATION:-20}
SCENARIOS=${SCENARIOS:-"udp full tcp syn synfull synmix"}
UDP_TIMEOUT=${UDP_TIMEOUT:-2}
SYN_TIMEOUT=${SYN_TIMEOUT:-2}
FULL_MAX=${FULL_MAX:-262144}
POLL_S=${POLL_S:-0.5}
EXTRA_META=$(jq -n --arg p "${FWD_PROCESSOR:-pipeline}" '{fwd_processor: $p}')
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# Polls fwd's conntrack counters (summed over workers) every POLL_S seconds until LIMIT
# seconds have passed, one JSON object a line: t (seconds), insert, early_drop, drop,
# entries; with POLL_ASSURED=1 also assured (the count of ASSURED entries). Run in the
# background:  ct_series OUT LIMIT &
ct_series() {
    local py=python3
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    "$py" - "$RUN_DIR/control.sock" "$1" "$2" "$POLL_S" "${POLL_ASSURED:-0}" <<'PY'
import json, socket, sys, time
sock, out, limit, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
assured = sys.argv[5] == "1"
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sock)
f = s.makefile("rb")
t0 = time.monotonic()
n = 0
with open(out, "w") as o:
    while time.monotonic() - t0 < limit:
        n += 1
        s.sendall(json.dumps({"v": 1, "id": n, "request": {"op": "stats"}}).encode() + b"\n")
        r = json.loads(f.readline())
        ws = [w["ct"] for w in r["result"]["workers"]]
        row = {k: sum(w.get(k, 0) for w in ws) for k in ("insert", "early_drop", "drop", "entries")}
        if assured:
            n += 1
            req = {"op": "conntrack_count", "filter": {"status": "ASSURED"}}
            s.sendall(json.dumps({"v": 1, "id": n, "request": req}).encode() + b"\n")
            row["assured"] = json.loads(f.readline())["result"]["count"]
        row["t"] = round(time.monotonic() - t0, 3)
        o.write(json.dumps(row) + "\n")
        o.flush()
        time.sleep(interval)
PY
}

# The steady-state rate of a series: inserts per second from the first sample at or after
# FROM seconds after the first insert to the first sample with the final insert count
# (sending had stopped).
#   steady SERIES_FILE FROM  -> JSON
steady() {
    jq -s --argjson from "$2" '
        (map(select(.insert > 0)) | .[0].t // null) as $t0
        | if $t0 == null then {rate: null, series: .} else
          (map(select(.t >= $t0 + $from))) as $w
          | (($w | last) as $l | $w | map(select(.insert == $l.insert)) | first) as $fin
          | {from_s: $from, first_insert_t: $t0, start: ($w | first), end: $fin,
             rate: (if ($w | length) < 2 or $fin.t <= ($w | first).t then null
                    else (($fin.insert - ($w | first).insert) / ($fin.t - ($w | first).t)) end),
             early_drop_rate: (if ($w | length) < 2 or $fin.t <= ($w | first).t then null
                    else (($fin.early_drop - ($w | first).early_drop) / ($fin.t - ($w | first).t)) end),
             entries_min: ($w | map(select(.t <= $fin.t) | .entries) | min),
             entries_max: ($w | map(select(.t <= $fin.t) | .entries) | max),
             assured_min: ($w | map(select(.t <= $fin.t) | .assured // empty) | min),
             assured_max: ($w | map(select(.t <= $fin.t) | .assured // empty) | max),
             series: .} end' "$1"
}

# One scenario on one fwd binary: fresh fwd, poll, generator, save.
#   measure NAME FROM_S GENERATOR-ARGS...
measure() {
    local name=$1 from=$2
    shift 2
    start_fwd
    local before
    before=$(fwd_stats)
    ct_series "$RUN_DIR/series.jsonl" $(( DURATION + 6 )) &
    local poll=$!
    run_gen "$@"
    wait "$poll" || echo "run-newconn.sh: the poller failed" >&2
    local st
    st=$(steady "$RUN_DIR/series.jsonl" "$from")
    fsave "$name" "$(jq -c --argjson s "$st" --arg fwd "$FWD" '{steady: $s, fwd_binary: $fwd}' <<< '{}')" "$before"
    jq -r '"  steady (from \(.from_s) s after the first insert): \(.rate // 0 | floor) inserts/s, early_drop \(.early_drop_rate // 0 | floor)/s, entries \(.entries_min)-\(.entries_max)"
        + if .assured_min then ", ASSURED \(.assured_min)-\(.assured_max)" else "" end' <<< "$st"
    if [[ $name == fwd-newconn-udp* ]] && jq -e '(.early_drop_rate // 0) > 0' <<< "$st" > /dev/null; then
        echo "  warning: the table filled (early drop ran): raise CT_MAX_UDP or lower UDP_TIMEOUT" >&2
    fi
    jq -r 'select(.established) | .established
        | "  established flows: \(.alone_pps | floor) pps alone, \(.flood_pps | floor) pps during the flood (\(.ratio * 1000 | round / 1000)x)"' <<< "$GEN"
    cleanup_dut
}

# Runs a scenario on BASE_FWD (if set) and then on FWD.
both() {
    local name=$1
    shift
    if [ -n "${BASE_FWD:-}" ]; then
        local mine=$FWD
        FWD=$BASE_FWD
        require_fwd
        measure "$name-base" "$@"
        FWD=$mine
    fi
    require_fwd
    measure "$name" "$@"
}

if has udp; then
    export CT_MAX=${CT_MAX_UDP:-4194304}
    export CT_TIMEOUTS="    nf_conntrack_udp_timeout: $UDP_TIMEOUT
    nf_conntrack_udp_timeout_stream: $UDP_TIMEOUT"
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    both fwd-newconn-udp $(( 2 * UDP_TIMEOUT + 1 )) --mode udp --flows 16000000 --rate 0 \
        --label "fwd, single-packet UDP flows through SNAT, UDP timeout ${UDP_TIMEOUT} s (expiry throughout)"
fi
if has full; then
    export CT_MAX=$FULL_MAX
    export CT_TIMEOUTS="    nf_conntrack_udp_timeout: 3600
    nf_conntrack_udp_timeout_stream: 3600"
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    # The table is full after FULL_MAX packets (well under a second at these rates).
    both fwd-newconn-full 2 --mode udp --flows 16000000 --rate 0 \
        --label "fwd, single-packet UDP flows through SNAT into a full table ($FULL_MAX): early drop"
fi
if has tcp; then
    export CT_MAX=${CT_MAX_TCP:-2097152}
    export CT_TIMEOUTS="    nf_conntrack_tcp_timeout_syn_sent: 2
    nf_conntrack_tcp_timeout_syn_recv: 2
    nf_conntrack_tcp_timeout_established: 2
    nf_conntrack_tcp_timeout_fin_wait: 2
    nf_conntrack_tcp_timeout_close_wait: 2
    nf_conntrack_tcp_timeout_last_ack: 2
    nf_conntrack_tcp_timeout_time_wait: 2
    nf_conntrack_tcp_timeout_close: 1"
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    both fwd-newconn-tcp 5 --mode tcp --flows 16000000 --dport 80 --rate 0 --concurrency 4096 \
        --label "fwd, TCP connections through SNAT, TCP timeouts 2 s (expiry throughout)"
fi
if has memory; then
    for bin in ${BASE_FWD:-} "$FWD"; do
        FWD_SAVED=$FWD
        FWD=$bin
        require_fwd
        declare -A rss=()
        for cap in 65536 "${MEM_MAX:-10485760}"; do
            CT_MAX=$cap CT_TIMEOUTS="    nf_conntrack_udp_timeout: 3600" \
                write_fwd_config "$PERF_DIR/rulesets/filter.nft" > /dev/null
            start_fwd
            sleep 2
            rss[$cap]=$(dut_rss_kib)
            cleanup_dut
        done
        out=$RESULTS/$(date -u +%Y%m%dT%H%M%SZ)-fwd-newconn-memory.json
        jq -n --arg fwd "$bin" --argjson meta "$(meta_json)" --argjson small "${rss[65536]}" \
            --argjson big "${rss[${MEM_MAX:-10485760}]}" --argjson cap "${MEM_MAX:-10485760}" \
            '{scenario: "fwd-newconn-memory", fwd_binary: $fwd, rss_kib_64ki: $small,
              rss_kib: $big, capacity: $cap,
              bytes_per_entry: ((($big - $small) * 1024 / $cap) * 10 | round / 10)} + $meta' > "$out"
        jq -r '"memory: \(.fwd_binary): \(.bytes_per_entry) B per entry at \(.capacity) entries"' "$out"
        FWD=$FWD_SAVED
    done
fi
if has syn; then
    export CT_MAX=${CT_MAX_SYN:-2097152}
    export CT_TIMEOUTS="    nf_conntrack_tcp_timeout_syn_sent: $SYN_TIMEOUT"
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    both fwd-newconn-syn $(( 2 * SYN_TIMEOUT + 1 )) --mode syn --flows 16000000 --dport 80 --rate 0 \
        --label "fwd, SYN flood through SNAT, SYN_SENT timeout ${SYN_TIMEOUT} s (expiry throughout)"
fi
if has synfull; then
    export CT_MAX=$FULL_MAX
    export CT_TIMEOUTS="    nf_conntrack_tcp_timeout_syn_sent: 3600"
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    both fwd-newconn-synfull 2 --mode syn --flows 16000000 --dport 80 --rate 0 \
        --label "fwd, SYN flood through SNAT into a full table ($FULL_MAX): early drop"
fi
if has synmix; then
    export CT_MAX=$FULL_MAX
    export CT_TIMEOUTS="    nf_conntrack_tcp_timeout_syn_sent: 3600"
    write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
    # From the flood's start (FLOOD_AFTER_MS after the first insert) on.
    POLL_ASSURED=1 both fwd-newconn-synmix $(( ${FLOOD_AFTER_MS:-3000} / 1000 + 1 )) --mode syn \
        --flows 16000000 --dport 80 --rate 0 --established "${EST_FLOWS:-1000}" \
        --established-rate "${EST_RATE:-100000}" --flood-after-ms "${FLOOD_AFTER_MS:-3000}" --reflect \
        --label "fwd, SYN flood into a full table ($FULL_MAX) beside ${EST_FLOWS:-1000} established UDP flows"
fi

