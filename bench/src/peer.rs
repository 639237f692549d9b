//! The second peer: raft-log 0.4.6 (the log store by openraft's author), driven the way its
//! users drive it: `append`, then `flush(true, callback)` and a wait for the callback when the
//! write must be durable; `read(from, to)` for ranges; `RaftLog::open` to reopen.

use std::io;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::{Config, RaftLog, Types};

use crate::payload;

/// raft-log's own test types: log ids `(term, index)`, `Vec<u8>` payloads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PeerTypes;

impl Types for PeerTypes {
    type LogId = (u64, u64);
    type LogPayload = Vec<u8>;
    type Vote = (u64, u64);
    type Callback = SyncSender<Result<(), io::Error>>;
    type UserData = String;

    fn log_index(log_id: &(u64, u64)) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

pub type Peer = RaftLog<PeerTypes>;

pub fn open(dir: &Path) -> Peer {
    std::fs::create_dir_all(dir).expect("raft-log dir");
    RaftLog::open(Arc::new(Config::new(dir.display()))).expect("open raft-log")
}

/// A log shared by writers, with the next index to append.
pub type Shared = Mutex<(Peer, u64)>;

/// Appends the batch `make(next index)` builds (under the log's lock, so that concurrent
/// writers append consecutive ids); with `synced`, returns once it is durable.
pub fn append(log: &Shared, make: impl FnOnce(u64) -> Vec<((u64, u64), Vec<u8>)>, synced: bool) {
    let (tx, rx) = sync_channel(1);
    {
        let mut guard = log.lock().expect("raft-log");
        let (log, next) = &mut *guard;
        let batch = make(*next);
        *next += batch.len() as u64;
        log.append(batch).expect("append");
        log.flush(synced, synced.then_some(tx)).expect("flush");
    }
    if synced {
        rx.recv().expect("flush callback").expect("flush");
    }
}

/// Writes `entries` entries of `len` bytes in batches of `batch`, then flushes durably.
pub fn write(dir: &Path, entries: u64, len: usize, batch: u64) {
    let log = Mutex::new((open(dir), 1));
    for _ in (1..=entries).step_by(batch as usize) {
        append(
            &log,
            |first| (first..first + batch).map(|i| ((1, i), payload(i, len))).collect(),
            false,
        );
    }
    append(&log, |_| Vec::new(), true);
}

/// Entries in `[lo, hi)`.
pub fn read(log: &Peer, lo: u64, hi: u64) -> usize {
    log.read(lo, hi).inspect(|entry| assert!(entry.is_ok(), "raft-log read")).count()
}

/// The number of entries a reopened log holds.
pub fn count(log: &Peer) -> u64 {
    log.log_state().last().map_or(0, |id| id.1)
}
