//! The reference model of the crash-simulation test, shared with the `ops_then_crash` fuzz
//! target: operations on a `LogStore`, what each may leave on disk, and the check of a store
//! reopened after a crash against what was acknowledged.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use raftlog::fs::SimFs;
use raftlog::{Entry, Error, HardState, LogStore};

#[derive(Debug, Clone)]
pub enum Op {
    Append(Vec<Entry>),
    Sync,
    Truncate(u64),
    Compact(u64),
    Reset(u64, u64),
    SetHardState(HardState),
}

/// The log as the store should present it.
#[derive(Debug, Clone, Default)]
pub struct View {
    entries: BTreeMap<u64, Entry>,
    first_index: u64,
    prev_term: u64,
    hard_state: HardState,
}

impl View {
    fn last_index(&self) -> u64 {
        self.entries.keys().next_back().copied().unwrap_or(self.first_index - 1)
    }

    fn last_term(&self) -> u64 {
        self.entries.values().next_back().map_or(self.prev_term, |e| e.term)
    }

    fn term(&self, index: u64) -> u64 {
        if index + 1 == self.first_index {
            self.prev_term
        } else {
            self.entries[&index].term
        }
    }
}

#[derive(Debug, Clone)]
pub struct Model {
    current: View,
    /// `current` restricted to what the store acknowledged as durable.
    acked: View,
    /// Every value that may legitimately be found at an index after a crash.
    possible: HashMap<u64, Vec<Entry>>,
}

impl Model {
    pub fn new() -> Self {
        let view = View { first_index: 1, ..View::default() };
        Model { current: view.clone(), acked: view, possible: HashMap::new() }
    }

    /// The next operation; `pick(n)` returns a number below `n` (a seeded generator in the
    /// test, the fuzzer's bytes in the fuzz target).
    pub fn generate(&self, pick: &mut dyn FnMut(u64) -> u64) -> Op {
        let v = &self.current;
        let (first, last, commit) = (v.first_index, v.last_index(), v.hard_state.commit);
        let mut range = |lo: u64, hi: u64| lo + pick(hi - lo + 1);
        match range(0, 99) {
            0..=44 => {
                let count = range(1, 4);
                let mut term = v.last_term() + u64::from(range(0, 5) == 0);
                let entries = (1..=count)
                    .map(|k| {
                        term += u64::from(range(0, 19) == 0);
                        let len = range(0, 699);
                        let payload: Vec<u8> = (0..len).map(|_| range(0, 255) as u8).collect();
                        Entry::new(last + k, term, payload).with_kind(range(0, 2) as u8)
                    })
                    .collect();
                Op::Append(entries)
            }
            45..=59 => Op::Sync,
            60..=69 if last > commit.max(first - 1) => {
                Op::Truncate(range(commit.max(first - 1) + 1, last))
            }
            70..=77 if last >= first => Op::Compact(range(first - 1, last)),
            78..=81 => {
                let index = last.max(commit) + range(0, 3);
                Op::Reset(index, v.last_term() + range(0, 1))
            }
            _ => {
                let hs = v.hard_state;
                let term = hs.term + u64::from(range(0, 2) == 0);
                let vote = if term > hs.term || hs.vote == 0 { range(0, 3) } else { hs.vote };
                let commit = range(hs.commit, last.max(hs.commit));
                Op::SetHardState(HardState::new(term, vote, commit))
            }
        }
    }

    /// Records what an operation may leave on disk before it runs.
    pub fn before(&mut self, op: &Op) {
        if let Op::Append(entries) = op {
            for entry in entries {
                self.possible.entry(entry.index).or_default().push(entry.clone());
            }
        }
    }

    /// Applies an operation that returned `Ok`; `durable_index` is the store's claim.
    pub fn after_ok(&mut self, op: &Op, durable_index: u64) {
        let v = &mut self.current;
        match op {
            Op::Append(entries) => {
                for entry in entries {
                    v.entries.insert(entry.index, entry.clone());
                }
            }
            Op::Sync => {}
            Op::Truncate(from) => {
                v.entries.split_off(from);
                self.possible.retain(|index, _| index < from);
            }
            Op::Compact(index) => {
                if *index >= v.first_index {
                    v.prev_term = v.term(*index);
                    v.entries = v.entries.split_off(&(index + 1));
                    v.first_index = index + 1;
                }
            }
            Op::Reset(index, term) => {
                v.entries.clear();
                v.first_index = index + 1;
                v.prev_term = *term;
                self.possible.clear();
            }
            Op::SetHardState(hs) => v.hard_state = *hs,
        }
        self.acked = self.current.clone();
        self.acked.entries.retain(|index, _| *index <= durable_index);
    }
}

pub fn apply(store: &LogStore<SimFs>, op: &Op) -> Result<(), Error> {
    match op {
        Op::Append(entries) => store.append(entries),
        Op::Sync => store.sync().map(|_| ()),
        Op::Truncate(from) => store.truncate_suffix(*from),
        Op::Compact(index) => store.compact_to(*index),
        Op::Reset(index, term) => store.reset(*index, *term),
        Op::SetHardState(hs) => store.set_hard_state(*hs),
    }
}

pub fn check(store: &LogStore<SimFs>, model: &Model, inflight: Option<&Op>) -> Result<(), String> {
    check_excusing(store, model, inflight, 0..0)
}

/// `check`, where acknowledged entries from `excused.start` on (and the last hard state) may
/// be missing: a tail the recovery report cut as of unknown durability (bit rot plus a lost
/// sync mark).
pub fn check_excusing(
    store: &LogStore<SimFs>,
    model: &Model,
    inflight: Option<&Op>,
    excused: std::ops::Range<u64>,
) -> Result<(), String> {
    let acked = &model.acked;
    let (first, last) = (store.first_index(), store.last_index());
    let hs = store.hard_state();
    // A tail cut as of unknown durability may have held the last hard-state record too.
    let hs_ok = hs == acked.hard_state
        || matches!(inflight, Some(Op::SetHardState(h)) if *h == hs)
        || !excused.is_empty();
    if !hs_ok {
        return Err(format!("hard state {hs:?}, acknowledged {:?}", acked.hard_state));
    }
    let reset_happened = match inflight {
        Some(Op::Reset(index, term)) => {
            first == index + 1 && last == *index && store.term(*index).ok() == Some(*term)
        }
        _ => false,
    };
    let expected_first = match inflight {
        Some(Op::Compact(index)) if first == index + 1 => first,
        Some(Op::Reset(..)) if reset_happened => first,
        _ => acked.first_index,
    };
    if first != expected_first {
        return Err(format!("first index {first}, acknowledged {}", acked.first_index));
    }
    if !reset_happened && first == acked.first_index {
        let term = store.term(first - 1).map_err(|e| e.to_string())?;
        if term != acked.prev_term {
            return Err(format!("term({}) = {term}, acknowledged {}", first - 1, acked.prev_term));
        }
    }
    let found = store.entries(first, last + 1, u64::MAX).map_err(|e| format!("read: {e}"))?;
    if found.len() as u64 != last + 1 - first {
        return Err(format!("read {} entries of [{first}, {last}]", found.len()));
    }
    for entry in &found {
        let legit = model.possible.get(&entry.index).is_some_and(|values| values.contains(entry));
        if !legit {
            return Err(format!("entry {} (term {}) was never written", entry.index, entry.term));
        }
    }
    let truncated_from = match inflight {
        Some(Op::Truncate(from)) => *from,
        _ => u64::MAX,
    };
    for (index, entry) in acked.entries.range(first..) {
        if reset_happened || *index >= truncated_from || excused.contains(index) {
            break;
        }
        let got = found.get((index - first) as usize);
        if got != Some(entry) {
            return Err(format!("acknowledged entry {index} lost or changed: {got:?}"));
        }
    }
    if store.durable_index() != last {
        return Err(format!("durable index {} after open, last {last}", store.durable_index()));
    }
    Ok(())
}
