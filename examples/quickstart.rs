//! Opens a store in a temporary directory, appends and syncs a million entries, reopens it,
//! reads everything back (verifying each payload) and prints throughput and the recovery
//! report.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::Instant;

use raftlog::{Entry, HardState, LogStore, Options};

const ENTRIES: u64 = 1_000_000;
const PAYLOAD_BYTES: usize = 256;
const BATCH: u64 = 1_000;

fn payload(index: u64) -> Vec<u8> {
    let mut bytes = format!("entry {index:>10} ").into_bytes();
    bytes.resize(PAYLOAD_BYTES, (index % 251) as u8);
    bytes
}

fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / seconds
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    println!("raftlog quickstart in {}", dir.path().display());

    let store = LogStore::open(dir.path(), Options::default())?;
    let started = Instant::now();
    for first in (1..=ENTRIES).step_by(BATCH as usize) {
        let batch: Vec<Entry> =
            (first..first + BATCH).map(|i| Entry::new(i, 1, payload(i))).collect();
        store.append(&batch)?;
        store.sync()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = ENTRIES * PAYLOAD_BYTES as u64;
    println!(
        "appended {ENTRIES} entries of {PAYLOAD_BYTES} B in batches of {BATCH}, each batch synced: \
         {seconds:.2} s, {:.0} entries/s, {:.1} MiB/s of payload",
        ENTRIES as f64 / seconds,
        mib_per_s(bytes, seconds)
    );
    store.set_hard_state(HardState::new(1, 1, ENTRIES))?;
    println!("durable index {}, hard state {}", store.durable_index(), store.hard_state());
    store.close()?; // seals the active segment: the next open reads no record

    let started = Instant::now();
    let store = LogStore::open(dir.path(), Options::default())?;
    println!(
        "reopened in {:.1} ms: {:?}",
        started.elapsed().as_secs_f64() * 1e3,
        store.recovery_report()
    );

    let started = Instant::now();
    let mut next = 1;
    while next <= store.last_index() {
        for entry in store.entries(next, store.last_index() + 1, 4 << 20)? {
            assert_eq!(
                (entry.index, &entry.payload[..]),
                (next, &payload(next)[..]),
                "read back wrong bytes"
            );
            next += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "read back and verified {} entries: {seconds:.2} s, {:.0} entries/s, {:.1} MiB/s",
        next - 1,
        (next - 1) as f64 / seconds,
        mib_per_s(bytes, seconds)
    );
    Ok(())
}
