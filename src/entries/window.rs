//! A contiguous run of entries in memory, the building block of both memory tiers.
//!
//! Invariants:
//! 1. `entries[k].index == first_index + k`.
//! 2. `payload_bytes` is the sum of the entries' payload lengths.

use std::collections::VecDeque;

use crate::entry::Entry;

#[derive(Debug, Clone, Default)]
pub(crate) struct EntryWindow {
    first_index: u64,
    entries: VecDeque<Entry>,
    payload_bytes: u64,
}

impl EntryWindow {
    /// An empty window whose next entry is `first_index`.
    pub fn new(first_index: u64) -> Self {
        EntryWindow { first_index, entries: VecDeque::new(), payload_bytes: 0 }
    }

    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// One past the last index held.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let position = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.entries.get(position)
    }

    pub fn front(&self) -> Option<&Entry> {
        self.entries.front()
    }

    /// Appends entries that continue the window.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            assert_eq!(entry.index, self.end_index(), "window entries must be contiguous");
            self.payload_bytes += entry.payload.len() as u64;
            self.entries.push_back(entry);
        }
    }

    pub fn pop_front(&mut self) -> Option<Entry> {
        let entry = self.entries.pop_front()?;
        self.first_index += 1;
        self.payload_bytes -= entry.payload.len() as u64;
        Some(entry)
    }

    /// Drops every entry from `index` on.
    pub fn truncate_from(&mut self, index: u64) {
        let keep = usize::try_from(index.saturating_sub(self.first_index)).unwrap_or(usize::MAX);
        while self.entries.len() > keep {
            let entry = self.entries.pop_back().expect("longer than keep");
            self.payload_bytes -= entry.payload.len() as u64;
        }
    }

    /// Empties the window; its next entry becomes `first_index`.
    pub fn reset(&mut self, first_index: u64) {
        *self = EntryWindow::new(first_index);
    }
}

/// Pushes `entry` onto `out` if its payload fits in `*budget`, or if `out` is empty (a read
/// returns at least one entry), and decreases `budget`. Returns whether it was pushed.
pub(crate) fn push_within(out: &mut Vec<Entry>, budget: &mut u64, entry: Entry) -> bool {
    let bytes = entry.payload.len() as u64;
    if !out.is_empty() && bytes > *budget {
        return false;
    }
    *budget = budget.saturating_sub(bytes);
    out.push(entry);
    true
}
