//! Damaged entries of sealed segments: found by a read or a scrub, never returned, listed, and
//! repaired from a peer's copy (protocol-aware recovery, CTRL: Alagappan et al., FAST '18).
//!
//! A sealed segment opens through its verified index, which gives every entry's term and the
//! exact extent of its record. So a record whose bytes fail verification (header or payload)
//! costs that entry alone: the entries around it still read, and a copy of the entry from a
//! peer that holds the same (index, term) re-encodes to the same extent.
//!
//! Invariants:
//! 1. A damaged entry is never returned: a read stops before it (returning what precedes it)
//!    or fails with `Error::Damaged` when it is the first asked for.
//! 2. A mark names (index, segment id), so it lapses by itself when truncation, reset or
//!    compaction leaves the index live in another segment or not live at all.
//! 3. `repair` changes only records that fail verification, each into the peer's entry
//!    encoded to exactly its extent under the term the index records; it never overwrites a
//!    record that verifies. It writes a copy of the segment (a pool-named file), fdatasyncs it,
//!    renames it over the segment and fsyncs the directory: a crash leaves either segment
//!    whole (the old one is found damaged and repaired again; a copy left under its pool name
//!    is adopted or removed by the next open). Mapped bytes are never written: readers of the
//!    old file keep its inode.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{lock, read, write, LogStore};
use crate::entry::Entry;
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::options::Compression;
use crate::segment::format::{decode_record, Record, RecordSeed, RECORD_ENTRY};
use crate::segment::Loc;

/// Entries per read while scrubbing.
const SCRUB_BATCH_BYTES: u64 = 4 << 20;

/// Where a damaged entry lies and what failed, keyed by (index, segment id); `any` is set with
/// the first mark, so that reads of a store without damage do not take the lock.
#[derive(Default)]
pub(crate) struct DamageMarks {
    marks: Mutex<BTreeMap<(u64, u64), Mark>>,
    any: AtomicBool,
}

#[derive(Clone)]
struct Mark {
    path: PathBuf,
    offset: u64,
    reason: Corruption,
}

impl DamageMarks {
    /// Records that `index` of segment `segment_id` failed verification.
    pub fn mark(
        &self,
        index: u64,
        segment_id: u64,
        path: PathBuf,
        offset: u64,
        reason: Corruption,
    ) {
        lock(&self.marks).insert((index, segment_id), Mark { path, offset, reason });
        self.any.store(true, Ordering::Release);
    }

    /// The first index in `[lo, hi)` marked in the segment `live` says holds it, with the
    /// error a read of it returns.
    pub fn first_in(
        &self,
        lo: u64,
        hi: u64,
        live: impl Fn(u64) -> Option<u64>,
    ) -> Option<(u64, Error)> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let marks = lock(&self.marks);
        marks.range((lo, 0)..(hi, 0)).find(|((index, id), _)| live(*index) == Some(*id)).map(
            |((index, _), mark)| {
                let Mark { path, offset, reason } = mark.clone();
                (*index, Error::Damaged { index: *index, path, offset, reason })
            },
        )
    }

    fn clear(&self, index: u64, segment_id: u64) {
        lock(&self.marks).remove(&(index, segment_id));
    }
}

impl<F: FileSystem> LogStore<F> {
    /// The live entries found damaged so far (by reads and scrubs), as ascending ranges.
    pub fn damaged(&self) -> Vec<RangeInclusive<u64>> {
        let log = read(&self.inner.log);
        let marks = lock(&self.inner.damage.marks);
        let mut ranges: Vec<RangeInclusive<u64>> = Vec::new();
        for &(index, id) in marks.keys() {
            let live = index >= log.first_index
                && log.segment_position(index).is_some_and(|p| log.segments[p].id == id);
            if !live {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if *last.end() + 1 == index => *last = *last.start()..=index,
                _ => ranges.push(index..=index),
            }
        }
        ranges
    }

    /// Reads every live entry of the sealed segments, verifying each, and returns what is
    /// damaged (as `damaged`). Damage under a valid index is otherwise found only by the read
    /// that meets it; run this after `open` to find it at once.
    pub fn scrub(&self) -> Result<Vec<RangeInclusive<u64>>> {
        let (mut index, end) = {
            let log = read(&self.inner.log);
            (log.first_index, log.active().first_index.max(log.first_index))
        };
        while index < end {
            match self.entries(index, end, SCRUB_BATCH_BYTES) {
                Ok(entries) => index += entries.len() as u64,
                Err(Error::Damaged { index: damaged, .. }) => index = damaged + 1,
                Err(Error::Compacted { first_index, .. }) => index = first_index,
                Err(error) => return Err(error),
            }
        }
        Ok(self.damaged())
    }

    /// Rewrites damaged entries of sealed segments from `entries`, copies a peer holds. Each
    /// must be live in a sealed segment and have the term the segment's index records (by Log
    /// Matching, the same entry), and must re-encode to its record's extent. A record on disk
    /// that verifies is never overwritten: the same entry is skipped, another one refused.
    /// Durable when it returns; every entry is checked before anything is written.
    pub fn repair(&self, entries: &[Entry]) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        // Rotation, truncation and compaction wait: the segments stay live and sealed, and
        // every sealed one is settled, under its own name (`rotation` invariant 3).
        let _gate = inner.settled_gate()?;
        let _writer = lock(&inner.writer);
        let mut targets: BTreeMap<u64, Target<F::File>> = BTreeMap::new();
        {
            let log = read(&inner.log);
            for entry in entries {
                let refuse = |reason| Error::RepairRefused { index: entry.index, reason };
                let position = log
                    .segment_position(entry.index)
                    .filter(|_| entry.index >= log.first_index)
                    .ok_or_else(|| refuse("not a live entry"))?;
                let segment = &log.segments[position];
                if !segment.sealed {
                    return Err(refuse("not in a sealed segment"));
                }
                let loc = segment.loc(entry.index).expect("a live index has a location");
                let target = targets.entry(segment.id).or_insert_with(|| Target {
                    path: segment.path.clone(),
                    file: Arc::clone(&segment.file),
                    records: Vec::new(),
                });
                target.records.push((loc, entry.clone()));
            }
        }
        let compression = inner.options.compression;
        let mut copies = Vec::new();
        for (&segment_id, target) in &targets {
            let seed = RecordSeed::new(inner.store_uid, segment_id);
            if let Some(bytes) = target.repaired(seed, compression)? {
                copies.push((segment_id, bytes));
            }
        }
        inner.poison_on_err(self.install_copies(&targets, copies))
    }

    /// Writes each repaired copy under a pool name, then renames it over its segment.
    fn install_copies(
        &self,
        targets: &BTreeMap<u64, Target<F::File>>,
        copies: Vec<(u64, Vec<u8>)>,
    ) -> Result<()> {
        let inner = &*self.inner;
        let mut installed = Vec::new();
        for (segment_id, bytes) in copies {
            let target = &targets[&segment_id];
            let temp = inner.pool.reserve(&inner.dir);
            let file = inner.fs.create(&temp).ctx("create", &temp)?;
            file.write_all_at(&bytes, 0).ctx("write", &temp)?;
            file.sync_data().ctx("sync_data", &temp)?;
            inner.fs.replace(&temp, &target.path).ctx("replace", &temp)?;
            installed.push((segment_id, Arc::new(file)));
        }
        if installed.is_empty() {
            return Ok(());
        }
        inner.fs.sync_dir(&inner.dir).ctx("sync_dir", &inner.dir)?;
        let mut log = write(&inner.log);
        for (segment_id, file) in installed {
            if let Some(segment) = log.segments.iter_mut().find(|s| s.id == segment_id) {
                segment.replace_file(file);
            }
            for (_, entry) in &targets[&segment_id].records {
                inner.damage.clear(entry.index, segment_id);
            }
        }
        Ok(())
    }
}

/// The entries to repair in one segment.
struct Target<H> {
    path: PathBuf,
    file: Arc<H>,
    records: Vec<(Loc, Entry)>,
}

impl<H: FileHandle> Target<H> {
    /// The segment's bytes with every damaged record replaced, or `None` when no record
    /// needed it. Refuses (before anything is written) an entry that does not fit.
    fn repaired(&self, seed: RecordSeed, compression: Compression) -> Result<Option<Vec<u8>>> {
        let size = self.file.size().ctx("size", &self.path)?;
        let len = usize::try_from(size).map_err(|_| Error::LimitExceeded {
            what: "segment bytes",
            value: size,
            max: usize::MAX as u64,
        })?;
        let mut bytes = vec![0u8; len];
        self.file.read_exact_at(&mut bytes, 0).ctx("read", &self.path)?;
        let mut changed = false;
        for (loc, entry) in &self.records {
            let refuse = |reason| Error::RepairRefused { index: entry.index, reason };
            if entry.term != loc.term {
                return Err(refuse("the segment's index records another term"));
            }
            let start = usize::try_from(loc.offset).map_err(|_| refuse("record out of file"))?;
            let end = usize::try_from(loc.offset + loc.record_len())
                .ok()
                .filter(|end| *end <= bytes.len())
                .ok_or_else(|| refuse("record out of file"))?;
            if let Ok(on_disk) = decode_record(seed, &bytes[start..end]) {
                if on_disk.record_type == RECORD_ENTRY
                    && on_disk.index == entry.index
                    && on_disk.term == entry.term
                {
                    if same_entry(&on_disk, loc, entry) {
                        continue;
                    }
                    return Err(refuse("the record on disk verifies and differs"));
                }
            }
            let record = encode(seed, loc, entry, compression)
                .ok_or_else(|| refuse("the entry does not re-encode to the record's extent"))?;
            bytes[start..end].copy_from_slice(&record);
            changed = true;
        }
        Ok(changed.then_some(bytes))
    }
}

/// Whether the verified record `on_disk` holds `entry`.
fn same_entry(on_disk: &Record<'_>, loc: &Loc, entry: &Entry) -> bool {
    if on_disk.entry_kind != entry.kind {
        return false;
    }
    if on_disk.compressed {
        on_disk.decompress(loc.payload_len).is_ok_and(|payload| payload == entry.payload[..])
    } else {
        on_disk.payload == &entry.payload[..]
    }
}

/// `entry`'s record as it was written into the extent `loc`, if its bytes fit it exactly: as
/// stored (uncompressed when the stored length is the logical one, else compressed at the
/// store's level, then levels 1 to 3, since the writer's level may have differed).
fn encode(seed: RecordSeed, loc: &Loc, entry: &Entry, compression: Compression) -> Option<Vec<u8>> {
    if entry.payload.len() != loc.payload_len as usize {
        return None;
    }
    let compressed;
    let (payload, is_compressed) = if loc.stored_len == loc.payload_len {
        (&entry.payload[..], false)
    } else {
        let store_level = match compression {
            Compression::Zstd { level, .. } => Some(level),
            Compression::Off => None,
        };
        compressed = store_level
            .into_iter()
            .chain(1..=3)
            .filter_map(|level| zstd::bulk::compress(&entry.payload, level).ok())
            .find(|frame| frame.len() == loc.stored_len as usize)?;
        (&compressed[..], true)
    };
    let record = Record {
        record_type: RECORD_ENTRY,
        index: entry.index,
        term: entry.term,
        entry_kind: entry.kind,
        sync_lag: 0,
        compressed: is_compressed,
        payload,
    };
    let mut out = Vec::with_capacity(record.encoded_len());
    record.encode(seed, &mut out);
    (out.len() as u64 == loc.record_len()).then_some(out)
}
