//! Appends: synced and unsynced workloads on raftlog, raft-engine and raft-log, against raw
//! write loops (the disk's limit): into a growing file, into `fallocate`d space, and over
//! blocks written and synced before (prewritten). Entries per second, and the p99 and the
//! longest latency of one batch (its append plus, when synced, the wait for its durability).

use std::path::Path;
use std::sync::{Arc, Mutex};
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

impl Workload {
    fn entries(&self) -> u64 {
        self.writers * self.batches * self.batch
    }
}

/// What one round of a workload measured.
pub struct Run {
    pub entries_per_s: f64,
    /// Latency of one batch, 99th percentile, microseconds.
    pub p99_us: f64,
    /// The longest batch, microseconds (where a rotation's fsyncs would show).
    pub max_us: f64,
}

/// Payloads generated before the clock starts: 1024 distinct ones, reused round-robin.
fn payload_pool(len: usize) -> Arc<Vec<bytes::Bytes>> {
    Arc::new((0..1024).map(|i| bytes::Bytes::from(payload(i, len))).collect())
}

/// Resets the process's peak resident memory (Linux `clear_refs`), then reads it later.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Runs `w.writers` threads, each calling `batch(writer)` `w.batches` times, timing each call.
fn run_writers(w: Workload, batch: impl Fn(u64) + Send + Sync + 'static) -> Run {
    let batch = Arc::new(batch);
    let started = Instant::now();
    let threads: Vec<_> = (0..w.writers)
        .map(|writer| {
            let batch = Arc::clone(&batch);
            std::thread::spawn(move || {
                (0..w.batches)
                    .map(|_| {
                        let started = Instant::now();
                        batch(writer);
                        started.elapsed().as_secs_f64() * 1e6
                    })
                    .collect::<Vec<f64>>()
            })
        })
        .collect();
    let mut latencies: Vec<f64> =
        threads.into_iter().flat_map(|t| t.join().expect("writer")).collect();
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let p99_us = latencies[((latencies.len() - 1) as f64 * 0.99) as usize];
    let max_us = latencies.last().copied().unwrap_or_default();
    Run { entries_per_s: w.entries() as f64 / seconds, p99_us, max_us }
}

/// raftlog, one log shared by its writers: appends are serialized (as a Raft log's are),
/// syncs are concurrent and share fsyncs (group commit). `pool`: `Options::segment_pool`
/// (segments in files written before; the store's first one is prefilled by `open`, before
/// the clock starts).
pub fn append_raftlog(dir: &Path, w: Workload, pool: usize) -> Run {
    let store =
        Arc::new(LogStore::open(dir, Options::default().segment_pool(pool)).expect("open raftlog"));
    // Steady state: the pool is full, as recycling keeps it in a store that compacts.
    while store.segment_pool_ready() < pool {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let next = Mutex::new(1u64);
    let pool = payload_pool(w.payload);
    run_writers(w, move |_| {
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
    })
}

/// raft-engine, one region per writer.
fn append_raft_engine(dir: &Path, w: Workload) -> Run {
    let engine = Engine::open(raft_engine_config(dir)).expect("open raft-engine");
    let pool = payload_pool(w.payload);
    let next: Vec<Mutex<u64>> = (0..w.writers).map(|_| Mutex::new(1)).collect();
    run_writers(w, move |writer| {
        let mut next = next[writer as usize].lock().expect("next index");
        let batch: Vec<BytesValue> = (*next..*next + w.batch)
            .map(|i| {
                let mut entry = BytesValue::new();
                entry.value = i.to_le_bytes().to_vec();
                entry.value.extend_from_slice(&pool[i as usize % pool.len()]);
                entry
            })
            .collect();
        *next += w.batch;
        let mut log_batch = LogBatch::default();
        log_batch.add_entries::<IndexedBytes>(writer + 1, &batch).expect("add entries");
        engine.write(&mut log_batch, w.synced).expect("write");
    })
}

/// raft-log 0.4.6, one log shared by its writers (appends serialized, flush callbacks awaited
/// outside the lock, so its flush worker can batch them).
fn append_raft_log(dir: &Path, w: Workload) -> Run {
    let log: peer::Shared = Mutex::new((peer::open(dir), 1));
    let pool = payload_pool(w.payload);
    run_writers(w, move |_| {
        let make = |first: u64| {
            (first..first + w.batch)
                .map(|i| ((1, i), pool[i as usize % pool.len()].to_vec()))
                .collect()
        };
        peer::append(&log, make, w.synced);
    })
}

/// How a raw loop's file gets its space.
#[derive(Clone, Copy)]
enum Space {
    /// Each write extends the file.
    Growing,
    /// `fallocate` ahead in steps of this many bytes (as raft-engine does, 2 MiB).
    Fallocated(u64),
    /// Every block is written and synced before the clock starts: an fdatasync then flushes
    /// data only, with no journal commit for the file's size or extents.
    Prewritten,
}

/// A raw loop writing raftlog's bytes per batch with `pwrite`, each followed by `fdatasync`
/// when the workload syncs: the disk's own limit for those writes. Writers share the file.
fn append_raw(dir: &Path, w: Workload, space: Space) -> Run {
    use std::os::unix::fs::FileExt;
    let path = dir.join("raw");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("raw file");
    let bytes = vec![7u8; (32 + w.payload) * w.batch as usize];
    let total = bytes.len() as u64 * w.batches * w.writers;
    if let Space::Prewritten = space {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < total {
            file.write_all_at(&zeros, at).expect("prewrite");
            at += zeros.len() as u64;
        }
        file.sync_all().expect("fsync");
    }
    let state = Mutex::new((0u64, 0u64)); // (next offset, allocated)
    let file = Arc::new(file);
    let run = run_writers(w, move |_| {
        let offset = {
            let mut state = state.lock().expect("offset");
            let offset = state.0;
            state.0 += bytes.len() as u64;
            if let Space::Fallocated(step) = space {
                while state.1 < state.0 {
                    state.1 += step;
                    fs2::FileExt::allocate(&*file, state.1).expect("fallocate");
                }
            }
            offset
        };
        file.write_all_at(&bytes, offset).expect("write");
        if w.synced {
            file.sync_data().expect("fdatasync");
        }
    });
    let _ = std::fs::remove_file(path);
    run
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
    println!(
        "## Appends (medians of {rounds} rounds, engines alternating): entries/s, p99 and longest batch"
    );
    println!("| workload | raftlog, segment pool | raftlog, no pool | raft-engine | raft-log 0.4.6 | pool / raft-engine | no pool / raft-engine | pool / raft-log | raw loop: growing / fallocated / prewritten | pool of prewritten | the same, paired by round | no pool of growing | peak memory raftlog / raft-engine |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let only = std::env::var("RAFTLOG_BENCH_ONLY").unwrap_or_default();
    for w in workloads.into_iter().filter(|w| w.name.contains(&only)) {
        let mut runs: Vec<Vec<Run>> = (0..7).map(|_| Vec::new()).collect();
        let (mut ours_peak, mut theirs_peak) = (0u64, 0u64);
        for _ in 0..rounds {
            let dir = tempfile::tempdir().expect("tempdir");
            reset_peak_memory();
            runs[0].push(append_raftlog(&dir.path().join("raftlog"), w, 0));
            ours_peak = ours_peak.max(status_kib("VmHWM:"));
            reset_peak_memory();
            runs[1].push(append_raft_engine(&dir.path().join("raft-engine"), w));
            theirs_peak = theirs_peak.max(status_kib("VmHWM:"));
            runs[2].push(append_raft_log(&dir.path().join("raft-log"), w));
            runs[3].push(append_raftlog(&dir.path().join("raftlog-pool"), w, 2));
            runs[4].push(append_raw(dir.path(), w, Space::Growing));
            runs[5].push(append_raw(dir.path(), w, Space::Fallocated(2 << 20)));
            runs[6].push(append_raw(dir.path(), w, Space::Prewritten));
        }
        let rate = |k: usize| median(runs[k].iter().map(|r| r.entries_per_s).collect());
        let p99 = |k: usize| median(runs[k].iter().map(|r| r.p99_us).collect());
        let max = |k: usize| median(runs[k].iter().map(|r| r.max_us).collect());
        let cell = |k: usize| format!("{:.0}, p99 {:.0} µs, max {:.0} µs", rate(k), p99(k), max(k));
        // The median of each round's own ratio: the disk's speed drifts between rounds, and
        // the two runs of one round are close in time.
        let paired = |a: usize, b: usize| {
            median(
                runs[a]
                    .iter()
                    .zip(&runs[b])
                    .map(|(a, b)| a.entries_per_s / b.entries_per_s)
                    .collect(),
            )
        };
        println!(
            "| {} | {} | {} | {} | {} | {:.2}x (p99 {:.2}x) | {:.2}x (p99 {:.2}x) | {:.2}x | {:.0} / {:.0} / {:.0} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} MiB |",
            w.name,
            cell(3),
            cell(0),
            cell(1),
            cell(2),
            rate(3) / rate(1),
            p99(3) / p99(1),
            rate(0) / rate(1),
            p99(0) / p99(1),
            rate(3) / rate(2),
            rate(4),
            rate(5),
            rate(6),
            rate(3) / rate(6),
            paired(3, 6),
            rate(0) / rate(4),
            ours_peak as f64 / 1024.0,
            theirs_peak as f64 / 1024.0
        );
    }
}
