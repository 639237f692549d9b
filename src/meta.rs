//! The meta file: the hard state with the log's bounds (first index, its previous term, the
//! smallest live segment id).
//!
//! The meta file holds two 512-byte slots. A write goes to the slot the other one does not
//! hold the newest copy in (`sequence % 2`) and is fsynced before it is acknowledged, so a
//! torn write damages at most the slot being written and the previous state survives in the
//! other one.
//!
//! Invariants:
//! 1. The slot read back is the valid slot with the highest sequence; a write never touches
//!    that slot.
//! 2. `term` never decreases; `vote` changes only with a new term or from 0; `commit` never
//!    decreases and never exceeds the last index of the log.
//! 3. `first_index`, `prev_term` and `segment_id_min` are the log's durable bounds: entries
//!    below `first_index` and segments below `segment_id_min` are dead.

use std::path::{Path, PathBuf};

use crate::codec::{u16_at, u32_at, u64_at};
use crate::entry::INDEX_MAX;
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::hard_state::HardState;

/// File name of the meta file inside a store directory.
pub const META_FILE: &str = "meta";
/// "RLMT": first four bytes of a meta slot.
pub const META_MAGIC: u32 = u32::from_le_bytes(*b"RLMT");
/// The meta format this code writes and reads.
pub const META_VERSION: u16 = 1;
/// Bytes of one slot; a sector, so a torn write of one slot leaves the other intact.
pub const META_SLOT_BYTES: usize = 512;
const META_FIELDS_BYTES: usize = 80;

/// Everything a slot of the meta file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Incremented by every write; picks the newest slot.
    pub sequence: u64,
    /// Random id of the store, fixed at creation.
    pub store_uid: u64,
    /// The Raft hard state.
    pub hard_state: HardState,
    /// First live index of the log.
    pub first_index: u64,
    /// Term of `first_index - 1`.
    pub prev_term: u64,
    /// Segments with a smaller id are dead.
    pub segment_id_min: u64,
}

impl Meta {
    pub(crate) fn initial(store_uid: u64) -> Meta {
        Meta {
            sequence: 1,
            store_uid,
            hard_state: HardState::default(),
            first_index: 1,
            prev_term: 0,
            segment_id_min: 1,
        }
    }

    /// ```text
    ///  0  magic           u32  "RLMT"
    ///  4  version         u16  1
    ///  6  reserved        u16  0
    ///  8  sequence        u64
    /// 16  store_uid       u64
    /// 24  term            u64
    /// 32  vote            u64
    /// 40  commit          u64
    /// 48  first_index     u64
    /// 56  prev_term       u64
    /// 64  segment_id_min  u64
    /// 72  reserved        u32  0
    /// 76  crc32           u32  crc32 of bytes [0, 76)
    /// 80  zero up to 512
    /// ```
    fn encode(&self) -> [u8; META_SLOT_BYTES] {
        let mut out = [0u8; META_SLOT_BYTES];
        out[0..4].copy_from_slice(&META_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&META_VERSION.to_le_bytes());
        let fields = [
            self.sequence,
            self.store_uid,
            self.hard_state.term,
            self.hard_state.vote,
            self.hard_state.commit,
            self.first_index,
            self.prev_term,
            self.segment_id_min,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&field.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[0..76]);
        out[76..META_FIELDS_BYTES].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies one slot.
    pub fn decode(slot: &[u8]) -> Result<Meta, Corruption> {
        if slot.len() < META_FIELDS_BYTES {
            return Err(Corruption::Field("meta slot length"));
        }
        if crc32fast::hash(&slot[0..76]) != u32_at(slot, 76) {
            return Err(Corruption::Checksum);
        }
        if u32_at(slot, 0) != META_MAGIC {
            return Err(Corruption::Field("meta magic"));
        }
        if u16_at(slot, 4) != META_VERSION {
            return Err(Corruption::Identity("unknown meta format version"));
        }
        let meta = Meta {
            sequence: u64_at(slot, 8),
            store_uid: u64_at(slot, 16),
            hard_state: HardState::new(u64_at(slot, 24), u64_at(slot, 32), u64_at(slot, 40)),
            first_index: u64_at(slot, 48),
            prev_term: u64_at(slot, 56),
            segment_id_min: u64_at(slot, 64),
        };
        if meta.first_index == 0
            || meta.first_index > INDEX_MAX + 1
            || meta.hard_state.commit > INDEX_MAX
            || meta.segment_id_min == 0
        {
            return Err(Corruption::Field("meta first_index or segment_id_min"));
        }
        Ok(meta)
    }
}

/// What reading the meta file found.
pub(crate) enum MetaRead {
    /// A valid meta; `damaged_slot` names a non-blank slot that failed verification.
    Valid { meta: Meta, damaged_slot: Option<usize> },
    /// Both slots blank: the file was created but its first write never landed.
    Blank,
}

/// The open meta file.
pub(crate) struct MetaFile<F: FileSystem> {
    file: F::File,
    path: PathBuf,
    current: Meta,
}

impl<F: FileSystem> MetaFile<F> {
    /// Reads both slots of `path` and picks the newest valid one.
    pub(crate) fn read(fs: &F, path: &Path) -> Result<(F::File, MetaRead)> {
        let file = fs.open(path).ctx("open", path)?;
        let len = file.size().ctx("stat", path)?;
        let mut slots = [[0u8; META_SLOT_BYTES]; 2];
        for (i, slot) in slots.iter_mut().enumerate() {
            let offset = (i * META_SLOT_BYTES) as u64;
            let available = len.saturating_sub(offset).min(META_SLOT_BYTES as u64) as usize;
            file.read_exact_at(&mut slot[..available], offset).ctx("read", path)?;
        }
        let decoded: Vec<_> = slots.iter().map(|slot| Meta::decode(slot)).collect();
        let newest = decoded.iter().filter_map(|d| d.as_ref().ok()).max_by_key(|m| m.sequence);
        let Some(meta) = newest.copied() else {
            if slots.iter().all(|slot| slot.iter().all(|b| *b == 0)) {
                return Ok((file, MetaRead::Blank));
            }
            return Err(Error::corrupt(path, 0, None, Corruption::Meta));
        };
        let damaged_slot =
            (0..2).find(|&i| decoded[i].is_err() && slots[i].iter().any(|b| *b != 0));
        Ok((file, MetaRead::Valid { meta, damaged_slot }))
    }

    pub(crate) fn new(file: F::File, path: PathBuf, current: Meta) -> Self {
        MetaFile { file, path, current }
    }

    pub(crate) fn current(&self) -> &Meta {
        &self.current
    }

    /// Writes `next` (its sequence is assigned here) to the older slot and fsyncs it.
    pub(crate) fn store(&mut self, mut next: Meta) -> Result<()> {
        next.sequence = self.current.sequence + 1;
        let offset = (next.sequence % 2) * META_SLOT_BYTES as u64;
        self.file.write_all_at(&next.encode(), offset).ctx("write", &self.path)?;
        self.file.sync_data().ctx("sync_data", &self.path)?;
        self.current = next;
        Ok(())
    }

    /// Writes the first slot of a new store.
    pub(crate) fn write_initial(&mut self) -> Result<()> {
        let offset = (self.current.sequence % 2) * META_SLOT_BYTES as u64;
        self.file.write_all_at(&self.current.encode(), offset).ctx("write", &self.path)?;
        self.file.sync_data().ctx("sync_data", &self.path)
    }
}

/// Checks `proposed` against the Raft rules, after `current`, given the log's last index
/// (entries up to it are made durable with the hard state).
pub(crate) fn check_hard_state(
    current: HardState,
    proposed: HardState,
    last_index: u64,
) -> Result<()> {
    let rule = if proposed.term < current.term {
        Some(crate::error::HardStateRule::TermRegression)
    } else if proposed.term == current.term && current.vote != 0 && proposed.vote != current.vote {
        Some(crate::error::HardStateRule::VoteChange)
    } else if proposed.commit < current.commit {
        Some(crate::error::HardStateRule::CommitRegression)
    } else if proposed.commit > last_index {
        Some(crate::error::HardStateRule::CommitBeyondLog)
    } else {
        None
    };
    match rule {
        Some(rule) => Err(Error::HardStateRefused { current, proposed, rule }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_flips() {
        let meta = Meta { sequence: 9, ..Meta::initial(42) };
        let bytes = meta.encode();
        assert_eq!(Meta::decode(&bytes), Ok(meta));
        for bit in 0..META_FIELDS_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(Meta::decode(&flipped).is_err(), "flip of bit {bit} not detected");
        }
    }
}
