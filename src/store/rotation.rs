//! Rotation: sealing the active segment (seal record fsynced, index written and mapped, or
//! left to the maintenance thread) and starting the next one (in a segment-pool file when one
//! is ready).
//!
//! Invariants:
//! 1. A segment is sealed, with its seal record fsynced, before the next one is created.
//! 2. Segment ids only grow (`next_segment_id`).

use std::sync::atomic::Ordering;

use super::maintenance::IndexJob;
use super::state::{Locs, Segment};
use super::writer::{create_segment, Writer};
use super::{read, write, Inner};
use crate::error::Result;
use crate::fs::FileSystem;
use crate::index::{self, IndexHeader};
use crate::segment::format::SegmentHeader;

impl<F: FileSystem> Inner<F> {
    /// Seals the active segment (fsynced) and starts a new one whose first index is `first`.
    pub(super) fn rotate(&self, writer: &mut Writer<F::File>, first: u64) -> Result<()> {
        let prev_term = self.seal_active(writer, true)?;
        let header = self.next_header(writer, first, writer.segment_id, prev_term);
        let segment = self.start_segment(writer, &header)?;
        write(&self.log).segments.push(segment);
        Ok(())
    }

    /// Creates the segment `header` describes (in a segment-pool file when one is ready),
    /// starting with the writer's hard state, and makes it the writer's active segment; everything written before is durable by then (a
    /// seal or a reset's meta preceded it, and the creation is fsynced). The caller puts the
    /// segment in the log.
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
        let (last, count, id, first_index) = {
            let log = read(&self.log);
            let active = log.active();
            (active.last_record(), active.record_count(), active.id, active.first_index)
        };
        let durable = self.durable_index.load(Ordering::Acquire);
        let (data_end, seal_crc) = writer.seal(self.store_uid, last, count, durable)?;
        let header = IndexHeader {
            store_uid: self.store_uid,
            segment_id: id,
            first_index,
            count,
            data_end,
            seal_crc,
        };
        let job = IndexJob { segment_id: id, header, last_term: last.1 };
        // Sealed before the job is queued: the thread indexes sealed segments only.
        write(&self.log).active_mut().sealed = true;
        let inline = if defer_index { self.maintenance.defer_index(job) } else { Some(job) };
        if let Some(job) = inline {
            let (path, locs) = {
                let log = read(&self.log);
                let sealed = log.active();
                let Locs::Memory(locs) = &sealed.locs else { unreachable!("not indexed yet") };
                (sealed.index_path(), locs.clone())
            };
            let segment_index =
                index::write_file(&self.fs, &path, &job.header, &locs, job.last_term)?;
            write(&self.log).active_mut().locs = Locs::Indexed(segment_index);
        }
        self.durable_index.fetch_max(last.0, Ordering::AcqRel);
        self.publish_synced(writer);
        Ok(last.1)
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
