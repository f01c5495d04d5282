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
wait $NC1 $NC2
wait $TD
ip netns del wire-a; ip netns del wire-b
