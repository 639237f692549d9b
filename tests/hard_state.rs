//! The hard state rides the log (format 2): one fdatasync persists a Raft `Ready`'s entries,
//! hard state and engine metadata together; they survive crashes, rotation, truncation,
//! compaction, reset and a clean close; bad metadata is refused whole.

mod common;

use common::{big_entries, entries, open, DIR};
use raftlog::fs::{FaultOp, SimFs};
use raftlog::{Error, HardState, LogStore, Options, RaftLog};

const METADATA_BYTES_MAX: usize = 4096;

/// Makes every fdatasync after the next one fail: an `Ok` then proves a single fdatasync.
fn allow_one_fsync(fs: &SimFs) {
    fs.fail_nth(FaultOp::SyncData, 1);
}

#[test]
fn a_ready_is_persisted_with_one_fdatasync() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default());
    allow_one_fsync(&fs);
    let durable = store
        .persist(&entries(1, &[1, 1, 2]), Some(HardState::new(2, 7, 3)), Some(b"voters 1,2,3"))
        .expect("one fdatasync for entries, hard state and metadata");
    assert_eq!(durable, 3);
    fs.crash(7); // a power loss right after: all of it was durable
    let store = open(&fs, Options::default());
    assert_eq!(store.last_index(), 3);
    assert_eq!(store.hard_state(), HardState::new(2, 7, 3));
    assert_eq!(store.metadata(), &b"voters 1,2,3"[..]);
}

#[test]
fn raft_log_sync_persists_entries_and_commit_with_one_fdatasync() {
    let fs = SimFs::new();
    let log = RaftLog::new(open(&fs, Options::default())).unwrap();
    log.append(&entries(1, &[1, 1, 1])).unwrap();
    log.commit_to(2).unwrap();
    allow_one_fsync(&fs);
    assert_eq!(log.sync().expect("a single fdatasync"), 3);
    drop(log);
    fs.crash(3);
    let log = RaftLog::new(open(&fs, Options::default())).unwrap();
    assert_eq!((log.last_index(), log.commit_index()), (3, 2));
}

#[test]
fn the_hard_state_and_metadata_survive_every_change_of_segment() {
    let fs = SimFs::new();
    let options = Options::default().segment_bytes_max(2048);
    let store = LogStore::open_with(fs.clone(), DIR, options.clone()).unwrap();
    store.append(&big_entries(1, 4, 1, 300)).unwrap();
    store.persist(&[], Some(HardState::new(1, 2, 4)), Some(b"m1")).unwrap();
    store.append(&big_entries(5, 8, 1, 300)).unwrap(); // rotations: seals carry it
    store.sync().unwrap();
    let check = |store: &LogStore<SimFs>, hard_state: HardState, metadata: &[u8], case: &str| {
        assert_eq!(store.hard_state(), hard_state, "{case}");
        assert_eq!(store.metadata(), metadata, "{case}");
    };
    check(&store, HardState::new(1, 2, 4), b"m1", "after rotations");
    drop(store);
    let store = LogStore::open_with(fs.clone(), DIR, options.clone()).unwrap();
    check(&store, HardState::new(1, 2, 4), b"m1", "reopened after rotations");
    store.truncate_suffix(10).unwrap();
    store.compact_to(3).unwrap();
    store.set_metadata(b"m2").unwrap();
    store.close().unwrap(); // the last segment is sealed: its seal carries it
    let store = LogStore::open_with(fs.clone(), DIR, options.clone()).unwrap();
    check(&store, HardState::new(1, 2, 4), b"m2", "after truncation, compaction and close");
    store.reset(40, 3).unwrap();
    store.set_hard_state(HardState::new(3, 0, 40)).unwrap();
    drop(store);
    fs.crash(11);
    let store = LogStore::open_with(fs.clone(), DIR, options).unwrap();
    check(&store, HardState::new(3, 0, 40), b"m2", "after a reset and a crash");
    assert_eq!((store.first_index(), store.last_index()), (41, 40));
}

#[test]
fn bad_hard_states_and_metadata_are_refused_whole() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default());
    store.persist(&entries(1, &[1, 1]), Some(HardState::new(2, 5, 1)), Some(b"ok")).unwrap();
    let before = common::snapshot(&fs);
    let too_big = vec![0u8; METADATA_BYTES_MAX + 1];
    type Case<'a> = (&'a str, Option<HardState>, Option<&'a [u8]>);
    let cases: Vec<Case> = vec![
        ("metadata over the limit", None, Some(&too_big)),
        ("term going back", Some(HardState::new(1, 5, 1)), None),
        ("another vote in the term", Some(HardState::new(2, 6, 1)), None),
        ("commit going back", Some(HardState::new(2, 5, 0)), None),
        ("commit beyond the batch", Some(HardState::new(2, 5, 4)), None),
    ];
    for (name, hard_state, metadata) in cases {
        let err = store.persist(&entries(3, &[2]), hard_state, metadata).unwrap_err();
        assert!(
            matches!(err, Error::LimitExceeded { .. } | Error::HardStateRefused { .. }),
            "{name}: {err}"
        );
        assert_eq!(store.last_index(), 2, "{name}: the batch was written");
        assert_eq!(common::snapshot(&fs), before, "{name}: the disk changed");
    }
    assert_eq!(store.hard_state(), HardState::new(2, 5, 1));
    assert_eq!(store.metadata(), &b"ok"[..]);
    // The commit may reach entries of the same call.
    store.persist(&entries(3, &[2]), Some(HardState::new(2, 5, 3)), None).unwrap();
}
