//! Writes the man pages of `fwd` (section 8: fwd.8, fwd-check.8) from its clap definition
//! into the directory given as the only argument. The Debian package build runs it
//! (deploy/build-deb.sh); the binary's source is compiled in as a module so the page is
//! made from the very `Cli` the daemon parses.
//!
//! ```text
//! cargo run -p dataplane --example fwd-man -- target/man
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;

#[allow(dead_code)]
#[path = "../src/bin/fwd.rs"]
mod fwd;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fwd-man OUT_DIR");
        return ExitCode::from(2);
    };
    let mut cmd = fwd::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let pages = std::iter::once(&cmd).chain(cmd.get_subcommands());
    for page in pages {
        if let Err(e) = Man::new(page.clone()).section("8").generate_to(&dir) {
            eprintln!("fwd-man: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
