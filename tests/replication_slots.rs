//! Slot moves through the shim, on nodes driven by hand (`common::hand_cluster`: a
//! `SlotMachine` of 16 slots, 3 holders each): removing a node moves its slots, each to one
//! new holder, which pulls the slot's files from a peer's snapshot; a pull survives a crash
//! of the puller and of its source; a node caught up by the leader's snapshot past a change
//! pulls the slots that snapshot lacks. In every case each slot ends up held by exactly its
//! holders under the final configuration, with the state a replay of the log gives. Peer
//! messages naming unknown slots, or a huge compaction floor, change nothing.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::hand_cluster::{Cluster, REPLICAS, SLOTS};
use raftlog::replication::{slots, ChecksumMachine, ConfChange, Message, SlotMachine, DATA_KIND};
use raftlog::Entry;

/// Proposes `count` writes spread over the slots and lets them commit.
fn write(cluster: &mut Cluster, leader: u64, tag: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let payloads: Vec<Bytes> =
            chunk.iter().map(|i| Bytes::from(format!("{tag}-{i}"))).collect();
        cluster.get(leader).propose(&payloads).unwrap();
        cluster.run(4);
    }
    cluster.run(10);
}

/// Each slot's digest and entry count through `through`, replayed from `entries` (the whole
/// log from index 1).
fn replay(entries: &[Entry], through: u64) -> BTreeMap<u32, (u64, u64)> {
    let layout = SlotMachine::new(SLOTS, REPLICAS).unwrap();
    let mut out: BTreeMap<u32, (u64, u64)> = (0..SLOTS).map(|s| (s, (0, 0))).collect();
    for entry in entries.iter().filter(|e| e.kind == DATA_KIND && e.index <= through) {
        let state = out.get_mut(&layout.slot_of(&entry.payload)).unwrap();
        *state = (ChecksumMachine::chain(state.0, entry), state.1 + 1);
    }
    out
}

/// Every node waits for no slot; each slot is held by exactly its holders under the leader's
/// configuration, complete through the applied index, as `reference` replays it.
fn assert_placed(cluster: &mut Cluster, leader: u64, reference: &[Entry]) {
    let config = cluster.get(leader).configuration().clone();
    let applied = cluster.get(leader).log().applied_index();
    let expected = replay(reference, applied);
    for slot in 0..SLOTS {
        let mut holding: Vec<u64> = Vec::new();
        for (id, node) in &cluster.nodes {
            assert!(
                node.pending_slots().is_empty(),
                "node {id} waits for {:?}",
                node.pending_slots()
            );
            assert_eq!(node.log().applied_index(), applied, "node {id} applied everything");
            if let Some(state) = node.machine().slot(slot) {
                holding.push(*id);
                assert_eq!(state.through, applied, "node {id} slot {slot}");
                assert_eq!((state.digest, state.entries), expected[&slot], "node {id} slot {slot}");
            }
        }
        let mut holders = slots::holders(&config, slot, REPLICAS);
        holders.sort_unstable();
        assert_eq!(holding, holders, "slot {slot} is held by exactly its holders");
    }
}

/// The entries node `id`'s log holds.
fn log_of(cluster: &mut Cluster, id: u64) -> Vec<Entry> {
    let log = cluster.get(id).log().clone();
    log.entries(log.first_index(), log.last_index() + 1, u64::MAX).unwrap()
}

#[test]
fn removing_a_node_moves_each_of_its_slots_to_one_new_holder_that_pulls_it() {
    let mut cluster = Cluster::new(5);
    write(&mut cluster, 1, "a", 300);
    let before = cluster.get(1).configuration().clone();
    let log = log_of(&mut cluster, 1);
    assert_placed(&mut cluster, 1, &log);
    cluster.get(1).change_membership(ConfChange::Remove(5)).unwrap();
    cluster.run(40);
    cluster.stop(5);
    write(&mut cluster, 1, "b", 200);
    let after = cluster.get(1).configuration().clone();
    assert_eq!(after.voters(), &[1, 2, 3, 4]);
    let log = log_of(&mut cluster, 1);
    assert_placed(&mut cluster, 1, &log);
    // Exactly node 5's slots moved, each pulled once by its one new holder, from a peer.
    let moved: Vec<u32> =
        (0..SLOTS).filter(|s| slots::holders(&before, *s, REPLICAS).contains(&5)).collect();
    assert!(!moved.is_empty());
    let mut pulled = Vec::new();
    for (id, node) in &cluster.nodes {
        for pull in node.slot_pulls() {
            let joined: Vec<u64> = slots::holders(&after, pull.slot, REPLICAS)
                .into_iter()
                .filter(|n| !slots::holders(&before, pull.slot, REPLICAS).contains(n))
                .collect();
            assert_eq!(joined, [*id], "slot {} went to its one new holder", pull.slot);
            assert_eq!(pull.from, 5, "slot {}", pull.slot);
            // Asked first, the node it moved from serves it (a removed node serves only that).
            assert_eq!(pull.source, 5, "slot {}", pull.source);
            assert!(pull.bytes > 0);
            pulled.push(pull.slot);
        }
    }
    pulled.sort_unstable();
    assert_eq!(pulled, moved, "the removed node's slots moved, each once, and no other");
}

#[test]
fn a_pull_survives_a_crash_of_the_puller_and_of_its_source() {
    let mut cluster = Cluster::new(5);
    write(&mut cluster, 1, "a", 200);
    let before = cluster.get(1).configuration().clone();
    cluster.get(1).change_membership(ConfChange::Remove(5)).unwrap();
    // Deliver by hand: offers and chunks of slot pulls are dropped, and whoever sends them
    // or waits for them crashes (power loss: what was not synced is gone), until each side
    // crashed once.
    let (mut puller_crashed, mut source_crashed) = (false, false);
    for _ in 0..400 {
        let mut sent = Vec::new();
        for node in cluster.nodes.values_mut() {
            node.tick().unwrap();
            node.ready(&mut |envelope| sent.push(envelope)).unwrap();
        }
        for envelope in sent {
            let pulling = matches!(envelope.message, Message::RepairChunks { .. });
            let offering = matches!(&envelope.message, Message::RepairOffer { manifest, .. } if !manifest.is_empty());
            if pulling && !source_crashed {
                source_crashed = true;
                cluster.disks[&envelope.from].crash(7);
                cluster.nodes.remove(&envelope.from);
                cluster.start(envelope.from, &[1, 2, 3, 4, 5]);
                continue;
            }
            if offering && !puller_crashed {
                puller_crashed = true;
                cluster.disks[&envelope.to].crash(8);
                cluster.nodes.remove(&envelope.to);
                cluster.start(envelope.to, &[1, 2, 3, 4, 5]);
                continue;
            }
            if let Some(node) = cluster.nodes.get_mut(&envelope.to) {
                node.step(envelope.from, envelope.message).unwrap();
            }
        }
    }
    assert!(puller_crashed && source_crashed, "both sides crashed during a pull");
    cluster.stop(5);
    if !cluster.get(1).is_leader() {
        // The crash took node 1's leadership: the remaining voters elect it again.
        let term = cluster.get(1).term() + 1;
        cluster.elect(1, term);
    }
    write(&mut cluster, 1, "b", 100);
    cluster.run(200); // a pull from node 5, stopped, times out: the next holder is asked
    let moved = (0..SLOTS).filter(|s| slots::holders(&before, *s, REPLICAS).contains(&5)).count();
    let pulled: usize = cluster.nodes.values().map(|n| n.slot_pulls().len()).sum();
    assert!(pulled > 0 && pulled <= moved, "{pulled} of {moved}: a restart forgets its report");
    let log = log_of(&mut cluster, 1);
    assert_placed(&mut cluster, 1, &log);
}

#[test]
fn a_node_caught_up_by_a_snapshot_past_a_change_pulls_the_slots_it_lacks() {
    let mut cluster = Cluster::new(5);
    write(&mut cluster, 1, "a", 200);
    let reference_head = log_of(&mut cluster, 1);
    cluster.stop(4);
    cluster.get(1).change_membership(ConfChange::Remove(5)).unwrap();
    cluster.run(40);
    cluster.stop(5);
    // Past the compaction lag: node 4 can only catch up by the leader's snapshot.
    write(&mut cluster, 1, "b", 1200);
    let mut reference = reference_head;
    let tail = log_of(&mut cluster, 1);
    let known = reference.len() as u64;
    reference.extend(tail.into_iter().filter(|e| e.index > known));
    // Snapshots are reported with the heartbeats; the leader's next one compacts to the floor.
    for id in 1..=3 {
        cluster.get(id).snapshot().unwrap().expect("applied since");
    }
    write(&mut cluster, 1, "c", 10);
    let known = reference.len() as u64;
    reference.extend(log_of(&mut cluster, 1).into_iter().filter(|e| e.index > known));
    cluster.get(1).snapshot().unwrap().expect("applied since");
    assert!(cluster.get(1).log().first_index() > 250, "the leader compacted past the change");
    cluster.start(4, &[1, 2, 3, 4, 5]);
    cluster.run(60);
    let four = cluster.get(4);
    assert!(four.status().unwrap().snapshots_installed > 0, "caught up by a snapshot");
    let config = four.configuration().clone();
    let lacking_in_leader_snapshot = (0..SLOTS)
        .filter(|s| {
            let holders = slots::holders(&config, *s, REPLICAS);
            holders.contains(&4) && !holders.contains(&1)
        })
        .count();
    assert!(lacking_in_leader_snapshot > 0, "the leader's snapshot lacks some of node 4's slots");
    assert_eq!(four.slot_pulls().len(), lacking_in_leader_snapshot);
    assert!(four.slot_pulls().iter().all(|p| p.source != 1 && p.from == 0));
    assert_placed(&mut cluster, 1, &reference);
}

#[test]
fn peer_messages_naming_unknown_slots_or_a_huge_floor_change_nothing() {
    let mut cluster = Cluster::new(3);
    write(&mut cluster, 1, "a", 100);
    let held: Vec<Vec<u32>> = cluster
        .nodes
        .values()
        .map(|n| (0..SLOTS).filter(|s| n.machine().slot(*s).is_some()).collect())
        .collect();
    let first_index = cluster.get(2).log().first_index();
    for message in [
        Message::SlotsTaken { term: 1, slots: vec![SLOTS, u32::MAX, 3] },
        Message::SlotsDurable { term: 1, index: u64::MAX, slots: vec![SLOTS, u32::MAX] },
        Message::CompactionFloor { term: 1, index: u64::MAX },
    ] {
        cluster.get(2).step(3, message).unwrap();
    }
    // Slot 3 is assigned to node 2 (3 voters, 3 holders): `SlotsTaken` drops only retired
    // slots. A huge floor lets node 2 compact no further than its own lag behind its applied.
    let after: Vec<Vec<u32>> = cluster
        .nodes
        .values()
        .map(|n| (0..SLOTS).filter(|s| n.machine().slot(*s).is_some()).collect())
        .collect();
    assert_eq!(held, after);
    assert_eq!(cluster.get(2).log().first_index(), first_index);
    cluster.get(2).snapshot().unwrap().expect("applied since");
    assert_eq!(cluster.get(2).log().first_index(), first_index, "the default lag keeps 1,000");
    let log = log_of(&mut cluster, 1);
    assert_placed(&mut cluster, 1, &log);
}
