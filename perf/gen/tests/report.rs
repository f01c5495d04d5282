//! `perf/report.py --peers`: the side-by-side table of a `perf/run-peers.sh` session, from
//! result files written here (the shape `perf/lib.sh` saves), so the arithmetic of the
//! published table (rates from the DUT's counters, cycles per packet, medians over the
//! repeats, ratios, the newest session only) is checked without running a DUT.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One saved result: `dut_pps` the DUT's own rate, `gen_pps` what the generator sent.
fn result(
    scenario: &str,
    run_id: &str,
    dut_pps: f64,
    gen_pps: f64,
    cycles: Option<f64>,
) -> serde_json::Value {
    serde_json::json!({
        "scenario": scenario,
        "dut": "x",
        "run_id": run_id,
        "invocation": "perf/run-peers.sh",
        "date": "2026-12-07T00:00:00Z",
        "machine": {"cpu": "Test CPU", "cores": 2, "kernel": "k", "mem_kib": 1, "loadavg": "0.1 0.1 0.1"},
        "dpdk": "22.11.11",
        "commit": "0123456789abcdef",
        "dirty": false,
        "generator": {
            "tsc_hz": 2_600_000_000u64,
            "args": {"mode": "udp", "flows": 1000, "rate": 0},
            "tx_pps": gen_pps, "rx_pps": 0.0, "send_s": 5.0, "loss_ratio": 0.0,
            "latency": {"samples": 0},
            "counters": {"tx_packets": 1}
        },
        "perf_stat": {"state": "unsupported: test"},
        "dut_counters": {"pps": dut_pps, "cycles_per_packet": cycles}
    })
}

/// A fwd result of `binary` with the tunables `tuning` (null: none set).
fn fwd_result(
    scenario: &str,
    dut_pps: f64,
    cycles: f64,
    binary: &str,
    tuning: serde_json::Value,
) -> serde_json::Value {
    let mut v = result(scenario, "new", dut_pps, dut_pps, Some(cycles));
    v["fwd_binary"] = binary.into();
    v["fwd_tuning"] = tuning;
    v
}

#[test]
fn peers_table_divides_the_duts_own_rates_of_the_newest_session_per_memif_mode_and_fwd_build() {
    let dir = std::env::temp_dir().join(format!("perfgen-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        // An older session, which must not show.
        (
            "20260101T000000Z-peers-fwd-1000.json",
            result("peers-fwd-1000", "old", 9e6, 9e6, Some(1.0)),
        ),
        (
            "20260102T000000Z-peers-gen-1000.json",
            result("peers-gen-1000", "new", 31e6, 31e6, None),
        ),
        (
            "20260102T000001Z-peers-io-1000.json",
            result("peers-io-1000", "new", 20e6, 20e6, Some(97.2)),
        ),
        // fwd's rate is its own forwarded count, below what the generator offered.
        (
            "20260102T000002Z-peers-fwd-1000.json",
            result("peers-fwd-1000", "new", 4e6, 4.1e6, Some(650.4)),
        ),
        (
            "20260102T000003Z-peers-ovs-1000.json",
            result("peers-ovs-1000", "new", 2e6, 2e6, Some(1300.0)),
        ),
        (
            "20260102T000004Z-peers-io-1000000.json",
            result("peers-io-1000000", "new", 18e6, 18e6, Some(110.0)),
        ),
        // Zero-copy runs (`MEMIF_ZC=1`) of io and of two fwd builds, one of them also with
        // a tunable: each fwd build and tuning a row of its own, divided by zero-copy io.
        (
            "20260102T000005Z-peers-io-zc-1000-1518.json",
            result("peers-io-zc-1000-1518", "new", 8e6, 8e6, Some(300.0)),
        ),
        (
            "20260102T000006Z-peers-fwd-zc-1000-1518.json",
            fwd_result(
                "peers-fwd-zc-1000-1518",
                6e6,
                400.0,
                "/tmp/fwd-main-59c620a",
                serde_json::Value::Null,
            ),
        ),
        (
            "20260102T000007Z-peers-fwd-zc-1000-1518.json",
            fwd_result(
                "peers-fwd-zc-1000-1518",
                7.6e6,
                310.0,
                "/work/wt/branch/target/release/fwd",
                serde_json::Value::Null,
            ),
        ),
        (
            "20260102T000008Z-peers-fwd-zc-1000-1518.json",
            fwd_result(
                "peers-fwd-zc-1000-1518",
                8e6,
                250.0,
                "/work/wt/branch/target/release/fwd",
                serde_json::json!({"nf_conntrack_checksum": 0}),
            ),
        ),
        // A copying io run at 1518 B: not the zero-copy rows' divisor.
        (
            "20260102T000009Z-peers-io-1000-1518.json",
            result("peers-io-1000-1518", "new", 16e6, 16e6, Some(190.0)),
        ),
    ];
    for (name, v) in &files {
        std::fs::write(dir.join(name), serde_json::to_vec(v).unwrap()).unwrap();
    }
    let out = dir.join("peers.md");
    let run = Command::new("python3")
        .arg(repo().join("perf/report.py"))
        .arg("--results")
        .arg(&dir)
        .arg("--peers")
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "report.py failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let table = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(table.contains("Session `new`"), "{table}");
    assert!(
        table.contains(
            "| copying | 1,000 | 64 B | fwd | 4.00 | 650 | 2.00 | 1,300 | 20.00 | 97 | 2.00 | 0.20 | 31.00 |"
        ),
        "{table}"
    );
    // fwd / io divides by io's best run of the session (22, at 1 k flows; the 1 M cell's
    // 18 does not lower it), the path's limit; fwd / OVS divides medians.
    // A flow count measured by one peer only: the others are dashes, no ratio.
    assert!(
        table.contains(
            "| copying | 1,000,000 | 64 B | - | - | - | - | - | 18.00 | 110 | - | - | - |"
        ),
        "{table}"
    );
    assert!(
        !table.contains("9.00"),
        "the old session leaked in: {table}"
    );
    for row in [
        "| zero-copy | 1,000 | 1518 B | fwd-main-59c620a | 6.00 | 400 | - | - | 8.00 | 300 | - | 0.75 | - |",
        "| zero-copy | 1,000 | 1518 B | branch | 7.60 | 310 | - | - | 8.00 | 300 | - | 0.95 | - |",
        "| zero-copy | 1,000 | 1518 B | branch (nf_conntrack_checksum=0) | 8.00 | 250 | - | - | 8.00 | 300 | - | 1.00 | - |",
        "| copying | 1,000 | 1518 B | - | - | - | - | - | 16.00 | 190 | - | - | - |",
    ] {
        assert!(table.contains(row), "{row} missing: {table}");
    }
    assert!(
        table.contains("unsupported: test"),
        "perf stat's state is said: {table}"
    );
}
