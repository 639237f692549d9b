//! `Replica`: one node of a group, as a deterministic state machine over its `RaftLog`,
//! `SnapshotStore` and `StateMachine`. It does no networking and keeps no clock: the caller
//! feeds it messages (`step`), time (`tick`) and writes (`propose`), and sends what `ready`
//! hands out. The seeded simulation and the TCP server drive the same code. `lifecycle` opens
//! and closes it.
//!
//! Invariants:
//! 1. `term` is the persisted hard state's term; it only grows, and is durable before any
//!    message of that term leaves (`step_down` and `vote` persist it with an fdatasync).
//! 2. A follower's answers that promise log contents (`after_sync`) leave only after the
//!    fdatasync that makes those contents and the hard state durable (`ready`).
//! 3. A leader counts itself in the quorum with its durable index only.
//! 4. `leader.is_some()` only in a term this node voted itself for.
//! 5. The state machine has applied exactly the log's applied index.
//! 6. The configuration is the last one the log holds (`membership`); it is re-read after
//!    every change to the log. A node a committed configuration removed serves nothing but
//!    its snapshots, to the new holders of its slots.

use std::sync::Arc;

use bytes::Bytes;

use super::appender::Appender;
use super::catch_up::{Receiving, Source};
use super::leader::LeaderState;
use super::machine::StateMachine;
use super::membership::{Configuration, Tracker, CONFIG_KIND};
use super::message::{Append, AppendReply, AppendStatus, Envelope, Message, NodeId, NodeStatus};
use super::options::ReplicationOptions;
use super::repair::Repairs;
use super::slot_floor::SlotFloor;
use super::slot_moves::SlotMoves;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::{SnapshotMeta, SnapshotStore};
use crate::RaftLog;

/// The entry kind of the no-op a new leader appends to commit its term (Raft §5.4.2).
pub const NOOP_KIND: u8 = 1;

/// One node of a replicated group; see the module docs.
pub struct Replica<F: FileSystem, M: StateMachine<F>> {
    pub(super) id: NodeId,
    /// The configurations the log holds; the current one is the last.
    pub(super) membership: Tracker,
    pub(super) log: Arc<RaftLog<F>>,
    pub(super) snapshots: SnapshotStore<F>,
    pub(super) machine: M,
    pub(super) options: ReplicationOptions,
    pub(super) term: u64,
    /// The leader of `term` this node knows of (0: none).
    pub(super) leader_id: NodeId,
    pub(super) leader: Option<LeaderState>,
    pub(super) appender: Appender,
    /// A follower's highest index known equal to the leader's log this term: a heartbeat's
    /// commit index applies only up to it.
    pub(super) matched_through: u64,
    /// The snapshot being pulled: from whom, which, and the manifest (`catch_up`).
    pub(super) receiving: Option<Receiving>,
    /// Messages that may leave now.
    pub(super) outbox: Vec<Envelope>,
    /// Messages that may leave after the next fdatasync (invariant 2).
    pub(super) after_sync: Vec<Envelope>,
    /// The log changed since the last fdatasync.
    pub(super) unsynced: bool,
    /// Ticks since start.
    pub(super) now: u64,
    pub(super) snapshots_installed: u64,
    /// Damaged entries being repaired from peers, and what was repaired or lost.
    pub(super) repairs: Repairs,
    /// The state machine lags the log's start (a lost prefix): it applies nothing until a
    /// snapshot at or above this index is installed (`repair`).
    pub(super) behind: Option<u64>,
    /// Slots a slotted state machine waits for, and those it pulled (`slot_moves`).
    pub(super) slot_moves: SlotMoves,
    /// How far a slotted group may compact its logs (`slot_floor`).
    pub(super) slot_floor: SlotFloor,
}

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The log (shared: reads never wait for this node's fsyncs).
    pub fn log(&self) -> &Arc<RaftLog<F>> {
        &self.log
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapshotStore<F> {
        &self.snapshots
    }

    /// The state machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Whether this node leads its term.
    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// The leader this node knows of (0: none).
    pub fn leader_id(&self) -> NodeId {
        self.leader_id
    }

    /// The configuration in effect here: the last one this node's log holds.
    pub fn configuration(&self) -> &Configuration {
        self.membership.current()
    }

    /// The configuration at the applied index: the one the state machine's slots follow
    /// (`slot_moves`).
    pub fn applied_configuration(&self) -> &Configuration {
        self.membership.at(self.log.applied_index())
    }

    /// The configuration before the one in effect, while that one is not committed here (a
    /// majority of either may still decide).
    pub fn previous_configuration(&self) -> Option<&Configuration> {
        self.membership.previous(self.log.commit_index())
    }

    /// The index of the entry of the configuration in effect (that of the snapshot or the
    /// bootstrap when the log holds none).
    pub fn configuration_index(&self) -> u64 {
        self.membership.current_index()
    }

    /// Whether this node's log was read through its end for configurations: false while a
    /// damaged entry, not repaired yet, may hide a later one (the node then refuses to lead).
    pub fn configuration_known(&self) -> bool {
        self.membership.unknown_past(self.log.commit_index()).is_none()
    }

    /// Whether `become_leader` would take a term this node won: a voter, not removed, its
    /// configuration known, and its state machine at its log's applied index.
    pub fn can_lead(&self) -> bool {
        self.configuration().is_voter(self.id)
            && !self.is_removed()
            && self.configuration_known()
            && self.behind.is_none()
    }

    /// Whether a committed configuration removed this node (it then serves nothing).
    pub fn is_removed(&self) -> bool {
        self.membership.removed(self.id, self.log.commit_index())
    }

    /// Re-reads the configurations after a change to the log; a leader adjusts its peers.
    pub(super) fn track_membership(&mut self) -> Result<()> {
        self.membership.track(self.id, &self.log)?;
        self.sync_peers();
        Ok(())
    }

    /// Votes for `candidate` in `term` if it may (Raft's RequestVote, asked by whoever runs
    /// the election): not behind this node's term, no other vote in it, and the candidate's log
    /// at least as up to date. A higher term is persisted whatever the answer. Durable when it
    /// returns. The candidate need not be a voter of this node's configuration (this node's
    /// may be behind the candidate's: Raft votes by log alone); whoever runs the election
    /// counts the votes of the voters of the candidate's configuration. A removed node votes
    /// for nobody.
    pub fn vote(
        &mut self,
        term: u64,
        candidate: NodeId,
        last_index: u64,
        last_term: u64,
    ) -> Result<bool> {
        if term < self.term || self.is_removed() {
            return Ok(false);
        }
        if term > self.term {
            self.step_down(term)?;
        }
        let vote = self.log.hard_state().vote;
        let up_to_date = candidate == self.id || self.log.is_up_to_date(last_index, last_term);
        let grant = (vote == 0 || vote == candidate) && self.leader.is_none() && up_to_date;
        if grant && vote == 0 {
            self.log.set_hard_state(term, candidate)?;
        }
        Ok(grant)
    }

    /// Adopts `term` (above the current one): durable, and this node follows nobody yet.
    pub(super) fn step_down(&mut self, term: u64) -> Result<()> {
        self.log.set_hard_state(term, 0)?;
        self.term = term;
        self.leader = None;
        self.leader_id = 0;
        self.matched_through = 0;
        self.appender.reset();
        Ok(())
    }

    /// Handles a message from node `from`. Clients' and operators' messages are the server's
    /// (`Error::BadMessage` here). A leader's messages are taken from any node (by term, as
    /// Raft does: this node's configuration may be behind the leader's); replies count only
    /// from the leader's peers. A removed node ignores everything but requests for its
    /// snapshots, which it serves to the new holders of its slots, and their `SlotsTaken`
    /// (`slot_moves`).
    pub fn step(&mut self, from: NodeId, message: Message) -> Result<()> {
        if from == self.id || from == 0 {
            return Ok(());
        }
        if self.is_removed() {
            return match message {
                Message::SnapshotRequest { index, .. } => self.on_snapshot_request(from, index),
                Message::RepairPull { index, requests, .. } => {
                    self.on_repair_pull(from, index, &requests)
                }
                Message::SlotsTaken { slots, .. } => {
                    self.on_slots_taken(&slots);
                    Ok(())
                }
                _ => Ok(()),
            };
        }
        // Repair messages act on no term (`repair` invariant 2).
        match message {
            Message::RepairRequest { first, last, first_term, .. } => {
                return self.on_repair_request(from, first, last, first_term)
            }
            Message::RepairReply { first, lacks, entries, .. } => {
                return self.on_repair_reply(from, first, lacks, entries)
            }
            Message::SnapshotRequest { index, .. } => return self.on_snapshot_request(from, index),
            Message::RepairOffer { manifest, .. } => return self.on_repair_offer(from, manifest),
            Message::RepairPull { index, requests, .. } => {
                return self.on_repair_pull(from, index, &requests)
            }
            Message::RepairChunks { index, chunks, .. } => {
                return self.on_chunks(from, Source::Peer, index, &chunks)
            }
            Message::SlotsTaken { slots, .. } => {
                self.on_slots_taken(&slots);
                return Ok(());
            }
            Message::CompactionFloor { index, .. } => {
                self.on_compaction_floor(from, index);
                return Ok(());
            }
            Message::SlotsDurable { index, slots, .. } => {
                self.on_slots_durable(from, index, slots);
                return Ok(());
            }
            _ => {}
        }
        let (term, from_leader) = match &message {
            Message::Append(a) | Message::Relay { append: a, .. } => (a.term, true),
            Message::Heartbeat { term, .. }
            | Message::SnapshotOffer { term, .. }
            | Message::SnapshotChunks { term, .. } => (*term, true),
            Message::AppendReply(r) => (r.term, false),
            Message::SnapshotPull { term, .. } => (*term, false),
            _ => return Err(Error::BadMessage { reason: "not a message between nodes" }),
        };
        if term < self.term {
            if from_leader {
                let reply = self.reply(AppendStatus::StaleTerm, 0);
                self.outbox.push(self.envelope(from, Message::AppendReply(reply)));
            }
            return Ok(());
        }
        if term > self.term {
            self.step_down(term)?;
        }
        if !from_leader {
            return match message {
                Message::AppendReply(reply) => self.on_reply(from, reply),
                Message::SnapshotPull { index, requests, .. } => {
                    self.on_pull(from, index, &requests)
                }
                _ => unreachable!("only replies reach here"),
            };
        }
        if self.leader.is_some() {
            // Two leaders of one term: whoever ran the election broke its rule. Ignore.
            return Ok(());
        }
        self.leader_id = from;
        match message {
            Message::Append(append) => self.on_append(from, append),
            Message::Relay { targets, append } => {
                // Forwarded first, in the leader's name: the targets answer the leader.
                for to in targets.into_iter().filter(|to| *to != self.id) {
                    let forwarded = Message::Append(append.clone());
                    self.outbox.push(Envelope { from, to, message: forwarded });
                }
                self.on_append(from, append)
            }
            Message::Heartbeat { leader_commit, .. } => {
                let commit = leader_commit.min(self.matched_through);
                if commit > self.log.commit_index() {
                    self.log.commit_to(commit)?;
                }
                let reply = self.reply(AppendStatus::Alive, 0);
                self.outbox.push(self.envelope(from, Message::AppendReply(reply)));
                Ok(())
            }
            Message::SnapshotOffer { manifest, .. } => {
                self.receiving = Some(Receiving { from, source: Source::Leader, manifest });
                self.pull()
            }
            Message::SnapshotChunks { index, chunks, .. } => {
                self.on_chunks(from, Source::Leader, index, &chunks)
            }
            _ => unreachable!("only leader messages reach here"),
        }
    }

    fn on_append(&mut self, from: NodeId, append: Append) -> Result<()> {
        // A configuration the log would hold must decode: checked before anything is appended.
        for entry in append.entries.iter().filter(|e| e.kind == CONFIG_KIND) {
            Configuration::decode(&entry.payload)?;
        }
        let outcomes = self.appender.append(&self.log, append, self.now)?;
        self.track_membership()?;
        for outcome in outcomes {
            if outcome.status == AppendStatus::Mismatch {
                self.refuse(from, outcome.match_index, outcome.prev_term)?;
            } else {
                self.answer(from, outcome.status, outcome.match_index);
            }
        }
        Ok(())
    }

    /// Refuses a request after `(prev_index, prev_term)` with a hint that skips a whole
    /// conflicting term per round trip (etcd raft's `findConflictByTerm`): the last index at or
    /// below it whose term is at most `prev_term`, and that term.
    fn refuse(&mut self, to: NodeId, prev_index: u64, prev_term: u64) -> Result<()> {
        let (index, term) =
            conflict_hint(&self.log, prev_index, prev_term, self.log.commit_index())?;
        let reply = AppendReply {
            last_index: index,
            last_term: term,
            ..self.reply(AppendStatus::Mismatch, prev_index)
        };
        self.outbox.push(self.envelope(to, Message::AppendReply(reply)));
        Ok(())
    }

    /// Queues an answer to the leader; an `Accepted` one waits for the fdatasync. With
    /// `Mismatch`, `match_index` is the refused request's previous index.
    pub(super) fn answer(&mut self, to: NodeId, status: AppendStatus, match_index: u64) {
        if status == AppendStatus::Accepted {
            self.matched_through = self.matched_through.max(match_index);
            self.unsynced = true;
        }
        let reply = self.reply(status, match_index);
        let envelope = self.envelope(to, Message::AppendReply(reply));
        if status == AppendStatus::Accepted {
            self.after_sync.push(envelope);
        } else {
            self.outbox.push(envelope);
        }
    }

    pub(super) fn reply(&self, status: AppendStatus, match_index: u64) -> AppendReply {
        AppendReply {
            term: self.term,
            status,
            match_index,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            commit_index: self.log.commit_index(),
        }
    }

    pub(super) fn envelope(&self, to: NodeId, message: Message) -> Envelope {
        Envelope { from: self.id, to, message }
    }

    /// Advances time by one tick: heartbeats and resends on a leader, parked requests'
    /// timeouts on a follower.
    pub fn tick(&mut self) -> Result<()> {
        self.now += 1;
        if self.is_removed() {
            return Ok(());
        }
        self.repair_tick()?;
        if self.leader.is_some() {
            return self.leader_tick();
        }
        let leader = self.leader_id;
        for outcome in self.appender.tick(self.now) {
            if leader != 0 {
                self.refuse(leader, outcome.match_index, outcome.prev_term)?;
            }
        }
        Ok(())
    }

    /// Sends what may leave now, makes the log durable (one fdatasync for everything appended
    /// since the last), sends what waited for it, and applies what is committed.
    pub fn ready(&mut self, send: &mut dyn FnMut(Envelope)) -> Result<()> {
        if self.leader.is_some() {
            self.replicate_all()?;
        }
        for envelope in self.outbox.drain(..) {
            send(envelope);
        }
        if self.unsynced {
            self.log.sync()?;
            self.unsynced = false;
            if self.leader.is_some() {
                self.advance_commit()?;
            }
        }
        for envelope in self.after_sync.drain(..) {
            send(envelope);
        }
        self.apply()
    }

    fn apply(&mut self) -> Result<()> {
        if self.behind.is_some() || self.slot_moves.waiting() {
            return Ok(());
        }
        let slotted = self.machine.slot_layout().is_some();
        loop {
            let entries = match self.log.next_committed_entries(self.options.apply_bytes_max) {
                // Applying waits for the damaged entry's repair (`repair`).
                Err(Error::Damaged { .. }) => return Ok(()),
                entries => entries?,
            };
            let Some(last) = entries.last().map(|e| e.index) else { return Ok(()) };
            for entry in &entries {
                self.machine.apply(entry);
                if slotted && entry.kind == CONFIG_KIND {
                    // The slots held follow the configuration (`slot_moves`).
                    self.log.applied_to(entry.index)?;
                    self.settle_slots(false)?;
                    if self.slot_moves.waiting() {
                        return Ok(());
                    }
                }
            }
            self.log.applied_to(last)?;
        }
    }

    /// Snapshots the state machine at the applied index and compacts the log behind it,
    /// leaving `compaction_lag_entries` (and, with a slotted state machine, no further than
    /// the group's compaction floor: `slot_floor`); keeps the two latest snapshots. `None`
    /// when nothing was applied since the last one. Slots still pending are not in it (their
    /// record is: `slot_moves`).
    pub fn snapshot(&mut self) -> Result<Option<SnapshotMeta>> {
        if self.behind.is_some() {
            return Ok(None); // the state machine is not at the log's applied index
        }
        let latest = self.snapshots.latest()?.map_or(0, |meta| meta.index);
        if self.log.applied_index() <= latest {
            return Ok(None);
        }
        self.take_snapshot().map(Some)
    }

    /// Snapshots the state machine at the applied index, as `snapshot` does, whatever the
    /// latest snapshot.
    pub(super) fn take_snapshot(&mut self) -> Result<SnapshotMeta> {
        let applied = self.log.applied_index();
        let term = self.log.term(applied)?;
        let configuration = self.membership.at(applied).encode();
        let mut writer = self.snapshots.begin(applied, term, &configuration)?;
        self.machine.snapshot(&mut writer)?;
        self.slot_moves.record(&mut writer)?;
        let meta = writer.finish()?;
        if let Some(layout) = self.machine.slot_layout() {
            self.slot_floor.snapshotted(&meta, layout.count);
        }
        self.membership.fold_through(applied);
        let lagged = applied.saturating_sub(self.options.compaction_lag_entries);
        self.log.compact(lagged.min(self.compaction_floor()))?;
        self.snapshots.keep_latest(2)?;
        Ok(meta)
    }

    /// Snapshots this node installed from a leader or a peer since it started (as `status`
    /// reports it, without reading the snapshot store).
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// What this node is and holds.
    pub fn status(&self) -> Result<NodeStatus> {
        Ok(NodeStatus {
            id: self.id,
            term: self.term,
            leader: self.leader.is_some(),
            leader_id: self.leader_id,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            commit_index: self.log.commit_index(),
            applied_index: self.log.applied_index(),
            snapshot_index: self.snapshots.latest()?.map_or(0, |meta| meta.index),
            snapshots_installed: self.snapshots_installed,
            peers: self.leader.as_ref().map(LeaderState::peer_status).unwrap_or_default(),
        })
    }

    /// The entry this leader appends `offset` places after its last one, in its term.
    pub(super) fn next_entry(&self, offset: u64, payload: Bytes, kind: u8) -> Entry {
        Entry { index: self.log.last_index() + 1 + offset, term: self.term, payload, kind }
    }
}

impl<F: FileSystem, M: StateMachine<F>> std::fmt::Debug for Replica<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("term", &self.term)
            .field("leader", &self.leader.is_some())
            .field("log", &self.log)
            .finish()
    }
}

/// The last index at or below `index` (and the log's end) whose term is at most `term`, with
/// that term. The search stops at `floor`, below which the log is known to agree (a
/// follower's commit index, a leader's match index for the follower), or at the first index.
pub(super) fn conflict_hint<F: FileSystem>(
    log: &RaftLog<F>,
    index: u64,
    term: u64,
    floor: u64,
) -> Result<(u64, u64)> {
    let floor = floor.max(log.first_index() - 1);
    // At or below the floor the logs agree (and below the log's start there is no term).
    let mut at = index.min(log.last_index()).max(floor);
    loop {
        let here = log.term(at)?;
        if here <= term || at <= floor {
            return Ok((at, here));
        }
        at -= 1;
    }
}
