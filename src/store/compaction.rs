//! Compaction: the meta's first index moves first (durably), then whole segments below it are
//! removed. Entries below the first index are hidden even while their segment is kept.
//!
//! Invariants:
//! 1. Only durable entries are compacted; `term(first_index - 1)` still answers.
//! 2. A removed segment that comes back after a crash is recognised as dead (its id is below
//!    the meta's `segment_id_min`), so removals need no directory fsync.
//! 3. Appends go on during a compaction: it holds the sync gate, and the writer lock only to
//!    read the hard state; its meta write and the recycling of dead segments (renames and a
//!    directory fsync) run without it.

use std::sync::atomic::Ordering;

use super::state::Segment;
use super::{lock, read, write, Inner, LogStore};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::meta::Meta;

impl<F: FileSystem> LogStore<F> {
    /// Drops every entry up to and including `index`, durably: whole segments are deleted, the
    /// rest is hidden. `term(index)` still answers. Entries up to `index` are synced first.
    pub fn compact_to(&self, index: u64) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        if index > inner.durable_index.load(Ordering::Acquire) {
            inner.sync()?;
        }
        let _gate = inner.settled_gate()?;
        // The writer lock only for the hard state the meta copies: appends go on while the meta
        // is written and dead segments are recycled (a rotation only adds segments after them).
        let hard_state = lock(&inner.writer).hard_state;
        let (prev_term, segment_id_min) = {
            let log = read(&inner.log);
            if index < log.first_index {
                return Ok(());
            }
            let last_index = log.last_index();
            if index > last_index || index > inner.durable_index.load(Ordering::Acquire) {
                return Err(Error::Unavailable { index, last_index });
            }
            let holder = log.segment_position(index + 1).map_or(log.active(), |p| &log.segments[p]);
            (log.term(index)?, holder.id)
        };
        inner.poison_on_err(inner.store_meta(|meta| Meta {
            first_index: index + 1,
            prev_term,
            segment_id_min,
            hard_state,
            ..meta
        }))?;
        let dead = {
            let mut log = write(&inner.log);
            log.first_index = index + 1;
            log.prev_term = prev_term;
            let keep_from = log.segments.iter().position(|s| s.id >= segment_id_min).unwrap_or(0);
            log.segments.drain(..keep_from).collect()
        };
        inner.poison_on_err(inner.remove_segments(dead))
    }
}

impl<F: FileSystem> Inner<F> {
    /// Removes dead segments and their indexes, or recycles a dead segment into the segment
    /// pool when the pool has room and nothing outside the store holds its bytes. Removed
    /// names need no directory sync: recovery recognises a dead segment that comes back.
    /// Readers holding their data keep it.
    pub(super) fn remove_segments(&self, dead: Vec<Segment<F::File>>) -> Result<()> {
        let mut remove = Vec::new();
        let mut recyclable = Vec::new();
        for segment in dead {
            remove.push(segment.index_path());
            let path = segment.path.clone();
            match segment.into_unshared() {
                Some(path) if self.pool.enabled() => recyclable.push(path),
                _ => remove.push(path),
            }
        }
        if !recyclable.is_empty() {
            let rest = self.pool.recycle(&self.fs, &self.dir, recyclable);
            remove.extend(rest.map_err(|e| Error::io("recycle", &self.dir, e))?);
        }
        for path in remove {
            match self.fs.remove(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("remove", path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}
