//! The in-memory view of the log: its segments and where each live entry lies.
//!
//! Invariants:
//! 1. `segments` is never empty, is ordered by id, and its entry ranges are contiguous:
//!    `segments[k + 1].first_index == segments[k].end_index()`.
//! 2. The last segment is the active one and is not sealed; all others are sealed.
//! 3. `segments[0].first_index <= first_index <= last_index() + 1`; entries below
//!    `first_index` are hidden (compacted) even while their segment is kept.
//! 4. `prev_term` is the term of `first_index - 1`.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fs::FileHandle;
use crate::hard_state::HardState;
use crate::index::SegmentIndex;
use crate::segment::Loc;

/// Where a segment's entries lie.
pub(crate) enum Locs<M> {
    /// The active segment, or a sealed one just scanned by recovery and not yet indexed.
    Memory(Vec<Loc>),
    /// A sealed segment: its verified, mapped index file.
    Indexed(SegmentIndex<M>),
}

impl<M> Locs<M> {
    /// Entry records described, live or overridden.
    pub fn count(&self) -> u64 {
        match self {
            Locs::Memory(locs) => locs.len() as u64,
            Locs::Indexed(index) => index.count(),
        }
    }
}

/// One segment file as the store holds it.
pub(crate) struct Segment<H: FileHandle> {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<H>,
    /// Index of the segment's first record.
    pub first_index: u64,
    /// Term of `first_index - 1` when the segment was created (from its header).
    pub prev_term: u64,
    /// One past the last live index; below the physical end once a newer segment overrode
    /// the rest (invariant 1 holds for live ranges).
    live_end: u64,
    pub locs: Locs<H::Map>,
    pub sealed: bool,
    /// A sealed segment's bytes, mapped on first read and shared by every payload handed out.
    data: OnceLock<Bytes>,
    /// Cloned into the owner of `data`'s map: while a payload handed out is alive, the count
    /// is above one (so the file is not recycled under it).
    mapped: Arc<()>,
}

/// A segment's map as the owner of the `Bytes` handed out, holding the segment's `mapped`
/// token until the last of them is dropped.
struct MappedFile<M> {
    map: M,
    _token: Arc<()>,
}

impl<M: AsRef<[u8]>> AsRef<[u8]> for MappedFile<M> {
    fn as_ref(&self) -> &[u8] {
        self.map.as_ref()
    }
}

impl<H: FileHandle> Segment<H> {
    pub fn new(
        id: u64,
        path: PathBuf,
        file: Arc<H>,
        (first_index, prev_term): (u64, u64),
        locs: Locs<H::Map>,
        sealed: bool,
    ) -> Self {
        let mut segment = Segment {
            id,
            path,
            file,
            first_index,
            prev_term,
            live_end: first_index,
            locs,
            sealed,
            data: OnceLock::new(),
            mapped: Arc::new(()),
        };
        segment.live_end = first_index + segment.record_count();
        segment
    }

    /// Entry records in the file, live or overridden.
    pub fn record_count(&self) -> u64 {
        self.locs.count()
    }

    /// One past the segment's last live index.
    pub fn end_index(&self) -> u64 {
        self.live_end
    }

    /// The last index and term of the segment's records, for its seal record.
    pub fn last_record(&self) -> (u64, u64) {
        let last_term = match &self.locs {
            Locs::Memory(locs) => locs.last().map_or(self.prev_term, |loc| loc.term),
            Locs::Indexed(index) => index.last_term(),
        };
        (self.first_index + self.record_count() - 1, last_term)
    }

    /// Where the live entry `index` lies.
    pub fn loc(&self, index: u64) -> Option<Loc> {
        if index < self.first_index || index >= self.live_end {
            return None;
        }
        match &self.locs {
            Locs::Memory(locs) => {
                locs.get(usize::try_from(index - self.first_index).ok()?).copied()
            }
            Locs::Indexed(segment_index) => segment_index.loc(index),
        }
    }

    /// Records appended to the active segment.
    pub fn push(&mut self, new: Vec<Loc>) {
        let Locs::Memory(locs) = &mut self.locs else { panic!("append to an indexed segment") };
        assert_eq!(self.live_end, self.first_index + locs.len() as u64, "append after an override");
        self.live_end += new.len() as u64;
        locs.extend(new);
    }

    /// Hides the entries from `end` on (a newer segment overrides them).
    pub fn truncate_live(&mut self, end: u64) {
        self.live_end = self.live_end.min(end.max(self.first_index));
    }

    /// The path of this segment's index file.
    pub fn index_path(&self) -> PathBuf {
        self.path.with_extension("idx")
    }

    /// The sealed segment's bytes, mapped once.
    pub fn data(&self) -> io::Result<Bytes> {
        if let Some(bytes) = self.data.get() {
            return Ok(bytes.clone());
        }
        let owner = MappedFile { map: self.file.map()?, _token: Arc::clone(&self.mapped) };
        Ok(self.data.get_or_init(|| Bytes::from_owner(owner)).clone())
    }

    /// Reads from `file` from now on (a repaired copy renamed over the segment): the old
    /// file and its map stay with whoever holds them.
    pub fn replace_file(&mut self, file: Arc<H>) {
        self.file = file;
        self.data = OnceLock::new();
        self.mapped = Arc::new(());
    }

    /// The segment's path when nothing but this value holds its file or its bytes (no
    /// reader's handle, no payload handed out), so its blocks may be overwritten; `None`
    /// otherwise. The segment must be out of the log (no new reader can find it).
    pub fn into_unshared(mut self) -> Option<PathBuf> {
        drop(self.data.take());
        let unshared = Arc::strong_count(&self.mapped) == 1 && Arc::strong_count(&self.file) == 1;
        unshared.then_some(self.path)
    }
}

/// The log's segments, bounds and hard state.
pub(crate) struct LogState<H: FileHandle> {
    /// Never empty; contiguous live ranges; the last is the active one (invariants 1, 2).
    pub segments: Vec<Segment<H>>,
    /// First live index, inclusive; `<= last_index() + 1`, `<= INDEX_MAX + 1`.
    pub first_index: u64,
    /// Term of `first_index - 1` (0 for a new log).
    pub prev_term: u64,
    /// The durable hard state: the newest record of it that an fsync covered (or the meta
    /// file's, for a format-1 store). `commit <= last_index()`.
    pub hard_state: HardState,
    /// The durable engine metadata kept with it.
    pub metadata: Bytes,
}

impl<H: FileHandle> LogState<H> {
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
            last.truncate_live(from);
        }
        dropped
    }
}
