//! The append side of the active segment: encoding batches, sealing, creating segments.
//!
//! Invariants:
//! 1. `write_offset` is the end of the last record written to the active segment; records are
//!    written there and nowhere else.
//! 2. `create_segment` writes a new segment's header, fsyncs it and its directory entry before
//!    it returns (segment invariant 1); `write_segment_start` only writes it, for a rotation
//!    that settles later (`rotation`).
//! 3. `write_seal` writes the seal record and no fsync: the caller makes it durable before the
//!    next segment's name is (segment invariant 2).
//! 4. A sync mark is appended after each fdatasync; it claims indexes and hard-state
//!    sequences, never byte positions, so records written meanwhile do not falsify it.
//! 5. Every write is followed, in the same `pwrite` (or `pwritev`), by zeros: at least a record
//!    header's worth, then to the end of its page (`pad`); `write_offset` stays at the records'
//!    end, so the next write overwrites the padding. The stream's end thus reads as a zero
//!    header even in a recycled segment-pool file.
//! 6. A batch is one write: its bytes are `buf` with the payloads of `VECTORED_PAYLOAD_BYTES`
//!    or more spliced in (`spliced`), handed to one vectored write without being copied.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::rotation::Unsettled;
use super::state::{Locs, Segment};
use crate::entry::Entry;
use crate::error::{IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::hard_state::HardState;
use crate::options::{Compression, Options};
use crate::segment::format::{
    encode_hard_state, sync_lag, CarriedHardState, Record, RecordSeed, SegmentHeader,
    HARD_STATE_PAYLOAD_BYTES, RECORD_ENTRY, RECORD_HARD_STATE, RECORD_HEADER_BYTES,
};
use crate::segment::{self, Loc};

/// Eligible payloads not tried after one that did not compress; each further failure in a
/// row doubles it, up to `INCOMPRESSIBLE_SKIP_MAX`, and a success resets it.
const INCOMPRESSIBLE_SKIP: u32 = 32;
const INCOMPRESSIBLE_SKIP_MAX: u32 = 1024;
/// Payloads this large are written from the caller's buffers (a vectored write) instead of
/// being copied into the writer's (invariant 6): the copy costs more than a slice then.
const VECTORED_PAYLOAD_BYTES: usize = 1024;

/// Payload compression with back-off on incompressible data.
pub(crate) struct Compressor {
    zstd: zstd::bulk::Compressor<'static>,
    threshold_bytes: u64,
    /// Eligible payloads still to store as given before trying again.
    skip: u32,
    /// What `skip` becomes after the next failure.
    backoff: u32,
    out: Vec<u8>,
}

impl Compressor {
    pub fn new(compression: Compression) -> Option<Self> {
        let Compression::Zstd { level, threshold_bytes } = compression else { return None };
        let zstd = zstd::bulk::Compressor::new(level).expect("level checked by Options::validate");
        let backoff = INCOMPRESSIBLE_SKIP;
        Some(Compressor { zstd, threshold_bytes, skip: 0, backoff, out: Vec::new() })
    }

    /// The compressed payload, if compressing `payload` is worth it.
    fn compress(&mut self, payload: &[u8]) -> Option<&[u8]> {
        if (payload.len() as u64) < self.threshold_bytes {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(payload.len()));
        let worth_it = match self.zstd.compress_to_buffer(payload, &mut self.out) {
            Ok(len) => len < payload.len() - payload.len() / 8,
            Err(_) => false,
        };
        if !worth_it {
            self.skip = self.backoff;
            self.backoff = (self.backoff * 2).min(INCOMPRESSIBLE_SKIP_MAX);
            return None;
        }
        self.backoff = INCOMPRESSIBLE_SKIP;
        Some(&self.out)
    }
}

/// Mutable state of the single writer, behind the store's writer mutex.
pub(crate) struct Writer<H> {
    /// The active segment's file (the last of `LogState::segments`).
    pub file: Arc<H>,
    pub path: PathBuf,
    /// The active segment's id; every record written is seeded with it.
    pub segment_id: u64,
    /// End of the last record written, exclusive: the next record goes here (invariant 1).
    pub write_offset: u64,
    /// The id the next segment gets; above every id on disk, live or dead.
    pub next_segment_id: u64,
    /// Bytes appended since the last sync (for `SyncPolicy::Auto`).
    pub bytes_since_sync: u64,
    /// Counts every write to the active segment (records, not sync marks): the group commit
    /// compares it with what the last fsync covered.
    pub writes: u64,
    /// The hard state and engine metadata last written to the stream (durable once the
    /// stream is synced through them): what a seal and a new segment carry.
    pub hard_state: HardState,
    pub metadata: Bytes,
    /// The sequence of the last hard-state record written (the store's count of them).
    pub hard_state_sequence: u64,
    /// Rotations whose fsyncs and rename are still owed, oldest first (`rotation`).
    pub unsettled: VecDeque<Unsettled<H>>,
    /// The bytes of the write being built, but for the spliced payloads.
    buf: Vec<u8>,
    /// The payloads spliced into `buf`, in order: (where in `buf`, which entry of the batch).
    spliced: Vec<(usize, usize)>,
    compressor: Option<Compressor>,
}

impl<H: FileHandle> Writer<H> {
    pub fn new(
        active: &Segment<H>,
        write_offset: u64,
        next_segment_id: u64,
        (hard_state, metadata, hard_state_sequence): (HardState, Bytes, u64),
    ) -> Self {
        assert!(
            next_segment_id > active.id,
            "segment ids only grow: {next_segment_id} <= {}",
            active.id
        );
        Writer {
            file: Arc::clone(&active.file),
            path: active.path.clone(),
            segment_id: active.id,
            write_offset,
            next_segment_id,
            bytes_since_sync: 0,
            writes: 0,
            hard_state,
            metadata,
            hard_state_sequence,
            unsettled: VecDeque::new(),
            buf: Vec::new(),
            spliced: Vec::new(),
            compressor: None,
        }
    }

    /// Compresses payloads per `compression` from now on.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compressor = Compressor::new(compression);
        self
    }

    /// Makes `segment` the active one.
    pub fn switch_to(&mut self, segment: &Segment<H>, write_offset: u64) {
        assert!(self.next_segment_id > segment.id, "segment {} is not new", segment.id);
        self.file = Arc::clone(&segment.file);
        self.path = segment.path.clone();
        self.segment_id = segment.id;
        self.write_offset = write_offset;
    }

    fn seed(&self, store_uid: u64) -> RecordSeed {
        RecordSeed::new(store_uid, self.segment_id)
    }

    /// Writes `entries`, then (if given) a hard-state record, as one write at `write_offset`;
    /// returns the entries' locations. `last_index` is the log's last index before `entries`;
    /// `durable_index` is recorded in each record as its `sync_lag`.
    pub fn write_records(
        &mut self,
        store_uid: u64,
        (entries, last_index): (&[Entry], u64),
        hard_state: Option<(HardState, Bytes)>,
        durable_index: u64,
    ) -> Result<Vec<Loc>> {
        let seed = self.seed(store_uid);
        self.buf.clear();
        self.spliced.clear();
        let mut spliced_bytes = 0u64;
        let mut locs = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let offset = self.write_offset + spliced_bytes + self.buf.len() as u64;
            let compressed = self.compressor.as_mut().and_then(|c| c.compress(&entry.payload));
            let record = Record {
                record_type: RECORD_ENTRY,
                index: entry.index,
                term: entry.term,
                entry_kind: entry.kind,
                sync_lag: sync_lag(entry.index, durable_index),
                compressed: compressed.is_some(),
                payload: compressed.unwrap_or(&entry.payload),
            };
            if compressed.is_none() && entry.payload.len() >= VECTORED_PAYLOAD_BYTES {
                record.encode_header(seed, &mut self.buf);
                self.spliced.push((self.buf.len(), i));
                spliced_bytes += entry.payload.len() as u64;
            } else {
                record.encode(seed, &mut self.buf);
            }
            let stored_len = u32::try_from(record.payload.len()).expect("below the payload limit");
            let payload_len =
                u32::try_from(entry.payload.len()).expect("checked against entry_bytes_max");
            locs.push(Loc { offset, term: entry.term, stored_len, payload_len });
        }
        if let Some((hard_state, metadata)) = hard_state {
            let last_index = entries.last().map_or(last_index, |e| e.index);
            let lag = sync_lag(last_index, durable_index);
            let sequence = self.hard_state_sequence + 1;
            let carried = CarriedHardState { sequence, hard_state, metadata: &metadata };
            encode_hard_state_record(seed, (last_index, lag), carried, &mut self.buf);
            self.hard_state = hard_state;
            self.metadata = metadata;
            self.hard_state_sequence = sequence;
        }
        let written = self.write_spliced(entries, spliced_bytes)?;
        self.bytes_since_sync += written;
        self.writes += 1;
        Ok(locs)
    }

    /// Appends a sync mark: entries up to `durable_index` and hard-state records up to
    /// `hard_state_sequence` are durable. Called right after an fdatasync of this segment
    /// returned; no fsync of its own (the next one makes it durable; a process crash keeps it
    /// in the page cache). Not counted in `writes`: nothing waits for a mark to be synced.
    pub fn write_sync_mark(
        &mut self,
        store_uid: u64,
        durable_index: u64,
        hard_state_sequence: u64,
    ) -> Result<()> {
        let seed = self.seed(store_uid);
        self.buf.clear();
        Record::sync_mark(durable_index, hard_state_sequence).encode(seed, &mut self.buf);
        self.write_buf().map(drop)
    }

    /// Writes `buf` at `write_offset`, padded (`pad`), and moves `write_offset` past the
    /// records (not the padding, which the next write overwrites). Returns the records' bytes.
    fn write_buf(&mut self) -> Result<u64> {
        self.spliced.clear();
        self.write_spliced(&[], 0)
    }

    /// `write_buf` with the payloads `spliced` names, `spliced_bytes` in all, taken from
    /// `entries` (invariant 6).
    fn write_spliced(&mut self, entries: &[Entry], spliced_bytes: u64) -> Result<u64> {
        let records = self.buf.len();
        pad(self.write_offset + spliced_bytes, &mut self.buf);
        let written = if self.spliced.is_empty() {
            self.file.write_all_at(&self.buf, self.write_offset)
        } else {
            let mut pieces = Vec::with_capacity(2 * self.spliced.len() + 1);
            let mut from = 0;
            for &(at, entry) in &self.spliced {
                pieces.push(&self.buf[from..at]);
                pieces.push(&entries[entry].payload[..]);
                from = at;
            }
            pieces.push(&self.buf[from..]);
            self.file.write_all_vectored_at(&pieces, self.write_offset)
        };
        self.buf.truncate(records);
        written.ctx("write", &self.path)?;
        let records = records as u64 + spliced_bytes;
        self.write_offset += records;
        Ok(records)
    }

    /// The hard state the writer carries, as a seal or a new segment records it.
    pub fn carried(&self) -> CarriedHardState<'_> {
        CarriedHardState {
            sequence: self.hard_state_sequence,
            hard_state: self.hard_state,
            metadata: &self.metadata,
        }
    }

    /// Writes the seal of the active segment, whose last record is `last` (index, term) and
    /// which holds `count` entries; no fsync (invariant 3). Returns the seal's offset and
    /// checksum (for the index).
    pub fn write_seal(
        &mut self,
        store_uid: u64,
        last: (u64, u64),
        count: u64,
        durable_index: u64,
    ) -> Result<(u64, u32)> {
        let seed = self.seed(store_uid);
        let mut payload = count.to_le_bytes().to_vec();
        encode_hard_state(self.carried(), &mut payload);
        self.buf.clear();
        Record::seal(last.0, last.1, durable_index, &payload).encode(seed, &mut self.buf);
        let seal_offset = self.write_offset;
        self.write_buf()?;
        let crc = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        Ok((seal_offset, crc))
    }
}

/// Zeros follow every write: at least a record header's worth, then to the end of its last
/// page. So the stream's end always reads as a zero record header, even where stale bytes of
/// a recycled file lie beyond (`format/SPEC.md`, "Segment pool"), and a write never leaves a
/// partial page that the kernel would have to read back from disk before the next write
/// (tikv/tikv#13488).
const PAGE_BYTES: u64 = 4096;

/// Pads `buf`, to be written at `offset`, with zeros as `PAGE_BYTES` says.
fn pad(offset: u64, buf: &mut Vec<u8>) {
    let end = offset + buf.len() as u64 + RECORD_HEADER_BYTES as u64;
    let padded = end.div_ceil(PAGE_BYTES) * PAGE_BYTES;
    let zeros = usize::try_from(padded - offset).expect("a write fits in memory");
    buf.resize(zeros, 0);
}

/// Appends a hard-state record written when the log's last index was `last_index`, `lag`
/// ahead of the durable index.
fn encode_hard_state_record(
    seed: RecordSeed,
    (last_index, lag): (u64, u32),
    carried: CarriedHardState<'_>,
    out: &mut Vec<u8>,
) {
    let mut payload = Vec::with_capacity(HARD_STATE_PAYLOAD_BYTES + carried.metadata.len());
    encode_hard_state(carried, &mut payload);
    let record = Record {
        record_type: RECORD_HARD_STATE,
        index: last_index,
        term: carried.hard_state.term,
        entry_kind: 0,
        sync_lag: lag,
        compressed: false,
        payload: &payload,
    };
    record.encode(seed, out);
}

/// Creates segment `header.segment_id`, starting with a hard-state record `carried` (a
/// segment always carries the hard state; its sequence is new), and makes it and its name
/// durable. `pooled`: a segment-pool file to write it into and rename (pool invariant 2),
/// instead of a new file. Returns the segment and the offset its records continue at.
pub(crate) fn create_segment<F: FileSystem>(
    fs: &F,
    (dir, options): (&Path, &Options),
    header: &SegmentHeader,
    carried: CarriedHardState<'_>,
    pooled: Option<PathBuf>,
) -> Result<(Segment<F::File>, u64)> {
    let path = dir.join(segment::file_name(header.segment_id));
    let file = match &pooled {
        Some(from) => fs.open(from).ctx("open", from)?,
        None => fs.create(&path).ctx("create", &path)?,
    };
    let at = pooled.as_deref().unwrap_or(&path);
    let (segment, records_start) = write_segment_start(dir, header, carried, file, at)?;
    if options.preallocate && pooled.is_none() {
        segment.file.allocate(options.segment_bytes_max).ctx("allocate", &path)?;
    }
    segment.file.sync_data().ctx("sync_data", at)?;
    if let Some(from) = &pooled {
        fs.rename(from, &path).ctx("rename", from)?;
    }
    fs.sync_dir(dir).ctx("sync_dir", dir)?;
    Ok((segment, records_start))
}

/// Writes the start of segment `header.segment_id` (its header, then a hard-state record
/// `carried`, padded) at offset 0 of `file`, which lies at `at` for now; no fsync. Returns the
/// segment, under its segment name, and the offset its records continue at.
pub(crate) fn write_segment_start<H: FileHandle>(
    dir: &Path,
    header: &SegmentHeader,
    carried: CarriedHardState<'_>,
    file: H,
    at: &Path,
) -> Result<(Segment<H>, u64)> {
    let mut bytes = header.encode().to_vec();
    let seed = RecordSeed::new(header.store_uid, header.segment_id);
    // Everything before the new segment is durable by the time its name is.
    let last_index = header.first_index - 1;
    encode_hard_state_record(seed, (last_index, 0), carried, &mut bytes);
    let records_start = bytes.len() as u64;
    pad(0, &mut bytes);
    file.write_all_at(&bytes, 0).ctx("write", at)?;
    let path = dir.join(segment::file_name(header.segment_id));
    let bounds = (header.first_index, header.prev_term);
    let segment = Segment::new(
        header.segment_id,
        path,
        Arc::new(file),
        bounds,
        Locs::Memory(Vec::new()),
        false,
    );
    Ok((segment, records_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes zstd cannot shrink: crc32 of a counter, four bytes at a time.
    fn noise(len: usize) -> Vec<u8> {
        (0..len as u32 / 4).flat_map(|i| crc32fast::hash(&i.to_le_bytes()).to_le_bytes()).collect()
    }

    #[test]
    fn incompressible_payloads_back_off_exponentially_and_a_success_starts_over() {
        let zstd = Compression::Zstd { level: 1, threshold_bytes: 64 };
        let mut compressor = Compressor::new(zstd).unwrap();
        let (noise, zeros) = (noise(4096), vec![0u8; 4096]);
        let mut skips = Vec::new();
        for _ in 0..7 {
            assert!(compressor.compress(&noise).is_none());
            skips.push(compressor.skip);
            compressor.skip = 0; // as if that many payloads went by
        }
        assert_eq!(skips, [32, 64, 128, 256, 512, 1024, 1024]);
        assert!(compressor.compress(&zeros).is_some());
        assert!(compressor.compress(&noise).is_none());
        assert_eq!(compressor.skip, 32);
    }
}
