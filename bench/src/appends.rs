//! Appends: synced and unsynced workloads on raftlog, raft-engine and raw write loops (the
//! disk's limit).

use std::path::Path;
use std::time::Instant;

use protobuf::well_known_types::BytesValue;
use raft_engine::{Engine, LogBatch};
use raftlog::{Entry, LogStore, Options};

use crate::*;

/// One append workload.
#[derive(Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub payload: usize,
    pub batch: u64,
    pub writers: u64,
    pub synced: bool,
    /// Batches per writer per round.
    pub batches: u64,
}

/// Payloads generated before the clock starts: 1024 distinct ones, reused round-robin.
fn payload_pool(len: usize) -> std::sync::Arc<Vec<bytes::Bytes>> {
    std::sync::Arc::new((0..1024).map(|i| bytes::Bytes::from(payload(i, len))).collect())
}

/// Resets the process's peak resident memory (Linux `clear_refs`), then reads it later.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Entries per second of `workload` on raftlog, one log shared by its writers: appends are
/// serialized (as a Raft log's are), syncs are concurrent and share fsyncs (group commit).
/// `preallocate` reserves each 64 MiB segment with `fallocate` when it is created.
pub fn append_raftlog(dir: &Path, w: Workload, preallocate: bool) -> f64 {
    let options = Options::default().preallocate(preallocate);
    let store = std::sync::Arc::new(LogStore::open(dir, options).expect("open raftlog"));
    let next = std::sync::Arc::new(std::sync::Mutex::new(1u64));
    let pool = payload_pool(w.payload);
    let started = Instant::now();
    let threads: Vec<_> = (0..w.writers)
        .map(|_| {
            let (store, next) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&next));
            let pool = std::sync::Arc::clone(&pool);
            std::thread::spawn(move || {
                for _ in 0..w.batches {
                    {
                        let mut next = next.lock().expect("next index");
                        let batch: Vec<Entry> = (*next..*next + w.batch)
                            .map(|i| Entry::new(i, 1, pool[i as usize % pool.len()].clone()))
                            .collect();
                        store.append(&batch).expect("append");
                        *next += w.batch;
                    }
                    if w.synced {
                        store.sync().expect("sync");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    (w.writers * w.batches * w.batch) as f64 / started.elapsed().as_secs_f64()
}

/// Entries per second of `workload` on raft-engine, one region per writer.
fn append_raft_engine(dir: &Path, w: Workload) -> f64 {
    let engine =
        std::sync::Arc::new(Engine::open(raft_engine_config(dir)).expect("open raft-engine"));
    let pool = payload_pool(w.payload);
    let started = Instant::now();
    let threads: Vec<_> = (0..w.writers)
        .map(|region| {
            let engine = std::sync::Arc::clone(&engine);
            let pool = std::sync::Arc::clone(&pool);
            std::thread::spawn(move || {
                for b in 0..w.batches {
                    let first = 1 + b * w.batch;
                    let batch: Vec<BytesValue> = (first..first + w.batch)
                        .map(|i| {
                            let mut entry = BytesValue::new();
                            entry.value = i.to_le_bytes().to_vec();
                            entry.value.extend_from_slice(&pool[i as usize % pool.len()]);
                            entry
                        })
                        .collect();
                    let mut log_batch = LogBatch::default();
                    log_batch.add_entries::<IndexedBytes>(region + 1, &batch).expect("add entries");
                    engine.write(&mut log_batch, w.synced).expect("write");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    (w.writers * w.batches * w.batch) as f64 / started.elapsed().as_secs_f64()
}

/// Entries per second of a raw loop writing raftlog's bytes per batch with `pwrite`, each
/// followed by `fdatasync` when the workload syncs: the disk's own limit for those writes.
/// With `preallocate_step`, space is reserved ahead with `fallocate` in steps of that many
/// bytes (as raft-engine does, 2 MiB), so most writes land inside the file.
fn append_raw(dir: &Path, w: Workload, preallocate_step: Option<u64>) -> f64 {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("raw"))
        .expect("raw file");
    let bytes = vec![7u8; (32 + w.payload) * w.batch as usize];
    let (mut offset, mut allocated) = (0u64, 0u64);
    let started = Instant::now();
    for _ in 0..w.batches * w.writers {
        if let Some(step) = preallocate_step {
            while allocated < offset + bytes.len() as u64 {
                allocated += step;
                fs2::FileExt::allocate(&file, allocated).expect("fallocate");
            }
        }
        file.write_all_at(&bytes, offset).expect("write");
        if w.synced {
            file.sync_data().expect("fdatasync");
        }
        offset += bytes.len() as u64;
    }
    (w.writers * w.batches * w.batch) as f64 / started.elapsed().as_secs_f64()
}

pub fn appends(rounds: usize) {
    let workloads = [
        Workload {
            name: "256 B x 16, synced, 1 writer",
            payload: 256,
            batch: 16,
            writers: 1,
            synced: true,
            batches: 1500,
        },
        Workload {
            name: "256 B x 16, synced, 4 writers",
            payload: 256,
            batch: 16,
            writers: 4,
            synced: true,
            batches: 600,
        },
        Workload {
            name: "4 KiB x 64, synced, 1 writer",
            payload: 4096,
            batch: 64,
            writers: 1,
            synced: true,
            batches: 300,
        },
        Workload {
            name: "256 B x 64, unsynced, 1 writer",
            payload: 256,
            batch: 64,
            writers: 1,
            synced: false,
            batches: 8000,
        },
    ];
    println!("## Appends (medians of {rounds} rounds, engines alternating)");
    println!("| workload | raftlog entries/s | MiB/s | raft-engine entries/s | ratio | raftlog preallocated: entries/s, ratio | raw loop entries/s (growing / preallocated) | of the disk's limit | peak memory raftlog / raft-engine |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for w in workloads {
        let (mut ours, mut theirs, mut raw, mut raw_prealloc) = (vec![], vec![], vec![], vec![]);
        let mut ours_prealloc = vec![];
        let (mut ours_peak, mut theirs_peak) = (0u64, 0u64);
        for _ in 0..rounds {
            let dir = tempfile::tempdir().expect("tempdir");
            reset_peak_memory();
            ours.push(append_raftlog(&dir.path().join("raftlog"), w, false));
            ours_peak = ours_peak.max(status_kib("VmHWM:"));
            ours_prealloc.push(append_raftlog(&dir.path().join("raftlog-prealloc"), w, true));
            reset_peak_memory();
            theirs.push(append_raft_engine(&dir.path().join("raft-engine"), w));
            theirs_peak = theirs_peak.max(status_kib("VmHWM:"));
            raw.push(append_raw(dir.path(), w, None));
            raw_prealloc.push(append_raw(dir.path(), w, Some(2 << 20)));
        }
        let (ours, theirs, raw, raw_prealloc) =
            (median(ours), median(theirs), median(raw), median(raw_prealloc));
        let ours_prealloc = median(ours_prealloc);
        let limit = raw.max(raw_prealloc);
        let mib = ours * w.payload as f64 / (1 << 20) as f64;
        println!(
            "| {} | {ours:.0} | {mib:.1} | {theirs:.0} | {:.2}x | {ours_prealloc:.0}, {:.2}x | {raw:.0} / {raw_prealloc:.0} | {:.2} | {:.0} / {:.0} MiB |",
            w.name, ours / theirs, ours_prealloc / theirs, ours / limit, ours_peak as f64 / 1024.0, theirs_peak as f64 / 1024.0
        );
    }
}

