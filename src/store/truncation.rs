//! Truncation and reset: a newer segment overrides a suffix (`truncate_suffix`), or the meta
//! declares every segment dead and a new one starts (`reset`). Both are durable when they
//! return.
//!
//! Invariants:
//! 1. Nothing at or below the persisted commit index is ever dropped.
//! 2. The overriding segment (or the meta) is durable before any old file is removed.

use std::sync::atomic::Ordering;

use super::writer::Writer;
use super::{lock, read, write, Inner, LogStore};
use crate::entry::INDEX_MAX;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::meta::Meta;

impl<F: FileSystem> LogStore<F> {
    /// Drops `[from, last_index()]`, durably. Refused at or below the commit index.
    pub fn truncate_suffix(&self, from: u64) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let _gate = inner.settled_gate()?;
        let mut writer = lock(&inner.writer);
        {
            let log = read(&inner.log);
            let commit = log.hard_state.commit;
            let last_index = log.last_index();
            if from <= commit {
                return Err(Error::Committed { index: from, commit });
            }
            if from < log.first_index {
                return Err(Error::Compacted { index: from, first_index: log.first_index });
            }
            if from > last_index + 1 {
                return Err(Error::Unavailable { index: from, last_index });
            }
            if from == last_index + 1 {
                return Ok(());
            }
        }
        inner.poison_on_err(inner.replace_suffix(&mut writer, from))
    }
    /// Drops the whole log; it continues after `index`, whose term is `term` (a follower that
    /// installed a snapshot beyond its log). Durable when it returns. Refused below the commit
    /// index.
    pub fn reset(&self, index: u64, term: u64) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        if index > INDEX_MAX {
            return Err(Error::IndexTooLarge { index, max: INDEX_MAX });
        }
        let first_index = index + 1;
        let _gate = inner.settled_gate()?;
        let mut writer = lock(&inner.writer);
        let commit = read(&inner.log).hard_state.commit;
        if index < commit {
            return Err(Error::Committed { index: first_index, commit });
        }
        inner.poison_on_err(inner.replace_all(&mut writer, first_index, term))
    }
}

impl<F: FileSystem> Inner<F> {
    /// `truncate_suffix` once checked: seal, then a new segment at `from` overrides the rest.
    pub(super) fn replace_suffix(&self, writer: &mut Writer<F::File>, from: u64) -> Result<()> {
        self.seal_active(writer, false)?;
        let (prev_id, prev_term) = {
            let log = read(&self.log);
            let prev = from - 1;
            match log.segment_position(prev).filter(|_| prev >= log.first_index) {
                Some(position) => (log.segments[position].id, log.term(prev)?),
                None => (0, log.prev_term),
            }
        };
        // The segments the new one overrides go, and with them their copies of the hard
        // state: the meta keeps one, in case the new segment's first record rots before
        // anything follows it.
        let hard_state = writer.hard_state;
        self.store_meta(|meta| Meta { hard_state, ..meta })?;
        let header = self.next_header(writer, from, prev_id, prev_term);
        let segment = self.start_segment(writer, &header)?;
        let dead = {
            let mut log = write(&self.log);
            let dead = log.truncate_from(from);
            log.segments.push(segment);
            dead
        };
        self.durable_index.store(from - 1, Ordering::Release);
        self.remove_segments(dead)
    }
    /// `reset` once checked: the meta declares every segment dead, then a new one starts.
    pub(super) fn replace_all(
        &self,
        writer: &mut Writer<F::File>,
        first_index: u64,
        prev_term: u64,
    ) -> Result<()> {
        let header = self.next_header(writer, first_index, 0, prev_term);
        // The meta keeps the hard state too: if the new segment's first record (its only
        // other copy, the old segments being dead) rots before anything follows it, the
        // hard state survives.
        let hard_state = writer.hard_state;
        self.store_meta(|meta| Meta {
            first_index,
            prev_term,
            segment_id_min: header.segment_id,
            hard_state,
            ..meta
        })?;
        let segment = self.start_segment(writer, &header)?;
        let dead = {
            let mut log = write(&self.log);
            log.first_index = first_index;
            log.prev_term = prev_term;
            std::mem::replace(&mut log.segments, vec![segment])
        };
        self.durable_index.store(first_index - 1, Ordering::Release);
        self.remove_segments(dead)
    }
}
