//! A group of replicas driven by hand: every node ticks and readies, then every message is
//! delivered in order, none lost. Each node has a simulated disk of its own, and a
//! `SlotMachine` of `SLOTS` slots with `REPLICAS` holders each.

use std::collections::BTreeMap;

use raftlog::fs::SimFs;
use raftlog::replication::{Envelope, Replica, ReplicationOptions, SlotMachine};
use raftlog::{LogStore, Options, RaftLog, RaftLogOptions, SnapshotOptions, SnapshotStore};

pub type Node = Replica<SimFs, SlotMachine>;

/// The slots of every node's state machine, and the holders of each.
pub const SLOTS: u32 = 16;
pub const REPLICAS: usize = 3;

/// Opens node `id` on `fs` (log in `/log`, snapshots in `/snap`), knowing `bootstrap` as the
/// group's first voters.
pub fn node_on(fs: &SimFs, id: u64, bootstrap: &[u64], options: &Options) -> Node {
    node_with(fs, id, bootstrap, options, RaftLogOptions::default())
}

/// `node_on`, its log's memory tiers bounded by `memory`.
pub fn node_with(
    fs: &SimFs,
    id: u64,
    bootstrap: &[u64],
    options: &Options,
    memory: RaftLogOptions,
) -> Node {
    let fs = fs.clone();
    let store = LogStore::open_with(fs.clone(), "/log", options.clone()).unwrap();
    let log = RaftLog::with_options(store, memory).unwrap();
    let snapshots = SnapshotStore::open_with(fs, "/snap", SnapshotOptions::default()).unwrap();
    let replication = ReplicationOptions::default();
    let machine = SlotMachine::new(SLOTS, REPLICAS).unwrap();
    Replica::open(id, bootstrap, log, snapshots, machine, replication).unwrap()
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    /// Each node's disk, to reopen it.
    pub disks: BTreeMap<u64, SimFs>,
    /// The store options every node opens with.
    pub options: Options,
    /// The memory tiers of every node's log.
    pub memory: RaftLogOptions,
}

impl Cluster {
    /// Nodes 1..=n, node 1 leading term 1.
    pub fn new(n: u64) -> Self {
        Cluster::with_options(n, Options::default())
    }

    /// Nodes 1..=n over stores opened with `options`, node 1 leading term 1.
    pub fn with_options(n: u64, options: Options) -> Self {
        Cluster::with_memory(n, options, RaftLogOptions::default())
    }

    /// Nodes 1..=n over stores opened with `options` and logs holding `memory`, node 1
    /// leading term 1.
    pub fn with_memory(n: u64, options: Options, memory: RaftLogOptions) -> Self {
        let ids: Vec<u64> = (1..=n).collect();
        let (nodes, disks) = (BTreeMap::new(), BTreeMap::new());
        let mut cluster = Cluster { nodes, disks, options, memory };
        for id in &ids {
            cluster.add(*id, &ids);
        }
        cluster.elect(1, 1);
        cluster
    }

    /// Every node votes for `leader` in `term`, which then leads it.
    pub fn elect(&mut self, leader: u64, term: u64) {
        let (last_index, last_term) = {
            let log = self.get(leader).log();
            (log.last_index(), log.last_term())
        };
        for voter in self.nodes.values_mut() {
            assert!(voter.vote(term, leader, last_index, last_term).unwrap());
        }
        self.get(leader).become_leader(term).unwrap();
        self.run(20);
    }

    /// Starts node `id` on a disk of its own, knowing `bootstrap` as the group's voters.
    pub fn add(&mut self, id: u64, bootstrap: &[u64]) {
        let disk = SimFs::with_seed(id);
        let node = node_with(&disk, id, bootstrap, &self.options, self.memory.clone());
        self.nodes.insert(id, node);
        self.disks.insert(id, disk);
    }

    /// Closes node `id`; `restart` opens it again.
    pub fn stop(&mut self, id: u64) {
        self.nodes.remove(&id).unwrap().close().unwrap();
    }

    /// Opens node `id` again from its disk (after `stop`).
    pub fn start(&mut self, id: u64, bootstrap: &[u64]) -> &mut Node {
        let memory = self.memory.clone();
        let reopened = node_with(&self.disks[&id], id, bootstrap, &self.options, memory);
        self.nodes.insert(id, reopened);
        self.get(id)
    }

    /// Closes node `id` and opens it again from its disk.
    pub fn restart(&mut self, id: u64, bootstrap: &[u64]) -> &mut Node {
        self.stop(id);
        self.start(id, bootstrap)
    }

    pub fn get(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).unwrap()
    }

    /// `rounds` of: every node ticks and readies, then every message is delivered.
    pub fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let mut sent: Vec<Envelope> = Vec::new();
            for node in self.nodes.values_mut() {
                node.tick().unwrap();
                node.ready(&mut |envelope| sent.push(envelope)).unwrap();
            }
            for Envelope { from, to, message } in sent {
                if let Some(node) = self.nodes.get_mut(&to) {
                    node.step(from, message).unwrap();
                }
            }
        }
    }
}
