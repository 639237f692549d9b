//! Damage the simulation does to a node's disk while the node is down: a flipped bit in a
//! sealed entry, or a missing segment of committed entries.

use std::path::{Path, PathBuf};

use raftlog::fs::SimFs;
use raftlog::{LogStore, Options};
use rand::rngs::StdRng;
use rand::Rng;

use crate::common::segments::{entry_records, segment_files, EntryRecord};

/// Flips one bit inside an entry record (header or payload) of a sealed segment of the log on
/// `fs`, chosen by `rng`; false when there is none. Only segments that two later segments
/// follow are chosen: the second was created after the first's creation fsynced the directory,
/// which came after this segment's index was written and fdatasynced, so that index is whole
/// and named (a crash may keep a name whose content was not synced yet). The damage is then
/// met under a valid index, as repair requires (damage a scan finds still refuses the open).
pub fn damage_a_sealed_entry(fs: &SimFs, rng: &mut StdRng) -> bool {
    let records: Vec<(PathBuf, EntryRecord)> = older_segments(fs)
        .into_iter()
        .filter_map(|path| fs.read_file(&path).ok().map(|bytes| (path, bytes)))
        .flat_map(|(path, bytes)| {
            entry_records(&bytes).into_iter().map(move |record| (path.clone(), record))
        })
        .collect();
    if records.is_empty() {
        return false;
    }
    let (path, record) = &records[rng.gen_range(0..records.len())];
    fs.flip_bit(path, 8 * record.offset + rng.gen_range(0..8 * record.len)).unwrap();
    true
}

/// The segments of the log on `fs` that two later segments follow.
fn older_segments(fs: &SimFs) -> Vec<PathBuf> {
    let mut segments = segment_files(fs, Path::new("/log"));
    segments.truncate(segments.len().saturating_sub(2));
    segments
}

/// Removes a sealed segment (with its index) that two later segments follow from the log on
/// `fs`, when recovery then opens the store (R10: the missing entries are committed, and the
/// log restarts after them); otherwise puts it back and returns false. The open it tries is
/// the one the restart would do.
pub fn remove_a_committed_segment(fs: &SimFs, rng: &mut StdRng) -> bool {
    let segments = older_segments(fs);
    if segments.is_empty() {
        return false;
    }
    let segment = segments[rng.gen_range(0..segments.len())].clone();
    let saved: Vec<_> = [segment.clone(), segment.with_extension("idx")]
        .into_iter()
        .filter_map(|path| fs.read_file(&path).ok().map(|bytes| (path, bytes)))
        .collect();
    for (path, _) in &saved {
        fs.remove_durable(path);
    }
    let options = Options::default().segment_bytes_max(4096);
    match LogStore::open_with(fs.clone(), "/log", options) {
        Ok(store) => store.recovery_report().lost_prefix.is_some(),
        Err(_) => {
            for (path, bytes) in &saved {
                fs.write_file_durable(path, bytes);
            }
            false
        }
    }
}
