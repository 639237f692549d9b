//! `raftlog-raft-rs`: raftlog as tikv raft-rs's `Storage`, a drop-in for `MemStorage` that
//! lives on disk.
//!
//! [`DiskStorage`] implements [`raft::Storage`] over a [`raftlog::RaftLog`] (the log, the hard
//! state, and the `ConfState` as the engine metadata kept with it) and a
//! [`raftlog::SnapshotStore`] (snapshots), in one directory. Its writers mirror
//! `MemStorageCore`'s, on `&self`, and each is durable when it returns; [`DiskStorage::persist`]
//! makes one `Ready`'s entries and hard state durable with a single fdatasync.
//!
//! ```
//! use raft::eraftpb::{ConfState, Entry};
//! use raft::Storage;
//! use raftlog_raft_rs::DiskStorage;
//!
//! let dir = tempfile::tempdir()?;
//! let storage = DiskStorage::open(dir.path(), raftlog::Options::default())?;
//! storage.initialize_with_conf_state(ConfState::from((vec![1, 2, 3], vec![])))?;
//! let mut entry = Entry::default();
//! (entry.index, entry.term, entry.data) = (1, 1, b"put x=1".to_vec().into());
//! let mut hard_state = raft::eraftpb::HardState::default();
//! (hard_state.term, hard_state.commit) = (1, 1);
//! storage.persist(&[entry], Some(&hard_state))?; // one fdatasync
//! drop(storage);
//!
//! let storage = DiskStorage::open(dir.path(), raftlog::Options::default())?;
//! assert_eq!(storage.initial_state()?.hard_state.commit, 1);
//! assert_eq!(storage.initial_state()?.conf_state.voters, vec![1, 2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How values are encoded is in `codec`; the invariants of the storage are on `DiskStorage`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod storage;

pub use codec::{manifest_of, DATA_FILE, DATA_SLOT, MANIFEST_MARKER};
pub use storage::DiskStorage;
