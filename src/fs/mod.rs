//! The file-system seam: exactly what the engine does to files, behind two small traits.
//!
//! `StdFs` is the real disk; `SimFs` is a simulated disk with a live and a durable image, used
//! by every crash and corruption test. The engine is generic over `FileSystem` (static
//! dispatch, no cost on the real disk).
//!
//! Invariants the engine relies on, and that `SimFs` models adversarially:
//! 1. A write is durable only after `sync_data` on its file returns `Ok`.
//! 2. A created or removed name is durable only after `sync_dir` on its directory returns `Ok`.
//! 3. Unsynced writes may land in any subset and any order, each torn at 512-byte sectors.
//! 4. After a failed write or sync, nothing about the file's content can be assumed.
//! 5. A file is mapped only once it is immutable; it is never truncated while mapped.
//! 6. A rename is durable only after `sync_dir` on the target's directory. A directory is
//!    renamed only after `sync_dir` on it made its own entries durable (the snapshot store's
//!    publish protocol); `SimFs` refuses any other directory rename.
//! 7. A directory's creation is durable only after `sync_dir` on its parent.

#[cfg(feature = "inspect")]
mod overlay;
#[cfg(feature = "sim")]
mod sim;
mod std_fs;

use std::io;
use std::path::{Path, PathBuf};

#[cfg(feature = "inspect")]
pub use overlay::{OverlayFile, OverlayFs, OverlayMap};
#[cfg(feature = "sim")]
pub use sim::{FaultOp, SimFs};
pub use std_fs::StdFs;

/// A directory of files, as the engine uses one.
pub trait FileSystem: Send + Sync + 'static {
    /// An open file.
    type File: FileHandle;
    /// An exclusive lock on a directory, released on drop.
    type Lock: Send + Sync + 'static;

    /// Creates `dir` and its parents if missing. A new directory's name is durable only after
    /// `sync_dir` on its parent (see `create_dir_durable`).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock held in file `path`; `ErrorKind::WouldBlock` if held elsewhere.
    fn lock(&self, path: &Path) -> io::Result<Self::Lock>;
    /// Creates a new, empty file; fails if `path` exists.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// Removes the name `path`; open handles keep reading the file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the files (not directories) in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// The names of the directories in `dir`.
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Gives the file or directory `from` the name `to`, which must not exist; both lie in the
    /// same directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Gives the file `from` the name `to`, atomically replacing the file `to` (`rename(2)`:
    /// a crash leaves one or the other under `to`); both lie in the same directory.
    fn replace(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes `link` a second name of the existing file `source` (a hard link, no data copied).
    /// `ErrorKind::CrossesDevices`, `PermissionDenied` or `Unsupported` when the file system
    /// cannot link them; the caller then copies.
    fn hard_link(&self, source: &Path, link: &Path) -> io::Result<()>;
    /// Removes the empty directory `dir`.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes the creations and removals of names in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// A new random identity (a store's uid). `SimFs` hands out a fixed sequence instead, so
    /// a simulated run replays byte for byte.
    fn new_uid(&self) -> u64 {
        random_uid()
    }
    /// Whether the store may work on threads of its own beside its callers' (the segment
    /// pool's preparer). `SimFs` says no, so that a simulated run replays exactly: its pool
    /// is then filled only by recycling, and by `open` for a store's first segment.
    fn background_threads(&self) -> bool {
        true
    }
}

/// A random non-zero u64: the process's hasher keys mixed with the time and the process id.
pub(crate) fn random_uid() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

/// Creates `dir` and its missing parents durably: each new directory is fsynced in its parent
/// (a directory's own fsync does not make its name durable).
pub(crate) fn create_dir_durable<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .take_while(|d| fs.list_dirs(d).is_err())
        .collect();
    fs.create_dir_all(dir)?;
    for new in missing.into_iter().rev() {
        match new.parent() {
            Some(parent) if parent.as_os_str().is_empty() => fs.sync_dir(Path::new("."))?,
            Some(parent) => fs.sync_dir(parent)?,
            None => {}
        }
    }
    Ok(())
}

/// An open file, shared by the writer and concurrent readers.
pub trait FileHandle: Send + Sync + 'static {
    /// A read-only view of a whole immutable file (a memory map on the real disk).
    type Map: AsRef<[u8]> + Send + Sync + 'static;

    /// Fills `buf` from `offset`; `ErrorKind::UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes the concatenation of `bufs` at `offset`, as `write_all_at` would write it.
    /// The default copies them into one buffer; the real disk hands them to `pwritev`.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_all_at(&bufs.concat(), offset)
    }
    /// Current size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves space up to `len` bytes; the file reads as zeros past its written content.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes the file's content durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Maps the whole file read-only. Only for files that are never written or truncated
    /// again (sealed segments and their indexes).
    fn map(&self) -> io::Result<Self::Map>;
}
