//! The fault-injection rules: failed writes and fsyncs poison the store until it is reopened,
//! damaged bytes are never returned by reads, readers and appends never wait for an fsync.

mod common;

use common::segments::{one_segment, record_offset};
use common::{append_each, big_entries, open, path, segment_names, small_segments};
use raftlog::fs::{FaultOp, SimFs};
use raftlog::{Corruption, Error, HardState, LogStore, Options};

#[test]
fn a_failed_fsync_poisons_the_store_until_reopen() {
    let fs = SimFs::new();
    let store = one_segment(&fs, 3);
    fs.fail_nth(FaultOp::SyncData, 0);
    store.append(&big_entries(4, 1, 1, 100)).unwrap();
    assert!(matches!(store.sync(), Err(Error::Io { op: "sync_data", .. })));
    assert!(matches!(store.append(&big_entries(5, 1, 1, 100)), Err(Error::Poisoned)));
    assert!(matches!(store.sync(), Err(Error::Poisoned)));
    assert!(matches!(store.set_hard_state(HardState::new(1, 0, 1)), Err(Error::Poisoned)));
    assert!(matches!(store.truncate_suffix(4), Err(Error::Poisoned)));
    assert!(matches!(store.compact_to(1), Err(Error::Poisoned)));
    assert!(matches!(store.reset(9, 9), Err(Error::Poisoned)));
    assert_eq!(store.entries(1, 4, u64::MAX).unwrap(), big_entries(1, 3, 1, 100), "reads go on");
    drop(store);
    let store = open(&fs, Options::default());
    assert!(store.last_index() >= 3);
    store.append(&big_entries(store.last_index() + 1, 1, 1, 100)).unwrap();
}

#[test]
fn failed_writes_and_a_full_disk_poison_the_store() {
    type Inject = fn(&SimFs);
    let faults: [(&str, Inject); 4] = [
        ("EIO on write", |fs| fs.fail_nth(FaultOp::Write, 0)),
        ("ENOSPC", |fs| fs.set_space_limit(Some(6000))),
        ("failed directory sync at rotation", |fs| fs.fail_nth(FaultOp::SyncDir, 0)),
        ("failed create at rotation", |fs| fs.fail_nth(FaultOp::Create, 0)),
    ];
    for (name, inject) in faults {
        let fs = SimFs::new();
        let store = open(&fs, small_segments());
        append_each(&store, &big_entries(1, 3, 1, 300));
        store.sync().unwrap();
        inject(&fs);
        let failed = (4..40).find_map(|i| store.append(&big_entries(i, 1, 1, 300)).err());
        assert!(matches!(failed, Some(Error::Io { .. })), "{name}: got {failed:?}");
        assert!(
            matches!(
                store.append(&big_entries(store.last_index() + 1, 1, 1, 300)),
                Err(Error::Poisoned)
            ),
            "{name}"
        );
        drop(store);
        fs.set_space_limit(None);
        let store = open(&fs, small_segments());
        assert_eq!(store.entries(1, 4, u64::MAX).unwrap(), big_entries(1, 3, 1, 300), "{name}");
    }
}

#[test]
fn damaged_bytes_are_never_returned_by_reads() {
    let fs = SimFs::new();
    let store = one_segment(&fs, 5);
    let name = segment_names(&fs)[0].clone();
    fs.flip_bit(&path(&name), 8 * (record_offset(2) + 60)).unwrap();
    let got = store.entries(1, 6, u64::MAX);
    let Err(Error::Corrupt { path: p, offset, indexes, reason }) = got else {
        panic!("got {got:?}")
    };
    assert_eq!(
        (p, offset, indexes, reason),
        (path(&name), record_offset(2), Some(3..4), Corruption::Checksum)
    );
    assert_eq!(store.entries(1, 3, u64::MAX).unwrap(), big_entries(1, 2, 1, 100));
    store.append(&big_entries(6, 1, 1, 100)).unwrap(); // a read error does not poison
}

#[test]
fn readers_and_appends_never_wait_for_an_fsync_in_progress() {
    let fs = common::gated::GatedFs::default();
    let store = std::sync::Arc::new(
        LogStore::open_with(fs.clone(), common::DIR, Options::default()).unwrap(),
    );
    store.append(&big_entries(1, 10, 1, 100)).unwrap();
    fs.set_closed(true);
    let syncer = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || store.sync())
    };
    fs.wait_for_blocked_sync();
    // The fsync is stuck; these would hang the test if they waited for it.
    let (done, finished) = std::sync::mpsc::channel();
    let worker = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            let read = store.entries(1, 11, u64::MAX).map(|e| e.len());
            let term = store.term(10);
            let appended = store.append(&big_entries(11, 1, 1, 100));
            done.send((read.ok(), term.ok(), appended.is_ok())).unwrap();
        })
    };
    let got = finished.recv_timeout(std::time::Duration::from_secs(60));
    assert_eq!(
        got.ok(),
        Some((Some(10), Some(1), true)),
        "a reader or appender waited for the fsync"
    );
    assert_eq!(store.durable_index(), 0);
    fs.set_closed(false);
    assert_eq!(syncer.join().unwrap().unwrap(), 10);
    worker.join().unwrap();
}
