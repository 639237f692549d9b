//! The wire codec of `Message` (format/SPEC.md, "Replication messages"): a length-prefixed,
//! versioned, checksummed frame, little-endian fields.
//!
//! Invariants:
//! 1. `decode` checks, in order: the length against `FRAME_BYTES_MAX`, the magic, the version,
//!    the checksum, then every count and length against both its maximum and the bytes left,
//!    before it allocates. Any failure is `Error::BadMessage`; nothing panics.
//! 2. `decode(encode(m)) == m` for every message within the limits.
//! 3. Decoded payloads are slices of the frame's `Bytes`: no copy per entry.

use bytes::{BufMut, Bytes};

mod control;

use super::membership::MEMBERS_MAX;
use super::message::{Append, AppendReply, AppendStatus, Envelope, Message};
use crate::entry::{Entry, INDEX_MAX};
use crate::error::{Error, Result};
use crate::snapshot::ChunkRequest;

/// First bytes of every frame after its length.
pub const FRAME_MAGIC: [u8; 4] = *b"RLRP";
/// The wire format's version.
pub const WIRE_VERSION: u8 = 1;
/// Largest frame, length prefix excluded.
pub const FRAME_BYTES_MAX: u32 = 64 << 20;
/// Bytes of a frame's header after the length prefix: magic, version, kind, reserved, from,
/// to, crc32.
pub const FRAME_HEADER_BYTES: usize = 28;
/// Most entries in one `Append`.
pub const ENTRIES_MAX: u32 = 1 << 16;
/// Most chunk requests in one `SnapshotPull`, and chunks in one `SnapshotChunks`.
pub const PULL_REQUESTS_MAX: u32 = 256;
/// Most peers in a `NodeStatus`.
pub const PEERS_MAX: u32 = 256;
/// Slots in one message (`SlotsTaken`, `SlotStatus`), and of a `SlotMachine`.
pub const SLOTS_MAX: u32 = 1 << 16;
/// Longest error text in a `ControlReply`.
pub const TEXT_BYTES_MAX: u32 = 1024;

const ENTRY_HEADER_BYTES: usize = 21;

fn kind_of(message: &Message) -> u8 {
    match message {
        Message::Append(_) => 1,
        Message::AppendReply(_) => 2,
        Message::Heartbeat { .. } => 3,
        Message::SnapshotOffer { .. } => 4,
        Message::SnapshotPull { .. } => 5,
        Message::SnapshotChunks { .. } => 6,
        Message::ClientWrite { .. } => 7,
        Message::ClientReply { .. } => 8,
        Message::Control { .. } => 9,
        Message::ControlReply { .. } => 10,
        Message::Relay { .. } => 11,
        Message::RepairRequest { .. } => 12,
        Message::RepairReply { .. } => 13,
        Message::SnapshotRequest { .. } => 14,
        Message::RepairStatus { .. } => 15,
        Message::SlotStatus { .. } => 22,
        Message::RepairOffer { .. } => 16,
        Message::RepairPull { .. } => 17,
        Message::RepairChunks { .. } => 18,
        Message::SlotsTaken { .. } => 19,
        Message::CompactionFloor { .. } => 20,
        Message::SlotsDurable { .. } => 21,
    }
}

/// The frame of `envelope`, its 4-byte length prefix included. Payload bytes are copied once,
/// from where they lie (the mapped segment) into the frame.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body_size_hint(&envelope.message));
    out.put_u32_le(0);
    out.extend_from_slice(&FRAME_MAGIC);
    out.put_u8(WIRE_VERSION);
    out.put_u8(kind_of(&envelope.message));
    out.put_u16_le(0);
    out.put_u64_le(envelope.from);
    out.put_u64_le(envelope.to);
    out.put_u32_le(0);
    encode_body(&envelope.message, &mut out);
    let len = u32::try_from(out.len() - 4).expect("a frame fits u32");
    out[0..4].copy_from_slice(&len.to_le_bytes());
    let crc = frame_crc(&out[8..28], &out[4 + FRAME_HEADER_BYTES..]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

/// crc32 of the header fields after the magic (crc field excluded) and of the body.
fn frame_crc(header: &[u8], body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(header);
    crc.update(body);
    crc.finalize()
}

fn body_size_hint(message: &Message) -> usize {
    let append = |a: &Append| {
        a.entries.iter().map(|e| ENTRY_HEADER_BYTES + e.payload.len()).sum::<usize>() + 44
    };
    match message {
        Message::Append(a) => append(a),
        Message::Relay { targets, append: a } => 4 + 8 * targets.len() + append(a),
        Message::SnapshotChunks { chunks, .. } | Message::RepairChunks { chunks, .. } => {
            chunks.iter().map(|c| c.len() + 4).sum()
        }
        Message::RepairReply { entries, .. } => {
            entries.iter().map(|e| ENTRY_HEADER_BYTES + e.payload.len()).sum::<usize>() + 28
        }
        _ => 128,
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.put_u32_le(u32::try_from(len).expect("lengths are bounded below u32"));
}

fn encode_append(a: &Append, out: &mut Vec<u8>) {
    for field in [a.term, a.prev_index, a.prev_term, a.leader_commit] {
        out.put_u64_le(field);
    }
    encode_entries(&a.entries, out);
}

fn encode_entries(entries: &[Entry], out: &mut Vec<u8>) {
    put_len(out, entries.len());
    for entry in entries {
        out.put_u64_le(entry.index);
        out.put_u64_le(entry.term);
        out.put_u8(entry.kind);
        put_len(out, entry.payload.len());
        out.extend_from_slice(&entry.payload);
    }
}

fn encode_body(message: &Message, out: &mut Vec<u8>) {
    match message {
        Message::Append(a) => encode_append(a, out),
        Message::Relay { targets, append } => {
            put_len(out, targets.len());
            for target in targets {
                out.put_u64_le(*target);
            }
            encode_append(append, out);
        }
        Message::ClientWrite { .. }
        | Message::ClientReply { .. }
        | Message::Control { .. }
        | Message::ControlReply { .. }
        | Message::RepairStatus { .. }
        | Message::SlotStatus { .. } => control::encode_body(message, out),
        Message::AppendReply(r) => {
            out.put_u64_le(r.term);
            out.put_u8(status_code(r.status));
            for field in [r.match_index, r.last_index, r.last_term, r.commit_index] {
                out.put_u64_le(field);
            }
        }
        Message::Heartbeat { term, leader_commit } => {
            out.put_u64_le(*term);
            out.put_u64_le(*leader_commit);
        }
        Message::RepairRequest { term, first, last, first_term } => {
            for field in [*term, *first, *last, *first_term] {
                out.put_u64_le(field);
            }
        }
        Message::RepairReply { term, first, last, lacks, entries } => {
            for field in [*term, *first, *last] {
                out.put_u64_le(field);
            }
            out.put_u8(u8::from(*lacks));
            encode_entries(entries, out);
        }
        Message::SnapshotRequest { term, index } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
        }
        Message::SnapshotOffer { term, manifest } => {
            out.put_u64_le(*term);
            put_len(out, manifest.len());
            out.extend_from_slice(manifest);
        }
        Message::SnapshotPull { term, index, requests }
        | Message::RepairPull { term, index, requests } => {
            encode_pull(*term, *index, requests, out)
        }
        Message::SnapshotChunks { term, index, chunks }
        | Message::RepairChunks { term, index, chunks } => {
            encode_chunks(*term, *index, chunks, out)
        }
        Message::RepairOffer { term, index, manifest } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
            put_len(out, manifest.len());
            out.extend_from_slice(manifest);
        }
        Message::SlotsTaken { term, slots } => {
            out.put_u64_le(*term);
            put_slots(slots, out);
        }
        Message::CompactionFloor { term, index } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
        }
        Message::SlotsDurable { term, index, slots } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
            put_slots(slots, out);
        }
    }
}

fn status_code(status: AppendStatus) -> u8 {
    match status {
        AppendStatus::Accepted => 0,
        AppendStatus::Buffered => 1,
        AppendStatus::OutOfWindow => 2,
        AppendStatus::Mismatch => 3,
        AppendStatus::StaleTerm => 4,
        AppendStatus::Alive => 5,
    }
}

fn encode_pull(term: u64, index: u64, requests: &[ChunkRequest], out: &mut Vec<u8>) {
    out.put_u64_le(term);
    out.put_u64_le(index);
    put_len(out, requests.len());
    for r in requests {
        out.put_u32_le(r.slot);
        out.put_u64_le(r.offset);
        out.put_u32_le(r.len);
        out.put_u8(u8::try_from(r.name.len()).expect("snapshot names fit 255 bytes"));
        out.extend_from_slice(r.name.as_bytes());
    }
}

fn encode_chunks(term: u64, index: u64, chunks: &[Bytes], out: &mut Vec<u8>) {
    out.put_u64_le(term);
    out.put_u64_le(index);
    put_len(out, chunks.len());
    for chunk in chunks {
        put_len(out, chunk.len());
        out.extend_from_slice(chunk);
    }
}

fn bad(reason: &'static str) -> Error {
    Error::BadMessage { reason }
}

/// The length a frame's 4-byte prefix announces, checked against `FRAME_BYTES_MAX` before
/// anything is allocated for it.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize> {
    let len = u32::from_le_bytes(prefix);
    if len > FRAME_BYTES_MAX {
        return Err(bad("frame longer than FRAME_BYTES_MAX"));
    }
    if (len as usize) < FRAME_HEADER_BYTES {
        return Err(bad("frame shorter than its header"));
    }
    Ok(len as usize)
}

/// Decodes one frame, its length prefix excluded.
pub fn decode(frame: Bytes) -> Result<Envelope> {
    if frame.len() < FRAME_HEADER_BYTES || frame.len() > FRAME_BYTES_MAX as usize {
        return Err(bad("frame length"));
    }
    if frame[0..4] != FRAME_MAGIC {
        return Err(bad("frame magic"));
    }
    if frame[4] != WIRE_VERSION {
        return Err(bad("unsupported wire version"));
    }
    let crc = u32::from_le_bytes(frame[24..28].try_into().expect("4 bytes"));
    if frame_crc(&frame[4..24], &frame[FRAME_HEADER_BYTES..]) != crc {
        return Err(bad("frame checksum"));
    }
    if frame[6..8] != [0, 0] {
        return Err(bad("reserved bytes"));
    }
    let kind = frame[5];
    let from = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
    let to = u64::from_le_bytes(frame[16..24].try_into().expect("8 bytes"));
    let mut body = Reader { bytes: frame.slice(FRAME_HEADER_BYTES..), at: 0 };
    let message = decode_body(kind, &mut body)?;
    if body.at != body.bytes.len() {
        return Err(bad("bytes after the message"));
    }
    Ok(Envelope { from, to, message })
}

fn decode_append(r: &mut Reader) -> Result<Append> {
    let (term, prev_index, prev_term, leader_commit) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
    let entries = decode_entries(r)?;
    Ok(Append { term, prev_index, prev_term, leader_commit, entries })
}

fn decode_entries(r: &mut Reader) -> Result<Vec<Entry>> {
    let count = r.count(ENTRIES_MAX, ENTRY_HEADER_BYTES)?;
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, term) = (r.u64()?, r.u64()?);
        if index == 0 || index > INDEX_MAX {
            return Err(bad("entry index"));
        }
        let kind = r.u8()?;
        let len = r.len(FRAME_BYTES_MAX)?;
        entries.push(Entry { index, term, payload: r.bytes(len)?, kind });
    }
    Ok(entries)
}

fn decode_body(kind: u8, r: &mut Reader) -> Result<Message> {
    Ok(match kind {
        1 => Message::Append(decode_append(r)?),
        11 => {
            let count = r.count(MEMBERS_MAX as u32, 8)?;
            let targets = (0..count).map(|_| r.u64()).collect::<Result<Vec<_>>>()?;
            if targets.contains(&0) {
                return Err(bad("relay target 0"));
            }
            Message::Relay { targets, append: decode_append(r)? }
        }
        2 => {
            let term = r.u64()?;
            let status = match r.u8()? {
                0 => AppendStatus::Accepted,
                1 => AppendStatus::Buffered,
                2 => AppendStatus::OutOfWindow,
                3 => AppendStatus::Mismatch,
                4 => AppendStatus::StaleTerm,
                5 => AppendStatus::Alive,
                _ => return Err(bad("append status")),
            };
            let (match_index, last_index, last_term, commit_index) =
                (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            Message::AppendReply(AppendReply {
                term,
                status,
                match_index,
                last_index,
                last_term,
                commit_index,
            })
        }
        3 => Message::Heartbeat { term: r.u64()?, leader_commit: r.u64()? },
        12 => {
            let (term, first, last, first_term) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            Message::RepairRequest { term, first, last, first_term }
        }
        13 => {
            let (term, first, last) = (r.u64()?, r.u64()?, r.u64()?);
            let lacks = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(bad("repair reply flag")),
            };
            Message::RepairReply { term, first, last, lacks, entries: decode_entries(r)? }
        }
        14 => Message::SnapshotRequest { term: r.u64()?, index: r.u64()? },
        4 => {
            let term = r.u64()?;
            let len = r.len(FRAME_BYTES_MAX)?;
            Message::SnapshotOffer { term, manifest: r.bytes(len)? }
        }
        5 => {
            let (term, index, requests) = decode_pull(r)?;
            Message::SnapshotPull { term, index, requests }
        }
        6 => {
            let (term, index, chunks) = decode_chunks(r)?;
            Message::SnapshotChunks { term, index, chunks }
        }
        16 => {
            let (term, index) = (r.u64()?, r.u64()?);
            let len = r.len(FRAME_BYTES_MAX)?;
            Message::RepairOffer { term, index, manifest: r.bytes(len)? }
        }
        17 => {
            let (term, index, requests) = decode_pull(r)?;
            Message::RepairPull { term, index, requests }
        }
        18 => {
            let (term, index, chunks) = decode_chunks(r)?;
            Message::RepairChunks { term, index, chunks }
        }
        19 => Message::SlotsTaken { term: r.u64()?, slots: slots(r)? },
        20 => Message::CompactionFloor { term: r.u64()?, index: r.u64()? },
        21 => Message::SlotsDurable { term: r.u64()?, index: r.u64()?, slots: slots(r)? },
        7..=10 | 15 | 22 => control::decode_body(kind, r)?,
        _ => return Err(bad("message kind")),
    })
}

/// A list of slots: its count, then each (at most `SLOTS_MAX`; the caller keeps to it).
fn put_slots(slots: &[u32], out: &mut Vec<u8>) {
    let slots = &slots[..slots.len().min(SLOTS_MAX as usize)];
    put_len(out, slots.len());
    for slot in slots {
        out.put_u32_le(*slot);
    }
}

/// The list `put_slots` wrote.
fn slots(r: &mut Reader) -> Result<Vec<u32>> {
    let count = r.count(SLOTS_MAX, 4)?;
    (0..count).map(|_| r.u32()).collect()
}

fn decode_pull(r: &mut Reader) -> Result<(u64, u64, Vec<ChunkRequest>)> {
    let (term, index) = (r.u64()?, r.u64()?);
    let count = r.count(PULL_REQUESTS_MAX, 17)?;
    let mut requests = Vec::with_capacity(count);
    for _ in 0..count {
        let (slot, offset, len) = (r.u32()?, r.u64()?, r.u32()?);
        let name_len = usize::from(r.u8()?);
        let name =
            std::str::from_utf8(&r.bytes(name_len)?).map_err(|_| bad("chunk name"))?.to_string();
        requests.push(ChunkRequest { slot, name, offset, len });
    }
    Ok((term, index, requests))
}

fn decode_chunks(r: &mut Reader) -> Result<(u64, u64, Vec<Bytes>)> {
    let (term, index) = (r.u64()?, r.u64()?);
    let count = r.count(PULL_REQUESTS_MAX, 4)?;
    let mut chunks = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.len(FRAME_BYTES_MAX)?;
        chunks.push(r.bytes(len)?);
    }
    Ok((term, index, chunks))
}

/// A cursor over a frame's body; every read checks the bytes left.
struct Reader {
    bytes: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(bad("message truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A byte length, at most `max`.
    fn len(&mut self, max: u32) -> Result<usize> {
        let len = self.u32()?;
        if len > max {
            return Err(bad("length above its maximum"));
        }
        Ok(len as usize)
    }

    /// An item count, at most `max`, whose items (each at least `item_bytes_min`) fit in the
    /// bytes left: checked before anything is allocated for them.
    fn count(&mut self, max: u32, item_bytes_min: usize) -> Result<usize> {
        let count = self.len(max)?;
        let left = self.bytes.len() - self.at;
        if count.saturating_mul(item_bytes_min) > left {
            return Err(bad("count beyond the bytes left"));
        }
        Ok(count)
    }

    /// The next `n` bytes, shared with the frame.
    fn bytes(&mut self, n: usize) -> Result<Bytes> {
        let start = self.at;
        self.take(n)?;
        Ok(self.bytes.slice(start..start + n))
    }
}
