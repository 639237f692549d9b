//! Catch-up reads through `RaftLog`: recent committed entries (served from the committed
//! window in memory) against older ones (read from the store). `cargo bench --bench raft_log`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raftlog::{Entry, LogStore, Options, RaftLog, RaftLogOptions, SyncPolicy};

const ENTRIES: u64 = 200_000;
const PAYLOAD_BYTES: usize = 256;
const RANGE: u64 = 100;

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        LogStore::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never)).unwrap();
    let options = RaftLogOptions::default().min_entries_in_memory(1000).max_entries_in_memory(2000);
    let log = RaftLog::with_options(store, options).unwrap();
    for first in (1..=ENTRIES).step_by(1000) {
        let batch: Vec<Entry> =
            (first..first + 1000).map(|i| Entry::new(i, 1, vec![1u8; PAYLOAD_BYTES])).collect();
        log.append(&batch).unwrap();
        log.commit_to(first + 999).unwrap();
        log.applied_to(first + 999).unwrap();
    }
    let mut group = c.benchmark_group("raft_log_read_100");
    group.throughput(Throughput::Bytes(RANGE * PAYLOAD_BYTES as u64));
    let recent = ENTRIES - 500;
    group.bench_function(BenchmarkId::new("recent_from_memory", RANGE), |b| {
        b.iter(|| log.entries(recent, recent + RANGE, u64::MAX).unwrap())
    });
    group.bench_function(BenchmarkId::new("old_from_store", RANGE), |b| {
        b.iter(|| log.entries(ENTRIES / 2, ENTRIES / 2 + RANGE, u64::MAX).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = reads
}
criterion_main!(benches);
