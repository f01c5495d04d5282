#!/usr/bin/env bash
# Writes a forward-chain ruleset with N rules to stdout, for the rule-count scenario:
# N-1 rules that never match the generator's traffic (distinct /32 sources from
# 198.51.100.0/24 and 203.0.113.0/24 crossed with ports) before the one that accepts it,
# so a linear scan would pay for all of them on every new flow.
#   perf/gen-rules.sh 10000 > /tmp/rules-10000.nft
set -euo pipefail
n=${1:?usage: gen-rules.sh N}
case "$n" in ''|*[!0-9]*|0) echo "gen-rules.sh: N must be a positive number" >&2; exit 2 ;; esac
cat <<HEAD
table inet filter {
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
HEAD
for i in $(seq 0 $(( n - 2 ))); do
    h=$(( i % 508 )) p=$(( 1024 + i / 508 ))
    if [ "$h" -lt 254 ]; then a=198.51.100.$(( h + 1 )); else a=203.0.113.$(( h - 253 )); fi
    echo "        iifname \"lan\" ip saddr $a udp dport $p accept"
done
cat <<TAIL
        iifname "lan" oifname "wan" ip saddr 198.18.0.0/16 accept
    }
}
table ip nat {
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        # A pool, not masquerade: one address gives ~64 k source ports per destination
        # (as in Linux), and the generator sends its 100 k - 16 M flows to one server.
        oifname "wan" snat to 203.0.113.64-203.0.113.127
    }
}
TAIL
