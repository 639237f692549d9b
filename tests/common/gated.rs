//! A file system whose `sync_data` blocks until released, to show who waits for it.
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use raftlog::fs::{FileHandle, FileSystem, SimFs};

#[derive(Clone, Default)]
pub struct GatedFs {
    pub sim: SimFs,
    /// (closed, a sync is waiting)
    pub gate: Arc<(Mutex<(bool, bool)>, Condvar)>,
}

pub struct GatedFile {
    file: <SimFs as FileSystem>::File,
    gate: Arc<(Mutex<(bool, bool)>, Condvar)>,
}

impl GatedFs {
    pub fn set_closed(&self, closed: bool) {
        self.gate.0.lock().unwrap().0 = closed;
        self.gate.1.notify_all();
    }

    pub fn wait_for_blocked_sync(&self) {
        let mut state = self.gate.0.lock().unwrap();
        while !state.1 {
            state = self.gate.1.wait(state).unwrap();
        }
    }
}

impl FileSystem for GatedFs {
    type File = GatedFile;
    type Lock = <SimFs as FileSystem>::Lock;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Self::Lock> {
        self.sim.lock(path)
    }
    fn create(&self, path: &Path) -> io::Result<GatedFile> {
        Ok(GatedFile { file: self.sim.create(path)?, gate: Arc::clone(&self.gate) })
    }
    fn open(&self, path: &Path) -> io::Result<GatedFile> {
        Ok(GatedFile { file: self.sim.open(path)?, gate: Arc::clone(&self.gate) })
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.sim.remove(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.sim.list(dir)
    }
    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.sim.list_dirs(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.replace(from, to)
    }
    fn hard_link(&self, source: &Path, link: &Path) -> io::Result<()> {
        self.sim.hard_link(source, link)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.remove_dir(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.sync_dir(dir)
    }
}

impl FileHandle for GatedFile {
    type Map = Vec<u8>;
    fn map(&self) -> io::Result<Vec<u8>> {
        self.file.map()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.allocate(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        let (lock, signal) = &*self.gate;
        let mut state = lock.lock().unwrap();
        if state.0 {
            state.1 = true;
            signal.notify_all();
            while state.0 {
                state = signal.wait(state).unwrap();
            }
            state.1 = false;
        }
        drop(state);
        self.file.sync_data()
    }
}
