//! Writes the man pages of `fwmgmt` (section 8) and `fwctl` with one page per subcommand
//! (section 1: fwctl.1, fwctl-conntrack.1, fwctl-conntrack-list.1, ...) from their clap
//! definitions into the directory given as the only argument. The Debian package build
//! runs it (deploy/build-deb.sh); the binaries' sources are compiled in as modules so the
//! pages are made from the very structs the programs parse.
//!
//! ```text
//! cargo run -p mgmt --example mgmt-man -- target/man
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;

#[allow(dead_code)]
#[path = "../src/bin/fwmgmt.rs"]
mod fwmgmt;

#[allow(dead_code)]
#[path = "../src/bin/fwctl.rs"]
mod fwctl;

fn write(dir: &Path) -> std::io::Result<()> {
    Man::new(fwmgmt::Args::command())
        .section("8")
        .generate_to(dir)?;
    clap_mangen::generate_to(fwctl::Cli::command(), dir)
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: mgmt-man OUT_DIR");
        return ExitCode::from(2);
    };
    match write(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mgmt-man: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
