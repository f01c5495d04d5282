//! Every ruleset the appliance accepts is persisted as text that parses back to the same
//! ruleset: a property over generated ASTs (arbitrary strings in names, comments, log
//! prefixes and interface names; numbers and ranges in and out of range), through the
//! text printer and through the JSON reader.

use super::ast::*;
use super::{json, parse, print, validate};
use crate::nat::{NatFlags, NatKind};
use crate::wire::Addr;
use proptest::prelude::*;

/// Mostly valid names, sometimes anything (quotes, spaces, line breaks, unicode).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z_.][a-zA-Z0-9_./-]{0,10}",
        1 => "(?s).{0,12}",
        1 => Just("a b".to_string()),
        1 => Just("".to_string()),
    ]
}

/// Mostly printable strings with the odd quote or line break.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -!#-~]{0,20}",
        2 => "(?s).{0,20}",
        1 => Just("say \"hi\"".to_string()),
        1 => "[a-z]{120,140}",
    ]
}

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(Addr::from_v4),
        any::<[u8; 16]>().prop_map(Addr::from_v6),
    ]
}

fn value(kind: Kind) -> BoxedStrategy<Value> {
    let max = validate::max_value(kind).min(70_000);
    match kind {
        Kind::Addr4 | Kind::Addr6 => prop_oneof![
            4 => (addr(), 0u8..=130).prop_map(move |(a, l)| {
                // Mostly host bits cleared, so most prefixes are valid.
                let full = if a.to_v4().is_some() { 32u8 } else { 128 };
                let l = l.min(full);
                let m = prefix_mask(if full == 32 { Kind::Addr4 } else { Kind::Addr6 }, l);
                let v = addr_to_u128(a) & m;
                Value::Prefix(Addr(v.to_be_bytes()), l)
            }),
            1 => (addr(), any::<u8>()).prop_map(|(a, l)| Value::Prefix(a, l)),
            1 => (addr(), addr()).prop_map(|(a, b)| Value::AddrRange(a, b)),
            1 => any::<u64>().prop_map(Value::Num),
        ]
        .boxed(),
        Kind::IfName => prop_oneof![
            4 => "[a-z][a-z0-9*]{0,8}".prop_map(Value::Str),
            1 => text().prop_map(Value::Str),
        ]
        .boxed(),
        _ => prop_oneof![
            4 => (0..=max).prop_map(Value::Num),
            2 => (0..=max, 0..=max).prop_map(|(a, b)| Value::Range(a, b)),
            1 => any::<u64>().prop_map(Value::Num),
        ]
        .boxed(),
    }
}

/// A value `validate` accepts for `kind` (what the keyed statements mostly hold, so that
/// a fair share of multi-field elements is valid).
fn good_value(kind: Kind) -> BoxedStrategy<Value> {
    let max = validate::max_value(kind).min(70_000);
    match kind {
        Kind::Addr4 | Kind::Addr6 => {
            let full = if kind == Kind::Addr4 { 32u8 } else { 128 };
            let a = if kind == Kind::Addr4 {
                any::<[u8; 4]>().prop_map(Addr::from_v4).boxed()
            } else {
                any::<[u8; 16]>().prop_map(Addr::from_v6).boxed()
            };
            (a, 0..=full)
                .prop_map(move |(a, l)| {
                    let v = addr_to_u128(a) & prefix_mask(kind, l);
                    Value::Prefix(Addr(v.to_be_bytes()), l)
                })
                .boxed()
        }
        Kind::IfName => "[a-z][a-z0-9]{0,8}[*]?".prop_map(Value::Str).boxed(),
        _ if kind.is_flags() => (1..=max).prop_map(Value::Num).boxed(),
        _ => prop_oneof![
            3 => (0..=max).prop_map(Value::Num),
            1 => (0..=max, 0..=max).prop_map(|(a, b)| Value::Range(a.min(b), a.max(b))),
        ]
        .boxed(),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => Just(Op::Implicit),
        1 => Just(Op::Eq),
        1 => Just(Op::Ne),
        1 => Just(Op::Lt),
        1 => Just(Op::Ge),
    ]
}

fn matcher() -> impl Strategy<Value = Stmt> {
    (0..Field::ALL.len()).prop_flat_map(|fi| {
        let field = Field::ALL[fi];
        let kind = field.kind();
        let rhs = prop_oneof![
            4 => value(kind).prop_map(|v| Rhs::Values(vec![v])),
            2 => proptest::collection::vec(value(kind), 0..4).prop_map(Rhs::Set),
            1 => name().prop_map(Rhs::Named),
        ];
        let mask = if kind.is_flags() || kind == Kind::Mark {
            proptest::option::weighted(0.2, 1u64..256).boxed()
        } else {
            Just(None).boxed()
        };
        (op(), rhs, mask).prop_map(move |(op, rhs, mask)| {
            Stmt::Match(
                Match {
                    field,
                    mask,
                    op,
                    rhs,
                },
                Pos::default(),
            )
        })
    })
}

fn nat() -> impl Strategy<Value = Stmt> {
    let kinds = prop_oneof![
        Just(NatKind::Snat),
        Just(NatKind::Dnat),
        Just(NatKind::Masquerade),
        Just(NatKind::Redirect)
    ];
    let fam = proptest::option::weighted(
        0.3,
        prop_oneof![
            Just(TableFamily::Ip),
            Just(TableFamily::Ip6),
            Just(TableFamily::Inet)
        ],
    );
    let v4 = any::<[u8; 4]>().prop_map(Addr::from_v4);
    let addrs = proptest::option::of(prop_oneof![
        3 => v4.clone().prop_map(|a| (a, a)),
        1 => (v4.clone(), v4).prop_map(|(a, b)| (a, b)),
        1 => (addr(), addr()),
    ]);
    let ports = proptest::option::of((any::<u16>(), any::<u16>()));
    (kinds, fam, addrs, ports, any::<[bool; 3]>()).prop_map(|(kind, family, addr, ports, f)| {
        Stmt::Nat(
            NatStmt {
                kind,
                family,
                addr,
                ports,
                flags: NatFlags {
                    random: f[0],
                    fully_random: f[1],
                    persistent: f[2],
                },
            },
            Pos::default(),
        )
    })
}

fn verdict() -> BoxedStrategy<Verdict> {
    prop_oneof![
        Just(Verdict::Accept),
        Just(Verdict::Drop),
        Just(Verdict::Continue),
        Just(Verdict::Return),
        name().prop_map(Verdict::Jump),
        name().prop_map(Verdict::Goto),
    ]
    .boxed()
}

/// A key of `lo..=hi` fields and elements for it (some of the wrong arity).
fn keyed<T: std::fmt::Debug + Clone + 'static>(
    lo: usize,
    hi: usize,
    data: impl Strategy<Value = T> + Clone + 'static,
) -> impl Strategy<Value = (Vec<Field>, Vec<(Elem, T)>)> {
    let len = prop_oneof![12 => lo..=hi.min(3), 1 => lo..=hi];
    (len, proptest::collection::vec(0..Field::ALL.len(), hi)).prop_flat_map(move |(n, fi)| {
        let key: Vec<Field> = fi.into_iter().take(n).map(|i| Field::ALL[i]).collect();
        let elem: BoxedStrategy<Elem> = prop_oneof![
            12 => key.iter().map(|f| good_value(f.kind())).collect::<Vec<_>>().boxed(),
            1 => key.iter().map(|f| value(f.kind())).collect::<Vec<_>>().boxed(),
            1 => proptest::collection::vec(value(Kind::Port), 0..3).boxed(),
        ]
        .boxed();
        let count = prop_oneof![12 => 1usize..4, 1 => 0usize..1];
        let data = data.clone();
        (Just(key), count).prop_flat_map(move |(key, count)| {
            (
                Just(key),
                proptest::collection::vec((elem.clone(), data.clone()), count),
            )
        })
    })
}

/// Written in place, or (one in five) a name.
fn elements<T: std::fmt::Debug + Clone + 'static>(
    els: Vec<T>,
) -> impl Strategy<Value = Elements<T>> {
    prop_oneof![8 => Just(Elements::Anon(els)), 1 => map_name().prop_map(Elements::Named)]
}

/// A set or map name: mostly a valid one.
fn map_name() -> BoxedStrategy<String> {
    prop_oneof![4 => "[a-z][a-z0-9_]{0,5}", 1 => name()].boxed()
}

/// The data of a NAT map element: an address, or an address and a port (sometimes not a
/// host, or a port out of range).
fn nat_data() -> BoxedStrategy<Elem> {
    let host = |a: Addr| Value::Prefix(a, if a.to_v4().is_some() { 32 } else { 128 });
    prop_oneof![
        4 => addr().prop_map(move |a| vec![host(a)]),
        4 => (addr(), 0u64..65_536).prop_map(move |(a, p)| vec![host(a), Value::Num(p)]),
        1 => (value(Kind::Addr6), 0u64..70_000).prop_map(|(a, p)| vec![a, Value::Num(p)]),
    ]
    .boxed()
}

/// Concatenations in sets, verdict maps and NAT maps (anonymous or named).
fn keyed_stmt() -> impl Strategy<Value = Stmt> {
    prop_oneof![
        (keyed(2, MAX_CONCAT + 1, Just(())), any::<bool>()).prop_flat_map(|((key, els), neg)| {
            let els: Vec<Elem> = els.into_iter().map(|(e, ())| e).collect();
            elements(els).prop_map(move |elements| {
                Stmt::Lookup(
                    Lookup {
                        key: key.clone(),
                        neg,
                        elements,
                    },
                    Pos::default(),
                )
            })
        }),
        keyed(1, MAX_CONCAT, verdict()).prop_flat_map(|(key, els)| {
            elements(els).prop_map(move |elements| {
                Stmt::Vmap(
                    Vmap {
                        key: key.clone(),
                        elements,
                    },
                    Pos::default(),
                )
            })
        }),
        (keyed(1, 2, nat_data()), nat()).prop_flat_map(|((key, els), n)| {
            let Stmt::Nat(mut nat, _) = n else {
                unreachable!()
            };
            (nat.addr, nat.ports) = (None, None);
            if nat.kind == NatKind::Masquerade {
                nat.kind = NatKind::Snat;
            }
            if nat.family == Some(TableFamily::Inet) {
                nat.family = None;
            }
            elements(els).prop_map(move |elements| {
                Stmt::NatMap(
                    NatMap {
                        nat,
                        key: key.clone(),
                        elements,
                    },
                    Pos::default(),
                )
            })
        }),
    ]
}

const SET_TYPES: [SetType; 6] = [
    SetType::Ipv4Addr,
    SetType::Ipv6Addr,
    SetType::InetService,
    SetType::InetProto,
    SetType::Mark,
    SetType::IfName,
];

fn set_types(lo: usize, hi: usize) -> impl Strategy<Value = Vec<SetType>> {
    proptest::collection::vec((0..SET_TYPES.len()).prop_map(|i| SET_TYPES[i]), lo..=hi)
}

/// Dynamic-set options in the form the readers give them (`dynamic` exactly when a
/// `size` is there; `timeout` implies the flag), or none.
fn dyn_opts() -> impl Strategy<Value = DynOpts> {
    let some = (
        proptest::option::of(1u32..100_000),
        proptest::option::of(1u64..100_000),
        any::<bool>(),
    )
        .prop_map(|(size, secs, flag)| DynOpts {
            dynamic: size.is_some(),
            timeout_flag: flag || secs.is_some(),
            timeout_ms: secs.map(|s| s * 1000),
            size,
        });
    prop_oneof![2 => Just(DynOpts::default()), 1 => some]
}

/// A named map or set of concatenations with elements of its types (some not).
fn map_decl() -> impl Strategy<Value = Map> {
    let data = prop_oneof![
        Just(None),
        Just(Some(MapData::Verdict)),
        set_types(1, 2).prop_map(|t| Some(MapData::Types(t))),
    ];
    (map_name(), set_types(1, 3), data, any::<bool>(), dyn_opts()).prop_flat_map(
        |(name, key, data, interval, opts)| {
            let dynamic = if data.is_none() && !interval {
                opts
            } else {
                DynOpts::default()
            };
            let elem = |ts: &[SetType]| ts.iter().map(|t| good_value(t.kind())).collect::<Vec<_>>();
            let value: BoxedStrategy<MapValue> = match &data {
                None => Just(MapValue::None).boxed(),
                Some(MapData::Verdict) => verdict().prop_map(MapValue::Verdict).boxed(),
                Some(MapData::Types(ts)) => elem(ts).prop_map(MapValue::Data).boxed(),
            };
            proptest::collection::vec((elem(&key), value), 0..3).prop_map(move |elements| Map {
                name: name.clone(),
                key: key.clone(),
                data: data.clone(),
                interval,
                elements,
                elem_timeouts: Vec::new(),
                dynamic,
                pos: Pos::default(),
            })
        },
    )
}

fn stmt() -> impl Strategy<Value = Stmt> {
    let verdict = verdict();
    let level = prop_oneof![
        3 => (0..validate::LOG_LEVELS.len()).prop_map(|i| validate::LOG_LEVELS[i].to_string()),
        1 => name(),
    ];
    prop_oneof![
        3 => matcher(),
        1 => keyed_stmt(),
        3 => verdict.prop_map(|v| Stmt::Verdict(v, Pos::default())),
        1 => (0u64..1000, 0u64..100_000).prop_map(|(packets, bytes)| Stmt::Counter { packets, bytes }),
        1 => (proptest::option::of(text()), proptest::option::of(level))
            .prop_map(|(prefix, level)| Stmt::Log { prefix, level }),
        1 => (0u64..100, 0usize..4, 1u32..20, any::<bool>()).prop_map(|(rate, u, burst, over)| {
            let unit = [TimeUnit::Second, TimeUnit::Minute, TimeUnit::Hour, TimeUnit::Day][u];
            Stmt::Limit { rate, unit, burst, over }
        }),
        1 => (0u32..100, any::<bool>()).prop_map(|(count, over)| Stmt::CtCount { count, over }),
        1 => any::<u32>().prop_map(Stmt::MetaMarkSet),
        1 => (0u8..4).prop_map(|c| Stmt::Reject(Reject::Icmpx(c), Pos::default())),
        1 => nat(),
        1 => prop_oneof![any::<u16>().prop_map(MssValue::Num), Just(MssValue::RtMtu)]
            .prop_map(|v| Stmt::MssSet(v, Pos::default())),
        1 => (any::<bool>(), prop_oneof![8 => 0u8..64, 1 => any::<u8>()]).prop_map(|(v6, d)| {
            let f = if v6 { Field::Ip6Dscp } else { Field::IpDscp };
            Stmt::DscpSet(f, d, Pos::default())
        }),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        proptest::collection::vec(stmt(), 1..4),
        proptest::option::weighted(0.4, text()),
    )
        .prop_map(|(stmts, comment)| Rule {
            stmts,
            comment,
            handle: 0,
            pos: Pos::default(),
        })
}

fn chain() -> impl Strategy<Value = Chain> {
    let base = proptest::option::of(
        (any::<bool>(), 0usize..5, any::<i32>(), any::<bool>()).prop_map(
            |(nat, h, priority, drop)| BaseChain {
                ty: if nat {
                    ChainType::Nat
                } else {
                    ChainType::Filter
                },
                hook: Hook::ALL[h],
                priority,
                policy: if drop { Policy::Drop } else { Policy::Accept },
            },
        ),
    );
    (name(), base, proptest::collection::vec(rule(), 0..4)).prop_map(|(name, base, rules)| Chain {
        name,
        base,
        rules,
        pos: Pos::default(),
    })
}

fn set() -> impl Strategy<Value = Set> {
    (name(), 0..SET_TYPES.len(), any::<bool>(), dyn_opts()).prop_flat_map(
        move |(name, ti, interval, opts)| {
            let ty = SET_TYPES[ti];
            let dynamic = if interval { DynOpts::default() } else { opts };
            proptest::collection::vec(value(ty.kind()), 0..4).prop_map(move |elements| Set {
                name: name.clone(),
                ty,
                interval,
                elements,
                elem_timeouts: Vec::new(),
                dynamic,
                pos: Pos::default(),
            })
        },
    )
}

fn ruleset() -> impl Strategy<Value = Ruleset> {
    let table = (
        prop_oneof![
            Just(TableFamily::Ip),
            Just(TableFamily::Ip6),
            Just(TableFamily::Inet)
        ],
        name(),
        proptest::collection::vec(set(), 0..2),
        proptest::option::weighted(0.3, map_decl()).prop_map(|m| m.into_iter().collect()),
        proptest::collection::vec(chain(), 0..3),
    )
        .prop_map(
            |(family, name, sets, maps, chains): (_, _, _, Vec<Map>, _)| Table {
                family,
                name,
                sets,
                maps,
                helpers: Vec::new(),
                chains,
                pos: Pos::default(),
            },
        );
    (any::<bool>(), proptest::collection::vec(table, 0..3))
        .prop_map(|(flush, tables)| Ruleset { flush, tables })
}

/// The printed text parses back to `rs` (handles aside: the parser numbers rules).
fn reads_back(rs: &Ruleset) -> Result<(), String> {
    let text = print::to_text(rs);
    let back = parse::parse(&text).map_err(|e| format!("{e}\n{text}"))?;
    match print::first_difference(rs, &back) {
        None => Ok(()),
        Some((_, what)) => Err(format!("differs at {what}:\n{text}\n{rs:?}\n{back:?}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// What the validator accepts (the text parser runs it too) prints as text that
    /// parses back to the same ruleset, and `to_text_verified` agrees.
    #[test]
    fn valid_rulesets_print_to_text_that_reads_back(rs in ruleset()) {
        if validate::ruleset(&rs).is_ok() {
            if let Err(e) = reads_back(&rs) {
                return Err(TestCaseError::fail(e));
            }
            prop_assert!(super::to_text_verified(&rs).is_ok());
        }
    }

    /// Whatever the JSON reader accepts (the API's JSON input) prints as text that parses
    /// back to the same ruleset; and every valid ruleset survives JSON unchanged.
    #[test]
    fn json_input_is_held_to_the_text_rules(rs in ruleset()) {
        let j = json::to_json(&rs);
        match json::from_json(&j) {
            Ok(back) => {
                if let Err(e) = reads_back(&back) {
                    return Err(TestCaseError::fail(e));
                }
                if validate::ruleset(&rs).is_ok() {
                    prop_assert!(print::first_difference(&rs, &back).is_none(), "{rs:?}\n{back:?}");
                }
            }
            Err(_) => prop_assert!(validate::ruleset(&rs).is_err() || super::to_text_verified(&rs).is_err(),
                "JSON refused a valid ruleset: {rs:?}"),
        }
    }
}

/// The generator is not vacuous: a fair share of its rulesets are valid and non-trivial.
#[test]
fn the_generator_makes_valid_rulesets() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = ruleset();
    let (mut valid, mut with_rules, mut dynamic) = (0, 0, 0);
    for _ in 0..2000 {
        let rs = strategy.new_tree(&mut runner).unwrap().current();
        if validate::ruleset(&rs).is_ok() {
            valid += 1;
            let tables = || rs.tables.iter();
            if tables()
                .flat_map(|t| &t.chains)
                .any(|c| !c.rules.is_empty())
            {
                with_rules += 1;
            }
            if tables().any(|t| {
                t.sets.iter().any(|s| s.dynamic.any()) || t.maps.iter().any(|m| m.dynamic.any())
            }) {
                dynamic += 1;
            }
        }
    }
    assert!(
        valid >= 100 && with_rules >= 20 && dynamic >= 5,
        "{valid} valid, {with_rules} with rules, {dynamic} with dynamic sets"
    );
}
