//! Repair of damaged entries from peers (protocol-aware recovery, CTRL: Alagappan et al.,
//! FAST '18), on any node, the leader included.
//!
//! A node whose log marks an entry damaged (a read or a scrub met a record that fails
//! verification, `LogStore::repair`) neither serves nor applies it: the leader sends no batch
//! that would hold it, a follower stops applying before it. On each tick the node asks one
//! peer at a time for its copies of the first damaged range, in turn: the leader it knows
//! first, then every member of its configuration by id. A copy is written only when its
//! (index, term) is the one this node's own index records, which by Log Matching makes it the
//! same entry, committed or not (the store checks it: `RepairRefused` otherwise).
//!
//! When every peer answered without the entries (compacted, damaged there too) the range is
//! lost here: it is reported (`RepairReport::lost`), and
//! - if this node applied it, it snapshots (unless a snapshot covers it) and compacts the log
//!   through it: the damaged bytes are gone, and a follower that needs them gets a snapshot;
//! - otherwise it asks the leader for a snapshot that covers it (`SnapshotRequest`).
//!
//! Invariants:
//! 1. At most one request is outstanding, for the first damaged range (at most `ENTRIES_MAX`
//!    entries); it is asked again of the next peer after `resend_ticks` without an answer.
//! 2. Repair messages change no term and no leader: their content is verified by (index,
//!    term), whatever the sender's term.
//! 3. A peer answers with what its reads return: never a damaged entry (the store's reads
//!    never return one).

use std::collections::VecDeque;

use super::machine::StateMachine;
use super::message::{Message, NodeId, RepairReport, Repaired};
use super::replica::Replica;
use super::wire::ENTRIES_MAX;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::FileSystem;

/// Payload bytes a peer puts in one `RepairReply`.
const REPAIR_BYTES_MAX: u64 = 4 << 20;
/// Repaired and lost ranges a report keeps (the most recent).
pub const REPORTS_MAX: usize = 256;

/// What a node is repairing and has repaired.
#[derive(Debug, Default)]
pub(super) struct Repairs {
    /// The request outstanding.
    asking: Option<Asking>,
    repaired: VecDeque<Repaired>,
    lost: VecDeque<(u64, u64)>,
}

/// A range asked of peers in turn.
#[derive(Debug)]
struct Asking {
    first: u64,
    last: u64,
    /// Peers asked so far (the last is being asked), in order.
    asked: Vec<NodeId>,
    /// When the last one was asked.
    sent_at: u64,
}

impl<F: FileSystem, M: StateMachine<F>> Replica<F, M> {
    /// Verifies every entry of the log's sealed segments (`LogStore::scrub`): damage is then
    /// found at once (at open, say) instead of by the read that meets it. Returns what is
    /// damaged; the next ticks repair it.
    pub fn scrub(&mut self) -> Result<Vec<std::ops::RangeInclusive<u64>>> {
        self.log.scrub()
    }

    /// What this node found damaged, repaired from which peer, and lost.
    pub fn repair_report(&self) -> RepairReport {
        RepairReport {
            damaged: self.log.damaged().into_iter().map(|r| (*r.start(), *r.end())).collect(),
            repaired: self.repairs.repaired.iter().copied().collect(),
            lost: self.repairs.lost.iter().copied().collect(),
        }
    }

    /// Asks the next peer for the first damaged range, when nothing is outstanding or the
    /// last peer asked did not answer in time (invariant 1).
    pub(super) fn repair_tick(&mut self) -> Result<()> {
        let Some(range) = self.log.damaged().into_iter().next() else {
            self.repairs.asking = None;
            return Ok(());
        };
        let first = *range.start();
        let last = (*range.end()).min(first.saturating_add(u64::from(ENTRIES_MAX) - 1));
        let asking = match self.repairs.asking.take() {
            Some(asking) if asking.first == first && asking.last == last => asking,
            _ => Asking { first, last, asked: Vec::new(), sent_at: 0 },
        };
        let waiting = !asking.asked.is_empty()
            && self.now.saturating_sub(asking.sent_at) < self.options.resend_ticks;
        self.repairs.asking = Some(asking);
        if waiting {
            return Ok(());
        }
        self.ask_next_peer()
    }

    /// Asks the next peer not asked yet; when none is left, the range is lost.
    fn ask_next_peer(&mut self) -> Result<()> {
        let Some(asking) = self.repairs.asking.as_mut() else { return Ok(()) };
        let config = self.membership.current();
        let mut candidates: Vec<NodeId> = Vec::new();
        for id in std::iter::once(self.leader_id).chain(config.members()) {
            if id != 0 && id != self.id && !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        match candidates.into_iter().find(|id| !asking.asked.contains(id)) {
            Some(peer) => {
                asking.asked.push(peer);
                asking.sent_at = self.now;
                let (first, last) = (asking.first, asking.last);
                let request = Message::RepairRequest { term: self.term, first, last };
                self.outbox.push(self.envelope(peer, request));
                Ok(())
            }
            None => {
                let (first, last) = (asking.first, asking.last);
                self.repairs.asking = None;
                self.lose(first, last)
            }
        }
    }

    /// Answers a peer's request with the copies this node's reads return.
    pub(super) fn on_repair_request(&mut self, from: NodeId, first: u64, last: u64) -> Result<()> {
        let entries = if first == 0 || last < first || last > self.log.last_index() {
            Vec::new()
        } else {
            let hi = last.saturating_add(1).min(first.saturating_add(u64::from(ENTRIES_MAX)));
            match self.log.entries(first, hi, REPAIR_BYTES_MAX) {
                Ok(entries) => entries,
                Err(
                    Error::Compacted { .. } | Error::Damaged { .. } | Error::Unavailable { .. },
                ) => Vec::new(),
                Err(error) => return Err(error),
            }
        };
        let reply = Message::RepairReply { term: self.term, first, last, entries };
        self.outbox.push(self.envelope(from, reply));
        Ok(())
    }

    /// Writes a peer's copies over the damaged entries they match; a peer without them (or
    /// whose copies are of another term) is passed over for the next.
    pub(super) fn on_repair_reply(
        &mut self,
        from: NodeId,
        first: u64,
        entries: Vec<Entry>,
    ) -> Result<()> {
        let expected = self
            .repairs
            .asking
            .as_ref()
            .is_some_and(|a| a.first == first && a.asked.last() == Some(&from));
        if !expected {
            return Ok(());
        }
        let damaged = self.log.damaged();
        let copies: Vec<Entry> =
            entries.into_iter().filter(|e| damaged.iter().any(|r| r.contains(&e.index))).collect();
        let (Some(lo), Some(hi)) = (copies.first(), copies.last()) else {
            return self.ask_next_peer();
        };
        let (lo, hi) = (lo.index, hi.index);
        match self.log.repair(&copies) {
            Ok(()) => {
                self.repairs.asking = None;
                push_bounded(&mut self.repairs.repaired, Repaired { first: lo, last: hi, from });
                // What the damage held back goes on: the configuration, then applying.
                self.track_membership()
            }
            Err(Error::RepairRefused { .. }) => self.ask_next_peer(),
            Err(error) => Err(error),
        }
    }

    /// No peer holds `[first, last]`: reported; compacted away if applied, else asked of the
    /// leader as a snapshot.
    fn lose(&mut self, first: u64, last: u64) -> Result<()> {
        if self.repairs.lost.back() != Some(&(first, last)) {
            push_bounded(&mut self.repairs.lost, (first, last));
        }
        if self.log.applied_index() >= last {
            let covered = self.snapshots.latest()?.is_some_and(|meta| meta.index >= last);
            if !covered {
                self.snapshot()?;
            }
            self.membership.fold_through(last);
            return self.log.compact(last);
        }
        if self.leader.is_none() && self.leader_id != 0 {
            let request = Message::SnapshotRequest { term: self.term, index: first };
            self.outbox.push(self.envelope(self.leader_id, request));
        }
        Ok(())
    }

    /// A follower lost entries from `index` on: offers it a snapshot that covers them,
    /// taking one first if the latest does not and this leader applied them.
    pub(super) fn on_snapshot_request(&mut self, from: NodeId, index: u64) -> Result<()> {
        let Some(leader) = self.leader.as_ref() else { return Ok(()) };
        if !leader.peers.contains_key(&from) {
            return Ok(());
        }
        let covered = self.snapshots.latest()?.is_some_and(|meta| meta.index >= index);
        if !covered {
            if self.log.applied_index() < index {
                return Ok(()); // lost here too, unapplied: nothing can cover it
            }
            self.snapshot()?;
        }
        self.offer_snapshot(from)
    }
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == REPORTS_MAX {
        list.pop_front();
    }
    list.push_back(item);
}
