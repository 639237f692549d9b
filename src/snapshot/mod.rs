//! `SnapshotStore`: per-slot file snapshots, published atomically, read back verified.
//!
//! A snapshot is `(index, term, configuration, slot -> files)`. Its files are hard links to the
//! state machine's immutable files where the file system allows (no data copied), copies
//! otherwise, or bytes the caller writes. The directory layout and the manifest format are in
//! format/SPEC.md ("Snapshots"):
//!
//! ```text
//! <dir>/LOCK                        exclusive lock of the open store
//! <dir>/<id>.snap/MANIFEST          a published snapshot: its manifest ...
//! <dir>/<id>.snap/<slot>-<name>     ... and its files (slot as 8 hex digits)
//! <dir>/<id>.staging/               a writer in progress: removed at open
//! <dir>/<id>.deleting/              a deletion in progress: finished at open
//! <dir>/<index>-<term>-<crc>.receiving/   a transfer in progress: resumed by `receive`
//! ```
//!
//! Invariants:
//! 1. A `.snap` directory appears only by renaming a staging directory whose files, manifest
//!    and entries are durable (`sync_data` each, `sync_dir` on it), and the rename is made
//!    durable (`sync_dir` on `<dir>`) before `finish` or `install` returns. A crash therefore
//!    leaves the old set of snapshots or the new one, never a half snapshot.
//! 2. A snapshot leaves `.snap` by a durable rename to `.deleting` before any of its files is
//!    removed, so a crash in the middle of a deletion never shows a damaged snapshot.
//! 3. Only `.snap` directories are ever reported; one whose manifest or files fail verification
//!    is reported as skipped, with the reason, never as a snapshot.
//! 4. Bytes are returned only after they match the manifest's checksum (`read`), or with an
//!    error at the end of the file if they do not (`reader`).
//! 5. The log is compacted only after the snapshot covering it is durable
//!    (`SnapshotWriter::finish_and_compact`).

mod manifest;
mod options;
mod ranges;
mod transfer;
mod writer;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use manifest::NAME_BYTES_MAX;
pub use options::SnapshotOptions;
pub use transfer::{Accepted, Chunk, ChunkRequest, SnapshotReceiver, SnapshotSource};
pub use writer::{SnapshotFileWriter, SnapshotWriter};

use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem, StdFs};
use crate::store::LogStore;

/// The manifest's file name inside a snapshot directory.
const MANIFEST: &str = "MANIFEST";
/// Buffer size for checksumming, copying and verifying files.
const IO_BYTES: usize = 1 << 20;

/// One file of a snapshot, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The file's name within its slot.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// crc32 (IEEE) of its bytes.
    pub crc32: u32,
}

/// A published snapshot: what its manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The cluster configuration at `index`, opaque to the store.
    pub configuration: Vec<u8>,
    /// The files of each slot, by name.
    pub slots: BTreeMap<u32, Vec<FileMeta>>,
    /// Holds only some slots of its source (a per-slot install): never `latest`, never
    /// counted by `keep_latest`.
    pub partial: bool,
    /// The local directory id.
    id: u64,
}

impl SnapshotMeta {
    /// The manifest entry of `(slot, name)`.
    pub fn file(&self, slot: u32, name: &str) -> Option<&FileMeta> {
        let files = self.slots.get(&slot)?;
        files.binary_search_by(|f| f.name.as_str().cmp(name)).ok().map(|i| &files[i])
    }

    /// Number of files.
    pub fn file_count(&self) -> u64 {
        self.slots.values().map(|files| files.len() as u64).sum()
    }

    /// Sum of the file sizes.
    pub fn total_bytes(&self) -> u64 {
        self.slots.values().flatten().map(|file| file.size).sum()
    }

    fn order(&self) -> (u64, u64, u64) {
        (self.index, self.term, self.id)
    }
}

/// A published snapshot directory that failed verification, and why.
#[derive(Debug)]
pub struct SkippedSnapshot {
    /// The snapshot's directory.
    pub path: PathBuf,
    /// What failed.
    pub error: Error,
}

/// What `scan` found.
#[derive(Debug, Default)]
pub struct SnapshotScan {
    /// Snapshots that verified, oldest first (by index, term, then publication).
    pub snapshots: Vec<SnapshotMeta>,
    /// Snapshot directories that did not.
    pub skipped: Vec<SkippedSnapshot>,
}

/// How much `scan` checks of each snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The manifest, and that every file exists with its size: metadata reads only.
    Manifest,
    /// Also every file's checksum: reads every byte.
    Data,
}

/// Kinds of directory under the store's directory, by suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirKind {
    Published,
    Staging,
    Deleting,
}

impl DirKind {
    fn suffix(self) -> &'static str {
        match self {
            DirKind::Published => "snap",
            DirKind::Staging => "staging",
            DirKind::Deleting => "deleting",
        }
    }

    /// `(kind, id)` of a directory name `<id:016x>.<suffix>`.
    fn parse(name: &str) -> Option<(DirKind, u64)> {
        let (id, suffix) = name.split_once('.')?;
        let kind = [DirKind::Published, DirKind::Staging, DirKind::Deleting]
            .into_iter()
            .find(|kind| kind.suffix() == suffix)?;
        (id.len() == 16).then(|| u64::from_str_radix(id, 16).ok()).flatten().map(|id| (kind, id))
    }
}

/// The snapshots of one Raft group, in a directory of their own.
pub struct SnapshotStore<F: FileSystem = StdFs> {
    fs: F,
    dir: PathBuf,
    options: SnapshotOptions,
    next_id: AtomicU64,
    _lock: F::Lock,
}

impl SnapshotStore<StdFs> {
    /// Opens (creating if needed) the snapshot store in `dir` on the real disk, with default
    /// options.
    pub fn open(dir: impl AsRef<Path>) -> Result<SnapshotStore<StdFs>> {
        SnapshotStore::open_with(StdFs, dir, SnapshotOptions::default())
    }
}

impl<F: FileSystem> SnapshotStore<F> {
    /// Opens the store in `dir` on `fs`: takes its lock, removes abandoned staging
    /// directories and finishes interrupted deletions. Transfers in progress are kept.
    pub fn open_with(fs: F, dir: impl AsRef<Path>, options: SnapshotOptions) -> Result<Self> {
        Self::open_inner(fs, dir.as_ref(), options, true)
    }

    /// Opens the store; `clean_up` removes abandoned staging directories and finishes
    /// interrupted deletions (off for the read-only inspector).
    pub(crate) fn open_inner(
        fs: F,
        dir: &Path,
        options: SnapshotOptions,
        clean_up: bool,
    ) -> Result<Self> {
        options.validate()?;
        let dir = dir.to_path_buf();
        crate::fs::create_dir_durable(&fs, &dir).ctx("create_dir_all", &dir)?;
        let lock_path = dir.join("LOCK");
        let lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => Error::Locked { path: lock_path.clone() },
            _ => Error::io("lock", &lock_path, e),
        })?;
        let mut max_id = 0;
        let mut leftovers = Vec::new();
        for name in fs.list_dirs(&dir).ctx("list_dirs", &dir)? {
            let Some((kind, id)) = name.to_str().and_then(DirKind::parse) else { continue };
            max_id = max_id.max(id);
            if kind != DirKind::Published && clean_up {
                leftovers.push(dir.join(name));
            }
        }
        for leftover in &leftovers {
            remove_dir_all(&fs, leftover)?;
        }
        if !leftovers.is_empty() {
            fs.sync_dir(&dir).ctx("sync_dir", &dir)?;
        }
        Ok(SnapshotStore { fs, dir, options, next_id: AtomicU64::new(max_id + 1), _lock: lock })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SnapshotOptions {
        &self.options
    }

    /// Starts a snapshot of the state up to log entry `index` (of term `term`). Nothing is
    /// visible until `SnapshotWriter::finish`; dropping the writer abandons it.
    pub fn begin(
        &self,
        index: u64,
        term: u64,
        configuration: &[u8],
    ) -> Result<SnapshotWriter<'_, F>> {
        manifest::check_limit(
            "configuration bytes",
            configuration.len() as u64,
            self.options.configuration_bytes_max,
        )?;
        SnapshotWriter::new(self, index, term, configuration.to_vec())
    }

    /// Every published snapshot that verifies, oldest first; partial ones included.
    pub fn list(&self) -> Result<Vec<SnapshotMeta>> {
        Ok(self.scan(Verify::Manifest)?.snapshots)
    }

    /// The newest complete snapshot whose manifest verifies and whose files are all present
    /// with their sizes. Damaged snapshots are skipped; `scan` says which and why.
    pub fn latest(&self) -> Result<Option<SnapshotMeta>> {
        Ok(newest_complete(self.scan(Verify::Manifest)?.snapshots))
    }

    /// As `latest`, but also reads every file of the candidates and checks its checksum.
    pub fn latest_verified(&self) -> Result<Option<SnapshotMeta>> {
        let mut candidates = self.scan(Verify::Manifest)?.snapshots;
        candidates.retain(|meta| !meta.partial);
        while let Some(meta) = candidates.pop() {
            match self.verify(&meta) {
                Ok(()) => return Ok(Some(meta)),
                Err(e) if is_damage(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Every published snapshot directory, verified to `depth`: those that pass, and those
    /// that fail with the reason. Failing I/O (not damage) is an error.
    pub fn scan(&self, depth: Verify) -> Result<SnapshotScan> {
        let mut scan = SnapshotScan::default();
        for name in self.fs.list_dirs(&self.dir).ctx("list_dirs", &self.dir)? {
            let Some((DirKind::Published, id)) = name.to_str().and_then(DirKind::parse) else {
                continue;
            };
            let path = self.dir.join(&name);
            let checked = self.load(id).and_then(|meta| {
                match depth {
                    Verify::Manifest => self.check_sizes(&meta)?,
                    Verify::Data => self.verify(&meta)?,
                }
                Ok(meta)
            });
            match checked {
                Ok(meta) => scan.snapshots.push(meta),
                Err(error) if is_damage(&error) => {
                    scan.skipped.push(SkippedSnapshot { path, error })
                }
                Err(error) => return Err(error),
            }
        }
        scan.snapshots.sort_by_key(SnapshotMeta::order);
        Ok(scan)
    }

    /// Reads every file of `meta` and checks it against the manifest.
    pub fn verify(&self, meta: &SnapshotMeta) -> Result<()> {
        for (slot, files) in &meta.slots {
            for file in files {
                let mut reader = self.reader(meta, *slot, &file.name)?;
                io::copy(&mut reader, &mut io::sink()).map_err(unwrap_io)?;
            }
        }
        Ok(())
    }

    /// The bytes of file `name` of `slot`, verified against the manifest.
    pub fn read(&self, meta: &SnapshotMeta, slot: u32, name: &str) -> Result<Vec<u8>> {
        let mut reader = self.reader(meta, slot, name)?;
        let mut bytes = Vec::with_capacity(usize::try_from(reader.size).unwrap_or(0));
        reader.read_to_end(&mut bytes).map_err(unwrap_io)?;
        Ok(bytes)
    }

    /// A streaming reader of file `name` of `slot`. Its size is checked on open; its checksum
    /// when the last byte is read: a damaged file ends in an `InvalidData` error whose inner
    /// error is `Error::Corrupt`, so consume it to the end before trusting it.
    pub fn reader(
        &self,
        meta: &SnapshotMeta,
        slot: u32,
        name: &str,
    ) -> Result<SnapshotFileReader<F::File>> {
        let file_meta = meta
            .file(slot, name)
            .ok_or_else(|| Error::UnknownFile { slot, name: name.to_string() })?;
        let path = self.snapshot_dir(meta.id).join(file_name(slot, name));
        let file = self.fs.open(&path).map_err(|e| missing_or_io(e, "open", &path))?;
        let size = file.size().ctx("size", &path)?;
        if size != file_meta.size {
            return Err(Error::corrupt(&path, size, None, Corruption::Field("file size")));
        }
        Ok(SnapshotFileReader {
            file,
            path,
            size,
            expected_crc: file_meta.crc32,
            offset: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Deletes every complete snapshot but the `n` newest, and every damaged one older than
    /// the oldest kept. Partial snapshots are the caller's to delete.
    pub fn keep_latest(&self, n: usize) -> Result<()> {
        let scan = self.scan(Verify::Manifest)?;
        let complete: Vec<&SnapshotMeta> = scan.snapshots.iter().filter(|m| !m.partial).collect();
        let doomed = complete.len().saturating_sub(n);
        let oldest_kept = complete.get(doomed).map_or(u64::MAX, |meta| meta.id);
        for meta in &complete[..doomed] {
            self.delete(meta)?;
        }
        for skipped in scan.skipped {
            let name = skipped.path.file_name().and_then(|n| n.to_str());
            if let Some((_, id)) = name.and_then(DirKind::parse).filter(|(_, id)| *id < oldest_kept)
            {
                self.delete_dir(id)?;
            }
        }
        Ok(())
    }

    /// Deletes `meta`'s snapshot. Readers already open keep reading.
    pub fn delete(&self, meta: &SnapshotMeta) -> Result<()> {
        self.delete_dir(meta.id)
    }

    fn delete_dir(&self, id: u64) -> Result<()> {
        let from = self.snapshot_dir(id);
        let to = self.dir.join(format!("{id:016x}.{}", DirKind::Deleting.suffix()));
        self.fs.rename(&from, &to).map_err(|e| missing_or_io(e, "rename", &from))?;
        self.fs.sync_dir(&self.dir).ctx("sync_dir", &self.dir)?;
        remove_dir_all(&self.fs, &to)?;
        self.fs.sync_dir(&self.dir).ctx("sync_dir", &self.dir)
    }

    /// Where snapshot `id` is published.
    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.{}", DirKind::Published.suffix()))
    }

    fn staging_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.{}", DirKind::Staging.suffix()))
    }

    fn allocate_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The manifest bytes of snapshot `id`.
    fn manifest_bytes(&self, id: u64) -> Result<Vec<u8>> {
        read_small(&self.fs, &self.snapshot_dir(id).join(MANIFEST))
    }

    fn load(&self, id: u64) -> Result<SnapshotMeta> {
        let bytes = self.manifest_bytes(id)?;
        manifest::decode(&bytes, &self.snapshot_dir(id).join(MANIFEST), &self.options, id)
    }

    fn check_sizes(&self, meta: &SnapshotMeta) -> Result<()> {
        for (slot, files) in &meta.slots {
            for file in files {
                self.reader(meta, *slot, &file.name)?;
            }
        }
        Ok(())
    }

    /// Makes the staging directory `staging` the published snapshot `id` (invariant 1): its
    /// files must be durable already; its manifest is written here.
    fn publish(&self, staging: &Path, id: u64, manifest: &[u8]) -> Result<()> {
        let path = staging.join(MANIFEST);
        let file = self.fs.create(&path).ctx("create", &path)?;
        file.write_all_at(manifest, 0).ctx("write", &path)?;
        file.sync_data().ctx("sync_data", &path)?;
        self.fs.sync_dir(staging).ctx("sync_dir", staging)?;
        let published = self.snapshot_dir(id);
        self.fs.rename(staging, &published).ctx("rename", staging)?;
        self.fs.sync_dir(&self.dir).ctx("sync_dir", &self.dir)
    }
}

impl<F: FileSystem> std::fmt::Debug for SnapshotStore<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A streaming reader of one snapshot file; see `SnapshotStore::reader`.
#[derive(Debug)]
pub struct SnapshotFileReader<H> {
    file: H,
    path: PathBuf,
    size: u64,
    expected_crc: u32,
    offset: u64,
    crc: crc32fast::Hasher,
}

impl<H: FileHandle> SnapshotFileReader<H> {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<H: FileHandle> Read for SnapshotFileReader<H> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size - self.offset;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.file.read_exact_at(&mut buf[..n], self.offset)?;
        self.crc.update(&buf[..n]);
        self.offset += n as u64;
        if self.offset == self.size && self.crc.clone().finalize() != self.expected_crc {
            let error = Error::corrupt(&self.path, 0, None, Corruption::Checksum);
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(n)
    }
}

/// Decodes manifest bytes from a peer or a file (for `inspect`).
#[cfg(feature = "inspect")]
pub(crate) fn decode_manifest(bytes: &[u8], options: &SnapshotOptions) -> Result<SnapshotMeta> {
    manifest::decode(bytes, Path::new("<manifest>"), options, 0)
}

/// The on-disk name of file `name` of `slot` inside a snapshot directory.
fn file_name(slot: u32, name: &str) -> String {
    format!("{slot:08x}-{name}")
}

/// The newest snapshot that is not partial.
fn newest_complete(snapshots: Vec<SnapshotMeta>) -> Option<SnapshotMeta> {
    snapshots.into_iter().filter(|meta| !meta.partial).max_by_key(SnapshotMeta::order)
}

/// Whether `error` says the bytes are damaged or missing (skip the snapshot) rather than that
/// the disk failed (report the failure).
fn is_damage(error: &Error) -> bool {
    matches!(
        error,
        Error::Corrupt { .. }
            | Error::ForeignGroup { .. }
            | Error::UnsupportedVersion { .. }
            | Error::LimitExceeded { .. }
            | Error::InvalidName { .. }
    )
}

/// `NotFound` is damage (a file the manifest names is gone); anything else is I/O.
fn missing_or_io(error: io::Error, op: &'static str, path: &Path) -> Error {
    if error.kind() == io::ErrorKind::NotFound {
        Error::corrupt(path, 0, None, Corruption::MissingFile)
    } else {
        Error::io(op, path, error)
    }
}

/// The `Error` inside an `io::Error` from a snapshot reader.
fn unwrap_io(error: io::Error) -> Error {
    match error.downcast::<Error>() {
        Ok(inner) => inner,
        Err(error) => Error::io("read", PathBuf::new(), error),
    }
}

/// The whole content of a manifest file, refused past the manifest format's size limit.
fn read_small<F: FileSystem>(fs: &F, path: &Path) -> Result<Vec<u8>> {
    let file = fs.open(path).map_err(|e| missing_or_io(e, "open", path))?;
    let size = file.size().ctx("size", path)?;
    if size > (manifest::BODY_BYTES_MAX + 64) as u64 {
        return Err(Error::corrupt(path, 0, None, Corruption::Field("manifest length")));
    }
    let mut bytes = vec![0; size as usize];
    file.read_exact_at(&mut bytes, 0).ctx("read", path)?;
    Ok(bytes)
}

/// Removes `dir`, its files and its subdirectories.
fn remove_dir_all<F: FileSystem>(fs: &F, dir: &Path) -> Result<()> {
    for name in fs.list(dir).ctx("list", dir)? {
        let path = dir.join(name);
        fs.remove(&path).ctx("remove", &path)?;
    }
    for name in fs.list_dirs(dir).ctx("list_dirs", dir)? {
        remove_dir_all(fs, &dir.join(name))?;
    }
    fs.remove_dir(dir).ctx("remove_dir", dir)
}

/// `(size, crc32)` of a whole file, read in `IO_BYTES` pieces.
fn checksum<H: FileHandle>(file: &H, path: &Path) -> Result<(u64, u32)> {
    read_pieces(file, path, |_, _| Ok(()))
}

/// Reads a whole file in `IO_BYTES` pieces, handing each to `piece` with its offset; returns
/// the file's `(size, crc32)`.
fn read_pieces<H: FileHandle>(
    file: &H,
    path: &Path,
    mut piece: impl FnMut(&[u8], u64) -> Result<()>,
) -> Result<(u64, u32)> {
    let size = file.size().ctx("size", path)?;
    let mut buf = vec![0; IO_BYTES.min(usize::try_from(size).unwrap_or(IO_BYTES))];
    let mut crc = crc32fast::Hasher::new();
    let mut offset = 0;
    while offset < size {
        let n = buf.len().min(usize::try_from(size - offset).unwrap_or(usize::MAX));
        file.read_exact_at(&mut buf[..n], offset).ctx("read", path)?;
        crc.update(&buf[..n]);
        piece(&buf[..n], offset)?;
        offset += n as u64;
    }
    Ok((size, crc.finalize()))
}

/// A log that a durable snapshot lets drop what it covers: the one way snapshot publish
/// (`SnapshotWriter::finish_and_compact`) and install (`SnapshotReceiver::install_with_log`)
/// change a log. `RaftLog` implements it keeping its commit and applied indexes and memory
/// tiers right; `LogStore` implements it for users of the store alone.
pub trait SnapshotLog {
    /// A durable snapshot holds the state at `(index, term)`: compact the log through `index`
    /// when it holds that entry, restart it after `index` when it is behind or disagrees, and
    /// leave it alone when it is already compacted past `index`.
    fn follow_snapshot(&self, index: u64, term: u64) -> Result<()>;
}

impl<G: FileSystem> SnapshotLog for LogStore<G> {
    fn follow_snapshot(&self, index: u64, term: u64) -> Result<()> {
        match self.term(index) {
            Ok(t) if t == term && index >= self.first_index() => self.compact_to(index),
            Ok(t) if t == term => Ok(()),
            Ok(_) | Err(Error::Unavailable { .. }) => self.reset(index, term),
            Err(Error::Compacted { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
