//! Store configuration.
//!
//! Invariants:
//! 1. `segment_bytes_max >= SEGMENT_BYTES_MIN` and `entry_bytes_max <= ENTRY_BYTES_LIMIT`
//!    (the on-disk length field is a u32); `Options::validate` enforces both.
//! 2. The limits are soft for segments (a batch never splits across segments) and hard for
//!    entries (an oversized entry is refused before anything is written).

use std::time::Duration;

use crate::error::{Error, Result};
use crate::segment::format::RECORD_HEADER_BYTES;

/// Smallest allowed `segment_bytes_max`.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Largest allowed `entry_bytes_max`: the record length field is a u32.
pub const ENTRY_BYTES_LIMIT: u64 = u32::MAX as u64 - RECORD_HEADER_BYTES as u64;

/// When appended entries are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Durable only when `LogStore::sync` (or an operation that syncs) is called. The default.
    OnSync,
    /// As `OnSync`, and also automatically once `bytes` bytes have been appended since the last
    /// sync, or `interval` after an unsynced append, whichever comes first (IoTDB's
    /// `flush_raft_log_threshold`). A zero `bytes` or `interval` disables that trigger.
    Auto {
        /// Appended bytes that trigger a sync inside `append`.
        bytes: u64,
        /// Longest time an appended entry stays unsynced (a background thread syncs).
        interval: Duration,
    },
    /// Never fsync appended entries: `sync` reports them durable without syncing. For
    /// benchmarks and tests only; a crash may lose them and recovery may then refuse to open.
    Never,
}

/// How entry payloads are compressed on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Payloads are stored as given.
    Off,
    /// Payloads of at least `threshold_bytes` are compressed with zstd at `level`. A payload
    /// that does not shrink by at least an eighth is stored as given, and the next 32 payloads
    /// are then not tried (64, 128, ... up to 1,024 after further failures in a row; a success
    /// starts over at 32), so incompressible data pays almost nothing.
    Zstd {
        /// zstd level (1 is fast; 3 is zstd's default; up to 22).
        level: i32,
        /// Smallest payload worth compressing.
        threshold_bytes: u64,
    },
}

/// Configuration of a `LogStore`, built with setters from `Options::default()`.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) segment_bytes_max: u64,
    pub(crate) entry_bytes_max: u64,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) preallocate: bool,
    pub(crate) segment_pool: usize,
    pub(crate) compression: Compression,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes_max: 64 << 20,
            entry_bytes_max: 16 << 20,
            sync_policy: SyncPolicy::OnSync,
            preallocate: false,
            segment_pool: 0,
            compression: Compression::Zstd { level: 1, threshold_bytes: 4096 },
        }
    }
}

impl Options {
    /// Size at which the active segment is sealed and a new one started (default 64 MiB).
    #[must_use]
    pub fn segment_bytes_max(mut self, bytes: u64) -> Self {
        self.segment_bytes_max = bytes;
        self
    }

    /// Largest payload accepted by `append` (default 16 MiB).
    #[must_use]
    pub fn entry_bytes_max(mut self, bytes: u64) -> Self {
        self.entry_bytes_max = bytes;
        self
    }

    /// When appends become durable (default `SyncPolicy::OnSync`).
    #[must_use]
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// Preallocate each new segment to `segment_bytes_max` (default off; see BENCHMARKS.md).
    #[must_use]
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }

    /// Keeps `files` segment files written ahead of need (default 0: off). Each is
    /// `segment_bytes_max` bytes of blocks written before, so appends into it overwrite
    /// existing blocks and an fdatasync flushes data only, without the journal commit a
    /// growing file costs (1.5–2x the synced appends per second on ext4; BENCHMARKS.md).
    /// A thread prefills the pool off the append path; dead segments are recycled into it
    /// (renamed, never zeroed: stale records never validate in another segment); a store's
    /// first segment is prefilled by `open`. Costs `files` x `segment_bytes_max` of disk.
    #[must_use]
    pub fn segment_pool(mut self, files: usize) -> Self {
        self.segment_pool = files;
        self
    }

    /// Payload compression (default zstd level 1 for payloads of 4 KiB or more; see
    /// BENCHMARKS.md).
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_bytes_max < SEGMENT_BYTES_MIN {
            return Err(Error::InvalidOptions("segment_bytes_max below 1024"));
        }
        if self.entry_bytes_max > ENTRY_BYTES_LIMIT {
            return Err(Error::InvalidOptions("entry_bytes_max above u32::MAX - 32"));
        }
        if let Compression::Zstd { level, .. } = self.compression {
            if !zstd::compression_level_range().contains(&level) {
                return Err(Error::InvalidOptions("zstd level out of range"));
            }
        }
        Ok(())
    }
}
