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

use super::membership::{ConfChange, MEMBERS_MAX};
use super::message::{
    Append, AppendReply, AppendStatus, ClientOutcome, ControlOp, Envelope, Message, NodeStatus,
    PeerStatus, RepairReport, Repaired,
};
use super::repair::REPORTS_MAX;
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
        Message::SnapshotChunks { chunks, .. } => chunks.iter().map(|c| c.len() + 4).sum(),
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
        Message::RepairRequest { term, first, last } => {
            for field in [*term, *first, *last] {
                out.put_u64_le(field);
            }
        }
        Message::RepairReply { term, first, last, entries } => {
            for field in [*term, *first, *last] {
                out.put_u64_le(field);
            }
            encode_entries(entries, out);
        }
        Message::SnapshotRequest { term, index } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
        }
        Message::RepairStatus { request_id, report } => {
            out.put_u64_le(*request_id);
            encode_report(report, out);
        }
        Message::SnapshotOffer { term, manifest } => {
            out.put_u64_le(*term);
            put_len(out, manifest.len());
            out.extend_from_slice(manifest);
        }
        Message::SnapshotPull { term, index, requests } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
            put_len(out, requests.len());
            for r in requests {
                out.put_u32_le(r.slot);
                out.put_u64_le(r.offset);
                out.put_u32_le(r.len);
                out.put_u8(u8::try_from(r.name.len()).expect("snapshot names fit 255 bytes"));
                out.extend_from_slice(r.name.as_bytes());
            }
        }
        Message::SnapshotChunks { term, index, chunks } => {
            out.put_u64_le(*term);
            out.put_u64_le(*index);
            put_len(out, chunks.len());
            for chunk in chunks {
                put_len(out, chunk.len());
                out.extend_from_slice(chunk);
            }
        }
        Message::ClientWrite { request_id, payload } => {
            out.put_u64_le(*request_id);
            put_len(out, payload.len());
            out.extend_from_slice(payload);
        }
        Message::ClientReply { request_id, outcome, index, leader } => {
            out.put_u64_le(*request_id);
            out.put_u8(outcome_code(*outcome));
            out.put_u64_le(*index);
            out.put_u64_le(*leader);
        }
        Message::Control { request_id, op } => {
            out.put_u64_le(*request_id);
            match op {
                ControlOp::Status => out.put_u8(0),
                ControlOp::Vote { term, candidate, last_index, last_term } => {
                    out.put_u8(1);
                    for field in [*term, *candidate, *last_index, *last_term] {
                        out.put_u64_le(field);
                    }
                }
                ControlOp::BecomeLeader { term } => {
                    out.put_u8(2);
                    out.put_u64_le(*term);
                }
                ControlOp::Snapshot => out.put_u8(3),
                ControlOp::Shutdown => out.put_u8(4),
                ControlOp::Repairs => out.put_u8(8),
                ControlOp::ChangeMembership(change) => {
                    let (code, node) = match change {
                        ConfChange::AddLearner(node) => (5, node),
                        ConfChange::Promote(node) => (6, node),
                        ConfChange::Remove(node) => (7, node),
                    };
                    out.put_u8(code);
                    out.put_u64_le(*node);
                }
            }
        }
        Message::ControlReply { request_id, ok, error, status } => {
            out.put_u64_le(*request_id);
            out.put_u8(u8::from(*ok));
            let text = truncated(error);
            put_len(out, text.len());
            out.extend_from_slice(text.as_bytes());
            encode_status(status, out);
        }
    }
}

/// `text` cut to `TEXT_BYTES_MAX` bytes at a character boundary.
fn truncated(text: &str) -> &str {
    let mut end = text.len().min(TEXT_BYTES_MAX as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn encode_status(s: &NodeStatus, out: &mut Vec<u8>) {
    for field in [s.id, s.term, u64::from(s.leader), s.leader_id, s.first_index, s.last_index] {
        out.put_u64_le(field);
    }
    for field in [s.last_term, s.commit_index, s.applied_index, s.snapshot_index] {
        out.put_u64_le(field);
    }
    out.put_u64_le(s.snapshots_installed);
    let peers = &s.peers[..s.peers.len().min(PEERS_MAX as usize)];
    put_len(out, peers.len());
    for p in peers {
        for field in [p.id, p.match_index, p.next_index] {
            out.put_u64_le(field);
        }
        out.put_u8(p.state);
        for field in [p.batches_sent, p.bytes_sent, p.snapshots_sent] {
            out.put_u64_le(field);
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

fn outcome_code(outcome: ClientOutcome) -> u8 {
    match outcome {
        ClientOutcome::Committed => 0,
        ClientOutcome::NotLeader => 1,
        ClientOutcome::Busy => 2,
        ClientOutcome::Unknown => 3,
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
        12 => Message::RepairRequest { term: r.u64()?, first: r.u64()?, last: r.u64()? },
        13 => {
            let (term, first, last) = (r.u64()?, r.u64()?, r.u64()?);
            Message::RepairReply { term, first, last, entries: decode_entries(r)? }
        }
        14 => Message::SnapshotRequest { term: r.u64()?, index: r.u64()? },
        15 => Message::RepairStatus { request_id: r.u64()?, report: decode_report(r)? },
        4 => {
            let term = r.u64()?;
            let len = r.len(FRAME_BYTES_MAX)?;
            Message::SnapshotOffer { term, manifest: r.bytes(len)? }
        }
        5 => {
            let (term, index) = (r.u64()?, r.u64()?);
            let count = r.count(PULL_REQUESTS_MAX, 17)?;
            let mut requests = Vec::with_capacity(count);
            for _ in 0..count {
                let (slot, offset, len) = (r.u32()?, r.u64()?, r.u32()?);
                let name_len = usize::from(r.u8()?);
                let name = std::str::from_utf8(&r.bytes(name_len)?)
                    .map_err(|_| bad("chunk name"))?
                    .to_string();
                requests.push(ChunkRequest { slot, name, offset, len });
            }
            Message::SnapshotPull { term, index, requests }
        }
        6 => {
            let (term, index) = (r.u64()?, r.u64()?);
            let count = r.count(PULL_REQUESTS_MAX, 4)?;
            let mut chunks = Vec::with_capacity(count);
            for _ in 0..count {
                let len = r.len(FRAME_BYTES_MAX)?;
                chunks.push(r.bytes(len)?);
            }
            Message::SnapshotChunks { term, index, chunks }
        }
        7 => {
            let request_id = r.u64()?;
            let len = r.len(FRAME_BYTES_MAX)?;
            Message::ClientWrite { request_id, payload: r.bytes(len)? }
        }
        8 => {
            let request_id = r.u64()?;
            let outcome = match r.u8()? {
                0 => ClientOutcome::Committed,
                1 => ClientOutcome::NotLeader,
                2 => ClientOutcome::Busy,
                3 => ClientOutcome::Unknown,
                _ => return Err(bad("client outcome")),
            };
            Message::ClientReply { request_id, outcome, index: r.u64()?, leader: r.u64()? }
        }
        9 => {
            let request_id = r.u64()?;
            let op = match r.u8()? {
                0 => ControlOp::Status,
                1 => ControlOp::Vote {
                    term: r.u64()?,
                    candidate: r.u64()?,
                    last_index: r.u64()?,
                    last_term: r.u64()?,
                },
                2 => ControlOp::BecomeLeader { term: r.u64()? },
                3 => ControlOp::Snapshot,
                4 => ControlOp::Shutdown,
                5 => ControlOp::ChangeMembership(ConfChange::AddLearner(r.u64()?)),
                6 => ControlOp::ChangeMembership(ConfChange::Promote(r.u64()?)),
                7 => ControlOp::ChangeMembership(ConfChange::Remove(r.u64()?)),
                8 => ControlOp::Repairs,
                _ => return Err(bad("control operation")),
            };
            Message::Control { request_id, op }
        }
        10 => {
            let request_id = r.u64()?;
            let ok = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(bad("control flag")),
            };
            let len = r.len(TEXT_BYTES_MAX)?;
            let error =
                String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| bad("control error text"))?;
            Message::ControlReply { request_id, ok, error, status: decode_status(r)? }
        }
        _ => return Err(bad("message kind")),
    })
}

fn decode_status(r: &mut Reader) -> Result<NodeStatus> {
    let mut s = NodeStatus { id: r.u64()?, term: r.u64()?, ..NodeStatus::default() };
    s.leader = match r.u64()? {
        0 => false,
        1 => true,
        _ => return Err(bad("status leader flag")),
    };
    s.leader_id = r.u64()?;
    s.first_index = r.u64()?;
    s.last_index = r.u64()?;
    s.last_term = r.u64()?;
    s.commit_index = r.u64()?;
    s.applied_index = r.u64()?;
    s.snapshot_index = r.u64()?;
    s.snapshots_installed = r.u64()?;
    let count = r.count(PEERS_MAX, 49)?;
    for _ in 0..count {
        let (id, match_index, next_index) = (r.u64()?, r.u64()?, r.u64()?);
        let state = r.u8()?;
        if state > 2 {
            return Err(bad("peer state"));
        }
        let (batches_sent, bytes_sent, snapshots_sent) = (r.u64()?, r.u64()?, r.u64()?);
        s.peers.push(PeerStatus {
            id,
            match_index,
            next_index,
            state,
            batches_sent,
            bytes_sent,
            snapshots_sent,
        });
    }
    Ok(s)
}

fn encode_report(report: &RepairReport, out: &mut Vec<u8>) {
    let ranges = |list: &[(u64, u64)], out: &mut Vec<u8>| {
        let list = &list[list.len().saturating_sub(REPORTS_MAX)..];
        put_len(out, list.len());
        for (first, last) in list {
            out.put_u64_le(*first);
            out.put_u64_le(*last);
        }
    };
    ranges(&report.damaged, out);
    let repaired = &report.repaired[report.repaired.len().saturating_sub(REPORTS_MAX)..];
    put_len(out, repaired.len());
    for r in repaired {
        for field in [r.first, r.last, r.from] {
            out.put_u64_le(field);
        }
    }
    ranges(&report.lost, out);
}

fn decode_report(r: &mut Reader) -> Result<RepairReport> {
    let ranges = |r: &mut Reader| -> Result<Vec<(u64, u64)>> {
        let count = r.count(REPORTS_MAX as u32, 16)?;
        (0..count).map(|_| Ok((r.u64()?, r.u64()?))).collect()
    };
    let damaged = ranges(r)?;
    let count = r.count(REPORTS_MAX as u32, 24)?;
    let repaired = (0..count)
        .map(|_| Ok(Repaired { first: r.u64()?, last: r.u64()?, from: r.u64()? }))
        .collect::<Result<Vec<_>>>()?;
    Ok(RepairReport { damaged, repaired, lost: ranges(r)? })
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
