//! The simulation's safety checks, run after every step (the list is in the module docs of
//! `replication_sim.rs`).

use std::collections::BTreeMap;

use raftlog::replication::slots;
use raftlog::Error;

use crate::{checksum, Node, Sim, REPLICAS, SLOTS};

impl Sim {
    pub fn check(&mut self) {
        let ids: Vec<u64> = self.machines.keys().copied().collect();
        let mut violations = Vec::new();
        for id in &ids {
            let machine = self.machines.get_mut(id).expect("member");
            let Some(replica) = machine.replica.as_ref() else { continue };
            let log = replica.log();
            let commit = log.commit_index();
            if commit < machine.commit_seen {
                violations.push(format!(
                    "node {id}: commit index went back from {} to {commit}",
                    machine.commit_seen
                ));
            }
            machine.commit_seen = commit;
            let from = (machine.verified_through + 1).max(log.first_index());
            let entries = log.entries(from, log.last_index() + 1, u64::MAX).unwrap_or_default();
            let mut prev_term = log.term(from - 1).unwrap_or(0);
            for entry in &entries {
                let seen = (checksum(&entry.payload), prev_term);
                match self.entries.get(&(entry.index, entry.term)) {
                    Some(known) if *known != seen => violations.push(format!(
                        "node {id}: Log Matching broken at index {} term {}",
                        entry.index, entry.term
                    )),
                    Some(_) => {}
                    None => {
                        self.entries.insert((entry.index, entry.term), seen);
                    }
                }
                prev_term = entry.term;
            }
            machine.verified_through = machine.verified_through.max(commit.min(log.last_index()));
            // A repaired entry is the one Log Matching saw at its (index, term).
            let report = replica.repair_report();
            for repaired in &report.repaired[machine.repairs_checked.min(report.repaired.len())..] {
                let (lo, hi) = (repaired.first.max(log.first_index()), repaired.last + 1);
                let prev = log.term(lo - 1).unwrap_or(0);
                let got = log.entries(lo, hi.min(log.last_index() + 1), u64::MAX);
                let mut prev_term = prev;
                for entry in got.unwrap_or_default() {
                    let seen = (checksum(&entry.payload), prev_term);
                    if self.entries.get(&(entry.index, entry.term)).is_some_and(|k| *k != seen) {
                        violations.push(format!(
                            "node {id}: repaired entry {} from node {} differs from the one \
                             Log Matching saw",
                            entry.index, repaired.from
                        ));
                    }
                    prev_term = entry.term;
                }
            }
            self.repaired += (report.repaired.len() - machine.repairs_checked) as u64;
            self.lost += report.lost.len().saturating_sub(machine.lost_counted) as u64;
            machine.repairs_checked = report.repaired.len();
            machine.lost_counted = report.lost.len();
            self.cut += report.cut.len().saturating_sub(machine.cuts_counted) as u64;
            machine.cuts_counted = report.cut.len();
            self.slot_pulls +=
                replica.slot_pulls().len().saturating_sub(machine.pulls_counted) as u64;
            machine.pulls_counted = replica.slot_pulls().len();
            violations.extend(check_slots(&mut self.slot_states, *id, replica));
            let state = &replica.machine().sequence;
            if state.applied_index > 0 {
                let digest = *self.applied.entry(state.applied_index).or_insert(state.digest);
                if digest != state.digest {
                    violations.push(format!(
                        "node {id}: applied a different sequence through {} ({:?}, entry {:?})",
                        state.applied_index,
                        replica.status(),
                        log.entries(state.applied_index, state.applied_index + 1, u64::MAX)
                    ));
                }
            }
        }
        // Leader Completeness: no running node lacking an acknowledged entry can win an
        // election, i.e. the voters of its configuration whose logs are not more up to date
        // than its own (those that would grant it a vote) are fewer than a quorum. Down and
        // retired nodes are taken as refusing.
        let logs: BTreeMap<u64, (u64, u64)> = self
            .running()
            .filter(|(_, r)| !r.is_removed())
            .map(|(id, r)| (id, (r.log().last_term(), r.log().last_index())))
            .collect();
        for (id, candidate) in self.running() {
            if candidate.is_removed() || !candidate.configuration().is_voter(id) {
                continue;
            }
            let log = candidate.log();
            // One read of the whole log when it reads whole (else entry by entry, for damage).
            let span = (log.last_index() + 1 - log.first_index()) as usize;
            let whole = log
                .entries(log.first_index(), log.last_index() + 1, u64::MAX)
                .ok()
                .filter(|entries| entries.len() == span);
            let acknowledged = self.acknowledged.range(log.first_index()..);
            let lacking = acknowledged.clone().find(|(index, (term, payload))| {
                let at = (**index - log.first_index()) as usize;
                let held = match whole.as_ref().map(|w| w.get(at)) {
                    Some(Some(e)) => e.term == *term && e.payload == *payload,
                    _ => match log.entries(**index, *index + 1, u64::MAX) {
                        Ok(e) => e[0].term == *term && e[0].payload == *payload,
                        // Damaged here: held if of the same term (its repair rewrites it).
                        Err(Error::Damaged { .. }) => log.term(**index).ok() == Some(*term),
                        Err(_) => false,
                    },
                };
                !held
            });
            let Some((index, (term, _))) = lacking else { continue };
            let own = logs[&id];
            let config = candidate.configuration();
            let grants =
                config.voters().iter().filter(|v| logs.get(v).is_some_and(|l| *l <= own)).count();
            if grants >= config.quorum() {
                violations.push(format!(
                    "node {id} lacks acknowledged entry {index} (term {term}) and could win: \
                     {grants} of voters {:?} would vote for it",
                    config.voters()
                ));
            }
        }
        if let Some(v) = violations.into_iter().next() {
            self.fail(v);
        }
    }
}

/// A node waits for exactly the slots the configuration at its applied index assigns it and it
/// lacks (it may keep retired ones too), and a slot's state through an index is the same on
/// every node (`states`: (slot,
/// through) -> (digest, entries) first seen).
fn check_slots(
    states: &mut BTreeMap<(u32, u64), (u64, u64)>,
    id: u64,
    replica: &Node,
) -> Vec<String> {
    let mut violations = Vec::new();
    let machine = replica.machine();
    if replica.log().applied_index() != machine.sequence.applied_index {
        return violations; // behind: waits for a peer's snapshot
    }
    let config = replica.applied_configuration();
    let assigned = slots::held_by(config, id, SLOTS, REPLICAS);
    let held: Vec<u32> = (0..SLOTS).filter(|s| machine.slot(*s).is_some()).collect();
    let pending = replica.pending_slots();
    let lacking: Vec<u32> =
        assigned.iter().copied().filter(|s| held.binary_search(s).is_err()).collect();
    if pending != lacking {
        violations.push(format!(
            "node {id} holds {held:?} and waits for {pending:?}, assigned {assigned:?} by \
                 voters {:?}",
            config.voters()
        ));
    }
    for slot in held {
        let state = machine.slot(slot).expect("held");
        let seen = (state.digest, state.entries);
        let known = *states.entry((slot, state.through)).or_insert(seen);
        if known != seen {
            violations.push(format!(
                "node {id}: slot {slot} through {} differs from another holder's",
                state.through
            ));
        }
    }
    violations
}

impl Sim {
    /// After the faults stopped and everything committed was applied: every slot is held by
    /// each of its holders under the last committed configuration, its one owner among them
    /// (other nodes may still keep retired copies whose `SlotsTaken` was lost).
    pub fn check_placement(&self) {
        let leader = self.leader().expect("converged under a leader");
        let config = self.machines[&leader].replica.as_ref().expect("leads").configuration();
        for slot in 0..SLOTS {
            let mut holding: Vec<u64> = self
                .running()
                .filter(|(id, r)| config.contains(*id) && r.machine().slot(slot).is_some())
                .map(|(id, _)| id)
                .collect();
            let holders = slots::holders(config, slot, REPLICAS);
            let owners = holding.iter().filter(|id| **id == slots::owner(config, slot)).count();
            holding.sort_unstable();
            if holders.iter().any(|h| !holding.contains(h)) || owners != 1 {
                self.fail(format!(
                    "slot {slot} is held by {holding:?}, its holders are {holders:?}"
                ));
            }
        }
    }
}
