//! `OverlayFs`: the real disk, read-only, with every change kept in memory. The inspector
//! runs the store's own recovery on it to see what recovery would decide, without changing
//! the directory and without taking its lock.
//!
//! Invariants:
//! 1. Nothing is ever written to, created in, or removed from the real directory.
//! 2. A file is copied into memory the first time something writes to it (copy on write);
//!    until then reads and maps go to the real file.
//! 3. The lock always succeeds: a writer may hold the real lock while the overlay reads.
//! 4. Renames, hard links and directory removal (the snapshot store's publish and delete) are
//!    refused with `ErrorKind::Unsupported`: log recovery, which the overlay serves, never
//!    makes them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{FileHandle, FileSystem, StdFs};

/// A read-only view of the real disk with an in-memory overlay for changes.
#[derive(Debug, Clone, Default)]
pub struct OverlayFs {
    state: Arc<Mutex<Overlay>>,
}

#[derive(Debug, Default)]
struct Overlay {
    /// Files created or modified, by path: their whole content.
    files: HashMap<PathBuf, Arc<Mutex<Vec<u8>>>>,
    removed: HashSet<PathBuf>,
}

/// A file of an `OverlayFs`.
#[derive(Debug)]
pub enum OverlayFile {
    /// Untouched: reads go to the real file.
    Real(File, PathBuf, OverlayFs),
    /// Created or copied on write: lives in memory.
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl OverlayFs {
    /// A view of the real disk.
    pub fn new() -> Self {
        OverlayFs::default()
    }

    fn state(&self) -> MutexGuard<'_, Overlay> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn copy_on_write(&self, path: &Path, real: &File) -> io::Result<Arc<Mutex<Vec<u8>>>> {
        if let Some(copy) = self.state().files.get(path) {
            return Ok(Arc::clone(copy));
        }
        let mut bytes = vec![0u8; usize::try_from(real.size()?).unwrap_or(usize::MAX)];
        FileHandle::read_exact_at(real, &mut bytes, 0)?;
        let copy = Arc::new(Mutex::new(bytes));
        self.state().files.insert(path.to_path_buf(), Arc::clone(&copy));
        Ok(copy)
    }
}

fn memory(bytes: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
    bytes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FileSystem for OverlayFs {
    type File = OverlayFile;
    type Lock = ();

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ))
        }
    }

    fn lock(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<OverlayFile> {
        let exists = self.state().files.contains_key(path)
            || (!self.state().removed.contains(path) && path.exists());
        if exists {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string()));
        }
        let file = Arc::new(Mutex::new(Vec::new()));
        let mut state = self.state();
        state.removed.remove(path);
        state.files.insert(path.to_path_buf(), Arc::clone(&file));
        Ok(OverlayFile::Memory(file))
    }

    fn open(&self, path: &Path) -> io::Result<OverlayFile> {
        let state = self.state();
        if let Some(file) = state.files.get(path) {
            return Ok(OverlayFile::Memory(Arc::clone(file)));
        }
        if state.removed.contains(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, path.display().to_string()));
        }
        drop(state);
        Ok(OverlayFile::Real(File::open(path)?, path.to_path_buf(), self.clone()))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        let existed = state.files.remove(path).is_some() || path.exists();
        if !existed || state.removed.contains(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, path.display().to_string()));
        }
        state.removed.insert(path.to_path_buf());
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state();
        let mut names: HashSet<PathBuf> = StdFs
            .list(dir)?
            .into_iter()
            .filter(|name| !state.removed.contains(&dir.join(name)))
            .collect();
        for path in state.files.keys().filter(|p| p.parent() == Some(dir)) {
            if let Some(name) = path.file_name() {
                names.insert(PathBuf::from(name));
            }
        }
        Ok(names.into_iter().collect())
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state();
        let names = StdFs.list_dirs(dir)?;
        Ok(names.into_iter().filter(|name| !state.removed.contains(&dir.join(name))).collect())
    }

    fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(read_only("rename", from))
    }

    fn replace(&self, from: &Path, _to: &Path) -> io::Result<()> {
        Err(read_only("replace", from))
    }

    fn hard_link(&self, source: &Path, _link: &Path) -> io::Result<()> {
        Err(read_only("hard_link", source))
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        Err(read_only("remove_dir", dir))
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn background_threads(&self) -> bool {
        false
    }
}

fn read_only(op: &str, path: &Path) -> io::Error {
    let message = format!("{op} {}: the read-only overlay does not model it", path.display());
    io::Error::new(io::ErrorKind::Unsupported, message)
}

impl OverlayFile {
    /// The in-memory copy to write to, made on the first write.
    fn writable(&self) -> io::Result<Arc<Mutex<Vec<u8>>>> {
        match self {
            OverlayFile::Real(file, path, fs) => fs.copy_on_write(path, file),
            OverlayFile::Memory(bytes) => Ok(Arc::clone(bytes)),
        }
    }
}

/// A mapped real file, or a copy of an overlay file.
#[derive(Debug)]
pub enum OverlayMap {
    /// A read-only memory map of a real file.
    Real(memmap2::Mmap),
    /// A copy of a file that lives in the overlay.
    Memory(Vec<u8>),
}

impl AsRef<[u8]> for OverlayMap {
    fn as_ref(&self) -> &[u8] {
        match self {
            OverlayMap::Real(map) => map,
            OverlayMap::Memory(bytes) => bytes,
        }
    }
}

impl FileHandle for OverlayFile {
    type Map = OverlayMap;

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            OverlayFile::Real(file, ..) => FileHandle::read_exact_at(file, buf, offset),
            OverlayFile::Memory(bytes) => {
                let bytes = memory(bytes);
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.checked_add(buf.len()).filter(|end| *end <= bytes.len());
                let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(&bytes[start..end]);
                Ok(())
            }
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let copy = self.writable()?;
        let mut bytes = memory(&copy);
        let start = usize::try_from(offset).map_err(|_| io::Error::other("offset"))?;
        if bytes.len() < start + buf.len() {
            bytes.resize(start + buf.len(), 0);
        }
        bytes[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        match self {
            OverlayFile::Real(file, path, fs) => match fs.state().files.get(path) {
                Some(copy) => Ok(memory(copy).len() as u64),
                None => file.size(),
            },
            OverlayFile::Memory(bytes) => Ok(memory(bytes).len() as u64),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let copy = self.writable()?;
        memory(&copy).resize(usize::try_from(len).map_err(|_| io::Error::other("length"))?, 0);
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.size()? < len {
            self.set_len(len)?;
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn map(&self) -> io::Result<OverlayMap> {
        match self {
            OverlayFile::Real(file, path, fs) if !fs.state().files.contains_key(path) => {
                Ok(OverlayMap::Real(file.map()?))
            }
            OverlayFile::Real(_, path, fs) => {
                let copy = Arc::clone(&fs.state().files[path]);
                let bytes = memory(&copy).clone();
                Ok(OverlayMap::Memory(bytes))
            }
            OverlayFile::Memory(bytes) => Ok(OverlayMap::Memory(memory(bytes).clone())),
        }
    }
}
