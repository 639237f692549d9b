//! Crash simulation of the snapshot store: a workload of publishes (linked, written and
//! generated files), retention, a resumable transfer with install, and a deletion, cut at
//! every mutating disk operation and crashed with several seeds. After each crash the store
//! must reopen; every snapshot it reports must verify and hold exactly the files it was
//! published with; every acknowledged publish must be there and every acknowledged deletion
//! gone; and the interrupted transfer must complete.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use raftlog::fs::{FileSystem, SimFs};
use raftlog::snapshot::Verify;
use raftlog::{Error, SnapshotMeta, SnapshotOptions, SnapshotStore};

const SNAP: &str = "/snap";
const SEEDS: u64 = 4;

fn options() -> SnapshotOptions {
    SnapshotOptions::default().chunk_bytes(1024)
}

/// The files a locally published snapshot at `index` holds: (slot, name, bytes).
fn local_files(index: u64) -> Vec<(u32, String, Vec<u8>)> {
    vec![
        (1, "linked".into(), state_bytes(index)),
        (2, "bytes".into(), format!("bytes of {index} ").repeat(50).into_bytes()),
        (3, "gen".into(), (0..3000u32).map(|i| (i as u64 * index) as u8).collect()),
    ]
}

fn state_bytes(index: u64) -> Vec<u8> {
    (0..1500u64).map(|i| (i * 7 + index) as u8).collect()
}

fn state_path(index: u64) -> String {
    format!("/state/{index}.tsfile")
}

/// What the disk must and may hold: snapshot indexes.
#[derive(Default)]
struct Model {
    may: BTreeSet<u64>,
    must: BTreeSet<u64>,
}

impl Model {
    fn publishing(&mut self, index: u64) {
        self.may.insert(index);
    }
    fn published(&mut self, index: u64) {
        self.must.insert(index);
    }
    fn deleting(&mut self, index: u64) {
        self.must.remove(&index);
    }
    fn deleted(&mut self, index: u64) {
        self.may.remove(&index);
    }
}

fn publish(
    store: &SnapshotStore<SimFs>,
    index: u64,
    model: &mut Model,
) -> Result<SnapshotMeta, Error> {
    model.publishing(index);
    let files = local_files(index);
    let mut writer = store.begin(index, index / 10, b"conf")?;
    writer.add_file(files[0].0, &files[0].1, state_path(index))?;
    writer.add_bytes(files[1].0, &files[1].1, &files[1].2)?;
    let mut generated = writer.file_writer(files[2].0, &files[2].1)?;
    for piece in files[2].2.chunks(700) {
        generated.write_all(piece).map_err(|e| Error::Io {
            op: "write",
            path: "gen".into(),
            source: e,
        })?;
    }
    generated.close()?;
    let meta = writer.finish()?;
    model.published(index);
    Ok(meta)
}

/// Receives `leader`'s snapshot in two halves with a checkpoint between them, and installs.
fn transfer(
    store: &SnapshotStore<SimFs>,
    leader: &SnapshotStore<SimFs>,
    model: &mut Model,
) -> Result<(), Error> {
    let meta = leader.latest()?.expect("the leader has a snapshot");
    let source = leader.source(&meta)?;
    model.publishing(meta.index);
    let mut receiver = store.receive(source.manifest())?;
    let requests = receiver.missing(None, usize::MAX);
    for (k, request) in requests.iter().enumerate() {
        receiver.accept(&source.chunk(request)?)?;
        if k == requests.len() / 2 {
            receiver.checkpoint()?;
        }
    }
    receiver.install()?;
    model.published(meta.index);
    Ok(())
}

fn workload(fs: &SimFs, leader: &SnapshotStore<SimFs>, model: &mut Model) -> Result<(), Error> {
    let store = SnapshotStore::open_with(fs.clone(), SNAP, options())?;
    publish(&store, 10, model)?;
    let second = publish(&store, 20, model)?;
    model.deleting(10);
    store.keep_latest(1)?;
    model.deleted(10);
    transfer(&store, leader, model)?;
    model.deleting(20);
    store.delete(&second)?;
    model.deleted(20);
    Ok(())
}

fn fresh_disk() -> SimFs {
    let fs = SimFs::new();
    for index in [10, 20] {
        fs.write_file_durable(Path::new(&state_path(index)), &state_bytes(index));
    }
    fs
}

fn leader() -> (SimFs, SnapshotStore<SimFs>) {
    let fs = SimFs::new();
    let store = SnapshotStore::open_with(fs.clone(), "/leader", options()).unwrap();
    let mut writer = store.begin(30, 3, b"leader conf").unwrap();
    for slot in 0..4u32 {
        let bytes: Vec<u8> = (0..2500u32).map(|i| (i * (slot + 3)) as u8).collect();
        writer.add_bytes(slot, "part", &bytes).unwrap();
    }
    writer.finish().unwrap();
    (fs, store)
}

/// Checks the reopened store against the model; returns the reason of the first violation.
fn check(fs: &SimFs, leader: &SnapshotStore<SimFs>, model: &Model) -> Result<(), String> {
    let store =
        SnapshotStore::open_with(fs.clone(), SNAP, options()).map_err(|e| format!("open: {e}"))?;
    let scan = store.scan(Verify::Data).map_err(|e| format!("scan: {e}"))?;
    if let Some(skipped) = scan.skipped.first() {
        return Err(format!("a damaged snapshot is visible: {skipped:?}"));
    }
    let found: BTreeSet<u64> = scan.snapshots.iter().map(|m| m.index).collect();
    if found.len() != scan.snapshots.len() {
        return Err(format!("duplicate snapshots: {:?}", scan.snapshots));
    }
    if !model.must.is_subset(&found) || !found.is_subset(&model.may) {
        return Err(format!("found {found:?}, must {:?}, may {:?}", model.must, model.may));
    }
    let leader_meta = leader.latest().unwrap().unwrap();
    for meta in &scan.snapshots {
        let expected: Vec<(u32, String, Vec<u8>)> = if meta.index == 30 {
            leader_meta
                .slots
                .iter()
                .flat_map(|(slot, files)| files.iter().map(move |f| (*slot, f.name.clone())))
                .map(|(slot, name)| {
                    let bytes = leader.read(&leader_meta, slot, &name).unwrap();
                    (slot, name, bytes)
                })
                .collect()
        } else {
            local_files(meta.index)
        };
        let mut got = Vec::new();
        for (slot, files) in &meta.slots {
            for file in files {
                let bytes =
                    store.read(meta, *slot, &file.name).map_err(|e| format!("read: {e}"))?;
                got.push((*slot, file.name.clone(), bytes));
            }
        }
        if got != expected {
            return Err(format!("snapshot {} holds other files", meta.index));
        }
    }
    for dir in fs.list_dirs(Path::new(SNAP)).unwrap() {
        let dir = dir.to_string_lossy().into_owned();
        if !(dir.ends_with(".snap") || dir.ends_with(".receiving")) {
            return Err(format!("leftover {dir} after open"));
        }
    }
    if !found.contains(&30) {
        transfer(&store, leader, &mut Model::default())
            .map_err(|e| format!("resumed transfer: {e}"))?;
    }
    Ok(())
}

#[test]
fn every_crash_point_leaves_the_old_or_the_new_set_of_snapshots() {
    let (_leader_fs, leader) = leader();
    let fs = fresh_disk();
    let mut model = Model::default();
    workload(&fs, &leader, &mut model).unwrap();
    let total_ops = fs.mutating_ops();
    assert!(total_ops > 50, "{total_ops}");
    let mut states = 0;
    for halt in 0..=total_ops {
        for seed in 0..SEEDS {
            let fs = fresh_disk();
            let mut model = Model::default();
            fs.halt_after(halt);
            let outcome = workload(&fs, &leader, &mut model);
            assert!(halt == total_ops || outcome.is_err(), "the halted disk stopped the workload");
            fs.crash(halt * SEEDS + seed);
            if let Err(why) = check(&fs, &leader, &model) {
                panic!("halt after {halt} ops, seed {seed}: {why}");
            }
            states += 1;
        }
    }
    println!("{states} crash states over {total_ops} crash points, 0 violations");
}

#[test]
fn a_failed_fsync_fails_the_publish_and_leaves_no_half_snapshot() {
    use raftlog::fs::FaultOp;
    for (op, nth) in [
        (FaultOp::SyncData, 0),
        (FaultOp::SyncData, 2),
        (FaultOp::SyncDir, 0),
        (FaultOp::Rename, 0),
    ] {
        let fs = fresh_disk();
        let store = SnapshotStore::open_with(fs.clone(), SNAP, options()).unwrap();
        fs.fail_nth(op, nth);
        let err = publish(&store, 10, &mut Model::default()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{op:?}: {err}");
        assert_eq!(store.list().unwrap(), [], "{op:?}");
        assert!(fs.list_dirs(Path::new(SNAP)).unwrap().is_empty(), "{op:?}: staging removed");
        // The store works on after the failure.
        publish(&store, 20, &mut Model::default()).unwrap();
        assert_eq!(store.latest().unwrap().map(|m| m.index), Some(20));
    }
}
