//! Differential test against the Linux kernel for dynamic sets and meters: the same
//! ruleset in a namespace with `nft -f` and in `dataplane::rules`, the same probes (see
//! `common/kernel_diff.rs`), the same rule counters after each probe, then the same
//! elements in each set (`nft -j list set` against `dynset_elements`).
//!
//! Needs root, `ip`, `nft`, `bash`:
//! `cargo test -p dataplane --no-default-features --test dynset_kernel -- --ignored`

mod common;

use common::kernel_diff::{Pair, Probe};
use dataplane::rules::ast::{SetType, TableFamily};
use dataplane::rules::compile::{DynElement, DynKey};
use dataplane::rules::{PortsByName, load_text};
use std::process::Command;

const RULESET: &str = r#"table inet fw {
	set bl {
		type ipv4_addr
		flags dynamic,timeout
		timeout 10m
	}

	set ssh {
		type ipv4_addr
		size 65535
		flags dynamic
	}

	set full {
		type inet_service
		size 2
		flags dynamic
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @bl counter drop
		tcp dport 22 ct state new add @ssh { ip saddr limit rate over 3/minute } counter drop
		tcp dport 22 counter accept
		tcp dport 23 meter m size 16 { ip saddr limit rate 2/minute burst 2 packets } counter accept
		tcp dport 23 counter drop
		udp dport 1000-1999 add @full { udp dport } counter accept
		udp dport 1000-1999 counter drop
		udp dport 53 update @bl { ip saddr timeout 1m } counter
		counter
	}
}
"#;

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn dynamic_sets_and_meters_match_the_kernel() {
    let ns = Pair::setup("dk");
    ns.nft_f(&format!("flush ruleset\n{RULESET}"), &ns.k);
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let ours = load_text(RULESET, &ports, 1).unwrap();
    let mut probes = vec![Probe::Tcp(22); 7];
    probes.extend([Probe::Tcp(23); 3]);
    probes.extend([1000, 1001, 1002, 1000, 1500].map(Probe::Udp));
    probes.extend([Probe::Tcp(80), Probe::Udp(53), Probe::Tcp(80), Probe::Ping]);
    ns.compare(&ours, &probes);
    for (set, ty) in [
        ("bl", SetType::Ipv4Addr),
        ("ssh", SetType::Ipv4Addr),
        ("full", SetType::InetService),
    ] {
        let (t, els) = ours
            .dynset_elements(TableFamily::Inet, "fw", set, 2)
            .unwrap();
        assert_eq!(t.types, [ty]);
        assert_eq!(
            ours_vals(t, &els),
            kernel_vals(&ns, "set", set),
            "set {set}"
        );
        eprintln!("{set}: {} elements", els.len());
    }
}

const CONCAT: &str = r#"table inet fw {
	set pairs {
		type ipv4_addr . inet_service
		flags dynamic,timeout
		timeout 10m
	}

	set ifs {
		type ifname
		size 65535
		flags dynamic
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr . tcp dport @pairs counter accept
		tcp dport { 22, 23 } add @pairs { ip saddr . tcp dport } counter drop
		iifname @ifs udp dport 54 counter accept
		udp dport 53 update @ifs { iifname } counter
		udp dport 54 counter drop
		tcp dport 24 meter m size 16 { ip saddr . tcp dport limit rate 2/minute burst 2 packets } counter accept
		tcp dport 24 counter drop
		counter
	}
}
"#;

/// A set's (or meter's) elements as `nft -j list set` writes them.
fn kernel_json(ns: &Pair, kind: &str, set: &str) -> Vec<serde_json::Value> {
    let o = Command::new("ip")
        .args([
            "netns", "exec", &ns.k, "nft", "-j", "list", kind, "inet", "fw", set,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get(kind).and_then(|s| s.get("elem")))
        .flat_map(|e| e.as_array().unwrap().clone())
        .collect()
}

/// A set's elements as `nft -j list set` writes their values (the `expires` left out),
/// sorted by their JSON text.
fn kernel_vals(ns: &Pair, kind: &str, set: &str) -> Vec<String> {
    let mut out: Vec<String> = kernel_json(ns, kind, set)
        .iter()
        .map(|e| e.get("elem").map_or(e, |x| &x["val"]).to_string())
        .collect();
    out.sort_unstable();
    out
}

/// Our elements as `nft -j` writes their values, sorted by their JSON text.
fn ours_vals(key: &DynKey, els: &[DynElement]) -> Vec<String> {
    let mut vals: Vec<String> = els.iter().map(|e| key.json(e.key).to_string()).collect();
    vals.sort_unstable();
    vals
}

/// Concatenated and interface-name keys: a set of `ipv4_addr . inet_service` filled by
/// `add @s { ip saddr . tcp dport }` and matched by `ip saddr . tcp dport @s`, a set of
/// `ifname` filled by `update @s { iifname }`, a meter keyed by a concatenation; the same
/// counters per probe and the same elements (`nft -j` values) in each set and meter.
#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn concatenated_and_ifname_keys_match_the_kernel() {
    let ns = Pair::setup("dc");
    ns.nft_f(&format!("flush ruleset\n{CONCAT}"), &ns.k);
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let ours = load_text(CONCAT, &ports, 1).unwrap();
    let mut probes = vec![
        Probe::Tcp(22),
        Probe::Tcp(22),
        Probe::Tcp(23),
        Probe::Tcp(25),
    ];
    probes.extend([
        Probe::Udp(54),
        Probe::Udp(53),
        Probe::Udp(54),
        Probe::Udp(54),
    ]);
    probes.extend([Probe::Tcp(24); 4]);
    probes.extend([Probe::Tcp(23), Probe::Ping]);
    ns.compare(&ours, &probes);
    for (kind, set, n) in [("set", "pairs", 2), ("set", "ifs", 1), ("meter", "m", 1)] {
        let (key, els) = ours
            .dynset_elements(TableFamily::Inet, "fw", set, 2)
            .unwrap();
        let vals = ours_vals(key, &els);
        assert_eq!(vals.len(), n, "{set}: {vals:?}");
        assert_eq!(vals, kernel_vals(&ns, kind, set), "{kind} {set}");
        eprintln!("{set}: {vals:?}");
    }
}

const TIMEOUTS: &str = r#"table inet fw {
	set to {
		type ipv4_addr
		timeout 1m
		elements = { 198.18.9.1, 198.18.9.2 timeout 10s }
	}

	set c {
		type ipv4_addr . inet_service
		flags timeout
		elements = { 198.18.9.3 . 22 timeout 20s, 198.18.9.4 . 22 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @to counter drop
		udp dport 53 update @to { ip saddr timeout 30s } counter
		ip saddr . tcp dport @c counter drop
		counter
	}
}
"#;

/// A set's (or map's) elements as `nft -j list set` writes them, `expires` left out (it
/// is a moment's reading), sorted by their JSON text. A map's element is `[KEY, DATA]`.
fn without_expires(els: impl Iterator<Item = serde_json::Value>) -> Vec<String> {
    let mut out: Vec<String> = els
        .map(|mut e| {
            let key = if e.is_array() { &mut e[0] } else { &mut e };
            if let Some(o) = key.get_mut("elem").and_then(|x| x.as_object_mut()) {
                o.remove("expires");
            }
            e.to_string()
        })
        .collect();
    out.sort_unstable();
    out
}

/// Element timeouts: declared (a set's own and the elements' own, in a plain set and a
/// set of concatenations), given by `update @s { … timeout 30s }` on the data path, and
/// added by an element command (`add element … { E timeout 5s }`, an incremental change
/// here): the same counters per probe and the same elements with the same `timeout`s in
/// `nft -j list set` as in ours.
#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn element_timeouts_list_as_the_kernel_lists_them() {
    use dataplane::rules::{compile, dynlist, parse};
    let ns = Pair::setup("dt");
    ns.nft_f(&format!("flush ruleset\n{TIMEOUTS}"), &ns.k);
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let first = load_text(TIMEOUTS, &ports, 1).unwrap();
    first.start_declared(1);
    let cmds = "add element inet fw to { 198.18.9.5 timeout 5s, 198.18.9.6 }\n\
                add element inet fw c { 198.18.9.7 . 80 timeout 40s }\n";
    ns.nft_f(cmds, &ns.k);
    let mut ours = compile(&parse::apply(first.source(), cmds).unwrap(), &ports, 1).unwrap();
    ours.adopt_dynsets(&first);
    ours.start_declared(1);
    ns.compare(&ours, &[Probe::Udp(53), Probe::Tcp(22), Probe::Udp(53)]);
    for set in ["to", "c"] {
        let (key, els) = ours
            .dynset_elements(TableFamily::Inet, "fw", set, 2)
            .unwrap();
        let mine = without_expires(els.iter().map(|e| dynlist::element_json(key, e)));
        assert_eq!(
            mine,
            without_expires(kernel_json(&ns, "set", set).into_iter()),
            "set {set}"
        );
        eprintln!("{set}: {mine:?}");
    }
}

const WIDE: &str = r#"table inet fw {
	set s {
		type ipv6_addr . inet_service
		size 65535
		flags dynamic,timeout
		timeout 1m
	}

	set p {
		type ipv6_addr . ipv6_addr
		size 4
		flags dynamic
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip6 saddr . tcp dport @s counter drop
		tcp dport 22 add @s { ip6 saddr . tcp dport } counter
		tcp dport 23 update @p { ip6 saddr . ip6 daddr } counter
		tcp dport 24 meter m size 16 { ip6 saddr . tcp dport limit rate 2/minute burst 2 packets } counter accept
		counter
	}
}
"#;

/// Keys wider than 128 bits (`ipv6_addr . inet_service`, `ipv6_addr . ipv6_addr`): the
/// ruleset lists as the kernel lists it, element commands give the same elements with the
/// same `timeout`s in `nft -j list set`, and IPv4 probes move the same counters (the
/// `ip6` rules do not match them in either).
#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn keys_wider_than_128_bits_list_as_the_kernel_lists_them() {
    use dataplane::rules::{compile, dynlist, parse, print};
    let ns = Pair::setup("dw");
    ns.nft_f(&format!("flush ruleset\n{WIDE}"), &ns.k);
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.k, "nft", "list", "table", "inet", "fw"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Counters list as `counter packets 0 bytes 0` in both.
    let listed = String::from_utf8_lossy(&o.stdout);
    assert_eq!(print::to_text(&parse::parse(WIDE).unwrap()), listed);
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let first = load_text(WIDE, &ports, 1).unwrap();
    first.start_declared(1);
    let cmds = "add element inet fw s { 2001:db8::1 . 22, 2002:db8::1 . 443 timeout 20s }\n\
                add element inet fw p { 2001:db8::1 . 2001:db8::ff }\n";
    ns.nft_f(cmds, &ns.k);
    let rs = parse::apply(first.source(), cmds).unwrap();
    let mut ours = compile(&rs, &ports, 1).unwrap();
    ours.adopt_dynsets(&first);
    ours.start_declared(1);
    ns.compare(&ours, &[Probe::Tcp(22), Probe::Tcp(23), Probe::Tcp(24)]);
    for (set, n) in [("s", 2), ("p", 1)] {
        let (key, els) = ours
            .dynset_elements(TableFamily::Inet, "fw", set, 2)
            .unwrap();
        let mine = without_expires(els.iter().map(|e| dynlist::element_json(key, e)));
        assert_eq!(mine.len(), n, "{set}: {mine:?}");
        assert_eq!(
            mine,
            without_expires(kernel_json(&ns, "set", set).into_iter()),
            "set {set}"
        );
        eprintln!("{set}: {mine:?}");
    }
}

const MAP_TIMEOUTS: &str = r#"table inet fw {
	map m {
		type inet_service : verdict
		flags timeout
		elements = { 22 timeout 5s : jump hit, 23 : jump hit }
	}

	map d {
		type inet_service : ipv4_addr
		timeout 5s
		elements = { 24 : 198.18.0.2 }
	}

	chain hit {
		counter
	}

	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		counter dnat ip to tcp dport map @d
		counter
	}

	chain input {
		type filter hook input priority filter; policy accept;
		counter tcp dport vmap @m
		counter
	}
}
"#;

/// Element timeouts in a verdict map and a NAT map: declared (the element's own, the
/// map's) and added by element commands (`add element … { 25 timeout 60s : jump hit }`,
/// an incremental change here), probed before and after the 5-second ones expire (ours
/// on the workers' clock at the time elapsed since the kernel loaded the ruleset): the
/// same counters per probe, and the same elements with the same `timeout`s in `nft -j
/// list map` as in ours, both times.
#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
#[allow(
    clippy::disallowed_types,
    reason = "test: the kernel's timeouts run on the wall clock; ours is set to the time elapsed"
)]
fn map_element_timeouts_match_and_expire_as_in_the_kernel() {
    use dataplane::rules::ast::Hook;
    use dataplane::rules::compile::Facts;
    use dataplane::rules::{compile, dynlist, parse};
    use std::time::{Duration, Instant};
    let ns = Pair::setup("mt");
    ns.nft_f(&format!("flush ruleset\n{MAP_TIMEOUTS}"), &ns.k);
    let start = Instant::now();
    let t0 = 1_000_000_000u64;
    let now = || t0 + u64::try_from(start.elapsed().as_nanos()).unwrap();
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let first = load_text(MAP_TIMEOUTS, &ports, 1).unwrap();
    first.start_declared(t0);
    let cmds = "add element inet fw m { 25 timeout 60s : jump hit, 26 timeout 5s : drop }\n\
                add element inet fw d { 27 timeout 60s : 198.18.0.2 }\n";
    ns.nft_f(cmds, &ns.k);
    let mut ours = compile(&parse::apply(first.source(), cmds).unwrap(), &ports, 1).unwrap();
    ours.adopt_dynsets(&first);
    ours.start_declared(now());
    let hooks = [Hook::Prerouting, Hook::Input];
    let elements = |ours: &dataplane::rules::CompiledRuleset, at: u64| {
        for name in ["m", "d"] {
            let (key, live) = ours
                .timed_map_elements(TableFamily::Inet, "fw", name, at)
                .unwrap();
            let m = ours.source().tables[0]
                .maps
                .iter()
                .find(|m| m.name == name)
                .unwrap();
            let mine = without_expires(
                live.iter()
                    .map(|(i, x)| dynlist::map_element(m, key, *i, x.as_ref()).1),
            );
            let kernel = without_expires(kernel_json(&ns, "map", name).into_iter());
            assert_eq!(mine, kernel, "map {name}");
            eprintln!("{name}: {mine:?}");
        }
    };
    let probes = [22, 23, 24, 25, 26, 27, 28].map(Probe::Tcp);
    ns.compare_at(&ours, &probes, &hooks, &|_| Facts::default(), now());
    elements(&ours, now());
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the probes before the expiry took {:?}: too loaded to compare",
        start.elapsed()
    );
    std::thread::sleep(Duration::from_secs(6).saturating_sub(start.elapsed()));
    ns.compare_at(&ours, &probes, &hooks, &|_| Facts::default(), now());
    elements(&ours, now());
}
