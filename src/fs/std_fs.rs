//! The real disk, through `std::fs` and `fs2`.
//!
//! Invariants:
//! 1. `sync_dir` opens the directory and calls `fsync` on it (Unix); it is the only way a
//!    created or removed name becomes durable.
//! 2. `map` uses `mmap` read-only, and `write_all_vectored_at` calls `pwritev`: the only
//!    `unsafe` in the crate, each justified at its site.
//! 3. The lock is an `flock` on a file descriptor of its own, so a second open of the same
//!    directory fails even from the same process.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fs2::FileExt as _;

use super::{FileHandle, FileSystem};

/// The most slices one `pwritev` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

/// An exclusive `flock` on a lock file, released when dropped.
#[derive(Debug)]
pub struct StdLock {
    _file: File,
}

impl FileSystem for StdFs {
    type File = File;
    type Lock = StdLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<StdLock> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        file.try_lock_exclusive().map_err(|e| {
            if e.kind() == fs2::lock_contended_error().kind() {
                io::Error::new(io::ErrorKind::WouldBlock, e)
            } else {
                e
            }
        })?;
        Ok(StdLock { _file: file })
    }

    fn create(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create_new(true).open(path)
    }

    fn open(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        list_entries(dir, false)
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        list_entries(dir, true)
    }

    fn replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // `rename(2)` would replace an existing file; the directory lock keeps the check and
        // the rename free of races with other raftlog processes.
        if fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, to.display().to_string()));
        }
        fs::rename(from, to)
    }

    fn hard_link(&self, source: &Path, link: &Path) -> io::Result<()> {
        fs::hard_link(source, link)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The names in `dir` that are directories (`dirs`) or anything else (`!dirs`).
fn list_entries(dir: &Path, dirs: bool) -> io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() == dirs {
            names.push(PathBuf::from(entry.file_name()));
        }
    }
    Ok(names)
}

impl FileHandle for File {
    type Map = memmap2::Mmap;

    #[allow(unsafe_code)]
    fn map(&self) -> io::Result<memmap2::Mmap> {
        // SAFETY: `Mmap::map` is unsound only if the file is truncated (SIGBUS) or written
        // while mapped. The engine maps only files it never writes nor truncates again: sealed
        // segments (after their seal record is fsynced) and index files (after they are
        // written, fsynced and verified), per fs invariant 5. The directory lock keeps every
        // other writing raftlog process out; removing a mapped file is safe (the mapping
        // holds the inode). What is verified, and when:
        // - segment bytes: every record read through the map has its checksum and identity
        //   (index, term, segment) verified on each read, so changed bytes are an error;
        // - index bytes: verified whole (checksum, layout chain) through `pread` at open,
        //   then mapped; entries looked up later (`term`, read planning) are not verified
        //   again. They need not be: nothing writes the file after it was verified, and a
        //   wrong location still fails the record's own checks on read (format/SPEC.md,
        //   "Index file").
        // The inspector maps without the lock: a live writer may remove (compact) a file it
        // mapped, never change one, so its maps stay valid. A program outside raftlog that
        // writes or truncates these files breaks these assumptions; that is out of contract.
        unsafe { memmap2::Mmap::map(self) }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    #[allow(unsafe_code)]
    fn write_all_vectored_at(&self, bufs: &[&[u8]], mut offset: u64) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> =
            bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let count = rest.len().min(IOV_MAX);
            let at = libc::off_t::try_from(offset)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix);
            // `rest` holds at least `count` of them, each borrowing memory that outlives the
            // call; the descriptor is this open file's.
            let written = unsafe {
                libc::pwritev(self.as_raw_fd(), rest.as_ptr().cast(), count as libc::c_int, at)
            };
            let written = match usize::try_from(written) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(_) => {
                    let error = io::Error::last_os_error();
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(error);
                }
            };
            offset += written as u64;
            IoSlice::advance_slices(&mut rest, written);
        }
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        fs2::FileExt::allocate(self, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vectored_write_lands_as_the_concatenation_past_one_pwritev() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = StdFs.create(&path).unwrap();
        FileHandle::write_all_at(&file, &[0xee; 64], 0).unwrap();
        // More slices than one pwritev takes, empty ones among them.
        let owned: Vec<Vec<u8>> = (0..2 * IOV_MAX + 3).map(|i| vec![i as u8; i % 5]).collect();
        let pieces: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        file.write_all_vectored_at(&pieces, 7).unwrap();
        let expected = [&[0xee; 7][..], &pieces.concat()].concat();
        let mut read = vec![0u8; expected.len()];
        FileHandle::read_exact_at(&file, &mut read, 0).unwrap();
        assert_eq!(read, expected);
    }
}
