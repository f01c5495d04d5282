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

/// Sends one TCP segment over a raw socket: src dst sport dport flags options-hex.
const SEND: &str = r#"
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
src, dst, sport, dport, flags, opts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), bytes.fromhex(sys.argv[6])
tcp = struct.pack('!HHIIBBHHH', sport, dport, 1000, 0, ((20 + len(opts)) // 4) << 4, flags, 64240, 0, 0) + opts
ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(tcp))
tcp = tcp[:16] + struct.pack('!H', csum(ph + tcp)) + tcp[18:]
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).sendto(tcp, (dst, 0))
"#;

/// Prints `sport options-hex checksum-ok` for each TCP segment received within argv[1] s.
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
        print(struct.unpack('!H', t[:2])[0], t[20:(t[12] >> 4) * 4].hex(), int(csum(ph + t) == 0), flush=True)
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

#[test]
#[ignore = "needs root, ip, nft, python3 (run with --ignored)"]
fn mss_clamping_matches_the_kernel() {
    let r = Router::setup();
    let dir = std::env::temp_dir();
    let pid = std::process::id();
    let (send, recv, rules) = (
        dir.join(format!("mss-send-{pid}.py")),
        dir.join(format!("mss-recv-{pid}.py")),
        dir.join(format!("mss-rules-{pid}.nft")),
    );
    std::fs::write(&send, SEND).unwrap();
    std::fs::write(&recv, RECV).unwrap();
    std::fs::write(&rules, RULES).unwrap();
    ok(&[
        "ip",
        "netns",
        "exec",
        &r.ns[1],
        "nft",
        "-f",
        rules.to_str().unwrap(),
    ]);
    let ours = load_text(RULES, &PortsByName::new(), 1).unwrap();

    let rx = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &r.ns[2],
            "python3",
            recv.to_str().unwrap(),
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut kernel_moved = Vec::new();
    let mut ours_out = HashMap::new();
    let mut before = r.counters();
    let mut ours_before: Vec<u64> = ours.counters().iter().map(|c| c.0).collect();
    for (i, &(dport, opts)) in PROBES.iter().enumerate() {
        let sport = 41000 + u16::try_from(i).unwrap();
        ok(&[
            "ip",
            "netns",
            "exec",
            &r.ns[0],
            "python3",
            send.to_str().unwrap(),
            "198.18.1.2",
            "198.18.2.2",
            &sport.to_string(),
            &dport.to_string(),
            "2",
            opts,
        ]);
        let after = r.counters();
        kernel_moved.push(
            after
                .iter()
                .zip(&before)
                .map(|(a, b)| a != b)
                .collect::<Vec<_>>(),
        );
        before = after;

        // fwd: the same segment through the forward hook and the MSS rewrite.
        let (mut f, ip) = segment(sport, dport, &hex(opts));
        let mut ctx = PacketCtx {
            ip: &ip,
            iif: Some(0),
            oif: Some(1),
            ct_state: ct_state::NEW,
            ct_status: 0,
            ct_mark: 0,
            mark: 0,
            len: u32::from(ip.ip_len),
            first_packet: true,
            facts: Facts {
                mss: tcpopt::find_mss(&f, &ip),
                rt_mss: rt_mss(Family::V4, MTU.min(1500)),
                ..Facts::default()
            },
        };
        let res = ours.eval(Hook::Forward, &mut ctx, 0, 1);
        if let (Some(new), Mss::Found { off, .. }) = (res.mss, ctx.facts.mss) {
            assert!(tcpopt::set_mss(&mut f, &ip, off, new));
        }
        let now: Vec<u64> = ours.counters().iter().map(|c| c.0).collect();
        let moved: Vec<bool> = now.iter().zip(&ours_before).map(|(a, b)| a != b).collect();
        ours_before = now;
        assert_eq!(
            moved, kernel_moved[i],
            "counters, probe {i} ({dport}, {opts})"
        );
        let doff = usize::from(f[14 + 32] >> 4) * 4;
        ours_out.insert(sport, f[54..34 + doff].to_vec());
    }
    let out = rx.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen = 0;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [sport, opts, csum_ok] = w[..] else {
            continue;
        };
        let sport: u16 = sport.parse().unwrap();
        let Some(ours) = ours_out.get(&sport) else {
            continue;
        };
        seen += 1;
        let i = usize::from(sport - 41000);
        assert_eq!(
            hex(opts),
            *ours,
            "options after the router, probe {i} ({PROBES:?})"
        );
        // The kernel's checksum is wrong only for the value at an odd offset.
        assert_eq!(
            csum_ok == "1",
            PROBES[i].1 != "01020405b4000000",
            "kernel checksum, probe {i}"
        );
    }
    assert_eq!(seen, PROBES.len(), "every probe crossed the router: {text}");
    for p in [send, recv, rules] {
        let _ = std::fs::remove_file(p);
    }
}
