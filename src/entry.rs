//! A Raft log entry as the store keeps it.
//!
//! Invariants:
//! 1. `1 <= index <= INDEX_MAX`: index 0 is the position before the first entry of a new log
//!    (term 0), and `INDEX_MAX` leaves room for `last_index + 1` in every computation.
//! 2. `kind` is opaque to the store: kept and returned as given.

use bytes::Bytes;

/// The largest index a log holds (`i64::MAX`, so that the index fits the signed integers of
/// other systems too, and `INDEX_MAX + 1` never overflows). Beyond it is `Error::IndexTooLarge`.
pub const INDEX_MAX: u64 = i64::MAX as u64;

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
