//! Synced entries are never cut as a torn tail (issue "Synced entries are cut as a torn tail
//! when one byte of the active segment rots"): the sync mark written after every fdatasync
//! proves the last synced batch, so damage in it is `Corrupt`, never a silent cut. Only a power
//! loss that takes the mark with it leaves a tail of unknown durability, and the report says so.

mod common;

use std::path::PathBuf;

use common::{path, segment_names, DIR};
use raftlog::fs::SimFs;
use raftlog::{Corruption, Entry, Error, LogStore, Options, TailDurability};

const BATCH: u64 = 100;
const LAST: u64 = 20_000;
const PAYLOAD: usize = 64;
const RECORD: u64 = 32 + PAYLOAD as u64;

fn batch(first: u64) -> Vec<Entry> {
    (first..first + BATCH).map(|i| Entry::new(i, 1, vec![(i % 251) as u8; PAYLOAD])).collect()
}

/// The workload: 100-entry batches, each synced, until `sync` returns 20,000; then the
/// store is dropped without `close` (what kill -9 after the last acknowledgement leaves).
fn synced_in_batches() -> SimFs {
    let fs = SimFs::new();
    let store = common::open(&fs, Options::default());
    let mut durable = 0;
    while durable < LAST {
        store.append(&batch(durable + 1)).unwrap();
        durable = store.sync().unwrap();
    }
    assert_eq!(durable, LAST);
    fs
}

/// A second disk holding the same files, so each damage starts from the same image.
fn copy(fs: &SimFs) -> SimFs {
    let copy = SimFs::new();
    for (file, bytes) in fs.files() {
        copy.write_file_durable(&file, &bytes);
    }
    copy
}

/// The segment header and the hard-state record that opens the segment.
const FIRST_RECORD: u64 = 64 + 72;
const MARK: u64 = 32;

/// Offset of entry `index`'s record in the single segment written by `synced_in_batches`
/// (a sync mark after every batch).
fn offset_of(index: u64) -> u64 {
    FIRST_RECORD + (index - 1) * RECORD + (index - 1) / BATCH * MARK
}

fn active(fs: &SimFs) -> PathBuf {
    path(segment_names(fs).last().unwrap())
}

#[test]
fn rot_in_the_last_synced_batch_is_corrupt_not_a_torn_tail() {
    let fs = synced_in_batches();
    // A byte of a header, of a payload, of the very last record: each one flips the open.
    for index in [LAST - BATCH + 1, LAST - 13, LAST - 3, LAST] {
        for within in [5, 31, 32 + 17, RECORD - 1] {
            let damaged = copy(&fs);
            let byte = offset_of(index) + within;
            damaged.flip_bit(&active(&damaged), 8 * byte + 3).unwrap();
            let case = format!("byte {within} of entry {index}");
            match LogStore::open_with(damaged, DIR, Options::default()) {
                Err(Error::Corrupt { path, offset, indexes, reason }) => {
                    assert_eq!(path, active(&fs), "{case}");
                    assert_eq!(offset, offset_of(index), "{case}");
                    let indexes = indexes.expect("names the indexes");
                    assert!(indexes.contains(&index) && indexes.end > LAST, "{case}: {indexes:?}");
                    assert_eq!(reason, Corruption::DamagedBeforeDurable, "{case}");
                }
                other => panic!("{case}: expected Corrupt, got {other:?}"),
            }
        }
    }
}

#[test]
fn one_sync_of_everything_protects_the_whole_active_segment() {
    let fs = SimFs::new();
    let store = common::open(&fs, Options::default());
    for first in (1..=LAST).step_by(BATCH as usize) {
        store.append(&batch(first)).unwrap();
    }
    assert_eq!(store.sync().unwrap(), LAST);
    drop(store);
    for index in [1, LAST / 2, LAST] {
        let damaged = copy(&fs);
        let offset = FIRST_RECORD + (index - 1) * RECORD; // one batch: no mark in between
        damaged.flip_bit(&active(&damaged), 8 * (offset + 40)).unwrap();
        let err = LogStore::open_with(damaged, DIR, Options::default()).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { reason: Corruption::DamagedBeforeDurable, .. }),
            "entry {index}: {err}"
        );
    }
}

#[test]
fn the_proof_holds_after_a_reopen_and_after_a_clean_close() {
    // Reopened without new appends: the open's own fsync appends a mark of its own.
    let fs = synced_in_batches();
    drop(common::open(&fs, Options::default()));
    let damaged = copy(&fs);
    damaged.flip_bit(&active(&damaged), 8 * (offset_of(LAST) + 40)).unwrap();
    assert!(matches!(
        LogStore::open_with(damaged, DIR, Options::default()),
        Err(Error::Corrupt { reason: Corruption::DamagedBeforeDurable, .. })
    ));

    // Closed cleanly: the segment is sealed and opens through its index; every synced index
    // is kept, and the read that meets the damage marks it and never returns it.
    let store = common::open(&fs, Options::default());
    let sealed = active(&fs);
    store.close().unwrap();
    fs.flip_bit(&sealed, 8 * (offset_of(LAST) + 40)).unwrap();
    let store = common::open(&fs, Options::default());
    assert_eq!(store.last_index(), LAST);
    assert!(store.recovery_report().torn_tail.is_none());
    assert!(matches!(store.entries(LAST, LAST + 1, 0), Err(Error::Damaged { index: LAST, .. })));
    assert_eq!(store.entries(LAST - 1, LAST, 0).unwrap(), batch(LAST - BATCH + 1)[98..99]);
}

#[test]
fn a_lost_mark_leaves_a_tail_of_unknown_durability() {
    // Power loss lost the last mark (made durable only by the next fdatasync), and the last
    // synced batch rots: undecidable, so it is cut and reported as possibly acknowledged.
    let fs = synced_in_batches();
    let segment = active(&fs);
    let mut bytes = fs.read_file(&segment).unwrap();
    bytes.truncate((offset_of(LAST) + RECORD) as usize); // the last mark lost
    fs.write_file_durable(&segment, &bytes);
    fs.flip_bit(&segment, 8 * (offset_of(LAST - 3) + 40)).unwrap();
    let store = common::open(&fs, Options::default());
    let torn = store.recovery_report().torn_tail.clone().expect("a cut");
    assert_eq!(torn.durability, TailDurability::Unknown);
    assert_eq!(store.recovery_report().unknown_durability(), Some(LAST - 3..LAST + 1));
    assert_eq!(store.last_index(), LAST - 4);
}

#[test]
fn an_unsynced_batch_after_the_last_mark_is_cut_and_nothing_synced_with_it() {
    // Killed after appending a batch it never synced, then the batch rots: it is cut, every
    // synced index stays, and the report says the cut's durability is unknown (the store
    // cannot tell it from a synced batch whose mark a power loss took).
    let fs = synced_in_batches();
    let store = common::open(&fs, Options::default());
    store.append(&batch(LAST + 1)).unwrap();
    drop(store);
    fs.kill_process();
    let reopen_mark = MARK; // the open before the append wrote one
    let first_new = offset_of(LAST) + RECORD + MARK + reopen_mark;
    fs.flip_bit(&active(&fs), 8 * (first_new + 3 * RECORD + 40)).unwrap();
    let store = common::open(&fs, Options::default());
    let cut = store.recovery_report().torn_tail.clone().expect("a cut");
    assert_eq!(cut.offset, first_new + 3 * RECORD);
    assert_eq!(store.recovery_report().unknown_durability(), Some(LAST + 4..LAST + BATCH + 1));
    assert_eq!(store.last_index(), LAST + 3);
}

#[test]
fn rot_in_space_never_written_cuts_nothing_of_value() {
    let fs = SimFs::new();
    let options = Options::default().preallocate(true).segment_bytes_max(1 << 20);
    let store = LogStore::open_with(fs.clone(), DIR, options.clone()).unwrap();
    store.append(&batch(1)).unwrap();
    store.sync().unwrap();
    drop(store);
    // Past the zeros that end the stream: not part of it, nothing to cut.
    fs.flip_bit(&active(&fs), 8 * 500_000).unwrap();
    let store = LogStore::open_with(fs.clone(), DIR, options.clone()).unwrap();
    assert_eq!(store.recovery_report().torn_tail, None);
    assert_eq!(store.last_index(), BATCH);
    store.append(&batch(BATCH + 1)).unwrap();
    store.sync().unwrap();
    drop(store);
    // In the zero record header that ends the stream: a single set bit to the end of the file
    // is rot of space never written, cut as such.
    let end = common::stream_len(&fs.read_file(&active(&fs)).unwrap()) as u64;
    fs.flip_bit(&active(&fs), 8 * 500_000).unwrap(); // the first rot, undone
    fs.flip_bit(&active(&fs), 8 * end + 3).unwrap();
    let store = LogStore::open_with(fs.clone(), DIR, options).unwrap();
    let cut = store.recovery_report().torn_tail.clone().expect("the flipped bit is cut");
    assert_eq!((cut.offset, cut.durability), (end, TailDurability::Unsynced));
    assert_eq!(store.last_index(), 2 * BATCH);
}
