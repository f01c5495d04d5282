//! `fwd`: the data-plane daemon (see `docs/fwd.md`).
//!
//! ```text
//! fwd --config /etc/fwd/fwd.yaml   run the appliance
//! fwd --demo                       run the embedded demo configuration
//! fwd check FILE                   validate a configuration (or a ruleset) and exit
//! fwd check --iptables FILE --print translate an iptables ruleset, print it as nft
//! fwd --version
//! ```
//!
//! This file parses the arguments and runs `fwd check`; the daemon itself (start-up,
//! the run until SIGTERM/SIGINT, teardown) is `dataplane::daemon::run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dataplane::config::{Config, ConfigError};
use dataplane::conntrack::check_tunable;
use dataplane::control::server::StateDir;
use dataplane::daemon::{self, DaemonError, load_state, ports_by_name};
use dataplane::rules;
use dataplane::worker::counters::MAX_PORTS;

const DEMO_YAML: &str = include_str!("../../../deploy/examples/demo.yaml");

#[derive(Parser, Debug)]
#[command(
    name = "fwd",
    version,
    about = "DPDK stateful firewall and NAT appliance"
)]
// pub(crate): examples/fwd-man.rs renders the man page from it.
pub(crate) struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the embedded demo configuration (deploy/examples/demo.yaml).
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// Print a throughput line every N seconds (0: never; the demo defaults to 1).
    #[arg(long, value_name = "SECS")]
    stats_interval: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration (.yaml/.yml), an nftables ruleset (.nft/.conf) or an
    /// iptables ruleset (iptables-save output or a script of iptables commands, detected
    /// by its first line) and exit: 0 when valid, 1 with `FILE:LINE:COL: message` (or
    /// `FILE: field: message`) when not.
    Check {
        /// The file to check.
        file: PathBuf,
        /// Read FILE as iptables input (iptables-restore format or iptables commands).
        #[arg(long)]
        iptables: bool,
        /// Read FILE as ip6tables input (the restore format's tables become ip6 tables).
        #[arg(long, conflicts_with = "iptables")]
        ip6tables: bool,
        /// Print the ruleset as nftables text (for iptables input: the translation, like
        /// iptables-restore-translate).
        #[arg(long)]
        print: bool,
    },
}

/// A binary built for x86-64-v3 (`make release-v3`) on a CPU without its features would
/// die of an illegal instruction somewhere; say why instead, first thing.
fn cpu_level_missing() -> Option<String> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if !std::arch::is_x86_feature_detected!("avx2") || !std::arch::is_x86_feature_detected!("bmi2")
    {
        return Some(
            "this fwd was built for x86-64-v3 (make release-v3) and the CPU lacks AVX2/BMI2: \
             use the portable build (make release)"
                .to_string(),
        );
    }
    None
}

fn main() -> ExitCode {
    if let Some(e) = cpu_level_missing() {
        eprintln!("fwd: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    match (&cli.command, &cli.config, cli.demo) {
        (
            Some(Command::Check {
                file,
                iptables,
                ip6tables,
                print,
            }),
            _,
            _,
        ) => {
            let family = match (iptables, ip6tables) {
                (_, true) => Some(rules::ast::TableFamily::Ip6),
                (true, _) => Some(rules::ast::TableFamily::Ip),
                _ => None,
            };
            check(file, family, *print)
        }
        (None, Some(path), false) => match Config::load(path, &check_tunable) {
            Ok(cfg) => exit(daemon::run(&cfg, cli.stats_interval.unwrap_or(0))),
            Err(e) => {
                eprintln!("{}", located(path, &e));
                ExitCode::FAILURE
            }
        },
        (None, None, true) => match Config::parse(DEMO_YAML) {
            Ok(cfg) => exit(daemon::run(&cfg, cli.stats_interval.unwrap_or(1))),
            Err(e) => {
                eprintln!("fwd: embedded demo.yaml: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("fwd: give --config FILE, --demo, or `check FILE` (see --help)");
            ExitCode::from(2)
        }
    }
}

fn exit(r: Result<(), DaemonError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `FILE:LINE:COL: message` for syntax errors (serde-saphyr reports "line L column C"),
/// `FILE: field: message` for validation errors.
fn located(path: &Path, e: &ConfigError) -> String {
    let file = path.display();
    match e {
        ConfigError::Syntax(m) => {
            let m = m
                .strip_prefix(&format!("{file}: "))
                .unwrap_or(m)
                .to_string();
            match line_col(&m) {
                Some((l, c)) => format!("{file}:{l}:{c}: {m}"),
                None => format!("{file}: {m}"),
            }
        }
        ConfigError::Io { message, .. } => format!("{file}: {message}"),
        ConfigError::Invalid { field, message } => format!("{file}: {field}: {message}"),
    }
}

/// Finds "line N" and "column M" in a message.
fn line_col(m: &str) -> Option<(u32, u32)> {
    let num_after = |key: &str| -> Option<u32> {
        let i = m.find(key)? + key.len();
        let digits: String = m[i..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((num_after("line")?, num_after("column")?))
}

fn check(file: &Path, iptables: Option<rules::ast::TableFamily>, print: bool) -> ExitCode {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let sniff =
        || std::fs::read_to_string(file).is_ok_and(|t| rules::iptables::looks_like_iptables(&t));
    if iptables.is_some()
        || matches!(ext, "nft" | "conf")
        || print
        || !matches!(ext, "yaml" | "yml") && sniff()
    {
        return check_ruleset(file, iptables, print);
    }
    let cfg = match Config::load(file, &check_tunable) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", located(file, &e));
            return ExitCode::FAILURE;
        }
    };
    let extra = cfg
        .queue_plan()
        .and_then(|_| cfg.route_table().map(|_| ()))
        .err()
        .or_else(|| {
            (cfg.ports.len() > MAX_PORTS).then(|| ConfigError::Invalid {
                field: "ports".into(),
                message: format!("at most {MAX_PORTS} ports"),
            })
        });
    if let Some(e) = extra {
        eprintln!("{}", located(file, &e));
        return ExitCode::FAILURE;
    }
    if let Some(r) = &cfg.ruleset {
        let text = match std::fs::read_to_string(r) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: ruleset {}: {e}", file.display(), r.display());
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = rules::load_text_with(
            &text,
            &ports_by_name(&cfg),
            cfg.workers.cores.len(),
            &cfg.limits,
        )
        .and_then(|c| dataplane::nat::node::check_ruleset(c.source(), &cfg.nat_node_slice()))
        {
            eprintln!(
                "{}:{}:{}: {} (at `{}`)",
                r.display(),
                e.line,
                e.col,
                e.msg,
                e.token
            );
            return ExitCode::FAILURE;
        }
    }
    // What fwd would start from: the persisted ruleset and tunables, read as strictly.
    if let Err(e) = load_state(&cfg, &StateDir::new(&cfg.state_dir)) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{}: ok ({} ports, {} workers)",
        file.display(),
        cfg.ports.len(),
        cfg.workers.cores.len()
    );
    ExitCode::SUCCESS
}

/// `fwd check FILE.nft`: parse and check (port names are not known without a config, so
/// `iif`/`oif` are not resolved here; `fwd check CONFIG` compiles its ruleset fully).
/// iptables input (`--iptables`, `--ip6tables`, or detected) is translated first.
fn check_ruleset(file: &Path, iptables: Option<rules::ast::TableFamily>, print: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let iptables = iptables.or_else(|| {
        rules::iptables::looks_like_iptables(&text).then_some(rules::ast::TableFamily::Ip)
    });
    // An error names the file it is in (the one given or one it includes).
    let result = match iptables {
        Some(family) => {
            rules::iptables::translate(&text, family).map_err(|error| rules::parse::FileError {
                path: file.to_path_buf(),
                error,
            })
        }
        None => rules::parse::parse_file(file).and_then(|rs| {
            rules::check::check(&rs)
                .map(|()| rs)
                .map_err(|error| rules::parse::FileError {
                    path: file.to_path_buf(),
                    error,
                })
        }),
    };
    match result {
        Ok(rs) if print => {
            print!("{}", rules::print::to_text(&rs));
            ExitCode::SUCCESS
        }
        Ok(rs) => {
            let n: usize = rs
                .tables
                .iter()
                .flat_map(|t| &t.chains)
                .map(|c| c.rules.len())
                .sum();
            println!(
                "{}: ok ({} tables, {n} rules)",
                file.display(),
                rs.tables.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
