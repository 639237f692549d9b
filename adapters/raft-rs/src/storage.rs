//! `DiskStorage`: raft-rs's `Storage` over a `RaftLog` and a `SnapshotStore`.
//!
//! Invariants:
//! 1. The log lives in `{dir}/log`, the snapshots in `{dir}/snapshots`; the `ConfState` is the
//!    log's engine metadata, so it is durable with the hard state.
//! 2. Every writer is durable when it returns; `persist` uses one fdatasync for a `Ready`.
//! 3. The `RaftLog`'s commit index follows the hard state's, and its applied index follows its
//!    commit index: raft-rs tracks what the application applied, so the log never holds
//!    entries back for it (no `Busy`, committed entries evicted from memory as usual).
//! 4. Writers are serialised (`write`); reads take no lock of the adapter and never wait for
//!    an fsync.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{Error as RaftError, GetEntriesContext, RaftState, Storage, StorageError};
use raftlog::fs::{FileSystem, StdFs};
use raftlog::snapshot::{Chunk, ChunkRequest, SnapshotReceiver, SnapshotWriter};
use raftlog::{Options, RaftLog, RaftLogOptions, SnapshotLog, SnapshotOptions, SnapshotStore};

use crate::codec::{
    decode_conf_state, encode_conf_state, from_raftlog, from_raftlog_hard_state, manifest_of,
    storage_error, to_raftlog, to_raftlog_hard_state, undecodable, DATA_FILE, DATA_SLOT,
    MANIFEST_MARKER,
};

/// Snapshots kept on disk: the latest and the one before it (a follower may still be
/// receiving it).
const SNAPSHOTS_KEPT: usize = 2;

/// raft-rs's `Storage` on disk: a drop-in for `MemStorage` (its writers, on `&self`).
///
/// `Clone + Send + Sync`: clones share the same storage.
pub struct DiskStorage<F: FileSystem = StdFs> {
    inner: Arc<Inner<F>>,
}

struct Inner<F: FileSystem> {
    log: RaftLog<F>,
    snapshots: SnapshotStore<F>,
    write: Mutex<()>,
}

impl<F: FileSystem> Clone for DiskStorage<F> {
    fn clone(&self) -> Self {
        DiskStorage { inner: Arc::clone(&self.inner) }
    }
}

impl DiskStorage<StdFs> {
    /// Opens (or creates) the storage in `dir` on the real disk, recovering from any crash.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> raftlog::Result<Self> {
        DiskStorage::open_with(StdFs, dir, options)
    }
}

fn other(message: String) -> RaftError {
    RaftError::Store(StorageError::Other(message.into()))
}

impl<F: FileSystem + Clone> DiskStorage<F> {
    /// Opens (or creates) the storage in `dir` on `fs`.
    pub fn open_with(fs: F, dir: impl AsRef<Path>, options: Options) -> raftlog::Result<Self> {
        let dir = dir.as_ref();
        let store = raftlog::LogStore::open_with(fs.clone(), dir.join("log"), options)?;
        let log_options = RaftLogOptions::default().unapplied_entries_max(u64::MAX);
        let log = RaftLog::with_options(store, log_options)?;
        let commit = log.commit_index();
        log.applied_to(commit)?;
        let snapshots =
            SnapshotStore::open_with(fs, dir.join("snapshots"), SnapshotOptions::default())?;
        Ok(DiskStorage { inner: Arc::new(Inner { log, snapshots, write: Mutex::new(()) }) })
    }
}

impl<F: FileSystem> DiskStorage<F> {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The underlying log (for its recovery report and reads).
    pub fn log(&self) -> &RaftLog<F> {
        &self.inner.log
    }

    /// The snapshot store: where an application that snapshots per-slot files reads them
    /// back, and receives a leader's (`receive_snapshot`).
    pub fn snapshot_store(&self) -> &SnapshotStore<F> {
        &self.inner.snapshots
    }

    /// The durable `ConfState`.
    pub fn conf_state(&self) -> raft::Result<ConfState> {
        decode_conf_state(&self.inner.log.metadata())
    }

    /// Sets the `ConfState` of a storage never initialized (as
    /// `MemStorage::initialize_with_conf_state`); an initialized one refuses.
    pub fn initialize_with_conf_state(&self, conf_state: impl Into<ConfState>) -> raft::Result<()> {
        let _write = self.lock();
        if self.conf_state()? != ConfState::default() {
            return Err(other("the storage is already initialized".into()));
        }
        self.write_conf_state(&conf_state.into())
    }

    /// Makes the `ConfState` durable.
    pub fn set_conf_state(&self, conf_state: ConfState) -> raft::Result<()> {
        let _write = self.lock();
        self.write_conf_state(&conf_state)
    }

    fn write_conf_state(&self, conf_state: &ConfState) -> raft::Result<()> {
        let bytes = encode_conf_state(conf_state)?;
        self.inner.log.set_metadata(&bytes).map_err(storage_error)
    }

    /// Appends `entries`, dropping any conflicting uncommitted suffix first (as
    /// `MemStorage::append`), durably.
    pub fn append(&self, entries: &[Entry]) -> raft::Result<()> {
        let _write = self.lock();
        self.append_unsynced(entries)?;
        self.inner.log.sync().map(drop).map_err(storage_error)
    }

    fn append_unsynced(&self, entries: &[Entry]) -> raft::Result<()> {
        let converted = entries.iter().map(to_raftlog).collect::<raft::Result<Vec<_>>>()?;
        self.inner.log.append(&converted).map(drop).map_err(storage_error)
    }

    /// Makes `hard_state` durable (its commit index at most the last index).
    pub fn set_hardstate(&self, hard_state: HardState) -> raft::Result<()> {
        let _write = self.lock();
        self.write_hard_state(&hard_state)
    }

    /// Moves the log's commit and applied indexes to `hard_state.commit`, then makes the hard
    /// state durable with one fdatasync (which also covers every entry appended before).
    fn write_hard_state(&self, hard_state: &HardState) -> raft::Result<()> {
        let log = &self.inner.log;
        log.commit_to(hard_state.commit).map_err(storage_error)?;
        log.applied_to(hard_state.commit).map_err(storage_error)?;
        let wanted = to_raftlog_hard_state(hard_state);
        let current = log.hard_state();
        if wanted.commit < current.commit {
            let message = format!("commit {} below {}", wanted.commit, current.commit);
            return Err(other(message));
        }
        log.set_hard_state(wanted.term, wanted.vote).map_err(storage_error)
    }

    /// Persists one `Ready`: its entries (dropping a conflicting uncommitted suffix), then its
    /// hard state if it has one, with a single fdatasync.
    pub fn persist(&self, entries: &[Entry], hard_state: Option<&HardState>) -> raft::Result<()> {
        let _write = self.lock();
        self.append_unsynced(entries)?;
        match hard_state {
            Some(hard_state) => self.write_hard_state(hard_state),
            None => self.inner.log.sync().map(drop).map_err(storage_error),
        }
    }

    /// Commits up to `index` (an entry of the log) durably. As `MemStorage::commit_to`, the
    /// hard state's term becomes the entry's if that is higher.
    pub fn commit_to(&self, index: u64) -> raft::Result<()> {
        let _write = self.lock();
        let log = &self.inner.log;
        let mut hard_state = from_raftlog_hard_state(log.hard_state());
        hard_state.term = hard_state.term.max(log.term(index).map_err(storage_error)?);
        hard_state.commit = hard_state.commit.max(index);
        self.write_hard_state(&hard_state)
    }

    /// Installs `snapshot` (as `MemStorage::apply_snapshot`): its data becomes the latest
    /// snapshot on disk, the log continues after it (or is compacted behind it when it holds
    /// the snapshot's entry), the `ConfState` becomes the snapshot's, and the hard state's
    /// commit its index. A snapshot older than the log's first index is `SnapshotOutOfDate`.
    /// A snapshot whose files travel by raftlog's transfer (`manifest_of`) must have been
    /// received and installed first (`receive_snapshot`).
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> raft::Result<()> {
        let _write = self.lock();
        let meta = snapshot.get_metadata();
        let log = &self.inner.log;
        if log.first_index() > meta.index {
            return Err(RaftError::Store(StorageError::SnapshotOutOfDate));
        }
        let conf_state = encode_conf_state(meta.get_conf_state())?;
        if manifest_of(&snapshot).is_some() {
            let latest = self.inner.snapshots.latest().map_err(storage_error)?;
            if latest.is_none_or(|installed| installed.index != meta.index) {
                return Err(other(format!(
                    "the files of snapshot {} are not installed",
                    meta.index
                )));
            }
            log.follow_snapshot(meta.index, meta.term).map_err(storage_error)?;
        } else {
            self.publish((meta.index, meta.term), &conf_state, |writer| {
                writer.add_bytes(DATA_SLOT, DATA_FILE, &snapshot.data).map(drop)
            })?;
        }
        log.set_metadata(&conf_state).map_err(storage_error)?;
        let mut hard_state = from_raftlog_hard_state(log.hard_state());
        hard_state.term = hard_state.term.max(meta.term);
        hard_state.commit = meta.index;
        self.write_hard_state(&hard_state)
    }

    /// Takes a snapshot of the application's state at `index` (at most the commit index):
    /// publishes `data` with the current `ConfState`, then compacts the log behind it. It
    /// travels in the snapshot message's data.
    pub fn create_snapshot(&self, index: u64, data: &[u8]) -> raft::Result<()> {
        self.create_file_snapshot(index, |writer| {
            writer.add_bytes(DATA_SLOT, DATA_FILE, data).map(drop)
        })
    }

    /// Takes a snapshot of per-slot files at `index` (at most the commit index): `add` puts
    /// the state machine's files in (`add_file` hard-links them), then it is published with
    /// the current `ConfState` and the log compacted behind it. Its message carries only the
    /// manifest; the files travel by raftlog's chunked, resumable transfer
    /// (`serve_chunk` on the leader, `receive_snapshot` on the follower).
    pub fn create_file_snapshot(
        &self,
        index: u64,
        add: impl FnOnce(&mut SnapshotWriter<'_, F>) -> raftlog::Result<()>,
    ) -> raft::Result<()> {
        let _write = self.lock();
        let log = &self.inner.log;
        if index > log.commit_index() {
            return Err(other(format!("snapshot at {index} beyond the commit index")));
        }
        let term = log.term(index).map_err(storage_error)?;
        let conf_state = log.metadata();
        self.publish((index, term), &conf_state, add)
    }

    /// Publishes a snapshot durably, brings the log in line with it, keeps the latest two.
    fn publish(
        &self,
        (index, term): (u64, u64),
        conf_state: &[u8],
        add: impl FnOnce(&mut SnapshotWriter<'_, F>) -> raftlog::Result<()>,
    ) -> raft::Result<()> {
        let snapshots = &self.inner.snapshots;
        let mut writer = snapshots.begin(index, term, conf_state).map_err(storage_error)?;
        add(&mut writer).map_err(storage_error)?;
        writer.finish_and_compact(&self.inner.log).map_err(storage_error)?;
        snapshots.keep_latest(SNAPSHOTS_KEPT).map_err(storage_error)
    }

    /// On the leader: the chunk `request` asks of the latest snapshot's files.
    pub fn serve_chunk(&self, request: &ChunkRequest) -> raftlog::Result<Chunk> {
        let snapshots = &self.inner.snapshots;
        let latest = snapshots.latest()?;
        let meta = latest.ok_or(raftlog::Error::UnknownSlot { slot: request.slot })?;
        snapshots.source(&meta)?.chunk(request)
    }

    /// On a follower given `snapshot` whose files travel by raftlog's transfer: a receiver
    /// to put the leader's chunks in (`missing`, `accept`), resumable across a restart, then
    /// `install`; `apply_snapshot(snapshot)` follows.
    pub fn receive_snapshot(&self, snapshot: &Snapshot) -> raft::Result<SnapshotReceiver<'_, F>> {
        let manifest = manifest_of(snapshot).ok_or_else(|| other("no manifest".into()))?;
        self.inner.snapshots.receive(manifest).map_err(storage_error)
    }

    /// Drops the entries below `compact_index` (as `MemStorage::compact`): the first index
    /// becomes `compact_index`. Beyond the commit index is refused.
    pub fn compact(&self, compact_index: u64) -> raft::Result<()> {
        let _write = self.lock();
        let log = &self.inner.log;
        if compact_index <= log.first_index() {
            return Ok(());
        }
        log.compact(compact_index - 1).map_err(storage_error)
    }
}

impl<F: FileSystem> Storage for DiskStorage<F> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hard_state = from_raftlog_hard_state(self.inner.log.hard_state());
        Ok(RaftState::new(hard_state, self.conf_state()?))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let budget = max_size.unwrap_or(u64::MAX);
        let stored = self.inner.log.entries(low, high, budget).map_err(storage_error)?;
        let mut entries = stored.iter().map(from_raftlog).collect::<raft::Result<Vec<_>>>()?;
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.inner.log.term(index).map_err(storage_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.inner.log.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.inner.log.last_index())
    }

    /// The latest snapshot on disk, if it reaches `request_index`; otherwise
    /// `SnapshotTemporarilyUnavailable` (raft-rs asks again later).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snapshots = &self.inner.snapshots;
        let latest = snapshots.latest().map_err(storage_error)?;
        let Some(meta) = latest.filter(|meta| meta.index >= request_index) else {
            return Err(RaftError::Store(StorageError::SnapshotTemporarilyUnavailable));
        };
        let in_message = meta.slots.len() == 1
            && meta
                .slots
                .get(&DATA_SLOT)
                .is_some_and(|files| files.len() == 1 && files[0].name == DATA_FILE);
        let data = if in_message {
            snapshots.read(&meta, DATA_SLOT, DATA_FILE).map_err(storage_error)?
        } else {
            let source = snapshots.source(&meta).map_err(storage_error)?;
            [MANIFEST_MARKER, source.manifest()].concat()
        };
        let conf_state = protobuf::Message::parse_from_bytes(&meta.configuration)
            .map_err(|e| undecodable("snapshot conf state", e))?;
        let metadata = SnapshotMetadata {
            index: meta.index,
            term: meta.term,
            conf_state: protobuf::SingularPtrField::some(conf_state),
            ..SnapshotMetadata::default()
        };
        Ok(Snapshot {
            data: data.into(),
            metadata: protobuf::SingularPtrField::some(metadata),
            ..Snapshot::default()
        })
    }
}
