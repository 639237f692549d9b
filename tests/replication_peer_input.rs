//! A peer's bad input to a `Replica`: a typed error, and nothing changes (the `Server` then
//! refuses the message and goes on).

use bytes::Bytes;
use raftlog::fs::SimFs;
use raftlog::replication::{Append, ChecksumMachine, Message, Replica, ReplicationOptions};
use raftlog::snapshot::ChunkRequest;
use raftlog::{Entry, Error, LogStore, Options, RaftLog, SnapshotOptions, SnapshotStore};

fn replica(id: u64) -> Replica<SimFs, ChecksumMachine> {
    let fs = SimFs::with_seed(id);
    let log =
        RaftLog::new(LogStore::open_with(fs.clone(), "/log", Options::default()).unwrap()).unwrap();
    let snapshots = SnapshotStore::open_with(fs, "/snap", SnapshotOptions::default()).unwrap();
    Replica::open(
        id,
        &[1, 2, 3],
        log,
        snapshots,
        ChecksumMachine::default(),
        ReplicationOptions::default(),
    )
    .unwrap()
}

/// A follower of leader 1 in term 1 holding `[1, 3]`, committed through 3.
fn follower() -> Replica<SimFs, ChecksumMachine> {
    let mut node = replica(2);
    let entries = (1..=3).map(|i| Entry::new(i, 1, format!("e{i}"))).collect();
    let append = Append { term: 1, prev_index: 0, prev_term: 0, leader_commit: 3, entries };
    node.step(1, Message::Append(append)).unwrap();
    node.ready(&mut |_| {}).unwrap();
    assert_eq!((node.log().last_index(), node.log().commit_index()), (3, 3));
    node
}

#[test]
fn entries_that_contradict_the_committed_log_are_refused_whole() {
    let mut node = follower();
    let before: Vec<Entry> = node.log().entries(1, 4, u64::MAX).unwrap();
    // A "leader" of term 2 rewrites index 2, which is committed.
    let entries = vec![Entry::new(2, 2, "other"), Entry::new(3, 2, "other")];
    let append = Append { term: 2, prev_index: 1, prev_term: 1, leader_commit: 3, entries };
    let refused = node.step(1, Message::Append(append));
    assert!(matches!(refused, Err(Error::Committed { .. })), "{refused:?}");
    assert_eq!(node.log().entries(1, 4, u64::MAX).unwrap(), before);
    assert_eq!(node.log().commit_index(), 3);
}

#[test]
fn a_snapshot_offer_that_fails_verification_installs_nothing() {
    let mut node = follower();
    let offer = Message::SnapshotOffer { term: 1, manifest: Bytes::from_static(b"not a manifest") };
    assert!(node.step(1, offer).is_err());
    assert_eq!(node.snapshots().latest().unwrap(), None);
    assert_eq!((node.log().first_index(), node.log().last_index()), (1, 3));
}

#[test]
fn a_pull_of_a_snapshot_that_does_not_exist_is_an_error_not_a_crash() {
    let mut leader = replica(1);
    assert!(leader.vote(1, 1, 0, 0).unwrap());
    leader.become_leader(1).unwrap();
    let request = ChunkRequest { slot: 0, name: "checksum".into(), offset: 0, len: u32::MAX };
    let pull = Message::SnapshotPull { term: 1, index: 5, requests: vec![request] };
    let refused = leader.step(2, pull);
    assert!(matches!(refused, Err(Error::Compacted { .. })), "{refused:?}");
    assert!(leader.is_leader());
    assert_eq!(leader.log().last_index(), 1, "only the leader's no-op");
}
