//! One test per row of the recovery decision table (format/SPEC.md, "Recovery"). The
//! fault-injection rules are in `faults.rs`.

mod common;

use common::segments::{
    after_mark_offset, first_index, one_segment, record_offset, RECORD, SEAL, SYNC_MARK,
};
use common::{
    append_each, big_entries, open, path, segment_names, small_segments, snapshot, stream_len,
};
use raftlog::fs::SimFs;
use raftlog::{Corruption, Error, HardState, LogStore, Options, TailDurability};

/// Opens and expects `Corrupt` for `reason`, with the directory left as it was.
fn expect_corrupt(fs: &SimFs, options: Options, want: fn(&Corruption) -> bool) -> (String, u64) {
    let before = snapshot(fs);
    let got = LogStore::open_with(fs.clone(), common::DIR, options);
    let Err(Error::Corrupt { path, offset, reason, .. }) = got else {
        panic!("expected Corrupt, got {got:?}");
    };
    assert!(want(&reason), "wrong reason {reason:?}");
    assert_eq!(snapshot(fs), before, "a refused open changed the directory");
    (path.file_name().unwrap().to_str().unwrap().to_owned(), offset)
}

#[test]
fn r1_new_store_is_created_once() {
    let fs = SimFs::new();
    assert!(open(&fs, Options::default()).recovery_report().created);
    assert!(!open(&fs, Options::default()).recovery_report().created);
}

#[test]
fn r2_missing_or_unreadable_meta_with_segments_is_corrupt() {
    let fs = SimFs::new();
    drop(one_segment(&fs, 3));
    let meta = fs.read_file(&path("meta")).unwrap();
    fs.remove_durable(&path("meta"));
    expect_corrupt(&fs, Options::default(), |r| *r == Corruption::Meta);
    fs.write_file_durable(&path("meta"), &meta);
    fs.flip_bit(&path("meta"), 8 * 20).unwrap();
    fs.flip_bit(&path("meta"), 8 * (512 + 20)).unwrap();
    expect_corrupt(&fs, Options::default(), |r| *r == Corruption::Meta);
}

#[test]
fn r3_one_damaged_meta_slot_falls_back_to_the_other() {
    let fs = SimFs::new();
    let store = one_segment(&fs, 3);
    store.compact_to(1).unwrap(); // meta sequence 2, slot 0
    store.compact_to(2).unwrap(); // sequence 3, slot 1
    drop(store);
    fs.flip_bit(&path("meta"), 8 * (512 + 30)).unwrap(); // a torn (or rotten) newest slot
    let store = open(&fs, Options::default());
    assert_eq!(store.recovery_report().damaged_meta_slot, Some(1));
    assert_eq!(store.first_index(), 2, "the older slot's bounds");
    store.compact_to(3).unwrap(); // rewrites the damaged slot
    drop(store);
    let store = open(&fs, Options::default());
    assert_eq!((store.first_index(), store.recovery_report().damaged_meta_slot), (4, None));
}

#[test]
fn r4_dead_segments_that_come_back_are_removed() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 20, 1, 300));
    let first = segment_names(&fs)[0].clone();
    let bytes = fs.read_file(&path(&first)).unwrap();
    store.compact_to(15).unwrap();
    assert!(!segment_names(&fs).contains(&first));
    drop(store);
    fs.write_file_durable(&path(&first), &bytes); // the unsynced removal was lost
    let store = open(&fs, small_segments());
    assert_eq!(store.recovery_report().removed_files, vec![path(&first)]);
    assert_eq!((store.first_index(), store.last_index()), (16, 20));
    assert!(!segment_names(&fs).contains(&first));
}

#[test]
fn r5_unfinished_segment_creation_is_removed() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 12, 1, 300));
    drop(store);
    // The newest segment's creation was cut short: its records never landed, its header tore.
    let name = segment_names(&fs).pop().unwrap();
    fs.write_file_durable(&path(&name), &[0x52, 0x4c, 0x53, 0x47, 1, 0, 0]);
    let store = open(&fs, small_segments());
    let torn = store.recovery_report().torn_tail.clone().expect("reported");
    assert_eq!((torn.path, torn.offset, torn.bytes_cut), (path(&name), 0, 7));
    assert!(store.recovery_report().removed_files.contains(&path(&name)));
    let last = store.last_index();
    assert!((5..12).contains(&last), "the sealed segments are intact: last {last}");
    assert_eq!(store.entries(1, last + 1, u64::MAX).unwrap(), big_entries(1, last, 1, 300));
}

#[test]
fn r6_damaged_or_foreign_headers_are_corrupt() {
    // A damaged header in a sealed segment.
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 12, 1, 300));
    drop(store);
    let first = segment_names(&fs)[0].clone();
    fs.flip_bit(&path(&first), 8 * 30).unwrap();
    let (file, _) = expect_corrupt(&fs, small_segments(), |r| *r == Corruption::Checksum);
    assert_eq!(file, first);

    // A damaged header in the last segment, with valid records after it.
    let fs = SimFs::new();
    drop(one_segment(&fs, 3));
    let name = segment_names(&fs)[0].clone();
    fs.flip_bit(&path(&name), 8 * 30).unwrap();
    let (_, offset) = expect_corrupt(&fs, Options::default(), |r| *r == Corruption::Checksum);
    assert_eq!(offset, record_offset(0), "names the valid record that proves the damage");

    // A segment of another store in place of one of ours.
    let other = SimFs::with_seed(1);
    drop(one_segment(&other, 3));
    let foreign = other.read_file(&path(&segment_names(&other)[0])).unwrap();
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 12, 1, 300));
    drop(store);
    fs.write_file_durable(&path(&segment_names(&fs)[0]), &foreign);
    expect_corrupt(&fs, small_segments(), |r| matches!(r, Corruption::Identity(_)));
}

#[test]
fn r7_unacknowledged_torn_tail_is_cut_and_reported() {
    let fs = SimFs::new();
    let store = one_segment(&fs, 3);
    store.append(&big_entries(4, 2, 1, 100)).unwrap(); // never synced
    drop(store);
    let name = segment_names(&fs)[0].clone();
    let mut bytes = fs.read_file(&path(&name)).unwrap();
    bytes.truncate(stream_len(&bytes) - 10); // entry 5 torn
    fs.write_file_durable(&path(&name), &bytes);
    let store = open(&fs, Options::default());
    let torn = store.recovery_report().torn_tail.clone().expect("reported");
    assert_eq!(
        (torn.offset, torn.bytes_cut, torn.indexes_cut, torn.durability),
        (after_mark_offset(4), RECORD - 10, 5..6, TailDurability::Unknown)
    );
    assert_eq!(store.recovery_report().unknown_durability(), Some(5..6));
    assert_eq!(store.last_index(), 4);
    let len = stream_len(&fs.read_file(&path(&name)).unwrap()) as u64;
    assert_eq!(len, after_mark_offset(4) + SYNC_MARK, "cut on disk, then the open's sync mark");
    assert_eq!(store.entries(1, 5, u64::MAX).unwrap(), big_entries(1, 4, 1, 100));
}

#[test]
fn r8_damage_in_the_last_synced_record_is_proven_by_the_sync_mark() {
    // Without the mark, nothing after the last record could prove it was synced (CTRL's
    // "fundamental limitation"); the mark written after the fdatasync does.
    let fs = SimFs::new();
    drop(one_segment(&fs, 3));
    let name = segment_names(&fs)[0].clone();
    fs.flip_bit(&path(&name), 8 * (record_offset(2) + 40)).unwrap();
    let (file, offset) =
        expect_corrupt(&fs, Options::default(), |r| *r == Corruption::DamagedBeforeDurable);
    assert_eq!((file, offset), (name, record_offset(2)));
}

#[test]
fn r7_damage_in_the_last_record_without_its_mark_is_cut_as_of_unknown_durability() {
    // A power loss can lose the mark (it is made durable by the next fdatasync only): the
    // damage is then undecidable, cut, and reported as possibly acknowledged.
    let fs = SimFs::new();
    drop(one_segment(&fs, 3));
    let name = segment_names(&fs)[0].clone();
    let mut bytes = fs.read_file(&path(&name)).unwrap();
    bytes.truncate(stream_len(&bytes) - SYNC_MARK as usize);
    fs.write_file_durable(&path(&name), &bytes);
    fs.flip_bit(&path(&name), 8 * (record_offset(2) + 40)).unwrap();
    let store = open(&fs, Options::default());
    let torn = store.recovery_report().torn_tail.clone().unwrap();
    assert_eq!((torn.indexes_cut, torn.durability), (3..4, TailDurability::Unknown));
    assert_eq!(store.recovery_report().unknown_durability(), Some(3..4));
    assert_eq!(store.last_index(), 2);
}

#[test]
fn r8_damage_followed_by_records_written_after_it_was_synced_is_corrupt() {
    let fs = SimFs::new();
    let store = one_segment(&fs, 3);
    store.append(&big_entries(4, 3, 1, 100)).unwrap();
    store.sync().unwrap();
    drop(store);
    let name = segment_names(&fs)[0].clone();
    fs.flip_bit(&path(&name), 8 * (record_offset(1) + 50)).unwrap();
    let (file, offset) =
        expect_corrupt(&fs, Options::default(), |r| *r == Corruption::DamagedBeforeDurable);
    assert_eq!((file, offset), (name, record_offset(1)));
}

#[test]
fn r8_damage_followed_only_by_unsynced_records_is_a_torn_tail() {
    // Unsynced writes can land out of order: a later record present after a missing one is a
    // crash state, not corruption, as long as nothing proves the missing one was synced.
    let fs = SimFs::new();
    let store = one_segment(&fs, 3);
    store.append(&big_entries(4, 1, 1, 100)).unwrap();
    store.append(&big_entries(5, 1, 1, 100)).unwrap();
    drop(store);
    let name = segment_names(&fs)[0].clone();
    fs.flip_bit(&path(&name), 8 * (after_mark_offset(3) + 50)).unwrap(); // entry 4 lost, 5 landed
    let store = open(&fs, Options::default());
    assert_eq!(store.recovery_report().torn_tail.as_ref().unwrap().offset, after_mark_offset(3));
    assert_eq!(store.last_index(), 3);
}

#[test]
fn r9_damaged_or_unsealed_sealed_segments_are_corrupt() {
    let build = || {
        let fs = SimFs::new();
        let store = open(&fs, small_segments());
        append_each(&store, &big_entries(1, 12, 1, 300));
        drop(store);
        let first = segment_names(&fs)[0].clone();
        (fs, first)
    };
    // Under a valid index the segment is not scanned at open: the damage is found by the
    // read that meets it, which names the file, offset and index and returns nothing wrong.
    let (fs, first) = build();
    fs.flip_bit(&path(&first), 8 * (record_offset(0) + 40)).unwrap();
    let store = open(&fs, small_segments());
    let got = store.entries(1, 3, u64::MAX);
    let Err(Error::Damaged { index, path: p, offset, reason }) = got else { panic!("{got:?}") };
    assert_eq!(
        (index, p, offset, reason),
        (1, path(&first), record_offset(0), Corruption::Checksum)
    );
    assert_eq!(store.damaged(), vec![1..=1]);
    drop(store);
    // Without its index the segment is scanned, and the same damage refuses the open.
    fs.remove_durable(&path(&first.replace(".seg", ".idx")));
    let (file, offset) = expect_corrupt(&fs, small_segments(), |r| *r == Corruption::Checksum);
    assert_eq!((file, offset), (first, record_offset(0)));

    let (fs, first) = build();
    let mut bytes = fs.read_file(&path(&first)).unwrap();
    bytes.truncate(stream_len(&bytes) - SEAL as usize); // the seal record
    fs.write_file_durable(&path(&first), &bytes);
    expect_corrupt(&fs, small_segments(), |r| *r == Corruption::BadSeal);
}

#[test]
fn r10_a_missing_segment_of_entries_not_known_committed_is_corrupt() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 20, 1, 300));
    drop(store);
    let names = segment_names(&fs);
    assert!(names.len() >= 3);
    fs.remove_durable(&path(&names[1]));
    expect_corrupt(&fs, small_segments(), |r| *r == Corruption::MissingEntries);
}

/// A store of 20 committed entries in small segments whose second segment was lost; the name
/// of its first segment, and the first indexes of the lost segment and of the one after it.
fn committed_without_second_segment() -> (SimFs, String, (u64, u64)) {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 20, 1, 300));
    store.set_hard_state(HardState { term: 1, vote: 0, commit: 20 }).unwrap();
    drop(store);
    let names = segment_names(&fs);
    let first_of = |name: &str| first_index(&fs.read_file(&path(name)).unwrap());
    let bounds = (first_of(&names[1]), first_of(&names[2]));
    fs.remove_durable(&path(&names[1]));
    (fs, names[0].clone(), bounds)
}

#[test]
fn r10_a_missing_segment_of_committed_entries_restarts_the_log_after_it_and_reports_the_loss() {
    let (fs, first_segment, (missing_from, restart)) = committed_without_second_segment();
    let store = open(&fs, small_segments());
    let lost = store.recovery_report().lost_prefix.clone().expect("reported");
    assert_eq!((lost.indexes, lost.missing), (1..restart, missing_from..restart));
    assert_eq!((store.first_index(), store.last_index()), (restart, 20));
    assert_eq!(store.term(restart - 1).unwrap(), 1);
    let tail = store.entries(restart, 21, u64::MAX).unwrap();
    assert_eq!(tail, big_entries(restart, 21 - restart, 1, 300));
    assert!(store.recovery_report().removed_files.contains(&path(&first_segment)));
    drop(store);
    // The restart is durable: the next open finds a store that was compacted, nothing lost.
    let store = open(&fs, small_segments());
    assert_eq!(store.recovery_report().lost_prefix, None);
    assert_eq!(store.first_index(), restart);
}

/// The restart after a missing segment (R10) removes the segments before it and writes the
/// meta: a crash at any point of that open leaves a store that opens to the same log.
#[test]
fn r10_a_crash_during_the_restart_after_a_missing_segment_opens_to_the_same_log() {
    let build = || committed_without_second_segment().0;
    let probe = build();
    let before = probe.mutating_ops();
    let restart = open(&probe, small_segments()).first_index();
    let ops = probe.mutating_ops() - before;
    for halt in 0..ops {
        for seed in 0..3 {
            let fs = build();
            fs.halt_after(halt);
            assert!(LogStore::open_with(fs.clone(), common::DIR, small_segments()).is_err());
            fs.crash(halt * 3 + seed);
            let store = open(&fs, small_segments());
            assert_eq!(store.first_index(), restart, "halt {halt} seed {seed}");
            assert_eq!(
                store.entries(restart, 21, u64::MAX).unwrap(),
                big_entries(restart, 21 - restart, 1, 300),
                "halt {halt} seed {seed}"
            );
        }
    }
}

#[test]
fn r11_an_overridden_segment_that_comes_back_is_removed() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 12, 1, 300));
    let mut names = segment_names(&fs);
    names.pop(); // the active segment changes (it is sealed) before it is deleted
    let saved: Vec<_> =
        names.into_iter().map(|n| (n.clone(), fs.read_file(&path(&n)).unwrap())).collect();
    store.truncate_suffix(3).unwrap();
    store.append(&big_entries(3, 2, 2, 50)).unwrap();
    store.sync().unwrap();
    drop(store);
    for (name, bytes) in &saved {
        if !segment_names(&fs).contains(name) {
            fs.write_file_durable(&path(name), bytes); // lost removals
        }
    }
    let store = open(&fs, small_segments());
    assert!(!store.recovery_report().removed_files.is_empty());
    assert_eq!(store.last_index(), 4);
    assert_eq!(store.entries(3, 5, u64::MAX).unwrap(), big_entries(3, 2, 2, 50));
}

#[test]
fn r12_a_segment_that_does_not_continue_its_predecessor_is_corrupt() {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    store.append(&big_entries(1, 10, 1, 10)).unwrap();
    store.truncate_suffix(5).unwrap(); // segment B starts at 5
    append_each(&store, &big_entries(5, 2, 2, 1500)); // segment C starts at 6, after B
    store.sync().unwrap();
    drop(store);
    let names = segment_names(&fs);
    fs.remove_durable(&path(&names[1])); // lose B: C would override A's stale 6..10
    expect_corrupt(&fs, small_segments(), |r| *r == Corruption::BrokenChain);
}

#[test]
fn r13_commit_beyond_the_recovered_log_is_corrupt() {
    // The hard-state records in the stream come after the entries they commit, and prove
    // them (R8); the meta's copy (written by compaction) does not, so a log that lost the
    // entries it commits is refused rather than cut below the commit index.
    let fs = SimFs::new();
    let store = one_segment(&fs, 5);
    store.set_hard_state(HardState::new(1, 0, 5)).unwrap();
    store.compact_to(1).unwrap();
    drop(store);
    let name = segment_names(&fs)[0].clone();
    let mut bytes = fs.read_file(&path(&name)).unwrap();
    bytes.truncate((record_offset(4) + 10) as usize); // entry 5 torn, nothing after it
    fs.write_file_durable(&path(&name), &bytes);
    let (file, offset) = expect_corrupt(&fs, Options::default(), |r| {
        *r == Corruption::CommitBeyondLog { commit: 5, last_index: 4 }
    });
    assert_eq!((file, offset), (name, record_offset(4)));
}

/// A store of several sealed segments, each with its index.
fn sealed_store() -> (SimFs, Vec<String>) {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    append_each(&store, &big_entries(1, 20, 1, 300));
    store.sync().unwrap();
    drop(store);
    let names = segment_names(&fs);
    assert!(names.len() >= 3);
    (fs, names)
}

#[test]
fn r14_damaged_or_missing_indexes_are_rebuilt_and_reported() {
    type Damage = fn(&SimFs, &str);
    let in_sequence = Some(Corruption::Field("index entry out of sequence"));
    let cases: [(&str, Damage, Option<Corruption>); 5] = [
        ("missing", |fs, idx| fs.remove_durable(&path(idx)), None),
        ("bit flip in an entry", |fs, idx| fs.flip_bit(&path(idx), 8 * 70).unwrap(), in_sequence),
        (
            "bit flip in the header",
            |fs, idx| fs.flip_bit(&path(idx), 8 * 20).unwrap(),
            Some(Corruption::Checksum),
        ),
        (
            "torn (cut short)",
            |fs, idx| {
                let bytes = fs.read_file(&path(idx)).unwrap();
                fs.write_file_durable(&path(idx), &bytes[..bytes.len() - 7]);
            },
            Some(Corruption::Field("index count or data_end")),
        ),
        (
            "zeroed",
            |fs, idx| {
                let len = fs.read_file(&path(idx)).unwrap().len();
                fs.write_file_durable(&path(idx), &vec![0u8; len]);
            },
            Some(Corruption::Checksum),
        ),
    ];
    for (name, damage, reason) in cases {
        let (fs, names) = sealed_store();
        let idx = names[0].replace(".seg", ".idx");
        damage(&fs, &idx);
        let store = open(&fs, small_segments());
        let report = store.recovery_report();
        assert_eq!(report.rebuilt_indexes.len(), 1, "{name}: {report:?}");
        assert_eq!(report.rebuilt_indexes[0].path, path(&idx), "{name}");
        assert_eq!(report.rebuilt_indexes[0].reason, reason, "{name}");
        assert!(report.indexed_segments >= 1, "{name}: the other sealed segments used their index");
        assert_eq!(store.entries(1, 21, u64::MAX).unwrap(), big_entries(1, 20, 1, 300), "{name}");
        drop(store);
        let store = open(&fs, small_segments());
        assert!(store.recovery_report().rebuilt_indexes.is_empty(), "{name}: rebuilt index reused");
    }
}

#[test]
fn r14_an_index_of_another_segment_is_rebuilt() {
    let (fs, names) = sealed_store();
    let other = fs.read_file(&path(&names[1].replace(".seg", ".idx"))).unwrap();
    fs.write_file_durable(&path(&names[0].replace(".seg", ".idx")), &other);
    let store = open(&fs, small_segments());
    let reason = store.recovery_report().rebuilt_indexes[0].reason.clone();
    assert!(matches!(reason, Some(Corruption::Identity(_))), "{reason:?}");
    assert_eq!(store.entries(1, 21, u64::MAX).unwrap(), big_entries(1, 20, 1, 300));
}

#[test]
fn r15_stale_and_orphaned_indexes_are_removed() {
    let (fs, names) = sealed_store();
    let active_idx = names.last().unwrap().replace(".seg", ".idx");
    fs.write_file_durable(&path(&active_idx), b"stale");
    fs.write_file_durable(&path("00000000000000ff.idx"), b"orphan");
    let store = open(&fs, small_segments());
    let removed = &store.recovery_report().removed_files;
    assert!(
        removed.contains(&path(&active_idx)) && removed.contains(&path("00000000000000ff.idx")),
        "{removed:?}"
    );
    assert_eq!(store.last_index(), 20);
}

#[test]
fn a_crash_between_sealing_and_writing_the_index_rebuilds_it() {
    // Every crash point of a rotation: in the append, the seal's write and the next segment's
    // start in a pool-named file; in the sync that settles it, the seal's fsync, the index
    // (create, write, fsync), the next segment's fsync, rename and directory fsync. Each
    // recovers every synced entry; a missing or torn index is rebuilt, never trusted.
    // Five 300-byte entries fill a 2 KiB segment: the sixth rotates.
    let probe = SimFs::new();
    let store = open(&probe, small_segments());
    append_each(&store, &big_entries(1, 5, 1, 300));
    store.sync().unwrap();
    let before = probe.mutating_ops();
    store.append(&big_entries(6, 1, 1, 300)).unwrap();
    assert_eq!(segment_names(&probe).len(), 1, "the rotation waits for a sync to settle it");
    store.sync().unwrap();
    let rotation_ops = probe.mutating_ops() - before;
    assert_eq!(segment_names(&probe).len(), 2, "the sixth entry rotated");
    drop(store);
    let mut rebuilt = 0;
    for halt_after in 0..rotation_ops {
        for seed in 0..8 {
            let fs = SimFs::new();
            let store = open(&fs, small_segments());
            append_each(&store, &big_entries(1, 5, 1, 300));
            store.sync().unwrap();
            fs.halt_after(halt_after);
            let rotated = store.append(&big_entries(6, 1, 1, 300)).and_then(|()| store.sync());
            assert!(rotated.is_err(), "halt {halt_after}");
            drop(store);
            fs.crash(seed);
            let store = open(&fs, small_segments());
            rebuilt += store.recovery_report().rebuilt_indexes.len();
            let got = store.entries(1, 6, u64::MAX).unwrap();
            assert_eq!(got, big_entries(1, 5, 1, 300), "halt {halt_after} seed {seed}");
        }
    }
    assert!(rebuilt > 0, "some crash states must lose the index");
}
