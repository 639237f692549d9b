//! Slot ownership: which voters of a configuration own and hold each of a group's slots.
//!
//! Voters are ranked per slot by a weight `mix(slot, node)` (rendezvous hashing). The owner
//! of a slot is the voter of the highest weight; its holders are the `replicas` voters of the
//! highest weights, the owner first: they materialize the slot's state (a slotted
//! `StateMachine`), as the members of an IoTDB data group hold its slots. The assignment is a
//! function of the set of voters alone: every node computes the same one from the
//! configuration its log holds, whatever order it learned the members in, and a change moves
//! only the slots it must (removing a voter moves exactly its slots, each to one new holder;
//! adding one moves to it exactly the slots it now wins, about `replicas * slots / voters`).
//!
//! This fixes the seed's reassignment (IoTDB's `SlotPartitionTable.removeNode`, see
//! `reference/iotdb/multileader-sync-and-node-removal.md` B.2): there, slot *k* of the removed
//! node went to `ring[k mod n]` of the new ring, which depended on every node holding the ring
//! and the slot lists in the same order, and the group a node had to join was reported from
//! the wrong branch. Here nothing depends on order, and `moves` reports every moved slot with
//! both its owners.
//!
//! Invariants:
//! 1. Every slot has exactly one owner, a voter of the configuration, and
//!    `min(replicas, voters)` distinct holders, the owner first.
//! 2. `moves(from, to)` lists exactly the slots whose owner differs, each once.
//! 3. One membership change (one voter added or removed) changes a slot's holders by at most
//!    one node in and one out.

use super::membership::Configuration;
use super::message::NodeId;

/// One slot changing owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotMove {
    /// The slot.
    pub slot: u32,
    /// Its owner before.
    pub from: NodeId,
    /// Its owner after: it pulls the slot's files from a snapshot holding them.
    pub to: NodeId,
}

/// splitmix64's finaliser over the slot and the node: a weight no order of members affects.
fn weight(slot: u32, node: NodeId) -> u64 {
    let mut z = (u64::from(slot) << 32 ^ node).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The owner of `slot` under `config`: its voter of the highest weight (ties to the lower id).
pub fn owner(config: &Configuration, slot: u32) -> NodeId {
    *config
        .voters()
        .iter()
        .max_by_key(|node| (weight(slot, **node), std::cmp::Reverse(**node)))
        .expect("a configuration has a voter")
}

/// The holders of `slot` under `config`: its `replicas` voters of the highest weights (all
/// voters when there are fewer), the owner first.
pub fn holders(config: &Configuration, slot: u32, replicas: usize) -> Vec<NodeId> {
    let mut ranked: Vec<NodeId> = config.voters().to_vec();
    ranked.sort_by_key(|node| std::cmp::Reverse((weight(slot, *node), std::cmp::Reverse(*node))));
    ranked.truncate(replicas);
    ranked
}

/// The slots in `0..slots` that `node` holds under `config`, ascending.
pub fn held_by(config: &Configuration, node: NodeId, slots: u32, replicas: usize) -> Vec<u32> {
    if !config.is_voter(node) {
        return Vec::new();
    }
    (0..slots).filter(|slot| holders(config, *slot, replicas).contains(&node)).collect()
}

/// The owner of every slot in `0..slots`, indexed by slot.
pub fn assignment(config: &Configuration, slots: u32) -> Vec<NodeId> {
    (0..slots).map(|slot| owner(config, slot)).collect()
}

/// The slots in `0..slots` whose owner `from` and `to` disagree on, ascending.
pub fn moves(from: &Configuration, to: &Configuration, slots: u32) -> Vec<SlotMove> {
    (0..slots)
        .filter_map(|slot| {
            let (before, after) = (owner(from, slot), owner(to, slot));
            (before != after).then_some(SlotMove { slot, from: before, to: after })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::membership::ConfChange;
    use super::*;

    const SLOTS: u32 = 1024;

    fn voters() -> impl Strategy<Value = Vec<NodeId>> {
        proptest::collection::btree_set(1u64..40, 1..8).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn every_slot_has_one_owner_whatever_the_order(mut ids in voters()) {
            let config = Configuration::new(&ids, &[]).unwrap();
            ids.reverse();
            let reversed = Configuration::new(&ids, &[]).unwrap();
            let owners = assignment(&config, SLOTS);
            prop_assert!(owners.iter().all(|o| config.is_voter(*o)));
            prop_assert_eq!(owners, assignment(&reversed, SLOTS));
        }

        #[test]
        fn removing_a_voter_moves_exactly_its_slots(ids in voters(), pick in 0usize..8) {
            prop_assume!(ids.len() > 1);
            let gone = ids[pick % ids.len()];
            let before = Configuration::new(&ids, &[]).unwrap();
            let after = before.apply(ConfChange::Remove(gone)).unwrap();
            let moved = moves(&before, &after, SLOTS);
            let owned = assignment(&before, SLOTS).iter().filter(|o| **o == gone).count();
            prop_assert_eq!(moved.len(), owned);
            prop_assert!(moved.iter().all(|m| m.from == gone && after.is_voter(m.to)));
        }

        #[test]
        fn adding_a_voter_moves_only_slots_to_it(ids in voters(), new in 40u64..50) {
            let before = Configuration::new(&ids, &[]).unwrap();
            let learner = before.apply(ConfChange::AddLearner(new)).unwrap();
            prop_assert!(moves(&before, &learner, SLOTS).is_empty(), "learners own nothing");
            let after = learner.apply(ConfChange::Promote(new)).unwrap();
            let moved = moves(&before, &after, SLOTS);
            prop_assert!(moved.iter().all(|m| m.to == new));
            let owned = assignment(&after, SLOTS).iter().filter(|o| **o == new).count();
            prop_assert_eq!(moved.len(), owned);
        }
    }

    proptest! {
        #[test]
        fn holders_change_by_one_node_per_change(
            ids in voters(), pick in 0usize..8, new in 40u64..50, replicas in 1usize..5
        ) {
            let before = Configuration::new(&ids, &[]).unwrap();
            let removed = (ids.len() > 1)
                .then(|| before.apply(ConfChange::Remove(ids[pick % ids.len()])).unwrap());
            let learner = before.apply(ConfChange::AddLearner(new)).unwrap();
            let added = learner.apply(ConfChange::Promote(new)).unwrap();
            for after in removed.iter().chain([&added]) {
                for slot in 0..SLOTS {
                    let (was, is) =
                        (holders(&before, slot, replicas), holders(after, slot, replicas));
                    prop_assert_eq!(is.len(), replicas.min(after.voters().len()));
                    prop_assert_eq!(is[0], owner(after, slot));
                    let mut distinct = is.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    prop_assert_eq!(distinct.len(), is.len());
                    let joined = is.iter().filter(|n| !was.contains(n)).count();
                    let left = was.iter().filter(|n| !is.contains(n)).count();
                    prop_assert!(joined <= 1 && left <= 1, "slot {}: {:?} -> {:?}", slot, was, is);
                }
            }
        }
    }

    #[test]
    fn slots_spread_over_the_voters() {
        for n in 1..=7u64 {
            let ids: Vec<NodeId> = (1..=n).collect();
            let owners = assignment(&Configuration::new(&ids, &[]).unwrap(), SLOTS);
            let fair = SLOTS as usize / n as usize;
            for id in &ids {
                let owned = owners.iter().filter(|o| *o == id).count();
                assert!(
                    owned * 4 > fair * 3 && owned * 4 < fair * 5,
                    "{n} voters: {id} owns {owned}"
                );
            }
        }
    }
}
