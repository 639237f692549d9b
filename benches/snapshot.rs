//! Snapshot costs. `cargo bench --bench snapshot`.
//!
//! - `snapshot_10k_files_100_slots`: a snapshot of 10,000 state-machine files (16 KiB each,
//!   already durable) across 100 slots. `link_and_fsync` publishes it with hard links and an
//!   fdatasync of each (the default, safe whatever the caller synced); `link_durable_sources`
//!   trusts the sources to be durable (`sync_linked_files: false`): metadata work plus one read
//!   of each file for its checksum, no data written. `copy` does what a store without links
//!   must: copy every file, fsync it, fsync the directory.
//! - `transfer_64MiB`: 64 files of 1 MiB sent through an in-memory channel (source thread ->
//!   encoded 1 MiB chunks -> receiver -> install), against `std::fs::copy` of the same files
//!   with an fsync each.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raftlog::fs::StdFs;
use raftlog::snapshot::{Chunk, ChunkRequest};
use raftlog::{SnapshotOptions, SnapshotStore};

/// `count` durable files of `bytes` each in `dir`.
fn state_files(dir: &Path, count: usize, bytes: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let paths: Vec<PathBuf> = (0..count)
        .map(|k| {
            let path = dir.join(format!("{k}.tsfile"));
            let data: Vec<u8> = (0..bytes).map(|i| (i * 31 + k) as u8).collect();
            std::fs::write(&path, data).unwrap();
            path
        })
        .collect();
    // One sync for all: the state machine's files are durable before a snapshot links them.
    std::process::Command::new("sync").status().unwrap();
    paths
}

/// Publishes the 10k-file snapshot by links; times the publish only, not the deletion after.
fn snapshot_by_links(b: &mut criterion::Bencher, store: &SnapshotStore, files: &[PathBuf]) {
    b.iter_custom(|iters| {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            let mut writer = store.begin(1, 1, b"").unwrap();
            for (k, file) in files.iter().enumerate() {
                writer.add_file((k % 100) as u32, &format!("{k}.tsfile"), file).unwrap();
            }
            assert_eq!(writer.copied_files(), 0);
            let meta = writer.finish().unwrap();
            spent += start.elapsed();
            store.delete(&meta).unwrap();
        }
        spent
    })
}

/// Times `copy_all` into `target`, not the removal after.
fn time_copies(b: &mut criterion::Bencher, files: &[PathBuf], target: &Path) {
    b.iter_custom(|iters| {
        let mut spent = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            copy_all(files, target);
            spent += start.elapsed();
            std::fs::remove_dir_all(target).unwrap();
        }
        spent
    })
}

fn copy_all(files: &[PathBuf], target: &Path) {
    std::fs::create_dir_all(target).unwrap();
    for (k, file) in files.iter().enumerate() {
        let to = target.join(format!("{k}"));
        std::fs::copy(file, &to).unwrap();
        File::open(&to).unwrap().sync_data().unwrap();
    }
    File::open(target).unwrap().sync_all().unwrap();
}

fn snapshot_10k_files(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files = state_files(&dir.path().join("state"), 10_000, 16 << 10);
    let mut group = c.benchmark_group("snapshot_10k_files_100_slots");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for sync_linked_files in [true, false] {
        let options = SnapshotOptions::default().sync_linked_files(sync_linked_files);
        let store = SnapshotStore::open_with(StdFs, dir.path().join("snapshots"), options).unwrap();
        let name = if sync_linked_files { "link_and_fsync" } else { "link_durable_sources" };
        group.bench_function(name, |b| snapshot_by_links(b, &store, &files));
    }
    group.bench_function("copy", |b| time_copies(b, &files, &dir.path().join("copy")));
    group.finish();
}

fn transfer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files = state_files(&dir.path().join("state"), 64, 1 << 20);
    let leader = SnapshotStore::open(dir.path().join("leader")).unwrap();
    let mut writer = leader.begin(1, 1, b"").unwrap();
    for (k, file) in files.iter().enumerate() {
        writer.add_file(k as u32 % 8, &format!("{k}"), file).unwrap();
    }
    let meta = writer.finish().unwrap();
    let follower = SnapshotStore::open(dir.path().join("follower")).unwrap();
    let mut group = c.benchmark_group("transfer_64MiB");
    group.sample_size(10).throughput(Throughput::Bytes(meta.total_bytes()));
    group.bench_function("chunks_over_channel", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let source = leader.source(&meta).unwrap();
                let mut receiver = follower.receive(source.manifest()).unwrap();
                let (ask, requests) = mpsc::channel::<ChunkRequest>();
                let (send, chunks) = mpsc::sync_channel::<Vec<u8>>(4);
                std::thread::scope(|scope| {
                    scope.spawn(move || {
                        for request in requests {
                            send.send(source.chunk(&request).unwrap().encode()).unwrap();
                        }
                    });
                    let wanted = receiver.missing(None, usize::MAX);
                    let count = wanted.len();
                    for request in wanted {
                        ask.send(request).unwrap();
                    }
                    drop(ask);
                    for _ in 0..count {
                        let chunk = Chunk::decode(&chunks.recv().unwrap()).unwrap();
                        receiver.accept(&chunk).unwrap();
                    }
                });
                let installed = receiver.install().unwrap();
                spent += start.elapsed();
                follower.delete(&installed).unwrap();
            }
            spent
        })
    });
    group
        .bench_function("fs_copy_with_fsync", |b| time_copies(b, &files, &dir.path().join("copy")));
    group.finish();
}

criterion_group!(benches, snapshot_10k_files, transfer);
criterion_main!(benches);
