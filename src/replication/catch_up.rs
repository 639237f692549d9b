//! Receiving a snapshot in chunks: from the leader, when this node's next entry is compacted
//! there; from any peer, when entries lost everywhere are covered by that peer's snapshot
//! (`repair`); or, of a peer's snapshot, only the files of the slots this node became a holder
//! of (`slot_moves`). Either way the transfer resumes across a crash of either side (the
//! receiver checkpoints after each round). Installing a whole snapshot brings the log, the
//! configuration and the state machine in line with it; installing slots brings only those
//! slots.
//!
//! Invariants:
//! 1. One snapshot is received at a time; a new offer replaces the one being received.
//! 2. A snapshot holds only committed state, so it may be installed whoever offers it; only
//!    one from the leader is acknowledged (`Accepted` through its index).

use bytes::Bytes;

use super::machine::StateMachine;
use super::membership::Configuration;
use super::message::{AppendStatus, Message, NodeId};
use super::replica::Replica;
use crate::error::Result;
use crate::fs::FileSystem;
use crate::snapshot::Chunk;

/// Chunk requests a node asks for at a time.
const PULL_REQUESTS: usize = 64;

/// Who offered the snapshot being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The leader, for a follower whose next entry it compacted.
    Leader,
    /// A peer, for entries lost everywhere this node asked (`RepairOffer`).
    Peer,
    /// A peer, for the files of slots this node became a holder of (`RepairOffer`).
    Slots,
}

impl Source {
    /// Whether the chunks come in the leader's messages (`SnapshotChunks`) rather than a
    /// peer's (`RepairChunks`).
    fn leader(self) -> bool {
        self == Source::Leader
    }
}

/// A snapshot being received.
#[derive(Debug, Clone)]
pub(super) struct Receiving {
    pub from: NodeId,
    pub source: Source,
    /// The offered snapshot's manifest.
    pub manifest: Bytes,
}

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// Asks the offerer for what the snapshot being received still lacks, or installs it
    /// when nothing does.
    pub(super) fn pull(&mut self) -> Result<()> {
        let Some(Receiving { from, source, manifest }) = self.receiving.clone() else {
            return Ok(());
        };
        let receiver = self.snapshots.receive(&manifest)?;
        let index = receiver.meta().index;
        if source == Source::Slots {
            let wanted = self.slot_moves.wanted(receiver.meta());
            if wanted.is_empty() || !self.replayable(index) {
                // Holds none of them (any more), or the log cannot bring them forward.
                receiver.abort()?;
                self.receiving = None;
                return self.snapshot_declined(from);
            }
            let requests = receiver.missing(Some(&wanted), PULL_REQUESTS);
            if !requests.is_empty() {
                let pull = Message::RepairPull { term: self.term, index, requests };
                self.outbox.push(self.envelope(from, pull));
                return Ok(());
            }
            let meta = receiver.install_slots(&wanted)?;
            self.receiving = None;
            self.slots_pulled();
            return self.take_slots(&meta, &wanted, from);
        }
        if self.behind.is_none() && self.log.applied_index() >= index {
            // Already applied past it (the offer raced the log): what it covers is committed
            // here, so it matches the offerer's. (Not when the state machine lags the log's
            // start: the log's applied index is then only where the log starts.)
            receiver.abort()?;
            self.receiving = None;
            if source == Source::Leader {
                self.answer(from, AppendStatus::Accepted, index);
            }
            return Ok(());
        }
        let requests = receiver.missing(None, PULL_REQUESTS);
        if !requests.is_empty() {
            let term = self.term;
            let pull = match source {
                Source::Leader => Message::SnapshotPull { term, index, requests },
                Source::Peer | Source::Slots => Message::RepairPull { term, index, requests },
            };
            self.outbox.push(self.envelope(from, pull));
            return Ok(());
        }
        let meta = receiver.install_with_log(&*self.log)?;
        if let Some(layout) = self.machine.slot_layout() {
            self.slot_floor.snapshotted(&meta, layout.count);
        }
        let config = Configuration::decode(&meta.configuration)?;
        self.membership.rebase(self.id, (meta.index, meta.term), config, &self.log)?;
        self.machine.restore(&self.snapshots, &meta)?;
        self.receiving = None;
        self.snapshots_installed += 1;
        if self.behind.is_some_and(|index| meta.index >= index) {
            self.behind = None; // the state machine is at the log's applied index again
        }
        if self.behind.is_none() {
            self.settle_slots(true)?; // the snapshot holds its source's slots, not this node's
        }
        if source == Source::Leader {
            self.appender.reset();
            self.matched_through = meta.index;
            self.answer(from, AppendStatus::Accepted, meta.index);
        }
        Ok(())
    }

    /// Stages chunks of the snapshot at `index` being received from `from`, then asks for
    /// more or installs it.
    pub(super) fn on_chunks(
        &mut self,
        from: NodeId,
        source: Source,
        index: u64,
        chunks: &[Bytes],
    ) -> Result<()> {
        let Some(receiving) = &self.receiving else { return Ok(()) };
        if receiving.from != from || receiving.source.leader() != source.leader() {
            return Ok(());
        }
        let mut receiver = self.snapshots.receive(&receiving.manifest)?;
        if receiver.meta().index != index {
            return Ok(());
        }
        for chunk in chunks {
            receiver.accept(&Chunk::decode(chunk)?)?;
        }
        receiver.checkpoint()?;
        drop(receiver);
        if !source.leader() {
            self.repair_progressed();
        }
        self.pull()
    }
}
