//! Per-slot file snapshots through raft-rs: the snapshot message carries only raftlog's
//! manifest, and the files travel by raftlog's chunked, verified, resumable transfer.

use raft::eraftpb::{ConfState, Entry, HardState};
use raft::Storage;
use raftlog::fs::SimFs;
use raftlog_raft_rs::{manifest_of, DiskStorage};

fn open(fs: &SimFs, dir: &str) -> DiskStorage<SimFs> {
    DiskStorage::open_with(fs.clone(), dir, raftlog::Options::default()).unwrap()
}

fn slot_bytes(slot: u32) -> Vec<u8> {
    format!("rows of slot {slot};").repeat(500 + slot as usize).into_bytes()
}

#[test]
fn file_snapshots_travel_by_chunks_and_resume() {
    let fs = SimFs::new();
    let leader = open(&fs, "/leader");
    leader.initialize_with_conf_state(ConfState::from((vec![1, 2, 3], vec![]))).unwrap();
    let entries: Vec<Entry> =
        (1..=20).map(|index| Entry { index, term: 2, ..Entry::default() }).collect();
    let hard_state = HardState { term: 2, vote: 1, commit: 20, ..HardState::default() };
    leader.persist(&entries, Some(&hard_state)).unwrap();
    leader
        .create_file_snapshot(15, |writer| {
            for slot in [3, 17, 40] {
                writer.add_bytes(slot, "rows", &slot_bytes(slot))?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(leader.first_index(), Ok(16), "compacted behind the snapshot");

    let snapshot = leader.snapshot(15, 2).unwrap();
    assert!(manifest_of(&snapshot).is_some(), "the message carries the manifest");
    assert!(snapshot.data.len() < 1000, "and not the files");
    assert_eq!(snapshot.get_metadata().get_conf_state().voters, vec![1, 2, 3]);

    let follower_fs = SimFs::new();
    let follower = open(&follower_fs, "/follower");
    let early = follower.apply_snapshot(snapshot.clone());
    assert!(early.is_err(), "the files come first: {early:?}");
    // Half the chunks, then the connection breaks and the follower restarts.
    {
        let mut receiver = follower.receive_snapshot(&snapshot).unwrap();
        let requests = receiver.missing(None, usize::MAX);
        for request in &requests[..requests.len() / 2] {
            receiver.accept(&leader.serve_chunk(request).unwrap()).unwrap();
        }
        receiver.checkpoint().unwrap();
    }
    drop(follower);
    let follower = open(&follower_fs, "/follower");
    let mut receiver = follower.receive_snapshot(&snapshot).unwrap();
    let (received, total) = receiver.progress();
    assert!(received > 0 && received < total, "resumed at {received} of {total}");
    for request in receiver.missing(None, usize::MAX) {
        receiver.accept(&leader.serve_chunk(&request).unwrap()).unwrap();
    }
    let meta = receiver.install().unwrap();
    follower.apply_snapshot(snapshot).unwrap();

    let state = follower.initial_state().unwrap();
    assert_eq!((state.hard_state.commit, state.conf_state.voters), (15, vec![1, 2, 3]));
    assert_eq!((follower.first_index(), follower.last_index()), (Ok(16), Ok(15)));
    for slot in [3, 17, 40] {
        let bytes = follower.snapshot_store().read(&meta, slot, "rows").unwrap();
        assert_eq!(bytes, slot_bytes(slot), "slot {slot}");
    }
    // The follower serves the same snapshot on, should it lead.
    assert_eq!(
        manifest_of(&follower.snapshot(15, 1).unwrap()),
        manifest_of(&leader.snapshot(15, 1).unwrap())
    );
}
