//! Crash simulation: random workloads of append, sync, truncate_suffix, compact_to, reset and
//! set_hard_state run on `SimFs`; the disk halts after a chosen number of mutating operations
//! (every crash point of the workload is visited), loses power under several seeds, and the
//! reopened store is checked against a reference model:
//! - everything acknowledged is present and unchanged;
//! - nothing appears that was never written (or that a durable truncation removed);
//! - the hard state and the log's first index never go back;
//! - the recovered store accepts writes.

use std::collections::{BTreeMap, HashMap};

use raftlog::fs::SimFs;
use raftlog::{Entry, Error, HardState, LogStore, Options};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIR: &str = "/store";
/// Crash states to explore per run (each is a workload prefix, a crash point and a seed).
const CRASH_STATES_MIN: usize = 40_000;
const OPS_PER_WORKLOAD: usize = 36;
const SEEDS_PER_POINT: u64 = 2;

/// Odd workloads preallocate their segments, even ones grow them.
fn options(workload: u64) -> Options {
    Options::default().segment_bytes_max(2048).preallocate(workload % 2 == 1)
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Entry>),
    Sync,
    Truncate(u64),
    Compact(u64),
    Reset(u64, u64),
    SetHardState(HardState),
}

/// The log as the store should present it.
#[derive(Debug, Clone, Default)]
struct View {
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
struct Model {
    current: View,
    /// `current` restricted to what the store acknowledged as durable.
    acked: View,
    /// Every value that may legitimately be found at an index after a crash.
    possible: HashMap<u64, Vec<Entry>>,
}

impl Model {
    fn new() -> Self {
        let view = View { first_index: 1, ..View::default() };
        Model { current: view.clone(), acked: view, possible: HashMap::new() }
    }

    fn generate(&self, rng: &mut StdRng) -> Op {
        let v = &self.current;
        let (first, last, commit) = (v.first_index, v.last_index(), v.hard_state.commit);
        match rng.gen_range(0..100) {
            0..=44 => {
                let count = rng.gen_range(1..=4);
                let mut term = v.last_term() + u64::from(rng.gen_ratio(1, 6));
                let entries = (1..=count)
                    .map(|k| {
                        term += u64::from(rng.gen_ratio(1, 20));
                        let len = rng.gen_range(0..700);
                        let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                        Entry::new(last + k, term, payload).with_kind(rng.gen_range(0..3))
                    })
                    .collect();
                Op::Append(entries)
            }
            45..=59 => Op::Sync,
            60..=69 if last > commit.max(first - 1) => {
                Op::Truncate(rng.gen_range(commit.max(first - 1) + 1..=last))
            }
            70..=77 if last >= first => Op::Compact(rng.gen_range(first - 1..=last)),
            78..=81 => {
                let index = last.max(commit) + rng.gen_range(0..4);
                Op::Reset(index, v.last_term() + rng.gen_range(0..2))
            }
            _ => {
                let hs = v.hard_state;
                let term = hs.term + u64::from(rng.gen_ratio(1, 3));
                let vote =
                    if term > hs.term || hs.vote == 0 { rng.gen_range(0..4) } else { hs.vote };
                let commit = rng.gen_range(hs.commit..=last.max(hs.commit));
                Op::SetHardState(HardState::new(term, vote, commit))
            }
        }
    }

    /// Records what an operation may leave on disk before it runs.
    fn before(&mut self, op: &Op) {
        if let Op::Append(entries) = op {
            for entry in entries {
                self.possible.entry(entry.index).or_default().push(entry.clone());
            }
        }
    }

    /// Applies an operation that returned `Ok`; `durable_index` is the store's claim.
    fn after_ok(&mut self, op: &Op, durable_index: u64) {
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

fn apply(store: &LogStore<SimFs>, op: &Op) -> Result<(), Error> {
    match op {
        Op::Append(entries) => store.append(entries),
        Op::Sync => store.sync().map(|_| ()),
        Op::Truncate(from) => store.truncate_suffix(*from),
        Op::Compact(index) => store.compact_to(*index),
        Op::Reset(index, term) => store.reset(*index, *term),
        Op::SetHardState(hs) => store.set_hard_state(*hs),
    }
}

/// Runs workload `seed` with the disk halting after `halt_after` mutating operations.
/// Returns the model and the operation that failed at the halt, if any.
fn run_workload(fs: &SimFs, seed: u64, halt_after: Option<u64>) -> (Model, Option<Op>) {
    let store = LogStore::open_with(fs.clone(), DIR, options(seed)).expect("fresh open");
    if let Some(ops) = halt_after {
        fs.halt_after(ops);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    for _ in 0..OPS_PER_WORKLOAD {
        let op = model.generate(&mut rng);
        model.before(&op);
        match apply(&store, &op) {
            Ok(()) => model.after_ok(&op, store.durable_index()),
            Err(Error::Io { .. } | Error::Poisoned) if halt_after.is_some() => {
                return (model, Some(op));
            }
            Err(e) => panic!("workload {seed}: {op:?} refused: {e}"),
        }
    }
    (model, None)
}

fn check(store: &LogStore<SimFs>, model: &Model, inflight: Option<&Op>) -> Result<(), String> {
    let acked = &model.acked;
    let (first, last) = (store.first_index(), store.last_index());
    let hs = store.hard_state();
    let hs_ok = hs == acked.hard_state || matches!(inflight, Some(Op::SetHardState(h)) if *h == hs);
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
        if reset_happened || *index >= truncated_from {
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

/// The recovered store accepts a write that survives a clean reopen.
fn check_writable(fs: &SimFs, store: LogStore<SimFs>, options: Options) -> Result<(), String> {
    let next = Entry::new(store.last_index() + 1, store.term(store.last_index()).unwrap(), "after");
    store.append(std::slice::from_ref(&next)).map_err(|e| format!("append after recovery: {e}"))?;
    store.sync().map_err(|e| format!("sync after recovery: {e}"))?;
    drop(store);
    let store =
        LogStore::open_with(fs.clone(), DIR, options).map_err(|e| format!("reopen: {e}"))?;
    let got = store.entries(next.index, next.index + 1, 0).map_err(|e| e.to_string())?;
    if got != [next] {
        return Err("entry written after recovery lost".into());
    }
    Ok(())
}

#[test]
fn acknowledged_state_survives_every_crash_point() {
    let mut states = 0usize;
    let mut torn_tails = 0usize;
    let mut workload = 0u64;
    while states < CRASH_STATES_MIN {
        workload += 1;
        let probe = SimFs::new();
        run_workload(&probe, workload, None);
        let total_ops = probe.mutating_ops();
        for halt_after in 0..=total_ops {
            for crash_seed in 0..SEEDS_PER_POINT {
                let fs = SimFs::new();
                let (model, inflight) = run_workload(&fs, workload, Some(halt_after));
                fs.crash(workload << 32 | halt_after << 8 | crash_seed);
                let case =
                    format!("workload {workload}, crash after {halt_after} ops, seed {crash_seed}");
                let store = LogStore::open_with(fs.clone(), DIR, options(workload))
                    .unwrap_or_else(|e| panic!("{case}: open failed: {e}"));
                torn_tails += usize::from(store.recovery_report().torn_tail.is_some());
                if let Err(violation) = check(&store, &model, inflight.as_ref()) {
                    panic!(
                        "{case}: {violation}\ninflight {inflight:?}\nreport {:?}",
                        store.recovery_report()
                    );
                }
                check_writable(&fs, store, options(workload))
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                states += 1;
            }
        }
    }
    eprintln!("crash states: {states} over {workload} workloads, torn tails cut: {torn_tails}, violations: 0");
    assert!(
        torn_tails > 0,
        "the workloads never produced a torn tail: the test explores too little"
    );
}
