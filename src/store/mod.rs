//! `LogStore`: the log of one Raft group and its hard state, in one directory.
//!
//! Concurrency: one writer at a time (the writer mutex) appends, seals and creates segments;
//! readers take the log's read lock only to find where entries lie, then read the files
//! without any lock, so they never wait for an fsync. Fsyncs of appended entries go through
//! the sync gate, which lets one caller fsync while the others wait and share its result
//! (group commit); truncation, compaction, reset and hard-state writes hold the gate too, so
//! no sync runs while the log's shape changes.
//!
//! Lock order: sync gate, then writer, then meta, then log. The log lock is never held while
//! acquiring another lock, nor during I/O.
//!
//! Invariants:
//! 1. `durable_index <= last_index`, and every entry at or below `durable_index` survives a
//!    crash (unless `SyncPolicy::Never`).
//! 2. `hard_state.commit <= last_index` at all times; entries at or below the commit index are
//!    never truncated.
//! 3. After an I/O error on a write path the store is poisoned: every later write returns
//!    `Error::Poisoned`; nothing retries an fsync.

mod recover;
mod state;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

pub use recover::{IndexRebuild, RecoveryReport, TornTail};
use state::{Locs, LogState, Segment};
use writer::{create_segment, Writer};

use crate::entry::{Entry, INDEX_MAX};
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem, StdFs};
use crate::hard_state::{HardState, Meta, MetaFile};
use crate::index::{self, IndexHeader};
use crate::options::{Options, SyncPolicy};
use crate::segment::format::{
    decode_record, RecordError, RecordSeed, SegmentHeader, RECORD_ENTRY, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};

/// The persistent log of one Raft group, with its hard state.
///
/// `LogStore` is `Send + Sync`: share it (for example in an `Arc`) between the thread that
/// appends and any number of readers.
pub struct LogStore<F: FileSystem = StdFs> {
    inner: Arc<Inner<F>>,
    flusher: Option<JoinHandle<()>>,
}

struct Inner<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    options: Options,
    store_uid: u64,
    log: RwLock<LogState<F::File>>,
    writer: Mutex<Writer<F::File>>,
    meta: Mutex<MetaFile<F>>,
    durable_index: AtomicU64,
    poisoned: AtomicBool,
    /// True while one caller holds the sync gate.
    sync_busy: Mutex<bool>,
    sync_done: Condvar,
    stop_flusher: Mutex<bool>,
    flusher_wakeup: Condvar,
    report: RecoveryReport,
    _lock: F::Lock,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Holding the sync gate: no other fsync of the log runs meanwhile.
struct SyncGate<'a> {
    busy: &'a Mutex<bool>,
    done: &'a Condvar,
}

impl Drop for SyncGate<'_> {
    fn drop(&mut self) {
        *lock(self.busy) = false;
        self.done.notify_all();
    }
}

impl LogStore<StdFs> {
    /// Opens (or creates) the store in `dir` on the real disk, recovering from any crash.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<LogStore<StdFs>> {
        LogStore::open_with(StdFs, dir, options)
    }
}

impl<F: FileSystem> LogStore<F> {
    /// Opens (or creates) the store in `dir` on `fs`, recovering from any crash.
    pub fn open_with(fs: F, dir: impl AsRef<Path>, options: Options) -> Result<LogStore<F>> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let recovered = recover::recover(&fs, &dir, &options)?;
        let durable_index = recovered.log.last_index();
        let store_uid = recovered.meta.current().store_uid;
        let inner = Arc::new(Inner {
            fs,
            dir,
            options,
            store_uid,
            log: RwLock::new(recovered.log),
            writer: Mutex::new(recovered.writer),
            meta: Mutex::new(recovered.meta),
            durable_index: AtomicU64::new(durable_index),
            poisoned: AtomicBool::new(false),
            sync_busy: Mutex::new(false),
            sync_done: Condvar::new(),
            stop_flusher: Mutex::new(false),
            flusher_wakeup: Condvar::new(),
            report: recovered.report,
            _lock: recovered.lock,
        });
        let flusher = match inner.options.sync_policy {
            SyncPolicy::Auto { interval, .. } if !interval.is_zero() => {
                Some(spawn_flusher(Arc::clone(&inner), interval))
            }
            _ => None,
        };
        Ok(LogStore { inner, flusher })
    }

    /// What recovery found and repaired when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// First index still in the log (1 for a new log).
    pub fn first_index(&self) -> u64 {
        read(&self.inner.log).first_index
    }

    /// Last index in the log, durable or not (`first_index() - 1` when empty).
    pub fn last_index(&self) -> u64 {
        read(&self.inner.log).last_index()
    }

    /// Last index known durable.
    pub fn durable_index(&self) -> u64 {
        self.inner.durable_index.load(Ordering::Acquire)
    }

    /// The term of `index`, for any index in `[first_index() - 1, last_index()]`.
    pub fn term(&self, index: u64) -> Result<u64> {
        read(&self.inner.log).term(index)
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        read(&self.inner.log).hard_state
    }

    /// Appends entries that follow `last_index()` contiguously, with terms never below the
    /// previous entry's. They are durable after the next `sync` (or per the sync policy).
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let Some(first) = entries.first() else { return Ok(()) };
        let mut writer = lock(&inner.writer);
        let (last_index, last_term) = {
            let log = read(&inner.log);
            (log.last_index(), log.last_term())
        };
        check_batch(entries, (last_index, last_term), inner.options.entry_bytes_max)?;
        let batch_bytes: u64 =
            entries.iter().map(|e| (RECORD_HEADER_BYTES + e.payload.len()) as u64).sum();
        let active_has_records = writer.write_offset > SEGMENT_HEADER_BYTES as u64;
        if active_has_records && writer.write_offset + batch_bytes > inner.options.segment_bytes_max
        {
            inner.poison_on_err(inner.rotate(&mut writer, first.index))?;
        }
        let durable = inner.durable_index.load(Ordering::Acquire);
        let locs = inner.poison_on_err(writer.write_entries(inner.store_uid, entries, durable))?;
        write(&inner.log).active_mut().push(locs);
        let sync_now = matches!(inner.options.sync_policy,
            SyncPolicy::Auto { bytes, .. } if bytes > 0 && writer.bytes_since_sync >= bytes);
        drop(writer);
        if sync_now {
            inner.sync()?;
        }
        Ok(())
    }

    /// Checks, without writing, that `entries` could be appended after `(prev_index,
    /// prev_term)`: what `append` checks, for a caller that truncates first.
    pub(crate) fn check_batch(
        &self,
        entries: &[Entry],
        prev_index: u64,
        prev_term: u64,
    ) -> Result<()> {
        check_batch(entries, (prev_index, prev_term), self.inner.options.entry_bytes_max)
    }

    /// Makes everything appended so far durable and returns the durable last index.
    /// Concurrent callers share one fdatasync.
    pub fn sync(&self) -> Result<u64> {
        self.inner.sync()
    }

    /// What each live segment holds (for the inspector).
    #[cfg(feature = "inspect")]
    pub fn segment_summaries(&self) -> Vec<crate::inspect::SegmentSummary> {
        let log = read(&self.inner.log);
        log.segments
            .iter()
            .map(|segment| {
                let records = segment.record_count();
                let physical_end = segment.first_index + records;
                let (mut stored, mut logical) = (0u64, 0u64);
                for index in segment.first_index..segment.end_index().min(physical_end) {
                    if let Some(loc) = segment.loc(index) {
                        stored += u64::from(loc.stored_len);
                        logical += u64::from(loc.payload_len);
                    }
                }
                crate::inspect::SegmentSummary {
                    id: segment.id,
                    path: segment.path.clone(),
                    first_index: segment.first_index,
                    end_index: segment.end_index(),
                    records,
                    sealed: segment.sealed,
                    file_bytes: segment.file.size().unwrap_or(0),
                    stored_payload_bytes: stored,
                    payload_bytes: logical,
                }
            })
            .collect()
    }

    /// Closes the store cleanly: makes everything durable and seals the active segment (with
    /// its index), so that the next open reads no record at all. Dropping the store without
    /// `close` is just as safe; the next open then scans the active segment.
    pub fn close(self) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        inner.sync()?;
        let _gate = inner.sync_gate();
        let mut writer = lock(&inner.writer);
        if read(&inner.log).active().record_count() > 0 {
            inner.poison_on_err(inner.seal_active(&mut writer).map(|_| ()))?;
        }
        Ok(())
    }

    /// Entries in `[lo, hi)`, stopping before the payloads exceed `max_bytes` in total, but
    /// always at least one entry when `lo < hi`. Every entry's checksum is verified.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        if lo > hi {
            return Err(Error::InvalidRange { lo, hi });
        }
        let runs = self.inner.plan_read(lo, hi, max_bytes)?;
        let mut entries = Vec::with_capacity(runs.iter().map(|run| run.entries.len()).sum());
        for run in runs {
            run.read_into(self.inner.store_uid, &mut entries)?;
        }
        Ok(entries)
    }

    /// Drops `[from, last_index()]`, durably. Refused at or below the commit index.
    pub fn truncate_suffix(&self, from: u64) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let _gate = inner.sync_gate();
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

    /// Drops every entry up to and including `index`, durably: whole segments are deleted, the
    /// rest is hidden. `term(index)` still answers. Entries up to `index` are synced first.
    pub fn compact_to(&self, index: u64) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        if index > inner.durable_index.load(Ordering::Acquire) {
            inner.sync()?;
        }
        let _gate = inner.sync_gate();
        let _writer = lock(&inner.writer);
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
        let _gate = inner.sync_gate();
        let mut writer = lock(&inner.writer);
        let commit = read(&inner.log).hard_state.commit;
        if index < commit {
            return Err(Error::Committed { index: first_index, commit });
        }
        inner.poison_on_err(inner.replace_all(&mut writer, first_index, term))
    }

    /// Makes `hard_state` durable. A term below the current one, another vote in the same
    /// term, a commit index going backwards or beyond the last index is refused. Entries up to
    /// the commit index are synced first.
    pub fn set_hard_state(&self, hard_state: HardState) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        if hard_state.commit > inner.durable_index.load(Ordering::Acquire) {
            let last_index = read(&inner.log).last_index();
            lock(&inner.meta).current().check_hard_state(hard_state, last_index)?;
            inner.sync()?;
        }
        let _gate = inner.sync_gate();
        let durable_index = inner.durable_index.load(Ordering::Acquire);
        let current = *lock(&inner.meta).current();
        current.check_hard_state(hard_state, durable_index)?;
        if current.hard_state != hard_state {
            inner.poison_on_err(inner.store_meta(|meta| Meta { hard_state, ..meta }))?;
        }
        Ok(())
    }
}

impl<F: FileSystem> Drop for LogStore<F> {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            *lock(&self.inner.stop_flusher) = true;
            self.inner.flusher_wakeup.notify_all();
            let _ = flusher.join();
        }
    }
}

impl<F: FileSystem> std::fmt::Debug for LogStore<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .field("durable_index", &self.durable_index())
            .finish_non_exhaustive()
    }
}

/// Checks that `entries` may follow `(prev_index, prev_term)`: contiguous, terms never going
/// back, payloads within `bytes_max`, indexes within `INDEX_MAX`.
fn check_batch(entries: &[Entry], previous: (u64, u64), bytes_max: u64) -> Result<()> {
    let mut previous = previous;
    for entry in entries {
        let expected = previous.0.checked_add(1).filter(|i| *i <= INDEX_MAX);
        let expected =
            expected.ok_or(Error::IndexTooLarge { index: entry.index, max: INDEX_MAX })?;
        if entry.index != expected {
            return Err(Error::NotContiguous { expected, got: entry.index });
        }
        if entry.term < previous.1 {
            let (index, term, previous_term) = (entry.index, entry.term, previous.1);
            return Err(Error::TermRegression { index, term, previous_term });
        }
        let bytes = entry.payload.len() as u64;
        if bytes > bytes_max {
            return Err(Error::EntryTooLarge { index: entry.index, bytes, max: bytes_max });
        }
        previous = (entry.index, entry.term);
    }
    Ok(())
}

fn spawn_flusher<F: FileSystem>(inner: Arc<Inner<F>>, interval: Duration) -> JoinHandle<()> {
    std::thread::spawn(move || loop {
        let stop = lock(&inner.stop_flusher);
        let (stop, _) = inner
            .flusher_wakeup
            .wait_timeout(stop, interval)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *stop {
            return;
        }
        drop(stop);
        let behind = inner.durable_index.load(Ordering::Acquire) < read(&inner.log).last_index();
        if behind && !inner.poisoned.load(Ordering::Acquire) {
            // A failure poisons the store; the next call on it reports `Poisoned`.
            let _ = inner.sync();
        }
    })
}

/// Where a read run's bytes come from.
enum RunSource<H> {
    /// A sealed segment's mapped bytes: payloads are handed out without a copy.
    Mapped(Bytes),
    /// The active segment: one positional read.
    File(Arc<H>),
}

/// Consecutive records of one segment, read at once.
struct ReadRun<H> {
    source: RunSource<H>,
    path: PathBuf,
    segment_id: u64,
    offset: u64,
    len: u64,
    first_index: u64,
    /// Term and payload length of each entry of the run.
    entries: Vec<(u64, u32)>,
}

impl<H: FileHandle> ReadRun<H> {
    fn bytes(&self) -> Result<Bytes> {
        let len = usize::try_from(self.len).expect("a run fits in memory");
        match &self.source {
            RunSource::Mapped(data) => {
                let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                match start.checked_add(len).filter(|end| *end <= data.len()) {
                    Some(end) => Ok(data.slice(start..end)),
                    None => {
                        let reason = Corruption::Field("segment shorter than its index");
                        let indexes = Some(self.first_index..self.first_index + 1);
                        Err(Error::corrupt(&self.path, self.offset, indexes, reason))
                    }
                }
            }
            RunSource::File(file) => {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, self.offset).ctx("read", &self.path)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Decodes the run's records, verifying each one's checksum and identity.
    fn read_into(self, store_uid: u64, out: &mut Vec<Entry>) -> Result<()> {
        let buf = self.bytes()?;
        let seed = RecordSeed::new(store_uid, self.segment_id);
        let mut at = 0usize;
        for (k, &(term, payload_len)) in self.entries.iter().enumerate() {
            let index = self.first_index + k as u64;
            let corrupt = |reason| {
                Error::corrupt(&self.path, self.offset + at as u64, Some(index..index + 1), reason)
            };
            let record = match decode_record(seed, &buf[at..]) {
                Ok(record) => record,
                Err(RecordError::Invalid(reason)) => return Err(corrupt(reason)),
                Err(RecordError::Truncated) => {
                    return Err(corrupt(Corruption::Field("record length")))
                }
            };
            if record.record_type != RECORD_ENTRY || record.index != index || record.term != term {
                return Err(corrupt(Corruption::Identity("record is not the entry indexed here")));
            }
            let payload = if record.compressed {
                Bytes::from(record.decompress(payload_len).map_err(corrupt)?)
            } else {
                let payload_at = at + RECORD_HEADER_BYTES;
                buf.slice(payload_at..payload_at + record.payload.len())
            };
            out.push(Entry { index, term, payload, kind: record.entry_kind });
            at += record.encoded_len();
        }
        Ok(())
    }
}

impl<F: FileSystem> Inner<F> {
    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Poisons the store if `result` is an error of a write path.
    fn poison_on_err<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
            self.sync_done.notify_all();
        }
        result
    }

    /// Waits for the sync gate and holds it.
    fn sync_gate(&self) -> SyncGate<'_> {
        let mut busy = lock(&self.sync_busy);
        while *busy {
            busy = self.sync_done.wait(busy).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy = true;
        SyncGate { busy: &self.sync_busy, done: &self.sync_done }
    }

    fn sync(&self) -> Result<u64> {
        self.check_writable()?;
        let target = read(&self.log).last_index();
        let mut busy = lock(&self.sync_busy);
        loop {
            let durable = self.durable_index.load(Ordering::Acquire);
            if durable >= target {
                return Ok(durable);
            }
            self.check_writable()?;
            if !*busy {
                break;
            }
            busy = self.sync_done.wait(busy).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy = true;
        drop(busy);
        let _gate = SyncGate { busy: &self.sync_busy, done: &self.sync_done };
        let (file, path, upto) = {
            let mut writer = lock(&self.writer);
            writer.bytes_since_sync = 0;
            (Arc::clone(&writer.file), writer.path.clone(), read(&self.log).last_index())
        };
        if self.options.sync_policy != SyncPolicy::Never {
            self.poison_on_err(file.sync_data().ctx("sync_data", &path))?;
        }
        self.durable_index.fetch_max(upto, Ordering::AcqRel);
        Ok(self.durable_index.load(Ordering::Acquire))
    }

    /// Seals the active segment (fsynced) and starts a new one whose first index is `first`.
    fn rotate(&self, writer: &mut Writer<F::File>, first: u64) -> Result<()> {
        let prev_term = self.seal_active(writer)?;
        let header = self.next_header(writer, first, writer.segment_id, prev_term);
        let segment = create_segment(&self.fs, &self.dir, &self.options, &header)?;
        writer.switch_to(&segment, SEGMENT_HEADER_BYTES as u64);
        write(&self.log).segments.push(segment);
        Ok(())
    }

    /// Seals the active segment (seal record fsynced), writes its index and switches it to
    /// the mapped index. Returns the term of its last record.
    fn seal_active(&self, writer: &mut Writer<F::File>) -> Result<u64> {
        let (last, count, id, first_index, index_path, locs) = {
            let log = read(&self.log);
            let active = log.active();
            let Locs::Memory(locs) = &active.locs else { unreachable!("the active segment") };
            let identity = (active.id, active.first_index, active.index_path());
            (
                active.last_record(),
                active.record_count(),
                identity.0,
                identity.1,
                identity.2,
                locs.clone(),
            )
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
        let segment_index = index::write_file(&self.fs, &index_path, &header, &locs, last.1)?;
        {
            let mut log = write(&self.log);
            let active = log.active_mut();
            active.locs = Locs::Indexed(segment_index);
            active.sealed = true;
        }
        self.durable_index.fetch_max(last.0, Ordering::AcqRel);
        Ok(last.1)
    }

    fn next_header(
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

    /// `truncate_suffix` once checked: seal, then a new segment at `from` overrides the rest.
    fn replace_suffix(&self, writer: &mut Writer<F::File>, from: u64) -> Result<()> {
        self.seal_active(writer)?;
        let (prev_id, prev_term) = {
            let log = read(&self.log);
            let prev = from - 1;
            match log.segment_position(prev).filter(|_| prev >= log.first_index) {
                Some(position) => (log.segments[position].id, log.term(prev)?),
                None => (0, log.prev_term),
            }
        };
        let header = self.next_header(writer, from, prev_id, prev_term);
        let segment = create_segment(&self.fs, &self.dir, &self.options, &header)?;
        writer.switch_to(&segment, SEGMENT_HEADER_BYTES as u64);
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
    fn replace_all(
        &self,
        writer: &mut Writer<F::File>,
        first_index: u64,
        prev_term: u64,
    ) -> Result<()> {
        let header = self.next_header(writer, first_index, 0, prev_term);
        self.store_meta(|meta| Meta {
            first_index,
            prev_term,
            segment_id_min: header.segment_id,
            ..meta
        })?;
        let segment = create_segment(&self.fs, &self.dir, &self.options, &header)?;
        writer.switch_to(&segment, SEGMENT_HEADER_BYTES as u64);
        let dead = {
            let mut log = write(&self.log);
            log.first_index = first_index;
            log.prev_term = prev_term;
            std::mem::replace(&mut log.segments, vec![segment])
        };
        self.durable_index.store(first_index - 1, Ordering::Release);
        self.remove_segments(dead)
    }

    /// Writes the meta `update` makes of the current one, durably, and mirrors its hard state.
    fn store_meta(&self, update: impl FnOnce(Meta) -> Meta) -> Result<()> {
        let mut meta = lock(&self.meta);
        let next = update(*meta.current());
        meta.store(next)?;
        drop(meta);
        write(&self.log).hard_state = next.hard_state;
        Ok(())
    }

    /// Removes dead segments and their indexes. Their names need no directory sync: recovery
    /// recognises a dead segment that comes back. Readers holding their data keep it.
    fn remove_segments(&self, dead: Vec<Segment<F::File>>) -> Result<()> {
        for segment in dead {
            for path in [segment.index_path(), segment.path] {
                match self.fs.remove(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io("remove", path, e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Where the entries of `[lo, hi)` lie, bounded by `max_bytes`.
    fn plan_read(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<ReadRun<F::File>>> {
        let log = read(&self.log);
        if lo < log.first_index {
            return Err(Error::Compacted { index: lo, first_index: log.first_index });
        }
        let last_index = log.last_index();
        if hi > last_index + 1 {
            return Err(Error::Unavailable { index: hi - 1, last_index });
        }
        let mut runs: Vec<ReadRun<F::File>> = Vec::new();
        let mut bytes = 0u64;
        let mut index = lo;
        'segments: while index < hi {
            let position = log.segment_position(index).expect("live index has a segment");
            let segment = &log.segments[position];
            let start = segment.loc(index).expect("live index has a location");
            let source = if segment.sealed {
                RunSource::Mapped(segment.data().ctx("map", &segment.path)?)
            } else {
                RunSource::File(Arc::clone(&segment.file))
            };
            let mut run = ReadRun {
                source,
                path: segment.path.clone(),
                segment_id: segment.id,
                offset: start.offset,
                len: 0,
                first_index: index,
                entries: Vec::new(),
            };
            while index < hi && index < segment.end_index() {
                let loc = segment.loc(index).expect("inside the segment");
                bytes += u64::from(loc.payload_len);
                if index > lo && bytes > max_bytes {
                    runs.push(run);
                    break 'segments;
                }
                run.entries.push((loc.term, loc.payload_len));
                run.len = loc.offset + loc.record_len() - run.offset;
                index += 1;
            }
            runs.push(run);
        }
        runs.retain(|run| !run.entries.is_empty());
        Ok(runs)
    }
}
