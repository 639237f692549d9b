//! `SnapshotWriter`: builds one snapshot in a staging directory and publishes it.
//!
//! Invariants:
//! 1. Every file is durable (`sync_data`, or by the caller's promise for hard links when
//!    `sync_linked_files` is off) and checksummed before it is recorded; the manifest lists
//!    exactly the recorded files.
//! 2. A writer that is dropped without `finish`, or whose `finish` fails before the rename,
//!    removes its staging directory; one left by a crash is removed by the next open.
//! 3. `add_file` copies only when the file system cannot link (another device, no permission
//!    or no support); any other failure is reported.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{
    checksum, file_name, manifest, read_pieces, remove_dir_all, FileMeta, SnapshotLog,
    SnapshotMeta, SnapshotStore,
};
use crate::error::{Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};

/// A snapshot being built; see `SnapshotStore::begin`.
pub struct SnapshotWriter<'s, F: FileSystem> {
    store: &'s SnapshotStore<F>,
    id: u64,
    staging: PathBuf,
    meta: SnapshotMeta,
    files: u64,
    copied: u64,
    published: bool,
}

impl<'s, F: FileSystem> SnapshotWriter<'s, F> {
    pub(super) fn new(
        store: &'s SnapshotStore<F>,
        index: u64,
        term: u64,
        configuration: Vec<u8>,
    ) -> Result<Self> {
        let id = store.allocate_id();
        let staging = store.staging_dir(id);
        store.fs.create_dir_all(&staging).ctx("create_dir_all", &staging)?;
        let meta =
            SnapshotMeta { index, term, configuration, slots: BTreeMap::new(), partial: false, id };
        Ok(SnapshotWriter { store, id, staging, meta, files: 0, copied: 0, published: false })
    }

    /// Adds the state machine's file `source` as `name` in `slot`, as a hard link (no data
    /// copied) or, where the file system cannot link it, as a copy. The source must not change
    /// afterwards (hard links share its bytes); the manifest's checksum would catch it.
    pub fn add_file(
        &mut self,
        slot: u32,
        name: &str,
        source: impl AsRef<Path>,
    ) -> Result<FileMeta> {
        let path = self.reserve(slot, name)?;
        let source = source.as_ref();
        let fs = &self.store.fs;
        let (file, size, crc32, linked) = match fs.hard_link(source, &path) {
            Ok(()) => {
                let file = fs.open(&path).ctx("open", &path)?;
                let (size, crc32) = checksum(&file, &path)?;
                (file, size, crc32, true)
            }
            Err(e) if link_impossible(&e) => {
                self.copied += 1;
                let (file, size, crc32) = copy_file(fs, source, &path)?;
                (file, size, crc32, false)
            }
            Err(e) => return Err(Error::io("hard_link", source, e)),
        };
        manifest::check_limit("file bytes", size, self.store.options.file_bytes_max)?;
        if !linked || self.store.options.sync_linked_files {
            file.sync_data().ctx("sync_data", &path)?;
        }
        Ok(self.record(slot, name, size, crc32))
    }

    /// Adds `bytes` as file `name` of `slot`.
    pub fn add_bytes(&mut self, slot: u32, name: &str, bytes: &[u8]) -> Result<FileMeta> {
        let mut writer = self.file_writer(slot, name)?;
        io::Write::write_all(&mut writer, bytes)
            .map_err(|e| Error::io("write", &writer.path, e))?;
        writer.close()
    }

    /// A streaming writer for a generated file `name` of `slot`; the file is recorded by
    /// `SnapshotFileWriter::close`, and left out if the writer is dropped instead.
    pub fn file_writer(&mut self, slot: u32, name: &str) -> Result<SnapshotFileWriter<'_, 's, F>> {
        let path = self.reserve(slot, name)?;
        let file = self.store.fs.create(&path).ctx("create", &path)?;
        Ok(SnapshotFileWriter {
            snapshot: self,
            slot,
            name: name.to_string(),
            path,
            file: Some(file),
            size: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// Files added so far that had to be copied because they could not be linked.
    pub fn copied_files(&self) -> u64 {
        self.copied
    }

    /// Publishes the snapshot atomically and durably; it is `latest` when it returns. If it
    /// fails at the last step (the directory fsync after the rename), the snapshot is complete
    /// and may be listed, but may not survive a crash.
    pub fn finish(mut self) -> Result<SnapshotMeta> {
        let bytes = manifest::encode(self.store.options.group, &self.meta);
        self.store.publish(&self.staging, self.id, &bytes)?;
        self.published = true;
        Ok(std::mem::replace(&mut self.meta, SnapshotMeta::empty()))
    }

    /// Publishes the snapshot (as `finish`), and only then brings `log` in line with it:
    /// compacted up to the snapshot's index, or reset to continue after it if the log is
    /// behind. A failure after publishing leaves the snapshot published and the log whole.
    pub fn finish_and_compact<L: SnapshotLog + ?Sized>(self, log: &L) -> Result<SnapshotMeta> {
        let meta = self.finish()?;
        log.follow_snapshot(meta.index, meta.term)?;
        Ok(meta)
    }

    /// Checks `(slot, name)` can be added: a valid, new name within the limits. Returns the
    /// staging path.
    fn reserve(&self, slot: u32, name: &str) -> Result<PathBuf> {
        manifest::check_name(name)?;
        if self.meta.file(slot, name).is_some() {
            return Err(Error::DuplicateFile { slot, name: name.to_string() });
        }
        manifest::check_limit("files", self.files + 1, self.store.options.files_max)?;
        Ok(self.staging.join(file_name(slot, name)))
    }

    fn record(&mut self, slot: u32, name: &str, size: u64, crc32: u32) -> FileMeta {
        let meta = FileMeta { name: name.to_string(), size, crc32 };
        let files = self.meta.slots.entry(slot).or_default();
        let at = files.partition_point(|f| f.name.as_str() < name);
        files.insert(at, meta.clone());
        self.files += 1;
        meta
    }
}

impl<F: FileSystem> Drop for SnapshotWriter<'_, F> {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: the next open removes whatever is left (invariant 2).
            let _ = remove_dir_all(&self.store.fs, &self.staging);
        }
    }
}

impl SnapshotMeta {
    fn empty() -> Self {
        SnapshotMeta {
            index: 0,
            term: 0,
            configuration: Vec::new(),
            slots: BTreeMap::new(),
            partial: false,
            id: 0,
        }
    }
}

/// A generated file being written into a snapshot; see `SnapshotWriter::file_writer`.
pub struct SnapshotFileWriter<'w, 's, F: FileSystem> {
    snapshot: &'w mut SnapshotWriter<'s, F>,
    slot: u32,
    name: String,
    path: PathBuf,
    file: Option<F::File>,
    size: u64,
    crc: crc32fast::Hasher,
}

impl<F: FileSystem> SnapshotFileWriter<'_, '_, F> {
    /// Makes the file durable and records it in the snapshot.
    pub fn close(mut self) -> Result<FileMeta> {
        let file = self.file.take().expect("a writer's file is taken only here");
        file.sync_data().ctx("sync_data", &self.path)?;
        let crc = std::mem::take(&mut self.crc).finalize();
        let (slot, size) = (self.slot, self.size);
        let name = std::mem::take(&mut self.name);
        Ok(self.snapshot.record(slot, &name, size, crc))
    }
}

impl<F: FileSystem> io::Write for SnapshotFileWriter<'_, '_, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.size + buf.len() as u64;
        if end > self.snapshot.store.options.file_bytes_max {
            let max = self.snapshot.store.options.file_bytes_max;
            let error = Error::LimitExceeded { what: "file bytes", value: end, max };
            return Err(io::Error::new(io::ErrorKind::InvalidInput, error));
        }
        let file = self.file.as_ref().expect("an open writer has its file");
        file.write_all_at(buf, self.size)?;
        self.crc.update(buf);
        self.size = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: FileSystem> Drop for SnapshotFileWriter<'_, '_, F> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not closed: the file is not part of the snapshot. Best effort; the manifest
            // does not name it either way.
            let _ = self.snapshot.store.fs.remove(&self.path);
        }
    }
}

/// Whether a failed `hard_link` means "cannot link here" (copy instead).
fn link_impossible(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::CrossesDevices
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::Unsupported
    )
}

/// Copies `source` into the new file `target`; returns it open, with its size and crc32.
fn copy_file<F: FileSystem>(fs: &F, source: &Path, target: &Path) -> Result<(F::File, u64, u32)> {
    let from = fs.open(source).ctx("open", source)?;
    let to = fs.create(target).ctx("create", target)?;
    let (size, crc32) = read_pieces(&from, source, |piece, offset| {
        to.write_all_at(piece, offset).ctx("write", target)
    })?;
    Ok((to, size, crc32))
}
