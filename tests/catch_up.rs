//! Catch-up reads on the real disk: sealed segments are opened through their index without a
//! scan, and their payloads are handed out from the mapping without a copy, valid for as long
//! as they live, even after compaction deletes the segment.

use raftlog::{Entry, LogStore, Options};

fn entry(index: u64) -> Entry {
    Entry::new(index, 1 + index / 500, vec![(index % 251) as u8; 256])
}

fn options() -> Options {
    Options::default().segment_bytes_max(64 << 10)
}

#[test]
fn sealed_payloads_are_shared_not_copied_and_outlive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), options()).unwrap();
    for first in (1..=2000).step_by(100) {
        store.append(&(first..first + 100).map(entry).collect::<Vec<_>>()).unwrap();
    }
    store.sync().unwrap();
    let first_read = store.entries(1, 101, u64::MAX).unwrap();
    let second_read = store.entries(50, 51, u64::MAX).unwrap();
    assert_eq!(first_read, (1..101).map(entry).collect::<Vec<_>>());
    assert_eq!(
        first_read[49].payload.as_ptr(),
        second_read[0].payload.as_ptr(),
        "two reads of a sealed entry share the mapped bytes"
    );
    store.compact_to(1500).unwrap();
    assert!(!dir.path().join("0000000000000001.seg").exists(), "the first segment is deleted");
    assert_eq!(first_read, (1..101).map(entry).collect::<Vec<_>>(), "still readable");
    drop(store);

    let store = LogStore::open(dir.path(), options()).unwrap();
    let report = store.recovery_report();
    assert!(report.indexed_segments >= 1 && report.rebuilt_indexes.is_empty(), "{report:?}");
    assert!(report.scanned_bytes <= 64 << 10, "only the active segment is scanned: {report:?}");
    assert_eq!(
        store.entries(1501, 2001, u64::MAX).unwrap(),
        (1501..2001).map(entry).collect::<Vec<_>>()
    );
}

#[test]
fn after_close_the_next_open_scans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), options()).unwrap();
    for first in (1..=1000).step_by(100) {
        store.append(&(first..first + 100).map(entry).collect::<Vec<_>>()).unwrap();
    }
    store.close().unwrap();
    let store = LogStore::open(dir.path(), options()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.scanned_bytes, 0, "no record is read: {report:?}");
    assert!(report.rebuilt_indexes.is_empty() && report.torn_tail.is_none(), "{report:?}");
    assert_eq!(store.entries(1, 1001, u64::MAX).unwrap(), (1..1001).map(entry).collect::<Vec<_>>());
    store.append(&[entry(1001)]).unwrap();
    store.close().unwrap();
    let store = LogStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.last_index(), 1001);
}
