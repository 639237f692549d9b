//! `RaftLogOptions`: the memory bounds and start-up state of a `RaftLog`.

use super::committed::Bounds;
use crate::error::{Error, Result};

/// Memory bounds and start-up state of a `RaftLog`, built like `Options`.
#[derive(Debug, Clone)]
pub struct RaftLogOptions {
    pub(super) committed: Bounds,
    pub(super) uncommitted_bytes_max: u64,
    pub(super) unapplied_entries_max: u64,
    pub(super) applied_index: Option<u64>,
}

impl Default for RaftLogOptions {
    fn default() -> Self {
        RaftLogOptions {
            committed: Bounds { entries_min: 1000, entries_max: 2000, bytes_max: 64 << 20 },
            uncommitted_bytes_max: 64 << 20,
            unapplied_entries_max: 100_000,
            applied_index: None,
        }
    }
}

impl RaftLogOptions {
    /// Committed entries kept in memory after an eviction (default 1000; IoTDB's
    /// `min_num_of_logs_in_mem`).
    #[must_use]
    pub fn min_entries_in_memory(mut self, entries: usize) -> Self {
        self.committed.entries_min = entries;
        self
    }

    /// Committed entries in memory that trigger an eviction (default 2000; IoTDB's
    /// `max_num_of_logs_in_mem`).
    #[must_use]
    pub fn max_entries_in_memory(mut self, entries: usize) -> Self {
        self.committed.entries_max = entries;
        self
    }

    /// Payload bytes of committed entries in memory that trigger an eviction (default 64 MiB).
    #[must_use]
    pub fn max_bytes_in_memory(mut self, bytes: u64) -> Self {
        self.committed.bytes_max = bytes;
        self
    }

    /// Payload bytes of uncommitted entries kept in memory (default 64 MiB). Beyond it the
    /// oldest uncommitted entries are dropped from memory and read back from the store.
    #[must_use]
    pub fn max_uncommitted_bytes_in_memory(mut self, bytes: u64) -> Self {
        self.uncommitted_bytes_max = bytes;
        self
    }

    /// Committed entries not yet applied beyond which appends return `Error::Busy`
    /// (default 100,000).
    #[must_use]
    pub fn unapplied_entries_max(mut self, entries: u64) -> Self {
        self.unapplied_entries_max = entries;
        self
    }

    /// The state machine's durable applied index at start-up (default: the log's first index
    /// minus one, so every retained committed entry is handed out again).
    #[must_use]
    pub fn applied_index(mut self, index: u64) -> Self {
        self.applied_index = Some(index);
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.committed.entries_min > self.committed.entries_max {
            return Err(Error::InvalidOptions("min_entries_in_memory above max_entries_in_memory"));
        }
        Ok(())
    }
}
