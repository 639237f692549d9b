//! The leader's half of `Replica`: the sequencer, per-follower progress, pipelined batches
//! read from the log (payloads shared, not copied, across followers), cumulative acks and
//! quorum commit, heartbeats, and catch-up by snapshot when a follower's next entry is
//! compacted.
//!
//! Invariants:
//! 1. Entries are appended only by the leader of `term`, with `term`, at `last_index + 1`.
//! 2. The commit index moves only to an index a quorum holds durably, whose entry is of the
//!    current term (Raft §5.4.2); the no-op appended on election makes that possible at once.
//! 4. The quorum is a majority of the voters of the configuration in effect (the last one the
//!    leader's log holds, committed or not); learners receive entries but never count. A node
//!    being removed is still sent entries until its removal commits (so that it learns it),
//!    then gets a last heartbeat carrying that commit and is dropped. A leader whose removal
//!    commits sends every peer such a heartbeat and stops leading.
//! 3. At most `in_flight_batches_max` batches are in flight per follower, each at most
//!    `batch_entries_max` entries and `batch_bytes_max` payload bytes (one larger entry goes
//!    alone): a slow follower holds a bounded amount of the leader's attention and memory.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::machine::StateMachine;
use super::membership::{ConfChange, CONFIG_KIND};
use super::message::{Append, AppendReply, AppendStatus, Envelope, Message, NodeId, PeerStatus};
use super::progress::{quorum_index, Progress, ProgressState};
use super::replica::{conflict_hint, Replica, NOOP_KIND};
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::{ChunkRequest, SnapshotMeta};

/// What a leader keeps per follower.
#[derive(Debug, Default)]
pub struct LeaderState {
    pub(super) peers: BTreeMap<NodeId, Progress>,
    /// The snapshot offered to each follower in `ProgressState::Snapshot`.
    offered: BTreeMap<NodeId, SnapshotMeta>,
    /// Ticks since the last heartbeat.
    since_heartbeat: u64,
}

impl LeaderState {
    pub(super) fn peer_status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|(id, p)| PeerStatus {
                id: *id,
                match_index: p.match_index,
                next_index: p.next_index,
                state: p.state_code(),
                batches_sent: p.batches_sent,
                bytes_sent: p.bytes_sent,
                snapshots_sent: p.snapshots_sent,
            })
            .collect()
    }
}

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// Leads `term`: this node must have voted itself in `term` (the caller collected a
    /// quorum's votes, see `vote`). Appends a no-op of the term and starts probing followers.
    pub fn become_leader(&mut self, term: u64) -> Result<()> {
        if term != self.term || self.log.hard_state().vote != self.id {
            return Err(Error::StaleTerm { term, current: self.term });
        }
        if !self.configuration().is_voter(self.id) || self.is_removed() {
            return Err(Error::MembershipChange { reason: "only a voter leads" });
        }
        if !self.configuration_known() {
            // A damaged or lost entry may hide a later configuration.
            return Err(Error::MembershipChange { reason: "configuration unknown past damage" });
        }
        if self.behind.is_some() {
            // It could neither apply nor offer the snapshot a follower may need.
            return Err(Error::MembershipChange { reason: "state machine behind the log" });
        }
        if self.leader.is_some() {
            return Ok(());
        }
        self.leader = Some(LeaderState::default());
        self.leader_id = self.id;
        self.sync_peers();
        let (prev_last, noop) =
            (self.log.last_index(), self.next_entry(0, Bytes::new(), NOOP_KIND));
        let last = self.log.append(&[noop])?;
        self.unsynced = true;
        self.membership.appended_plain(self.id, prev_last, (last, self.term), &self.log)
    }

    /// Proposes one membership change (format/SPEC.md, "Membership") and returns the index
    /// of its entry. It takes effect here at once, and on each node when appended there.
    /// Refused (`Error::MembershipChange`) while the last change is not committed, for a
    /// change that does not apply to the configuration, and for promoting a learner that does
    /// not hold the committed log yet.
    pub fn change_membership(&mut self, change: ConfChange) -> Result<u64> {
        let Some(leader) = self.leader.as_ref() else {
            let leader = (self.leader_id != 0).then_some(self.leader_id);
            return Err(Error::NotLeader { leader });
        };
        let commit = self.log.commit_index();
        if self.membership.current_index() > commit {
            return Err(Error::MembershipChange { reason: "the last change is not committed" });
        }
        let next = self.configuration().apply(change)?;
        if let ConfChange::Promote(id) = change {
            if leader.peers.get(&id).is_none_or(|p| p.match_index < commit) {
                return Err(Error::MembershipChange { reason: "the learner is not caught up" });
            }
        }
        let entry = self.next_entry(0, Bytes::from(next.encode()), CONFIG_KIND);
        let index = self.log.append(&[entry])?;
        self.unsynced = true;
        self.track_membership()?;
        Ok(index)
    }

    /// Makes the leader's peers the nodes of the configuration in effect and, while it is not
    /// committed, of the one before (invariant 4). A dropped peer gets a last heartbeat.
    pub(super) fn sync_peers(&mut self) {
        let commit = self.log.commit_index();
        let mut wanted = self.membership.current().members();
        if let Some(previous) = self.membership.previous(commit) {
            wanted.extend(previous.members());
        }
        wanted.retain(|id| *id != self.id);
        let (last_index, now, term) = (self.log.last_index(), self.now, self.term);
        let Some(leader) = self.leader.as_mut() else { return };
        let dropped: Vec<NodeId> =
            leader.peers.keys().filter(|id| !wanted.contains(id)).copied().collect();
        for id in dropped {
            leader.peers.remove(&id);
            leader.offered.remove(&id);
            let farewell = Message::Heartbeat { term, leader_commit: commit };
            self.outbox.push(Envelope { from: self.id, to: id, message: farewell });
        }
        let Some(leader) = self.leader.as_mut() else { return };
        for id in wanted {
            leader.peers.entry(id).or_insert_with(|| Progress::new(last_index, now));
        }
    }

    /// Appends `payloads` as entries of this leader's term and returns the index of the last.
    /// They are sent by `ready` and committed once a quorum holds them. Not leading is
    /// `Error::NotLeader`; too many entries not yet committed is `Error::Busy`.
    pub fn propose(&mut self, payloads: &[Bytes]) -> Result<u64> {
        if self.is_removed() {
            return Err(Error::Removed);
        }
        if self.leader.is_none() {
            let leader = (self.leader_id != 0).then_some(self.leader_id);
            return Err(Error::NotLeader { leader });
        }
        let uncommitted = self.log.last_index() - self.log.commit_index();
        let max = self.options.uncommitted_entries_max;
        if uncommitted.saturating_add(payloads.len() as u64) > max {
            return Err(Error::Busy { unapplied: uncommitted, max });
        }
        let entries: Vec<_> = (0u64..)
            .zip(payloads)
            .map(|(offset, payload)| self.next_entry(offset, payload.clone(), 0))
            .collect();
        let prev_last = self.log.last_index();
        let last = self.log.append(&entries)?;
        self.unsynced = true;
        self.membership.appended_plain(self.id, prev_last, (last, self.term), &self.log)?;
        Ok(last)
    }

    pub(super) fn on_reply(&mut self, from: NodeId, reply: AppendReply) -> Result<()> {
        if reply.term < self.term {
            return Ok(());
        }
        let Some(leader) = self.leader.as_mut() else { return Ok(()) };
        let Some(progress) = leader.peers.get_mut(&from) else { return Ok(()) };
        progress.last_heard_tick = self.now;
        match reply.status {
            AppendStatus::Accepted => {
                if let ProgressState::Snapshot { index } = progress.state {
                    if reply.match_index >= index {
                        progress.snapshots_sent += 1;
                        leader.offered.remove(&from);
                    }
                }
                let moved = progress.accepted(reply.match_index.min(self.log.last_index()));
                if moved {
                    self.advance_commit()?;
                }
            }
            AppendStatus::Mismatch => {
                // The follower's hint: its last entry at or below the refused one whose term
                // is at most the refused term. Where this log has a term at most that, the
                // next probe goes (it matches, or the follower hints lower still).
                let floor = progress.match_index;
                let (hint, _) = conflict_hint(&self.log, reply.last_index, reply.last_term, floor)
                    .unwrap_or((reply.last_index, 0));
                progress.mismatched(reply.match_index, hint + 1);
            }
            AppendStatus::OutOfWindow => progress.retransmit(),
            AppendStatus::Buffered => progress.unsettled(reply.last_index),
            AppendStatus::Alive | AppendStatus::StaleTerm => {}
        }
        self.replicate(from)
    }

    /// Serves chunks of the snapshot a follower pulls, or offers the latest again when the
    /// one it pulls is gone.
    pub(super) fn on_pull(
        &mut self,
        from: NodeId,
        index: u64,
        requests: &[ChunkRequest],
    ) -> Result<()> {
        let Some(leader) = self.leader.as_mut() else { return Ok(()) };
        let Some(progress) = leader.peers.get_mut(&from) else { return Ok(()) };
        progress.last_heard_tick = self.now;
        progress.last_sent_tick = Some(self.now);
        let offered = leader.offered.get(&from).filter(|meta| meta.index == index).cloned();
        let chunks = match offered.map(|meta| self.chunks(&meta, requests)) {
            Some(Ok(chunks)) => chunks,
            _ => return self.offer_snapshot(from),
        };
        let message = Message::SnapshotChunks { term: self.term, index, chunks };
        self.outbox.push(self.envelope(from, message));
        Ok(())
    }

    /// The encoded chunks of snapshot `meta` that `requests` ask for, within
    /// `snapshot_message_bytes_max`.
    pub(super) fn chunks(
        &self,
        meta: &SnapshotMeta,
        requests: &[ChunkRequest],
    ) -> Result<Vec<Bytes>> {
        let source = self.snapshots.source(meta)?;
        let mut chunks = Vec::new();
        let mut bytes = 0u64;
        for request in requests {
            if bytes >= self.options.snapshot_message_bytes_max {
                break;
            }
            let encoded = Bytes::from(source.chunk(request)?.encode());
            bytes += encoded.len() as u64;
            chunks.push(encoded);
        }
        Ok(chunks)
    }

    /// Offers the latest snapshot to a follower whose next entry is compacted.
    pub(super) fn offer_snapshot(&mut self, to: NodeId) -> Result<()> {
        let meta = self.snapshots.latest()?.ok_or(Error::Compacted {
            index: self.log.first_index() - 1,
            first_index: self.log.first_index(),
        })?;
        let manifest = Bytes::copy_from_slice(self.snapshots.source(&meta)?.manifest());
        let leader = self.leader.as_mut().expect("only a leader offers snapshots");
        let progress = leader.peers.get_mut(&to).expect("offered to a follower");
        progress.need_snapshot(meta.index, self.now);
        leader.offered.insert(to, meta);
        let offer = Message::SnapshotOffer { term: self.term, manifest };
        self.outbox.push(self.envelope(to, offer));
        Ok(())
    }

    pub(super) fn replicate_all(&mut self) -> Result<()> {
        while self.relay_next_batch()? {}
        let peers: Vec<NodeId> =
            self.leader.as_ref().map(|l| l.peers.keys().copied().collect()).unwrap_or_default();
        for peer in peers {
            self.replicate(peer)?;
        }
        Ok(())
    }

    /// Sends `to` what its progress allows: one probe, or batches up to the window.
    fn replicate(&mut self, to: NodeId) -> Result<()> {
        loop {
            let Some(leader) = self.leader.as_ref() else { return Ok(()) };
            let progress = &leader.peers[&to];
            let next_index = progress.next_index;
            let room = match progress.state {
                ProgressState::Snapshot { .. } => false,
                ProgressState::Probe => progress.last_sent_tick.is_none(),
                ProgressState::Replicate => {
                    progress.in_flight() < self.options.in_flight_batches_max
                        && next_index <= self.log.last_index()
                }
            };
            if !room {
                return Ok(());
            }
            let batch = match self.batch_from(next_index) {
                // Nothing is sent past a damaged entry until it is repaired (`repair`).
                Err(Error::Damaged { .. }) => return Ok(()),
                batch => batch?,
            };
            let Some((append, bytes)) = batch else { return self.offer_snapshot(to) };
            let now = self.now;
            let leader = self.leader.as_mut().expect("checked above");
            let progress = leader.peers.get_mut(&to).expect("a follower");
            if append.entries.is_empty() {
                progress.last_sent_tick = Some(now);
            } else {
                progress.sent(append.last_index(), now, bytes);
            }
            self.outbox.push(self.envelope(to, Message::Append(append)));
        }
    }

    /// The `Append` of the next batch from `next_index` (none: a probe, when nothing is
    /// there) and its payload bytes; `None` when the entry before it is compacted (a snapshot
    /// is due).
    pub(super) fn batch_from(&self, next_index: u64) -> Result<Option<(Append, u64)>> {
        let prev_index = next_index - 1;
        let prev_term = match self.log.term(prev_index) {
            Ok(term) => term,
            Err(Error::Compacted { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let last_index = self.log.last_index();
        let entries = if next_index <= last_index {
            let hi = next_index.saturating_add(self.options.batch_entries_max).min(last_index + 1);
            match self.log.entries(next_index, hi, self.options.batch_bytes_max) {
                Ok(entries) => entries,
                Err(Error::Compacted { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            Vec::new()
        };
        let bytes = entries.iter().map(|e| e.payload.len() as u64).sum();
        let leader_commit = self.log.commit_index();
        Ok(Some((Append { term: self.term, prev_index, prev_term, leader_commit, entries }, bytes)))
    }

    /// Commits the highest index a majority of the voters holds durably, if it is of this
    /// term (invariant 4); then drops peers and leadership a committed removal ended.
    pub(super) fn advance_commit(&mut self) -> Result<()> {
        let Some(leader) = self.leader.as_ref() else { return Ok(()) };
        let config = self.membership.current();
        let mut indexes: Vec<u64> = config
            .voters()
            .iter()
            .map(|id| match leader.peers.get(id) {
                _ if *id == self.id => self.log.durable_index(),
                Some(progress) => progress.match_index,
                None => 0,
            })
            .collect();
        let quorum = quorum_index(&mut indexes);
        let before = self.log.commit_index();
        let config_index = self.membership.current_index();
        // Peers and leadership change only when the configuration's entry commits.
        if quorum > before
            && self.log.maybe_commit(quorum, self.term)?
            && config_index > before
            && config_index <= self.log.commit_index()
        {
            self.sync_peers();
            if self.is_removed() {
                // A last heartbeat carries the commit of the removal to those who remain.
                let commit = self.log.commit_index();
                let peers = self.leader.take().map(|l| l.peers).unwrap_or_default();
                for id in peers.into_keys() {
                    let farewell = Message::Heartbeat { term: self.term, leader_commit: commit };
                    self.outbox.push(self.envelope(id, farewell));
                }
                self.leader_id = 0;
            }
        }
        Ok(())
    }

    /// Heartbeats every `heartbeat_ticks`; resends what went unanswered for `resend_ticks`.
    pub(super) fn leader_tick(&mut self) -> Result<()> {
        let (now, resend) = (self.now, self.options.resend_ticks);
        let leader = self.leader.as_mut().expect("called on a leader");
        leader.since_heartbeat += 1;
        let heartbeat = leader.since_heartbeat >= self.options.heartbeat_ticks;
        if heartbeat {
            leader.since_heartbeat = 0;
        }
        let mut reoffer = Vec::new();
        for (id, progress) in leader.peers.iter_mut() {
            let stale = |tick: Option<u64>| tick.is_some_and(|t| now.saturating_sub(t) >= resend);
            match progress.state {
                ProgressState::Probe if stale(progress.last_sent_tick) => {
                    progress.last_sent_tick = None
                }
                ProgressState::Replicate if stale(progress.oldest_in_flight_tick()) => {
                    progress.retransmit();
                }
                ProgressState::Snapshot { .. } if stale(progress.last_sent_tick) => {
                    reoffer.push(*id)
                }
                _ => {}
            }
        }
        let peers: Vec<NodeId> = leader.peers.keys().copied().collect();
        for id in reoffer {
            self.offer_snapshot(id)?;
        }
        if heartbeat {
            let commit = self.log.commit_index();
            for id in peers {
                let message = Message::Heartbeat { term: self.term, leader_commit: commit };
                self.outbox.push(self.envelope(id, message));
                self.send_compaction_floor(id);
            }
        }
        Ok(())
    }
}
