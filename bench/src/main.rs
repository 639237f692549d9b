//! raftlog against raft-engine 0.4 and raft-log 0.4.6, side by side in one run on the same
//! data.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml -- [reads|cold-reads|open|appends|all|recycle-reads] [rounds]`
//!
//! - reads: random catch-up reads of 100-entry ranges from sealed data (hot page cache), 256 B
//!   and 4 KiB payloads; engines alternate, median of the rounds.
//! - cold-reads: the same reads of 4 million 256 B entries on stores opened afresh every round
//!   (page cache warm, mappings cold).
//! - open: reopening 4 million 256-byte entries (about 1 GiB), each open in a fresh child
//!   process so that its time and the resident memory it adds are its own.
//! - appends: synced batches (256 B x 16 with 1 and 4 writers, 4 KiB x 64) and unsynced
//!   (256 B x 64), against raft-engine, raft-log and raw write+fdatasync loops of raftlog's
//!   write sizes (the disk's limit: into a growing file, into fallocated space, over prewritten
//!   blocks); entries/s, the p99 latency of one batch, ratios, peak memory. raftlog runs with
//!   and without a segment pool (`Options::segment_pool(2)`, the pool full before the clock
//!   starts, as recycling keeps it in a store that compacts). `RAFTLOG_BENCH_ONLY=text` runs
//!   the workloads whose name contains `text`.
//! - recycle-reads (not in `all`; needs root): appends into segment-pool files after the page
//!   cache is dropped, counting the bytes read from disk meanwhile, against a raw loop of
//!   unaligned overwrites (tikv/tikv#13488).
//!
//! raft-engine's entries are protobuf messages; `BytesValue` carries the payload behind an
//! 8-byte index, the least a raft-engine user stores.

mod appends;
mod open;
mod peer;
mod reads;
mod recycle;

use std::path::Path;
use std::time::Instant;

use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt};
use raftlog::{Entry, LogStore, Options, SyncPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) const RANGE: u64 = 100;
pub(crate) const BATCH: u64 = 64;
pub(crate) const READS_PER_ROUND: usize = 20_000;
pub(crate) const REGION: u64 = 1;

#[derive(Clone)]
pub(crate) struct IndexedBytes;

impl MessageExt for IndexedBytes {
    type Entry = BytesValue;

    fn index(entry: &BytesValue) -> u64 {
        u64::from_le_bytes(entry.value[..8].try_into().expect("8-byte index prefix"))
    }
}

pub(crate) fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub(crate) fn raftlog_options() -> Options {
    Options::default().sync_policy(SyncPolicy::Never)
}

pub(crate) fn raft_engine_config(dir: &Path) -> Config {
    Config { dir: dir.to_str().expect("utf-8 path").to_owned(), ..Config::default() }
}

pub(crate) fn write_raftlog(dir: &Path, entries: u64, len: usize) {
    write_raftlog_with(dir, entries, len, 0);
}

/// `write_raftlog` through a segment pool of `pool` files.
pub(crate) fn write_raftlog_with(dir: &Path, entries: u64, len: usize, pool: usize) {
    let store = LogStore::open(dir, raftlog_options().segment_pool(pool)).expect("open raftlog");
    for first in (1..=entries).step_by(BATCH as usize) {
        let batch: Vec<Entry> =
            (first..first + BATCH).map(|i| Entry::new(i, 1, payload(i, len))).collect();
        store.append(&batch).expect("append");
    }
    store.close().expect("close");
}

pub(crate) fn write_raft_engine(dir: &Path, entries: u64, len: usize) {
    let engine = Engine::open(raft_engine_config(dir)).expect("open raft-engine");
    for first in (1..=entries).step_by(BATCH as usize) {
        let batch: Vec<BytesValue> = (first..first + BATCH)
            .map(|i| {
                let mut entry = BytesValue::new();
                entry.value = i.to_le_bytes().to_vec();
                entry.value.extend_from_slice(&payload(i, len));
                entry
            })
            .collect();
        let mut log_batch = LogBatch::default();
        log_batch.add_entries::<IndexedBytes>(REGION, &batch).expect("add entries");
        engine.write(&mut log_batch, false).expect("write");
    }
    engine.sync().expect("sync");
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) fn range_starts(entries: u64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..READS_PER_ROUND).map(|_| rng.gen_range(1..entries - RANGE)).collect()
}

pub(crate) fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("profile-raftlog-reads") {
        // raftlog's read path alone, for a profiler.
        let dir = tempfile::tempdir().expect("tempdir");
        write_raftlog(dir.path(), 1_000_000, 256);
        let store = LogStore::open(dir.path(), raftlog_options()).expect("reopen");
        for round in 0..20 {
            for lo in range_starts(1_000_000, round) {
                std::hint::black_box(store.entries(lo, lo + RANGE, u64::MAX).expect("read"));
            }
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("profile-raftlog-appends") {
        // raftlog's append path alone, for a profiler: unsynced 256 B x 64, or with
        // `synced-4k` synced 4 KiB x 64 with a segment pool.
        let dir = tempfile::tempdir().expect("tempdir");
        let synced = args.get(2).map(String::as_str) == Some("synced-4k");
        let w = appends::Workload {
            name: "",
            payload: if synced { 4096 } else { 256 },
            batch: 64,
            writers: 1,
            synced,
            batches: if synced { 3000 } else { 40_000 },
        };
        let pool = if synced { 2 } else { 0 };
        println!("{:.0} entries/s", appends::append_raftlog(dir.path(), w, pool).entries_per_s);
        return;
    }
    if args.get(1).map(String::as_str) == Some("write-raftlog") {
        // A store to profile `open-child raftlog DIR` or `cold-read-child` on; a fourth
        // argument writes it through a segment pool of that many files.
        let pool = args.get(4).map_or(0, |n| n.parse().expect("pool files"));
        write_raftlog_with(Path::new(&args[2]), args[3].parse().expect("entry count"), 256, pool);
        return;
    }
    if args.get(1).map(String::as_str) == Some("cold-read-child") {
        // One round of raftlog's cold reads on an existing store, for an A/B of the read path:
        // prints entries/s cold, then warm.
        let store = LogStore::open(Path::new(&args[2]), raftlog_options()).expect("open");
        let entries = store.last_index();
        let starts = range_starts(entries, args[3].parse().expect("seed"));
        // Cold (the maps just made), then the same ranges again (warm): what the first touch
        // of a mapped page costs.
        let rates: Vec<String> = (0..2)
            .map(|_| {
                let started = Instant::now();
                let mut read = 0usize;
                for &lo in &starts {
                    read += store.entries(lo, lo + RANGE, u64::MAX).expect("read").len();
                }
                format!("{:.0}", read as f64 / started.elapsed().as_secs_f64())
            })
            .collect();
        println!("{}", rates.join(" "));
        return;
    }
    if args.get(1).map(String::as_str) == Some("open-child") {
        open::open_child(&args[2], Path::new(&args[3]));
        return;
    }
    let what = args.get(1).map_or("all", String::as_str);
    let rounds = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    if matches!(what, "reads" | "all") {
        reads::reads(rounds);
    }
    if matches!(what, "cold-reads" | "all") {
        reads::cold_reads(rounds);
    }
    if matches!(what, "open" | "all") {
        open::open(rounds);
    }
    if matches!(what, "appends" | "all") {
        appends::appends(rounds);
    }
    if what == "recycle-reads" {
        recycle::recycle_reads(rounds);
    }
}
