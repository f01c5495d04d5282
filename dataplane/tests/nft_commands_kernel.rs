//! Differential test of nft command scripts against the kernel: the same script applied
//! with `nft -f` in a namespace and read by `dataplane::rules::parse`, then an incremental
//! script (insert at a position, add after an index, replace and delete by handle, add
//! and delete set elements) applied to both; after each step the same probes move the
//! same rule counters, and after the incremental step the counters of the rules it did
//! not touch hold the same values in both (the kernel keeps them; so must we).
//!
//! Handles differ (the kernel numbers chains and sets from the same counter as rules), so
//! the incremental script names rules by their comment and each side substitutes its own
//! handle, as an operator would after `nft -a list ruleset`.
//!
//! Needs root, `ip`, `nft`, `bash` and `ping`:
//! `cargo test -p dataplane --no-default-features --test nft_commands_kernel -- --ignored`

mod common;

use common::kernel_diff::{Pair, Probe};
use common::netns::sh;
use dataplane::rules::{PortsByName, Publisher, Ruleset, compile, parse};

/// The documents' form: commands, every rule with a counter (so the kernel's counters
/// are comparable) and a comment naming it. `K_IF` is the kernel side's port.
const SCRIPT: &str = r#"flush ruleset
add table ip filter
add chain ip filter input { type filter hook input priority 0 ; policy drop ; }
add chain ip filter svc
add set ip filter blocked { type ipv4_addr ; flags interval ; }
add element ip filter blocked { 198.51.100.0/24 }
add rule ip filter input ct state established,related counter accept comment "est"
add rule ip filter input ip saddr @blocked counter drop comment "blocked"
add rule ip filter input tcp dport { 22, 80 } counter accept comment "ssh-web"
add rule ip filter input iifname "K_IF" tcp dport 7000-9000 counter jump svc comment "to-svc"
add rule ip filter input udp dport 53 counter accept comment "dns"
add rule ip filter input icmp type echo-request counter accept comment "ping"
add rule ip filter input counter comment "tail"
add rule ip filter svc tcp dport 8000-8999 counter return comment "svc-ret"
add rule ip filter svc counter accept comment "svc-acc"
"#;

/// The incremental change; `H(name)` is the handle of the rule commented `name`. The
/// kernel gets the first line (the `index` command) as a file of its own: nft 1.0.6
/// appends an `add rule … index N` that shares a file with other rule commands, where a
/// lone one goes after rule N (as ours always does).
const CHANGE: &str = r#"add rule ip filter input index 0 udp dport 54 counter drop comment "udp54"
insert rule ip filter input position H(dns) tcp dport 5000 counter reject with tcp reset comment "rst"
replace rule ip filter input handle H(ssh-web) tcp dport 22 counter accept comment "ssh"
delete rule ip filter svc handle H(svc-ret)
add element ip filter blocked { 198.18.0.0/24 }
delete element ip filter blocked { 198.18.0.0/24 }
add rule ip filter input tcp dport 80 counter drop comment "web-drop"
"#;

const PROBES: [Probe; 8] = [
    Probe::Tcp(22),
    Probe::Tcp(80),
    Probe::Tcp(5000),
    Probe::Tcp(7500),
    Probe::Tcp(8500),
    Probe::Udp(53),
    Probe::Udp(54),
    Probe::Ping,
];

/// The kernel's handle of the rule commented `name`.
fn kernel_handle(ns: &Pair, name: &str) -> u64 {
    let o = sh(&["ip", "netns", "exec", &ns.k, "nft", "-j", "list", "ruleset"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("nft json");
    j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
        .find(|r| r["comment"].as_str() == Some(name))
        .and_then(|r| r["handle"].as_u64())
        .unwrap_or_else(|| panic!("no kernel rule commented {name}"))
}

fn our_handle(rs: &Ruleset, name: &str) -> u64 {
    rs.tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .find(|r| r.comment.as_deref() == Some(name))
        .map(|r| r.handle)
        .unwrap_or_else(|| panic!("no rule of ours commented {name}"))
}

/// `CHANGE` with every `H(name)` replaced by `handle(name)`.
fn with_handles(handle: impl Fn(&str) -> u64) -> String {
    let mut out = String::new();
    let mut rest = CHANGE;
    while let Some(i) = rest.find("H(") {
        let j = rest[i..].find(')').unwrap() + i;
        out.push_str(&rest[..i]);
        out.push_str(&handle(&rest[i + 2..j]).to_string());
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn nft_command_scripts_match_the_kernel() {
    let ns = Pair::setup("nc");
    let script = SCRIPT.replace("K_IF", &ns.k_if);
    ns.nft_f(&script, "base");
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let base = parse::parse(&script).unwrap();
    let mut publisher = Publisher::new(compile(&base, &ports, 1).unwrap());
    ns.compare(&publisher.current(), &PROBES);

    let kernel_change = with_handles(|n| kernel_handle(&ns, n));
    let our_change = with_handles(|n| our_handle(&base, n));
    let (first, rest) = kernel_change.split_once('\n').unwrap();
    ns.nft_f(first, "index");
    ns.nft_f(rest, "change");
    let next = parse::apply(&base, &our_change).unwrap();
    publisher.publish_keeping_counters(compile(&next, &ports, 1).unwrap());
    assert_eq!(publisher.reclaim(), 0);

    // The same rules in the same order, and the same counts on every rule: untouched ones
    // kept theirs, replaced and new ones start at zero.
    let ours = publisher.current();
    let kernel = ns.kernel_counters();
    let counts = ours.counters();
    let mut mine = Vec::new();
    for (ti, t) in ours.source().tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            for ri in 0..c.rules.len() {
                let id = ours.rule_id(ti, ci, ri).unwrap();
                mine.push(((t.name.clone(), c.name.clone(), ri), counts[id as usize].0));
            }
        }
    }
    assert_eq!(mine, kernel, "rules and counters after the change");
    ns.compare(&ours, &PROBES);
}

/// Elements of a verdict map and a set of concatenations changed by commands (with
/// `define` and `list` in the scripts; not `list set`: nft 1.0.6 then loads only that
/// set into its cache and the file's other element commands fail "No such file"), then two changes the kernel refuses (a missing
/// element deleted, an element added with other data), then the last rule deleted and
/// another added: the same counters in both after each step, both refuse the same
/// scripts, and neither gives the deleted rule's handle again.
const MAPS: &str = r#"flush ruleset
define me = 198.18.0.1
add table ip filter
add chain ip filter input { type filter hook input priority 0 ; policy drop ; }
add map ip filter fw { type ipv4_addr . inet_service : verdict ; }
add set ip filter pairs { type ipv4_addr . inet_service ; }
add element ip filter fw { $me . 22 : accept, $me . 80 : drop }
add element ip filter pairs { $me . 5000 }
add rule ip filter input ct state established,related counter accept comment "est"
add rule ip filter input counter ip saddr . tcp dport vmap @fw comment "vmap"
add rule ip filter input ip saddr . tcp dport @pairs counter accept comment "pairs"
add rule ip filter input counter comment "tail"
list table ip filter
"#;

const MAPS_CHANGE: &str = r#"define me = 198.18.0.1
add element ip filter fw { $me . 80 : drop, $me . 443 : accept }
delete element ip filter fw { $me . 22 }
add element ip filter pairs { $me . 7000 }
delete element ip filter pairs { $me . 5000 }
list table ip filter
"#;

const MAPS_PROBES: [Probe; 6] = [
    Probe::Tcp(22),
    Probe::Tcp(80),
    Probe::Tcp(443),
    Probe::Tcp(5000),
    Probe::Tcp(7000),
    Probe::Ping,
];

/// `nft -f` of `text` in the kernel's namespace: whether it applied.
fn kernel_applies(ns: &Pair, text: &str, step: &str) -> bool {
    let file = std::env::temp_dir().join(format!("nc-{}-{step}.nft", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let o = sh(&[
        "ip",
        "netns",
        "exec",
        &ns.k,
        "nft",
        "-f",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&file);
    o.status.success()
}

fn counters_of(c: &dataplane::rules::CompiledRuleset) -> Vec<((String, String, usize), u64)> {
    let counts = c.counters();
    let mut out = Vec::new();
    for (ti, t) in c.source().tables.iter().enumerate() {
        for (ci, ch) in t.chains.iter().enumerate() {
            for ri in 0..ch.rules.len() {
                let id = c.rule_id(ti, ci, ri).unwrap();
                out.push(((t.name.clone(), ch.name.clone(), ri), counts[id as usize].0));
            }
        }
    }
    out
}

#[test]
#[ignore = "needs root, ip, nft (run with --ignored)"]
fn element_commands_on_maps_match_the_kernel() {
    let ns = Pair::setup("nm");
    ns.nft_f(MAPS, "maps");
    let ports: PortsByName = [(ns.k_if.clone(), 0u16)].into_iter().collect();
    let mut marks = dataplane::rules::edit::HandleMarks::default();
    let base = parse::apply_marked(&Ruleset::default(), MAPS, &mut marks).unwrap();
    let mut publisher = Publisher::new(compile(&base, &ports, 1).unwrap());
    ns.compare(&publisher.current(), &MAPS_PROBES);

    ns.nft_f(MAPS_CHANGE, "maps-change");
    let next = parse::apply_marked(&base, MAPS_CHANGE, &mut marks).unwrap();
    publisher.publish_keeping_counters(compile(&next, &ports, 1).unwrap());
    assert_eq!(publisher.reclaim(), 0);
    assert_eq!(counters_of(&publisher.current()), ns.kernel_counters());
    ns.compare(&publisher.current(), &MAPS_PROBES);

    for (i, bad) in [
        "delete element ip filter fw { 198.18.0.1 . 9 }\n",
        "add element ip filter fw { 198.18.0.1 . 443 : drop }\n",
        "create element ip filter pairs { 198.18.0.1 . 7000 }\n",
    ]
    .iter()
    .enumerate()
    {
        let script = format!("add element ip filter pairs {{ 198.18.0.1 . 7001 }}\n{bad}");
        assert!(!kernel_applies(&ns, &script, &format!("bad{i}")), "{bad}");
        assert!(parse::apply(&next, &script).is_err(), "{bad}");
    }
    assert_eq!(counters_of(&publisher.current()), ns.kernel_counters());

    let tail = |k: bool, rs: &Ruleset| {
        if k {
            kernel_handle(&ns, "tail")
        } else {
            our_handle(rs, "tail")
        }
    };
    let (k_tail, o_tail) = (tail(true, &next), tail(false, &next));
    let again = "add rule ip filter input counter comment \"tail2\"\n";
    let del = |h: u64| format!("delete rule ip filter input handle {h}\n");
    ns.nft_f(&del(k_tail), "del-tail");
    ns.nft_f(again, "tail2");
    let after = parse::apply_marked(&next, &del(o_tail), &mut marks).unwrap();
    let after = parse::apply_marked(&after, again, &mut marks).unwrap();
    assert!(
        kernel_handle(&ns, "tail2") > k_tail,
        "the kernel gave a handle again"
    );
    assert!(
        our_handle(&after, "tail2") > o_tail,
        "we gave a handle again"
    );
}
