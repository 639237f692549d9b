#!/usr/bin/env bash
# The replication benchmark: a 3-node cluster (processes on 127.0.0.1, loopback TCP, real disks)
# written through its leader, fsync on against fsync off (the cost of durability), alternating
# rounds; prints the median throughput and commit latencies of each and their ratios.
# Usage: bash bench/cluster.sh [rounds] [entries] [payload] [window]
set -euo pipefail
rounds="${1:-5}"; entries="${2:-50000}"; payload="${3:-256}"; window="${4:-256}"
cd "$(dirname "$0")/.."
cargo build -q --release --example cluster
dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT
for round in $(seq "$rounds"); do
    for mode in sync no-sync; do
        flag=""; [ "$mode" = no-sync ] && flag="--no-sync"
        rm -rf "$dir/run"
        target/release/examples/cluster --json --kills 0 --leader-changes 0 --snapshot-every 0 \
            --entries "$entries" --payload "$payload" --window "$window" --dir "$dir/run" $flag \
            | tail -n 1 | sed "s/^/$mode /" >> "$dir/results"
    done
done
python3 - "$dir/results" "$rounds" "$entries" "$payload" "$window" <<'PY'
import json, statistics, sys
rows = {"sync": [], "no-sync": []}
for line in open(sys.argv[1]):
    mode, summary = line.split(" ", 1)
    rows[mode].append(json.loads(summary))
def med(mode, key, sub=None):
    return statistics.median(r[key][sub] if sub else r[key] for r in rows[mode])
print(f"3 nodes, {sys.argv[3]} entries of {sys.argv[4]} B, {sys.argv[5]} writes in flight, median of {sys.argv[2]} rounds")
for mode in rows:
    print(f"  fsync {'on ' if mode == 'sync' else 'off'}: {med(mode, 'throughput_entries_per_s'):>9.0f} entries/s, "
          f"commit latency p50 {med(mode, 'commit_latency_us', 'p50'):>6.0f} us, p99 {med(mode, 'commit_latency_us', 'p99'):>6.0f} us")
print(f"  durability costs: throughput x{med('sync', 'throughput_entries_per_s') / med('no-sync', 'throughput_entries_per_s'):.2f}, "
      f"p50 x{med('sync', 'commit_latency_us', 'p50') / med('no-sync', 'commit_latency_us', 'p50'):.2f}, "
      f"p99 x{med('sync', 'commit_latency_us', 'p99') / med('no-sync', 'commit_latency_us', 'p99'):.2f}")
PY
