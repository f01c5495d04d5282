//! One iptables rule specification (`-p tcp -s A --dport P -m … -j T …`) to nftables
//! statements, in the order `iptables-translate` writes them: interfaces, addresses,
//! the protocol (left out when a tcp/udp/icmp match implies it), the matches in the
//! order their modules were loaded, `counter`, then the target.

use super::super::Error;
use super::super::ast::{
    Field, Kind, Match, NatStmt, Op, Pos, Reject, Rhs, Rule, Stmt, TableFamily, TimeUnit, Value,
    Verdict,
};
use super::super::names;
use super::words::{Word, at, pos};
use crate::nat::{NatFlags, NatKind};
use crate::wire::{Addr, proto};

/// Target names iptables knows that are not chains (a user chain may not take them).
const TARGETS: &[&str] = &[
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "MASQUERADE",
    "SNAT",
    "DNAT",
    "REDIRECT",
    "QUEUE",
    "NFQUEUE",
    "MARK",
    "CONNMARK",
    "CT",
    "NOTRACK",
    "TCPMSS",
    "TRACE",
    "ULOG",
    "NFLOG",
];

pub(super) fn is_target_name(n: &str) -> bool {
    TARGETS.contains(&n)
}

/// A loaded match module and the statements its options produced, each with its place
/// in the module's own order (tcp: sport, dport, flags).
struct Module {
    name: String,
    word: Word,
    stmts: Vec<(u8, Stmt)>,
    limit: Option<(u64, TimeUnit)>,
    burst: Option<u32>,
    connlimit: Option<(u32, bool, Word)>,
    connlimit_mask: Option<(u8, Word)>,
}

impl Module {
    fn new(name: &str, word: &Word) -> Self {
        Module {
            name: name.to_owned(),
            word: word.clone(),
            stmts: Vec::new(),
            limit: None,
            burst: None,
            connlimit: None,
            connlimit_mask: None,
        }
    }
}

/// The options each module takes (the first module that knows an option gets it).
fn module_knows(module: &str, opt: &str) -> bool {
    let opts: &[&str] = match module {
        "tcp" => &[
            "--dport",
            "--destination-port",
            "--sport",
            "--source-port",
            "--tcp-flags",
            "--syn",
            "--tcp-option",
        ],
        "udp" => &["--dport", "--destination-port", "--sport", "--source-port"],
        "icmp" => &["--icmp-type"],
        "icmp6" | "icmpv6" => &["--icmpv6-type"],
        "multiport" => &[
            "--dports",
            "--destination-ports",
            "--sports",
            "--source-ports",
            "--ports",
        ],
        "conntrack" => &[
            "--ctstate",
            "--ctstatus",
            "--ctproto",
            "--ctorigsrc",
            "--ctorigdst",
            "--ctreplsrc",
            "--ctrepldst",
            "--ctorigsrcport",
            "--ctorigdstport",
            "--ctreplsrcport",
            "--ctrepldstport",
            "--ctexpire",
            "--ctdir",
        ],
        "state" => &["--state"],
        "limit" => &["--limit", "--limit-burst"],
        "connlimit" => &[
            "--connlimit-above",
            "--connlimit-upto",
            "--connlimit-mask",
            "--connlimit-saddr",
            "--connlimit-daddr",
        ],
        "comment" => &["--comment"],
        "mark" => &["--mark"],
        _ => &[],
    };
    opts.contains(&opt)
}

const MODULES: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "icmpv6",
    "multiport",
    "conntrack",
    "state",
    "limit",
    "connlimit",
    "comment",
    "mark",
];

struct Spec<'a> {
    family: TableFamily,
    iif: Option<(bool, String, Pos)>,
    oif: Option<(bool, String, Pos)>,
    src: Option<(bool, Vec<Value>, Pos)>,
    dst: Option<(bool, Vec<Value>, Pos)>,
    proto: Option<(bool, u8, &'a Word)>,
    modules: Vec<Module>,
    comment: Option<String>,
    target: Vec<Stmt>,
}

/// Translates one rule specification (the words after the chain name and rule number).
/// `user_chains` are the chains `-j`/`-g` may name; `nat` says whether the rule is in the
/// nat table (NAT targets only there, as in iptables). Several rules come back when
/// `-s`/`-d` list several addresses.
pub(super) fn translate(
    family: TableFamily,
    nat: bool,
    user_chains: &[String],
    ws: &[Word],
    cmd: &Word,
) -> Result<Vec<Rule>, Error> {
    let mut s = Spec {
        family,
        iif: None,
        oif: None,
        src: None,
        dst: None,
        proto: None,
        modules: Vec::new(),
        comment: None,
        target: Vec::new(),
    };
    let mut i = 0;
    let mut neg: Option<&Word> = None;
    while i < ws.len() {
        let w = &ws[i];
        let o = w.text.as_str();
        if o == "!" {
            if neg.is_some() {
                return Err(at(w, "`!` twice"));
            }
            neg = Some(w);
            i += 1;
            continue;
        }
        let arg = |k: usize| -> Result<&Word, Error> {
            ws.get(i + k)
                .filter(|a| !a.text.starts_with("--") || a.text.len() == 2)
                .ok_or_else(|| at(w, format!("`{o}` needs an argument")))
        };
        let n = neg.take().is_some();
        match o {
            "-p" | "--protocol" => {
                let a = arg(1)?;
                s.proto = protocol(a)?.map(|p| (n, p, a));
                i += 2;
            }
            "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                let a = arg(1)?;
                let vals = addresses(family, a)?;
                if n && vals.len() > 1 {
                    return Err(at(a, "`!` with several addresses"));
                }
                let v = Some((n, vals, pos(a)));
                if o.starts_with("-s") || o.starts_with("--s") {
                    s.src = v;
                } else {
                    s.dst = v;
                }
                i += 2;
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let a = arg(1)?;
                let name = match a.text.strip_suffix('+') {
                    Some(p) => format!("{p}*"),
                    None => a.text.clone(),
                };
                if name.is_empty() || name.len() > 15 {
                    return Err(at(a, "an interface name of 1 to 15 characters expected"));
                }
                let v = Some((n, name, pos(a)));
                if o == "-i" || o == "--in-interface" {
                    s.iif = v;
                } else {
                    s.oif = v;
                }
                i += 2;
            }
            "-m" | "--match" => {
                if n {
                    return Err(at(w, "`!` before `-m`"));
                }
                let a = arg(1)?;
                if !MODULES.contains(&a.text.as_str()) {
                    return Err(at(a, format!("match `{}` is not supported", a.text)));
                }
                s.modules.push(Module::new(&a.text, a));
                i += 2;
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                if n {
                    return Err(at(w, "`!` before a target"));
                }
                let a = arg(1)?;
                let used = target(&mut s, nat, user_chains, a, o.contains('g'), &ws[i + 2..])?;
                i += 2 + used;
            }
            "-f" | "--fragment" => return Err(at(w, "fragment matches are not supported")),
            "-c" | "--set-counters" => i += 3,
            _ if o.starts_with("--") => {
                let used = module_option(&mut s, w, n, &ws[i + 1..])?;
                i += 1 + used;
            }
            _ => return Err(at(w, format!("unknown or unsupported option `{o}`"))),
        }
    }
    if let Some(w) = neg {
        return Err(at(w, "`!` at the end of the rule"));
    }
    finish_modules(&mut s)?;
    Ok(build(s, cmd))
}

/// The rules of a parsed spec (one per source × destination address).
fn build(mut s: Spec<'_>, cmd: &Word) -> Vec<Rule> {
    let mut head = Vec::new();
    for (f, v) in [(Field::Iifname, &s.iif), (Field::Oifname, &s.oif)] {
        if let Some((n, name, p)) = v {
            head.push(Stmt::Match(
                plain(f, *n, Rhs::Values(vec![Value::Str(name.clone())])),
                *p,
            ));
        }
    }
    let (sf, df) = match s.family {
        TableFamily::Ip6 => (Field::Ip6Saddr, Field::Ip6Daddr),
        _ => (Field::IpSaddr, Field::IpDaddr),
    };
    let one = |v: &Option<(bool, Vec<Value>, Pos)>| -> Vec<Option<(bool, Value, Pos)>> {
        match v {
            None => vec![None],
            Some((n, vals, p)) => vals.iter().map(|x| Some((*n, x.clone(), *p))).collect(),
        }
    };
    let srcs = one(&s.src);
    let dsts = one(&s.dst);
    let proto_implied = s.modules.iter().any(|m| {
        matches!(m.name.as_str(), "tcp" | "udp" | "icmp" | "icmp6" | "icmpv6")
            && !m.stmts.is_empty()
    });
    let mut tail = Vec::new();
    if let Some((n, p, w)) = s.proto
        && (!proto_implied || n)
    {
        let f = match s.family {
            TableFamily::Ip6 => Field::MetaL4proto,
            _ => Field::IpProtocol,
        };
        tail.push(Stmt::Match(
            plain(f, n, Rhs::Values(vec![Value::Num(u64::from(p))])),
            pos(w),
        ));
    }
    for m in &mut s.modules {
        m.stmts.sort_by_key(|(k, _)| *k);
        tail.extend(m.stmts.drain(..).map(|(_, st)| st));
    }
    tail.push(Stmt::Counter {
        packets: 0,
        bytes: 0,
    });
    tail.append(&mut s.target);
    let mut out = Vec::new();
    for src in &srcs {
        for dst in &dsts {
            let mut stmts = head.clone();
            for (f, a) in [(sf, src), (df, dst)] {
                if let Some((n, v, p)) = a {
                    stmts.push(Stmt::Match(plain(f, *n, Rhs::Values(vec![v.clone()])), *p));
                }
            }
            stmts.extend(tail.iter().cloned());
            out.push(Rule {
                stmts,
                comment: s.comment.clone(),
                handle: 0,
                pos: pos(cmd),
            });
        }
    }
    out
}

fn plain(field: Field, neg: bool, rhs: Rhs) -> Match {
    Match {
        field,
        mask: None,
        op: if neg { Op::Ne } else { Op::Implicit },
        rhs,
    }
}

/// `-p NAME|NUMBER` (`None`: `all` / 0).
fn protocol(w: &Word) -> Result<Option<u8>, Error> {
    let t = w.text.to_ascii_lowercase();
    if t == "all" || t == "0" {
        return Ok(None);
    }
    let n = match t.as_str() {
        "icmpv6" | "ipv6-icmp" => Some(u64::from(proto::ICMPV6)),
        _ => names::lookup(Kind::Proto, &t).or_else(|| t.parse().ok()),
    };
    n.and_then(|n| u8::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| at(w, "unknown protocol"))
}

/// `-s`/`-d`: comma-separated addresses with an optional `/len` or `/mask`; host bits are
/// cleared as iptables does. Host names are refused (no resolver at load time).
fn addresses(family: TableFamily, w: &Word) -> Result<Vec<Value>, Error> {
    w.text
        .split(',')
        .map(|a| {
            let (addr, len) = match a.split_once('/') {
                Some((x, l)) => (x, Some(l)),
                None => (a, None),
            };
            let (ip, max) = parse_ip(family, addr)
                .map(|ip| (ip, if family == TableFamily::Ip6 { 128 } else { 32 }))
                .ok_or_else(|| at(w, "an address expected (host names are not resolved)"))?;
            let len = match len {
                None => max,
                Some(l) => match l.parse::<u8>() {
                    Ok(l) if l <= max => l,
                    Ok(_) => return Err(at(w, "prefix length too long")),
                    Err(_) => {
                        let m = parse_ip(family, l).ok_or_else(|| at(w, "bad mask"))?;
                        mask_len(&m, max).ok_or_else(|| at(w, "a non-contiguous mask"))?
                    }
                },
            };
            Ok(Value::Prefix(clear_host_bits(ip, len, max), len))
        })
        .collect()
}

fn parse_ip(family: TableFamily, s: &str) -> Option<Addr> {
    match family {
        TableFamily::Ip6 => s
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| Addr::from_v6(a.octets())),
        _ => s
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .map(|a| Addr::from_v4(a.octets())),
    }
}

fn family_bits(a: &Addr, max: u8) -> u128 {
    let v = u128::from_be_bytes(a.0);
    if max == 32 { v & 0xffff_ffff } else { v }
}

fn mask_len(m: &Addr, max: u8) -> Option<u8> {
    let v = family_bits(m, max) << (128 - u32::from(max));
    let len = v.leading_ones();
    (v.checked_shl(len).unwrap_or(0) == 0).then(|| u8::try_from(len).unwrap_or(max))
}

fn clear_host_bits(a: Addr, len: u8, max: u8) -> Addr {
    let host = u32::from(max - len);
    let keep = if host >= 128 { 0 } else { u128::MAX << host };
    let v = u128::from_be_bytes(a.0) & (keep | if max == 32 { !0xffff_ffff } else { 0 });
    Addr(v.to_be_bytes())
}

/// The protocol a tcp/udp option needs, from `-p`.
fn l4(s: &Spec<'_>, w: &Word, allowed: &[u8]) -> Result<u8, Error> {
    match s.proto {
        Some((false, p, _)) if allowed.contains(&p) => Ok(p),
        _ => Err(at(
            w,
            format!(
                "`{}` needs `-p {}` before it",
                w.text,
                if allowed.len() > 1 {
                    "tcp` or `-p udp"
                } else {
                    "tcp"
                }
            ),
        )),
    }
}

/// `tcp|udp dport|sport` after `-p tcp|udp`.
fn port_field(s: &Spec<'_>, w: &Word, dst: bool) -> Result<Field, Error> {
    let tcp = l4(s, w, &[proto::TCP, proto::UDP])? == proto::TCP;
    Ok(match (tcp, dst) {
        (true, true) => Field::TcpDport,
        (true, false) => Field::TcpSport,
        (false, true) => Field::UdpDport,
        (false, false) => Field::UdpSport,
    })
}

/// One port or an iptables range `a:b`, `a:`, `:b`.
fn port_value(w: &Word, t: &str) -> Result<Value, Error> {
    let one = |x: &str| -> Result<u64, Error> {
        x.parse::<u16>()
            .map(u64::from)
            .ok()
            .or_else(|| names::lookup(Kind::Port, x))
            .ok_or_else(|| at(w, format!("bad port `{x}`")))
    };
    match t.split_once(':') {
        None => Ok(Value::Num(one(t)?)),
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { one(a)? };
            let hi = if b.is_empty() { 65535 } else { one(b)? };
            if lo > hi {
                return Err(at(w, "port range the wrong way round"));
            }
            Ok(if lo == hi {
                Value::Num(lo)
            } else {
                Value::Range(lo, hi)
            })
        }
    }
}

/// `FIN,SYN,RST,ACK` (also `ALL`, `NONE`).
fn tcp_flag_list(w: &Word) -> Result<u64, Error> {
    match w.text.as_str() {
        "ALL" => return Ok(0x3f),
        "NONE" => return Ok(0),
        _ => {}
    }
    w.text.split(',').try_fold(0, |acc, f| {
        names::lookup(Kind::TcpFlags, &f.to_ascii_lowercase())
            .map(|b| acc | b)
            .ok_or_else(|| at(w, format!("unknown TCP flag `{f}`")))
    })
}

/// `NEW,ESTABLISHED` / `ASSURED,SEEN_REPLY`.
fn ct_bits(kind: Kind, w: &Word) -> Result<u64, Error> {
    w.text.split(',').try_fold(0, |acc, f| {
        let name = f.to_ascii_lowercase().replace('_', "-");
        if kind == Kind::CtStatus && name == "none" {
            return Ok(acc);
        }
        names::lookup(kind, &name)
            .map(|b| acc | b)
            .ok_or_else(|| at(w, format!("state `{f}` is not supported")))
    })
}

/// An option of a loaded (or implied) match module; returns how many argument words it
/// took.
fn module_option(s: &mut Spec<'_>, w: &Word, neg: bool, rest: &[Word]) -> Result<usize, Error> {
    let o = w.text.as_str();
    let mi = match s.modules.iter().rposition(|m| module_knows(&m.name, o)) {
        Some(i) => i,
        None => {
            // `-p tcp --dport 22`: the protocol's match is loaded implicitly.
            let implied = match s.proto {
                Some((false, p, _)) if p == proto::TCP => "tcp",
                Some((false, p, _)) if p == proto::UDP => "udp",
                Some((false, p, _)) if p == proto::ICMP => "icmp",
                Some((false, p, _)) if p == proto::ICMPV6 => "icmp6",
                _ => "",
            };
            if !module_knows(implied, o) {
                return Err(at(w, format!("unknown or unsupported option `{o}`")));
            }
            s.modules.push(Module::new(implied, w));
            s.modules.len() - 1
        }
    };
    let arg = |k: usize| -> Result<&Word, Error> {
        rest.get(k)
            .ok_or_else(|| at(w, format!("`{o}` needs an argument")))
    };
    let refuse = |why: &str| Err(at(w, format!("`{o}` is not supported: {why}")));
    let name = s.modules[mi].name.clone();
    let pw = pos(w);
    let m = |field, rhs| Stmt::Match(plain(field, neg, rhs), pw);
    let (key, stmt, used) = match (name.as_str(), o) {
        ("tcp" | "udp", "--dport" | "--destination-port" | "--sport" | "--source-port") => {
            let dst = o.contains('d');
            let field = port_field(s, w, dst)?;
            let a = arg(0)?;
            let v = port_value(a, &a.text)?;
            (u8::from(dst), m(field, Rhs::Values(vec![v])), 1)
        }
        ("tcp", "--tcp-flags" | "--syn") => {
            l4(s, w, &[proto::TCP])?;
            let (mask, comp, used) = if o == "--syn" {
                (0x17, 0x02, 0)
            } else {
                (tcp_flag_list(arg(0)?)?, tcp_flag_list(arg(1)?)?, 2)
            };
            let st = Stmt::Match(
                Match {
                    field: Field::TcpFlags,
                    mask: Some(mask),
                    op: if neg { Op::Ne } else { Op::Eq },
                    rhs: Rhs::Values(vec![Value::Num(comp)]),
                },
                pw,
            );
            (2, st, used)
        }
        ("tcp", _) => return refuse("TCP option matches"),
        ("icmp" | "icmp6" | "icmpv6", _) => {
            let v6 = name != "icmp";
            let want = if v6 { proto::ICMPV6 } else { proto::ICMP };
            if !matches!(s.proto, Some((false, p, _)) if p == want) {
                return Err(at(
                    w,
                    format!("`{o}` needs `-p {}`", if v6 { "icmpv6" } else { "icmp" }),
                ));
            }
            let a = arg(0)?;
            let (kind, field) = if v6 {
                (Kind::Icmpv6Type, Field::Icmpv6Type)
            } else {
                (Kind::IcmpType, Field::IcmpType)
            };
            if a.text == "any" {
                if neg {
                    return Err(at(a, "`! --icmp-type any` matches nothing"));
                }
                s.modules[mi].word = a.clone();
                return Ok(1);
            }
            let t = a.text.to_ascii_lowercase();
            let t = match t.as_str() {
                "ping" | "echo-request" => "echo-request",
                "pong" | "echo-reply" => "echo-reply",
                x => x,
            };
            let ty = names::lookup(kind, t)
                .or_else(|| t.parse::<u8>().ok().map(u64::from))
                .ok_or_else(|| {
                    at(
                        a,
                        "an ICMP type name or number (ICMP codes are not supported)",
                    )
                })?;
            (0, m(field, Rhs::Values(vec![Value::Num(ty)])), 1)
        }
        ("multiport", "--ports") => {
            return refuse(
                "a port in either direction needs a concatenation; use --sports or --dports",
            );
        }
        ("multiport", _) => {
            let field = port_field(s, w, o.contains("-d"))?;
            let a = arg(0)?;
            let vals = a
                .text
                .split(',')
                .map(|x| port_value(a, x))
                .collect::<Result<Vec<_>, _>>()?;
            if vals.len() > 15 {
                return Err(at(a, "multiport takes at most 15 ports"));
            }
            (0, m(field, Rhs::Set(vals)), 1)
        }
        ("conntrack", "--ctstate" | "--ctstatus") | ("state", "--state") => {
            let (kind, field) = if o == "--ctstatus" {
                (Kind::CtStatus, Field::CtStatus)
            } else {
                (Kind::CtState, Field::CtState)
            };
            let bits = ct_bits(kind, arg(0)?)?;
            (0, m(field, Rhs::Values(vec![Value::Num(bits)])), 1)
        }
        ("conntrack", _) => return refuse("only --ctstate and --ctstatus"),
        ("limit", _) => {
            if neg {
                return Err(at(w, "`! --limit` is not supported"));
            }
            let a = arg(0)?;
            let md = &mut s.modules[mi];
            if o == "--limit" {
                md.limit = Some(limit_rate(a)?);
            } else {
                let b = a.text.parse::<u32>().ok().filter(|b| *b > 0);
                md.burst = Some(b.ok_or_else(|| at(a, "a burst of at least 1"))?);
            }
            return Ok(1);
        }
        ("connlimit", "--connlimit-above" | "--connlimit-upto") => {
            let a = arg(0)?;
            let n = a
                .text
                .parse::<u32>()
                .map_err(|_| at(a, "a number expected"))?;
            let over = (o == "--connlimit-above") != neg;
            s.modules[mi].connlimit = Some((n, over, w.clone()));
            return Ok(1);
        }
        ("connlimit", "--connlimit-mask") => {
            let a = arg(0)?;
            let n = a
                .text
                .parse::<u8>()
                .map_err(|_| at(a, "a prefix length expected"))?;
            s.modules[mi].connlimit_mask = Some((n, a.clone()));
            return Ok(1);
        }
        ("connlimit", _) => return Ok(0),
        ("comment", _) => {
            let a = arg(0)?;
            if neg {
                return Err(at(w, "`!` before `--comment`"));
            }
            s.comment = Some(a.text.clone());
            return Ok(1);
        }
        ("mark", _) => {
            let a = arg(0)?;
            let v = mark_value(&a.text)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| at(a, "a mark value without a mask expected"))?;
            (
                0,
                m(Field::MetaMark, Rhs::Values(vec![Value::Num(u64::from(v))])),
                1,
            )
        }
        _ => return Err(at(w, format!("unknown or unsupported option `{o}`"))),
    };
    s.modules[mi].stmts.push((key, stmt));
    Ok(used)
}

/// A mark: decimal or `0x` hex (a `/mask` is refused by the caller's error).
fn mark_value(t: &str) -> Option<u64> {
    match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

/// `N/second` (also `/sec`, `/s`, `/minute`, `/min`, `/m`, `/hour`, `/h`, `/day`, `/d`).
fn limit_rate(w: &Word) -> Result<(u64, TimeUnit), Error> {
    let (n, u) = w.text.split_once('/').unwrap_or((&w.text, "second"));
    let rate = n.parse::<u64>().ok().filter(|n| *n > 0);
    let unit = match u {
        "s" | "sec" | "second" => Some(TimeUnit::Second),
        "m" | "min" | "minute" => Some(TimeUnit::Minute),
        "h" | "hour" => Some(TimeUnit::Hour),
        "d" | "day" => Some(TimeUnit::Day),
        _ => None,
    };
    match (rate, unit) {
        (Some(r), Some(u)) => Ok((r, u)),
        _ => Err(at(w, "a rate `N/second|minute|hour|day` expected")),
    }
}

/// Statements of the modules that take several options (limit, connlimit), at the place
/// of the module.
fn finish_modules(s: &mut Spec<'_>) -> Result<(), Error> {
    for md in &mut s.modules {
        match md.name.as_str() {
            "limit" => {
                let (rate, unit) = md.limit.unwrap_or((3, TimeUnit::Hour));
                md.stmts.push((
                    0,
                    Stmt::Limit {
                        rate,
                        unit,
                        burst: md.burst.unwrap_or(super::super::ast::DEFAULT_BURST),
                        over: false,
                    },
                ));
            }
            "connlimit" => {
                let Some((count, over, w)) = md.connlimit.clone() else {
                    return Err(at(
                        &md.word,
                        "connlimit needs --connlimit-above or --connlimit-upto",
                    ));
                };
                match &md.connlimit_mask {
                    Some((0, _)) => {}
                    Some((_, m)) => {
                        return Err(at(
                            m,
                            "per-address connection counting is not supported (only \
                             --connlimit-mask 0: one count over all sources)",
                        ));
                    }
                    None => {
                        return Err(at(
                            &w,
                            "per-source connection counting (connlimit's default \
                             --connlimit-mask 32) is not supported; add --connlimit-mask 0 \
                             for one count over all sources",
                        ));
                    }
                }
                md.stmts.push((0, Stmt::CtCount { count, over }));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `-j TARGET [options]` / `-g CHAIN`; returns the number of option words taken.
fn target(
    s: &mut Spec<'_>,
    nat: bool,
    user_chains: &[String],
    t: &Word,
    goto: bool,
    rest: &[Word],
) -> Result<usize, Error> {
    let p = pos(t);
    let name = t.text.as_str();
    if user_chains.iter().any(|c| c == name) {
        let v = if goto {
            Verdict::Goto(name.to_owned())
        } else {
            Verdict::Jump(name.to_owned())
        };
        s.target.push(Stmt::Verdict(v, p));
        return Ok(0);
    }
    if goto {
        return Err(at(t, format!("no user chain `{name}` to go to")));
    }
    // The target's options: words up to the next option that is not the target's.
    let opts: &[&str] = match name {
        "REJECT" => &["--reject-with"],
        "LOG" => &["--log-prefix", "--log-level"],
        "MASQUERADE" | "REDIRECT" => &["--to-ports", "--random", "--random-fully"],
        "SNAT" => &["--to-source", "--random", "--random-fully", "--persistent"],
        "DNAT" => &["--to-destination", "--random", "--persistent"],
        _ => &[],
    };
    let mut vals: Vec<(&Word, Option<&Word>)> = Vec::new();
    let mut i = 0;
    while let Some(w) = rest.get(i) {
        if !w.text.starts_with("--") {
            break;
        }
        if !opts.contains(&w.text.as_str()) {
            if name == "LOG" && w.text.starts_with("--log-") {
                return Err(at(
                    w,
                    format!("`{}` is not supported (nft's `log flags`)", w.text),
                ));
            }
            if is_target_name(name) && !module_knows_any(&w.text) {
                return Err(at(
                    w,
                    format!("option `{}` of {name} is not supported", w.text),
                ));
            }
            break;
        }
        let flag = matches!(
            w.text.as_str(),
            "--random" | "--random-fully" | "--persistent"
        );
        let v = if flag {
            None
        } else {
            Some(
                rest.get(i + 1)
                    .ok_or_else(|| at(w, "an argument expected"))?,
            )
        };
        vals.push((w, v));
        i += if flag { 1 } else { 2 };
    }
    let get = |o: &str| vals.iter().find(|(w, _)| w.text == o).and_then(|(_, v)| *v);
    let has = |o: &str| vals.iter().any(|(w, _)| w.text == o);
    let nat_kind = match name {
        "ACCEPT" => return push(s, Stmt::Verdict(Verdict::Accept, p), i),
        "DROP" => return push(s, Stmt::Verdict(Verdict::Drop, p), i),
        "RETURN" => return push(s, Stmt::Verdict(Verdict::Return, p), i),
        "REJECT" => {
            let r = match get("--reject-with") {
                None => Reject::Default,
                Some(w) => reject_with(s.family, w)?,
            };
            return push(s, Stmt::Reject(r, p), i);
        }
        "LOG" => {
            let level = match get("--log-level") {
                None => None,
                Some(w) => log_level(w)?,
            };
            let prefix = get("--log-prefix").map(|w| w.text.clone());
            return push(s, Stmt::Log { prefix, level }, i);
        }
        "MASQUERADE" => NatKind::Masquerade,
        "SNAT" => NatKind::Snat,
        "DNAT" => NatKind::Dnat,
        "REDIRECT" => NatKind::Redirect,
        _ if is_target_name(name) => {
            return Err(at(t, format!("target {name} is not supported")));
        }
        _ => return Err(at(t, format!("no chain or target named `{name}`"))),
    };
    if !nat {
        return Err(at(
            t,
            format!("target {name} is only valid in the nat table"),
        ));
    }
    let flags = NatFlags {
        random: has("--random"),
        fully_random: has("--random-fully"),
        persistent: has("--persistent"),
    };
    let (addr, ports) = match nat_kind {
        NatKind::Snat | NatKind::Dnat => {
            let o = if nat_kind == NatKind::Snat {
                "--to-source"
            } else {
                "--to-destination"
            };
            let w = get(o).ok_or_else(|| at(t, format!("{name} needs {o}")))?;
            nat_to(s.family, w)?
        }
        _ => (None, get("--to-ports").map(port_range).transpose()?),
    };
    let st = NatStmt {
        kind: nat_kind,
        family: None,
        addr,
        ports,
        flags,
    };
    push(s, Stmt::Nat(st, p), i)
}

fn module_knows_any(o: &str) -> bool {
    MODULES.iter().any(|m| module_knows(m, o))
}

fn push(s: &mut Spec<'_>, st: Stmt, used: usize) -> Result<usize, Error> {
    s.target.push(st);
    Ok(used)
}

fn reject_with(family: TableFamily, w: &Word) -> Result<Reject, Error> {
    let t = w.text.as_str();
    if matches!(t, "tcp-reset" | "tcp-rst") {
        return Ok(Reject::TcpReset);
    }
    let v6 = family == TableFamily::Ip6;
    let (named_v6, name) = match (t.strip_prefix("icmp6-"), t.strip_prefix("icmp-")) {
        (Some(n), _) => (true, n),
        (_, Some(n)) => (false, n),
        _ => (v6, t),
    };
    let name = match name {
        "proto-unreachable" => "prot-unreachable",
        "adm-prohibited" => "admin-prohibited",
        "addr-unreach" => "addr-unreachable",
        "port-unreach" => "port-unreachable",
        x => x,
    };
    let table = if v6 {
        names::REJECT_ICMPV6
    } else {
        names::REJECT_ICMP
    };
    // `frag-needed` is nft's name only (iptables has no `icmp-frag-needed`).
    let code = names::code_lookup(table, name)
        .filter(|_| named_v6 == v6 && name != "frag-needed")
        .ok_or_else(|| at(w, format!("`--reject-with {t}` is not supported here")))?;
    Ok(match (v6, code) {
        (false, 3) | (true, 4) => Reject::Default,
        (false, c) => Reject::Icmp(c),
        (true, c) => Reject::Icmpv6(c),
    })
}

fn log_level(w: &Word) -> Result<Option<String>, Error> {
    let l = match w.text.as_str() {
        "0" | "emerg" => "emerg",
        "1" | "alert" => "alert",
        "2" | "crit" => "crit",
        "3" | "err" | "error" => "err",
        "4" | "warn" | "warning" => return Ok(None),
        "5" | "notice" => "notice",
        "6" | "info" => "info",
        "7" | "debug" => "debug",
        _ => return Err(at(w, "a log level 0-7 or a syslog level name expected")),
    };
    Ok(Some(l.to_owned()))
}

/// `p` or `p-q`.
fn port_range(w: &Word) -> Result<(u16, u16), Error> {
    let t = w.text.as_str();
    let (a, b) = t.split_once('-').unwrap_or((t, t));
    match (a.parse::<u16>(), b.parse::<u16>()) {
        (Ok(a), Ok(b)) if a <= b && a > 0 => Ok((a, b)),
        _ => Err(at(w, "a port or port range `p-q` expected")),
    }
}

/// `A[-B][:p[-q]]` (IPv6: `[A]:p`).
type NatTo = (Option<(Addr, Addr)>, Option<(u16, u16)>);

fn nat_to(family: TableFamily, w: &Word) -> Result<NatTo, Error> {
    let t = w.text.as_str();
    let (addrs, ports) = if family == TableFamily::Ip6 {
        match t.strip_prefix('[') {
            Some(r) => {
                let (a, p) = r.split_once(']').ok_or_else(|| at(w, "`]` expected"))?;
                (a, p.strip_prefix(':'))
            }
            None => (t, None),
        }
    } else {
        match t.split_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        }
    };
    let addr = if addrs.is_empty() {
        None
    } else {
        let (a, b) = addrs.split_once('-').unwrap_or((addrs, addrs));
        let pa = parse_ip(family, a).ok_or_else(|| at(w, "an address expected"))?;
        let pb = parse_ip(family, b).ok_or_else(|| at(w, "an address expected"))?;
        Some((pa, pb))
    };
    let ports = match ports {
        None => None,
        Some(p) => Some(port_range(&Word {
            text: p.to_owned(),
            ..w.clone()
        })?),
    };
    Ok((addr, ports))
}
