//! Opens a store in a temporary directory, appends and syncs a million entries, reopens it,
//! reads everything back (verifying each payload) and prints throughput and the recovery
//! report. Then it publishes a per-slot file snapshot of a stand-in state machine, compacts the
//! log behind it, and moves two slots to a follower in checksummed chunks.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::Instant;

use raftlog::{Entry, HardState, LogStore, Options, SnapshotStore};

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

    let log_dir = dir.path().join("log");
    let store = LogStore::open(&log_dir, Options::default())?;
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
    let log_dir = dir.path().join("log");
    let store = LogStore::open(&log_dir, Options::default())?;
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
    snapshot_and_move_slots(dir.path(), &store)
}

/// The state machine's files (16 slots x 8 files of 256 KiB) are snapshotted by hard links,
/// the log is compacted behind the snapshot, and slots 3 and 9 are sent to a follower.
fn snapshot_and_move_slots(
    dir: &std::path::Path,
    log: &LogStore,
) -> Result<(), Box<dyn std::error::Error>> {
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let snapshots = SnapshotStore::open(dir.join("snapshots"))?;
    let started = Instant::now();
    let applied = log.last_index();
    let mut writer = snapshots.begin(applied, log.term(applied)?, b"peers 1,2,3")?;
    for slot in 0..16u32 {
        for k in 0..8 {
            let path = state.join(format!("{slot}-{k}.tsfile"));
            std::fs::write(&path, vec![(slot * 8 + k) as u8; 256 << 10])?;
            std::fs::File::open(&path)?.sync_all()?;
            writer.add_file(slot, &format!("{k}.tsfile"), &path)?;
        }
    }
    let copied = writer.copied_files();
    let meta = writer.finish_and_compact(log)?;
    println!(
        "snapshot at index {} (term {}): {} files, {} MiB, {copied} copied (the rest hard-linked), \
         {:.1} ms with the state files' writes; log now starts at {}",
        meta.index,
        meta.term,
        meta.file_count(),
        meta.total_bytes() >> 20,
        started.elapsed().as_secs_f64() * 1e3,
        log.first_index()
    );

    let follower = SnapshotStore::open(dir.join("follower-snapshots"))?;
    let source = snapshots.source(&meta)?;
    let mut receiver = follower.receive(source.manifest())?;
    let started = Instant::now();
    let moving = [3u32, 9];
    let mut chunks = 0;
    for request in receiver.missing(Some(&moving), usize::MAX) {
        receiver.accept(&source.chunk(&request)?)?;
        chunks += 1;
    }
    let installed = receiver.install_slots(&moving)?;
    println!(
        "moved slots {:?} to the follower: {chunks} chunks, {} files, {} MiB verified and installed \
         in {:.1} ms",
        installed.slots.keys().collect::<Vec<_>>(),
        installed.file_count(),
        installed.total_bytes() >> 20,
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
