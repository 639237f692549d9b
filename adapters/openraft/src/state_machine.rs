//! `StateMachine`: openraft's `RaftStateMachine` for an `Application`, with snapshots kept in a
//! raftlog `SnapshotStore`.
//!
//! Invariants:
//! 1. A snapshot is a `SnapshotStore` snapshot at raftlog index `last_applied.index + 1`
//!    (0 when nothing was applied); its configuration bytes carry openraft's snapshot meta
//!    (last log id, last membership, snapshot id) in bincode 2.
//! 2. The snapshot data openraft moves between nodes is an archive of raftlog's transfer: the
//!    manifest, then every chunk (`ARCHIVE_MAGIC` layout in `archive.rs`); a follower verifies
//!    the manifest and every chunk's checksum before anything is installed.
//! 3. State is rebuilt at open from the latest snapshot; openraft re-applies the log after it
//!    (the persistent-snapshot model of openraft's docs).

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, RaftTypeConfig, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use raftlog::fs::{FileSystem, StdFs};
use raftlog::snapshot::SnapshotWriter;
use raftlog::{SnapshotOptions, SnapshotStore};
use serde::{Deserialize, Serialize};

use crate::archive;

/// The application behind a `StateMachine`: it applies normal entries and saves and restores
/// its state as snapshot files.
pub trait Application<C: RaftTypeConfig, F: FileSystem = StdFs>: Send + Sync + 'static {
    /// Applies one normal entry's data and returns the response for it.
    fn apply(&mut self, data: &C::D) -> C::R;
    /// Writes the state into a snapshot being built: `add_file` hard-links the application's
    /// own files, `add_bytes` or `file_writer` write others.
    fn snapshot(&self, writer: &mut SnapshotWriter<'_, F>) -> raftlog::Result<()>;
    /// Replaces the state with the one snapshot `meta` of `store` holds (or an empty state for
    /// `None`).
    fn restore(
        &mut self,
        snapshot: Option<(&SnapshotStore<F>, &raftlog::SnapshotMeta)>,
    ) -> raftlog::Result<()>;
}

/// openraft's part of a snapshot, kept in its configuration bytes.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Info<N: openraft::Node> {
    last_log_id: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, N>,
    snapshot_id: String,
}

struct Inner<A, F: FileSystem, N: openraft::Node> {
    app: A,
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, N>,
    snapshots: SnapshotStore<F>,
    /// Snapshots built by this node since it started (names them).
    built: u64,
}

/// openraft's state machine over an `Application`; see the module docs. Clones share it.
pub struct StateMachine<C: RaftTypeConfig, A, F: FileSystem = StdFs> {
    inner: Arc<Mutex<Inner<A, F, C::Node>>>,
    _config: std::marker::PhantomData<fn() -> C>,
}

impl<C: RaftTypeConfig, A, F: FileSystem> Clone for StateMachine<C, A, F> {
    fn clone(&self) -> Self {
        StateMachine { inner: self.inner.clone(), _config: std::marker::PhantomData }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn decode_info<N: openraft::Node>(
    meta: &raftlog::SnapshotMeta,
) -> Result<Info<N>, StorageError<u64>> {
    let (info, _) =
        bincode::serde::decode_from_slice::<Info<N>, _>(&meta.configuration, bincode_config())
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::error(e.to_string())))?;
    Ok(info)
}

impl<C, A> StateMachine<C, A, StdFs>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Default,
    A: Application<C, StdFs>,
{
    /// A state machine whose snapshots live in `dir`, restored from the latest one.
    pub fn open(dir: impl AsRef<Path>, app: A) -> Result<Self, raftlog::Error> {
        StateMachine::open_with(StdFs, dir, SnapshotOptions::default(), app)
    }
}

impl<C, A, F> StateMachine<C, A, F>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Default,
    A: Application<C, F>,
    F: FileSystem,
{
    /// As `open`, on file system `fs` with `options`.
    pub fn open_with(
        fs: F,
        dir: impl AsRef<Path>,
        options: SnapshotOptions,
        mut app: A,
    ) -> Result<Self, raftlog::Error> {
        let snapshots = SnapshotStore::open_with(fs, dir, options)?;
        let (mut last_applied, mut last_membership) = (None, StoredMembership::default());
        match snapshots.latest()? {
            Some(meta) => {
                let info = decode_info::<C::Node>(&meta).map_err(|_| raftlog::Error::Corrupt {
                    path: snapshots.dir().to_path_buf(),
                    offset: 0,
                    indexes: None,
                    reason: raftlog::Corruption::Field("openraft snapshot meta"),
                })?;
                app.restore(Some((&snapshots, &meta)))?;
                (last_applied, last_membership) = (info.last_log_id, info.last_membership);
            }
            None => app.restore(None)?,
        }
        let inner = Inner { app, last_applied, last_membership, snapshots, built: 0 };
        Ok(StateMachine { inner: Arc::new(Mutex::new(inner)), _config: std::marker::PhantomData })
    }

    /// Runs `f` on the application (reads of the state).
    pub fn with_app<T>(&self, f: impl FnOnce(&A) -> T) -> T {
        f(&lock(&self.inner).app)
    }

    /// The openraft view of the latest snapshot, with its archive.
    fn current(inner: &Inner<A, F, C::Node>) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        let Some(meta) = inner.snapshots.latest().map_err(snapshot_err)? else { return Ok(None) };
        let info = decode_info::<C::Node>(&meta)?;
        let data = archive::pack(&inner.snapshots, &meta).map_err(snapshot_err)?;
        let meta = SnapshotMeta {
            last_log_id: info.last_log_id,
            last_membership: info.last_membership,
            snapshot_id: info.snapshot_id,
        };
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

impl<C, A, F> RaftSnapshotBuilder<C> for StateMachine<C, A, F>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Default,
    A: Application<C, F>,
    F: FileSystem,
{
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<u64>> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        inner.built += 1;
        let (index, term) = inner.last_applied.map_or((0, 0), |l| (l.index + 1, l.leader_id.term));
        let info = Info {
            last_log_id: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            snapshot_id: format!("{term}-{index}-{}", inner.built),
        };
        let configuration = bincode::serde::encode_to_vec(&info, bincode_config())
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::error(e.to_string())))?;
        let write = |e: raftlog::Error| -> StorageError<u64> {
            StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
        };
        let mut writer = inner.snapshots.begin(index, term, &configuration).map_err(write)?;
        inner.app.snapshot(&mut writer).map_err(write)?;
        writer.finish().map_err(write)?;
        inner.snapshots.keep_latest(2).map_err(write)?;
        Self::current(inner)?.ok_or_else(|| snapshot_err(raftlog::Error::Poisoned))
    }
}

impl<C, A, F> RaftStateMachine<C> for StateMachine<C, A, F>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::R: Default,
    A: Application<C, F>,
    F: FileSystem,
{
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, C::Node>), StorageError<u64>> {
        let inner = lock(&self.inner);
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<C>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut inner = lock(&self.inner);
        let mut responses = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => C::R::default(),
                EntryPayload::Normal(ref data) => inner.app.apply(data),
                EntryPayload::Membership(membership) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    C::R::default()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let installed = archive::unpack(&inner.snapshots, snapshot.get_ref()).map_err(sm_err)?;
        let info = decode_info::<C::Node>(&installed)?;
        if info.last_log_id != meta.last_log_id || info.snapshot_id != meta.snapshot_id {
            return Err(sm_err(raftlog::Error::BadMessage {
                reason: "the snapshot's data does not match its meta",
            }));
        }
        inner.app.restore(Some((&inner.snapshots, &installed))).map_err(sm_err)?;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        Self::current(&lock(&self.inner))
    }
}
