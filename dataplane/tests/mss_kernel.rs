//! MSS clamping against the Linux kernel: the same ruleset loaded with `nft -f` in a
//! router namespace and compiled by `dataplane::rules`; SYNs with hand-made option lists
//! sent through the kernel router (a raw socket in a client namespace, captured in a
//! server namespace), and the same segments run through fwd's evaluation and MSS rewrite
//! (`wire::tcpopt`). Per probe: the options that leave and the rule counters that move
//! must be the kernel's.
//!
//! One known difference is asserted as such: for an MSS value at an odd offset the kernel
//! writes a wrong TCP checksum; fwd's is valid (docs/rules.md, "MSS clamping").
//!
//! Needs root, `ip`, `nft`, `python3`:
//! `cargo test -p dataplane --no-default-features --test mss_kernel -- --ignored`

mod common;

use common::netns::{ok, sh};
use dataplane::rules::compile::{Facts, rt_mss};
use dataplane::rules::{Hook, PacketCtx, PortsByName, ct_state, load_text};
use dataplane::wire::build::{EthSpec, Frame, IpSpec, L4Spec, TcpSpec};
use dataplane::wire::tcpopt::{self, Mss};
use dataplane::wire::{self, Addr, Family, IpInfo, Parsed, TcpFlags};
use std::collections::HashMap;

const RULES: &str = "table inet t {
	chain f {
		type filter hook forward priority filter; policy accept;
		tcp flags syn / syn,rst tcp option maxseg size set rt mtu counter
		tcp dport 81 tcp option maxseg size set 1300 counter
		tcp dport 82 tcp option maxseg size set 1500 counter
	}
}
";

/// The server side's MTU: `rt mtu` gives 1360.
const MTU: u16 = 1400;

/// Sends one TCP segment over a raw socket: src dst sport dport flags options-hex [tos].
const SEND: &str = r#"
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
src, dst, sport, dport, flags, opts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), bytes.fromhex(sys.argv[6])
tcp = struct.pack('!HHIIBBHHH', sport, dport, 1000, 0, ((20 + len(opts)) // 4) << 4, flags, 64240, 0, 0) + opts
ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack('!H', csum(ph + tcp)) + tcp[18:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
if len(sys.argv) > 7: s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[7]))
s.sendto(tcp, (dst, 0))
"#;

/// Prints `sport options-hex checksum-ok tos` for each TCP segment received within argv[1]
/// s (the kernel checked the IP header checksum before a raw socket sees the packet).
const RECV: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP); s.settimeout(float(sys.argv[1]))
try:
    while True:
        p = s.recv(2000); t = p[(p[0] & 15) * 4:]
        ph = p[12:20] + struct.pack('!BBH', 0, 6, len(t))
        print(struct.unpack('!H', t[:2])[0], t[20:(t[12] >> 4) * 4].hex() or '-', int(csum(ph + t) == 0), p[1], flush=True)
except socket.timeout:
    pass
"#;

struct Router {
    ns: [String; 3],
}

impl Router {
    /// Client `a` (198.18.1.2) — router `r` — server `b` (198.18.2.2), the server link
    /// with MTU [`MTU`].
    fn setup() -> Router {
        let pid = std::process::id();
        let ns = ["a", "r", "b"].map(|n| format!("mss{n}-{pid}"));
        let r = Router { ns };
        r.cleanup();
        let [a, rt, b] = &r.ns;
        for n in &r.ns {
            ok(&["ip", "netns", "add", n]);
            ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        let (ar, ra, rb, br) = (
            format!("ma{pid}"),
            format!("mra{pid}"),
            format!("mrb{pid}"),
            format!("mb{pid}"),
        );
        for (x, xi, y, yi) in [(a, &ar, rt, &ra), (rt, &rb, b, &br)] {
            ok(&[
                "ip", "link", "add", xi, "netns", x, "type", "veth", "peer", "name", yi, "netns", y,
            ]);
        }
        for (n, dev, addr) in [
            (a, &ar, "198.18.1.2/24"),
            (rt, &ra, "198.18.1.1/24"),
            (rt, &rb, "198.18.2.1/24"),
            (b, &br, "198.18.2.2/24"),
        ] {
            ok(&["ip", "-n", n, "addr", "add", addr, "dev", dev]);
            ok(&["ip", "-n", n, "link", "set", dev, "up"]);
        }
        ok(&["ip", "-n", rt, "link", "set", &rb, "mtu", &MTU.to_string()]);
        for (n, gw) in [(a, "198.18.1.1"), (b, "198.18.2.1")] {
            ok(&["ip", "-n", n, "route", "add", "default", "via", gw]);
        }
        ok(&[
            "ip",
            "netns",
            "exec",
            rt,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let _ = sh(&["ip", "netns", "exec", a, "ping", "-c1", "-W1", "198.18.2.2"]);
        r
    }

    fn cleanup(&self) {
        for n in &self.ns {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }

    /// Packets per rule of the kernel's ruleset (each rule has one counter, at its end).
    fn counters(&self) -> Vec<u64> {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns[1],
            "nft",
            "-j",
            "list",
            "ruleset",
        ]);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nft json");
        j["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i.get("rule"))
            .map(|r| {
                r["expr"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The probes: destination port and option bytes (multiples of 4).
const PROBES: &[(u16, &str)] = &[
    (80, "020405b4"),         // larger: lowered to rt mtu
    (80, "020404b0"),         // smaller: left alone
    (80, "01010101"),         // absent
    (80, "02040000"),         // zero: left alone
    (80, "05b40000"),         // another option running past the header: ignored
    (80, "02ff05b4"),         // MSS running past the header: the rule ends
    (80, "0202000001010101"), // MSS too short: the rule ends
    (80, "00000000020405b4"), // after EOL: still found
    (80, "0402020405b40101"), // after SACK-permitted
    (80, "0103030702040578"), // after window scale, already 1400
    (80, "01020405b4000000"), // at an odd offset
    (81, "020405b4"),         // rt mtu, then 1300
    (82, "02042328"),         // rt mtu, then 1500 does not raise it
];

/// The segment as the data plane parses it, and its frame.
fn segment(sport: u16, dport: u16, opts: &[u8]) -> (Vec<u8>, IpInfo) {
    let nops = vec![1u8; opts.len()];
    let tcp = TcpSpec {
        sport,
        dport,
        seq: 1000,
        flags: TcpFlags(TcpFlags::SYN),
        window: 64240,
        payload: &nops,
        ..TcpSpec::default()
    };
    let ip = IpSpec::new(
        Addr::from_v4([198, 18, 1, 2]),
        Addr::from_v4([198, 18, 2, 2]),
    );
    let mut f = Frame::ip(EthSpec::default(), ip, L4Spec::Tcp(tcp))
        .to_vec()
        .unwrap();
    f[14 + 20 + 12] = u8::try_from((20 + opts.len()) / 4).unwrap() << 4;
    let Ok(Parsed::Ip(_, ip)) = wire::parse(&f, &wire::TRUST_ALL) else {
        panic!("parse")
    };
    f[54..54 + opts.len()].copy_from_slice(opts);
    wire::rewrite::fill_checksums(&mut f, &ip).unwrap();
    (f, ip)
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The sender and receiver scripts and the ruleset, written for this process, and the
/// ruleset loaded into the router.
struct Files {
    send: std::path::PathBuf,
    recv: std::path::PathBuf,
    rules: std::path::PathBuf,
}

impl Files {
    fn load(r: &Router, rules: &str) -> Files {
        let dir = std::env::temp_dir();
        let pid = std::process::id();
        let f = Files {
            send: dir.join(format!("mss-send-{pid}.py")),
            recv: dir.join(format!("mss-recv-{pid}.py")),
            rules: dir.join(format!("mss-rules-{pid}.nft")),
        };
        std::fs::write(&f.send, SEND).unwrap();
        std::fs::write(&f.recv, RECV).unwrap();
        std::fs::write(&f.rules, rules).unwrap();
        ok(&[
            "ip",
            "netns",
            "exec",
            &r.ns[1],
            "nft",
            "-f",
            f.rules.to_str().unwrap(),
        ]);
        f
    }

    /// Starts the receiver in the server namespace (it stops after 4 s of silence).
    fn listen(&self, r: &Router) -> std::process::Child {
        let rx = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &r.ns[2],
                "python3",
                self.recv.to_str().unwrap(),
                "4",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        rx
    }

    /// Sends a SYN from the client through the router.
    fn send(&self, r: &Router, sport: u16, dport: u16, opts: &str, tos: u8) {
        ok(&[
            "ip",
            "netns",
            "exec",
            &r.ns[0],
            "python3",
            self.send.to_str().unwrap(),
            "198.18.1.2",
            "198.18.2.2",
            &sport.to_string(),
            &dport.to_string(),
            "2",
            opts,
            &tos.to_string(),
        ]);
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for p in [&self.send, &self.recv, &self.rules] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What the receiver printed: (source port, options hex, TCP checksum ok, TOS) a line.
fn received(rx: std::process::Child) -> (Vec<(u16, String, bool, u8)>, String) {
    let out = rx.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = text
        .lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            let [sport, opts, csum_ok, tos] = w[..] else {
                return None;
            };
            Some((
                sport.parse().ok()?,
                opts.trim_matches('-').to_string(),
                csum_ok == "1",
                tos.parse().ok()?,
            ))
        })
        .collect();
    (lines, text)
}

/// fwd's packet context for a forwarded segment.
fn fwd_ctx<'a>(ip: &'a IpInfo, facts: Facts) -> PacketCtx<'a> {
    PacketCtx {
        ip,
        iif: Some(0),
        oif: Some(1),
        ct_state: ct_state::NEW,
        ct_status: 0,
        ct_mark: 0,
        mark: 0,
        len: u32::from(ip.ip_len),
        first_packet: true,
        facts,
    }
}

/// Which rule counters moved since `before` (updated).
fn moved(now: Vec<u64>, before: &mut Vec<u64>) -> Vec<bool> {
    let m = now.iter().zip(before.iter()).map(|(a, b)| a != b).collect();
    *before = now;
    m
}

#[test]
#[ignore = "needs root, ip, nft, python3 (run with --ignored)"]
fn mss_clamping_matches_the_kernel() {
    let r = Router::setup();
    let files = Files::load(&r, RULES);
    let ours = load_text(RULES, &PortsByName::new(), 1).unwrap();
    let rx = files.listen(&r);
    let mut ours_out = HashMap::new();
    let mut before = r.counters();
    let mut ours_before: Vec<u64> = ours.counters().iter().map(|c| c.0).collect();
    for (i, &(dport, opts)) in PROBES.iter().enumerate() {
        let sport = 41000 + u16::try_from(i).unwrap();
        files.send(&r, sport, dport, opts, 0);
        let kernel_moved = moved(r.counters(), &mut before);

        // fwd: the same segment through the forward hook and the MSS rewrite.
        let (mut f, ip) = segment(sport, dport, &hex(opts));
        let mut ctx = fwd_ctx(
            &ip,
            Facts {
                mss: tcpopt::find_mss(&f, &ip),
                rt_mss: rt_mss(Family::V4, MTU.min(1500)),
                ..Facts::default()
            },
        );
        let res = ours.eval(Hook::Forward, &mut ctx, 0, 1);
        if let (Some(new), Mss::Found { off, .. }) = (res.mss, ctx.facts.mss) {
            assert!(tcpopt::set_mss(&mut f, &ip, off, new));
        }
        let ours_moved = moved(
            ours.counters().iter().map(|c| c.0).collect(),
            &mut ours_before,
        );
        assert_eq!(
            ours_moved, kernel_moved,
            "counters, probe {i} ({dport}, {opts})"
        );
        let doff = usize::from(f[14 + 32] >> 4) * 4;
        ours_out.insert(sport, f[54..34 + doff].to_vec());
    }
    let (lines, text) = received(rx);
    let mut seen = 0;
    for (sport, opts, csum_ok, _) in lines {
        let Some(ours) = ours_out.get(&sport) else {
            continue;
        };
        seen += 1;
        let i = usize::from(sport - 41000);
        assert_eq!(
            hex(&opts),
            *ours,
            "options after the router, probe {i} ({PROBES:?})"
        );
        // The kernel's checksum is wrong only for the value at an odd offset.
        assert_eq!(
            csum_ok,
            PROBES[i].1 != "01020405b4000000",
            "kernel checksum, probe {i}"
        );
    }
    assert_eq!(seen, PROBES.len(), "every probe crossed the router: {text}");
}

const DSCP_RULES: &str = "table inet t {
	chain f {
		type filter hook forward priority filter; policy accept;
		tcp dport 90 ip dscp set ef counter
		tcp dport 91 ip dscp set cs1 counter
		ip dscp cs1 counter
		tcp dport 92 ip dscp set 0x3f counter
		tcp dport 93 ip6 dscp set ef counter
	}
}
";

/// Destination port and the TOS the client sends.
const DSCP_PROBES: &[(u16, u8)] = &[
    (90, 0x00),
    (90, 0x03), // ECN bits: kept
    (91, 0xb8), // ef → cs1, then the match sees cs1
    (92, 0x21), // cs1 (matched) → 0x3f
    (93, 0x20), // ip6 on IPv4: the rule ends, nothing written
    (94, 0x28), // no rule
];

#[test]
#[ignore = "needs root, ip, nft, python3 (run with --ignored)"]
fn dscp_set_matches_the_kernel() {
    let r = Router::setup();
    let files = Files::load(&r, DSCP_RULES);
    let ours = load_text(DSCP_RULES, &PortsByName::new(), 1).unwrap();
    let rx = files.listen(&r);
    let mut ours_tos = HashMap::new();
    let mut before = r.counters();
    let mut ours_before: Vec<u64> = ours.counters().iter().map(|c| c.0).collect();
    for (i, &(dport, tos)) in DSCP_PROBES.iter().enumerate() {
        let sport = 42000 + u16::try_from(i).unwrap();
        files.send(&r, sport, dport, "", tos);
        let kernel_moved = moved(r.counters(), &mut before);
        // fwd: the same segment (that TOS, header checksum refilled) through the forward
        // hook and the DSCP rewrite.
        let (mut f, ip) = segment(sport, dport, &[]);
        f[15] = tos;
        wire::rewrite::fill_checksums(&mut f, &ip).unwrap();
        let mut ctx = fwd_ctx(
            &ip,
            Facts {
                dscp: tos >> 2,
                ..Facts::default()
            },
        );
        let res = ours.eval(Hook::Forward, &mut ctx, 0, 1);
        if let Some(d) = res.dscp {
            assert!(wire::dscp::set_dscp(&mut f, &ip, d));
        }
        let ours_moved = moved(
            ours.counters().iter().map(|c| c.0).collect(),
            &mut ours_before,
        );
        assert_eq!(
            ours_moved, kernel_moved,
            "counters, probe {i} ({dport}, {tos:#x})"
        );
        let hdr = &f[14..34];
        let sum: u32 = hdr
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        assert_eq!(
            (sum & 0xffff) + (sum >> 16),
            0xffff,
            "fwd's header checksum, probe {i}"
        );
        ours_tos.insert(sport, f[15]);
    }
    let (lines, text) = received(rx);
    let mut seen = 0;
    for (sport, _, _, tos) in lines {
        let Some(&ours) = ours_tos.get(&sport) else {
            continue;
        };
        seen += 1;
        assert_eq!(tos, ours, "TOS after the router, port {sport}");
    }
    assert_eq!(seen, DSCP_PROBES.len(), "every probe crossed: {text}");
}

const OPT_RULES: &str = "table inet t {
	chain f {
		type filter hook forward priority filter; policy accept;
		tcp dport 80 tcp option maxseg exists counter
		tcp dport 80 tcp option maxseg missing counter
		tcp dport 80 tcp option maxseg size 1460 counter
		tcp dport 80 tcp option maxseg size < 1000 counter
		tcp dport 80 tcp option maxseg size != 1460 counter
		tcp dport 80 tcp option window exists counter
		tcp dport 80 tcp option window count 7 counter
		tcp dport 80 tcp option window count { 0, 14 } counter
		tcp dport 80 tcp option sack-perm exists counter
		tcp dport 80 tcp option sack-perm missing counter
		tcp dport 80 tcp option timestamp exists counter
		tcp dport 80 tcp option timestamp missing counter
		tcp dport 80 tcp option maxseg size 1400-1460 tcp option sack-perm exists counter
		tcp dport 80 tcp option maxseg exists tcp option window count != 7 counter
		tcp dport 80 tcp option window . tcp option sack-perm { exists . missing } counter
	}
}
";

/// Option lists (multiples of 4): a Linux SYN, a bare one, each option alone, odd sizes,
/// an option running past the header, a short MSS, a window scale after EOL.
const OPT_PROBES: &[&str] = &[
    "020405b40402080a000000010000000001030307", // Linux: MSS 1460, SACK, TS, WS 7
    "",                                         // no options
    "020403e8",                                 // MSS 1000
    "02040320",                                 // MSS 800
    "01030300",                                 // WS 0 (after a NOP)
    "0103030e",                                 // WS 14
    "04020000",                                 // SACK-permitted alone
    "080a00000001000000000000",                 // timestamp alone (and padding)
    "020405780402",                             // MSS 1400 + SACK-permitted
    "0202000001010101",                         // MSS too short to read
    "02ff05b4",                                 // MSS running past the header
    "00000000010303070000",                     // WS after EOL (still found)
    "0103030204020000",                         // WS 2, SACK-permitted
    "020405b401030302",                         // MSS 1460, WS 2
];

/// `tcp option … exists|missing`, `maxseg size`, `window count` against the kernel: the
/// same SYNs through the kernel router and through fwd's evaluation (the option walk of
/// `wire::tcpopt::read_opts`, as the worker fills it), the same rule counters move. Each
/// rule starts with `tcp dport 80`: the server's RST coming back through the router
/// (options missing) must not count.
#[test]
#[ignore = "needs root, ip, nft, python3 (run with --ignored)"]
fn tcp_option_matches_count_as_in_the_kernel() {
    let r = Router::setup();
    let files = Files::load(&r, OPT_RULES);
    let ours = load_text(OPT_RULES, &PortsByName::new(), 1).unwrap();
    let rx = files.listen(&r);
    let mut before = r.counters();
    let mut ours_before: Vec<u64> = ours.counters().iter().map(|c| c.0).collect();
    let mut moved_any = vec![false; before.len()];
    for (i, opts) in OPT_PROBES.iter().enumerate() {
        // Pad to a multiple of 4 with EOL, as a sender must.
        let mut o = hex(opts);
        o.resize(o.len().div_ceil(4) * 4, 0);
        let opts_hex: String = o.iter().map(|b| format!("{b:02x}")).collect();
        let sport = 42000 + u16::try_from(i).unwrap();
        files.send(&r, sport, 80, &opts_hex, 0);
        let kernel_moved = moved(r.counters(), &mut before);
        let (f, ip) = segment(sport, 80, &o);
        let mut ctx = fwd_ctx(
            &ip,
            Facts {
                mss: tcpopt::find_mss(&f, &ip),
                tcp_opts: tcpopt::read_opts(&f, &ip),
                ..Facts::default()
            },
        );
        ours.eval(Hook::Forward, &mut ctx, 0, 1);
        let ours_moved = moved(
            ours.counters().iter().map(|c| c.0).collect(),
            &mut ours_before,
        );
        assert_eq!(ours_moved, kernel_moved, "counters, probe {i} ({opts_hex})");
        for (m, k) in moved_any.iter_mut().zip(&kernel_moved) {
            *m |= k;
        }
    }
    // Every rule moved for some probe: none of them is vacuous.
    assert!(moved_any.iter().all(|&m| m), "{moved_any:?}");
    let (lines, text) = received(rx);
    assert!(
        lines.iter().filter(|l| l.0 >= 42000).count() >= OPT_PROBES.len() - 2,
        "the probes crossed the router: {text}"
    );
}
