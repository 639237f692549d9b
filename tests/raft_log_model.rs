//! `RaftLog` against a reference model (property test), and through crashes of `SimFs`:
//! acknowledged entries and the commit index survive, and the commit index never comes back
//! higher than what was really committed.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use raftlog::fs::SimFs;
use raftlog::{Entry, Error, LogStore, Options, RaftLog};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The Raft log rules, written as plainly as possible.
#[derive(Debug, Clone)]
struct Model {
    terms: BTreeMap<u64, u64>,
    first: u64,
    prev_term: u64,
    commit: u64,
    applied: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.terms.keys().next_back().copied().unwrap_or(self.first - 1)
    }

    fn term(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first {
            Some(self.prev_term)
        } else {
            self.terms.get(&index).copied()
        }
    }

    fn append(&mut self, batch: &[(u64, u64)]) -> Result<u64, &'static str> {
        let Some(&(first, _)) = batch.first() else { return Ok(self.last()) };
        if first <= self.commit {
            return Err("committed");
        }
        if first > self.last() + 1 {
            return Err("gap");
        }
        let mut previous = self.term(first - 1).ok_or("compacted")?;
        for &(_, term) in batch {
            if term < previous {
                return Err("term regression");
            }
            previous = term;
        }
        self.terms.split_off(&first);
        self.terms.extend(batch.iter().copied());
        Ok(self.last())
    }

    fn maybe_append(
        &mut self,
        prev: (u64, u64),
        leader_commit: u64,
        batch: &[(u64, u64)],
    ) -> Result<Option<u64>, &'static str> {
        if self.term(prev.0) != Some(prev.1) {
            return Ok(None);
        }
        let last_new = prev.0 + batch.len() as u64;
        if let Some(k) = batch.iter().position(|&(i, t)| self.term(i) != Some(t)) {
            if batch[k].0 <= self.commit {
                return Err("committed");
            }
            self.append(&batch[k..])?;
        }
        self.commit = self.commit.max(leader_commit.min(last_new));
        Ok(Some(last_new))
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Append `count` entries from `commit + 1 + back` (capped at last + 1), terms rising by `bump`.
    Append {
        back: u64,
        count: u64,
        bump: u64,
    },
    /// A follower append after `prev` (relative to last), with `count` entries.
    MaybeAppend {
        prev_back: u64,
        wrong_term: bool,
        count: u64,
        bump: u64,
        commit_ahead: u64,
    },
    CommitTo {
        ahead: u64,
    },
    AppliedTo {
        back: u64,
    },
    Compact {
        back: u64,
    },
    Restore {
        ahead: u64,
        term_bump: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u64, 0..4u64, 0..2u64).prop_map(|(back, count, bump)| Op::Append { back, count, bump }),
        4 => (0..5u64, any::<bool>(), 0..4u64, 0..2u64, 0..4u64).prop_map(|(prev_back, wrong_term, count, bump, commit_ahead)| Op::MaybeAppend { prev_back, wrong_term, count, bump, commit_ahead }),
        2 => (0..4u64).prop_map(|ahead| Op::CommitTo { ahead }),
        2 => (0..4u64).prop_map(|back| Op::AppliedTo { back }),
        1 => (0..4u64).prop_map(|back| Op::Compact { back }),
        1 => (0..3u64, 0..2u64).prop_map(|(ahead, term_bump)| Op::Restore { ahead, term_bump }),
    ]
}

fn entry(index: u64, term: u64) -> Entry {
    Entry::new(index, term, format!("{index}:{term}"))
}

fn batch_from(start: u64, count: u64, mut term: u64, bump: u64) -> Vec<(u64, u64)> {
    (start..start + count)
        .map(|i| {
            term += bump * (i % 2);
            (i, term)
        })
        .collect()
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let store = LogStore::open_with(SimFs::new(), common::DIR, Options::default()).unwrap();
    let log = RaftLog::new(store).unwrap();
    let mut model = Model { terms: BTreeMap::new(), first: 1, prev_term: 0, commit: 0, applied: 0 };
    for op in ops {
        let last = model.last();
        let last_term = model.term(last).unwrap();
        let (got, want): (Result<String, String>, Result<String, String>) = match *op {
            Op::Append { back, count, bump } => {
                let start = (model.commit + 1 + back).min(last + 1);
                let term = model.term(start - 1).unwrap_or(last_term);
                let batch = batch_from(start, count, term, bump);
                let entries: Vec<Entry> = batch.iter().map(|&(i, t)| entry(i, t)).collect();
                (
                    log.append(&entries).map(|l| l.to_string()).map_err(kind),
                    model.append(&batch).map(|l| l.to_string()).map_err(str::to_owned),
                )
            }
            Op::MaybeAppend { prev_back, wrong_term, count, bump, commit_ahead } => {
                let prev_index = last.saturating_sub(prev_back).max(model.first - 1);
                let prev_term = model.term(prev_index).unwrap() + u64::from(wrong_term);
                let batch = batch_from(prev_index + 1, count, prev_term.max(last_term), bump);
                let entries: Vec<Entry> = batch.iter().map(|&(i, t)| entry(i, t)).collect();
                let leader_commit = model.commit + commit_ahead;
                (
                    log.maybe_append(prev_index, prev_term, leader_commit, &entries)
                        .map(|r| format!("{r:?}"))
                        .map_err(kind),
                    model
                        .maybe_append((prev_index, prev_term), leader_commit, &batch)
                        .map(|r| format!("{r:?}"))
                        .map_err(str::to_owned),
                )
            }
            Op::CommitTo { ahead } => {
                let to = model.commit + ahead;
                let want = if to > last {
                    Err("unavailable".to_owned())
                } else {
                    model.commit = model.commit.max(to);
                    Ok(String::new())
                };
                (log.commit_to(to).map(|()| String::new()).map_err(kind), want)
            }
            Op::AppliedTo { back } => {
                let to = (model.commit + 1).saturating_sub(back);
                let want = if to > model.commit {
                    Err("not committed".to_owned())
                } else {
                    model.applied = model.applied.max(to);
                    Ok(String::new())
                };
                (log.applied_to(to).map(|()| String::new()).map_err(kind), want)
            }
            Op::Compact { back } => {
                let to = (model.applied + 1).saturating_sub(back);
                let want = if to > model.applied {
                    Err("not applied".to_owned())
                } else {
                    if to >= model.first {
                        model.prev_term = model.term(to).unwrap();
                        model.terms = model.terms.split_off(&(to + 1));
                        model.first = to + 1;
                    }
                    Ok(String::new())
                };
                (log.compact(to).map(|()| String::new()).map_err(kind), want)
            }
            Op::Restore { ahead, term_bump } => {
                let index = (model.commit + ahead).max(last);
                let term = last_term + term_bump;
                model.terms.clear();
                (model.first, model.prev_term, model.commit, model.applied) =
                    (index + 1, term, index, index);
                (log.restore(index, term).map(|()| String::new()).map_err(kind), Ok(String::new()))
            }
        };
        prop_assert_eq!(&got, &want, "{:?}", op);
        prop_assert_eq!(
            (log.first_index(), log.last_index()),
            (model.first, model.last()),
            "{:?}",
            op
        );
        prop_assert_eq!(
            (log.commit_index(), log.applied_index()),
            (model.commit, model.applied),
            "{:?}",
            op
        );
        let all = log.entries(model.first, model.last() + 1, u64::MAX).unwrap();
        let terms: Vec<(u64, u64)> = all.iter().map(|e| (e.index, e.term)).collect();
        prop_assert_eq!(terms, model.terms.iter().map(|(i, t)| (*i, *t)).collect::<Vec<_>>());
        prop_assert_eq!(log.last_term(), model.term(model.last()).unwrap());
    }
    Ok(())
}

fn kind(error: Error) -> String {
    match error {
        Error::Committed { .. } => "committed",
        Error::NotContiguous { .. } => "gap",
        Error::TermRegression { .. } => "term regression",
        Error::Unavailable { .. } => "unavailable",
        Error::NotCommitted { .. } => "not committed",
        Error::NotApplied { .. } => "not applied",
        Error::Compacted { .. } => "compacted",
        other => panic!("unexpected error {other}"),
    }
    .to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn raft_log_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}

/// Crash states of a follower-like workload: acknowledged entries (synced) survive, the
/// commit index comes back at least as high as the one persisted and never higher than any
/// commit index actually reached.
#[test]
fn acknowledged_entries_and_commit_index_survive_crashes() {
    let mut states = 0;
    for workload in 0..60u64 {
        let probe = SimFs::new();
        follower_workload(&probe, workload, None);
        for halt_after in 0..=probe.mutating_ops() {
            let fs = SimFs::new();
            let acked = follower_workload(&fs, workload, Some(halt_after));
            fs.crash(workload * 1_000_003 + halt_after);
            let case = format!("workload {workload}, crash after {halt_after} ops");
            let store = LogStore::open_with(fs, common::DIR, Options::default())
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let log = RaftLog::new(store).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert!(
                log.commit_index() >= acked.commit,
                "{case}: commit {} below acknowledged {}",
                log.commit_index(),
                acked.commit
            );
            assert!(
                log.commit_index() <= acked.commit_reached,
                "{case}: commit {} beyond any reached",
                log.commit_index()
            );
            let got = log
                .entries(1, acked.entries.len() as u64 + 1, u64::MAX)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(got, acked.entries, "{case}: acknowledged committed entries");
            states += 1;
        }
    }
    eprintln!("RaftLog crash states: {states}, violations: 0");
}

struct Acked {
    /// Committed entries made durable with their commit index.
    entries: Vec<Entry>,
    commit: u64,
    commit_reached: u64,
}

fn follower_workload(fs: &SimFs, seed: u64, halt_after: Option<u64>) -> Acked {
    let store = LogStore::open_with(fs.clone(), common::DIR, Options::default()).unwrap();
    let log = RaftLog::new(store).unwrap();
    if let Some(ops) = halt_after {
        fs.halt_after(ops);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Acked { entries: Vec::new(), commit: 0, commit_reached: 0 };
    let mut term = 1;
    for _ in 0..30 {
        let step = match rng.gen_range(0..4) {
            0 => {
                // A new leader overwrites part of the uncommitted tail.
                term += 1;
                let prev = rng.gen_range(log.commit_index()..=log.last_index());
                let batch: Vec<Entry> =
                    (prev + 1..prev + 1 + rng.gen_range(1..4)).map(|i| entry(i, term)).collect();
                log.maybe_append(prev, log.term(prev).unwrap(), log.commit_index(), &batch)
                    .map(|_| ())
            }
            1 => {
                let last = log.last_index();
                let batch: Vec<Entry> =
                    (last + 1..last + 1 + rng.gen_range(1..5)).map(|i| entry(i, term)).collect();
                log.append(&batch).map(|_| ())
            }
            2 => {
                let to = rng.gen_range(log.commit_index()..=log.last_index());
                log.commit_to(to).and_then(|()| log.applied_to(to))
            }
            _ => log.sync().map(|_| {
                acked.commit = log.commit_index();
                acked.entries = log.entries(1, acked.commit + 1, u64::MAX).unwrap();
            }),
        };
        acked.commit_reached = acked.commit_reached.max(log.commit_index());
        match step {
            Ok(()) => {}
            Err(Error::Io { .. } | Error::Poisoned) if halt_after.is_some() => break,
            Err(e) => panic!("workload {seed}: {e}"),
        }
    }
    acked
}
