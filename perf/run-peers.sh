#!/usr/bin/env bash
# Peers side by side, one session: testpmd io (the path's limit), fwd and Open
# vSwitch-DPDK (userspace conntrack + NAT) on the same memif path, cores and generator,
# 64-byte UDP at max rate over FLOWS (1 k, 100 k, 1 M) established flows in random order,
# the generator on one core sending only (perfgen --tx-only), the device's egress a sink:
#
#   perfgen --tx-only (CORE_GEN) --a.sock--> DUT port lan (memif server), one core (CORE_DUT)
#                                            DUT egress: a sink (below)
#
#   io   dpdk-testpmd --forward-mode=io, memif -> net_null,no-rx=1 (fresh per run)
#   fwd  perf/rulesets/router.nft (ct state established,related accept; lan -> wan new
#        accept; snat to a pool), fresh fwd per flow count. Every flow is first opened and
#        answered through fwd (warm-up: perfgen on both memif ports, its reflector
#        answering on wan) so the entries are ESTABLISHED, as in Linux; then perfgen sends
#        on lan only. fwd's egress for these flows is chosen by its route (static, from
#        the config): it stays the wan memif, whose peer (the warm-up's reflector) is gone,
#        so the memif PMD takes nothing ("link down": it returns at once) and fwd frees
#        the frames, counted as tx_refused. That is what net_null's TX does (free the
#        frames); fwd's rate is its own count of frames routed out (`forwarded`) per
#        second. FWD_EGRESS=null instead gives fwd a real net_null wan port: no warm-up
#        is possible then (nothing answers), so its entries stay unreplied (ct state new,
#        as Linux calls them) and every packet walks the forward chain to its accept rule.
#   gen  no DUT: perfgen into a net_null port of its own process, the generator's own
#        ceiling on this core (what it could offer any DUT)
#   ovs  OVS 3.1 (Debian's openvswitch-switch-dpdk, installed here when missing), one PMD,
#        the same ruleset as OpenFlow ct(commit,nat(src=...)) rules (perf/ovs.sh); warm-up
#        through a memif wan port, then the flow table is replaced to send the
#        established flows to a net_null port (conntrack kept).
#
# Each DUT and flow count is measured REPEAT (5) times back to back, DURATION (3) s each;
# report.py gives the median [min - max]. Each result carries the rate from the generator (what the DUT took off the memif ring;
# memif does not drop), the DUT's own count of what it forwarded, and the DUT's cycles
# per packet from its own busy-cycle counter (testpmd --record-core-cycles, fwd's
# busy_cycles over the run, OVS's pmd-stats-show processing cycles), and perf stat's
# cycles and instructions per packet of the forwarding thread where the machine counts
# them (PERF_STAT_DUT=0 skips; without a PMU the result says "unsupported").
#
#   perf/run-peers.sh                          # all three peers, 1k / 100k / 1M flows
#   PEERS="io fwd" FLOWS=1000 DURATION=3 perf/run-peers.sh
#   PEERS=fwd FWD_EGRESS=null perf/run-peers.sh  # fwd into a real net_null, unreplied
#   PEERS=fwd FWD_WARM=0 perf/run-peers.sh       # the detached memif, unreplied (compare)
#   SIZE=1518 FLOWS=1000 perf/run-peers.sh       # large frames
#   ORDER=seq perf/run-peers.sh                  # round robin instead of random order
#   FWD_TUNING='{"nf_conntrack_checksum":0}' PEERS=fwd perf/run-peers.sh
#                                                # fwd tunables set before the warm-up
#                                                # (tuning_set; e.g. trust checksums)
#   PERF_RECORD_DUT=/tmp/prof SIZE=1518 perf/run-peers.sh   # a cpu-clock profile of the
#                                                # DUT's worker per run (lib.sh)
#   GEN_MEMIF_ARGS=rsize=8 FWD_MBUFS=2047 ...    # the path's memif ring size (both
#                                                # DUTs), fwd's mbuf pool size
#   MEMIF_ZC=1 PEERS="io fwd" SIZE=1518 perf/run-peers.sh
#                                                # io and fwd as zero-copy memif clients
#                                                # of the generator (lib.sh MEMIF_ZC): a
#                                                # fresh DUT per run, started after the
#                                                # generator; fwd's warm-up inside that
#                                                # generator run (perfgen --warm-up)
#
# Results: perf/results/<time>-peers-{gen,io,fwd,ovs}-<flows>[-<size>].json; at the end
# the side-by-side table (`python3 perf/report.py --peers FILE` writes it again). Needs
# root, hugepages, release fwd and perfgen. About 5 minutes with the defaults, most of
# it OVS opening 1 M NAT connections; run it under `flock -x /tmp/cpu.lock` on the shared
# machine.
DURATION=${DURATION:-3}
REPEAT=${REPEAT:-5}
source "$(dirname "$0")/lib.sh"
source "$PERF_DIR/ovs.sh"
require
FLOWS=${FLOWS:-"1000 100000 1000000"}
PEERS=${PEERS:-"gen io fwd ovs"}
SIZE=${SIZE:-64}
ORDER=${ORDER:-random}
FWD_EGRESS=${FWD_EGRESS:-detached}
export PERF_STAT_DUT=${PERF_STAT_DUT:-1}
export PERF_RUN_ID=${PERF_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-peers}
has() { [[ " $PEERS " == *" $1 "* ]]; }
# MEMIF_ZC=1: fwd started by run_gen after the generator (lib.sh), tunables set at once.
zc_start_fwd() {
    start_fwd
    if [ -n "${FWD_TUNING:-}" ]; then
        [ "$(fwd_req "{\"op\":\"tuning_set\",\"values\":$FWD_TUNING}")" != null ] ||
            die "fwd refused tuning_set $FWD_TUNING"
    fi
}
[ "$MEMIF_ZC" != 1 ] || ! has ovs || die "MEMIF_ZC=1: PEERS without ovs and gen (they are no memif clients here)"
[ "$MEMIF_ZC" != 1 ] || ! has gen || die "MEMIF_ZC=1: PEERS without ovs and gen (they are no memif clients here)"
has fwd && require_fwd
trap 'ovs_stop; cleanup_dut; [ -n "${KEEP_RUN_DIR:-}" ] || rm -rf "$RUN_DIR"' EXIT
suffix="" zc=""
[ "$SIZE" = 64 ] || suffix="-$SIZE"
[ "$MEMIF_ZC" = 1 ] && zc="-zc"

# The measured run: max rate, this flow count, into the DUT's sink (MEASURE_ARGS: more
# perfgen arguments).
measure() { # measure FLOWS LABEL
    # shellcheck disable=SC2086
    run_gen --mode udp --tx-only --flows "$1" --rate 0 --size "$SIZE" --order "$ORDER" --label "$2" ${MEASURE_ARGS:-}
}

# Result extras: the DUT's counters (with its rate over perfgen's sending time), perf
# stat, what the egress was.
extras() { # extras DUT_COUNTERS_JSON MORE_JSON EGRESS
    jq -n --argjson d "$1" --argjson m "${2:-"{}"}" --argjson g "$GEN" --argjson p "$PERF_JSON" \
        --arg egress "$3" '$m + {egress: $egress, perf_stat: $p,
          dut_counters: ($d + {pps: (if $d.egress_packets then $d.egress_packets / $g.send_s else null end)})}'
}

report_line() { # report_line RESULT_EXTRAS
    jq -r --argjson g "$GEN" '"  DUT forwarded \(.dut_counters.pps // 0 | . / 1e4 | floor / 100) Mpps (generator \($g.tx_pps / 1e4 | floor / 100) Mpps), \(.dut_counters.cycles_per_packet // "?" | if type == "number" then . * 10 | floor / 10 else . end) cycles/packet in the DUT; perf stat: \(.perf_stat.state)"' <<< "$1"
}

# REPEAT measured runs per DUT and flow count, back to back; each saved with `rep`.
# Sets EXTRA_META for save().
rep_meta() { EXTRA_META=$(jq -n --argjson r "$1" --argjson n "$REPEAT" '{rep: $r, repeats: $n}'); }

if has gen; then
    for f in $FLOWS; do
        for rep in $(seq "$REPEAT"); do
            DUT_CMD="none: perfgen into its own net_null0"
            GEN_VDEVS="--vdev=net_null0" measure "$f" "peers: generator alone into its own net_null"
            x=$(extras "{\"egress_packets\": $(jq .counters.tx_packets <<< "$GEN"), \"source\": \"perfgen tx_packets\"}" "{}" "perfgen's own net_null0")
            report_line "$x"
            rep_meta "$rep"
            save "peers-gen-$f$suffix" none "$GEN" "$x"
        done
    done
fi

if has io; then
    for f in $FLOWS; do
        for rep in $(seq "$REPEAT"); do
            # A fresh testpmd per run: its counters are printed at exit. Zero-copy: run_gen
            # starts it once the generator listens.
            if [ "$MEMIF_ZC" = 1 ]; then
                ZC_START_DUT="start_testpmd null" measure "$f" "peers: testpmd io, zero-copy memif client -> net_null"
            else
                start_testpmd null
                measure "$f" "peers: testpmd io, memif -> net_null"
            fi
            cleanup_dut
            x=$(extras "$(testpmd_counters)" "{}" "net_null0,no-rx=1")
            report_line "$x"
            rep_meta "$rep"
            save "peers-io$zc-$f$suffix" testpmd-io "$GEN" "$x"
        done
    done
fi

if has fwd; then
    [ "$FWD_EGRESS" = null ] && export FWD_WAN_DEVICE="net_null0,no-rx=1"
    egress="wan memif, its peer gone (the PMD refuses every frame; fwd frees them)"
    [ "$FWD_EGRESS" = null ] && egress="net_null0,no-rx=1 (entries unreplied: no warm-up possible)"
    for f in $FLOWS; do
        write_fwd_config "$PERF_DIR/rulesets/router.nft" > /dev/null
        if [ "$MEMIF_ZC" = 1 ]; then
            # Zero-copy: a fresh fwd per run, started by run_gen once the generator
            # listens; the tunables set while perfgen settles (2 s), then its warm-up
            # (every flow opened and answered) and the measurement in one perfgen run.
            [ "$FWD_EGRESS" != null ] || die "MEMIF_ZC=1: FWD_EGRESS=null is not supported"
            for rep in $(seq "$REPEAT"); do
                # fwd's client has two TX queues per port (worker, slow path): the
                # server needs as many RX rings, or it refuses the second ("Disconnect
                # received: Invalid ring index").
                SETTLE_MS=2000 ZC_START_DUT=zc_start_fwd MEASURE_ARGS="--warm-up --rx-queues 2" \
                    measure "$f" "peers: fwd router+snat, zero-copy memif client, detached egress"
                WARM=$(jq -c '.warm_up' <<< "$GEN")
                x=$(extras "$(jq '. + {egress_packets: .forwarded}' <<< "$FWD_WINDOW")" \
                    "{\"warmup\": $WARM, \"fwd_egress\": \"$FWD_EGRESS\", \"memif_zero_copy\": true, \"fwd_tuning\": ${FWD_TUNING:-null}, \"fwd_binary\": \"$FWD\", \"fwd_stats\": $(fwd_stats)}" "$egress")
                report_line "$x"
                rep_meta "$rep"
                save "peers-fwd$zc-$f$suffix" fwd "$GEN" "$x"
                cleanup_dut
            done
            continue
        fi
        start_fwd
        if [ -n "${FWD_TUNING:-}" ]; then
            # Before the warm-up: a tunables change makes every recipe stale.
            [ "$(fwd_req "{\"op\":\"tuning_set\",\"values\":$FWD_TUNING}")" != null ] ||
                die "fwd refused tuning_set $FWD_TUNING"
        fi
        WARM=null
        if [ "$FWD_EGRESS" != null ] && [ "${FWD_WARM:-1}" != 0 ]; then
            warm_up "$f"
        fi
        for rep in $(seq "$REPEAT"); do
            measure "$f" "peers: fwd router+snat, $FWD_EGRESS egress"
            x=$(extras "$(jq '. + {egress_packets: .forwarded}' <<< "$FWD_WINDOW")" \
                "{\"warmup\": $WARM, \"fwd_egress\": \"$FWD_EGRESS\", \"fwd_tuning\": ${FWD_TUNING:-null}, \"fwd_binary\": \"$FWD\", \"fwd_stats\": $(fwd_stats)}" "$egress")
            report_line "$x"
            rep_meta "$rep"
            save "peers-fwd-$f$suffix" fwd "$GEN" "$x"
        done
        cleanup_dut
    done
    unset FWD_WAN_DEVICE
fi

if has ovs; then
    ovs_install
    ovs_start
    # OVS gives each thread a TX queue of its own (the PMD's is not queue 0): the
    # generator's memif clients need as many RX rings, or OVS's frames find no ring.
    txq=$(ovs_txqs wan)
    for f in $FLOWS; do
        ovs_ct_flush
        ovs_flows 2
        # Open and answer every flow, as fast as OVS takes them (memif does not drop: a
        # slow DUT slows the sender); answers coming back to the tx port went through
        # OVS's reverse NAT, so their connections have seen a reply. OVS creates NAT
        # connections slowly once many share one server (about 30 k/s here at 1 M), so
        # the first pass takes about as long as OVS's UDP timeout (30 s) and the first
        # connections expire meanwhile; the next pass re-opens those and refreshes the
        # rest within seconds. Passes until OVS holds every flow (at most 3 of OVS_WARM_S).
        for pass in 1 2 3; do
            DURATION=${OVS_WARM_S:-90} run_gen --mode udp --flows "$f" --count "$f" --rate 0 \
                --reflect --drain-ms 1000 --rx-queues "$txq" \
                --label "ovs warm-up: open and answer every flow"
            conns=$(ovs_ct_count)
            echo "  ovs warm-up pass $pass: $(jq -r .counters.tx_packets <<< "$GEN") sent in $(jq -r '.send_s | . * 10 | floor / 10' <<< "$GEN") s, $(jq -r .counters.rx_replies <<< "$GEN") answers back; OVS connections: $conns"
            [ "${conns:-0}" -ge "$f" ] && break
        done
        warm=$(jq -n --argjson g "$GEN" --arg ct "$(ovs_ct_count)" --argjson pass "$pass" \
            '{flows: $g.args.flows, pass: $pass, sent: $g.counters.tx_packets, send_s: $g.send_s,
              answers_back: $g.counters.rx_replies, ovs_connections: ($ct | tonumber? // null)}')
        ovs_flows 3
        for rep in $(seq "$REPEAT"); do
            ovs_ctl dpif-netdev/pmd-stats-clear > /dev/null
            tx0=$(ovs_port_tx 3)
            measure "$f" "peers: ovs-dpdk ct(commit,nat), memif -> net_null"
            tx1=$(ovs_port_tx 3)
            d=$(ovs_pmd_counters | jq --argjson n "$(( tx1 - tx0 ))" '. + {egress_packets: $n}')
            x=$(extras "$d" "$(jq -n --argjson w "$warm" --rawfile fl "$RUN_DIR/ovs-flows.txt" \
                '{warmup: $w, ovs_flows: ($fl | split("\n") | map(select(length > 0)))}')" \
                "nul: net_null0,no-rx=1 (OpenFlow port 3)")
            report_line "$x"
            rep_meta "$rep"
            save "peers-ovs-$f$suffix" ovs-dpdk "$GEN" "$x"
        done
    done
    ovs_stop
fi

# The side-by-side table of this session (report.py picks the newest session).
if python3 "$PERF_DIR/report.py" --results "$RESULTS" --peers "$RUN_DIR/peers.md" > /dev/null; then
    echo
    cat "$RUN_DIR/peers.md"
fi
