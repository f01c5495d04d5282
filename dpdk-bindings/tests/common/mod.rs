//! Helpers shared by the EAL integration tests. Each test file is its own binary with a
//! single `#[test]`, because EAL can be initialised once per process; each EAL gets its own
//! `--file-prefix` and `--in-memory` and a small `-m`, so `cargo nextest` can run several
//! at once.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::Path;

/// Fail loudly (never pass silently) when not root: EAL needs hugepages, memif sockets
/// and `/dev/hugepages`.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "this test initialises DPDK's EAL for real (hugepages, memif sockets) and must run \
         as root (effective uid is {uid}): run `sudo -E cargo test -p dpdk-bindings`"
    );
}

fn hugepages_free_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    field("HugePages_Free:") * field("Hugepagesize:") / 1024
}

/// EAL arguments for test `name` on `lcores`, plus `extra`. Uses hugepages with
/// `--in-memory` when at least 128 MiB are free (the machine is shared), `--no-huge`
/// otherwise; `DPDK_TEST_NO_HUGE=1` forces `--no-huge`.
pub fn eal_args(name: &str, lcores: &str, extra: &[String]) -> Vec<String> {
    // One prefix per test (not per run): with --in-memory / --no-shconf EAL keeps no files
    // in its runtime directory, so concurrent runs do not clash and no directories pile up.
    let prefix = format!("bindings-{name}");
    let mut args: Vec<String> = vec![
        "-l".into(),
        lcores.into(),
        "--file-prefix".into(),
        prefix,
        "-m".into(),
        "64".into(),
        "--no-pci".into(),
        "--no-telemetry".into(),
        "--log-level=*:notice".into(),
    ];
    let force = std::env::var("DPDK_TEST_NO_HUGE").is_ok_and(|v| v == "1");
    if force || hugepages_free_mib() < 128 {
        // --no-huge implies legacy memory, which --in-memory refuses; --no-shconf keeps the
        // run from leaving a shared config file behind.
        eprintln!("note: running EAL with --no-huge");
        args.extend(["--no-huge".into(), "--no-shconf".into()]);
    } else {
        args.push("--in-memory".into());
    }
    args.extend(extra.iter().cloned());
    args
}

/// Whether a shared object whose path contains `needle` is mapped in this process.
pub fn dso_mapped(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(needle))
}

/// A unique socket path for memif, removed when dropped.
pub struct TempSocket(pub String);

impl TempSocket {
    pub fn new(name: &str) -> Self {
        let p = format!("/run/bindings-{name}-{}.sock", std::process::id());
        let _ = std::fs::remove_file(&p);
        TempSocket(p)
    }
}

impl Drop for TempSocket {
    fn drop(&mut self) {
        if Path::new(&self.0).exists() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Frame number `seq`: Ethernet + IPv4 + UDP between test addresses (198.18.0.0/15), with
/// a payload that encodes `seq` and a byte pattern. Lengths vary from 60 to 1514 bytes.
pub fn frame(seq: u32) -> Vec<u8> {
    let len = 60 + (usize::try_from(seq).expect("u32 fits usize") * 37) % (1514 - 60 + 1);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = u16::try_from(len - 14).unwrap();
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&seq.to_be_bytes()[2..4]);
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 19, 0, 2]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = u16::try_from(sum).expect("folded to 16 bits");
    ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
    let udp_len = ip_len - 20;
    let udp = &mut f[34..42];
    let sport = 1024 + u16::try_from(seq % 1000).expect("< 1000");
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    let seed = seq.to_be_bytes()[3];
    for (i, b) in f[46..].iter_mut().enumerate() {
        *b = i.to_be_bytes()[7].wrapping_mul(7).wrapping_add(seed);
    }
    f
}

/// The sequence number of a frame built by [`frame`].
pub fn frame_seq(f: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(f.get(42..46)?.try_into().ok()?))
}
