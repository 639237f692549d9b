//! The mutators of `RaftLog`: the Raft log rules. Each validates its whole input, then changes
//! memory and the store in the order `RaftLog`'s invariant 2 requires.

use std::sync::atomic::Ordering;

use super::{lock, read, write, RaftLog};
use crate::entry::{Entry, INDEX_MAX};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::hard_state::HardState;
use crate::snapshot::SnapshotLog;

impl<F: FileSystem> RaftLog<F> {
    /// A follower's append: if the entry at `prev_index` has `prev_term`, appends what
    /// `entries` adds or changes (an entry with the same index and term is left as is; a
    /// conflict truncates the log there), commits up to `min(leader_commit, last new index)`
    /// and returns the last new index. `None` when `prev` does not match. A conflict at or
    /// below the commit index is `Error::Committed`; a batch that is not contiguous after
    /// `prev_index`, whose terms go back, or whose entries are too large is refused whole.
    pub fn maybe_append(
        &self,
        prev_index: u64,
        prev_term: u64,
        leader_commit: u64,
        entries: &[Entry],
    ) -> Result<Option<u64>> {
        let _mutation = lock(&self.mutation);
        let last_new = check_follows(prev_index, entries)?;
        if !self.match_term(prev_index, prev_term) {
            return Ok(None);
        }
        self.store.check_batch(entries, prev_index, prev_term)?;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            self.check_appendable(conflict)?;
            let skip = usize::try_from(conflict - (prev_index + 1)).expect("inside the batch");
            self.replace_suffix(&entries[skip..])?;
        }
        self.commit_locked(leader_commit.min(last_new))?;
        Ok(Some(last_new))
    }

    /// Appends `entries`, replacing any uncommitted entries from `entries[0].index` on, and
    /// returns the last index. Touching a committed entry is `Error::Committed`; too many
    /// committed entries awaiting the state machine is `Error::Busy`; a gap, a term going back
    /// or an entry too large refuses the whole batch and changes nothing.
    pub fn append(&self, entries: &[Entry]) -> Result<u64> {
        let _mutation = lock(&self.mutation);
        let Some(first) = entries.first() else { return Ok(self.last_index()) };
        self.check_appendable(first.index)?;
        let prev_index = first.index - 1;
        self.store.check_batch(entries, prev_index, self.term(prev_index)?)?;
        self.replace_suffix(entries)?;
        Ok(self.last_index())
    }

    /// Drops the uncommitted entries from `from` on, durably (a damaged tail no quorum ever
    /// held: `replication::repair`). At or below the commit index is `Error::Committed`.
    pub fn truncate_uncommitted(&self, from: u64) -> Result<()> {
        let _mutation = lock(&self.mutation);
        let commit = self.commit_index();
        if from <= commit {
            return Err(Error::Committed { index: from, commit });
        }
        if from > self.last_index() {
            return Ok(());
        }
        let mut memory = write(&self.memory);
        memory.uncommitted.truncate_from(from);
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(memory);
        self.store.truncate_suffix(from)
    }

    /// Whether entries may be written from `from` on: above the commit index, without a gap,
    /// and within the back-pressure bound.
    fn check_appendable(&self, from: u64) -> Result<()> {
        let memory = read(&self.memory);
        if from <= memory.commit_index {
            return Err(Error::Committed { index: from, commit: memory.commit_index });
        }
        let expected = memory.last_index() + 1;
        if from > expected {
            return Err(Error::NotContiguous { expected, got: from });
        }
        let unapplied = memory.commit_index - memory.applied_index;
        if unapplied >= self.unapplied_entries_max {
            return Err(Error::Busy { unapplied, max: self.unapplied_entries_max });
        }
        Ok(())
    }

    /// Writes validated `entries` over the log from `entries[0].index` on (invariant 2:
    /// memory shrinks before the store truncates, and grows after the store appended).
    fn replace_suffix(&self, entries: &[Entry]) -> Result<()> {
        let from = entries[0].index;
        if from <= self.last_index() {
            let mut memory = write(&self.memory);
            memory.uncommitted.truncate_from(from);
            self.generation.fetch_add(1, Ordering::AcqRel);
            drop(memory);
            self.store.truncate_suffix(from)?;
        }
        self.store.append(entries)?;
        write(&self.memory).uncommitted.truncate_and_append(entries);
        Ok(())
    }

    /// Raises the commit index to `index` (never lowers it). Beyond the last index is
    /// `Error::Unavailable`.
    pub fn commit_to(&self, index: u64) -> Result<()> {
        let _mutation = lock(&self.mutation);
        self.commit_locked(index)
    }

    fn commit_locked(&self, index: u64) -> Result<()> {
        let mut memory = write(&self.memory);
        if index <= memory.commit_index {
            return Ok(());
        }
        let last_index = memory.last_index();
        if index > last_index {
            return Err(Error::Unavailable { index, last_index });
        }
        let newly_committed = memory.uncommitted.take_through(index);
        let applied_index = memory.applied_index;
        memory.committed.push(newly_committed, index, applied_index);
        memory.commit_index = index;
        Ok(())
    }

    /// Commits `index` if it is above the commit index and its entry has `term` (a leader
    /// commits only entries of its own term). Returns whether the commit index moved.
    pub fn maybe_commit(&self, index: u64, term: u64) -> Result<bool> {
        let _mutation = lock(&self.mutation);
        if index > self.commit_index() && self.match_term(index, term) {
            self.commit_locked(index)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Records that the state machine applied everything up to `index` (never moves back).
    /// Beyond the commit index is `Error::NotCommitted`. It takes no lock a mutator holds
    /// across I/O: the state machine's thread never waits for the Raft thread's fsync.
    pub fn applied_to(&self, index: u64) -> Result<()> {
        let mut memory = write(&self.memory);
        if index > memory.commit_index {
            return Err(Error::NotCommitted { index, commit: memory.commit_index });
        }
        memory.applied_index = memory.applied_index.max(index);
        let applied_index = memory.applied_index;
        memory.committed.evict(applied_index);
        Ok(())
    }

    /// After installing a snapshot at `(index, term)`: the log becomes empty, its first index
    /// `index + 1`, and the commit and applied indexes `index`. Durable when it returns. A
    /// snapshot below the commit index is `Error::Committed`.
    pub fn restore(&self, index: u64, term: u64) -> Result<()> {
        let _mutation = lock(&self.mutation);
        self.restore_locked(index, term)
    }

    fn restore_locked(&self, index: u64, term: u64) -> Result<()> {
        if index > INDEX_MAX {
            return Err(Error::IndexTooLarge { index, max: INDEX_MAX });
        }
        let _hard_state = lock(&self.hard_state);
        {
            let mut memory = write(&self.memory);
            if index < memory.commit_index {
                return Err(Error::Committed { index: index + 1, commit: memory.commit_index });
            }
            memory.first_index = index + 1;
            memory.prev_term = term;
            memory.uncommitted.reset(index);
            memory.committed.reset(index + 1);
            memory.commit_index = index;
            memory.applied_index = index;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.store.reset(index, term)
    }

    /// Drops entries up to and including `index` from the log (after a snapshot covering
    /// them). Beyond the applied index is `Error::NotApplied`.
    pub fn compact(&self, index: u64) -> Result<()> {
        let _mutation = lock(&self.mutation);
        self.compact_locked(index)
    }

    fn compact_locked(&self, index: u64) -> Result<()> {
        let (first_index, applied) = {
            let memory = read(&self.memory);
            (memory.first_index, memory.applied_index)
        };
        if index > applied {
            return Err(Error::NotApplied { index, applied });
        }
        if index < first_index {
            return Ok(());
        }
        let prev_term = self.term(index)?;
        {
            let mut memory = write(&self.memory);
            memory.first_index = index + 1;
            memory.prev_term = prev_term;
            memory.committed.drop_through(index);
        }
        self.store.compact_to(index)
    }

    /// Makes every appended entry durable, and the commit index with them if it moved since
    /// it was last persisted: one fdatasync for both (the hard state rides the log). Returns
    /// the durable last index.
    pub fn sync(&self) -> Result<u64> {
        let _hard_state = lock(&self.hard_state);
        let persisted = self.store.hard_state();
        let commit = self.commit_index();
        if persisted.commit < commit {
            return self.store.persist(&[], Some(HardState { commit, ..persisted }), None);
        }
        self.store.sync()
    }

    /// Makes `(term, vote)` durable together with the current commit index, with one
    /// fdatasync that also covers every appended entry.
    pub fn set_hard_state(&self, term: u64, vote: u64) -> Result<()> {
        let _hard_state = lock(&self.hard_state);
        self.store.set_hard_state(HardState::new(term, vote, self.commit_index()))
    }

    /// Makes the engine's metadata durable (see `LogStore::set_metadata`).
    pub fn set_metadata(&self, metadata: &[u8]) -> Result<()> {
        let _hard_state = lock(&self.hard_state);
        self.store.set_metadata(metadata)
    }
}

impl<F: FileSystem> SnapshotLog for RaftLog<F> {
    /// Compacts through `index` when the log holds `(index, term)` (committing and applying
    /// it first: a snapshot holds only committed state), restores the log to start after
    /// `index` when it is behind or disagrees, and leaves it alone when it is compacted past.
    fn follow_snapshot(&self, index: u64, term: u64) -> Result<()> {
        let _mutation = lock(&self.mutation);
        match self.term(index) {
            Ok(t) if t == term => {
                self.commit_locked(index)?;
                {
                    let mut memory = write(&self.memory);
                    memory.applied_index = memory.applied_index.max(index);
                }
                self.compact_locked(index)
            }
            Ok(_) | Err(Error::Unavailable { .. }) => self.restore_locked(index, term),
            Err(Error::Compacted { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The gateway check of a follower's batch: contiguous after `prev_index`, within
/// `INDEX_MAX`. Returns the batch's last index.
fn check_follows(prev_index: u64, entries: &[Entry]) -> Result<u64> {
    let mut last = prev_index;
    for entry in entries {
        let expected = last.checked_add(1).filter(|i| *i <= INDEX_MAX);
        let expected =
            expected.ok_or(Error::IndexTooLarge { index: entry.index, max: INDEX_MAX })?;
        if entry.index != expected {
            return Err(Error::NotContiguous { expected, got: entry.index });
        }
        last = expected;
    }
    Ok(last)
}
