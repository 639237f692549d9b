//! Repair of damaged entries from peers (protocol-aware recovery, CTRL: Alagappan et al.,
//! FAST '18), on any node, the leader included.
//!
//! A node whose log marks an entry damaged (a read or a scrub met a record that fails
//! verification, `LogStore::repair`) neither serves nor applies it: the leader sends no batch
//! that would hold it, a follower stops applying before it. On each tick the node asks one
//! peer at a time for its copies of the first damaged range, in turn: the leader it knows
//! first, then every member of every configuration it tracks, by id (for pending slots, the
//! nodes they moved from come before them). A copy is written only
//! when its (index, term) is the one this node's own index records, which by Log Matching
//! makes it the same entry, committed or not (the store checks it: `RepairRefused` otherwise).
//!
//! When every peer answered without the entries (compacted, damaged there too), and they lie
//! above the commit index with every other member saying its log never held them, no quorum
//! ever held them: they are cut (`RepairReport::cut`), as recovery cuts a torn tail.
//! Otherwise the range is lost here: it is reported (`RepairReport::lost`), and
//! - if this node applied it, it snapshots (unless a snapshot covers it) and compacts the log
//!   through it: the damaged bytes are gone, and a follower that needs them gets a snapshot;
//! - otherwise it asks its peers in turn, the leader first, for a snapshot that covers it
//!   (`SnapshotRequest`), and installs the first one offered (`catch_up`): a snapshot holds
//!   only committed state, so whoever offers it, leader or follower. When none does, it asks
//!   again after `LOST_RETRY_ROUNDS` rounds of `resend_ticks`.
//!
//! A replica whose state machine lags its log's start (`Replica::behind`: recovery dropped a
//! prefix of committed entries with a missing segment) asks for such a snapshot the same way,
//! and so does one waiting for slots it became a holder of (`slot_moves`), of which it pulls
//! only those slots' files.
//!
//! Invariants:
//! 1. At most one request is outstanding, for the first damaged range (at most `ENTRIES_MAX`
//!    entries): first for its entries, then for a snapshot covering it; else for a snapshot
//!    covering the log's start (`behind`), else for one holding pending slots. It goes to the next
//!    peer when the last one answered without, or did not answer within `resend_ticks`.
//! 2. Repair messages change no term and no leader: their content is verified by (index,
//!    term) and by snapshot manifests, whatever the sender's term.
//! 3. A peer answers with what its reads return: never a damaged entry (the store's reads
//!    never return one).

use std::collections::VecDeque;

use bytes::Bytes;

use super::catch_up::{Receiving, Source};
use super::machine::StateMachine;
use super::membership::{Configuration, CONFIG_KIND};
use super::message::{Message, NodeId, RepairReport, Repaired};
use super::replica::Replica;
use super::wire::ENTRIES_MAX;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::snapshot::ChunkRequest;

/// Payload bytes a peer puts in one `RepairReply`.
const REPAIR_BYTES_MAX: u64 = 4 << 20;
/// Repaired and lost ranges a report keeps (the most recent).
pub const REPORTS_MAX: usize = 256;
/// After every peer was asked in vain, the next round of asking waits this many
/// `resend_ticks`.
const LOST_RETRY_ROUNDS: u64 = 10;

/// What a node is repairing and has repaired.
#[derive(Debug, Default)]
pub(super) struct Repairs {
    /// The request outstanding.
    asking: Option<Asking>,
    repaired: VecDeque<Repaired>,
    lost: VecDeque<(u64, u64)>,
    cut: VecDeque<(u64, u64)>,
}

/// A range asked of peers in turn.
#[derive(Debug)]
struct Asking {
    first: u64,
    last: u64,
    /// Asking for the entries, then for a snapshot covering them.
    want: Want,
    /// Peers asked so far for `want` (the last is being asked), in order.
    asked: Vec<NodeId>,
    /// Peers that answered that their log never held the range's first entry.
    lacking: Vec<NodeId>,
    /// When the last one was asked (or, after every peer, when asking may start over).
    sent_at: u64,
}

impl Asking {
    fn new(first: u64, last: u64, want: Want) -> Self {
        Asking { first, last, want, asked: Vec::new(), lacking: Vec::new(), sent_at: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Entries,
    Snapshot,
    /// A snapshot at or above the applied index holding pending slots.
    Slots,
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
            cut: self.repairs.cut.iter().copied().collect(),
        }
    }

    /// Asks the next peer about the first damaged range, when nothing is outstanding or the
    /// last peer asked did not answer in time (invariant 1).
    pub(super) fn repair_tick(&mut self) -> Result<()> {
        let Some((first, last, want)) = self.repair_target() else {
            self.repairs.asking = None;
            return Ok(());
        };
        let asking = match self.repairs.asking.take() {
            Some(asking) if asking.first == first && asking.last == last => asking,
            _ => Asking::new(first, last, want),
        };
        // A peer asked has `resend_ticks` to answer; before a round, `sent_at` is a pause.
        let waiting = if asking.asked.is_empty() {
            self.now < asking.sent_at
        } else {
            self.now < asking.sent_at.saturating_add(self.options.resend_ticks)
        };
        self.repairs.asking = Some(asking);
        if waiting {
            return Ok(());
        }
        if self.receiving.as_ref().is_some_and(|r| r.source != Source::Leader) {
            self.receiving = None; // the peer's transfer stalled: the next peer
        }
        self.ask_next_peer()
    }

    /// What to ask peers for: the first damaged range's entries (at most `ENTRIES_MAX`); when
    /// the state machine lags the log's start (`Replica::behind`), a snapshot; when slots are
    /// pending (`slot_moves`), a snapshot at the applied index at least.
    fn repair_target(&self) -> Option<(u64, u64, Want)> {
        if let Some(range) = self.log.damaged().into_iter().next() {
            let first = *range.start();
            let last = (*range.end()).min(first.saturating_add(u64::from(ENTRIES_MAX) - 1));
            return Some((first, last, Want::Entries));
        }
        if let Some(index) = self.behind {
            return Some((index, index, Want::Snapshot));
        }
        let applied = self.log.applied_index();
        self.slot_moves.waiting().then_some((applied, applied, Want::Slots))
    }

    /// Asks the next peer not asked yet; when none is left, the entries are lost here and
    /// the same peers are asked for a snapshot, then everything starts over later.
    fn ask_next_peer(&mut self) -> Result<()> {
        // The range may be gone meanwhile (repaired, compacted, truncated): the next tick
        // starts from what is wanted then.
        let target = self.repair_target().map(|(first, ..)| first);
        if self.repairs.asking.as_ref().map(|a| a.first) != target {
            self.repairs.asking = None;
            return Ok(());
        }
        let mut candidates: Vec<NodeId> = Vec::new();
        let former = match self.repairs.asking.as_ref().map(|a| a.want) {
            Some(Want::Slots) => self.slot_moves.former_holders(),
            _ => Vec::new(),
        };
        let everyone = self.membership.everyone();
        for id in former.into_iter().chain([self.leader_id]).chain(everyone) {
            if id != 0 && id != self.id && !candidates.contains(&id) {
                candidates.push(id);
            }
        }
        let Some(asking) = self.repairs.asking.as_mut() else { return Ok(()) };
        if let Some(peer) = candidates.into_iter().find(|id| !asking.asked.contains(id)) {
            asking.asked.push(peer);
            asking.sent_at = self.now;
            let (first, last, term) = (asking.first, asking.last, self.term);
            let request = match asking.want {
                Want::Entries => {
                    let first_term = self.log.term(first)?;
                    Message::RepairRequest { term, first, last, first_term }
                }
                Want::Snapshot => Message::SnapshotRequest { term, index: last },
                // Any snapshot the log can bring forward will do (`slot_moves`).
                Want::Slots => {
                    let index = self.log.first_index() - 1;
                    Message::SnapshotRequest { term, index }
                }
            };
            self.outbox.push(self.envelope(peer, request));
            return Ok(());
        }
        let (first, last) = (asking.first, asking.last);
        if asking.want == Want::Entries {
            let lacking = std::mem::take(&mut asking.lacking);
            if self.never_committed(first, &lacking)? {
                self.repairs.asking = None;
                return self.cut_from(first);
            }
            let Some(asking) = self.repairs.asking.as_mut() else { return Ok(()) };
            if self.repairs.lost.back() != Some(&(first, last)) {
                push_bounded(&mut self.repairs.lost, (first, last));
            }
            if self.log.applied_index() >= last {
                self.repairs.asking = None;
                return self.compact_past(last);
            }
            *asking = Asking::new(first, last, Want::Snapshot);
            return self.ask_next_peer();
        }
        // Nobody could help: ask everyone again later (a peer may catch up or snapshot).
        let pause = self.options.resend_ticks.saturating_mul(LOST_RETRY_ROUNDS);
        let want = self.repair_target().map_or(Want::Entries, |(.., want)| want);
        let mut again = Asking::new(first, last, want);
        again.sent_at = self.now.saturating_add(pause);
        self.repairs.asking = Some(again);
        Ok(())
    }

    /// Whether the entry at `first` can never have been committed: it lies above the commit
    /// index, and every other member of every configuration this node knows from there on
    /// (the one in effect, and any in the readable entries after `first`) answered that its
    /// log never held it, each configuration having another voter. A quorum of any of them
    /// then never held it (one change at a time: the configuration the damaged entry may
    /// hold differs from the one before by one member, already asked).
    fn never_committed(&self, first: u64, lacking: &[NodeId]) -> Result<bool> {
        if first <= self.log.commit_index() {
            return Ok(false);
        }
        let mut configs = vec![self.membership.current().clone()];
        let mut next = first + 1;
        while next <= self.log.last_index() {
            let batch = match self.log.entries(next, self.log.last_index() + 1, 1 << 20) {
                Ok(batch) if !batch.is_empty() => batch,
                _ => return Ok(false), // unreadable past the damage too: undecided
            };
            next += batch.len() as u64;
            for entry in batch.iter().filter(|e| e.kind == CONFIG_KIND) {
                configs.push(Configuration::decode(&entry.payload)?);
            }
        }
        Ok(configs.iter().all(|config| {
            let others: Vec<NodeId> =
                config.members().into_iter().filter(|m| *m != self.id).collect();
            config.voters().iter().any(|v| *v != self.id)
                && others.iter().all(|m| lacking.contains(m))
        }))
    }

    /// Cuts the damaged uncommitted tail from `first` (`never_committed`), as recovery cuts a
    /// torn tail: durable when it returns; a leader sends the entries again.
    fn cut_from(&mut self, first: u64) -> Result<()> {
        let last = self.log.last_index();
        self.log.truncate_uncommitted(first)?;
        push_bounded(&mut self.repairs.cut, (first, last));
        self.track_membership()
    }

    /// Lost entries this node applied: a snapshot covers them, then the log forgets them.
    fn compact_past(&mut self, last: u64) -> Result<()> {
        let covered = self.snapshots.latest()?.is_some_and(|meta| meta.index >= last);
        if !covered {
            self.snapshot()?;
        }
        self.membership.fold_through(last);
        self.log.compact(last)
    }

    /// Answers a peer's request with the copies this node's reads return, or says that its
    /// log never held `(first, first_term)`.
    pub(super) fn on_repair_request(
        &mut self,
        from: NodeId,
        first: u64,
        last: u64,
        first_term: u64,
    ) -> Result<()> {
        let lacks = first > self.log.last_index()
            || (first >= self.log.first_index()
                && self.log.term(first).is_ok_and(|term| term != first_term));
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
        let reply = Message::RepairReply { term: self.term, first, last, lacks, entries };
        self.outbox.push(self.envelope(from, reply));
        Ok(())
    }

    /// A chunk of the snapshot a peer offered arrived: its transfer is alive.
    pub(super) fn repair_progressed(&mut self) {
        if let Some(asking) = self.repairs.asking.as_mut() {
            asking.sent_at = self.now;
        }
    }

    /// Whether `from`'s answer is the one awaited for `want` of the range from `first`.
    fn awaited(&self, from: NodeId, want: Want, first: Option<u64>) -> bool {
        self.repairs.asking.as_ref().is_some_and(|a| {
            a.want == want && a.asked.last() == Some(&from) && first.is_none_or(|f| f == a.first)
        })
    }

    /// Writes a peer's copies over the damaged entries they match; a peer without them (or
    /// whose copies are of another term) is passed over for the next.
    pub(super) fn on_repair_reply(
        &mut self,
        from: NodeId,
        first: u64,
        lacks: bool,
        entries: Vec<Entry>,
    ) -> Result<()> {
        if !self.awaited(from, Want::Entries, Some(first)) {
            return Ok(());
        }
        if lacks {
            if let Some(asking) = self.repairs.asking.as_mut() {
                asking.lacking.push(from);
            }
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
            Err(error) => Err(error),
        }
    }

    /// Offers a peer that lost entries through `index` this node's latest snapshot, taking
    /// one first if it does not cover them and this node applied them; an empty offer if
    /// neither.
    pub(super) fn on_snapshot_request(&mut self, from: NodeId, index: u64) -> Result<()> {
        let covered = self.snapshots.latest()?.is_some_and(|meta| meta.index >= index);
        if !covered && self.log.applied_index() >= index {
            self.snapshot()?;
        }
        let offer = match self.snapshots.latest()?.filter(|meta| meta.index >= index) {
            Some(meta) => {
                let manifest = Bytes::copy_from_slice(self.snapshots.source(&meta)?.manifest());
                Message::RepairOffer { term: self.term, index: meta.index, manifest }
            }
            None => Message::RepairOffer { term: self.term, index, manifest: Bytes::new() },
        };
        self.outbox.push(self.envelope(from, offer));
        Ok(())
    }

    /// Takes a peer's offer of a snapshot covering the lost entries or holding pending
    /// slots, or asks the next peer.
    pub(super) fn on_repair_offer(&mut self, from: NodeId, manifest: Bytes) -> Result<()> {
        let source = if self.awaited(from, Want::Snapshot, None) {
            Source::Peer
        } else if self.awaited(from, Want::Slots, None) {
            Source::Slots
        } else {
            return Ok(());
        };
        if manifest.is_empty() {
            return self.ask_next_peer();
        }
        self.receiving = Some(Receiving { from, source, manifest });
        self.pull()
    }

    /// `from`'s snapshot does not hold what is wanted: the next peer.
    pub(super) fn snapshot_declined(&mut self, from: NodeId) -> Result<()> {
        if self.repairs.asking.as_ref().is_some_and(|a| a.asked.last() == Some(&from)) {
            return self.ask_next_peer();
        }
        Ok(())
    }

    /// Slots were pulled: what is still pending is asked of everyone again, from the first.
    pub(super) fn slots_pulled(&mut self) {
        self.repairs.asking = None;
    }

    /// Serves chunks of this node's latest snapshot to a peer repairing from it, or offers
    /// it again when the one pulled is gone.
    pub(super) fn on_repair_pull(
        &mut self,
        from: NodeId,
        index: u64,
        requests: &[ChunkRequest],
    ) -> Result<()> {
        // The snapshot pulled may have been replaced by another of the same index (a slot
        // pull, an install): then the files asked for are offered again from the new one.
        let serves = |meta: &crate::snapshot::SnapshotMeta| {
            meta.index == index
                && requests.iter().all(|r| {
                    meta.file(r.slot, &r.name)
                        .is_some_and(|file| r.offset.saturating_add(u64::from(r.len)) <= file.size)
                })
        };
        let Some(meta) = self.snapshots.latest()?.filter(serves) else {
            return self.on_snapshot_request(from, index);
        };
        let chunks = self.chunks(&meta, requests)?;
        let message = Message::RepairChunks { term: self.term, index, chunks };
        self.outbox.push(self.envelope(from, message));
        Ok(())
    }
}
impl Repairs {
    /// Reports `[first, last]` lost here (recovery dropped it with a missing segment).
    pub(super) fn note_lost(&mut self, first: u64, last: u64) {
        push_bounded(&mut self.lost, (first, last));
    }
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == REPORTS_MAX {
        list.pop_front();
    }
    list.push_back(item);
}
