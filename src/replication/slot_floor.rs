//! The compaction floor of a slotted group: how far every node may compact its log.
//!
//! With a slotted state machine a node's snapshot holds only its slots, so compacting the log
//! behind it may drop the only record of entries of other slots that no holder has in a
//! snapshot yet (a holder that is behind, or pulling the slot). Then no copy of the slot
//! could ever be brought forward again. So the log is the slots' safety net, and entries
//! leave it only once they are durable in a snapshot of a node holding their slot:
//! - each node answers the leader's `CompactionFloor` with `SlotsDurable`: the index of its
//!   latest snapshot and the slots that snapshot holds;
//! - the leader's floor is, over every slot, the highest index a report (or its own latest
//!   snapshot) holds that slot through, and the lowest of these over the slots; it sends it
//!   with every heartbeat;
//! - every node compacts to the floor at most (`Replica::take_snapshot`), 0 until it knows
//!   one. A node that pulls a slot can then always take any holder's snapshot and apply the
//!   slot's later entries from its own log (`slot_moves`).
//!
//! The cost: a slotted group compacts no further than its slowest holder's snapshots, as
//! TiKV keeps a region's log for its slowest follower. A holder down for good holds it back
//! until its removal moves its slots.
//!
//! Invariants:
//! 1. The floor never exceeds an index through which some node holding a slot has it in a
//!    durable snapshot, for every slot (a retired copy is dropped only after a puller has
//!    the slot in a durable snapshot, `slot_moves` invariant 4).
//! 2. A machine without slots has no floor: nothing of this runs.

use std::collections::BTreeMap;

use super::machine::StateMachine;
use super::message::{Message, NodeId};
use super::replica::Replica;
use crate::fs::FileSystem;
use crate::snapshot::SnapshotMeta;

/// What the leader and this node know of the group's durable slots.
#[derive(Debug, Default)]
pub(super) struct SlotFloor {
    /// This node's latest snapshot: its index and the slots it holds.
    own: (u64, Vec<u32>),
    /// As a leader: every node's last `SlotsDurable`.
    reports: BTreeMap<NodeId, (u64, Vec<u32>)>,
    /// As a follower: the floor the leader last sent.
    known: u64,
}

impl SlotFloor {
    /// This node published `meta`, its latest snapshot, holding slots `0..count` of it.
    pub(super) fn snapshotted(&mut self, meta: &SnapshotMeta, count: u32) {
        let held = meta.slots.keys().copied().filter(|slot| *slot < count).collect();
        self.own = (meta.index, held);
    }

    /// The floor over `count` slots from the reports of `members` and this node's own
    /// snapshot (a removed node's copies may be gone at any time: they do not count).
    fn computed(&self, count: u32, members: &[NodeId]) -> u64 {
        let mut best = vec![0u64; count as usize];
        let reports = self.reports.iter().filter(|(id, _)| members.contains(id)).map(|(_, r)| r);
        for (index, held) in reports.chain(std::iter::once(&self.own)) {
            for slot in held {
                if let Some(best) = best.get_mut(*slot as usize) {
                    *best = (*best).max(*index);
                }
            }
        }
        best.into_iter().min().unwrap_or(0)
    }
}

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// How far the log may be compacted (the module docs): no limit without slots.
    pub(super) fn compaction_floor(&self) -> u64 {
        match self.machine.slot_layout() {
            None => u64::MAX,
            Some(layout) if self.leader.is_some() => {
                let members = self.membership.current().members();
                self.slot_floor.computed(layout.count, &members)
            }
            Some(_) => self.slot_floor.known,
        }
    }

    /// A leader's heartbeat carries the floor to `to`.
    pub(super) fn send_compaction_floor(&mut self, to: NodeId) {
        if self.machine.slot_layout().is_some() {
            let floor =
                Message::CompactionFloor { term: self.term, index: self.compaction_floor() };
            self.outbox.push(self.envelope(to, floor));
        }
    }

    /// The leader's floor: taken, and answered with this node's latest snapshot.
    pub(super) fn on_compaction_floor(&mut self, from: NodeId, index: u64) {
        if self.machine.slot_layout().is_none() {
            return;
        }
        self.slot_floor.known = index;
        let (index, slots) = self.slot_floor.own.clone();
        let report = Message::SlotsDurable { term: self.term, index, slots };
        self.outbox.push(self.envelope(from, report));
    }

    /// A node's latest snapshot, reported to this leader.
    pub(super) fn on_slots_durable(&mut self, from: NodeId, index: u64, slots: Vec<u32>) {
        if self.leader.is_some() && self.machine.slot_layout().is_some() {
            self.slot_floor.reports.insert(from, (index, slots));
        }
    }
}
