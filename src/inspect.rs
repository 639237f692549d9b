//! Raw decoders of raftlog's files, for the inspector and the fuzz targets (feature
//! `inspect`). The store uses exactly these functions; nothing here writes.
//!
//! Invariants:
//! 1. Every function accepts arbitrary bytes and returns a value or a typed `Corruption`,
//!    without panicking and without allocating more than the bytes given.

use crate::error::Corruption;
use crate::fs::{FileSystem, SimFs};

pub use crate::hard_state::Meta;
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
