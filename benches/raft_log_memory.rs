//! Resident memory while 10 million entries pass through a `RaftLog`: appended, committed,
//! applied and compacted in batches, as a follower does. Prints the committed window's peak
//! size against its bounds and the process's peak resident memory (VmHWM).
//! `cargo bench --bench raft_log_memory` (RAFTLOG_ENTRIES overrides the count).

use std::time::Instant;

use raftlog::{Entry, LogStore, Options, RaftLog, RaftLogOptions, SyncPolicy};

const BATCH: u64 = 1_000;
const PAYLOAD_BYTES: usize = 128;

fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let total: u64 =
        std::env::var("RAFTLOG_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let (entries_min, entries_max, bytes_max) = (10_000usize, 20_000usize, 4u64 << 20);
    let dir = tempfile::tempdir().unwrap();
    let store =
        LogStore::open(dir.path(), Options::default().sync_policy(SyncPolicy::Never)).unwrap();
    let options = RaftLogOptions::default()
        .min_entries_in_memory(entries_min)
        .max_entries_in_memory(entries_max)
        .max_bytes_in_memory(bytes_max);
    let log = RaftLog::with_options(store, options).unwrap();
    let rss_start = proc_status_kib("VmRSS:");
    let (mut peak_entries, mut peak_bytes) = (0usize, 0u64);
    let started = Instant::now();
    for first in (1..=total).step_by(BATCH as usize) {
        let batch: Vec<Entry> = (first..first + BATCH)
            .map(|i| Entry::new(i, 1, vec![(i % 251) as u8; PAYLOAD_BYTES]))
            .collect();
        log.append(&batch).unwrap();
        log.commit_to(first + BATCH - 1).unwrap();
        let (entries, bytes) = log.committed_in_memory();
        peak_entries = peak_entries.max(entries);
        peak_bytes = peak_bytes.max(bytes);
        log.applied_to(first + BATCH - 1).unwrap();
        if first % 1_000_000 == 1 && first > 1 {
            log.compact(first - 1).unwrap();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "entries passed through: {total} of {PAYLOAD_BYTES} B in {seconds:.1} s ({:.0} entries/s)",
        total as f64 / seconds
    );
    println!(
        "committed window bounds: min {entries_min} / max {entries_max} entries, {bytes_max} bytes"
    );
    println!("committed window peak:   {peak_entries} entries, {peak_bytes} payload bytes");
    println!(
        "resident memory: {} KiB at start, {} KiB at the end, peak (VmHWM) {} KiB",
        rss_start,
        proc_status_kib("VmRSS:"),
        proc_status_kib("VmHWM:")
    );
}
