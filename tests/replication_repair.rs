//! Repair of damaged committed entries from peers (CTRL), on a five-node group driven by hand:
//! the matrix of where the damage is (the leader, one follower, a minority, a majority, every
//! node), what is damaged (a record's header, its payload, an index file) and when it is found
//! (at open by a scrub, or by the read that meets it). Every case either repairs with nothing
//! lost, or reports exactly which indexes are lost; no case returns wrong bytes.

mod common;

use bytes::Bytes;
use common::hand_cluster::Cluster;
use std::path::{Path, PathBuf};

use common::segments::{entry_records, first_index, segment_files};
use raftlog::fs::SimFs;
use raftlog::replication::Repaired;
use raftlog::{Entry, Options, RaftLogOptions};

const NODES: u64 = 5;
const ALL: [u64; 5] = [1, 2, 3, 4, 5];
/// The entry damaged: well inside the first sealed segment of every node.
const TARGET: u64 = 6;

#[derive(Debug, Clone, Copy)]
enum What {
    Header,
    Payload,
    Index,
}

#[derive(Debug, Clone, Copy)]
enum When {
    /// The node restarts and scrubs its log.
    Open,
    /// The node restarts; the damage is found by the first read that meets it.
    Read,
}

/// Segments of a few entries each, so that `TARGET` lies in a sealed one.
fn options() -> Options {
    Options::default().segment_bytes_max(4096)
}

/// Logs that keep 4 committed entries in memory: reads of older ones go to disk.
fn memory() -> RaftLogOptions {
    RaftLogOptions::default().min_entries_in_memory(0).max_entries_in_memory(4)
}

/// Proposes 60 entries of 300 bytes on node 1 and lets them commit; returns them as node 1
/// holds them.
fn propose_sixty(cluster: &mut Cluster) -> Vec<Entry> {
    for batch in 0..6u8 {
        let payloads: Vec<Bytes> =
            (0..10).map(|i| Bytes::from(vec![batch * 10 + i; 300])).collect();
        cluster.get(1).propose(&payloads).unwrap();
        cluster.run(3);
    }
    cluster.run(10);
    let leader = cluster.get(1).log().clone();
    leader.entries(1, leader.last_index() + 1, u64::MAX).unwrap()
}

/// A group whose 60 entries are committed, applied and snapshotted everywhere (the log keeps
/// them), and those entries.
fn committed_group() -> (Cluster, Vec<Entry>) {
    let mut cluster = Cluster::with_memory(NODES, options(), memory());
    let entries = propose_sixty(&mut cluster);
    for id in ALL {
        let node = cluster.get(id);
        assert_eq!(node.log().applied_index(), entries.len() as u64, "node {id}");
        node.snapshot().unwrap().unwrap();
    }
    (cluster, entries)
}

/// What a catch-up read of node `id`'s whole log meets (the read marks any damage).
fn read_all(cluster: &mut Cluster, id: u64) {
    let log = cluster.get(id).log().clone();
    let mut index = log.first_index();
    while index <= log.last_index() {
        match log.entries(index, log.last_index() + 1, u64::MAX) {
            Ok(entries) => index += entries.len() as u64,
            Err(raftlog::Error::Damaged { index: at, .. }) => index = at + 1,
            Err(error) => panic!("node {id}: {error}"),
        }
    }
}

/// The segment of `disk` holding entry `index`, and its record's offset there.
fn locate(disk: &SimFs, index: u64) -> (PathBuf, u64) {
    for path in segment_files(disk, Path::new("/log")) {
        let bytes = disk.read_file(&path).unwrap();
        if let Some(record) = entry_records(&bytes).into_iter().find(|r| r.index == index) {
            return (path, record.offset);
        }
    }
    panic!("entry {index} not found");
}

/// Damages entry `TARGET` (or its segment's index file) on `disk`.
fn damage(disk: &SimFs, what: What) {
    let (path, offset) = locate(disk, TARGET);
    match what {
        What::Header => disk.flip_bit(&path, 8 * (offset + 9)).unwrap(),
        What::Payload => disk.flip_bit(&path, 8 * (offset + 32 + 100)).unwrap(),
        What::Index => disk.flip_bit(&path.with_extension("idx"), 8 * 100).unwrap(),
    }
}

/// Every entry each running node's log returns equals the leader's before the damage; the
/// state machines agree.
fn assert_no_wrong_bytes(cluster: &mut Cluster, reference: &[Entry], context: &str) {
    let mut digests = Vec::new();
    for (id, node) in &cluster.nodes {
        let log = node.log();
        let mut index = log.first_index();
        while index <= log.last_index().min(reference.len() as u64) {
            match log.entries(index, reference.len() as u64 + 1, u64::MAX) {
                Ok(entries) => {
                    for entry in &entries {
                        assert_eq!(entry, &reference[entry.index as usize - 1], "{context}");
                    }
                    index += entries.len() as u64;
                }
                Err(raftlog::Error::Damaged { index: at, .. }) => {
                    panic!("{context}: node {id} still has {at} damaged")
                }
                Err(error) => panic!("{context}: node {id}: {error}"),
            }
        }
        digests.push((node.machine().sequence.applied_index, node.machine().sequence.digest));
    }
    let applied = digests.iter().map(|d| d.0).min().unwrap();
    assert!(applied >= reference.len() as u64, "{context}: applied {applied}");
}

/// Damages `TARGET` on `damaged` as `what`, found `when`; returns the group after it settled.
fn run_case(damaged: &[u64], what: What, when: When) -> Cluster {
    let context = format!("damaged {damaged:?}, {what:?}, found at {when:?}");
    let (mut cluster, reference) = committed_group();
    for &id in damaged {
        cluster.stop(id);
        damage(&cluster.disks[&id], what);
    }
    for &id in damaged {
        let node = cluster.start(id, &ALL);
        if matches!(when, When::Open) {
            let found = node.scrub().unwrap();
            let expected = if matches!(what, What::Index) { vec![] } else { vec![TARGET..=TARGET] };
            assert_eq!(found, expected, "{context}: node {id}");
        }
    }
    if matches!(when, When::Read) {
        // Nothing at open reads an entry the snapshot covers: a catch-up read meets it.
        for id in ALL {
            read_all(&mut cluster, id);
        }
    }
    if damaged.contains(&1) {
        // The leader's restart ended its term: node 2 leads the next unless it is damaged
        // with its configuration unknown, in which case a node without damage does.
        let leader = (2..=NODES).find(|id| !damaged.contains(id)).unwrap_or(2);
        cluster.run(30);
        cluster.elect(leader, 2);
    }
    cluster.run(40);
    let more: Vec<Bytes> = (0..5).map(|i| Bytes::from(format!("after {i}"))).collect();
    let leader = *cluster.nodes.iter().find(|(_, n)| n.is_leader()).unwrap().0;
    cluster.get(leader).propose(&more).unwrap();
    cluster.run(20);
    let all_damaged = damaged.len() == ALL.len();
    if all_damaged && !matches!(what, What::Index) {
        for id in ALL {
            let report = cluster.get(id).repair_report();
            assert_eq!(report.lost, vec![(TARGET, TARGET)], "{context}: node {id} reports");
            assert!(report.damaged.is_empty(), "{context}: node {id}");
            assert!(cluster.get(id).log().first_index() > TARGET, "{context}: compacted");
        }
        let reference: Vec<Entry> = reference.into_iter().skip(TARGET as usize).collect();
        for node in cluster.nodes.values() {
            for entry in &reference {
                let got = node.log().entries(entry.index, entry.index + 1, u64::MAX).unwrap();
                assert_eq!(&got[0], entry, "{context}");
            }
        }
        return cluster;
    }
    for &id in damaged {
        let report = cluster.get(id).repair_report();
        assert!(report.damaged.is_empty() && report.lost.is_empty(), "{context}: {report:?}");
        if !matches!(what, What::Index) {
            let [Repaired { first: TARGET, last: TARGET, from }] = report.repaired[..] else {
                panic!("{context}: node {id}: {report:?}")
            };
            assert!(!damaged.contains(&from), "{context}: repaired from damaged node {from}");
        }
    }
    assert_no_wrong_bytes(&mut cluster, &reference, &context);
    cluster
}

#[test]
fn the_ctrl_matrix_repairs_from_a_holder_or_reports_exactly_what_is_lost() {
    let wheres: [&[u64]; 5] = [&[1], &[3], &[2, 3], &[1, 2, 4], &ALL];
    for damaged in wheres {
        for what in [What::Header, What::Payload, What::Index] {
            for when in [When::Open, When::Read] {
                run_case(damaged, what, when);
            }
        }
    }
}

#[test]
fn a_leader_finds_damage_when_reading_for_a_lagging_follower_and_repairs_it_from_another() {
    let mut cluster = Cluster::with_memory(NODES, options(), memory());
    cluster.stop(5);
    let reference = propose_sixty(&mut cluster);
    for id in 1..=4 {
        cluster.get(id).snapshot().unwrap().unwrap();
    }
    // The leader's segment rots and leaves the cache (a restart); it leads again.
    cluster.stop(1);
    damage(&cluster.disks[&1], What::Payload);
    cluster.start(1, &ALL);
    cluster.elect(1, 2);
    assert!(cluster.get(1).repair_report().damaged.is_empty(), "nothing read it yet");
    // The lagging follower's catch-up reads it.
    cluster.start(5, &ALL);
    cluster.run(40);
    let report = cluster.get(1).repair_report();
    assert_eq!(report.repaired.len(), 1, "{report:?}");
    assert_eq!((report.repaired[0].first, report.repaired[0].last), (TARGET, TARGET));
    assert_no_wrong_bytes(&mut cluster, &reference, "leader read");
}

#[test]
fn a_node_whose_configuration_may_lie_past_damage_refuses_to_lead_until_repaired() {
    let mut cluster = Cluster::with_memory(NODES, options(), memory());
    let reference = propose_sixty(&mut cluster);
    cluster.stop(2);
    damage(&cluster.disks[&2], What::Payload);
    // No snapshot: reopening reads the whole log for its configurations, and meets the damage.
    cluster.start(2, &ALL);
    let node = cluster.get(2);
    assert!(node.vote(2, 2, node.log().last_index(), node.log().last_term()).unwrap());
    let refused = node.become_leader(2);
    assert!(matches!(refused, Err(raftlog::Error::MembershipChange { .. })), "{refused:?}");
    cluster.run(30);
    assert_eq!(cluster.get(2).repair_report().repaired.len(), 1);
    cluster.elect(2, 3);
    assert!(cluster.get(2).is_leader());
    assert_no_wrong_bytes(&mut cluster, &reference, "blind");
}

#[test]
fn a_node_missing_a_segment_of_committed_entries_reports_them_and_restores_from_a_peer_snapshot() {
    let mut cluster = Cluster::with_memory(NODES, options(), memory());
    let reference = propose_sixty(&mut cluster);
    for id in [1, 2, 4, 5] {
        cluster.get(id).snapshot().unwrap().unwrap();
    }
    cluster.stop(3);
    let disk = cluster.disks[&3].clone();
    let segments = segment_files(&disk, Path::new("/log"));
    let missing = &segments[1];
    let restart = first_index(&disk.read_file(&segments[2]).unwrap());
    disk.remove_durable(missing);
    disk.remove_durable(&missing.with_extension("idx"));
    let node = cluster.start(3, &ALL);
    assert_eq!(node.log().first_index(), restart, "the log restarts after the gap");
    assert_eq!(node.repair_report().lost, vec![(1, restart - 1)]);
    assert!(!node.configuration_known());
    cluster.run(40);
    let node = cluster.get(3);
    assert_eq!(
        node.machine().sequence.applied_index,
        reference.len() as u64,
        "restored, then applied"
    );
    assert!(node.configuration_known());
    let digests: Vec<u64> = cluster.nodes.values().map(|n| n.machine().sequence.digest).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

#[test]
fn a_damaged_tail_no_quorum_ever_held_is_cut_and_the_group_goes_on() {
    // Two voters: node 2 is down while node 1 appends, so nothing of it commits.
    let mut cluster = Cluster::with_memory(2, options(), memory());
    cluster.stop(2);
    let uncommitted: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 300])).collect();
    for batch in uncommitted.chunks(10) {
        cluster.get(1).propose(batch).unwrap();
        cluster.run(2);
    }
    let commit = cluster.get(1).log().commit_index();
    assert!(commit < TARGET, "nothing past the no-op committed");
    cluster.stop(1);
    damage(&cluster.disks[&1], What::Payload);
    cluster.start(1, &[1, 2]);
    cluster.start(2, &[1, 2]);
    // Node 1 may not lead (a configuration could lie in the damage) and node 2 may not win
    // (node 1's log is ahead): only cutting the tail no quorum held lets the group go on.
    assert!(!cluster.get(1).configuration_known());
    cluster.run(60);
    let report = cluster.get(1).repair_report();
    let last = cluster.get(1).log().last_index();
    assert_eq!(report.cut.len(), 1, "{report:?}");
    assert_eq!(report.cut[0].0, TARGET);
    assert_eq!(last, TARGET - 1, "cut from the damaged entry");
    cluster.elect(1, 3);
    cluster.get(1).propose(&[Bytes::from_static(b"after the cut")]).unwrap();
    cluster.run(20);
    let (one, two) = (cluster.get(1).log().clone(), cluster.get(2).log().clone());
    assert_eq!(one.commit_index(), one.last_index());
    assert_eq!(two.last_index(), one.last_index());
}
