//! The replication shim: a thin, engine-agnostic replication layer for one Raft group over
//! `RaftLog` and `SnapshotStore` (DESIGN.md, layer 7).
//!
//! Elections are not its job: whoever runs the group (an operator, a test, an election module)
//! collects votes with `Replica::vote` and makes the winner lead with `become_leader`.
//! Everything else that moves entries between nodes is its job:
//! - the leader sequences proposals (`propose`), keeps a `Progress` per follower (probe,
//!   replicate, snapshot), pipelines `Append` batches bounded by count and bytes, reads them
//!   from the log (sealed segments through the mmap index, payloads shared, not copied), and
//!   commits by quorum from cumulative acks;
//! - a follower checks the term, appends through `maybe_append` (a blocking appender or a
//!   sliding window for out-of-order batches) and answers only once entries and hard state
//!   are durable;
//! - a follower whose next entry is compacted on the leader pulls the latest snapshot in
//!   chunks (resumable across crashes of either side), then the log;
//! - membership changes one at a time (`membership`): learners join, catch up and are
//!   promoted, nodes are removed; the quorum follows the configuration the log holds; slots
//!   are assigned to voters by rendezvous hashing (`slots`), and the nodes that become a
//!   slot's holders pull its files from a peer's snapshot (`slot_moves`);
//! - relay fan-out (`relay`, optional): a few followers forward the leader's batches to the
//!   others;
//! - repair from peers (`repair`, CTRL): a damaged entry is neither served nor applied, and
//!   is rewritten from a peer's copy of the same (index, term), or reported lost;
//! - messages have a versioned, checksummed wire format (`wire`, format/SPEC.md); transports
//!   sit behind `Transport`: TCP (`tcp`) and a seeded simulated network (`sim`, feature
//!   `sim`).
//!
//! Invariants (each file states its own):
//! 1. `Replica` is a deterministic function of its inputs (messages, ticks, proposals) and its
//!    disk: it owns no thread, clock or randomness.
//! 2. Nothing a node answers promises more than its disk holds (see `replica.rs`).

mod appender;
mod catch_up;
mod leader;
mod lifecycle;
mod machine;
mod membership;
mod message;
mod options;
mod progress;
mod relay;
mod repair;
mod replica;
mod server;
#[cfg(feature = "sim")]
pub mod sim;
mod slot_floor;
mod slot_machine;
mod slot_moves;
pub mod slots;
pub mod tcp;
pub mod wire;

pub use appender::{Appender, AppenderKind, Outcome};
pub use machine::{ChecksumMachine, SlotLayout, StateMachine};
pub use membership::{ConfChange, Configuration, CONFIG_KIND, MEMBERS_MAX};
pub use message::{
    Append, AppendReply, AppendStatus, ClientOutcome, ControlOp, Envelope, Message, NodeId,
    NodeStatus, PeerStatus, RepairReport, Repaired, SlotPull,
};
pub use options::ReplicationOptions;
pub use progress::{quorum_index, Progress, ProgressState};
pub use repair::REPORTS_MAX;
pub use replica::{Replica, NOOP_KIND};
pub use server::Server;
pub use slot_machine::{SlotMachine, SlotState, DATA_KIND, SEQUENCE_SLOT};
pub use slot_moves::{PENDING_SLOTS_FILE, PULLS_MAX};

/// How a node's messages travel: the TCP transport between processes, the simulated network
/// in tests.
pub trait Transport {
    /// Queues `envelope` for its receiver. Never blocks on a slow receiver: a message that
    /// cannot be queued is dropped (Raft resends).
    fn send(&mut self, envelope: Envelope);
    /// Appends the messages that arrived for this node to `out`, waiting until `deadline` at
    /// most for the first one.
    fn receive(&mut self, deadline: std::time::Instant, out: &mut Vec<Envelope>);
}
