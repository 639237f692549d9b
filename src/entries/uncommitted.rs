//! The uncommitted tier: every entry above the commit index, in memory.
//!
//! Invariants:
//! 1. The window holds exactly `(commit_index, last_index]`: its first index is
//!    `commit_index + 1` and its end is `last_index + 1`.
//! 2. Nothing at or below the commit index is ever replaced: `truncate_and_append` is only
//!    called with a first index above it (the caller checks and returns `Error::Committed`).

use super::window::EntryWindow;
use crate::entry::Entry;

#[derive(Debug)]
pub(crate) struct Uncommitted {
    window: EntryWindow,
}

impl Uncommitted {
    pub fn new(first_index: u64, entries: Vec<Entry>) -> Self {
        let mut window = EntryWindow::new(first_index);
        window.extend(entries);
        Uncommitted { window }
    }

    pub fn window(&self) -> &EntryWindow {
        &self.window
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        self.window.get(index)
    }

    /// Replaces the entries from `entries[0].index` on (a conflicting suffix), then appends:
    /// the three cases of etcd's `truncateAndAppend` (append, replace all, truncate then
    /// append) are one operation on a contiguous window.
    pub fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index >= self.window.first_index() && first.index <= self.window.end_index(),
            "entry {} outside the uncommitted range [{}, {}]",
            first.index,
            self.window.first_index(),
            self.window.end_index()
        );
        self.window.truncate_from(first.index);
        self.window.extend(entries.iter().cloned());
    }

    /// Drops the entries from `index` on (the store truncated them).
    pub fn truncate_from(&mut self, index: u64) {
        self.window.truncate_from(index);
    }

    /// Removes and returns the entries up to and including `index` (they became committed).
    pub fn take_through(&mut self, index: u64) -> Vec<Entry> {
        let mut taken = Vec::new();
        while self.window.first_index() <= index {
            taken.push(self.window.pop_front().expect("index within the window"));
        }
        taken
    }

    pub fn reset(&mut self, first_index: u64) {
        self.window.reset(first_index);
    }
}
