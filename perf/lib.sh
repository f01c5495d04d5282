# Shared helpers for perf/run-*.sh (sourced, not run). Topology, on one host:
#
#   perfgen tx port (memif client) --a.sock--> DUT port 0 (memif server)
#                                               DUT (testpmd io | fwd)
#   perfgen rx port (memif client) <--b.sock-- DUT port 1 (memif server)
#
# perfgen sends on its tx port and counts on its rx port (UDP), or plays TCP client and
# server (reflector) on the two ports. Throughput runs into a null sink (run-peers.sh) use
# only the tx port: the DUT forwards to net_null (testpmd io, OVS) or to a wan port that
# nobody drains (fwd; see run-peers.sh), so the generator's core only sends. The DUT's forwarding lcore and the generator get
# their own cores (CORE_DUT, CORE_GEN); the DUT's main lcore shares the generator's core
# (it only prints statistics).
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$PERF_DIR/.." && pwd)
RESULTS=${RESULTS:-$PERF_DIR/results}
PERFGEN=${PERFGEN:-$REPO/target/release/perfgen}
TESTPMD=${TESTPMD:-dpdk-testpmd}
CORE_GEN=${CORE_GEN:-0}
CORE_DUT=${CORE_DUT:-1}
# Several queues (scaling): QUEUES queue pairs per port, perfgen lcores GEN_CORES (a list
# for EAL -l, QUEUES of them), DUT forwarding cores DUT_CORES (comma list, QUEUES of them),
# DUT main lcore DUT_MAIN.
QUEUES=${QUEUES:-1}
GEN_CORES=${GEN_CORES:-$CORE_GEN}
DUT_CORES=${DUT_CORES:-$CORE_DUT}
DUT_MAIN=${DUT_MAIN:-$CORE_GEN}
DURATION=${DURATION:-5}
MEM_MB=${MEM_MB:-256}
# perfgen sleeps this long after its links are up before sending: the DUT's memif end
# (served by a control thread on the generator's core) may come up later, and frames sent
# before it does are lost (a 1 000-packet warm-up was lost whole without it).
SETTLE_MS=${SETTLE_MS:-300}
RUN_DIR=$(mktemp -d /tmp/perf-run.XXXXXX)
# One id per measuring session (run-quick.sh / run-appliance.sh export it to the scripts
# they call): report.py divides fwd by the testpmd io baseline of the same session only.
export PERF_RUN_ID=${PERF_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}
# The command line of the outermost script, with the settings it read, for the results.
if [ -z "${PERF_INVOCATION:-}" ]; then
    PERF_INVOCATION=""
    for v in DURATION FLOWS SCENARIOS RULE_COUNTS BASELINE UDP2 UDP1518 LATENCY TCP REPEATS TABLE_SIZES \
        PEERS REPEAT SIZE ORDER FWD_EGRESS FWD_WARM; do
        [ -n "${!v:-}" ] && PERF_INVOCATION+="$v=\"${!v}\" "
    done
    export PERF_INVOCATION+="perf/$(basename "$0")"
fi
# memif sockets (abstract namespace in DPDK 22.11; the path only names them).
SOCK_A=$RUN_DIR/a.sock
SOCK_B=$RUN_DIR/b.sock
# Fixed MACs so the appliance can have static neighbours for the generator.
GEN_MAC_A=02:00:00:00:01:01
GEN_MAC_B=02:00:00:00:02:01
DUT_MAC_A=02:00:00:00:01:fe
DUT_MAC_B=02:00:00:00:02:fe
DUT_PID=""
DUT_SIG=INT # testpmd prints its statistics and stops on SIGINT; fwd stops on SIGTERM
DUT_KIND="" # testpmd, fwd or ovs: what start_* started last

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

cleanup_dut() {
    if [ -n "$DUT_PID" ] && kill -0 "$DUT_PID" 2> /dev/null; then
        kill -"$DUT_SIG" "$DUT_PID" 2> /dev/null || true
        for _ in $(seq 50); do kill -0 "$DUT_PID" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$DUT_PID" 2> /dev/null || true
    fi
    DUT_PID=""
}
trap 'cleanup_dut; [ -n "${KEEP_RUN_DIR:-}" ] || rm -rf "$RUN_DIR"' EXIT

require() {
    [ "$(id -u)" -eq 0 ] || die "run as root (DPDK needs hugepages)"
    [ -x "$PERFGEN" ] || die "$PERFGEN missing: cargo build --release -p perfgen"
    command -v jq > /dev/null || die "jq missing (apt-get install jq)"
    local free
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
    # Two DPDK processes of MEM_MB MiB each, in 2 MiB pages, plus slack.
    local need=$(( MEM_MB + 64 ))
    [ "$free" -ge "$need" ] || die "only $free free 2 MiB hugepages; need $need (deploy/dev/setup-host.sh)"
    mkdir -p "$RESULTS"
}

# Machine, DPDK and commit, as JSON.
meta_json() {
    local cpu commit dirty
    cpu=$(lscpu 2> /dev/null | sed -n 's/^Model name: *//p' | head -1)
    commit=$(git -C "$REPO" rev-parse HEAD 2> /dev/null || echo unknown)
    dirty=$(git -C "$REPO" status --porcelain --untracked-files=no 2> /dev/null | grep -q . && echo true || echo false)
    jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg cpu "$cpu" --arg nproc "$(nproc)" \
        --arg kernel "$(uname -r)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg mem "$(awk '/MemTotal/ {print $2}' /proc/meminfo)" \
        --arg dpdk "$(pkg-config --modversion libdpdk 2> /dev/null || echo unknown)" \
        --arg commit "$commit" --argjson dirty "$dirty" --arg gen "$GEN_CORES" --arg dut "$DUT_CORES" \
        '{date: $date, machine: {cpu: $cpu, cores: ($nproc | tonumber), kernel: $kernel,
          mem_kib: ($mem | tonumber), loadavg: $load}, dpdk: $dpdk, commit: $commit, dirty: $dirty,
          cores: {generator: $gen, dut_workers: $dut, queues: '"$QUEUES"'}}'
}

# MEMIF_ZC=1: the DUT's memif ports are zero-copy clients (DPDK 22.11 net_memif
# `zero-copy=yes`: the client's own mbufs are the shared buffers, so the DUT's PMD copies
# nothing; the generator, now the memif server, copies into them) and the generator is
# the server. DPDK's zero-copy needs the DUT's EAL in `--single-file-segments` mode
# ("memif_set_zc(): Zero-copy doesn't support multi-file segments." otherwise), and a
# DPDK 22.11 memif client connects once, when its port starts, and never again after the
# server leaves: so the generator starts first (run_gen_zc), and each measured run has a
# DUT of its own, started after it (fwd's warm-up happens inside that one generator run:
# perfgen --warm-up). Default (unset or 0): the DUT is the server, copying, as before.
MEMIF_ZC=${MEMIF_ZC:-0}

# One memif port of the DUT: dut_memif INDEX SOCKET MAC.
dut_memif() {
    if [ "$MEMIF_ZC" = 1 ]; then
        echo "net_memif$1,role=client,id=0,socket=$2,mac=$3,zero-copy=yes"
    else
        echo "net_memif$1,role=server,id=0,socket=$2,mac=$3"
    fi
}

# testpmd's EAL memory options: hugepage files unlinked at once; zero-copy needs single-file
# segments, which EAL refuses beside --huge-unlink ("Option --single-file-segments is not
# compatible with --huge-unlink"): --in-memory then (memfd segments, as fwd runs).
dut_eal_mem() { [ "$MEMIF_ZC" = 1 ] && echo "--in-memory --single-file-segments" || echo "--huge-unlink"; }

# The DUT's EAL devices: two memif ports (servers, or zero-copy clients) with fixed MACs.
dut_vdevs() {
    echo "--vdev=$(dut_memif 0 "$SOCK_A" "$DUT_MAC_A") --vdev=$(dut_memif 1 "$SOCK_B" "$DUT_MAC_B")"
}

# Starts testpmd io on CORE_DUT. Sets DUT_CMD. Without argument it forwards between the
# two memif ports. `start_testpmd null`: from the memif port (a.sock) to a net_null port
# that takes every frame and frees it (`no-rx=1`: nothing comes back), with
# --record-core-cycles: at exit it prints its busy cycles per packet (cycles of polls that
# received something / packets received), read by testpmd_counters.
start_testpmd() {
    local vdevs extra=""
    vdevs=$(dut_vdevs)
    if [ "${1:-}" = null ]; then
        vdevs="--vdev=$(dut_memif 0 "$SOCK_A" "$DUT_MAC_A") --vdev=net_null0,no-rx=1"
        extra="--record-core-cycles"
    fi
    DUT_CMD="$TESTPMD -l $DUT_MAIN,$DUT_CORES --main-lcore $DUT_MAIN --file-prefix perf-dut-$$ $(dut_eal_mem) --no-pci -m $MEM_MB $vdevs -- --forward-mode=io --nb-cores=$QUEUES --rxq=$QUEUES --txq=$QUEUES --burst=32 --rxd=1024 --txd=1024 --total-num-mbufs=16384 $extra --auto-start --stats-period 1"
    # shellcheck disable=SC2086
    $DUT_CMD > "$RUN_DIR/dut.log" 2>&1 &
    DUT_PID=$!
    DUT_SIG=INT
    DUT_KIND=testpmd
    for _ in $(seq 300); do
        grep -q "io packet forwarding - ports" "$RUN_DIR/dut.log" 2> /dev/null && return 0
        kill -0 "$DUT_PID" 2> /dev/null || { tail -20 "$RUN_DIR/dut.log" >&2; die "testpmd exited"; }
        sleep 0.1
    done
    die "testpmd did not start in 30 s (log: $RUN_DIR/dut.log)"
}

# What a stopped testpmd (start_testpmd null) printed at exit, as JSON: the frames it sent
# out of port 1 (the null sink), its busy cycles, and busy cycles per frame. Its own
# cycles/packet line divides by the memif port's RX count, which memif resets when the
# generator disconnects (before testpmd stops), so it is recomputed here from the sink's
# count (io forwards every frame it receives to it).
testpmd_counters() {
    python3 - "$RUN_DIR/dut.log" <<'PY'
import json, re, sys
log = open(sys.argv[1], errors="replace").read()
out = {"source": "testpmd forward statistics at exit (--record-core-cycles)"}
m = re.findall(r"Forward statistics for port 1 .*?TX-packets: (\d+)", log, re.S)
if m:
    out["egress_packets"] = int(m[-1])
c = re.findall(r"CPU cycles/packet=\S+ \(total cycles=(\d+) ", log)
if c:
    out["busy_cycles"] = int(c[-1])
    if out.get("egress_packets"):
        out["cycles_per_packet"] = out["busy_cycles"] / out["egress_packets"]
print(json.dumps(out))
PY
}

# Runs perfgen with extra arguments. Sets GEN (its JSON) and GEN_CMD (shell-quoted); with
# fwd as the DUT also FWD_WINDOW (fwd_window: fwd's own packets and busy cycles per packet
# over the run), and PERF_JSON (perf stat on the DUT's forwarding thread, when PERF_STAT_DUT
# is 1 and the machine counts cycles; else why not). Not in a subshell: the variables must
# survive.
run_gen() {
    # GEN_MEMIF_ARGS: further devargs of the generator's memif clients, which size the
    # path's rings for both ends (e.g. rsize=8: 256 slots instead of memif's 1 024).
    local margs=${GEN_MEMIF_ARGS:+,$GEN_MEMIF_ARGS} role=client ZC_LINK_WAIT=()
    # Zero-copy: the generator serves, and waits for a DUT started after it.
    [ "$MEMIF_ZC" = 1 ] && role=server ZC_LINK_WAIT=(--link-timeout 120)
    local vdevs=("--vdev=net_memif0,role=$role,id=0,socket=$SOCK_A,mac=$GEN_MAC_A$margs")
    # --tx-only: the rx port is not opened, so the DUT's second memif stays unconnected
    # (unless --warm-up, which uses it before the measured part).
    [[ " $* " == *" --tx-only "* && " $* " != *" --warm-up "* ]] || vdevs+=("--vdev=net_memif1,role=$role,id=0,socket=$SOCK_B,mac=$GEN_MAC_B$margs")
    # GEN_VDEVS replaces the ports (e.g. a net_null of perfgen's own: no DUT at all).
    # shellcheck disable=SC2206
    [ -n "${GEN_VDEVS:-}" ] && vdevs=($GEN_VDEVS)
    local cmd=("$PERFGEN" --json "$RUN_DIR/gen.json" --duration "$DURATION" --tx-mac "$DUT_MAC_A"
        --rx-mac "$DUT_MAC_B" --queues "$QUEUES" --settle-ms "$SETTLE_MS" "$@" ${ZC_LINK_WAIT[@]+"${ZC_LINK_WAIT[@]}"} -- -l "$GEN_CORES" --file-prefix perf-gen-$$ --huge-unlink --no-pci -m "$MEM_MB"
        "${vdevs[@]}")
    GEN_CMD=$(printf '%q ' "${cmd[@]}")
    GEN_CMD=${GEN_CMD% }
    local before="" window=""
    [ "$MEMIF_ZC" = 1 ] || [ "$DUT_KIND" != fwd ] || before=$(fwd_stats)
    [ "$MEMIF_ZC" = 1 ] || [ "${PERF_STAT_DUT:-0}" != 1 ] || perf_stat_probe
    PERF_JSON=$(jq -n --arg s "${PERF_STAT_STATE:-not asked (PERF_STAT_DUT=0)}" '{state: $s}')
    # Bounded: perfgen stops by itself after DURATION; the timeout is a safety net.
    timeout $(( ${DURATION%.*} + 120 )) "${cmd[@]}" > "$RUN_DIR/gen.log" 2>&1 &
    local gen_pid=$!
    if [ "$MEMIF_ZC" = 1 ]; then
        # The generator is the memif server: once its socket listens, the DUT
        # (ZC_START_DUT, e.g. "start_testpmd null") starts and connects as the client;
        # fwd's counters are read in the pause perfgen makes between its warm-up and
        # the measured sending (--warm-up: SETTLE_MS).
        local _
        for _ in $(seq 300); do
            grep -q "@$SOCK_A" /proc/net/unix && break
            kill -0 "$gen_pid" 2> /dev/null || break
            sleep 0.1
        done
        $ZC_START_DUT
        [ "${PERF_STAT_DUT:-0}" = 1 ] && perf_stat_probe
        if [ "$DUT_KIND" = fwd ]; then
            for _ in $(seq 1200); do
                grep -q "perfgen: warmed up" "$RUN_DIR/gen.log" 2> /dev/null && break
                kill -0 "$gen_pid" 2> /dev/null || break
                sleep 0.05
            done
            before=$(fwd_stats)
        fi
    fi
    if [ "${PERF_STAT_DUT:-0}" = 1 ] && [ "$PERF_STAT_STATE" = ok ]; then
        window=$(perf_stat_window)
    elif [ -n "${PERF_RECORD_DUT:-}" ]; then
        perf_record_window
    fi
    wait "$gen_pid" || { tail -20 "$RUN_DIR/gen.log" >&2; die "perfgen failed: $GEN_CMD"; }
    GEN=$(cat "$RUN_DIR/gen.json")
    [ -n "$window" ] && PERF_JSON=$(perf_stat_json "$window")
    FWD_WINDOW=null
    [ -n "$before" ] && FWD_WINDOW=$(fwd_window "$before" "$(fwd_stats)")
    return 0
}

# Writes one result file: scenario name, meta, commands, generator JSON.
#   save NAME DUT GEN_JSON [EXTRA_JSON]
save() {
    local name=$1 dut=$2 gen=$3 extra=${4:-'{}'} out
    out=$RESULTS/$(date -u +%Y%m%dT%H%M%SZ)-$name.json
    jq -n --arg scenario "$name" --arg dut "$dut" --arg dut_cmd "$DUT_CMD" --arg gen_cmd "$GEN_CMD" \
        --argjson meta "$(meta_json)" --argjson gen "$gen" --argjson extra "$extra" \
        --argjson more "${EXTRA_META:-"{}"}" \
        --arg run_id "$PERF_RUN_ID" --arg invocation "$PERF_INVOCATION" \
        '{scenario: $scenario, dut: $dut, run_id: $run_id, invocation: $invocation} + $meta + {commands: {dut: $dut_cmd, generator: $gen_cmd},
          generator: $gen} + $extra + $more' > "$out"
    printf '%-28s %-10s flows=%-8s tx=%6.2f Mpps rx=%6.2f Mpps loss=%.4f%%%s\n' "$name" "$dut" \
        "$(jq -r .args.flows <<< "$gen")" "$(jq -r '.tx_pps / 1e6' <<< "$gen")" \
        "$(jq -r '.rx_pps / 1e6' <<< "$gen")" "$(jq -r '.loss_ratio * 100' <<< "$gen")" \
        "$(jq -r 'if .tcp then "  conns/s=\(.tcp.conns_per_s | floor)" else "" end' <<< "$gen")"
    echo "  -> $out"
}

# --- fwd as the DUT ---------------------------------------------------------------
FWD=${FWD:-$REPO/target/release/fwd}

# Dies unless a release fwd that implements `check` is built.
require_fwd() {
    [ -x "$FWD" ] || die "$FWD missing: cargo build --release -p dataplane --bin fwd"
    printf 'ports: []\nbogus: 1\n' > "$RUN_DIR/bad.yaml"
    if "$FWD" check "$RUN_DIR/bad.yaml" > /dev/null 2>&1; then
        die "$FWD accepts an invalid config: this fwd does not implement 'check' (not the daemon yet?)"
    fi
}

# fwd config (memif cannot change its MAC at run time: the MAC is a devarg): lan = memif0 (generator clients behind 192.0.2.2), wan = memif1 (servers
# behind 203.0.113.2; FWD_WAN_DEVICE replaces it, e.g. net_null0,no-rx=1); static
# neighbours so nothing waits for ARP.
write_fwd_config() { # write_fwd_config RULESET
    local zc_eal=""
    [ "$MEMIF_ZC" = 1 ] && zc_eal='  extra_args: ["--single-file-segments"]'$'\n'
    cp "$1" "$RUN_DIR/ruleset.nft"
    mkdir -p "$RUN_DIR/state"
    cat > "$RUN_DIR/fwd.yaml" <<YAML
eal:
  main_core: $DUT_MAIN
  file_prefix: perf-dut-$$
  in_memory: true
  memory_mb: $(( MEM_MB * 4 ))
${zc_eal}${FWD_MBUFS:+  mbufs: $FWD_MBUFS
}ports:
  - name: lan
    device: "$(dut_memif 0 "$SOCK_A" "$DUT_MAC_A")"
    addresses: ["192.0.2.1/24"]
  - name: wan
    device: "${FWD_WAN_DEVICE:-$(dut_memif 1 "$SOCK_B" "$DUT_MAC_B")}"
    addresses: ["203.0.113.1/24"]
workers:
  cores: [$DUT_CORES]
routes:
  - prefix: 198.18.0.0/16
    via: 192.0.2.2
  - prefix: 198.19.0.0/16
    via: 203.0.113.2
neighbors:
  - {address: 192.0.2.2, mac: "$GEN_MAC_A", port: lan}
  - {address: 203.0.113.2, mac: "$GEN_MAC_B", port: wan}
conntrack:
  max: ${CT_MAX:-2097152}
${CT_TIMEOUTS:+  timeouts:
$CT_TIMEOUTS
}ruleset: ruleset.nft
control_socket: $RUN_DIR/control.sock
state_dir: $RUN_DIR/state
YAML
    "$FWD" check "$RUN_DIR/fwd.yaml" || die "generated config refused (see above): $RUN_DIR/fwd.yaml"
}

# One control request to fwd (docs/control-protocol.md): fwd_req '{"op":"stats"}' prints
# the result as JSON; null when the socket does not answer in 5 s (or answers an error).
fwd_req() {
    local py=python3
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    "$py" - "$RUN_DIR/control.sock" "$1" <<'PY' 2> /dev/null || echo null
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
req = {"v": 1, "id": 1, "request": json.loads(sys.argv[2])}
s.sendall(json.dumps(req).encode() + b"\n")
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
r = json.loads(buf)
print(json.dumps(r.get("result")))
PY
}

# fwd's counters (control op "stats": ports, workers, drops by reason, conntrack), as JSON;
# null when the socket does not answer. Cumulative since fwd started.
fwd_stats() { fwd_req '{"op":"stats"}'; }

# What fwd's workers did between two stats snapshots, as JSON: packets received,
# forwarded (routed out, whether or not the egress took them), taken by the egress ports,
# refused by them, busy cycles and busy cycles per received packet (the worker's own
# measure: cycles of loop iterations that had work, PMD included).
#   fwd_window BEFORE AFTER
fwd_window() {
    jq -n --argjson b "$1" --argjson a "$2" '
        def tot($s; f): [$s.workers[] | f // 0] | add;
        if $a == null or $b == null then null else
        {rx_packets: (tot($a; .rx_packets) - tot($b; .rx_packets)),
         forwarded: (tot($a; .forwarded) - tot($b; .forwarded)),
         egress_packets: (tot($a; .tx_packets) - tot($b; .tx_packets)),
         tx_refused: (tot($a; .drops.tx_refused) - tot($b; .drops.tx_refused)),
         busy_cycles: (tot($a; .busy_cycles) - tot($b; .busy_cycles)),
         source: "fwd control op stats before and after"}
        | .cycles_per_packet = (if .rx_packets > 0 then .busy_cycles / .rx_packets else null end)
        end'
}

# Conntrack counters summed over fwd's workers, from a stats JSON (null stays null).
ct_totals() {
    jq -c 'if . == null then null else [.workers[].ct] as $w
        | reduce ("insert", "found", "early_drop", "drop", "insert_failed", "invalid", "entries", "max") as $k
            ({}; .[$k] = ($w | map(.[$k] // 0) | add)) end' <<< "$1"
}

# The conntrack work between two stats snapshots over SECONDS (perfgen's send time), as
# JSON: entries inserted (new connections), inserted per second, early drops, lookups
# that found an entry, failed inserts. ct_rate BEFORE AFTER SECONDS
ct_rate() {
    jq -n --argjson b "$(ct_totals "$1")" --argjson a "$(ct_totals "$2")" --argjson s "$3" '
        if $a == null or $b == null then null else
        {seconds: $s, inserts: ($a.insert - $b.insert),
         inserts_per_s: (if $s > 0 then ($a.insert - $b.insert) / $s else null end),
         early_drop: ($a.early_drop - $b.early_drop), found: ($a.found - $b.found),
         insert_failed: ($a.insert_failed - $b.insert_failed), drop: ($a.drop - $b.drop),
         entries_before: $b.entries, entries_after: $a.entries, max: $a.max} end'
}

# Number of conntrack entries matching a filter (control op conntrack_count), e.g.
# ct_count '{"status":"SEEN_REPLY"}'; null when fwd does not answer.
ct_count() {
    fwd_req "{\"op\":\"conntrack_count\",\"filter\":$1}" | jq -c 'if . == null then null else .count end'
}

# Polls fwd's conntrack entry count (op "stats", summed over workers) every INTERVAL
# seconds on one connection, writing "SECONDS_SINCE_START ENTRIES" lines to OUT, until the
# count reaches TARGET or LIMIT seconds have passed. Run it in the background:
#   ct_poll OUT TARGET LIMIT [INTERVAL] &
ct_poll() {
    local py=python3
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    "$py" - "$RUN_DIR/control.sock" "$@" <<'PY'
import json, socket, sys, time
sock, out, target, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sock)
f = s.makefile("rb")
t0 = time.monotonic()
with open(out, "w") as o:
    n = 0
    while time.monotonic() - t0 < limit:
        n += 1
        s.sendall(json.dumps({"v": 1, "id": n, "request": {"op": "stats"}}).encode() + b"\n")
        r = json.loads(f.readline())
        entries = sum(w["ct"]["entries"] for w in r["result"]["workers"])
        o.write(f"{time.monotonic() - t0:.3f} {entries}\n")
        o.flush()
        if entries >= target:
            break
        time.sleep(interval)
PY
}

# Resident memory of the DUT process in KiB (VmRSS; hugepages are not in it).
dut_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$DUT_PID/status"; }

start_fwd() {
    DUT_CMD="$FWD --config $RUN_DIR/fwd.yaml"
    DUT_SIG=TERM
    DUT_KIND=fwd
    rm -f "$RUN_DIR/control.sock" # the previous fwd's, if it left it
    # shellcheck disable=SC2086
    $DUT_CMD > "$RUN_DIR/dut.log" 2>&1 &
    DUT_PID=$!
    # fwd opens its socket once every worker has built its connection table and polls:
    # seconds for a 10 M-entry table. FWD_START_MS: how long that took.
    local t0
    t0=$(date +%s%N)
    for _ in $(seq 1200); do
        if [ -S "$RUN_DIR/control.sock" ]; then
            FWD_START_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
            return 0
        fi
        kill -0 "$DUT_PID" 2> /dev/null || { tail -20 "$RUN_DIR/dut.log" >&2; die "fwd exited"; }
        sleep 0.1
    done
    die "fwd did not open its control socket in 120 s (log: $RUN_DIR/dut.log)"
}

# save with fwd's counters (drops by reason, conntrack) appended:
#   fsave NAME [EXTRA_JSON] [STATS_BEFORE]
# With STATS_BEFORE (fwd_stats right before the generator ran) the result also holds
# ct_rate (lib.sh): conntrack inserts per second of sending, early drops, lookups.
fsave() {
    local after extra rate=null
    after=$(fwd_stats)
    if [ -n "${3:-}" ]; then
        rate=$(ct_rate "$3" "$after" "$(jq -r .send_s <<< "$GEN")")
    fi
    extra=$(jq -n --argjson a "${2:-"{}"}" --argjson s "$after" --argjson r "$rate" \
        --argjson w "${FWD_WINDOW:-null}" \
        '$a + {fwd_stats: $s, fwd_window: $w} + (if $r == null then {} else {ct_rate: $r} end)')
    save "$1" fwd "$GEN" "$extra"
    if [ "$rate" != null ]; then
        jq -r '"  fwd conntrack: \(.inserts) inserted in \(.seconds * 100 | round / 100) s = \(.inserts_per_s | floor)/s, early_drop \(.early_drop), found \(.found), insert_failed \(.insert_failed)"' <<< "$rate"
    fi
}

# One packet per flow, each answered by perfgen's reflector through fwd's reverse NAT, so
# every entry has seen a reply (ESTABLISHED, as in Linux) before the one-way measurement.
# Repeated (at most 3 passes) until fwd counts every flow replied. Sets WARM (JSON: what
# was sent and answered, and fwd's count of entries and of replied entries).
warm_up() { # warm_up FLOWS
    local pass seen=0
    for pass in 1 2 3; do
        # Its own time limit (enough at 100 k flows/s), not DURATION.
        DURATION=$(( $1 / 100000 + 5 )) run_gen --mode udp --flows "$1" --count "$1" \
            --rate 1000000 --reflect --drain-ms 1000 --label "fwd, warm-up: open and answer every flow"
        seen=$(ct_count '{"status":"SEEN_REPLY"}')
        WARM=$(jq -n --argjson g "$GEN" --argjson seen "$seen" --argjson all "$(ct_count '{}')" \
            --argjson pass "$pass" --argjson one "$(fwd_req '{"op":"conntrack_list","limit":1}')" \
            '{flows: $g.args.flows, pass: $pass, sent: $g.counters.tx_packets,
              forwarded: $g.counters.rx_packets, answered: $g.counters.reflected,
              answers_back: $g.counters.rx_replies, entries: $all, entries_seen_reply: $seen,
              first_entry: ($one.entries[0]? // $one)}')
        jq -r '"  warm-up pass \(.pass): \(.sent) sent, \(.answers_back) answers back; fwd entries \(.entries), replied \(.entries_seen_reply)"' <<< "$WARM"
        [ "$seen" != null ] && [ "$seen" -ge "$1" ] && return 0
    done
    echo "  warm-up: not every flow replied after 3 passes (measuring anyway)" >&2
}

# --- perf stat on the DUT's forwarding thread ----------------------------------------
# Cycles and instructions per packet from the CPU's counters, for A/B comparisons (Debian's
# linux-perf, installed here when missing). Needs a PMU: a VM without a virtual one (this development VM: "PMU not available due to
# virtualization") counts nothing, and the results say so. PERF_EVENTS overrides the
# events (e.g. task-clock, to try the plumbing where cycles are unsupported).
PERF_EVENTS=${PERF_EVENTS:-cycles,instructions}
PERF_STAT_STATE=""
perf_stat_probe() {
    [ -n "$PERF_STAT_STATE" ] && return 0
    if [ "${PERF_STAT:-1}" = 0 ]; then
        PERF_STAT_STATE="off (PERF_STAT=0)"
    elif ! command -v perf > /dev/null && ! { DEBIAN_FRONTEND=noninteractive apt-get \
            -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends linux-perf \
            > /dev/null 2>&1 && command -v perf > /dev/null; }; then
        PERF_STAT_STATE="unsupported: perf is not installed and apt-get install linux-perf failed"
    else
        # Captured first: with pipefail, `perf | grep -q` fails when grep exits early.
        local probe
        probe=$(perf stat -x, -e "$PERF_EVENTS" true 2>&1 > /dev/null || true)
        if [[ "$probe" == *"<not supported>"* || "$probe" == *"<not counted>"* ]]; then
            PERF_STAT_STATE="unsupported: perf stat -e $PERF_EVENTS counts nothing on this machine (no PMU, e.g. a VM without a virtual PMU)"
        else
            PERF_STAT_STATE=ok
        fi
    fi
}

# The DUT thread that runs on CORE_DUT (the busiest one there): its forwarding lcore.
dut_worker_tid() {
    ps -L -o tid=,psr=,pcpu= -p "$DUT_PID" 2> /dev/null | awk -v c="${CORE_DUT}" '$2 == c {print $3, $1}' \
        | sort -rn | awk 'NR == 1 {print $2}'
}

# The measuring window inside perfgen's sending: waits for its "perfgen: sending" line,
# then prints "TID SECONDS" (the DUT's forwarding thread, DURATION - 1 s, at least 1 s),
# or nothing when the thread is not found. Counts then hold no idle polling from before
# the traffic.
dut_window() {
    local tid w
    for _ in $(seq 300); do
        grep -q "perfgen: sending" "$RUN_DIR/gen.log" 2> /dev/null && break
        sleep 0.1
    done
    tid=$(dut_worker_tid)
    [ -n "$tid" ] || return 0
    w=$(( ${DURATION%.*} - 1 ))
    [ "$w" -ge 1 ] || w=1
    echo "$tid $w"
}

# Counts PERF_EVENTS on the DUT's forwarding thread for dut_window. Prints "SECONDS"
# (the window), or nothing.
perf_stat_window() {
    local tid w
    read -r tid w <<< "$(dut_window)"
    [ -n "${w:-}" ] || return 0
    if perf stat -x, -e "$PERF_EVENTS" -t "$tid" -o "$RUN_DIR/perf-stat.csv" -- sleep "$w" > /dev/null 2>&1; then
        echo "$w"
    fi
}

# PERF_RECORD_DUT=DIR: a profile of the DUT's forwarding thread for dut_window
# (timer-sampled `cpu-clock`, which needs no PMU), one file per generator run:
# DIR/NNN.data (`perf report -i DIR/NNN.data --no-children --sort dso,sym`). Where the
# cycles go, against testpmd io on the same path; sampling costs the DUT ~15 %.
PERF_RECORD_SEQ=0
perf_record_window() {
    local tid w
    read -r tid w <<< "$(dut_window)"
    [ -n "${w:-}" ] || return 0
    mkdir -p "$PERF_RECORD_DUT"
    PERF_RECORD_SEQ=$(( PERF_RECORD_SEQ + 1 ))
    perf record -q -e cpu-clock -F "${PERF_RECORD_HZ:-10000}" -t "$tid" \
        -o "$PERF_RECORD_DUT/$(printf %03d "$PERF_RECORD_SEQ").data" -- sleep "$w" > /dev/null 2>&1 || true
}

# JSON of the last perf_stat_window: each event's count and count per packet, packets
# being the generator's rate (what the DUT took, steady while sending) x the window.
perf_stat_json() { # perf_stat_json SECONDS
    python3 - "$RUN_DIR/perf-stat.csv" "$1" "$(jq -r .tx_pps <<< "$GEN")" "$PERF_EVENTS" <<'PY'
import json, sys
path, secs, pps, events = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
packets = pps * secs
out = {"state": "ok", "events": events, "window_s": secs, "packets_est": packets}
for line in open(path, errors="replace"):
    f = line.strip().split(",")
    if len(f) < 3 or line.startswith("#"):
        continue
    try:
        v = float(f[0])
    except ValueError:
        continue
    out[f[2]] = v
    if packets:
        out[f[2] + "_per_packet"] = v / packets
print(json.dumps(out))
PY
}
