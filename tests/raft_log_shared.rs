//! `RaftLog` as engines use it: shared between an appending thread and readers that never
//! wait for the writer's I/O, atomic on bad input (memory and disk untouched, also after a
//! reopen), bounded in memory, and kept right by snapshot publish and install.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::gated::GatedFs;
use common::{big_entries, entries, DIR};
use raftlog::fs::{FileSystem, SimFs};
use raftlog::{
    Entry, Error, LogStore, Options, RaftLog, RaftLogOptions, SnapshotOptions, SnapshotStore,
    INDEX_MAX,
};

fn assert_shareable<T: Send + Sync>() {}

/// Every read of the issue, run on another thread; `None` if one of them hung (waited for
/// the blocked fsync).
fn read_everything<F: FileSystem>(log: &Arc<RaftLog<F>>) -> Option<String> {
    let (done, finished) = mpsc::channel();
    let reader = Arc::clone(log);
    std::thread::spawn(move || {
        let last = reader.last_index();
        let summary = format!(
            "first {} last {last} last_term {} commit {} applied {} term {:?} match {} \
             entries {:?} up_to_date {} next {:?}",
            reader.first_index(),
            reader.last_term(),
            reader.commit_index(),
            reader.applied_index(),
            reader.term(last),
            reader.match_term(1, 1),
            reader.entries(1, last + 1, u64::MAX).map(|e| e.len()),
            reader.is_up_to_date(last, reader.last_term()),
            reader.next_committed_entries(u64::MAX).map(|e| e.len()),
        );
        let _ = done.send(summary);
    });
    finished.recv_timeout(Duration::from_secs(60)).ok()
}

#[test]
fn reads_never_wait_for_a_sync_or_a_rotation() {
    assert_shareable::<RaftLog<SimFs>>();
    let fs = GatedFs::default();
    let options = Options::default().segment_bytes_max(4096);
    let store = LogStore::open_with(fs.clone(), DIR, options).unwrap();
    let log = Arc::new(RaftLog::new(store).unwrap());
    log.append(&big_entries(1, 10, 1, 100)).unwrap();
    log.commit_to(5).unwrap();

    // `sync` stuck in its fdatasync.
    fs.set_closed(true);
    let syncer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.sync())
    };
    fs.wait_for_blocked_sync();
    let seen = read_everything(&log).expect("a read waited for the fsync of sync");
    assert!(seen.contains("last 10") && seen.contains("commit 5"), "{seen}");
    fs.set_closed(false);
    assert_eq!(syncer.join().unwrap().unwrap(), 10);

    // A rotation: the append that seals a full segment makes no fsync, so it returns while
    // every fsync is stuck; the sync after it, which settles the rotation, is what waits.
    fs.set_closed(true);
    assert_eq!(log.append(&big_entries(11, 40, 1, 100)).unwrap(), 50);
    let syncer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.sync())
    };
    fs.wait_for_blocked_sync();
    let seen = read_everything(&log).expect("a read waited for a rotation's fsync");
    assert!(seen.contains("last 50"), "{seen}");
    // The state machine's thread does not wait for the Raft thread either.
    let (done, finished) = mpsc::channel();
    let applier = Arc::clone(&log);
    std::thread::spawn(move || done.send(applier.applied_to(5).is_ok()).unwrap());
    assert_eq!(finished.recv_timeout(Duration::from_secs(60)).ok(), Some(true));
    fs.set_closed(false);
    assert_eq!(syncer.join().unwrap().unwrap(), 50);
    assert_eq!(log.entries(1, 51, u64::MAX).unwrap(), big_entries(1, 50, 1, 100));
}

#[test]
fn concurrent_readers_see_a_consistent_log_while_a_leader_overwrites_it() {
    let fs = SimFs::new();
    let options = Options::default().segment_bytes_max(8192);
    let store = LogStore::open_with(fs, DIR, options).unwrap();
    let log_options = RaftLogOptions::default().max_uncommitted_bytes_in_memory(250);
    let log = Arc::new(RaftLog::with_options(store, log_options).unwrap());
    let tagged = |from: u64, count: u64, term: u64| -> Vec<Entry> {
        (from..from + count).map(|i| Entry::new(i, term, vec![(i + term) as u8; 100])).collect()
    };
    log.append(&tagged(1, 30, 1)).unwrap();
    log.commit_to(20).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let last = log.last_index();
                    // Whatever it returns is one log: contiguous, terms never going back,
                    // every payload that of its (index, term).
                    let Ok(got) = log.entries(15, last + 1, u64::MAX) else { continue };
                    for pair in got.windows(2) {
                        assert_eq!(pair[1].index, pair[0].index + 1);
                        assert!(pair[1].term >= pair[0].term, "{:?}", (&pair[0], &pair[1]));
                        // The leader of term t wrote from 21 + t % 7 on: a term can only
                        // change there, or the read mixed two logs.
                        if pair[1].term != pair[0].term {
                            let starts = Some(21 + pair[1].term % 7);
                            assert_eq!(starts, Some(pair[1].index), "{:?}", (&pair[0], &pair[1]));
                        }
                    }
                    for entry in &got {
                        assert_eq!(entry.payload[0], (entry.index + entry.term) as u8);
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // Each round, a new leader of term `term` overwrites the uncommitted tail.
    for term in 2..2000u64 {
        let from = 21 + term % 7;
        let batch: Vec<Entry> =
            (from..from + 10).map(|i| Entry::new(i, term, vec![(i + term) as u8; 100])).collect();
        log.append(&batch).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0);
}

/// Everything a caller can observe of a log, in memory.
fn observe(log: &RaftLog<SimFs>) -> String {
    let all = log.entries(log.first_index(), log.last_index() + 1, u64::MAX).unwrap();
    let pairs: Vec<(u64, u64)> = all.iter().map(|e| (e.index, e.term)).collect();
    format!(
        "first {} last {} commit {} applied {} entries {pairs:?} hard state {}",
        log.first_index(),
        log.last_index(),
        log.commit_index(),
        log.applied_index(),
        log.hard_state()
    )
}

#[test]
fn a_rejected_call_changes_nothing_in_memory_or_on_disk() {
    type Call = fn(&RaftLog<SimFs>) -> Result<(), Error>;
    type Expected = fn(&Error) -> bool;
    let cases: Vec<(&str, Call, Expected)> = vec![
        (
            "append whose second entry's term goes back",
            |log| log.append(&entries(3, &[3, 2])).map(drop),
            |e| matches!(e, Error::TermRegression { index: 4, .. }),
        ),
        (
            "append with a gap inside the batch",
            |log| log.append(&[Entry::new(3, 3, "a"), Entry::new(5, 3, "b")]).map(drop),
            |e| matches!(e, Error::NotContiguous { expected: 4, got: 5 }),
        ),
        (
            "append after a gap",
            |log| log.append(&entries(5, &[3])).map(drop),
            |e| matches!(e, Error::NotContiguous { expected: 4, got: 5 }),
        ),
        (
            "append over a committed entry",
            |log| log.append(&entries(1, &[4])).map(drop),
            |e| matches!(e, Error::Committed { index: 1, commit: 1 }),
        ),
        (
            "append of an entry over the size limit",
            |log| log.append(&[Entry::new(3, 3, "a"), Entry::new(4, 3, vec![0; 2048])]).map(drop),
            |e| matches!(e, Error::EntryTooLarge { index: 4, .. }),
        ),
        (
            "append whose first term is below its predecessor's",
            |log| log.append(&entries(3, &[1])).map(drop),
            |e| matches!(e, Error::TermRegression { index: 3, .. }),
        ),
        (
            "maybe_append with a conflict then a term going back",
            |log| log.maybe_append(1, 1, 3, &entries(2, &[4, 3])).map(drop),
            |e| matches!(e, Error::TermRegression { index: 3, .. }),
        ),
        (
            "maybe_append with a conflict then a gap",
            |log| {
                log.maybe_append(2, 2, 3, &[Entry::new(3, 4, "a"), Entry::new(5, 4, "b")]).map(drop)
            },
            |e| matches!(e, Error::NotContiguous { expected: 4, got: 5 }),
        ),
        (
            "maybe_append conflicting at the commit index",
            |log| log.maybe_append(0, 0, 3, &entries(1, &[5, 5])).map(drop),
            |e| matches!(e, Error::Committed { index: 1, .. }),
        ),
        (
            "maybe_append past the largest index",
            |log| log.maybe_append(u64::MAX, 1, 0, &entries(1, &[1])).map(drop),
            |e| matches!(e, Error::IndexTooLarge { .. }),
        ),
        (
            "maybe_append reaching past INDEX_MAX",
            |log| {
                let batch =
                    [Entry::new(INDEX_MAX, 3, "a"), Entry::new(INDEX_MAX.wrapping_add(1), 3, "b")];
                log.maybe_append(INDEX_MAX - 1, 3, 0, &batch).map(drop)
            },
            |e| matches!(e, Error::IndexTooLarge { .. }),
        ),
        (
            "restore beyond INDEX_MAX",
            |log| log.restore(INDEX_MAX + 1, 9),
            |e| matches!(e, Error::IndexTooLarge { .. }),
        ),
        (
            "restore below the commit index",
            |log| log.restore(0, 9),
            |e| matches!(e, Error::Committed { .. }),
        ),
        (
            "compact beyond the applied index",
            |log| log.compact(2),
            |e| matches!(e, Error::NotApplied { index: 2, applied: 1 }),
        ),
        (
            "commit beyond the last index",
            |log| log.commit_to(4),
            |e| matches!(e, Error::Unavailable { index: 4, last_index: 3 }),
        ),
        (
            "applied beyond the commit index",
            |log| log.applied_to(2),
            |e| matches!(e, Error::NotCommitted { index: 2, commit: 1 }),
        ),
        (
            "an inverted range",
            |log| log.entries(3, 2, 0).map(drop),
            |e| matches!(e, Error::InvalidRange { lo: 3, hi: 2 }),
        ),
    ];
    for (name, call, expected) in cases {
        let fs = SimFs::new();
        let options = Options::default().entry_bytes_max(1024);
        let store = LogStore::open_with(fs.clone(), DIR, options.clone()).unwrap();
        let log = RaftLog::new(store).unwrap();
        log.append(&entries(1, &[1, 2, 3])).unwrap();
        log.commit_to(1).unwrap();
        log.applied_to(1).unwrap();
        log.sync().unwrap();
        let before = (observe(&log), common::snapshot(&fs));
        let error = call(&log).expect_err(name);
        assert!(expected(&error), "{name}: {error:?}");
        assert_eq!(observe(&log), before.0, "{name}: memory changed");
        assert_eq!(common::snapshot(&fs), before.1, "{name}: disk changed");
        drop(log);
        let reopened = RaftLog::new(LogStore::open_with(fs, DIR, options).unwrap()).unwrap();
        reopened.applied_to(1).unwrap();
        assert_eq!(observe(&reopened), before.0, "{name}: changed after a reopen");
    }
}

#[test]
fn index_arithmetic_on_caller_values_is_checked() {
    let fs = SimFs::new();
    let store = common::open(&fs, Options::default());
    let err = store.reset(u64::MAX - 1, 1).unwrap_err();
    assert!(matches!(err, Error::IndexTooLarge { index, max: INDEX_MAX } if index == u64::MAX - 1));
    store.reset(INDEX_MAX - 1, 1).unwrap();
    store.append(&[Entry::new(INDEX_MAX, 1, "last")]).unwrap();
    let err = store.append(&[Entry::new(INDEX_MAX.wrapping_add(1), 1, "beyond")]).unwrap_err();
    assert!(matches!(err, Error::IndexTooLarge { .. }), "{err}");
    assert_eq!(store.last_index(), INDEX_MAX);
    drop(store);

    let log = RaftLog::new(common::open(&fs, Options::default())).unwrap();
    assert_eq!(log.last_index(), INDEX_MAX);
    assert_eq!(log.maybe_append(u64::MAX, 1, 0, &[]).unwrap(), None);
    assert!(matches!(log.term(u64::MAX), Err(Error::Unavailable { .. })));
    assert!(matches!(log.entries(INDEX_MAX, u64::MAX, 0), Err(Error::Unavailable { .. })));
    assert!(!log.is_up_to_date(u64::MAX, 0));
}

#[test]
fn an_empty_range_is_empty_anywhere_in_the_log() {
    let log = RaftLog::new(common::open(&SimFs::new(), Options::default())).unwrap();
    log.append(&entries(1, &[1, 1, 2, 2, 3])).unwrap();
    log.commit_to(4).unwrap();
    log.applied_to(3).unwrap();
    log.compact(2).unwrap();
    for lo in log.first_index()..=log.last_index() + 1 {
        assert_eq!(log.entries(lo, lo, 0).unwrap(), vec![], "entries({lo}, {lo})");
    }
    assert!(matches!(log.entries(2, 2, 0), Err(Error::Compacted { .. })));
    assert!(matches!(log.entries(7, 7, 0), Err(Error::Unavailable { .. })));
}

#[test]
fn a_long_uncommitted_tail_is_not_loaded_at_open_and_stays_bounded() {
    let fs = SimFs::new();
    let store = common::open(&fs, Options::default());
    store.append(&big_entries(1, 2000, 1, 1000)).unwrap();
    store.sync().unwrap();
    drop(store);
    let options = RaftLogOptions::default().max_uncommitted_bytes_in_memory(64 << 10);
    let log = RaftLog::with_options(common::open(&fs, Options::default()), options).unwrap();
    assert_eq!(log.uncommitted_in_memory(), (0, 0), "the tail was loaded at open");
    assert_eq!(log.last_index(), 2000);
    log.append(&big_entries(2001, 1000, 2, 1000)).unwrap();
    let (held, bytes) = log.uncommitted_in_memory();
    assert!(bytes <= 64 << 10, "{held} entries, {bytes} bytes in memory");
    assert_eq!(held, 65);
    assert_eq!(log.entries(1, 3001, u64::MAX).unwrap().len(), 3000);
    assert_eq!(log.entries(1990, 2010, u64::MAX).unwrap()[15].term, 2);
    log.commit_to(2990).unwrap();
    assert_eq!(log.next_committed_entries(u64::MAX).unwrap().len(), 2990);
}

#[test]
fn snapshot_publish_and_install_go_through_the_raft_log() {
    let fs = SimFs::new();
    let log = RaftLog::new(common::open(&fs, Options::default())).unwrap();
    log.append(&entries(1, &[1; 100])).unwrap();
    log.commit_to(80).unwrap();
    log.applied_to(70).unwrap();
    log.sync().unwrap();
    let snapshots =
        SnapshotStore::open_with(fs.clone(), "/snap", SnapshotOptions::default()).unwrap();

    // A snapshot of the state machine at 60: the log is compacted behind it.
    snapshots.begin(60, 1, b"").unwrap().finish_and_compact(&log).unwrap();
    assert_eq!((log.first_index(), log.commit_index(), log.applied_index()), (61, 80, 70));
    assert_eq!(log.entries(61, 62, 0).unwrap()[0].index, 61);
    assert!(matches!(log.compact(71), Err(Error::NotApplied { index: 71, applied: 70 })));

    // A follower whose log is behind installs a snapshot: log, commit and applied follow it.
    let published = snapshots.begin(150, 2, b"peers").unwrap().finish().unwrap();
    let source = snapshots.source(&published).unwrap();
    let follower_fs = SimFs::new();
    let follower = RaftLog::new(common::open(&follower_fs, Options::default())).unwrap();
    follower.append(&entries(1, &[1; 10])).unwrap();
    let receiver_store =
        SnapshotStore::open_with(follower_fs.clone(), "/snap", SnapshotOptions::default()).unwrap();
    let receiver = receiver_store.receive(source.manifest()).unwrap();
    let meta = receiver.install_with_log(&follower).unwrap();
    assert_eq!(meta.index, 150);
    assert_eq!(
        (follower.first_index(), follower.last_index(), follower.last_term()),
        (151, 150, 2)
    );
    assert_eq!((follower.commit_index(), follower.applied_index()), (150, 150));
    assert_eq!(follower.append(&entries(151, &[2])).unwrap(), 151);

    // A follower holding the snapshot's entry commits, applies and compacts through it.
    let holder = RaftLog::new(common::open(&SimFs::new(), Options::default())).unwrap();
    holder.append(&entries(1, &[1; 5])).unwrap();
    raftlog::SnapshotLog::follow_snapshot(&holder, 3, 1).unwrap();
    assert_eq!((holder.first_index(), holder.commit_index(), holder.applied_index()), (4, 3, 3));
    assert_eq!(holder.last_index(), 5);
}
