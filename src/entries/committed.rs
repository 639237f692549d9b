//! The committed tier: a bounded window of the most recent committed entries, so that a
//! follower slightly behind and the state machine are served from memory.
//!
//! Invariants:
//! 1. The window holds a contiguous run `[window_first, commit_index]` (possibly empty, then
//!    `window_first == commit_index + 1`), with `window_first >= first_index` of the log.
//! 2. Eviction removes the oldest entries only, and never an entry above the applied index: an
//!    entry the state machine has not consumed stays in memory (back-pressure bounds how many),
//!    unless it had already left the uncommitted tier's byte bound; the store serves those.
//! 3. Once over `entries_max` entries or `bytes_max` payload bytes, eviction runs down to
//!    `entries_min` entries (and under `bytes_max`), as far as invariant 2 allows.

use super::window::EntryWindow;
use crate::entry::Entry;

/// Memory bounds of the committed window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub entries_min: usize,
    pub entries_max: usize,
    pub bytes_max: u64,
}

#[derive(Debug)]
pub(crate) struct Committed {
    window: EntryWindow,
    bounds: Bounds,
}

impl Committed {
    /// An empty window whose next entry is `first_index`.
    pub fn new(first_index: u64, bounds: Bounds) -> Self {
        Committed { window: EntryWindow::new(first_index), bounds }
    }

    pub fn window(&self) -> &EntryWindow {
        &self.window
    }

    /// Adds the newly committed entries still in memory (a contiguous run ending at the new
    /// `commit_index`, or none), then evicts within `applied_index`. When they do not continue
    /// the window, the window restarts with them (invariant 1).
    pub fn push(&mut self, entries: Vec<Entry>, commit_index: u64, applied_index: u64) {
        let start = entries.first().map_or(commit_index + 1, |entry| entry.index);
        if self.window.end_index() != start {
            self.window.reset(start);
        }
        self.window.extend(entries);
        assert_eq!(self.window.end_index(), commit_index + 1, "committed window ends at commit");
        self.evict(applied_index);
    }

    /// Evicts per invariant 3, never above `applied_index`.
    pub fn evict(&mut self, applied_index: u64) {
        let Bounds { entries_min, entries_max, bytes_max } = self.bounds;
        if self.window.len() <= entries_max && self.window.payload_bytes() <= bytes_max {
            return;
        }
        while self.window.len() > entries_min || self.window.payload_bytes() > bytes_max {
            match self.window.front() {
                Some(entry) if entry.index <= applied_index => self.window.pop_front(),
                _ => break,
            };
        }
    }

    /// Drops entries up to and including `index` (compacted from the log).
    pub fn drop_through(&mut self, index: u64) {
        while self.window.front().is_some_and(|entry| entry.index <= index) {
            self.window.pop_front();
        }
    }

    pub fn reset(&mut self, first_index: u64) {
        self.window.reset(first_index);
    }
}
