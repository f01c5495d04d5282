#!/usr/bin/env bash
# Records what Linux does with a fragmented UDP datagram it forwards through conntrack
# with masquerade (the reference for the refragmentation tests): namespaces a - r - b,
# a sends one 4000-byte UDP datagram per family (the kernel fragments it on a's
# 1500-byte MTU), r reassembles (nf_defrag), masquerades and refragments; the frames on
# r's ingress and on b are written, `tcpdump -xx` style, to linux-forwarded.txt.
# Run as root: dataplane/src/frag/testdata/capture.sh
set -euo pipefail
cd "$(dirname "$0")"
s=$$
a=fra$s; r=frr$s; b=frb$s
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$r" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
for n in $a $r $b; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add va$s netns "$a" type veth peer name ra$s netns "$r"
ip link add vb$s netns "$b" type veth peer name rb$s netns "$r"
for l in "$a va$s" "$r ra$s" "$r rb$s" "$b vb$s"; do
    set -- $l
    ip netns exec "$1" ethtool -K "$2" tx off rx off gro off gso off tso off >/dev/null 2>&1 || true
    ip -n "$1" link set "$2" up
done
ip -n "$a" addr add 198.18.0.1/24 dev va$s
ip -n "$r" addr add 198.18.0.254/24 dev ra$s
ip -n "$r" addr add 198.51.100.254/24 dev rb$s
ip -n "$b" addr add 198.51.100.2/24 dev vb$s
ip -n "$a" -6 addr add 2001:db8:a::1/64 dev va$s nodad
ip -n "$r" -6 addr add 2001:db8:a::fe/64 dev ra$s nodad
ip -n "$r" -6 addr add 2001:db8:b::fe/64 dev rb$s nodad
ip -n "$b" -6 addr add 2001:db8:b::2/64 dev vb$s nodad
ip -n "$a" route add default via 198.18.0.254
ip -n "$b" route add default via 198.51.100.254
ip -n "$a" -6 route add default via 2001:db8:a::fe
ip -n "$b" -6 route add default via 2001:db8:b::fe
ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip netns exec "$r" nft -f - <<NFT
table inet t {
  chain post { type nat hook postrouting priority srcnat; oifname "rb$s" masquerade; }
}
NFT
sleep 1
ip netns exec "$r" tcpdump -l -n -xx -i ra$s -w - udp or ip6 2>/dev/null >in.pcap & t1=$!
ip netns exec "$b" tcpdump -l -n -xx -i vb$s -w - udp or ip6 2>/dev/null >out.pcap & t2=$!
sleep 1
ip netns exec "$a" python3 - <<'PY'
import socket
payload = bytes((i * 7 + 3) & 0xff for i in range(4000))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.0.1", 40000)); s.sendto(payload, ("198.51.100.2", 7))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.bind(("2001:db8:a::1", 40000)); s6.sendto(payload, ("2001:db8:b::2", 7))
PY
sleep 1
kill "$t1" "$t2"; wait "$t1" "$t2" 2>/dev/null || true
{
    tcpdump -n -xx -r in.pcap 'ip or (ip6 and ip6[6] == 44)' 2>/dev/null | sed 's/^[0-9:.]* /in: /'
    tcpdump -n -xx -r out.pcap 'ip or (ip6 and ip6[6] == 44)' 2>/dev/null | sed 's/^[0-9:.]* /out: /'
} >linux-forwarded.txt
rm -f in.pcap out.pcap
grep -c '^in: \|^out: ' linux-forwarded.txt
