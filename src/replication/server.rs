//! `Server`: runs one `Replica` over a `Transport` in real time: ticks, client writes
//! acknowledged only once committed, and an operator's control messages (status, votes,
//! leadership, snapshots, membership, repairs, shutdown).
//!
//! Invariants:
//! 1. A client's write is answered `Committed` only when the commit index reached its index
//!    and the entry there still has the term it was proposed in; if this node stops leading
//!    first, the answer is `Unknown` (the write may or may not commit later).
//! 2. Proposals are batched: every write that arrived in one receive goes to the log with one
//!    append, and to disk with one fdatasync (`Replica::ready`).
//! 3. A peer's message that fails (its bytes, its snapshot, its entries) is refused and the
//!    server goes on; only a failure of this node's disk stops it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::machine::StateMachine;
use super::message::{ClientOutcome, ControlOp, Envelope, Message, NodeId};
use super::replica::Replica;
use super::tcp::CLIENT_BIT;
use super::Transport;
use crate::error::{Error, Result};
use crate::fs::FileSystem;

/// A replica served in real time.
pub struct Server<F: FileSystem, M: StateMachine<F>, T: Transport> {
    replica: Replica<F, M>,
    transport: T,
    tick: Duration,
    /// Writes proposed and not yet answered: index -> (term, client, request id).
    pending: BTreeMap<u64, (u64, NodeId, u64)>,
}

impl<F: FileSystem, M: StateMachine<F>, T: Transport> Server<F, M, T> {
    /// A server of `replica` over `transport`, ticking every `tick`.
    pub fn new(replica: Replica<F, M>, transport: T, tick: Duration) -> Self {
        Server { replica, transport, tick, pending: BTreeMap::new() }
    }

    /// The replica.
    pub fn replica(&self) -> &Replica<F, M> {
        &self.replica
    }

    /// Serves until an operator's `Shutdown`; returns the replica. A store error ends it.
    pub fn run(mut self) -> Result<Replica<F, M>> {
        let mut inbox = Vec::new();
        let mut next_tick = Instant::now() + self.tick;
        loop {
            self.transport.receive(next_tick, &mut inbox);
            let mut writes: Vec<(NodeId, u64, Bytes)> = Vec::new();
            let mut shutdown = false;
            for envelope in inbox.drain(..) {
                match envelope.message {
                    Message::ClientWrite { request_id, payload } => {
                        writes.push((envelope.from, request_id, payload));
                    }
                    Message::Control { request_id, op } => {
                        shutdown |= op == ControlOp::Shutdown;
                        let reply = self.control(request_id, op)?;
                        self.send(envelope.from, reply);
                    }
                    // Only nodes speak the messages between nodes (a leader's messages are taken
                    // by term, whatever the sender's configuration): a client's are refused.
                    _ if envelope.from & CLIENT_BIT != 0 => {
                        let id = self.replica.id();
                        eprintln!(
                            "node {id}: refused a node's message from client {}",
                            envelope.from
                        );
                    }
                    message => match self.replica.step(envelope.from, message) {
                        Ok(()) => {}
                        // The disk failed: the store refuses writes until reopened; stop.
                        Err(e @ (Error::Io { .. } | Error::Poisoned)) => return Err(e),
                        // Anything else was the peer's input (bad bytes, a manifest or chunk
                        // that fails verification, a request beyond limits, entries that
                        // contradict the committed log): refused, nothing changed.
                        Err(e) => {
                            eprintln!(
                                "node {}: refused a message from {}: {e}",
                                self.replica.id(),
                                envelope.from
                            );
                        }
                    },
                }
            }
            self.propose(writes)?;
            if Instant::now() >= next_tick {
                self.replica.tick()?;
                next_tick = Instant::now() + self.tick;
            }
            let transport = &mut self.transport;
            self.replica.ready(&mut |envelope| transport.send(envelope))?;
            self.answer_committed();
            if shutdown {
                return Ok(self.replica);
            }
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.transport.send(Envelope { from: self.replica.id(), to, message });
    }

    fn propose(&mut self, writes: Vec<(NodeId, u64, Bytes)>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let payloads: Vec<Bytes> = writes.iter().map(|(_, _, payload)| payload.clone()).collect();
        let refused = match self.replica.propose(&payloads) {
            Ok(last) => {
                let first = last + 1 - writes.len() as u64;
                let term = self.replica.term();
                for (index, (client, request_id, _)) in (first..).zip(writes) {
                    self.pending.insert(index, (term, client, request_id));
                }
                return Ok(());
            }
            Err(Error::NotLeader { .. }) => ClientOutcome::NotLeader,
            Err(Error::Busy { .. }) => ClientOutcome::Busy,
            Err(e) => return Err(e),
        };
        let leader = self.replica.leader_id();
        for (client, request_id, _) in writes {
            let reply = Message::ClientReply { request_id, outcome: refused, index: 0, leader };
            self.send(client, reply);
        }
        Ok(())
    }

    /// Answers the writes the commit index passed, and all of them when no longer leading.
    fn answer_committed(&mut self) {
        let log = self.replica.log().clone();
        let commit = log.commit_index();
        let leading = self.replica.is_leader();
        let leader = self.replica.leader_id();
        while let Some(entry) = self.pending.first_entry() {
            let index = *entry.key();
            let (term, client, request_id) = *entry.get();
            let outcome = if index <= commit && log.term(index).ok() == Some(term) {
                ClientOutcome::Committed
            } else if !leading || index <= commit {
                ClientOutcome::Unknown
            } else {
                break;
            };
            entry.remove();
            self.send(client, Message::ClientReply { request_id, outcome, index, leader });
        }
    }

    fn control(&mut self, request_id: u64, op: ControlOp) -> Result<Message> {
        let done = match op {
            ControlOp::Repairs => {
                return Ok(Message::RepairStatus {
                    request_id,
                    report: self.replica.repair_report(),
                })
            }
            ControlOp::Slots => {
                return Ok(Message::SlotStatus {
                    request_id,
                    pending: self.replica.pending_slots(),
                    pulls: self.replica.slot_pulls(),
                })
            }
            ControlOp::Status | ControlOp::Shutdown => Ok(true),
            ControlOp::Vote { term, candidate, last_index, last_term } => {
                self.replica.vote(term, candidate, last_index, last_term)
            }
            ControlOp::BecomeLeader { term } => self.replica.become_leader(term).map(|()| true),
            ControlOp::Snapshot => self.replica.snapshot().map(|_| true),
            ControlOp::ChangeMembership(change) => {
                self.replica.change_membership(change).map(|_| true)
            }
        };
        let (ok, error) = match done {
            Ok(ok) => (ok, String::new()),
            Err(
                e @ (Error::StaleTerm { .. }
                | Error::NotLeader { .. }
                | Error::MembershipChange { .. }
                | Error::Removed),
            ) => (false, e.to_string()),
            Err(e) => return Err(e),
        };
        Ok(Message::ControlReply { request_id, ok, error, status: self.replica.status()? })
    }
}
