//! nft command scripts (`parse/cmd.rs`, `edit.rs`): the documents' script, handles,
//! positions, all-or-nothing application, `-a` listings, and counters kept across an
//! incremental change.

use super::ast::*;
use super::compile::ct_state;
use super::tests::{ctx, ports, tcp, v4};
use super::*;

/// The nft command script of the documents (issue 23), as they write it.
pub(crate) const SCRIPT: &str = "flush ruleset
add table ip filter
add chain ip filter input { type filter hook input priority 0 ; policy drop ; }
add chain ip filter forward { type filter hook forward priority 0 ; policy drop ; }
add chain ip filter output { type filter hook output priority 0 ; policy accept ; }
add rule ip filter input ct state established,related accept
add rule ip filter input ct state invalid drop
add rule ip filter input tcp dport 22 ct state new accept
add rule ip filter input tcp dport { 80, 443 } accept
add rule ip filter input ip protocol icmp accept
add table ip nat
add chain ip nat postrouting { type nat hook postrouting priority 100 ; }
add rule ip nat postrouting oifname \"eth0\" masquerade
";

/// The same ruleset as `table` blocks.
const BLOCKS: &str = "flush ruleset
table ip filter {
    chain input {
        type filter hook input priority 0; policy drop;
        ct state established,related accept
        ct state invalid drop
        tcp dport 22 ct state new accept
        tcp dport { 80, 443 } accept
        ip protocol icmp accept
    }
    chain forward {
        type filter hook forward priority 0; policy drop;
    }
    chain output {
        type filter hook output priority 0; policy accept;
    }
}
table ip nat {
    chain postrouting {
        type nat hook postrouting priority 100;
        oifname \"eth0\" masquerade
    }
}
";

fn handles(rs: &Ruleset, table: usize, chain: usize) -> Vec<u64> {
    rs.tables[table].chains[chain]
        .rules
        .iter()
        .map(|r| r.handle)
        .collect()
}

fn rule_texts(rs: &Ruleset, table: usize, chain: usize) -> Vec<String> {
    rs.tables[table].chains[chain]
        .rules
        .iter()
        .map(print::rule)
        .collect()
}

#[test]
fn the_documents_script_parses_to_the_same_ruleset_as_blocks() {
    let script = parse::parse(SCRIPT).unwrap();
    let blocks = parse::parse(BLOCKS).unwrap();
    assert_eq!(print::first_difference(&script, &blocks), None);
    assert_eq!(script, blocks, "handles too: 1.. per table in order");
    check::check(&script).unwrap();
    compile(&script, &ports(), 1).unwrap();
}

#[test]
fn positions_handles_replace_and_delete() {
    let base = parse::parse(BLOCKS).unwrap();
    assert_eq!(handles(&base, 0, 0), [1, 2, 3, 4, 5]);
    let rs = parse::apply(
        &base,
        "add rule ip filter input udp dport 53 accept
insert rule ip filter input tcp dport 1 drop
add rule ip filter input position 3 tcp dport 2 drop
insert rule ip filter input position 3 tcp dport 3 drop
add rule ip filter input index 0 tcp dport 4 drop
insert rule filter input index 0 tcp dport 5 drop
replace rule ip filter input handle 4 tcp dport 443 accept
delete rule ip filter input handle 2
",
    )
    .unwrap();
    assert_eq!(
        rule_texts(&rs, 0, 0),
        [
            "tcp dport 5 drop",
            "tcp dport 1 drop",
            "tcp dport 4 drop",
            "ct state established,related accept",
            "tcp dport 3 drop",
            "tcp dport 22 ct state new accept",
            "tcp dport 2 drop",
            "tcp dport 443 accept",
            "ip protocol icmp accept",
            "udp dport 53 accept",
        ]
    );
    // New rules: one more than the table's largest handle, in command order; `replace`
    // keeps the handle.
    assert_eq!(handles(&rs, 0, 0), [11, 7, 10, 1, 9, 3, 8, 4, 5, 6]);
    // The other table is untouched.
    assert_eq!(rs.tables[1], base.tables[1]);
}

#[test]
fn a_failing_command_applies_nothing_and_names_its_position() {
    let base = parse::parse(BLOCKS).unwrap();
    let e = parse::apply(
        &base,
        "add rule ip filter input tcp dport 7 accept\ndelete rule ip filter input handle 99\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.col, e.token.as_str()), (2, 36, "99"), "{e}");
    let e = parse::apply(&base, "add rule ip filter nosuch accept\n").unwrap_err();
    assert_eq!((e.line, e.col), (1, 20), "{e}");
    let e = parse::apply(&base, "add rule ip nope input accept\n").unwrap_err();
    assert_eq!((e.line, e.col), (1, 13), "{e}");
    let e = parse::apply(
        &base,
        "add chain ip filter x\nadd rule ip filter input jump x\ndelete chain ip filter x\n",
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (3, 24), "{e}");
    let e = parse::apply(&base, "create table ip filter\n").unwrap_err();
    assert!(e.msg.contains("exists"), "{e}");
    let e = parse::apply(
        &base,
        "add chain ip filter input { type filter hook forward priority 0; }\n",
    )
    .unwrap_err();
    assert!(e.msg.contains("another type, hook or priority"), "{e}");
    // What the issue reported: a command file is no longer "expected `table`".
    assert!(parse::parse("flush ruleset\nadd table ip filter\n").is_ok());
}

#[test]
fn blocks_merge_into_existing_tables_and_chains() {
    let base = parse::parse(BLOCKS).unwrap();
    let rs = parse::apply(
        &base,
        "table ip filter {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
         udp dport 53 accept\n }\n chain extra {\n  drop\n }\n}\n",
    )
    .unwrap();
    let input = &rs.tables[0].chains[0];
    assert_eq!(input.base.unwrap().policy, Policy::Accept);
    assert_eq!(input.rules.len(), 6);
    assert_eq!(handles(&rs, 0, 0), [1, 2, 3, 4, 5, 6]);
    assert_eq!(rs.tables[0].chains[3].name, "extra");
    assert_eq!(handles(&rs, 0, 3), [7]);
}

#[test]
fn sets_and_elements() {
    let base = parse::parse(BLOCKS).unwrap();
    let rs = parse::apply(
        &base,
        "add set ip filter blocked { type ipv4_addr; flags interval; }
add element ip filter blocked { 198.18.0.0/24, 198.51.100.7 }
add rule ip filter input ip saddr @blocked drop
delete element ip filter blocked { 198.51.100.7 }
",
    )
    .unwrap();
    let s = &rs.tables[0].sets[0];
    assert_eq!(s.elements.len(), 1);
    compile(&rs, &ports(), 1).unwrap();
    let e = parse::apply(&rs, "delete element ip filter blocked { 203.0.113.1 }\n").unwrap_err();
    assert!(e.msg.contains("does not exist"), "{e}");
    let e = parse::apply(&rs, "delete set ip filter blocked\n").unwrap_err();
    assert!(e.msg.contains("used by a rule"), "{e}");
    let e = parse::apply(&rs, "add element ip filter blocked { 22 }\n").unwrap_err();
    assert_eq!((e.line, e.col), (1, 33), "{e}");
    let rs = parse::apply(
        &rs,
        "flush chain ip filter input\ndelete set ip filter blocked\n",
    )
    .unwrap();
    assert!(rs.tables[0].sets.is_empty());
    assert!(rs.tables[0].chains[0].rules.is_empty());
    let rs = parse::apply(&rs, "delete table ip nat\n").unwrap();
    assert_eq!(rs.tables.len(), 1);
    let rs = parse::apply(&rs, "flush ruleset\n").unwrap();
    assert!(rs.tables.is_empty() && rs.flush);
}

#[test]
fn listing_with_handles_reads_back() {
    let rs = parse::apply(
        &parse::parse(BLOCKS).unwrap(),
        "delete rule ip filter input handle 1\nadd rule ip filter input tcp dport 8 accept\n",
    )
    .unwrap();
    let text = print::to_text_with_handles(&rs, &|_, _, _| None);
    assert!(
        text.contains("\t\tct state invalid drop # handle 2\n"),
        "{text}"
    );
    assert!(
        text.contains("\t\ttcp dport 8 accept # handle 6\n"),
        "{text}"
    );
    let back = parse::parse(&text).unwrap();
    assert_eq!(print::first_difference(&rs, &back), None);
}

/// An incremental change keeps the counters of the rules it did not touch, including
/// what a worker counted in the old generation after the change was published.
#[test]
fn counters_of_untouched_rules_survive_an_add_rule() {
    let c = compile(&parse::parse(BLOCKS).unwrap(), &ports(), 1).unwrap();
    let mut publisher = Publisher::new(c);
    let mut w = publisher.worker();
    let ssh = tcp(v4([198, 18, 0, 1]), v4([198, 18, 0, 2]), 1000, 22, 0x02);
    let web = tcp(v4([198, 18, 0, 1]), v4([198, 18, 0, 2]), 1000, 80, 0x02);
    for _ in 0..3 {
        w.get()
            .eval(Hook::Input, &mut ctx(&ssh, ct_state::NEW), 0, 1);
    }
    w.get()
        .eval(Hook::Input, &mut ctx(&web, ct_state::NEW), 0, 1);
    let next = parse::apply(
        publisher.current().source(),
        "add rule ip filter input udp dport 53 accept\nreplace rule ip filter input handle 4 tcp dport { 80, 443 } accept comment \"web\"\n",
    )
    .unwrap();
    publisher.publish_keeping_counters(compile(&next, &ports(), 1).unwrap());
    // The worker has not moved on yet: one more SSH packet lands in the old generation.
    w.get()
        .eval(Hook::Input, &mut ctx(&ssh, ct_state::NEW), 0, 1);
    assert!(w.refresh());
    w.get()
        .eval(Hook::Input, &mut ctx(&web, ct_state::NEW), 0, 1);
    assert_eq!(publisher.reclaim(), 0);
    let cur = publisher.current();
    let counts = cur.counters();
    let by_handle = |h: u64| {
        let mut rules = cur.source().tables[0].chains[0].rules.iter();
        let index = rules.position(|r| r.handle == h).unwrap();
        counts[cur.rule_id(0, 0, index).unwrap() as usize].0
    };
    assert_eq!(
        by_handle(3),
        4,
        "ssh rule: 3 before, 1 late in the old generation"
    );
    assert_eq!(by_handle(4), 1, "the replaced rule starts again");
    assert_eq!(by_handle(6), 0, "the new rule");
}

/// Maps, verdict maps and sets of concatenations declared and used by commands, their
/// elements added and deleted with the kernel's rules (checked with nft 1.0.6 on Linux:
/// `add` of an element that is there is fine, with other data "File exists"; `create` of
/// one that is there and `delete` of one that is not fail the whole transaction; `delete`
/// compares the key only; `flush table` keeps the elements).
#[test]
fn elements_of_maps_and_concatenated_sets() {
    let base = parse::parse(BLOCKS).unwrap();
    let rs = parse::apply(
        &base,
        "add map ip filter m { type ipv4_addr . inet_service : verdict; elements = { 198.18.0.1 . 22 : accept } }
add set ip filter c { type ipv4_addr . inet_service; }
add map ip filter d { type inet_service : ipv4_addr . inet_service; }
add rule ip filter input ip saddr . tcp dport vmap @m
add rule ip filter input ip saddr . tcp dport @c drop
add element ip filter m { 198.18.0.1 . 22 : accept, 198.18.0.2 . 80 : drop }
add element ip filter c { 198.18.0.1 . 22, 198.18.0.1 . 22 }
create element ip filter d { 80 : 198.18.1.2 . 8080 }
delete element ip filter m { 198.18.0.1 . 22 : drop }
flush table ip filter
",
    )
    .unwrap();
    compile(&rs, &ports(), 1).unwrap();
    let t = &rs.tables[0];
    let text = |name: &str| {
        let m = t.maps.iter().find(|m| m.name == name).unwrap();
        let mut one = rs.clone();
        one.tables.truncate(1);
        one.tables[0].chains.clear();
        one.tables[0].sets.clear();
        one.tables[0].maps = vec![m.clone()];
        print::to_text(&one)
    };
    assert!(
        text("m").contains("elements = { 198.18.0.2 . 80 : drop }"),
        "{}",
        text("m")
    );
    assert!(text("c").contains("elements = { 198.18.0.1 . 22 }"));
    assert!(text("d").contains("elements = { 80 : 198.18.1.2 . 8080 }"));
    assert!(
        t.chains[0].rules.is_empty(),
        "flush table empties the chains"
    );

    let err = |src: &str| parse::apply(&rs, src).unwrap_err();
    let e = err("add element ip filter m { 198.18.0.2 . 80 : accept }\n");
    assert_eq!(
        (e.line, e.col, e.token.as_str()),
        (1, 27, "198.18.0.2 . 80"),
        "{e}"
    );
    assert!(e.msg.contains("exists with other data"), "{e}");
    let e = err("create element ip filter c { 198.18.0.1 . 22 }\n");
    assert!(e.msg.contains("exists"), "{e}");
    let e = err(
        "add element ip filter c { 198.18.0.5 . 1 }\ndelete element ip filter c { 198.18.0.6 . 1 }\n",
    );
    assert_eq!((e.line, e.col), (2, 30), "{e}");
    assert!(e.msg.contains("does not exist"), "{e}");
    let e = err("add element ip filter c { 198.18.0.2 }\n");
    assert!(e.msg.contains("concatenation"), "{e}");
    let e = err("add element ip filter d { 80 }\n");
    assert!(e.msg.contains("data"), "{e}");
    let e = err("add element ip filter nosuch { 80 }\n");
    assert!(e.msg.contains("no such set or map"), "{e}");
    let rs = parse::apply(
        &rs,
        "flush map ip filter d\ndelete element ip filter c { 198.18.0.1 . 22 }\n",
    )
    .unwrap();
    assert!(
        rs.tables[0]
            .maps
            .iter()
            .all(|m| m.name == "m" || m.elements.is_empty())
    );
}

/// An element change is a new generation in which every rule keeps its counter (the rule
/// using the map too: its statements did not change), and the new element matches.
#[test]
fn counters_survive_an_element_change() {
    let src = "table ip filter {
    map m { type ipv4_addr . inet_service : verdict; elements = { 198.18.0.1 . 22 : accept } }
    chain input {
        type filter hook input priority 0; policy drop;
        ip saddr . tcp dport vmap @m
        tcp dport 80 accept
    }
}
";
    let c = compile(&parse::parse(src).unwrap(), &ports(), 1).unwrap();
    let mut publisher = Publisher::new(c);
    let mut w = publisher.worker();
    let ssh = tcp(v4([198, 18, 0, 1]), v4([198, 18, 0, 2]), 1000, 22, 0x02);
    let other = tcp(v4([198, 18, 0, 3]), v4([198, 18, 0, 2]), 1000, 22, 0x02);
    let web = tcp(v4([198, 18, 0, 1]), v4([198, 18, 0, 2]), 1000, 80, 0x02);
    let eval =
        |w: &mut WorkerRuleset, p| w.get().eval(Hook::Input, &mut ctx(p, ct_state::NEW), 0, 1);
    eval(&mut w, &ssh);
    eval(&mut w, &web);
    assert_eq!(
        eval(&mut w, &other).verdict,
        Decision::Drop,
        "not in the map yet"
    );
    let next = parse::apply(
        publisher.current().source(),
        "add element ip filter m { 198.18.0.3 . 22 : accept }\n",
    )
    .unwrap();
    publisher.publish_keeping_counters(compile(&next, &ports(), 1).unwrap());
    assert!(w.refresh());
    assert_eq!(eval(&mut w, &other).verdict, Decision::Accept);
    assert_eq!(publisher.reclaim(), 0);
    let cur = publisher.current();
    let counts = cur.counters();
    let count = |i| counts[cur.rule_id(0, 0, i).unwrap() as usize].0;
    assert_eq!(
        (count(0), count(1)),
        (2, 1),
        "vmap rule: 1 before + 1 after; web: 1"
    );
}

/// The kernel never gives a rule handle twice in a table's life, not even the last rule's
/// after its deletion (nft 1.0.6: delete handle 5 of 5, add: handle 6); a deleted and
/// re-created table starts again. `HandleMarks` carries that from one script (generation)
/// to the next.
#[test]
fn handles_are_never_given_twice_in_a_tables_life() {
    let base = parse::parse(BLOCKS).unwrap();
    let mut marks = edit::HandleMarks::default();
    let del = "delete rule ip filter input handle 5\n";
    let add = "add rule ip filter input udp dport 53 accept\n";
    let rs = parse::apply_marked(&base, del, &mut marks).unwrap();
    let rs = parse::apply_marked(&rs, add, &mut marks).unwrap();
    assert_eq!(handles(&rs, 0, 0), [1, 2, 3, 4, 6]);
    // Without the marks of the earlier generation, 5 would come back.
    let forgetful = parse::apply(&parse::apply(&base, del).unwrap(), add).unwrap();
    assert_eq!(handles(&forgetful, 0, 0), [1, 2, 3, 4, 5]);
    // Within one script too.
    let rs = parse::apply_marked(
        &rs,
        "delete rule ip filter input handle 6\nadd rule ip filter input drop\n",
        &mut marks,
    )
    .unwrap();
    assert_eq!(handles(&rs, 0, 0), [1, 2, 3, 4, 7]);
    // A failing script leaves the marks as they were.
    let before = marks.clone();
    parse::apply_marked(
        &rs,
        "add rule ip filter input drop\ndelete rule ip filter input handle 99\n",
        &mut marks,
    )
    .unwrap_err();
    assert_eq!(marks, before);
    // A new table: a new life, from 1.
    let rs = parse::apply_marked(
        &rs,
        "delete table ip filter\nadd table ip filter\nadd chain ip filter c\nadd rule ip filter c accept\n",
        &mut marks,
    )
    .unwrap();
    assert_eq!(rs.tables[1].name, "filter");
    assert_eq!(handles(&rs, 1, 0), [1]);
}

/// `define`/`$NAME`, `include` (files read from disk only, relative to the including
/// file) and `list` commands (accepted, changing nothing, what they name must exist), as
/// nft 1.0.6 does them (`redefinition`, `unknown identifier`).
#[test]
fn define_include_and_list_in_scripts() {
    let rs = parse::parse(
        "define ports = { 22, 80 }\ndefine lan = 198.18.1.0/24\ndefine src = $lan\nadd table ip x\n\
         add chain ip x c\nadd rule ip x c ip saddr $src tcp dport $ports accept\nlist table ip x\n\
         list chain ip x c\nlist ruleset\nlist tables ip\n",
    )
    .unwrap();
    assert_eq!(
        rule_texts(&rs, 0, 0),
        ["ip saddr 198.18.1.0/24 tcp dport { 22, 80 } accept"]
    );
    let blocks =
        parse::parse("define p = 22; table ip x {\n chain c {\n  tcp dport $p accept\n }\n}\n")
            .unwrap();
    assert_eq!(rule_texts(&blocks, 0, 0), ["tcp dport 22 accept"]);
    let err = |src: &str| parse::parse(src).unwrap_err();
    let e = err("add table ip x\nadd chain ip x c\nadd rule ip x c tcp dport $nope drop\n");
    assert_eq!((e.line, e.col, e.token.as_str()), (3, 27, "$nope"), "{e}");
    let e = err("define a = 1\ndefine a = 2\n");
    assert_eq!((e.line, e.col), (2, 8), "{e}");
    assert!(e.msg.contains("redefinition"), "{e}");
    // An error in a value points at its use.
    let e = err(
        "define p = 99999\nadd table ip x\nadd chain ip x c\nadd rule ip x c tcp dport $p drop\n",
    );
    assert_eq!((e.line, e.col), (4, 27), "{e}");
    let e = err("include \"other.nft\"\n");
    assert!(e.msg.contains("fwd check FILE"), "{e}");
    let e = err("add table ip x\nlist chain ip x nope\n");
    assert_eq!((e.line, e.col), (2, 17), "{e}");
    let e = err("add table ip x\nlist set ip x nope\n");
    assert!(e.msg.contains("no such set"), "{e}");

    let dir = std::env::temp_dir().join(format!("fwd-include-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write(
        "sub/t.nft",
        "add table ip x\nadd chain ip x c\ndefine p = 22\n",
    );
    write(
        "main.nft",
        "include \"sub/t.nft\"\nadd rule ip x c tcp dport $p accept\n",
    );
    let rs = parse::parse_file(&dir.join("main.nft")).unwrap();
    assert_eq!(rule_texts(&rs, 0, 0), ["tcp dport 22 accept"]);
    // An error in an included file names that file and its line.
    write(
        "sub/bad.nft",
        "add table ip x\n\nadd chain ip x c { frob }\n",
    );
    write("bad.nft", "# comment\ninclude \"sub/bad.nft\"\n");
    let e = parse::parse_file(&dir.join("bad.nft")).unwrap_err();
    assert!(e.path.ends_with("sub/bad.nft"), "{e}");
    assert_eq!((e.error.line, e.error.col), (3, 20), "{e}");
    write("loop.nft", "include \"loop.nft\"\n");
    let e = parse::parse_file(&dir.join("loop.nft")).unwrap_err();
    assert!(e.error.msg.contains("nested includes"), "{e}");
    write("missing.nft", "\n include \"nope.nft\"\n");
    let e = parse::parse_file(&dir.join("missing.nft")).unwrap_err();
    assert_eq!((e.error.line, e.error.col), (2, 2), "{e}");
    assert!(e.path.ends_with("missing.nft"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
