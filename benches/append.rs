//! Synced appends with and without preallocated segments, beside the disk's own limit: a raw
//! loop of the same writes, each followed by fdatasync, on a preallocated and on a growing
//! file. Run with `cargo bench --bench append`; the figures are in BENCHMARKS.md.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raftlog::{Entry, LogStore, Options};

const PAYLOAD_BYTES: usize = 256;
const BATCH: u64 = 16;
/// Small enough that the benchmark crosses segment boundaries, as a long-running log does.
const SEGMENT_BYTES: u64 = 8 << 20;

fn synced_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_256Bx16_synced");
    let record_bytes = (32 + PAYLOAD_BYTES as u64) * BATCH;
    group.throughput(Throughput::Bytes(record_bytes));
    for preallocate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().segment_bytes_max(SEGMENT_BYTES).preallocate(preallocate);
        let store = LogStore::open(dir.path(), options).unwrap();
        let mut next = 1u64;
        let name = if preallocate { "raftlog_preallocated" } else { "raftlog_growing" };
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| {
                let batch: Vec<Entry> = (next..next + BATCH)
                    .map(|i| Entry::new(i, 1, vec![7u8; PAYLOAD_BYTES]))
                    .collect();
                store.append(&batch).unwrap();
                store.sync().unwrap();
                next += BATCH;
            })
        });
    }
    for preallocate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.path().join("raw"))
            .unwrap();
        let buf = vec![7u8; record_bytes as usize];
        let mut offset = 0u64;
        let name = if preallocate { "raw_fdatasync_preallocated" } else { "raw_fdatasync_growing" };
        group.bench_function(BenchmarkId::new(name, BATCH), |b| {
            b.iter(|| {
                if offset % SEGMENT_BYTES == 0 && preallocate {
                    fs2::FileExt::allocate(&file, offset + SEGMENT_BYTES).unwrap();
                }
                file.write_all_at(&buf, offset).unwrap();
                file.sync_data().unwrap();
                offset += record_bytes;
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = synced_appends
}
criterion_main!(benches);
