//! A seeded, in-memory network for deterministic cluster simulations: every frame goes
//! through the wire codec, and the seed decides which are dropped, duplicated or delayed
//! (delays reorder them) and which nodes are cut off.
//!
//! Invariants:
//! 1. The network is a function of its seed and of the calls made to it: one seed replays
//!    exactly.
//! 2. A frame is delivered at most once per copy, never before the tick it was sent plus one,
//!    and never to or from an isolated node.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::message::{Envelope, NodeId};
use super::wire;
use super::Transport;

/// How unreliable the simulated network is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Frames dropped, per thousand.
    pub drop_per_mille: u64,
    /// Frames delivered twice, per thousand.
    pub duplicate_per_mille: u64,
    /// Extra ticks a frame may take, chosen uniformly in `0..=delay_ticks_max` (reorders).
    pub delay_ticks_max: u64,
}

/// The simulated network; see the module docs.
#[derive(Debug)]
pub struct SimNetwork {
    state: u64,
    now: u64,
    sequence: u64,
    faults: NetworkFaults,
    /// (delivery tick, sequence) -> (receiver, frame).
    in_flight: BTreeMap<(u64, u64), (NodeId, Bytes)>,
    isolated: BTreeSet<NodeId>,
    delivered: u64,
    dropped: u64,
}

impl SimNetwork {
    /// A network whose faults are drawn from `seed`.
    pub fn new(seed: u64, faults: NetworkFaults) -> Self {
        SimNetwork {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            now: 0,
            sequence: 0,
            faults,
            in_flight: BTreeMap::new(),
            isolated: BTreeSet::new(),
            delivered: 0,
            dropped: 0,
        }
    }

    /// A shared network, for endpoints.
    pub fn shared(seed: u64, faults: NetworkFaults) -> Rc<RefCell<SimNetwork>> {
        Rc::new(RefCell::new(SimNetwork::new(seed, faults)))
    }

    /// Node `id`'s endpoint on a shared network.
    pub fn endpoint(network: &Rc<RefCell<SimNetwork>>, id: NodeId) -> SimEndpoint {
        SimEndpoint { network: network.clone(), id }
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn roll(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.next() % 1000 < per_mille
    }

    /// Sends one message from node `sender` (the envelope's `from`, except for an `Append` a
    /// relay forwards in the leader's name): encoded, then dropped, delayed or duplicated as the
    /// seed says.
    pub fn send(&mut self, sender: NodeId, envelope: &Envelope) {
        if self.isolated.contains(&sender) || self.isolated.contains(&envelope.to) {
            self.dropped += 1;
            return;
        }
        if self.roll(self.faults.drop_per_mille) {
            self.dropped += 1;
            return;
        }
        let frame = Bytes::from(wire::encode(envelope)).slice(4..);
        let copies = if self.roll(self.faults.duplicate_per_mille) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = 1 + self.next() % (self.faults.delay_ticks_max + 1);
            self.sequence += 1;
            self.in_flight.insert((self.now + delay, self.sequence), (envelope.to, frame.clone()));
        }
    }

    /// Changes how unreliable the network is from now on (frames in flight keep their fate).
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Moves time one tick on.
    pub fn advance(&mut self) {
        self.now += 1;
    }

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Takes the frames due for `to`, decoded, in delivery order.
    pub fn due(&mut self, to: NodeId) -> Vec<Envelope> {
        let now = self.now;
        let keys: Vec<(u64, u64)> = self
            .in_flight
            .range(..(now + 1, 0))
            .filter(|(_, (receiver, _))| *receiver == to)
            .map(|(key, _)| *key)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let (_, frame) = self.in_flight.remove(&key).expect("listed above");
            if self.isolated.contains(&to) {
                self.dropped += 1;
                continue;
            }
            self.delivered += 1;
            out.push(wire::decode(frame).expect("the simulated network carries encoded frames"));
        }
        out
    }

    /// Cuts `node` off from every other node (frames in flight to it are lost).
    pub fn isolate(&mut self, node: NodeId) {
        self.isolated.insert(node);
    }

    /// Reconnects `node`.
    pub fn heal(&mut self, node: NodeId) {
        self.isolated.remove(&node);
    }

    /// Whether `node` is cut off.
    pub fn is_isolated(&self, node: NodeId) -> bool {
        self.isolated.contains(&node)
    }

    /// Frames delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.delivered, self.dropped)
    }
}

/// One node's side of a shared `SimNetwork`.
#[derive(Debug, Clone)]
pub struct SimEndpoint {
    network: Rc<RefCell<SimNetwork>>,
    id: NodeId,
}

impl Transport for SimEndpoint {
    fn send(&mut self, envelope: Envelope) {
        self.network.borrow_mut().send(self.id, &envelope);
    }

    /// Takes what is due at the network's current tick; simulated time does not wait for
    /// `deadline`.
    fn receive(&mut self, _deadline: Instant, out: &mut Vec<Envelope>) {
        out.extend(self.network.borrow_mut().due(self.id));
    }
}
