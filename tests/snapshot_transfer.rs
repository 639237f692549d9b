//! Snapshot transfer: chunks dropped, repeated, reordered and damaged; a restart in the
//! middle; per-slot install; the log reset after a whole install; bad manifests refused.

use std::path::Path;

use raftlog::fs::{FileSystem, SimFs};
use raftlog::snapshot::{Accepted, Chunk};
use raftlog::{Corruption, Error, LogStore, Options, SnapshotMeta, SnapshotOptions, SnapshotStore};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const LEADER: &str = "/leader";
const FOLLOWER: &str = "/follower";

fn options(chunk_bytes: u32, compress: bool) -> SnapshotOptions {
    SnapshotOptions::default().chunk_bytes(chunk_bytes).compress_chunks(compress)
}

/// A leader store with one snapshot: 4 slots of 3 files of uneven sizes, some compressible.
fn leader(fs: &SimFs, compress: bool) -> (SnapshotStore<SimFs>, SnapshotMeta) {
    let store = SnapshotStore::open_with(fs.clone(), LEADER, options(4096, compress)).unwrap();
    let mut writer = store.begin(500, 7, b"peers a,b,c").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for slot in [3u32, 10, 11, 4000] {
        for (k, len) in [0usize, 20_000, 3000 + slot as usize].into_iter().enumerate() {
            let bytes: Vec<u8> = match k % 2 {
                0 => (0..len).map(|_| rng.gen()).collect(),
                _ => (0..len).map(|i| (i / 100) as u8).collect(),
            };
            writer.add_bytes(slot, &format!("f{k}"), &bytes).unwrap();
        }
    }
    let meta = writer.finish().unwrap();
    (store, meta)
}

fn follower(fs: &SimFs) -> SnapshotStore<SimFs> {
    SnapshotStore::open_with(fs.clone(), FOLLOWER, options(4096, false)).unwrap()
}

fn assert_same_files(
    leader: &SnapshotStore<SimFs>,
    sent: &SnapshotMeta,
    follower: &SnapshotStore<SimFs>,
    got: &SnapshotMeta,
) {
    for (slot, files) in &got.slots {
        assert_eq!(Some(files), sent.slots.get(slot));
        for file in files {
            let theirs = leader.read(sent, *slot, &file.name).unwrap();
            assert_eq!(follower.read(got, *slot, &file.name).unwrap(), theirs);
        }
    }
}

#[test]
fn dropped_repeated_and_reordered_chunks_with_a_restart_in_the_middle() {
    transfer_with_restart(false);
    transfer_with_restart(true);
}

/// Transfers with faults for two rounds, breaks the connection after the first, crashes the
/// follower in the second, then resumes and installs.
fn transfer_with_restart(compress: bool) {
    {
        let fs = SimFs::new();
        let (leader, meta) = leader(&fs, compress);
        let source = leader.source(&meta).unwrap();
        let follower_store = follower(&fs);
        let mut rng = rand::rngs::StdRng::seed_from_u64(compress as u64);
        let mut receiver = follower_store.receive(source.manifest()).unwrap();
        let mut rounds = 0;
        let mut compressed = 0;
        loop {
            let mut requests = receiver.missing(None, usize::MAX);
            if requests.is_empty() {
                break;
            }
            rounds += 1;
            requests.shuffle(&mut rng);
            for request in &requests {
                if rng.gen_ratio(1, 3) {
                    continue; // dropped
                }
                let chunk = source.chunk(request).unwrap();
                compressed += u32::from(chunk.compressed);
                let chunk = Chunk::decode(&chunk.encode()).unwrap();
                assert_eq!(receiver.accept(&chunk).unwrap(), Accepted::Stored);
                if rng.gen_ratio(1, 4) {
                    assert_eq!(receiver.accept(&chunk).unwrap(), Accepted::Duplicate);
                }
            }
            if rounds == 1 {
                // The connection breaks: a new `receive` picks up where it stopped.
                receiver.checkpoint().unwrap();
                let progress = receiver.progress();
                drop(receiver);
                receiver = follower_store.receive(source.manifest()).unwrap();
                assert_eq!(receiver.progress(), progress);
            }
            if rounds == 2 {
                // The node crashes: what the checkpoint made durable survives.
                let (received, total) = receiver.progress();
                assert!(received > 0 && received < total, "{received} of {total}");
                drop(receiver);
                drop(follower_store);
                fs.crash(rounds);
                return restart(&fs, &leader, &meta, compressed > 0 || !compress);
            }
        }
        unreachable!("the transfer restarts in round 2 ({rounds} rounds, {compressed} compressed)");
    }
}

/// Reopens the follower after a crash, resumes, and installs.
fn restart(fs: &SimFs, leader: &SnapshotStore<SimFs>, meta: &SnapshotMeta, compressed: bool) {
    let source = leader.source(meta).unwrap();
    let follower_store = follower(fs);
    let mut receiver = follower_store.receive(source.manifest()).unwrap();
    let (received, total) = receiver.progress();
    assert!(received < total);
    let resumed = receiver.missing(None, usize::MAX).len();
    assert!(resumed < source.requests(4096).len(), "some progress survives the crash");
    loop {
        // A window of 3 requests at a time.
        let window = receiver.missing(None, 3);
        assert!(window.len() <= 3);
        if window.is_empty() {
            break;
        }
        for request in window {
            receiver.accept(&source.chunk(&request).unwrap()).unwrap();
        }
    }
    let installed = receiver.install().unwrap();
    assert_eq!((installed.index, installed.term, installed.partial), (500, 7, false));
    assert_eq!(follower_store.latest().unwrap(), Some(installed.clone()));
    assert_same_files(leader, meta, &follower_store, &installed);
    assert!(compressed, "a compressing source sent compressed chunks");
    // Nothing of the transfer is left behind.
    let leftovers = fs.list_dirs(Path::new(FOLLOWER)).unwrap();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn compressed_chunks_shrink_compressible_files() {
    let fs = SimFs::new();
    let (leader, meta) = leader(&fs, true);
    let source = leader.source(&meta).unwrap();
    let chunks: Vec<Chunk> =
        source.requests(4096).iter().map(|r| source.chunk(r).unwrap()).collect();
    let wire: usize = chunks.iter().map(|c| c.data.len()).sum();
    assert!(chunks.iter().any(|c| c.compressed) && chunks.iter().any(|c| !c.compressed));
    assert!((wire as u64) < meta.total_bytes() * 3 / 4, "{wire} of {}", meta.total_bytes());
}

#[test]
fn per_slot_install_takes_only_the_chosen_slots() {
    let fs = SimFs::new();
    let (leader, meta) = leader(&fs, false);
    let source = leader.source(&meta).unwrap();
    let follower_store = follower(&fs);
    let mut receiver = follower_store.receive(source.manifest()).unwrap();
    let wanted = [10u32, 4000];
    for request in receiver.missing(Some(&wanted), usize::MAX) {
        assert!(wanted.contains(&request.slot));
        receiver.accept(&source.chunk(&request).unwrap()).unwrap();
    }
    assert!(!receiver.missing(None, usize::MAX).is_empty(), "other slots were not fetched");
    let installed = receiver.install_slots(&wanted).unwrap();
    assert!(installed.partial);
    assert_eq!(installed.slots.keys().copied().collect::<Vec<_>>(), wanted);
    assert_same_files(&leader, &meta, &follower_store, &installed);
    assert_eq!(follower_store.latest().unwrap(), None, "a partial snapshot is never latest");
    assert_eq!(follower_store.list().unwrap(), [installed]);
}

#[test]
fn an_incomplete_transfer_or_an_unknown_slot_is_not_installed() {
    let fs = SimFs::new();
    let (leader, meta) = leader(&fs, false);
    let source = leader.source(&meta).unwrap();
    let follower_store = follower(&fs);
    let mut receiver = follower_store.receive(source.manifest()).unwrap();
    let requests = receiver.missing(None, usize::MAX);
    for request in &requests[1..] {
        receiver.accept(&source.chunk(request).unwrap()).unwrap();
    }
    let err = follower_store.receive(source.manifest()).unwrap().install().unwrap_err();
    assert!(
        matches!(err, Error::Incomplete { missing_bytes, .. } if missing_bytes == u64::from(requests[0].len)),
        "{err}"
    );
    let receiver = follower_store.receive(source.manifest()).unwrap();
    assert!(matches!(receiver.install_slots(&[77]), Err(Error::UnknownSlot { slot: 77 })));
    assert_eq!(follower_store.list().unwrap(), []);
}

#[test]
fn damaged_or_misplaced_chunks_are_refused_and_change_nothing() {
    let fs = SimFs::new();
    let (leader, meta) = leader(&fs, true);
    let source = leader.source(&meta).unwrap();
    let follower_store = follower(&fs);
    let mut receiver = follower_store.receive(source.manifest()).unwrap();
    let before = receiver.missing(None, usize::MAX);
    let request = before.iter().find(|r| r.len > 1000).unwrap().clone();
    let good = source.chunk(&request).unwrap();
    let wire = good.encode();
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..300 {
        let mut damaged = wire.clone();
        let bit = rng.gen_range(0..damaged.len() * 8);
        damaged[bit / 8] ^= 1 << (bit % 8);
        if let Ok(chunk) = Chunk::decode(&damaged) {
            let err = receiver.accept(&chunk).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Corrupt { .. } | Error::UnknownFile { .. } | Error::LimitExceeded { .. }
                ),
                "bit {bit}: {err}"
            );
        }
    }
    let mut wrong_place = good.clone();
    wrong_place.offset += 1;
    assert!(matches!(
        receiver.accept(&wrong_place),
        Err(Error::Corrupt { reason: Corruption::Checksum, .. })
    ));
    let mut beyond = good.clone();
    beyond.offset = meta.file(good.slot, &good.name).unwrap().size;
    assert!(matches!(
        receiver.accept(&beyond),
        Err(Error::LimitExceeded { what: "chunk end", .. })
    ));
    let mut bomb = good.clone();
    bomb.len = u32::MAX;
    assert!(matches!(
        receiver.accept(&bomb),
        Err(Error::LimitExceeded { what: "chunk bytes", .. })
    ));
    assert_eq!(receiver.missing(None, usize::MAX), before, "nothing was staged");
    assert_eq!(receiver.accept(&good).unwrap(), Accepted::Stored);
    assert!(matches!(
        source.chunk(&raftlog::snapshot::ChunkRequest { offset: u64::MAX, ..request }),
        Err(Error::LimitExceeded { .. })
    ));
}

#[test]
fn bad_manifests_are_refused_before_anything_is_created() {
    let fs = SimFs::new();
    let (leader, meta) = leader(&fs, false);
    let manifest = leader.source(&meta).unwrap().manifest().to_vec();
    let other_group = options(4096, false).group(2);
    let follower_store = SnapshotStore::open_with(fs.clone(), FOLLOWER, other_group).unwrap();
    let err = follower_store.receive(&manifest).unwrap_err();
    assert!(matches!(err, Error::ForeignGroup { expected: 2, found: 0 }), "{err}");
    let mut damaged = manifest.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(matches!(follower_store.receive(&damaged), Err(Error::Corrupt { .. })));
    let small = options(4096, false).file_bytes_max(5000);
    drop(follower_store);
    let follower_store = SnapshotStore::open_with(fs.clone(), FOLLOWER, small).unwrap();
    assert!(matches!(
        follower_store.receive(&manifest),
        Err(Error::LimitExceeded { what: "file bytes", .. })
    ));
    assert!(fs.list_dirs(Path::new(FOLLOWER)).unwrap().is_empty());
}

#[test]
fn a_whole_install_resets_a_log_that_is_behind() {
    let fs = SimFs::new();
    let (leader, meta) = leader(&fs, false);
    let source = leader.source(&meta).unwrap();
    let log = LogStore::open_with(fs.clone(), "/follower-log", Options::default()).unwrap();
    log.append(&(1..=20).map(|i| raftlog::Entry::new(i, 1, "x")).collect::<Vec<_>>()).unwrap();
    let follower_store = follower(&fs);
    let mut receiver = follower_store.receive(source.manifest()).unwrap();
    for request in receiver.missing(None, usize::MAX) {
        receiver.accept(&source.chunk(&request).unwrap()).unwrap();
    }
    let installed = receiver.install_with_log(&log).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (501, 500));
    assert_eq!(log.term(500).unwrap(), installed.term);
    // A later, newer transfer drops the leftovers of older ones.
    assert_eq!(fs.list_dirs(Path::new(FOLLOWER)).unwrap().len(), 1);
}
