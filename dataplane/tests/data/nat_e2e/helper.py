#!/usr/bin/env python3
"""fwd_nat_e2e helper: small bounded clients/servers run inside the test namespaces.
Every operation has a timeout; output is one line a test can assert on."""
import errno
import os
import socket
import struct
import sys
import time


def udp_serve(addr, port, seconds, answer):
    """Answer each datagram on `addr:port` with `answer(data, peer)` for `seconds`."""
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    s.settimeout(0.2)
    end = time.time() + float(seconds)
    while time.time() < end:
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        reply = answer(data, peer)
        if reply is not None:
            s.sendto(reply, peer)


def udp_echo(addr, port, seconds):
    """Answer each datagram with 'from <source ip>' for `seconds`."""
    udp_serve(addr, port, seconds, lambda data, peer: b"from " + peer[0].encode())


def udp_ask(host, port):
    """Send one datagram (3 tries); print the answer or the error."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((host, int(port)))
    for _ in range(3):
        s.send(b"hello")
        try:
            print(s.recv(2048).decode())
            return
        except ConnectionRefusedError:
            print("refused")
            return
        except socket.timeout:
            continue
    print("timeout")


def udp_mirror(addr, port, seconds):
    """Send each datagram back as it came (any size) for `seconds`; log its size and
    source."""

    def answer(data, peer):
        print(len(data), peer[0], flush=True)
        return data

    udp_serve(addr, port, seconds, answer)


def udp_big(host, port, size):
    """Send one datagram of `size` patterned bytes (3 tries); print 'echo <n> ok' when the
    same bytes come back, else what came or the error."""
    payload = bytes((i * 7 + 3) & 0xFF for i in range(int(size)))
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((host, int(port)))
    for _ in range(3):
        s.send(payload)
        try:
            data = s.recv(65535)
        except socket.timeout:
            continue
        except OSError as e:
            # A packet-too-big for an earlier try (EMSGSIZE): the path MTU is learnt,
            # the next send is cut for it.
            if e.errno == errno.EMSGSIZE:
                continue
            raise
        print("echo", len(data), "ok" if data == payload else "differs")
        return
    print("timeout")


def hold_server(addr, port, seconds):
    """Accept connections and echo lines on each for `seconds` (one thread per peer)."""
    import threading

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(16)
    ls.settimeout(0.2)
    end = time.time() + float(seconds)

    def serve(c):
        c.settimeout(0.2)
        buf = b""
        while time.time() < end:
            try:
                d = c.recv(1024)
            except socket.timeout:
                continue
            except OSError:
                break
            if not d:
                break
            c.sendall(d)
        c.close()

    while time.time() < end:
        try:
            c, _ = ls.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def connect_many(host, port, n, hold):
    """Open n connections one after the other (2 s connect timeout each), hold them all
    `hold` seconds, then print how many connected, e.g. 'connected 2 of 3'."""
    socks = []
    ok = 0
    for _ in range(int(n)):
        s = socket.socket()
        s.settimeout(2.0)
        try:
            s.connect((host, int(port)))
            ok += 1
        except OSError:
            pass
        socks.append(s)
    time.sleep(float(hold))
    print("connected %d of %s" % (ok, n))


def echo_session(host, port, go_file, wait_s):
    """One connection: a line before, then (after `go_file` appears) a line after; print
    'before-ok after-ok' or where it failed."""
    s = socket.create_connection((host, int(port)), timeout=3)
    s.settimeout(3)
    s.sendall(b"before\n")
    if s.recv(64) != b"before\n":
        print("before-failed")
        return
    print("before-ok", flush=True)
    end = time.time() + float(wait_s)
    while not os.path.exists(go_file):
        if time.time() > end:
            print("no-go")
            return
        time.sleep(0.05)
    try:
        s.sendall(b"after\n")
        got = s.recv(64)
    except OSError as e:
        print("after-failed %s" % e)
        return
    print("after-ok" if got == b"after\n" else "after-failed %r" % got)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def raw_tcp(src, dst, sport, dport, flags, count):
    """Send `count` TCP segments with the given flag byte (the kernel adds the IP header)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    for i in range(int(count)):
        hdr = struct.pack("!HHIIBBHHH", int(sport), int(dport), 1000 + i, 0, 5 << 4,
                          int(flags, 0), 64240, 0, 0)
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(hdr))
        c = csum(pseudo + hdr)
        hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
        s.sendto(hdr, (dst, 0))
        time.sleep(0.05)
    print("sent %s" % count)


def control(path, request):
    """One JSON line request on the control socket; print the response line."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(('{"v":1,"id":1,"request":%s}\n' % request).encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    print(buf.decode().strip())


def udp_datagram(src, dst, sport, dport, data):
    """A UDP header and `data`, checksummed over the pseudo-header of either family."""
    v6 = ":" in dst
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    length = 8 + len(data)
    hdr = struct.pack("!HHHH", int(sport), int(dport), length, 0)
    if v6:
        pseudo = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack("!IxxxB", length, 17)
    else:
        pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17, length)
    c = csum(pseudo + hdr + data) or 0xFFFF
    return hdr[:6] + struct.pack("!H", c) + data


def ip_fragment(src, dst, ident, off, more, piece):
    """One fragment of a UDP datagram: `piece` at byte `off` of the IP payload."""
    flags = (off >> 3) | (0x2000 if more else 0)
    if ":" in dst:
        fh = struct.pack("!BBHI", 17, 0, (off & ~7) | (1 if more else 0), ident)
        return (struct.pack("!IHBB", 6 << 28, len(fh) + len(piece), 44, 64)
                + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + fh + piece)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(piece), ident & 0xFFFF, flags, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + piece


def raw_socket(dst):
    """A raw socket that sends whole IP packets as built (IP_HDRINCL / IPv6 IPPROTO_RAW):
    the kernel routes them and neither fragments nor reassembles."""
    return socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_RAW,
                         socket.IPPROTO_RAW)


def frag_train(src, dst, sport, dport, tag, size, ident, spec):
    """Send one UDP datagram of `size` data bytes starting with `tag` as the fragments of
    `spec`: comma-separated `start-end` byte ranges of the IP payload (UDP header
    included), sent in that order; a fragment has MF set unless it reaches the end.
    `start-end!` forces the last-fragment bit, `start-end+` forces MF, `wN` waits N
    seconds before going on."""
    data = (tag + " ").encode()
    data += bytes((i * 7 + 3) & 0xFF for i in range(int(size) - len(data)))
    dgram = udp_datagram(src, dst, sport, dport, data)
    s = raw_socket(dst)
    sent = 0
    for item in spec.split(","):
        if item.startswith("w"):
            time.sleep(float(item[1:]))
            continue
        more = None
        if item[-1] in "!+":
            more = item[-1] == "+"
            item = item[:-1]
        a, b = (int(x) for x in item.split("-"))
        b = min(b, len(dgram))
        if more is None:
            more = b < len(dgram)
        s.sendto(ip_fragment(src, dst, int(ident), a, more, dgram[a:b]), (dst, 0))
        sent += 1
        time.sleep(0.01)
    print("sent %d of %d bytes" % (sent, len(dgram)))


def frag_flood(src, dst, dport, count, size, seconds):
    """`count` first fragments (MF set, offset 0, `size` bytes of payload, a fresh id
    each) to `dst` paced evenly over `seconds`: datagrams that never complete."""
    s = raw_socket(dst)
    count, size = int(count), int(size)
    gap = float(seconds) / max(count, 1)
    start = time.time()
    piece = udp_datagram(src, dst, 40000, dport, bytes(size - 8))[:size]
    for i in range(count):
        s.sendto(ip_fragment(src, dst, 0x10000 + i, 0, True, piece), (dst, 0))
        delay = start + (i + 1) * gap - time.time()
        if delay > 0:
            time.sleep(delay)
    print("flooded %d" % count)


def udp_sink(addr, port, seconds, reply="ok"):
    """Log each datagram as `<length> <source> <first word>` for `seconds`; answer `ok`
    (`reply` "none": no answer)."""

    def answer(data, peer):
        print(len(data), peer[0], data.split(b" ", 1)[0].decode(errors="replace"), flush=True)
        return None if reply == "none" else b"ok"

    udp_serve(addr, port, seconds, answer)


def udp_pings(host, port, count, gap):
    """`count` request/answer exchanges, one every `gap` seconds, each answer awaited
    1 s; print 'answered <k> of <count>'."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((host, int(port)))
    answered = 0
    for i in range(int(count)):
        msg = b"ping %d" % i
        s.send(msg)
        end = time.time() + 1.0
        while time.time() < end:
            try:
                if s.recv(2048) == msg:
                    answered += 1
                    break
            except (socket.timeout, ConnectionRefusedError):
                break
        time.sleep(float(gap))
    print("answered %d of %s" % (answered, count))


if __name__ == "__main__":
    cmd = sys.argv[1]
    fn = {
        "udp-echo": udp_echo,
        "udp-ask": udp_ask,
        "udp-mirror": udp_mirror,
        "udp-big": udp_big,
        "hold-server": hold_server,
        "connect-many": connect_many,
        "echo-session": echo_session,
        "raw-tcp": raw_tcp,
        "control": control,
        "frag-train": frag_train,
        "frag-flood": frag_flood,
        "udp-sink": udp_sink,
        "udp-pings": udp_pings,
    }[cmd]
    fn(*sys.argv[2:])
