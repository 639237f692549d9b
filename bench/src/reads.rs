//! Catch-up reads: random 100-entry ranges of sealed data, hot page cache; and the same on
//! stores opened afresh every round (mappings cold). raftlog, raft-engine and raft-log read the
//! same ranges, one after the other within a round.

use std::time::Instant;

use raft_engine::Engine;
use raftlog::LogStore;

use crate::*;

/// Entries per second of reading every range of `starts` with `read` (entries read per call).
fn rate(starts: &[u64], mut read: impl FnMut(u64) -> usize) -> f64 {
    let started = Instant::now();
    let entries: usize = starts.iter().map(|&lo| read(lo)).sum();
    entries as f64 / started.elapsed().as_secs_f64()
}

fn read_raftlog(store: &LogStore, lo: u64) -> usize {
    store.entries(lo, lo + RANGE, u64::MAX).expect("raftlog read").len()
}

fn read_raft_engine(
    engine: &Engine,
    out: &mut Vec<protobuf::well_known_types::BytesValue>,
    lo: u64,
) -> usize {
    out.clear();
    engine
        .fetch_entries_to::<IndexedBytes>(REGION, lo, lo + RANGE, None, out)
        .expect("raft-engine read")
}

/// The three stores of one workload, written alike.
struct Dirs {
    ours: tempfile::TempDir,
    theirs: tempfile::TempDir,
    peer: tempfile::TempDir,
}

fn write_all(entries: u64, len: usize) -> Dirs {
    let dirs = Dirs {
        ours: tempfile::tempdir().expect("tempdir"),
        theirs: tempfile::tempdir().expect("tempdir"),
        peer: tempfile::tempdir().expect("tempdir"),
    };
    write_raftlog(dirs.ours.path(), entries, len);
    write_raft_engine(dirs.theirs.path(), entries, len);
    peer::write(dirs.peer.path(), entries, len, BATCH);
    dirs
}

pub fn reads(rounds: usize) {
    println!("## Catch-up reads: random ranges of {RANGE} entries, hot page cache");
    println!("| payload | raftlog entries/s | raft-engine entries/s | raft-log entries/s | raftlog / raft-engine | raftlog / raft-log |");
    println!("|---|---|---|---|---|---|");
    for (len, entries) in [(256usize, 1_000_000u64), (4096, 100_000)] {
        let dirs = write_all(entries, len);
        let store = LogStore::open(dirs.ours.path(), raftlog_options()).expect("reopen raftlog");
        let engine =
            Engine::open(raft_engine_config(dirs.theirs.path())).expect("reopen raft-engine");
        let log = peer::open(dirs.peer.path());
        let (mut ours, mut theirs, mut peers) = (Vec::new(), Vec::new(), Vec::new());
        let mut out = Vec::new();
        for round in 0..rounds {
            let starts = range_starts(entries, round as u64);
            ours.push(rate(&starts, |lo| read_raftlog(&store, lo)));
            theirs.push(rate(&starts, |lo| read_raft_engine(&engine, &mut out, lo)));
            peers.push(rate(&starts, |lo| peer::read(&log, lo, lo + RANGE)));
        }
        let (ours, theirs, peers) = (median(ours), median(theirs), median(peers));
        println!(
            "| {len} B | {ours:.0} | {theirs:.0} | {peers:.0} | {:.2}x | {:.2}x |",
            ours / theirs,
            ours / peers
        );
    }
}

/// Catch-up reads on stores just opened: each round opens every store afresh (page cache
/// warm; maps, memtables and caches cold) and reads `READS_PER_ROUND` random ranges. raftlog
/// runs twice: on a store written without a segment pool, and on one written through a pool of
/// two files, whose segments sit in the page cache in the prefill's 1 MiB folios (which the
/// kernel maps into a reader with less work than small ones).
pub fn cold_reads(rounds: usize) {
    const ENTRIES: u64 = 4_000_000;
    println!(
        "## Catch-up reads on a store just opened: {ENTRIES} entries of 256 B, ranges of {RANGE}"
    );
    println!("| round | raftlog entries/s | raftlog, written through a pool | raft-engine entries/s | raft-log entries/s | raftlog / raft-engine | pool-written / raft-engine | raftlog / raft-log |");
    println!("|---|---|---|---|---|---|---|---|");
    let dirs = write_all(ENTRIES, 256);
    let pooled = tempfile::tempdir().expect("tempdir");
    write_raftlog_with(pooled.path(), ENTRIES, 256, 2);
    let mut rates: [Vec<f64>; 4] = Default::default();
    for round in 0..rounds {
        let starts = range_starts(ENTRIES, 100 + round as u64);
        let raftlog_rate = |dir: &std::path::Path| {
            let store = LogStore::open(dir, raftlog_options()).expect("reopen raftlog");
            rate(&starts, |lo| read_raftlog(&store, lo))
        };
        let ours = raftlog_rate(dirs.ours.path());
        let pool = raftlog_rate(pooled.path());
        let engine =
            Engine::open(raft_engine_config(dirs.theirs.path())).expect("reopen raft-engine");
        let mut out = Vec::new();
        let theirs = rate(&starts, |lo| read_raft_engine(&engine, &mut out, lo));
        drop(engine);
        let log = peer::open(dirs.peer.path());
        let peers = rate(&starts, |lo| peer::read(&log, lo, lo + RANGE));
        drop(log);
        print_cold_row(&round.to_string(), [ours, pool, theirs, peers]);
        for (all, one) in rates.iter_mut().zip([ours, pool, theirs, peers]) {
            all.push(one);
        }
    }
    print_cold_row("median", rates.map(median));
}

fn print_cold_row(label: &str, [ours, pool, theirs, peers]: [f64; 4]) {
    println!(
        "| {label} | {ours:.0} | {pool:.0} | {theirs:.0} | {peers:.0} | {:.2}x | {:.2}x | {:.2}x |",
        ours / theirs,
        pool / theirs,
        ours / peers
    );
}
