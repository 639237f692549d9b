//! Rotation: sealing the active segment and starting the next one (in a segment-pool file when
//! one is ready).
//!
//! Unless `SyncPolicy::Never`, a rotation inside `append` makes no fsync: under the writer lock
//! it writes the seal into the active segment and the next segment's header and opening record
//! into a file that keeps its pool name (`{k:016x}.free`), switches the writer to it, and queues
//! the rotation as *unsettled*. Appends go on into the new segment at once. The next holder of
//! the sync gate settles it before anything else (`settle_rotations`), without the writer lock:
//! `fdatasync` of the sealed segment (its entries are durable from then on); its index, written
//! or queued for the maintenance thread; `fdatasync` of the new segment; the rename to
//! `{id:016x}.seg`; `fsync(dir)`. So every state a crash leaves is one a synchronous rotation
//! leaves too, but for a pool file holding a header: recovery reads pool files' headers only
//! to keep segment ids growing (`Pool::open`).
//!
//! Invariants:
//! 1. A segment's name becomes durable only after the seal of the segment before it and its
//!    own opening are durable: at most the last named segment is unsealed on disk.
//! 2. Rotations settle in order and only under the sync gate, so a later segment's name is
//!    never durable before an earlier one's.
//! 3. Every holder of the sync gate settles first (`settled_gate`, `sync`): truncation,
//!    compaction, reset, repair and close see named segments only, and a sync reports nothing
//!    durable that lies in an unsettled segment.
//! 4. A sealed segment's index is written (or queued) only once its seal is durable.
//! 5. At most `UNSETTLED_MAX` rotations wait: an append that finds that many settles them
//!    first, holding the gate but not the writer lock.
//! 6. Segment ids only grow (`next_segment_id`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::group_commit::{SyncGate, Synced};
use super::maintenance::IndexJob;
use super::state::Segment;
use super::writer::{create_segment, write_segment_start, Writer};
use super::{lock, read, write, Inner};
use crate::error::{IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::index::IndexHeader;
use crate::options::SyncPolicy;
use crate::segment::format::SegmentHeader;

/// Unsettled rotations an append tolerates before it settles them (invariant 5): enough that a
/// sync following each append never leaves one to the appender, few enough to bound the files
/// held open between syncs.
pub(super) const UNSETTLED_MAX: usize = 2;

/// A rotation whose fsyncs and rename are still owed (module docs).
pub(crate) struct Unsettled<H> {
    /// The segment it sealed, its path, and the last index it holds.
    sealed: Arc<H>,
    sealed_path: PathBuf,
    sealed_last: u64,
    /// The sealed segment's index, to write once its seal is durable (invariant 4).
    index: IndexJob,
    /// The segment it started: its file, still at its pool name `from`, to be renamed `to`.
    segment_id: u64,
    file: Arc<H>,
    from: PathBuf,
    to: PathBuf,
}

impl<F: FileSystem> Inner<F> {
    /// Seals the active segment and starts a new one whose first index is `first`: unsettled
    /// (module docs), or at once, fsyncs included, under `SyncPolicy::Never`, where no sync
    /// would settle it.
    pub(super) fn rotate(&self, writer: &mut Writer<F::File>, first: u64) -> Result<()> {
        if self.options.sync_policy == SyncPolicy::Never {
            let prev_term = self.seal_active(writer, true)?;
            let header = self.next_header(writer, first, writer.segment_id, prev_term);
            let segment = self.start_segment(writer, &header)?;
            write(&self.log).segments.push(segment);
            return Ok(());
        }
        let sealed = (Arc::clone(&writer.file), writer.path.clone());
        let (index, last) = self.write_active_seal(writer)?;
        let header = self.next_header(writer, first, writer.segment_id, last.1);
        let (file, from) = match self.pool.take() {
            Some(from) => (self.fs.open(&from).ctx("open", &from)?, from),
            None => {
                let from = self.pool.reserve(&self.dir);
                let file = self.fs.create(&from).ctx("create", &from)?;
                if self.options.preallocate {
                    file.allocate(self.options.segment_bytes_max).ctx("allocate", &from)?;
                }
                (file, from)
            }
        };
        self.maintenance.notify();
        writer.hard_state_sequence += 1;
        let (segment, records_start) =
            write_segment_start(&self.dir, &header, writer.carried(), file, &from)?;
        writer.switch_to(&segment, records_start);
        writer.unsettled.push_back(Unsettled {
            sealed: sealed.0,
            sealed_path: sealed.1,
            sealed_last: last.0,
            index,
            segment_id: segment.id,
            file: Arc::clone(&segment.file),
            from,
            to: segment.path.clone(),
        });
        write(&self.log).segments.push(segment);
        Ok(())
    }

    /// Waits for the sync gate, holds it and settles every unsettled rotation (invariant 3).
    pub(super) fn settled_gate(&self) -> Result<SyncGate<'_>> {
        let gate = self.sync_gate();
        self.settle_rotations()?;
        Ok(gate)
    }

    /// Settles the unsettled rotations, oldest first; the caller holds the sync gate. The last
    /// one's fdatasync of the active segment covers everything written before it was taken,
    /// which is published as a sync would.
    pub(super) fn settle_rotations(&self) -> Result<()> {
        loop {
            let (rotation, covered) = {
                let mut writer = lock(&self.writer);
                let Some(rotation) = writer.unsettled.pop_front() else { return Ok(()) };
                let last = writer.unsettled.is_empty();
                let covered = last.then(|| Synced::of(&writer, read(&self.log).last_index()));
                (rotation, covered)
            };
            self.poison_on_err(self.settle(rotation, covered))?;
        }
    }

    /// The fsyncs and rename `rotation` owes (module docs), then `covered` published.
    fn settle(&self, rotation: Unsettled<F::File>, covered: Option<Synced>) -> Result<()> {
        rotation.sealed.sync_data().ctx("sync_data", &rotation.sealed_path)?;
        self.durable_index.fetch_max(rotation.sealed_last, Ordering::AcqRel);
        self.index_sealed(rotation.index, true)?;
        rotation.file.sync_data().ctx("sync_data", &rotation.from)?;
        self.fs.rename(&rotation.from, &rotation.to).ctx("rename", &rotation.from)?;
        self.fs.sync_dir(&self.dir).ctx("sync_dir", &self.dir)?;
        match covered {
            Some(covered) => self.mark_and_publish(rotation.segment_id, covered),
            None => Ok(()),
        }
    }

    /// Creates the segment `header` describes (in a segment-pool file when one is ready),
    /// starting with the writer's hard state, and makes it the writer's active segment;
    /// everything written before is durable by then (a seal or a reset's meta preceded it, and
    /// the creation is fsynced). The caller puts the segment in the log.
    pub(super) fn start_segment(
        &self,
        writer: &mut Writer<F::File>,
        header: &SegmentHeader,
    ) -> Result<Segment<F::File>> {
        writer.hard_state_sequence += 1;
        let place = (self.dir.as_path(), &self.options);
        let pooled = self.pool.take();
        self.maintenance.notify();
        let (segment, records_start) =
            create_segment(&self.fs, place, header, writer.carried(), pooled)?;
        writer.switch_to(&segment, records_start);
        writer.bytes_since_sync = 0;
        self.publish_synced(writer);
        Ok(segment)
    }

    /// Seals the active segment (seal record fsynced) and writes its index, or, when
    /// `defer_index` and a maintenance thread runs, leaves the index to that thread (the
    /// segment keeps its in-memory locations until then). Returns the term of its last record.
    pub(super) fn seal_active(
        &self,
        writer: &mut Writer<F::File>,
        defer_index: bool,
    ) -> Result<u64> {
        let (index, last) = self.write_active_seal(writer)?;
        writer.file.sync_data().ctx("sync_data", &writer.path)?;
        self.index_sealed(index, defer_index)?;
        self.durable_index.fetch_max(last.0, Ordering::AcqRel);
        self.publish_synced(writer);
        Ok(last.1)
    }

    /// Writes the active segment's seal (no fsync) and marks it sealed in the log. Returns
    /// its index job and its last record (index, term).
    fn write_active_seal(&self, writer: &mut Writer<F::File>) -> Result<(IndexJob, (u64, u64))> {
        let (last, count, id, first_index) = {
            let log = read(&self.log);
            let active = log.active();
            (active.last_record(), active.record_count(), active.id, active.first_index)
        };
        let durable = self.durable_index.load(Ordering::Acquire);
        let (data_end, seal_crc) = writer.write_seal(self.store_uid, last, count, durable)?;
        let header = IndexHeader {
            store_uid: self.store_uid,
            segment_id: id,
            first_index,
            count,
            data_end,
            seal_crc,
        };
        // Sealed before its job is queued: the thread indexes sealed segments only.
        write(&self.log).active_mut().sealed = true;
        Ok((IndexJob { segment_id: id, header, last_term: last.1 }, last))
    }

    /// Writes the index of a segment whose seal is durable, or queues it for the maintenance
    /// thread when `defer` and one runs.
    fn index_sealed(&self, job: IndexJob, defer: bool) -> Result<()> {
        let inline = if defer { self.maintenance.defer_index(job) } else { Some(job) };
        match inline {
            Some(job) => self.write_index(job),
            None => Ok(()),
        }
    }

    pub(super) fn next_header(
        &self,
        writer: &mut Writer<F::File>,
        first: u64,
        prev_id: u64,
        prev_term: u64,
    ) -> SegmentHeader {
        let segment_id = writer.next_segment_id;
        writer.next_segment_id += 1;
        SegmentHeader {
            store_uid: self.store_uid,
            segment_id,
            first_index: first,
            prev_segment_id: prev_id,
            prev_term,
        }
    }
}
