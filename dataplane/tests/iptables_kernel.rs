//! Differential test of the iptables translator against the kernel: the same iptables
//! script applied with Debian's `iptables` (nft backend) in a namespace and translated by
//! `dataplane::rules::iptables`; the same probes; the same rule counters move (iptables-nft
//! puts a counter on every rule, and so does the translation).
//!
//! Needs root, `ip`, `iptables` (iptables-nft), `nft`, `bash` and `ping`:
//! `cargo test -p dataplane --no-default-features --test iptables_kernel -- --ignored`

mod common;

use common::kernel_diff::{Pair, Probe};
use common::netns::ok;
use dataplane::rules::ast::TableFamily;
use dataplane::rules::{PortsByName, compile, iptables};

/// The documents' style: flush, DROP policies, established/related, lo, multiport,
/// ICMP echo with limit, a user chain with LOG + DROP, plus ranges, negation, REJECT
/// variants, RETURN from a user chain and a comment. `K_IF` is the kernel side's port.
const SCRIPT: &str = r#"
iptables -F
iptables -X
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -P OUTPUT ACCEPT
iptables -N LOGDROP
iptables -A LOGDROP -m limit --limit 5/min -j LOG --log-prefix "fw-drop: "
iptables -A LOGDROP -j DROP
iptables -N SVC
iptables -A SVC -p tcp --dport 8000:8999 -j RETURN
iptables -A SVC -p tcp -j ACCEPT
iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -m state --state INVALID -j DROP
iptables -A INPUT -p tcp -m multiport --dports 22,80,443 -m conntrack --ctstate NEW -j ACCEPT
iptables -A INPUT -p icmp --icmp-type echo-request -m limit --limit 100/s --limit-burst 10 -j ACCEPT
iptables -A INPUT -s 198.18.0.0/24 -p tcp --dport 1000:2000 --syn -m comment --comment "reset range" -j REJECT --reject-with tcp-reset
iptables -A INPUT -i K_IF -p tcp --dport 7000:9000 -j SVC
iptables -A INPUT -p udp ! -s 198.18.0.9 --dport 53 -j ACCEPT
iptables -A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable
iptables -A INPUT -i veth+ -j DROP
iptables -A INPUT ! -i K_IF -j DROP
iptables -A INPUT -p tcp --dport 5000 -j REJECT
iptables -A INPUT -j LOGDROP
"#;

#[test]
#[ignore = "needs root, ip, iptables, nft (run with --ignored)"]
fn iptables_verdicts_match_the_kernel() {
    let ns = Pair::setup("ik");
    let script = SCRIPT.replace("K_IF", &ns.k_if);
    let file = std::env::temp_dir().join(format!("iptables-kernel-diff-{}.sh", std::process::id()));
    std::fs::write(&file, &script).unwrap();
    ok(&[
        "ip",
        "netns",
        "exec",
        &ns.k,
        "bash",
        "-e",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);

    let rs = iptables::translate(&script, TableFamily::Ip).unwrap();
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let ours = compile(&rs, &ports, 1).unwrap();
    ns.compare(
        &ours,
        &[
            Probe::Tcp(22),
            Probe::Tcp(80),
            Probe::Tcp(1500),
            Probe::Tcp(2500),
            Probe::Tcp(7500),
            Probe::Tcp(8500),
            Probe::Tcp(5000),
            Probe::Udp(53),
            Probe::Udp(54),
            Probe::Ping,
        ],
    );
}
