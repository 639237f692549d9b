//! `LogStore`: openraft's `RaftLogStorage` and `RaftLogReader` over a raftlog `LogStore`.
//!
//! Invariants:
//! 1. `append` returns once the entries are in the store (readable); their `LogFlushed`
//!    callback fires only after an fdatasync covering them. One flusher thread serves every
//!    callback queued since its last fdatasync with one more (group commit).
//! 2. `save_vote` is durable when it returns (the metadata rides one fdatasync with every
//!    appended entry); `save_committed` only updates memory and is persisted by the next
//!    fdatasync of the flusher, of `save_vote` or of `purge`.
//! 3. `purge` records the last purged log id durably first, then compacts (or resets the store
//!    past its end); `open` finishes a purge a crash interrupted. `truncate` is durable when it
//!    returns.
//! 4. `meta` is what the store's metadata holds, or newer only by `committed` (`meta_dirty`).

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftTypeConfig, StorageError, StorageIOError, Vote,
};
use raftlog::fs::{FileSystem, StdFs};
use raftlog::Options;

use crate::codec::{decode_entry, encode_entry, Meta};

type Callback = Box<dyn FnOnce(Result<(), io::Error>) + Send>;

/// What the flusher thread shares with the store.
struct Flush {
    queue: Mutex<FlushQueue>,
    wakeup: Condvar,
}

#[derive(Default)]
struct FlushQueue {
    callbacks: Vec<Callback>,
    stop: bool,
}

struct Shared<F: FileSystem> {
    store: Arc<raftlog::LogStore<F>>,
    meta: Arc<Mutex<MetaState>>,
    flush: Arc<Flush>,
    flusher: Option<JoinHandle<()>>,
}

struct MetaState {
    meta: Meta,
    /// `committed` moved since the metadata was last persisted.
    dirty: bool,
}

impl<F: FileSystem> Drop for Shared<F> {
    fn drop(&mut self) {
        lock(&self.flush.queue).stop = true;
        self.flush.wakeup.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// openraft's log storage on raftlog; see the module docs. Cheap to clone: clones share the
/// store (openraft hands them out as readers).
pub struct LogStore<C, F: FileSystem = StdFs> {
    shared: Arc<Shared<F>>,
    _config: PhantomData<fn() -> C>,
}

impl<C, F: FileSystem> Clone for LogStore<C, F> {
    fn clone(&self) -> Self {
        LogStore { shared: self.shared.clone(), _config: PhantomData }
    }
}

impl<C, F: FileSystem> Debug for LogStore<C, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("store", &self.shared.store).finish()
    }
}

fn io_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn read_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err<E: std::error::Error + 'static>(e: &E) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

impl<C> LogStore<C, StdFs>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
{
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Self, raftlog::Error> {
        LogStore::open_with(StdFs, dir, options)
    }
}

impl<C, F> LogStore<C, F>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    F: FileSystem,
{
    /// Opens (or creates) the log in `dir` on file system `fs` (`SimFs` in crash tests).
    pub fn open_with(
        fs: F,
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<Self, raftlog::Error> {
        let store = raftlog::LogStore::open_with(fs, dir, options)?;
        let meta = Meta::decode(&store.metadata()).map_err(|_| raftlog::Error::Corrupt {
            path: store.dir().to_path_buf(),
            offset: 0,
            indexes: None,
            reason: raftlog::Corruption::Field("the openraft adapter's metadata"),
        })?;
        // A purge recorded, then interrupted before its compaction: finish it.
        if let Some(purged) = meta.last_purged {
            purge_store(&store, purged)?;
        }
        let store = Arc::new(store);
        let meta = Arc::new(Mutex::new(MetaState { meta, dirty: false }));
        let flush = Arc::new(Flush { queue: Mutex::default(), wakeup: Condvar::new() });
        let flusher = {
            let (store, meta, flush) = (store.clone(), meta.clone(), flush.clone());
            std::thread::Builder::new()
                .name("raftlog-openraft-flush".into())
                .spawn(move || flush_loop(&store, &meta, &flush))
                .map_err(|e| raftlog::Error::Io {
                    op: "spawn",
                    path: Default::default(),
                    source: e,
                })?
        };
        let shared = Shared { store, meta, flush, flusher: Some(flusher) };
        Ok(LogStore { shared: Arc::new(shared), _config: PhantomData })
    }

    /// The raftlog store (its recovery report, its indexes).
    pub fn store(&self) -> &raftlog::LogStore<F> {
        &self.shared.store
    }

    /// Persists the metadata (and every appended entry) with one fdatasync.
    fn persist_meta(&self, change: impl FnOnce(&mut Meta)) -> Result<(), raftlog::Error> {
        let mut state = lock(&self.shared.meta);
        let mut meta = state.meta.clone();
        change(&mut meta);
        self.shared.store.persist(&[], None, Some(&meta.encode()))?;
        state.meta = meta;
        state.dirty = false;
        Ok(())
    }

    fn read_range(&self, lo: u64, hi: u64) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        let store = &self.shared.store;
        let lo = lo.max(store.first_index() - 1);
        let hi = hi.min(store.last_index());
        let mut out = Vec::new();
        let mut next = lo;
        while next < hi {
            let entries = store.entries(next + 1, hi + 1, u64::MAX).map_err(|e| read_err(&e))?;
            for entry in &entries {
                out.push(decode_entry(entry).map_err(|e| read_err(&e))?);
            }
            next = entries.last().map_or(hi, |e| e.index);
        }
        Ok(out)
    }

    fn last_log_id(&self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        let store = &self.shared.store;
        if store.last_index() < store.first_index() {
            return Ok(lock(&self.shared.meta).meta.last_purged);
        }
        let last = store.last_index() - 1;
        Ok(self.read_range(last, last + 1)?.pop().map(|e| e.log_id))
    }
}

/// Drops every entry through `purged` (compacting, or resetting past the log's end).
fn purge_store<F: FileSystem>(
    store: &raftlog::LogStore<F>,
    purged: LogId<u64>,
) -> Result<(), raftlog::Error> {
    let index = purged.index + 1;
    if index < store.first_index() {
        return Ok(());
    }
    if index <= store.last_index() {
        store.compact_to(index)
    } else {
        store.reset(index, purged.leader_id.term)
    }
}

fn flush_loop<F: FileSystem>(store: &raftlog::LogStore<F>, meta: &Mutex<MetaState>, flush: &Flush) {
    loop {
        let callbacks = {
            let mut queue = lock(&flush.queue);
            while queue.callbacks.is_empty() && !queue.stop {
                queue = flush.wakeup.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if queue.callbacks.is_empty() {
                return;
            }
            std::mem::take(&mut queue.callbacks)
        };
        let result = {
            let mut state = lock(meta);
            if state.dirty {
                let bytes = state.meta.encode();
                let persisted = store.persist(&[], None, Some(&bytes)).map(drop);
                state.dirty &= persisted.is_err();
                persisted
            } else {
                drop(state);
                store.sync().map(drop)
            }
        };
        for callback in callbacks {
            callback(result.as_ref().map(|_| ()).map_err(io_error));
        }
    }
}

/// `[lo, hi)` of an openraft index range.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let lo = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let hi = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (lo, hi)
}

impl<C, F> RaftLogReader<C> for LogStore<C, F>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    F: FileSystem,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<u64>> {
        let (lo, hi) = bounds(&range);
        self.read_range(lo, hi)
    }
}

impl<C, F> RaftLogStorage<C> for LogStore<C, F>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    F: FileSystem,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        let last_purged_log_id = lock(&self.shared.meta).meta.last_purged;
        Ok(LogState { last_purged_log_id, last_log_id: self.last_log_id()? })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.persist_meta(|meta| meta.vote = Some(vote))
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(lock(&self.shared.meta).meta.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let mut state = lock(&self.shared.meta);
        if state.meta.committed != committed {
            state.meta.committed = committed;
            state.dirty = true;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(lock(&self.shared.meta).meta.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let batch: Vec<raftlog::Entry> = entries
            .into_iter()
            .map(|e| encode_entry(&e))
            .collect::<Result<_, _>>()
            .map_err(|e| write_err(&e))?;
        let store = &self.shared.store;
        if let Some(first) = batch.first() {
            if store.last_index() < store.first_index() && first.index != store.last_index() + 1 {
                // An empty log may start anywhere (openraft's logs need not start at 0): the
                // store continues after the entry before the first.
                store.reset(first.index - 1, 0).map_err(|e| write_err(&e))?;
            }
        }
        store.append(&batch).map_err(|e| write_err(&e))?;
        lock(&self.shared.flush.queue)
            .callbacks
            .push(Box::new(move |result| callback.log_io_completed(result)));
        self.shared.flush.wakeup.notify_one();
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let store = &self.shared.store;
        let from = (log_id.index + 1).max(store.first_index());
        if from <= store.last_index() {
            store.truncate_suffix(from).map_err(|e| write_err(&e))?;
        }
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let newer = lock(&self.shared.meta).meta.last_purged.is_none_or(|p| p < log_id);
        if newer {
            self.persist_meta(|meta| meta.last_purged = Some(log_id)).map_err(|e| write_err(&e))?;
        }
        purge_store(&self.shared.store, log_id).map_err(|e| write_err(&e))
    }
}
