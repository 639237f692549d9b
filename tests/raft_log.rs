//! The Raft log rules of `RaftLog`, table-driven after etcd raft's `log_test.go`.

mod common;

use common::{entries, DIR};
use raftlog::fs::SimFs;
use raftlog::{Entry, Error, LogStore, Options, RaftLog, RaftLogOptions};

/// `(index, term)` pairs of a table case.
type Pairs = &'static [(u64, u64)];

/// Entries `(index, term)`, payloads naming both.
fn ents(pairs: &[(u64, u64)]) -> Vec<Entry> {
    pairs.iter().map(|&(i, t)| Entry::new(i, t, format!("entry {i} term {t}"))).collect()
}

fn log_with(fs: &SimFs, options: RaftLogOptions, pairs: &[(u64, u64)]) -> RaftLog<SimFs> {
    let store = LogStore::open_with(fs.clone(), DIR, Options::default()).unwrap();
    let log = RaftLog::with_options(store, options).unwrap();
    log.append(&ents(pairs)).unwrap();
    log
}

fn new_log(pairs: &[(u64, u64)]) -> RaftLog<SimFs> {
    log_with(&SimFs::new(), RaftLogOptions::default(), pairs)
}

fn terms_of(log: &RaftLog<SimFs>) -> Vec<(u64, u64)> {
    let all = log.entries(log.first_index(), log.last_index() + 1, u64::MAX).unwrap();
    all.iter().map(|e| (e.index, e.term)).collect()
}

#[test]
fn find_conflict() {
    let previous = [(1, 1), (2, 2), (3, 3)];
    let cases: [(&str, Pairs, u64); 11] = [
        ("no entries", &[], 0),
        ("all present", &[(1, 1), (2, 2), (3, 3)], 0),
        ("suffix present", &[(2, 2), (3, 3)], 0),
        ("last present", &[(3, 3)], 0),
        ("new after all", &[(1, 1), (2, 2), (3, 3), (4, 4), (5, 4)], 4),
        ("new after some", &[(2, 2), (3, 3), (4, 4), (5, 4)], 4),
        ("new after last", &[(3, 3), (4, 4), (5, 4)], 4),
        ("only new", &[(4, 4), (5, 4)], 4),
        ("conflict at the first", &[(1, 4), (2, 4)], 1),
        ("conflict in the middle", &[(2, 1), (3, 4), (4, 4)], 2),
        ("conflict at the last", &[(3, 1), (4, 2), (5, 4), (6, 4)], 3),
    ];
    let log = new_log(&previous);
    for (name, batch, want) in cases {
        assert_eq!(log.find_conflict(&ents(batch)), want, "{name}");
    }
}

#[test]
fn is_up_to_date() {
    let log = new_log(&[(1, 1), (2, 2), (3, 3)]);
    let cases = [
        ("higher term, shorter", 2, 4, true),
        ("higher term, same length", 3, 4, true),
        ("higher term, longer", 4, 4, true),
        ("lower term, shorter", 2, 2, false),
        ("lower term, same length", 3, 2, false),
        ("lower term, longer", 4, 2, false),
        ("same term, shorter", 2, 3, false),
        ("same term, same length", 3, 3, true),
        ("same term, longer", 4, 3, true),
    ];
    for (name, index, term, want) in cases {
        assert_eq!(log.is_up_to_date(index, term), want, "{name}");
    }
}

#[test]
fn append_truncates_and_appends_above_the_commit_index() {
    let cases: [(&str, Pairs, u64, Pairs); 4] = [
        ("nothing", &[], 2, &[(1, 1), (2, 2)]),
        ("after the last", &[(3, 2)], 3, &[(1, 1), (2, 2), (3, 2)]),
        ("conflict at index 1", &[(1, 2)], 1, &[(1, 2)]),
        ("conflict at index 2", &[(2, 3), (3, 3)], 3, &[(1, 1), (2, 3), (3, 3)]),
    ];
    for (name, batch, want_last, want) in cases {
        let fs = SimFs::new();
        let log = log_with(&fs, RaftLogOptions::default(), &[(1, 1), (2, 2)]);
        assert_eq!(log.append(&ents(batch)).unwrap(), want_last, "{name}");
        assert_eq!(terms_of(&log), want, "{name}");
        log.sync().unwrap();
        drop(log);
        let reopened =
            RaftLog::new(LogStore::open_with(fs, DIR, Options::default()).unwrap()).unwrap();
        assert_eq!(terms_of(&reopened), want, "{name}: after reopen");
    }
}

#[test]
fn append_refuses_committed_and_malformed_batches() {
    let log = new_log(&[(1, 1), (2, 2), (3, 3)]);
    log.commit_to(2).unwrap();
    let got = log.append(&ents(&[(2, 4)]));
    assert!(matches!(got, Err(Error::Committed { index: 2, commit: 2 })), "{got:?}");
    let got = log.append(&ents(&[(5, 3)]));
    assert!(matches!(got, Err(Error::NotContiguous { expected: 4, got: 5 })), "{got:?}");
    let got = log.append(&ents(&[(4, 2)]));
    assert!(matches!(got, Err(Error::TermRegression { .. })), "{got:?}");
    assert_eq!(terms_of(&log), [(1, 1), (2, 2), (3, 3)]);
}

#[test]
fn maybe_append() {
    let (last_index, last_term, commit) = (3u64, 3u64, 1u64);
    type Case = (&'static str, u64, u64, u64, Pairs, Result<Option<u64>, ()>, u64);
    let cases: [Case; 16] = [
        // prev does not match
        ("term mismatch", last_term - 1, last_index, last_index, &[(4, 4)], Ok(None), commit),
        (
            "index beyond the log",
            last_term,
            last_index + 1,
            last_index,
            &[(5, 4)],
            Ok(None),
            commit,
        ),
        // prev is the last entry
        ("heartbeat commits", last_term, last_index, last_index, &[], Ok(Some(3)), 3),
        (
            "commit capped at the last new index",
            last_term,
            last_index,
            last_index + 1,
            &[],
            Ok(Some(3)),
            3,
        ),
        ("commit up to the leader's", last_term, last_index, last_index - 1, &[], Ok(Some(3)), 2),
        ("commit never moves back", last_term, last_index, 0, &[], Ok(Some(3)), commit),
        ("prev at index 0", 0, 0, last_index, &[], Ok(Some(0)), commit),
        ("append one", last_term, last_index, last_index, &[(4, 4)], Ok(Some(4)), 3),
        ("append one, commit it", last_term, last_index, last_index + 1, &[(4, 4)], Ok(Some(4)), 4),
        (
            "commit capped by the batch",
            last_term,
            last_index,
            last_index + 2,
            &[(4, 4)],
            Ok(Some(4)),
            4,
        ),
        ("append two", last_term, last_index, last_index + 2, &[(4, 4), (5, 4)], Ok(Some(5)), 5),
        // prev in the middle: conflicts truncate
        (
            "conflict at the last",
            last_term - 1,
            last_index - 1,
            last_index,
            &[(3, 4)],
            Ok(Some(3)),
            3,
        ),
        (
            "conflict before the last",
            last_term - 2,
            last_index - 2,
            last_index,
            &[(2, 4)],
            Ok(Some(2)),
            2,
        ),
        ("conflict with a committed entry", 0, 0, last_index, &[(1, 4)], Err(()), commit),
        (
            "conflict, two new",
            last_term - 2,
            last_index - 2,
            last_index,
            &[(2, 4), (3, 4)],
            Ok(Some(3)),
            3,
        ),
        ("duplicates are a no-op", 1, 1, 0, &[(2, 2), (3, 3)], Ok(Some(3)), commit),
    ];
    for (name, prev_term, prev_index, leader_commit, batch, want, want_commit) in cases {
        let log = new_log(&[(1, 1), (2, 2), (3, 3)]);
        log.commit_to(commit).unwrap();
        let before = terms_of(&log);
        let got = log.maybe_append(prev_index, prev_term, leader_commit, &ents(batch));
        match (&got, want) {
            (Ok(got), Ok(want)) => assert_eq!(*got, want, "{name}"),
            (Err(Error::Committed { .. }), Err(())) => {}
            _ => panic!("{name}: got {got:?}"),
        }
        assert_eq!(log.commit_index(), want_commit, "{name}: commit");
        match got {
            Ok(Some(last_new)) => {
                let stored: Vec<(u64, u64)> =
                    terms_of(&log).into_iter().filter(|(i, _)| *i <= last_new).collect();
                let mut want: Vec<(u64, u64)> =
                    before.into_iter().filter(|(i, _)| *i <= prev_index).collect();
                want.extend(batch.iter().copied());
                assert_eq!(stored, want, "{name}: entries");
            }
            _ => assert_eq!(terms_of(&log), before, "{name}: changed the log"),
        }
    }
}

#[test]
fn commit_to_never_moves_back_nor_past_the_last_index() {
    let cases = [("forward", 3, Some(3)), ("back", 1, Some(2)), ("beyond the last", 4, None)];
    for (name, to, want) in cases {
        let log = new_log(&[(1, 1), (2, 2), (3, 3)]);
        log.commit_to(2).unwrap();
        match (log.commit_to(to), want) {
            (Ok(()), Some(want)) => assert_eq!(log.commit_index(), want, "{name}"),
            (Err(Error::Unavailable { index: 4, last_index: 3 }), None) => {
                assert_eq!(log.commit_index(), 2)
            }
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
}

#[test]
fn maybe_commit_needs_a_higher_index_with_the_given_term() {
    let cases = [
        ("own term", 3, 3, true, 3),
        ("older term", 3, 2, false, 1),
        ("beyond the log", 4, 3, false, 1),
        ("not above the commit index", 1, 1, false, 1),
    ];
    for (name, index, term, want, want_commit) in cases {
        let log = new_log(&[(1, 1), (2, 2), (3, 3)]);
        log.commit_to(1).unwrap();
        assert_eq!(log.maybe_commit(index, term).unwrap(), want, "{name}");
        assert_eq!(log.commit_index(), want_commit, "{name}");
    }
}

#[test]
fn applied_index_follows_commit_and_next_committed_entries_serve_the_gap() {
    let log = new_log(&[(1, 1), (2, 1), (3, 2), (4, 2)]);
    log.commit_to(3).unwrap();
    assert!(matches!(log.applied_to(4), Err(Error::NotCommitted { index: 4, commit: 3 })));
    let ready = log.next_committed_entries(u64::MAX).unwrap();
    assert_eq!(ready.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(log.next_committed_entries(0).unwrap().len(), 1, "at least one entry");
    log.applied_to(2).unwrap();
    log.applied_to(1).unwrap(); // never moves back
    assert_eq!(log.applied_index(), 2);
    assert_eq!(log.next_committed_entries(u64::MAX).unwrap(), ents(&[(3, 2)]));
    log.applied_to(3).unwrap();
    assert!(log.next_committed_entries(u64::MAX).unwrap().is_empty());
}

#[test]
fn compaction_is_bounded_by_the_applied_index() {
    let log = new_log(&[(1, 1), (2, 1), (3, 2), (4, 3), (5, 3)]);
    log.commit_to(4).unwrap();
    log.applied_to(3).unwrap();
    assert!(matches!(log.compact(4), Err(Error::NotApplied { index: 4, applied: 3 })));
    log.compact(3).unwrap();
    assert_eq!((log.first_index(), log.term(3).unwrap()), (4, 2));
    assert!(matches!(
        log.entries(3, 5, u64::MAX),
        Err(Error::Compacted { index: 3, first_index: 4 })
    ));
    assert!(matches!(log.term(2), Err(Error::Compacted { .. })));
    assert_eq!(terms_of(&log), [(4, 3), (5, 3)]);
}

#[test]
fn restore_empties_the_log_after_the_snapshot() {
    let log = new_log(&[(1, 1), (2, 1), (3, 2)]);
    log.commit_to(2).unwrap();
    assert!(matches!(log.restore(1, 1), Err(Error::Committed { .. })));
    log.restore(10, 4).unwrap();
    assert_eq!((log.first_index(), log.last_index(), log.last_term()), (11, 10, 4));
    assert_eq!((log.commit_index(), log.applied_index()), (10, 10));
    assert_eq!(log.append(&ents(&[(11, 4)])).unwrap(), 11);
    assert!(log.match_term(10, 4) && !log.match_term(9, 1));
}

/// What `entries(lo, hi, max_bytes)` must return of a log holding `all`: the range, cut
/// before the payloads pass `max_bytes`, but at least one entry.
fn expected_slice(all: &[Entry], lo: u64, hi: u64, max_bytes: u64) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut bytes = 0u64;
    for entry in all.iter().filter(|e| (lo..hi).contains(&e.index)) {
        bytes += entry.payload.len() as u64;
        if !out.is_empty() && bytes > max_bytes {
            break;
        }
        out.push(entry.clone());
    }
    out
}

#[test]
fn slices_agree_across_memory_and_disk() {
    let committed_window =
        RaftLogOptions::default().min_entries_in_memory(10).max_entries_in_memory(20);
    // A small uncommitted bound leaves gaps between the tiers, read from the store.
    let bounded_tail = committed_window.clone().max_uncommitted_bytes_in_memory(600);
    for (name, options) in [("committed window", committed_window), ("bounded tail", bounded_tail)]
    {
        let fs = SimFs::new();
        let store =
            LogStore::open_with(fs, DIR, Options::default().segment_bytes_max(4096)).unwrap();
        let log = RaftLog::with_options(store, options).unwrap();
        log.restore(100, 1).unwrap();
        let batch: Vec<Entry> = (101..=200)
            .map(|i| Entry::new(i, 1 + i / 50, vec![i as u8; (i % 7) as usize * 10]))
            .collect();
        for entry in &batch {
            log.append(std::slice::from_ref(entry)).unwrap();
        }
        log.commit_to(170).unwrap();
        log.applied_to(160).unwrap();
        let (in_memory, _) = log.committed_in_memory();
        assert!(in_memory <= 20, "{name}: window of {in_memory}");
        for lo in (101..=201).step_by(7) {
            for hi in (lo..=201).step_by(5) {
                for max_bytes in [0, 35, 200, u64::MAX] {
                    assert_eq!(
                        log.entries(lo, hi, max_bytes).unwrap(),
                        expected_slice(&batch, lo, hi, max_bytes),
                        "{name}: [{lo}, {hi}) within {max_bytes}"
                    );
                }
            }
        }
        if name == "bounded tail" {
            let (held, bytes) = log.uncommitted_in_memory();
            assert!(bytes <= 600 && held < 30, "{name}: {held} entries, {bytes} bytes");
        }
        check_read_errors(&log);
    }
}

fn check_read_errors(log: &RaftLog<SimFs>) {
    assert!(matches!(
        log.entries(100, 102, u64::MAX),
        Err(Error::Compacted { index: 100, first_index: 101 })
    ));
    assert!(matches!(
        log.entries(200, 202, u64::MAX),
        Err(Error::Unavailable { index: 201, last_index: 200 })
    ));
    assert!(matches!(log.entries(150, 140, u64::MAX), Err(Error::InvalidRange { .. })));
}

#[test]
fn memory_stays_bounded_but_never_evicts_unapplied_entries() {
    let options = RaftLogOptions::default().min_entries_in_memory(5).max_entries_in_memory(10);
    let log = log_with(&SimFs::new(), options, &[]);
    log.append(&entries(1, &[1; 100])).unwrap();
    log.commit_to(100).unwrap();
    assert_eq!(log.committed_in_memory().0, 100, "nothing applied: nothing evicted");
    log.applied_to(50).unwrap();
    assert_eq!(log.committed_in_memory().0, 50, "evicted up to the applied index");
    log.applied_to(100).unwrap();
    assert_eq!(log.committed_in_memory().0, 5, "down to the minimum once applied");

    let options = RaftLogOptions::default()
        .max_bytes_in_memory(1000)
        .min_entries_in_memory(1000)
        .max_entries_in_memory(1000);
    let log = log_with(&SimFs::new(), options, &[]);
    let big: Vec<Entry> = (1..=20).map(|i| Entry::new(i, 1, vec![0u8; 300])).collect();
    log.append(&big).unwrap();
    log.commit_to(20).unwrap();
    log.applied_to(20).unwrap();
    assert!(log.committed_in_memory().1 <= 1000, "byte bound: {:?}", log.committed_in_memory());
}

#[test]
fn appends_are_refused_while_too_much_awaits_the_state_machine() {
    let options = RaftLogOptions::default().unapplied_entries_max(3);
    let log = log_with(&SimFs::new(), options, &[(1, 1), (2, 1), (3, 1)]);
    log.commit_to(3).unwrap();
    let got = log.append(&ents(&[(4, 1)]));
    assert!(matches!(got, Err(Error::Busy { unapplied: 3, max: 3 })), "{got:?}");
    log.applied_to(1).unwrap();
    assert_eq!(log.append(&ents(&[(4, 1)])).unwrap(), 4);
}

#[test]
fn reopen_restores_entries_commit_and_unapplied_entries() {
    let fs = SimFs::new();
    let log = log_with(&fs, RaftLogOptions::default(), &[(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]);
    log.commit_to(4).unwrap();
    log.applied_to(2).unwrap();
    log.set_hard_state(2, 7).unwrap();
    log.sync().unwrap();
    drop(log);
    let store = LogStore::open_with(fs.clone(), DIR, Options::default()).unwrap();
    let log = RaftLog::with_options(store, RaftLogOptions::default().applied_index(2)).unwrap();
    assert_eq!((log.last_index(), log.commit_index(), log.applied_index()), (5, 4, 2));
    assert_eq!(log.hard_state().vote, 7);
    assert_eq!(log.next_committed_entries(u64::MAX).unwrap(), ents(&[(3, 2), (4, 2)]));
    assert_eq!(log.term(5).unwrap(), 2, "the uncommitted tail is back in memory");
}

#[test]
fn an_applied_index_beyond_the_commit_index_is_refused() {
    let store = LogStore::open_with(SimFs::new(), DIR, Options::default()).unwrap();
    let got = RaftLog::with_options(store, RaftLogOptions::default().applied_index(5));
    assert!(matches!(got, Err(Error::NotCommitted { index: 5, commit: 0 })), "{got:?}");
}
