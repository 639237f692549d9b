//! `SnapshotOptions`: the limits and identity of a snapshot store, built like `Options`.
//!
//! Invariants:
//! 1. `chunk_bytes` lies in `[1, CHUNK_BYTES_MAX]` once validated (`SnapshotStore::open_with`).
//! 2. Every limit applies to manifests from peers as to the local store's own snapshots.

use super::transfer;
use crate::error::{Error, Result};

/// Limits and identity of a snapshot store, built like `Options`. Every limit also applies to
/// manifests from peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotOptions {
    pub(crate) group: u64,
    pub(crate) files_max: u64,
    pub(crate) file_bytes_max: u64,
    pub(crate) configuration_bytes_max: u64,
    pub(crate) chunk_bytes: u32,
    pub(crate) compress_chunks: bool,
    pub(crate) sync_linked_files: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            group: 0,
            files_max: 1_000_000,
            file_bytes_max: 1 << 40,
            configuration_bytes_max: 1 << 20,
            chunk_bytes: 1 << 20,
            compress_chunks: false,
            sync_linked_files: true,
        }
    }
}

impl SnapshotOptions {
    /// The Raft group the snapshots belong to (default 0); a manifest of another group is
    /// refused.
    #[must_use]
    pub fn group(mut self, group: u64) -> Self {
        self.group = group;
        self
    }

    /// Most files in one snapshot (default 1,000,000).
    #[must_use]
    pub fn files_max(mut self, files: u64) -> Self {
        self.files_max = files;
        self
    }

    /// Largest file in a snapshot, in bytes (default 1 TiB).
    #[must_use]
    pub fn file_bytes_max(mut self, bytes: u64) -> Self {
        self.file_bytes_max = bytes;
        self
    }

    /// Largest configuration blob, in bytes (default 1 MiB).
    #[must_use]
    pub fn configuration_bytes_max(mut self, bytes: u64) -> Self {
        self.configuration_bytes_max = bytes;
        self
    }

    /// Size of the chunks a receiver asks for (default 1 MiB), in `[1, CHUNK_BYTES_MAX]`.
    #[must_use]
    pub fn chunk_bytes(mut self, bytes: u32) -> Self {
        self.chunk_bytes = bytes;
        self
    }

    /// Compress chunk payloads with zstd (level 1) when it makes them smaller (default off).
    #[must_use]
    pub fn compress_chunks(mut self, on: bool) -> Self {
        self.compress_chunks = on;
        self
    }

    /// `fdatasync` every hard-linked file when it is added (default on). Turn it off only when
    /// every file given to `add_file` is already durable (a closed, fsynced file of the state
    /// machine, as RocksDB checkpoints assume of SST files): each sync costs a disk cache
    /// flush (about 100 µs here) even when the file has nothing dirty. Copies are always
    /// synced.
    #[must_use]
    pub fn sync_linked_files(mut self, on: bool) -> Self {
        self.sync_linked_files = on;
        self
    }

    /// The group these options bind snapshots to.
    pub fn group_id(&self) -> u64 {
        self.group
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.chunk_bytes == 0 || self.chunk_bytes > transfer::CHUNK_BYTES_MAX {
            return Err(Error::InvalidOptions("chunk_bytes outside [1, CHUNK_BYTES_MAX]"));
        }
        Ok(())
    }
}
