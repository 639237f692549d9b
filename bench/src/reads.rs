//! Catch-up reads: random 100-entry ranges of sealed data, hot page cache; and the same on
//! stores opened afresh every round (mappings cold).

use std::time::Instant;

use raft_engine::Engine;
use raftlog::LogStore;

use crate::*;

pub fn reads(rounds: usize) {
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
pub fn cold_reads(rounds: usize) {
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

