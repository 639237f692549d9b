//! Reads during appends into segment-pool files (prefilled or recycled) whose pages left the
//! page cache (tikv/tikv#13488: overwriting part of a page that is not cached makes the kernel
//! read it from disk first).
//!
//! raftlog's writes end at a page boundary (zeros pad them) and start where the last one
//! ended (a page just written, still cached), so it should read nothing. The control is a raw
//! loop of unaligned `pwrite` + `fdatasync` over an evicted file, which reads a page per write.
//! Needs root (it drops the page cache through `/proc/sys/vm/drop_caches`).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use raftlog::{Entry, LogStore, Options};

use crate::payload;

const SEGMENT_BYTES: u64 = 8 << 20;
const POOL: usize = 4;
const BATCH: u64 = 16;
const PAYLOAD: usize = 256;

/// Bytes this process read from the block device so far.
fn read_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("read_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("read_bytes")
}

fn drop_page_cache() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

fn append_batches(store: &LogStore, first: u64, batches: u64) -> u64 {
    let mut next = first;
    for _ in 0..batches {
        let batch: Vec<Entry> =
            (next..next + BATCH).map(|i| Entry::new(i, 1, payload(i, PAYLOAD))).collect();
        store.append(&batch).expect("append");
        store.sync().expect("sync");
        next += BATCH;
    }
    next
}

/// One round: (raftlog's bytes read, entries/s; the raw loop's bytes read, writes/s).
fn round(dir: &Path) -> Option<(u64, f64, u64, f64)> {
    let options = Options::default().segment_bytes_max(SEGMENT_BYTES).segment_pool(POOL);
    let store = LogStore::open(dir.join("raftlog"), options).expect("open");
    // Fill POOL + 1 segments and compact them (recycled while the pool has room), so that the
    // appends measured run through pool files.
    let per_segment = SEGMENT_BYTES / ((32 + PAYLOAD as u64) * BATCH);
    let next = append_batches(&store, 1, per_segment * (POOL as u64 + 1));
    store.compact_to(next - 1).expect("compact");
    if !drop_page_cache() {
        return None;
    }
    let (before, started) = (read_bytes(), Instant::now());
    let batches = per_segment * POOL as u64 - 1;
    append_batches(&store, next, batches);
    let ours = (read_bytes() - before, (batches * BATCH) as f64 / started.elapsed().as_secs_f64());
    drop(store);

    let path = dir.join("raw");
    let mut open = std::fs::File::options();
    let file = open.create(true).truncate(true).read(true).write(true).open(&path);
    let file = file.expect("raw file");
    file.write_all_at(&vec![1u8; (SEGMENT_BYTES * POOL as u64) as usize], 0).expect("prewrite");
    file.sync_all().expect("fsync");
    drop_page_cache();
    let bytes = vec![7u8; (32 + PAYLOAD) * BATCH as usize];
    let (before, started) = (read_bytes(), Instant::now());
    for k in 0..batches {
        file.write_all_at(&bytes, k * bytes.len() as u64).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let raw = (read_bytes() - before, batches as f64 / started.elapsed().as_secs_f64());
    Some((ours.0, ours.1, raw.0, raw.1))
}

pub fn recycle_reads(rounds: usize) {
    println!("## Appends into segment-pool files with the page cache dropped ({rounds} rounds)");
    println!("| round | raftlog: bytes read, entries/s | raw unaligned overwrite loop: bytes read, writes/s |");
    println!("|---|---|---|");
    for k in 0..rounds {
        let dir = tempfile::tempdir().expect("tempdir");
        let Some((ours, rate, raw, raw_rate)) = round(dir.path()) else {
            println!("(needs root: /proc/sys/vm/drop_caches is not writable)");
            return;
        };
        println!("| {k} | {ours} B, {rate:.0} | {raw} B, {raw_rate:.0} |");
    }
}
