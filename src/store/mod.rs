//! `LogStore`: the log of one Raft group and its hard state, in one directory.
//!
//! Concurrency: one writer at a time (the writer mutex) appends, seals and creates segments;
//! readers take the log's read lock only to find where entries lie, then read the files
//! without any lock, so they never wait for an fsync. Fsyncs of appended entries go through
//! the sync gate, which lets one caller fsync while the others wait and share its result
//! (group commit); truncation, compaction, reset, repair and close hold the gate too, so no
//! sync runs while the log's shape changes (hard-state writes are records the sync covers).
//!
//! A rotation inside `append` makes no fsync: the next holder of the sync gate settles it
//! (`rotation`). With a segment pool, a maintenance thread (`maintenance`) prefills pool files
//! and writes the indexes of segments that rotation sealed, so neither happens under the
//! writer lock.
//!
//! Lock order: sync gate, then writer, then meta, then log. The log lock is never held while
//! acquiring another lock, nor during I/O. The sync gate's protocol is in `group_commit`.
//!
//! Invariants:
//! 1. `durable_index <= last_index`, and every entry at or below `durable_index` survives a
//!    crash (unless `SyncPolicy::Never`).
//! 2. `hard_state.commit <= last_index` at all times; entries at or below the commit index are
//!    never truncated.
//! 3. After an I/O error on a write path the store is poisoned: every later write returns
//!    `Error::Poisoned`; nothing retries an fsync.

mod compaction;
mod decision;
mod group_commit;
mod maintenance;
mod pool;
mod read_plan;
mod recover;
mod reopen;
mod repair;
mod report;
mod rotation;
pub(crate) mod state;
mod truncation;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use group_commit::spawn_flusher;
use maintenance::Maintenance;
use pool::Pool;
pub use recover::{IndexRebuild, LostPrefix, RecoveryReport, TailDurability, TornTail};
use state::LogState;
use writer::Writer;

use crate::entry::{Entry, INDEX_MAX};
use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFs};
use crate::hard_state::HardState;
use crate::meta::{check_hard_state, Meta, MetaFile};
use crate::options::{Options, SyncPolicy};
use crate::segment::format::{METADATA_BYTES_MAX, RECORD_HEADER_BYTES};

/// The persistent log of one Raft group, with its hard state.
///
/// `LogStore` is `Send + Sync`: share it (for example in an `Arc`) between the thread that
/// appends and any number of readers.
pub struct LogStore<F: FileSystem = StdFs> {
    pub(crate) inner: Arc<Inner<F>>,
    flusher: Option<JoinHandle<()>>,
    /// The maintenance thread (with a segment pool, on file systems that allow threads of
    /// the store's own).
    maintenance: Option<JoinHandle<()>>,
}

/// The shared state of a store. Lock order: sync gate (`sync_busy`), then `writer`, then
/// `meta`, then `log`; `log` is never held while acquiring another lock, nor during I/O.
pub(crate) struct Inner<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    options: Options,
    /// Random at creation, fixed for the store's life; seeds every record checksum, so a
    /// record of another store never validates.
    store_uid: u64,
    /// Segments and bounds: what readers plan from. Changed only by a holder of `writer`
    /// (appends, rotation) or of the sync gate and `writer` (truncation, compaction, reset),
    /// always after the disk holds what it describes.
    pub(crate) log: RwLock<LogState<F::File>>,
    /// The single appender; held across the write of a batch, a seal and a segment creation.
    writer: Mutex<Writer<F::File>>,
    /// The meta file; its current slot mirrors `log.hard_state`, `first_index`, `prev_term`.
    meta: Mutex<MetaFile<F>>,
    /// Records written so far (`Writer::writes`, mirrored for `sync` to read without the
    /// writer lock), and how many of them the last published fsync covered.
    writes: AtomicU64,
    synced_writes: AtomicU64,
    /// The sequence of the hard-state record `log.hard_state` comes from (changed under the
    /// log's write lock).
    synced_sequence: AtomicU64,
    /// Highest index known durable, inclusive; `<= log.last_index()`. Raised by the holder of
    /// the sync gate after its fdatasync, or by a seal; lowered only by truncation and reset,
    /// under the gate.
    durable_index: AtomicU64,
    /// Set by the first failed write or fsync; never cleared (invariant 3).
    poisoned: AtomicBool,
    /// True while one caller holds the sync gate (protocol in `group_commit`).
    sync_busy: Mutex<bool>,
    /// Signalled when the gate is released or the store is poisoned.
    sync_done: Condvar,
    stop_flusher: Mutex<bool>,
    flusher_wakeup: Condvar,
    /// Prewritten files for the next segments, and where dead segments are recycled.
    pool: Pool,
    /// Work queued for the maintenance thread (indexes of sealed segments).
    maintenance: Maintenance,
    /// Entries of sealed segments found damaged, never returned (`repair`).
    damage: repair::DamageMarks,
    report: RecoveryReport,
    /// The directory lock, held for the store's life.
    _lock: F::Lock,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let hard_state_sequence = recovered.writer.hard_state_sequence;
        let inner = Arc::new(Inner {
            fs,
            dir,
            options,
            store_uid,
            log: RwLock::new(recovered.log),
            writer: Mutex::new(recovered.writer),
            meta: Mutex::new(recovered.meta),
            writes: AtomicU64::new(0),
            synced_writes: AtomicU64::new(0),
            synced_sequence: AtomicU64::new(hard_state_sequence),
            durable_index: AtomicU64::new(durable_index),
            poisoned: AtomicBool::new(false),
            sync_busy: Mutex::new(false),
            sync_done: Condvar::new(),
            stop_flusher: Mutex::new(false),
            flusher_wakeup: Condvar::new(),
            pool: recovered.pool,
            damage: repair::DamageMarks::default(),
            maintenance: Maintenance::default(),
            report: recovered.report,
            _lock: recovered.lock,
        });
        let flusher = match inner.options.sync_policy {
            SyncPolicy::Auto { interval, .. } if !interval.is_zero() => {
                Some(spawn_flusher(Arc::clone(&inner), interval))
            }
            _ => None,
        };
        let maintenance = (inner.pool.enabled() && inner.fs.background_threads())
            .then(|| maintenance::spawn(Arc::clone(&inner)));
        Ok(LogStore { inner, flusher, maintenance })
    }

    /// What recovery found and repaired when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Segment-pool files ready now (`Options::segment_pool`): each lets the store start a
    /// segment in blocks written before, without waiting for a prefill.
    pub fn segment_pool_ready(&self) -> usize {
        self.inner.pool.ready()
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

    /// The durable engine metadata kept with the hard state (empty until set).
    pub fn metadata(&self) -> Bytes {
        read(&self.inner.log).metadata.clone()
    }

    /// Appends entries that follow `last_index()` contiguously, with terms never below the
    /// previous entry's. They are durable after the next `sync` (or per the sync policy).
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        self.inner.write(entries, None, None)
    }

    /// Persists one Raft `Ready` with a single fdatasync: appends `entries`, then records the
    /// hard state and the engine metadata when given (each kept as it was when `None`), and
    /// makes all of it durable. Returns the durable last index. The whole call is checked
    /// before anything is written: the batch as `append` checks it, the hard state as
    /// `set_hard_state` does (its commit may reach the entries of this call), the metadata
    /// against `METADATA_BYTES_MAX`.
    pub fn persist(
        &self,
        entries: &[Entry],
        hard_state: Option<HardState>,
        metadata: Option<&[u8]>,
    ) -> Result<u64> {
        self.inner.write(entries, hard_state, metadata)?;
        self.inner.sync()
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

    /// Closes the store cleanly: makes everything durable and seals the active segment (with
    /// its index), so that the next open reads no record at all. Dropping the store without
    /// `close` is just as safe; the next open then scans the active segment.
    pub fn close(self) -> Result<()> {
        let inner = &*self.inner;
        inner.check_writable()?;
        inner.sync()?;
        let _gate = inner.settled_gate()?;
        let mut writer = lock(&inner.writer);
        if read(&inner.log).active().record_count() > 0 {
            inner.poison_on_err(inner.seal_active(&mut writer, false).map(|_| ()))?;
        }
        Ok(())
    }

    /// Makes `hard_state` durable, with one fdatasync that also covers every entry appended
    /// before it. A term below the current one, another vote in the same term, a commit
    /// index going backwards or beyond the last index is refused.
    pub fn set_hard_state(&self, hard_state: HardState) -> Result<()> {
        self.persist(&[], Some(hard_state), None).map(drop)
    }

    /// Makes the engine metadata durable (at most `METADATA_BYTES_MAX` bytes; an engine's own
    /// state that must survive with the hard state, such as openraft's full vote or raft-rs's
    /// `ConfState`), with one fdatasync.
    pub fn set_metadata(&self, metadata: &[u8]) -> Result<()> {
        self.persist(&[], None, Some(metadata)).map(drop)
    }
}

impl<F: FileSystem> Drop for LogStore<F> {
    fn drop(&mut self) {
        // A rotation left unsettled would leave the entries after it under a pool name, lost
        // to the next open even without a crash. A failure poisons the store; nothing to add.
        if !self.inner.poisoned.load(Ordering::Acquire) {
            let _ = self.inner.settled_gate();
        }
        if let Some(maintenance) = self.maintenance.take() {
            self.inner.pool.stop();
            self.inner.maintenance.stop();
            let _ = maintenance.join();
        }
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

impl<F: FileSystem> Inner<F> {
    /// Writes the meta `update` makes of the current one, durably. Callers hold the sync gate
    /// and give the meta a hard state the writer held (the newest, or one a later record of
    /// the stream supersedes): the stream holds the newest one, the meta a copy for when no
    /// segment carries one.
    fn store_meta(&self, update: impl FnOnce(Meta) -> Meta) -> Result<()> {
        let mut meta = lock(&self.meta);
        let next = update(*meta.current());
        meta.store(next)
    }

    /// Writes `entries` and, when given, a hard state and metadata record (each kept as it
    /// was when `None`), after checking all of it; syncs per the sync policy.
    fn write(
        &self,
        entries: &[Entry],
        hard_state: Option<HardState>,
        metadata: Option<&[u8]>,
    ) -> Result<()> {
        self.check_writable()?;
        if entries.is_empty() && hard_state.is_none() && metadata.is_none() {
            return Ok(());
        }
        if let Some(metadata) = metadata.filter(|m| m.len() > METADATA_BYTES_MAX) {
            let (value, max) = (metadata.len() as u64, METADATA_BYTES_MAX as u64);
            return Err(Error::LimitExceeded { what: "metadata bytes", value, max });
        }
        let mut writer = lock(&self.writer);
        if writer.unsettled.len() >= rotation::UNSETTLED_MAX {
            drop(writer);
            drop(self.settled_gate()?);
            writer = lock(&self.writer);
        }
        let (last_index, last_term, active_entries) = {
            let log = read(&self.log);
            (log.last_index(), log.last_term(), log.active().record_count())
        };
        check_batch(entries, (last_index, last_term), self.options.entry_bytes_max)?;
        let record = if hard_state.is_some() || metadata.is_some() {
            let new_last_index = entries.last().map_or(last_index, |e| e.index);
            let hard_state = hard_state.unwrap_or(writer.hard_state);
            check_hard_state(writer.hard_state, hard_state, new_last_index)?;
            let metadata = metadata.map_or_else(|| writer.metadata.clone(), Bytes::copy_from_slice);
            Some((hard_state, metadata))
        } else {
            None
        };
        if let Some(first) = entries.first() {
            let batch_bytes: u64 =
                entries.iter().map(|e| (RECORD_HEADER_BYTES + e.payload.len()) as u64).sum();
            if active_entries > 0
                && writer.write_offset + batch_bytes > self.options.segment_bytes_max
            {
                self.poison_on_err(self.rotate(&mut writer, first.index))?;
            }
        }
        let durable = self.durable_index.load(Ordering::Acquire);
        let written = writer.write_records(self.store_uid, (entries, last_index), record, durable);
        let locs = self.poison_on_err(written)?;
        self.writes.store(writer.writes, Ordering::Release);
        if !locs.is_empty() {
            write(&self.log).active_mut().push(locs);
        }
        let sync_now = matches!(self.options.sync_policy,
            SyncPolicy::Auto { bytes, .. } if bytes > 0 && writer.bytes_since_sync >= bytes);
        drop(writer);
        if sync_now {
            self.sync()?;
        }
        Ok(())
    }
}
