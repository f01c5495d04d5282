//! `fwctl`: the command line for the fwmgmt API, with the daily commands of `conntrack`
//! and `nft`. Human output by default (like `conntrack -L`, `nft list ruleset`), `--json`
//! for the API's JSON. See docs/mgmt.md.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fwd_proto::{
    ConntrackStats, CtCounters, CtEntry, CtExpectation, CtTuple, EventLine, ExpectList, HaCounters,
};
use mgmt::error::ApiError;
use mgmt::ha::HaView;
use mgmt::schema::{ConntrackPage, Ports, Tuning, Workers};
use serde_json::Value;

/// Command line for the fwd management API.
#[derive(Debug, Parser)]
#[command(name = "fwctl", version)]
// pub(crate): examples/mgmt-man.rs renders the man pages from it.
pub(crate) struct Cli {
    /// fwmgmt's base URL.
    #[arg(
        long,
        env = "FWCTL_URL",
        default_value = "http://127.0.0.1:9477",
        global = true
    )]
    url: String,
    /// File holding the bearer token (first line).
    #[arg(long, env = "FWCTL_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print the API's JSON instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// Request timeout in seconds (not applied to `conntrack events`).
    #[arg(long, default_value_t = 30, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Connection tracking (like `conntrack`).
    #[command(subcommand)]
    Conntrack(Ct),
    /// The ruleset (like `nft`).
    #[command(subcommand)]
    Ruleset(Ruleset),
    /// Conntrack tunables by sysctl name.
    #[command(subcommand)]
    Tuning(TuningCmd),
    /// Translate an iptables ruleset (iptables-save output or a script of iptables
    /// commands) to nftables as iptables-nft does and replace the running ruleset with it;
    /// `-` reads stdin.
    IptablesRestore(IptablesRestore),
    /// nft's own words, as one atomic change of the running ruleset: `nft add rule ip
    /// filter input tcp dport 22 accept`, `nft delete rule ip filter input handle 7`,
    /// `nft -f FILE` (a script of commands; `-` reads stdin), `nft -c …` (check only),
    /// `nft [-a] list ruleset`.
    Nft(Nft),
    /// Elements of a named set or map, in nft's words: `set list [FAMILY] TABLE SET` (`nft
    /// list set`), `set add [FAMILY] TABLE SET ELEMENT…` (`nft add element`; `--create`:
    /// `nft create element`), `set delete [FAMILY] TABLE SET ELEMENT…` (`nft delete
    /// element`). An element is `198.18.0.1`, `198.18.0.1 . 22` or for a map `KEY :
    /// DATA`; several are separated by commas and may be wrapped in `{ }`. Without a
    /// family, the one table by that name.
    #[command(subcommand)]
    Set(SetCmd),
    /// Ports with link state and counters.
    Ports,
    /// Workers with packets, forwarded, verdict-cache hits, ICMP errors sent and
    /// rate-limited, drops by reason, handoffs and busy ratio.
    Workers,
    /// Connection-state sync (docs/ha.md).
    #[command(subcommand)]
    Ha(HaCmd),
}

#[derive(Debug, Subcommand)]
enum HaCmd {
    /// Role, peer, queue and loss counters, fwd's external cache.
    Status,
    /// Takeover: move the external cache into the workers.
    Commit,
    /// Takeover for an external controller (keepalived's notify script): commit, then
    /// gratuitous ARP / unsolicited NA for the service addresses (the ones given, else
    /// the HA config's `service_addresses`, else every address of fwd's ports).
    Takeover {
        /// Service addresses to announce.
        addresses: Vec<String>,
    },
    /// Ask the peer for its whole table.
    Resync,
}

#[derive(Debug, Args, Default)]
struct Filter {
    /// Original source address or prefix.
    #[arg(short = 's', long = "src")]
    src: Option<String>,
    /// Original destination address or prefix.
    #[arg(short = 'd', long = "dst")]
    dst: Option<String>,
    /// Reply source address or prefix.
    #[arg(short = 'r', long = "reply-src")]
    reply_src: Option<String>,
    /// Reply destination address or prefix.
    #[arg(short = 'q', long = "reply-dst")]
    reply_dst: Option<String>,
    /// Original source port.
    #[arg(long)]
    sport: Option<String>,
    /// Original destination port.
    #[arg(long)]
    dport: Option<String>,
    /// Protocol name or number.
    #[arg(short = 'p', long = "proto")]
    proto: Option<String>,
    /// TCP state.
    #[arg(long)]
    state: Option<String>,
    /// Mark, `value` or `value/mask`.
    #[arg(short = 'm', long)]
    mark: Option<String>,
    /// Zone.
    #[arg(short = 'w', long)]
    zone: Option<String>,
    /// `ipv4` or `ipv6`.
    #[arg(short = 'f', long)]
    family: Option<String>,
    /// Status flag that must be set.
    #[arg(long)]
    status: Option<String>,
}

impl Filter {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let all = [
            ("src", &self.src),
            ("dst", &self.dst),
            ("reply_src", &self.reply_src),
            ("reply_dst", &self.reply_dst),
            ("sport", &self.sport),
            ("dport", &self.dport),
            ("proto", &self.proto),
            ("state", &self.state),
            ("mark", &self.mark),
            ("zone", &self.zone),
            ("family", &self.family),
            ("status", &self.status),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.clone())))
            .collect()
    }
}

#[derive(Debug, Subcommand)]
enum Ct {
    /// List connections (`conntrack -L`), all pages.
    List {
        #[command(flatten)]
        filter: Filter,
        /// Entries per request.
        #[arg(long, default_value_t = 1000)]
        page: u32,
        /// List the expectation table instead (`conntrack -L expect`); takes no filter.
        #[arg(long)]
        expect: bool,
    },
    /// Delete connections (`conntrack -D`); with no filter, `--all` flushes the table.
    Delete {
        #[command(flatten)]
        filter: Filter,
        #[arg(long)]
        all: bool,
    },
    /// Count connections (`conntrack -C`).
    Count {
        #[command(flatten)]
        filter: Filter,
    },
    /// Statistics per worker and total (`conntrack -S`).
    Stats,
    /// Follow events (`conntrack -E`).
    Events {
        #[command(flatten)]
        filter: Filter,
        /// Event types, comma-separated (NEW,UPDATE,DESTROY).
        #[arg(short = 'e', long = "event")]
        events: Option<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum Ruleset {
    /// Print the running ruleset (`nft list ruleset`).
    Show,
    /// Replace the running ruleset atomically (`nft -f FILE`); `-` reads stdin. A `.json`
    /// file is sent as nftables JSON.
    Apply { file: PathBuf },
    /// Check a ruleset without applying it (`nft -c -f FILE`).
    Check { file: PathBuf },
}

#[derive(Debug, Args)]
struct IptablesRestore {
    file: PathBuf,
    /// ip6tables input: the restore format's tables become `ip6` tables.
    #[arg(short = '6', long)]
    ipv6: bool,
    /// Print the nftables translation (like iptables-restore-translate) and send nothing.
    #[arg(long)]
    print: bool,
    /// Check the translation against the running appliance without applying it.
    #[arg(long, conflicts_with = "print")]
    check: bool,
}

#[derive(Debug, Args)]
struct Nft {
    /// List with `# handle N` after each rule (`nft -a list ruleset`).
    #[arg(short = 'a', long = "handle")]
    handles: bool,
    /// Check the commands against the running ruleset without applying them (`nft -c`).
    #[arg(short = 'c', long = "check")]
    check: bool,
    /// Apply the commands of a file (`nft -f FILE`); `-` reads stdin.
    #[arg(short = 'f', long = "file", conflicts_with = "words")]
    file: Option<PathBuf>,
    /// One command (`add rule ip filter input tcp dport 22 accept`) or `list ruleset`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum SetCmd {
    /// The set's or map's elements (`nft list set [FAMILY] TABLE SET`).
    List {
        #[arg(num_args = 2..=3, required = true)]
        words: Vec<String>,
    },
    /// Add elements as one atomic change (`nft add element [FAMILY] TABLE SET { … }`).
    Add {
        /// An element that is there already is an error (`nft create element`).
        #[arg(long)]
        create: bool,
        #[arg(num_args = 3.., required = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Delete elements as one atomic change (`nft delete element [FAMILY] TABLE SET { …
    /// }`); each must be there.
    Delete {
        #[arg(num_args = 3.., required = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TuningCmd {
    /// Print tunables (all, or the given names).
    Get { names: Vec<String> },
    /// Set tunables, `NAME=VALUE` (the `nf_conntrack_` prefix may be left out).
    Set {
        #[arg(required = true)]
        assignments: Vec<String>,
    },
}

/// A failure to print: the API's error, or a local one.
enum Failure {
    Api(ApiError),
    Local(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Local(s)
    }
}

struct Client {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
}

impl Client {
    fn request(&self, method: &str, path: &str, query: &[(&str, String)]) -> ureq::Request {
        let mut r = self.agent.request(
            method,
            &format!("{}{}", self.url.trim_end_matches('/'), path),
        );
        for (k, v) in query {
            r = r.query(k, v);
        }
        if let Some(t) = &self.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    fn finish(res: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response, Failure> {
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                Err(match serde_json::from_str::<ApiError>(&text) {
                    Ok(e) => Failure::Api(e),
                    Err(_) => Failure::Local(format!("HTTP {code}: {text}")),
                })
            }
            Err(e) => Err(Failure::Local(e.to_string())),
        }
    }

    fn json(&self, method: &str, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        let r = Self::finish(self.request(method, path, query).call())?;
        r.into_json()
            .map_err(|e| Failure::Local(format!("bad JSON answer: {e}")))
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<Value, Failure> {
        let r = Self::finish(
            self.request(method, path, &[])
                .set("Content-Type", content_type)
                .send_bytes(body),
        )?;
        r.into_json()
            .map_err(|e| Failure::Local(format!("bad JSON answer: {e}")))
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Local(format!("unexpected answer: {e}")))
}

fn tuple_text(t: &CtTuple) -> String {
    let mut s = format!("src={} dst={} ", t.src, t.dst);
    if let (Some(sp), Some(dp)) = (t.sport, t.dport) {
        s += &format!("sport={sp} dport={dp} ");
    }
    if let (Some(ty), Some(code)) = (t.icmp_type, t.icmp_code) {
        s += &format!("type={ty} code={code} ");
        if let Some(id) = t.icmp_id {
            s += &format!("id={id} ");
        }
    }
    s + &format!("packets={} bytes={}", t.packets, t.bytes)
}

/// One line as `conntrack -L expect` prints it (libnetfilter_conntrack's order): the
/// expected tuple, its mask (the source port is a wildcard), the master's original
/// tuple, the class (always 0) and the helper.
fn expectation_text(x: &CtExpectation) -> String {
    let (mask_src, mask_dst) = match x.src {
        std::net::IpAddr::V4(_) => ("255.255.255.255", "255.255.255.255"),
        std::net::IpAddr::V6(_) => (
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
    };
    format!(
        "{} proto={} src={} dst={} sport={} dport={} mask-src={mask_src} mask-dst={mask_dst} \
         sport=0 dport=65535 master-src={} master-dst={} sport={} dport={} class=0 helper={}",
        x.timeout,
        x.proto_num,
        x.src,
        x.dst,
        x.sport,
        x.dport,
        x.master_src,
        x.master_dst,
        x.master_sport,
        x.master_dport,
        x.helper
    )
}

/// One line as `conntrack -L` prints it.
fn entry_text(e: &CtEntry) -> String {
    let mut s = format!("{:<8} {:<2} {} ", e.proto, e.proto_num, e.timeout);
    if let Some(st) = &e.state {
        s += &format!("{st} ");
    }
    s += &tuple_text(&e.orig);
    if e.status.iter().any(|f| f == "UNREPLIED") {
        s += " [UNREPLIED]";
    }
    s += " ";
    s += &tuple_text(&e.reply);
    if e.status.iter().any(|f| f == "ASSURED") {
        s += " [ASSURED]";
    }
    s += &format!(" mark={}", e.mark);
    if e.zone != 0 {
        s += &format!(" zone={}", e.zone);
    }
    s + " use=1"
}

fn counters_text(c: &CtCounters) -> String {
    format!(
        "found={} invalid={} insert={} insert_failed={} drop={} early_drop={} error={} search_restart={} entries={} max={}",
        c.found,
        c.invalid,
        c.insert,
        c.insert_failed,
        c.drop,
        c.early_drop,
        c.error,
        c.search_restart,
        c.entries,
        c.max
    )
}

/// What a ruleset write changed: `tables 1 -> 2, chains 3 -> 3, rules 10 -> 12` (the
/// running ruleset before, the ruleset sent after).
fn changes(v: &Value) -> String {
    ["tables", "chains", "rules"]
        .iter()
        .map(|k| format!("{k} {} -> {}", v["before"][k], v["after"][k]))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| Failure::Local(format!("{}: {e}", path.display())))
}

fn ruleset_send(c: &Client, cli_json: bool, file: &PathBuf, check: bool) -> Result<(), Failure> {
    let body = read_file(file)?;
    let ct = if file.extension().is_some_and(|e| e == "json") {
        "application/json"
    } else {
        "text/plain"
    };
    ruleset_put(c, cli_json, file, ct, &body, check)
}

/// `fwctl iptables-restore`: translated here, sent as nftables text (errors in the
/// iptables input point at its lines; the server sees only the translation).
fn iptables_restore(c: &Client, cli_json: bool, a: &IptablesRestore) -> Result<(), Failure> {
    let body = read_file(&a.file)?;
    let text = String::from_utf8(body).map_err(|_| format!("{}: not UTF-8", a.file.display()))?;
    let family = if a.ipv6 {
        dataplane::rules::ast::TableFamily::Ip6
    } else {
        dataplane::rules::ast::TableFamily::Ip
    };
    let nft = dataplane::rules::iptables::to_nft(&text, family).map_err(|e| {
        format!(
            "{}:{}:{}: {} (at `{}`)",
            a.file.display(),
            e.line,
            e.col,
            e.msg,
            e.token
        )
    })?;
    if a.print {
        print!("{nft}");
        return Ok(());
    }
    let label = PathBuf::from(format!("{} (translated)", a.file.display()));
    ruleset_put(c, cli_json, &label, "text/plain", nft.as_bytes(), a.check)
}

/// `fwctl nft`: `list ruleset` reads the running ruleset (with `-a`, the handles from its
/// JSON form); anything else is sent as nft commands (`POST /api/v1/ruleset/commands`).
fn nft(c: &Client, cli_json: bool, a: &Nft) -> Result<(), Failure> {
    let (label, body) = match (&a.file, a.words.as_slice()) {
        (Some(f), _) => (f.clone(), read_file(f)?),
        (None, []) => {
            return Err("nft: a command, `list ruleset` or -f FILE"
                .to_string()
                .into());
        }
        (None, [l, r]) if l == "list" && r == "ruleset" => {
            let v = c.json("GET", "/api/v1/ruleset", &[])?;
            if cli_json {
                print_json(&v);
            } else if a.handles {
                let rs = dataplane::rules::json::from_json(&v["json"])
                    .map_err(|e| format!("the running ruleset's JSON: {e}"))?;
                print!(
                    "{}",
                    dataplane::rules::print::to_text_with_handles(&rs, &|_, _, _| None)
                );
            } else {
                print!("{}", v["text"].as_str().unwrap_or(""));
            }
            return Ok(());
        }
        (None, [l, ..]) if l == "list" => {
            return Err("nft: only `list ruleset` is supported (add -a for handles)"
                .to_string()
                .into());
        }
        (None, words) => {
            // The shell took the quotes off: put them back around a word with a blank
            // (`comment "my rule"`), as nft needs them; a word that is nft syntax itself
            // (`'{ type ipv4_addr; }'`, `'{ 80, 443 }'`) goes as it is, as nft joins it.
            let line: Vec<String> = words
                .iter()
                .map(|w| {
                    if w.contains(char::is_whitespace) && !w.contains(['{', '}', ';', '"']) {
                        format!("\"{w}\"")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            (
                PathBuf::from("command"),
                (line.join(" ") + "\n").into_bytes(),
            )
        }
    };
    let path = if a.check {
        "/api/v1/ruleset/commands/check"
    } else {
        "/api/v1/ruleset/commands"
    };
    send_change(
        c,
        cli_json,
        &label,
        ("POST", path),
        "text/plain",
        &body,
        a.check,
    )
}

/// `[FAMILY] TABLE SET [ELEMENT…]`: the family (nft's names), table, set and the rest.
fn set_words(words: &[String]) -> (Option<&str>, &str, &str, &[String]) {
    match words {
        [f, t, n, rest @ ..] if matches!(f.as_str(), "ip" | "ip6" | "inet") => {
            (Some(f), t, n, rest)
        }
        [t, n, rest @ ..] => (None, t, n, rest),
        // clap requires at least two words.
        _ => (None, "", "", &[]),
    }
}

/// Elements as nft writes them, from the command's words: `{ a : x, b : y }` or `a : x,
/// b : y` into `[{"key": "a", "data": "x"}, …]` (a comma or `:` inside quotes is text).
fn elements_of(words: &[String]) -> Vec<Value> {
    let text = words.join(" ");
    let text = text.trim();
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for ch in text.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(p) = parts.last_mut() {
            p.push(ch);
        }
    }
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, d) = match p.split_once(" : ") {
                Some((k, d)) => (k.trim(), Some(d.trim())),
                None => (p, None),
            };
            let mut e = match element_timeout(k) {
                Some((k, secs)) => serde_json::json!({"key": k, "timeout": secs}),
                None => serde_json::json!({"key": k}),
            };
            if let Some(d) = d {
                e["data"] = serde_json::json!(d);
            }
            e
        })
        .collect()
}

/// `KEY timeout T` (an element of a set or map with `flags timeout`; a map's data follows
/// ` : `): the key and T in whole
/// seconds (rounded up; the API takes seconds).
fn element_timeout(p: &str) -> Option<(&str, u64)> {
    let (k, t) = p.rsplit_once(" timeout ")?;
    let ms = dataplane::rules::dynset::parse_duration(t.trim())?;
    Some((k.trim(), ms.div_ceil(1000)))
}

fn set_cmd(c: &Client, cli_json: bool, cmd: &SetCmd) -> Result<(), Failure> {
    let (words, method, create) = match cmd {
        SetCmd::List { words } => (words, "GET", false),
        SetCmd::Add { words, create } => (words, "POST", *create),
        SetCmd::Delete { words } => (words, "DELETE", false),
    };
    let (family, table, set, rest) = set_words(words);
    let mut path = format!(
        "/api/v1/sets/{}/{}/elements",
        urlencoding(table),
        urlencoding(set)
    );
    if let Some(f) = family {
        path += &format!("?family={f}");
    }
    if method == "GET" {
        let v = c.json("GET", &path, &[])?;
        if cli_json {
            print_json(&v);
        } else {
            print!("{}", v["text"].as_str().unwrap_or(""));
        }
        return Ok(());
    }
    let elements = elements_of(rest);
    if elements.is_empty() {
        return Err("set: no elements given".to_string().into());
    }
    let body = serde_json::json!({"elements": elements, "create": create}).to_string();
    let v = c.send(method, &path, "application/json", body.as_bytes())?;
    if cli_json {
        print_json(&v);
    } else {
        println!(
            "elements {}: generation {}",
            if method == "POST" { "added" } else { "deleted" },
            v["generation"]
        );
    }
    Ok(())
}

/// A path segment with everything but unreserved characters percent-encoded.
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn ruleset_put(
    c: &Client,
    cli_json: bool,
    file: &std::path::Path,
    ct: &str,
    body: &[u8],
    check: bool,
) -> Result<(), Failure> {
    let route = if check {
        ("POST", "/api/v1/ruleset/check")
    } else {
        ("PUT", "/api/v1/ruleset")
    };
    send_change(c, cli_json, file, route, ct, body, check)
}

/// Sends a ruleset change and prints what it changed; an error with a position points at
/// `file` like a compiler's.
fn send_change(
    c: &Client,
    cli_json: bool,
    file: &std::path::Path,
    (method, path): (&str, &str),
    ct: &str,
    body: &[u8],
    check: bool,
) -> Result<(), Failure> {
    let v = c.send(method, path, ct, body).map_err(|f| match f {
        // Point at the file like a compiler does.
        Failure::Api(e) if e.line.is_some() => Failure::Local(format!(
            "{}:{}:{}: {}: {}",
            file.display(),
            e.line.unwrap_or(0),
            e.column.unwrap_or(0),
            e.code,
            e.message
        )),
        other => other,
    })?;
    if cli_json {
        print_json(&v);
    } else if check {
        println!(
            "{}: ok ({} rules); would change {}",
            file.display(),
            v["rules"],
            changes(&v)
        );
    } else {
        println!(
            "ruleset applied: generation {}, {} rules; {}",
            v["generation"],
            v["rules"],
            changes(&v)
        );
    }
    Ok(())
}

fn follow_events(
    c: &Client,
    json: bool,
    filter: &Filter,
    events: &Option<String>,
    count: Option<u64>,
) -> Result<(), Failure> {
    let mut q = filter.pairs();
    if let Some(e) = events {
        q.push(("events", e.clone()));
    }
    let agent = ureq::AgentBuilder::new().build();
    let mut req = agent.get(&format!(
        "{}/api/v1/conntrack/events",
        c.url.trim_end_matches('/')
    ));
    for (k, v) in &q {
        req = req.query(k, v);
    }
    if let Some(t) = &c.token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let resp = Client::finish(req.set("Accept", "text/event-stream").call())?;
    let reader = std::io::BufReader::new(resp.into_reader());
    let (mut name, mut data) = (String::new(), String::new());
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    for line in reader.lines() {
        let line = line.map_err(|e| format!("event stream: {e}"))?;
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data += v.strip_prefix(' ').unwrap_or(v);
        } else if line.is_empty() && !data.is_empty() {
            if name == "error" {
                return Err(Failure::Local(format!("event stream ended: {data}")));
            }
            let mut out = stdout.lock();
            if json {
                let _ = writeln!(out, "{data}");
            } else {
                let ev: EventLine =
                    serde_json::from_str(&data).map_err(|e| format!("bad event: {e}"))?;
                let _ = writeln!(out, "{:>9} {}", format!("[{name}]"), entry_text(&ev.entry));
                if ev.lost > 0 {
                    let _ = writeln!(out, "   [LOST] {} events", ev.lost);
                }
            }
            let _ = out.flush();
            data.clear();
            name.clear();
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<(), Failure> {
    let token = match &cli.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let c = Client {
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(cli.timeout))
            .build(),
        url: cli.url.clone(),
        token,
    };
    let json = cli.json;
    match &cli.command {
        Command::Conntrack(Ct::List {
            filter,
            expect: true,
            ..
        }) => {
            if !filter.pairs().is_empty() {
                return Err(Failure::Local(
                    "--expect lists every expectation: it takes no filter".into(),
                ));
            }
            let v = c.json("GET", "/api/v1/conntrack/expect", &[])?;
            if json {
                print_json(&v["expectations"]);
            } else {
                let l: ExpectList = parse(v)?;
                for x in &l.expectations {
                    println!("{}", expectation_text(x));
                }
                eprintln!(
                    "fwctl: {} expectations have been shown.",
                    l.expectations.len()
                );
            }
        }
        Command::Conntrack(Ct::List { filter, page, .. }) => {
            let mut cursor: Option<String> = None;
            let mut all = Vec::new();
            let mut shown = 0u64;
            loop {
                let mut q = filter.pairs();
                q.push(("limit", page.to_string()));
                if let Some(c) = &cursor {
                    q.push(("cursor", c.clone()));
                }
                let v = c.json("GET", "/api/v1/conntrack", &q)?;
                let p: ConntrackPage = parse(v.clone())?;
                if json {
                    all.extend(v["entries"].as_array().cloned().unwrap_or_default());
                } else {
                    for e in &p.entries {
                        println!("{}", entry_text(e));
                    }
                }
                shown += p.entries.len() as u64;
                match p.next_cursor {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            if json {
                print_json(&Value::Array(all));
            } else {
                eprintln!("fwctl: {shown} flow entries have been shown.");
            }
        }
        Command::Conntrack(Ct::Delete { filter, all }) => {
            let mut q = filter.pairs();
            if *all {
                q.push(("all", "true".into()));
            }
            let v = c.json("DELETE", "/api/v1/conntrack", &q)?;
            if json {
                print_json(&v);
            } else {
                eprintln!("fwctl: {} flow entries have been deleted.", v["deleted"]);
            }
        }
        Command::Conntrack(Ct::Count { filter }) => {
            let v = c.json("GET", "/api/v1/conntrack/count", &filter.pairs())?;
            if json {
                print_json(&v);
            } else {
                println!("{}", v["count"]);
            }
        }
        Command::Conntrack(Ct::Stats) => {
            let v = c.json("GET", "/api/v1/conntrack/stats", &[])?;
            if json {
                print_json(&v);
            } else {
                let s: ConntrackStats = parse(v)?;
                for (i, w) in s.workers.iter().enumerate() {
                    println!("{:<10}{}", format!("cpu={i}"), counters_text(w));
                }
                println!("{:<10}{}", "total", counters_text(&s.total));
            }
        }
        Command::Conntrack(Ct::Events {
            filter,
            events,
            count,
        }) => {
            follow_events(&c, json, filter, events, *count)?;
        }
        Command::Ruleset(Ruleset::Show) => {
            let v = c.json("GET", "/api/v1/ruleset", &[])?;
            if json {
                print_json(&v);
            } else {
                print!("{}", v["text"].as_str().unwrap_or(""));
            }
        }
        Command::Ruleset(Ruleset::Apply { file }) => ruleset_send(&c, json, file, false)?,
        Command::Ruleset(Ruleset::Check { file }) => ruleset_send(&c, json, file, true)?,
        Command::IptablesRestore(a) => iptables_restore(&c, json, a)?,
        Command::Nft(a) => nft(&c, json, a)?,
        Command::Set(cmd) => set_cmd(&c, json, cmd)?,
        Command::Tuning(TuningCmd::Get { names }) => {
            let v = c.json("GET", "/api/v1/tuning", &[])?;
            let t: Tuning = parse(v.clone())?;
            let wanted = |k: &str| {
                names.is_empty()
                    || names
                        .iter()
                        .any(|n| n == k || format!("nf_conntrack_{n}") == k)
            };
            for n in names {
                if !t
                    .values
                    .keys()
                    .any(|k| *k == *n || *k == format!("nf_conntrack_{n}"))
                {
                    return Err(Failure::Local(format!("unknown tunable {n}")));
                }
            }
            if json {
                let sel: serde_json::Map<String, Value> = t
                    .values
                    .iter()
                    .filter(|(k, _)| wanted(k))
                    .map(|(k, v)| (k.clone(), Value::from(*v)))
                    .collect();
                print_json(&Value::Object(sel));
            } else {
                for (k, v) in t.values.iter().filter(|(k, _)| wanted(k)) {
                    println!("{k} = {v}");
                }
            }
        }
        Command::Tuning(TuningCmd::Set { assignments }) => {
            let mut body = serde_json::Map::new();
            for a in assignments {
                let (k, v) = a
                    .split_once('=')
                    .ok_or_else(|| format!("{a:?}: expected NAME=VALUE"))?;
                let v: u64 = match v.trim() {
                    "true" => 1,
                    "false" => 0,
                    n => n
                        .parse()
                        .map_err(|_| format!("{a:?}: {n:?} is not a non-negative integer"))?,
                };
                // `udp_timeout` is short for `nf_conntrack_udp_timeout` (the API takes
                // the full sysctl names only).
                let k = k.trim();
                let k = if k.starts_with("nf_conntrack_") {
                    k.to_string()
                } else {
                    format!("nf_conntrack_{k}")
                };
                body.insert(k, Value::from(v));
            }
            let v = c.send(
                "PATCH",
                "/api/v1/tuning",
                "application/json",
                &serde_json::to_vec(&body).unwrap_or_default(),
            )?;
            if json {
                print_json(&v);
            } else {
                let t: Tuning = parse(v)?;
                for k in body.keys() {
                    let full = if k.starts_with("nf_conntrack_") {
                        k.clone()
                    } else {
                        format!("nf_conntrack_{k}")
                    };
                    if let Some(val) = t.values.get(&full) {
                        println!("{full} = {val}");
                    }
                }
            }
        }
        Command::Ports => {
            let v = c.json("GET", "/api/v1/ports", &[])?;
            if json {
                print_json(&v);
            } else {
                let p: Ports = parse(v)?;
                println!(
                    "{:<8} {:>4} {:<10} {:<17} {:<5} {:>7} {:>14} {:>14} {:>10} {:>10}",
                    "PORT",
                    "ID",
                    "DRIVER",
                    "MAC",
                    "LINK",
                    "MBPS",
                    "RX_PKTS",
                    "TX_PKTS",
                    "MISSED",
                    "ERRORS"
                );
                for p in &p.ports {
                    println!(
                        "{:<8} {:>4} {:<10} {:<17} {:<5} {:>7} {:>14} {:>14} {:>10} {:>10}",
                        p.name,
                        p.port_id,
                        p.driver,
                        p.mac,
                        if p.link_up { "up" } else { "down" },
                        p.speed_mbps,
                        p.ipackets,
                        p.opackets,
                        p.imissed,
                        p.ierrors + p.oerrors
                    );
                }
            }
        }
        Command::Ha(cmd) => ha(&c, json, cmd)?,
        Command::Workers => {
            let v = c.json("GET", "/api/v1/workers", &[])?;
            if json {
                print_json(&v);
            } else {
                let w: Workers = parse(v)?;
                println!(
                    "{:<6} {:>5} {:>14} {:>14} {:>14} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}  DROPS",
                    "WORKER",
                    "LCORE",
                    "RX_PKTS",
                    "TX_PKTS",
                    "FORWARDED",
                    "CACHE_HITS",
                    "ICMP_ERR",
                    "ICMP_RLIM",
                    "HANDOFF_TX",
                    "HANDOFF_RX",
                    "CT_ENTRIES",
                    "BUSY"
                );
                for w in &w.workers {
                    let drops: Vec<String> =
                        w.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "{:<6} {:>5} {:>14} {:>14} {:>14} {:>14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>5.1}%  {}",
                        w.worker,
                        w.lcore,
                        w.rx_packets,
                        w.tx_packets,
                        w.forwarded,
                        w.verdict_cache_hits,
                        w.icmp_errors,
                        w.icmp_ratelimited,
                        w.handoff_tx,
                        w.handoff_rx,
                        w.ct.entries,
                        w.busy_ratio * 100.0,
                        drops.join(" ")
                    );
                }
            }
        }
    }
    Ok(())
}

fn ha(c: &Client, json: bool, cmd: &HaCmd) -> Result<(), Failure> {
    let v = match cmd {
        HaCmd::Status => c.json("GET", "/api/v1/ha", &[])?,
        HaCmd::Commit => c.json("POST", "/api/v1/ha/commit", &[])?,
        HaCmd::Resync => c.json("POST", "/api/v1/ha/resync", &[])?,
        HaCmd::Takeover { addresses } => {
            let body = serde_json::json!({ "addresses": addresses }).to_string();
            c.send(
                "POST",
                "/api/v1/ha/takeover",
                "application/json",
                body.as_bytes(),
            )?
        }
    };
    if json {
        print_json(&v);
        return Ok(());
    }
    match cmd {
        HaCmd::Status => {
            let h: HaView = parse(v)?;
            let f = &h.fwd;
            println!(
                "fwd: cache_entries={} applied={} failed={} committed={} commits={}",
                f.cache_entries, f.applied, f.failed, f.committed, f.commits
            );
            let Some(s) = h.sync else {
                println!("sync: not running (fwmgmt without --ha)");
                return Ok(());
            };
            let k = &s.counters;
            println!(
                "sync: role={} bind={} peer={} {} last_heard_ms={} queue={}/{} missing={}",
                serde_json::to_value(s.role)
                    .ok()
                    .and_then(|r| r.as_str().map(str::to_string))
                    .unwrap_or_default(),
                s.bind,
                s.peer.address,
                if s.peer.up { "up" } else { "down" },
                s.peer.last_heard_ms.map_or("-".into(), |m| m.to_string()),
                s.queue,
                s.queue_cap,
                s.missing
            );
            println!(
                "tx: records={} datagrams={} retransmitted={} acked={} lost_records={} skips={}",
                k.sent_records, k.sent_datagrams, k.retransmitted, k.acked, k.lost_records, k.skips
            );
            println!(
                "rx: datagrams={} delivered={} duplicates={} peer_lost={} applied={} apply_failed={} apply_lost={}",
                k.received_datagrams,
                k.delivered,
                k.duplicates,
                k.peer_lost_datagrams,
                k.applied,
                k.apply_failed,
                k.apply_lost
            );
            let dec: Vec<String> = k
                .decode_errors
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            println!(
                "events={} synced_skipped={} lost={} resyncs requested={} served={} aborted={} decode_errors: {}",
                k.events,
                k.events_synced_skipped,
                k.events_lost,
                k.resyncs_requested,
                k.resyncs_served,
                k.resyncs_aborted,
                dec.join(" ")
            );
        }
        HaCmd::Commit => {
            let f: HaCounters = parse(v)?;
            println!(
                "committed: {} entries in all, cache_entries={} commits={}",
                f.committed, f.cache_entries, f.commits
            );
        }
        HaCmd::Resync => println!("resync requested from the peer"),
        HaCmd::Takeover { .. } => {
            let t: fwd_proto::HaTakeover = parse(v)?;
            println!(
                "takeover: committed {} entries in all, cache_entries={} commits={}; \
                 announced: garp={} na={}",
                t.counters.committed,
                t.counters.cache_entries,
                t.counters.commits,
                t.garp_sent,
                t.na_sent
            );
            for a in &t.not_local {
                eprintln!("fwctl: {a} is not one of fwd's addresses: not announced");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Api(e)) => {
            let mut msg = format!("fwctl: error: {}: {}", e.code, e.message);
            if let (Some(l), Some(c)) = (e.line, e.column) {
                msg += &format!(" (line {l}, column {c})");
            }
            if let Some(f) = &e.field {
                msg += &format!(" (field `{f}`)");
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
        Err(Failure::Local(m)) => {
            eprintln!("fwctl: error: {m}");
            ExitCode::FAILURE
        }
    }
}
