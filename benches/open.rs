//! Open time against log size: stores of 100k, 1M and 4M entries of 256 B, closed cleanly, then
//! reopened (hot page cache). `cargo bench --bench open`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use raftlog::{Entry, LogStore, Options, SyncPolicy};

fn open_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_256B_entries");
    for entries in [100_000u64, 1_000_000, 4_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().sync_policy(SyncPolicy::Never);
        let store = LogStore::open(dir.path(), options.clone()).unwrap();
        for first in (1..=entries).step_by(1000) {
            let batch: Vec<Entry> = (first..first + 1000)
                .map(|i| Entry::new(i, 1, vec![(i % 251) as u8; 256]))
                .collect();
            store.append(&batch).unwrap();
        }
        store.close().unwrap();
        group.bench_function(BenchmarkId::from_parameter(entries), |b| {
            b.iter(|| LogStore::open(dir.path(), options.clone()).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = open_time
}
criterion_main!(benches);
