//! raft-rs's own `MemStorage` tests (raft 0.7, `src/storage.rs`), restated against
//! `DiskStorage`, each checked again after a reopen. Where `MemStorage` departs from the
//! documented `Storage` contract, the restated case follows the contract and says so:
//! - `term(first_index - 1)` answers (the documented range is `[first_index - 1, last_index]`;
//!   `MemStorage` answers only at its snapshot index);
//! - `snapshot(request_index)` serves a snapshot that was taken (`MemStorage` makes one up from
//!   the commit index, and bumps its index to the request), otherwise it is
//!   `SnapshotTemporarilyUnavailable`;
//! - bad appends are errors, not panics.

use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, Snapshot};
use raft::{Error as RaftError, GetEntriesContext, Storage, StorageError};
use raftlog::fs::SimFs;
use raftlog_raft_rs::DiskStorage;

const DIR: &str = "/node";

fn new_entry(index: u64, term: u64) -> Entry {
    Entry { term, index, ..Entry::default() }
}

fn new_snapshot(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters;
    s
}

fn open(fs: &SimFs) -> DiskStorage<SimFs> {
    DiskStorage::open_with(fs.clone(), DIR, raftlog::Options::default()).unwrap()
}

/// `MemStorage` with `entries = ents`: a log that starts after a snapshot at
/// `(ents[0].index - 1, ents[0].term - 1)`, holding `ents`.
fn storage_with(fs: &SimFs, ents: &[Entry]) -> DiskStorage<SimFs> {
    let storage = open(fs);
    let (index, term) = (ents[0].index - 1, ents[0].term - 1);
    storage.apply_snapshot(new_snapshot(index, term, vec![])).unwrap();
    storage.append(ents).unwrap();
    storage
}

/// Runs `check` on the storage, then on the storage reopened from its disk.
fn and_after_reopen(fs: &SimFs, storage: DiskStorage<SimFs>, check: impl Fn(&DiskStorage<SimFs>)) {
    check(&storage);
    drop(storage);
    check(&open(fs));
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

#[test]
fn test_storage_term() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let tests = vec![
        (1, Err(RaftError::Store(StorageError::Compacted))),
        (2, Ok(2)), // first_index - 1 answers (MemStorage: Compacted)
        (3, Ok(3)),
        (4, Ok(4)),
        (5, Ok(5)),
        (6, Err(RaftError::Store(StorageError::Unavailable))),
    ];
    for (i, (idx, wterm)) in tests.into_iter().enumerate() {
        let fs = SimFs::new();
        and_after_reopen(&fs, storage_with(&fs, &ents), |storage| {
            assert_eq!(storage.term(idx), wterm, "#{i}");
        });
    }
}

#[test]
fn test_storage_entries() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)];
    let size = |k: usize| u64::from(ents[k].compute_size());
    let max = u64::MAX;
    let tests = vec![
        (2, 6, max, Err(RaftError::Store(StorageError::Compacted))),
        (3, 4, max, Ok(vec![new_entry(3, 3)])),
        (4, 5, max, Ok(vec![new_entry(4, 4)])),
        (4, 6, max, Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
        (4, 7, max, Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)])),
        // even if maxsize is zero, the first entry is returned
        (4, 7, 0, Ok(vec![new_entry(4, 4)])),
        (4, 7, size(1) + size(2), Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
        (4, 7, size(1) + size(2) + size(3) / 2, Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
        (4, 7, size(1) + size(2) + size(3) - 1, Ok(vec![new_entry(4, 4), new_entry(5, 5)])),
        (
            4,
            7,
            size(1) + size(2) + size(3),
            Ok(vec![new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
        ),
        // beyond the last index (MemStorage panics)
        (4, 8, max, Err(RaftError::Store(StorageError::Unavailable))),
    ];
    for (i, (lo, hi, maxsize, wentries)) in tests.into_iter().enumerate() {
        let fs = SimFs::new();
        and_after_reopen(&fs, storage_with(&fs, &ents), |storage| {
            assert_eq!(storage.entries(lo, hi, maxsize, ctx()), wentries, "#{i}");
        });
    }
}

#[test]
fn test_storage_last_index() {
    let fs = SimFs::new();
    let storage = storage_with(&fs, &[new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]);
    assert_eq!(storage.last_index(), Ok(5));
    storage.append(&[new_entry(6, 5)]).unwrap();
    and_after_reopen(&fs, storage, |storage| assert_eq!(storage.last_index(), Ok(6)));
}

#[test]
fn test_storage_first_index() {
    let fs = SimFs::new();
    let storage = storage_with(&fs, &[new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)]);
    assert_eq!(storage.first_index(), Ok(3));
    storage.commit_to(4).unwrap(); // compaction stops at the commit index
    storage.compact(4).unwrap();
    and_after_reopen(&fs, storage, |storage| assert_eq!(storage.first_index(), Ok(4)));
}

#[test]
fn test_storage_compact() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let tests = vec![(2, 3, 3, 3), (3, 3, 3, 3), (4, 4, 4, 2), (5, 5, 5, 1)];
    for (i, (idx, windex, wterm, wlen)) in tests.into_iter().enumerate() {
        let fs = SimFs::new();
        let storage = storage_with(&fs, &ents);
        storage.commit_to(5).unwrap();
        storage.compact(idx).unwrap();
        and_after_reopen(&fs, storage, |storage| {
            let index = storage.first_index().unwrap();
            assert_eq!(index, windex, "#{i}");
            let first = storage.entries(index, index + 1, 1, ctx()).unwrap();
            assert_eq!(first.first().map_or(0, |e| e.term), wterm, "#{i}");
            let last = storage.last_index().unwrap();
            assert_eq!(storage.entries(index, last + 1, 100, ctx()).unwrap().len(), wlen, "#{i}");
        });
    }
}

#[test]
fn test_storage_create_snapshot() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let nodes = vec![1, 2, 3];
    let unavailable = Err(RaftError::Store(StorageError::SnapshotTemporarilyUnavailable));
    let with_data = |mut snapshot: Snapshot| {
        snapshot.data = b"state".to_vec().into();
        snapshot
    };
    let tests = vec![
        (4, Ok(with_data(new_snapshot(4, 4, nodes.clone()))), 0),
        (5, Ok(with_data(new_snapshot(5, 5, nodes.clone()))), 5),
        // MemStorage answers a snapshot at 6 made up from the commit index
        (5, unavailable, 6),
    ];
    for (i, (idx, wresult, windex)) in tests.into_iter().enumerate() {
        let fs = SimFs::new();
        let storage = storage_with(&fs, &ents);
        let mut hard_state = raft::eraftpb::HardState::default();
        (hard_state.commit, hard_state.term) = (idx, idx);
        storage.set_hardstate(hard_state).unwrap();
        storage.set_conf_state(ConfState::from((nodes.clone(), vec![]))).unwrap();
        storage.create_snapshot(idx, b"state").unwrap();
        and_after_reopen(&fs, storage, |storage| {
            assert_eq!(storage.snapshot(windex, 0), wresult, "#{i}");
        });
    }
}

#[test]
fn test_storage_append() {
    let ents = vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5)];
    let tests = vec![
        (ents.clone(), Some(ents.clone())),
        (
            vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)],
            Some(vec![new_entry(3, 3), new_entry(4, 6), new_entry(5, 6)]),
        ),
        (
            vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5), new_entry(6, 5)],
            Some(vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5), new_entry(6, 5)]),
        ),
        // overwriting compacted entries is refused (MemStorage panics)
        (vec![new_entry(2, 3), new_entry(3, 3), new_entry(4, 5)], None),
        // truncate the existing entries and append
        (vec![new_entry(4, 5)], Some(vec![new_entry(3, 3), new_entry(4, 5)])),
        // direct append
        (
            vec![new_entry(6, 6)],
            Some(vec![new_entry(3, 3), new_entry(4, 4), new_entry(5, 5), new_entry(6, 6)]),
        ),
    ];
    for (i, (entries, wentries)) in tests.into_iter().enumerate() {
        let fs = SimFs::new();
        let storage = storage_with(&fs, &ents);
        let result = storage.append(&entries);
        let want = wentries.clone().unwrap_or_else(|| ents.clone());
        assert_eq!(result.is_ok(), wentries.is_some(), "#{i}: {result:?}");
        and_after_reopen(&fs, storage, |storage| {
            let last = storage.last_index().unwrap();
            assert_eq!(storage.entries(3, last + 1, u64::MAX, ctx()).unwrap(), want, "#{i}");
        });
    }
}

#[test]
fn test_storage_apply_snapshot() {
    let nodes = vec![1, 2, 3];
    let fs = SimFs::new();
    let storage = open(&fs);
    storage.apply_snapshot(new_snapshot(4, 4, nodes.clone())).unwrap();
    let out_of_date = storage.apply_snapshot(new_snapshot(3, 3, nodes.clone()));
    assert_eq!(out_of_date, Err(RaftError::Store(StorageError::SnapshotOutOfDate)));
    and_after_reopen(&fs, storage, |storage| {
        let state = storage.initial_state().unwrap();
        assert_eq!((state.hard_state.commit, state.hard_state.term), (4, 4));
        assert_eq!(state.conf_state.voters, nodes);
        assert_eq!((storage.first_index(), storage.last_index()), (Ok(5), Ok(4)));
        assert_eq!(storage.term(4), Ok(4));
    });
}

#[test]
fn entries_are_kept_losslessly() {
    let fs = SimFs::new();
    let storage = open(&fs);
    let mut conf_change = new_entry(1, 1);
    conf_change.set_entry_type(raft::eraftpb::EntryType::EntryConfChangeV2);
    conf_change.data = b"add node 4".to_vec().into();
    conf_change.context = b"from admin".to_vec().into();
    conf_change.sync_log = true;
    let mut normal = new_entry(2, 1);
    normal.data = vec![0u8; 10_000].into(); // compressible: stored compressed, read back whole
    let written = vec![conf_change, normal];
    storage.append(&written).unwrap();
    and_after_reopen(&fs, storage, |storage| {
        assert_eq!(storage.entries(1, 3, u64::MAX, ctx()).unwrap(), written);
        assert_eq!(storage.log().entries(1, 2, 0).unwrap()[0].kind, 2, "the entry type");
    });
}
