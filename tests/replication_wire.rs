//! The replication wire codec: every message round-trips; arbitrary bytes, flipped bits and
//! truncated frames are a typed `Error::BadMessage`, never a panic; and the golden frames of
//! wire version 1 (format/golden/wire-v1, regenerated with `RAFTLOG_WRITE_GOLDEN=wire`) still
//! decode to the same messages and re-encode to the same bytes.

use bytes::Bytes;
use proptest::prelude::*;
use raftlog::replication::wire::{decode, encode, frame_len};
use raftlog::replication::{
    Append, AppendReply, AppendStatus, ClientOutcome, ConfChange, ControlOp, Envelope, Message,
    NodeStatus, PeerStatus, RepairReport, Repaired, SlotPull,
};
use raftlog::snapshot::ChunkRequest;
use raftlog::{Entry, Error};

fn entry() -> impl Strategy<Value = Entry> {
    (1..=i64::MAX as u64, any::<u64>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64))
        .prop_map(|(index, term, kind, payload)| Entry::new(index, term, payload).with_kind(kind))
}

fn status() -> impl Strategy<Value = AppendStatus> {
    prop_oneof![
        Just(AppendStatus::Accepted),
        Just(AppendStatus::Buffered),
        Just(AppendStatus::OutOfWindow),
        Just(AppendStatus::Mismatch),
        Just(AppendStatus::StaleTerm),
        Just(AppendStatus::Alive),
    ]
}

fn node_status() -> impl Strategy<Value = NodeStatus> {
    let peer = (any::<u64>(), any::<u64>(), any::<u64>(), 0u8..3, any::<u64>()).prop_map(
        |(id, match_index, next_index, state, bytes_sent)| PeerStatus {
            id,
            match_index,
            next_index,
            state,
            batches_sent: bytes_sent / 3,
            bytes_sent,
            snapshots_sent: bytes_sent % 5,
        },
    );
    (any::<[u64; 6]>(), any::<bool>(), proptest::collection::vec(peer, 0..4)).prop_map(
        |(f, leader, peers)| NodeStatus {
            id: f[0],
            term: f[1],
            leader,
            leader_id: f[2],
            first_index: f[3],
            last_index: f[4],
            last_term: f[5],
            commit_index: f[3] ^ 1,
            applied_index: f[4] ^ 2,
            snapshot_index: f[5] ^ 3,
            snapshots_installed: f[0] ^ 4,
            peers,
        },
    )
}

fn repair_report() -> impl Strategy<Value = RepairReport> {
    let ranges = || proptest::collection::vec(any::<(u64, u64)>(), 0..4);
    let repaired = proptest::collection::vec(any::<[u64; 3]>(), 0..4).prop_map(|list| {
        list.into_iter().map(|f| Repaired { first: f[0], last: f[1], from: f[2] }).collect()
    });
    (ranges(), repaired, ranges(), ranges())
        .prop_map(|(damaged, repaired, lost, cut)| RepairReport { damaged, repaired, lost, cut })
}

fn message() -> impl Strategy<Value = Message> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..128).prop_map(Bytes::from);
    let request = || {
        (any::<u32>(), "[a-z]{1,12}", any::<u64>(), any::<u32>())
            .prop_map(|(slot, name, offset, len)| ChunkRequest { slot, name, offset, len })
    };
    prop_oneof![
        (any::<[u64; 4]>(), proptest::collection::vec(entry(), 0..8)).prop_map(|(f, entries)| {
            Message::Append(Append {
                term: f[0],
                prev_index: f[1],
                prev_term: f[2],
                leader_commit: f[3],
                entries,
            })
        }),
        (
            proptest::collection::vec(1u64..u64::MAX, 0..6),
            any::<[u64; 4]>(),
            proptest::collection::vec(entry(), 0..4)
        )
            .prop_map(|(targets, f, entries)| Message::Relay {
                targets,
                append: Append {
                    term: f[0],
                    prev_index: f[1],
                    prev_term: f[2],
                    leader_commit: f[3],
                    entries,
                },
            }),
        (any::<[u64; 5]>(), status()).prop_map(|(f, status)| Message::AppendReply(AppendReply {
            term: f[0],
            status,
            match_index: f[1],
            last_index: f[2],
            last_term: f[3],
            commit_index: f[4],
        })),
        (any::<u64>(), any::<u64>())
            .prop_map(|(term, leader_commit)| Message::Heartbeat { term, leader_commit }),
        (any::<u64>(), bytes())
            .prop_map(|(term, manifest)| Message::SnapshotOffer { term, manifest }),
        (any::<u64>(), any::<u64>(), proptest::collection::vec(request(), 0..4))
            .prop_map(|(term, index, requests)| Message::SnapshotPull { term, index, requests }),
        (any::<u64>(), any::<u64>(), proptest::collection::vec(bytes(), 0..4))
            .prop_map(|(term, index, chunks)| Message::SnapshotChunks { term, index, chunks }),
        (any::<u64>(), bytes())
            .prop_map(|(request_id, payload)| Message::ClientWrite { request_id, payload }),
        (any::<[u64; 3]>(), 0u8..4).prop_map(|(f, o)| Message::ClientReply {
            request_id: f[0],
            outcome: [
                ClientOutcome::Committed,
                ClientOutcome::NotLeader,
                ClientOutcome::Busy,
                ClientOutcome::Unknown
            ][o as usize],
            index: f[1],
            leader: f[2],
        }),
        (any::<[u64; 3]>(), any::<bool>(), proptest::collection::vec(entry(), 0..4)).prop_map(
            |(f, lacks, entries)| Message::RepairReply {
                term: f[0],
                first: f[1],
                last: f[2],
                lacks,
                entries
            }
        ),
        any::<[u64; 4]>().prop_map(|f| Message::RepairRequest {
            term: f[0],
            first: f[1],
            last: f[2],
            first_term: f[3]
        }),
        any::<[u64; 2]>().prop_map(|f| Message::SnapshotRequest { term: f[0], index: f[1] }),
        (any::<[u64; 2]>(), bytes()).prop_map(|(f, manifest)| Message::RepairOffer {
            term: f[0],
            index: f[1],
            manifest
        }),
        (any::<[u64; 2]>(), proptest::collection::vec(request(), 0..4))
            .prop_map(|(f, requests)| Message::RepairPull { term: f[0], index: f[1], requests }),
        (any::<[u64; 2]>(), proptest::collection::vec(bytes(), 0..4))
            .prop_map(|(f, chunks)| { Message::RepairChunks { term: f[0], index: f[1], chunks } }),
        (any::<u64>(), repair_report())
            .prop_map(|(request_id, report)| Message::RepairStatus { request_id, report }),
        (any::<u64>(), proptest::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(term, slots)| Message::SlotsTaken { term, slots }),
        any::<[u64; 2]>().prop_map(|f| Message::CompactionFloor { term: f[0], index: f[1] }),
        (any::<[u64; 2]>(), proptest::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(f, slots)| Message::SlotsDurable { term: f[0], index: f[1], slots }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<u32>(), 0..8),
            proptest::collection::vec((any::<u32>(), any::<[u64; 4]>()), 0..4)
        )
            .prop_map(|(request_id, pending, pulls)| Message::SlotStatus {
                request_id,
                pending,
                pulls: pulls
                    .into_iter()
                    .map(|(slot, f)| SlotPull {
                        slot,
                        from: f[0],
                        source: f[1],
                        index: f[2],
                        bytes: f[3]
                    })
                    .collect(),
            }),
        (any::<[u64; 5]>(), 0u8..10).prop_map(|(f, op)| Message::Control {
            request_id: f[0],
            op: match op {
                0 => ControlOp::Status,
                1 => ControlOp::Vote {
                    term: f[1],
                    candidate: f[2],
                    last_index: f[3],
                    last_term: f[4]
                },
                2 => ControlOp::BecomeLeader { term: f[1] },
                3 => ControlOp::Snapshot,
                4 => ControlOp::Shutdown,
                5 => ControlOp::ChangeMembership(ConfChange::AddLearner(f[1])),
                6 => ControlOp::ChangeMembership(ConfChange::Promote(f[1])),
                7 => ControlOp::ChangeMembership(ConfChange::Remove(f[1])),
                8 => ControlOp::Repairs,
                _ => ControlOp::Slots,
            },
        }),
        (any::<u64>(), any::<bool>(), "[ -~]{0,40}", node_status()).prop_map(
            |(request_id, ok, error, status)| Message::ControlReply {
                request_id,
                ok,
                error,
                status
            }
        ),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (any::<u64>(), any::<u64>(), message()).prop_map(|(from, to, message)| Envelope {
        from,
        to,
        message,
    })
}

/// The frame without its length prefix, as `decode` takes it.
fn frame(envelope: &Envelope) -> Bytes {
    let bytes = encode(envelope);
    assert_eq!(frame_len(bytes[..4].try_into().unwrap()).unwrap(), bytes.len() - 4);
    Bytes::from(bytes).slice(4..)
}

proptest! {
    #[test]
    fn every_message_round_trips(envelope in envelope()) {
        prop_assert_eq!(decode(frame(&envelope)).unwrap(), envelope);
    }

    #[test]
    fn arbitrary_bytes_are_a_typed_error_or_a_message(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        match decode(Bytes::from(bytes)) {
            Ok(_) | Err(Error::BadMessage { .. }) => {}
            Err(other) => prop_assert!(false, "untyped error {other}"),
        }
    }

    #[test]
    fn a_flipped_bit_or_a_cut_is_refused(envelope in envelope(), at in any::<usize>(), bit in 0u8..8) {
        let frame = frame(&envelope);
        let mut flipped = frame.to_vec();
        let at = at % flipped.len();
        flipped[at] ^= 1 << bit;
        let refused = matches!(decode(Bytes::from(flipped)), Err(Error::BadMessage { .. }));
        prop_assert!(refused, "a flipped bit at {} was accepted", at);
        let cut = frame.slice(..at);
        let refused = matches!(decode(cut), Err(Error::BadMessage { .. }));
        prop_assert!(refused, "a frame cut at {} was accepted", at);
    }
}

#[test]
fn a_length_prefix_beyond_the_limit_is_refused_before_any_allocation() {
    assert!(matches!(frame_len(u32::MAX.to_le_bytes()), Err(Error::BadMessage { .. })));
    assert!(matches!(frame_len(3u32.to_le_bytes()), Err(Error::BadMessage { .. })));
}

/// One message of each kind, fixed: the golden frames of wire version 1.
fn golden_messages() -> Vec<(&'static str, Envelope)> {
    let envelope = |from, to, message| Envelope { from, to, message };
    let status = NodeStatus {
        id: 1,
        term: 3,
        leader: true,
        leader_id: 1,
        first_index: 1,
        last_index: 9,
        last_term: 3,
        commit_index: 8,
        applied_index: 8,
        snapshot_index: 0,
        snapshots_installed: 0,
        peers: vec![PeerStatus {
            id: 2,
            match_index: 8,
            next_index: 10,
            state: 1,
            batches_sent: 4,
            bytes_sent: 90,
            snapshots_sent: 0,
        }],
    };
    vec![
        (
            "append",
            envelope(
                1,
                2,
                Message::Append(Append {
                    term: 3,
                    prev_index: 7,
                    prev_term: 2,
                    leader_commit: 7,
                    entries: vec![Entry::new(8, 3, "set x = 1"), Entry::new(9, 3, "").with_kind(1)],
                }),
            ),
        ),
        (
            "relay",
            envelope(
                1,
                3,
                Message::Relay {
                    targets: vec![4, 5],
                    append: Append {
                        term: 3,
                        prev_index: 7,
                        prev_term: 2,
                        leader_commit: 7,
                        entries: vec![Entry::new(8, 3, "set x = 1")],
                    },
                },
            ),
        ),
        (
            "append_reply",
            envelope(
                2,
                1,
                Message::AppendReply(AppendReply {
                    term: 3,
                    status: AppendStatus::Accepted,
                    match_index: 9,
                    last_index: 9,
                    last_term: 3,
                    commit_index: 7,
                }),
            ),
        ),
        ("heartbeat", envelope(1, 2, Message::Heartbeat { term: 3, leader_commit: 9 })),
        (
            "snapshot_offer",
            envelope(
                1,
                3,
                Message::SnapshotOffer {
                    term: 3,
                    manifest: Bytes::from_static(b"RLSM manifest bytes"),
                },
            ),
        ),
        (
            "snapshot_pull",
            envelope(
                3,
                1,
                Message::SnapshotPull {
                    term: 3,
                    index: 5,
                    requests: vec![ChunkRequest {
                        slot: 0,
                        name: "checksum".into(),
                        offset: 0,
                        len: 32,
                    }],
                },
            ),
        ),
        (
            "snapshot_chunks",
            envelope(
                1,
                3,
                Message::SnapshotChunks {
                    term: 3,
                    index: 5,
                    chunks: vec![Bytes::from_static(b"RLSC chunk bytes")],
                },
            ),
        ),
        (
            "client_write",
            envelope(
                0,
                1,
                Message::ClientWrite { request_id: 42, payload: Bytes::from_static(b"hello") },
            ),
        ),
        (
            "client_reply",
            envelope(
                1,
                0,
                Message::ClientReply {
                    request_id: 42,
                    outcome: ClientOutcome::Committed,
                    index: 9,
                    leader: 1,
                },
            ),
        ),
        (
            "control",
            envelope(
                0,
                2,
                Message::Control {
                    request_id: 7,
                    op: ControlOp::Vote { term: 4, candidate: 2, last_index: 9, last_term: 3 },
                },
            ),
        ),
        (
            "control_change_membership",
            envelope(
                0,
                1,
                Message::Control {
                    request_id: 8,
                    op: ControlOp::ChangeMembership(ConfChange::AddLearner(4)),
                },
            ),
        ),
        (
            "repair_request",
            envelope(2, 3, Message::RepairRequest { term: 3, first: 5, last: 6, first_term: 2 }),
        ),
        (
            "repair_reply",
            envelope(
                3,
                2,
                Message::RepairReply {
                    term: 3,
                    first: 5,
                    last: 6,
                    lacks: false,
                    entries: vec![Entry::new(5, 2, "set y = 2"), Entry::new(6, 3, "")],
                },
            ),
        ),
        ("snapshot_request", envelope(2, 1, Message::SnapshotRequest { term: 3, index: 5 })),
        (
            "repair_offer",
            envelope(
                1,
                2,
                Message::RepairOffer {
                    term: 3,
                    index: 8,
                    manifest: Bytes::from_static(b"RLSM..."),
                },
            ),
        ),
        (
            "repair_pull",
            envelope(
                2,
                1,
                Message::RepairPull {
                    term: 3,
                    index: 8,
                    requests: vec![ChunkRequest {
                        slot: 0,
                        name: "checksum".into(),
                        offset: 0,
                        len: 32,
                    }],
                },
            ),
        ),
        (
            "repair_chunks",
            envelope(
                1,
                2,
                Message::RepairChunks {
                    term: 3,
                    index: 8,
                    chunks: vec![Bytes::from_static(b"a chunk")],
                },
            ),
        ),
        (
            "control_repairs",
            envelope(0, 2, Message::Control { request_id: 9, op: ControlOp::Repairs }),
        ),
        (
            "repair_status",
            envelope(
                2,
                0,
                Message::RepairStatus {
                    request_id: 9,
                    report: RepairReport {
                        damaged: vec![(7, 7)],
                        repaired: vec![Repaired { first: 5, last: 6, from: 3 }],
                        lost: vec![(2, 2)],
                        cut: vec![(9, 12)],
                    },
                },
            ),
        ),
        ("slots_taken", envelope(3, 1, Message::SlotsTaken { term: 3, slots: vec![2, 7] })),
        ("compaction_floor", envelope(1, 2, Message::CompactionFloor { term: 3, index: 40 })),
        (
            "slots_durable",
            envelope(2, 1, Message::SlotsDurable { term: 3, index: 44, slots: vec![0, 2, 7] }),
        ),
        (
            "control_slots",
            envelope(0, 2, Message::Control { request_id: 10, op: ControlOp::Slots }),
        ),
        (
            "slot_status",
            envelope(
                2,
                0,
                Message::SlotStatus {
                    request_id: 10,
                    pending: vec![9],
                    pulls: vec![SlotPull { slot: 7, from: 5, source: 3, index: 44, bytes: 32 }],
                },
            ),
        ),
        (
            "control_reply",
            envelope(
                1,
                0,
                Message::ControlReply { request_id: 7, ok: true, error: String::new(), status },
            ),
        ),
    ]
}

#[test]
fn golden_frames_of_wire_version_1_still_decode() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("format/golden/wire-v1");
    if std::env::var("RAFTLOG_WRITE_GOLDEN").as_deref() == Ok("wire") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, envelope) in golden_messages() {
            std::fs::write(dir.join(format!("{name}.bin")), encode(&envelope)).unwrap();
        }
    }
    for (name, envelope) in golden_messages() {
        let path = dir.join(format!("{name}.bin"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded =
            decode(Bytes::from(bytes.clone()).slice(4..)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, envelope, "{name}");
        assert_eq!(encode(&envelope), bytes, "{name}: the encoding drifted from wire version 1");
    }
}
