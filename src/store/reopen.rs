//! What recovery does once every row is decided and the repairs are applied: rebuilding the
//! index of a scanned sealed segment (R14), and reopening the last segment for appends or
//! creating the next one.
//!
//! Invariants:
//! 1. A rebuilt index describes exactly the records the scan verified.
//! 2. The store appends only to a segment whose recovered records are durable (fsynced here),
//!    or to a new one created durably after the last live entry.

use std::path::Path;

use super::pool::Pool;
use super::state::{Locs, LogState, Segment};
use super::writer::{create_segment, Writer};
use crate::error::{IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::index;
use crate::meta::Meta;
use crate::options::Options;
use crate::segment::format::{CarriedHardState, SegmentHeader};

/// Writes the index of a scanned sealed segment (R14).
pub(super) fn rebuild_index<F: FileSystem>(
    fs: &F,
    store_uid: u64,
    segment: &Segment<F::File>,
    data_end: u64,
) -> Result<index::MappedIndex<F>> {
    let Locs::Memory(locs) = &segment.locs else {
        unreachable!("only scanned segments are rebuilt")
    };
    let mut seal_crc = [0u8; 4];
    segment.file.read_exact_at(&mut seal_crc, data_end).ctx("read", &segment.path)?;
    let header = index::IndexHeader {
        store_uid,
        segment_id: segment.id,
        first_index: segment.first_index,
        count: locs.len() as u64,
        data_end,
        seal_crc: u32::from_le_bytes(seal_crc),
    };
    let (_, last_term) = segment.last_record();
    index::write_file(fs, &segment.index_path(), &header, locs, last_term)
}

/// Reopens the last segment for appends, or creates a new active segment after it.
pub(super) fn open_active<F: FileSystem>(
    fs: &F,
    (dir, options): (&Path, &Options),
    meta: &Meta,
    log: &mut LogState<F::File>,
    (next_segment_id, records_end, hard_state_sequence): (u64, u64, u64),
    pool: &Pool,
) -> Result<Writer<F::File>> {
    let carried = (log.hard_state, log.metadata.clone(), hard_state_sequence);
    if let Some(active) = log.segments.last().filter(|s| !s.sealed) {
        // Recovered records may still sit in the page cache only (a clean restart without a
        // crash): sync them so everything the store starts with is durable.
        active.file.sync_data().ctx("sync_data", &active.path)?;
        let mut writer = Writer::new(active, records_end, next_segment_id, carried)
            .with_compression(options.compression);
        writer.write_sync_mark(meta.store_uid, log.last_index(), hard_state_sequence)?;
        return Ok(writer);
    }
    let header = match log.segments.last() {
        Some(_) => {
            let last_index = log.last_index();
            let holder = log.segment_position(last_index).filter(|_| last_index >= log.first_index);
            SegmentHeader {
                store_uid: meta.store_uid,
                segment_id: next_segment_id,
                first_index: last_index + 1,
                prev_segment_id: holder.map_or(0, |position| log.segments[position].id),
                prev_term: log.last_term(),
            }
        }
        None => SegmentHeader {
            store_uid: meta.store_uid,
            segment_id: next_segment_id,
            first_index: meta.first_index,
            prev_segment_id: 0,
            prev_term: meta.prev_term,
        },
    };
    let mut writer_state = carried;
    writer_state.2 += 1;
    let new_record = CarriedHardState {
        sequence: writer_state.2,
        hard_state: writer_state.0,
        metadata: &writer_state.1,
    };
    let pooled = pool.take_or_fill(fs, dir, options.segment_bytes_max)?;
    let (segment, records_start) = create_segment(fs, (dir, options), &header, new_record, pooled)?;
    let writer = Writer::new(&segment, records_start, next_segment_id + 1, writer_state)
        .with_compression(options.compression);
    log.segments.push(segment);
    Ok(writer)
}
