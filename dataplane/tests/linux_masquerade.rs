//! Differential test against the Linux kernel: the same masquerade decisions in a network
//! namespace (`nft` masquerade on a veth router) and in `PortAllocator`. Needs root, `ip`,
//! `nft` and `python3`; run with
//! `cargo nextest run -p dataplane --no-default-features --test linux_masquerade --run-ignored all`.
//!
//! Scenario: two inside hosts send UDP from the same source port to one server, once with a
//! high port (40000) and once with a low one (700). Linux keeps the port for the first host
//! and picks another one from the same default range (1024–65535, 600–1023) for the second;
//! the allocator must make the same keep/replace decisions within the same ranges.

use dataplane::nat::{
    NatAction, NatEnv, NatFlags, NatKind, NatRange, Owner, PortAllocator, SYMMETRIC_RSS_KEY, Tuple,
    TupleSet,
};
use dataplane::wire::{Addr, proto};
use std::process::Command;

const SCRIPT: &str = r#"
set -eu
cleanup() {
  [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null || true
  for n in nat-c nat-r nat-s; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
for n in nat-c nat-r nat-s; do ip netns add "$n"; done
ip link add nat-ci netns nat-c type veth peer name nat-ri netns nat-r
ip link add nat-ro netns nat-r type veth peer name nat-so netns nat-s
ip -n nat-c addr add 198.18.0.10/24 dev nat-ci
ip -n nat-c addr add 198.18.0.11/24 dev nat-ci
ip -n nat-r addr add 198.18.0.1/24 dev nat-ri
ip -n nat-r addr add 198.51.100.1/24 dev nat-ro
ip -n nat-s addr add 198.51.100.9/24 dev nat-so
for l in "nat-c nat-ci" "nat-r nat-ri" "nat-r nat-ro" "nat-s nat-so"; do
  set -- $l; ip -n "$1" link set "$2" up; ip -n "$1" link set lo up
done
ip -n nat-c route add default via 198.18.0.1
ip netns exec nat-r sysctl -qw net.ipv4.ip_forward=1
ip netns exec nat-r nft -f - <<'NFT'
table ip nat {
  chain postrouting {
    type nat hook postrouting priority 100;
    oifname "nat-ro" masquerade
  }
}
NFT
ip netns exec nat-s timeout 10 python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.9", 5000))
for _ in range(4):
    data, peer = s.recvfrom(100)
    print(data.decode(), peer[0], peer[1], flush=True)
' > "$OUTF" &
SRV=$!
sleep 0.5
ip netns exec nat-c timeout 5 python3 -c '
import socket, time
for port in (40000, 700):
    for src in ("198.18.0.10", "198.18.0.11"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, port))
        s.sendto(("%s:%d" % (src, port)).encode(), ("198.51.100.9", 5000))
        time.sleep(0.1)
'
wait "$SRV"
"#;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `(inside src, inside port, translated port)` as Linux chose them.
fn kernel_decisions() -> Vec<(String, u16, u16)> {
    let out = std::env::temp_dir().join(format!("nat-masq-{}.txt", std::process::id()));
    let st = Command::new("bash")
        .args(["-c", SCRIPT])
        .env("OUTF", &out)
        .status()
        .expect("run bash");
    assert!(st.success(), "namespace script failed: {st}");
    let text = std::fs::read_to_string(&out).expect("server output");
    let _ = std::fs::remove_file(&out);
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (src, port) = f[0].split_once(':').unwrap();
            assert_eq!(f[1], "198.51.100.1", "masqueraded to the router's address");
            (
                src.to_string(),
                port.parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root, ip, nft, python3 (creates namespaces nat-c, nat-r, nat-s)"]
fn masquerade_port_choices_match_the_kernel() {
    for t in ["ip", "nft", "python3"] {
        assert!(have(t), "{t} missing");
    }
    let kernel = kernel_decisions();
    assert_eq!(kernel.len(), 4, "{kernel:?}");
    eprintln!("kernel (inside addr, inside port, masqueraded port): {kernel:?}");

    // One worker: Linux has one table, so the owner constraint is trivially met.
    let owner = Owner::spread(&SYMMETRIC_RSS_KEY, 128, 1).unwrap();
    let mut al = PortAllocator::new(0);
    let public = Addr::from_v4([198, 51, 100, 1]);
    let server = Addr::from_v4([198, 51, 100, 9]);
    let env = NatEnv {
        egress_addr: Some(public),
        ingress_addr: None,
    };
    let masq = NatAction {
        kind: NatKind::Masquerade,
        range: NatRange {
            addr: None,
            ports: None,
        },
        flags: NatFlags::default(),
    };
    let mut table = TupleSet::default();
    for (src, port, kport) in &kernel {
        let ip: std::net::Ipv4Addr = src.parse().unwrap();
        let orig = Tuple::new(Addr::from_v4(ip.octets()), server, proto::UDP, *port, 5000);
        let b = al
            .bind(&orig, None, Some(&masq), &env, &owner, &mut table)
            .unwrap();
        table.insert(&b);
        let ours = b.reply.dport;
        eprintln!("{src}:{port}: kernel {kport}, ours {ours}");
        let range = dataplane::nat::alloc::default_port_range(*port);
        assert_eq!(
            ours == *port,
            kport == port,
            "keep decision for {src}:{port}: kernel {kport}, ours {ours}"
        );
        assert!(
            (range.0..=range.1).contains(kport),
            "kernel {kport} outside {range:?}"
        );
        assert!(
            (range.0..=range.1).contains(&ours),
            "ours {ours} outside {range:?}"
        );
    }
}
