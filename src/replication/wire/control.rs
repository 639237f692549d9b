//! The wire codec of the messages of clients and operators (`ClientWrite`, `ClientReply`,
//! `Control`, `ControlReply`, `RepairStatus`, `SlotStatus`), with the node status, repair
//! report and slot pulls they carry; the frame and the messages between nodes are the
//! parent's.
//!
//! Invariants: those of the parent (every count and length checked against its maximum and
//! the bytes left before anything is allocated; `decode_body(encode_body(m)) == m`).

use bytes::BufMut;

use super::{bad, put_len, put_slots, slots, Reader, FRAME_BYTES_MAX, PEERS_MAX, TEXT_BYTES_MAX};
use crate::error::Result;
use crate::replication::membership::ConfChange;
use crate::replication::message::{
    ClientOutcome, ControlOp, Message, NodeStatus, PeerStatus, RepairReport, Repaired, SlotPull,
};
use crate::replication::repair::REPORTS_MAX;
use crate::replication::slot_moves::PULLS_MAX;

/// Encodes the body of a client's or an operator's message (the parent encodes the others).
pub(super) fn encode_body(message: &Message, out: &mut Vec<u8>) {
    match message {
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
                ControlOp::Slots => out.put_u8(9),
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
        Message::RepairStatus { request_id, report } => {
            out.put_u64_le(*request_id);
            encode_report(report, out);
        }
        Message::SlotStatus { request_id, pending, pulls } => {
            out.put_u64_le(*request_id);
            put_slots(pending, out);
            let pulls = &pulls[pulls.len().saturating_sub(PULLS_MAX)..];
            put_len(out, pulls.len());
            for pull in pulls {
                out.put_u32_le(pull.slot);
                for field in [pull.from, pull.source, pull.index, pull.bytes] {
                    out.put_u64_le(field);
                }
            }
        }
        _ => unreachable!("the parent encodes the messages between nodes"),
    }
}

/// Decodes the body of a message of kind 7 to 10, 15 or 22.
pub(super) fn decode_body(kind: u8, r: &mut Reader) -> Result<Message> {
    Ok(match kind {
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
                9 => ControlOp::Slots,
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
        15 => Message::RepairStatus { request_id: r.u64()?, report: decode_report(r)? },
        22 => {
            let (request_id, pending) = (r.u64()?, slots(r)?);
            let count = r.count(PULLS_MAX as u32, 36)?;
            let pulls = (0..count)
                .map(|_| {
                    let slot = r.u32()?;
                    let (from, source, index, bytes) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                    Ok(SlotPull { slot, from, source, index, bytes })
                })
                .collect::<Result<Vec<_>>>()?;
            Message::SlotStatus { request_id, pending, pulls }
        }
        _ => return Err(bad("message kind")),
    })
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

fn outcome_code(outcome: ClientOutcome) -> u8 {
    match outcome {
        ClientOutcome::Committed => 0,
        ClientOutcome::NotLeader => 1,
        ClientOutcome::Busy => 2,
        ClientOutcome::Unknown => 3,
    }
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
    ranges(&report.cut, out);
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
    let lost = ranges(r)?;
    Ok(RepairReport { damaged, repaired, lost, cut: ranges(r)? })
}
