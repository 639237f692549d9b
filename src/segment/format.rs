//! Byte layout of segment files (format version 1), mirroring `format/SPEC.md`.
//!
//! All integers are little-endian. A segment is a 64-byte header followed by records packed
//! back to back; each record is a 32-byte header and its payload. The checksum of a record
//! covers the store's uid and the segment's id as well as the record's own bytes, so a record
//! of another store or another segment (a recycled or copied file) never validates.
//!
//! Invariants:
//! 1. Decoders check, in order: that the bytes are there, the checksum, then every field; only
//!    then do they return borrowed payload slices. They never allocate and never panic.
//! 2. A length read from disk is only used after it is checked against the bytes available.
//! 3. `encode_*` and `decode_*` are exact inverses (a property test checks it).

use crate::codec::{u16_at, u32_at, u64_at};
use crate::entry::INDEX_MAX;
use crate::error::Corruption;
use crate::hard_state::HardState;

const _: () = assert!(FLAG_ZSTD == 1);

/// "RLSG": first four bytes of every segment file.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"RLSG");
/// The segment format this code writes. Version 2 adds the sync mark; version 1 segments
/// (which never hold one) are still read.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest segment format this code reads.
pub const FORMAT_VERSION_MIN: u16 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 32;

/// Record types; 0 is never valid, so zeroed (preallocated) space never parses as a record.
pub const RECORD_ENTRY: u8 = 1;
/// The last record of a sealed segment.
pub const RECORD_SEAL: u8 = 2;
/// "Synced through entry `index` and hard-state record `term`": appended to the active segment
/// right after each fdatasync (format/SPEC.md, "Sync mark").
pub const RECORD_SYNC_MARK: u8 = 3;
/// The hard state and the engine's metadata, in the stream of the active segment (format 2).
pub const RECORD_HARD_STATE: u8 = 4;
/// Fixed bytes of a hard-state payload, before the metadata.
pub const HARD_STATE_PAYLOAD_BYTES: usize = 40;
/// The hard-state payload version this code writes and reads.
pub const HARD_STATE_VERSION: u8 = 1;
/// Largest engine metadata kept with the hard state.
pub const METADATA_BYTES_MAX: usize = 4096;
/// Payload bytes of a seal record: the entry count.
pub const SEAL_PAYLOAD_BYTES: usize = 8;
/// Record flag: the payload is one zstd frame, with its content size, of the entry's bytes.
pub const FLAG_ZSTD: u16 = 1;
/// Largest payload a record may carry or decompress to (the length fields are u32).
pub const PAYLOAD_BYTES_LIMIT: u64 = u32::MAX as u64 - RECORD_HEADER_BYTES as u64;

const _: () = assert!(SEGMENT_HEADER_BYTES % 8 == 0 && RECORD_HEADER_BYTES % 8 == 0);

/// Segment header fields.
///
/// ```text
///  0  magic            u32  "RLSG"
///  4  version          u16  1
///  6  reserved         u16  0
///  8  store_uid        u64  random id of the store, fixed at creation
/// 16  segment_id       u64  the file's id, also in its name; never derived from an index
/// 24  first_index      u64  index of the segment's first record
/// 32  prev_segment_id  u64  segment holding first_index - 1 at creation, 0 if none
/// 40  prev_term        u64  term of first_index - 1 at creation
/// 48  reserved         [u8; 12]  0
/// 60  crc32            u32  crc32 of bytes [0, 60)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Random id of the store that wrote the file.
    pub store_uid: u64,
    /// The file's id.
    pub segment_id: u64,
    /// Index of the first record in the file.
    pub first_index: u64,
    /// Segment that held `first_index - 1` when this one was created (0: none).
    pub prev_segment_id: u64,
    /// Term of `first_index - 1` when this segment was created.
    pub prev_term: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.store_uid.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        out[32..40].copy_from_slice(&self.prev_segment_id.to_le_bytes());
        out[40..48].copy_from_slice(&self.prev_term.to_le_bytes());
        let crc = crc32fast::hash(&out[0..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies a header.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, Corruption> {
        let bytes: &[u8; SEGMENT_HEADER_BYTES] = bytes
            .get(..SEGMENT_HEADER_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or(Corruption::Field("segment header length"))?;
        if crc32fast::hash(&bytes[0..60]) != u32_at(bytes, 60) {
            return Err(Corruption::Checksum);
        }
        if u32_at(bytes, 0) != SEGMENT_MAGIC {
            return Err(Corruption::Field("segment magic"));
        }
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&u16_at(bytes, 4)) {
            return Err(Corruption::Identity("unknown segment format version"));
        }
        let header = SegmentHeader {
            store_uid: u64_at(bytes, 8),
            segment_id: u64_at(bytes, 16),
            first_index: u64_at(bytes, 24),
            prev_segment_id: u64_at(bytes, 32),
            prev_term: u64_at(bytes, 40),
        };
        if header.first_index == 0 || header.first_index > INDEX_MAX + 1 || header.segment_id == 0 {
            return Err(Corruption::Field("segment first_index or segment_id"));
        }
        Ok(header)
    }
}

/// What seeds every record checksum of one segment: the crc32 of the store's uid and the
/// segment's id, computed once, from which each record's checksum continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSeed {
    prefix_crc: u32,
}

impl RecordSeed {
    /// The seed of segment `segment_id` of store `store_uid`.
    pub fn new(store_uid: u64, segment_id: u64) -> Self {
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&store_uid.to_le_bytes());
        prefix[8..].copy_from_slice(&segment_id.to_le_bytes());
        RecordSeed { prefix_crc: crc32fast::hash(&prefix) }
    }

    /// crc32 of `store_uid | segment_id` followed by the concatenation of `covered`.
    fn checksum(&self, covered: &[&[u8]]) -> u32 {
        let mut hasher = crc32fast::Hasher::new_with_initial(self.prefix_crc);
        for part in covered {
            hasher.update(part);
        }
        hasher.finalize()
    }
}

/// A decoded record, borrowing its payload.
///
/// ```text
///  0  crc32        u32  crc32 of store_uid (u64) | segment_id (u64) | bytes [4, 32 + len)
///  4  payload_len  u32
///  8  index        u64
/// 16  term         u64
/// 24  record_type  u8   1 = entry, 2 = seal
/// 25  entry_kind   u8   opaque, as given by the caller
/// 26  flags        u16  bit 0: payload is a zstd frame (FLAG_ZSTD); other bits 0
/// 28  sync_lag     u32  index minus the durable index when the record was written (saturated)
/// 32  payload      [u8; payload_len]
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// `RECORD_ENTRY` or `RECORD_SEAL`.
    pub record_type: u8,
    /// For an entry its index; for a seal the segment's last index.
    pub index: u64,
    /// For an entry its term; for a seal the term of the segment's last entry.
    pub term: u64,
    /// The caller's entry kind (0 for a seal).
    pub entry_kind: u8,
    /// How far ahead of the durable index this record was written.
    pub sync_lag: u32,
    /// The payload is zstd-compressed (`FLAG_ZSTD`).
    pub compressed: bool,
    /// The payload (for a seal: the entry count, u64).
    pub payload: &'a [u8],
}

impl Record<'_> {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }

    /// The index the writer knew durable when it wrote this record: every record at or below
    /// it had been synced, so damage there cannot be a torn write.
    pub fn durable_index_when_written(&self) -> u64 {
        self.index.saturating_sub(u64::from(self.sync_lag))
    }

    /// Appends the record's bytes to `out`.
    pub fn encode(&self, seed: RecordSeed, out: &mut Vec<u8>) {
        self.encode_header(seed, out);
        out.extend_from_slice(self.payload);
    }

    /// Appends the record's header to `out`, its checksum covering the payload, which the
    /// caller writes right after it (a vectored write need not copy the payload).
    pub fn encode_header(&self, seed: RecordSeed, out: &mut Vec<u8>) {
        let start = out.len();
        let payload_len =
            u32::try_from(self.payload.len()).expect("payload length checked by caller");
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&payload_len.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.term.to_le_bytes());
        let flags = if self.compressed { FLAG_ZSTD } else { 0 };
        out.extend_from_slice(&[self.record_type, self.entry_kind]);
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.sync_lag.to_le_bytes());
        let crc = seed.checksum(&[&out[start + 4..], self.payload]);
        out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// A seal record closing a segment whose last entry is `(last_index, last_term)`, written
    /// when `durable_index` was durable. Its payload is the entry count (u64), then (format 2)
    /// the hard-state payload the segment ends with.
    pub fn seal(last_index: u64, last_term: u64, durable_index: u64, payload: &[u8]) -> Record<'_> {
        Record {
            record_type: RECORD_SEAL,
            index: last_index,
            term: last_term,
            entry_kind: 0,
            sync_lag: sync_lag(last_index, durable_index),
            compressed: false,
            payload,
        }
    }

    /// A sync mark: every entry up to `durable_index` and every hard-state record up to
    /// sequence `hard_state_sequence` was made durable by the fdatasync that returned just
    /// before it was written. (A mark's `term` field holds the sequence.)
    pub fn sync_mark(durable_index: u64, hard_state_sequence: u64) -> Record<'static> {
        Record {
            record_type: RECORD_SYNC_MARK,
            index: durable_index,
            term: hard_state_sequence,
            entry_kind: 0,
            sync_lag: 0,
            compressed: false,
            payload: &[],
        }
    }

    /// The entry count of a seal record.
    pub fn seal_count(&self) -> Option<u64> {
        let bytes: [u8; SEAL_PAYLOAD_BYTES] =
            self.payload.get(..SEAL_PAYLOAD_BYTES)?.try_into().ok()?;
        (self.record_type == RECORD_SEAL).then(|| u64::from_le_bytes(bytes))
    }

    /// The hard state a record carries, with its sequence: a hard-state record's, or a
    /// format-2 seal's (after its count). `None` for other records and format-1 seals.
    pub fn hard_state(&self) -> Option<Result<CarriedHardState<'_>, Corruption>> {
        match self.record_type {
            RECORD_HARD_STATE => Some(decode_hard_state(self.payload)),
            RECORD_SEAL if self.payload.len() > SEAL_PAYLOAD_BYTES => {
                Some(decode_hard_state(&self.payload[SEAL_PAYLOAD_BYTES..]))
            }
            _ => None,
        }
    }
}

/// A hard state as a record carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarriedHardState<'a> {
    /// Counts the hard-state records of the store: each new one is one above the last.
    pub sequence: u64,
    /// The hard state.
    pub hard_state: HardState,
    /// The engine's metadata.
    pub metadata: &'a [u8],
}

impl CarriedHardState<'_> {
    /// An owned copy.
    pub fn to_stored(self) -> StoredHardState {
        StoredHardState {
            sequence: self.sequence,
            hard_state: self.hard_state,
            metadata: self.metadata.to_vec(),
        }
    }
}

/// A hard state found on disk, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredHardState {
    /// The record's sequence.
    pub sequence: u64,
    /// The hard state.
    pub hard_state: HardState,
    /// The engine's metadata.
    pub metadata: Vec<u8>,
}

/// Appends the payload of a hard-state record (or of a seal, after its count).
///
/// ```text
///  0  version       u8   1
///  1  reserved      u8   0
///  2  metadata_len  u16  at most METADATA_BYTES_MAX
///  4  reserved      u32  0
///  8  sequence      u64  of the hard-state record (a seal repeats the last one's)
/// 16  term          u64
/// 24  vote          u64
/// 32  commit        u64
/// 40  metadata      [u8; metadata_len]
/// ```
pub fn encode_hard_state(carried: CarriedHardState<'_>, out: &mut Vec<u8>) {
    let metadata_len =
        u16::try_from(carried.metadata.len()).expect("metadata checked by the caller");
    out.extend_from_slice(&[HARD_STATE_VERSION, 0]);
    out.extend_from_slice(&metadata_len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    let HardState { term, vote, commit } = carried.hard_state;
    for field in [carried.sequence, term, vote, commit] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(carried.metadata);
}

/// Decodes a hard-state payload (the record's checksum already verified).
pub fn decode_hard_state(payload: &[u8]) -> Result<CarriedHardState<'_>, Corruption> {
    let fixed =
        payload.get(..HARD_STATE_PAYLOAD_BYTES).ok_or(Corruption::Field("hard state length"))?;
    if fixed[0] != HARD_STATE_VERSION {
        return Err(Corruption::Identity("unknown hard state version"));
    }
    let metadata_len = usize::from(u16_at(fixed, 2));
    if metadata_len > METADATA_BYTES_MAX || payload.len() != HARD_STATE_PAYLOAD_BYTES + metadata_len
    {
        return Err(Corruption::Field("hard state metadata length"));
    }
    let hard_state = HardState::new(u64_at(fixed, 16), u64_at(fixed, 24), u64_at(fixed, 32));
    if hard_state.commit > INDEX_MAX {
        return Err(Corruption::Field("hard state commit"));
    }
    let metadata = &payload[HARD_STATE_PAYLOAD_BYTES..];
    Ok(CarriedHardState { sequence: u64_at(fixed, 8), hard_state, metadata })
}

/// The `sync_lag` of a record at `index` written when `durable_index` was durable. Saturation
/// only ever understates what was durable, which errs towards "torn", never towards "corrupt".
pub fn sync_lag(index: u64, durable_index: u64) -> u32 {
    u32::try_from(index.saturating_sub(durable_index)).unwrap_or(u32::MAX)
}

/// Why bytes at a position are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The header, or the payload its length announces, runs past the available bytes.
    Truncated,
    /// The bytes are there but fail verification.
    Invalid(Corruption),
}

/// Decodes the record at the start of `bytes`, verifying its checksum and fields.
pub fn decode_record(seed: RecordSeed, bytes: &[u8]) -> Result<Record<'_>, RecordError> {
    let header = bytes.get(..RECORD_HEADER_BYTES).ok_or(RecordError::Truncated)?;
    let payload_len = u32_at(header, 4) as usize;
    let total = RECORD_HEADER_BYTES.checked_add(payload_len).ok_or(RecordError::Truncated)?;
    let covered = bytes.get(4..total).ok_or(RecordError::Truncated)?;
    if seed.checksum(&[covered]) != u32_at(header, 0) {
        return Err(RecordError::Invalid(Corruption::Checksum));
    }
    let flags = u16_at(header, 26);
    let record = Record {
        record_type: header[24],
        index: u64_at(header, 8),
        term: u64_at(header, 16),
        entry_kind: header[25],
        sync_lag: u32_at(header, 28),
        compressed: flags & FLAG_ZSTD != 0,
        payload: &bytes[RECORD_HEADER_BYTES..total],
    };
    if flags & !FLAG_ZSTD != 0 {
        return Err(RecordError::Invalid(Corruption::Field("record flags")));
    }
    match record.record_type {
        RECORD_ENTRY if record.index > 0 && record.index <= INDEX_MAX => Ok(record),
        RECORD_SYNC_MARK if record.index <= INDEX_MAX && payload_len == 0 && !record.compressed => {
            Ok(record)
        }
        RECORD_HARD_STATE
            if record.index <= INDEX_MAX
                && (HARD_STATE_PAYLOAD_BYTES..=HARD_STATE_PAYLOAD_BYTES + METADATA_BYTES_MAX)
                    .contains(&payload_len)
                && !record.compressed =>
        {
            Ok(record)
        }
        RECORD_SEAL
            if record.index <= INDEX_MAX
                && (payload_len == SEAL_PAYLOAD_BYTES
                    || (SEAL_PAYLOAD_BYTES + HARD_STATE_PAYLOAD_BYTES
                        ..=SEAL_PAYLOAD_BYTES + HARD_STATE_PAYLOAD_BYTES + METADATA_BYTES_MAX)
                        .contains(&payload_len))
                && !record.compressed =>
        {
            Ok(record)
        }
        _ => Err(RecordError::Invalid(Corruption::Field("record type or index"))),
    }
}

impl Record<'_> {
    /// The entry's payload length as the caller gave it: the stored length, or for a
    /// compressed payload the content size its zstd frame declares (checked against the limit,
    /// never allocated here).
    pub fn logical_len(&self) -> Result<u32, Corruption> {
        if !self.compressed {
            return u32::try_from(self.payload.len())
                .map_err(|_| Corruption::Field("payload length"));
        }
        match zstd::zstd_safe::get_frame_content_size(self.payload) {
            Ok(Some(len)) if len <= PAYLOAD_BYTES_LIMIT => {
                u32::try_from(len).map_err(|_| Corruption::Field("compressed payload size"))
            }
            _ => Err(Corruption::Field("compressed payload size")),
        }
    }

    /// The entry's payload bytes, decompressed into exactly `logical_len` bytes (a buffer of
    /// that size is the only allocation; the decompression context is reused per thread).
    pub fn decompress(&self, logical_len: u32) -> Result<Vec<u8>, Corruption> {
        thread_local! {
            static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let mut out = Vec::with_capacity(logical_len as usize);
        let written = DECOMPRESSOR.with_borrow_mut(|slot| {
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::new().ok();
            }
            let decompressor = slot.as_mut()?;
            decompressor.decompress_to_buffer(self.payload, &mut out).ok()
        });
        match written {
            Some(len) if len == logical_len as usize => Ok(out),
            _ => Err(Corruption::Field("compressed payload")),
        }
    }
}

/// Reads the payload length of the record header at the start of `bytes`, unverified: only a
/// hint for how many bytes to fetch before `decode_record`.
pub fn peek_payload_len(bytes: &[u8]) -> Option<u32> {
    bytes.get(..RECORD_HEADER_BYTES).map(|header| u32_at(header, 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seed() -> RecordSeed {
        RecordSeed::new(7, 3)
    }

    proptest! {
        #[test]
        fn record_round_trips(
            index in 1u64..=INDEX_MAX, term in any::<u64>(), kind in any::<u8>(), lag in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let record = Record {
                record_type: RECORD_ENTRY, index, term, entry_kind: kind, sync_lag: lag,
                compressed: false, payload: &payload,
            };
            let mut out = Vec::new();
            record.encode(seed(), &mut out);
            prop_assert_eq!(out.len(), record.encoded_len());
            prop_assert_eq!(decode_record(seed(), &out), Ok(record));
            let other_segment = RecordSeed::new(7, 4);
            prop_assert!(decode_record(other_segment, &out).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(record) = decode_record(seed(), &bytes) {
                if let Ok(len) = record.logical_len() {
                    let _ = record.decompress(len.min(1 << 20));
                }
            }
            let _ = SegmentHeader::decode(&bytes);
        }

        #[test]
        fn compressed_records_round_trip(payload in proptest::collection::vec(0u8..4, 0..5000)) {
            let stored = zstd::bulk::compress(&payload, 1).unwrap();
            let record = Record {
                record_type: RECORD_ENTRY, index: 3, term: 1, entry_kind: 0, sync_lag: 0,
                compressed: true, payload: &stored,
            };
            let mut out = Vec::new();
            record.encode(seed(), &mut out);
            let decoded = decode_record(seed(), &out).unwrap();
            let len = decoded.logical_len().unwrap();
            prop_assert_eq!(len as usize, payload.len());
            prop_assert_eq!(decoded.decompress(len).unwrap(), payload);
        }

        #[test]
        fn header_round_trips(uid in any::<u64>(), id in 1u64.., first in 1u64..=INDEX_MAX + 1, prev in any::<u64>(), term in any::<u64>()) {
            let header = SegmentHeader {
                store_uid: uid, segment_id: id, first_index: first, prev_segment_id: prev,
                prev_term: term,
            };
            prop_assert_eq!(SegmentHeader::decode(&header.encode()), Ok(header));
        }

        #[test]
        fn any_single_bit_flip_is_detected(bit in 0usize..(8 * 40)) {
            let record = Record {
                record_type: RECORD_ENTRY, index: 9, term: 2, entry_kind: 1, sync_lag: 0,
                compressed: false, payload: b"payload!",
            };
            let mut out = Vec::new();
            record.encode(seed(), &mut out);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_record(seed(), &out) != Ok(record));
        }
    }

    #[test]
    fn compressed_sizes_are_checked_before_allocating() {
        let frame = zstd::bulk::compress(&[7u8; 100], 1).unwrap();
        let record = Record {
            record_type: RECORD_ENTRY,
            index: 3,
            term: 1,
            entry_kind: 0,
            sync_lag: 0,
            compressed: true,
            payload: &frame,
        };
        assert_eq!(record.logical_len(), Ok(100));
        assert!(record.decompress(99).is_err(), "a size other than the declared one is refused");
        let torn = Record { payload: &frame[..3], ..record };
        assert!(torn.logical_len().is_err());
    }

    #[test]
    fn the_seed_is_the_prefix_of_the_checksummed_bytes() {
        let mut out = Vec::new();
        let record = Record {
            record_type: RECORD_ENTRY,
            index: 1,
            term: 1,
            entry_kind: 0,
            sync_lag: 0,
            compressed: false,
            payload: b"abc",
        };
        record.encode(seed(), &mut out);
        let mut whole = Vec::new();
        whole.extend_from_slice(&7u64.to_le_bytes());
        whole.extend_from_slice(&3u64.to_le_bytes());
        whole.extend_from_slice(&out[4..]);
        assert_eq!(u32_at(&out, 0), crc32fast::hash(&whole));
    }

    #[test]
    fn zeroed_space_is_not_a_record() {
        assert!(decode_record(seed(), &[0u8; 64]).is_err());
    }
}
