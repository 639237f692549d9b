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

    /// Pushes the entries of `[lo, hi)` held here onto `out` while their payloads fit in
    /// `*budget` (always at least one entry when `out` is empty), decreasing `budget`.
    /// Returns false once an entry did not fit: the caller stops there.
    pub fn copy_range(&self, lo: u64, hi: u64, budget: &mut u64, out: &mut Vec<Entry>) -> bool {
        for index in lo.max(self.first_index)..hi.min(self.end_index()) {
            let entry = self.get(index).expect("inside the window");
            let bytes = entry.payload.len() as u64;
            if !out.is_empty() && bytes > *budget {
                return false;
            }
            *budget = budget.saturating_sub(bytes);
            out.push(entry.clone());
        }
        true
    }
}
