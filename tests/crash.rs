//! Crash simulation: random workloads of append, sync, truncate_suffix, compact_to, reset and
//! set_hard_state run on `SimFs`; the disk halts after a chosen number of mutating operations
//! (every crash point of the workload is visited), loses power under several seeds, and the
//! reopened store is checked against a reference model:
//! - everything acknowledged is present and unchanged;
//! - nothing appears that was never written (or that a durable truncation removed);
//! - the hard state and the log's first index never go back;
//! - the recovered store accepts writes.

mod common;

use common::crash_model::{apply, check, check_excusing, Model, Op};
use raftlog::fs::SimFs;
use raftlog::{Entry, Error, LogStore, Options};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIR: &str = "/store";
/// Crash states to explore per run (each is a workload prefix, a crash point and a seed), unless
/// `RAFTLOG_CRASH_STATES` says otherwise (`.ci/run` asks for more).
const CRASH_STATES_DEFAULT: usize = 40_000;
const OPS_PER_WORKLOAD: usize = 36;
const SEEDS_PER_POINT: u64 = 2;

/// Odd workloads preallocate their segments, even ones grow them; every third keeps a segment
/// pool of two files (prefilled at open, recycled by compaction, truncation and reset).
fn options(workload: u64) -> Options {
    Options::default()
        .segment_bytes_max(2048)
        .preallocate(workload % 2 == 1)
        .segment_pool(if workload % 3 == 0 { 2 } else { 0 })
}

/// Runs workload `seed` with the disk halting after `halt_after` mutating operations.
/// Returns the model and the operation that failed at the halt, if any.
/// The first open, which creates the directory, is part of the workload: a crash can cut it.
fn run_workload(fs: &SimFs, seed: u64, halt_after: Option<u64>) -> (Model, Option<Op>) {
    if let Some(ops) = halt_after {
        fs.halt_after(ops);
    }
    let store = match LogStore::open_with(fs.clone(), DIR, options(seed)) {
        Ok(store) => store,
        Err(Error::Io { .. }) if halt_after.is_some() => return (Model::new(), None),
        Err(e) => panic!("workload {seed}: fresh open failed: {e}"),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    for _ in 0..OPS_PER_WORKLOAD {
        let op = model.generate(&mut |n| rng.gen_range(0..n));
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
    let states_min = std::env::var("RAFTLOG_CRASH_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CRASH_STATES_DEFAULT);
    let mut states = 0usize;
    let mut torn_tails = 0usize;
    let mut workload = 0u64;
    while states < states_min {
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

#[test]
fn a_crash_replays_byte_for_byte_from_its_seed() {
    for workload in [3u64, 8] {
        let probe = SimFs::new();
        run_workload(&probe, workload, None);
        let total_ops = probe.mutating_ops();
        for halt_after in (0..=total_ops).step_by(7) {
            let seed = workload << 32 | halt_after << 8;
            let surviving = || {
                let fs = SimFs::new();
                run_workload(&fs, workload, Some(halt_after));
                fs.crash(seed);
                fs.files()
            };
            let first = surviving();
            assert!(halt_after < 4 || !first.is_empty(), "seed {seed}: nothing survived");
            assert!(first == surviving(), "seed {seed}: two runs left different disks");
        }
    }
}

/// A crash at every point of a workload (a power loss or a killed process), then one flipped
/// bit in the last segment (bit rot of synced or unsynced data). The reopened store either
/// refuses with `Corrupt` naming that segment (at open, or on the read that meets a sealed
/// segment's damage), or keeps every acknowledged entry; after a power loss, except in a tail
/// the report marks as of unknown durability.
#[test]
fn synced_entries_survive_a_crash_plus_bit_rot() {
    let states_min = std::env::var("RAFTLOG_ROT_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000usize);
    let (mut states, mut refused, mut unknown) = (0usize, 0usize, 0usize);
    let mut workload = 1000u64;
    while states < states_min {
        workload += 1;
        let probe = SimFs::new();
        run_workload(&probe, workload, None);
        for halt_after in 0..=probe.mutating_ops() {
            let seed = workload << 32 | halt_after << 8 | 1;
            let case = format!("workload {workload}, crash after {halt_after} ops, seed {seed}");
            let fs = SimFs::new();
            let (model, inflight) = run_workload(&fs, workload, Some(halt_after));
            // Odd seeds lose power; even ones only kill the process, which keeps every mark
            // (in the page cache): then no acknowledged entry may be cut at all.
            let power_loss = halt_after % 2 == 1;
            if power_loss {
                fs.crash(seed);
            } else {
                fs.kill_process();
            }
            if raftlog::fs::FileSystem::list(&fs, std::path::Path::new(DIR)).is_err() {
                continue; // the crash lost the directory's creation
            }
            let Some(segment) = common::segment_names(&fs).last().map(|n| common::path(n)) else {
                continue;
            };
            let len = fs.read_file(&segment).unwrap().len() as u64;
            if len <= 64 {
                continue;
            }
            let mut rng = StdRng::seed_from_u64(seed);
            fs.flip_bit(&segment, rng.gen_range(64 * 8..len * 8)).unwrap();
            states += 1;
            match LogStore::open_with(fs.clone(), DIR, options(workload)) {
                Err(Error::Corrupt { path, .. }) if path == segment => refused += 1,
                Err(e) => panic!("{case}: open failed: {e}"),
                Ok(store) => {
                    // A sealed segment is opened through its index, unread: the read that
                    // meets the damage marks it and stops before it (`LogStore::damaged`).
                    let all = store.entries(store.first_index(), store.last_index() + 1, u64::MAX);
                    let marked = !store.damaged().is_empty();
                    if marked
                        || matches!(&all, Err(Error::Damaged { path, .. }) if *path == segment)
                    {
                        refused += 1;
                        continue;
                    }
                    let unknown_cut = store.recovery_report().unknown_durability();
                    unknown += usize::from(unknown_cut.is_some());
                    let excused = unknown_cut.filter(|_| power_loss).unwrap_or(0..0);
                    if let Err(violation) =
                        check_excusing(&store, &model, inflight.as_ref(), excused)
                    {
                        panic!("{case}: {violation}\nreport {:?}", store.recovery_report());
                    }
                }
            }
        }
    }
    eprintln!(
        "rot states: {states}, refused as corrupt (at open or on read): {refused}, \
         unknown-durability cuts: {unknown}, violations: 0"
    );
    assert!(refused > 0, "no rot was ever caught: the test explores too little");
}
