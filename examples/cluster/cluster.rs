//! The driver's view of the cluster: the node processes, an operator's control calls, the
//! elections it runs (the shim leaves elections to whoever runs the group), and the client
//! that writes through the leader.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftlog::replication::tcp::Connection;
use raftlog::replication::{
    ClientOutcome, ConfChange, ControlOp, Envelope, Message, NodeId, NodeStatus, RepairReport,
    SlotPull,
};

use crate::node::NodeConfig;

type Error = Box<dyn std::error::Error>;

const CONNECT: Duration = Duration::from_secs(5);
/// Longest wait for one reply: a node that takes longer has failed the run.
const REPLY: Duration = Duration::from_secs(30);

pub struct Node {
    pub config: NodeConfig,
    process: Option<Child>,
}

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Node>,
    /// The configuration as the driver changed it (the leader's log holds the same).
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    next_request: u64,
}

/// Free loopback ports, one per node.
fn free_addrs(count: usize) -> Result<Vec<SocketAddr>, Error> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(listeners.iter().map(|l| l.local_addr()).collect::<Result<_, _>>()?)
}

impl Cluster {
    /// Starts nodes `1..=count`, the group's voters; `spares` more get addresses every node
    /// knows, to join later (`--add-node`).
    pub fn start(
        count: u64,
        spares: u64,
        root: &Path,
        (no_sync, relay): (bool, usize),
    ) -> Result<Self, Error> {
        let addrs = free_addrs((count + spares) as usize)?;
        let all: BTreeMap<NodeId, SocketAddr> = (1..=count + spares).zip(addrs).collect();
        let voters: Vec<NodeId> = (1..=count).collect();
        let mut nodes = BTreeMap::new();
        for (id, listen) in &all {
            let dir = root.join(format!("node-{id}"));
            let config = NodeConfig {
                id: *id,
                listen: *listen,
                peers: all.iter().filter(|(p, _)| *p != id).map(|(p, a)| (*p, *a)).collect(),
                members: voters.clone(),
                log_dir: dir.join("log"),
                snapshot_dir: dir.join("snapshots"),
                no_sync,
                relay,
            };
            nodes.insert(*id, Node { config, process: None });
        }
        let mut cluster = Cluster { nodes, voters, learners: Vec::new(), next_request: 1 };
        for id in 1..=count {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    pub fn spawn(&mut self, id: NodeId) -> Result<(), Error> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        let child = Command::new(std::env::current_exe()?).args(node.config.to_args()).spawn()?;
        node.process = Some(child);
        // Wait until it listens.
        let started = Instant::now();
        while Connection::connect(node.config.listen, CONNECT).is_err() {
            if started.elapsed() > CONNECT {
                return Err(format!("node {id} did not start listening").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill(&mut self, id: NodeId) -> Result<(), Error> {
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        if let Some(mut child) = node.process.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn up(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.process.is_some()).map(|(id, _)| *id).collect()
    }

    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[&id].config.listen
    }

    /// Sends node `id` the operation `op` and returns its answer (the message that echoes
    /// the request's id).
    fn call(&mut self, id: NodeId, op: ControlOp) -> Result<Message, Error> {
        let mut connection = Connection::connect(self.addr(id), CONNECT)?;
        let request_id = self.next_request;
        self.next_request += 1;
        let message = Message::Control { request_id, op };
        connection.send(&Envelope { from: 0, to: id, message })?;
        loop {
            let message = connection.receive(REPLY)?.message;
            match &message {
                Message::ControlReply { request_id: r, .. }
                | Message::RepairStatus { request_id: r, .. }
                | Message::SlotStatus { request_id: r, .. }
                    if *r == request_id =>
                {
                    return Ok(message)
                }
                _ => {}
            }
        }
    }

    /// One control call; returns (done, the node's status).
    pub fn control(&mut self, id: NodeId, op: ControlOp) -> Result<(bool, NodeStatus), Error> {
        match self.call(id, op)? {
            Message::ControlReply { ok, status, .. } => Ok((ok, status)),
            other => Err(format!("node {id} answered {other:?}").into()),
        }
    }

    /// What node `id` found damaged in its log, repaired and lost (`ControlOp::Repairs`).
    pub fn repairs(&mut self, id: NodeId) -> Result<RepairReport, Error> {
        match self.call(id, ControlOp::Repairs)? {
            Message::RepairStatus { report, .. } => Ok(report),
            other => Err(format!("node {id} answered {other:?}").into()),
        }
    }

    /// The slots node `id` still pulls, and those it pulled (`ControlOp::Slots`).
    pub fn slots(&mut self, id: NodeId) -> Result<(Vec<u32>, Vec<SlotPull>), Error> {
        match self.call(id, ControlOp::Slots)? {
            Message::SlotStatus { pending, pulls, .. } => Ok((pending, pulls)),
            other => Err(format!("node {id} answered {other:?}").into()),
        }
    }

    pub fn status(&mut self, id: NodeId) -> Result<NodeStatus, Error> {
        Ok(self.control(id, ControlOp::Status)?.1)
    }

    /// Runs an election for `candidate` in a term above every running node's: it leads once
    /// a majority voted for it. Returns the term.
    pub fn elect(&mut self, candidate: NodeId) -> Result<u64, Error> {
        let majority = self.voters.len() / 2 + 1;
        for _attempt in 0..20 {
            let mut term = 0;
            for id in self.up() {
                term = term.max(self.status(id)?.term);
            }
            term += 1;
            let me = self.status(candidate)?;
            let vote = ControlOp::Vote {
                term,
                candidate,
                last_index: me.last_index,
                last_term: me.last_term,
            };
            let mut granted = 0;
            let voters: Vec<NodeId> =
                self.up().into_iter().filter(|id| self.voters.contains(id)).collect();
            for id in
                std::iter::once(candidate).chain(voters.into_iter().filter(|id| *id != candidate))
            {
                if self.control(id, vote.clone())?.0 {
                    granted += 1;
                }
            }
            if granted >= majority && self.control(candidate, ControlOp::BecomeLeader { term })?.0 {
                return Ok(term);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("node {candidate} could not win an election").into())
    }

    /// Waits until `follower`'s match index on `leader` reaches `index`.
    pub fn wait_caught_up(
        &mut self,
        leader: NodeId,
        follower: NodeId,
        index: u64,
    ) -> Result<u64, Error> {
        let started = Instant::now();
        loop {
            let status = self.status(leader)?;
            let peer = status.peers.iter().find(|p| p.id == follower).ok_or("not a follower")?;
            if peer.match_index >= index {
                return Ok(peer.snapshots_sent);
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!("node {follower} did not catch up: {peer:?}").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asks every running node to stop, and waits for their processes.
    pub fn shutdown(&mut self) -> Result<(), Error> {
        for id in self.up() {
            self.stop(id)?;
        }
        Ok(())
    }

    /// The directories of the members of the configuration (voters and learners).
    pub fn dirs(&self) -> Vec<(NodeId, PathBuf, PathBuf)> {
        self.nodes
            .iter()
            .filter(|(id, _)| self.voters.contains(id) || self.learners.contains(id))
            .map(|(id, n)| (*id, n.config.log_dir.clone(), n.config.snapshot_dir.clone()))
            .collect()
    }

    /// A node with an address that is not a member: one to add.
    pub fn spare(&self) -> Option<NodeId> {
        self.nodes.keys().copied().find(|id| {
            !self.voters.contains(id)
                && !self.learners.contains(id)
                && self.nodes[id].process.is_none()
        })
    }

    /// Proposes `change` on `leader` until it is accepted (a previous change may still be
    /// committing, a learner still catching up), then waits until the leader committed it.
    pub fn change_membership(&mut self, leader: NodeId, change: ConfChange) -> Result<(), Error> {
        let started = Instant::now();
        let index = loop {
            let (ok, status) = self.control(leader, ControlOp::ChangeMembership(change))?;
            if ok {
                break status.last_index;
            }
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!("{change:?} was refused for two minutes").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        while self.status(leader)?.commit_index < index {
            if started.elapsed() > Duration::from_secs(120) {
                return Err(format!("{change:?} did not commit").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match change {
            ConfChange::AddLearner(id) => self.learners.push(id),
            ConfChange::Promote(id) => {
                self.learners.retain(|l| *l != id);
                self.voters.push(id);
            }
            ConfChange::Remove(id) => {
                self.voters.retain(|v| *v != id);
                self.learners.retain(|l| *l != id);
            }
        }
        Ok(())
    }

    /// Stops a node (at the end, or once removed from the group) and waits for its process.
    pub fn stop(&mut self, id: NodeId) -> Result<(), Error> {
        self.control(id, ControlOp::Shutdown)?;
        let node = self.nodes.get_mut(&id).ok_or("no such node")?;
        if let Some(mut child) = node.process.take() {
            let status = child.wait()?;
            if !status.success() {
                return Err(format!("node {id} exited with {status}").into());
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A client writing through the leader with up to `window` writes in flight, each
/// acknowledged only once committed.
pub struct Client {
    connection: Connection,
    leader: NodeId,
    window: usize,
    payload_bytes: usize,
    /// request id -> (sequence number of the write, when it was sent).
    in_flight: BTreeMap<u64, (u64, Instant)>,
    /// Writes to send again (refused or of unknown fate).
    retry: VecDeque<u64>,
    next_request: u64,
    pub next_write: u64,
    pub acknowledged: u64,
    pub acknowledged_through: u64,
    pub latencies_us: Vec<u64>,
}

impl Client {
    pub fn connect(
        cluster: &Cluster,
        leader: NodeId,
        window: usize,
        payload_bytes: usize,
    ) -> Result<Self, Error> {
        Ok(Client {
            connection: Connection::connect(cluster.addr(leader), CONNECT)?,
            leader,
            window,
            payload_bytes,
            in_flight: BTreeMap::new(),
            retry: VecDeque::new(),
            next_request: 1,
            next_write: 0,
            acknowledged: 0,
            acknowledged_through: 0,
            latencies_us: Vec::new(),
        })
    }

    pub fn payload(&self, write: u64) -> Bytes {
        let mut bytes = format!("write {write:>12} ").into_bytes();
        bytes.resize(self.payload_bytes, (write % 251) as u8);
        Bytes::from(bytes)
    }

    /// Moves to a new leader; writes in flight to the old one are sent again.
    pub fn reconnect(&mut self, cluster: &Cluster, leader: NodeId) -> Result<(), Error> {
        self.connection = Connection::connect(cluster.addr(leader), CONNECT)?;
        self.leader = leader;
        let lost: Vec<u64> = self.in_flight.values().map(|(write, _)| *write).collect();
        self.retry.extend(lost);
        self.in_flight.clear();
        Ok(())
    }

    /// Writes until `total` writes are acknowledged.
    pub fn write_until(&mut self, total: u64) -> Result<(), Error> {
        while self.acknowledged < total {
            while self.in_flight.len() < self.window {
                let write = match self.retry.pop_front() {
                    Some(write) => write,
                    None if self.next_write < total => {
                        self.next_write += 1;
                        self.next_write
                    }
                    None => break,
                };
                let request_id = self.next_request;
                self.next_request += 1;
                let message = Message::ClientWrite { request_id, payload: self.payload(write) };
                self.connection.send(&Envelope { from: 0, to: self.leader, message })?;
                self.in_flight.insert(request_id, (write, Instant::now()));
            }
            let Message::ClientReply { request_id, outcome, index, .. } =
                self.connection.receive(REPLY)?.message
            else {
                continue;
            };
            let Some((write, sent)) = self.in_flight.remove(&request_id) else { continue };
            match outcome {
                ClientOutcome::Committed => {
                    self.acknowledged += 1;
                    self.acknowledged_through = self.acknowledged_through.max(index);
                    self.latencies_us.push(sent.elapsed().as_micros() as u64);
                }
                ClientOutcome::NotLeader => {
                    return Err(format!("node {} does not lead", self.leader).into())
                }
                ClientOutcome::Busy | ClientOutcome::Unknown => {
                    std::thread::sleep(Duration::from_millis(1));
                    self.retry.push_back(write);
                }
            }
        }
        Ok(())
    }
}
