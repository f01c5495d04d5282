#!/usr/bin/env python3
"""Replays crafted IPv4 packets through the Linux kernel's conntrack and reports, per
packet, the `ct state` nftables saw and the conntrack entries afterwards.

Used by the ignored Rust test `conntrack::kernel::kernel_agrees` (needs root, ip, nft,
conntrack). Reads a JSON list of scenarios on stdin; each scenario is a list of packets
{"src","dst","proto":"tcp"|"udp"|"icmp_err","sport","dport","flags","seq","ack","len",
 "inner": {...udp packet...}}. Writes a JSON list (per scenario) of lists (per packet) of
{"ct": "new|established|related|invalid|untracked|none", "entries": [...]}.

Topology: netns ctk-a --veth--> netns ctk-b (which forwards back out of the veth). Packets are written on ctk-a0 with the MAC
of ctk-b0, so ctk-b's prerouting hook (conntrack, then an nft chain with one counter per
ct state) sees them whatever their addresses. Cleans up both namespaces at the end.
"""
import json
import socket
import struct
import subprocess
import sys

NS_A, NS_B = "ctk-a", "ctk-b"


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True).stdout


def setup():
    teardown()
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    sh("ip", "link", "add", "ctk-a0", "netns", NS_A, "type", "veth", "peer", "name", "ctk-b0", "netns", NS_B)
    sh("ip", "-n", NS_A, "link", "set", "ctk-a0", "up")
    sh("ip", "-n", NS_B, "link", "set", "ctk-b0", "up")
    sh("ip", "-n", NS_B, "link", "set", "lo", "up")
    # Forward everything back out of ctk-b0 so every entry gets confirmed (conntrack
    # inserts an entry only when its first packet passes postrouting or input).
    sh("ip", "-n", NS_B, "route", "add", "198.18.0.0/15", "dev", "ctk-b0")
    for k in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
              "net.ipv4.conf.ctk-b0.rp_filter=0", "net.ipv4.conf.all.send_redirects=0",
              "net.ipv4.conf.ctk-b0.send_redirects=0"):
        sh("sysctl", "-qw", k, ns=NS_B)
    ruleset = """
table inet ctk {
  chain pre {
    type filter hook prerouting priority 0; policy accept;
    ct state new counter
    ct state established counter
    ct state related counter
    ct state invalid counter
    ct state untracked counter
  }
}
"""
    subprocess.run(["ip", "netns", "exec", NS_B, "nft", "-f", "-"], input=ruleset, text=True, check=True)
    link = json.loads(sh("ip", "-n", NS_B, "-j", "link", "show", "ctk-b0"))
    return bytes.fromhex(link[0]["address"].replace(":", ""))


def teardown():
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def counters():
    rs = json.loads(sh("nft", "-j", "list", "chain", "inet", "ctk", "pre", ns=NS_B))
    out = {}
    for item in rs["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        state, packets = None, 0
        for e in rule["expr"]:
            if "match" in e:
                state = e["match"]["right"]
                if isinstance(state, list):
                    state = state[0]
            if "counter" in e:
                packets = e["counter"]["packets"]
        out[state] = packets
    return out


def entries():
    text = sh("conntrack", "-L", ns=NS_B, check=False)
    res = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 3:
            continue
        e = {"proto": f[0], "timeout": int(f[2]), "assured": "[ASSURED]" in f,
             "unreplied": "[UNREPLIED]" in f, "state": None}
        if f[0] == "tcp":
            e["state"] = f[3]
        srcs = [x[4:] for x in f if x.startswith("src=")]
        sports = [x[6:] for x in f if x.startswith("sport=")]
        e["src"] = srcs[0] if srcs else None
        e["sport"] = int(sports[0]) if sports else None
        res.append(e)
    return res


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(src, dst, proto, payload):
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, s, d)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def l4sum(src, dst, proto, seg):
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(seg))
    return csum(pseudo + seg)


def tcp(p):
    opts = b""
    if p["flags"] & 0x02:  # SYN: MSS 1460, SACK permitted, window scale 7 (as the Rust side)
        opts = struct.pack("!BBH", 2, 4, 1460) + bytes([4, 2, 1, 3, 3, 7])
        opts += b"\x00" * ((4 - len(opts) % 4) % 4)
    doff = (20 + len(opts)) // 4
    seg = struct.pack("!HHIIBBHHH", p["sport"], p["dport"], p["seq"], p["ack"], doff << 4,
                      p["flags"], 64240, 0, 0) + opts + b"\x00" * p.get("len", 0)
    c = l4sum(p["src"], p["dst"], 6, seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return ip4(p["src"], p["dst"], 6, seg)


def udp(p):
    data = b"\x00" * (128 - 28)
    seg = struct.pack("!HHHH", p["sport"], p["dport"], 8 + len(data), 0) + data
    c = l4sum(p["src"], p["dst"], 17, seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return ip4(p["src"], p["dst"], 17, seg)


def icmp_err(p):
    quoted = udp(p["inner"])[:28]
    msg = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    return ip4(p["src"], p["dst"], 1, msg)


def main():
    scenarios = json.load(sys.stdin)
    try:
        mac_b = setup()
        # Enter ctk-a (Python 3.11 has no os.setns) so the sending socket lives there.
        import ctypes
        import os
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/var/run/netns/" + NS_A, os.O_RDONLY)
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind(("ctk-a0", 0))
        mac_a = sock.getsockname()[4]
        results = []
        for sc in scenarios:
            sh("conntrack", "-F", ns=NS_B, check=False)
            steps = []
            for p in sc:
                before = counters()
                frame = {"tcp": tcp, "udp": udp, "icmp_err": icmp_err}[p["proto"]](p)
                sock.send(mac_b + mac_a + b"\x08\x00" + frame)
                ct = "none"
                for _ in range(50):
                    after = counters()
                    diff = [k for k in after if after[k] != before.get(k, 0)]
                    if diff:
                        ct = diff[0]
                        break
                steps.append({"ct": ct, "entries": entries()})
            results.append(steps)
        json.dump(results, sys.stdout)
    finally:
        teardown()


if __name__ == "__main__":
    main()
