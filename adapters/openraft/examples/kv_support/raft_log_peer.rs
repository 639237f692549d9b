//! The benchmark's peer: openraft's log storage on raft-log 0.4.6 (by openraft's author), the
//! same way `LogStore` sits on raftlog, so that `--store raft-log` runs the same cluster on it.
//! Entries are bincode 2 of `EntryPayload`, log ids `((term, node), index)`, votes
//! `((term, committed), node)` (ordered as openraft orders them for valid transitions).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote,
};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::{Callback, Types};

use crate::TypeConfig;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PeerTypes;

type PeerLogId = ((u64, u64), u64);
type PeerVote = ((u64, u64), u64);

pub enum Done {
    Flushed(LogFlushed<TypeConfig>),
    Blocking(mpsc::SyncSender<Result<(), io::Error>>),
}

impl Callback for Done {
    fn send(self, result: Result<(), io::Error>) {
        match self {
            Done::Flushed(callback) => callback.log_io_completed(result),
            // The waiter may have gone; then nobody needs the answer.
            Done::Blocking(tx) => drop(mpsc::SyncSender::send(&tx, result)),
        }
    }
}

impl Types for PeerTypes {
    type LogId = PeerLogId;
    type LogPayload = Vec<u8>;
    type Vote = PeerVote;
    type Callback = Done;
    type UserData = String;

    fn log_index(log_id: &PeerLogId) -> u64 {
        log_id.1
    }

    fn payload_size(payload: &Vec<u8>) -> u64 {
        payload.len() as u64
    }
}

fn to_peer(id: &LogId<u64>) -> PeerLogId {
    ((id.leader_id.term, id.leader_id.node_id), id.index)
}

fn from_peer(id: &PeerLogId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(id.0 .0, id.0 .1), id.1)
}

fn write_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

#[derive(Clone)]
pub struct RaftLogPeer {
    log: Arc<Mutex<raft_log::RaftLog<PeerTypes>>>,
}

impl RaftLogPeer {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config = raft_log::Config::new(dir.display());
        Ok(RaftLogPeer { log: Arc::new(Mutex::new(raft_log::RaftLog::open(Arc::new(config))?)) })
    }

    #[allow(clippy::result_large_err)] // openraft's error type
    fn blocking_flush(&self) -> Result<(), StorageError<u64>> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.log.lock().unwrap().flush(true, Some(Done::Blocking(tx))).map_err(write_err)?;
        rx.recv().map_err(write_err)?.map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for RaftLogPeer {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let lo = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(i) => i + 1,
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let log = self.log.lock().unwrap();
        let mut out = Vec::new();
        for item in log.read(lo, hi) {
            let (id, payload) = item.map_err(write_err)?;
            let (payload, _) =
                bincode::serde::decode_from_slice(&payload, bincode::config::standard())
                    .map_err(write_err)?;
            out.push(Entry { log_id: from_peer(&id), payload });
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogPeer {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let log = self.log.lock().unwrap();
        let state = log.log_state();
        let last_purged_log_id = state.purged().map(from_peer);
        Ok(LogState {
            last_purged_log_id,
            last_log_id: state.last().map(from_peer).or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let peer = ((vote.leader_id.term, u64::from(vote.committed)), vote.leader_id.node_id);
        self.log.lock().unwrap().save_vote(peer).map_err(write_err)?;
        self.blocking_flush()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let log = self.log.lock().unwrap();
        Ok(log.log_state().vote().map(|((term, committed), node)| {
            if *committed == 1 {
                Vote::new_committed(*term, *node)
            } else {
                Vote::new(*term, *node)
            }
        }))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        if let Some(id) = committed {
            let mut log = self.log.lock().unwrap();
            log.commit(to_peer(&id)).map_err(write_err)?;
            log.flush(false, None).map_err(write_err)?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.log.lock().unwrap().log_state().committed().map(from_peer))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        for entry in entries {
            let payload =
                bincode::serde::encode_to_vec(&entry.payload, bincode::config::standard())
                    .map_err(write_err)?;
            batch.push((to_peer(&entry.log_id), payload));
        }
        let mut log = self.log.lock().unwrap();
        log.append(batch).map_err(write_err)?;
        log.flush(true, Some(Done::Flushed(callback))).map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log.lock().unwrap().truncate(log_id.index).map_err(write_err)?;
        self.blocking_flush()
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.log.lock().unwrap().purge(to_peer(&log_id)).map_err(write_err)?;
        self.blocking_flush()
    }
}
