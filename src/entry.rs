//! A Raft log entry as the store keeps it.
//!
//! Invariants:
//! 1. `index >= 1`: index 0 is the position before the first entry of a new log (term 0).
//! 2. `kind` is opaque to the store: kept and returned as given.

use bytes::Bytes;

/// One Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Application bytes, opaque to the store.
    pub payload: Bytes,
    /// Opaque entry kind (for example "configuration change"), kept as given. 0 by default.
    pub kind: u8,
}

impl Entry {
    /// An entry of kind 0.
    pub fn new(index: u64, term: u64, payload: impl Into<Bytes>) -> Self {
        Entry { index, term, payload: payload.into(), kind: 0 }
    }

    /// The same entry with the given kind.
    #[must_use]
    pub fn with_kind(mut self, kind: u8) -> Self {
        self.kind = kind;
        self
    }
}
