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

#[test]
fn peers_table_divides_the_duts_own_rates_of_the_newest_session() {
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
            "| 1,000 | 64 B | 4.00 | 650 | 2.00 | 1,300 | 20.00 | 97 | 2.00 | 0.20 | 31.00 |"
        ),
        "{table}"
    );
    // fwd / io divides by io's best run of the session (22, at 1 k flows; the 1 M cell's
    // 18 does not lower it), the path's limit; fwd / OVS divides medians.
    // A flow count measured by one peer only: the others are dashes, no ratio.
    assert!(
        table.contains("| 1,000,000 | 64 B | - | - | - | - | 18.00 | 110 | - | - | - |"),
        "{table}"
    );
    assert!(
        !table.contains("9.00"),
        "the old session leaked in: {table}"
    );
    assert!(
        table.contains("unsupported: test"),
        "perf stat's state is said: {table}"
    );
}
