//! Read planning: where the entries of `[lo, hi)` lie (under the log's read lock, briefly),
//! then reading them without any lock: mapped bytes of sealed segments (no copy), one
//! positional read of the active segment. Every record's checksum and identity is verified.
//!
//! Invariants:
//! 1. A plan is made under one read lock, so it describes one consistent log; the reads that
//!    follow hold the files (`Arc`, mapped `Bytes`) and stay valid after a compaction.
//! 2. A plan stops before the payloads pass `max_bytes`, but holds at least one entry when
//!    `lo < hi`.
//! 3. No entry marked damaged is read (`repair` invariant 1): a plan stops before the first.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{read, Inner, LogStore};
use crate::entry::Entry;
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::segment::format::{
    decode_record, RecordError, RecordSeed, RECORD_ENTRY, RECORD_HEADER_BYTES,
};

impl<F: FileSystem> LogStore<F> {
    /// Entries in `[lo, hi)`, stopping before the payloads exceed `max_bytes` in total, but
    /// always at least one entry when `lo < hi`. Every entry's checksum is verified.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        if lo > hi {
            return Err(Error::InvalidRange { lo, hi });
        }
        let runs = self.inner.plan_read(lo, hi, max_bytes)?;
        let mut entries = Vec::with_capacity(runs.iter().map(|run| run.entries.len()).sum());
        for run in runs {
            let (sealed, segment_id) = (run.sealed(), run.segment_id);
            match run.read_into(self.inner.store_uid, &mut entries) {
                Ok(()) => {}
                Err(Error::Corrupt { path, offset, indexes: Some(indexes), reason }) if sealed => {
                    // Invariant 1 of `repair`: the damaged entry is marked and never returned.
                    let index = indexes.start;
                    self.inner.damage.mark(index, segment_id, path.clone(), offset, reason.clone());
                    if entries.is_empty() {
                        return Err(Error::Damaged { index, path, offset, reason });
                    }
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(entries)
    }
}

/// Where a read run's bytes come from.
enum RunSource<H> {
    /// A sealed segment's mapped bytes: payloads are handed out without a copy.
    Mapped(Bytes),
    /// The active segment: one positional read.
    File(Arc<H>),
}
/// Consecutive records of one segment, read at once.
struct ReadRun<H> {
    source: RunSource<H>,
    path: PathBuf,
    segment_id: u64,
    offset: u64,
    len: u64,
    first_index: u64,
    /// Offset, term and payload length of each entry of the run (hard-state records may lie
    /// between entries: each is decoded at its own offset).
    entries: Vec<(u64, u64, u32)>,
}
impl<H: FileHandle> ReadRun<H> {
    /// Whether the run reads a sealed segment (damage there is marked, not cut).
    fn sealed(&self) -> bool {
        matches!(self.source, RunSource::Mapped(_))
    }

    fn bytes(&self) -> Result<Bytes> {
        let len = usize::try_from(self.len).expect("a run fits in memory");
        match &self.source {
            RunSource::Mapped(data) => {
                let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                match start.checked_add(len).filter(|end| *end <= data.len()) {
                    Some(end) => Ok(data.slice(start..end)),
                    None => {
                        let reason = Corruption::Field("segment shorter than its index");
                        let indexes = Some(self.first_index..self.first_index + 1);
                        Err(Error::corrupt(&self.path, self.offset, indexes, reason))
                    }
                }
            }
            RunSource::File(file) => {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, self.offset).ctx("read", &self.path)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Decodes the run's records, verifying each one's checksum and identity.
    fn read_into(self, store_uid: u64, out: &mut Vec<Entry>) -> Result<()> {
        let buf = self.bytes()?;
        let seed = RecordSeed::new(store_uid, self.segment_id);
        for (k, &(offset, term, payload_len)) in self.entries.iter().enumerate() {
            let index = self.first_index + k as u64;
            let corrupt =
                |reason| Error::corrupt(&self.path, offset, Some(index..index + 1), reason);
            let at = usize::try_from(offset - self.offset).expect("entries of a run ascend");
            let record = match decode_record(seed, buf.get(at..).unwrap_or_default()) {
                Ok(record) => record,
                Err(RecordError::Invalid(reason)) => return Err(corrupt(reason)),
                Err(RecordError::Truncated) => {
                    return Err(corrupt(Corruption::Field("record length")))
                }
            };
            if record.record_type != RECORD_ENTRY || record.index != index || record.term != term {
                return Err(corrupt(Corruption::Identity("record is not the entry indexed here")));
            }
            let payload = if record.compressed {
                Bytes::from(record.decompress(payload_len).map_err(corrupt)?)
            } else {
                let payload_at = at + RECORD_HEADER_BYTES;
                buf.slice(payload_at..payload_at + record.payload.len())
            };
            out.push(Entry { index, term, payload, kind: record.entry_kind });
        }
        Ok(())
    }
}

impl<F: FileSystem> Inner<F> {
    /// Where the entries of `[lo, hi)` lie, bounded by `max_bytes`.
    fn plan_read(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<ReadRun<F::File>>> {
        let log = read(&self.log);
        if lo < log.first_index {
            return Err(Error::Compacted { index: lo, first_index: log.first_index });
        }
        let last_index = log.last_index();
        if hi > last_index + 1 {
            return Err(Error::Unavailable { index: hi - 1, last_index });
        }
        let live = |index: u64| log.segment_position(index).map(|p| log.segments[p].id);
        let hi = match self.damage.first_in(lo, hi, live) {
            Some((damaged, error)) if damaged == lo => return Err(error),
            Some((damaged, _)) => damaged,
            None => hi,
        };
        let mut runs: Vec<ReadRun<F::File>> = Vec::new();
        let mut bytes = 0u64;
        let mut index = lo;
        'segments: while index < hi {
            let position = log.segment_position(index).expect("live index has a segment");
            let segment = &log.segments[position];
            let start = segment.loc(index).expect("live index has a location");
            let source = if segment.sealed {
                RunSource::Mapped(segment.data().ctx("map", &segment.path)?)
            } else {
                RunSource::File(Arc::clone(&segment.file))
            };
            let mut run = ReadRun {
                source,
                path: segment.path.clone(),
                segment_id: segment.id,
                offset: start.offset,
                len: 0,
                first_index: index,
                entries: Vec::new(),
            };
            while index < hi && index < segment.end_index() {
                let loc = segment.loc(index).expect("inside the segment");
                bytes += u64::from(loc.payload_len);
                if index > lo && bytes > max_bytes {
                    runs.push(run);
                    break 'segments;
                }
                run.entries.push((loc.offset, loc.term, loc.payload_len));
                run.len = loc.offset + loc.record_len() - run.offset;
                index += 1;
            }
            runs.push(run);
        }
        runs.retain(|run| !run.entries.is_empty());
        Ok(runs)
    }
}
