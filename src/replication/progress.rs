//! A leader's view of one follower, and the quorum rule.
//!
//! States (etcd raft's `Progress`, with IoTDB's pipelining window):
//! - `Probe`: the match point is unknown. At most one `Append` is outstanding; a `Mismatch`
//!   moves `next_index` back (jumping by the follower's hints), an `Accepted` moves to
//!   `Replicate`.
//! - `Replicate`: batches are pipelined, at most `window` in flight; acks are cumulative.
//! - `Snapshot`: `next_index` is compacted on the leader; the follower pulls the snapshot at
//!   `index`, then goes back to `Probe` after it.
//!
//! Invariants:
//! 1. `match_index < next_index`; `match_index` never goes back within a term.
//! 2. `in_flight` holds the last index of each batch sent and not yet acknowledged, ascending,
//!    all below `next_index`, at most `window` of them.
//! 3. An ack of `m` releases every batch ending at or below `m` (acks are cumulative).

use std::collections::VecDeque;

/// Where a follower stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the match point; one message at a time.
    Probe,
    /// Streaming, pipelined.
    Replicate,
    /// Pulling the snapshot at this index.
    Snapshot {
        /// The snapshot's index.
        index: u64,
    },
}

/// A leader's record of one follower.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to be in the follower's log, durably (inclusive).
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// See the module docs.
    pub state: ProgressState,
    /// Last index of each batch in flight, with the tick it was sent at (invariant 2).
    in_flight: VecDeque<(u64, u64)>,
    /// Tick of the last probe or snapshot offer (to resend when it went unanswered).
    pub last_sent_tick: Option<u64>,
    /// Tick of the last message heard from the follower.
    pub last_heard_tick: u64,
    /// `Append` messages sent with entries.
    pub batches_sent: u64,
    /// Entry payload bytes sent.
    pub bytes_sent: u64,
    /// Snapshots offered and completed.
    pub snapshots_sent: u64,
}

impl Progress {
    /// A follower of a new leader whose last index is `last_index`: probed from the end.
    pub fn new(last_index: u64, now: u64) -> Self {
        Progress {
            match_index: 0,
            next_index: last_index + 1,
            state: ProgressState::Probe,
            in_flight: VecDeque::new(),
            last_sent_tick: None,
            last_heard_tick: now,
            batches_sent: 0,
            bytes_sent: 0,
            snapshots_sent: 0,
        }
    }

    /// Batches in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The tick the oldest batch in flight was sent at.
    pub fn oldest_in_flight_tick(&self) -> Option<u64> {
        self.in_flight.front().map(|(_, tick)| *tick)
    }

    /// Records a batch through `last` sent at `now` (a probe when probing).
    pub fn sent(&mut self, last: u64, now: u64, payload_bytes: u64) {
        debug_assert!(
            last >= self.next_index,
            "batch through {last} below next {}",
            self.next_index
        );
        if self.state == ProgressState::Replicate {
            self.in_flight.push_back((last, now));
            self.next_index = last + 1;
        } else {
            // A probe does not move `next_index`: its answer decides where to go.
            self.last_sent_tick = Some(now);
        }
        self.batches_sent += 1;
        self.bytes_sent += payload_bytes;
    }

    /// The follower holds the leader's log through `index`. Returns whether that is news.
    pub fn accepted(&mut self, index: u64) -> bool {
        while self.in_flight.front().is_some_and(|(last, _)| *last <= index) {
            self.in_flight.pop_front();
        }
        if matches!(self.state, ProgressState::Probe | ProgressState::Snapshot { .. }) {
            self.state = ProgressState::Replicate;
            self.in_flight.clear();
            self.last_sent_tick = None;
            self.next_index = self.next_index.max(index + 1);
        }
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index + 1);
        true
    }

    /// The follower refused the batch after `prev_index`; its hint says to probe from `next`
    /// (never at or below `match_index`, never forward). Back to probing.
    pub fn mismatched(&mut self, prev_index: u64, next: u64) {
        if self.state == ProgressState::Probe && prev_index + 1 != self.next_index {
            // A stale answer to an older probe: the next one is already on its way.
            return;
        }
        self.next_index = next.min(prev_index.max(self.match_index + 1)).max(self.match_index + 1);
        self.probe();
    }

    /// An answer that did not settle a probe (the follower buffered or parked it because its
    /// log ends at `last_index`, before the probe): probe again from there.
    pub fn unsettled(&mut self, last_index: u64) {
        if self.state == ProgressState::Probe {
            self.next_index = (last_index + 1).clamp(self.match_index + 1, self.next_index);
            self.last_sent_tick = None;
        }
    }

    /// Back to probing from `next_index` (after a loss, or a refusal).
    pub fn probe(&mut self) {
        self.state = ProgressState::Probe;
        self.in_flight.clear();
        self.last_sent_tick = None;
        self.next_index = self.next_index.max(self.match_index + 1);
    }

    /// Restarts a lost pipeline: everything after `match_index` is sent again.
    pub fn retransmit(&mut self) {
        self.next_index = self.match_index + 1;
        self.probe();
    }

    /// The follower must take the snapshot at `index` first.
    pub fn need_snapshot(&mut self, index: u64, now: u64) {
        self.state = ProgressState::Snapshot { index };
        self.in_flight.clear();
        self.last_sent_tick = Some(now);
    }

    /// The state as a small number (`PeerStatus::state`).
    pub fn state_code(&self) -> u8 {
        match self.state {
            ProgressState::Probe => 0,
            ProgressState::Replicate => 1,
            ProgressState::Snapshot { .. } => 2,
        }
    }
}

/// The highest index held by a majority of `voters` match indexes (the leader's own durable
/// index included): the `⌊n/2⌋ + 1`-th largest. `0` for no voters.
pub fn quorum_index(match_indexes: &mut [u64]) -> u64 {
    if match_indexes.is_empty() {
        return 0;
    }
    match_indexes.sort_unstable_by(|a, b| b.cmp(a));
    match_indexes[match_indexes.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_the_majority_th_largest() {
        let cases: [(&[u64], u64); 6] = [
            (&[], 0),
            (&[7], 7),
            (&[5, 9], 5),
            (&[1, 9, 5], 5),
            (&[3, 3, 8, 8], 3),
            (&[10, 2, 7, 7, 1], 7),
        ];
        for (indexes, want) in cases {
            let mut indexes = indexes.to_vec();
            assert_eq!(quorum_index(&mut indexes), want, "case {indexes:?}");
        }
    }

    #[test]
    fn transitions_probe_replicate_snapshot() {
        let mut p = Progress::new(10, 0);
        assert_eq!((p.state, p.next_index), (ProgressState::Probe, 11));

        // An empty probe after 10 is refused; the follower's hint says 5.
        p.last_sent_tick = Some(1);
        p.mismatched(10, 5);
        assert_eq!((p.state, p.next_index, p.match_index), (ProgressState::Probe, 5, 0));

        // A stale refusal of an older probe changes nothing.
        p.mismatched(8, 3);
        assert_eq!(p.next_index, 5);

        // The probe after 4 carrying 5..=10 is accepted: replicate, pipelined.
        p.sent(10, 2, 60);
        assert_eq!(p.next_index, 5);
        assert!(p.accepted(10));
        assert_eq!((p.state, p.match_index, p.next_index), (ProgressState::Replicate, 10, 11));
        p.sent(12, 3, 20);
        p.sent(15, 3, 30);
        assert_eq!(p.in_flight(), 2);

        // A cumulative ack of 13 releases the first batch only.
        assert!(p.accepted(13));
        assert_eq!((p.in_flight(), p.match_index, p.next_index), (1, 13, 16));
        // An older ack is no news and moves nothing back.
        assert!(!p.accepted(11));
        assert_eq!(p.match_index, 13);

        // A refusal in replicate goes back to probing after the match point.
        p.mismatched(15, 14);
        assert_eq!((p.state, p.next_index, p.in_flight()), (ProgressState::Probe, 14, 0));

        // The snapshot state ends with the follower's ack of the snapshot's index.
        p.need_snapshot(40, 5);
        assert_eq!(p.state, ProgressState::Snapshot { index: 40 });
        assert!(p.accepted(40));
        assert_eq!((p.state, p.match_index, p.next_index), (ProgressState::Replicate, 40, 41));
        assert_eq!((p.batches_sent, p.bytes_sent), (3, 110));
    }

    #[test]
    fn retransmit_restarts_after_the_match_point() {
        let mut p = Progress::new(0, 0);
        assert!(!p.accepted(0));
        assert_eq!(p.state, ProgressState::Replicate);
        p.sent(5, 1, 0);
        p.sent(9, 1, 0);
        p.retransmit();
        assert_eq!((p.state, p.next_index, p.in_flight()), (ProgressState::Probe, 1, 0));
    }
}
