//! Membership through the shim, on nodes driven by hand (messages delivered in order, no
//! loss): a learner joins, catches up and is promoted; the leader removes itself and stops
//! leading; a second change waits for the first; a truncated configuration entry reverts;
//! a peer's undecodable configuration is refused before anything is appended. And the golden
//! configuration of membership version 1 (format/golden/membership-v1, regenerated with
//! `RAFTLOG_WRITE_GOLDEN=membership`).

mod common;

use bytes::Bytes;
use common::hand_cluster::{node_on, Cluster, Node};
use raftlog::fs::SimFs;
use raftlog::replication::{Append, ConfChange, Configuration, Message, CONFIG_KIND};
use raftlog::{Entry, Error, Options};

fn node(id: u64, bootstrap: &[u64]) -> Node {
    node_on(&SimFs::with_seed(id), id, bootstrap, &Options::default())
}

#[test]
fn a_learner_joins_catches_up_and_is_promoted() {
    let mut cluster = Cluster::new(3);
    let payloads: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("w{i}"))).collect();
    cluster.get(1).propose(&payloads).unwrap();
    cluster.run(10);
    cluster.add(4, &[1, 2, 3]);
    let added = cluster.get(1).change_membership(ConfChange::AddLearner(4)).unwrap();
    assert_eq!(cluster.get(1).configuration().learners(), &[4]);
    // One change at a time: the promotion waits for the addition to commit.
    let early = cluster.get(1).change_membership(ConfChange::Promote(4));
    assert!(matches!(early, Err(Error::MembershipChange { .. })), "{early:?}");
    cluster.run(20);
    let learner = cluster.get(4);
    assert!(learner.log().commit_index() >= added, "the learner caught up");
    assert_eq!(learner.configuration().learners(), &[4]);
    let promoted = cluster.get(1).change_membership(ConfChange::Promote(4)).unwrap();
    cluster.run(20);
    for id in 1..=4 {
        let node = cluster.get(id);
        assert_eq!(node.configuration().voters(), &[1, 2, 3, 4], "node {id}");
        assert!(node.log().commit_index() >= promoted);
    }
    assert_eq!(cluster.get(1).configuration().quorum(), 3);
}

#[test]
fn a_restarted_node_takes_its_configuration_from_its_snapshot_and_log_not_the_bootstrap() {
    let mut cluster = Cluster::new(3);
    cluster.add(4, &[1, 2, 3]);
    cluster.get(1).change_membership(ConfChange::AddLearner(4)).unwrap();
    cluster.run(20);
    cluster.get(1).change_membership(ConfChange::Promote(4)).unwrap();
    cluster.run(20);
    cluster.get(1).propose(&[Bytes::from("after")]).unwrap();
    cluster.run(10);
    // Node 2 snapshots (the configuration goes into the snapshot), compacts, restarts.
    cluster.get(2).snapshot().unwrap().expect("something applied");
    let two = cluster.restart(2, &[1, 2, 3]);
    assert_eq!(two.configuration().voters(), &[1, 2, 3, 4]);
    assert!(two.snapshots().latest().unwrap().is_some());
    // Node 4 restarts too: it joined as a non-member, its log holds the rest.
    let four = cluster.restart(4, &[1, 2, 3]);
    assert_eq!(four.configuration().voters(), &[1, 2, 3, 4]);
    assert!(!four.is_removed());
}

#[test]
fn a_promotion_of_a_learner_behind_the_commit_index_is_refused() {
    let mut cluster = Cluster::new(3);
    // Node 4 is never created: its acknowledged index stays 0.
    cluster.get(1).change_membership(ConfChange::AddLearner(4)).unwrap();
    cluster.run(10);
    let refused = cluster.get(1).change_membership(ConfChange::Promote(4));
    assert!(matches!(refused, Err(Error::MembershipChange { .. })), "{refused:?}");
    assert_eq!(cluster.get(1).configuration().voters(), &[1, 2, 3]);
}

#[test]
fn a_leader_that_removes_itself_stops_leading_and_serves_nothing() {
    let mut cluster = Cluster::new(3);
    let removal = cluster.get(1).change_membership(ConfChange::Remove(1)).unwrap();
    assert!(cluster.get(1).is_leader(), "leads until the removal commits");
    cluster.run(20);
    let old = cluster.get(1);
    assert!(old.log().commit_index() >= removal);
    assert!(!old.is_leader() && old.is_removed());
    assert!(matches!(old.propose(&[Bytes::from("late")]), Err(Error::Removed)));
    assert!(!old.vote(5, 2, u64::MAX, u64::MAX).unwrap(), "a removed node votes for nobody");
    for id in [2, 3] {
        let node = cluster.get(id);
        assert_eq!(node.configuration().voters(), &[2, 3]);
        assert!(node.log().commit_index() >= removal, "node {id} learned the commit");
    }
    // The remaining voters elect a leader, which commits without node 1.
    let (last_term, last_index) =
        (cluster.get(2).log().last_term(), cluster.get(2).log().last_index());
    for id in [2, 3] {
        assert!(cluster.get(id).vote(2, 2, last_index, last_term).unwrap());
    }
    cluster.get(2).become_leader(2).unwrap();
    let index = cluster.get(2).propose(&[Bytes::from("after")]).unwrap();
    cluster.run(10);
    assert!(cluster.get(3).log().commit_index() >= index);
    assert!(cluster.get(1).log().last_index() < index, "the removed node gets nothing more");
}

#[test]
fn a_truncated_configuration_entry_reverts_the_configuration() {
    let mut follower = node(2, &[1, 2, 3]);
    let shrunk = Configuration::new(&[1, 2], &[]).unwrap();
    let config = Entry::new(1, 1, shrunk.encode()).with_kind(CONFIG_KIND);
    let append =
        Append { term: 1, prev_index: 0, prev_term: 0, leader_commit: 0, entries: vec![config] };
    follower.step(1, Message::Append(append)).unwrap();
    assert_eq!(follower.configuration(), &shrunk, "in effect once appended");
    // A leader of term 2 never had it: its entry at index 1 replaces it.
    let other = Append {
        term: 2,
        prev_index: 0,
        prev_term: 0,
        leader_commit: 1,
        entries: vec![Entry::new(1, 2, "x")],
    };
    follower.step(3, Message::Append(other)).unwrap();
    assert_eq!(follower.configuration().voters(), &[1, 2, 3]);
}

#[test]
fn a_peer_s_undecodable_configuration_is_refused_before_anything_is_appended() {
    let mut follower = node(2, &[1, 2, 3]);
    let bad = Entry::new(1, 1, &b"RLCF\x01\x00\x09\x00"[..]).with_kind(CONFIG_KIND);
    let entries = vec![Entry::new(1, 1, "ok"), bad.clone()];
    let entries: Vec<Entry> =
        entries.into_iter().enumerate().map(|(i, e)| Entry { index: i as u64 + 1, ..e }).collect();
    let append = Append { term: 1, prev_index: 0, prev_term: 0, leader_commit: 0, entries };
    let refused = follower.step(1, Message::Append(append));
    assert!(matches!(refused, Err(Error::BadMessage { .. })), "{refused:?}");
    assert_eq!(follower.log().last_index(), 0);
    assert_eq!(follower.configuration().voters(), &[1, 2, 3]);
}

#[test]
fn the_golden_configuration_of_membership_version_1_still_decodes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("format/golden/membership-v1/configuration.bin");
    let config = Configuration::new(&[1, 2, 3], &[4]).unwrap();
    if std::env::var("RAFTLOG_WRITE_GOLDEN").as_deref() == Ok("membership") {
        std::fs::write(&path, config.encode()).unwrap();
    }
    let golden = std::fs::read(&path).unwrap();
    assert_eq!(Configuration::decode(&golden).unwrap(), config);
    assert_eq!(config.encode(), golden, "the encoding did not change");
}
