//! The messages of the replication shim: between nodes, from a client, from an operator. Their
//! bytes are specified in format/SPEC.md ("Replication messages") and coded in `wire.rs`.
//!
//! Invariants:
//! 1. Every node-to-node message carries the sender's term; a receiver acts on none whose term
//!    is below its own (it answers with its term instead).
//! 2. An `AppendReply` with status `Accepted` promises that the sender's log equals the
//!    leader's through `match_index`, and that those entries and the hard state are durable.
//! 3. Payloads are `Bytes`: one entry's bytes are shared by every message that carries them.

use bytes::Bytes;

use super::membership::ConfChange;

use crate::entry::Entry;

/// A node's identity within its group. 0 means "nobody".
pub type NodeId = u64;

/// A message with its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender (0 for a client or an operator).
    pub from: NodeId,
    /// The receiver (0 for a client or an operator).
    pub to: NodeId,
    /// What is said.
    pub message: Message,
}

/// Everything the shim's nodes, clients and operators say to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Leader to follower: entries after `(prev_index, prev_term)`, or none (a probe).
    Append(Append),
    /// Follower to leader: what became of an `Append`, a `Heartbeat` or a snapshot.
    AppendReply(AppendReply),
    /// Leader to a first-level follower (relay mode): take `append`, and forward it to each of
    /// `targets` as the leader's own `Append` (the frame names the leader as its sender, so
    /// they answer the leader directly).
    Relay {
        /// The sub-receivers (at most `MEMBERS_MAX`).
        targets: Vec<NodeId>,
        /// What the leader would have sent each of them.
        append: Append,
    },
    /// Leader to follower: "I lead this term; this much is committed".
    Heartbeat {
        /// The leader's term.
        term: u64,
        /// The leader's commit index.
        leader_commit: u64,
    },
    /// Leader to follower: its next entry is compacted; here is the snapshot to take first.
    SnapshotOffer {
        /// The leader's term.
        term: u64,
        /// The snapshot's manifest (`SnapshotSource::manifest`).
        manifest: Bytes,
    },
    /// Follower to leader: the chunks of the offered snapshot it still needs.
    SnapshotPull {
        /// The follower's term.
        term: u64,
        /// The index of the snapshot being pulled.
        index: u64,
        /// What to send (at most `PULL_REQUESTS_MAX`).
        requests: Vec<crate::snapshot::ChunkRequest>,
    },
    /// Leader to follower: chunks of the snapshot at `index`, each in `Chunk::encode` form.
    SnapshotChunks {
        /// The leader's term.
        term: u64,
        /// The index of the snapshot.
        index: u64,
        /// Encoded chunks.
        chunks: Vec<Bytes>,
    },
    /// Any node to a peer: send your copies of entries `[first, last]`, damaged here
    /// (format/SPEC.md, "Repair from peers"). Acted on whatever its term.
    RepairRequest {
        /// The sender's term (for information only).
        term: u64,
        /// The first entry wanted.
        first: u64,
        /// The last entry wanted.
        last: u64,
        /// The term of `first` in the sender's log (its index records it).
        first_term: u64,
    },
    /// The answer: the copies the peer holds of a prefix of `[first, last]`; none when it
    /// holds none (compacted, damaged there too, beyond its log).
    RepairReply {
        /// The sender's term (for information only).
        term: u64,
        /// The request's first entry.
        first: u64,
        /// The request's last entry.
        last: u64,
        /// The peer's log does not hold `(first, first_term)` at all (it ends before, or
        /// holds another term there): not compacted, not damaged, never had it.
        lacks: bool,
        /// Contiguous entries from `first` (at most `ENTRIES_MAX`).
        entries: Vec<Entry>,
    },
    /// Any node to a peer: entries through `index` are lost everywhere this node asked, and
    /// not applied here: offer a snapshot that covers `index`. Acted on whatever its term.
    SnapshotRequest {
        /// The sender's term (for information only).
        term: u64,
        /// The last lost entry.
        index: u64,
    },
    /// The answer: a snapshot at `index` (at or above the one asked for), or none (an empty
    /// manifest). Pulled with `RepairPull`, served with `RepairChunks`: the leader's snapshot
    /// transfer, between any two nodes and whatever their terms.
    RepairOffer {
        /// The sender's term (for information only).
        term: u64,
        /// The snapshot's index (the index asked for, when none is offered).
        index: u64,
        /// The snapshot's manifest; empty when the peer has none covering the index.
        manifest: Bytes,
    },
    /// Any node to the members of its configuration: it pulled `slots` and holds them in a
    /// durable snapshot, so a node keeping a copy of one it is no longer assigned may drop it
    /// (`slot_moves`). Acted on whatever its term.
    SlotsTaken {
        /// The sender's term (for information only).
        term: u64,
        /// The slots (at most `wire::SLOTS_MAX`).
        slots: Vec<u32>,
    },
    /// Leader to every node, with each heartbeat of a slotted group: compact the log no
    /// further than `index` (`slot_floor`). Acted on whatever its term.
    CompactionFloor {
        /// The sender's term (for information only).
        term: u64,
        /// The floor.
        index: u64,
    },
    /// The answer: the index of the sender's latest snapshot and the slots it holds.
    SlotsDurable {
        /// The sender's term (for information only).
        term: u64,
        /// The snapshot's index.
        index: u64,
        /// Its slots (at most `wire::SLOTS_MAX`).
        slots: Vec<u32>,
    },
    /// Chunks of the offered snapshot still missing (as `SnapshotPull`).
    RepairPull {
        /// The sender's term (for information only).
        term: u64,
        /// The index of the snapshot being pulled.
        index: u64,
        /// What to send (at most `PULL_REQUESTS_MAX`).
        requests: Vec<crate::snapshot::ChunkRequest>,
    },
    /// Chunks of the snapshot at `index` (as `SnapshotChunks`).
    RepairChunks {
        /// The sender's term (for information only).
        term: u64,
        /// The index of the snapshot.
        index: u64,
        /// Encoded chunks.
        chunks: Vec<Bytes>,
    },
    /// Node to operator: the answer to `ControlOp::Slots`.
    SlotStatus {
        /// The request answered.
        request_id: u64,
        /// Slots the node holds by its configuration and still pulls (`Replica::pending_slots`).
        pending: Vec<u32>,
        /// Slots it pulled since it started, oldest first (the last `PULLS_MAX`).
        pulls: Vec<SlotPull>,
    },
    /// Node to operator: the answer to `ControlOp::Repairs`.
    RepairStatus {
        /// The request answered.
        request_id: u64,
        /// What the node found damaged, repaired and lost.
        report: RepairReport,
    },
    /// Client to any node: append `payload` and answer once it is committed.
    ClientWrite {
        /// Chosen by the client; echoed in the reply.
        request_id: u64,
        /// The entry's bytes.
        payload: Bytes,
    },
    /// Node to client.
    ClientReply {
        /// The request answered.
        request_id: u64,
        /// What became of it.
        outcome: ClientOutcome,
        /// The entry's index when committed.
        index: u64,
        /// The leader this node knows of (0: none).
        leader: NodeId,
    },
    /// Operator to node.
    Control {
        /// Chosen by the operator; echoed in the reply.
        request_id: u64,
        /// What to do.
        op: ControlOp,
    },
    /// Node to operator: whether the operation was done, and the node's state after it.
    ControlReply {
        /// The request answered.
        request_id: u64,
        /// Whether it was done (for a vote: granted).
        ok: bool,
        /// Why not, when not (at most `TEXT_BYTES_MAX` bytes).
        error: String,
        /// The node's state after the operation.
        status: NodeStatus,
    },
}

/// An AppendEntries request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    /// The leader's term.
    pub term: u64,
    /// Index of the entry before `entries`.
    pub prev_index: u64,
    /// Term of that entry.
    pub prev_term: u64,
    /// The leader's commit index.
    pub leader_commit: u64,
    /// Contiguous entries from `prev_index + 1`; empty for a probe.
    pub entries: Vec<Entry>,
}

impl Append {
    /// The last index this request covers (`prev_index` for a probe).
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.prev_index, |e| e.index)
    }
}

/// A follower's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReply {
    /// The follower's term.
    pub term: u64,
    /// What happened.
    pub status: AppendStatus,
    /// With `Accepted`: the follower's log equals the leader's through this index, durably.
    /// With `Mismatch`: the `prev_index` of the request refused. Otherwise 0.
    pub match_index: u64,
    /// The follower's last index (a hint for probing).
    pub last_index: u64,
    /// The term of the follower's last entry.
    pub last_term: u64,
    /// The follower's commit index.
    pub commit_index: u64,
}

/// The outcome of an append at a follower (IoTDB's response codes, as an enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendStatus {
    /// In the log and durable through `match_index` (IoTDB's STRONG_ACCEPT).
    Accepted,
    /// Held in the sliding window, not yet in the log (WEAK_ACCEPT; never shown to clients).
    Buffered,
    /// Too far ahead of the follower's log: send what comes before first.
    OutOfWindow,
    /// The entry before the batch is not in the follower's log.
    Mismatch,
    /// The sender's term is behind the follower's (`term` says which).
    StaleTerm,
    /// An answer to a heartbeat: only the hints are meaningful.
    Alive,
}

/// What became of a client's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    /// Committed at `index`.
    Committed,
    /// This node does not lead; try `leader`.
    NotLeader,
    /// The leader is saturated (back-pressure); retry later.
    Busy,
    /// Leadership changed before the entry committed: its fate is unknown.
    Unknown,
}

/// What an operator asks of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOp {
    /// Report the node's state.
    Status,
    /// A vote request (the operator runs the election, see `Replica::vote`).
    Vote {
        /// The candidate's term.
        term: u64,
        /// The candidate.
        candidate: NodeId,
        /// The candidate's last index.
        last_index: u64,
        /// The candidate's last term.
        last_term: u64,
    },
    /// Lead `term` (the node must hold a quorum's votes for it; see `Replica::become_leader`).
    BecomeLeader {
        /// The term.
        term: u64,
    },
    /// Snapshot the state machine at its applied index and compact the log behind it.
    Snapshot,
    /// Close the store and exit.
    Shutdown,
    /// Propose a membership change (leader only; see `Replica::change_membership`).
    ChangeMembership(ConfChange),
    /// Report the node's damaged, repaired and lost entries (answered with `RepairStatus`).
    Repairs,
    /// Report the slots the node waits for and those it pulled (answered with `SlotStatus`).
    Slots,
}

/// What a node found damaged in its log and did about it (`Replica::repair_report`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Damaged entries not repaired yet, as inclusive ranges.
    pub damaged: Vec<(u64, u64)>,
    /// Ranges repaired, each from one peer's copies (oldest first; the last `REPORTS_MAX`).
    pub repaired: Vec<Repaired>,
    /// Ranges no peer held (the last `REPORTS_MAX`): reported, then compacted behind a
    /// snapshot when applied here, or replaced by a peer's snapshot when not.
    pub lost: Vec<(u64, u64)>,
    /// Damaged uncommitted tails cut (the last `REPORTS_MAX`): every other member lacked the
    /// entries, so no quorum ever held them; from the first damaged entry to the log's end.
    pub cut: Vec<(u64, u64)>,
}

/// A range of entries rewritten from a peer's copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// The first entry.
    pub first: u64,
    /// The last entry.
    pub last: u64,
    /// The peer whose copies were written.
    pub from: NodeId,
}

/// A slot a node pulled from a peer's snapshot when it became one of its holders
/// (`Replica::slot_pulls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotPull {
    /// The slot.
    pub slot: u32,
    /// The holder it replaced (the removed or outranked node; 0: none, the holders grew, or
    /// this node caught up past the change by a snapshot).
    pub from: NodeId,
    /// The peer whose snapshot it was pulled from (0: the transfer finished before this
    /// node restarted, and is installed from disk).
    pub source: NodeId,
    /// That snapshot's index: the slot's state is complete through it.
    pub index: u64,
    /// Bytes of the slot's files.
    pub bytes: u64,
}

/// A node's state, as `Replica::status` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its current term.
    pub term: u64,
    /// Whether it leads `term`.
    pub leader: bool,
    /// The leader it knows of (itself when leading; 0: none).
    pub leader_id: NodeId,
    /// First index in its log.
    pub first_index: u64,
    /// Last index in its log.
    pub last_index: u64,
    /// Term of the last entry.
    pub last_term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Index of its latest snapshot (0: none).
    pub snapshot_index: u64,
    /// Snapshots it installed from a leader.
    pub snapshots_installed: u64,
    /// Per follower, when leading.
    pub peers: Vec<PeerStatus>,
}

/// A leader's view of one follower (`Progress`), with what was sent to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// The follower.
    pub id: NodeId,
    /// Highest index known replicated there.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// 0 probe, 1 replicate, 2 snapshot.
    pub state: u8,
    /// `Append` messages sent with entries.
    pub batches_sent: u64,
    /// Entry payload bytes sent.
    pub bytes_sent: u64,
    /// Snapshots it was sent.
    pub snapshots_sent: u64,
}
