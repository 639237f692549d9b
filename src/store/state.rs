//! The in-memory view of the log: its segments and where each live entry lies.
//!
//! Invariants:
//! 1. `segments` is never empty, is ordered by id, and its entry ranges are contiguous:
//!    `segments[k + 1].first_index == segments[k].end_index()`.
//! 2. The last segment is the active one and is not sealed; all others are sealed.
//! 3. `segments[0].first_index <= first_index <= last_index() + 1`; entries below
//!    `first_index` are hidden (compacted) even while their segment is kept.
//! 4. `prev_term` is the term of `first_index - 1`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::hard_state::HardState;
use crate::segment::Loc;

/// One segment file as the store holds it.
#[derive(Debug)]
pub(crate) struct Segment<H> {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<H>,
    /// Index of the segment's first record.
    pub first_index: u64,
    /// Term of `first_index - 1` when the segment was created (from its header).
    pub prev_term: u64,
    /// The live entries, from `first_index` on.
    pub locs: Vec<Loc>,
    pub sealed: bool,
}

impl<H> Segment<H> {
    /// One past the segment's last live index.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }

    /// The last index and term of the segment's records, for its seal record.
    pub fn last_record(&self) -> (u64, u64) {
        (self.end_index() - 1, self.locs.last().map_or(self.prev_term, |loc| loc.term))
    }

    pub fn loc(&self, index: u64) -> Option<&Loc> {
        let slot = index.checked_sub(self.first_index)?;
        self.locs.get(usize::try_from(slot).ok()?)
    }
}

/// The log's segments, bounds and hard state.
#[derive(Debug)]
pub(crate) struct LogState<H> {
    pub segments: Vec<Segment<H>>,
    /// First live index, inclusive.
    pub first_index: u64,
    /// Term of `first_index - 1`.
    pub prev_term: u64,
    pub hard_state: HardState,
}

impl<H> LogState<H> {
    pub fn last_index(&self) -> u64 {
        self.active().end_index() - 1
    }

    pub fn active(&self) -> &Segment<H> {
        self.segments.last().expect("a log always has an active segment")
    }

    pub fn active_mut(&mut self) -> &mut Segment<H> {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    /// Position in `segments` of the segment holding `index`, if any holds it.
    pub fn segment_position(&self, index: u64) -> Option<usize> {
        let after = self.segments.partition_point(|s| s.first_index <= index);
        let position = after.checked_sub(1)?;
        (index < self.segments[position].end_index()).then_some(position)
    }

    /// The term of `index`, which may be `first_index - 1`.
    pub fn term(&self, index: u64) -> Result<u64> {
        let last_index = self.last_index();
        if index > last_index {
            return Err(Error::Unavailable { index, last_index });
        }
        if index + 1 == self.first_index {
            return Ok(self.prev_term);
        }
        if index < self.first_index {
            return Err(Error::Compacted { index, first_index: self.first_index });
        }
        let position = self.segment_position(index).expect("live index has a segment");
        Ok(self.segments[position].loc(index).expect("live index has a location").term)
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index()).expect("the last index always has a term")
    }

    /// Drops every entry from `from` on and returns the segments left without entries, for
    /// the caller to delete. `segments` may be left empty: the caller pushes the segment that
    /// starts at `from` right after, which restores invariants 1 and 2.
    pub fn truncate_from(&mut self, from: u64) -> Vec<Segment<H>> {
        let mut dropped = Vec::new();
        while self.segments.last().is_some_and(|s| s.first_index >= from) {
            dropped.push(self.segments.pop().expect("checked non-empty"));
        }
        if let Some(last) = self.segments.last_mut() {
            let keep = usize::try_from(from - last.first_index).unwrap_or(usize::MAX);
            last.locs.truncate(keep);
        }
        dropped
    }
}
