//! Differential test against the Linux kernel: the same ruleset loaded with `nft -f` in a
//! network namespace and compiled by `dataplane::rules`; the same probe packets (sent
//! from a second namespace over a veth pair); per-rule counters compared after each probe.
//! Every rule carries a `counter`, so "the same counters moved" means the same rules
//! matched and the same verdict was reached.
//!
//! Needs root, `ip`, `nft`, `bash` and `ping`:
//! `cargo test -p dataplane --no-default-features --test rules_kernel -- --ignored`

use dataplane::rules::{Hook, PacketCtx, PortsByName, ct_state, load_text};
use dataplane::wire::{Addr, Family, Fragment, IpInfo, L4Info, TcpFlags, TcpInfo, proto};
use std::process::Command;

const RULESET: &str = r#"table inet fw {
	set allowed {
		type inet_service
		elements = { 80, 443 }
	}

	chain sub {
		tcp dport 8000-8999 counter return
		counter
	}

	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related counter accept
		iifname "lo" counter accept
		ip saddr 198.18.0.0/24 tcp dport 22 counter accept
		tcp dport @allowed ct state new counter accept
		tcp dport 1000-2000 tcp flags syn / syn,ack counter reject with tcp reset
		tcp dport 7000-9000 counter jump sub
		udp dport != 53 counter drop
		icmp type echo-request limit rate 100/second counter accept
		ip saddr != 198.18.0.1 counter drop
		tcp dport { 5000, 6000-6500 } counter drop
		meta l4proto tcp counter
		udp dport 53 counter accept
	}
}
"#;

const NS_A: &str = "rules-ka";
const NS_K: &str = "rules-kb";
const SRC: [u8; 4] = [198, 18, 0, 1];
const DST: [u8; 4] = [198, 18, 0, 2];

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run")
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Netns;

impl Netns {
    fn setup() -> Netns {
        Netns::cleanup();
        must(&["ip", "netns", "add", NS_A]);
        must(&["ip", "netns", "add", NS_K]);
        must(&[
            "ip", "link", "add", "rules-av", "netns", NS_A, "type", "veth", "peer", "name",
            "rules-kv", "netns", NS_K,
        ]);
        for (ns, dev, addr) in [
            (NS_A, "rules-av", "198.18.0.1/24"),
            (NS_K, "rules-kv", "198.18.0.2/24"),
        ] {
            must(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ]);
            must(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // Resolve ARP once before the probes.
        let _ = sh(&[
            "ip",
            "netns",
            "exec",
            NS_A,
            "ping",
            "-c1",
            "-W1",
            "198.18.0.2",
        ]);
        Netns
    }

    fn cleanup() {
        let _ = sh(&["ip", "netns", "del", NS_A]);
        let _ = sh(&["ip", "netns", "del", NS_K]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Netns::cleanup();
    }
}

/// Kernel counters: (chain, rule index, packets), in listing order.
fn kernel_counters() -> Vec<(String, usize, u64)> {
    let o = sh(&["ip", "netns", "exec", NS_K, "nft", "-j", "list", "ruleset"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nft json");
    let mut out = Vec::new();
    let mut idx: std::collections::HashMap<String, usize> = Default::default();
    for item in j["nftables"].as_array().unwrap() {
        let Some(r) = item.get("rule") else { continue };
        let chain = r["chain"].as_str().unwrap().to_owned();
        let i = idx.entry(chain.clone()).or_default();
        let packets = r["expr"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
            .unwrap_or(0);
        out.push((chain, *i, packets));
        *i += 1;
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    Tcp(u16),
    Udp(u16),
    Ping,
}

fn send(p: Probe) {
    let cmd = match p {
        Probe::Tcp(port) => format!("echo > /dev/tcp/198.18.0.2/{port}"),
        Probe::Udp(port) => format!("echo x > /dev/udp/198.18.0.2/{port}"),
        Probe::Ping => "ping -c1 -W1 198.18.0.2".into(),
    };
    let _ = sh(&[
        "ip", "netns", "exec", NS_A, "timeout", "0.3", "bash", "-c", &cmd,
    ]);
}

fn packet(p: Probe) -> IpInfo {
    let l4 = match p {
        Probe::Tcp(dport) => L4Info::Tcp(TcpInfo {
            sport: 40000,
            dport,
            seq: 0,
            ack: 0,
            flags: TcpFlags(TcpFlags::SYN),
            window: 64240,
            payload_len: 0,
            wscale: Some(7),
            sack_perm: true,
            mss: Some(1460),
        }),
        Probe::Udp(dport) => L4Info::Udp {
            sport: 40000,
            dport,
        },
        Probe::Ping => L4Info::IcmpEcho {
            request: true,
            id: 1,
            seq: 1,
        },
    };
    IpInfo {
        family: Family::V4,
        src: Addr::from_v4(SRC),
        dst: Addr::from_v4(DST),
        proto: match p {
            Probe::Tcp(_) => proto::TCP,
            Probe::Udp(_) => proto::UDP,
            Probe::Ping => proto::ICMP,
        },
        ttl: 64,
        l3_off: 14,
        l4_off: 34,
        ip_len: 60,
        frag: Fragment::None,
        l4: Some(l4),
    }
}

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn verdicts_match_the_kernel() {
    let _ns = Netns::setup();
    let file = std::env::temp_dir().join("rules-kernel-diff.nft");
    std::fs::write(&file, format!("flush ruleset\n{RULESET}")).unwrap();
    must(&[
        "ip",
        "netns",
        "exec",
        NS_K,
        "nft",
        "-f",
        file.to_str().unwrap(),
    ]);

    let ports: PortsByName = [("rules-kv".to_owned(), 0u16)].into_iter().collect();
    let ours = load_text(RULESET, &ports, 1).unwrap();
    let probes = [
        Probe::Tcp(22),
        Probe::Tcp(80),
        Probe::Tcp(443),
        Probe::Tcp(1500),
        Probe::Tcp(7500),
        Probe::Tcp(8500),
        Probe::Tcp(5000),
        Probe::Tcp(6100),
        Probe::Tcp(9999),
        Probe::Udp(53),
        Probe::Udp(54),
        Probe::Ping,
    ];
    let mut before = kernel_counters();
    let mut ours_before = ours.counters();
    for p in probes {
        send(p);
        let after = kernel_counters();
        let mut kernel_moved: Vec<(String, usize)> = after
            .iter()
            .zip(&before)
            .filter(|(a, b)| a.2 != b.2)
            .map(|(a, _)| (a.0.clone(), a.1))
            .collect();
        before = after;

        let ip = packet(p);
        let mut ctx = PacketCtx {
            ip: &ip,
            iif: Some(0),
            oif: None,
            ct_state: ct_state::NEW,
            ct_status: 0,
            ct_mark: 0,
            mark: 0,
            len: 60,
            first_packet: true,
        };
        let verdict = ours.eval(Hook::Input, &mut ctx, 0, 1).verdict;
        let now = ours.counters();
        let src = ours.source();
        let mut ours_moved: Vec<(String, usize)> = Vec::new();
        for (id, (a, b)) in now.iter().zip(&ours_before).enumerate() {
            if a.0 != b.0 {
                let (t, c, r, _) = ours.rule_location(u32::try_from(id).unwrap()).unwrap();
                ours_moved.push((src.tables[t].chains[c].name.clone(), r));
            }
        }
        ours_before = now;
        kernel_moved.sort();
        ours_moved.sort();
        assert_eq!(
            ours_moved, kernel_moved,
            "probe {p:?} (our verdict {verdict:?})"
        );
        eprintln!("{p:?}: {verdict:?} rules {ours_moved:?}");
    }
}
