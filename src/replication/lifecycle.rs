//! Opening a `Replica` from its disk, and closing it.
//!
//! Invariants:
//! 1. An opened replica's state machine is at its log's applied index, or it is `behind`
//!    (its log starts after its latest snapshot) and applies nothing until a peer's snapshot
//!    covers the log's start.
//! 2. A slotted replica's pending slots are those the configuration at its applied index
//!    assigns it and its snapshot lacks (`slot_moves`); its log is not compacted at open (it
//!    compacts to the floor it learns, `slot_floor`).

use std::sync::Arc;

use super::appender::Appender;
use super::machine::StateMachine;
use super::membership::{Configuration, Tracker};
use super::message::NodeId;
use super::options::ReplicationOptions;
use super::repair::Repairs;
use super::replica::Replica;
use super::slot_floor::SlotFloor;
use super::slot_moves::SlotMoves;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::{SnapshotLog, SnapshotStore};
use crate::RaftLog;

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// A node over `log` and `snapshots`, its state machine restored from the latest snapshot
    /// (the log is brought in line with it: a crash may have stopped an install half way).
    /// `members` are the voters of the group's first configuration (the bootstrap); the
    /// snapshot's configuration and the log's configuration entries supersede it. A node
    /// joining an existing group is not among them: it waits, a non-member, for the leader's
    /// entries or snapshot adding it (give it the group's voters as `members`, so that it
    /// knows the leader).
    pub fn open(
        id: NodeId,
        members: &[NodeId],
        log: RaftLog<F>,
        snapshots: SnapshotStore<F>,
        mut machine: M,
        options: ReplicationOptions,
    ) -> Result<Self> {
        options.validate()?;
        if id == 0 {
            return Err(Error::InvalidOptions("a replica's id must not be 0"));
        }
        let mut base = (0, 0, Configuration::new(members, &[])?);
        let (mut slot_moves, mut slot_floor) = (SlotMoves::default(), SlotFloor::default());
        if let Some(meta) = snapshots.latest()? {
            machine.restore(&snapshots, &meta)?;
            slot_moves.recall(&snapshots, &meta)?;
            if let Some(layout) = machine.slot_layout() {
                slot_floor.snapshotted(&meta, layout.count);
            }
            if log.term(meta.index).ok() == Some(meta.term) {
                // The log holds the snapshot's entry: it stays, `compaction_lag_entries` of it
                // for followers' catch-up (`snapshot` compacts the same way).
                log.commit_to(meta.index)?;
                log.applied_to(meta.index)?;
                if machine.slot_layout().is_none() {
                    // (A slotted group compacts only to the floor it learns: `slot_floor`.)
                    log.compact(meta.index.saturating_sub(options.compaction_lag_entries))?;
                }
            } else {
                log.follow_snapshot(meta.index, meta.term)?;
            }
            base = (meta.index, meta.term, Configuration::decode(&meta.configuration)?);
        }
        let snapshot_index = base.0;
        let log_base = log.first_index() - 1;
        // The state machine starts at the snapshot, and the log should hold what follows it.
        // When it starts later (committed entries were lost with a missing segment), the state
        // machine waits for a snapshot from a peer that covers the log's start (`repair`).
        let behind = (snapshot_index < log_base).then_some(log_base);
        if behind.is_none() && log.applied_index() != snapshot_index {
            return Err(Error::Compacted {
                index: snapshot_index + 1,
                first_index: log.first_index(),
            });
        }
        let membership = match behind {
            None => Tracker::new(id, (base.0, base.1), base.2, &log)?,
            Some(at) => Tracker::after_gap(id, (at, log.term(at)?), base.2, &log)?,
        };
        let mut repairs = Repairs::default();
        if let Some(lost) = &log.recovery_report().lost_prefix {
            repairs.note_lost(lost.indexes.start, lost.indexes.end - 1);
        }
        let term = log.hard_state().term;
        let appender =
            Appender::new(options.appender, options.appender_capacity, options.resend_ticks);
        let mut replica = Replica {
            id,
            membership,
            log: Arc::new(log),
            snapshots,
            machine,
            options,
            term,
            leader_id: 0,
            leader: None,
            appender,
            matched_through: 0,
            receiving: None,
            outbox: Vec::new(),
            after_sync: Vec::new(),
            unsynced: false,
            now: 0,
            snapshots_installed: 0,
            repairs,
            behind,
            slot_moves,
            slot_floor,
        };
        if replica.behind.is_none() {
            replica.settle_slots(false)?;
        }
        Ok(replica)
    }

    /// Makes the log durable and closes its store (sealed: the next open reads no record),
    /// unless a clone of `log()` is still held elsewhere, which then keeps it open.
    pub fn close(self) -> Result<()> {
        self.log.sync()?;
        match Arc::try_unwrap(self.log) {
            Ok(log) => log.into_store().close(),
            Err(_shared) => Ok(()),
        }
    }
}
