//! Appends: payloads of 256 B, 1 KiB and 4 KiB in batches of 1, 16 and 64, each batch synced or
//! not; group commit with 1, 4 and 16 writer threads sharing one log; and preallocated against
//! growing segments. `cargo bench --bench append`; figures in BENCHMARKS.md.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raftlog::{Entry, LogStore, Options};

fn payloads(len: usize) -> Vec<Bytes> {
    (0..256u64).map(|i| Bytes::from(vec![(i % 251) as u8; len])).collect()
}

fn appends(c: &mut Criterion) {
    for synced in [true, false] {
        let mut group = c.benchmark_group(if synced { "append_synced" } else { "append_unsynced" });
        for len in [256usize, 1024, 4096] {
            let pool = payloads(len);
            for batch in [1u64, 16, 64] {
                group.throughput(Throughput::Bytes(batch * len as u64));
                let dir = tempfile::tempdir().unwrap();
                let store = LogStore::open(dir.path(), Options::default()).unwrap();
                let mut next = 1u64;
                group.bench_function(BenchmarkId::new(format!("{len}B"), batch), |b| {
                    b.iter(|| {
                        let entries: Vec<Entry> = (next..next + batch)
                            .map(|i| Entry::new(i, 1, pool[i as usize % pool.len()].clone()))
                            .collect();
                        store.append(&entries).unwrap();
                        if synced {
                            store.sync().unwrap();
                        }
                        next += batch;
                    })
                });
            }
        }
        group.finish();
    }
}

/// `writers` threads share one log: appends serialized (as a Raft log's are), each writer
/// syncing its own batch; concurrent syncs share fdatasyncs.
fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit_256Bx16_synced");
    const ROUNDS_PER_WRITER: u64 = 32;
    for writers in [1u64, 4, 16] {
        group.throughput(Throughput::Elements(writers * ROUNDS_PER_WRITER * 16));
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LogStore::open(dir.path(), Options::default()).unwrap());
        let next = Arc::new(Mutex::new(1u64));
        let pool = Arc::new(payloads(256));
        group.bench_function(BenchmarkId::new("writers", writers), |b| {
            b.iter(|| {
                let threads: Vec<_> = (0..writers)
                    .map(|_| {
                        let (store, next, pool) =
                            (Arc::clone(&store), Arc::clone(&next), Arc::clone(&pool));
                        std::thread::spawn(move || {
                            for _ in 0..ROUNDS_PER_WRITER {
                                {
                                    let mut next = next.lock().unwrap();
                                    let entries: Vec<Entry> = (*next..*next + 16)
                                        .map(|i| {
                                            Entry::new(i, 1, pool[i as usize % pool.len()].clone())
                                        })
                                        .collect();
                                    store.append(&entries).unwrap();
                                    *next += 16;
                                }
                                store.sync().unwrap();
                            }
                        })
                    })
                    .collect();
                for thread in threads {
                    thread.join().unwrap();
                }
            })
        });
    }
    group.finish();
}

fn preallocation(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_256Bx16_synced_segments");
    group.throughput(Throughput::Bytes(16 * 256));
    let pool = payloads(256);
    for preallocate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().segment_bytes_max(8 << 20).preallocate(preallocate);
        let store = LogStore::open(dir.path(), options).unwrap();
        let mut next = 1u64;
        let name = if preallocate { "preallocated" } else { "growing" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let entries: Vec<Entry> = (next..next + 16)
                    .map(|i| Entry::new(i, 1, pool[i as usize % pool.len()].clone()))
                    .collect();
                store.append(&entries).unwrap();
                store.sync().unwrap();
                next += 16;
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = appends, group_commit, preallocation
}
criterion_main!(benches);
