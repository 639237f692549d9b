//! The index file of a sealed segment: for each entry its offset, term and payload length, at
//! a fixed width, so entry `i` is found by arithmetic in a read-only memory map.
//!
//! ```text
//! header (64 bytes)
//!  0  magic        u32  "RLIX"
//!  4  version      u16  1
//!  6  reserved     u16  0
//!  8  store_uid    u64
//! 16  segment_id   u64
//! 24  first_index  u64  the segment's first index
//! 32  count        u64  entry records in the segment
//! 40  data_end     u64  offset of the segment's seal record
//! 48  seal_crc     u32  the seal record's checksum: binds the index to that sealed segment
//! 52  entries_crc  u32  crc32 of the entries array
//! 56  reserved     u32  0
//! 60  header_crc   u32  crc32 of bytes [0, 60)
//! entries, `count` times (24 bytes each)
//!  0  offset       u64  of the record header in the segment
//!  8  term         u64
//! 16  stored_len   u32  payload bytes in the segment
//! 20  payload_len  u32  payload bytes as given (after decompression)
//! ```
//!
//! Invariants:
//! 1. The index is derived data: it is verified (checksums, identity, and that each entry
//!    starts at or after the end of the one before (hard-state records may lie between), the
//!    last ending at or before the seal, terms never decreasing) before it is used, and
//!    rebuilt from its segment when it is missing or fails.
//! 2. Verification reads through a bounded buffer, not the map: opening a store keeps nothing
//!    per entry resident. Lookups then touch only the pages they need.

use std::io;
use std::path::Path;

use crate::codec::{u16_at, u32_at, u64_at};
use crate::entry::INDEX_MAX;
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::segment::format::{
    decode_record, RecordSeed, SegmentHeader, StoredHardState, HARD_STATE_PAYLOAD_BYTES,
    METADATA_BYTES_MAX, RECORD_HEADER_BYTES, RECORD_SEAL, SEAL_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::segment::Loc;

/// "RLIX": first four bytes of an index file.
pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"RLIX");
/// The index format this code writes and reads.
pub const INDEX_VERSION: u16 = 1;
/// Bytes of the index header.
pub const INDEX_HEADER_BYTES: usize = 64;
/// Bytes of one entry of the index.
pub const INDEX_ENTRY_BYTES: usize = 24;
/// Entries verified per read: 96 KiB, small enough to stay in a core's cache.
const VERIFY_CHUNK_ENTRIES: usize = 4096;

/// File name of the index of segment `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}.idx")
}

/// The id in an index file name, or `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    crate::segment::parse_file_name(&format!("{}.seg", name.strip_suffix(".idx")?))
}

/// Header fields of an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexHeader {
    pub store_uid: u64,
    pub segment_id: u64,
    pub first_index: u64,
    pub count: u64,
    pub data_end: u64,
    pub seal_crc: u32,
}

/// The bytes of the index of a segment whose records are `locs`.
pub(crate) fn encode(header: &IndexHeader, locs: &[Loc]) -> Vec<u8> {
    assert_eq!(header.count, locs.len() as u64, "index count and entries disagree");
    let mut out = vec![0u8; INDEX_HEADER_BYTES];
    out.reserve(locs.len() * INDEX_ENTRY_BYTES);
    for loc in locs {
        out.extend_from_slice(&loc.offset.to_le_bytes());
        out.extend_from_slice(&loc.term.to_le_bytes());
        out.extend_from_slice(&loc.stored_len.to_le_bytes());
        out.extend_from_slice(&loc.payload_len.to_le_bytes());
    }
    let entries_crc = crc32fast::hash(&out[INDEX_HEADER_BYTES..]);
    out[0..4].copy_from_slice(&INDEX_MAGIC.to_le_bytes());
    out[4..6].copy_from_slice(&INDEX_VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&header.store_uid.to_le_bytes());
    out[16..24].copy_from_slice(&header.segment_id.to_le_bytes());
    out[24..32].copy_from_slice(&header.first_index.to_le_bytes());
    out[32..40].copy_from_slice(&header.count.to_le_bytes());
    out[40..48].copy_from_slice(&header.data_end.to_le_bytes());
    out[48..52].copy_from_slice(&header.seal_crc.to_le_bytes());
    out[52..56].copy_from_slice(&entries_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[0..60]);
    out[60..64].copy_from_slice(&header_crc.to_le_bytes());
    out
}

fn decode_loc(bytes: &[u8; INDEX_ENTRY_BYTES]) -> Loc {
    let (offset, rest) = bytes.split_first_chunk::<8>().expect("24 bytes");
    let (term, rest) = rest.split_first_chunk::<8>().expect("16 bytes");
    let (stored_len, payload_len) = rest.split_first_chunk::<4>().expect("8 bytes");
    Loc {
        offset: u64::from_le_bytes(*offset),
        term: u64::from_le_bytes(*term),
        stored_len: u32::from_le_bytes(*stored_len),
        payload_len: u32::from_le_bytes(payload_len.try_into().expect("4 bytes")),
    }
}

/// What the index must agree with: the segment's own header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    pub store_uid: u64,
    pub segment_id: u64,
    pub first_index: u64,
    /// Term of `first_index - 1`: no entry may have a lower one.
    pub prev_term: u64,
    /// Size of the segment file: nothing may point past it.
    pub segment_len: u64,
}

/// Verifies the index in `file` per invariant 1 and returns its header and last term.
pub(crate) fn verify<H: FileHandle>(
    file: &H,
    expected: &Expected,
) -> io::Result<Result<(IndexHeader, u64), Corruption>> {
    let size = file.size()?;
    if size < INDEX_HEADER_BYTES as u64 {
        return Ok(Err(Corruption::Field("index file length")));
    }
    let mut head = [0u8; INDEX_HEADER_BYTES];
    file.read_exact_at(&mut head, 0)?;
    let header = match decode_header(&head, expected) {
        Ok(header) => header,
        Err(reason) => return Ok(Err(reason)),
    };
    if header.count > (INDEX_MAX + 1).saturating_sub(header.first_index) {
        return Ok(Err(Corruption::Field("index count beyond INDEX_MAX")));
    }
    let entries_len = header.count.checked_mul(INDEX_ENTRY_BYTES as u64);
    if entries_len.and_then(|len| len.checked_add(INDEX_HEADER_BYTES as u64)) != Some(size)
        || header.data_end > expected.segment_len
    {
        return Ok(Err(Corruption::Field("index count or data_end")));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut next_offset = SEGMENT_HEADER_BYTES as u64;
    let mut last_term = expected.prev_term;
    let mut chunk = vec![0u8; VERIFY_CHUNK_ENTRIES * INDEX_ENTRY_BYTES];
    let mut read = 0u64;
    while read < header.count {
        let entries = (header.count - read).min(VERIFY_CHUNK_ENTRIES as u64) as usize;
        let bytes = &mut chunk[..entries * INDEX_ENTRY_BYTES];
        file.read_exact_at(bytes, INDEX_HEADER_BYTES as u64 + read * INDEX_ENTRY_BYTES as u64)?;
        hasher.update(bytes);
        for raw in bytes.chunks_exact(INDEX_ENTRY_BYTES) {
            let loc = decode_loc(raw.try_into().expect("chunks_exact"));
            let end = loc.offset.checked_add(loc.record_len()).filter(|e| *e <= header.data_end);
            match end {
                Some(end) if loc.offset >= next_offset && loc.term >= last_term => {
                    next_offset = end;
                    last_term = loc.term;
                }
                _ => return Ok(Err(Corruption::Field("index entry out of sequence"))),
            }
        }
        read += entries as u64;
    }
    if hasher.finalize() != u32_at(&head, 52) {
        return Ok(Err(Corruption::Checksum));
    }
    if next_offset > header.data_end {
        return Ok(Err(Corruption::Field("index does not end at the seal")));
    }
    Ok(Ok((header, last_term)))
}

fn decode_header(head: &[u8], expected: &Expected) -> Result<IndexHeader, Corruption> {
    if crc32fast::hash(&head[0..60]) != u32_at(head, 60) {
        return Err(Corruption::Checksum);
    }
    if u32_at(head, 0) != INDEX_MAGIC {
        return Err(Corruption::Field("index magic"));
    }
    if u16_at(head, 4) != INDEX_VERSION {
        return Err(Corruption::Identity("unknown index format version"));
    }
    let header = IndexHeader {
        store_uid: u64_at(head, 8),
        segment_id: u64_at(head, 16),
        first_index: u64_at(head, 24),
        count: u64_at(head, 32),
        data_end: u64_at(head, 40),
        seal_crc: u32_at(head, 48),
    };
    let same = header.store_uid == expected.store_uid
        && header.segment_id == expected.segment_id
        && header.first_index == expected.first_index;
    if !same {
        return Err(Corruption::Identity("index of another segment"));
    }
    Ok(header)
}

/// A verified index, mapped: lookups by arithmetic, nothing per entry on the heap.
pub(crate) struct SegmentIndex<M> {
    map: M,
    first_index: u64,
    count: u64,
    last_term: u64,
}

impl<M> SegmentIndex<M> {
    /// Entry records in the segment.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Term of the segment's last record (`prev_term` when it has none).
    pub fn last_term(&self) -> u64 {
        self.last_term
    }
}

impl<M: AsRef<[u8]>> SegmentIndex<M> {
    /// `map` must hold an index that `verify` accepted with `header`.
    pub fn new(map: M, header: &IndexHeader, last_term: u64) -> Option<Self> {
        let needed = INDEX_HEADER_BYTES as u64 + header.count * INDEX_ENTRY_BYTES as u64;
        (map.as_ref().len() as u64 >= needed).then_some(SegmentIndex {
            map,
            first_index: header.first_index,
            count: header.count,
            last_term,
        })
    }

    pub fn loc(&self, index: u64) -> Option<Loc> {
        let position = index.checked_sub(self.first_index).filter(|p| *p < self.count)?;
        let at = INDEX_HEADER_BYTES + usize::try_from(position).ok()? * INDEX_ENTRY_BYTES;
        let raw = self.map.as_ref().get(at..at + INDEX_ENTRY_BYTES)?;
        Some(decode_loc(raw.try_into().expect("INDEX_ENTRY_BYTES long")))
    }
}

const _: () = assert!(INDEX_ENTRY_BYTES == 8 + 8 + 4 + 4 && RECORD_HEADER_BYTES == 32);

/// The mapped index type of a file system's files.
pub(crate) type MappedIndex<F> = SegmentIndex<<<F as FileSystem>::File as FileHandle>::Map>;

/// Why a sealed segment's index cannot be used (recovery row R14 rebuilds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexProblem {
    /// No index file.
    Missing,
    /// The index file, or the segment's header or seal it is checked against, failed.
    Damaged(Corruption),
}

impl IndexProblem {
    /// What `IndexRebuild::reason` reports: `None` for a missing index.
    pub fn reason(self) -> Option<Corruption> {
        match self {
            IndexProblem::Missing => None,
            IndexProblem::Damaged(reason) => Some(reason),
        }
    }
}

/// An index that passed verification, mapped, with its header.
pub(crate) struct VerifiedIndex<F: FileSystem> {
    pub index: MappedIndex<F>,
    pub header: IndexHeader,
}

/// Writes the index of a sealed segment to `path` (replacing any), fsyncs it and maps it.
/// Its name becomes durable with the next directory sync (the next segment's creation); until
/// then a crash only costs a rebuild.
pub(crate) fn write_file<F: FileSystem>(
    fs: &F,
    path: &Path,
    header: &IndexHeader,
    locs: &[Loc],
    last_term: u64,
) -> Result<MappedIndex<F>> {
    match fs.remove(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io("remove", path, e)),
        _ => {}
    }
    let file = fs.create(path).ctx("create", path)?;
    file.write_all_at(&encode(header, locs), 0).ctx("write", path)?;
    file.sync_data().ctx("sync_data", path)?;
    let map = file.map().ctx("map", path)?;
    Ok(SegmentIndex::new(map, header, last_term).expect("a written index is complete"))
}

/// Opens, verifies and maps the index at `path`: `Err(None)` when it is missing,
/// `Err(Some(reason))` when it fails verification.
pub(crate) fn open_verified<F: FileSystem>(
    fs: &F,
    path: &Path,
    expected: &Expected,
) -> Result<std::result::Result<VerifiedIndex<F>, IndexProblem>> {
    let file = match fs.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(IndexProblem::Missing)),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let (header, last_term) = match verify(&file, expected).ctx("read", path)? {
        Ok(verified) => verified,
        Err(reason) => return Ok(Err(IndexProblem::Damaged(reason))),
    };
    let map = file.map().ctx("map", path)?;
    let changed = IndexProblem::Damaged(Corruption::Field("index file changed while mapped"));
    Ok(SegmentIndex::new(map, &header, last_term)
        .map(|index| VerifiedIndex { index, header })
        .ok_or(changed))
}

/// Checks a sealed segment against its verified index without scanning it: the header names
/// this store and segment and starts at the index's first index, and the seal record at the
/// index's `data_end` is valid, counts the index's entries, ends at its last term and carries
/// the checksum the index was bound to. Returns the hard state the seal carries (format 2).
pub(crate) fn check_sealed<H: FileHandle>(
    file: &H,
    header: &SegmentHeader,
    index: &IndexHeader,
    last_term: u64,
) -> io::Result<Result<Option<StoredHardState>, Corruption>> {
    let size = file.size()?;
    let seal_len_max =
        RECORD_HEADER_BYTES + SEAL_PAYLOAD_BYTES + HARD_STATE_PAYLOAD_BYTES + METADATA_BYTES_MAX;
    let available = size.saturating_sub(index.data_end).min(seal_len_max as u64);
    if available < (RECORD_HEADER_BYTES + SEAL_PAYLOAD_BYTES) as u64 {
        return Ok(Err(Corruption::BadSeal));
    }
    let mut seal = vec![0u8; usize::try_from(available).expect("at most seal_len_max")];
    file.read_exact_at(&mut seal, index.data_end)?;
    let seed = RecordSeed::new(header.store_uid, header.segment_id);
    let Ok(record) = decode_record(seed, &seal) else { return Ok(Err(Corruption::BadSeal)) };
    let matches = record.record_type == RECORD_SEAL
        && record.index + 1 == header.first_index + index.count
        && record.term == last_term
        && record.seal_count() == Some(index.count)
        && u32_at(&seal, 0) == index.seal_crc;
    match (matches, record.hard_state()) {
        (false, _) | (true, Some(Err(_))) => Ok(Err(Corruption::BadSeal)),
        (true, Some(Ok(carried))) => Ok(Ok(Some(carried.to_stored()))),
        (true, None) => Ok(Ok(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::SimFs;

    /// Found by the `open_store` fuzz target: an entry whose offset is near `u64::MAX` made
    /// the layout check overflow. It is an invalid field, never a panic.
    #[test]
    fn an_entry_offset_near_the_end_of_the_u64_range_is_invalid() {
        let header = IndexHeader {
            store_uid: 7,
            segment_id: 2,
            first_index: 1,
            count: 2,
            data_end: 1000,
            seal_crc: 0,
        };
        let locs = [
            Loc { offset: 64, term: 1, stored_len: 10, payload_len: 10 },
            Loc { offset: u64::MAX - 5, term: 1, stored_len: 10, payload_len: 10 },
        ];
        let fs = SimFs::new();
        let path = std::path::Path::new("/index");
        fs.write_file_durable(path, &encode(&header, &locs));
        let expected = Expected {
            store_uid: 7,
            segment_id: 2,
            first_index: 1,
            prev_term: 0,
            segment_len: 2000,
        };
        let file = fs.open(path).unwrap();
        let verdict = verify(&file, &expected).unwrap();
        assert_eq!(verdict.err(), Some(Corruption::Field("index entry out of sequence")));
    }
}
