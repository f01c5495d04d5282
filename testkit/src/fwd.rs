//! The real `fwd` binary and its process: where it is, starting it in a namespace until
//! its control socket answers, stopping it by its PID.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `target/<profile>/fwd` beside the running test binary (`target/<profile>/deps/…`);
/// built with `cargo build -p dataplane --bin fwd` when missing. (A test of `dataplane`
/// itself can name `env!("CARGO_BIN_EXE_fwd")` instead.)
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

/// Starts the `fwd` binary `fwd` in namespace `ns` on config `config`, its output appended
/// to the file `log`, and waits (30 s at most) until its control socket `socket` answers;
/// panics with the log if fwd exits first or the socket never answers (then it stops that
/// fwd by its PID: the caller never held it).
pub fn spawn_fwd(fwd: &Path, ns: &str, config: &Path, log: &Path, socket: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(fwd)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    for _ in 0..300 {
        if UnixStream::connect(socket).is_ok() {
            return child;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("fwd in {ns} exited early ({st}):\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut held = Some(child);
    kill(&mut held);
    panic!("fwd in {ns}: no control socket after 30 s:\n{}", text());
}

/// Kills a child by PID (SIGKILL) and reaps it.
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// One request (its JSON text) on fwd's control socket `socket`; the parsed response line.
/// Panics if fwd does not answer within 10 s or answers no JSON.
pub fn control(socket: &Path, request: &str) -> serde_json::Value {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    writeln!(w, r#"{{"v":1,"id":1,"request":{request}}}"#).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}
