set -x
ip netns add wire-a; ip netns add wire-b
ip link add wire-va type veth peer name wire-vb
ip link set wire-va netns wire-a; ip link set wire-vb netns wire-b
ip -n wire-a link set lo up; ip -n wire-b link set lo up
ip -n wire-a addr add 198.18.0.1/24 dev wire-va; ip -n wire-b addr add 198.18.0.2/24 dev wire-vb
ip -n wire-a addr add 2001:db8::1/64 dev wire-va nodad; ip -n wire-b addr add 2001:db8::2/64 dev wire-vb nodad
ip -n wire-a link set wire-va up; ip -n wire-b link set wire-vb up
ip netns exec wire-a ethtool -K wire-va tx off >/dev/null 2>&1
ip netns exec wire-b ethtool -K wire-vb tx off >/dev/null 2>&1
sleep 1
ip netns exec wire-b timeout 12 tcpdump -i wire-vb -n -xx -c 60 > cap.txt 2>cap.err &
TD=$!
sleep 1
ip netns exec wire-a ping -c1 -W1 198.18.0.2
ip netns exec wire-a ping -6 -c1 -W1 2001:db8::2
ip netns exec wire-b timeout 4 nc -l -p 5001 >/dev/null &
NC1=$!
ip netns exec wire-b timeout 4 nc -6 -l -p 5002 >/dev/null &
NC2=$!
sleep 0.5
echo hello | ip netns exec wire-a timeout 2 nc -q0 198.18.0.2 5001
echo hello6 | ip netns exec wire-a timeout 2 nc -q0 2001:db8::2 5002
echo udp | ip netns exec wire-a timeout 1 nc -u -q0 198.18.0.2 5003
echo udp6 | ip netns exec wire-a timeout 1 nc -u -q0 2001:db8::2 5004
ip netns exec wire-a ping -c1 -W1 -s 3000 198.18.0.2
# source-routed.txt: UDP with a loose (0x83) and a strict (0x89) source route option, set
# with IP_OPTIONS (captured on their own: they go in a separate file).
ip netns exec wire-b timeout 4 tcpdump -i wire-vb -n -xx -c 2 'ip[0] & 0xf > 5' > srr.txt 2>/dev/null &
TD2=$!
sleep 1
for t in 0x83 0x89; do
    ip netns exec wire-a python3 -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([$t, 7, 4, 198, 18, 0, 2, 0])); s.sendto(b'lsrr', ('198.18.0.2', 5005))"
done
wait $TD2
wait $NC1 $NC2
wait $TD
ip netns del wire-a; ip netns del wire-b
