//! Reading a store's segment files the way a test that damages them needs: which files, and
//! where each entry's record lies (format/SPEC.md, "Record"), without the library.

use std::path::{Path, PathBuf};

use raftlog::fs::{FileSystem, SimFs};

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
