//! The append side of the active segment: encoding batches, sealing, creating segments.
//!
//! Invariants:
//! 1. `write_offset` is the end of the last record written to the active segment; records are
//!    written there and nowhere else.
//! 2. A new segment's header is written, fsynced and its directory entry fsynced before it is
//!    returned (segment invariant 1).
//! 3. `seal` writes the seal record and fsyncs before the caller creates the next segment
//!    (segment invariant 2).
//! 4. A sync mark, if any, lies at `write_offset`, after every record: the next write
//!    overwrites it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::state::{Locs, Segment};
use crate::entry::Entry;
use crate::error::{IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::options::{Compression, Options};
use crate::segment::format::{sync_lag, Record, RecordSeed, SegmentHeader, RECORD_ENTRY};
use crate::segment::{self, Loc};

/// Eligible payloads not tried after one that did not compress.
const INCOMPRESSIBLE_SKIP: u32 = 32;

/// Payload compression with back-off on incompressible data.
pub(crate) struct Compressor {
    zstd: zstd::bulk::Compressor<'static>,
    threshold_bytes: u64,
    /// Eligible payloads still to store as given before trying again.
    skip: u32,
    out: Vec<u8>,
}

impl Compressor {
    pub fn new(compression: Compression) -> Option<Self> {
        let Compression::Zstd { level, threshold_bytes } = compression else { return None };
        let zstd = zstd::bulk::Compressor::new(level).expect("level checked by Options::validate");
        Some(Compressor { zstd, threshold_bytes, skip: 0, out: Vec::new() })
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
            self.skip = INCOMPRESSIBLE_SKIP;
            return None;
        }
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
    buf: Vec<u8>,
    compressor: Option<Compressor>,
}

impl<H: FileHandle> Writer<H> {
    pub fn new(active: &Segment<H>, write_offset: u64, next_segment_id: u64) -> Self {
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
            buf: Vec::new(),
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
        // Switching follows a seal (fsynced) or a durable truncation or reset.
        self.bytes_since_sync = 0;
    }

    fn seed(&self, store_uid: u64) -> RecordSeed {
        RecordSeed::new(store_uid, self.segment_id)
    }

    /// Writes `entries` as one write at `write_offset`; returns their locations.
    /// `durable_index` is recorded in each record as its `sync_lag`.
    pub fn write_entries(
        &mut self,
        store_uid: u64,
        entries: &[Entry],
        durable_index: u64,
    ) -> Result<Vec<Loc>> {
        let seed = self.seed(store_uid);
        self.buf.clear();
        let mut locs = Vec::with_capacity(entries.len());
        for entry in entries {
            let offset = self.write_offset + self.buf.len() as u64;
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
            record.encode(seed, &mut self.buf);
            let stored_len = u32::try_from(record.payload.len()).expect("below the payload limit");
            let payload_len =
                u32::try_from(entry.payload.len()).expect("checked against entry_bytes_max");
            locs.push(Loc { offset, term: entry.term, stored_len, payload_len });
        }
        self.file.write_all_at(&self.buf, self.write_offset).ctx("write", &self.path)?;
        self.write_offset += self.buf.len() as u64;
        self.bytes_since_sync += self.buf.len() as u64;
        Ok(locs)
    }

    /// Writes a sync mark ("synced through `durable_index`") at `write_offset` without moving
    /// it: the next batch or the seal overwrites the mark, and carries the same proof in its
    /// `sync_lag`. Called right after an fdatasync of this segment returned; no fsync of its
    /// own (the next one makes it durable; a process crash keeps it in the page cache).
    pub fn write_sync_mark(&mut self, store_uid: u64, durable_index: u64) -> Result<()> {
        let seed = self.seed(store_uid);
        self.buf.clear();
        Record::sync_mark(durable_index).encode(seed, &mut self.buf);
        self.file.write_all_at(&self.buf, self.write_offset).ctx("write", &self.path)
    }

    /// Seals the active segment, whose last record is `last` (index, term) and which holds
    /// `count` entries, and fsyncs it. Returns the seal's offset and checksum (for the index).
    pub fn seal(
        &mut self,
        store_uid: u64,
        last: (u64, u64),
        count: u64,
        durable_index: u64,
    ) -> Result<(u64, u32)> {
        let seed = self.seed(store_uid);
        let count = count.to_le_bytes();
        self.buf.clear();
        Record::seal(last.0, last.1, durable_index, &count).encode(seed, &mut self.buf);
        let seal_offset = self.write_offset;
        self.file.write_all_at(&self.buf, seal_offset).ctx("write", &self.path)?;
        self.write_offset += self.buf.len() as u64;
        self.file.sync_data().ctx("sync_data", &self.path)?;
        let crc = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        Ok((seal_offset, crc))
    }
}

/// Creates segment `header.segment_id` and makes its header and name durable.
pub(crate) fn create_segment<F: FileSystem>(
    fs: &F,
    dir: &Path,
    options: &Options,
    header: &SegmentHeader,
) -> Result<Segment<F::File>> {
    let path = dir.join(segment::file_name(header.segment_id));
    let file = fs.create(&path).ctx("create", &path)?;
    file.write_all_at(&header.encode(), 0).ctx("write", &path)?;
    if options.preallocate {
        file.allocate(options.segment_bytes_max).ctx("allocate", &path)?;
    }
    file.sync_data().ctx("sync_data", &path)?;
    fs.sync_dir(dir).ctx("sync_dir", dir)?;
    let bounds = (header.first_index, header.prev_term);
    Ok(Segment::new(
        header.segment_id,
        path,
        Arc::new(file),
        bounds,
        Locs::Memory(Vec::new()),
        false,
    ))
}
