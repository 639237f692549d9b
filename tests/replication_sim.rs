//! The deterministic cluster simulation of the replication shim: 3 or 5 `Replica`s, each on
//! its own `SimFs`, over a seeded `SimNetwork` that drops, duplicates, delays (reorders) and
//! partitions; power losses and restarts; leader changes through elections this test runs
//! (it plays the election oracle with `Replica::vote`); snapshots with compaction, so that
//! followers catch up by snapshot; relay fan-out in a third of the runs (one or two relays);
//! membership changes, one at a time: a new node joins as a
//! learner, is promoted once caught up, and voters (the leader too) are removed; a removed
//! node, or a joining one whose addition was lost, is retired; damage: a third of the power
//! losses also flip a bit in a sealed entry of the node's log, found at restart by a scrub or
//! later by the read that meets it, then repaired from a peer, replaced by a peer's snapshot,
//! or cut when no quorum ever held it; a ninth remove a segment of committed entries instead
//! (the node restarts its log after the gap and restores its state from a peer's snapshot).
//! After every step it checks:
//! - Log Matching: the same (index, term) means the same payload and the same previous term,
//!   so the same prefix;
//! - Leader Completeness: no node lacking an acknowledged entry could win an election (the
//!   voters of its configuration whose logs are not more up to date than its own are fewer
//!   than a quorum);
//! - no node's commit index goes back while it runs;
//! - the sequences nodes applied are prefixes of each other (their chained checksums agree at
//!   every index two of them reached);
//! - a repaired entry is the one Log Matching saw at its (index, term);
//! - slots (a `SlotMachine` of 16 slots, 3 holders each): a node holds or waits for exactly
//!   the slots the configuration at its applied index assigns it, never another; two nodes
//!   holding a slot complete through the same index hold the same state;
//! - when the faults stop, every damage found is repaired (or its range compacted away), and
//!   after the last committed configuration every slot is held by exactly its holders, its
//!   one owner among them.
//!
//! `RAFTLOG_SIM_SEEDS` sets the number of seeded runs (default 2,000), `RAFTLOG_SIM_SEED`
//! replays one. A failure prints its seed.

#[path = "replication_sim/checks.rs"]
mod checks;
mod common;
#[path = "replication_sim/damage.rs"]
mod damage;
#[path = "replication_sim/membership.rs"]
mod membership;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use damage::{damage_a_sealed_entry, remove_a_committed_segment};
use raftlog::fs::SimFs;
use raftlog::replication::sim::{NetworkFaults, SimEndpoint, SimNetwork};
use raftlog::replication::{
    AppenderKind, Envelope, Message, Replica, ReplicationOptions, SlotMachine, Transport,
};
use raftlog::{Error, LogStore, Options, RaftLog, SnapshotOptions, SnapshotStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Node = Replica<SimFs, SlotMachine>;

/// The slots of every node's state machine, and the holders of each.
const SLOTS: u32 = 16;
const REPLICAS: usize = 3;

struct Machine {
    fs: SimFs,
    replica: Option<Node>,
    endpoint: SimEndpoint,
    /// Step at which a crashed machine comes back.
    down_until: u64,
    /// Highest commit index seen since it last started.
    commit_seen: u64,
    /// Entries through this index were checked and are committed: they cannot change.
    verified_through: u64,
    /// The voters it was opened with (the group's first ones, or those when it joined).
    bootstrap: Vec<u64>,
    /// Removed from the group (or its addition was lost): no longer run.
    retired: bool,
    /// A bit of one of its sealed entries was flipped while it was down: scrub at restart
    /// (else the read that meets it finds it).
    scrub_at_restart: bool,
    /// Repairs of this incarnation already checked against the witness of Log Matching, and
    /// lost ranges and cuts already counted.
    repairs_checked: usize,
    lost_counted: usize,
    cuts_counted: usize,
    pulls_counted: usize,
}

impl Machine {
    fn new(fs: SimFs, replica: Node, endpoint: SimEndpoint, bootstrap: Vec<u64>) -> Self {
        Machine {
            fs,
            replica: Some(replica),
            endpoint,
            down_until: 0,
            commit_seen: 0,
            verified_through: 0,
            bootstrap,
            retired: false,
            scrub_at_restart: false,
            repairs_checked: 0,
            lost_counted: 0,
            cuts_counted: 0,
            pulls_counted: 0,
        }
    }
}

struct Sim {
    seed: u64,
    machines: BTreeMap<u64, Machine>,
    network: Rc<RefCell<SimNetwork>>,
    options: ReplicationOptions,
    /// (index, term) -> (payload checksum, previous term): Log Matching's witness.
    entries: BTreeMap<(u64, u64), (u64, u64)>,
    /// Acknowledged writes: index -> (term, payload).
    acknowledged: BTreeMap<u64, (u64, Bytes)>,
    /// Proposed, not yet acknowledged: index -> (term, payload).
    proposed: BTreeMap<u64, (u64, Bytes)>,
    /// index -> the applied checksum through it.
    applied: BTreeMap<u64, u64>,
    /// (slot, through) -> the slot's (digest, entries) through it.
    slot_states: BTreeMap<(u32, u64), (u64, u64)>,
    /// Slots nodes pulled from a peer's snapshot.
    slot_pulls: u64,
    crashes: u64,
    elections: u64,
    snapshots_installed: u64,
    /// Membership changes proposed and accepted by a leader.
    changes: u64,
    /// Nodes retired after a committed removal.
    removals: u64,
    /// Nodes that joined and were promoted to voter.
    promotions: u64,
    /// Batches a leader sent through a relay.
    relays: u64,
    /// Bits flipped in sealed entries of a node that was down.
    damaged: u64,
    /// Segments of committed entries removed from a node that was down.
    missing: u64,
    /// Ranges nodes repaired from a peer, reported lost, and cut (uncommitted tails).
    repaired: u64,
    lost: u64,
    cut: u64,
}

fn open(
    fs: &SimFs,
    id: u64,
    members: &[u64],
    options: &ReplicationOptions,
) -> raftlog::Result<Node> {
    let store =
        LogStore::open_with(fs.clone(), "/log", Options::default().segment_bytes_max(4096))?;
    let snapshots = SnapshotStore::open_with(fs.clone(), "/snap", SnapshotOptions::default())?;
    let log = RaftLog::new(store)?;
    let machine = SlotMachine::new(SLOTS, REPLICAS)?;
    Replica::open(id, members, log, snapshots, machine, options.clone())
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

impl Sim {
    fn new(seed: u64) -> Self {
        let size = if seed % 2 == 0 { 3 } else { 5 };
        let members: Vec<u64> = (1..=size).collect();
        let faults =
            NetworkFaults { drop_per_mille: 40, duplicate_per_mille: 30, delay_ticks_max: 3 };
        let network = SimNetwork::shared(seed, faults);
        let appender =
            if seed % 4 < 2 { AppenderKind::SlidingWindow } else { AppenderKind::Blocking };
        let options = ReplicationOptions::default()
            .appender(appender)
            .appender_capacity(32)
            .batch_entries_max(8)
            .in_flight_batches_max(4)
            .resend_ticks(8)
            .compaction_lag_entries(seed % 3 * 4)
            .first_level_size(if seed % 3 == 0 { 1 + seed as usize % 5 / 3 } else { 0 });
        let mut machines = BTreeMap::new();
        for id in members.iter().copied() {
            let fs = SimFs::with_seed(seed * 16 + id);
            let replica = open(&fs, id, &members, &options).expect("a fresh node opens");
            let endpoint = SimNetwork::endpoint(&network, id);
            machines.insert(id, Machine::new(fs, replica, endpoint, members.clone()));
        }
        Sim {
            seed,
            machines,
            network,
            options,
            entries: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            proposed: BTreeMap::new(),
            applied: BTreeMap::new(),
            slot_states: BTreeMap::new(),
            slot_pulls: 0,
            crashes: 0,
            elections: 0,
            snapshots_installed: 0,
            changes: 0,
            removals: 0,
            promotions: 0,
            relays: 0,
            damaged: 0,
            missing: 0,
            repaired: 0,
            lost: 0,
            cut: 0,
        }
    }

    fn fail(&self, why: String) -> ! {
        panic!(
            "seed {}: {why} (replay: RAFTLOG_SIM_SEED={} cargo test --test replication_sim)",
            self.seed, self.seed
        )
    }

    fn running(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.machines.iter().filter_map(|(id, m)| m.replica.as_ref().map(|r| (*id, r)))
    }

    /// Votes a decision needs now, at most: a majority of the largest voter set a running
    /// node holds.
    fn majority(&self) -> usize {
        self.running().map(|(_, r)| r.configuration().quorum()).max().unwrap_or(1)
    }

    fn leader(&self) -> Option<u64> {
        self.machines
            .iter()
            .filter(|(_, m)| m.replica.as_ref().is_some_and(Replica::is_leader))
            .max_by_key(|(_, m)| m.replica.as_ref().map(Replica::term))
            .map(|(id, _)| *id)
    }

    /// An election this test runs: a candidate among the running nodes asks everyone
    /// reachable for a vote in a new term, and leads if a majority grants it.
    fn elect(&mut self, rng: &mut StdRng, prefer_up_to_date: bool) {
        let up: Vec<u64> = self.running().filter(|(_, r)| r.can_lead()).map(|(id, _)| id).collect();
        if up.is_empty() {
            return;
        }
        let log_of = |m: &Machine| {
            let log = m.replica.as_ref().expect("up").log();
            (log.last_term(), log.last_index())
        };
        let candidate = if prefer_up_to_date {
            *up.iter().max_by_key(|id| log_of(&self.machines[id])).expect("non-empty")
        } else {
            up[rng.gen_range(0..up.len())]
        };
        let term = self
            .machines
            .values()
            .filter_map(|m| m.replica.as_ref().map(Replica::term))
            .max()
            .unwrap_or(0)
            + 1;
        let (last_term, last_index) = log_of(&self.machines[&candidate]);
        let config =
            self.machines[&candidate].replica.as_ref().expect("up").configuration().clone();
        let mut granted = 0;
        let voters: Vec<u64> =
            self.running().map(|(id, _)| id).filter(|id| config.is_voter(*id)).collect();
        for id in &voters {
            let cut = self.network.borrow().is_isolated(*id)
                || self.network.borrow().is_isolated(candidate);
            if cut && *id != candidate {
                continue;
            }
            let voter = self.machines.get_mut(id).and_then(|m| m.replica.as_mut()).expect("up");
            match voter.vote(term, candidate, last_index, last_term) {
                Ok(true) => granted += 1,
                Ok(false) => {}
                Err(e) => self.fail(format!("node {id} failed to vote: {e}")),
            }
        }
        self.elections += 1;
        if granted >= config.quorum() {
            let replica =
                self.machines.get_mut(&candidate).and_then(|m| m.replica.as_mut()).expect("up");
            match replica.become_leader(term) {
                // Its configuration may lie past a damaged entry: it leads once repaired.
                Ok(()) | Err(Error::MembershipChange { .. }) => {}
                Err(e) => {
                    self.fail(format!("node {candidate} won term {term} but cannot lead: {e}"))
                }
            }
        }
    }

    fn propose(&mut self, rng: &mut StdRng, step: u64) {
        let Some(leader) = self.leader() else { return };
        let count = rng.gen_range(1..=4);
        let payloads: Vec<Bytes> = (0..count)
            .map(|i| {
                Bytes::from(format!(
                    "s{}-{step}-{i}-{}",
                    self.seed,
                    "x".repeat(rng.gen_range(0..40))
                ))
            })
            .collect();
        let replica =
            self.machines.get_mut(&leader).and_then(|m| m.replica.as_mut()).expect("leads");
        match replica.propose(&payloads) {
            Ok(last) => {
                let term = replica.term();
                let first = last + 1 - count;
                for (index, payload) in (first..).zip(payloads) {
                    self.proposed.insert(index, (term, payload));
                }
            }
            Err(Error::Busy { .. }) => {}
            Err(e) => self.fail(format!("leader {leader} failed to propose: {e}")),
        }
    }

    fn crash(&mut self, id: u64, step: u64, rng: &mut StdRng) {
        let machine = self.machines.get_mut(&id).expect("member");
        machine.replica = None;
        machine.fs.crash(rng.gen());
        machine.down_until = step + rng.gen_range(5..30);
        self.crashes += 1;
        if rng.gen_ratio(1, 9) && remove_a_committed_segment(&machine.fs, rng) {
            self.missing += 1;
        } else if rng.gen_ratio(1, 3) && damage_a_sealed_entry(&machine.fs, rng) {
            machine.scrub_at_restart = rng.gen();
            self.damaged += 1;
        }
    }

    fn restart(&mut self, id: u64) {
        let options = self.options.clone();
        let machine = self.machines.get_mut(&id).expect("member");
        match open(&machine.fs, id, &machine.bootstrap, &options) {
            Ok(mut replica) => {
                machine.verified_through = machine.verified_through.min(replica.log().last_index());
                machine.commit_seen = replica.log().commit_index();
                machine.repairs_checked = 0;
                machine.lost_counted = 0;
                machine.cuts_counted = 0;
                machine.pulls_counted = 0;
                if std::mem::take(&mut machine.scrub_at_restart) {
                    if let Err(e) = replica.scrub() {
                        self.fail(format!("node {id} failed to scrub: {e}"));
                    }
                }
                machine.replica = Some(replica);
            }
            Err(e) => self.fail(format!("node {id} does not reopen after a power loss: {e}")),
        }
    }

    /// One tick of the world: deliveries, ticks, `ready`s.
    fn tick(&mut self) {
        self.network.borrow_mut().advance();
        let ids: Vec<u64> = self.machines.keys().copied().collect();
        for id in ids {
            let machine = self.machines.get_mut(&id).expect("member");
            let Some(replica) = machine.replica.as_mut() else { continue };
            let mut inbox = Vec::new();
            machine.endpoint.receive(Instant::now(), &mut inbox);
            let mut outcome = Ok(());
            for Envelope { from, message, .. } in inbox {
                outcome = outcome.and_then(|()| replica.step(from, message));
            }
            let endpoint = &mut machine.endpoint;
            let relays = &mut self.relays;
            let outcome = outcome.and_then(|()| replica.tick()).and_then(|()| {
                replica.ready(&mut |envelope| {
                    *relays += u64::from(matches!(envelope.message, Message::Relay { .. }));
                    endpoint.send(envelope);
                })
            });
            if let Err(e) = outcome {
                self.fail(format!("node {id}: {e} ({e:?})"));
            }
            self.snapshots_installed = self.snapshots_installed.max(replica.snapshots_installed());
        }
        self.acknowledge();
    }

    /// Writes the leader saw committed in the term it proposed them are acknowledged.
    fn acknowledge(&mut self) {
        let Some(leader) = self.leader() else { return };
        let log = self.machines[&leader].replica.as_ref().expect("leads").log().clone();
        let commit = log.commit_index();
        let done: Vec<u64> = self.proposed.range(..=commit).map(|(i, _)| *i).collect();
        for index in done {
            let (term, payload) = self.proposed.remove(&index).expect("listed");
            if log.term(index).ok() == Some(term) {
                self.acknowledged.insert(index, (term, payload));
            }
        }
    }

    fn run(&mut self, steps: u64) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        for step in 0..steps {
            let ids: Vec<u64> =
                self.machines.iter().filter(|(_, m)| !m.retired).map(|(id, _)| *id).collect();
            if self.leader().is_none() && rng.gen_ratio(1, 3) {
                let prefer = rng.gen_ratio(3, 4);
                self.elect(&mut rng, prefer);
            }
            let victim = ids[rng.gen_range(0..ids.len())];
            let down = self.machines.values().filter(|m| m.replica.is_none() && !m.retired).count();
            match rng.gen_range(0..100) {
                0..=39 => self.propose(&mut rng, step),
                40..=41
                    if self.machines[&victim].replica.is_some() && down + 1 < self.majority() =>
                {
                    self.crash(victim, step, &mut rng);
                }
                42 => self.network.borrow_mut().isolate(victim),
                43..=45 => self.network.borrow_mut().heal(victim),
                46 => self.elect(&mut rng, true),
                49..=50 => self.change_membership(&mut rng),
                47..=48 => {
                    if let Some(replica) =
                        self.machines.get_mut(&victim).and_then(|m| m.replica.as_mut())
                    {
                        if let Err(e) = replica.snapshot() {
                            self.fail(format!("node {victim} failed to snapshot: {e}"));
                        }
                    }
                }
                _ => {}
            }
            for id in &ids {
                let machine = &self.machines[id];
                if machine.replica.is_none() && machine.down_until <= step {
                    self.restart(*id);
                }
            }
            self.tick();
            self.retire();
            self.check();
        }
        self.settle(&mut rng, steps);
    }

    /// Faults stop: everyone restarts and reconnects, the network stops dropping, duplicating
    /// and delaying, a leader is elected and writes a few more entries, and every node must
    /// then apply the same sequence, holding every acknowledged entry.
    fn settle(&mut self, rng: &mut StdRng, steps: u64) {
        self.network.borrow_mut().set_faults(NetworkFaults::default());
        let ids: Vec<u64> =
            self.machines.iter().filter(|(_, m)| !m.retired).map(|(id, _)| *id).collect();
        for id in ids {
            self.network.borrow_mut().heal(id);
            if self.machines[&id].replica.is_none() {
                self.restart(id);
            }
        }
        for round in 0..400 {
            if self.leader().is_none() {
                self.elect(rng, true);
            }
            if round < 50 && round % 10 == 0 {
                self.propose(rng, steps + round);
            }
            self.tick();
            self.retire();
            self.check();
            if round > 50 && self.converged() {
                return self.check_placement();
            }
        }
        let status: Vec<_> = self
            .machines
            .values()
            .filter_map(|m| {
                m.replica.as_ref().map(|r| {
                    let held: Vec<u32> =
                        (0..SLOTS).filter(|s| r.machine().slot(*s).is_some()).collect();
                    (
                        r.status(),
                        r.repair_report(),
                        r.applied_configuration().voters().to_vec(),
                        held,
                        r.pending_slots(),
                    )
                })
            })
            .collect();
        self.fail(format!("no convergence after the faults stopped: {status:?}"));
    }

    /// The leader committed everything it holds, and every node applied it.
    fn converged(&self) -> bool {
        let Some(leader) = self.leader() else { return false };
        let replica = self.machines[&leader].replica.as_ref().expect("leads");
        let log = replica.log();
        let commit = log.commit_index();
        log.last_index() == commit
            && replica.configuration_index() <= commit
            && self
                .machines
                .iter()
                .filter(|(id, m)| !m.retired && replica.configuration().contains(**id))
                .all(|(_, m)| {
                    m.replica.as_ref().is_some_and(|r| {
                        r.machine().sequence.applied_index == commit
                            && r.repair_report().damaged.is_empty()
                            && r.pending_slots().is_empty()
                    })
                })
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("RAFTLOG_SIM_SEED") {
        return vec![seed.parse().expect("RAFTLOG_SIM_SEED is a number")];
    }
    let runs: u64 =
        std::env::var("RAFTLOG_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
    (0..runs).collect()
}

#[test]
fn seeded_clusters_keep_every_safety_property() {
    let started = Instant::now();
    let (mut steps, mut crashes, mut elections, mut acknowledged, mut installs) = (0, 0, 0, 0, 0);
    let (mut changes, mut removals, mut promotions, mut relays) = (0, 0, 0, 0);
    let (mut damaged, mut repaired, mut lost, mut cut, mut missing) = (0, 0, 0, 0, 0);
    let mut slot_pulls = 0;
    for seed in seeds() {
        let mut sim = Sim::new(seed);
        sim.run(120);
        steps += 120;
        crashes += sim.crashes;
        elections += sim.elections;
        acknowledged += sim.acknowledged.len();
        installs += u64::from(sim.snapshots_installed > 0);
        changes += sim.changes;
        removals += sim.removals;
        promotions += sim.promotions;
        relays += sim.relays;
        damaged += sim.damaged;
        repaired += sim.repaired;
        lost += sim.lost;
        cut += sim.cut;
        missing += sim.missing;
        slot_pulls += sim.slot_pulls;
    }
    println!(
        "replication simulation: {} runs, {steps} steps, {crashes} power losses, {elections} elections, \
         {acknowledged} acknowledged writes, {installs} runs with a snapshot catch-up, \
         {changes} membership changes ({promotions} promotions, {removals} nodes retired), \
         {relays} batches relayed, {damaged} sealed entries damaged ({repaired} ranges repaired \
         from a peer, {lost} reported lost, {cut} uncommitted tails cut), {missing} segments of \
         committed entries removed, {slot_pulls} slots pulled by a new holder, in {:.1} s",
        seeds().len(),
        started.elapsed().as_secs_f64()
    );
    if seeds().len() >= 100 {
        assert!(
            acknowledged > 0
                && crashes > 0
                && installs > 0
                && promotions > 0
                && removals > 0
                && relays > 0
                && repaired > 0
                && slot_pulls > 0,
            "the simulation exercised too little"
        );
    }
}

#[test]
fn one_seed_replays_exactly() {
    let fingerprint = |seed| {
        let mut sim = Sim::new(seed);
        sim.run(120);
        let digests: Vec<(u64, u64)> = sim
            .machines
            .values()
            .filter_map(|m| m.replica.as_ref())
            .map(|r| (r.machine().sequence.applied_index, r.machine().sequence.digest))
            .collect();
        let counts = sim.network.borrow().counts();
        (digests, counts, sim.acknowledged.len(), sim.crashes)
    };
    assert_eq!(fingerprint(7), fingerprint(7));
}
