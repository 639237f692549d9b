//! The recovery scan of one segment file: header, then records until the seal, the end of
//! the stream (the end of the file, or a zero record header that no valid record of the
//! segment follows: writes are followed by zeros, and a recycled file holds stale bytes
//! beyond), or the first record that fails verification.
//!
//! Invariants:
//! 1. The scan reads the file in bounded chunks; no buffer is larger than the file or sized by
//!    an unverified length beyond the bytes that remain in the file.
//! 2. The scan decides nothing: it reports what it found (`Scanned`, `Tail`, `Damage`) and the
//!    recovery decision table (in `store::recover`) classifies it as torn or corrupt.

use std::io;

use super::format::{
    decode_record, peek_payload_len, RecordSeed, SegmentHeader, StoredHardState, RECORD_ENTRY,
    RECORD_HARD_STATE, RECORD_HEADER_BYTES, RECORD_SEAL, RECORD_SYNC_MARK, SEGMENT_HEADER_BYTES,
};
use super::Loc;
use crate::codec::{u16_at, u64_at};
use crate::error::Corruption;
use crate::fs::FileHandle;

const CHUNK_BYTES: usize = 1 << 20;

/// What a scan of a segment with a valid header found.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub header: SegmentHeader,
    /// One per entry record, in index order from `header.first_index`.
    pub locs: Vec<Loc>,
    /// Offset just past the last valid record (or the header).
    pub end_offset: u64,
    /// The segment ends with a valid seal record matching its entries.
    pub sealed: bool,
    /// The last hard state and metadata the segment's records carry (its hard-state records,
    /// or its format-2 seal), if any.
    pub hard_state: Option<StoredHardState>,
    /// Where the seal record lies, when sealed.
    pub seal_offset: Option<u64>,
    pub tail: Tail,
    pub file_len: u64,
}

/// What follows the last valid record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Nothing, zeros, or (after a seal) anything.
    Clean,
    /// Bytes that are not a valid next record.
    Damaged(Damage),
}

/// The first invalid bytes of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    pub offset: u64,
    /// The index the record at `offset` should have had.
    pub expected_index: u64,
    /// One past the last index of the record headers that look like a continuation, unverified.
    pub apparent_end_index: u64,
    pub reason: Corruption,
    /// A valid record after the damage written when the damaged one was already durable:
    /// (offset, index, durable index when written). Its presence proves corruption.
    pub later_valid: Option<(u64, u64, u64)>,
    /// From `offset` to the end of the file a single bit is set: rot of space never written,
    /// where no record ever was (a written record has many bits set).
    pub never_written: bool,
}

/// Why a segment header could not be used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HeaderDamage {
    pub reason: Corruption,
    /// The header is intact but names another store or segment (never a torn write).
    pub identity: bool,
    /// Offset of a valid record in the file despite the bad header.
    pub later_valid: Option<u64>,
    pub file_len: u64,
}

/// What a later record must show to prove damage was synced (see `find_valid_after`).
#[derive(Debug, Clone, Copy)]
struct Proof {
    durable_min: u64,
    sequence_min: Option<u64>,
}

/// Reads a file through a window of at most `CHUNK_BYTES` (or one record, if larger).
struct ChunkReader<'a, H: FileHandle> {
    file: &'a H,
    len: u64,
    buf: Vec<u8>,
    buf_offset: u64,
}

impl<'a, H: FileHandle> ChunkReader<'a, H> {
    fn new(file: &'a H) -> io::Result<Self> {
        Ok(ChunkReader { file, len: file.size()?, buf: Vec::new(), buf_offset: 0 })
    }

    /// Up to `want` bytes from `offset` (fewer only at the end of the file).
    fn bytes(&mut self, offset: u64, want: usize) -> io::Result<&[u8]> {
        let available = usize::try_from(self.len.saturating_sub(offset)).unwrap_or(usize::MAX);
        let want = want.min(available);
        let buf_end = self.buf_offset + self.buf.len() as u64;
        if offset < self.buf_offset || offset + want as u64 > buf_end {
            let read = want.max(CHUNK_BYTES).min(available);
            self.buf.resize(read, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.buf_offset = offset;
        }
        let start = usize::try_from(offset - self.buf_offset).expect("inside the buffer");
        Ok(&self.buf[start..start + want])
    }

    /// The record at `offset`, fetched whole if its header announces a length that fits.
    fn record_bytes(&mut self, offset: u64) -> io::Result<&[u8]> {
        let header = self.bytes(offset, RECORD_HEADER_BYTES)?;
        let want = peek_payload_len(header)
            .map_or(RECORD_HEADER_BYTES, |len| RECORD_HEADER_BYTES + len as usize);
        self.bytes(offset, want)
    }

    /// The bits set from `offset` to the end of the file, counted up to `max`.
    fn bits_set_from(&mut self, mut offset: u64, max: u32) -> io::Result<u32> {
        let mut set = 0u32;
        while offset < self.len && set < max {
            let chunk = self.bytes(offset, CHUNK_BYTES)?;
            set = set.saturating_add(chunk.iter().map(|b| b.count_ones()).sum::<u32>());
            offset += chunk.len() as u64;
        }
        Ok(set.min(max))
    }

    /// The first valid record after `from` that proves the damage at `from` was synced: an
    /// entry, seal or hard-state record whose index lies in `indexes` and that was written when
    /// `proof.durable_min` was already durable (any such record when it is 0), or a sync mark
    /// claiming that index, or the hard-state sequence `proof.sequence_min`. The damaged bytes
    /// precede whatever the claim covers, so the fdatasync behind it covered them too.
    /// Returns (offset, index, durable index when written).
    fn find_valid_after(
        &mut self,
        seed: RecordSeed,
        from: u64,
        indexes: std::ops::RangeInclusive<u64>,
        proof: Proof,
    ) -> io::Result<Option<(u64, u64, u64)>> {
        let mut offset = from + 1;
        while let Some(candidate) = self.next_candidate(offset)? {
            offset = candidate;
            let header = self.bytes(offset, RECORD_HEADER_BYTES)?;
            let index = u64_at(header, 8);
            let is_mark = header[24] == RECORD_SYNC_MARK;
            if is_mark || indexes.contains(&index) {
                if let Ok(record) = decode_record(seed, self.record_bytes(offset)?) {
                    let durable = record.durable_index_when_written();
                    let mark_proves = record.record_type == RECORD_SYNC_MARK
                        && proof.sequence_min.is_some_and(|min| record.term >= min);
                    if durable >= proof.durable_min || mark_proves {
                        return Ok(Some((offset, record.index, durable)));
                    }
                    // Records after a valid one follow it back to back.
                    offset += record.encoded_len() as u64;
                    continue;
                }
            }
            offset += 1;
        }
        Ok(None)
    }

    /// The first offset at or after `from` where a record could start: its type byte names
    /// a record type and its flags are zero. Scans whole chunks (stale or zeroed space is
    /// mostly skipped here, without decoding).
    fn next_candidate(&mut self, from: u64) -> io::Result<Option<u64>> {
        let mut at = from;
        while at + RECORD_HEADER_BYTES as u64 <= self.len {
            let chunk = self.bytes(at, CHUNK_BYTES)?;
            let starts = chunk.len() + 1 - RECORD_HEADER_BYTES;
            let found = (0..starts).position(|p| {
                matches!(
                    chunk[p + 24],
                    RECORD_ENTRY | RECORD_SEAL | RECORD_SYNC_MARK | RECORD_HARD_STATE
                ) && chunk[p + 26] == 0
                    && chunk[p + 27] == 0
            });
            if let Some(p) = found {
                return Ok(Some(at + p as u64));
            }
            at += starts as u64;
        }
        Ok(None)
    }

    /// Whether the stream ends at `offset`, where the record of `expected_index` should
    /// start: a zero record header there (writes are followed by zeros, `format/SPEC.md`
    /// "Segment pool"), and no valid record of this segment anywhere after it. Whatever
    /// else lies beyond (zeros, stale bytes of a recycled file, a fragment of a torn write
    /// that never validates) is not part of the stream.
    fn stream_ends_at(
        &mut self,
        seed: RecordSeed,
        offset: u64,
        expected_index: u64,
    ) -> io::Result<bool> {
        if self.bytes(offset, RECORD_HEADER_BYTES)?.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        let index_max = expected_index + self.len / RECORD_HEADER_BYTES as u64;
        let any = Proof { durable_min: 0, sequence_min: None };
        Ok(self.find_valid_after(seed, offset, expected_index..=index_max, any)?.is_none())
    }

    /// The damage at `offset`, where the record of `expected_index` (or the hard-state record
    /// after sequence `last_sequence`) should start. `creation_record`: the damaged bytes are a
    /// format-2 segment's first record, written and fsynced with its header before any other
    /// write, so any later valid record proves them.
    fn damage(
        &mut self,
        seed: RecordSeed,
        (offset, expected_index, last_sequence): (u64, u64, Option<u64>),
        creation_record: bool,
        reason: Corruption,
    ) -> io::Result<Damage> {
        // Records are at least a header long: no later index can exceed this.
        let index_max = expected_index + self.len / RECORD_HEADER_BYTES as u64;
        Ok(Damage {
            offset,
            expected_index,
            apparent_end_index: self.apparent_end(offset, expected_index)?,
            reason,
            later_valid: self.find_valid_after(
                seed,
                offset,
                expected_index..=index_max,
                Proof {
                    durable_min: if creation_record { 0 } else { expected_index },
                    sequence_min: last_sequence.map(|last| last + 1),
                },
            )?,
            never_written: self.bits_set_from(offset, 2)? == 1,
        })
    }

    /// One past the last index of record headers that continue from `index` at `offset`,
    /// judged by their index field alone (the last one may run past the end of the file).
    fn apparent_end(&mut self, mut offset: u64, mut index: u64) -> io::Result<u64> {
        while offset + RECORD_HEADER_BYTES as u64 <= self.len {
            let header = self.bytes(offset, RECORD_HEADER_BYTES)?;
            if u64_at(header, 8) != index || header[24] != RECORD_ENTRY {
                break;
            }
            let len = u64::from(peek_payload_len(header).unwrap_or(0));
            offset = offset.saturating_add(RECORD_HEADER_BYTES as u64 + len);
            index += 1;
        }
        Ok(index)
    }
}

/// Scans segment `segment_id` of store `store_uid` in `file`.
pub(crate) fn scan_segment<H: FileHandle>(
    file: &H,
    store_uid: u64,
    segment_id: u64,
) -> io::Result<Result<Scanned, HeaderDamage>> {
    let mut reader = ChunkReader::new(file)?;
    let seed = RecordSeed::new(store_uid, segment_id);
    let header = match SegmentHeader::decode(reader.bytes(0, SEGMENT_HEADER_BYTES)?) {
        Ok(header) if header.store_uid != store_uid || header.segment_id != segment_id => {
            let reason = Corruption::Identity("segment of another store or another id");
            return Ok(Err(HeaderDamage {
                reason,
                identity: true,
                later_valid: None,
                file_len: reader.len,
            }));
        }
        Ok(header) => header,
        Err(reason) => {
            let later_valid = reader
                .find_valid_after(
                    seed,
                    0,
                    1..=u64::MAX,
                    Proof { durable_min: 0, sequence_min: None },
                )?
                .map(|(offset, ..)| offset);
            return Ok(Err(HeaderDamage {
                reason,
                identity: false,
                later_valid,
                file_len: reader.len,
            }));
        }
    };
    let mut scanned = Scanned {
        header,
        locs: Vec::new(),
        end_offset: SEGMENT_HEADER_BYTES as u64,
        sealed: false,
        hard_state: None,
        seal_offset: None,
        tail: Tail::Clean,
        file_len: reader.len,
    };
    let mut last_term = header.prev_term;
    let version = u16_at(reader.bytes(0, SEGMENT_HEADER_BYTES)?, 4);
    while scanned.end_offset < reader.len {
        let offset = scanned.end_offset;
        let expected_index = header.first_index + scanned.locs.len() as u64;
        let reason = match decode_record(seed, reader.record_bytes(offset)?) {
            Ok(record) if record.record_type == RECORD_ENTRY && record.index == expected_index => {
                let logical_len = record.logical_len();
                if let (true, Ok(payload_len)) = (record.term >= last_term, &logical_len) {
                    let stored_len = record.payload.len() as u32;
                    let payload_len = *payload_len;
                    scanned.locs.push(Loc { offset, term: record.term, stored_len, payload_len });
                    scanned.end_offset += record.encoded_len() as u64;
                    last_term = record.term;
                    continue;
                }
                logical_len.err().unwrap_or(Corruption::Field("term below the previous entry's"))
            }
            Ok(record) if record.record_type == RECORD_SEAL => {
                let count = scanned.locs.len() as u64;
                let carried = record.hard_state().transpose();
                if record.index == expected_index - 1
                    && record.term == last_term
                    && record.seal_count() == Some(count)
                    && carried.is_ok()
                {
                    if let Ok(Some(carried)) = carried {
                        scanned.hard_state = Some(carried.to_stored());
                    }
                    scanned.seal_offset = Some(offset);
                    scanned.end_offset += record.encoded_len() as u64;
                    scanned.sealed = true;
                    return Ok(Ok(scanned));
                }
                Corruption::BadSeal
            }
            Ok(record)
                if record.record_type == RECORD_HARD_STATE
                    && record.index == expected_index - 1 =>
            {
                let last_sequence = scanned.hard_state.as_ref().map(|h| h.sequence);
                match record.hard_state() {
                    Some(Ok(carried))
                        if last_sequence.is_none_or(|last| carried.sequence > last) =>
                    {
                        scanned.hard_state = Some(carried.to_stored());
                        scanned.end_offset += record.encoded_len() as u64;
                        continue;
                    }
                    Some(Ok(_)) => Corruption::Field("hard state sequence out of order"),
                    Some(Err(reason)) => reason,
                    None => unreachable!("a hard-state record carries a hard state"),
                }
            }
            Ok(record)
                if record.record_type == RECORD_SYNC_MARK && record.index < expected_index =>
            {
                scanned.end_offset += record.encoded_len() as u64;
                continue;
            }
            Ok(_) => Corruption::Field("record index out of sequence"),
            Err(super::format::RecordError::Invalid(reason)) => reason,
            Err(super::format::RecordError::Truncated) => Corruption::Field("record length"),
        };
        if !reader.stream_ends_at(seed, offset, expected_index)? {
            let creation_record = version >= 2 && offset == SEGMENT_HEADER_BYTES as u64;
            let last_sequence = scanned.hard_state.as_ref().map(|h| h.sequence);
            let at = (offset, expected_index, last_sequence);
            let damage = reader.damage(seed, at, creation_record, reason)?;
            scanned.tail = Tail::Damaged(damage);
        }
        break;
    }
    Ok(Ok(scanned))
}

/// Reads and checks the header of segment `segment_id` of store `store_uid`.
pub(crate) fn read_header<H: FileHandle>(
    file: &H,
    store_uid: u64,
    segment_id: u64,
) -> io::Result<Result<SegmentHeader, Corruption>> {
    if file.size()? < SEGMENT_HEADER_BYTES as u64 {
        return Ok(Err(Corruption::Field("segment header length")));
    }
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(SegmentHeader::decode(&bytes).and_then(|header| {
        if header.store_uid == store_uid && header.segment_id == segment_id {
            Ok(header)
        } else {
            Err(Corruption::Identity("segment of another store or another id"))
        }
    }))
}
