//! The committed tier: a bounded window of the most recent committed entries, so that a
//! follower slightly behind and the state machine are served from memory.
//!
//! Invariants:
//! 1. The window holds a contiguous run `[window_first, commit_index]` (possibly empty), with
//!    `window_first >= first_index` of the log.
//! 2. Eviction removes the oldest entries only, and never an entry above the applied index: an
//!    entry the state machine has not consumed stays in memory (back-pressure bounds how many).
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

    pub fn get(&self, index: u64) -> Option<&Entry> {
        self.window.get(index)
    }

    /// Adds newly committed entries, then evicts within `applied_index`.
    pub fn push(&mut self, entries: Vec<Entry>, applied_index: u64) {
        self.window.extend(entries);
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
