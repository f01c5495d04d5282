//! Element timeouts in maps and verdict maps (`flags timeout`, `timeout 30s`, `198.18.1.2
//! timeout 10s : accept`): the forms nft 1.0.6 lists, and evaluation with a fake clock
//! (an element expires on every worker at its expiry, element commands with their own
//! timeout, the live listing merging the hash table's elements and the store's).

use super::ast::*;
use super::compile::{Decision, ct_state};
use super::tests::{ctx, ports, tcp, v4};
use super::*;
use crate::wire::{Addr, TcpFlags};

/// What `nft list ruleset` printed for these maps (nft 1.0.6, Debian 12's kernel), the
/// `expires` of each element left out (a moment's reading; the declaration has none).
const LISTED: &str = "table ip t {
\tmap m {
\t\ttype ipv4_addr : verdict
\t\tflags timeout
\t\telements = { 198.18.1.2 timeout 10s : drop, 198.18.1.3 timeout 5s : drop, 198.18.1.4 : drop }
\t}

\tmap d {
\t\ttype inet_service : ipv4_addr
\t\ttimeout 30s
\t\telements = { 80 : 198.18.2.2, 81 timeout 5s : 198.18.2.9 }
\t}

\tchain pre {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tdnat to tcp dport map @d
\t}

\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr vmap @m
\t}
}
";

const SEC: u64 = 1_000_000_000;

fn load(src: &str, workers: usize) -> CompiledRuleset {
    load_text(src, &ports(), workers).unwrap()
}

/// The input hook's verdict for a new TCP connection from `src` (never cacheable: the
/// map's elements expire).
fn verdict(c: &CompiledRuleset, src: Addr, worker: usize, now: u64) -> Decision {
    let ip = tcp(src, v4([198, 18, 0, 1]), 40000, 22, TcpFlags::SYN);
    let mut x = ctx(&ip, ct_state::NEW);
    let r = c.eval(Hook::Input, &mut x, worker, now);
    assert!(!r.cacheable, "a map whose elements expire is never cached");
    r.verdict
}

/// The DNAT address the prerouting hook gives a first packet to `dport`.
fn dnat(c: &CompiledRuleset, dport: u16, now: u64) -> Option<Addr> {
    let ip = tcp(
        v4([198, 18, 1, 9]),
        v4([198, 18, 0, 1]),
        40000,
        dport,
        TcpFlags::SYN,
    );
    let mut x = ctx(&ip, ct_state::NEW);
    x.first_packet = true;
    let r = c.eval(Hook::Prerouting, &mut x, 0, now);
    r.nat.and_then(|a| a.range.addr).map(|(a, _)| a)
}

#[test]
fn map_element_timeouts_print_and_read_back_as_nft() {
    let rs = parse::parse(LISTED).unwrap();
    check::check(&rs).unwrap();
    assert_eq!(print::to_text(&rs), LISTED);
    let j = json::to_json(&rs);
    let maps: Vec<&serde_json::Value> = j["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.get("map"))
        .collect();
    // `nft -j list map` of the same maps (nft 1.0.6), `expires` aside.
    assert_eq!(maps[0]["flags"], serde_json::json!(["timeout"]));
    assert_eq!(
        maps[0]["elem"],
        serde_json::json!([
            [{"elem": {"val": "198.18.1.2", "timeout": 10}}, {"drop": null}],
            [{"elem": {"val": "198.18.1.3", "timeout": 5}}, {"drop": null}],
            ["198.18.1.4", {"drop": null}]
        ])
    );
    assert_eq!(maps[1]["timeout"], 30);
    assert_eq!(
        maps[1]["elem"],
        serde_json::json!([[80, "198.18.2.2"], [{"elem": {"val": 81, "timeout": 5}}, "198.18.2.9"]])
    );
    assert_eq!(json::from_json(&j).unwrap(), rs);
    // Refused where the kernel refuses it (a map without `flags timeout` or `timeout`),
    // with the element's place; and what is not built here, at the map.
    let e = parse::parse(&LISTED.replace("\t\tflags timeout\n", "")).unwrap_err();
    assert!(e.msg.contains("`flags timeout`"), "{e}");
    let e = parse::parse(&LISTED.replace("flags timeout", "flags timeout,interval")).unwrap_err();
    assert_eq!((e.line, e.token.as_str()), (2, "m"), "{e}");
    let e = parse::parse(&LISTED.replace("flags timeout", "flags dynamic,timeout")).unwrap_err();
    assert_eq!((e.line, e.col, e.token.as_str()), (4, 9, "dynamic"), "{e}");
    assert!(e.msg.contains("not supported"), "{e}");
}

#[test]
fn map_elements_expire_on_every_worker_and_list_with_what_is_left() {
    let c = load(LISTED, 2);
    let t0 = 3 * SEC;
    c.start_declared(t0);
    let (a2, a3, a4, a5) = (
        v4([198, 18, 1, 2]),
        v4([198, 18, 1, 3]),
        v4([198, 18, 1, 4]),
        v4([198, 18, 1, 5]),
    );
    for w in 0..2 {
        assert_eq!(verdict(&c, a2, w, t0 + 10 * SEC - 1), Decision::Drop);
        assert_eq!(verdict(&c, a2, w, t0 + 10 * SEC), Decision::Accept);
        assert_eq!(verdict(&c, a3, w, t0 + 5 * SEC - 1), Decision::Drop);
        assert_eq!(verdict(&c, a3, w, t0 + 5 * SEC), Decision::Accept);
        // No timeout of its own in a map with `flags timeout`: never expires.
        assert_eq!(verdict(&c, a4, w, t0 + 1000 * SEC), Decision::Drop);
        assert_eq!(verdict(&c, a5, w, t0), Decision::Accept);
    }
    // The map's `timeout 30s` for `80`, its own 5 s for `81`.
    let (to2, to9) = (v4([198, 18, 2, 2]), v4([198, 18, 2, 9]));
    assert_eq!(dnat(&c, 80, t0 + 30 * SEC - 1), Some(to2));
    assert_eq!(dnat(&c, 80, t0 + 30 * SEC), None);
    assert_eq!(dnat(&c, 81, t0 + 5 * SEC - 1), Some(to9));
    assert_eq!(dnat(&c, 81, t0 + 5 * SEC), None);
    // The listing: the hash table's element and the store's live ones, as nft lists them.
    let now = t0 + 6 * SEC;
    let (key, live) = c
        .timed_map_elements(TableFamily::Ip, "t", "m", now)
        .unwrap();
    let m = &c.source().tables[0].maps[0];
    let text: Vec<String> = live
        .iter()
        .map(|(i, x)| dynlist::map_element(m, key, *i, x.as_ref()).0)
        .collect();
    assert_eq!(
        text,
        [
            "198.18.1.2 timeout 10s expires 4s : drop",
            "198.18.1.4 : drop"
        ]
    );
    let (key, live) = c
        .timed_map_elements(TableFamily::Ip, "t", "d", now)
        .unwrap();
    let d = &c.source().tables[0].maps[1];
    let json: Vec<serde_json::Value> = live
        .iter()
        .map(|(i, x)| dynlist::map_element(d, key, *i, x.as_ref()).1)
        .collect();
    assert_eq!(
        json,
        [serde_json::json!([{"elem": {"val": 80, "expires": 24}}, "198.18.2.2"])]
    );
    // A map without timeouts has no store.
    assert!(
        load(
            &LISTED
                .replace("\t\tflags timeout\n", "")
                .replace(" timeout 10s", "")
                .replace(" timeout 5s", "")
                .replace("\t\ttimeout 30s\n", ""),
            1
        )
        .timed_map_elements(TableFamily::Ip, "t", "m", now)
        .is_none()
    );
}

#[test]
fn map_element_commands_with_a_timeout_reach_every_worker_and_keep_the_running_ones() {
    let old = load(LISTED, 2);
    let t0 = 5 * SEC;
    old.start_declared(t0);
    let now = t0 + 7 * SEC;
    // `.3` (5 s) has expired; `.2` has 3 s left. The commands add `.5` with its own 20 s
    // and `.6` without a timeout, and delete `.2`.
    let script = "add element ip t m { 198.18.1.5 timeout 20s : drop, 198.18.1.6 : drop }\n\
                  delete element ip t m { 198.18.1.2 }\n\
                  add element ip t d { 82 : 198.18.2.8 }\n";
    let rs = parse::apply(old.source(), script).unwrap();
    let mut next = compile(&rs, &ports(), 2).unwrap();
    next.adopt_dynsets(&old);
    next.start_declared(now);
    let (a2, a3, a5, a6) = (
        v4([198, 18, 1, 2]),
        v4([198, 18, 1, 3]),
        v4([198, 18, 1, 5]),
        v4([198, 18, 1, 6]),
    );
    for w in 0..2 {
        assert_eq!(verdict(&next, a5, w, now + 20 * SEC - 1), Decision::Drop);
        assert_eq!(verdict(&next, a5, w, now + 20 * SEC), Decision::Accept);
        assert_eq!(verdict(&next, a6, w, now + 1000 * SEC), Decision::Drop);
        assert_eq!(verdict(&next, a2, w, now), Decision::Accept, "deleted");
        assert_eq!(
            verdict(&next, a3, w, now),
            Decision::Accept,
            "still expired"
        );
    }
    // `80` kept its expiry (30 s from t0), `82` took the map's 30 s from now.
    assert_eq!(dnat(&next, 80, t0 + 30 * SEC), None);
    assert_eq!(
        dnat(&next, 82, now + 30 * SEC - 1),
        Some(v4([198, 18, 2, 8]))
    );
    assert_eq!(dnat(&next, 82, now + 30 * SEC), None);
    // Refused where the kernel refuses it: a timeout in a map without one.
    let plain = LISTED
        .replace("\t\tflags timeout\n", "")
        .replace(" timeout 10s", "")
        .replace(" timeout 5s", "");
    let e = parse::apply(
        &parse::parse(&plain).unwrap(),
        "add element ip t m { 198.18.1.7 timeout 5s : drop }\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (1, 22), "{e}");
    assert!(e.msg.contains("`flags timeout`"), "{e}");
}
