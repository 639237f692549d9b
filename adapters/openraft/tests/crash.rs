//! The adapter's `LogStore` on `SimFs`, cut at every disk operation of a workload of votes,
//! appends (acknowledged by their `LogFlushed` callback), committed ids, truncations and purges,
//! then power-lost under several seeds and reopened. Whatever was acknowledged is there (an
//! entry, a truncation, a purge), the vote never goes back, and the operation in flight at the
//! cut either happened or did not.

use std::collections::BTreeMap;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use raftlog::fs::SimFs;
use raftlog_openraft::kv::KvRequest;
use raftlog_openraft::LogStore;

mod common;

use common::TypeConfig;

type Store = LogStore<TypeConfig, SimFs>;

fn log_id(term: u64, node: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, node), index)
}

fn entry(term: u64, node: u64, index: u64) -> Entry<TypeConfig> {
    let payload = match index % 3 {
        0 => EntryPayload::Blank,
        _ => EntryPayload::Normal(KvRequest::Set {
            key: format!("k{index}"),
            value: format!("t{term}"),
        }),
    };
    Entry { log_id: log_id(term, node, index), payload }
}

#[derive(Debug, Clone)]
enum Op {
    Vote(Vote<u64>),
    Append(Vec<Entry<TypeConfig>>),
    Committed(LogId<u64>),
    Truncate(LogId<u64>),
    Purge(LogId<u64>),
}

fn workload() -> Vec<Op> {
    let run = |term, node, range: std::ops::RangeInclusive<u64>| {
        range.map(|i| entry(term, node, i)).collect()
    };
    vec![
        Op::Vote(Vote::new(1, 1)),
        Op::Append(run(1, 1, 0..=4)),
        Op::Committed(log_id(1, 1, 3)),
        Op::Append(run(1, 1, 5..=7)),
        Op::Truncate(log_id(1, 1, 6)),
        Op::Vote(Vote::new_committed(2, 2)),
        Op::Append(run(2, 2, 6..=9)),
        Op::Purge(log_id(1, 1, 2)),
        Op::Append(run(2, 2, 10..=12)),
        Op::Committed(log_id(2, 2, 11)),
        Op::Purge(log_id(2, 2, 9)),
        Op::Vote(Vote::new(3, 3)),
        Op::Purge(log_id(2, 2, 12)),
        Op::Append(run(3, 3, 13..=14)),
        Op::Truncate(log_id(3, 3, 14)),
    ]
}

/// What an acknowledged prefix of the workload promises.
#[derive(Debug, Clone, Default)]
struct Model {
    vote: Option<Vote<u64>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<u64>>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Vote(vote) => self.vote = Some(*vote),
            Op::Append(entries) => {
                self.entries.extend(entries.iter().map(|e| (e.log_id.index, e.clone())))
            }
            Op::Committed(_) => {}
            Op::Truncate(at) => {
                self.entries.split_off(&at.index);
            }
            Op::Purge(upto) => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                self.purged = self.purged.max(Some(*upto));
            }
        }
    }
}

async fn run(store: &mut Store, op: &Op) -> Result<(), openraft::StorageError<u64>> {
    match op {
        Op::Vote(vote) => store.save_vote(vote).await,
        Op::Append(entries) => store.blocking_append(entries.clone()).await,
        Op::Committed(id) => store.save_committed(Some(*id)).await,
        Op::Truncate(at) => store.truncate(*at).await,
        Op::Purge(upto) => store.purge(*upto).await,
    }
}

/// Runs the workload until the disk halts; returns the acknowledged model and the op in flight.
async fn cut(fs: &SimFs) -> (Model, Option<Op>) {
    let Ok(mut store) = Store::open_with(fs.clone(), "/raft", raftlog::Options::default()) else {
        return (Model::default(), None); // the cut fell in the first open
    };
    let mut model = Model::default();
    for op in workload() {
        if run(&mut store, &op).await.is_err() {
            return (model, Some(op));
        }
        model.apply(&op);
    }
    (model, None)
}

async fn check(fs: &SimFs, model: &Model, in_flight: Option<&Op>, case: &str) {
    let mut store = Store::open_with(fs.clone(), "/raft", raftlog::Options::default())
        .unwrap_or_else(|e| panic!("{case}: does not reopen: {e}"));
    let mut after = model.clone();
    if let Some(op) = in_flight {
        after.apply(op);
    }
    let vote = store.read_vote().await.unwrap();
    assert!(vote >= model.vote, "{case}: the vote went back: {vote:?} < {:?}", model.vote);
    assert!(vote == model.vote || vote == after.vote, "{case}: a vote nobody saved: {vote:?}");
    let state = store.get_log_state().await.unwrap();
    let purged = state.last_purged_log_id;
    assert!(purged == model.purged || purged == after.purged, "{case}: purged {purged:?}");
    let entries = store.try_get_log_entries(0..u64::MAX).await.unwrap();
    let present: BTreeMap<u64, Entry<TypeConfig>> =
        entries.iter().map(|e| (e.log_id.index, e.clone())).collect();
    let above_purge = |index: &u64| purged.is_none_or(|p| *index > p.index);
    for (index, expected) in model.entries.iter().filter(|(i, _)| above_purge(i)) {
        let kept_by_both = after.entries.get(index) == Some(expected);
        if kept_by_both {
            assert_eq!(
                present.get(index),
                Some(expected),
                "{case}: acknowledged entry {index} lost"
            );
        }
    }
    for (index, entry) in &present {
        let known =
            model.entries.get(index) == Some(entry) || after.entries.get(index) == Some(entry);
        assert!(known, "{case}: entry {index} was never acknowledged nor in flight: {entry:?}");
    }
    let last = entries.last().map(|e| e.log_id).or(purged);
    assert_eq!(state.last_log_id, last, "{case}: log state");
}

#[test]
fn every_cut_keeps_what_was_acknowledged() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let fs = SimFs::new();
        cut(&fs).await;
        let total = fs.mutating_ops();
        let mut cases = 0;
        for ops in 0..=total {
            for seed in 0..8u64 {
                let fs = SimFs::with_seed(seed);
                fs.halt_after(ops);
                let (model, in_flight) = cut(&fs).await;
                fs.crash(seed * 7919 + ops);
                check(
                    &fs,
                    &model,
                    in_flight.as_ref(),
                    &format!("cut after {ops} ops, seed {seed}"),
                )
                .await;
                cases += 1;
            }
        }
        println!(
            "openraft adapter: {cases} crash states over {total} disk operations, 0 violations"
        );
        assert!(total > 20, "the workload reached the disk");
    });
}
