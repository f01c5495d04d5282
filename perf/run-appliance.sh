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
source "$(dirname "$0")/lib.sh"
require
FWD=${FWD:-$REPO/target/release/fwd}
FLOWS=${FLOWS:-"1000 100000 1000000"}
SCENARIOS=${SCENARIOS:-"udp latency50 newconn-udp tcp rules"}
RULE_COUNTS=${RULE_COUNTS:-"10 1000 10000"}
[ -x "$FWD" ] || die "$FWD missing: cargo build --release -p dataplane --bin fwd"
printf 'ports: []\nbogus: 1\n' > "$RUN_DIR/bad.yaml"
if "$FWD" check "$RUN_DIR/bad.yaml" > /dev/null 2>&1; then
    die "$FWD accepts an invalid config: this fwd does not implement 'check' (not the daemon yet?)"
fi

# fwd config: lan = memif0 (generator clients behind 192.0.2.2), wan = memif1 (servers
# behind 203.0.113.2); static neighbours so nothing waits for ARP.
write_config() { # write_config RULESET
    cp "$1" "$RUN_DIR/ruleset.nft"
    mkdir -p "$RUN_DIR/state"
    cat > "$RUN_DIR/fwd.yaml" <<YAML
eal:
  main_core: $CORE_GEN
  file_prefix: perf-dut
  memory_mb: $(( MEM_MB * 4 ))
ports:
  - name: lan
    device: "net_memif0,role=server,id=0,socket=$SOCK_A"
    addresses: ["192.0.2.1/24"]
    mac: "$DUT_MAC_A"
  - name: wan
    device: "net_memif1,role=server,id=0,socket=$SOCK_B"
    addresses: ["203.0.113.1/24"]
    mac: "$DUT_MAC_B"
workers:
  cores: [$CORE_DUT]
routes:
  - prefix: 198.18.0.0/16
    via: 192.0.2.2
  - prefix: 198.19.0.0/16
    via: 203.0.113.2
neighbors:
  - {address: 192.0.2.2, mac: "$GEN_MAC_A", port: lan}
  - {address: 203.0.113.2, mac: "$GEN_MAC_B", port: wan}
conntrack:
  max: 2097152
ruleset: ruleset.nft
control_socket: $RUN_DIR/control.sock
state_dir: $RUN_DIR/state
YAML
    "$FWD" check "$RUN_DIR/fwd.yaml" || die "generated config refused (see above): $RUN_DIR/fwd.yaml"
}

start_fwd() {
    DUT_CMD="$FWD --config $RUN_DIR/fwd.yaml"
    DUT_SIG=TERM
    # shellcheck disable=SC2086
    $DUT_CMD > "$RUN_DIR/dut.log" 2>&1 &
    DUT_PID=$!
    for _ in $(seq 150); do
        [ -S "$RUN_DIR/control.sock" ] && return 0
        kill -0 "$DUT_PID" 2> /dev/null || { tail -20 "$RUN_DIR/dut.log" >&2; die "fwd exited"; }
        sleep 0.1
    done
    die "fwd did not open its control socket in 15 s (log: $RUN_DIR/dut.log)"
}

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
MAX_UDP=0

write_config "$PERF_DIR/rulesets/router.nft"
start_fwd
if has udp || has latency50; then
    for f in $FLOWS; do
        run_gen --mode udp --flows "$f" --count "$f" --rate 1000000 # opens every flow
        run_gen --mode udp --flows "$f" --rate 0 --label "fwd router+masquerade, established"
        has udp && save "fwd-udp-$f" fwd "$GEN"
        [ "$MAX_UDP" = 0 ] && MAX_UDP=$(jq -r '.rx_pps | floor' <<< "$GEN")
    done
fi
if has latency50; then
    first=${FLOWS%% *}
    run_gen --mode udp --flows "$first" --rate $(( MAX_UDP / 2 )) --label "fwd, 50% of max"
    save "fwd-latency50-$first" fwd "$GEN" "{\"load\": 0.5, \"max_pps\": $MAX_UDP}"
fi
if has newconn-udp; then
    run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, single-packet UDP flows"
    save "fwd-newconn-udp" fwd "$GEN"
fi
if has tcp; then
    run_gen --mode tcp --flows 1000000 --dport 80 --rate 0 --concurrency 4096 --label "fwd, tcp handshakes via masquerade"
    save "fwd-tcp" fwd "$GEN"
fi
cleanup_dut

if has rules; then
    for n in $RULE_COUNTS; do
        "$PERF_DIR/gen-rules.sh" "$n" > "$RUN_DIR/rules.nft"
        write_config "$RUN_DIR/rules.nft"
        start_fwd
        run_gen --mode udp --flows 16000000 --rate 0 --label "fwd, $n rules, new flows"
        save "fwd-rules-$n" fwd "$GEN" "{\"rules\": $n}"
        cleanup_dut
    done
fi
