//! The segment pool: files whose blocks were written before, ready to become segments, so
//! that appends overwrite existing blocks (an fdatasync then flushes data only, without the
//! journal commit a growing file needs).
//!
//! Pool files are named `{k:016x}.free`. They come from a prefill (zeros written and synced
//! by the maintenance thread, or by `open` for a store's first segment), from recycling (a
//! segment compaction or truncation left dead, renamed), or from a rotation that found none
//! ready (a new file under a `reserve`d name, left behind by a crash before it settled).
//!
//! Invariants:
//! 1. Of a pool file only its header is ever read, at open: the next segment id goes above the
//!    id of any header of this store found there (an unsettled rotation's segment, `rotation`),
//!    so that no later segment shares the checksum seed (store uid, segment id) of stale
//!    records in a pool file. Recovery then adopts the file back into the pool, or removes it
//!    when the pool is full or off. Its content may be anything: zeros, or stale records.
//! 2. A pool file becomes a segment only after the segment's header and opening record are
//!    written and fdatasynced in it (and the seal of the segment before it); then it is
//!    renamed and the directory fsynced. Until that rename is durable a crash leaves a pool
//!    file; records appended meanwhile are lost with it, never having been reported durable.
//! 3. A recycled segment's rename into the pool is durable (directory fsynced) before the
//!    file can be handed out, so a reused file never comes back under its old name.
//! 4. A segment is recycled only when nothing outside the store holds its bytes (no reader's
//!    file handle, no mapped payload; `Segment::into_unshared`); otherwise it is removed.
//! 5. `ready.len() <= target`; files are prefilled only while the pool is below its target.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::lock;
use crate::error::{IoContext, Result};
use crate::fs::{FileHandle, FileSystem};
use crate::segment::format::{SegmentHeader, SEGMENT_HEADER_BYTES};

/// Bytes written per call while prefilling (the preparer checks for a stop between calls).
const FILL_CHUNK_BYTES: usize = 1 << 20;
/// A prefill fdatasyncs every this many bytes: a bounded flush at a time, so that the fsyncs
/// of appends never queue behind a whole segment's worth of dirty pages.
const FILL_SYNC_BYTES: u64 = 4 << 20;

/// File name of pool file `k`.
pub(crate) fn file_name(k: u64) -> String {
    format!("{k:016x}.free")
}

/// The number in a pool file name, or `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    crate::segment::parse_numbered(name, ".free")
}

/// Ready pool files.
pub(crate) struct Pool {
    /// Files kept ready (`Options::segment_pool`); 0 turns the pool off.
    target: usize,
    state: Mutex<PoolState>,
}

struct PoolState {
    /// Files ready to become segments, oldest first.
    ready: Vec<PathBuf>,
    /// The number the next pool file gets; above every pool file's.
    next: u64,
    /// Set on close and on a prefill's first error (the pool then only shrinks).
    stopped: bool,
}

impl Pool {
    /// A pool of `target` files, starting with the pool files `found` in `dir` (at most
    /// `target` of them are kept; the paths of the others are returned, to be removed).
    pub fn adopt(dir: &Path, target: usize, mut found: Vec<u64>) -> (Pool, Vec<PathBuf>) {
        found.sort_unstable();
        let next = found.last().map_or(0, |k| k + 1);
        let mut ready: Vec<PathBuf> = found.iter().map(|k| dir.join(file_name(*k))).collect();
        let extra = ready.split_off(ready.len().min(target));
        let state = PoolState { ready, next, stopped: false };
        (Pool { target, state: Mutex::new(state) }, extra)
    }

    /// Files ready now.
    pub fn ready(&self) -> usize {
        lock(&self.state).ready.len()
    }

    /// Whether the pool is on.
    pub fn enabled(&self) -> bool {
        self.target > 0
    }

    /// A ready file, if any (the caller wakes the maintenance thread to replace it).
    pub fn take(&self) -> Option<PathBuf> {
        let mut state = lock(&self.state);
        (!state.ready.is_empty()).then(|| state.ready.remove(0))
    }

    /// The pool of `target` files in `dir`, adopting the pool files among `names` (the
    /// directory's listing) and removing those past the target. Also returns the lowest
    /// segment id no pool file's header claims for the store `store_uid` (invariant 1).
    pub fn open<F: FileSystem>(
        fs: &F,
        (dir, store_uid): (&Path, u64),
        target: usize,
        names: &[PathBuf],
    ) -> Result<(Pool, u64)> {
        let found: Vec<u64> =
            names.iter().filter_map(|n| n.to_str().and_then(parse_file_name)).collect();
        let mut ids_above = 0;
        for k in &found {
            let path = dir.join(file_name(*k));
            if let Some(header) = read_header(fs, &path).ctx("read", &path)? {
                if header.store_uid == store_uid {
                    ids_above = ids_above.max(header.segment_id.saturating_add(1));
                }
            }
        }
        let (pool, extra) = Pool::adopt(dir, target, found);
        for path in extra {
            fs.remove(&path).ctx("remove", &path)?;
        }
        Ok((pool, ids_above))
    }

    /// A file for a store's first segment at `open`: a ready one, or one prefilled now on
    /// the caller's thread (so a new store appends into written blocks from its first entry);
    /// `None` when the pool is off.
    pub fn take_or_fill<F: FileSystem>(
        &self,
        fs: &F,
        dir: &Path,
        len: u64,
    ) -> Result<Option<PathBuf>> {
        if !self.enabled() {
            return Ok(None);
        }
        if let Some(ready) = self.take() {
            return Ok(Some(ready));
        }
        let path = self.reserve(dir);
        fill(fs, dir, &path, len, || true).ctx("prefill", &path)?;
        Ok(Some(path))
    }

    /// Recycles the files at `paths` (dead segments nothing else holds) while the pool has
    /// room: renamed into the pool, the directory fsynced (invariant 3). Returns the paths it
    /// did not take, to be removed.
    pub fn recycle<F: FileSystem>(
        &self,
        fs: &F,
        dir: &Path,
        paths: Vec<PathBuf>,
    ) -> io::Result<Vec<PathBuf>> {
        let mut state = lock(&self.state);
        let room = self.target.saturating_sub(state.ready.len());
        let mut renamed = Vec::new();
        let mut rest = Vec::new();
        for path in paths {
            if renamed.len() < room {
                let to = dir.join(file_name(state.next));
                state.next += 1;
                fs.rename(&path, &to)?;
                renamed.push(to);
            } else {
                rest.push(path);
            }
        }
        if !renamed.is_empty() {
            fs.sync_dir(dir)?;
            state.ready.extend(renamed);
        }
        Ok(rest)
    }

    /// Stops taking prefilled files (on close, or after a prefill failed).
    pub fn stop(&self) {
        lock(&self.state).stopped = true;
    }

    /// Whether the pool wants another file (below its target, not stopped).
    pub fn wants_file(&self) -> bool {
        let state = lock(&self.state);
        !state.stopped && state.ready.len() < self.target
    }

    /// Adds a prefilled file, unless the pool stopped meanwhile (the file stays on disk as a
    /// pool file; the next open adopts it).
    pub fn add(&self, path: PathBuf) {
        let mut state = lock(&self.state);
        if !state.stopped {
            state.ready.push(path);
        }
    }

    pub fn reserve(&self, dir: &Path) -> PathBuf {
        let mut state = lock(&self.state);
        state.next += 1;
        dir.join(file_name(state.next - 1))
    }
}

/// The segment header at the start of the pool file at `path`, if it holds a valid one (an
/// unsettled rotation's segment, or a dead segment's).
fn read_header<F: FileSystem>(fs: &F, path: &Path) -> io::Result<Option<SegmentHeader>> {
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    match fs.open(path)?.read_exact_at(&mut bytes, 0) {
        Ok(()) => Ok(SegmentHeader::decode(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates `path` and writes `len` zero bytes into it, then makes it and its name durable.
/// `between` runs between chunks and says whether to go on; a fill it stops leaves a shorter
/// pool file (still usable: content never matters, invariant 1).
pub(crate) fn fill<F: FileSystem>(
    fs: &F,
    dir: &Path,
    path: &Path,
    len: u64,
    mut between: impl FnMut() -> bool,
) -> io::Result<()> {
    let file = fs.create(path)?;
    let zeros = vec![0u8; FILL_CHUNK_BYTES];
    let mut at = 0u64;
    while at < len && between() {
        let n = usize::try_from(len - at).map_or(zeros.len(), |left| left.min(zeros.len()));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
        if at % FILL_SYNC_BYTES == 0 {
            file.sync_data()?;
        }
    }
    file.sync_data()?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_others() {
        assert_eq!(parse_file_name(&file_name(0x2a)), Some(0x2a));
        for bad in ["2a.free", "000000000000002a.seg", "000000000000002A.free", "x.free"] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn adoption_keeps_at_most_the_target_and_numbers_after_the_highest() {
        let dir = Path::new("d");
        let (pool, extra) = Pool::adopt(dir, 2, vec![7, 3, 5]);
        assert_eq!(extra, vec![dir.join(file_name(7))]);
        assert_eq!(pool.take(), Some(dir.join(file_name(3))));
        assert_eq!(pool.take(), Some(dir.join(file_name(5))));
        assert_eq!(pool.take(), None);
        assert_eq!(pool.reserve(dir), dir.join(file_name(8)));
    }
}
