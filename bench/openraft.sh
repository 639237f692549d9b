#!/usr/bin/env bash
# openraft on raftlog against openraft on raft-log 0.4.6: the kv example's three node processes
# on 127.0.0.1 (this machine's disk), its first write phase only (--bench), alternating stores
# round by round; prints the medians of writes/s and latency p50/p99 and their ratios.
# Usage: bash bench/openraft.sh [rounds] [writes] [clients]
set -euo pipefail
rounds="${1:-5}"; writes="${2:-4000}"; clients="${3:-16}"
cd "$(dirname "$0")/.."
cargo build -q --release -p raftlog-openraft --example kv
results="$(mktemp)"; trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
    for store in raftlog raft-log; do
        target/release/examples/kv --bench --store "$store" --writes "$writes" --clients "$clients" \
            | grep '^RESULT' >> "$results"
    done
done
python3 - "$results" "$rounds" "$writes" "$clients" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    _, store, rate, p50, p99 = line.split()
    rows.setdefault(store, []).append((float(rate), float(p50), float(p99)))
med = lambda store, k: statistics.median(r[k] for r in rows[store])
print(f"openraft, 3 nodes, {sys.argv[3]} writes, {sys.argv[4]} clients, median of {sys.argv[2]} rounds")
for store in ("raftlog", "raft-log"):
    print(f"  {store:8}: {med(store, 0):8.0f} writes/s, p50 {med(store, 1):7.0f} us, p99 {med(store, 2):7.0f} us")
print(f"  raftlog / raft-log: writes/s x{med('raftlog', 0) / med('raft-log', 0):.2f}, "
      f"p99 x{med('raftlog', 2) / med('raft-log', 2):.2f}")
PY
