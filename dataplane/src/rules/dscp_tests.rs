//! `ip dscp set` / `ip6 dscp set` in the rule language: the kernel's listing and JSON
//! (nft 1.0.6 output), the checks, and the evaluation (the other family ends the rule;
//! never cached).

use super::ast::*;
use super::compile::{Decision, ct_state};
use super::mangle_tests::handles_zero;
use super::tests::{ctx, ports, udp, v4};
use super::*;

/// `nft list ruleset` after loading `ip dscp set 8; ip6 dscp set ef; tcp dport 22 ip
/// dscp set 0 counter; ip dscp set 63; ip dscp set af41 accept; ip dscp set 0x2e` (nft
/// 1.0.6, Linux 6.x): names where the value has one, hex otherwise.
const KERNEL: &str = "table inet t {
	chain c {
		type filter hook forward priority filter; policy accept;
		ip dscp set cs1
		ip6 dscp set ef
		tcp dport 22 ip dscp set cs0 counter packets 0 bytes 0
		ip dscp set 0x3f
		ip dscp set af41 accept
		ip dscp set ef
	}
}
";

/// Its `nft -j list ruleset` rules (the same nft).
const KERNEL_JSON: &str = r#"{"nftables": [{"table": {"family": "inet", "name": "t", "handle": 1}}, {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 2, "expr": [{"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": "cs1"}}]}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 3, "expr": [{"mangle": {"key": {"payload": {"protocol": "ip6", "field": "dscp"}}, "value": "ef"}}]}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 4, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": "cs0"}}, {"counter": {"packets": 0, "bytes": 0}}]}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 5, "expr": [{"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": 63}}]}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 6, "expr": [{"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": "af41"}}, {"accept": null}]}}, {"rule": {"family": "inet", "table": "t", "chain": "c", "handle": 7, "expr": [{"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": "ef"}}]}}]}"#;

#[test]
fn dscp_set_lists_and_reads_as_the_kernel_writes_it() {
    let written = parse::parse(
        "table inet t { chain c { type filter hook forward priority 0;
         ip dscp set 8; ip6 dscp set ef; tcp dport 22 ip dscp set 0 counter;
         ip dscp set 63; ip dscp set af41 accept; ip dscp set 0x2e } }",
    )
    .unwrap();
    check::check(&written).unwrap();
    let listed = parse::parse(KERNEL).unwrap();
    // Matches list their values as the kernel does too (`nft list ruleset` of `ip dscp
    // 63; ip dscp { 3, cs1, 0x3e }; ip dscp 1-4`).
    let m = parse::parse(
        "table ip t { chain c { ip dscp 63; ip dscp { 3, cs1, 0x3e }; ip dscp 1-4 } }",
    )
    .unwrap();
    let text = print::to_text(&m);
    for line in [
        "ip dscp 0x3f\n",
        "ip dscp { 0x03, cs1, 0x3e }\n",
        "ip dscp 0x01-0x04\n",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_eq!(print::to_text(&listed), KERNEL);
    let text = print::to_text(&written);
    assert_eq!(
        text.replace("counter\n", "counter packets 0 bytes 0\n"),
        KERNEL
    );
    let j: serde_json::Value = serde_json::from_str(KERNEL_JSON).unwrap();
    let from_kernel = json::from_json(&j).unwrap();
    assert_eq!(handles_zero(from_kernel), handles_zero(listed.clone()));
    let ours = json::to_json(&listed);
    let rules: Vec<&serde_json::Value> = ours["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .collect();
    assert_eq!(
        rules[0]["expr"][0],
        serde_json::json!({"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": "cs1"}})
    );
    assert_eq!(rules[3]["expr"][0]["mangle"]["value"], 63);
    assert_eq!(
        handles_zero(json::from_json(&ours).unwrap()),
        handles_zero(listed)
    );
}

#[test]
fn dscp_set_errors_name_the_place() {
    let bad = |src: &str| -> String {
        match parse::parse(src).and_then(|rs| check::check(&rs).map(|()| rs)) {
            Ok(_) => panic!("accepted: {src}"),
            Err(e) => e.to_string(),
        }
    };
    let chain = |family: &str, stmt: &str| {
        format!(
            "table {family} t {{ chain c {{ type filter hook forward priority 0;\n {stmt} }} }}"
        )
    };
    let e = bad(&chain("ip", "ip dscp set 64"));
    assert!(e.contains("2:") && e.contains("64"), "{e}");
    let e = bad(&chain("ip", "ip dscp set cs9"));
    assert!(e.contains("cs9"), "{e}");
    let e = bad(&chain("ip", "ip dscp set 1-3"));
    assert!(e.contains("one value"), "{e}");
    // The kernel: "conflicting protocols specified: ip vs. ip6".
    let e = bad(&chain("ip", "ip6 dscp set 1"));
    assert!(e.contains("2:") && e.contains("family ip"), "{e}");
    let e = bad(&chain("ip6", "ip dscp set 1"));
    assert!(e.contains("family ip6"), "{e}");
    let bad_json = serde_json::json!({"nftables": [
        {"table": {"family": "ip", "name": "t"}},
        {"chain": {"family": "ip", "table": "t", "name": "c"}},
        {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [
            {"mangle": {"key": {"payload": {"protocol": "ip", "field": "dscp"}}, "value": 64}}]}}]});
    let e = json::from_json(&bad_json).unwrap_err().to_string();
    assert!(e.contains("DSCP"), "{e}");
}

#[test]
fn the_packets_family_decides_and_the_rule_is_never_cached() {
    let rs = load_text(
        "table inet t {
	chain f {
		type filter hook forward priority filter; policy drop;
		ip dscp set ef counter
		ip dscp cs1 counter
		ip dscp ef ip dscp set af11 counter accept
	}
}
",
        &ports(),
        1,
    )
    .unwrap();
    let ip = udp(v4([198, 18, 0, 10]), v4([203, 0, 113, 5]), 40000, 53);
    let mut c = ctx(&ip, ct_state::NEW);
    let before = rs.counters();
    let r = rs.eval(Hook::Forward, &mut c, 0, 1);
    let moved: Vec<u64> = rs
        .counters()
        .iter()
        .zip(&before)
        .map(|(a, b)| a.0 - b.0)
        .collect();
    // The later match reads the value the first rule wrote; the last write wins.
    assert_eq!(
        (r.verdict, r.dscp, moved),
        (Decision::Accept, Some(0x0a), vec![1, 0, 1])
    );
    assert!(r.stateful && !r.cacheable, "never cached");
    // An IPv6 packet ends each `ip dscp set` rule there: the policy drops.
    let six = tests::tcp(
        "2001:db8::1".parse::<std::net::IpAddr>().unwrap().into(),
        "2001:db8::2".parse::<std::net::IpAddr>().unwrap().into(),
        1,
        2,
        0x02,
    );
    let r = rs.eval(Hook::Forward, &mut ctx(&six, ct_state::NEW), 0, 1);
    assert_eq!((r.verdict, r.dscp), (Decision::Drop, None));
}
