//! `--remove-node`: a follower is removed from the group, and its slots move. Every node's
//! state machine is a `SlotMachine` of `SLOTS` slots with `SLOT_REPLICAS` holders each; the
//! removal makes one remaining voter a new holder of each slot the removed node held, and
//! that voter pulls the slot's files from a snapshot of a node holding it (the removed node
//! first: it keeps serving its snapshots until stopped). The driver stops the removed node
//! once no member waits for a slot. The summary's `slot_moves` lists every pull the members
//! report: {`slot`, `from` (the holder it replaced, 0 none), `to`, `bytes`, `source`,
//! `index`}.

use std::time::{Duration, Instant};

use raftlog::replication::{ConfChange, NodeId, SlotPull};

use crate::{Error, MembershipChange, Run};

/// The slots of every node's state machine, and the holders of each.
pub const SLOTS: u32 = 64;
pub const SLOT_REPLICAS: usize = 3;

/// How long the members may take to pull the slots a change moved to them.
const SETTLE: Duration = Duration::from_secs(60);

/// A slot pulled by node `to`.
pub struct SlotMove {
    pub to: NodeId,
    pub pull: SlotPull,
}

impl SlotMove {
    pub fn json(&self) -> String {
        let SlotPull { slot, from, source, index, bytes } = self.pull;
        format!(
            r#"{{"slot":{slot},"from":{from},"to":{},"bytes":{bytes},"source":{source},"index":{index}}}"#,
            self.to
        )
    }
}

impl Run<'_> {
    /// Removes a follower from the group, waits until its slots moved (no member waits for a
    /// slot), and stops it.
    pub fn remove_node(&mut self) -> Result<(), Error> {
        let victim = self.follower(0);
        let before = self.slot_moves()?.len();
        let started = Instant::now();
        self.cluster.change_membership(self.leader, ConfChange::Remove(victim))?;
        let seconds = started.elapsed().as_secs_f64();
        self.membership_changes.push(MembershipChange { change: "remove", node: victim, seconds });
        self.wait_slots_settled(victim)?;
        let settled = started.elapsed().as_secs_f64();
        let moved = self.slot_moves()?.len() - before;
        self.cluster.stop(victim)?;
        println!(
            "node {victim} removed from the group ({seconds:.3} s); {moved} of its slots pulled \
             by their new holders in {settled:.3} s; stopped; voters {:?}",
            self.cluster.voters
        );
        Ok(())
    }

    /// Polls the members (`victim` aside) until each applied the leader's commit index and
    /// none waits for a slot.
    fn wait_slots_settled(&mut self, victim: NodeId) -> Result<(), Error> {
        let deadline = Instant::now() + SETTLE;
        let target = self.cluster.status(self.leader)?.commit_index;
        loop {
            let mut waiting = Vec::new();
            for id in self.cluster.up().into_iter().filter(|id| *id != victim) {
                let (pending, _) = self.cluster.slots(id)?;
                let applied = self.cluster.status(id)?.applied_index;
                if !pending.is_empty() || applied < target {
                    waiting.push((id, applied, pending));
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("slots still pending after {SETTLE:?}: {waiting:?}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every slot the running members report having pulled.
    pub fn slot_moves(&mut self) -> Result<Vec<SlotMove>, Error> {
        let mut moves = Vec::new();
        for to in self.cluster.up() {
            let (_, pulls) = self.cluster.slots(to)?;
            moves.extend(pulls.into_iter().map(|pull| SlotMove { to, pull }));
        }
        Ok(moves)
    }
}
