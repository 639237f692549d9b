//! Raw decoders of raftlog's files, for the inspector and the fuzz targets (feature
//! `inspect`). The store uses exactly these functions; nothing here writes.
//!
//! Invariants:
//! 1. Every function accepts arbitrary bytes and returns a value or a typed `Corruption`,
//!    without panicking and without allocating more than the bytes given.

use std::path::{Path, PathBuf};

use crate::codec::u64_at;
use crate::error::{Corruption, IoContext, Result};
use crate::fs::{FileHandle, FileSystem, OverlayFs, SimFs};
use crate::index::{INDEX_ENTRY_BYTES, INDEX_HEADER_BYTES};
use crate::meta::{META_FILE, META_SLOT_BYTES};
use crate::{LogStore, Options, SnapshotMeta, SnapshotOptions, SnapshotStore};

pub use crate::meta::Meta;
pub use crate::segment::format::{
    Record, RecordError, SegmentHeader, RECORD_ENTRY, RECORD_HEADER_BYTES, RECORD_SEAL,
    SEGMENT_HEADER_BYTES,
};

/// Decodes the record at the start of `bytes`, as found in segment `segment_id` of store
/// `store_uid`, and for an entry its logical payload length.
pub fn decode_record(
    store_uid: u64,
    segment_id: u64,
    bytes: &[u8],
) -> Result<(Record<'_>, u32), RecordError> {
    let seed = crate::segment::format::RecordSeed::new(store_uid, segment_id);
    let record = crate::segment::format::decode_record(seed, bytes)?;
    let logical_len = record.logical_len().map_err(RecordError::Invalid)?;
    Ok((record, logical_len))
}

/// Decodes a segment header.
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, Corruption> {
    SegmentHeader::decode(bytes)
}

/// Verifies `bytes` as the index file of the segment described by `header`, whose file is
/// `segment_len` bytes long; returns the index's entry count.
pub fn verify_index(
    bytes: &[u8],
    header: &SegmentHeader,
    segment_len: u64,
) -> Result<u64, Corruption> {
    let fs = SimFs::new();
    let path = std::path::Path::new("/inspect/index");
    fs.write_file_durable(path, bytes);
    let file = fs.open(path).map_err(|_| Corruption::Field("index file"))?;
    let expected = crate::index::Expected {
        store_uid: header.store_uid,
        segment_id: header.segment_id,
        first_index: header.first_index,
        prev_term: header.prev_term,
        segment_len,
    };
    match crate::index::verify(&file, &expected) {
        Ok(Ok((index_header, _))) => Ok(index_header.count),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(Corruption::Field("index file")),
    }
}

/// Decodes one 512-byte slot of the meta file.
pub fn decode_meta_slot(bytes: &[u8]) -> Result<Meta, Corruption> {
    Meta::decode(bytes)
}

/// Opens the store in `dir` without changing anything and without its lock: the store's own
/// recovery runs on an `OverlayFs`, so the `RecoveryReport` (or the error) says what recovery
/// would do. Works while a writer holds the directory.
pub fn open_read_only(dir: &Path) -> Result<LogStore<OverlayFs>> {
    LogStore::open_with(OverlayFs::new(), dir, Options::default())
}

/// Opens the snapshot store in `dir` without changing anything and without its lock (on an
/// `OverlayFs`; abandoned staging directories are left where they are).
pub fn open_snapshots_read_only(
    dir: &Path,
    options: SnapshotOptions,
) -> Result<SnapshotStore<OverlayFs>> {
    SnapshotStore::open_inner(OverlayFs::new(), dir, options, false)
}

/// Decodes and validates snapshot manifest bytes against `options` (the fuzz targets' entry).
pub fn decode_snapshot_manifest(bytes: &[u8], options: &SnapshotOptions) -> Result<SnapshotMeta> {
    crate::snapshot::decode_manifest(bytes, options)
}

/// What one live segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The segment's id.
    pub id: u64,
    /// Its file.
    pub path: PathBuf,
    /// Index of its first record.
    pub first_index: u64,
    /// One past its last live index (a newer segment may override the rest).
    pub end_index: u64,
    /// Entry records in the file, live or overridden.
    pub records: u64,
    /// Sealed (immutable, indexed) or active.
    pub sealed: bool,
    /// Size of the file.
    pub file_bytes: u64,
    /// Payload bytes as stored (after compression) of its records.
    pub stored_payload_bytes: u64,
    /// Payload bytes as given of its records.
    pub payload_bytes: u64,
}

/// The two slots of the meta file of `dir`, each decoded or the reason it is not valid.
pub fn read_meta(dir: &Path) -> Result<[std::result::Result<Meta, Corruption>; 2]> {
    let path = dir.join(META_FILE);
    let bytes = std::fs::read(&path).ctx("read", &path)?;
    let slot = |i: usize| {
        let start = (i * META_SLOT_BYTES).min(bytes.len());
        let end = ((i + 1) * META_SLOT_BYTES).min(bytes.len());
        Meta::decode(&bytes[start..end])
    };
    Ok([slot(0), slot(1)])
}

/// An index file as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Entry count, or why the index fails verification against its segment.
    pub status: std::result::Result<u64, Corruption>,
    /// `(index, offset, term, stored_len, payload_len)` of each entry, when verified.
    pub entries: Vec<(u64, u64, u64, u32, u32)>,
}

/// Reads and verifies the index file of segment `segment_id` in `dir`.
pub fn read_index(dir: &Path, segment_id: u64) -> Result<IndexFile> {
    let segment_path = dir.join(crate::segment::file_name(segment_id));
    let path = dir.join(crate::index::file_name(segment_id));
    let bytes = std::fs::read(&path).ctx("read", &path)?;
    let segment = std::fs::File::open(&segment_path).ctx("open", &segment_path)?;
    let segment_len = segment.size().ctx("stat", &segment_path)?;
    let mut head = [0u8; SEGMENT_HEADER_BYTES];
    let header = match segment.read_exact_at(&mut head, 0) {
        Ok(()) => SegmentHeader::decode(&head),
        Err(_) => Err(Corruption::Field("segment header length")),
    };
    let status = header.and_then(|header| verify_index(&bytes, &header, segment_len));
    let mut entries = Vec::new();
    if let Ok(count) = status {
        let first_index = u64_at(&bytes, 24);
        for k in 0..count {
            let at =
                INDEX_HEADER_BYTES + usize::try_from(k).unwrap_or(usize::MAX) * INDEX_ENTRY_BYTES;
            let raw = &bytes[at..at + INDEX_ENTRY_BYTES];
            let u32_at =
                |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
            entries.push((first_index + k, u64_at(raw, 0), u64_at(raw, 8), u32_at(16), u32_at(20)));
        }
    }
    Ok(IndexFile { path, bytes: bytes.len() as u64, status, entries })
}

/// What each live segment holds (for the inspector).
pub fn segment_summaries<F: FileSystem>(store: &LogStore<F>) -> Vec<SegmentSummary> {
    let log = crate::store::read(&store.inner.log);
    log.segments
        .iter()
        .map(|segment| {
            let records = segment.record_count();
            let physical_end = segment.first_index + records;
            let (mut stored, mut logical) = (0u64, 0u64);
            for index in segment.first_index..segment.end_index().min(physical_end) {
                if let Some(loc) = segment.loc(index) {
                    stored += u64::from(loc.stored_len);
                    logical += u64::from(loc.payload_len);
                }
            }
            SegmentSummary {
                id: segment.id,
                path: segment.path.clone(),
                first_index: segment.first_index,
                end_index: segment.end_index(),
                records,
                sealed: segment.sealed,
                file_bytes: segment.file.size().unwrap_or(0),
                stored_payload_bytes: stored,
                payload_bytes: logical,
            }
        })
        .collect()
}
