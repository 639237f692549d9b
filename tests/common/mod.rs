//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod crash_model;
pub mod gated;
pub mod hand_cluster;
pub mod segments;

use std::path::{Path, PathBuf};

use raftlog::fs::{FileSystem, SimFs};
use raftlog::{Entry, LogStore, Options};

pub const DIR: &str = "/store";

/// Entries from `first` on with the given terms; payloads name their index.
pub fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(k, term)| {
            let index = first + k as u64;
            Entry::new(index, *term, format!("entry {index} term {term}"))
        })
        .collect()
}

/// Entries of `len` payload bytes each.
pub fn big_entries(first: u64, count: u64, term: u64, len: usize) -> Vec<Entry> {
    (first..first + count).map(|i| Entry::new(i, term, vec![(i % 251) as u8; len])).collect()
}

/// Where a segment file's record stream ends: after the 64-byte header, records follow back
/// to back up to a zero record header or the end of the file (each write is followed by
/// zeros to the end of its page, `format/SPEC.md`).
pub fn stream_len(file: &[u8]) -> usize {
    let mut end = 64;
    while end + 32 <= file.len() && file[end..end + 32].iter().any(|b| *b != 0) {
        end += 32 + u32::from_le_bytes(file[end + 4..end + 8].try_into().unwrap()) as usize;
    }
    end
}

pub fn open(fs: &SimFs, options: Options) -> LogStore<SimFs> {
    LogStore::open_with(fs.clone(), DIR, options).expect("open")
}

pub fn small_segments() -> Options {
    Options::default().segment_bytes_max(2048)
}

pub fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

/// Every file of the store directory with its content, sorted by name.
pub fn snapshot(fs: &SimFs) -> Vec<(PathBuf, Vec<u8>)> {
    let mut names = fs.list(Path::new(DIR)).expect("list");
    names.sort();
    names
        .into_iter()
        .map(|n| (n.clone(), fs.read_file(&path(n.to_str().unwrap())).unwrap()))
        .collect()
}

/// Segment file names, in id order.
pub fn segment_names(fs: &SimFs) -> Vec<String> {
    names_ending(fs, ".seg")
}

/// The names in the store's directory that end with `suffix`, sorted.
pub fn names_ending(fs: &SimFs, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list(Path::new(DIR))
        .expect("list")
        .into_iter()
        .filter_map(|n| n.to_str().map(str::to_owned))
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// Appends one entry per call, so that segments rotate between them.
pub fn append_each<F: FileSystem>(store: &LogStore<F>, entries: &[Entry]) {
    for entry in entries {
        store.append(std::slice::from_ref(entry)).expect("append");
    }
}
