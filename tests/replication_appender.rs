//! The follower's appenders, case by case: IoTDB's sliding-window cases, the seed's bugs (a
//! duplicate wiping the window, a truncation mis-basing it, `reset` losing a term, nested
//! out-of-window retries), the blocking appender's park and timeout, and compacted prefixes.

use raftlog::fs::SimFs;
use raftlog::replication::{Append, AppendStatus, Appender, AppenderKind, Outcome};
use raftlog::{Entry, LogStore, Options, RaftLog};

fn log() -> RaftLog<SimFs> {
    RaftLog::new(LogStore::open_with(SimFs::new(), "/log", Options::default()).unwrap()).unwrap()
}

/// An append after `(prev_index, prev_term)` of entries `first..=last` of `term`.
fn append(prev_index: u64, prev_term: u64, entries: &[(u64, u64)]) -> Append {
    Append {
        term: entries.last().map_or(prev_term, |e| e.1),
        prev_index,
        prev_term,
        leader_commit: 0,
        entries: entries.iter().map(|(i, t)| Entry::new(*i, *t, format!("{i}@{t}"))).collect(),
    }
}

fn run(appender: &mut Appender, log: &RaftLog<SimFs>, request: Append) -> Vec<(AppendStatus, u64)> {
    let outcomes = appender.append(log, request, 0).unwrap();
    outcomes.iter().map(|Outcome { status, match_index, .. }| (*status, *match_index)).collect()
}

fn terms(log: &RaftLog<SimFs>) -> Vec<u64> {
    (1..=log.last_index()).map(|i| log.term(i).unwrap()).collect()
}

fn window(capacity: usize) -> Appender {
    Appender::new(AppenderKind::SlidingWindow, capacity, 5)
}

use AppendStatus::{Accepted, Buffered, Mismatch, OutOfWindow};

#[test]
fn in_order_batches_are_accepted_through_their_last_index() {
    let log = log();
    let mut w = window(8);
    assert_eq!(run(&mut w, &log, append(0, 0, &[(1, 1), (2, 1)])), [(Accepted, 2)]);
    assert_eq!(run(&mut w, &log, append(2, 1, &[(3, 1)])), [(Accepted, 3)]);
    assert_eq!(terms(&log), [1, 1, 1]);
}

#[test]
fn out_of_order_batches_wait_in_the_window_and_flush_when_the_gap_closes() {
    let log = log();
    let mut w = window(8);
    assert_eq!(run(&mut w, &log, append(4, 1, &[(5, 1), (6, 1)])), [(Buffered, 0)]);
    assert_eq!(run(&mut w, &log, append(2, 1, &[(3, 1), (4, 1)])), [(Buffered, 0)]);
    assert_eq!(log.last_index(), 0, "nothing buffered enters the log before the gap closes");
    // The gap closes: one answer, cumulative through everything flushed behind it.
    assert_eq!(run(&mut w, &log, append(0, 0, &[(1, 1), (2, 1)])), [(Accepted, 6)]);
    assert_eq!(terms(&log), [1; 6]);
    assert_eq!(w.held(), 0);
}

#[test]
fn beyond_the_window_is_answered_at_once_not_retried() {
    let log = log();
    let mut w = window(4);
    assert_eq!(run(&mut w, &log, append(4, 1, &[(5, 1)])), [(OutOfWindow, 0)]);
    // Capacity counts entries too.
    assert_eq!(run(&mut w, &log, append(1, 1, &[(2, 1), (3, 1)])), [(Buffered, 0)]);
    assert_eq!(run(&mut w, &log, append(3, 1, &[(4, 1)])), [(Buffered, 0)]);
    assert_eq!(
        run(&mut w, &log, append(2, 1, &[(3, 1), (4, 1)])),
        [(OutOfWindow, 0)],
        "3 held + 2 > 4"
    );
    assert_eq!(w.held(), 3);
}

#[test]
fn a_duplicate_of_logged_entries_leaves_the_window_alone() {
    // The seed's moveWindowLeftward wiped most of the window on any entry at or below the
    // log's end, duplicates included; the wiped entries had been answered WEAK_ACCEPT.
    let log = log();
    let mut w = window(8);
    run(&mut w, &log, append(0, 0, &[(1, 1), (2, 1)]));
    assert_eq!(run(&mut w, &log, append(3, 1, &[(4, 1), (5, 1)])), [(Buffered, 0)]);
    assert_eq!(run(&mut w, &log, append(0, 0, &[(1, 1), (2, 1)])), [(Accepted, 2)]);
    assert_eq!(w.held(), 2, "the duplicate kept the buffered entries");
    assert_eq!(run(&mut w, &log, append(2, 1, &[(3, 1)])), [(Accepted, 5)]);
}

#[test]
fn a_truncation_rebases_the_window_by_index_and_stale_runs_never_enter_the_log() {
    let log = log();
    let mut w = window(8);
    run(&mut w, &log, append(0, 0, &[(1, 1), (2, 1), (3, 1)]));
    // Buffered after a gap: 5 follows a 4 of term 1.
    assert_eq!(run(&mut w, &log, append(4, 1, &[(5, 1)])), [(Buffered, 0)]);
    // A new leader (term 2) overwrites 3 and sends 4 of term 2: 5's previous term (1) does not
    // chain to it, so the neighbour check drops 5 as it flushes nothing stale.
    assert_eq!(run(&mut w, &log, append(2, 1, &[(3, 2), (4, 2)])), [(Accepted, 4)]);
    assert_eq!(terms(&log), [1, 1, 2, 2]);
    assert_eq!(w.held(), 0, "the stale run was dropped, not flushed");
}

#[test]
fn the_neighbour_checks_let_the_newest_arrival_win() {
    let log = log();
    let mut w = window(8);
    run(&mut w, &log, append(0, 0, &[(1, 1)]));
    // 3 of term 1, then 4 of term 2 whose previous term says 3 had term 2: 3 goes.
    run(&mut w, &log, append(2, 1, &[(3, 1)]));
    run(&mut w, &log, append(3, 2, &[(4, 2)]));
    assert_eq!(w.held(), 1);
    // The leader's 2 and 3 of term 2 arrive: the log ends with 4 of term 2.
    assert_eq!(run(&mut w, &log, append(1, 1, &[(2, 2), (3, 2)])), [(Accepted, 4)]);
    assert_eq!(terms(&log), [1, 2, 2, 2]);
}

#[test]
fn reset_clears_the_window_and_keeps_the_log_s_terms() {
    // The seed's reset set prevTerms[0] before replacing the arrays, losing it (0).
    let log = log();
    let mut w = window(8);
    run(&mut w, &log, append(0, 0, &[(1, 3), (2, 3)]));
    run(&mut w, &log, append(3, 3, &[(4, 3)]));
    w.reset();
    assert_eq!(w.held(), 0);
    assert_eq!(
        run(&mut w, &log, append(2, 3, &[(3, 3)])),
        [(Accepted, 3)],
        "the base term survived the reset"
    );
    assert_eq!(run(&mut w, &log, append(2, 0, &[(3, 3)])), [(Mismatch, 2)]);
}

#[test]
fn a_probe_past_the_end_is_refused_with_its_previous_index() {
    let log = log();
    for kind in [AppenderKind::SlidingWindow, AppenderKind::Blocking] {
        let mut appender = Appender::new(kind, 8, 5);
        assert_eq!(run(&mut appender, &log, append(7, 1, &[])), [(Mismatch, 7)], "{kind:?}");
    }
}

#[test]
fn the_blocking_appender_parks_until_the_gap_closes_or_time_runs_out() {
    let log = log();
    let mut b = Appender::new(AppenderKind::Blocking, 2, 5);
    assert_eq!(run(&mut b, &log, append(2, 1, &[(3, 1)])), []);
    assert_eq!(run(&mut b, &log, append(3, 1, &[(4, 1)])), []);
    assert_eq!(run(&mut b, &log, append(4, 1, &[(5, 1)])), [(OutOfWindow, 0)], "at most 2 parked");
    // The gap closes: the parked requests are applied in order and answered.
    assert_eq!(
        run(&mut b, &log, append(0, 0, &[(1, 1), (2, 1)])),
        [(Accepted, 2), (Accepted, 3), (Accepted, 4)]
    );
    // A request parked past its deadline is refused.
    assert_eq!(b.append(&log, append(5, 1, &[(6, 1)]), 10).unwrap(), []);
    let expired = b.tick(15);
    assert_eq!(
        expired.iter().map(|o| (o.status, o.match_index)).collect::<Vec<_>>(),
        [(Mismatch, 5)]
    );
    assert_eq!(b.held(), 0);
}

#[test]
fn entries_this_log_compacted_count_as_matching() {
    let log = log();
    let mut w = window(8);
    run(&mut w, &log, append(0, 0, &[(1, 1), (2, 1), (3, 1)]));
    log.commit_to(3).unwrap();
    log.applied_to(3).unwrap();
    log.compact(2).unwrap();
    // All of it compacted here: it matches through its end.
    assert_eq!(run(&mut w, &log, append(0, 0, &[(1, 1)])), [(Accepted, 1)]);
    // Straddling the compaction point: trimmed to what follows it.
    assert_eq!(run(&mut w, &log, append(1, 1, &[(2, 1), (3, 1), (4, 1)])), [(Accepted, 4)]);
    assert_eq!((log.first_index(), log.last_index()), (3, 4));
}
