//! The real `fwd` binary and its processes, for the end-to-end tests that start it
//! (`e2e_fwd.rs`, `ha_e2e.rs`, which include this file by path).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// `target/<profile>/fwd` beside this test binary (`target/<profile>/deps/e2e_fwd-*`);
/// built when missing.
pub fn fwd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let fwd = profile_dir.join("fwd");
    if !fwd.exists() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-p",
                "dataplane",
                "--bin",
                "fwd",
                "--manifest-path",
            ])
            .arg(&manifest)
            .status()
            .expect("running cargo build for fwd");
        assert!(
            status.success(),
            "cargo build -p dataplane --bin fwd failed"
        );
    }
    assert!(fwd.exists(), "{} missing", fwd.display());
    fwd
}

/// Kills a child by PID (SIGKILL) and reaps it.
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}
