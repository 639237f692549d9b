//! `ReplicationOptions`: the bounds of the shim's batches, windows and timers.

use super::appender::AppenderKind;
use crate::error::{Error, Result};

/// Bounds and timers of a `Replica`, built like `Options`. Times are in ticks: the caller
/// decides how long one is (the TCP server's default is 10 ms).
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    pub(super) batch_entries_max: u64,
    pub(super) batch_bytes_max: u64,
    pub(super) in_flight_batches_max: usize,
    pub(super) appender: AppenderKind,
    pub(super) appender_capacity: usize,
    pub(super) heartbeat_ticks: u64,
    pub(super) resend_ticks: u64,
    pub(super) uncommitted_entries_max: u64,
    pub(super) snapshot_message_bytes_max: u64,
    pub(super) apply_bytes_max: u64,
    pub(super) compaction_lag_entries: u64,
    pub(super) first_level_size: usize,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            batch_entries_max: 512,
            batch_bytes_max: 1 << 20,
            in_flight_batches_max: 8,
            appender: AppenderKind::SlidingWindow,
            appender_capacity: 4096,
            heartbeat_ticks: 2,
            resend_ticks: 20,
            uncommitted_entries_max: 65_536,
            snapshot_message_bytes_max: 4 << 20,
            apply_bytes_max: 16 << 20,
            compaction_lag_entries: 1000,
            first_level_size: 0,
        }
    }
}

impl ReplicationOptions {
    /// Most entries in one `Append` (default 512).
    #[must_use]
    pub fn batch_entries_max(mut self, entries: u64) -> Self {
        self.batch_entries_max = entries;
        self
    }

    /// Most payload bytes in one `Append`, unless one entry alone is larger (default 1 MiB).
    #[must_use]
    pub fn batch_bytes_max(mut self, bytes: u64) -> Self {
        self.batch_bytes_max = bytes;
        self
    }

    /// Batches in flight to one follower, unacknowledged (default 8).
    #[must_use]
    pub fn in_flight_batches_max(mut self, batches: usize) -> Self {
        self.in_flight_batches_max = batches;
        self
    }

    /// The follower's appender (default the sliding window).
    #[must_use]
    pub fn appender(mut self, kind: AppenderKind) -> Self {
        self.appender = kind;
        self
    }

    /// Entries the sliding window buffers, or requests the blocking appender parks (default
    /// 4096).
    #[must_use]
    pub fn appender_capacity(mut self, capacity: usize) -> Self {
        self.appender_capacity = capacity;
        self
    }

    /// Ticks between heartbeats (default 2).
    #[must_use]
    pub fn heartbeat_ticks(mut self, ticks: u64) -> Self {
        self.heartbeat_ticks = ticks;
        self
    }

    /// Ticks without an answer before a batch, probe or snapshot offer is sent again, and a
    /// parked request gives up (default 20).
    #[must_use]
    pub fn resend_ticks(mut self, ticks: u64) -> Self {
        self.resend_ticks = ticks;
        self
    }

    /// Entries the leader holds uncommitted before `propose` is `Error::Busy` (default
    /// 65,536).
    #[must_use]
    pub fn uncommitted_entries_max(mut self, entries: u64) -> Self {
        self.uncommitted_entries_max = entries;
        self
    }

    /// Snapshot bytes in one message (default 4 MiB).
    #[must_use]
    pub fn snapshot_message_bytes_max(mut self, bytes: u64) -> Self {
        self.snapshot_message_bytes_max = bytes;
        self
    }

    /// Entries a snapshot leaves in the log behind it (default 1000), so that a follower
    /// a little behind still catches up from the log (etcd's `SnapshotCatchUpEntries`).
    #[must_use]
    pub fn compaction_lag_entries(mut self, entries: u64) -> Self {
        self.compaction_lag_entries = entries;
        self
    }

    /// Relay mode (default 0: off): the leader sends each batch to at most this many
    /// followers, which forward it to the others waiting for the same entries (`relay.rs`).
    #[must_use]
    pub fn first_level_size(mut self, followers: usize) -> Self {
        self.first_level_size = followers;
        self
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.batch_entries_max == 0
            || self.batch_entries_max > u64::from(super::wire::ENTRIES_MAX)
        {
            return Err(Error::InvalidOptions("batch_entries_max must be in 1..=ENTRIES_MAX"));
        }
        if self.batch_bytes_max == 0
            || self.batch_bytes_max > u64::from(super::wire::FRAME_BYTES_MAX) / 2
        {
            return Err(Error::InvalidOptions("batch_bytes_max must be in 1..=FRAME_BYTES_MAX/2"));
        }
        if self.in_flight_batches_max == 0 || self.appender_capacity == 0 {
            return Err(Error::InvalidOptions("windows must hold at least one"));
        }
        if self.heartbeat_ticks == 0 || self.resend_ticks == 0 {
            return Err(Error::InvalidOptions("timers must be at least one tick"));
        }
        if self.snapshot_message_bytes_max == 0
            || self.snapshot_message_bytes_max > u64::from(super::wire::FRAME_BYTES_MAX) / 2
        {
            return Err(Error::InvalidOptions("snapshot_message_bytes_max out of range"));
        }
        Ok(())
    }
}
