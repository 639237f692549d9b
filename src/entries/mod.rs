//! `RaftLog`: the Raft log rules over a `LogStore`, with two memory tiers (IoTDB's
//! `RaftLogManager`, in etcd raft's layering), shared between one appending thread and any
//! number of readers.
//!
//! - The uncommitted tier holds the most recent entries above the commit index, within a byte
//!   bound; a new leader may overwrite them (truncate-and-append), never at or below the commit
//!   index.
//! - The committed tier holds a bounded window of the most recent committed entries; older
//!   ones (and uncommitted ones beyond the byte bound) are read from the store.
//!
//! Durability: `append` and `maybe_append` put entries in the store before they return; they
//! are durable under the store's `SyncPolicy` (with the default, after `RaftLog::sync`). A
//! truncation of a conflicting suffix is durable when the call returns. The commit index is
//! persisted lazily: by the next `sync` or `set_hard_state`, in the same fdatasync as the
//! entries (the hard state rides the log), never ahead of what was really committed.
//!
//! Concurrency and lock order: `mutation`, then `hard_state`, then `memory`, then the store's
//! own locks. `memory` is held only to read or change memory: never across a store call, never
//! while acquiring another lock. Reads take `memory` briefly and call the store's reads, which
//! never wait for an fsync, a rotation or an append's write; so no read waits for them either.
//!
//! Invariants:
//! 1. `first_index - 1 <= applied_index <= commit_index <= last_index <= INDEX_MAX`.
//! 2. While a mutator changes the store, `memory` describes only entries that the store holds
//!    alike before and after the change: it shrinks before a store call that drops entries
//!    (truncation, reset, compaction) and grows after one that adds them. A read within the
//!    bounds `memory` gives is therefore always answered right by the store.
//! 3. `generation` moves whenever memory's tail shrinks (truncation, reset). A read that
//!    combined memory with the store and saw it move starts again: it may have read the store
//!    beyond the shrunk bounds.
//! 4. The persisted commit index is at most `commit_index`, and is made durable by the same
//!    fdatasync as every entry it covers.
//! 5. Every mutator validates its whole input before it changes memory or disk: a rejected
//!    call leaves both exactly as they were.
//! 6. `commit_index - applied_index < unapplied_entries_max` before an append is accepted.

mod committed;
mod options;
mod rules;
mod uncommitted;
mod window;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use committed::Committed;
pub use options::RaftLogOptions;
use uncommitted::Uncommitted;
use window::push_within;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFs};
use crate::hard_state::HardState;
use crate::store::{LogStore, RecoveryReport};

/// A Raft log: the store plus the commit and applied indexes and the rules that move them.
///
/// `RaftLog` is `Send + Sync` and every method takes `&self`: share one `Arc<RaftLog>` between
/// the thread that appends and syncs and any number of readers. Reads never wait for an fsync.
pub struct RaftLog<F: FileSystem = StdFs> {
    store: LogStore<F>,
    /// Held by every mutator of entries or of the commit index, across its store calls.
    mutation: Mutex<()>,
    /// Held while the hard state is persisted (`sync`, `set_hard_state`, `restore`).
    hard_state: Mutex<()>,
    memory: RwLock<Memory>,
    /// Moves when `memory`'s tail shrinks (invariant 3).
    generation: AtomicU64,
    unapplied_entries_max: u64,
}

/// What `RaftLog` keeps in memory; the authority for readers (invariant 2).
#[derive(Debug)]
struct Memory {
    /// First live index, inclusive; mirrors the store's, moved before a compaction or reset.
    first_index: u64,
    /// Term of `first_index - 1`.
    prev_term: u64,
    /// Ends at `last_index + 1`: the log's last index is read from it.
    uncommitted: Uncommitted,
    /// A contiguous run ending at `commit_index`, possibly empty.
    committed: Committed,
    /// Highest index known committed, inclusive.
    commit_index: u64,
    /// Highest index the state machine applied, inclusive.
    applied_index: u64,
}

impl Memory {
    fn last_index(&self) -> u64 {
        self.uncommitted.last_index()
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        self.uncommitted.window().get(index).or_else(|| self.committed.window().get(index))
    }

    /// The first index above `index` that memory holds, if any.
    fn next_held_after(&self, index: u64) -> Option<u64> {
        [self.committed.window(), self.uncommitted.window()]
            .into_iter()
            .filter(|window| window.len() > 0 && window.first_index() > index)
            .map(|window| window.first_index())
            .min()
    }

    /// What memory alone says of `index`'s term: `None` when the store must answer.
    fn term(&self, index: u64) -> Option<Result<u64>> {
        let last_index = self.last_index();
        if index > last_index {
            return Some(Err(Error::Unavailable { index, last_index }));
        }
        if index + 1 == self.first_index {
            return Some(Ok(self.prev_term));
        }
        if index < self.first_index {
            return Some(Err(Error::Compacted { index, first_index: self.first_index }));
        }
        self.get(index).map(|entry| Ok(entry.term))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<F: FileSystem> RaftLog<F> {
    /// A `RaftLog` over `store` with the default memory bounds.
    pub fn new(store: LogStore<F>) -> Result<Self> {
        RaftLog::with_options(store, RaftLogOptions::default())
    }

    /// A `RaftLog` over `store`. The commit index starts at the persisted one (or the snapshot
    /// index the log starts after, if higher). Nothing of the log is loaded into memory: the
    /// tiers fill as entries are appended, and the store serves the rest.
    pub fn with_options(store: LogStore<F>, options: RaftLogOptions) -> Result<Self> {
        options.validate()?;
        let first_index = store.first_index();
        let base = first_index - 1;
        let commit_index = store.hard_state().commit.max(base);
        let applied_index = options.applied_index.unwrap_or(base).max(base);
        if applied_index > commit_index {
            return Err(Error::NotCommitted { index: applied_index, commit: commit_index });
        }
        let memory = Memory {
            first_index,
            prev_term: store.term(base)?,
            uncommitted: Uncommitted::new(store.last_index(), options.uncommitted_bytes_max),
            committed: Committed::new(commit_index + 1, options.committed),
            commit_index,
            applied_index,
        };
        Ok(RaftLog {
            store,
            mutation: Mutex::new(()),
            hard_state: Mutex::new(()),
            memory: RwLock::new(memory),
            generation: AtomicU64::new(0),
            unapplied_entries_max: options.unapplied_entries_max,
        })
    }

    /// What recovery found and repaired when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.store.recovery_report()
    }

    /// Last index known durable in the store.
    pub fn durable_index(&self) -> u64 {
        self.store.durable_index()
    }

    /// First index still in the log.
    pub fn first_index(&self) -> u64 {
        read(&self.memory).first_index
    }

    /// Last index in the log.
    pub fn last_index(&self) -> u64 {
        read(&self.memory).last_index()
    }

    /// Term of the last entry (or of the snapshot the log starts after).
    pub fn last_term(&self) -> u64 {
        self.last_entry_id().1
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> u64 {
        read(&self.memory).commit_index
    }

    /// Highest index the state machine has applied.
    pub fn applied_index(&self) -> u64 {
        read(&self.memory).applied_index
    }

    /// Committed entries held in memory, and their payload bytes.
    pub fn committed_in_memory(&self) -> (usize, u64) {
        let memory = read(&self.memory);
        (memory.committed.window().len(), memory.committed.window().payload_bytes())
    }

    /// Uncommitted entries held in memory, and their payload bytes.
    pub fn uncommitted_in_memory(&self) -> (usize, u64) {
        let memory = read(&self.memory);
        (memory.uncommitted.window().len(), memory.uncommitted.window().payload_bytes())
    }

    /// Runs `read` until no tail shrink happened meanwhile (invariant 3).
    fn consistent<T>(&self, read: impl Fn() -> Result<T>) -> Result<T> {
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            let answer = read();
            if self.generation.load(Ordering::Acquire) == generation {
                return answer;
            }
        }
    }

    /// The term of `index`, for any index in `[first_index() - 1, last_index()]`.
    pub fn term(&self, index: u64) -> Result<u64> {
        self.consistent(|| self.term_unchecked(index))
    }

    /// The last index and its term, read together.
    fn last_entry_id(&self) -> (u64, u64) {
        let id = self.consistent(|| {
            let last_index = read(&self.memory).last_index();
            Ok((last_index, self.term_unchecked(last_index)?))
        });
        id.expect("the last index always has a term")
    }

    /// `term` without the consistency loop, for callers running one of their own.
    fn term_unchecked(&self, index: u64) -> Result<u64> {
        match read(&self.memory).term(index) {
            Some(answer) => answer,
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

    /// Committed entries not yet applied, from `applied_index() + 1`, within `max_bytes` of
    /// payload (at least one). It does not move the applied index: call `applied_to`.
    pub fn next_committed_entries(&self, max_bytes: u64) -> Result<Vec<Entry>> {
        let (applied, commit) = {
            let memory = read(&self.memory);
            (memory.applied_index, memory.commit_index)
        };
        self.entries(applied + 1, commit + 1, max_bytes)
    }

    /// Entries in `[lo, hi)`, with the store's contract: at most `max_bytes` of payload but at
    /// least one entry when `lo < hi`, `Compacted` below the first index, `Unavailable` beyond
    /// the last. `entries(lo, lo, _)` is empty for any `lo` in `[first_index, last_index + 1]`.
    /// Entries in memory come from memory, the others from the store.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        if lo > hi {
            return Err(Error::InvalidRange { lo, hi });
        }
        self.consistent(|| self.entries_once(lo, hi, max_bytes))
    }

    /// One attempt of `entries`: alternates runs held in memory with runs read from the store.
    fn entries_once(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut budget = max_bytes;
        let mut next = lo;
        check_range(&read(&self.memory), lo, hi)?;
        while next < hi {
            let store_run_end = {
                let memory = read(&self.memory);
                while let Some(entry) = memory.get(next).filter(|_| next < hi) {
                    if !push_within(&mut out, &mut budget, entry.clone()) {
                        return Ok(out);
                    }
                    next += 1;
                }
                memory.next_held_after(next).map_or(hi, |held| held.min(hi))
            };
            if next >= hi {
                break;
            }
            let stored = match self.store.entries(next, store_run_end, budget) {
                // What precedes a damaged entry is served; the next read names the damage.
                Err(Error::Damaged { .. }) if !out.is_empty() => return Ok(out),
                stored => stored?,
            };
            for entry in stored {
                if !push_within(&mut out, &mut budget, entry) {
                    return Ok(out);
                }
                next += 1;
            }
            if next < store_run_end {
                break; // the store stopped at the budget
            }
        }
        Ok(out)
    }

    /// Whether a candidate whose log ends at `(last_index, last_term)` is at least as up to
    /// date as this log (the vote check).
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let (my_index, my_term) = self.last_entry_id();
        last_term > my_term || (last_term == my_term && last_index >= my_index)
    }

    /// The durable engine metadata (see `LogStore::set_metadata`).
    pub fn metadata(&self) -> bytes::Bytes {
        self.store.metadata()
    }

    /// The hard state with the in-memory commit index (the persisted one may lag behind).
    pub fn hard_state(&self) -> HardState {
        HardState { commit: self.commit_index(), ..self.store.hard_state() }
    }

    /// Entries found damaged on disk and not repaired yet (`LogStore::damaged`).
    pub fn damaged(&self) -> Vec<std::ops::RangeInclusive<u64>> {
        self.store.damaged()
    }

    /// Verifies every entry of the sealed segments and returns the damaged ones
    /// (`LogStore::scrub`).
    pub fn scrub(&self) -> Result<Vec<std::ops::RangeInclusive<u64>>> {
        self.store.scrub()
    }

    /// Rewrites damaged entries from copies a peer holds committed with the same index and
    /// term (`LogStore::repair`: refused, with nothing written, unless each copy fits).
    pub fn repair(&self, copies: &[Entry]) -> Result<()> {
        self.store.repair(copies)
    }

    /// The store, for a caller that is done with the log rules.
    pub fn into_store(self) -> LogStore<F> {
        self.store
    }
}

/// The bounds check of a read of `[lo, hi)` against memory's view of the log.
fn check_range(memory: &Memory, lo: u64, hi: u64) -> Result<()> {
    if lo < memory.first_index {
        return Err(Error::Compacted { index: lo, first_index: memory.first_index });
    }
    let last_index = memory.last_index();
    if hi > last_index + 1 {
        return Err(Error::Unavailable { index: hi - 1, last_index });
    }
    Ok(())
}

impl<F: FileSystem> std::fmt::Debug for RaftLog<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let memory = read(&self.memory);
        f.debug_struct("RaftLog")
            .field("first_index", &memory.first_index)
            .field("last_index", &memory.last_index())
            .field("commit_index", &memory.commit_index)
            .field("applied_index", &memory.applied_index)
            .finish_non_exhaustive()
    }
}
