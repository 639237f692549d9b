//! Group commit: the sync gate, `sync`, the background flusher and the poison latch.
//!
//! The sync gate's protocol: `sync_busy` is true while one caller holds the gate. A caller of
//! `sync` whose target is already durable returns at once; otherwise it waits while the gate
//! is busy, re-checking the durable index each time it wakes (the holder's fsync may have
//! covered its target), and takes the gate only when it is free and its target is not yet
//! durable. The holder fsyncs without any other lock held, then raises `durable_index` and
//! releases the gate (`SyncGate`'s drop), waking every waiter. Truncation, compaction, reset
//! and hard-state writes hold the gate too, so no fsync of the log runs while its shape
//! changes.
//!
//! Invariants:
//! 1. At most one caller holds the gate; `durable_index` only moves while holding it (or at
//!    a synchronous seal, under the writer lock, whose fsync covers every earlier record).
//! 2. After a failed write or fsync, `poisoned` is set and every waiter is woken; nothing
//!    retries an fsync.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use super::writer::Writer;
use super::{lock, read, write, Inner, LogStore};
use crate::error::{Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::hard_state::HardState;
use crate::options::SyncPolicy;

impl<F: FileSystem> LogStore<F> {
    /// Makes everything appended so far durable and returns the durable last index.
    /// Concurrent callers share one fdatasync.
    pub fn sync(&self) -> Result<u64> {
        self.inner.sync()
    }
}

/// Holding the sync gate: no other fsync of the log runs meanwhile.
pub(super) struct SyncGate<'a> {
    busy: &'a Mutex<bool>,
    done: &'a Condvar,
}
impl Drop for SyncGate<'_> {
    fn drop(&mut self) {
        *lock(self.busy) = false;
        self.done.notify_all();
    }
}

impl<F: FileSystem> Inner<F> {
    pub(super) fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }
    /// Poisons the store if `result` is an error of a write path.
    pub(super) fn poison_on_err<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.poisoned.store(true, Ordering::Release);
            self.sync_done.notify_all();
        }
        result
    }
    /// Waits for the sync gate and holds it.
    pub(super) fn sync_gate(&self) -> SyncGate<'_> {
        let mut busy = lock(&self.sync_busy);
        while *busy {
            busy = self.sync_done.wait(busy).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *busy = true;
        SyncGate { busy: &self.sync_busy, done: &self.sync_done }
    }
    pub(super) fn sync(&self) -> Result<u64> {
        self.check_writable()?;
        let target = self.writes.load(Ordering::Acquire);
        let mut busy = lock(&self.sync_busy);
        loop {
            if self.synced_writes.load(Ordering::Acquire) >= target {
                return Ok(self.durable_index.load(Ordering::Acquire));
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
        self.settle_rotations()?;
        if self.synced_writes.load(Ordering::Acquire) >= target {
            return Ok(self.durable_index.load(Ordering::Acquire));
        }
        let (file, path, segment_id, covered) = {
            let mut writer = lock(&self.writer);
            writer.bytes_since_sync = 0;
            let covered = Synced::of(&writer, read(&self.log).last_index());
            (Arc::clone(&writer.file), writer.path.clone(), writer.segment_id, covered)
        };
        if self.options.sync_policy == SyncPolicy::Never {
            self.publish(covered);
        } else {
            self.poison_on_err(file.sync_data().ctx("sync_data", &path))?;
            self.poison_on_err(self.mark_and_publish(segment_id, covered))?;
        }
        Ok(self.durable_index.load(Ordering::Acquire))
    }

    /// After an fdatasync of segment `segment_id` that covered `covered`: the sync mark, then
    /// `covered` published. The mark goes in before `covered` is reported durable, so a
    /// process crash after the report keeps the proof. A rotation meanwhile sealed the
    /// segment, and the next segment's opening proves the rest once it is settled.
    pub(super) fn mark_and_publish(&self, segment_id: u64, covered: Synced) -> Result<()> {
        let mut writer = lock(&self.writer);
        if writer.segment_id == segment_id {
            writer.write_sync_mark(self.store_uid, covered.upto, covered.sequence)?;
        }
        drop(writer);
        self.publish(covered);
        Ok(())
    }

    /// Records that everything the writer wrote so far is durable (after a seal's or a new
    /// segment's fsync, with the writer lock held).
    pub(super) fn publish_synced(&self, writer: &Writer<F::File>) {
        let upto = read(&self.log).last_index();
        self.publish(Synced::of(writer, upto));
    }

    /// Makes `covered` the durable state, unless a later one was published already.
    /// The log lock is taken only when the covered hard state is newer than the published
    /// one: a sync of entries alone touches atomics only. `synced_writes` moves last, so a
    /// caller that sees its writes synced also sees the hard state they carried.
    fn publish(&self, covered: Synced) {
        self.durable_index.fetch_max(covered.upto, Ordering::AcqRel);
        if covered.sequence > self.synced_sequence.load(Ordering::Acquire) {
            let mut log = write(&self.log);
            if covered.sequence > self.synced_sequence.load(Ordering::Acquire) {
                self.synced_sequence.store(covered.sequence, Ordering::Release);
                log.hard_state = covered.hard_state;
                log.metadata = covered.metadata;
            }
        }
        self.synced_writes.fetch_max(covered.writes, Ordering::AcqRel);
    }
}

/// What an fsync covers: the writes counted so far, the last index, and the hard state and
/// metadata last written.
pub(super) struct Synced {
    writes: u64,
    upto: u64,
    sequence: u64,
    hard_state: HardState,
    metadata: Bytes,
}

impl Synced {
    pub(super) fn of<H>(writer: &Writer<H>, upto: u64) -> Self {
        Synced {
            writes: writer.writes,
            upto,
            sequence: writer.hard_state_sequence,
            hard_state: writer.hard_state,
            metadata: writer.metadata.clone(),
        }
    }
}

pub(super) fn spawn_flusher<F: FileSystem>(
    inner: Arc<Inner<F>>,
    interval: Duration,
) -> JoinHandle<()> {
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
