//! `SimFs`: a simulated disk for crash and corruption tests.
//!
//! Every file has a live image (what reads see) and a durable image (what survives a crash),
//! plus the list of writes since its last `sync_data`. Every directory has a list of name
//! changes (creations, removals, renames, hard links) since its last `sync_dir`. `crash(seed)` builds the next boot's disk from the
//! durable images plus, chosen by the seed, a random subset of the unsynced writes (each kept
//! whole, dropped, or torn at 512-byte sectors) and a random prefix of each directory's unsynced
//! name changes. Faults: EIO on the n-th call of an operation, ENOSPC past a space limit, a halt
//! after n mutating operations (a crash point), and bit flips.
//!
//! Invariants:
//! 1. A write reaches the durable image only through `sync_data` on its file (or a crash that
//!    happens to keep it); a name only through `sync_dir` on its directory (or a kept prefix).
//! 2. Handles opened before a crash fail with EIO afterwards; locks are released by a crash.
//! 3. The same seed on the same history gives the same disk, byte for byte: every choice comes
//!    from the seed and ordered collections, and `new_uid` hands out a fixed sequence.
//! 4. Creating, renaming or removing a directory is a name change of its parent, durable after
//!    `sync_dir` on the parent; a crash that loses a directory's creation loses everything in
//!    it. A directory is renamed only when none of its own name changes is
//!    pending (refused with `InvalidInput` otherwise): the model then needs no directory inodes.

mod crash;
mod file;
mod namespace;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::FileSystem;
use crash::SplitMix;
pub use file::SimFile;
use namespace::{NameChange, Namespace};

/// An operation `SimFs::fail_nth` can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `FileHandle::write_all_at`.
    Write,
    /// `FileHandle::sync_data`.
    SyncData,
    /// `FileSystem::sync_dir`.
    SyncDir,
    /// `FileSystem::create`.
    Create,
    /// `FileSystem::remove`.
    Remove,
    /// `FileHandle::set_len`.
    SetLen,
    /// `FileHandle::allocate`.
    Allocate,
    /// `FileHandle::read_exact_at`.
    Read,
    /// `FileSystem::rename`.
    Rename,
    /// `FileSystem::hard_link`.
    HardLink,
    /// `FileSystem::remove_dir`.
    RemoveDir,
    /// `FileSystem::create_dir_all`, for each directory it creates.
    CreateDir,
}

impl FaultOp {
    fn is_mutating(self) -> bool {
        self != FaultOp::Read
    }
}

/// A simulated disk; clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// Ordered, so that a crash visits inodes in the same order on every run (invariant 3).
    inodes: BTreeMap<u64, Inode>,
    /// What reads see.
    live: Namespace,
    /// What survives a crash.
    durable: Namespace,
    /// Unsynced name changes, in the order they happened.
    name_changes: Vec<NameChange>,
    next_inode: u64,
    generation: u64,
    locks: BTreeSet<PathBuf>,
    /// Identities handed out by `new_uid`, from a fixed sequence.
    uids: u64,
    /// `hard_link` fails with `CrossesDevices`, as between two file systems.
    refuse_links: bool,
    /// (operation, calls of it still to let through before one fails).
    faults: Vec<(FaultOp, u64)>,
    /// Mutating operations still allowed before the disk halts; `None` never halts.
    halt_countdown: Option<u64>,
    space_limit: Option<u64>,
    mutating_ops: u64,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

#[derive(Debug, Clone)]
enum Unsynced {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO: {what}"))
}

fn write_into(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("simulated file offset fits in memory");
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

fn set_len_of(image: &mut Vec<u8>, len: u64) {
    image.resize(usize::try_from(len).expect("simulated file length fits in memory"), 0);
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}

/// The last components of the `paths` whose parent is `dir`.
fn children<'a>(paths: impl Iterator<Item = &'a PathBuf>, dir: &Path) -> Vec<PathBuf> {
    paths
        .filter(|path| path.parent() == Some(dir))
        .filter_map(|path| path.file_name().map(PathBuf::from))
        .collect()
}

impl State {
    fn check_dir(&self, dir: &Path) -> io::Result<()> {
        if self.live.dirs.contains(dir) {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"))
        }
    }

    /// `path` can be given to a new file or directory: its parent exists and it is unused.
    fn check_free(&self, path: &Path) -> io::Result<()> {
        self.check_dir(path.parent().unwrap_or(Path::new("")))?;
        if self.live.names.contains_key(path) || self.live.dirs.contains(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, path.display().to_string()));
        }
        Ok(())
    }

    /// Counts the call and decides whether it fails (injected fault or halted disk).
    fn enter(&mut self, op: FaultOp) -> io::Result<()> {
        if op.is_mutating() {
            match self.halt_countdown {
                Some(0) => return Err(eio("disk halted")),
                Some(ref mut left) => *left -= 1,
                None => {}
            }
            self.mutating_ops += 1;
        }
        for fault in self.faults.iter_mut().filter(|(fault_op, _)| *fault_op == op) {
            if fault.1 == 0 {
                fault.1 = u64::MAX;
                return Err(eio("injected fault"));
            }
            fault.1 = fault.1.saturating_sub(1);
        }
        self.faults.retain(|(_, left)| *left != u64::MAX);
        Ok(())
    }

    fn live_bytes(&self) -> u64 {
        let live: BTreeSet<u64> = self.live.names.values().copied().collect();
        live.iter().map(|ino| self.inodes[ino].live.len() as u64).sum()
    }

    fn check_space(&self, inode: u64, new_len: u64) -> io::Result<()> {
        let Some(limit) = self.space_limit else { return Ok(()) };
        let current = self.inodes[&inode].live.len() as u64;
        if new_len > current && self.live_bytes() + (new_len - current) > limit {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
        }
        Ok(())
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.live
            .names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, path.display().to_string()))
    }
}

impl SimFs {
    /// An empty simulated disk. Its `new_uid` sequence starts from seed 0, so two disks made
    /// by `new` give their stores the same identity; see `with_seed`.
    pub fn new() -> Self {
        SimFs::default()
    }

    /// An empty simulated disk whose `new_uid` sequence starts from `seed`: stores created on
    /// disks of different seeds have different identities.
    pub fn with_seed(seed: u64) -> Self {
        let fs = SimFs::default();
        fs.state().uids = seed.wrapping_mul(1 << 32);
        fs
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the `n`-th future call (0-based) of `op` fail with EIO.
    pub fn fail_nth(&self, op: FaultOp, n: u64) {
        self.state().faults.push((op, n));
    }

    /// Writes that would grow the live files past `bytes` in total fail with ENOSPC.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.state().space_limit = bytes;
    }

    /// After `ops` more mutating operations every mutating operation fails with EIO, freezing
    /// the disk at that point until `crash`.
    pub fn halt_after(&self, ops: u64) {
        self.state().halt_countdown = Some(ops);
    }

    /// Mutating operations performed so far (writes, syncs, creates, removes, set_len,
    /// allocate): the crash points of a workload.
    pub fn mutating_ops(&self) -> u64 {
        self.state().mutating_ops
    }

    /// Loses power: the disk becomes the durable images plus, chosen by `seed`, some unsynced
    /// writes (whole or torn at 512-byte sectors) and a prefix of each directory's unsynced
    /// name changes. Old handles fail afterwards; locks and faults are cleared.
    pub fn crash(&self, seed: u64) {
        self.state().crash(seed);
    }

    /// The process dies (kill -9) but the machine does not: every write and name change stays
    /// as the page cache holds it (still unsynced). Old handles fail afterwards; locks, faults
    /// and a halt are cleared.
    pub fn kill_process(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.locks.clear();
        state.halt_countdown = None;
        state.faults.clear();
    }

    /// Flips bit `bit` (counted from the file's first byte) of `path`, in the live image and,
    /// if it reaches that far, the durable one.
    pub fn flip_bit(&self, path: &Path, bit: u64) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.inode_of(path)?;
        let inode = state.inodes.get_mut(&ino).expect("named inode exists");
        let byte = usize::try_from(bit / 8).map_err(|_| eio("bit out of range"))?;
        if byte >= inode.live.len() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bit beyond file end"));
        }
        for image in [&mut inode.live, &mut inode.durable] {
            if let Some(b) = image.get_mut(byte) {
                *b ^= 1 << (bit % 8);
            }
        }
        Ok(())
    }

    /// Every file with its live content, by path: the whole disk, to compare two runs.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let state = self.state();
        let names = state.live.names.iter();
        names.map(|(path, ino)| (path.clone(), state.inodes[ino].live.clone())).collect()
    }

    /// The live content of `path`.
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.state();
        let ino = state.inode_of(path)?;
        Ok(state.inodes[&ino].live.clone())
    }

    /// Installs `bytes` as the durable content of `path` (created if missing), as if written,
    /// synced and its directory synced: builds disk images for tests and fuzzing.
    pub fn write_file_durable(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.state();
        for dir in path.ancestors().skip(1) {
            state.live.dirs.insert(dir.to_path_buf());
            state.durable.dirs.insert(dir.to_path_buf());
        }
        let ino = match state.live.names.get(path) {
            Some(ino) => *ino,
            None => {
                state.next_inode += 1;
                state.next_inode
            }
        };
        let inode = Inode { live: bytes.to_vec(), durable: bytes.to_vec(), unsynced: Vec::new() };
        state.inodes.insert(ino, inode);
        state.live.names.insert(path.to_path_buf(), ino);
        state.durable.names.insert(path.to_path_buf(), ino);
    }

    /// Removes `path` from both images, as a lost or deleted file.
    pub fn remove_durable(&self, path: &Path) {
        let mut state = self.state();
        state.live.names.remove(path);
        state.durable.names.remove(path);
    }

    /// Makes `hard_link` fail with `CrossesDevices` (as between two file systems) or succeed.
    pub fn refuse_links(&self, refuse: bool) {
        self.state().refuse_links = refuse;
    }

    /// Whether `a` and `b` name the same file (one inode, as after a hard link).
    pub fn same_file(&self, a: &Path, b: &Path) -> io::Result<bool> {
        let state = self.state();
        Ok(state.inode_of(a)? == state.inode_of(b)?)
    }
}

/// A directory lock of a `SimFs`, released on drop.
#[derive(Debug)]
pub struct SimLock {
    fs: SimFs,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.fs.state();
        if state.generation == self.generation {
            state.locks.remove(&self.path);
        }
    }
}

impl SimFs {
    fn handle(&self, state: &mut State, inode: u64) -> SimFile {
        SimFile { fs: self.clone(), inode, generation: state.generation }
    }
}

impl FileSystem for SimFs {
    type File = SimFile;
    type Lock = SimLock;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        let missing: Vec<&Path> =
            dir.ancestors().take_while(|d| !state.live.dirs.contains(*d)).collect();
        for new in missing.into_iter().rev() {
            if new.parent().is_none() {
                // The root always exists.
                state.live.dirs.insert(new.to_path_buf());
                state.durable.dirs.insert(new.to_path_buf());
                continue;
            }
            state.enter(FaultOp::CreateDir)?;
            state.live.dirs.insert(new.to_path_buf());
            state.name_changes.push(NameChange::MakeDir(new.to_path_buf()));
        }
        Ok(())
    }

    fn new_uid(&self) -> u64 {
        let mut state = self.state();
        state.uids += 1;
        SplitMix(state.uids).next().max(1)
    }

    fn background_threads(&self) -> bool {
        false
    }

    fn lock(&self, path: &Path) -> io::Result<SimLock> {
        let mut state = self.state();
        if !state.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "simulated lock is held"));
        }
        Ok(SimLock { fs: self.clone(), path: path.to_path_buf(), generation: state.generation })
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut state = self.state();
        state.check_free(path)?;
        state.enter(FaultOp::Create)?;
        state.next_inode += 1;
        let ino = state.next_inode;
        state.inodes.insert(ino, Inode::default());
        state.live.names.insert(path.to_path_buf(), ino);
        state.name_changes.push(NameChange::Link(path.to_path_buf(), ino));
        Ok(self.handle(&mut state, ino))
    }

    fn open(&self, path: &Path) -> io::Result<SimFile> {
        let mut state = self.state();
        let ino = state.inode_of(path)?;
        Ok(self.handle(&mut state, ino))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.inode_of(path)?;
        state.enter(FaultOp::Remove)?;
        state.live.names.remove(path);
        state.name_changes.push(NameChange::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state();
        state.check_dir(dir)?;
        Ok(children(state.live.names.keys(), dir))
    }

    fn list_dirs(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.state();
        state.check_dir(dir)?;
        Ok(children(state.live.dirs.iter(), dir))
    }

    fn replace(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        if from.parent() != to.parent() {
            return Err(invalid("SimFs renames only within one directory"));
        }
        state.inode_of(from)?;
        state.inode_of(to)?;
        let change = NameChange::Rename { from: from.to_path_buf(), to: to.to_path_buf() };
        state.enter(FaultOp::Rename)?;
        state.live.apply(change.clone());
        state.name_changes.push(change);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        if from.parent() != to.parent() {
            return Err(invalid("SimFs renames only within one directory"));
        }
        state.check_free(to)?;
        let change = if state.live.dirs.contains(from) {
            if state.name_changes.iter().any(|c| c.dir().is_some_and(|d| d.starts_with(from))) {
                return Err(invalid("SimFs renames a directory only after syncing its entries"));
            }
            NameChange::RenameDir { from: from.to_path_buf(), to: to.to_path_buf() }
        } else {
            state.inode_of(from)?;
            NameChange::Rename { from: from.to_path_buf(), to: to.to_path_buf() }
        };
        state.enter(FaultOp::Rename)?;
        state.live.apply(change.clone());
        state.name_changes.push(change);
        Ok(())
    }

    fn hard_link(&self, source: &Path, link: &Path) -> io::Result<()> {
        let mut state = self.state();
        let ino = state.inode_of(source)?;
        state.check_free(link)?;
        if state.refuse_links {
            return Err(io::Error::new(io::ErrorKind::CrossesDevices, "simulated EXDEV"));
        }
        state.enter(FaultOp::HardLink)?;
        state.live.names.insert(link.to_path_buf(), ino);
        state.name_changes.push(NameChange::Link(link.to_path_buf(), ino));
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        if !state.live.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, dir.display().to_string()));
        }
        let occupied = state.live.names.keys().any(|p| p.starts_with(dir))
            || state.live.dirs.iter().any(|d| d != dir && d.starts_with(dir));
        if occupied {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                dir.display().to_string(),
            ));
        }
        state.enter(FaultOp::RemoveDir)?;
        let change = NameChange::RemoveDir(dir.to_path_buf());
        state.live.apply(change.clone());
        state.name_changes.push(change);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.enter(FaultOp::SyncDir)?;
        let changes = std::mem::take(&mut state.name_changes);
        let (synced, pending): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(|change| change.dir() == Some(dir));
        for change in synced {
            state.durable.apply(change);
        }
        state.name_changes = pending;
        Ok(())
    }
}
