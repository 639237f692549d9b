//! The uncommitted tier: the most recent entries above the commit index, in memory, within a
//! byte bound; older uncommitted entries are read back from the store.
//!
//! Invariants:
//! 1. The window is a contiguous run `[window_first, last_index]` (possibly empty, then
//!    `window_first == last_index + 1`) with `window_first > commit_index`: its end is always
//!    `last_index + 1`, so it is where `RaftLog` reads `last_index` from.
//! 2. Its payload bytes stay within `bytes_max`; eviction drops the oldest entries first.
//! 3. Nothing at or below the commit index is ever replaced: `truncate_and_append` is only
//!    called with a first index above it (the caller checks and returns `Error::Committed`).

use super::window::EntryWindow;
use crate::entry::Entry;

#[derive(Debug)]
pub(crate) struct Uncommitted {
    window: EntryWindow,
    bytes_max: u64,
}

impl Uncommitted {
    /// An empty tier of a log whose last index is `last_index`: nothing is loaded, the store
    /// serves the existing tail.
    pub fn new(last_index: u64, bytes_max: u64) -> Self {
        Uncommitted { window: EntryWindow::new(last_index + 1), bytes_max }
    }

    pub fn window(&self) -> &EntryWindow {
        &self.window
    }

    /// The last index of the log.
    pub fn last_index(&self) -> u64 {
        self.window.end_index() - 1
    }

    /// Replaces the entries from `entries[0].index` on (a conflicting suffix), then appends:
    /// the three cases of etcd's `truncateAndAppend` (append, replace all, truncate then
    /// append) are one operation on a contiguous window.
    pub fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index <= self.window.end_index(),
            "entry {} leaves a gap after {}",
            first.index,
            self.window.end_index() - 1
        );
        if first.index < self.window.first_index() {
            self.window.reset(first.index);
        } else {
            self.window.truncate_from(first.index);
        }
        self.window.extend(entries.iter().cloned());
        while self.window.payload_bytes() > self.bytes_max {
            self.window.pop_front();
        }
    }

    /// Drops the entries from `index` on (the store truncated them).
    pub fn truncate_from(&mut self, index: u64) {
        if index < self.window.first_index() {
            self.window.reset(index);
        } else {
            self.window.truncate_from(index);
        }
    }

    /// Removes and returns the entries held up to and including `index` (they became
    /// committed).
    pub fn take_through(&mut self, index: u64) -> Vec<Entry> {
        let mut taken = Vec::new();
        while self.window.first_index() <= index {
            match self.window.pop_front() {
                Some(entry) => taken.push(entry),
                None => break,
            }
        }
        taken
    }

    /// Empties the tier of a log whose last index becomes `last_index`.
    pub fn reset(&mut self, last_index: u64) {
        self.window.reset(last_index + 1);
    }
}
