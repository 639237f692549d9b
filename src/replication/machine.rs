//! The state machine seam of the shim, and `ChecksumMachine`, the state machine of its tests,
//! benchmarks and cluster example.
//!
//! A machine may partition its state into slots (`slot_layout`, `SlotMachine`): each node
//! then holds only the slots its configuration assigns it (`slots::holders`), and the shim
//! moves slots' state between nodes when the configuration changes (`slot_moves`).
//!
//! Invariants:
//! 1. `apply` sees committed entries in index order, each once per incarnation of the state
//!    machine; `restore` replaces the whole state with a snapshot's.
//! 2. `snapshot` writes the state as of the last applied entry, and nothing else.
//! 3. A slotted machine's snapshot holds exactly the slots it holds, each complete through
//!    the snapshot's index at least.

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::{SnapshotMeta, SnapshotStore};
use crate::Corruption;

/// What the shim drives: the application's state, fed committed entries.
pub trait StateMachine<F: FileSystem> {
    /// Applies one committed entry.
    fn apply(&mut self, entry: &Entry);
    /// Writes the current state into `writer` (a snapshot at the last applied index).
    fn snapshot(&self, writer: &mut crate::snapshot::SnapshotWriter<'_, F>) -> Result<()>;
    /// Replaces the state with the snapshot `meta` of `store`.
    fn restore(&mut self, store: &SnapshotStore<F>, meta: &SnapshotMeta) -> Result<()>;

    /// How the state is partitioned into slots; `None` (the default): it is not, and every
    /// node holds the whole state.
    fn slot_layout(&self) -> Option<SlotLayout> {
        None
    }

    /// The slots whose state this machine holds, ascending.
    fn held_slots(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Drops `slot`'s state: this node no longer holds it.
    fn release_slot(&mut self, _slot: u32) {}

    /// Takes the state of `slots` from the snapshot `meta` of `store` (a peer's, installed
    /// with `install_slots`), complete through at least `meta.index`, then applies to them
    /// the entries of theirs among `since`: the log's committed entries after `meta.index`
    /// through the applied index (none when the snapshot is at or past it). Their state is
    /// then complete through the applied index at least, and `apply` skips their entries at
    /// or below the index it is complete through. `None`: the slots' state at index 0, empty.
    fn restore_slots(
        &mut self,
        _from: Option<(&SnapshotStore<F>, &SnapshotMeta)>,
        _slots: &[u32],
        _since: &[Entry],
    ) -> Result<()> {
        Err(Error::InvalidOptions("this state machine has no slots"))
    }
}

/// How a slotted state machine partitions its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// Slots `0..count`.
    pub count: u32,
    /// Holders of each slot (`slots::holders`), at least 2: a slot's state then survives the
    /// removal of any one node without that node serving it.
    pub replicas: usize,
}

/// A state machine whose state is a running checksum of every entry it applied (index, term
/// and payload, chained), with counts: two replicas that applied the same sequence through an
/// index hold the same `digest`. IoTDB's benchmark used a no-op state machine; this one is
/// as cheap and lets a test compare what replicas applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumMachine {
    /// Index of the last entry applied (or of the snapshot restored).
    pub applied_index: u64,
    /// The chained checksum through `applied_index`.
    pub digest: u64,
    /// Entries applied since the log began.
    pub entries: u64,
    /// Payload bytes applied since the log began.
    pub bytes: u64,
}

/// The snapshot slot and file of a `ChecksumMachine`.
const SLOT: u32 = 0;
const FILE: &str = "checksum";
const FILE_BYTES: usize = 32;

impl ChecksumMachine {
    /// The digest after applying `entry` to a machine whose digest is `digest`: the entry's
    /// crc32 (hardware-accelerated) folded into the previous digest, so the digest depends on
    /// every entry and on their order.
    pub fn chain(digest: u64, entry: &Entry) -> u64 {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&entry.index.to_le_bytes());
        crc.update(&entry.term.to_le_bytes());
        crc.update(&[entry.kind]);
        crc.update(&entry.payload);
        let mixed = (digest ^ u64::from(crc.finalize())).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        mixed.rotate_left(29) ^ entry.index
    }

    /// The state as 32 bytes: the four fields, little-endian.
    pub(super) fn encode(&self) -> [u8; FILE_BYTES] {
        let mut out = [0u8; FILE_BYTES];
        for (at, field) in
            [self.applied_index, self.digest, self.entries, self.bytes].iter().enumerate()
        {
            out[at * 8..at * 8 + 8].copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// Reads the state `encode` wrote into file `name` of `meta`; its index must be at least
    /// `meta.index` (or equal, with `exact`).
    pub(super) fn read<F: FileSystem>(
        store: &SnapshotStore<F>,
        meta: &SnapshotMeta,
        slot: u32,
        name: &str,
        exact: bool,
    ) -> Result<ChecksumMachine> {
        let bytes = store.read(meta, slot, name)?;
        let field = |at: usize| crate::codec::u64_at(&bytes, at * 8);
        let fits = bytes.len() == FILE_BYTES
            && (field(0) == meta.index || !exact && field(0) > meta.index);
        if !fits {
            let path = store.dir().join(name);
            return Err(Error::corrupt(path, 0, None, Corruption::Field("checksum machine state")));
        }
        Ok(ChecksumMachine {
            applied_index: field(0),
            digest: field(1),
            entries: field(2),
            bytes: field(3),
        })
    }
}

impl<F: FileSystem> StateMachine<F> for ChecksumMachine {
    fn apply(&mut self, entry: &Entry) {
        debug_assert!(
            entry.index > self.applied_index,
            "{} after {}",
            entry.index,
            self.applied_index
        );
        self.applied_index = entry.index;
        self.digest = ChecksumMachine::chain(self.digest, entry);
        self.entries += 1;
        self.bytes += entry.payload.len() as u64;
    }

    fn snapshot(&self, writer: &mut crate::snapshot::SnapshotWriter<'_, F>) -> Result<()> {
        writer.add_bytes(SLOT, FILE, &self.encode())?;
        Ok(())
    }

    fn restore(&mut self, store: &SnapshotStore<F>, meta: &SnapshotMeta) -> Result<()> {
        *self = ChecksumMachine::read(store, meta, SLOT, FILE, true)?;
        Ok(())
    }
}
