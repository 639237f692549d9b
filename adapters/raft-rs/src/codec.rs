//! How raft-rs values are kept in raftlog.
//!
//! - An `eraftpb::Entry` is stored whole, as its protobuf encoding, in the payload of the
//!   raftlog entry of the same index and term; the raftlog entry's kind is the entry type
//!   (0 normal, 1 conf change, 2 conf change v2). Every field, unknown ones included, comes
//!   back as it was given.
//! - The `ConfState` is the engine metadata kept with the hard state (protobuf encoding).
//! - A snapshot is a `SnapshotStore` snapshot whose configuration is the `ConfState`'s encoding
//!   and whose slot `DATA_SLOT` holds the snapshot's data as the file `DATA_FILE`; or, taken
//!   as per-slot files, whose message carries `MANIFEST_MARKER` then the manifest, the files
//!   travelling by raftlog's chunked transfer.
//!
//! Invariants:
//! 1. Decoding never panics: bytes that do not decode are `StorageError::Other`.
//! 2. A raftlog entry decodes to a raft-rs entry of the same index and term, or is an error.

use protobuf::Message;
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{Error as RaftError, StorageError};

/// Opens the data of a snapshot whose files travel by raftlog's chunked transfer; the
/// snapshot's manifest follows it.
pub const MANIFEST_MARKER: &[u8] = b"raftlog snapshot manifest\n";

/// The raftlog manifest a snapshot message carries instead of its data, if it does: its
/// files are then pulled from the leader (`DiskStorage::receive_snapshot`).
pub fn manifest_of(snapshot: &raft::eraftpb::Snapshot) -> Option<&[u8]> {
    snapshot.data.strip_prefix(MANIFEST_MARKER)
}

/// The slot that holds a raft-rs snapshot's data.
pub const DATA_SLOT: u32 = 0;
/// The file name of a raft-rs snapshot's data in `DATA_SLOT`.
pub const DATA_FILE: &str = "data";

/// A raftlog error as raft-rs expects it: `Compacted` and `Unavailable` as such, anything
/// else as `StorageError::Other`.
pub fn storage_error(error: raftlog::Error) -> RaftError {
    match error {
        raftlog::Error::Compacted { .. } => RaftError::Store(StorageError::Compacted),
        raftlog::Error::Unavailable { .. } => RaftError::Store(StorageError::Unavailable),
        other => RaftError::Store(StorageError::Other(Box::new(other))),
    }
}

/// A decoding failure as a storage error.
pub fn undecodable(what: &'static str, error: protobuf::ProtobufError) -> RaftError {
    let message = format!("{what} does not decode: {error}");
    RaftError::Store(StorageError::Other(message.into()))
}

/// The raftlog entry that keeps `entry`.
pub fn to_raftlog(entry: &Entry) -> raft::Result<raftlog::Entry> {
    let payload = entry.write_to_bytes().map_err(|e| undecodable("entry", e))?;
    let kind = u8::try_from(entry.get_entry_type() as i32).unwrap_or(u8::MAX);
    Ok(raftlog::Entry::new(entry.index, entry.term, payload).with_kind(kind))
}

/// The raft-rs entry a raftlog entry keeps.
pub fn from_raftlog(entry: &raftlog::Entry) -> raft::Result<Entry> {
    let decoded = Entry::parse_from_bytes(&entry.payload).map_err(|e| undecodable("entry", e))?;
    if decoded.index != entry.index || decoded.term != entry.term {
        let message = format!("entry {} holds the bytes of entry {}", entry.index, decoded.index);
        return Err(RaftError::Store(StorageError::Other(message.into())));
    }
    Ok(decoded)
}

/// The metadata bytes of a `ConfState`.
pub fn encode_conf_state(conf_state: &ConfState) -> raft::Result<Vec<u8>> {
    conf_state.write_to_bytes().map_err(|e| undecodable("conf state", e))
}

/// The `ConfState` kept in metadata bytes (the default one when there are none).
pub fn decode_conf_state(bytes: &[u8]) -> raft::Result<ConfState> {
    ConfState::parse_from_bytes(bytes).map_err(|e| undecodable("conf state", e))
}

/// raftlog's hard state of raft-rs's.
pub fn to_raftlog_hard_state(hard_state: &HardState) -> raftlog::HardState {
    raftlog::HardState::new(hard_state.term, hard_state.vote, hard_state.commit)
}

/// raft-rs's hard state of raftlog's.
pub fn from_raftlog_hard_state(hard_state: raftlog::HardState) -> HardState {
    HardState {
        term: hard_state.term,
        vote: hard_state.vote,
        commit: hard_state.commit,
        ..HardState::default()
    }
}
