//! A deterministic in-process cluster of raft-rs `RawNode`s over `DiskStorage` on `SimFs`:
//! proposals, dropped and reordered messages, partitions, power losses and restarts, all
//! chosen by one seed (a failure prints it; the run replays exactly from it). It checks that
//! no two nodes ever apply different entries at one index, that nothing committed is lost, and
//! that once the faults stop every node applies the same sequence, with every entry a leader
//! saw committed in it.

use std::collections::{BTreeMap, VecDeque};

use raft::eraftpb::{ConfState, Entry, EntryType, Message};
use raft::{Config, RawNode, StateRole};
use raftlog::fs::SimFs;
use raftlog_raft_rs::DiskStorage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIR: &str = "/node";

/// One simulated machine: its disk, and its Raft node while it is up.
struct Machine {
    fs: SimFs,
    node: Option<RawNode<DiskStorage<SimFs>>>,
    /// Entries its state machine applied, in order (rebuilt from the log after a restart).
    applied: Vec<(u64, Vec<u8>)>,
    down_until: u64,
}

struct Cluster {
    machines: BTreeMap<u64, Machine>,
    network: VecDeque<Message>,
    /// Every entry any node applied, by index: two different ones at an index is a violation.
    committed: BTreeMap<u64, Vec<u8>>,
    /// Nodes cut off from the others until the given step.
    partitioned: BTreeMap<u64, u64>,
    logger: slog::Logger,
    seed: u64,
    /// Power losses so far.
    crashes: usize,
}

fn config(id: u64) -> Config {
    // raft-rs randomizes election timeouts with its own generator: a fixed, per-node timeout
    // keeps the run a function of the seed.
    let election_tick = 10 + 4 * id as usize;
    Config {
        id,
        election_tick,
        heartbeat_tick: 3,
        min_election_tick: election_tick,
        max_election_tick: election_tick + 1,
        pre_vote: true,
        max_size_per_msg: 4096,
        ..Config::default()
    }
}

impl Cluster {
    fn new(size: u64, seed: u64) -> Self {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let voters: Vec<u64> = (1..=size).collect();
        let mut machines = BTreeMap::new();
        for id in 1..=size {
            let fs = SimFs::with_seed(seed * 100 + id);
            let storage = DiskStorage::open_with(fs.clone(), DIR, raftlog::Options::default())
                .expect("fresh storage");
            storage.initialize_with_conf_state(ConfState::from((voters.clone(), vec![]))).unwrap();
            let node = RawNode::new(&config(id), storage, &logger).unwrap();
            machines
                .insert(id, Machine { fs, node: Some(node), applied: Vec::new(), down_until: 0 });
        }
        Cluster {
            machines,
            network: VecDeque::new(),
            committed: BTreeMap::new(),
            partitioned: BTreeMap::new(),
            logger,
            seed,
            crashes: 0,
        }
    }

    fn fail(&self, why: String) -> ! {
        panic!("seed {}: {why}", self.seed)
    }

    fn reachable(&self, from: u64, to: u64, step: u64) -> bool {
        let cut = |id: u64| self.partitioned.get(&id).is_some_and(|until| *until > step);
        !cut(from) && !cut(to)
    }

    /// Applies committed entries on `id`, checking them against every other node's.
    fn apply(&mut self, id: u64, entries: Vec<Entry>) {
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let data = entry.data.to_vec();
            if let Some(other) = self.committed.get(&entry.index) {
                if *other != data {
                    self.fail(format!("node {id} applied {data:?} at {}: {other:?}", entry.index));
                }
            }
            self.committed.insert(entry.index, data.clone());
            self.machines.get_mut(&id).unwrap().applied.push((entry.index, data));
        }
    }

    /// Handles one `Ready` of node `id` as raft-rs's examples do, with `DiskStorage::persist`.
    fn on_ready(&mut self, id: u64) {
        let machine = self.machines.get_mut(&id).unwrap();
        let Some(node) = machine.node.as_mut().filter(|node| node.has_ready()) else { return };
        let storage = node.store().clone();
        let mut ready = node.ready();
        let mut outgoing = ready.take_messages();
        if !ready.snapshot().is_empty() {
            storage.apply_snapshot(ready.snapshot().clone()).unwrap();
        }
        let committed = ready.take_committed_entries();
        storage.persist(ready.entries(), ready.hs()).unwrap();
        outgoing.extend(ready.take_persisted_messages());
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            storage.commit_to(commit).unwrap();
        }
        outgoing.extend(light.take_messages());
        let more = light.take_committed_entries();
        node.advance_apply();
        self.network.extend(outgoing);
        self.apply(id, committed);
        self.apply(id, more);
    }

    /// Power loss on `id`: its unsynced writes are lost; it stays down for a while.
    fn crash(&mut self, id: u64, step: u64, crash_seed: u64) {
        let machine = self.machines.get_mut(&id).unwrap();
        machine.node = None;
        machine.fs.crash(crash_seed);
        machine.applied.clear(); // the state machine lives in memory: rebuilt from the log
        machine.down_until = step + 30;
        self.crashes += 1;
    }

    fn restart(&mut self, id: u64) {
        let machine = self.machines.get_mut(&id).unwrap();
        let storage = DiskStorage::open_with(machine.fs.clone(), DIR, raftlog::Options::default())
            .unwrap_or_else(|e| panic!("seed {}: node {id} does not reopen: {e}", self.seed));
        machine.node = Some(RawNode::new(&config(id), storage, &self.logger).unwrap());
    }

    fn leader(&self) -> Option<u64> {
        let leaders = self.machines.iter().filter_map(|(id, m)| {
            m.node.as_ref().filter(|n| n.raft.state == StateRole::Leader).map(|_| *id)
        });
        leaders.max_by_key(|id| self.machines[id].node.as_ref().unwrap().raft.term)
    }

    /// One step: ticks, some deliveries, the Readies; with `faults`, a proposal and faults
    /// (without them the cluster settles).
    fn step(&mut self, step: u64, rng: &mut StdRng, faults: bool) {
        let ids: Vec<u64> = self.machines.keys().copied().collect();
        for id in &ids {
            let machine = self.machines.get_mut(id).unwrap();
            if machine.node.is_none() && machine.down_until <= step {
                self.restart(*id);
            }
            if let Some(node) = self.machines.get_mut(id).unwrap().node.as_mut() {
                node.tick();
            }
        }
        if faults && step % 3 == 0 {
            if let Some(leader) = self.leader() {
                let node = self.machines.get_mut(&leader).unwrap().node.as_mut().unwrap();
                let _ = node.propose(vec![], format!("value {step}").into_bytes());
            }
        }
        let deliveries = self.network.len().min(rng.gen_range(1..=12));
        for _ in 0..deliveries {
            let Some(message) = self.network.pop_front() else { break };
            if faults && rng.gen_range(0..20) == 0 {
                continue; // dropped
            }
            if faults && rng.gen_range(0..6) == 0 {
                self.network.push_back(message); // reordered
                continue;
            }
            if !self.reachable(message.from, message.to, step) {
                continue;
            }
            if let Some(node) = self.machines.get_mut(&message.to).unwrap().node.as_mut() {
                let _ = node.step(message);
            }
        }
        for id in &ids {
            self.on_ready(*id);
        }
        if faults {
            let victim = ids[rng.gen_range(0..ids.len())];
            match rng.gen_range(0..200) {
                0 if self.machines[&victim].node.is_some() => {
                    let crash_seed = rng.gen();
                    self.crash(victim, step, crash_seed)
                }
                1 => {
                    self.partitioned.insert(victim, step + rng.gen_range(20..80));
                }
                _ => {}
            }
        }
    }

    /// Every node applied the same sequence, holding every entry ever applied anywhere.
    fn check_converged(&self) {
        let want: Vec<(u64, Vec<u8>)> =
            self.committed.iter().map(|(index, data)| (*index, data.clone())).collect();
        for (id, machine) in &self.machines {
            if machine.applied != want {
                self.fail(format!(
                    "node {id} applied {} entries (last {:?}), the cluster committed {} (last {:?})",
                    machine.applied.len(),
                    machine.applied.last().map(|(i, _)| i),
                    want.len(),
                    want.last().map(|(i, _)| i)
                ));
            }
        }
    }
}

/// Runs `steps` faulty steps then settles; returns (entries committed, power losses).
fn run(size: u64, seed: u64, steps: u64) -> (usize, usize) {
    let mut cluster = Cluster::new(size, seed);
    let mut rng = StdRng::seed_from_u64(seed);
    for step in 0..steps {
        cluster.step(step, &mut rng, true);
    }
    // Heal: every node up, no partition, no loss, no new proposal; the cluster settles.
    cluster.partitioned.clear();
    for step in steps..steps + 600 {
        cluster.step(step, &mut rng, false);
    }
    cluster.check_converged();
    (cluster.committed.len(), cluster.crashes)
}

#[test]
fn three_nodes_lose_nothing_committed_through_drops_partitions_and_power_losses() {
    run_seeds(3, 1..=4);
}

#[test]
fn five_nodes_lose_nothing_committed_through_drops_partitions_and_power_losses() {
    run_seeds(5, 11..=13);
}

/// Runs a cluster of `size` under each seed; each run must commit and crash enough to count.
fn run_seeds(size: u64, seeds: std::ops::RangeInclusive<u64>) {
    for seed in seeds {
        let (committed, crashes) = run(size, seed, 1500);
        assert!(committed > 100, "seed {seed}: only {committed} entries committed");
        assert!(crashes > 0, "seed {seed}: no power loss: the run explores too little");
    }
}

#[test]
fn a_seed_replays_exactly() {
    let trace = |seed| {
        let mut cluster = Cluster::new(3, seed);
        let mut rng = StdRng::seed_from_u64(seed);
        for step in 0..400 {
            cluster.step(step, &mut rng, true);
        }
        cluster.committed
    };
    assert_eq!(trace(7), trace(7));
}
