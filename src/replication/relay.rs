//! Relay fan-out (an optional mode, `ReplicationOptions::first_level_size`): the leader sends
//! a batch to a few followers, which forward it to the rest, so that the leader's outbound
//! bytes no longer grow with the group's size (IoTDB's relay, reference
//! `iotdb/replication-dispatch-relay.md` §1.3).
//!
//! Invariants:
//! 1. Only followers in the replicate state, with room in their window and the same next
//!    index, are grouped; everyone else is served directly (probes, snapshots, retransmits).
//! 2. A relay forwards the leader's `Append` unchanged, in the leader's name: its targets
//!    match it by `(prev_index, prev_term)` and by each entry's `(index, term)`, never by index
//!    alone, and answer the leader directly. A target the batch does not fit refuses it, and
//!    the leader probes it directly, as for any refusal.
//! 3. Relays are followers heard from within `resend_ticks`; a batch a relay lost is resent
//!    directly once it times out, like any batch.

use super::machine::StateMachine;
use super::message::{Envelope, Message, NodeId};
use super::progress::ProgressState;
use super::replica::Replica;
use crate::error::{Error, Result};
use crate::fs::FileSystem;

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// Sends one batch through relays to the largest group of followers waiting for the same
    /// next index, when that group is larger than `first_level_size`. Returns whether it did.
    pub(super) fn relay_next_batch(&mut self) -> Result<bool> {
        let first_level = self.options.first_level_size;
        let Some(leader) = self.leader.as_ref().filter(|_| first_level > 0) else {
            return Ok(false);
        };
        let (last_index, now, window) =
            (self.log.last_index(), self.now, self.options.in_flight_batches_max);
        let mut waiting: Vec<(u64, u64, NodeId)> = leader
            .peers
            .iter()
            .filter(|(_, p)| {
                p.state == ProgressState::Replicate
                    && p.in_flight() < window
                    && p.next_index <= last_index
            })
            .map(|(id, p)| (p.next_index, p.last_heard_tick, *id))
            .collect();
        // The largest group sharing a next index; within it, the most recently heard first.
        waiting.sort_by_key(|(next, heard, id)| (*next, std::cmp::Reverse(*heard), *id));
        let Some(next_index) = mode(waiting.iter().map(|(next, ..)| *next)) else {
            return Ok(false);
        };
        let group: Vec<(u64, NodeId)> = waiting
            .iter()
            .filter(|(next, ..)| *next == next_index)
            .map(|(_, heard, id)| (*heard, *id))
            .collect();
        let alive = |heard: u64| now.saturating_sub(heard) < self.options.resend_ticks;
        let relays: Vec<NodeId> = group
            .iter()
            .filter(|(heard, _)| alive(*heard))
            .map(|(_, id)| *id)
            .take(first_level)
            .collect();
        if relays.is_empty() || group.len() <= relays.len() {
            return Ok(false);
        }
        let targets: Vec<NodeId> =
            group.iter().map(|(_, id)| *id).filter(|id| !relays.contains(id)).collect();
        let batch = match self.batch_from(next_index) {
            Err(Error::Damaged { .. }) => return Ok(false),
            batch => batch?,
        };
        let Some((append, bytes)) = batch else { return Ok(false) };
        let last = append.last_index();
        let leader = self.leader.as_mut().expect("checked above");
        for (k, relay) in relays.iter().enumerate() {
            let mine: Vec<NodeId> = targets.iter().skip(k).step_by(relays.len()).copied().collect();
            for target in &mine {
                leader.peers.get_mut(target).expect("a follower").sent(last, now, 0);
            }
            leader.peers.get_mut(relay).expect("a follower").sent(last, now, bytes);
            let message = Message::Relay { targets: mine, append: append.clone() };
            self.outbox.push(Envelope { from: self.id, to: *relay, message });
        }
        Ok(true)
    }
}

/// The most frequent value of a sorted sequence (the first of equals).
fn mode(sorted: impl Iterator<Item = u64>) -> Option<u64> {
    let mut best: Option<(u64, usize)> = None;
    let mut current: Option<(u64, usize)> = None;
    for value in sorted {
        current = match current {
            Some((v, n)) if v == value => Some((v, n + 1)),
            _ => Some((value, 1)),
        };
        if best.is_none_or(|(_, n)| current.is_some_and(|(_, c)| c > n)) {
            best = current;
        }
    }
    best.map(|(value, _)| value)
}
