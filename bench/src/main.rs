//! raftlog against raft-engine 0.4, side by side in one run on the same data.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml -- [reads|cold-reads|open|appends|all] [rounds]`
//!
//! - reads: random catch-up reads of 100-entry ranges from sealed data (hot page cache), 256 B
//!   and 4 KiB payloads; engines alternate, median of the rounds.
//! - cold-reads: the same reads of 4 million 256 B entries on stores opened afresh every round
//!   (page cache warm, mappings cold).
//! - open: reopening 4 million 256-byte entries (about 1 GiB), each open in a fresh child
//!   process so that its time and the resident memory it adds are its own.
//! - appends: synced batches (256 B x 16 with 1 and 4 writers, 4 KiB x 64) and unsynced
//!   (256 B x 64), against raft-engine and a raw write+fdatasync loop of raftlog's write sizes
//!   (the disk's limit); entries/s, MiB/s, ratios, peak memory.
//!
//! raft-engine's entries are protobuf messages; `BytesValue` carries the payload behind an
//! 8-byte index, the least a raft-engine user stores.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt};
use raftlog::{Entry, LogStore, Options, SyncPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RANGE: u64 = 100;
const BATCH: u64 = 64;
const READS_PER_ROUND: usize = 20_000;
const REGION: u64 = 1;

#[derive(Clone)]
struct IndexedBytes;

impl MessageExt for IndexedBytes {
    type Entry = BytesValue;

    fn index(entry: &BytesValue) -> u64 {
        u64::from_le_bytes(entry.value[..8].try_into().expect("8-byte index prefix"))
    }
}

fn payload(index: u64, len: usize) -> Vec<u8> {
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

fn raftlog_options() -> Options {
    Options::default().sync_policy(SyncPolicy::Never)
}

fn raft_engine_config(dir: &Path) -> Config {
    Config { dir: dir.to_str().expect("utf-8 path").to_owned(), ..Config::default() }
}

fn write_raftlog(dir: &Path, entries: u64, len: usize) {
    let store = LogStore::open(dir, raftlog_options()).expect("open raftlog");
    for first in (1..=entries).step_by(BATCH as usize) {
        let batch: Vec<Entry> =
            (first..first + BATCH).map(|i| Entry::new(i, 1, payload(i, len))).collect();
        store.append(&batch).expect("append");
    }
    store.close().expect("close");
}

fn write_raft_engine(dir: &Path, entries: u64, len: usize) {
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn range_starts(entries: u64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..READS_PER_ROUND).map(|_| rng.gen_range(1..entries - RANGE)).collect()
}

fn reads(rounds: usize) {
    println!("## Catch-up reads: random ranges of {RANGE} entries, hot page cache");
    println!("| payload | raftlog entries/s | raft-engine entries/s | ratio |");
    println!("|---|---|---|---|");
    for (len, entries) in [(256usize, 1_000_000u64), (4096, 100_000)] {
        let ours = tempfile::tempdir().expect("tempdir");
        let theirs = tempfile::tempdir().expect("tempdir");
        write_raftlog(ours.path(), entries, len);
        write_raft_engine(theirs.path(), entries, len);
        let store = LogStore::open(ours.path(), raftlog_options()).expect("reopen raftlog");
        let engine = Engine::open(raft_engine_config(theirs.path())).expect("reopen raft-engine");
        let (mut ours_rate, mut theirs_rate) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let starts = range_starts(entries, round as u64);
            let started = Instant::now();
            let mut read = 0usize;
            for &lo in &starts {
                read += store.entries(lo, lo + RANGE, u64::MAX).expect("raftlog read").len();
            }
            ours_rate.push(read as f64 / started.elapsed().as_secs_f64());
            let started = Instant::now();
            let mut read = 0usize;
            let mut out = Vec::new();
            for &lo in &starts {
                out.clear();
                read += engine
                    .fetch_entries_to::<IndexedBytes>(REGION, lo, lo + RANGE, None, &mut out)
                    .expect("raft-engine read");
            }
            theirs_rate.push(read as f64 / started.elapsed().as_secs_f64());
        }
        let (ours_rate, theirs_rate) = (median(ours_rate), median(theirs_rate));
        println!(
            "| {len} B | {ours_rate:.0} | {theirs_rate:.0} | {:.2}x |",
            ours_rate / theirs_rate
        );
    }
}

/// Catch-up reads on stores just opened: each round opens both afresh (page cache warm, maps
/// and raft-engine's memtables cold) and reads `READS_PER_ROUND` random ranges.
fn cold_reads(rounds: usize) {
    const ENTRIES: u64 = 4_000_000;
    println!("## Catch-up reads on a store just opened: {ENTRIES} entries of 256 B, ranges of {RANGE}");
    println!("| round | raftlog entries/s | raft-engine entries/s | ratio |");
    println!("|---|---|---|---|");
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    write_raftlog(ours.path(), ENTRIES, 256);
    write_raft_engine(theirs.path(), ENTRIES, 256);
    let (mut ours_rates, mut theirs_rates) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let starts = range_starts(ENTRIES, 100 + round as u64);
        let started = Instant::now();
        let store = LogStore::open(ours.path(), raftlog_options()).expect("reopen raftlog");
        let opened = started.elapsed();
        let started = Instant::now();
        let mut read = 0usize;
        for &lo in &starts {
            read += store.entries(lo, lo + RANGE, u64::MAX).expect("raftlog read").len();
        }
        let ours_rate = read as f64 / started.elapsed().as_secs_f64();
        drop(store);
        let engine = Engine::open(raft_engine_config(theirs.path())).expect("reopen raft-engine");
        let started = Instant::now();
        let mut read = 0usize;
        let mut out = Vec::new();
        for &lo in &starts {
            out.clear();
            read += engine
                .fetch_entries_to::<IndexedBytes>(REGION, lo, lo + RANGE, None, &mut out)
                .expect("raft-engine read");
        }
        let theirs_rate = read as f64 / started.elapsed().as_secs_f64();
        drop(engine);
        println!(
            "| {round} | {ours_rate:.0} (open {:.1} ms) | {theirs_rate:.0} | {:.2}x |",
            opened.as_secs_f64() * 1e3,
            ours_rate / theirs_rate
        );
        ours_rates.push(ours_rate);
        theirs_rates.push(theirs_rate);
    }
    let (ours_rate, theirs_rate) = (median(ours_rates), median(theirs_rates));
    println!("| median | {ours_rate:.0} | {theirs_rate:.0} | {:.2}x |", ours_rate / theirs_rate);
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// In a child process: opens one engine and prints "milliseconds added_rss_kib entries".
fn open_child(engine: &str, dir: &Path) {
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    let (entries, keep): (u64, Box<dyn std::any::Any>) = match engine {
        "raftlog" => {
            let store = LogStore::open(dir, raftlog_options()).expect("open raftlog");
            (store.last_index() + 1 - store.first_index(), Box::new(store))
        }
        _ => {
            let engine = Engine::open(raft_engine_config(dir)).expect("open raft-engine");
            let count = engine.last_index(REGION).unwrap_or(0) + 1
                - engine.first_index(REGION).unwrap_or(1);
            (count, Box::new(engine))
        }
    };
    let millis = started.elapsed().as_secs_f64() * 1e3;
    println!("{millis:.2} {} {entries}", status_kib("VmRSS:").saturating_sub(rss_before));
    drop(keep);
}

fn open(rounds: usize) {
    const ENTRIES: u64 = 4_000_000;
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    write_raftlog(ours.path(), ENTRIES, 256);
    write_raft_engine(theirs.path(), ENTRIES, 256);
    let exe = std::env::current_exe().expect("current exe");
    let run = |engine: &str, dir: &Path| -> (f64, f64) {
        let out = Command::new(&exe).args(["open-child", engine]).arg(dir).output().expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        assert_eq!(
            fields.get(2).copied(),
            Some(ENTRIES as f64),
            "{engine} reopened all entries: {text}"
        );
        (fields[0], fields[1])
    };
    let (mut ours_ms, mut theirs_ms, mut ours_rss, mut theirs_rss) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (ms, rss) = run("raftlog", ours.path());
        ours_ms.push(ms);
        ours_rss.push(rss);
        let (ms, rss) = run("raft-engine", theirs.path());
        theirs_ms.push(ms);
        theirs_rss.push(rss);
    }
    let (ours_ms, theirs_ms) = (median(ours_ms), median(theirs_ms));
    println!("## Open: 4,000,000 entries of 256 B (about 1 GiB), page cache hot");
    println!("| engine | open time | resident memory added | per million entries |");
    println!("|---|---|---|---|");
    for (name, ms, rss) in
        [("raftlog", ours_ms, median(ours_rss)), ("raft-engine", theirs_ms, median(theirs_rss))]
    {
        println!(
            "| {name} | {ms:.1} ms | {:.1} MiB | {:.2} MiB |",
            rss / 1024.0,
            rss / 1024.0 / 4.0
        );
    }
    println!("raftlog opens {:.0}x faster", theirs_ms / ours_ms);
}

/// One append workload.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    payload: usize,
    batch: u64,
    writers: u64,
    synced: bool,
    /// Batches per writer per round.
    batches: u64,
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
fn append_raftlog(dir: &Path, w: Workload, preallocate: bool) -> f64 {
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

fn appends(rounds: usize) {
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
        // raftlog's unsynced append path alone, for a profiler.
        let dir = tempfile::tempdir().expect("tempdir");
        let w = Workload {
            name: "",
            payload: 256,
            batch: 64,
            writers: 1,
            synced: false,
            batches: 40_000,
        };
        println!("{:.0} entries/s", append_raftlog(dir.path(), w, false));
        return;
    }
    if args.get(1).map(String::as_str) == Some("write-raftlog") {
        // A store to profile `open-child raftlog DIR` on.
        write_raftlog(Path::new(&args[2]), args[3].parse().expect("entry count"), 256);
        return;
    }
    if args.get(1).map(String::as_str) == Some("cold-read-child") {
        // One round of raftlog's cold reads on an existing store, for an A/B of the read path.
        let store = LogStore::open(Path::new(&args[2]), raftlog_options()).expect("open");
        let entries = store.last_index();
        let starts = range_starts(entries, args[3].parse().expect("seed"));
        let started = Instant::now();
        let mut read = 0usize;
        for &lo in &starts {
            read += store.entries(lo, lo + RANGE, u64::MAX).expect("read").len();
        }
        println!("{:.0}", read as f64 / started.elapsed().as_secs_f64());
        return;
    }
    if args.get(1).map(String::as_str) == Some("open-child") {
        open_child(&args[2], Path::new(&args[3]));
        return;
    }
    let what = args.get(1).map_or("all", String::as_str);
    let rounds = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    if matches!(what, "reads" | "all") {
        reads(rounds);
    }
    if matches!(what, "cold-reads" | "all") {
        cold_reads(rounds);
    }
    if matches!(what, "open" | "all") {
        open(rounds);
    }
    if matches!(what, "appends" | "all") {
        appends(rounds);
    }
}
