//! Catch-up reads from sealed segments (hot page cache): random ranges of 100 entries of 256 B
//! and 4 KiB. A cold-cache variant is not measured: sealed segments are memory-mapped, and the
//! kernel does not drop mapped pages on `posix_fadvise`; dropping the whole page cache needs
//! root and disturbs everything else on a shared machine. `cargo bench --bench read`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raftlog::{Entry, LogStore, Options, SyncPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("catch_up_read_100");
    for (len, entries) in [(256usize, 400_000u64), (4096, 50_000)] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().sync_policy(SyncPolicy::Never).segment_bytes_max(16 << 20);
        let store = LogStore::open(dir.path(), options.clone()).unwrap();
        for first in (1..=entries).step_by(100) {
            let batch: Vec<Entry> = (first..first + 100)
                .map(|i| Entry::new(i, 1, vec![(i % 251) as u8; len]))
                .collect();
            store.append(&batch).unwrap();
        }
        store.close().unwrap();
        let store = LogStore::open(dir.path(), options).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        group.throughput(Throughput::Bytes(100 * len as u64));
        group.bench_function(BenchmarkId::new("hot", format!("{len}B")), |b| {
            b.iter(|| {
                let lo = rng.gen_range(1..entries - 100);
                store.entries(lo, lo + 100, u64::MAX).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = reads
}
criterion_main!(benches);
