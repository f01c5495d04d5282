//! `fwd` command line without EAL: `--version`, `check` on good and bad configurations.

#![cfg(feature = "dpdk")]

use std::path::PathBuf;
use std::process::Command;

fn fwd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fwd"))
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn tmp(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fwd-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn version_names_the_package_version() {
    let out = fwd().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("fwd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn example_configs_check_ok() {
    for f in ["demo.yaml", "router.yaml", "edge-filter.yaml"] {
        let out = fwd().arg("check").arg(examples().join(f)).output().unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn syntax_error_prints_file_line_column() {
    let p = tmp(
        "syntax.yaml",
        "ports:\n  - name: lan\n    device: net_null0\n    colour: blue\n",
    );
    let out = fwd().arg("check").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("{}:4:5: ", p.display())), "{err}");
    assert!(err.contains("colour"), "{err}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn validation_error_names_the_field() {
    let p = tmp(
        "field.yaml",
        "ports:\n  - name: lan\n    device: net_null0\n    addresses: [198.18.1.1/33]\n",
    );
    let out = fwd().arg("check").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}: ports[0].addresses[0]: ", p.display())),
        "{err}"
    );
    let _ = std::fs::remove_file(p);
}

#[test]
fn missing_file_and_missing_arguments_fail() {
    let out = fwd()
        .args(["check", "/nonexistent/fwd.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/fwd.yaml"));
    let out = fwd().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ruleset_files_are_checked_by_extension() {
    let out = fwd()
        .arg("check")
        .arg(examples().join("router.nft"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = tmp(
        "bad.nft",
        "table inet filter {\n  chain input {\n    type filter hook input priority filter;\n    tcp dport 22 acept\n  }\n}\n",
    );
    let out = fwd().arg("check").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("{}:4:", p.display())), "{err}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn a_config_whose_ruleset_names_an_unknown_port_fails_check() {
    let dir = std::env::temp_dir().join(format!("fwd-cli-{}-rs", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("r.nft"),
        "table inet f {\n  chain input {\n    type filter hook input priority filter;\n    iif \"dmz\" accept\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fwd.yaml"),
        "ports:\n  - name: lan\n    device: net_null0\nruleset: r.nft\n",
    )
    .unwrap();
    let out = fwd()
        .arg("check")
        .arg(dir.join("fwd.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("r.nft:4:"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn iptables_input_is_detected_translated_and_printed() {
    let script = tmp(
        "fw.sh",
        "#!/bin/sh\niptables -P INPUT DROP\niptables -A INPUT -p tcp --dport 22 -j ACCEPT\n",
    );
    let out = fwd().arg("check").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 tables, 1 rules)"));
    let out = fwd()
        .args(["check", "--print"])
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("policy drop;\n\t\ttcp dport 22 counter packets 0 bytes 0 accept"),
        "{text}"
    );
    let bad = tmp("bad.rules", "*filter\n-A INPUT -j NOTRACK\nCOMMIT\n");
    let out = fwd()
        .args(["check", "--ip6tables"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("{}:2:13: target NOTRACK", bad.display())),
        "{err}"
    );
    let _ = std::fs::remove_file(script);
    let _ = std::fs::remove_file(bad);
}

#[test]
fn nft_command_scripts_are_checked_and_printed() {
    // The form of issue 23: commands, not `table` blocks (was "expected `table` or
    // `flush ruleset` (at `add`)").
    let script = tmp(
        "cmds.nft",
        "flush ruleset\nadd table ip filter\nadd chain ip filter input { type filter hook input \
         priority 0 ; policy drop ; }\nadd rule ip filter input ct state established,related \
         accept\ninsert rule ip filter input position 1 tcp dport 22 accept\n",
    );
    let out = fwd().arg("check").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 tables, 2 rules)"));
    let out = fwd()
        .args(["check", "--print"])
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "policy drop;\n\t\ttcp dport 22 accept\n\t\tct state established,related accept\n"
        ),
        "{text}"
    );
    let bad = tmp(
        "bad.nft",
        "add table ip filter\ndelete rule ip filter input handle 3\n",
    );
    let out = fwd().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:23: no such chain `input`"), "{err}");
    let _ = std::fs::remove_file(script);
    let _ = std::fs::remove_file(bad);
}
