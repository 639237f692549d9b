//! A follower's appenders: what it does with an `Append` whose entries do not start right
//! after its log (IoTDB's `BlockingLogAppender` and `SlidingWindowLogAppender`).
//!
//! - `Blocking`: a request after a gap is parked until the log reaches its `prev_index`, or
//!   until `timeout_ticks` pass (then `Mismatch`). Strictly in order; parks at most `capacity`
//!   requests.
//! - `SlidingWindow`: entries after a gap are buffered by index with the term of the entry
//!   before each (`Buffered`), at most `capacity` of them and no further than `capacity`
//!   indexes past the log; a request that contiguously extends what matches flushes the
//!   buffered run behind it with one `maybe_append`.
//!
//! The seed's bugs, fixed: a duplicate (an entry at or below the log's end) never disturbs the
//! window; after a truncation the window is re-based by index (entries it holds are kept and
//! checked against the new log when they flush, through the first one's previous term);
//! `reset` clears the window without losing any term; and an out-of-window request is answered
//! at once (the leader backs off), never retried in nested loops.
//!
//! Invariants:
//! 1. Every buffered entry's index is above the log's match point with the leader when it was
//!    buffered; entries of a run are contiguous and their terms chain (the neighbour checks).
//! 2. A flush appends only through `maybe_append`, which checks the run's previous term
//!    against the log: nothing buffered enters the log unverified.
//! 3. `window.len() <= capacity` and `parked.len() <= capacity`.

use std::collections::BTreeMap;

use super::message::{Append, AppendStatus};
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::RaftLog;

/// Which appender a follower runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppenderKind {
    /// Waits for the gap to close (parks the request).
    Blocking,
    /// Buffers out-of-order entries in a bounded window.
    SlidingWindow,
}

/// One answer of the appender: to the request just given, or to a parked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// What happened.
    pub status: AppendStatus,
    /// With `Accepted`: the log equals the leader's through this index. With `Mismatch`: the
    /// `prev_index` of the request refused.
    pub match_index: u64,
    /// With `Mismatch`: the `prev_term` of the request refused. Otherwise 0.
    pub prev_term: u64,
}

impl Outcome {
    fn status(status: AppendStatus) -> Self {
        Outcome { status, match_index: 0, prev_term: 0 }
    }
}

/// The appender's state; see the module docs.
#[derive(Debug)]
pub struct Appender {
    kind: AppenderKind,
    capacity: usize,
    timeout_ticks: u64,
    /// Sliding window: index -> (entry, term of the entry before it).
    window: BTreeMap<u64, (Entry, u64)>,
    /// Blocking: requests waiting for their `prev_index`, with the tick they give up at.
    parked: Vec<(Append, u64)>,
    /// Highest leader commit index seen this term (flushes commit with it).
    leader_commit: u64,
}

impl Appender {
    /// An empty appender.
    pub fn new(kind: AppenderKind, capacity: usize, timeout_ticks: u64) -> Self {
        Appender {
            kind,
            capacity,
            timeout_ticks,
            window: BTreeMap::new(),
            parked: Vec::new(),
            leader_commit: 0,
        }
    }

    /// Forgets everything buffered or parked (a new leader, a snapshot install).
    pub fn reset(&mut self) {
        self.window.clear();
        self.parked.clear();
        self.leader_commit = 0;
    }

    /// Entries buffered or requests parked.
    pub fn held(&self) -> usize {
        self.window.len() + self.parked.len()
    }

    /// Handles one request; returns its answer, and answers to parked ones it released.
    pub fn append<F: FileSystem>(
        &mut self,
        log: &RaftLog<F>,
        request: Append,
        now: u64,
    ) -> Result<Vec<Outcome>> {
        self.leader_commit = self.leader_commit.max(request.leader_commit);
        let request = match trim_compacted(log, request) {
            Ok(request) => request,
            Err(all_compacted) => return Ok(vec![all_compacted]),
        };
        let last_index = log.last_index();
        if request.prev_index <= last_index {
            let outcome = self.apply(log, &request)?;
            let mut outcomes = vec![outcome];
            if outcome.status == AppendStatus::Accepted {
                match self.kind {
                    AppenderKind::SlidingWindow => {
                        if let Some(flushed) = self.flush(log, outcome.match_index)? {
                            outcomes[0] = flushed;
                        }
                    }
                    AppenderKind::Blocking => outcomes.extend(self.release(log)?),
                }
            }
            return Ok(outcomes);
        }
        if request.entries.is_empty() {
            // A probe past the log's end: the leader must step back to it.
            return Ok(vec![mismatch(&request)]);
        }
        let past_log = request.last_index() - last_index;
        match self.kind {
            AppenderKind::Blocking => {
                if self.parked.len() >= self.capacity {
                    return Ok(vec![Outcome::status(AppendStatus::OutOfWindow)]);
                }
                self.parked.push((request, now + self.timeout_ticks));
                Ok(Vec::new())
            }
            AppenderKind::SlidingWindow => {
                let entries = request.entries.len();
                if past_log > self.capacity as u64 || self.window.len() + entries > self.capacity {
                    return Ok(vec![Outcome::status(AppendStatus::OutOfWindow)]);
                }
                let mut prev_term = request.prev_term;
                for entry in request.entries {
                    let term = entry.term;
                    self.buffer(entry, prev_term);
                    prev_term = term;
                }
                Ok(vec![Outcome::status(AppendStatus::Buffered)])
            }
        }
    }

    /// Gives up on parked requests whose time ran out.
    pub fn tick(&mut self, now: u64) -> Vec<Outcome> {
        let (expired, parked) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, deadline)| *deadline <= now);
        self.parked = parked;
        expired.iter().map(|(request, _)| mismatch(request)).collect()
    }

    /// `maybe_append` of a request that starts within the log.
    fn apply<F: FileSystem>(&self, log: &RaftLog<F>, request: &Append) -> Result<Outcome> {
        let appended = log.maybe_append(
            request.prev_index,
            request.prev_term,
            self.leader_commit,
            &request.entries,
        );
        Ok(match appended {
            Ok(Some(match_index)) => {
                Outcome { status: AppendStatus::Accepted, match_index, prev_term: 0 }
            }
            Ok(None) => mismatch(request),
            // Too much committed and not applied: the leader backs off and resends.
            Err(Error::Busy { .. }) => Outcome::status(AppendStatus::OutOfWindow),
            Err(e) => return Err(e),
        })
    }

    /// Buffers `entry` (whose predecessor has `prev_term`), dropping neighbours it
    /// contradicts: the newest arrival wins.
    fn buffer(&mut self, entry: Entry, prev_term: u64) {
        let index = entry.index;
        let term = entry.term;
        if self.window.get(&(index - 1)).is_some_and(|(before, _)| before.term != prev_term) {
            self.window.remove(&(index - 1));
        }
        if self.window.get(&(index + 1)).is_some_and(|(_, after_prev)| *after_prev != term) {
            let mut next = index + 1;
            while self.window.remove(&next).is_some() {
                next += 1;
            }
        }
        self.window.insert(index, (entry, prev_term));
    }

    /// Appends the buffered run right after `match_index`, repeatedly; drops what the log
    /// has passed. Returns the new answer when something was flushed.
    fn flush<F: FileSystem>(
        &mut self,
        log: &RaftLog<F>,
        mut match_index: u64,
    ) -> Result<Option<Outcome>> {
        let mut flushed = None;
        while let Some((_, prev_term)) = self.window.get(&(match_index + 1)) {
            let prev_term = *prev_term;
            let mut run = Vec::new();
            let mut next = match_index + 1;
            while let Some((entry, _)) = self.window.get(&next) {
                run.push(entry.clone());
                next += 1;
            }
            let request = Append {
                term: 0,
                prev_index: match_index,
                prev_term,
                leader_commit: self.leader_commit,
                entries: run,
            };
            let outcome = self.apply(log, &request)?;
            if outcome.status != AppendStatus::Accepted {
                // The run does not follow the log: it came from a deposed leader.
                for index in match_index + 1..next {
                    self.window.remove(&index);
                }
                break;
            }
            match_index = outcome.match_index;
            flushed = Some(outcome);
        }
        self.window = self.window.split_off(&(match_index + 1));
        Ok(flushed)
    }

    /// Applies parked requests that now start within the log, in order.
    fn release<F: FileSystem>(&mut self, log: &RaftLog<F>) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        while let Some(at) = self.parked.iter().position(|(r, _)| r.prev_index <= log.last_index())
        {
            let (request, _) = self.parked.swap_remove(at);
            outcomes.push(self.apply(log, &request)?);
        }
        Ok(outcomes)
    }
}

fn mismatch(request: &Append) -> Outcome {
    Outcome {
        status: AppendStatus::Mismatch,
        match_index: request.prev_index,
        prev_term: request.prev_term,
    }
}

/// The request without the entries this log compacted (they are committed, so equal to the
/// leader's): it then starts at the log's first index at the latest. When it carries nothing
/// past the compacted prefix, the answer: `Accepted` through its last index.
fn trim_compacted<F: FileSystem>(log: &RaftLog<F>, mut request: Append) -> Result<Append, Outcome> {
    let base = log.first_index() - 1;
    if request.prev_index >= base {
        return Ok(request);
    }
    let skip = usize::try_from(base - request.prev_index).unwrap_or(usize::MAX);
    if skip > request.entries.len() {
        let match_index = request.last_index();
        return Err(Outcome { status: AppendStatus::Accepted, match_index, prev_term: 0 });
    }
    request.prev_term = request.entries[skip - 1].term;
    request.prev_index = base;
    request.entries.drain(..skip);
    Ok(request)
}
