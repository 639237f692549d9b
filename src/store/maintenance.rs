//! The maintenance thread: the work a rotation would otherwise do inside `append`, under the
//! writer lock. It runs when the store has a segment pool (`Options::segment_pool`) on a file
//! system that allows threads of the store's own (`FileSystem::background_threads`).
//!
//! - It writes the index of each segment a rotation sealed. Until then the segment's entries
//!   are found through their in-memory locations; a crash before the index is written makes
//!   recovery scan the segment and rebuild it (R14), as for any missing index.
//! - It keeps the segment pool at its target, prefilling files at a bounded pace: an fsync
//!   every few MiB (`pool::fill`) and, while a file is still ready, a pause between chunks, so
//!   that appends' fsyncs and the writer's CPU are not starved by a segment's worth of zeros.
//!
//! Invariants:
//! 1. Index jobs go first: a prefill runs them between its chunks.
//! 2. An index is published (its segment switched to the mapped index) only while that
//!    segment is still in the log, sealed and unindexed; otherwise the written file is removed.
//! 3. On stop, queued index jobs are finished before the thread exits (a clean close leaves no
//!    index to rebuild); a prefill in progress is abandoned.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::state::Locs;
use super::{lock, pool, read, write, Inner};
use crate::error::Result;
use crate::fs::FileSystem;
use crate::index::{self, IndexHeader};

/// Pause after each prefill chunk (1 MiB) while the pool still has a ready file: a 64 MiB
/// file then takes at least a quarter of a second, and the writer gets the CPU and the disk
/// in between. With no file ready the next rotation would create a growing file, so the fill
/// runs flat out.
const FILL_PAUSE: Duration = Duration::from_millis(4);

/// The index a sealed segment still needs.
pub(crate) struct IndexJob {
    pub segment_id: u64,
    pub header: IndexHeader,
    pub last_term: u64,
}

/// Work queued for the maintenance thread.
#[derive(Default)]
pub(crate) struct Maintenance {
    state: Mutex<Queue>,
    wakeup: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Whether a thread runs: without one, rotation writes its index itself.
    running: bool,
    indexes: VecDeque<IndexJob>,
    stop: bool,
}

impl Maintenance {
    /// Queues `job` for the thread; gives it back when no thread runs.
    pub fn defer_index(&self, job: IndexJob) -> Option<IndexJob> {
        let mut queue = lock(&self.state);
        if !queue.running || queue.stop {
            return Some(job);
        }
        queue.indexes.push_back(job);
        self.wakeup.notify_all();
        None
    }

    /// Wakes the thread (a pool file was taken).
    pub fn notify(&self) {
        self.wakeup.notify_all();
    }

    /// Asks the thread to finish its index jobs and exit.
    pub fn stop(&self) {
        lock(&self.state).stop = true;
        self.wakeup.notify_all();
    }

    fn next_index(&self) -> Option<IndexJob> {
        lock(&self.state).indexes.pop_front()
    }

    fn stopping(&self) -> bool {
        lock(&self.state).stop
    }
}

/// What the thread does next.
enum Work {
    Index(IndexJob),
    Prefill,
    Exit,
}

/// Starts the maintenance thread of `inner`.
pub(crate) fn spawn<F: FileSystem>(inner: Arc<Inner<F>>) -> JoinHandle<()> {
    lock(&inner.maintenance.state).running = true;
    std::thread::Builder::new()
        .name("raftlog-maintenance".into())
        .spawn(move || loop {
            match next_work(&inner) {
                Work::Index(job) => inner.write_deferred_index(job),
                Work::Prefill => prefill(&inner),
                Work::Exit => return,
            }
        })
        .expect("spawn the store's maintenance thread")
}

fn next_work<F: FileSystem>(inner: &Inner<F>) -> Work {
    let maintenance = &inner.maintenance;
    let mut queue = lock(&maintenance.state);
    loop {
        if let Some(job) = queue.indexes.pop_front() {
            return Work::Index(job);
        }
        if queue.stop {
            queue.running = false;
            return Work::Exit;
        }
        if inner.pool.wants_file() {
            return Work::Prefill;
        }
        queue = maintenance.wakeup.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Prefills one pool file, running index jobs and pausing between chunks. A failure stops
/// the pool (rotation then creates files that grow); nothing of the log depends on it.
fn prefill<F: FileSystem>(inner: &Inner<F>) {
    let path = inner.pool.reserve(&inner.dir);
    let between = || {
        while let Some(job) = inner.maintenance.next_index() {
            inner.write_deferred_index(job);
        }
        if inner.pool.ready() > 0 {
            std::thread::sleep(FILL_PAUSE);
        }
        !inner.maintenance.stopping()
    };
    match pool::fill(&inner.fs, &inner.dir, &path, inner.options.segment_bytes_max, between) {
        Ok(()) if !inner.maintenance.stopping() => inner.pool.add(path),
        Ok(()) => {}
        Err(_) => inner.pool.stop(),
    }
}

impl<F: FileSystem> Inner<F> {
    /// `write_index` on the thread: a failure leaves the segment on its in-memory locations
    /// (recovery rebuilds the index).
    fn write_deferred_index(&self, job: IndexJob) {
        let _ = self.write_index(job);
    }

    /// Writes the index `job` describes and switches its segment to it (invariant 2).
    pub(super) fn write_index(&self, job: IndexJob) -> Result<()> {
        let found = {
            let log = read(&self.log);
            log.segments.iter().find(|s| s.id == job.segment_id).and_then(|s| match &s.locs {
                Locs::Memory(locs) if s.sealed => Some((s.index_path(), locs.clone())),
                _ => None,
            })
        };
        let Some((path, locs)) = found else { return Ok(()) };
        let segment_index = index::write_file(&self.fs, &path, &job.header, &locs, job.last_term)?;
        let mut log = write(&self.log);
        match log.segments.iter_mut().find(|s| s.id == job.segment_id) {
            Some(segment) if matches!(segment.locs, Locs::Memory(_)) => {
                segment.locs = Locs::Indexed(segment_index);
            }
            _ => {
                drop(log);
                let _ = self.fs.remove(&path);
            }
        }
        Ok(())
    }
}
