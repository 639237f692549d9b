//! Slot moves: the slots a slotted state machine holds follow the configuration
//! (`slots::holders`), and a node that becomes a slot's holder pulls the slot's files from a
//! peer's snapshot.
//!
//! Whenever applying passes a configuration entry, and whenever a snapshot is restored, the
//! node compares the slots its machine holds with those the configuration at its applied
//! index assigns it. Each slot assigned but not held is *pending*, and applying stops until
//! none is (the next entries may belong to it). Nothing is pending at index 0: every slot
//! starts empty.
//!
//! A slot held but no longer assigned is *retired*: the node keeps it, applying its entries
//! and writing it in its snapshots, until a node that pulled it says so (`SlotsTaken`, sent
//! to every member once the pulled slots are in a durable snapshot). Until then it may be
//! the only complete copy: the slot's other holders may lack it too (a holder that caught up
//! by a leader's snapshot, which holds the leader's slots, pulls them as well). Slots a
//! leader's or peer's snapshot brought that are not assigned are dropped at once: their
//! source still holds them.
//!
//! A pending slot is pulled as lost entries are (`repair`): the node asks its peers in turn,
//! the nodes the slots moved from first, then the leader, then every member, for a snapshot at or above its applied index
//! (`SnapshotRequest`; a peer that applied that far snapshots first). From an offer it pulls
//! only the files of the pending slots that snapshot holds (`RepairPull`, chunks checked and
//! journaled, so the transfer resumes across a crash of either side), installs them as a
//! partial snapshot (`install_slots`), restores them into the machine, then takes a snapshot
//! of its own, which holds them, and deletes the partial one. A partial snapshot a crash left
//! behind is installed at the next open without asking anyone.
//!
//! A removed node is assigned nothing: its slots are all retired, and it serves its
//! snapshots to their new holders (`Replica::step`) until its operator stops it. Stop it once
//! it holds no slot (`SlotMachine::held_slots`), or at least once no member reports pending
//! slots (`Replica::pending_slots`).
//!
//! This is IoTDB's node removal (reference/iotdb/multileader-sync-and-node-removal.md B.4)
//! with its gaps closed: the holders of a slot are a function of the configuration in the
//! log; pulls survive restarts of either side; and a node that caught up by a snapshot past
//! a change pulls what that snapshot lacks the same way.
//!
//! Invariants:
//! 1. While a slot is pending, nothing past the applied index is applied.
//! 2. A pulled slot is complete through the peer's snapshot index, at least the applied index:
//!    the machine skips the slot's entries up to it.
//! 3. The pending slots are exactly the slots the configuration at the applied index assigns
//!    this node (none to a learner or a removed node) and it does not hold.
//! 4. A retired slot is dropped only after a node that pulled it holds it durably.

use std::collections::{BTreeMap, VecDeque};

use super::machine::StateMachine;
use super::message::{Message, NodeId, SlotPull};
use super::replica::Replica;
use super::slots;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::{SnapshotMeta, SnapshotStore, SnapshotWriter};
use crate::Corruption;

/// Pulls a report keeps (the most recent).
pub const PULLS_MAX: usize = 1024;
/// The snapshot file, in slot `u32::MAX`, where a node taking a snapshot while slots are
/// pending records them with the holders they replace: after a restart those nodes (a
/// removed one, perhaps, known to no configuration left) are still asked first. Reserved for
/// the shim in every snapshot (format/SPEC.md, "Slot moves").
pub const PENDING_SLOTS_FILE: &str = "pending-slots";
const PENDING_SLOTS_SLOT: u32 = u32::MAX;
/// Bytes of one record of `PENDING_SLOTS_FILE`: the slot (u32) and the holder (u64), LE.
const PENDING_RECORD_BYTES: usize = 12;

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

    /// Records the pending slots in a snapshot being written (`PENDING_SLOTS_FILE`).
    pub(super) fn record<F: FileSystem>(&self, writer: &mut SnapshotWriter<'_, F>) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(self.pending.len() * PENDING_RECORD_BYTES);
        for (slot, from) in &self.pending {
            bytes.extend_from_slice(&slot.to_le_bytes());
            bytes.extend_from_slice(&from.to_le_bytes());
        }
        writer.add_bytes(PENDING_SLOTS_SLOT, PENDING_SLOTS_FILE, &bytes)?;
        Ok(())
    }

    /// Takes back what `record` wrote in this node's snapshot `meta` (nothing if none).
    pub(super) fn recall<F: FileSystem>(
        &mut self,
        store: &SnapshotStore<F>,
        meta: &SnapshotMeta,
    ) -> Result<()> {
        if meta.file(PENDING_SLOTS_SLOT, PENDING_SLOTS_FILE).is_none() {
            return Ok(());
        }
        let bytes = store.read(meta, PENDING_SLOTS_SLOT, PENDING_SLOTS_FILE)?;
        if bytes.len() % PENDING_RECORD_BYTES != 0 {
            let path = store.dir().join(PENDING_SLOTS_FILE);
            return Err(Error::corrupt(path, 0, None, Corruption::Field("pending slots")));
        }
        for record in bytes.chunks_exact(PENDING_RECORD_BYTES) {
            let slot = u32::from_le_bytes(record[..4].try_into().expect("4 bytes"));
            let from = crate::codec::u64_at(record, 4);
            self.pending.insert(slot, from);
        }
        Ok(())
    }

    /// The nodes pending slots moved from (a removed node among them), ascending.
    pub(super) fn former_holders(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> =
            self.pending.values().copied().filter(|node| *node != 0).collect();
        nodes.sort_unstable();
        nodes.dedup();
        nodes
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
    /// docs): marks pending, drops what `installed` (a snapshot of another node's just
    /// restored) brought unassigned, and installs what a partial snapshot on disk holds.
    pub(super) fn settle_slots(&mut self, installed: bool) -> Result<()> {
        let Some(layout) = self.machine.slot_layout() else { return Ok(()) };
        let applied = self.log.applied_index();
        let config = self.membership.at(applied).clone();
        let previous = self.membership.at(applied.saturating_sub(1)).clone();
        let due = slots::held_by(&config, self.id, layout.count, layout.replicas);
        if installed {
            for slot in self.machine.held_slots() {
                if due.binary_search(&slot).is_err() {
                    self.machine.release_slot(slot);
                }
            }
        }
        let held = self.machine.held_slots();
        let lacking: Vec<u32> =
            due.into_iter().filter(|slot| held.binary_search(slot).is_err()).collect();
        if applied == 0 {
            // Before the first entry every slot is empty: nothing to pull.
            self.slot_moves.pending.clear();
            return self.machine.restore_slots(None, &lacking, &[]);
        }
        let pending = &mut self.slot_moves.pending;
        pending.retain(|slot, _| lacking.binary_search(slot).is_ok());
        for slot in lacking {
            let now = slots::holders(&config, slot, layout.replicas);
            let before = slots::holders(&previous, slot, layout.replicas);
            let from = before.into_iter().find(|node| !now.contains(node)).unwrap_or(0);
            let known = pending.entry(slot).or_insert(from);
            if *known == 0 {
                *known = from;
            }
        }
        self.install_partial_snapshots()
    }

    /// Installs pending slots from partial snapshots a pull left on disk (a crash before
    /// `take_slots` finished), and deletes those of no further use.
    fn install_partial_snapshots(&mut self) -> Result<()> {
        if !self.slot_moves.waiting() {
            return Ok(()); // (one left behind is deleted when a slot is next pending)
        }
        for meta in self.snapshots.list()?.into_iter().filter(|meta| meta.partial) {
            let wanted = self.slot_moves.wanted(&meta);
            if self.replayable(meta.index) && !wanted.is_empty() {
                self.take_slots(&meta, &wanted, 0)?;
            } else {
                self.snapshots.delete(&meta)?;
            }
        }
        Ok(())
    }

    /// Whether slots a snapshot at `index` holds can be brought to the applied index: the log
    /// holds every entry after it.
    pub(super) fn replayable(&self, index: u64) -> bool {
        index.saturating_add(1) >= self.log.first_index()
    }

    /// Restores `slots` from the partial snapshot `meta` (pulled from `source`) and applies
    /// their entries after it from the log, then makes them durable in a snapshot of this
    /// node's own and deletes the partial one. When the log cannot give those entries (a
    /// damaged one, say), it is only deleted: the slots stay pending.
    pub(super) fn take_slots(
        &mut self,
        meta: &SnapshotMeta,
        slots: &[u32],
        source: NodeId,
    ) -> Result<()> {
        let applied = self.log.applied_index();
        let since = match meta.index < applied {
            true => self.log.entries(meta.index + 1, applied + 1, u64::MAX),
            false => Ok(Vec::new()),
        };
        let since = match since {
            Ok(entries) if entries.len() as u64 == applied.saturating_sub(meta.index) => entries,
            Ok(_) | Err(Error::Compacted { .. } | Error::Damaged { .. }) => {
                return self.snapshots.delete(meta);
            }
            Err(error) => return Err(error),
        };
        self.machine.restore_slots(Some((&self.snapshots, meta)), slots, &since)?;
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
        self.snapshots.delete(meta)?;
        // Whoever keeps a retired copy may drop it now (invariant 4).
        let mut told: Vec<NodeId> = self.membership.everyone();
        told.extend(self.slot_moves.pulls.iter().rev().take(slots.len()).map(|p| p.from));
        told.sort_unstable();
        told.dedup();
        for to in told.into_iter().filter(|to| *to != 0 && *to != self.id) {
            let taken = Message::SlotsTaken { term: self.term, slots: slots.to_vec() };
            self.outbox.push(self.envelope(to, taken));
        }
        Ok(())
    }

    /// `from` holds `slots` durably: the retired ones among them are dropped here.
    pub(super) fn on_slots_taken(&mut self, taken: &[u32]) {
        let Some(layout) = self.machine.slot_layout() else { return };
        let config = self.membership.at(self.log.applied_index());
        let held = self.machine.held_slots();
        for slot in taken.iter().filter(|slot| held.binary_search(slot).is_ok()) {
            if !slots::holders(config, *slot, layout.replicas).contains(&self.id) {
                self.machine.release_slot(*slot);
            }
        }
    }
}
