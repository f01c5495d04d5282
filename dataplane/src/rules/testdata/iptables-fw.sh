#!/bin/sh
# A typical firewall + NAT script (run with Debian iptables 1.8.9, nft backend, to make
# iptables-save.txt; iptables-restore-translate.txt is iptables-restore-translate -f of it).
iptables -F
iptables -X
iptables -t nat -F
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -P OUTPUT ACCEPT
iptables -N LOGDROP
iptables -A LOGDROP -m limit --limit 5/min -j LOG --log-prefix "fw-drop: " --log-level 4
iptables -A LOGDROP -j DROP
iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -m conntrack --ctstate INVALID -j DROP
iptables -A INPUT -p tcp -m multiport --dports 22,80,443 -m conntrack --ctstate NEW -j ACCEPT
iptables -A INPUT -p icmp --icmp-type echo-request -m limit --limit 1/s --limit-burst 10 -j ACCEPT
iptables -A INPUT -s 198.51.100.0/24 -p tcp --dport 8080:8090 -m comment --comment "admin range" -j ACCEPT
iptables -A INPUT -p tcp --syn -m connlimit --connlimit-above 20 --connlimit-mask 0 -j REJECT --reject-with tcp-reset
iptables -A INPUT -p udp ! -s 192.0.2.1 --dport 53 -j REJECT --reject-with icmp-port-unreachable
iptables -A INPUT -j LOGDROP
iptables -A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -A FORWARD -i eth1 -o eth0 -j ACCEPT
iptables -A FORWARD -i eth0 -o eth1 -p tcp -d 192.0.2.10 --dport 80 -j ACCEPT
iptables -A FORWARD -i veth+ -p tcp --tcp-flags SYN,RST SYN -j ACCEPT
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -t nat -A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 192.0.2.10:80
iptables -t nat -A POSTROUTING -s 192.0.2.0/24 -o eth2 -j SNAT --to-source 203.0.113.5
iptables -t nat -A PREROUTING -p tcp --dport 2222 -j REDIRECT --to-ports 22
