//! Slot moves: the slots a slotted state machine holds follow the configuration
//! (`slots::holders`), and a node that becomes a slot's holder pulls the slot's files from a
//! peer's snapshot.
//!
//! Whenever applying passes a configuration entry, and whenever a snapshot is restored, the
//! node compares the slots its machine holds with those the configuration at its applied
//! index assigns it. It releases the slots it no longer holds; each slot it now holds but
//! lacks is *pending*, and applying stops until none is (the next entries may belong to it).
//! Nothing is pending at index 0: every slot starts empty.
//!
//! A pending slot is pulled as lost entries are (`repair`): the node asks its peers in turn,
//! the leader first, then every member, for a snapshot at or above its applied index
//! (`SnapshotRequest`; a peer that applied that far snapshots first). From an offer it pulls
//! only the files of the pending slots that snapshot holds (`RepairPull`, chunks checked and
//! journaled, so the transfer resumes across a crash of either side), installs them as a
//! partial snapshot (`install_slots`), restores them into the machine, then takes a snapshot
//! of its own, which holds them, and deletes the partial one. A partial snapshot a crash left
//! behind is installed at the next open without asking anyone.
//!
//! This is IoTDB's node removal (reference/iotdb/multileader-sync-and-node-removal.md B.4)
//! with its gaps closed: the holders of a slot are a function of the configuration in the
//! log; with at least two holders a slot is still held by another node after its holder is
//! removed, so a removed node serves nothing; pulls survive restarts; and a node that caught
//! up by a snapshot past a change pulls what that snapshot lacks the same way.
//!
//! Invariants:
//! 1. While a slot is pending, nothing past the applied index is applied.
//! 2. A pulled slot is complete through the peer's snapshot index, at least the applied index:
//!    the machine skips the slot's entries up to it.
//! 3. The held and the pending slots are disjoint, and together exactly the slots the
//!    configuration at the applied index assigns this node.

use std::collections::{BTreeMap, VecDeque};

use super::machine::StateMachine;
use super::message::{NodeId, SlotPull};
use super::replica::Replica;
use super::slots;
use crate::error::Result;
use crate::fs::FileSystem;
use crate::snapshot::SnapshotMeta;

/// Pulls a report keeps (the most recent).
const PULLS_MAX: usize = 1024;

/// The slots a node waits for, and those it pulled.
#[derive(Debug, Default)]
pub(super) struct SlotMoves {
    /// Pending slots, each with the holder it replaces (0: none).
    pending: BTreeMap<u32, NodeId>,
    pulls: VecDeque<SlotPull>,
}

impl SlotMoves {
    /// Whether applying waits for a slot (invariant 1).
    pub(super) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The pending slots among `offered`.
    pub(super) fn wanted(&self, offered: &SnapshotMeta) -> Vec<u32> {
        self.pending.keys().copied().filter(|slot| offered.slots.contains_key(slot)).collect()
    }
}

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// The slots this node holds by its configuration but still pulls from a peer; applying
    /// waits for them.
    pub fn pending_slots(&self) -> Vec<u32> {
        self.slot_moves.pending.keys().copied().collect()
    }

    /// The slots this node pulled since it started (the last `PULLS_MAX`), oldest first.
    pub fn slot_pulls(&self) -> Vec<SlotPull> {
        self.slot_moves.pulls.iter().copied().collect()
    }

    /// Brings the held slots in line with the configuration at the applied index (the module
    /// docs): releases, marks pending, and installs what a partial snapshot on disk holds.
    pub(super) fn settle_slots(&mut self) -> Result<()> {
        let Some(layout) = self.machine.slot_layout() else { return Ok(()) };
        let applied = self.log.applied_index();
        let config = self.membership.at(applied).clone();
        let previous = self.membership.at(applied.saturating_sub(1)).clone();
        let due = slots::held_by(&config, self.id, layout.count, layout.replicas);
        for slot in self.machine.held_slots() {
            if due.binary_search(&slot).is_err() {
                self.machine.release_slot(slot);
            }
        }
        let held = self.machine.held_slots();
        let lacking: Vec<u32> =
            due.into_iter().filter(|slot| held.binary_search(slot).is_err()).collect();
        if applied == 0 {
            // Before the first entry every slot is empty: nothing to pull.
            self.slot_moves.pending.clear();
            return self.machine.restore_slots(None, &lacking);
        }
        let pending = &mut self.slot_moves.pending;
        pending.retain(|slot, _| lacking.binary_search(slot).is_ok());
        for slot in lacking {
            let now = slots::holders(&config, slot, layout.replicas);
            let before = slots::holders(&previous, slot, layout.replicas);
            let from = before.into_iter().find(|node| !now.contains(node)).unwrap_or(0);
            pending.entry(slot).or_insert(from);
        }
        self.install_partial_snapshots()
    }

    /// Installs pending slots from partial snapshots a pull left on disk (a crash before
    /// `take_slots` finished), and deletes those of no further use.
    fn install_partial_snapshots(&mut self) -> Result<()> {
        let applied = self.log.applied_index();
        for meta in self.snapshots.list()?.into_iter().filter(|meta| meta.partial) {
            let wanted = self.slot_moves.wanted(&meta);
            if meta.index >= applied && !wanted.is_empty() {
                self.take_slots(&meta, &wanted, 0)?;
            } else {
                self.snapshots.delete(&meta)?;
            }
        }
        Ok(())
    }

    /// Restores `slots` from the partial snapshot `meta` (pulled from `source`), then makes
    /// them durable in a snapshot of this node's own and deletes the partial one.
    pub(super) fn take_slots(
        &mut self,
        meta: &SnapshotMeta,
        slots: &[u32],
        source: NodeId,
    ) -> Result<()> {
        self.machine.restore_slots(Some((&self.snapshots, meta)), slots)?;
        for slot in slots {
            let from = self.slot_moves.pending.remove(slot).unwrap_or(0);
            let bytes = meta.slots.get(slot).map_or(0, |files| files.iter().map(|f| f.size).sum());
            if self.slot_moves.pulls.len() == PULLS_MAX {
                self.slot_moves.pulls.pop_front();
            }
            let pull = SlotPull { slot: *slot, from, source, index: meta.index, bytes };
            self.slot_moves.pulls.push_back(pull);
        }
        self.take_snapshot()?;
        self.snapshots.delete(meta)
    }
}
