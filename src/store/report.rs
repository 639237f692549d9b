//! What opening a store found and repaired: the `RecoveryReport` a store hands out.
//!
//! Invariants:
//! 1. A report describes only what recovery did: files removed, a tail cut, indexes rebuilt.
//! 2. A cut tail is `Unsynced` only when proven (format/SPEC.md, "Sync mark"); otherwise it is
//!    `Unknown`, and `unknown_durability` gives the indexes that may have been acknowledged.

use std::ops::Range;
use std::path::PathBuf;

use crate::error::Corruption;

/// What opening a store found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The directory held no store; a new one was created.
    pub created: bool,
    /// Live segments after recovery.
    pub segments: usize,
    /// Bytes of segment files scanned.
    pub scanned_bytes: u64,
    /// First live index after recovery.
    pub first_index: u64,
    /// Last index after recovery.
    pub last_index: u64,
    /// The unacknowledged torn tail that was cut, if any.
    pub torn_tail: Option<TornTail>,
    /// Sealed segments opened through their index, without a scan.
    pub indexed_segments: usize,
    /// Files removed: dead segments (compacted, reset, overridden by a truncation) with their
    /// indexes, unfinished segments, and stale or orphaned index files.
    pub removed_files: Vec<PathBuf>,
    /// Index files rebuilt from their segment.
    pub rebuilt_indexes: Vec<IndexRebuild>,
    /// A meta slot that failed verification; the other slot was used.
    pub damaged_meta_slot: Option<usize>,
    /// Committed entries lost here because a segment is missing (R10): the log now starts
    /// after them. A replica restores them from a peer's snapshot.
    pub lost_prefix: Option<LostPrefix>,
}

/// The entries recovery dropped because a segment holding committed ones was missing (R10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostPrefix {
    /// Every entry no longer in the log, `[lo, hi)`: the missing ones and those before them.
    pub indexes: Range<u64>,
    /// The entries of the missing segment(s), `[lo, hi)`.
    pub missing: Range<u64>,
}

/// A torn tail cut by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Where the cut starts.
    pub offset: u64,
    /// Bytes removed.
    pub bytes_cut: u64,
    /// Indexes whose records started in the cut bytes, `[lo, hi)`, as far as their unverified
    /// headers tell (empty when the segment's own header was torn).
    pub indexes_cut: Range<u64>,
    /// Whether the cut entries are proven never synced, or may have been.
    pub durability: TailDurability,
}

/// What recovery can say of a cut tail's entries (format/SPEC.md, "Sync mark").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TailDurability {
    /// Proven never synced: nothing in them was ever reported durable.
    Unsynced,
    /// Not provable either way: a power loss can lose the last sync mark, and damage in the
    /// last synced batch then looks like a torn write. A replicated node must treat these
    /// indexes as possibly acknowledged: get them back from the leader before it votes or
    /// acknowledges beyond them.
    Unknown,
}

impl RecoveryReport {
    /// The indexes cut as a tail of unknown durability, `[lo, hi)`, if any: entries this node
    /// may have acknowledged and no longer holds. It holds at least the cut's first index,
    /// even when the damaged header hid which indexes followed.
    pub fn unknown_durability(&self) -> Option<Range<u64>> {
        let torn = self.torn_tail.as_ref()?;
        let Range { start, end } = torn.indexes_cut;
        (torn.durability == TailDurability::Unknown && start > 0).then(|| start..end.max(start + 1))
    }
}

/// An index file recovery rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRebuild {
    /// The index file.
    pub path: PathBuf,
    /// What was wrong with the old one; `None` when it was missing.
    pub reason: Option<Corruption>,
}
