//! `SlotMachine`: the slotted state machine of the tests, benchmarks and cluster example. Its
//! state is a running checksum per slot (a data entry's slot is the crc32 of its payload
//! modulo the slot count), of which a node holds only the slots it is a holder of, plus a
//! checksum of the whole applied sequence that every node keeps.
//!
//! Snapshot files: slot `s` holds `state` (a slot's `ChecksumMachine` state, its index the
//! slot's `through`); slot `SEQUENCE_SLOT` holds `sequence` (the applied sequence's).
//!
//! Invariants:
//! 1. A held slot's state includes every entry of the slot at or below its `through`, and no
//!    other; `through` is at least the applied index (`SlotState::through`).
//! 2. `apply` changes a slot's state only for an entry of that slot above its `through`.

use std::collections::BTreeMap;

use super::machine::{ChecksumMachine, SlotLayout, StateMachine};
use super::wire::SLOTS_MAX;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::{SnapshotMeta, SnapshotStore, SnapshotWriter};

/// The entry kind of an application write (configuration entries and no-ops belong to no
/// slot).
pub const DATA_KIND: u8 = 0;
/// The snapshot slot of the applied sequence's checksum (not a slot of the layout).
pub const SEQUENCE_SLOT: u32 = u32::MAX;
const SEQUENCE_FILE: &str = "sequence";
const SLOT_FILE: &str = "state";

/// A state machine partitioned into slots; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMachine {
    /// The checksum of every entry applied, held slot or not: replicas that applied the same
    /// sequence agree on it.
    pub sequence: ChecksumMachine,
    layout: SlotLayout,
    /// Held slots: their state, `applied_index` the index through which it is complete when
    /// the slot was installed (entries at or below it are skipped).
    slots: BTreeMap<u32, ChecksumMachine>,
}

/// A held slot's state, as `SlotMachine::slot` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    /// Every entry of the slot at or below this index is included, and no later one.
    pub through: u64,
    /// The chained checksum of those entries (`ChecksumMachine::chain`).
    pub digest: u64,
    /// How many entries those are.
    pub entries: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

impl SlotMachine {
    /// An empty machine of `count` slots (at most `SLOTS_MAX`, what one message lists) with
    /// `replicas` holders each (at least 2, see `SlotLayout::replicas`).
    pub fn new(count: u32, replicas: usize) -> Result<Self> {
        if count == 0 || count > SLOTS_MAX || replicas < 2 {
            return Err(Error::InvalidOptions(
                "a slot machine needs 1 to 65,536 slots, 2 replicas",
            ));
        }
        Ok(SlotMachine {
            sequence: ChecksumMachine::default(),
            layout: SlotLayout { count, replicas },
            slots: BTreeMap::new(),
        })
    }

    /// The slot of a data entry's payload.
    pub fn slot_of(&self, payload: &[u8]) -> u32 {
        crc32fast::hash(payload) % self.layout.count
    }

    /// A held slot's state; `None` when this node does not hold it.
    pub fn slot(&self, slot: u32) -> Option<SlotState> {
        self.slots.get(&slot).map(|state| SlotState {
            through: state.applied_index.max(self.sequence.applied_index),
            digest: state.digest,
            entries: state.entries,
            bytes: state.bytes,
        })
    }
}

impl<F: FileSystem> StateMachine<F> for SlotMachine {
    fn apply(&mut self, entry: &Entry) {
        <ChecksumMachine as StateMachine<F>>::apply(&mut self.sequence, entry);
        if entry.kind != DATA_KIND {
            return;
        }
        let slot = self.slot_of(&entry.payload);
        if let Some(state) = self.slots.get_mut(&slot).filter(|s| entry.index > s.applied_index) {
            state.digest = ChecksumMachine::chain(state.digest, entry);
            state.entries += 1;
            state.bytes += entry.payload.len() as u64;
        }
    }

    fn snapshot(&self, writer: &mut SnapshotWriter<'_, F>) -> Result<()> {
        writer.add_bytes(SEQUENCE_SLOT, SEQUENCE_FILE, &self.sequence.encode())?;
        for slot in self.slots.keys() {
            let state = self.slot(*slot).expect("held");
            let file = ChecksumMachine {
                applied_index: state.through,
                digest: state.digest,
                entries: state.entries,
                bytes: state.bytes,
            };
            writer.add_bytes(*slot, SLOT_FILE, &file.encode())?;
        }
        Ok(())
    }

    fn restore(&mut self, store: &SnapshotStore<F>, meta: &SnapshotMeta) -> Result<()> {
        let sequence = ChecksumMachine::read(store, meta, SEQUENCE_SLOT, SEQUENCE_FILE, true)?;
        let held: Vec<u32> =
            meta.slots.keys().copied().filter(|s| *s < self.layout.count).collect();
        let mut slots = BTreeMap::new();
        for slot in held {
            slots.insert(slot, ChecksumMachine::read(store, meta, slot, SLOT_FILE, false)?);
        }
        self.sequence = sequence;
        self.slots = slots;
        Ok(())
    }

    fn slot_layout(&self) -> Option<SlotLayout> {
        Some(self.layout)
    }

    fn held_slots(&self) -> Vec<u32> {
        self.slots.keys().copied().collect()
    }

    fn release_slot(&mut self, slot: u32) {
        self.slots.remove(&slot);
    }

    fn restore_slots(
        &mut self,
        from: Option<(&SnapshotStore<F>, &SnapshotMeta)>,
        slots: &[u32],
        since: &[Entry],
    ) -> Result<()> {
        let mut states = BTreeMap::new();
        for slot in slots {
            if *slot >= self.layout.count {
                return Err(Error::UnknownSlot { slot: *slot });
            }
            let state = match from {
                Some((store, meta)) => ChecksumMachine::read(store, meta, *slot, SLOT_FILE, false)?,
                None => ChecksumMachine::default(),
            };
            states.insert(*slot, state);
        }
        for entry in since.iter().filter(|e| e.kind == DATA_KIND) {
            let slot = self.slot_of(&entry.payload);
            if let Some(state) = states.get_mut(&slot).filter(|s| entry.index > s.applied_index) {
                *state = ChecksumMachine {
                    applied_index: entry.index,
                    digest: ChecksumMachine::chain(state.digest, entry),
                    entries: state.entries + 1,
                    bytes: state.bytes + entry.payload.len() as u64,
                };
            }
        }
        self.slots.extend(states);
        Ok(())
    }
}
