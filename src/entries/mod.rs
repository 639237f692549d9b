//! `RaftLog`: the Raft log rules over a `LogStore`, with two memory tiers (IoTDB's
//! `RaftLogManager`, in etcd raft's layering).
//!
//! - The uncommitted tier holds every entry above the commit index; a new leader may overwrite
//!   it (truncate-and-append), never at or below the commit index.
//! - The committed tier holds a bounded window of the most recent committed entries; older
//!   ones are read from the store.
//!
//! Durability: `append` and `maybe_append` put entries in the store before they return; they
//! are durable under the store's `SyncPolicy` (with the default, after `RaftLog::sync`). A
//! truncation of a conflicting suffix is durable when the call returns. The commit index is
//! persisted lazily: by the next `sync` or `set_hard_state`, never with an fsync of its own per
//! commit, and never ahead of what was really committed.
//!
//! Invariants:
//! 1. `applied_index <= commit_index <= last_index`.
//! 2. The store holds every entry of `[first_index, last_index]`; the uncommitted tier holds
//!    exactly `(commit_index, last_index]`; the committed window is a contiguous run ending at
//!    `commit_index`.
//! 3. The persisted commit index is at most `commit_index`.
//! 4. `commit_index - applied_index < unapplied_entries_max` before an append is accepted.

mod committed;
mod uncommitted;
mod window;

use committed::{Bounds, Committed};
use uncommitted::Uncommitted;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFs};
use crate::hard_state::HardState;
use crate::store::LogStore;

/// Memory bounds and start-up state of a `RaftLog`.
#[derive(Debug, Clone)]
pub struct RaftLogOptions {
    bounds: Bounds,
    unapplied_entries_max: u64,
    applied_index: Option<u64>,
}

impl Default for RaftLogOptions {
    fn default() -> Self {
        RaftLogOptions {
            bounds: Bounds { entries_min: 1000, entries_max: 2000, bytes_max: 64 << 20 },
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
        self.bounds.entries_min = entries;
        self
    }

    /// Committed entries in memory that trigger an eviction (default 2000; IoTDB's
    /// `max_num_of_logs_in_mem`).
    #[must_use]
    pub fn max_entries_in_memory(mut self, entries: usize) -> Self {
        self.bounds.entries_max = entries;
        self
    }

    /// Payload bytes of committed entries in memory that trigger an eviction (default 64 MiB).
    #[must_use]
    pub fn max_bytes_in_memory(mut self, bytes: u64) -> Self {
        self.bounds.bytes_max = bytes;
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
}

/// A Raft log: the store plus the commit and applied indexes and the rules that move them.
pub struct RaftLog<F: FileSystem = StdFs> {
    store: LogStore<F>,
    uncommitted: Uncommitted,
    committed: Committed,
    commit_index: u64,
    applied_index: u64,
    unapplied_entries_max: u64,
}

impl<F: FileSystem> RaftLog<F> {
    /// A `RaftLog` over `store` with the default memory bounds.
    pub fn new(store: LogStore<F>) -> Result<Self> {
        RaftLog::with_options(store, RaftLogOptions::default())
    }

    /// A `RaftLog` over `store`. The commit index starts at the persisted one (or the snapshot
    /// index the log starts after, if higher); the uncommitted tail is loaded into memory.
    pub fn with_options(store: LogStore<F>, options: RaftLogOptions) -> Result<Self> {
        if options.bounds.entries_min > options.bounds.entries_max {
            return Err(Error::InvalidOptions("min_entries_in_memory above max_entries_in_memory"));
        }
        let base = store.first_index() - 1;
        let commit_index = store.hard_state().commit.max(base);
        let applied_index = options.applied_index.unwrap_or(base).max(base);
        if applied_index > commit_index {
            return Err(Error::NotCommitted { index: applied_index, commit: commit_index });
        }
        let last_index = store.last_index();
        let tail = store.entries(commit_index + 1, last_index + 1, u64::MAX)?;
        Ok(RaftLog {
            uncommitted: Uncommitted::new(commit_index + 1, tail),
            committed: Committed::new(commit_index + 1, options.bounds),
            store,
            commit_index,
            applied_index,
            unapplied_entries_max: options.unapplied_entries_max,
        })
    }

    /// The underlying store (for its sync, reads and recovery report).
    pub fn store(&self) -> &LogStore<F> {
        &self.store
    }

    /// First index still in the log.
    pub fn first_index(&self) -> u64 {
        self.store.first_index()
    }

    /// Last index in the log.
    pub fn last_index(&self) -> u64 {
        self.uncommitted.window().end_index() - 1
    }

    /// Term of the last entry (or of the snapshot the log starts after).
    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).expect("the last index always has a term")
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.commit_index
    }

    /// Highest index the state machine has applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Committed entries held in memory, and their payload bytes.
    pub fn committed_in_memory(&self) -> (usize, u64) {
        (self.committed.window().len(), self.committed.window().payload_bytes())
    }

    /// The term of `index`, for any index in `[first_index() - 1, last_index()]`.
    pub fn term(&self, index: u64) -> Result<u64> {
        let cached = self.uncommitted.get(index).or_else(|| self.committed.get(index));
        match cached {
            Some(entry) => Ok(entry.term),
            None => self.store.term(index),
        }
    }

    /// Whether the entry at `index` has term `term` (false outside the log).
    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// The index of the first entry of `entries` that conflicts with the log (same index,
    /// other term) or is not in it yet; 0 when the log already holds them all.
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries.iter().find(|e| !self.match_term(e.index, e.term)).map_or(0, |e| e.index)
    }

    /// A follower's append: if the entry at `prev_index` has `prev_term`, appends what
    /// `entries` adds or changes (an entry with the same index and term is left as is; a
    /// conflict truncates the log there), commits up to `min(leader_commit, last new index)`
    /// and returns the last new index. `None` when `prev` does not match. A conflict at or
    /// below the commit index is `Error::Committed`.
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        leader_commit: u64,
        entries: &[Entry],
    ) -> Result<Option<u64>> {
        check_follows(prev_index, entries)?;
        if !self.match_term(prev_index, prev_term) {
            return Ok(None);
        }
        let last_new = prev_index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            if conflict <= self.commit_index {
                return Err(Error::Committed { index: conflict, commit: self.commit_index });
            }
            let skip = usize::try_from(conflict - (prev_index + 1)).expect("inside the batch");
            self.append(&entries[skip..])?;
        }
        self.commit_to(leader_commit.min(last_new))?;
        Ok(Some(last_new))
    }

    /// Appends `entries`, replacing any uncommitted entries from `entries[0].index` on, and
    /// returns the last index. Touching a committed entry is `Error::Committed`; too many
    /// committed entries awaiting the state machine is `Error::Busy`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<u64> {
        let Some(first) = entries.first() else { return Ok(self.last_index()) };
        if first.index <= self.commit_index {
            return Err(Error::Committed { index: first.index, commit: self.commit_index });
        }
        let unapplied = self.commit_index - self.applied_index;
        if unapplied >= self.unapplied_entries_max {
            return Err(Error::Busy { unapplied, max: self.unapplied_entries_max });
        }
        if first.index <= self.last_index() {
            self.store.truncate_suffix(first.index)?;
            self.uncommitted.truncate_from(first.index);
        }
        self.store.append(entries)?;
        self.uncommitted.truncate_and_append(entries);
        Ok(self.last_index())
    }

    /// Raises the commit index to `index` (never lowers it). Beyond the last index is
    /// `Error::Unavailable`.
    pub fn commit_to(&mut self, index: u64) -> Result<()> {
        if index <= self.commit_index {
            return Ok(());
        }
        let last_index = self.last_index();
        if index > last_index {
            return Err(Error::Unavailable { index, last_index });
        }
        let newly_committed = self.uncommitted.take_through(index);
        self.committed.push(newly_committed, self.applied_index);
        self.commit_index = index;
        Ok(())
    }

    /// Commits `index` if it is above the commit index and its entry has `term` (a leader
    /// commits only entries of its own term). Returns whether the commit index moved.
    pub fn maybe_commit(&mut self, index: u64, term: u64) -> Result<bool> {
        if index > self.commit_index && self.match_term(index, term) {
            self.commit_to(index)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Records that the state machine applied everything up to `index` (never moves back).
    /// Beyond the commit index is `Error::NotCommitted`.
    pub fn applied_to(&mut self, index: u64) -> Result<()> {
        if index > self.commit_index {
            return Err(Error::NotCommitted { index, commit: self.commit_index });
        }
        self.applied_index = self.applied_index.max(index);
        self.committed.evict(self.applied_index);
        Ok(())
    }

    /// Committed entries not yet applied, from `applied_index() + 1`, within `max_bytes` of
    /// payload (at least one). It does not move the applied index: call `applied_to`.
    pub fn next_committed_entries(&self, max_bytes: u64) -> Result<Vec<Entry>> {
        self.entries(self.applied_index + 1, self.commit_index + 1, max_bytes)
    }

    /// Entries in `[lo, hi)`, with the store's contract: at most `max_bytes` of payload but at
    /// least one entry, `Compacted` below the first index, `Unavailable` beyond the last.
    /// Recent entries come from memory, older ones from the store.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        if lo > hi {
            return Err(Error::InvalidRange { lo, hi });
        }
        let first_index = self.first_index();
        if lo < first_index {
            return Err(Error::Compacted { index: lo, first_index });
        }
        let last_index = self.last_index();
        if hi > last_index + 1 {
            return Err(Error::Unavailable { index: hi - 1, last_index });
        }
        let memory_first = self.committed.window().first_index();
        let mut out = Vec::new();
        let mut budget = max_bytes;
        if lo < memory_first {
            out = self.store.entries(lo, hi.min(memory_first), max_bytes)?;
            let read = out.iter().map(|e| e.payload.len() as u64).sum::<u64>();
            if (out.len() as u64) < hi.min(memory_first) - lo || read > max_bytes {
                return Ok(out);
            }
            budget = max_bytes - read;
        }
        if self.committed.window().copy_range(lo, hi, &mut budget, &mut out) {
            self.uncommitted.window().copy_range(lo, hi, &mut budget, &mut out);
        }
        Ok(out)
    }

    /// Whether a candidate whose log ends at `(last_index, last_term)` is at least as up to
    /// date as this log (the vote check).
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// After installing a snapshot at `(index, term)`: the log becomes empty, its first index
    /// `index + 1`, and the commit and applied indexes `index`. Durable when it returns. A
    /// snapshot below the commit index is `Error::Committed`.
    pub fn restore(&mut self, index: u64, term: u64) -> Result<()> {
        if index < self.commit_index {
            return Err(Error::Committed { index: index + 1, commit: self.commit_index });
        }
        self.store.reset(index, term)?;
        self.uncommitted.reset(index + 1);
        self.committed.reset(index + 1);
        self.commit_index = index;
        self.applied_index = index;
        Ok(())
    }

    /// Drops entries up to and including `index` from the log (after a snapshot covering
    /// them). Beyond the applied index is `Error::NotApplied`.
    pub fn compact(&mut self, index: u64) -> Result<()> {
        if index > self.applied_index {
            return Err(Error::NotApplied { index, applied: self.applied_index });
        }
        self.store.compact_to(index)?;
        self.committed.drop_through(index);
        Ok(())
    }

    /// Makes every appended entry durable and persists the commit index if it moved since
    /// it was last persisted. Returns the durable last index.
    pub fn sync(&mut self) -> Result<u64> {
        let durable = self.store.sync()?;
        let persisted = self.store.hard_state();
        if persisted.commit < self.commit_index {
            self.store.set_hard_state(HardState { commit: self.commit_index, ..persisted })?;
        }
        Ok(durable)
    }

    /// Makes `(term, vote)` durable together with the current commit index.
    pub fn set_hard_state(&mut self, term: u64, vote: u64) -> Result<()> {
        self.store.set_hard_state(HardState::new(term, vote, self.commit_index))
    }

    /// The hard state with the in-memory commit index (the persisted one may lag behind).
    pub fn hard_state(&self) -> HardState {
        HardState { commit: self.commit_index, ..self.store.hard_state() }
    }

    /// The store, for a caller that is done with the log rules.
    pub fn into_store(self) -> LogStore<F> {
        self.store
    }
}

impl<F: FileSystem> std::fmt::Debug for RaftLog<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .field("commit_index", &self.commit_index)
            .field("applied_index", &self.applied_index)
            .finish_non_exhaustive()
    }
}

/// The gateway check of a follower's batch: contiguous after `prev_index`.
fn check_follows(prev_index: u64, entries: &[Entry]) -> Result<()> {
    for (k, entry) in entries.iter().enumerate() {
        let expected = prev_index + 1 + k as u64;
        if entry.index != expected {
            return Err(Error::NotContiguous { expected, got: entry.index });
        }
    }
    Ok(())
}
