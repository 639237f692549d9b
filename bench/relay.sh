#!/usr/bin/env bash
# Relay fan-out against direct sends: 5- and 7-node clusters (processes on 127.0.0.1, loopback
# TCP, real disks, fsync on) written through their leader, with and without `--relay` (two
# relays), alternating rounds; prints the medians of the leader's outbound payload bytes, the
# throughput and the commit latencies, and their ratios.
# Usage: bash bench/relay.sh [rounds] [entries] [payload]
set -euo pipefail
rounds="${1:-3}"; entries="${2:-20000}"; payload="${3:-256}"
cd "$(dirname "$0")/.."
cargo build -q --release --example cluster
dir="$(mktemp -d)"; trap 'rm -rf "$dir"' EXIT
for round in $(seq "$rounds"); do
    for nodes in 5 7; do
        for mode in direct relay; do
            flag=""; [ "$mode" = relay ] && flag="--relay"
            rm -rf "$dir/run"
            target/release/examples/cluster --json --nodes "$nodes" --kills 0 --leader-changes 0 \
                --snapshot-every 0 --entries "$entries" --payload "$payload" --dir "$dir/run" $flag \
                | tail -n 1 | sed "s/^/$nodes $mode /" >> "$dir/results"
        done
    done
done
python3 - "$dir/results" "$rounds" "$entries" "$payload" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    nodes, mode, summary = line.split(" ", 2)
    rows.setdefault((nodes, mode), []).append(json.loads(summary))
def med(key, sub=None):
    return lambda runs: statistics.median(r[key][sub] if sub else r[key] for r in runs)
metrics = [("leader bytes sent", med("leader_bytes_sent")), ("entries/s", med("throughput_entries_per_s")),
           ("commit p50 us", med("commit_latency_us", "p50")), ("commit p99 us", med("commit_latency_us", "p99"))]
print(f"{sys.argv[3]} entries of {sys.argv[4]} B, fsync on, median of {sys.argv[2]} rounds")
print("| nodes | mode | " + " | ".join(name for name, _ in metrics) + " |")
print("|---|---|" + "---|" * len(metrics))
for nodes in ("5", "7"):
    for mode in ("direct", "relay"):
        print(f"| {nodes} | {mode} | " + " | ".join(f"{f(rows[(nodes, mode)]):.0f}" for _, f in metrics) + " |")
    print(f"| {nodes} | relay / direct | " + " | ".join(
        f"{f(rows[(nodes, 'relay')]) / f(rows[(nodes, 'direct')]):.2f}x" for _, f in metrics) + " |")
PY
