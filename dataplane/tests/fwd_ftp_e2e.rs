//! Issue 18's FTP proof with real hosts: curl in the lan namespace fetches a file from
//! pyftpdlib in the wan namespace through `fwd` with masquerade and a forward chain that
//! accepts only `ct state established,related` plus new connections to tcp/21, which get
//! the FTP helper (`tests/data/nat_e2e/router-ftp.nft`). Active mode (PORT, EPRT) needs
//! FTP NAT (the client's address rewritten to fwd's, the server's data connection DNATed
//! back to the client) and passive mode (PASV, EPSV) the expectation; IPv4 and IPv6. The
//! same ruleset without `ct helper set` (`router-ftp-nohelper.nft`) fails both.
//!
//! Needs root, curl and Debian's python3-pyftpdlib (`deploy/dev/setup-host.sh`); skips
//! with a message otherwise. The lab is `common/lab.rs` (shared with fwd_nat_e2e).

#![cfg(feature = "dpdk")]

use std::path::{Path, PathBuf};

mod common;
use common::lab::*;

/// The interpreter Debian's python3-pyftpdlib is installed for.
const PYTHON: &str = "/usr/bin/python3";

fn can_run_ftp(test: &str) -> bool {
    if !can_run(test) {
        return false;
    }
    let found = std::process::Command::new(PYTHON)
        .args(["-c", "import pyftpdlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("{test}: skipped (python3-pyftpdlib not installed)");
    }
    found
}

/// 300 KiB of pseudo-random bytes (xorshift), the file the client fetches.
fn content() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..300 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_be_bytes()[0]
        })
        .collect()
}

/// Starts pyftpdlib (anonymous, read-only, 90 s at most) on `addr`:21 in the wan
/// namespace, serving `root`; its log is `dir/<log>`.
fn ftp_server(lab: &mut Lab, root: &Path, addr: &str, log: &str) -> PathBuf {
    let wan = lab.wan.clone();
    let root = root.to_str().unwrap().to_string();
    let out = lab.spawn(
        &wan,
        log,
        &[
            "timeout",
            "90",
            PYTHON,
            "-m",
            "pyftpdlib",
            "-i",
            addr,
            "-p",
            "21",
            "-d",
            &root,
        ],
    );
    lab.wait_listen(&wan, 21);
    out
}

/// curl in the lan namespace fetches `url` with `mode`'s options into `dir/<name>`;
/// the bytes it got, or curl's complaint.
fn fetch(lab: &Lab, mode: &[&str], url: &str, name: &str) -> Result<Vec<u8>, String> {
    let dest = lab.dir.join(name);
    let dest_s = dest.to_str().unwrap().to_string();
    let mut cmd = vec![
        "timeout",
        "20",
        "curl",
        "-sS",
        "-g",
        "--connect-timeout",
        "4",
        "--max-time",
        "15",
    ];
    cmd.extend_from_slice(mode);
    cmd.extend_from_slice(&["-o", &dest_s, url]);
    let out = lab.in_ns(&lab.lan, &cmd);
    if !out.status.success() {
        return Err(text(&out));
    }
    std::fs::read(&dest).map_err(|e| e.to_string())
}

/// The four ways curl opens a data connection: active PORT / EPRT, passive PASV / EPSV.
const MODES: [(&str, &[&str]); 4] = [
    ("PORT", &["--ftp-port", "-", "--disable-eprt"]),
    ("EPRT", &["--ftp-port", "-"]),
    ("PASV", &["--ftp-pasv", "--disable-epsv"]),
    ("EPSV", &["--ftp-pasv"]),
];

fn serve(lab: &mut Lab) -> Vec<u8> {
    let root = lab.dir.join("ftp-root");
    std::fs::create_dir_all(&root).unwrap();
    let data = content();
    std::fs::write(root.join("data.bin"), &data).unwrap();
    ftp_server(lab, &root, WAN_HOST, "ftpd.log");
    if lab.v6 {
        ftp_server(lab, &root, WAN6_HOST, "ftpd6.log");
    }
    data
}

#[test]
fn ftp_active_and_passive_through_masquerade_with_the_helper() {
    if !can_run_ftp("ftp_active_and_passive_through_masquerade_with_the_helper") {
        return;
    }
    let mut lab = Lab::start_with('f', "router-ftp.nft", true);
    let data = serve(&mut lab);
    let urls = [
        format!("ftp://{WAN_HOST}/data.bin"),
        format!("ftp://[{WAN6_HOST}]/data.bin"),
    ];
    for (family, url) in ["v4", "v6"].iter().zip(&urls) {
        for (mode, args) in MODES {
            // IPv6 has no PORT or PASV: curl uses EPRT / EPSV there whatever it is told.
            if *family == "v6" && matches!(mode, "PORT" | "PASV") {
                continue;
            }
            let got = fetch(&lab, args, url, &format!("got-{family}-{mode}")).unwrap_or_else(|e| {
                panic!(
                    "{family} {mode} through fwd with the FTP helper: {e}\nftpd:\n{}\n{}\nfwd:\n{}",
                    read(&lab.dir.join("ftpd.log")),
                    read(&lab.dir.join("ftpd6.log")),
                    lab.log()
                )
            });
            assert!(
                got == data,
                "{family} {mode}: {} bytes, not the served {}",
                got.len(),
                data.len()
            );
        }
    }
    // The server saw fwd's wan address as the client on both families (masquerade), and
    // active mode's PORT/EPRT named it (pyftpdlib refuses a foreign data address).
    let log = read(&lab.dir.join("ftpd.log"));
    assert!(log.contains(WAN_FWD), "server log:\n{log}");
    assert!(!log.contains(LAN_HOST), "lan address leaked to wan:\n{log}");
    let log6 = read(&lab.dir.join("ftpd6.log"));
    assert!(
        !log6.contains(LAN6_HOST),
        "lan address leaked to wan:\n{log6}"
    );
    // Every data connection took an expectation (six transfers).
    let m = lab.control(r#"{"op":"conntrack_expect","counters_only":true}"#);
    let taken = m["result"]["counters"]["new"].as_u64();
    assert!(
        taken.is_some_and(|n| n >= 6),
        "expectations taken: {m}\n{}",
        lab.log()
    );
}

#[test]
fn ftp_without_the_helper_fails_active_and_passive() {
    if !can_run_ftp("ftp_without_the_helper_fails_active_and_passive") {
        return;
    }
    let mut lab = Lab::start_with('g', "router-ftp-nohelper.nft", false);
    serve(&mut lab);
    let url = format!("ftp://{WAN_HOST}/data.bin");
    for (mode, args) in MODES {
        let r = fetch(&lab, args, &url, &format!("got-{mode}"));
        assert!(
            r.is_err(),
            "{mode} must fail without the helper (the data connection is not related)"
        );
    }
    // The control connection itself works: a directory listing over it alone (curl -I
    // sends SIZE/MDTM only) succeeds.
    let out = lab.in_ns(
        &lab.lan,
        &[
            "timeout",
            "10",
            "curl",
            "-sS",
            "-I",
            "--max-time",
            "8",
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "the control connection: {}\n{}",
        text(&out),
        lab.log()
    );
}
