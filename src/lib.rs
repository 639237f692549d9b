//! `raftlog`: a write-ahead log and snapshot storage engine for Raft.
//!
//! A [`LogStore`] persists one Raft group's log in segment files with checksummed,
//! self-identifying records, and its [`HardState`] in a two-slot meta file; it recovers from
//! any crash without losing what it acknowledged, and reports what it cut in a
//! [`RecoveryReport`]. Every file operation goes through the [`fs::FileSystem`] seam, so the
//! simulated disk `fs::SimFs` (cargo feature `sim`) can crash it, tear its writes and flip its
//! bits in tests.
//! A [`SnapshotStore`] keeps the group's per-slot file snapshots, published atomically and
//! transferred in resumable, checksummed chunks.
//!
//! ```
//! use raftlog::{Entry, HardState, LogStore, Options};
//!
//! let dir = tempfile::tempdir()?;
//! let store = LogStore::open(dir.path(), Options::default())?;
//! store.append(&[Entry::new(1, 1, "set x = 1"), Entry::new(2, 1, "set y = 2")])?;
//! assert_eq!(store.sync()?, 2);
//! store.set_hard_state(HardState::new(1, 0, 2))?;
//! drop(store);
//!
//! let store = LogStore::open(dir.path(), Options::default())?;
//! let entries = store.entries(1, 3, u64::MAX)?;
//! assert_eq!(entries[1].payload, "set y = 2");
//! assert_eq!(store.hard_state().commit, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format and the recovery decision table are specified in `format/SPEC.md`.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod entries;
mod entry;
mod error;
pub mod fs;
mod hard_state;
mod index;
#[cfg(feature = "inspect")]
pub mod inspect;
mod meta;
mod options;
pub mod replication;
mod segment;
pub mod snapshot;
mod store;

pub use entries::{RaftLog, RaftLogOptions};
pub use entry::{Entry, INDEX_MAX};
pub use error::{Corruption, Error, HardStateRule, Result};
pub use hard_state::HardState;
pub use options::{Compression, Options, SyncPolicy};
pub use snapshot::{SnapshotLog, SnapshotMeta, SnapshotOptions, SnapshotStore};
pub use store::{IndexRebuild, LogStore, LostPrefix, RecoveryReport, TailDurability, TornTail};
