//! The API rules of `LogStore`, table-driven where there are several cases.

mod common;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::gated::GatedFs;
use common::{
    append_each, big_entries, entries, names_ending, open, path, segment_names, small_segments, DIR,
};
use raftlog::fs::SimFs;
use raftlog::{Entry, Error, HardState, HardStateRule, LogStore, Options, SyncPolicy};

#[test]
fn log_store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LogStore>();
    assert_send_sync::<LogStore<SimFs>>();
}

#[test]
fn a_new_log_is_empty_after_index_zero() {
    let store = open(&SimFs::new(), Options::default());
    assert_eq!((store.first_index(), store.last_index(), store.durable_index()), (1, 0, 0));
    assert_eq!(store.term(0).unwrap(), 0);
    assert!(matches!(store.term(1), Err(Error::Unavailable { index: 1, last_index: 0 })));
    assert_eq!(store.hard_state(), HardState::default());
    assert!(store.recovery_report().created);
}

#[test]
fn append_refuses_bad_batches_and_changes_nothing() {
    struct Case {
        name: &'static str,
        batch: Vec<Entry>,
        want: fn(&Error) -> bool,
    }
    let cases = [
        Case {
            name: "gap",
            batch: entries(5, &[2]),
            want: |e| matches!(e, Error::NotContiguous { expected: 4, got: 5 }),
        },
        Case {
            name: "overlap",
            batch: entries(3, &[2]),
            want: |e| matches!(e, Error::NotContiguous { expected: 4, got: 3 }),
        },
        Case {
            name: "gap inside the batch",
            batch: vec![Entry::new(4, 2, "a"), Entry::new(6, 2, "b")],
            want: |e| matches!(e, Error::NotContiguous { expected: 5, got: 6 }),
        },
        Case {
            name: "term below the last",
            batch: entries(4, &[1]),
            want: |e| matches!(e, Error::TermRegression { index: 4, term: 1, previous_term: 2 }),
        },
        Case {
            name: "term going back inside the batch",
            batch: entries(4, &[3, 2]),
            want: |e| matches!(e, Error::TermRegression { index: 5, .. }),
        },
        Case {
            name: "entry over entry_bytes_max",
            batch: vec![Entry::new(4, 2, vec![0u8; 101])],
            want: |e| matches!(e, Error::EntryTooLarge { index: 4, bytes: 101, max: 100 }),
        },
    ];
    for case in cases {
        let fs = SimFs::new();
        let store = open(&fs, Options::default().entry_bytes_max(100));
        store.append(&entries(1, &[1, 1, 2])).unwrap();
        let err = store.append(&case.batch).expect_err(case.name);
        assert!((case.want)(&err), "{}: got {err:?}", case.name);
        assert_eq!(store.last_index(), 3, "{}: last index moved", case.name);
        store
            .append(&entries(4, &[2]))
            .unwrap_or_else(|e| panic!("{}: store unusable: {e}", case.name));
        assert_eq!(store.entries(1, 5, u64::MAX).unwrap().len(), 4, "{}", case.name);
    }
}

#[test]
fn entries_and_term_answer_inside_the_log_and_refuse_outside() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 30, 1, 300));
    store.compact_to(10).unwrap();
    assert!(segment_names(&fs).len() > 2, "the log should span several segments");
    struct Case {
        name: &'static str,
        lo: u64,
        hi: u64,
        max_bytes: u64,
        want: Result<Vec<u64>, fn(&Error) -> bool>,
    }
    let cases = [
        Case {
            name: "whole live log",
            lo: 11,
            hi: 31,
            max_bytes: u64::MAX,
            want: Ok((11..31).collect()),
        },
        Case { name: "empty range", lo: 20, hi: 20, max_bytes: u64::MAX, want: Ok(vec![]) },
        Case { name: "empty range at the end", lo: 31, hi: 31, max_bytes: 0, want: Ok(vec![]) },
        Case {
            name: "one entry over max_bytes still returned",
            lo: 12,
            hi: 20,
            max_bytes: 1,
            want: Ok(vec![12]),
        },
        Case {
            name: "stops before exceeding max_bytes",
            lo: 12,
            hi: 20,
            max_bytes: 900,
            want: Ok(vec![12, 13, 14]),
        },
        Case { name: "exactly max_bytes", lo: 12, hi: 20, max_bytes: 600, want: Ok(vec![12, 13]) },
        Case {
            name: "lo above hi",
            lo: 15,
            hi: 14,
            max_bytes: u64::MAX,
            want: Err(|e| matches!(e, Error::InvalidRange { lo: 15, hi: 14 })),
        },
        Case {
            name: "compacted",
            lo: 10,
            hi: 12,
            max_bytes: u64::MAX,
            want: Err(|e| matches!(e, Error::Compacted { index: 10, first_index: 11 })),
        },
        Case {
            name: "beyond the last",
            lo: 25,
            hi: 32,
            max_bytes: u64::MAX,
            want: Err(|e| matches!(e, Error::Unavailable { index: 31, last_index: 30 })),
        },
    ];
    for case in cases {
        let got = store.entries(case.lo, case.hi, case.max_bytes);
        match (got, case.want) {
            (Ok(got), Ok(want)) => {
                let indexes: Vec<u64> = got.iter().map(|e| e.index).collect();
                assert_eq!(indexes, want, "{}", case.name);
                let expected = big_entries(case.lo, want.len() as u64, 1, 300);
                assert_eq!(got, expected, "{}: contents", case.name);
            }
            (Err(err), Err(want)) => assert!(want(&err), "{}: got {err:?}", case.name),
            (got, _) => panic!("{}: unexpected {got:?}", case.name),
        }
    }
    assert_eq!(store.term(10).unwrap(), 1, "term of first_index - 1");
    assert!(matches!(store.term(9), Err(Error::Compacted { index: 9, first_index: 11 })));
    assert!(matches!(store.term(31), Err(Error::Unavailable { index: 31, last_index: 30 })));
}

#[test]
fn entry_kind_and_payload_round_trip_through_a_reopen() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default());
    let written = vec![
        Entry::new(1, 1, "").with_kind(7),
        Entry::new(2, 1, vec![0xffu8; 5000]).with_kind(255),
        Entry::new(3, 4, "conf change").with_kind(1),
    ];
    store.append(&written).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = open(&fs, Options::default());
    assert_eq!(store.entries(1, 4, u64::MAX).unwrap(), written);
}

#[test]
fn truncate_suffix_rules() {
    struct Case {
        name: &'static str,
        from: u64,
        want: Result<u64, fn(&Error) -> bool>,
    }
    let cases = [
        Case {
            name: "at the commit index",
            from: 5,
            want: Err(|e| matches!(e, Error::Committed { index: 5, commit: 5 })),
        },
        Case {
            name: "below the commit index",
            from: 2,
            want: Err(|e| matches!(e, Error::Committed { index: 2, commit: 5 })),
        },
        Case {
            name: "beyond last + 1",
            from: 12,
            want: Err(|e| matches!(e, Error::Unavailable { index: 12, last_index: 10 })),
        },
        Case { name: "last + 1 is a no-op", from: 11, want: Ok(10) },
        Case { name: "just above commit", from: 6, want: Ok(5) },
        Case { name: "the last entry", from: 10, want: Ok(9) },
    ];
    for case in cases {
        let fs = SimFs::new();
        let store = open(&fs, small_segments());
        append_each(&store, &big_entries(1, 10, 1, 300));
        store.set_hard_state(HardState::new(1, 0, 5)).unwrap();
        match (store.truncate_suffix(case.from), case.want) {
            (Ok(()), Ok(last)) => {
                assert_eq!(store.last_index(), last, "{}", case.name);
                if case.from <= 10 {
                    assert_eq!(store.durable_index(), last, "{}: durable", case.name);
                }
                store.append(&entries(last + 1, &[2])).unwrap();
                drop(store);
                let store = open(&fs, small_segments());
                assert_eq!(store.last_index(), last + 1, "{}: after reopen", case.name);
                assert_eq!(store.term(last + 1).unwrap(), 2, "{}: new entry", case.name);
                assert_eq!(
                    store.entries(1, last + 1, u64::MAX).unwrap(),
                    big_entries(1, last, 1, 300)
                );
            }
            (Err(err), Err(want)) => {
                assert!(want(&err), "{}: got {err:?}", case.name);
                assert_eq!(store.last_index(), 10, "{}: changed the log", case.name);
            }
            (got, _) => panic!("{}: unexpected {got:?}", case.name),
        }
    }
}

#[test]
fn truncate_into_a_sealed_segment_survives_reopen_and_removes_dead_segments() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 20, 1, 300));
    let before = segment_names(&fs).len();
    store.truncate_suffix(4).unwrap();
    assert!(segment_names(&fs).len() < before, "segments wholly after 4 are deleted");
    store.append(&entries(4, &[2, 2])).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = open(&fs, small_segments());
    assert_eq!(store.last_index(), 5);
    assert_eq!(store.entries(4, 6, u64::MAX).unwrap(), entries(4, &[2, 2]));
    assert_eq!(store.entries(1, 4, u64::MAX).unwrap(), big_entries(1, 3, 1, 300));
}

#[test]
fn compact_to_rules() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 30, 1, 300));
    append_each(&store, &big_entries(31, 5, 2, 300));
    let segments_before = segment_names(&fs).len();
    assert!(matches!(store.compact_to(36), Err(Error::Unavailable { index: 36, last_index: 35 })));
    store.compact_to(31).unwrap();
    assert!(segment_names(&fs).len() < segments_before, "whole segments are deleted");
    assert_eq!((store.first_index(), store.term(31).unwrap()), (32, 2));
    assert!(store.durable_index() >= 31, "compaction syncs what it keeps the term of");
    store.compact_to(20).unwrap(); // below the first index: nothing to do
    assert_eq!(store.first_index(), 32);
    drop(store);
    let store = open(&fs, small_segments());
    assert_eq!((store.first_index(), store.last_index(), store.term(31).unwrap()), (32, 35, 2));
    assert!(matches!(
        store.entries(31, 33, u64::MAX),
        Err(Error::Compacted { index: 31, first_index: 32 })
    ));
    store.compact_to(35).unwrap();
    assert_eq!((store.first_index(), store.last_index(), store.term(35).unwrap()), (36, 35, 2));
    store.append(&entries(36, &[3])).unwrap();
    assert_eq!(store.entries(36, 37, 0).unwrap(), entries(36, &[3]));
}

#[test]
fn reset_rules() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 20, 1, 300));
    store.set_hard_state(HardState::new(1, 0, 10)).unwrap();
    assert!(matches!(store.reset(9, 5), Err(Error::Committed { index: 10, commit: 10 })));
    assert_eq!(store.last_index(), 20);
    store.reset(100, 5).unwrap();
    assert_eq!((store.first_index(), store.last_index(), store.durable_index()), (101, 100, 100));
    assert_eq!(store.term(100).unwrap(), 5);
    assert_eq!(segment_names(&fs).len(), 1, "old segments deleted");
    drop(store);
    let store = open(&fs, small_segments());
    assert_eq!((store.first_index(), store.last_index(), store.term(100).unwrap()), (101, 100, 5));
    assert!(matches!(store.append(&entries(101, &[4])), Err(Error::TermRegression { .. })));
    store.append(&entries(101, &[5])).unwrap();
    assert_eq!(store.hard_state().commit, 10);
}

#[test]
fn set_hard_state_rules() {
    struct Case {
        name: &'static str,
        proposed: HardState,
        want: Option<HardStateRule>,
    }
    let current = HardState::new(5, 2, 3);
    let cases = [
        Case {
            name: "term below",
            proposed: HardState::new(4, 2, 3),
            want: Some(HardStateRule::TermRegression),
        },
        Case {
            name: "other vote same term",
            proposed: HardState::new(5, 3, 3),
            want: Some(HardStateRule::VoteChange),
        },
        Case {
            name: "commit going back",
            proposed: HardState::new(5, 2, 2),
            want: Some(HardStateRule::CommitRegression),
        },
        Case {
            name: "commit beyond the log",
            proposed: HardState::new(5, 2, 7),
            want: Some(HardStateRule::CommitBeyondLog),
        },
        Case { name: "same state", proposed: current, want: None },
        Case { name: "commit forward", proposed: HardState::new(5, 2, 6), want: None },
        Case { name: "new term, any vote", proposed: HardState::new(6, 3, 3), want: None },
        Case { name: "new term, no vote", proposed: HardState::new(6, 0, 3), want: None },
    ];
    for case in cases {
        let fs = SimFs::new();
        let store = open(&fs, Options::default());
        store.append(&entries(1, &[1, 1, 5, 5, 5, 5])).unwrap();
        store.set_hard_state(current).unwrap();
        match (store.set_hard_state(case.proposed), case.want) {
            (Ok(()), None) => {
                assert!(
                    store.durable_index() >= case.proposed.commit,
                    "{}: commit not durable",
                    case.name
                );
                drop(store);
                assert_eq!(
                    open(&fs, Options::default()).hard_state(),
                    case.proposed,
                    "{}",
                    case.name
                );
            }
            (Err(Error::HardStateRefused { rule, current: c, .. }), Some(want)) => {
                assert_eq!((rule, c), (want, current), "{}", case.name);
                assert_eq!(store.hard_state(), current, "{}: changed", case.name);
            }
            (got, _) => panic!("{}: unexpected {got:?}", case.name),
        }
    }
}

#[test]
fn vote_may_be_cast_once_in_a_term() {
    let store = open(&SimFs::new(), Options::default());
    store.set_hard_state(HardState::new(3, 0, 0)).unwrap();
    store.set_hard_state(HardState::new(3, 7, 0)).unwrap();
    assert!(store.set_hard_state(HardState::new(3, 8, 0)).is_err());
    assert_eq!(store.hard_state(), HardState::new(3, 7, 0));
}

/// Entry `i` of the concurrent-sync tests: 64 bytes of `i`.
fn numbered(i: u64) -> Entry {
    Entry::new(i, 1, vec![i as u8; 64])
}

/// One thread appends entries 1 to 400 one at a time while four threads sync 100 times each,
/// every sync covering at least what the log held when it was called.
fn append_while_four_threads_sync(store: &Arc<LogStore<SimFs>>) {
    let writer = {
        let store = Arc::clone(store);
        std::thread::spawn(move || {
            for i in 1..=400u64 {
                store.append(&[numbered(i)]).unwrap();
            }
        })
    };
    let syncers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                for _ in 0..100 {
                    let seen = store.last_index();
                    let durable = store.sync().unwrap();
                    assert!(durable >= seen, "sync returned {durable} below the {seen} it saw");
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for syncer in syncers {
        syncer.join().unwrap();
    }
    assert_eq!(store.sync().unwrap(), 400);
}

#[test]
fn concurrent_syncs_cover_every_writer() {
    append_while_four_threads_sync(&Arc::new(open(&SimFs::new(), Options::default())));
}

#[test]
fn concurrent_syncs_settle_every_rotation_and_a_power_loss_keeps_what_they_reported() {
    // 2 KiB segments: the writer rotates about every 20 entries, and each rotation waits for
    // a sync to settle it while the writer goes on appending into the new segment.
    let fs = SimFs::new();
    let options = Options::default().segment_bytes_max(2048);
    let store = Arc::new(open(&fs, options.clone()));
    append_while_four_threads_sync(&store);
    let segments = segment_names(&fs).len();
    assert!(segments >= 15, "{segments} segments");
    fs.crash(3); // while the store is open: no settling on drop helps it
    drop(store);
    let store = open(&fs, options);
    let expected: Vec<Entry> = (1..=400u64).map(numbered).collect();
    assert_eq!(store.entries(1, 401, u64::MAX).unwrap(), expected);
}

#[test]
fn an_append_returns_while_a_compaction_waits_for_its_fsyncs() {
    let fs = GatedFs::default();
    let options = Options::default().segment_bytes_max(4096);
    let store = Arc::new(LogStore::open_with(fs.clone(), DIR, options).unwrap());
    for batch in big_entries(1, 60, 1, 100).chunks(10) {
        store.append(batch).unwrap();
    }
    store.sync().unwrap();
    fs.set_closed(true);
    let compactor = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.compact_to(30))
    };
    fs.wait_for_blocked_sync();
    let (done, appended) = mpsc::channel();
    let appender = Arc::clone(&store);
    std::thread::spawn(move || done.send(appender.append(&big_entries(61, 5, 1, 100)).is_ok()));
    let appended = appended.recv_timeout(Duration::from_secs(60)).ok();
    fs.set_closed(false);
    assert_eq!(appended, Some(true), "an append waited for a compaction's fsync");
    compactor.join().unwrap().unwrap();
    assert_eq!((store.first_index(), store.sync().unwrap()), (31, 65));
}

#[test]
fn appends_without_syncs_leave_at_most_two_rotations_unsettled() {
    // Each 300-byte entry of a 2 KiB segment: a rotation every five or so. With no sync to
    // settle them, the append that finds two waiting settles them first.
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 100, 1, 300));
    let (named, pool_named) = (segment_names(&fs).len(), names_ending(&fs, ".free").len());
    assert!(named >= 15 && (1..=2).contains(&pool_named), "{named} named, {pool_named} not yet");
    assert!(store.durable_index() >= 80, "settling made the sealed segments durable");
}

#[test]
fn a_segment_started_by_rotation_is_preallocated_too() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default().segment_bytes_max(16 << 10).preallocate(true));
    append_each(&store, &big_entries(1, 60, 1, 300));
    store.sync().unwrap();
    let names = segment_names(&fs);
    assert!(names.len() >= 2, "{names:?}");
    let active = fs.read_file(&path(names.last().unwrap())).unwrap();
    assert_eq!(active.len(), 16 << 10, "the active segment holds a few entries in its full size");
}

#[test]
fn auto_policy_syncs_after_a_byte_threshold() {
    let policy = SyncPolicy::Auto { bytes: 1000, interval: std::time::Duration::ZERO };
    let store = open(&SimFs::new(), Options::default().sync_policy(policy));
    store.append(&big_entries(1, 1, 1, 500)).unwrap();
    assert_eq!(store.durable_index(), 0, "under the threshold nothing is synced");
    store.append(&big_entries(2, 1, 1, 500)).unwrap();
    assert_eq!(store.durable_index(), 2, "the threshold synced inside append");
}

#[test]
fn auto_policy_syncs_after_an_interval() {
    let policy = SyncPolicy::Auto { bytes: 0, interval: std::time::Duration::from_millis(5) };
    let store = open(&SimFs::new(), Options::default().sync_policy(policy));
    store.append(&big_entries(1, 3, 1, 10)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.durable_index() < 3 {
        assert!(std::time::Instant::now() < deadline, "the background flusher never synced");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_locked() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default());
    let second = LogStore::open_with(fs.clone(), common::DIR, Options::default());
    assert!(matches!(second, Err(Error::Locked { .. })), "got {second:?}");
    drop(store);
    open(&fs, Options::default());

    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), Options::default()).unwrap();
    let second = LogStore::open(dir.path(), Options::default());
    assert!(matches!(second, Err(Error::Locked { .. })), "got {second:?}");
    drop(store);
    LogStore::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn invalid_options_are_refused() {
    for (name, options) in [
        ("tiny segments", Options::default().segment_bytes_max(10)),
        (
            "entries beyond the u32 length field",
            Options::default().entry_bytes_max(u64::from(u32::MAX)),
        ),
    ] {
        let got = LogStore::open_with(SimFs::new(), common::DIR, options);
        assert!(matches!(got, Err(Error::InvalidOptions(_))), "{name}: {got:?}");
    }
}

/// A file whose name was synced into a directory whose own creation was not: after a power
/// loss the directory is gone, and so is the file, for the machine that boots as for the disk
/// (found by the replication simulation: a receiving snapshot directory re-created after a
/// crash met its lost file's name).
#[test]
fn a_power_loss_takes_the_files_of_a_lost_directory_with_it() {
    use raftlog::fs::FileSystem;
    use std::path::Path;
    let dir = Path::new("/root/lost");
    let mut lost = 0;
    for seed in 0..32 {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/root")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        fs.create_dir_all(dir).unwrap();
        fs.create(&dir.join("file")).unwrap();
        fs.sync_dir(dir).unwrap();
        fs.crash(seed);
        if fs.list(dir).is_ok() {
            continue; // this crash kept the directory's creation
        }
        lost += 1;
        fs.create_dir_all(dir).unwrap();
        fs.create(&dir.join("file")).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    assert!(lost > 0, "no crash lost the directory");
}
