# Open vSwitch-DPDK as a peer DUT (sourced by perf/run-peers.sh after lib.sh, not run).
#
# Debian's openvswitch-switch-dpdk (OVS 3.1 on DPDK 22.11), userspace datapath, one PMD
# thread on CORE_DUT, its main thread on DUT_MAIN. Everything runs in a private directory
# (its own database, sockets, logs, EAL file prefix, --in-memory): the system's OVS, if
# any, is neither used nor touched, and only the two processes started here are stopped
# (by PID). The apt package's service is not started (no systemd on this VM, and
# policy-rc.d forbids it on images that have one); we never start it.
#
# Ports (OpenFlow numbers fixed with ofport_request):
#   1 lan  net_memif0 server on a.sock (the generator's tx port)
#   2 wan  net_memif1 server on b.sock (the generator's reflector, warm-up only)
#   3 nul  net_null0,no-rx=1 (the sink of the throughput runs)
#
# The OpenFlow pipeline is perf/rulesets/router.nft written for OVS (ovs_flows): every IP
# packet goes through conntrack in zone 1 with NAT applied (ct(nat)), then
#   +est or +rel, from lan -> out EGRESS; from wan -> out lan (the reverse NAT is done);
#   +new from lan, 198.18.0.0/16, udp dport 9/53/123/443 or tcp dport 22/80/443/8080 or
#       icmp echo -> ct(commit, nat(src=203.0.113.64-203.0.113.127)) and out EGRESS;
#   everything else (+inv, new from wan) dropped.
# As a router each forwarded frame gets the egress port's MACs and a TTL decrement, as
# fwd does. EGRESS is wan (2) while the flows are opened and answered, nul (3) while the
# throughput is measured: the flow table is replaced in one bundle, conntrack is kept.
# OVS's conntrack keeps its default timeouts (UDP: 30 s after the last packet); a zone
# timeout policy (add-zone-tp) with longer UDP timeouts made OVS 3.1's userspace datapath
# forward 0.1 Mpps instead of ~4 at 1 k flows in our try, and ovs-vswitchd crashed once
# with it, so run-peers.sh refreshes the connections instead (see there).

OVS_VSWITCHD=${OVS_VSWITCHD:-/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk}
OVS_SCHEMA=${OVS_SCHEMA:-/usr/share/openvswitch/vswitch.ovsschema}
OVS_DIR=""
OVS_PIDS=""

# Installs Debian's OVS-DPDK when missing (idempotent; waits for apt's lock).
ovs_install() {
    [ -x "$OVS_VSWITCHD" ] && command -v ovsdb-server > /dev/null && return 0
    echo "ovs.sh: installing openvswitch-switch-dpdk (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends openvswitch-switch-dpdk > "$RUN_DIR/apt.log" 2>&1 \
        || { tail -20 "$RUN_DIR/apt.log" >&2; die "could not install openvswitch-switch-dpdk"; }
    [ -x "$OVS_VSWITCHD" ] || die "$OVS_VSWITCHD missing after the install"
}

ovs_ctl() { ovs-appctl -t "$OVS_DIR/vswitchd.ctl" "$@"; }
ovs_vsctl() { ovs-vsctl --db="unix:$OVS_DIR/db.sock" "$@"; }
ovs_ofctl() { OVS_RUNDIR=$OVS_DIR ovs-ofctl "$@"; }

# Starts ovsdb-server and ovs-vswitchd-dpdk in $RUN_DIR/ovs with the bridge and ports
# above. Sets DUT_CMD (for the results) and OVS_PIDS.
ovs_start() {
    OVS_DIR=$RUN_DIR/ovs
    mkdir -p "$OVS_DIR"
    export OVS_RUNDIR=$OVS_DIR OVS_LOGDIR=$OVS_DIR OVS_DBDIR=$OVS_DIR OVS_SYSCONFDIR=$OVS_DIR
    ovsdb-tool create "$OVS_DIR/conf.db" "$OVS_SCHEMA"
    ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/db.sock" \
        --unixctl="$OVS_DIR/ovsdb.ctl" --log-file="$OVS_DIR/ovsdb.log" > /dev/null 2>&1 &
    OVS_PIDS=$!
    for _ in $(seq 50); do [ -S "$OVS_DIR/db.sock" ] && break; sleep 0.1; done
    ovs_vsctl --no-wait init
    local cpu_dut cpu_main
    cpu_dut=$(printf '0x%x' $(( 1 << CORE_DUT )))
    cpu_main=$(printf '0x%x' $(( 1 << DUT_MAIN )))
    ovs_vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true \
        "other_config:dpdk-extra=--file-prefix=perf-ovs-$$ --no-pci --in-memory" \
        "other_config:dpdk-lcore-mask=$cpu_main" "other_config:pmd-cpu-mask=$cpu_dut" \
        "other_config:dpdk-socket-mem=$(( MEM_MB * 2 ))"
    DUT_CMD="$OVS_VSWITCHD unix:$OVS_DIR/db.sock (OVS $(ovs-vsctl --version | awk 'NR == 1 {print $NF}'), dpdk-lcore-mask=$cpu_main pmd-cpu-mask=$cpu_dut; flows: perf/ovs.sh ovs_flows)"
    "$OVS_VSWITCHD" "unix:$OVS_DIR/db.sock" --unixctl="$OVS_DIR/vswitchd.ctl" \
        --log-file="$OVS_DIR/vswitchd.log" > /dev/null 2>&1 &
    DUT_PID=$!
    DUT_SIG=TERM
    DUT_KIND=ovs
    OVS_PIDS="$OVS_PIDS $DUT_PID"
    for _ in $(seq 300); do
        [ -S "$OVS_DIR/vswitchd.ctl" ] && break
        kill -0 "$DUT_PID" 2> /dev/null || { tail -20 "$OVS_DIR/vswitchd.log" >&2; die "ovs-vswitchd exited"; }
        sleep 0.1
    done
    ovs_vsctl add-br br0 -- set bridge br0 datapath_type=netdev \
        -- add-port br0 lan -- set Interface lan type=dpdk ofport_request=1 \
        "options:dpdk-devargs=net_memif0,role=server,id=0,socket=$SOCK_A,mac=$DUT_MAC_A" \
        -- add-port br0 wan -- set Interface wan type=dpdk ofport_request=2 \
        "options:dpdk-devargs=net_memif1,role=server,id=0,socket=$SOCK_B,mac=$DUT_MAC_B" \
        -- add-port br0 nul -- set Interface nul type=dpdk ofport_request=3 \
        "options:dpdk-devargs=net_null0,no-rx=1" \
        || { tail -20 "$OVS_DIR/vswitchd.log" >&2; die "ovs-vsctl add-br failed"; }
    # The generator's memif clients connect when perfgen starts; the ports must exist.
    for port in lan wan nul; do
        for _ in $(seq 100); do
            [ "$(ovs_vsctl get Interface "$port" ofport)" -gt 0 ] 2> /dev/null && break
            sleep 0.1
        done
    done
}

# The flow table (see the header) with the established and new lan traffic out of port
# EGRESS (2 wan, 3 nul), replaced in one bundle.
ovs_flows() { # ovs_flows EGRESS
    local egress=$1 out_wan out_lan
    out_wan="mod_dl_src:$DUT_MAC_B,mod_dl_dst:$GEN_MAC_B,dec_ttl,output:$egress"
    out_lan="mod_dl_src:$DUT_MAC_A,mod_dl_dst:$GEN_MAC_A,dec_ttl,output:1"
    local snat="ct(commit,zone=1,nat(src=203.0.113.64-203.0.113.127))"
    {
        echo "table=0,priority=100,ip,in_port=1,actions=ct(table=1,zone=1,nat)"
        echo "table=0,priority=100,ip,in_port=2,actions=ct(table=1,zone=1,nat)"
        echo "table=0,priority=0,actions=drop"
        for st in +est +rel; do
            echo "table=1,priority=100,ct_state=+trk${st}-inv,ip,in_port=1,actions=$out_wan"
            echo "table=1,priority=100,ct_state=+trk${st}-inv,ip,in_port=2,actions=$out_lan"
        done
        for p in 9 53 123 443; do
            echo "table=1,priority=90,ct_state=+trk+new-inv,udp,in_port=1,nw_src=198.18.0.0/16,tp_dst=$p,actions=$snat,$out_wan"
        done
        for p in 22 80 443 8080; do
            echo "table=1,priority=90,ct_state=+trk+new-inv,tcp,in_port=1,nw_src=198.18.0.0/16,tp_dst=$p,actions=$snat,$out_wan"
        done
        echo "table=1,priority=90,ct_state=+trk+new-inv,icmp,in_port=1,icmp_type=8,actions=$snat,$out_wan"
        echo "table=1,priority=0,actions=drop"
    } > "$RUN_DIR/ovs-flows.txt"
    ovs_ofctl --bundle replace-flows br0 "$RUN_DIR/ovs-flows.txt" \
        || die "ovs-ofctl replace-flows failed ($RUN_DIR/ovs-flows.txt)"
}

# TX queues OVS configured on an interface (one per thread that may send): the number of
# tx_q<N>_packets counters in its statistics.
ovs_txqs() { # ovs_txqs INTERFACE
    local n
    n=$(ovs_vsctl get Interface "$1" statistics | grep -o 'tx_q[0-9]*_packets' | wc -l)
    [ "$n" -gt 0 ] || n=1
    echo "$n"
}

# Connections in OVS's userspace conntrack.
ovs_ct_count() {
    ovs_ctl dpctl/ct-stats-show 2> /dev/null | awk '/Connections Stats/ {n = 0} /Total:/ {print $2; exit}'
}

ovs_ct_flush() { ovs_ctl dpctl/flush-conntrack > /dev/null; }

# Packets out of OpenFlow port N so far.
ovs_port_tx() { # ovs_port_tx N
    ovs_ofctl dump-ports br0 "$1" | awk -F'[=,]' '/tx pkts/ {print $2; exit}'
}

# The PMD's counters since `pmd-stats-clear`, as JSON: packets it received, its
# processing cycles (iterations that had packets) and their ratio.
ovs_pmd_counters() {
    ovs_ctl dpif-netdev/pmd-stats-show | python3 -c '
import json, re, sys
t = sys.stdin.read()
def num(pat):
    m = re.search(pat, t)
    return float(m.group(1)) if m else None
rx = num(r"packets received: (\d+)")
busy = num(r"processing cycles: (\d+)")
print(json.dumps({"rx_packets": rx, "busy_cycles": busy,
                  "recirculations": num(r"packet recirculations: (\d+)"),
                  "cycles_per_packet": busy / rx if rx and busy is not None else None,
                  "source": "ovs-appctl dpif-netdev/pmd-stats-show"}))'
}

# Stops the two OVS processes started here (by PID), then forgets the directory.
ovs_stop() {
    [ -n "$OVS_DIR" ] || return 0
    ovs_ctl exit > /dev/null 2>&1 || true
    ovs-appctl -t "$OVS_DIR/ovsdb.ctl" exit > /dev/null 2>&1 || true
    local pid
    for pid in $OVS_PIDS; do
        for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2> /dev/null || true
    done
    OVS_PIDS=""
    OVS_DIR=""
    DUT_PID=""
}
