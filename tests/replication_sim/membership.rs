//! The simulation's membership changes: the leader's changes, machines joining, and removed
//! ones retired.

use raftlog::fs::SimFs;
use raftlog::replication::sim::SimNetwork;
use raftlog::replication::ConfChange;
use raftlog::Error;
use rand::rngs::StdRng;
use rand::Rng;

use crate::{open, Machine, Sim};

impl Sim {
    /// A membership change by the leader, one at a time: promote its learner, add a new node
    /// as a learner, or remove a voter (the leader itself, perhaps). Refusals are expected
    /// (a change in progress, a learner not caught up).
    pub fn change_membership(&mut self, rng: &mut StdRng) {
        let Some(leader) = self.leader() else { return };
        let config =
            self.machines[&leader].replica.as_ref().expect("leads").configuration().clone();
        let voters = config.voters();
        let change = match config.learners().first() {
            Some(learner) => ConfChange::Promote(*learner),
            None if voters.len() < 3 || voters.len() < 5 && rng.gen_ratio(1, 2) => {
                if self.machines.len() >= 12 {
                    return;
                }
                ConfChange::AddLearner(self.machines.keys().max().expect("machines") + 1)
            }
            None => ConfChange::Remove(voters[rng.gen_range(0..voters.len())]),
        };
        let replica =
            self.machines.get_mut(&leader).and_then(|m| m.replica.as_mut()).expect("leads");
        match replica.change_membership(change) {
            Ok(_) => {
                self.changes += 1;
                match change {
                    ConfChange::AddLearner(id) => self.add_machine(id, voters.to_vec()),
                    ConfChange::Promote(_) => self.promotions += 1,
                    ConfChange::Remove(_) => {}
                }
            }
            Err(Error::MembershipChange { .. }) => {}
            Err(e) => self.fail(format!("leader {leader} failed to change membership: {e}")),
        }
    }

    /// A new machine `id`, joining: it knows the group's voters and waits for the leader.
    fn add_machine(&mut self, id: u64, bootstrap: Vec<u64>) {
        let fs = SimFs::with_seed(self.seed * 16 + id);
        let replica = match open(&fs, id, &bootstrap, &self.options) {
            Ok(replica) => replica,
            Err(e) => self.fail(format!("joining node {id} does not open: {e}")),
        };
        let endpoint = SimNetwork::endpoint(&self.network, id);
        self.machines.insert(id, Machine::new(fs, replica, endpoint, bootstrap));
    }

    /// Retires the nodes a leader's committed configuration excludes: removed ones, and
    /// joining ones whose addition a new leader's log no longer holds. As an operator does,
    /// it waits until no running node waits for slots (a removed node may hold the only
    /// complete copy of one).
    pub fn retire(&mut self) {
        let Some(leader) = self.leader() else { return };
        let replica = self.machines[&leader].replica.as_ref().expect("leads");
        if replica.configuration_index() > replica.log().commit_index() {
            return;
        }
        let waiting = self.machines.values().any(|m| {
            !m.retired && m.replica.as_ref().is_none_or(|r| !r.pending_slots().is_empty())
        });
        if waiting {
            return;
        }
        let config = replica.configuration().clone();
        for (id, machine) in self.machines.iter_mut() {
            if !machine.retired && !config.contains(*id) {
                machine.retired = true;
                machine.replica = None;
                self.network.borrow_mut().isolate(*id);
                self.removals += 1;
            }
        }
    }
}
