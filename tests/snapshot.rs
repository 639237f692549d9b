//! The snapshot store: publish, read back verified, retention, corruption fallback, log
//! compaction after publishing, and bad input refused with nothing changed.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use raftlog::fs::{FileSystem, SimFs};
use raftlog::snapshot::{Verify, NAME_BYTES_MAX};
use raftlog::{Corruption, Error, LogStore, Options, SnapshotOptions, SnapshotStore};

const SNAP: &str = "/snap";
const STATE: &str = "/state";

fn open(fs: &SimFs) -> SnapshotStore<SimFs> {
    SnapshotStore::open_with(fs.clone(), SNAP, SnapshotOptions::default()).expect("open")
}

/// A durable state-machine file of `len` bytes derived from `seed`.
fn state_file(fs: &SimFs, name: &str, len: usize, seed: u8) -> PathBuf {
    let path = Path::new(STATE).join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    fs.write_file_durable(&path, &bytes);
    path
}

/// Every directory under the snapshot directory.
fn dirs(fs: &SimFs) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list_dirs(Path::new(SNAP))
        .unwrap()
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The published directory of the only snapshot at `index`.
fn published(fs: &SimFs, store: &SnapshotStore<SimFs>, index: u64) -> PathBuf {
    let metas = store.list().unwrap();
    let position = metas.iter().position(|m| m.index == index).expect("snapshot listed");
    let snaps: Vec<String> = dirs(fs).into_iter().filter(|d| d.ends_with(".snap")).collect();
    Path::new(SNAP).join(&snaps[position])
}

#[test]
fn publishes_links_copies_and_generated_files_and_reads_them_back() {
    let fs = SimFs::new();
    let a = state_file(&fs, "a.tsfile", 5000, 1);
    let store = open(&fs);
    let mut writer = store.begin(42, 3, b"peers 1,2,3").unwrap();
    writer.add_file(7, "a.tsfile", &a).unwrap();
    writer.add_bytes(7, "schema", b"root.sg1").unwrap();
    let mut generated = writer.file_writer(9, "gen").unwrap();
    for part in 0..100u32 {
        generated.write_all(&part.to_le_bytes()).unwrap();
    }
    generated.close().unwrap();
    assert_eq!(writer.copied_files(), 0);
    let meta = writer.finish().unwrap();

    assert_eq!(
        (meta.index, meta.term, meta.configuration.as_slice()),
        (42, 3, &b"peers 1,2,3"[..])
    );
    let names: Vec<(u32, &str)> = meta
        .slots
        .iter()
        .flat_map(|(s, fs)| fs.iter().map(move |f| (*s, f.name.as_str())))
        .collect();
    assert_eq!(names, [(7, "a.tsfile"), (7, "schema"), (9, "gen")]);
    assert_eq!(meta.file(7, "a.tsfile").unwrap().size, 5000);
    assert_eq!(store.read(&meta, 7, "a.tsfile").unwrap(), fs.read_file(&a).unwrap());
    assert_eq!(store.read(&meta, 7, "schema").unwrap(), b"root.sg1");
    let expected: Vec<u8> = (0..100u32).flat_map(u32::to_le_bytes).collect();
    let mut streamed = Vec::new();
    store.reader(&meta, 9, "gen").unwrap().read_to_end(&mut streamed).unwrap();
    assert_eq!(streamed, expected);

    let linked = published(&fs, &store, 42).join("00000007-a.tsfile");
    assert!(fs.same_file(&a, &linked).unwrap(), "the state file is hard-linked, not copied");
    drop(store);
    let store = open(&fs);
    assert_eq!(store.latest().unwrap(), Some(meta));
}

#[test]
fn copies_when_the_file_system_cannot_link() {
    let fs = SimFs::new();
    let a = state_file(&fs, "a", 3000, 2);
    fs.refuse_links(true);
    let store = open(&fs);
    let mut writer = store.begin(1, 1, b"").unwrap();
    writer.add_file(0, "a", &a).unwrap();
    assert_eq!(writer.copied_files(), 1);
    let meta = writer.finish().unwrap();
    let copy = published(&fs, &store, 1).join("00000000-a");
    assert!(!fs.same_file(&a, &copy).unwrap());
    assert_eq!(store.read(&meta, 0, "a").unwrap(), fs.read_file(&a).unwrap());
}

#[test]
fn links_on_the_real_disk_share_the_inode() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data.tsfile");
    std::fs::write(&source, vec![5u8; 10_000]).unwrap();
    let store = SnapshotStore::open(dir.path().join("snapshots")).unwrap();
    let mut writer = store.begin(3, 1, b"conf").unwrap();
    writer.add_file(1, "data.tsfile", &source).unwrap();
    let meta = writer.finish().unwrap();
    assert_eq!(std::fs::metadata(&source).unwrap().nlink(), 2);
    assert_eq!(store.read(&meta, 1, "data.tsfile").unwrap(), vec![5u8; 10_000]);
    drop(store);
    let store = SnapshotStore::open(dir.path().join("snapshots")).unwrap();
    assert_eq!(store.latest().unwrap(), Some(meta));
}

#[test]
fn an_abandoned_writer_leaves_nothing_that_is_reported() {
    let fs = SimFs::new();
    let store = open(&fs);
    let mut writer = store.begin(5, 1, b"").unwrap();
    writer.add_bytes(1, "x", b"partial").unwrap();
    drop(writer);
    assert!(dirs(&fs).is_empty(), "{:?}", dirs(&fs));
    assert_eq!(store.latest().unwrap(), None);

    // A writer cut off by a crash: its staging directory is removed by the next open.
    let mut writer = store.begin(6, 1, b"").unwrap();
    writer.add_bytes(1, "x", b"partial").unwrap();
    std::mem::forget(writer);
    drop(store);
    assert_eq!(dirs(&fs).len(), 1);
    let store = open(&fs);
    assert!(dirs(&fs).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn bad_names_duplicates_and_limits_are_refused_and_change_nothing() {
    let fs = SimFs::new();
    let options = SnapshotOptions::default().files_max(2).configuration_bytes_max(4);
    let store = SnapshotStore::open_with(fs.clone(), SNAP, options).unwrap();
    assert!(matches!(store.begin(1, 1, b"too long"), Err(Error::LimitExceeded { .. })));
    let mut writer = store.begin(1, 1, b"ok").unwrap();
    let long = "n".repeat(NAME_BYTES_MAX + 1);
    for bad in ["", "../escape", "/etc/passwd", "a/b", "a\\b", "..", long.as_str()] {
        let err = writer.add_bytes(0, bad, b"x").unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    writer.add_bytes(0, "a", b"1").unwrap();
    assert!(matches!(writer.add_bytes(0, "a", b"2"), Err(Error::DuplicateFile { slot: 0, .. })));
    writer.add_bytes(1, "a", b"3").unwrap();
    assert!(matches!(
        writer.add_bytes(2, "c", b"4"),
        Err(Error::LimitExceeded { what: "files", .. })
    ));
    let staging = Path::new(SNAP).join(&dirs(&fs)[0]);
    let mut files = fs.list(&staging).unwrap();
    files.sort();
    assert_eq!(files, [PathBuf::from("00000000-a"), PathBuf::from("00000001-a")]);
    let meta = writer.finish().unwrap();
    assert_eq!(meta.file_count(), 2);
    assert!(matches!(store.read(&meta, 0, "zz"), Err(Error::UnknownFile { slot: 0, .. })));
}

/// Three snapshots at indexes 10, 20, 30, each with two slots.
fn three_snapshots(fs: &SimFs, store: &SnapshotStore<SimFs>) -> Vec<raftlog::SnapshotMeta> {
    (1..=3u64)
        .map(|k| {
            let mut writer = store.begin(10 * k, k, format!("conf {k}").as_bytes()).unwrap();
            let a = state_file(fs, &format!("a{k}"), 2000 * k as usize, k as u8);
            writer.add_file(1, "a", &a).unwrap();
            writer.add_bytes(2, "b", format!("b of {k}").as_bytes()).unwrap();
            writer.finish().unwrap()
        })
        .collect()
}

#[test]
fn a_damaged_data_file_is_detected_and_latest_verified_falls_back() {
    let fs = SimFs::new();
    let store = open(&fs);
    let metas = three_snapshots(&fs, &store);
    let damaged = published(&fs, &store, 30).join("00000001-a");
    fs.flip_bit(&damaged, 777).unwrap();

    let err = store.read(&metas[2], 1, "a").unwrap_err();
    assert!(matches!(err, Error::Corrupt { reason: Corruption::Checksum, .. }), "{err}");
    let mut streamed = Vec::new();
    let err = store.reader(&metas[2], 1, "a").unwrap().read_to_end(&mut streamed).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(store.latest_verified().unwrap(), Some(metas[1].clone()));
    let scan = store.scan(Verify::Data).unwrap();
    assert_eq!(scan.snapshots, metas[..2]);
    assert_eq!(scan.skipped.len(), 1);
    assert!(matches!(scan.skipped[0].error, Error::Corrupt { reason: Corruption::Checksum, .. }));
    // A truncated or missing file is caught by the cheap check too.
    let shorter = published(&fs, &store, 20).join("00000002-b");
    fs.remove(&shorter).unwrap();
    assert_eq!(store.latest().unwrap(), Some(metas[2].clone()));
    assert_eq!(store.latest_verified().unwrap(), Some(metas[0].clone()));
    let scan = store.scan(Verify::Manifest).unwrap();
    assert!(matches!(
        scan.skipped[0].error,
        Error::Corrupt { reason: Corruption::MissingFile, .. }
    ));
}

#[test]
fn a_damaged_manifest_is_skipped_with_its_reason() {
    let fs = SimFs::new();
    let store = open(&fs);
    let metas = three_snapshots(&fs, &store);
    let damaged_dir = published(&fs, &store, 30);
    fs.flip_bit(&damaged_dir.join("MANIFEST"), 200).unwrap();
    assert_eq!(store.latest().unwrap(), Some(metas[1].clone()));
    let scan = store.scan(Verify::Manifest).unwrap();
    assert_eq!(scan.skipped.len(), 1);
    assert_eq!(scan.skipped[0].path, damaged_dir);
    assert!(matches!(scan.skipped[0].error, Error::Corrupt { reason: Corruption::Checksum, .. }));
    // A manifest of another group is skipped the same way.
    drop(store);
    let other = SnapshotOptions::default().group(9);
    let store = SnapshotStore::open_with(fs.clone(), SNAP, other).unwrap();
    assert_eq!(store.latest().unwrap(), None);
    let scan = store.scan(Verify::Manifest).unwrap();
    assert_eq!(scan.skipped.len(), 3);
    assert!(scan
        .skipped
        .iter()
        .any(|s| matches!(s.error, Error::ForeignGroup { expected: 9, found: 0 })));
}

#[test]
fn retention_keeps_the_newest_and_deletion_is_complete() {
    let fs = SimFs::new();
    let store = open(&fs);
    let metas = three_snapshots(&fs, &store);
    store.keep_latest(2).unwrap();
    assert_eq!(store.list().unwrap(), metas[1..]);
    store.delete(&metas[2]).unwrap();
    assert_eq!(store.list().unwrap(), metas[1..2]);
    assert_eq!(dirs(&fs).len(), 1);
    store.keep_latest(0).unwrap();
    assert!(dirs(&fs).is_empty());
    // The hard-linked state files are untouched by deletion.
    assert_eq!(fs.read_file(Path::new("/state/a3")).unwrap().len(), 6000);
}

#[test]
fn compaction_follows_publication() {
    let fs = SimFs::new();
    let log = LogStore::open_with(fs.clone(), "/log", Options::default()).unwrap();
    log.append(&common::entries(1, &[1; 100])).unwrap();
    log.sync().unwrap();
    let store = open(&fs);
    let writer = store.begin(60, 1, b"").unwrap();
    // A failed publication leaves the log whole.
    fs.fail_nth(raftlog::fs::FaultOp::Rename, 0);
    assert!(writer.finish_and_compact(&log).is_err());
    assert_eq!(log.first_index(), 1);
    assert_eq!(store.latest().unwrap(), None);

    let meta = store.begin(60, 1, b"").unwrap().finish_and_compact(&log).unwrap();
    assert_eq!(store.latest().unwrap(), Some(meta));
    assert_eq!((log.first_index(), log.last_index()), (61, 100));
    assert_eq!(log.term(60).unwrap(), 1);

    // A snapshot beyond the log resets it to continue after the snapshot.
    store.begin(150, 2, b"").unwrap().finish_and_compact(&log).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (151, 150));
    assert_eq!(log.term(150).unwrap(), 2);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let fs = SimFs::new();
    let _store = open(&fs);
    let err = SnapshotStore::open_with(fs.clone(), SNAP, SnapshotOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
}
