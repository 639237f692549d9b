//! Opening a store: lock, meta, segment scan, the recovery decision table, then repairs.
//!
//! The decision table (format/SPEC.md, "Recovery") is `decision::decide`.
//!
//! Sealed segments are opened through their index (R14 when it fails): header, seal record and
//! index checksums are read, not the records. Only the unsealed last segment is scanned record
//! by record. Detection produces a `Finding` per row; `decide` is the table itself, one match
//! arm per row, and the only place a finding becomes a repair or a refusal.
//!
//! Invariants:
//! 1. Nothing on disk changes before every row has been decided: an open that returns
//!    `Corrupt` leaves the directory as it found it.
//! 2. A tail is cut only when nothing proves it was ever durable (R7), and never below the
//!    commit index (R13).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::decision::{decide, refuse, Cut, Finding, Repairs};
use super::pool::Pool;
use super::reopen::{open_active, rebuild_index};
pub use super::report::{IndexRebuild, LostPrefix, RecoveryReport, TailDurability, TornTail};
use super::state::{Locs, LogState, Segment};
use super::writer::Writer;
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{create_dir_durable, FileHandle, FileSystem};
use crate::hard_state::HardState;
use crate::index::{self, IndexProblem};
use crate::meta::{Meta, MetaFile, MetaRead, META_FILE};
use crate::options::Options;
use crate::segment::format::{SegmentHeader, StoredHardState};
use crate::segment::{self, read_header, scan_segment, HeaderDamage, Scanned, Tail};

/// File name of the directory lock.
pub const LOCK_FILE: &str = "LOCK";

/// Everything `LogStore` is built from.
pub(crate) struct Recovered<F: FileSystem> {
    pub lock: F::Lock,
    pub meta: MetaFile<F>,
    pub log: LogState<F::File>,
    pub writer: Writer<F::File>,
    pub pool: Pool,
    pub report: RecoveryReport,
}

/// A live segment as recovery found it.
struct Candidate<H: FileHandle> {
    id: u64,
    path: PathBuf,
    file: Arc<H>,
    opened: Opened<H::Map>,
}

/// What opening a live segment gave.
enum Opened<M> {
    /// A valid header (through the index, or a scan).
    Segment(Box<Found<M>>),
    /// A header that could not be used.
    DamagedHeader(HeaderDamage),
}

/// A segment with a valid header.
struct Found<M> {
    header: SegmentHeader,
    locs: Locs<M>,
    sealed: bool,
    tail: Tail,
    file_len: u64,
    /// End of the valid records (for a sealed segment, past its seal).
    records_end: u64,
    /// Where a sealed segment's seal lies.
    seal_offset: Option<u64>,
    /// The last hard state and metadata the segment carries, if any (format 2).
    hard_state: Option<StoredHardState>,
    /// Why the segment's index must be rebuilt, when it is sealed and its index unusable (R14).
    index_rebuild: Option<IndexProblem>,
}

impl<M> Found<M> {
    fn from_scan(scanned: Scanned) -> Self {
        Found {
            header: scanned.header,
            locs: Locs::Memory(scanned.locs),
            sealed: scanned.sealed,
            tail: scanned.tail,
            file_len: scanned.file_len,
            records_end: scanned.end_offset,
            seal_offset: scanned.seal_offset,
            hard_state: scanned.hard_state,
            index_rebuild: None,
        }
    }
}

/// What the live segments tell recovery beyond their entries.
struct LastSegment {
    /// The newest hard state and metadata they carry (none in format-1 segments).
    hard_state: Option<StoredHardState>,
    /// Where its valid records end: the write position, if it stays active.
    records_end: u64,
}

pub(crate) fn recover<F: FileSystem>(
    fs: &F,
    dir: &Path,
    options: &Options,
) -> Result<Recovered<F>> {
    create_dir_durable(fs, dir).ctx("create_dir", dir)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked { path: lock_path.clone() },
        _ => Error::io("lock", &lock_path, e),
    })?;
    let names = fs.list(dir).ctx("list", dir)?;
    let mut ids: Vec<u64> =
        names.iter().filter_map(|n| n.to_str().and_then(segment::parse_file_name)).collect();
    ids.sort_unstable();
    let index_ids: Vec<u64> =
        names.iter().filter_map(|n| n.to_str().and_then(index::parse_file_name)).collect();
    let mut report = RecoveryReport::default();
    let has_meta = names.iter().any(|n| n.as_path() == Path::new(META_FILE));
    let mut repairs = Repairs { remove: Vec::new(), cut: None, rebuild: Vec::new(), restart: None };
    let mut meta = open_meta(fs, dir, has_meta, !ids.is_empty(), &mut repairs, &mut report)?;
    let current = *meta.current();
    let next_segment_id = ids.last().map_or(0, |id| id + 1).max(current.segment_id_min);
    let (dead, live): (Vec<u64>, Vec<u64>) =
        ids.into_iter().partition(|id| *id < current.segment_id_min);
    for id in dead {
        let path = dir.join(segment::file_name(id));
        decide(Finding::DeadSegment { path }, &mut repairs, &mut report)?;
    }
    for id in index_ids.iter().filter(|id| !live.contains(id)) {
        let path = dir.join(index::file_name(*id));
        decide(Finding::StaleIndex { path }, &mut repairs, &mut report)?;
    }
    let candidates = open_candidates(fs, dir, current.store_uid, &live)?;
    for candidate in &candidates {
        let indexed = matches!(&candidate.opened,
            Opened::Segment(found) if matches!(found.locs, Locs::Indexed(_)));
        report.indexed_segments += usize::from(indexed);
        report.scanned_bytes += match &candidate.opened {
            _ if indexed => 0,
            Opened::Segment(found) => found.file_len,
            Opened::DamagedHeader(damage) => damage.file_len,
        };
    }
    let (mut log, last) = assemble(&current, candidates, &mut repairs, &mut report)?;
    // The newest hard state: the newest a segment carries (format 2 records it in every
    // segment), unless the meta's is newer (a truncation or reset copies it there, for when
    // the new segment's first record is cut); hard states only move forward.
    let hard_state_sequence = match last.hard_state {
        Some(stored) => {
            if newer_than(stored.hard_state, log.hard_state) {
                log.hard_state = stored.hard_state;
            }
            log.metadata = Bytes::from(stored.metadata);
            stored.sequence
        }
        None => 0,
    };
    check_commit(&log, &mut repairs, &mut report, dir)?;
    apply_repairs(fs, (dir, current.store_uid), options, &mut log, &mut repairs, &mut report)?;
    if let Some((first_index, prev_term, segment_id_min)) = repairs.restart {
        let hard_state = log.hard_state;
        meta.store(Meta { first_index, prev_term, segment_id_min, hard_state, ..current })?;
    }
    let (pool, ids_above) = Pool::open(fs, (dir, current.store_uid), options.segment_pool, &names)?;
    let next = (next_segment_id.max(ids_above), last.records_end, hard_state_sequence);
    let writer = open_active(fs, (dir, options), &current, &mut log, next, &pool)?;
    report.segments = log.segments.len();
    report.first_index = log.first_index;
    report.last_index = log.last_index();
    report.removed_files = repairs.remove;
    Ok(Recovered { lock, meta, log, writer, pool, report })
}

/// Whether hard state `a` comes after `b`: the Raft rules only ever raise the term, the
/// commit index, and the vote from none to one, so this order is total on the hard states
/// one store writes.
fn newer_than(a: HardState, b: HardState) -> bool {
    let key = |h: HardState| (h.term, h.commit, h.vote != 0);
    key(a) > key(b)
}

/// Segments a thread opens at least: below that, a thread costs more than it saves.
const PARALLEL_OPEN_SEGMENTS_MIN: usize = 4;

/// Opens the live segments `ids`, in id order, spreading them over the machine's cores: each
/// segment is opened independently (verifying an index is the bulk of opening a store).
fn open_candidates<F: FileSystem>(
    fs: &F,
    dir: &Path,
    store_uid: u64,
    ids: &[u64],
) -> Result<Vec<Candidate<F::File>>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(8);
    let per_thread = ids.len().div_ceil(threads).max(PARALLEL_OPEN_SEGMENTS_MIN);
    if ids.len() <= per_thread {
        return ids.iter().map(|&id| open_candidate(fs, dir, store_uid, id)).collect();
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || -> Result<Vec<_>> {
                    chunk.iter().map(|&id| open_candidate(fs, dir, store_uid, id)).collect()
                })
            })
            .collect();
        let mut candidates = Vec::with_capacity(ids.len());
        for worker in workers {
            candidates.extend(worker.join().expect("a segment-opening thread panicked")?);
        }
        Ok(candidates)
    })
}

/// Opens live segment `id`: through its index when it has a valid one (sealed; no scan),
/// otherwise by a scan. An index that fails is rebuilt if the scan finds the segment sealed
/// (R14); an unsealed segment's index, if any, is stale (R15).
fn open_candidate<F: FileSystem>(
    fs: &F,
    dir: &Path,
    store_uid: u64,
    id: u64,
) -> Result<Candidate<F::File>> {
    let path = dir.join(segment::file_name(id));
    let file = fs.open(&path).ctx("open", &path)?;
    let index_problem = match open_indexed(fs, &path, &file, store_uid, id)? {
        Ok(found) => {
            let opened = Opened::Segment(Box::new(found));
            return Ok(Candidate { id, path, file: Arc::new(file), opened });
        }
        Err(problem) => problem,
    };
    let opened = match scan_segment(&file, store_uid, id).ctx("read", &path)? {
        Ok(scanned) => {
            let index_rebuild = scanned.sealed.then_some(index_problem);
            Opened::Segment(Box::new(Found { index_rebuild, ..Found::from_scan(scanned) }))
        }
        Err(damage) => Opened::DamagedHeader(damage),
    };
    Ok(Candidate { id, path, file: Arc::new(file), opened })
}

/// A sealed segment opened by its header, seal record and verified index; the reason its
/// index cannot be used otherwise.
fn open_indexed<F: FileSystem>(
    fs: &F,
    path: &Path,
    file: &F::File,
    store_uid: u64,
    id: u64,
) -> Result<Result<Found<<F::File as FileHandle>::Map>, IndexProblem>> {
    let header = match read_header(file, store_uid, id).ctx("read", path)? {
        Ok(header) => header,
        Err(reason) => return Ok(Err(IndexProblem::Damaged(reason))),
    };
    let file_len = file.size().ctx("stat", path)?;
    let expected = index::Expected {
        store_uid,
        segment_id: id,
        first_index: header.first_index,
        prev_term: header.prev_term,
        segment_len: file_len,
    };
    let verified = match index::open_verified(fs, &path.with_extension("idx"), &expected)? {
        Ok(verified) => verified,
        Err(problem) => return Ok(Err(problem)),
    };
    let last_term = verified.index.last_term();
    let hard_state =
        match index::check_sealed(file, &header, &verified.header, last_term).ctx("read", path)? {
            Ok(hard_state) => hard_state,
            Err(reason) => return Ok(Err(IndexProblem::Damaged(reason))),
        };
    Ok(Ok(Found {
        header,
        locs: Locs::Indexed(verified.index),
        sealed: true,
        tail: Tail::Clean,
        file_len,
        records_end: file_len,
        seal_offset: Some(verified.header.data_end),
        hard_state,
        index_rebuild: None,
    }))
}

/// Rows R1 to R3.
fn open_meta<F: FileSystem>(
    fs: &F,
    dir: &Path,
    has_meta: bool,
    has_segments: bool,
    repairs: &mut Repairs<F::File>,
    report: &mut RecoveryReport,
) -> Result<MetaFile<F>> {
    let path = dir.join(META_FILE);
    let blank = if has_meta {
        match MetaFile::<F>::read(fs, &path)? {
            (file, MetaRead::Valid { meta, damaged_slot }) => {
                if let Some(slot) = damaged_slot {
                    decide(Finding::MetaSlotDamaged { slot }, repairs, report)?;
                }
                return Ok(MetaFile::new(file, path, meta));
            }
            (file, MetaRead::Blank) => Some(file),
        }
    } else {
        None
    };
    if has_segments {
        decide(Finding::MetaUnreadable { path: path.clone() }, repairs, report)?;
    }
    let file = match blank {
        Some(file) => file,
        None => fs.create(&path).ctx("create", &path)?,
    };
    let mut meta = MetaFile::new(file, path, Meta::initial(fs.new_uid()));
    meta.write_initial()?;
    fs.sync_dir(dir).ctx("sync_dir", dir)?;
    decide(Finding::NewStore, repairs, report)?;
    Ok(meta)
}

/// Rows R5 to R12 (and R14, R15 of each segment): classifies every segment and links them
/// into one log.
fn assemble<H: FileHandle>(
    meta: &Meta,
    mut candidates: Vec<Candidate<H>>,
    repairs: &mut Repairs<H>,
    report: &mut RecoveryReport,
) -> Result<(LogState<H>, LastSegment)> {
    let mut previous_must_be_sealed = false;
    if let Some(Candidate { path, opened: Opened::DamagedHeader(damage), .. }) = candidates.last() {
        if !damage.identity && damage.later_valid.is_none() {
            let finding =
                Finding::UnfinishedSegment { path: path.clone(), file_len: damage.file_len };
            decide(finding, repairs, report)?;
            candidates.pop();
            previous_must_be_sealed = true;
        }
    }
    let mut log = LogState {
        segments: Vec::new(),
        first_index: meta.first_index,
        prev_term: meta.prev_term,
        hard_state: meta.hard_state,
        metadata: Bytes::new(),
    };
    let mut last = LastSegment { hard_state: None, records_end: 0 };
    let count = candidates.len();
    // The highest commit index any hard state holds: entries through it are committed (a
    // commit index never goes back), which decides R10.
    let commit = candidates
        .iter()
        .filter_map(|c| match &c.opened {
            Opened::Segment(found) => found.hard_state.as_ref().map(|h| h.hard_state.commit),
            Opened::DamagedHeader(_) => None,
        })
        .fold(meta.hard_state.commit, u64::max);
    for (position, Candidate { id, path, file, opened }) in candidates.into_iter().enumerate() {
        let found = match opened {
            Opened::Segment(found) => *found,
            Opened::DamagedHeader(damage) => {
                let offset = damage.later_valid.unwrap_or(0);
                let finding = Finding::DamagedHeader { path, offset, reason: damage.reason };
                return Err(refuse(finding, repairs, report));
            }
        };
        let is_last = position + 1 == count;
        if let Some(finding) = classify_tail(&path, &file, &found, is_last) {
            decide(finding, repairs, report)?;
        }
        if !found.sealed && (!is_last || previous_must_be_sealed) {
            let end = found.header.first_index + found.locs.count();
            let offset = found.records_end;
            let reason = Corruption::BadSeal;
            let finding = Finding::DamagedSealed { path, offset, indexes: end..end, reason };
            return Err(refuse(finding, repairs, report));
        }
        if !found.sealed {
            decide(Finding::StaleIndex { path: path.with_extension("idx") }, repairs, report)?;
        }
        for finding in link(&mut log, meta, (id, &path, &found.header), commit) {
            decide(finding, repairs, report)?;
        }
        if let Some(problem) = found.index_rebuild {
            let seal_offset =
                found.seal_offset.expect("a segment to rebuild the index of is sealed");
            let finding = Finding::IndexUnusable { segment_id: id, seal_offset, problem };
            decide(finding, repairs, report)?;
        }
        // Later segments carry later hard states; a segment whose own record was cut (R7)
        // leaves the one its predecessor's seal carries.
        let hard_state = found.hard_state.or(last.hard_state.take());
        last = LastSegment { hard_state, records_end: found.records_end };
        let bounds = (found.header.first_index, found.header.prev_term);
        log.segments.push(Segment::new(id, path, file, bounds, found.locs, found.sealed));
    }
    if let Some(last) = log.segments.last() {
        if last.end_index() < meta.first_index {
            let indexes = last.end_index()..meta.first_index;
            let finding = Finding::MissingEntries { path: last.path.clone(), offset: 0, indexes };
            decide(finding, repairs, report)?;
        }
    }
    Ok((log, last))
}

/// Rows R7 to R9 for the bytes after a segment's last valid record.
fn classify_tail<H: FileHandle>(
    path: &Path,
    file: &Arc<H>,
    found: &Found<H::Map>,
    is_last: bool,
) -> Option<Finding<H>> {
    let Tail::Damaged(damage) = &found.tail else { return None };
    let (path, offset) = (path.to_path_buf(), damage.offset);
    if let Some((_, later_index, _)) = damage.later_valid {
        // A sync mark may prove a damaged hard-state record that no entry follows.
        let indexes = damage.expected_index..(later_index + 1).max(damage.expected_index);
        return Some(Finding::DamagedBeforeDurable { path, offset, indexes });
    }
    if !is_last {
        let end = damage.apparent_end_index.max(damage.expected_index + 1);
        let indexes = damage.expected_index..end;
        return Some(Finding::DamagedSealed {
            path,
            offset,
            indexes,
            reason: damage.reason.clone(),
        });
    }
    let durability =
        if damage.never_written { TailDurability::Unsynced } else { TailDurability::Unknown };
    Some(Finding::TornTail {
        cut: Cut { file: Arc::clone(file), path, offset },
        file_len: found.file_len,
        indexes: damage.expected_index..damage.apparent_end_index,
        durability,
    })
}

/// Rows R10 to R12: links segment `id` after those already in `log`; `commit` is the commit
/// index known durable (the meta's, or the segment's own hard state). Returns what it found;
/// a refusal is the last finding.
fn link<H: FileHandle>(
    log: &mut LogState<H>,
    meta: &Meta,
    (id, path, header): (u64, &Path, &SegmentHeader),
    commit: u64,
) -> Vec<Finding<H>> {
    let first = header.first_index;
    let end = log.segments.last().map_or(meta.first_index, Segment::end_index);
    if first > end && first - 1 > commit {
        return vec![Finding::MissingEntries {
            path: path.to_path_buf(),
            offset: 24,
            indexes: end..first,
        }];
    }
    if first > end {
        // Committed entries are missing: the log restarts at this segment (R10).
        let lost = LostPrefix { indexes: log.first_index..first, missing: end..first };
        let dead = std::mem::take(&mut log.segments).into_iter().map(|s| s.path).collect();
        (log.first_index, log.prev_term) = (first, header.prev_term);
        return vec![Finding::LostPrefix { dead, lost, restart: (first, header.prev_term, id) }];
    }
    let mut findings: Vec<Finding<H>> = log
        .truncate_from(first)
        .into_iter()
        .map(|dead| Finding::Overridden { path: dead.path })
        .collect();
    if first > meta.first_index {
        let continues = log.segment_position(first - 1).is_some_and(|position| {
            let previous = &log.segments[position];
            previous.id == header.prev_segment_id
                && previous.loc(first - 1).map(|loc| loc.term) == Some(header.prev_term)
        });
        if !continues {
            findings.push(Finding::BrokenChain { path: path.to_path_buf(), index: first - 1 });
        }
    }
    findings
}

/// Row R13.
fn check_commit<H: FileHandle>(
    log: &LogState<H>,
    repairs: &mut Repairs<H>,
    report: &mut RecoveryReport,
    dir: &Path,
) -> Result<()> {
    let last_index = log.segments.last().map_or(log.first_index - 1, |s| s.end_index() - 1);
    let commit = log.hard_state.commit;
    if commit <= last_index {
        return Ok(());
    }
    let (path, offset) = match (&repairs.cut, log.segments.last()) {
        (Some(cut), _) => (cut.path.clone(), cut.offset),
        (None, Some(segment)) => (segment.path.clone(), 0),
        (None, None) => (dir.join(META_FILE), 0),
    };
    decide(Finding::CommitBeyondLog { path, offset, commit, last_index }, repairs, report)
}

fn apply_repairs<F: FileSystem>(
    fs: &F,
    (dir, store_uid): (&Path, u64),
    options: &Options,
    log: &mut LogState<F::File>,
    repairs: &mut Repairs<F::File>,
    report: &mut RecoveryReport,
) -> Result<()> {
    if let Some(Cut { file, path, offset }) = &repairs.cut {
        file.set_len(*offset).ctx("set_len", path)?;
        if options.preallocate {
            file.allocate(options.segment_bytes_max).ctx("allocate", path)?;
        }
        file.sync_data().ctx("sync_data", path)?;
    }
    for (id, seal_offset, problem) in std::mem::take(&mut repairs.rebuild) {
        let Some(segment) = log.segments.iter_mut().find(|s| s.id == id) else { continue };
        let path = segment.index_path();
        segment.locs = Locs::Indexed(rebuild_index(fs, store_uid, segment, seal_offset)?);
        report.rebuilt_indexes.push(IndexRebuild { path, reason: problem.reason() });
    }
    let mut removed = Vec::new();
    for path in std::mem::take(&mut repairs.remove) {
        match fs.remove(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path, e)),
        }
    }
    repairs.remove = removed;
    if !repairs.remove.is_empty() || !report.rebuilt_indexes.is_empty() {
        fs.sync_dir(dir).ctx("sync_dir", dir)?;
    }
    Ok(())
}
