//! Snapshot transfer: a source that serves checksummed chunks of a published snapshot, and a
//! receiver that stages them, resumably, and installs the whole snapshot or chosen slots.
//!
//! The receiver's staging directory `<index>-<term>-<manifest crc>.receiving` holds the peer's
//! manifest (`MANIFEST.received`), the partly received files, and a journal (`RECEIVED`) of
//! 24-byte records `(file number, length, offset, data crc32, record crc32)`, one per stored
//! chunk, written without fsync.
//!
//! Invariants:
//! 1. A chunk is written only after its checksum (over slot, name, offset and its logical
//!    bytes) matches and it lies inside a file the manifest names.
//! 2. A range counts as received only if it is in memory from `accept`, or its journal record
//!    is intact and the staged bytes still match the record's crc (on resume): a crash loses
//!    progress, never correctness. `checkpoint` (called by the caller, and automatically every
//!    `CHECKPOINT_BYTES` stored) makes the progress so far survive a crash.
//! 3. Install checks every chosen file is complete and matches the manifest's whole-file
//!    checksum, makes it durable, then publishes as `SnapshotWriter::finish` does. A file that
//!    fails is truncated so it is fetched again.
//! 4. Decompression is bounded by the chunk's declared length, itself bounded by
//!    `CHUNK_BYTES_MAX`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::ranges::Ranges;
use super::{
    checksum, file_name, manifest, read_small, remove_dir_all, FileMeta, SnapshotLog, SnapshotMeta,
    SnapshotStore, MANIFEST,
};
use crate::error::{Corruption, Error, IoContext, Result};
use crate::fs::{FileHandle, FileSystem};

/// Largest chunk, in logical bytes.
pub const CHUNK_BYTES_MAX: u32 = 64 << 20;
/// The peer's manifest as received, inside a receiving directory.
const RECEIVED_MANIFEST: &str = "MANIFEST.received";
/// The journal of stored chunks.
const JOURNAL: &str = "RECEIVED";
const JOURNAL_RECORD_BYTES: usize = 24;
/// Stored bytes between two automatic checkpoints.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Suffix of a receiving directory.
const RECEIVING: &str = "receiving";
/// First bytes of an encoded chunk.
const CHUNK_MAGIC: [u8; 4] = *b"RLSC";
/// Encoded chunk bytes before the name.
const CHUNK_HEADER_BYTES: usize = 30;

/// A request for bytes `[offset, offset + len)` of file `name` of `slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRequest {
    /// The slot.
    pub slot: u32,
    /// The file's name within the slot.
    pub name: String,
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u32,
}

/// Bytes of one snapshot file, as a source serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The slot.
    pub slot: u32,
    /// The file's name within the slot.
    pub name: String,
    /// Position of the first byte in the file.
    pub offset: u64,
    /// Number of file bytes carried (after decompression).
    pub len: u32,
    /// `data` is zstd-compressed.
    pub compressed: bool,
    /// The bytes, compressed or not.
    pub data: Vec<u8>,
    /// crc32 of slot, name, offset and the uncompressed bytes (`chunk_crc`).
    pub crc32: u32,
}

/// The checksum a chunk carries: covers where its bytes go as well as the bytes.
fn chunk_crc(slot: u32, name: &str, offset: u64, bytes: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&slot.to_le_bytes());
    crc.update(&offset.to_le_bytes());
    crc.update(name.as_bytes());
    crc.update(bytes);
    crc.finalize()
}

impl Chunk {
    /// The chunk's wire form (format/SPEC.md, "Snapshot chunk").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_HEADER_BYTES + self.name.len() + self.data.len());
        out.extend_from_slice(&CHUNK_MAGIC);
        out.extend_from_slice(&self.slot.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.push(u8::from(self.compressed));
        out.push(u8::try_from(self.name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&u32::try_from(self.data.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&self.crc32.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// Parses a chunk's wire form. Only the structure is checked here; `accept` checks the
    /// checksum.
    pub fn decode(bytes: &[u8]) -> Result<Chunk> {
        let bad = |what| Error::corrupt("<chunk>", 0, None, Corruption::Field(what));
        if bytes.len() < CHUNK_HEADER_BYTES || bytes[..4] != CHUNK_MAGIC {
            return Err(bad("chunk header"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let offset = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let compressed = match bytes[20] {
            0 => false,
            1 => true,
            _ => return Err(bad("chunk flags")),
        };
        let name_len = usize::from(bytes[21]);
        let data_len = u32_at(22) as usize;
        if data_len > CHUNK_BYTES_MAX as usize
            || bytes.len() != CHUNK_HEADER_BYTES + name_len + data_len
        {
            return Err(bad("chunk length"));
        }
        let name = std::str::from_utf8(&bytes[CHUNK_HEADER_BYTES..CHUNK_HEADER_BYTES + name_len])
            .map_err(|_| bad("chunk name"))?;
        Ok(Chunk {
            slot: u32_at(4),
            name: name.to_string(),
            offset,
            len: u32_at(16),
            compressed,
            data: bytes[CHUNK_HEADER_BYTES + name_len..].to_vec(),
            crc32: u32_at(26),
        })
    }
}

/// Serves a published snapshot in chunks; see `SnapshotStore::source`.
#[derive(Debug)]
pub struct SnapshotSource<'s, F: FileSystem> {
    store: &'s SnapshotStore<F>,
    meta: SnapshotMeta,
    manifest: Vec<u8>,
}

impl<F: FileSystem> SnapshotStore<F> {
    /// A source serving `meta`'s snapshot to a peer.
    pub fn source(&self, meta: &SnapshotMeta) -> Result<SnapshotSource<'_, F>> {
        let manifest = self.manifest_bytes(meta.id)?;
        let on_disk =
            manifest::decode(&manifest, &self.snapshot_dir(meta.id), &self.options, meta.id)?;
        if on_disk != *meta {
            let path = self.snapshot_dir(meta.id).join(MANIFEST);
            return Err(Error::corrupt(path, 0, None, Corruption::Identity("manifest changed")));
        }
        Ok(SnapshotSource { store: self, meta: on_disk, manifest })
    }

    /// Starts, or resumes after a crash or a broken connection, receiving the snapshot whose
    /// manifest a peer sent. The manifest is verified (checksum, version, group, limits,
    /// names) before anything is created. Transfers of older snapshots are dropped.
    pub fn receive(&self, manifest: &[u8]) -> Result<SnapshotReceiver<'_, F>> {
        let meta = manifest::decode(manifest, Path::new("<peer manifest>"), &self.options, 0)?;
        let name = format!(
            "{:016x}-{:016x}-{:08x}.{RECEIVING}",
            meta.index,
            meta.term,
            manifest::checksum(manifest)
        );
        let mut exists = false;
        for other in self.fs.list_dirs(&self.dir).ctx("list_dirs", &self.dir)? {
            exists |= other.as_os_str() == name.as_str();
            let superseded = other
                .to_str()
                .and_then(|o| o.strip_suffix(RECEIVING)?.get(..16))
                .and_then(|index| u64::from_str_radix(index, 16).ok())
                .is_some_and(|index| index < meta.index);
            if superseded {
                remove_dir_all(&self.fs, &self.dir.join(other))?;
            }
        }
        let dir = self.dir.join(name);
        SnapshotReceiver::open(self, meta, manifest.to_vec(), dir, exists)
    }
}

impl<F: FileSystem> SnapshotSource<'_, F> {
    /// The manifest to send first; the receiver verifies it.
    pub fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    /// The snapshot served.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Every chunk request of the whole snapshot, in `chunk_bytes` pieces.
    pub fn requests(&self, chunk_bytes: u32) -> Vec<ChunkRequest> {
        let mut requests = Vec::new();
        for (slot, files) in &self.meta.slots {
            for file in files {
                split(*slot, &file.name, (0, file.size), chunk_bytes, usize::MAX, &mut requests);
            }
        }
        requests
    }

    /// The bytes `request` asks for, checksummed, compressed if the store is so configured
    /// and it pays. A request outside the snapshot is refused.
    pub fn chunk(&self, request: &ChunkRequest) -> Result<Chunk> {
        let ChunkRequest { slot, ref name, offset, len } = *request;
        let file = self
            .meta
            .file(slot, name)
            .ok_or_else(|| Error::UnknownFile { slot, name: name.clone() })?;
        manifest::check_limit("chunk bytes", u64::from(len), u64::from(CHUNK_BYTES_MAX))?;
        let end = offset.saturating_add(u64::from(len));
        manifest::check_limit("chunk end", end, file.size)?;
        let path = self.store.snapshot_dir(self.meta.id).join(file_name(slot, name));
        let handle = self.store.fs.open(&path).ctx("open", &path)?;
        let mut bytes = vec![0; len as usize];
        handle.read_exact_at(&mut bytes, offset).ctx("read", &path)?;
        let crc32 = chunk_crc(slot, name, offset, &bytes);
        let (compressed, data) = match self.store.options.compress_chunks {
            true => match zstd::bulk::compress(&bytes, 1) {
                Ok(packed) if packed.len() < bytes.len() => (true, packed),
                _ => (false, bytes),
            },
            false => (false, bytes),
        };
        Ok(Chunk { slot, name: name.clone(), offset, len, compressed, data, crc32 })
    }
}

/// Appends to `out` the requests covering `[start, end)` of a file in `chunk_bytes` pieces,
/// until `out` holds `max`.
fn split(
    slot: u32,
    name: &str,
    (start, end): (u64, u64),
    chunk_bytes: u32,
    max: usize,
    out: &mut Vec<ChunkRequest>,
) {
    let mut offset = start;
    while offset < end && out.len() < max {
        let len = (end - offset).min(u64::from(chunk_bytes)) as u32;
        out.push(ChunkRequest { slot, name: name.to_string(), offset, len });
        offset += u64::from(len);
    }
}

/// What `accept` did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Its bytes were new and are staged.
    Stored,
    /// Every byte of it had been received already.
    Duplicate,
}

/// One file being received.
#[derive(Debug)]
struct Staged<H> {
    slot: u32,
    meta: FileMeta,
    path: PathBuf,
    file: Option<H>,
    ranges: Ranges,
    /// Written since the last checkpoint.
    dirty: bool,
}

/// A snapshot being received; see `SnapshotStore::receive`. Dropping it keeps the progress
/// on disk for a later `receive` of the same manifest; `abort` removes it. Keep one receiver
/// per manifest at a time: two would stage into the same directory.
#[derive(Debug)]
pub struct SnapshotReceiver<'s, F: FileSystem> {
    store: &'s SnapshotStore<F>,
    meta: SnapshotMeta,
    manifest: Vec<u8>,
    dir: PathBuf,
    files: Vec<Staged<F::File>>,
    journal: F::File,
    journal_len: u64,
    /// Bytes stored since the last checkpoint.
    unsynced: u64,
}

impl<'s, F: FileSystem> SnapshotReceiver<'s, F> {
    fn open(
        store: &'s SnapshotStore<F>,
        meta: SnapshotMeta,
        manifest: Vec<u8>,
        dir: PathBuf,
        exists: bool,
    ) -> Result<Self> {
        let fs = &store.fs;
        let resumable = exists
            && read_small(fs, &dir.join(RECEIVED_MANIFEST)).is_ok_and(|bytes| bytes == manifest);
        if !resumable {
            if exists {
                remove_dir_all(fs, &dir)?;
            }
            crate::fs::create_dir_durable(fs, &dir).ctx("create_dir_all", &dir)?;
            let path = dir.join(RECEIVED_MANIFEST);
            let file = fs.create(&path).ctx("create", &path)?;
            file.write_all_at(&manifest, 0).ctx("write", &path)?;
            file.sync_data().ctx("sync_data", &path)?;
        }
        let present = fs.list(&dir).ctx("list", &dir)?;
        let mut files = Vec::new();
        for (slot, metas) in &meta.slots {
            for file_meta in metas {
                let disk_name = file_name(*slot, &file_meta.name);
                let path = dir.join(&disk_name);
                let file = match present.iter().any(|p| *p == Path::new(&disk_name)) {
                    true => Some(fs.open(&path).ctx("open", &path)?),
                    false => None,
                };
                files.push(Staged {
                    slot: *slot,
                    meta: file_meta.clone(),
                    path,
                    file,
                    ranges: Ranges::default(),
                    dirty: false,
                });
            }
        }
        let journal_path = dir.join(JOURNAL);
        let journal = match present.iter().any(|p| *p == Path::new(JOURNAL)) {
            true => fs.open(&journal_path).ctx("open", &journal_path)?,
            false => fs.create(&journal_path).ctx("create", &journal_path)?,
        };
        let mut receiver = SnapshotReceiver {
            store,
            meta,
            manifest,
            dir,
            files,
            journal,
            journal_len: 0,
            unsynced: 0,
        };
        receiver.replay()?;
        Ok(receiver)
    }

    /// Rebuilds the received ranges from the journal, keeping a record only while the staged
    /// bytes still match it (invariant 2). Stops at the first damaged record.
    fn replay(&mut self) -> Result<()> {
        let path = self.dir.join(JOURNAL);
        let size = self.journal.size().ctx("size", &path)?;
        let mut record = [0u8; JOURNAL_RECORD_BYTES];
        let mut offset = 0;
        while offset + JOURNAL_RECORD_BYTES as u64 <= size {
            self.journal.read_exact_at(&mut record, offset).ctx("read", &path)?;
            let word =
                |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
            if crc32fast::hash(&record[..20]) != word(20) {
                break;
            }
            let (file_no, len, data_crc) = (word(0) as usize, word(4), word(16));
            let start = u64::from_le_bytes(record[8..16].try_into().expect("8 bytes"));
            if let Some(staged) = self.files.get_mut(file_no) {
                if staged_matches(staged, start, len, data_crc) {
                    staged.ranges.insert(start, start + u64::from(len));
                }
            }
            offset += JOURNAL_RECORD_BYTES as u64;
        }
        self.journal_len = offset;
        Ok(())
    }

    /// The snapshot being received (as the peer's manifest describes it).
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Bytes received so far, and the total, of the whole snapshot.
    pub fn progress(&self) -> (u64, u64) {
        let received = self.files.iter().map(|f| f.ranges.bytes()).sum();
        (received, self.meta.total_bytes())
    }

    /// Requests, in `chunk_bytes` pieces, for the first `max` ranges not yet received: of the
    /// whole snapshot, or of the given slots only. Ask again after accepting them (a window),
    /// so that a peer's manifest naming huge files never turns into a huge list.
    pub fn missing(&self, slots: Option<&[u32]>, max: usize) -> Vec<ChunkRequest> {
        let chunk_bytes = self.store.options.chunk_bytes;
        let mut requests = Vec::new();
        for staged in self.files.iter().filter(|f| slots.is_none_or(|s| s.contains(&f.slot))) {
            for (start, end) in staged.ranges.gaps(staged.meta.size) {
                split(
                    staged.slot,
                    &staged.meta.name,
                    (start, end),
                    chunk_bytes,
                    max,
                    &mut requests,
                );
                if requests.len() >= max {
                    return requests;
                }
            }
        }
        requests
    }

    /// Verifies `chunk` and stages its bytes. Chunks may come in any order, more than once.
    pub fn accept(&mut self, chunk: &Chunk) -> Result<Accepted> {
        let file_no = self.file_no(chunk.slot, &chunk.name)?;
        let staged = &mut self.files[file_no];
        manifest::check_limit("chunk bytes", u64::from(chunk.len), u64::from(CHUNK_BYTES_MAX))?;
        let end = chunk.offset.saturating_add(u64::from(chunk.len));
        manifest::check_limit("chunk end", end, staged.meta.size)?;
        let damaged = |reason| Error::corrupt(&staged.path, chunk.offset, None, reason);
        let bytes: Cow<'_, [u8]> = if chunk.compressed {
            let unpacked = zstd::bulk::decompress(&chunk.data, chunk.len as usize)
                .map_err(|_| damaged(Corruption::Field("compressed chunk")))?;
            Cow::Owned(unpacked)
        } else {
            Cow::Borrowed(&chunk.data)
        };
        if bytes.len() != chunk.len as usize {
            return Err(damaged(Corruption::Field("chunk length")));
        }
        if chunk_crc(chunk.slot, &chunk.name, chunk.offset, &bytes) != chunk.crc32 {
            return Err(damaged(Corruption::Checksum));
        }
        if staged.ranges.covers(chunk.offset, end) {
            return Ok(Accepted::Duplicate);
        }
        if staged.file.is_none() {
            staged.file = Some(self.store.fs.create(&staged.path).ctx("create", &staged.path)?);
        }
        let file = staged.file.as_ref().expect("created above");
        file.write_all_at(&bytes, chunk.offset).ctx("write", &staged.path)?;
        staged.ranges.insert(chunk.offset, end);
        staged.dirty = true;
        let mut record = [0u8; JOURNAL_RECORD_BYTES];
        record[0..4].copy_from_slice(&(file_no as u32).to_le_bytes());
        record[4..8].copy_from_slice(&chunk.len.to_le_bytes());
        record[8..16].copy_from_slice(&chunk.offset.to_le_bytes());
        record[16..20].copy_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        let record_crc = crc32fast::hash(&record[..20]);
        record[20..24].copy_from_slice(&record_crc.to_le_bytes());
        let journal_path = self.dir.join(JOURNAL);
        self.journal.write_all_at(&record, self.journal_len).ctx("write", &journal_path)?;
        self.journal_len += JOURNAL_RECORD_BYTES as u64;
        self.unsynced += u64::from(chunk.len);
        if self.unsynced >= CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(Accepted::Stored)
    }

    /// Makes what was received so far survive a crash (a later `receive` resumes from it).
    pub fn checkpoint(&mut self) -> Result<()> {
        for staged in self.files.iter_mut().filter(|f| f.dirty) {
            let file = staged.file.as_ref().expect("a written file is open");
            file.sync_data().ctx("sync_data", &staged.path)?;
            staged.dirty = false;
        }
        let journal_path = self.dir.join(JOURNAL);
        self.journal.sync_data().ctx("sync_data", &journal_path)?;
        self.store.fs.sync_dir(&self.dir).ctx("sync_dir", &self.dir)?;
        self.store.fs.sync_dir(&self.store.dir).ctx("sync_dir", &self.store.dir)?;
        self.unsynced = 0;
        Ok(())
    }

    /// Installs the whole snapshot: published atomically, `latest` when it returns.
    pub fn install(self) -> Result<SnapshotMeta> {
        self.install_chosen(None)
    }

    /// Installs the whole snapshot, then brings `log` in line with it: reset to continue after
    /// the snapshot's index when it is behind (or disagrees), compacted when it holds it.
    pub fn install_with_log<L: SnapshotLog + ?Sized>(self, log: &L) -> Result<SnapshotMeta> {
        let meta = self.install()?;
        log.follow_snapshot(meta.index, meta.term)?;
        Ok(meta)
    }

    /// Installs only `slots` as a partial snapshot (for a slot moving to this node); other
    /// slots' bytes are dropped.
    pub fn install_slots(self, slots: &[u32]) -> Result<SnapshotMeta> {
        if let Some(slot) = slots.iter().find(|slot| !self.meta.slots.contains_key(slot)) {
            return Err(Error::UnknownSlot { slot: *slot });
        }
        self.install_chosen(Some(slots))
    }

    /// Removes everything received.
    pub fn abort(self) -> Result<()> {
        remove_dir_all(&self.store.fs, &self.dir)?;
        self.store.fs.sync_dir(&self.store.dir).ctx("sync_dir", &self.store.dir)
    }

    fn file_no(&self, slot: u32, name: &str) -> Result<usize> {
        self.files
            .iter()
            .position(|f| f.slot == slot && f.meta.name == name)
            .ok_or_else(|| Error::UnknownFile { slot, name: name.to_string() })
    }

    fn install_chosen(mut self, slots: Option<&[u32]>) -> Result<SnapshotMeta> {
        let fs = &self.store.fs;
        let chosen = |slot: u32| slots.is_none_or(|s| s.contains(&slot));
        for staged in self.files.iter().filter(|f| chosen(f.slot)) {
            let missing = staged.meta.size - staged.ranges.bytes().min(staged.meta.size);
            if missing > 0 {
                let (slot, name) = (staged.slot, staged.meta.name.clone());
                return Err(Error::Incomplete { slot, name, missing_bytes: missing });
            }
        }
        for staged in self.files.iter_mut() {
            if !chosen(staged.slot) {
                if staged.file.take().is_some() {
                    fs.remove(&staged.path).ctx("remove", &staged.path)?;
                }
                continue;
            }
            let file = match staged.file.take() {
                Some(file) => file,
                None => fs.create(&staged.path).ctx("create", &staged.path)?,
            };
            let (size, crc) = checksum(&file, &staged.path)?;
            if size != staged.meta.size || crc != staged.meta.crc32 {
                file.set_len(0).ctx("set_len", &staged.path)?;
                return Err(Error::corrupt(&staged.path, 0, None, Corruption::Checksum));
            }
            file.sync_data().ctx("sync_data", &staged.path)?;
        }
        for name in [JOURNAL, RECEIVED_MANIFEST] {
            let path = self.dir.join(name);
            fs.remove(&path).ctx("remove", &path)?;
        }
        if let Some(slots) = slots {
            self.meta.slots.retain(|slot, _| slots.contains(slot));
            self.meta.partial = true;
            self.manifest = manifest::encode(self.store.options.group, &self.meta);
        }
        self.meta.id = self.store.allocate_id();
        self.store.publish(&self.dir, self.meta.id, &self.manifest)?;
        Ok(self.meta)
    }
}

/// Whether `staged` holds `len` bytes at `start` whose crc32 is `crc`.
fn staged_matches<H: FileHandle>(staged: &Staged<H>, start: u64, len: u32, crc: u32) -> bool {
    let Some(file) = &staged.file else { return false };
    let in_file = start.checked_add(u64::from(len)).is_some_and(|end| end <= staged.meta.size);
    if !in_file || len > CHUNK_BYTES_MAX {
        return false;
    }
    let mut bytes = vec![0; len as usize];
    file.read_exact_at(&mut bytes, start).is_ok() && crc32fast::hash(&bytes) == crc
}
