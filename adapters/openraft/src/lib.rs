//! raftlog as [openraft](https://docs.rs/openraft/0.9)'s log storage.
//!
//! - [`LogStore`] implements `RaftLogStorage` and `RaftLogReader` (openraft 0.9, `storage-v2`)
//!   over a raftlog `LogStore` in a directory: appends are readable at once and acknowledged
//!   (`LogFlushed`) after a group-committed fdatasync; the vote is durable when `save_vote`
//!   returns and kept whole (term, node, committed); the committed log id rides the next
//!   fdatasync; `truncate` and `purge` are crash-safe.
//! - [`StateMachine`] is a state machine helper whose snapshots are raftlog `SnapshotStore`
//!   snapshots (the application's files hard-linked where it has them), moved between nodes as
//!   a stream of raftlog's checksummed chunks, verified before anything is installed.
//!
//! # Encoding
//!
//! - raftlog index = openraft index + 1; raftlog term = the leader's term.
//! - An entry's payload: bincode 2 (serde, standard config) of `(leader node id,
//!   EntryPayload<C>)`, encoded once; its kind byte: 0 blank, 1 normal, 2 membership.
//! - The store's metadata (raftlog keeps up to 4 KiB of it with the hard state): a version
//!   byte (1), then bincode 2 of `{ vote: Option<Vote>, committed: Option<LogId>,
//!   last_purged: Option<LogId> }`.
//!
//! ```no_run
//! # use std::io::Cursor;
//! openraft::declare_raft_types!(pub TypeConfig: D = String, R = String);
//! let log_store = raftlog_openraft::LogStore::<TypeConfig>::open("/var/lib/node/raft", raftlog::Options::default())?;
//! # Ok::<(), raftlog::Error>(())
//! ```

// openraft's traits return its `StorageError` (224 bytes); helpers return it too.
#![allow(clippy::result_large_err)]

mod archive;
mod codec;
pub mod kv;
mod log_store;
mod state_machine;

pub use codec::{KIND_BLANK, KIND_MEMBERSHIP, KIND_NORMAL};
pub use log_store::LogStore;
pub use state_machine::{Application, StateMachine};
