//! Differential test against the Linux kernel: the same ruleset loaded with `nft -f` in a
//! network namespace and compiled by `dataplane::rules`; the same probe packets (sent
//! from a second namespace over a veth pair); per-rule counters compared after each probe.
//! Every rule carries a `counter`, so "the same counters moved" means the same rules
//! matched and the same verdict was reached.
//!
//! Needs root, `ip`, `nft`, `bash` and `ping`:
//! `cargo test -p dataplane --no-default-features --test rules_kernel -- --ignored`

mod common;

use common::kernel_diff::{Pair, Probe};
use dataplane::rules::{CompiledRuleset, Hook, PortsByName, load_text};

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

/// Loads `text` into the kernel side with `nft -f` (after `flush ruleset`) and compiles it
/// for ours, `ns.k_if` as port 0.
fn load_both(ns: &Pair, text: &str) -> CompiledRuleset {
    ns.nft_f(&format!("flush ruleset\n{text}"), &ns.k);
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    load_text(text, &ports, 1).unwrap()
}

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn verdicts_match_the_kernel() {
    let ns = Pair::setup("rk");
    let ours = load_both(&ns, RULESET);
    ns.compare(
        &ours,
        &[
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
        ],
    );
}

/// Verdict maps and concatenations (`K_IF` stands for the kernel side's interface). Every
/// rule carries a `counter` before its map, so a rule counts what reaches it in both; the
/// maps' effect shows in the chains they jump to and in the rules after a miss.
const MAPS: &str = r#"table inet fw {
	chain ssh {
		counter ip saddr vmap { 198.18.0.1 : accept, 198.18.0.2-198.18.255.255 : drop }
		counter
	}

	chain fresh {
		counter
	}

	chain input {
		type filter hook input priority filter; policy drop;
		counter ct state vmap { established : accept, related : accept, invalid : drop, new : jump fresh }
		counter tcp dport vmap { 22 : jump ssh, 80 : accept, 1000-1999 : drop }
		ip saddr . tcp dport { 198.18.0.1 . 443, 198.18.0.0/24 . 8000-8999 } counter accept
		ip saddr . tcp dport != { 198.18.0.1 . 5000 } counter drop
		counter meta l4proto . th dport vmap { udp . 53 : accept, udp . 54 : drop }
		iifname . ip saddr { "K_IF" . 198.18.0.1 } counter accept
		counter
	}
}
"#;

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn verdict_maps_and_concatenations_match_the_kernel() {
    let ns = Pair::setup("rm");
    let text = MAPS.replace("K_IF", &ns.k_if);
    let ours = load_both(&ns, &text);
    ns.compare(
        &ours,
        &[
            Probe::Tcp(22),
            Probe::Tcp(80),
            Probe::Tcp(1500),
            Probe::Tcp(443),
            Probe::Tcp(8500),
            Probe::Tcp(5000),
            Probe::Tcp(9999),
            Probe::Udp(53),
            Probe::Udp(54),
            Probe::Ping,
        ],
    );
}

/// Named maps and sets of concatenations, a NAT map (to the probe's own address and
/// port, so the input hook sees the same packet in both). As in `MAPS`, a `counter`
/// before each map counts what reaches the rule; a map's effect shows in the rules after
/// a miss and in the chains it jumps to.
const NAMED: &str = r#"table ip fw {
	map src {
		type ipv4_addr : verdict
		elements = { 198.18.0.1 : accept }
	}

	map ports {
		type inet_service : verdict
		flags interval
		elements = { 22 : jump ssh, 80 : accept, 1000-1999 : drop }
	}

	map pairs {
		type ipv4_addr . inet_service : verdict
		flags interval
		elements = { 198.18.0.0/24 . 8000-8999 : accept, 198.18.0.1 . 5000 : drop }
	}

	set allowed {
		type ipv4_addr . inet_service
		elements = { 198.18.0.1 . 443, 198.18.0.9 . 444 }
	}

	set l4 {
		type inet_proto . inet_service
		elements = { udp . 53 }
	}

	map fp {
		type inet_service : ipv4_addr . inet_service
		elements = { 80 : 198.18.0.2 . 80, 81 : 198.18.0.2 . 81 }
	}

	chain ssh {
		counter ip saddr vmap @src
		counter
	}

	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		counter dnat ip to tcp dport map @fp
		counter
	}

	chain input {
		type filter hook input priority filter; policy drop;
		counter tcp dport vmap @ports
		counter ip saddr . tcp dport vmap @pairs
		ip saddr . tcp dport @allowed counter accept
		meta l4proto . th dport @l4 counter accept
		icmp code != net-unreachable counter drop
		icmp type . icmp code { echo-request . net-unreachable } counter accept
		counter
	}
}
"#;

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn named_maps_and_sets_match_the_kernel() {
    let ns = Pair::setup("rn");
    let ours = load_both(&ns, NAMED);
    ns.compare_hooks(
        &ours,
        &[
            Probe::Tcp(22),
            Probe::Tcp(80),
            Probe::Tcp(81),
            Probe::Tcp(82),
            Probe::Tcp(1500),
            Probe::Tcp(8500),
            Probe::Tcp(5000),
            Probe::Tcp(443),
            Probe::Tcp(444),
            Probe::Udp(53),
            Probe::Udp(54),
            Probe::Ping,
        ],
        &[Hook::Prerouting, Hook::Input],
    );
}

/// Fact matches (`fib`, `ct direction`, `ct original|reply`, `ct expiration`, `meta
/// pkttype`, `ip dscp`) on the input hook. Each probe is a new connection from the
/// connected subnet to the kernel side's own address, DSCP 0: the facts fwd's worker
/// derives for such a packet (`worker/facts.rs`; `worker/facts_tests.rs` checks it
/// does) are given to our evaluation, and the same rules must count as in the kernel.
#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn fact_matches_count_as_in_the_kernel() {
    use dataplane::rules::compile::{CtTuple, Facts};
    use dataplane::wire::{IpInfo, L4Info};
    let ns = Pair::setup("rf");
    let ours = load_both(
        &ns,
        "table inet fw {
	chain input {
		type filter hook input priority filter; policy accept;
		fib daddr type local counter
		fib daddr type unicast counter
		fib saddr . iif oif missing counter
		fib saddr . iif oif exists counter
		ct direction original counter
		ct direction reply counter
		ct original ip saddr 198.18.0.1 counter
		ct original ip daddr 198.18.0.9 counter
		ct reply ip saddr 198.18.0.2 counter
		meta l4proto tcp ct original proto-dst 22 counter
		meta l4proto udp ct reply proto-src 53 counter
		ct expiration < 1s counter
		ct expiration > 1m counter
		meta pkttype host counter
		meta pkttype broadcast counter
		ip dscp cs0 counter
		ip dscp ef counter
	}
}
",
    );
    let facts = |ip: &IpInfo| {
        let (sport, dport) = match ip.l4 {
            Some(L4Info::Tcp(t)) => (t.sport, t.dport),
            Some(L4Info::Udp { sport, dport }) => (sport, dport),
            Some(L4Info::IcmpEcho { id, .. }) => (id, id),
            _ => (0, 0),
        };
        let orig = CtTuple {
            src: ip.src,
            dst: ip.dst,
            sport,
            dport,
        };
        let reply = CtTuple {
            src: ip.dst,
            dst: ip.src,
            sport: dport,
            dport: sport,
        };
        Facts {
            pkttype: 0,
            dscp: 0,
            ct_dir: Some(0),
            ct_tuples: Some([orig, reply]),
            ct_expiration: Some(0),
            fib_daddr_type: 2,
            fib_rpf: true,
            ..Facts::default()
        }
    };
    ns.compare_with_facts(
        &ours,
        &[
            Probe::Tcp(22),
            Probe::Tcp(80),
            Probe::Udp(53),
            Probe::Udp(5353),
            Probe::Ping,
        ],
        &[Hook::Input],
        &facts,
    );
}
