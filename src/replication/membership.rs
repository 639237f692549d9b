//! Membership: the group's configuration (voters and learners), the changes a leader may
//! propose, and how a node tracks the configuration its log holds.
//!
//! One change at a time (Raft's single-server changes, Ongaro's thesis §4.1): a change adds a
//! learner, promotes a learner to voter, or removes a node. Any two configurations one change
//! apart have overlapping majorities, so no joint phase is needed, provided a change is
//! proposed only once the previous one is committed (the leader refuses otherwise).
//!
//! Invariants:
//! 1. A configuration takes effect on a node when its entry (kind `CONFIG_KIND`, payload the
//!    *resulting* configuration) is appended to that node's log, committed or not: the node's
//!    configuration is the one of the last such entry in its log, else the one of its latest
//!    snapshot, else the bootstrap one given to `Replica::open`.
//! 2. A truncation that removes a configuration entry reverts to the one before it
//!    (`Tracker::track` re-reads what the log holds above the commit index).
//! 3. Voters and learners are disjoint, sorted, without 0; there is at least one voter; at most
//!    `MEMBERS_MAX` nodes. Decoding checks all of it before allocating.

use super::message::NodeId;
use crate::error::{Error, Result};
use crate::fs::FileSystem;
use crate::RaftLog;

/// The entry kind of a configuration change.
pub const CONFIG_KIND: u8 = 2;
/// Most nodes (voters and learners) in one configuration.
pub const MEMBERS_MAX: usize = 64;

const MAGIC: &[u8; 4] = b"RLCF";
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 8;

/// The voters and learners of a group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Configuration {
    voters: Vec<NodeId>,
    learners: Vec<NodeId>,
}

/// A change a leader proposes with `Replica::change_membership`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChange {
    /// A new node joins as a learner: it receives entries (and a snapshot) but does not vote.
    AddLearner(NodeId),
    /// A learner becomes a voter (the leader requires it to hold the committed log first).
    Promote(NodeId),
    /// A voter or learner leaves.
    Remove(NodeId),
}

fn refuse(reason: &'static str) -> Error {
    Error::MembershipChange { reason }
}

impl Configuration {
    /// Voters `voters` and learners `learners` (each sorted and deduplicated here).
    pub fn new(voters: &[NodeId], learners: &[NodeId]) -> Result<Self> {
        let sorted = |ids: &[NodeId]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let config = Configuration { voters: sorted(voters), learners: sorted(learners) };
        config.check().map_err(refuse)?;
        Ok(config)
    }

    fn check(&self) -> std::result::Result<(), &'static str> {
        if self.voters.is_empty() {
            return Err("a configuration needs a voter");
        }
        if self.voters.len() + self.learners.len() > MEMBERS_MAX {
            return Err("more than 64 members");
        }
        if self.voters.contains(&0) || self.learners.contains(&0) {
            return Err("node id 0");
        }
        if self.voters.iter().any(|id| self.learners.contains(id)) {
            return Err("a node both voter and learner");
        }
        Ok(())
    }

    /// The voters, ascending.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The learners, ascending.
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Whether `id` is a voter.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Voters and learners, ascending.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all = [self.voters.as_slice(), self.learners.as_slice()].concat();
        all.sort_unstable();
        all
    }

    /// Votes a decision needs: a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The configuration `change` makes of this one.
    pub fn apply(&self, change: ConfChange) -> Result<Configuration> {
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner(id) if self.contains(id) => {
                return Err(refuse("already a member"))
            }
            ConfChange::AddLearner(id) => next.learners.push(id),
            ConfChange::Promote(id) if !self.learners.contains(&id) => {
                return Err(refuse("not a learner"))
            }
            ConfChange::Promote(id) => {
                next.learners.retain(|l| *l != id);
                next.voters.push(id);
            }
            ConfChange::Remove(id) if !self.contains(id) => return Err(refuse("not a member")),
            ConfChange::Remove(id) => {
                next.voters.retain(|v| *v != id);
                next.learners.retain(|l| *l != id);
            }
        }
        Configuration::new(&next.voters, &next.learners)
    }

    /// The entry payload (and snapshot configuration) form: `"RLCF"`, version 1, reserved 0,
    /// voter count, learner count, then the voters' and the learners' ids (u64 LE each).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_BYTES + 8 * (self.voters.len() + self.learners.len()));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[VERSION, 0, self.voters.len() as u8, self.learners.len() as u8]);
        for id in self.voters.iter().chain(&self.learners) {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// Decodes `bytes` (an entry's payload, a snapshot's configuration, a peer's message):
    /// every count and id checked, nothing allocated beyond `MEMBERS_MAX` ids.
    pub fn decode(bytes: &[u8]) -> Result<Configuration> {
        let bad = |reason| Error::BadMessage { reason };
        if bytes.len() < HEADER_BYTES || &bytes[..4] != MAGIC {
            return Err(bad("configuration: magic"));
        }
        if bytes[4] != VERSION || bytes[5] != 0 {
            return Err(bad("configuration: version"));
        }
        let (voters, learners) = (usize::from(bytes[6]), usize::from(bytes[7]));
        if voters + learners > MEMBERS_MAX || bytes.len() != HEADER_BYTES + 8 * (voters + learners)
        {
            return Err(bad("configuration: length"));
        }
        let ids: Vec<NodeId> = bytes[HEADER_BYTES..]
            .chunks_exact(8)
            .map(|id| u64::from_le_bytes(id.try_into().expect("8 bytes")))
            .collect();
        let config =
            Configuration { voters: ids[..voters].to_vec(), learners: ids[voters..].to_vec() };
        let canonical = Configuration::new(&config.voters, &config.learners)
            .map_err(|_| bad("configuration: members"))?;
        if canonical != config {
            return Err(bad("configuration: members not sorted or repeated"));
        }
        Ok(config)
    }
}

/// A node's view of the configurations its log holds (invariants 1 and 2).
#[derive(Debug, Clone)]
pub(super) struct Tracker {
    /// The configuration at `base_index` (a snapshot's, or the bootstrap one at 0).
    base: (u64, Configuration),
    /// Configuration entries above `base_index` in the log: (index, term, configuration).
    entries: Vec<(u64, u64, Configuration)>,
    /// The log was read through this (index, term).
    scanned: (u64, u64),
    /// The commit index when the log was last read: entries at or below it were read as
    /// they stay (a later truncation replaces only entries above it).
    stable: u64,
    /// This node was a member of some configuration it held.
    was_member: bool,
    /// The first and last damaged entries the last read skipped (read again by the next,
    /// once repaired): any of them may be a configuration entry.
    skipped: Option<(u64, u64)>,
}

impl Tracker {
    /// Tracks from `config` at `index` (of `term`), then whatever the log holds after it.
    pub fn new<F: FileSystem>(
        id: NodeId,
        (index, term): (u64, u64),
        config: Configuration,
        log: &RaftLog<F>,
    ) -> Result<Self> {
        let was_member = config.contains(id);
        let mut tracker = Tracker {
            base: (index, config),
            entries: Vec::new(),
            scanned: (index, term),
            stable: index,
            was_member,
            skipped: None,
        };
        tracker.track(id, log)?;
        Ok(tracker)
    }

    /// Tracks a log that starts at `index + 1` (of `term` at `index`) while the entries
    /// before it were lost (a missing segment): the configurations they held are unknown, so
    /// `config` (the latest snapshot's or the bootstrap one) serves only to know whom to ask,
    /// until a committed configuration entry follows or a snapshot rebases the tracker.
    pub fn after_gap<F: FileSystem>(
        id: NodeId,
        (index, term): (u64, u64),
        config: Configuration,
        log: &RaftLog<F>,
    ) -> Result<Self> {
        let mut tracker = Tracker::new(id, (index, term), config, log)?;
        tracker.skipped = Some((0, index));
        Ok(tracker)
    }

    /// The configuration in effect: the last one the log holds.
    pub fn current(&self) -> &Configuration {
        self.entries.last().map_or(&self.base.1, |(_, _, config)| config)
    }

    /// The index of the entry of the current configuration (the base's index if none).
    pub fn current_index(&self) -> u64 {
        self.entries.last().map_or(self.base.0, |(index, ..)| *index)
    }

    /// The configuration before the current one, while the current one's entry is not
    /// committed at `commit` (its members may still lead or follow).
    pub fn previous(&self, commit: u64) -> Option<&Configuration> {
        let (index, ..) = self.entries.last()?;
        if *index <= commit {
            return None;
        }
        let before = self.entries.len() - 1;
        Some(self.entries[..before].last().map_or(&self.base.1, |(_, _, config)| config))
    }

    /// Every member of every configuration tracked (the base's and those the log holds),
    /// ascending: whom to ask for what this node lacks.
    pub fn everyone(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = std::iter::once(&self.base.1)
            .chain(self.entries.iter().map(|(_, _, config)| config))
            .flat_map(Configuration::members)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The configuration in effect at `index` (at or above the base's).
    pub fn at(&self, index: u64) -> &Configuration {
        self.entries
            .iter()
            .rev()
            .find(|(at, ..)| *at <= index)
            .map_or(&self.base.1, |(_, _, config)| config)
    }

    /// The damaged entry the log could not be read past, if any (configurations beyond it
    /// The last damaged entry the log could not be read at, unless a committed configuration
    /// entry follows it (its payload is the whole configuration, so what the damaged entries
    /// held no longer matters): configurations beyond it are then unknown.
    pub fn unknown_past(&self, commit: u64) -> Option<u64> {
        let (_, last_skipped) = self.skipped?;
        let settled =
            self.entries.iter().any(|(index, ..)| *index > last_skipped && *index <= commit);
        (!settled).then_some(last_skipped)
    }

    /// Whether this node was a member once and a committed configuration excludes it.
    pub fn removed(&self, id: NodeId, commit: u64) -> bool {
        self.was_member && !self.current().contains(id) && self.current_index() <= commit
    }

    /// Reads what the log appended or replaced since the last call. A truncation replaces
    /// only entries above the commit index of the last call (the commit may have moved past
    /// the replaced entries since), which are read again.
    pub fn track<F: FileSystem>(&mut self, id: NodeId, log: &RaftLog<F>) -> Result<()> {
        let last = log.last_index();
        let (scanned, term) = self.scanned;
        let diverged = scanned > last || log.term(scanned).ok() != Some(term);
        let from = if diverged { self.stable.max(self.base.0) + 1 } else { scanned + 1 };
        // Damaged entries skipped last time are read again (they may have been repaired);
        // entries lost before the log's start stay unknown.
        let from = match self.skipped {
            Some((first, _)) if first >= log.first_index() => {
                self.skipped = None;
                from.min(first)
            }
            _ => from,
        };
        self.entries.retain(|(index, ..)| *index < from);
        let mut next = from;
        while next <= last {
            let batch = match log.entries(next, last + 1, 1 << 20) {
                Err(Error::Damaged { index, .. }) => {
                    let first = self.skipped.map_or(index, |(first, _)| first);
                    self.skipped = Some((first, index));
                    next = index + 1;
                    continue;
                }
                batch => batch?,
            };
            let Some(end) = batch.last().map(|e| e.index) else { break };
            for entry in batch.iter().filter(|e| e.kind == CONFIG_KIND) {
                let config = Configuration::decode(&entry.payload)?;
                self.was_member |= config.contains(id);
                self.entries.push((entry.index, entry.term, config));
            }
            next = end + 1;
        }
        self.scanned = (last, log.term(last)?);
        self.stable = log.commit_index().min(last);
        Ok(())
    }

    /// Notes that `last` (of `term`) was appended right after `prev_last` with no
    /// configuration entry among them (a leader's proposals): nothing is read again when the
    /// log was read through `prev_last` as it stands; otherwise this is `track`.
    pub fn appended_plain<F: FileSystem>(
        &mut self,
        id: NodeId,
        prev_last: u64,
        (last, term): (u64, u64),
        log: &RaftLog<F>,
    ) -> Result<()> {
        let (scanned, scanned_term) = self.scanned;
        if scanned == prev_last && log.term(prev_last).ok() == Some(scanned_term) {
            self.scanned = (last, term);
            return Ok(());
        }
        self.track(id, log)
    }

    /// Starts over from a snapshot's configuration at `(index, term)`.
    pub fn rebase<F: FileSystem>(
        &mut self,
        id: NodeId,
        (index, term): (u64, u64),
        config: Configuration,
        log: &RaftLog<F>,
    ) -> Result<()> {
        let was_member = self.was_member;
        *self = Tracker::new(id, (index, term), config, log)?;
        self.was_member |= was_member;
        Ok(())
    }

    /// Forgets entries at or below `index` (folded into the base), as compaction will make
    /// them unreadable.
    pub fn fold_through(&mut self, index: u64) {
        // Damaged entries at or below it no longer matter: they are folded too.
        self.skipped = self
            .skipped
            .filter(|(_, last)| *last > index)
            .map(|(first, last)| (first.max(index + 1), last));
        let keep_from = self.entries.partition_point(|(at, ..)| *at <= index);
        if keep_from > 0 {
            let (_, _, config) = self.entries[keep_from - 1].clone();
            self.base = (index, config);
            self.entries.drain(..keep_from);
        } else if index > self.base.0 {
            self.base.0 = index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_one_at_a_time_and_keep_the_invariants() {
        let config = Configuration::new(&[3, 1, 2], &[]).unwrap();
        let added = config.apply(ConfChange::AddLearner(4)).unwrap();
        assert_eq!((added.voters(), added.learners()), (&[1, 2, 3][..], &[4][..]));
        assert_eq!(added.quorum(), 2, "learners do not count");
        let promoted = added.apply(ConfChange::Promote(4)).unwrap();
        assert_eq!((promoted.voters(), promoted.quorum()), (&[1, 2, 3, 4][..], 3));
        let removed = promoted.apply(ConfChange::Remove(1)).unwrap();
        assert_eq!(removed.voters(), &[2, 3, 4]);
        for (change, from) in [
            (ConfChange::AddLearner(2), &config),
            (ConfChange::Promote(2), &config),
            (ConfChange::Remove(9), &config),
        ] {
            assert!(
                matches!(from.apply(change), Err(Error::MembershipChange { .. })),
                "{change:?}"
            );
        }
        let alone = Configuration::new(&[1], &[]).unwrap();
        assert!(alone.apply(ConfChange::Remove(1)).is_err(), "no voter left");
    }

    #[test]
    fn the_encoding_round_trips_and_refuses_bad_bytes_without_panicking() {
        let config = Configuration::new(&[1, 2, 5], &[7]).unwrap();
        let bytes = config.encode();
        assert_eq!(Configuration::decode(&bytes).unwrap(), config);
        for cut in 0..bytes.len() {
            assert!(Configuration::decode(&bytes[..cut]).is_err());
        }
        let mut unsorted = bytes.clone();
        unsorted[8..16].copy_from_slice(&9u64.to_le_bytes());
        assert!(Configuration::decode(&unsorted).is_err());
        let mut huge = bytes.clone();
        huge[6] = 200;
        assert!(Configuration::decode(&huge).is_err());
        for byte in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[byte] ^= 0x10;
            let _ = Configuration::decode(&flipped);
        }
    }
}

#[cfg(test)]
mod tracker_tests {
    use super::*;
    use crate::fs::SimFs;
    use crate::{Entry, LogStore, Options};

    fn log() -> RaftLog<SimFs> {
        RaftLog::new(LogStore::open_with(SimFs::new(), "/log", Options::default()).unwrap())
            .unwrap()
    }

    fn config_entry(index: u64, term: u64, voters: &[NodeId]) -> Entry {
        let payload = Configuration::new(voters, &[]).unwrap().encode();
        Entry::new(index, term, payload).with_kind(CONFIG_KIND)
    }

    #[test]
    fn the_tracker_follows_appends_truncations_and_folds() {
        let log = log();
        let bootstrap = Configuration::new(&[1, 2, 3], &[]).unwrap();
        let mut tracker = Tracker::new(1, (0, 0), bootstrap.clone(), &log).unwrap();
        log.append(&[Entry::new(1, 1, "a"), config_entry(2, 1, &[1, 2]), Entry::new(3, 1, "b")])
            .unwrap();
        tracker.track(1, &log).unwrap();
        assert_eq!((tracker.current().voters(), tracker.current_index()), (&[1, 2][..], 2));
        assert_eq!(tracker.previous(1), Some(&bootstrap), "not committed at 1");
        assert_eq!(tracker.at(1), &bootstrap);
        // A leader of term 2 replaces index 2 on: the configuration reverts, whatever the
        // commit index does meanwhile.
        log.commit_to(1).unwrap();
        log.append(&[Entry::new(2, 2, "c"), config_entry(3, 2, &[1, 3])]).unwrap();
        log.commit_to(3).unwrap();
        tracker.track(1, &log).unwrap();
        assert_eq!((tracker.current().voters(), tracker.current_index()), (&[1, 3][..], 3));
        assert_eq!(tracker.previous(3), None, "committed");
        assert!(!tracker.removed(1, 3));
        // Folding forgets entries the compaction will drop, keeping the one in effect.
        tracker.fold_through(3);
        assert_eq!((tracker.current().voters(), tracker.current_index()), (&[1, 3][..], 3));
        log.append(&[config_entry(4, 2, &[3])]).unwrap();
        log.commit_to(4).unwrap();
        tracker.track(1, &log).unwrap();
        assert!(tracker.removed(1, 4), "a committed configuration without node 1");
    }
}
