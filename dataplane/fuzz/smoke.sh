#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a few seconds (default 10): a smoke
# test that the parsers survive fresh random input, not a replacement for long runs
# (`cargo fuzz run TARGET` without a limit). The smoke build is a debug build without a
# sanitizer (dataplane has no unsafe code; panics and debug assertions are what it
# catches) so CI builds it in minutes. cargo-fuzz needs nightly features;
# RUSTC_BOOTSTRAP lets the stable toolchain build them.
set -euo pipefail
seconds=${1:-10}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
cargo fuzz build --dev -s none >/dev/null
for t in $targets; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true; fi
    echo "fuzz: $t for ${seconds}s"
    log=$(mktemp)
    status=0
    cargo fuzz run --dev -s none "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|SUMMARY)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "fuzz: $t FAILED (crash input under dataplane/fuzz/artifacts/$t)" >&2
        exit 1
    fi
    rm -f "$log"
done
