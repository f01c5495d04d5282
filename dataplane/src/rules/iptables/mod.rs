//! iptables rulesets translated to the nftables AST, the way iptables-nft translates them
//! (`iptables-restore-translate`, `iptables-translate`).
//!
//! Two inputs, told apart line by line: the `iptables-restore` format that `iptables-save`
//! prints (`*filter`, `:CHAIN POLICY [p:b]`, `-A …`, `COMMIT`) and shell scripts of
//! `iptables …` / `ip6tables …` command lines. Both drive the same model (tables of
//! chains of rules); the result is one [`Ruleset`] with `table ip filter`, `table ip nat`
//! (`ip6` for ip6tables) and the iptables chain names, every rule with a `counter`.
//! Whatever cannot be translated is an [`Error`] at the input's line and column naming
//! the option. See `docs/rules.md` ("iptables").

mod rule;
mod words;

#[cfg(test)]
mod tests;

use super::Error;
use super::ast::{BaseChain, Chain, ChainType, Hook, Policy, Pos, Rule, Ruleset, Stmt, Table};
use super::ast::{TableFamily, Verdict};
use words::{Word, at, pos};

/// Reads an iptables-restore file or an iptables shell script; `family` is the family of
/// the restore format (`ip` for `iptables-restore`, `ip6` for `ip6tables-restore`);
/// command lines say theirs (`iptables` / `ip6tables`). The result has passed
/// [`check`](super::check::check) and prints as text the parser reads back.
pub fn translate(src: &str, family: TableFamily) -> Result<Ruleset, Error> {
    let mut m = Model::default();
    let mut section: Option<(TableFamily, String, u32)> = None;
    for (line, text) in words::logical_lines(src) {
        let mut ws = words::split(&text, line)?;
        // `[packets:bytes] -A …` (iptables-save -c): the counters are not kept.
        if ws.first().is_some_and(|w| is_counters(&w.text)) {
            ws.remove(0);
        }
        let Some(first) = ws.first() else { continue };
        let w = first.text.as_str();
        if let Some(table) = w.strip_prefix('*') {
            if let Some((_, t, l)) = &section {
                return Err(at(first, format!("table `{t}` (line {l}) has no COMMIT")));
            }
            table_kind(table).ok_or_else(|| at(first, "only the filter and nat tables"))?;
            m.flush_table(family, table);
            section = Some((family, table.to_owned(), line));
        } else if w == "COMMIT" {
            if section.take().is_none() {
                return Err(at(first, "COMMIT outside a `*table` section"));
            }
        } else if let Some(name) = w.strip_prefix(':') {
            let Some((fam, table, _)) = &section else {
                return Err(at(first, "chain declaration outside a `*table` section"));
            };
            let policy = ws
                .get(1)
                .ok_or_else(|| at(first, "a policy or `-` expected"))?;
            if policy.text == "-" {
                m.new_chain(*fam, table, name, first)?;
            } else {
                let p = parse_policy(policy)?;
                m.base_chain(*fam, table, name, first)?
                    .base_policy(p, policy)?;
            }
        } else if w.starts_with('-') {
            let Some((fam, table, _)) = &section else {
                return Err(at(
                    first,
                    "a rule outside a `*table` section (no `*filter` line)",
                ));
            };
            m.command(*fam, Some(table), &ws)?;
        } else if let Some(fam) = command_family(w) {
            if let Some((_, t, _)) = &section {
                return Err(at(first, format!("`{w}` command inside table `{t}`")));
            }
            if ws.len() == 1 {
                return Err(at(first, "a command expected"));
            }
            m.command(fam, None, &ws[1..])?;
        } else if w == "set" || w.starts_with("#!") {
            // `set -e` and friends in a script: nothing to translate.
        } else {
            return Err(at(
                first,
                "not an iptables line (expected `iptables …`, `ip6tables …` or the \
                 iptables-restore format)",
            ));
        }
    }
    if let Some((_, t, l)) = section {
        return Err(Error {
            line: l,
            col: 1,
            token: format!("*{t}"),
            msg: "table section without COMMIT".into(),
        });
    }
    let rs = m.into_ruleset();
    super::check::check(&rs)?;
    super::to_text_verified(&rs)?;
    Ok(rs)
}

/// [`translate`] and print: the nftables text of the ruleset (what `fwd check --iptables
/// --print` and `fwctl iptables-restore --print` show).
pub fn to_nft(src: &str, family: TableFamily) -> Result<String, Error> {
    translate(src, family).map(|rs| super::print::to_text(&rs))
}

/// Whether a text reads as iptables input rather than nftables: its first line that is
/// not blank or a comment starts with `*`, `:`, `-A`, `iptables` or `ip6tables`.
pub fn looks_like_iptables(src: &str) -> bool {
    src.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("set "))
        .is_some_and(|l| {
            let w = l.split_whitespace().next().unwrap_or_default();
            w.starts_with('*') || w.starts_with(':') || w == "-A" || command_family(w).is_some()
        })
}

fn is_counters(w: &str) -> bool {
    w.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(p, b)| p.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
}

/// `iptables` / `ip6tables` (also as a path, and the -nft / -legacy names).
fn command_family(w: &str) -> Option<TableFamily> {
    if w.contains('=') {
        return None;
    }
    let base = w.rsplit('/').next().unwrap_or(w);
    let base = base
        .strip_suffix("-nft")
        .or_else(|| base.strip_suffix("-legacy"))
        .unwrap_or(base);
    match base {
        "iptables" => Some(TableFamily::Ip),
        "ip6tables" => Some(TableFamily::Ip6),
        _ => None,
    }
}

fn parse_policy(w: &Word) -> Result<Policy, Error> {
    match w.text.as_str() {
        "ACCEPT" => Ok(Policy::Accept),
        "DROP" => Ok(Policy::Drop),
        _ => Err(at(w, "a chain policy is ACCEPT or DROP")),
    }
}

/// The chain type and built-in chains (name, hook, priority) of a table, as iptables-nft
/// creates them.
type Builtins = &'static [(&'static str, Hook, i32)];

fn table_kind(table: &str) -> Option<(ChainType, Builtins)> {
    const FILTER: Builtins = &[
        ("INPUT", Hook::Input, 0),
        ("FORWARD", Hook::Forward, 0),
        ("OUTPUT", Hook::Output, 0),
    ];
    const NAT: Builtins = &[
        ("PREROUTING", Hook::Prerouting, -100),
        ("INPUT", Hook::Input, 100),
        ("OUTPUT", Hook::Output, -100),
        ("POSTROUTING", Hook::Postrouting, 100),
    ];
    match table {
        "filter" => Some((ChainType::Filter, FILTER)),
        "nat" => Some((ChainType::Nat, NAT)),
        _ => None,
    }
}

#[derive(Default)]
struct Model {
    tables: Vec<Table>,
}

/// The command words (`-A`, `--append`, …) and what they do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Append,
    Insert,
    Delete,
    Replace,
    NewChain,
    DeleteChain,
    Flush,
    Zero,
    Policy,
}

fn cmd_of(w: &str) -> Option<Cmd> {
    Some(match w {
        "-A" | "--append" => Cmd::Append,
        "-I" | "--insert" => Cmd::Insert,
        "-D" | "--delete" => Cmd::Delete,
        "-R" | "--replace" => Cmd::Replace,
        "-N" | "--new-chain" | "--new" => Cmd::NewChain,
        "-X" | "--delete-chain" => Cmd::DeleteChain,
        "-F" | "--flush" => Cmd::Flush,
        "-Z" | "--zero" => Cmd::Zero,
        "-P" | "--policy" => Cmd::Policy,
        _ => return None,
    })
}

impl Chain {
    fn base_policy(&mut self, p: Policy, w: &Word) -> Result<(), Error> {
        match &mut self.base {
            Some(b) => {
                b.policy = p;
                Ok(())
            }
            None => Err(at(w, "only built-in chains have a policy")),
        }
    }
}

impl Model {
    fn table_index(&self, family: TableFamily, name: &str) -> Option<usize> {
        self.tables
            .iter()
            .position(|t| t.family == family && t.name == name)
    }

    fn table_mut(&mut self, family: TableFamily, name: &str, pos: Pos) -> &mut Table {
        let i = match self.table_index(family, name) {
            Some(i) => i,
            None => {
                self.tables.push(Table {
                    family,
                    name: name.to_owned(),
                    sets: Vec::new(),
                    maps: Vec::new(),
                    helpers: Vec::new(),
                    chains: Vec::new(),
                    pos,
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }

    /// `*table` in a restore file: the section replaces the table's rules.
    fn flush_table(&mut self, family: TableFamily, name: &str) {
        if let Some(i) = self.table_index(family, name) {
            self.tables.remove(i);
        }
    }

    /// A built-in chain, created (policy accept) on first use.
    fn base_chain(
        &mut self,
        family: TableFamily,
        table: &str,
        name: &str,
        w: &Word,
    ) -> Result<&mut Chain, Error> {
        let (ty, builtins) = table_kind(table).ok_or_else(|| at(w, "unknown table"))?;
        let &(_, hook, priority) = builtins.iter().find(|(n, ..)| *n == name).ok_or_else(|| {
            at(
                w,
                format!("`{name}` is not a built-in chain of table {table}"),
            )
        })?;
        let t = self.table_mut(family, table, pos(w));
        let i = match t.chains.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                t.chains.push(Chain {
                    name: name.to_owned(),
                    base: Some(BaseChain {
                        ty,
                        hook,
                        priority,
                        policy: Policy::Accept,
                    }),
                    rules: Vec::new(),
                    pos: pos(w),
                });
                t.chains.len() - 1
            }
        };
        Ok(&mut t.chains[i])
    }

    fn new_chain(
        &mut self,
        family: TableFamily,
        table: &str,
        name: &str,
        w: &Word,
    ) -> Result<(), Error> {
        let (_, builtins) = table_kind(table).ok_or_else(|| at(w, "unknown table"))?;
        if builtins.iter().any(|(n, ..)| *n == name) || rule::is_target_name(name) {
            return Err(at(w, format!("`{name}` is a built-in chain or target")));
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('!') {
            return Err(at(w, "a chain name expected"));
        }
        let t = self.table_mut(family, table, pos(w));
        if t.chains.iter().any(|c| c.name == name) {
            return Err(at(w, format!("chain `{name}` already exists")));
        }
        t.chains.push(Chain {
            name: name.to_owned(),
            base: None,
            rules: Vec::new(),
            pos: pos(w),
        });
        Ok(())
    }

    /// The chain a command names: built-in (created on use) or an existing user chain.
    fn chain(&mut self, family: TableFamily, table: &str, w: &Word) -> Result<&mut Chain, Error> {
        let (_, builtins) = table_kind(table).ok_or_else(|| at(w, "unknown table"))?;
        if builtins.iter().any(|(n, ..)| *n == w.text) {
            return self.base_chain(family, table, &w.text, w);
        }
        let ti = self.table_index(family, table);
        let ci = ti.and_then(|ti| self.tables[ti].chains.iter().position(|c| c.name == w.text));
        match (ti, ci) {
            (Some(ti), Some(ci)) => Ok(&mut self.tables[ti].chains[ci]),
            _ => Err(at(w, format!("no chain `{}` in table {table}", w.text))),
        }
    }

    /// One command: `-t TABLE` and a command word anywhere (as iptables allows), then the
    /// command's arguments and, for `-A/-I/-D/-R`, the rule.
    fn command(
        &mut self,
        family: TableFamily,
        section: Option<&str>,
        ws: &[Word],
    ) -> Result<(), Error> {
        let mut table = section.unwrap_or("filter").to_owned();
        let mut rest = Vec::with_capacity(ws.len());
        let mut cmd: Option<(Cmd, &Word)> = None;
        let mut i = 0;
        while i < ws.len() {
            let w = &ws[i];
            match w.text.as_str() {
                "-t" | "--table" => {
                    if let Some(s) = section {
                        return Err(at(w, format!("`-t` inside the `*{s}` section")));
                    }
                    let t = ws
                        .get(i + 1)
                        .ok_or_else(|| at(w, "a table name expected"))?;
                    if table_kind(&t.text).is_none() {
                        return Err(at(
                            t,
                            format!("table `{}` is not supported (only filter and nat)", t.text),
                        ));
                    }
                    table = t.text.clone();
                    i += 2;
                    continue;
                }
                "-w" | "--wait" | "-W" | "--wait-interval" => {
                    // Locking options of the command: nothing to translate.
                    i += 1;
                    if ws.get(i).is_some_and(|n| n.text.parse::<f64>().is_ok()) {
                        i += 1;
                    }
                    continue;
                }
                "-L" | "--list" | "-S" | "--list-rules" | "-C" | "--check" | "-E"
                | "--rename-chain" => {
                    return Err(at(
                        w,
                        format!(
                            "`{}` is not part of a ruleset (only -A -I -D -R -N -X -F -Z -P)",
                            w.text
                        ),
                    ));
                }
                t if cmd.is_none() && cmd_of(t).is_some() => {
                    cmd = cmd_of(t).map(|c| (c, w));
                }
                _ => rest.push(w.clone()),
            }
            i += 1;
        }
        let Some((cmd, cw)) = cmd else {
            let msg = "no command (-A, -I, -D, -R, -N, -X, -F, -Z or -P)";
            return Err(match ws.first() {
                Some(w) => at(w, msg),
                None => at(&Word::EMPTY, msg),
            });
        };
        let chain_arg = rest
            .first()
            .filter(|w| !w.text.starts_with('-') && w.text != "!");
        let need_chain = || chain_arg.ok_or_else(|| at(cw, "a chain name expected"));
        match cmd {
            Cmd::NewChain => {
                let c = need_chain()?;
                self.new_chain(family, &table, &c.text, c)?;
                no_more(&rest[1..])
            }
            Cmd::Policy => {
                let c = need_chain()?;
                let p = rest.get(1).ok_or_else(|| at(c, "a policy expected"))?;
                let policy = parse_policy(p)?;
                self.chain(family, &table, c)?.base_policy(policy, c)?;
                no_more(&rest[2..])
            }
            Cmd::Zero => Ok(()),
            Cmd::Flush => {
                if let Some(c) = chain_arg {
                    self.chain(family, &table, c)?.rules.clear();
                    no_more(&rest[1..])
                } else {
                    if let Some(ti) = self.table_index(family, &table) {
                        self.tables[ti]
                            .chains
                            .iter_mut()
                            .for_each(|c| c.rules.clear());
                    }
                    no_more(&rest)
                }
            }
            Cmd::DeleteChain => self.delete_chains(family, &table, chain_arg, cw, &rest),
            Cmd::Append | Cmd::Insert | Cmd::Delete | Cmd::Replace => {
                let c = need_chain()?.clone();
                let mut spec = &rest[1..];
                let num = match spec.first().map(|w| (w, w.text.parse::<usize>())) {
                    Some((w, Ok(n))) if cmd != Cmd::Append => {
                        spec = &spec[1..];
                        if n == 0 {
                            return Err(at(w, "rule numbers start at 1"));
                        }
                        Some((n, w))
                    }
                    _ => None,
                };
                let ti = self.table_index(family, &table);
                let user_chains: Vec<String> = ti
                    .map(|ti| {
                        self.tables[ti]
                            .chains
                            .iter()
                            .filter(|c| c.base.is_none())
                            .map(|c| c.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let is_nat = table == "nat";
                let chain = self.chain(family, &table, &c)?;
                if cmd == Cmd::Delete && num.is_some() {
                    let (n, w) = num.unwrap_or((0, cw));
                    no_more(spec)?;
                    if n > chain.rules.len() {
                        return Err(at(w, "no rule with this number"));
                    }
                    chain.rules.remove(n - 1);
                    return Ok(());
                }
                let new = rule::translate(family, is_nat, &user_chains, spec, cw)?;
                apply(chain, cmd, num, new, cw)
            }
        }
    }

    fn delete_chains(
        &mut self,
        family: TableFamily,
        table: &str,
        chain_arg: Option<&Word>,
        cw: &Word,
        rest: &[Word],
    ) -> Result<(), Error> {
        no_more(&rest[usize::from(chain_arg.is_some())..])?;
        let Some(ti) = self.table_index(family, table) else {
            return match chain_arg {
                Some(c) => Err(at(c, format!("no chain `{}` in table {table}", c.text))),
                None => Ok(()),
            };
        };
        let t = &mut self.tables[ti];
        let doomed: Vec<String> = match chain_arg {
            Some(c) => {
                match t.chains.iter().find(|ch| ch.name == c.text) {
                    Some(ch) if ch.base.is_some() => {
                        return Err(at(c, "a built-in chain cannot be deleted"));
                    }
                    Some(ch) if !ch.rules.is_empty() => {
                        return Err(at(c, "the chain is not empty (flush it first)"));
                    }
                    Some(_) => {}
                    None => return Err(at(c, format!("no chain `{}` in table {table}", c.text))),
                }
                vec![c.text.clone()]
            }
            None => t
                .chains
                .iter()
                .filter(|c| c.base.is_none())
                .map(|c| c.name.clone())
                .collect(),
        };
        for c in &t.chains {
            if doomed.contains(&c.name) && !c.rules.is_empty() {
                return Err(at(cw, format!("chain `{}` is not empty", c.name)));
            }
            for r in &c.rules {
                for s in &r.stmts {
                    if let Stmt::Verdict(Verdict::Jump(n) | Verdict::Goto(n), _) = s
                        && doomed.contains(n)
                    {
                        return Err(at(
                            chain_arg.unwrap_or(cw),
                            format!("chain `{n}` is still referenced from chain `{}`", c.name),
                        ));
                    }
                }
            }
        }
        t.chains.retain(|c| !doomed.contains(&c.name));
        Ok(())
    }

    /// The ruleset, tables in order of first use, rules numbered per table as the parser
    /// numbers them.
    fn into_ruleset(self) -> Ruleset {
        let mut tables = self.tables;
        tables.retain(|t| !t.chains.is_empty());
        for t in &mut tables {
            let mut h = 0;
            for r in t.chains.iter_mut().flat_map(|c| c.rules.iter_mut()) {
                h += 1;
                r.handle = h;
            }
        }
        Ruleset {
            flush: true,
            tables,
        }
    }
}

/// `-A` / `-I [n]` / `-R n` / `-D spec` on a chain's rules (one spec may stand for several
/// rules when `-s`/`-d` list several addresses, as in iptables).
fn apply(
    chain: &mut Chain,
    cmd: Cmd,
    num: Option<(usize, &Word)>,
    new: Vec<Rule>,
    cw: &Word,
) -> Result<(), Error> {
    match cmd {
        Cmd::Append => chain.rules.extend(new),
        Cmd::Insert => {
            let (n, w) = num.unwrap_or((1, cw));
            if n > chain.rules.len() + 1 {
                return Err(at(w, "index of insertion too big"));
            }
            chain.rules.splice(n - 1..n - 1, new);
        }
        Cmd::Replace => {
            let (n, w) = num.ok_or_else(|| at(cw, "`-R` needs a rule number"))?;
            if n > chain.rules.len() {
                return Err(at(w, "no rule with this number"));
            }
            let [r]: [Rule; 1] = new
                .try_into()
                .map_err(|_| at(w, "`-R` with several addresses (several rules)"))?;
            chain.rules[n - 1] = r;
        }
        _ => {
            for r in new {
                let i = chain
                    .rules
                    .iter()
                    .position(|x| x.stmts == r.stmts && x.comment == r.comment)
                    .ok_or_else(|| at(cw, "no rule matches this specification"))?;
                chain.rules.remove(i);
            }
        }
    }
    Ok(())
}

fn no_more(rest: &[Word]) -> Result<(), Error> {
    match rest.first() {
        Some(w) => Err(at(w, "unexpected argument")),
        None => Ok(()),
    }
}
