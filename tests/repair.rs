//! Damaged entries of sealed segments (format/SPEC.md, "Repair"): found by a read or a scrub,
//! never returned, listed exactly, and rewritten from a peer's copy, crash-safely.

mod common;

use common::segments::{entry_records, first_index};
use common::{append_each, big_entries, open, path, segment_names, small_segments};
use raftlog::fs::SimFs;
use raftlog::{Compression, Corruption, Entry, Error, LogStore, Options};

/// A store of 12 entries of 300 bytes in segments of a few entries each, closed; and the name
/// of its first segment (entries 1.. are its records, one per append).
fn build() -> (SimFs, Vec<Entry>, String) {
    let fs = SimFs::new();
    let store = open(&fs, small_segments());
    let entries = big_entries(1, 12, 1, 300);
    append_each(&store, &entries);
    drop(store);
    let first = segment_names(&fs)[0].clone();
    (fs, entries, first)
}

/// Offset of the record of entry `index` in segment `name`.
fn offset_of(fs: &SimFs, name: &str, index: u64) -> u64 {
    let bytes = fs.read_file(&path(name)).unwrap();
    entry_records(&bytes).into_iter().find(|r| r.index == index).expect("an entry").offset
}

/// The first index of segment `name` (its header's `first_index`).
fn first_index_of(fs: &SimFs, name: &str) -> u64 {
    first_index(&fs.read_file(&path(name)).unwrap())
}

fn all(store: &LogStore<SimFs>) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut index = store.first_index();
    while index <= store.last_index() {
        let got = store.entries(index, store.last_index() + 1, u64::MAX).unwrap();
        index += got.len() as u64;
        out.extend(got);
    }
    out
}

#[test]
fn a_damaged_payload_is_never_returned_and_a_peer_copy_repairs_it() {
    let (fs, entries, first) = build();
    let offset = offset_of(&fs, &first, 2);
    fs.flip_bit(&path(&first), 8 * (offset + 32 + 100)).unwrap();
    let store = open(&fs, small_segments());
    // A read stops before the damage, and one starting at it fails, naming it.
    assert_eq!(store.entries(1, 5, u64::MAX).unwrap(), entries[..1]);
    let got = store.entries(2, 5, u64::MAX);
    let Err(Error::Damaged { index: 2, offset: at, reason: Corruption::Checksum, .. }) = got else {
        panic!("{got:?}")
    };
    assert_eq!(at, offset);
    assert_eq!(store.entries(3, 5, u64::MAX).unwrap(), entries[2..4]);
    assert_eq!(store.damaged(), vec![2..=2]);
    store.repair(&entries[1..2]).unwrap();
    assert!(store.damaged().is_empty());
    assert_eq!(all(&store), entries);
    drop(store);
    let store = open(&fs, small_segments());
    assert_eq!(store.scrub().unwrap(), vec![]);
    assert_eq!(all(&store), entries);
}

#[test]
fn a_scrub_finds_every_damaged_record_header_and_payload() {
    let (fs, entries, first) = build();
    let second = segment_names(&fs)[1].clone();
    fs.flip_bit(&path(&first), 8 * (offset_of(&fs, &first, 1) + 9)).unwrap(); // header: index
    fs.flip_bit(&path(&first), 8 * (offset_of(&fs, &first, 2) + 40)).unwrap(); // payload
    let victim = first_index_of(&fs, &second);
    fs.flip_bit(&path(&second), 8 * (offset_of(&fs, &second, victim) + 4)).unwrap(); // length
    let store = open(&fs, small_segments());
    let damaged = store.scrub().unwrap();
    assert_eq!(damaged, vec![1..=2, victim..=victim]);
    let mut copies: Vec<Entry> = entries[..2].to_vec();
    copies.push(entries[victim as usize - 1].clone());
    store.repair(&copies).unwrap();
    assert_eq!(store.scrub().unwrap(), vec![]);
    assert_eq!(all(&store), entries);
}

#[test]
fn repair_refuses_what_it_cannot_verify_and_changes_nothing() {
    let (fs, entries, first) = build();
    fs.flip_bit(&path(&first), 8 * (offset_of(&fs, &first, 2) + 40)).unwrap();
    let store = open(&fs, small_segments());
    store.scrub().unwrap();
    let before = common::snapshot(&fs);
    let refused = |entry: Entry| match store.repair(&[entry]) {
        Err(Error::RepairRefused { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    let other_term = Entry { term: 2, ..entries[1].clone() };
    assert_eq!(refused(other_term), "the segment's index records another term");
    let longer = Entry::new(2, 1, vec![7u8; 301]);
    assert_eq!(refused(longer), "the entry does not re-encode to the record's extent");
    let intact_but_different = Entry::new(1, 1, vec![9u8; 300]);
    assert_eq!(refused(intact_but_different), "the record on disk verifies and differs");
    let active = Entry::new(12, 1, vec![0u8; 300]);
    assert_eq!(refused(active), "not in a sealed segment");
    assert_eq!(refused(Entry::new(13, 1, "x")), "not a live entry");
    // A batch with one bad entry writes none of it.
    assert!(store.repair(&[entries[1].clone(), Entry { term: 5, ..entries[0].clone() }]).is_err());
    assert_eq!(common::snapshot(&fs), before, "a refused repair changed the directory");
    assert_eq!(store.damaged(), vec![2..=2]);
    // An intact record given again is left alone.
    store.repair(&entries[..1]).unwrap();
    assert_eq!(common::snapshot(&fs), before);
}

#[test]
fn compressed_records_are_repaired_to_the_same_extent() {
    let fs = SimFs::new();
    let options = Options::default()
        .segment_bytes_max(2048)
        .compression(Compression::Zstd { level: 1, threshold_bytes: 64 });
    let store = open(&fs, options.clone());
    let entries: Vec<Entry> = (1..=20u64)
        .map(|i| Entry::new(i, 1, format!("entry {i} ").repeat(200 + i as usize)))
        .collect();
    append_each(&store, &entries);
    drop(store);
    let first = segment_names(&fs)[0].clone();
    assert!(first_index_of(&fs, &segment_names(&fs)[1]) > 3);
    let offset = offset_of(&fs, &first, 3);
    let header = fs.read_file(&path(&first)).unwrap()[offset as usize..][..32].to_vec();
    assert_eq!(header[26] & 1, 1, "the record is compressed");
    fs.flip_bit(&path(&first), 8 * (offset + 32 + 10)).unwrap();
    let store = open(&fs, options);
    assert_eq!(store.scrub().unwrap(), vec![3..=3]);
    store.repair(&entries[2..3]).unwrap();
    assert_eq!(all(&store), entries);
}

#[test]
fn marks_lapse_when_the_entry_is_truncated_away() {
    let (fs, entries, _) = build();
    // Damage an entry above the commit index (nothing is committed), then truncate it.
    let second = segment_names(&fs)[1].clone();
    let first_index = first_index_of(&fs, &second);
    fs.flip_bit(&path(&second), 8 * (offset_of(&fs, &second, first_index) + 40)).unwrap();
    let store = open(&fs, small_segments());
    assert_eq!(store.scrub().unwrap(), vec![first_index..=first_index]);
    store.truncate_suffix(first_index).unwrap();
    assert!(store.damaged().is_empty());
    store.append(&entries[first_index as usize - 1..]).unwrap();
    assert_eq!(all(&store), entries);
}

/// A crash at every mutating operation of a repair leaves either the damaged segment (found
/// and repaired again) or the repaired one: never wrong bytes, and never a lost entry.
#[test]
fn a_crash_at_any_point_of_a_repair_is_repaired_again() {
    let (fs, entries, first) = build();
    fs.flip_bit(&path(&first), 8 * (offset_of(&fs, &first, 2) + 40)).unwrap();
    let image = fs.files();
    let ops = {
        let store = open(&fs, small_segments());
        store.scrub().unwrap();
        let before = fs.mutating_ops();
        store.repair(&entries[1..2]).unwrap();
        fs.mutating_ops() - before
    };
    assert!(ops >= 4, "copy, sync, rename, sync_dir: {ops}");
    for halt in 0..ops {
        for seed in 0..4 {
            let fs = SimFs::new();
            for (file, bytes) in &image {
                fs.write_file_durable(file, bytes);
            }
            let store = open(&fs, small_segments());
            store.scrub().unwrap();
            fs.halt_after(halt);
            assert!(store.repair(&entries[1..2]).is_err(), "halt {halt}");
            drop(store);
            fs.crash(halt * 4 + seed);
            let store = open(&fs, small_segments());
            let damaged = store.scrub().unwrap();
            assert!(damaged == vec![2..=2] || damaged.is_empty(), "halt {halt} seed {seed}");
            if !damaged.is_empty() {
                store.repair(&entries[1..2]).unwrap();
            }
            assert_eq!(all(&store), entries, "halt {halt} seed {seed}");
        }
    }
}
