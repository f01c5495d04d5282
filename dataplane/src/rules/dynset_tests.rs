//! Dynamic sets and meters: the forms nft 1.0.6 lists, and evaluation with a fake clock
//! (element added by one packet and matched by the next on any worker, timeouts, `update`,
//! per-element `limit` and `ct count`, a full set, generations).

use super::ast::*;
use super::compile::{Decision, ct_state};
use super::tests::{ctx, ports, tcp, v4};
use super::*;
use crate::wire::{Addr, TcpFlags};

/// What `nft list ruleset` printed for the issue's forms (nft 1.0.6, Debian 12's kernel).
const LISTED: &str = "table inet t {
\tset bl {
\t\ttype ipv4_addr
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 10m
\t}

\tset rl {
\t\ttype ipv4_addr
\t\tsize 2
\t\tflags dynamic
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr @bl drop
\t\ttcp dport 22 ct state new add @bl { ip saddr limit rate over 5/minute } drop
\t\tudp dport 53 update @bl { ip saddr timeout 1m }
\t\ttcp dport 80 add @rl { ip saddr ct count over 20 } reject with icmp port-unreachable
\t\tmeter m size 65535 { ip saddr limit rate 5/second } accept
\t\ttcp dport 81 meter m2 size 100 { ip saddr timeout 30s limit rate over 10/second burst 3 packets } drop
\t}
}
";

const SEC: u64 = 1_000_000_000;

fn syn(src: Addr, dport: u16) -> crate::wire::IpInfo {
    tcp(src, v4([198, 18, 0, 1]), 40000, dport, TcpFlags::SYN)
}

/// Evaluates the input hook for a new TCP connection from `src` to `dport`.
fn verdict(c: &CompiledRuleset, src: Addr, dport: u16, worker: usize, now: u64) -> Decision {
    let ip = syn(src, dport);
    let mut x = ctx(&ip, ct_state::NEW);
    let r = c.eval(Hook::Input, &mut x, worker, now);
    assert!(!r.cacheable, "a rule on a dynamic set is never cached");
    r.verdict
}

fn load(src: &str, workers: usize) -> CompiledRuleset {
    load_text(src, &ports(), workers).unwrap()
}

#[test]
fn dynamic_sets_and_meters_print_as_nft_lists_them() {
    let rs = parse::parse(LISTED).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), LISTED);
    let bl = &rs.tables[0].sets[0];
    assert_eq!(
        bl.dynamic,
        DynOpts {
            dynamic: true,
            timeout_flag: true,
            timeout_ms: Some(600_000),
            size: Some(65535)
        }
    );
    // JSON as nft -j wrote it for the same ruleset (`dynamic` is not in JSON).
    let j = json::to_json(&rs).to_string();
    for want in [
        r#""size":65535,"table":"t","timeout":600,"type":"ipv4_addr""#,
        r#"{"set":{"elem":{"payload":{"field":"saddr","protocol":"ip"}},"op":"add","set":"@bl","stmt":[{"limit":{"burst":5,"inv":true,"per":"minute","rate":5}}]}}"#,
        r#"{"set":{"elem":{"elem":{"timeout":60,"val":{"payload":{"field":"saddr","protocol":"ip"}}}},"op":"update","set":"@bl"}}"#,
        r#"{"set":{"elem":{"payload":{"field":"saddr","protocol":"ip"}},"op":"add","set":"@rl","stmt":[{"ct count":{"inv":true,"val":20}}]}}"#,
        r#"{"meter":{"key":{"payload":{"field":"saddr","protocol":"ip"}},"name":"m","size":65535,"stmt":{"limit":{"burst":5,"per":"second","rate":5}}}}"#,
        r#"{"meter":{"key":{"elem":{"timeout":30,"val":{"payload":{"field":"saddr","protocol":"ip"}}}},"name":"m2","size":100,"stmt":{"limit":{"burst":3,"inv":true,"per":"second","rate":10}}}}"#,
    ] {
        assert!(j.contains(want), "{want}\nin\n{j}");
    }
    // Back from JSON: the same ruleset (JSON has no `dynamic` flag: a set with a size is
    // dynamic, as every dynamic set the kernel lists has one).
    assert_eq!(json::from_json(&json::to_json(&rs)).unwrap(), rs);
    // `flags dynamic` alone, or a set a rule adds to, lists with the kernel's size.
    let rs = parse::parse(
        "table ip t { set a { type ipv4_addr; flags dynamic; }\n set b { type ipv4_addr; flags timeout; }\n chain c { add @b { ip saddr } } }",
    )
    .unwrap();
    let text = print::to_text(&rs);
    assert!(
        text.contains("set a {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic\n"),
        "{text}"
    );
    assert!(
        text.contains("set b {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n"),
        "{text}"
    );
    assert_eq!(json::from_json(&json::to_json(&rs)).unwrap(), rs);
    // Sub-second timeouts have no JSON form.
    let e = parse::parse("table ip t { set s { type ipv4_addr; timeout 1500ms; } }").unwrap_err();
    assert!(e.msg.contains("whole seconds"), "{e}");
    // The older form without a size reads as nft lists it.
    let rs = parse::parse(
        "table ip t { chain c { type filter hook input priority 0; meter m { ip saddr limit rate 5/second } accept } }",
    )
    .unwrap();
    assert!(
        print::to_text(&rs).contains("meter m size 65535 { ip saddr limit rate 5/second } accept")
    );
    load_text(LISTED, &ports(), 2).unwrap();
}

#[test]
fn dynamic_set_errors_carry_location() {
    let e = parse::parse("table ip t { chain c { add @s { ip saddr drop } } }").unwrap_err();
    assert!(e.to_string().starts_with("1:42"), "{e}");
    assert!(
        e.msg.contains("only `limit`, `ct count` and `counter`"),
        "{e}"
    );
    let e = parse::parse("table ip t { set s { type ipv4_addr; timeout 10x; } }").unwrap_err();
    assert!(e.msg.contains("expected a time"), "{e}");
    let rs = parse::parse("table ip t { chain c { add @nope { ip saddr } } }").unwrap();
    assert!(check::check(&rs).unwrap_err().msg.contains("undefined set"));
    let rs = parse::parse(
        "table ip t { set s { type inet_service; flags dynamic; }\n chain c { add @s { ip saddr } } }",
    )
    .unwrap();
    let e = check::check(&rs).unwrap_err();
    assert!(e.msg.contains("holds inet_service values"), "{e}");
    assert_eq!(e.line, 2, "{e}");
    // JSON is held to what the text can say.
    let j = json::to_json(
        &parse::parse(
            "table ip t { set s { type ipv4_addr; flags dynamic; }\n chain c { add @s { ip saddr } } }",
        )
        .unwrap(),
    )
    .to_string();
    assert!(j.contains(r#""op":"add","set":"@s"}"#), "{j}");
    for (from, to, why) in [
        (r#""op":"add""#, r#""op":"delete""#, "set op `delete`"),
        (
            r#""set":"@s"}"#,
            r#""set":"@s","stmt":[{"drop":null}]}"#,
            "only `limit`, `ct count` and `counter`",
        ),
        (r#""set":"@s"}"#, r#""set":"@s s"}"#, "set name"),
    ] {
        let bad: serde_json::Value = serde_json::from_str(&j.replace(from, to)).unwrap();
        let e = json::from_json(&bad).unwrap_err();
        assert!(e.msg.contains(why), "{why}: {e}");
    }
}

const BLOCK: &str = "table inet f {
 set bl { type ipv4_addr; flags dynamic,timeout; timeout 10m; }
 chain input {
  type filter hook input priority filter; policy accept;
  ip saddr @bl drop
  tcp dport 22 add @bl { ip saddr }
  tcp dport 53 update @bl { ip saddr timeout 1m }
 }
}";

#[test]
fn an_element_added_by_one_worker_is_matched_by_all() {
    let c = load(BLOCK, 2);
    let (a, b) = (v4([198, 51, 100, 1]), v4([198, 51, 100, 2]));
    let t0 = 5 * SEC;
    // Before: nothing in the set.
    assert_eq!(verdict(&c, a, 80, 1, t0), Decision::Accept);
    // Worker 0 sees a on port 22 (added, accepted by the policy) ...
    assert_eq!(verdict(&c, a, 22, 0, t0), Decision::Accept);
    // ... and worker 1 drops a's next packet; b is not in the set.
    assert_eq!(verdict(&c, a, 80, 1, t0 + 1), Decision::Drop);
    assert_eq!(verdict(&c, b, 80, 1, t0 + 1), Decision::Accept);
    let (ty, els) = c
        .dynset_elements(TableFamily::Inet, "f", "bl", t0 + SEC)
        .unwrap();
    assert_eq!(ty.types, [SetType::Ipv4Addr]);
    assert_eq!(els.len(), 1);
    assert_eq!(ty.values(els[0].key), [Value::Prefix(a, 32)]);
    assert_eq!(els[0].expires_ns, Some(600 * SEC - SEC));
}

#[test]
fn elements_expire_after_their_timeout_and_update_restarts_it() {
    let c = load(BLOCK, 1);
    let (a, b) = (v4([198, 51, 100, 1]), v4([198, 51, 100, 2]));
    let t0 = 5 * SEC;
    assert_eq!(verdict(&c, a, 22, 0, t0), Decision::Accept);
    assert_eq!(verdict(&c, a, 80, 0, t0 + 600 * SEC - 1), Decision::Drop);
    // Expired at exactly its expiry time, as the kernel's element is.
    assert_eq!(verdict(&c, a, 80, 0, t0 + 600 * SEC), Decision::Accept);
    // `add` of an existing element keeps its expiry; `update` restarts it (with the
    // statement's 1m).
    assert_eq!(verdict(&c, b, 22, 0, t0), Decision::Accept);
    assert_eq!(verdict(&c, b, 22, 0, t0 + 300 * SEC), Decision::Drop);
    assert_eq!(verdict(&c, b, 80, 0, t0 + 600 * SEC), Decision::Accept);
    assert_eq!(verdict(&c, b, 53, 0, t0 + 700 * SEC), Decision::Accept);
    assert_eq!(verdict(&c, b, 80, 0, t0 + 759 * SEC), Decision::Drop);
    assert_eq!(verdict(&c, b, 80, 0, t0 + 760 * SEC), Decision::Accept);
    let store = c.dynset_store(TableFamily::Inet, "f", "bl").unwrap();
    assert!(store.elements(t0 + 760 * SEC).is_empty());
}

#[test]
fn a_per_element_rate_limit_is_shared_by_every_worker() {
    let c = load(
        "table inet f {
 set bl { type ipv4_addr; flags dynamic; }
 chain input {
  type filter hook input priority filter; policy accept;
  tcp dport 22 ct state new add @bl { ip saddr limit rate over 5/minute } drop
 }
}",
        2,
    );
    let (a, b) = (v4([198, 51, 100, 1]), v4([198, 51, 100, 2]));
    let t0 = SEC;
    // Five new connections within the burst, from either worker; the sixth is over.
    for i in 0..5 {
        assert_eq!(verdict(&c, a, 22, i % 2, t0), Decision::Accept, "{i}");
    }
    assert_eq!(verdict(&c, a, 22, 1, t0), Decision::Drop);
    assert_eq!(verdict(&c, a, 22, 0, t0), Decision::Drop);
    // Another source has its own bucket.
    assert_eq!(verdict(&c, b, 22, 0, t0), Decision::Accept);
    // 12 s later (60 s / 5) one more fits.
    assert_eq!(verdict(&c, a, 22, 1, t0 + 12 * SEC), Decision::Accept);
    assert_eq!(verdict(&c, a, 22, 0, t0 + 12 * SEC), Decision::Drop);
}

#[test]
fn a_meter_limits_each_source() {
    let c = load(
        "table ip f { chain input { type filter hook input priority 0; policy drop;
  meter m { ip saddr limit rate 5/second } accept } }",
        1,
    );
    let a = v4([198, 51, 100, 1]);
    for i in 0..5 {
        assert_eq!(verdict(&c, a, 22, 0, SEC), Decision::Accept, "{i}");
    }
    assert_eq!(verdict(&c, a, 22, 0, SEC), Decision::Drop);
    assert_eq!(
        verdict(&c, v4([198, 51, 100, 9]), 22, 0, SEC),
        Decision::Accept
    );
    assert_eq!(
        c.dynset_elements(TableFamily::Ip, "f", "m", SEC)
            .unwrap()
            .1
            .len(),
        2
    );
}

#[test]
fn a_full_set_refuses_the_add_and_the_rule_does_not_match() {
    let c = load(
        "table ip f {
 set rl { type ipv4_addr; size 2; flags dynamic,timeout; timeout 1m; }
 chain input { type filter hook input priority 0; policy drop;
  tcp dport 80 add @rl { ip saddr } accept } }",
        1,
    );
    let src = |i| v4([198, 51, 100, i]);
    assert_eq!(verdict(&c, src(1), 80, 0, SEC), Decision::Accept);
    assert_eq!(verdict(&c, src(2), 80, 0, SEC), Decision::Accept);
    // Full: the third source's add fails and the rule does not match (policy drop) ...
    assert_eq!(verdict(&c, src(3), 80, 0, SEC), Decision::Drop);
    // ... while the elements already there still match.
    assert_eq!(verdict(&c, src(1), 80, 0, 2 * SEC), Decision::Accept);
    let store = c.dynset_store(TableFamily::Ip, "f", "rl").unwrap();
    assert_eq!((store.len(), store.full_count()), (2, 1));
    // Once they expired, they are collected and there is room again.
    assert_eq!(verdict(&c, src(3), 80, 0, 62 * SEC), Decision::Accept);
    assert_eq!(store.elements(62 * SEC).len(), 1);
}

#[test]
fn ct_count_per_element_counts_the_connections_of_each_key() {
    let c = load(
        "table ip f {
 set m { type ipv4_addr; flags dynamic; }
 chain input { type filter hook input priority 0; policy accept;
  tcp dport 80 add @m { ip saddr ct count over 2 } drop } }",
        1,
    );
    let (a, b) = (v4([198, 51, 100, 1]), v4([198, 51, 100, 2]));
    let mut held = Vec::new();
    let new_conn = |src, held: &mut Vec<_>| {
        let ip = syn(src, 80);
        let mut x = ctx(&ip, ct_state::NEW);
        let mut r = c.eval(Hook::Input, &mut x, 0, SEC);
        held.extend(r.ct_count.drain(..));
        r.verdict
    };
    assert_eq!(new_conn(a, &mut held), Decision::Accept);
    assert_eq!(new_conn(a, &mut held), Decision::Accept);
    assert_eq!(new_conn(a, &mut held), Decision::Drop);
    assert_eq!(new_conn(b, &mut held), Decision::Accept);
    // A dropped connection holds no slot; one that ends gives its slot back.
    assert_eq!(held.len(), 3);
    held.remove(0);
    assert_eq!(new_conn(a, &mut held), Decision::Accept);
}

#[test]
fn two_workers_adding_the_same_keys_at_once_keep_one_element_each() {
    let c = load(
        "table ip f { set s { type ipv4_addr; size 4096; flags dynamic; }
 chain input { type filter hook input priority 0; add @s { ip saddr } } }",
        2,
    );
    std::thread::scope(|sc| {
        for w in 0..2 {
            let c = &c;
            sc.spawn(move || {
                for i in 0..2000u32 {
                    let b = i.to_be_bytes();
                    verdict(c, v4([198, 18, b[2], b[3]]), 80, w, SEC);
                }
            });
        }
    });
    let store = c.dynset_store(TableFamily::Ip, "f", "s").unwrap();
    let els = store.elements(SEC);
    let mut keys: Vec<_> = els.iter().map(|e| e.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((els.len(), keys.len(), store.len()), (2000, 2000, 2000));
}

#[test]
fn an_incremental_change_keeps_the_elements_a_new_definition_does_not() {
    let a = v4([198, 51, 100, 1]);
    let old = load(BLOCK, 1);
    assert_eq!(verdict(&old, a, 22, 0, SEC), Decision::Accept);
    let mut next = load(&BLOCK.replace("policy accept", "policy drop"), 1);
    next.adopt_dynsets(&old);
    assert_eq!(verdict(&next, a, 80, 0, 2 * SEC), Decision::Drop);
    let mut other = load(&BLOCK.replace("timeout 10m", "timeout 5m"), 1);
    other.adopt_dynsets(&old);
    assert_eq!(verdict(&other, a, 80, 0, 2 * SEC), Decision::Accept);
}

#[test]
fn the_publisher_keeps_elements_through_an_incremental_change_only() {
    let a = v4([198, 51, 100, 1]);
    let mut p = Publisher::new(load(BLOCK, 1));
    assert_eq!(verdict(&p.current(), a, 22, 0, SEC), Decision::Accept);
    p.publish_keeping_counters(load(&BLOCK.replace("policy accept", "policy drop"), 1));
    assert_eq!(verdict(&p.current(), a, 80, 0, 2 * SEC), Decision::Drop);
    // A whole replacement (`flush ruleset`) starts empty.
    p.publish(load(BLOCK, 1));
    assert_eq!(verdict(&p.current(), a, 80, 0, 2 * SEC), Decision::Accept);
}

#[test]
fn a_rule_on_a_dynamic_set_is_never_cached_for_first_packets() {
    let c = load(BLOCK, 1);
    let ip = syn(v4([198, 51, 100, 1]), 80);
    let mut x = ctx(&ip, ct_state::NEW);
    let r = c.eval(Hook::Input, &mut x, 0, SEC);
    // The set's match ran (no element): the verdict may change with the set.
    assert!(r.stateful && !r.cacheable);
    assert!(FirstVerdict::of(&r).is_none());
}

/// What nft 1.0.6 listed for concatenated and interface-name keys (in a namespace; the
/// sets declared in this order: fwd lists sets of concatenations after plain sets).
const CONCAT_LISTED: &str = "table ip t {
\tset i {
\t\ttype ifname
\t\tsize 65535
\t\tflags dynamic
\t}

\tset s {
\t\ttype ipv4_addr . inet_service
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 1m
\t}

\tchain in {
\t\ttype filter hook input priority filter; policy accept;
\t\tadd @s { ip saddr . tcp dport }
\t\tupdate @i { iifname }
\t\tip saddr . tcp dport @s accept
\t\tmeter m size 65535 { ip saddr . tcp dport limit rate 5/second } accept
\t\tmeter m2 size 65535 { iifname . ip saddr timeout 10s limit rate 5/second }
\t}
}
";

#[test]
fn concatenated_and_ifname_keys_print_and_match_as_nft() {
    let rs = parse::parse(CONCAT_LISTED).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), CONCAT_LISTED);
    // JSON as nft -j wrote it.
    let j = json::to_json(&rs).to_string();
    for want in [
        r#""size":65535,"table":"t","timeout":60,"type":["ipv4_addr","inet_service"]"#,
        r#"{"set":{"elem":{"concat":[{"payload":{"field":"saddr","protocol":"ip"}},{"payload":{"field":"dport","protocol":"tcp"}}]},"op":"add","set":"@s"}}"#,
        r#"{"set":{"elem":{"meta":{"key":"iifname"}},"op":"update","set":"@i"}}"#,
    ] {
        assert!(j.contains(want), "{want}\nin\n{j}");
    }
    assert_eq!(json::from_json(&json::to_json(&rs)).unwrap(), rs);
    // Semantics: the pair (source, port) is the element, per worker-shared store.
    let c = load_text(CONCAT_LISTED, &ports(), 2).unwrap();
    let a = v4([198, 18, 1, 2]);
    let ip = syn(a, 22);
    let mut x = ctx(&ip, ct_state::NEW);
    x.iif = Some(1);
    let r = c.eval(Hook::Input, &mut x, 0, SEC);
    assert_eq!(r.verdict, Decision::Accept);
    let (key, els) = c.dynset_elements(TableFamily::Ip, "t", "s", SEC).unwrap();
    let texts: Vec<String> = els.iter().map(|e| key.text(e.key)).collect();
    assert_eq!(texts, ["198.18.1.2 . 22"]);
    let (key, els) = c.dynset_elements(TableFamily::Ip, "t", "i", SEC).unwrap();
    assert_eq!(key.text(els[0].key), "\"eth1\"");
    // The third rule (the pair the first added) accepted before the meters.
    let (key, els) = c.dynset_elements(TableFamily::Ip, "t", "m2", SEC).unwrap();
    assert_eq!(
        (key.type_text(), els.len()),
        ("ifname . ipv4_addr".into(), 0)
    );
    // Another port of the same source is another element.
    let ip = syn(a, 23);
    let mut y = ctx(&ip, ct_state::NEW);
    y.iif = Some(1);
    c.eval(Hook::Input, &mut y, 1, SEC);
    let (_, els) = c.dynset_elements(TableFamily::Ip, "t", "s", SEC).unwrap();
    assert_eq!(els.len(), 2);
    // A key wider than a wide store's 256 bits, and a key that does not fit the set.
    let e = load_text(
        "table ip6 t { set s { type ipv6_addr . ipv6_addr . inet_service; flags dynamic; } }",
        &ports(),
        1,
    )
    .unwrap_err();
    assert!(e.msg.contains("at most 256 bits"), "{e}");
    let rs = parse::parse(
        "table ip t { set s { type ipv4_addr . inet_service; flags dynamic; }\n chain c { add @s { ip saddr . udp dport . tcp dport } } }",
    )
    .unwrap();
    let e = check::check(&rs).unwrap_err();
    assert!(
        e.msg.contains("holds ipv4_addr . inet_service values"),
        "{e}"
    );
}

/// A set whose declared elements take the set's timeout or their own, as nft 1.0.6 lists
/// it after `nft -f` (without the `expires` it adds to each element).
const ELEM_TIMEOUTS: &str = "table ip t {
\tset to {
\t\ttype ipv4_addr
\t\ttimeout 30s
\t\telements = { 198.18.1.3, 198.18.1.4 timeout 10s }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr @to drop
\t}
}
";

#[test]
fn declared_element_timeouts_print_and_read_back_as_nft_writes_them() {
    let src = ELEM_TIMEOUTS.replace("timeout 30s\n", "flags timeout\n\t\ttimeout 30s\n");
    let rs = parse::parse(&src).unwrap();
    check::check(&rs).unwrap();
    let to = &rs.tables[0].sets[0];
    assert_eq!(
        to.elem_timeouts,
        [(Value::Prefix(v4([198, 18, 1, 4]), 32), 10_000)]
    );
    assert_eq!(print::to_text(&rs), ELEM_TIMEOUTS);
    assert_eq!(parse::parse(ELEM_TIMEOUTS).unwrap(), rs);
    // JSON as `nft -j list set` writes the elements (less `expires`).
    let j = json::to_json(&rs).to_string();
    let want = r#""elem":["198.18.1.3",{"elem":{"timeout":10,"val":"198.18.1.4"}}]"#;
    assert!(j.contains(want), "{j}");
    assert_eq!(json::from_json(&json::to_json(&rs)).unwrap(), rs);
    // Only in a set with a timeout (the kernel refuses it with EINVAL), in whole seconds.
    let e = parse::parse(
        "table ip t { set s { type ipv4_addr; flags dynamic; elements = { 198.18.1.4 timeout 10s } } }",
    )
    .unwrap_err();
    assert!(e.msg.contains("needs a set with `flags timeout`"), "{e}");
    let e = parse::parse(
        "table ip t { set s { type ipv4_addr; timeout 1m; elements = { 198.18.1.4 timeout 1500ms } } }",
    )
    .unwrap_err();
    assert!(e.msg.contains("whole seconds"), "{e}");
    let j = json::to_json(&rs)
        .to_string()
        .replace(r#""flags":["timeout"],"#, "")
        .replace(r#""timeout":30,"#, "");
    let e = json::from_json(&serde_json::from_str(&j).unwrap()).unwrap_err();
    assert!(e.msg.contains("needs a set with `flags timeout`"), "{e}");
    // A deleted element's own timeout goes with it (`delete element`, the element API).
    let mut rs = rs;
    let del = edit::Element {
        key: vec![Value::Prefix(v4([198, 18, 1, 4]), 32)],
        data: MapValue::None,
        pos: Pos::default(),
        timeout_ms: None,
    };
    let t = &mut rs.tables[0];
    edit::change_elements(t, "to", Pos::default(), vec![del], edit::ElementOp::Delete).unwrap();
    assert!(t.sets[0].elem_timeouts.is_empty());
    check::check(&rs).unwrap();
}

#[test]
fn declared_elements_expire_from_install_with_their_own_or_the_sets_timeout() {
    let c = load(ELEM_TIMEOUTS, 2);
    let (a3, a4, a5) = (
        v4([198, 18, 1, 3]),
        v4([198, 18, 1, 4]),
        v4([198, 18, 1, 5]),
    );
    let t0 = 7 * SEC;
    c.start_declared(t0);
    assert_eq!(verdict(&c, a3, 80, 0, t0 + SEC), Decision::Drop);
    assert_eq!(verdict(&c, a4, 80, 1, t0 + SEC), Decision::Drop);
    assert_eq!(verdict(&c, a5, 80, 1, t0 + SEC), Decision::Accept);
    // The listing: each with the time to its expiry, as `nft list set` shows it.
    let (ty, mut els) = c
        .dynset_elements(TableFamily::Ip, "t", "to", t0 + SEC)
        .unwrap();
    els.sort_by_key(|e| e.key);
    let text: Vec<String> = els.iter().map(|e| dynlist::element_text(ty, e)).collect();
    // `.4`'s own timeout is written, as nft 1.0.6 writes it; `.3` has the set's.
    assert_eq!(
        text,
        [
            "198.18.1.3 expires 29s",
            "198.18.1.4 timeout 10s expires 9s"
        ]
    );
    assert_eq!(
        dynlist::element_json(ty, &els[1]).to_string(),
        r#"{"elem":{"expires":9,"timeout":10,"val":"198.18.1.4"}}"#
    );
    // `.4` expires at its own 10 s, `.3` at the set's 30 s.
    assert_eq!(verdict(&c, a4, 80, 0, t0 + 10 * SEC - 1), Decision::Drop);
    assert_eq!(verdict(&c, a4, 80, 0, t0 + 10 * SEC), Decision::Accept);
    assert_eq!(verdict(&c, a3, 80, 1, t0 + 10 * SEC), Decision::Drop);
    assert_eq!(verdict(&c, a3, 80, 1, t0 + 30 * SEC), Decision::Accept);
    assert!(
        c.dynset_elements(TableFamily::Ip, "t", "to", t0 + 30 * SEC)
            .unwrap()
            .1
            .is_empty()
    );
}

#[test]
fn a_whole_replacement_restarts_declared_timeouts_an_incremental_change_does_not() {
    let a4 = v4([198, 18, 1, 4]);
    let t0 = 7 * SEC;
    let old = load(ELEM_TIMEOUTS, 1);
    old.start_declared(t0);
    let later = t0 + 20 * SEC;
    assert_eq!(verdict(&old, a4, 80, 0, later), Decision::Accept);
    // `nft add rule`: the kernel keeps the set's elements (`.4` stays expired).
    let mut next = load(&ELEM_TIMEOUTS.replace("policy accept", "policy drop"), 1);
    next.adopt_dynsets(&old);
    next.start_declared(later);
    let live = next
        .dynset_elements(TableFamily::Ip, "t", "to", later)
        .unwrap()
        .1;
    assert_eq!(live.len(), 1, "{live:?}");
    // `nft -f` of the whole ruleset adds the elements again: `.4` has 10 s from now.
    let fresh = load(ELEM_TIMEOUTS, 1);
    fresh.start_declared(later);
    assert_eq!(
        verdict(&fresh, a4, 80, 0, later + 10 * SEC - 1),
        Decision::Drop
    );
    assert_eq!(
        verdict(&fresh, a4, 80, 0, later + 10 * SEC),
        Decision::Accept
    );
}

#[test]
fn an_element_command_with_a_timeout_reaches_the_live_store_of_every_worker() {
    let (a3, a4, a5, a6) = (
        v4([198, 18, 1, 3]),
        v4([198, 18, 1, 4]),
        v4([198, 18, 1, 5]),
        v4([198, 18, 1, 6]),
    );
    let t0 = 7 * SEC;
    let old = load(ELEM_TIMEOUTS, 2);
    old.start_declared(t0);
    let now = t0 + 20 * SEC;
    // `.4` (10 s) has expired; the commands add `.5` with its own 5 s and `.6` with the
    // set's 30 s, and delete `.3`.
    let script = "add element ip t to { 198.18.1.5 timeout 5s, 198.18.1.6 }\n\
                  delete element ip t to { 198.18.1.3 }\n";
    let rs = parse::apply(old.source(), script).unwrap();
    check::check(&rs).unwrap();
    let to = &rs.tables[0].sets[0];
    assert_eq!(to.elem_timeout(&Value::Prefix(a5, 32)), Some(5_000));
    assert_eq!(to.elem_timeout(&Value::Prefix(a6, 32)), None);
    assert!(
        print::to_text(&rs)
            .contains("elements = { 198.18.1.4 timeout 10s, 198.18.1.5 timeout 5s, 198.18.1.6 }"),
        "{}",
        print::to_text(&rs)
    );
    let mut next = compile(&rs, &ports(), 2).unwrap();
    next.adopt_dynsets(&old);
    next.start_declared(now);
    for w in 0..2 {
        assert_eq!(verdict(&next, a5, 80, w, now + 5 * SEC - 1), Decision::Drop);
        assert_eq!(verdict(&next, a5, 80, w, now + 5 * SEC), Decision::Accept);
        assert_eq!(
            verdict(&next, a6, 80, w, now + 30 * SEC - 1),
            Decision::Drop
        );
        assert_eq!(verdict(&next, a6, 80, w, now + 30 * SEC), Decision::Accept);
        // Deleted, and still expired (an incremental change keeps the running elements).
        assert_eq!(verdict(&next, a3, 80, w, now), Decision::Accept);
        assert_eq!(verdict(&next, a4, 80, w, now), Decision::Accept);
    }
    let live = next
        .dynset_elements(TableFamily::Ip, "t", "to", now + SEC)
        .unwrap()
        .1;
    let mut exp: Vec<_> = live.iter().map(|e| e.expires_ns).collect();
    exp.sort();
    assert_eq!(exp, [Some(4 * SEC), Some(29 * SEC)], "{live:?}");
}

#[test]
fn element_command_timeouts_are_refused_where_the_kernel_refuses_them() {
    let base = parse::parse(&format!(
        "{ELEM_TIMEOUTS}table ip u {{\n\tset p {{ type ipv4_addr; }}\n\tset c {{ type ipv4_addr \
         . inet_service; flags timeout; }}\n\tmap m {{ type ipv4_addr : verdict; }}\n}}\n"
    ))
    .unwrap();
    let err = |script: &str| parse::apply(&base, script).unwrap_err();
    // No `flags timeout` (nft 1.0.6: "Invalid argument", at the element).
    let e = err("add element ip u p { 198.18.1.5 timeout 5s }");
    assert_eq!((e.line, e.col), (1, 22), "{e}");
    assert!(e.msg.contains("no `flags timeout`"), "{e}");
    // Whole seconds only (`nft -j` has no smaller unit).
    let e = err("add element ip t to {\n198.18.1.5 timeout 500ms }");
    assert_eq!((e.line, e.col), (2, 20), "{e}");
    assert!(e.msg.contains("whole seconds"), "{e}");
    // A map's element alike (a map without `flags timeout`: the kernel refuses it too).
    let e = err("add element ip u m { 198.18.1.5 timeout 5s : accept }");
    assert_eq!((e.line, e.col), (1, 22), "{e}");
    assert!(e.msg.contains("no `flags timeout`"), "{e}");
    // A set of concatenations with `flags timeout` takes one (nft 1.0.6 does).
    let rs = parse::apply(&base, "add element ip u c { 198.18.1.5 . 80 timeout 5s }").unwrap();
    check::check(&rs).unwrap();
    assert!(
        print::to_text(&rs).contains("elements = { 198.18.1.5 . 80 timeout 5s }"),
        "{}",
        print::to_text(&rs)
    );
    // Without a timeout each is fine.
    parse::apply(
        &base,
        "add element ip u p { 198.18.1.5 }\nadd element ip u m { 198.18.1.5 : accept }",
    )
    .unwrap();
}

#[test]
fn the_live_listing_writes_an_elements_own_timeout_where_it_is_not_the_sets() {
    let c = load(BLOCK, 2);
    let (a, b) = (v4([198, 51, 100, 1]), v4([198, 51, 100, 2]));
    let t0 = 5 * SEC;
    // `a` is added with the set's 10m, `b` by `update … timeout 1m` (nft 1.0.6 lists
    // such an element as `198.18.0.6 timeout 20s expires 19s996ms`).
    assert_eq!(verdict(&c, a, 22, 0, t0), Decision::Accept);
    assert_eq!(verdict(&c, b, 53, 1, t0), Decision::Accept);
    let (ty, mut els) = c
        .dynset_elements(TableFamily::Inet, "f", "bl", t0 + SEC)
        .unwrap();
    els.sort_by_key(|e| e.key);
    let text: Vec<String> = els.iter().map(|e| dynlist::element_text(ty, e)).collect();
    assert_eq!(
        text,
        [
            "198.51.100.1 expires 9m59s",
            "198.51.100.2 timeout 1m expires 59s"
        ]
    );
    assert_eq!(
        dynlist::element_json(ty, &els[1]),
        serde_json::json!({"elem": {"val": "198.51.100.2", "timeout": 60, "expires": 59}})
    );
}

/// A set of concatenations with declared element timeouts as nft 1.0.6 lists it (its
/// `expires` left out: that is not read back).
const CONCAT_TIMEOUTS: &str = "table ip t {
\tset c {
\t\ttype ipv4_addr . inet_service
\t\tflags timeout
\t\telements = { 198.18.1.2 . 22 timeout 10s, 198.18.1.3 . 22 }
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr . tcp dport @c drop
\t}
}
";

#[test]
fn concatenated_element_timeouts_print_match_and_expire_as_nft() {
    let rs = parse::parse(CONCAT_TIMEOUTS).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), CONCAT_TIMEOUTS);
    // `nft -j list set ip t c`'s elements (nft 1.0.6, `expires` aside).
    let j = json::to_json(&rs);
    let set = j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| x.get("set"))
        .unwrap();
    assert_eq!(
        set["elem"],
        serde_json::json!([
            {"elem": {"val": {"concat": ["198.18.1.2", 22]}, "timeout": 10}},
            {"concat": ["198.18.1.3", 22]}
        ])
    );
    assert_eq!(json::from_json(&j).unwrap(), rs);
    let c = load(CONCAT_TIMEOUTS, 2);
    let t0 = 3 * SEC;
    c.start_declared(t0);
    let (a2, a3) = (v4([198, 18, 1, 2]), v4([198, 18, 1, 3]));
    for w in 0..2 {
        assert_eq!(verdict(&c, a2, 22, w, t0 + 10 * SEC - 1), Decision::Drop);
        assert_eq!(verdict(&c, a2, 22, w, t0 + 10 * SEC), Decision::Accept);
        // No timeout in a set with `flags timeout` and none of its own: never expires.
        assert_eq!(verdict(&c, a3, 22, w, t0 + 1000 * SEC), Decision::Drop);
    }
    let (ty, els) = c
        .dynset_elements(TableFamily::Ip, "t", "c", t0 + SEC)
        .unwrap();
    let text: Vec<String> = els.iter().map(|e| dynlist::element_text(ty, e)).collect();
    assert!(
        text.contains(&"198.18.1.2 . 22 timeout 10s expires 9s".to_string()),
        "{text:?}"
    );
    // Refused where the kernel refuses it: a set of concatenations without a timeout.
    let e = parse::parse(&CONCAT_TIMEOUTS.replace("\t\tflags timeout\n", "")).unwrap_err();
    assert!(e.msg.contains("`flags timeout`"), "{e}");
}

/// Keys wider than 128 bits as nft 1.0.6 lists them (checked in a namespace, counters
/// and elements left out).
const WIDE_LISTED: &str = "table ip6 t {
\tset s {
\t\ttype ipv6_addr . inet_service
\t\tsize 65535
\t\tflags dynamic,timeout
\t\ttimeout 1m
\t}

\tset p {
\t\ttype ipv6_addr . ipv6_addr
\t\tsize 4
\t\tflags dynamic
\t}

\tchain c {
\t\ttype filter hook input priority filter; policy accept;
\t\tip6 saddr . tcp dport @s drop
\t\ttcp dport 22 add @s { ip6 saddr . tcp dport }
\t\ttcp dport 23 update @p { ip6 saddr . ip6 daddr }
\t\ttcp dport 24 meter m size 16 { ip6 saddr . tcp dport limit rate 2/minute burst 2 packets } accept
\t}
}
";

fn v6(s: &str) -> Addr {
    Addr(s.parse::<std::net::Ipv6Addr>().unwrap().octets())
}

#[test]
fn keys_wider_than_128_bits_match_list_and_take_elements_as_nft() {
    let rs = parse::parse(WIDE_LISTED).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), WIDE_LISTED);
    assert_eq!(json::from_json(&json::to_json(&rs)).unwrap(), rs);
    let c = load_text(WIDE_LISTED, &ports(), 2).unwrap();
    let (a, b) = (v6("2001:db8::1"), v6("2002:db8::1"));
    let dst = v6("2001:db8::ff");
    let eval6 = |src: Addr, dport: u16, worker: usize, now: u64| {
        let ip = tcp(src, dst, 40000, dport, TcpFlags::SYN);
        let mut x = ctx(&ip, ct_state::NEW);
        c.eval(Hook::Input, &mut x, worker, now).verdict
    };
    // Worker 0 adds (a, 22); worker 1 drops its next packet to 22, not one to 25, and
    // not b's to 22: b differs from a only in the key's high 128 bits.
    assert_eq!(eval6(a, 25, 1, SEC), Decision::Accept);
    assert_eq!(eval6(a, 22, 0, SEC), Decision::Accept);
    assert_eq!(eval6(a, 22, 1, SEC + 1), Decision::Drop);
    assert_eq!(eval6(a, 25, 1, SEC + 1), Decision::Accept);
    let (key, els) = c.dynset_elements(TableFamily::Ip6, "t", "s", SEC).unwrap();
    assert_eq!(els.len(), 1);
    assert_eq!(key.text(els[0].key), "2001:db8::1 . 22");
    assert_eq!(
        key.json(els[0].key),
        serde_json::json!({"concat": ["2001:db8::1", 22]})
    );
    assert_eq!(eval6(b, 22, 1, SEC + 2), Decision::Accept, "added");
    assert_eq!(eval6(b, 22, 0, SEC + 3), Decision::Drop);
    // The timeout holds for wide keys too.
    assert_eq!(
        eval6(a, 22, 1, 61 * SEC + 1),
        Decision::Accept,
        "expired, re-added"
    );
    // Two addresses (256 bits): the pair is the element.
    assert_eq!(eval6(a, 23, 0, SEC), Decision::Accept);
    assert_eq!(eval6(b, 23, 1, SEC), Decision::Accept);
    let (key, els) = c.dynset_elements(TableFamily::Ip6, "t", "p", SEC).unwrap();
    let mut texts: Vec<String> = els.iter().map(|e| key.text(e.key)).collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["2001:db8::1 . 2001:db8::ff", "2002:db8::1 . 2001:db8::ff"]
    );
    // A meter keyed by address and port: one element per source.
    for (src, w) in [(b, 0), (b, 1), (a, 0)] {
        assert_eq!(eval6(src, 24, w, 2 * SEC), Decision::Accept);
    }
    let (key, els) = c
        .dynset_elements(TableFamily::Ip6, "t", "m", 2 * SEC)
        .unwrap();
    let mut texts: Vec<String> = els.iter().map(|e| key.text(e.key)).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["2001:db8::1 . 24", "2002:db8::1 . 24"]);
    // An element as a command or the API writes it is the packet's key.
    let (key, _) = c.dynset_elements(TableFamily::Ip6, "t", "s", SEC).unwrap();
    let store = c.dynset_store(TableFamily::Ip6, "t", "s").unwrap();
    let at = |text: &str| {
        let (e, _) = parse::element(&key.types, None, text, None).unwrap();
        store.lookup(key.key(&e).unwrap(), 62 * SEC).is_some()
    };
    assert!(at("2001:db8::1 . 22"));
    assert!(!at("2001:db8::1 . 24"));
    assert!(!at("2003:db8::1 . 22"));
    assert!(
        store.delete(
            key.key(
                &parse::element(&key.types, None, "2001:db8::1 . 22", None)
                    .unwrap()
                    .0
            )
            .unwrap(),
            62 * SEC
        )
    );
    assert!(!at("2001:db8::1 . 22"), "deleted");
}
