//! The store in `format/golden/v1/` was written by format version 1 (regenerate it only for a
//! new format version, with `RAFTLOG_WRITE_GOLDEN=1 cargo test --test golden`). This test opens
//! a copy and checks every entry, the bounds and the hard state: a change to the codec that
//! breaks reading old stores fails here.

use std::path::{Path, PathBuf};

use raftlog::{Entry, HardState, LogStore, Options};

const GOLDEN: &str = "format/golden/v1";

fn options() -> Options {
    Options::default().segment_bytes_max(4096)
}

/// The entry the golden workload leaves at `index`; every seventh is large enough to be
/// stored zstd-compressed.
fn expected(index: u64) -> Entry {
    if index >= 50 {
        Entry::new(index, 3, format!("rewritten entry {index}")).with_kind(1)
    } else if index % 7 == 0 {
        let term = 1 + index / 30;
        Entry::new(index, term, format!("compressible row {index};").repeat(300)).with_kind(2)
    } else {
        let term = 1 + index / 30;
        Entry::new(index, term, format!("golden entry {index} ").repeat(4))
            .with_kind((index % 3) as u8)
    }
}

fn expected_before_truncation(index: u64) -> Entry {
    if index >= 50 {
        let term = 1 + index / 30;
        Entry::new(index, term, format!("golden entry {index} ").repeat(4))
            .with_kind((index % 3) as u8)
    } else {
        expected(index)
    }
}

/// The workload that wrote the golden store: rotations, a truncation into a sealed segment,
/// a compaction and a hard state.
fn write_golden(dir: &Path) {
    let store = LogStore::open(dir, options()).unwrap();
    for index in 1..=60 {
        store.append(&[expected_before_truncation(index)]).unwrap();
    }
    store.truncate_suffix(50).unwrap();
    store.append(&(50..=55).map(expected).collect::<Vec<_>>()).unwrap();
    store.compact_to(10).unwrap();
    store.set_hard_state(HardState::new(3, 2, 45)).unwrap();
    store.sync().unwrap();
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN)
}

#[test]
fn format_v1_golden_store_opens_with_its_contents() {
    if std::env::var_os("RAFTLOG_WRITE_GOLDEN").is_some() {
        let dir = golden_dir();
        let _ = std::fs::remove_dir_all(&dir);
        write_golden(&dir);
        std::fs::remove_file(dir.join("LOCK")).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for file in std::fs::read_dir(golden_dir()).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
        names.push(file.file_name());
    }
    assert!(names.len() >= 4, "the golden store holds a meta file and several segments");
    let stored: u64 = names
        .iter()
        .filter(|n| n.to_str().unwrap().ends_with(".seg"))
        .map(|n| std::fs::metadata(golden_dir().join(n)).unwrap().len())
        .sum();
    let logical: u64 = (1..=60).map(|i| expected_before_truncation(i).payload.len() as u64).sum();
    assert!(stored < logical, "the large entries are stored compressed ({stored} < {logical})");
    let store = LogStore::open(copy.path(), options()).unwrap();
    let report = store.recovery_report();
    assert!(!report.created && report.torn_tail.is_none(), "{report:?}");
    assert!(
        report.rebuilt_indexes.is_empty(),
        "the v1 index files are read as written: {report:?}"
    );
    assert!(report.indexed_segments >= 1, "sealed segments open through their index: {report:?}");
    assert_eq!((store.first_index(), store.last_index()), (11, 55));
    assert_eq!(store.term(10).unwrap(), 1);
    assert_eq!(store.hard_state(), HardState::new(3, 2, 45));
    let want: Vec<Entry> = (11..=55).map(expected).collect();
    assert_eq!(store.entries(11, 56, u64::MAX).unwrap(), want);
}
