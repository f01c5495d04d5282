#!/usr/bin/env bash
# Ruleset swap under load: established UDP flows through fwd (router ruleset + SNAT) at a
# fixed rate below the maximum, while the control socket replaces the ruleset SWAPS times
# (alternating the router ruleset and a variant with one more rule, so every swap compiles
# and publishes a new generation). The same run without swaps, at the same rate and
# duration, comes first: packets lost during the swap run beyond that baseline are what
# the swaps cost (target 0).
#
#   perf/run-swap.sh                      # 1000 flows, 200 kpps, 100 swaps over 10 s
#   FLOWS=10000 RATE=300000 SWAPS=100 DURATION=10 perf/run-swap.sh
#
# Results: perf/results/<time>-fwd-swap-<flows>.json (generator JSON of both runs, the
# generations before and after, the swap replies). Needs root, release fwd and perfgen.
source "$(dirname "$0")/lib.sh"
require
require_fwd
FLOWS=${FLOWS:-1000}
RATE=${RATE:-200000}
SWAPS=${SWAPS:-100}
DURATION=${DURATION:-10}
[ "$SWAPS" -ge 1 ] && [ "$SWAPS" -le 10000 ] || die "SWAPS must be 1..10000"

write_fwd_config "$PERF_DIR/rulesets/router.nft"
variant=$RUN_DIR/router-variant.nft
# One more (never matching) rule in the forward chain: a different generation, same verdicts.
sed 's/^\(\s*chain forward {\)$/\1\n        ip saddr 192.0.2.250 udp dport 9 counter drop/' \
    "$PERF_DIR/rulesets/router.nft" > "$variant"
cmp -s "$variant" "$PERF_DIR/rulesets/router.nft" && die "could not derive the variant ruleset"
start_fwd

# One control request per line on fwd's socket; prints a JSON array of the replies.
swap_loop() { # swap_loop COUNT SPREAD_SECONDS
    /usr/bin/python3 - "$RUN_DIR/control.sock" "$PERF_DIR/rulesets/router.nft" "$variant" "$1" "$2" <<'PY'
import json, socket, sys, time
sock, a, b, n, spread = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
texts = [open(a).read(), open(b).read()]
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sock)
f = s.makefile("rwb")
def req(i, r):
    f.write(json.dumps({"v": 1, "id": i, "request": r}).encode() + b"\n"); f.flush()
    return json.loads(f.readline())
out = {"before": req(0, {"op": "status"}).get("result"), "errors": [], "ok": 0}
for i in range(n):
    r = req(i + 1, {"op": "ruleset_replace", "ruleset": {"format": "text", "content": texts[(i + 1) % 2]}})
    if "error" in r and r["error"]:
        out["errors"].append(r["error"])
    else:
        out["ok"] += 1
    time.sleep(spread / n)
out["after"] = req(n + 1, {"op": "status"}).get("result")
print(json.dumps(out))
PY
}

warm_up "$FLOWS" # opens and answers every flow: replied (established) entries
run_gen --mode udp --flows "$FLOWS" --rate "$RATE" --label "fwd, no swaps"
quiet=$GEN
quiet_cmd=$GEN_CMD

# The swaps start once the generator runs and are spread over 80% of its duration.
( sleep 1; swap_loop "$SWAPS" "$(awk -v d="$DURATION" 'BEGIN { print d * 0.8 - 1 }')" > "$RUN_DIR/swaps.json" ) &
swapper=$!
run_gen --mode udp --flows "$FLOWS" --rate "$RATE" --label "fwd, $SWAPS ruleset swaps"
wait "$swapper" || die "swap loop failed"
swaps=$(cat "$RUN_DIR/swaps.json")
extra=$(jq -n --argjson q "$quiet" --argjson s "$swaps" --arg qc "$quiet_cmd" --argjson st "$(fwd_stats)" \
    --argjson w "$WARM" \
    '{baseline_no_swaps: $q, baseline_command: $qc, swaps: $s, fwd_stats: $st,
      lost_no_swaps: $q.lost, warmup: $w}')
save "fwd-swap-$FLOWS" fwd "$GEN" "$extra"
jq -r --argjson g "$GEN" '"swaps ok \(.swaps.ok) errors \(.swaps.errors | length), generation \(.swaps.before.ruleset_generation // "?") -> \(.swaps.after.ruleset_generation // "?"); lost without swaps \(.lost_no_swaps), lost with swaps \($g.lost)"' <<< "$extra"
