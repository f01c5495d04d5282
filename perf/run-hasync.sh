#!/usr/bin/env bash
# State-sync throughput (issue 22, docs/ha.md "Throughput"): connection updates per second
# through primary fwd -> fwmgmt --ha -> UDP -> fwmgmt --ha -> backup fwd, and the primary's
# forwarding rate with sync on against sync off, in the same run.
#
#   primary fwd   lan/wan on memif to perfgen (lib.sh), perf/rulesets/router.nft (SNAT),
#                 conntrack.max CT_MAX (2 Mi), UDP timeouts of an hour (no expiry in the run)
#   backup fwd    two net_null ports with the same addresses, no hugepages, its own
#                 control socket; runs in both passes (it shares BACKUP_CORES with the rest)
#   daemons       two `fwmgmt --ha` in a namespace hasync-<pid> of our own, sync over its
#                 loopback (198.18.9.1:7400 <-> 198.18.9.2:7400), primary and backup role
#
# The churn is perfgen's single-packet UDP flows (--mode udp, 16 M tuples, as
# run-newconn.sh's `udp`): every packet is a new connection, so every packet is one NEW
# event, i.e. one connection update to sync. Two passes on fresh fwds, DURATION s each:
#   off  no daemon (no subscriber: the workers record no events at all)
#   on   the two daemons: the primary's subscribes to fwd's binary event stream
#        (subscribe_records) and sends the records; the backup's applies them to the
#        backup's external cache (ha_apply_records).
# Per pass: fwd's conntrack inserts/s (lib.sh ct_rate) and perfgen's forwarded rx rate;
# in `on` the backup's cache size and `applied` counter polled every POLL_S, and the sync
# rate = applied updates / (time of the last change - time of the first) from the
# series, with both daemons' counters (events, events lost, records sent and lost,
# apply_lost) and the primary workers' events_dropped (full event rings).
#
# CPU per thread (perf/cpu_threads.py, /proc's user+system time) of both fwds and both
# daemons from just before perfgen starts to the end of the poll (the sync drained), in
# `cpu`: the per-update cost of each stage is its seconds over the updates applied.
#
#   flock -x /tmp/cpu.lock perf/run-hasync.sh
#   DURATION=3 perf/run-hasync.sh
#   BASE_FWD=/tmp/fwd-main BASE_FWMGMT=/tmp/fwmgmt-main perf/run-hasync.sh
#
# BASE_FWD and BASE_FWMGMT (both or neither): the baseline build's binaries, run first
# (off and on) in the same session; every result names its build (`build`: base or new).
# HA_DATAGRAM: the new build's daemons' `datagram_bytes` (empty: their default).
# BASE_HA_DATAGRAM: the baseline's (default empty: its default; a baseline fwmgmt older
# than the `datagram_bytes` setting refuses the field, one that has it can be given the
# same datagrams as the new build for a like-for-like run).
# PASSES: the passes to run (default "off on"). PERF_RECORD_SYNC=FILE: `perf record -a`
# (every CPU, 499 Hz) over each `on` pass's window into FILE.<build> (symbols of where
# the sync's CPU goes: perf report -i FILE.new --sort comm,sym).
# DAEMON_CORES: a CPU list the daemons are pinned to (taskset -c; empty: unpinned, the
# scheduler places them on either core).
#
# Results: perf/results/hasync/<time>-fwd-hasync-{base,new}-{off,on}.json. Needs root, hugepages,
# release fwd, fwmgmt and perfgen (cargo build --release -p dataplane --bin fwd -p mgmt
# --bin fwmgmt -p perfgen). Bounded: perfgen stops after DURATION, every poll has a limit,
# everything started here is stopped by PID on exit.
RESULTS=${RESULTS:-$(cd "$(dirname "$0")" && pwd)/results/hasync}
source "$(dirname "$0")/lib.sh"
require
require_fwd
DURATION=${DURATION:-3}
POLL_S=${POLL_S:-0.25}
FWMGMT=${FWMGMT:-$REPO/target/release/fwmgmt}
BACKUP_MAIN=${BACKUP_MAIN:-0}
BACKUP_WORKER=${BACKUP_WORKER:-1}
HA_DATAGRAM=${HA_DATAGRAM:-}
BASE_HA_DATAGRAM=${BASE_HA_DATAGRAM:-}
DAEMON_CORES=${DAEMON_CORES:-}
[ -x "$FWMGMT" ] || die "$FWMGMT missing: cargo build --release -p mgmt --bin fwmgmt"
if [ -n "${BASE_FWD:-}${BASE_FWMGMT:-}" ]; then
    [ -x "${BASE_FWD:-}" ] && [ -x "${BASE_FWMGMT:-}" ] || die "BASE_FWD and BASE_FWMGMT must both name executables"
fi
NEW_FWD=$FWD
NEW_FWMGMT=$FWMGMT
mkdir -p "$RESULTS"
NS=hasync-$$
BACKUP_PID=""
MGMT_PIDS=()
TOKEN_FILE=$RUN_DIR/token
echo "hasync-bench-$$" > "$TOKEN_FILE"

stop_sync() {
    local p
    for p in "${MGMT_PIDS[@]}" $BACKUP_PID; do
        kill "$p" 2> /dev/null || true
    done
    for p in "${MGMT_PIDS[@]}" $BACKUP_PID; do
        wait "$p" 2> /dev/null || true
    done
    MGMT_PIDS=()
    BACKUP_PID=""
}
finish() {
    stop_sync
    cleanup_dut
    ip netns del "$NS" 2> /dev/null || true
    [ -n "${KEEP_RUN_DIR:-}" ] || rm -rf "$RUN_DIR"
}
trap finish EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 198.18.9.1/32 dev lo
ip -n "$NS" addr add 198.18.9.2/32 dev lo

# The backup: the primary's config with net_null ports, no hugepages, its own prefix,
# socket and state.
start_backup() {
    mkdir -p "$RUN_DIR/bstate"
    sed -e "s|main_core: .*|main_core: $BACKUP_MAIN|" \
        -e "s|file_prefix: .*|file_prefix: perf-backup-$$\n  hugepages: false|" \
        -e "s|memory_mb: .*|memory_mb: 512|" \
        -e 's|device: "net_memif0[^"]*"|device: "net_null0"|' \
        -e 's|device: "net_memif1[^"]*"|device: "net_null1"|' \
        -e "s|cores: \[.*\]|cores: [$BACKUP_WORKER]|" \
        -e "s|control_socket: .*|control_socket: $RUN_DIR/backup.sock|" \
        -e "s|state_dir: .*|state_dir: $RUN_DIR/bstate|" \
        "$RUN_DIR/fwd.yaml" > "$RUN_DIR/backup.yaml"
    rm -f "$RUN_DIR/backup.sock"
    "$FWD" --config "$RUN_DIR/backup.yaml" > "$RUN_DIR/backup.log" 2>&1 &
    BACKUP_PID=$!
    for _ in $(seq 600); do
        [ -S "$RUN_DIR/backup.sock" ] && return 0
        kill -0 "$BACKUP_PID" 2> /dev/null || { tail -20 "$RUN_DIR/backup.log" >&2; die "backup fwd exited"; }
        sleep 0.1
    done
    die "backup fwd did not open its control socket in 60 s"
}

# The daemons' datagram_bytes for a build (empty: their default).
datagram_of() {
    if [ "$1" = new ]; then echo "$HA_DATAGRAM"; else echo "$BASE_HA_DATAGRAM"; fi
}

# fwmgmt --ha ROLE BIND PEER SOCKET PORT (the API on the namespace's loopback).
start_mgmt() {
    local role=$1 bind=$2 peer=$3 sock=$4 port=$5 more="" pin=() dg
    dg=$(datagram_of "$build")
    [ -n "$dg" ] && more=", \"datagram_bytes\": $dg"
    [ -n "$DAEMON_CORES" ] && pin=(taskset -c "$DAEMON_CORES")
    printf '{"role": "%s", "bind": "%s:7400", "peer": "%s:7400", "queue": 65536, "ack_every": 64, "alive_ms": 100%s}\n' \
        "$role" "$bind" "$peer" "$more" > "$RUN_DIR/ha-$role.json"
    ip netns exec "$NS" "${pin[@]}" "$FWMGMT" --listen "127.0.0.1:$port" --control-socket "$sock" \
        --token-file "$TOKEN_FILE" --ha "$RUN_DIR/ha-$role.json" > "$RUN_DIR/fwmgmt-$role.log" 2>&1 &
    MGMT_PIDS+=($!)
}

# GET /api/v1/ha of the daemon on PORT (null if it does not answer).
ha_view() {
    ip netns exec "$NS" curl -s -m 5 -H "Authorization: Bearer $(cat "$TOKEN_FILE")" \
        "http://127.0.0.1:$1/api/v1/ha" || echo null
}

# Polls the backup's ha_status every POLL_S until LIMIT seconds: t, applied, cache.
ha_series() {
    python3 - "$RUN_DIR/backup.sock" "$1" "$2" "$POLL_S" <<'PY'
import json, socket, sys, time
sock, out, limit, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sock)
f = s.makefile("rb")
t0 = time.monotonic()
n = 0
with open(out, "w") as o:
    while time.monotonic() - t0 < limit:
        n += 1
        s.sendall(json.dumps({"v": 1, "id": n, "request": {"op": "ha_status"}}).encode() + b"\n")
        r = json.loads(f.readline())["result"]
        o.write(json.dumps({"t": round(time.monotonic() - t0, 3), "applied": r["applied"],
                            "cache": r["cache_entries"]}) + "\n")
        o.flush()
        time.sleep(interval)
PY
}

# The sync rate of a series: applied updates from the first sample with any to the first
# with the final count, per second.
sync_rate() {
    jq -s '(map(select(.applied > 0)) | first) as $a | (last) as $z
        | (map(select(.applied == $z.applied)) | first) as $b
        | {first: $a, last: $b, final_applied: $z.applied, final_cache: $z.cache,
           rate: (if $a == null or $b.t <= $a.t then null
                  else (($b.applied - $a.applied) / ($b.t - $a.t)) end), series: .}' "$1"
}

export CT_MAX=${CT_MAX:-2097152}
export CT_TIMEOUTS="    nf_conntrack_udp_timeout: 3600
    nf_conntrack_udp_timeout_stream: 3600"
write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
GEN_ARGS=(--mode udp --flows 16000000 --rate 0)

builds=(new)
[ -n "${BASE_FWD:-}" ] && builds=(base new)
for build in "${builds[@]}"; do
for pass in ${PASSES:-off on}; do
    if [ "$build" = base ]; then FWD=$BASE_FWD FWMGMT=$BASE_FWMGMT; else FWD=$NEW_FWD FWMGMT=$NEW_FWMGMT; fi
    start_fwd
    start_backup
    if [ "$pass" = on ]; then
        start_mgmt primary 198.18.9.1 198.18.9.2 "$RUN_DIR/control.sock" 9481
        start_mgmt backup 198.18.9.2 198.18.9.1 "$RUN_DIR/backup.sock" 9482
        # Both up and subscribed (the primary's daemon subscribes at start).
        for _ in $(seq 100); do
            [ "$(ha_view 9481 | jq -r '.sync.peer.up // false')" = true ] && [ "$(ha_view 9482 | jq -r '.sync.peer.up // false')" = true ] && break
            sleep 0.1
        done
        ha_series "$RUN_DIR/ha.jsonl" $(( DURATION + 8 )) &
        poll=$!
    fi
    before=$(fwd_stats)
    procs=(primary_fwd="$DUT_PID" backup_fwd="$BACKUP_PID" primary_daemon="${MGMT_PIDS[0]:-}" backup_daemon="${MGMT_PIDS[1]:-}")
    "$PERF_DIR/cpu_threads.py" snap "$RUN_DIR/cpu0.json" "${procs[@]}"
    prec=""
    if [ "$pass" = on ] && [ -n "${PERF_RECORD_SYNC:-}" ]; then
        perf record -a -F 499 -o "$PERF_RECORD_SYNC.$build" > "$RUN_DIR/perf-record.log" 2>&1 &
        prec=$!
    fi
    run_gen "${GEN_ARGS[@]}" --label "fwd ($build), single-packet UDP flows through SNAT, sync $pass"
    extra='{}'
    if [ "$pass" = on ]; then
        wait "$poll" || echo "run-hasync.sh: the poller failed" >&2
    fi
    "$PERF_DIR/cpu_threads.py" snap "$RUN_DIR/cpu1.json" "${procs[@]}"
    if [ -n "$prec" ]; then
        kill -INT "$prec" 2> /dev/null || true
        wait "$prec" 2> /dev/null || true
    fi
    cpu=$("$PERF_DIR/cpu_threads.py" diff "$RUN_DIR/cpu0.json" "$RUN_DIR/cpu1.json")
    echo "  cpu seconds ($build, sync $pass): $cpu"
    if [ "$pass" = on ]; then
        extra=$(jq -n --argjson s "$(sync_rate "$RUN_DIR/ha.jsonl")" --argjson p "$(ha_view 9481)" \
            --argjson b "$(ha_view 9482)" --argjson st "$(fwd_stats)" \
            '{sync: $s, primary_daemon: $p.sync, backup_daemon: $b.sync, backup_fwd: $b.fwd,
              events_dropped: ($st.workers | map(.events_dropped) | add)}')
        jq -r '"  sync: \(.sync.rate // 0 | floor) updates/s applied on the backup (\(.sync.final_applied) in all, cache \(.sync.final_cache)); primary daemon: events \(.primary_daemon.counters.events), lost \(.primary_daemon.counters.events_lost), records sent \(.primary_daemon.counters.sent_records), lost \(.primary_daemon.counters.lost_records); backup daemon: apply_lost \(.backup_daemon.counters.apply_lost); fwd events_dropped \(.events_dropped)"' <<< "$extra"
    fi
    fsave "fwd-hasync-$build-$pass" "$(jq -c --arg fwd "$FWD" --arg mgmt "$FWMGMT" --arg pass "$pass" \
        --arg build "$build" --argjson cpu "$cpu" --arg dg "$(datagram_of "$build")" --arg pin "$DAEMON_CORES" \
        '. + {fwd_binary: $fwd, fwmgmt_binary: $mgmt, build: $build, sync: (.sync // null), pass: $pass,
              cpu: $cpu, datagram_bytes: $dg, daemon_cores: $pin}' <<< "$extra")" "$before"
    stop_sync
    cleanup_dut
done
done
