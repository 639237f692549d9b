//! Five raft-rs nodes as threads with channel mailboxes, their logs on disk in raftlog's
//! `DiskStorage` (in the spirit of raft-rs's `five_mem_node`): proposals, the leader killed
//! and restarted, compaction behind a snapshot, and a check that every node ends with the same
//! state. It prints what happened.
//!
//! The state machine snapshots per-slot files (a key's slot is its number modulo `SLOTS`).
//! The snapshot message carries only raftlog's manifest; a node that needs the files pulls
//! them from the leader in checksummed chunks (`DiskStorage::serve_chunk`, `receive_snapshot`)
//! over a stand-in transport, the nodes' storages shared between the threads.
//!
//! `cargo run -p raftlog-raft-rs --example five_nodes [-- --dir DIR] [--proposals N]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raft::eraftpb::{ConfState, Entry, EntryType, Message};
use raft::{Config, RawNode, StateRole, Storage};
use raftlog_raft_rs::DiskStorage;

const NODES: u64 = 5;
/// A snapshot is taken, and the log compacted behind it, every this many applied entries.
const SNAPSHOT_EVERY: u64 = 100;
/// Slots of the state machine: one snapshot file each.
const SLOTS: u32 = 4;
/// The file of a slot in a snapshot.
const SLOT_FILE: &str = "kv";

/// The chunk transport of the example: every node's storage, to ask a leader for chunks.
type Peers = Arc<Mutex<BTreeMap<u64, DiskStorage>>>;

enum Mail {
    Raft(Box<Message>),
    Propose(String),
    Stop,
}

type Mailboxes = Arc<Mutex<BTreeMap<u64, Sender<Mail>>>>;

/// A node's applied index and key-value state.
type NodeState = (u64, BTreeMap<String, String>);

/// What every node tells the others: the leader it knows, and each node's state.
#[derive(Default)]
struct Board {
    leader: AtomicU64,
    states: Mutex<BTreeMap<u64, NodeState>>,
}

fn config(id: u64, applied: u64) -> Config {
    Config { id, applied, election_tick: 10, heartbeat_tick: 3, ..Config::default() }
}

/// The slot of a key `key{n}`.
fn slot_of(key: &str) -> u32 {
    key.trim_start_matches("key").parse::<u32>().unwrap_or(0) % SLOTS
}

/// The state machine of the latest snapshot in `storage`, read from its slot files.
fn load_snapshot(storage: &DiskStorage) -> (BTreeMap<String, String>, u64) {
    let store = storage.snapshot_store();
    let Some(meta) = store.latest().expect("snapshot store") else { return (BTreeMap::new(), 0) };
    let mut kv = BTreeMap::new();
    for slot in 0..SLOTS {
        if meta.file(slot, SLOT_FILE).is_some() {
            kv.extend(decode(&store.read(&meta, slot, SLOT_FILE).expect("verified read")));
        }
    }
    (kv, meta.index)
}

/// The state machine: a key-value map, each slot's part snapshotted as `key=value` lines.
fn encode(kv: &BTreeMap<String, String>) -> Vec<u8> {
    kv.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>().into_bytes()
}

fn decode(bytes: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(bytes);
    let pairs = text.lines().filter_map(|line| line.split_once('='));
    pairs.map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

struct Node {
    id: u64,
    raw: RawNode<DiskStorage>,
    kv: BTreeMap<String, String>,
    applied: u64,
    snapshot_due: bool,
    mailboxes: Mailboxes,
    board: Arc<Board>,
    peers: Peers,
}

impl Node {
    /// Opens the node's storage in `dir`; the state machine starts from the latest snapshot.
    fn open(id: u64, dir: &Path, (mailboxes, board, peers): Shared) -> Node {
        let storage = DiskStorage::open(dir, raftlog::Options::default()).expect("open storage");
        if storage.initial_state().unwrap().conf_state == ConfState::default() {
            let voters: Vec<u64> = (1..=NODES).collect();
            storage.initialize_with_conf_state(ConfState::from((voters, vec![]))).unwrap();
        }
        let (kv, applied) = load_snapshot(&storage);
        peers.lock().unwrap().insert(id, storage.clone());
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&config(id, applied), storage, &logger).expect("raft node");
        Node { id, raw, kv, applied, snapshot_due: false, mailboxes, board, peers }
    }

    /// Pulls the files of `snapshot` from the leader, chunk by chunk, and installs them.
    fn receive_files(&self, snapshot: &raft::eraftpb::Snapshot) {
        let storage = self.raw.store();
        let leader = self.raw.raft.leader_id;
        let source = self.peers.lock().unwrap().get(&leader).cloned().expect("the leader");
        let mut receiver = storage.receive_snapshot(snapshot).expect("a valid manifest");
        let (mut chunks, mut bytes) = (0, 0);
        loop {
            let requests = receiver.missing(None, 16);
            if requests.is_empty() {
                break;
            }
            for request in requests {
                let chunk = source.serve_chunk(&request).expect("the leader's chunk");
                bytes += chunk.data.len();
                receiver.accept(&chunk).expect("a verified chunk");
                chunks += 1;
            }
        }
        receiver.install().expect("install the files");
        let id = self.id;
        println!("  node {id}: pulled {chunks} chunks ({bytes} B) of snapshot files from {leader}");
    }

    fn send(&self, messages: Vec<Message>) {
        let mailboxes = self.mailboxes.lock().unwrap();
        for message in messages {
            if let Some(mailbox) = mailboxes.get(&message.to) {
                let _ = mailbox.send(Mail::Raft(Box::new(message)));
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.applied = entry.index;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue;
            }
            let command = String::from_utf8_lossy(&entry.data).to_string();
            if let Some((key, value)) = command.strip_prefix("put ").and_then(|c| c.split_once(' '))
            {
                self.kv.insert(key.to_owned(), value.to_owned());
            }
            self.snapshot_due |= self.applied % SNAPSHOT_EVERY == 0;
        }
    }

    /// Takes the snapshot that became due, once the Ready that committed it is persisted
    /// (the storage knows its commit index by then).
    fn snapshot_if_due(&mut self) {
        if !std::mem::take(&mut self.snapshot_due) {
            return;
        }
        let storage = self.raw.store();
        let kv = &self.kv;
        storage
            .create_file_snapshot(self.applied, |writer| {
                for slot in 0..SLOTS {
                    let part: BTreeMap<String, String> = kv
                        .iter()
                        .filter(|(key, _)| slot_of(key) == slot)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    writer.add_bytes(slot, SLOT_FILE, &encode(&part))?;
                }
                Ok(())
            })
            .expect("snapshot");
        if self.raw.raft.state == StateRole::Leader {
            let first = storage.first_index().unwrap();
            println!("  node {}: snapshot at {}, log compacted to {first}", self.id, self.applied);
        }
    }

    fn on_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let storage = self.raw.store().clone();
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            if raftlog_raft_rs::manifest_of(&snapshot).is_some() {
                self.receive_files(&snapshot);
            }
            storage.apply_snapshot(snapshot).expect("apply snapshot");
            (self.kv, self.applied) = load_snapshot(&storage);
            println!("  node {}: installed a snapshot at {}", self.id, self.applied);
        }
        let committed = ready.take_committed_entries();
        self.apply(committed);
        storage.persist(ready.entries(), ready.hs()).expect("persist a Ready");
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            storage.commit_to(commit).expect("persist the commit index");
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.raw.advance_apply();
        self.snapshot_if_due();
    }

    fn run(mut self, mail: Receiver<Mail>) {
        let mut last_tick = Instant::now();
        loop {
            match mail.recv_timeout(Duration::from_millis(5)) {
                Ok(Mail::Raft(message)) => {
                    let _ = self.raw.step(*message);
                }
                Ok(Mail::Propose(command)) => {
                    if self.raw.raft.state == StateRole::Leader {
                        let _ = self.raw.propose(vec![], command.into_bytes());
                    }
                }
                Ok(Mail::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_tick.elapsed() >= Duration::from_millis(10) {
                self.raw.tick();
                last_tick = Instant::now();
            }
            self.on_ready();
            if self.raw.raft.state == StateRole::Leader {
                self.board.leader.store(self.id, Ordering::Release);
            }
            let state = (self.applied, self.kv.clone());
            self.board.states.lock().unwrap().insert(self.id, state);
        }
    }
}

/// What the node threads share: mailboxes, the board, the chunk transport.
type Shared = (Mailboxes, Arc<Board>, Peers);

fn start(id: u64, dir: &Path, (mailboxes, board, peers): &Shared) -> JoinHandle<()> {
    let (sender, receiver) = channel();
    mailboxes.lock().unwrap().insert(id, sender);
    let shared = (Arc::clone(mailboxes), Arc::clone(board), Arc::clone(peers));
    let node = Node::open(id, &dir.join(format!("node{id}")), shared);
    std::thread::spawn(move || node.run(receiver))
}

fn wait_for<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Proposes `put key{k} v{k}` for `keys` to every node (only the leader takes them), until
/// the leader has applied them all.
fn propose(keys: std::ops::Range<u64>, mailboxes: &Mailboxes, board: &Board) -> u64 {
    for k in keys.clone() {
        for mailbox in mailboxes.lock().unwrap().values() {
            let _ = mailbox.send(Mail::Propose(format!("put key{k} v{k}")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_for("the proposals to apply", || {
        let leader = board.leader.load(Ordering::Acquire);
        let states = board.states.lock().unwrap();
        let (applied, kv) = states.get(&leader)?;
        keys.clone().all(|k| kv.contains_key(&format!("key{k}"))).then_some(*applied)
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let proposals: u64 = flag("--proposals").and_then(|v| v.parse().ok()).unwrap_or(300);
    let temp = tempfile::tempdir().expect("temporary directory");
    let dir: PathBuf = flag("--dir").map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    println!("five raft-rs nodes on raftlog DiskStorage in {}", dir.display());

    let shared: Shared = (Arc::default(), Arc::new(Board::default()), Arc::default());
    let (mailboxes, board, peers) = &shared;
    let mut threads: BTreeMap<u64, JoinHandle<()>> =
        (1..=NODES).map(|id| (id, start(id, &dir, &shared))).collect();
    let leader =
        wait_for("a leader", || Some(board.leader.load(Ordering::Acquire)).filter(|l| *l != 0));
    println!("node {leader} is the leader");

    let half = proposals / 2;
    let started = Instant::now();
    let applied = propose(0..half, mailboxes, board);
    println!(
        "{half} proposals committed and applied (log at {applied}) in {:?}",
        started.elapsed()
    );

    println!("killing the leader, node {leader}");
    let _ = mailboxes.lock().unwrap().remove(&leader).map(|mailbox| mailbox.send(Mail::Stop));
    threads.remove(&leader).unwrap().join().unwrap();
    board.states.lock().unwrap().remove(&leader);
    peers.lock().unwrap().remove(&leader);
    board.leader.store(0, Ordering::Release);
    let new_leader = wait_for("a new leader", || {
        Some(board.leader.load(Ordering::Acquire)).filter(|l| *l != 0 && *l != leader)
    });
    println!("node {new_leader} is the new leader");
    let applied = propose(half..proposals, mailboxes, board);
    println!(
        "{} more proposals committed (log at {applied}) without node {leader}",
        proposals - half
    );

    println!("restarting node {leader} from its disk");
    threads.insert(leader, start(leader, &dir, &shared));
    let final_state = wait_for("every node to converge", || {
        let states = board.states.lock().unwrap();
        let first = states.values().next()?.clone();
        (states.len() as u64 == NODES && states.values().all(|s| *s == first)).then_some(first)
    });
    println!(
        "all {NODES} nodes applied {} entries and hold the same {} keys",
        final_state.0,
        final_state.1.len()
    );
    assert_eq!(final_state.1.len() as u64, proposals, "every proposal is in the state");

    for mailbox in mailboxes.lock().unwrap().values() {
        let _ = mailbox.send(Mail::Stop);
    }
    for (_, thread) in threads {
        thread.join().unwrap();
    }
    println!("done");
}
