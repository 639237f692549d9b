//! The simulated disk's name spaces: file names (to inodes) and directories, and the name
//! changes a directory sync makes durable.
//!
//! Invariants:
//! 1. A name change applies to one name space at a time, in the order it happened.
//! 2. `drop_orphans` leaves no name whose parent directory is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File names (to inodes) and directories, live or durable.
#[derive(Debug, Default, Clone)]
pub(super) struct Namespace {
    pub names: BTreeMap<PathBuf, u64>,
    pub dirs: BTreeSet<PathBuf>,
}

impl Namespace {
    pub fn apply(&mut self, change: NameChange) {
        match change {
            NameChange::Link(path, ino) => {
                self.names.insert(path, ino);
            }
            NameChange::Unlink(path) => {
                self.names.remove(&path);
            }
            NameChange::Rename { from, to } => {
                if let Some(ino) = self.names.remove(&from) {
                    self.names.insert(to, ino);
                }
            }
            NameChange::RenameDir { from, to } => {
                let moved =
                    |path: &PathBuf| path.strip_prefix(&from).ok().map(|rest| to.join(rest));
                let (below, rest): (BTreeMap<_, _>, BTreeMap<_, _>) =
                    std::mem::take(&mut self.names)
                        .into_iter()
                        .partition(|(p, _)| p.starts_with(&from));
                self.names = rest;
                self.names.extend(below.iter().filter_map(|(p, ino)| Some((moved(p)?, *ino))));
                let dirs: Vec<PathBuf> = self.dirs.iter().filter_map(moved).collect();
                self.dirs.retain(|dir| !dir.starts_with(&from));
                self.dirs.extend(dirs);
            }
            NameChange::RemoveDir(dir) => {
                self.names.retain(|path, _| !path.starts_with(&dir));
                self.dirs.retain(|d| !d.starts_with(&dir));
            }
            NameChange::MakeDir(dir) => {
                self.dirs.insert(dir);
            }
        }
    }

    /// Drops the names and directories whose parent directory does not exist (its creation
    /// was lost): what a crash leaves of a directory made durable inside a lost one.
    pub fn drop_orphans(&mut self) {
        let mut dirs = BTreeSet::new();
        // Sorted order visits a directory before everything below it.
        for dir in std::mem::take(&mut self.dirs) {
            if dir.parent().is_none_or(|parent| dirs.contains(parent)) {
                dirs.insert(dir);
            }
        }
        self.names.retain(|path, _| path.parent().is_some_and(|parent| dirs.contains(parent)));
        self.dirs = dirs;
    }
}

#[derive(Debug, Clone)]
pub(super) enum NameChange {
    Link(PathBuf, u64),
    Unlink(PathBuf),
    /// A file's rename within one directory: atomic.
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    /// A directory's rename within one directory: moves everything below it.
    RenameDir {
        from: PathBuf,
        to: PathBuf,
    },
    RemoveDir(PathBuf),
    /// A directory's creation.
    MakeDir(PathBuf),
}

impl NameChange {
    /// The directory whose `sync_dir` makes this change durable.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            NameChange::Link(path, _)
            | NameChange::Unlink(path)
            | NameChange::Rename { to: path, .. }
            | NameChange::RenameDir { to: path, .. }
            | NameChange::RemoveDir(path)
            | NameChange::MakeDir(path) => path.parent(),
        }
    }
}
