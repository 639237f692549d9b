//! The stores in `format/golden/v{N}/` were written by format version N, by the same workload
//! (write the one of a new format version with `RAFTLOG_WRITE_GOLDEN=<N> cargo test --test
//! golden`; never rewrite an old one). This test opens a copy of each and checks every entry,
//! the bounds and the hard state: a change to the codec that breaks reading old stores fails
//! here. Version 2 adds hard-state records and sync marks in the stream.

use std::path::{Path, PathBuf};

use raftlog::{Entry, HardState, LogStore, Options};

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
    store.set_metadata(GOLDEN_METADATA).unwrap(); // format 2
    store.sync().unwrap();
}

/// The engine metadata of the format-2 golden store.
const GOLDEN_METADATA: &[u8] = b"conf voters 1,2,3 learners 4";

fn golden_dir(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("format/golden/v{version}"))
}

/// Opens a copy of the golden store of format `version` and checks its contents. With
/// `RAFTLOG_WRITE_GOLDEN=<version>` set to the version this code writes, the store is written
/// anew first.
fn check_golden_store(version: u16) {
    let dir = golden_dir(version);
    if std::env::var("RAFTLOG_WRITE_GOLDEN").is_ok_and(|v| v == version.to_string()) {
        let _ = std::fs::remove_dir_all(&dir);
        write_golden(&dir);
        std::fs::remove_file(dir.join("LOCK")).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for file in std::fs::read_dir(&dir).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), copy.path().join(file.file_name())).unwrap();
        names.push(file.file_name().to_str().unwrap().to_owned());
    }
    names.sort();
    assert!(names.len() >= 4, "the golden store holds a meta file and several segments");
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".seg")).collect();
    let stored: u64 = segments.iter().map(|n| std::fs::metadata(dir.join(n)).unwrap().len()).sum();
    let logical: u64 = (1..=60).map(|i| expected_before_truncation(i).payload.len() as u64).sum();
    assert!(stored < logical, "the large entries are stored compressed ({stored} < {logical})");
    let active = std::fs::read(dir.join(segments.last().unwrap())).unwrap();
    assert_eq!(u16::from_le_bytes([active[4], active[5]]), version, "segment format version");
    if version >= 2 {
        let mark_type = active[active.len() - 32 + 24];
        assert_eq!(mark_type, 3, "the active segment ends with a sync mark");
        assert_eq!(active[64 + 24], 4, "a segment opens with a hard-state record");
    }
    let store = LogStore::open(copy.path(), options()).unwrap();
    let report = store.recovery_report();
    assert!(!report.created && report.torn_tail.is_none(), "{report:?}");
    assert!(report.rebuilt_indexes.is_empty(), "the index files are read as written: {report:?}");
    assert!(report.indexed_segments >= 1, "sealed segments open through their index: {report:?}");
    assert_eq!((store.first_index(), store.last_index()), (11, 55));
    assert_eq!(store.term(10).unwrap(), 1);
    assert_eq!(store.hard_state(), HardState::new(3, 2, 45));
    let metadata: &[u8] = if version >= 2 { GOLDEN_METADATA } else { b"" };
    assert_eq!(store.metadata(), metadata);
    let want: Vec<Entry> = (11..=55).map(expected).collect();
    assert_eq!(store.entries(11, 56, u64::MAX).unwrap(), want);
}

#[test]
fn format_v1_golden_store_opens_with_its_contents() {
    check_golden_store(1);
}

#[test]
fn format_v2_golden_store_opens_with_its_contents() {
    check_golden_store(2);
}

const SNAPSHOT_GOLDEN: &str = "format/golden/snapshot-v1";

/// The files of the golden snapshot: (slot, name, bytes).
fn golden_snapshot_files() -> Vec<(u32, String, Vec<u8>)> {
    vec![
        (3, "1606456789-101-0.tsfile".into(), b"tsfile bytes ".repeat(40)),
        (3, "schema".into(), b"root.sg1.d1.s1 INT64".to_vec()),
        (70, "empty".into(), Vec::new()),
    ]
}

/// The encoded chunk beside the golden snapshot: bytes 100..300 of its first file.
fn golden_chunk_request() -> raftlog::snapshot::ChunkRequest {
    raftlog::snapshot::ChunkRequest {
        slot: 3,
        name: "1606456789-101-0.tsfile".into(),
        offset: 100,
        len: 200,
    }
}

#[test]
fn snapshot_format_v1_golden_snapshot_and_chunk_read_back() {
    use raftlog::snapshot::{Accepted, Chunk};
    use raftlog::SnapshotStore;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(SNAPSHOT_GOLDEN);
    if std::env::var_os("RAFTLOG_WRITE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        let store = SnapshotStore::open(&golden).unwrap();
        let mut writer = store.begin(1234, 5, b"peers 1,2,3").unwrap();
        for (slot, name, bytes) in golden_snapshot_files() {
            writer.add_bytes(slot, &name, &bytes).unwrap();
        }
        let meta = writer.finish().unwrap();
        let chunk = store.source(&meta).unwrap().chunk(&golden_chunk_request()).unwrap();
        std::fs::write(golden.join("chunk.bin"), chunk.encode()).unwrap();
        drop(store);
        std::fs::remove_file(golden.join("LOCK")).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&golden, copy.path());
    let store = SnapshotStore::open(copy.path()).unwrap();
    let meta = store.latest_verified().unwrap().expect("the golden snapshot verifies");
    assert_eq!((meta.index, meta.term, meta.partial), (1234, 5, false));
    assert_eq!(meta.configuration, b"peers 1,2,3");
    for (slot, name, bytes) in golden_snapshot_files() {
        assert_eq!(store.read(&meta, slot, &name).unwrap(), bytes, "{slot}/{name}");
    }
    assert_eq!(meta.file_count(), 3);

    let chunk = Chunk::decode(&std::fs::read(golden.join("chunk.bin")).unwrap()).unwrap();
    let request = golden_chunk_request();
    assert_eq!((chunk.slot, chunk.offset, chunk.len), (request.slot, request.offset, request.len));
    let receiving = tempfile::tempdir().unwrap();
    let receiver_store = SnapshotStore::open(receiving.path()).unwrap();
    let source = store.source(&meta).unwrap();
    let mut receiver = receiver_store.receive(source.manifest()).unwrap();
    assert_eq!(receiver.accept(&chunk).unwrap(), Accepted::Stored);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
