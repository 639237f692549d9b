//! Reading a store's segment files the way a test that damages them needs: which files, and
//! where each entry's record lies (format/SPEC.md, "Record"), without the library.

use std::path::{Path, PathBuf};

use raftlog::fs::{FileSystem, SimFs};
use raftlog::{LogStore, Options};

use super::{big_entries, open};

/// An entry's record in a segment file.
#[derive(Debug, Clone, Copy)]
pub struct EntryRecord {
    /// Offset of its 32-byte header.
    pub offset: u64,
    /// Header and payload bytes.
    pub len: u64,
    pub index: u64,
}

/// The segment files in `dir` on `fs`, in id order (empty if `dir` cannot be listed).
pub fn segment_files(fs: &SimFs, dir: &Path) -> Vec<PathBuf> {
    let Ok(names) = fs.list(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = names
        .into_iter()
        .filter(|name| name.to_str().is_some_and(|n| n.ends_with(".seg")))
        .map(|name| dir.join(name))
        .collect();
    files.sort();
    files
}

/// The entry records of a segment file's bytes, in order, up to the end of its stream.
pub fn entry_records(bytes: &[u8]) -> Vec<EntryRecord> {
    let mut records = Vec::new();
    let mut at = 64usize;
    while at + 32 <= bytes.len() && bytes[at..at + 32].iter().any(|b| *b != 0) {
        let len = 32 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let index = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        if bytes[at + 24] == 1 && at + len <= bytes.len() {
            records.push(EntryRecord { offset: at as u64, len: len as u64, index });
        }
        at += len;
    }
    records
}

/// The first index a segment file's header names.
pub fn first_index(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[24..32].try_into().unwrap())
}

// The layout of a store written with 100-byte payloads (the recovery and fault tests).

pub const RECORD: u64 = 32 + 100; // record bytes of a 100-byte payload
pub const HEADER: u64 = 64;
/// The hard-state record that opens every segment (no engine metadata): 32 + 40 bytes.
pub const OPENING_RECORD: u64 = 72;
pub const SYNC_MARK: u64 = 32; // appended to the active segment after each sync
pub const SEAL: u64 = 32 + 8 + 40; // count, then the hard state

/// Offset of the entry at `position` of a segment's first synced batch.
pub fn record_offset(position: u64) -> u64 {
    HEADER + OPENING_RECORD + position * RECORD
}

/// Offset of the entry at `position` written after the first batch's sync (and its mark).
pub fn after_mark_offset(position: u64) -> u64 {
    record_offset(position) + SYNC_MARK
}

/// A store holding entries 1..=count of 100 bytes in one segment, all synced.
pub fn one_segment(fs: &SimFs, count: u64) -> LogStore<SimFs> {
    let store = open(fs, Options::default());
    store.append(&big_entries(1, count, 1, 100)).unwrap();
    store.sync().unwrap();
    store
}
