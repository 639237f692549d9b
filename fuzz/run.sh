#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each on the nightly toolchain, after seeding
# the corpora from format/golden (seeds.py). Installs cargo-fuzz if it is missing. A crash fails the run
# and leaves its input in fuzz/artifacts/<target>/: turn it into a regression test.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: no nightly toolchain on this machine; the fuzz targets were NOT run"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
python3 seeds.py corpus
mkdir -p logs
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    log="logs/$target.log"
    if ! cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED; its input is in fuzz/artifacts/$target/"
        exit 1
    fi
    runs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}')
    echo "fuzz: $target ran ${seconds}s, ${runs:-?} inputs, no crash"
done
