//! How openraft's entries and vote are kept in raftlog (the crate docs' "Encoding" section).
//!
//! Invariants:
//! 1. raftlog index = openraft index + 1 (openraft's log starts at 0, raftlog's at 1); the
//!    raftlog term is the leader's term.
//! 2. An entry's raftlog payload is bincode 2 (serde, standard config) of `(leader node id,
//!    EntryPayload)`, encoded once; its raftlog kind byte names the variant (`KIND_*`).
//! 3. The store's metadata is `Meta` in bincode 2 after a version byte: the full `Vote`, the
//!    committed and the last purged log ids. Decoding checks the version and consumes every byte.

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftTypeConfig, Vote};
use serde::{Deserialize, Serialize};

/// raftlog kind byte of an `EntryPayload::Blank`.
pub const KIND_BLANK: u8 = 0;
/// raftlog kind byte of an `EntryPayload::Normal`.
pub const KIND_NORMAL: u8 = 1;
/// raftlog kind byte of an `EntryPayload::Membership`.
pub const KIND_MEMBERSHIP: u8 = 2;

const META_VERSION: u8 = 1;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// bincode refused them.
    #[error("bincode: {0}")]
    Bincode(String),
    /// The kind byte names another variant than the payload holds, or bytes trail it.
    #[error("entry {index}: kind {kind} does not match its payload")]
    Kind { index: u64, kind: u8 },
    /// A metadata version this code does not know.
    #[error("unknown metadata version {0}")]
    Version(u8),
}

/// The raftlog entry of `entry`.
pub fn encode_entry<C>(entry: &Entry<C>) -> Result<raftlog::Entry, DecodeError>
where
    C: RaftTypeConfig<NodeId = u64>,
{
    let kind = match entry.payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    let leader = entry.log_id.leader_id.node_id;
    let payload = bincode::serde::encode_to_vec((leader, &entry.payload), config())
        .map_err(|e| DecodeError::Bincode(e.to_string()))?;
    Ok(raftlog::Entry::new(entry.log_id.index + 1, entry.log_id.leader_id.term, payload)
        .with_kind(kind))
}

/// The openraft entry of a raftlog entry `encode_entry` made.
pub fn decode_entry<C>(entry: &raftlog::Entry) -> Result<Entry<C>, DecodeError>
where
    C: RaftTypeConfig<NodeId = u64>,
{
    let ((leader, payload), read): ((u64, EntryPayload<C>), usize) =
        bincode::serde::decode_from_slice(&entry.payload, config())
            .map_err(|e| DecodeError::Bincode(e.to_string()))?;
    let kind = match payload {
        EntryPayload::Blank => KIND_BLANK,
        EntryPayload::Normal(_) => KIND_NORMAL,
        EntryPayload::Membership(_) => KIND_MEMBERSHIP,
    };
    if kind != entry.kind || read != entry.payload.len() {
        return Err(DecodeError::Kind { index: entry.index, kind: entry.kind });
    }
    Ok(Entry { log_id: log_id(entry.term, leader, entry.index - 1), payload })
}

/// An openraft log id.
pub fn log_id(term: u64, node_id: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node_id), index)
}

/// What the adapter keeps in the store's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The last vote saved.
    pub vote: Option<Vote<u64>>,
    /// The last committed log id saved.
    pub committed: Option<LogId<u64>>,
    /// The last log id purged.
    pub last_purged: Option<LogId<u64>>,
}

impl Meta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![META_VERSION];
        out.extend(bincode::serde::encode_to_vec(self, config()).expect("the metadata encodes"));
        out
    }

    /// Empty bytes are a store the adapter never wrote to.
    pub fn decode(bytes: &[u8]) -> Result<Meta, DecodeError> {
        let Some((version, body)) = bytes.split_first() else { return Ok(Meta::default()) };
        if *version != META_VERSION {
            return Err(DecodeError::Version(*version));
        }
        let (meta, read) = bincode::serde::decode_from_slice(body, config())
            .map_err(|e| DecodeError::Bincode(e.to_string()))?;
        if read != body.len() {
            return Err(DecodeError::Bincode("bytes after the metadata".into()));
        }
        Ok(meta)
    }
}
