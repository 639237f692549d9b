//! A replicated key-value store on openraft and raftlog: three nodes as separate processes
//! over TCP on 127.0.0.1 (tokio), each with its own raftlog `LogStore` and `StateMachine`
//! directories. The driver initialises node 1, adds 2 and 3 as learners and makes all three
//! voters, writes through the leader, kills the leader with SIGKILL, reads every key back from
//! the new leader (linearizable reads), writes more, restarts the killed node from its
//! directory and waits for it to catch up.
//!
//! `cargo run --release -p raftlog-openraft --example kv -- [--writes N] [--clients N] [--dir DIR]
//! [--store raftlog|raft-log] [--bench]`: `--store raft-log` runs the same cluster on raft-log
//! 0.4.6 (the benchmark's peer); `--bench` stops after the first write phase and prints a
//! `RESULT` line (`bench/openraft.sh` compares the two stores).

#[path = "kv_support/raft_log_peer.rs"]
mod raft_log_peer;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Config, Raft, ServerState};
use raftlog_openraft::kv::{Kv, KvRequest, KvResponse};
use raftlog_openraft::{LogStore, StateMachine};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = KvRequest,
        R = KvResponse,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What travels on a connection: one request frame, then one response frame.
#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<u64>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Init,
    AddLearner { id: u64, addr: String },
    ChangeMembership { voters: BTreeSet<u64> },
    Write(KvRequest),
    Read { key: String },
    Metrics,
}

#[derive(Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<u64>, String>),
    Vote(Result<VoteResponse<u64>, String>),
    Snapshot(Result<InstallSnapshotResponse<u64>, String>),
    Done(Result<(), String>),
    Written(Result<u64, String>),
    Read(Result<Option<String>, String>),
    Metrics {
        leader: Option<u64>,
        term: u64,
        last_applied: Option<u64>,
        last_log: Option<u64>,
        leading: bool,
    },
}

const FRAME_BYTES_MAX: usize = 64 << 20;

async fn send<T: Serialize>(stream: &mut TcpStream, value: &T) -> Result<(), Error> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())?;
    stream.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    stream.write_all(&bytes).await?;
    Ok(())
}

async fn receive<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> Result<T, Error> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err("frame too long".into());
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    Ok(bincode::serde::decode_from_slice(&bytes, bincode::config::standard())?.0)
}

async fn call(stream: &mut TcpStream, request: &Request) -> Result<Response, Error> {
    send(stream, request).await?;
    receive(stream).await
}

/// A node's connection to one peer, reconnecting after a failure.
struct Peer {
    addr: String,
    stream: Option<TcpStream>,
}

impl Peer {
    async fn call<E: std::error::Error>(
        &mut self,
        request: Request,
    ) -> Result<Response, RPCError<u64, BasicNode, E>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            stream.set_nodelay(true).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        match call(stream, &request).await {
            Ok(response) => Ok(response),
            Err(e) => {
                self.stream = None;
                Err(RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string()))))
            }
        }
    }
}

/// The remote's error arrives as text: openraft retries it as a network failure.
fn remote<E: std::error::Error>(e: String) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(e)))
}

struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: u64, node: &BasicNode) -> Peer {
        Peer { addr: node.addr.clone(), stream: None }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(Request::Append(rpc)).await? {
            Response::Append(result) => result.map_err(remote),
            _ => Err(remote("unexpected response".into())),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self.call(Request::Snapshot(rpc)).await? {
            Response::Snapshot(result) => result.map_err(remote),
            _ => Err(remote("unexpected response".into())),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(Request::Vote(rpc)).await? {
            Response::Vote(result) => result.map_err(remote),
            _ => Err(remote("unexpected response".into())),
        }
    }
}

type Machine = StateMachine<TypeConfig, Kv>;

async fn handle(
    raft: &Raft<TypeConfig>,
    machine: &Machine,
    addr: &str,
    request: Request,
) -> Response {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match request {
        Request::Append(rpc) => {
            Response::Append(raft.append_entries(rpc).await.map_err(|e| text(&e)))
        }
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await.map_err(|e| text(&e))),
        Request::Snapshot(rpc) => {
            Response::Snapshot(raft.install_snapshot(rpc).await.map_err(|e| text(&e)))
        }
        Request::Init => {
            let id = raft.metrics().borrow().id;
            let members = BTreeMap::from([(id, BasicNode::new(addr))]);
            Response::Done(raft.initialize(members).await.map_err(|e| text(&e)))
        }
        Request::AddLearner { id, addr } => Response::Done(
            raft.add_learner(id, BasicNode::new(addr), true).await.map(drop).map_err(|e| text(&e)),
        ),
        Request::ChangeMembership { voters } => Response::Done(
            raft.change_membership(voters, false).await.map(drop).map_err(|e| text(&e)),
        ),
        Request::Write(data) => Response::Written(
            raft.client_write(data).await.map(|r| r.log_id.index).map_err(|e| text(&e)),
        ),
        Request::Read { key } => Response::Read(match raft.ensure_linearizable().await {
            Ok(_) => Ok(machine.with_app(|kv| kv.map.get(&key).cloned())),
            Err(e) => Err(text(&e)),
        }),
        Request::Metrics => {
            let m = raft.metrics().borrow().clone();
            Response::Metrics {
                leader: m.current_leader,
                term: m.current_term,
                last_applied: m.last_applied.map(|l| l.index),
                last_log: m.last_log_index,
                leading: m.state == ServerState::Leader,
            }
        }
    }
}

/// One node: its stores, its Raft, and a TCP server for peers and the driver.
async fn serve(id: u64, addr: String, dir: PathBuf, store: &str) -> Result<(), Error> {
    let machine = Machine::open(dir.join("snapshots"), Kv::default())?;
    if store == "raft-log" {
        return run(id, addr, raft_log_peer::RaftLogPeer::open(&dir.join("raft-log"))?, machine)
            .await;
    }
    let log_store = LogStore::<TypeConfig>::open(dir.join("log"), raftlog::Options::default())?;
    let report = log_store.store().recovery_report().clone();
    println!(
        "  [node {id}] {} its log ({} segment(s), last index {}, torn tail {:?})",
        if report.created { "created" } else { "recovered" },
        report.segments,
        report.last_index,
        report.torn_tail.map(|t| t.durability)
    );
    run(id, addr, log_store, machine).await
}

async fn run<LS: RaftLogStorage<TypeConfig>>(
    id: u64,
    addr: String,
    log_store: LS,
    machine: Machine,
) -> Result<(), Error> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        ..Default::default()
    };
    let raft =
        Raft::new(id, Arc::new(config.validate()?), Network, log_store, machine.clone()).await?;
    let listener = TcpListener::bind(&addr).await?;
    let shared = Arc::new((raft, machine, addr));
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok(request) = receive::<Request>(&mut stream).await {
                let response = handle(&shared.0, &shared.1, &shared.2, request).await;
                if send(&mut stream, &response).await.is_err() {
                    break;
                }
            }
        });
    }
}

struct Cluster {
    addrs: BTreeMap<u64, String>,
    root: PathBuf,
    store: String,
    children: BTreeMap<u64, Child>,
}

impl Cluster {
    fn spawn(&mut self, id: u64) -> Result<(), Error> {
        let child = Command::new(std::env::current_exe()?)
            .args([
                "--serve",
                &id.to_string(),
                &self.addrs[&id],
                &self.root.join(format!("node-{id}")).display().to_string(),
                &self.store,
            ])
            .spawn()?;
        self.children.insert(id, child);
        Ok(())
    }

    fn kill(&mut self, id: u64) -> Result<(), Error> {
        if let Some(mut child) = self.children.remove(&id) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    async fn connect(&self, id: u64) -> Result<TcpStream, Error> {
        let started = Instant::now();
        loop {
            match TcpStream::connect(&self.addrs[&id]).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn request(&self, id: u64, request: Request) -> Result<Response, Error> {
        call(&mut self.connect(id).await?, &request).await
    }

    /// Waits for a leader among `among`; returns it.
    async fn leader(&self, among: &[u64]) -> Result<u64, Error> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            for id in among {
                if let Ok(Response::Metrics { leading: true, .. }) =
                    self.request(*id, Request::Metrics).await
                {
                    return Ok(*id);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("no leader elected".into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn done(response: Response) -> Result<(), Error> {
    match response {
        Response::Done(Ok(())) => Ok(()),
        Response::Done(Err(e)) => Err(e.into()),
        _ => Err("unexpected response".into()),
    }
}

/// Writes `keys` through `leader` with `clients` connections; returns the latencies.
async fn write_all(
    cluster: &Cluster,
    leader: u64,
    keys: std::ops::Range<u64>,
    clients: u64,
) -> Result<Vec<Duration>, Error> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let mut stream = cluster.connect(leader).await?;
        let keys: Vec<u64> = keys.clone().filter(|k| k % clients == client).collect();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for key in keys {
                let started = Instant::now();
                let request = Request::Write(KvRequest::Set {
                    key: format!("key-{key}"),
                    value: format!("value-{key}"),
                });
                match call(&mut stream, &request).await? {
                    Response::Written(Ok(_)) => latencies.push(started.elapsed()),
                    Response::Written(Err(e)) => return Err::<_, Error>(e.into()),
                    _ => return Err("unexpected response".into()),
                }
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

/// Prints a write phase's figures; returns (writes/s, p50 us, p99 us).
fn report(what: &str, latencies: &mut [Duration], seconds: f64) -> (f64, u128, u128) {
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_micros();
    let rate = latencies.len() as f64 / seconds;
    println!(
        "{what}: {} writes in {seconds:.2} s, {rate:.0} writes/s, latency p50 {} us, p99 {} us",
        latencies.len(),
        p(0.5),
        p(0.99)
    );
    (rate, p(0.5), p(0.99))
}

async fn drive(
    writes: u64,
    clients: u64,
    root: &Path,
    store: &str,
    bench: bool,
) -> Result<(), Error> {
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        })
        .collect::<Result<_, _>>()?;
    let addrs: BTreeMap<u64, String> =
        (1..=3).zip(ports).map(|(id, port)| (id, format!("127.0.0.1:{port}"))).collect();
    let mut cluster = Cluster {
        addrs: addrs.clone(),
        root: root.to_path_buf(),
        store: store.to_string(),
        children: BTreeMap::new(),
    };
    println!(
        "openraft on {store}: 3 nodes as processes on 127.0.0.1, directories under {}",
        root.display()
    );
    for id in 1..=3 {
        cluster.spawn(id)?;
    }
    done(cluster.request(1, Request::Init).await?)?;
    cluster.leader(&[1]).await?;
    for id in [2, 3] {
        done(cluster.request(1, Request::AddLearner { id, addr: addrs[&id].clone() }).await?)?;
    }
    done(
        cluster.request(1, Request::ChangeMembership { voters: BTreeSet::from([1, 2, 3]) }).await?,
    )?;
    println!(
        "initialised node 1, added nodes 2 and 3 as learners, membership set to voters {{1, 2, 3}}"
    );

    let started = Instant::now();
    let mut latencies = write_all(&cluster, 1, 0..writes, clients).await?;
    let phase = format!("wrote through leader 1 with {clients} clients");
    let (rate, p50, p99) = report(&phase, &mut latencies, started.elapsed().as_secs_f64());
    if bench {
        println!("RESULT {store} {rate:.1} {p50} {p99}");
        return Ok(());
    }

    cluster.kill(1)?;
    println!("killed node 1 (the leader) with SIGKILL");
    let leader = cluster.leader(&[2, 3]).await?;
    println!("node {leader} was elected leader");
    for key in (0..writes).step_by((writes / 100).max(1) as usize) {
        match cluster.request(leader, Request::Read { key: format!("key-{key}") }).await? {
            Response::Read(Ok(Some(value))) if value == format!("value-{key}") => {}
            Response::Read(other) => return Err(format!("key-{key}: read {other:?}").into()),
            _ => return Err("unexpected response".into()),
        }
    }
    println!("linearizable reads on node {leader}: every sampled key holds its acknowledged value");
    let started = Instant::now();
    let mut latencies = write_all(&cluster, leader, writes..writes * 2, clients).await?;
    report(
        &format!("wrote through leader {leader}, node 1 down"),
        &mut latencies,
        started.elapsed().as_secs_f64(),
    );

    println!("restarting node 1 from its directory:");
    cluster.spawn(1)?;
    let target = match cluster.request(leader, Request::Metrics).await? {
        Response::Metrics { last_log, .. } => last_log,
        _ => return Err("unexpected response".into()),
    };
    let caught_up = Instant::now();
    loop {
        if let Ok(Response::Metrics { last_applied, .. }) =
            cluster.request(1, Request::Metrics).await
        {
            if last_applied >= target {
                break;
            }
        }
        if caught_up.elapsed() > Duration::from_secs(60) {
            return Err("node 1 did not catch up".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "node 1 caught up to index {} in {:.3} s",
        target.unwrap_or(0),
        caught_up.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.first().map(String::as_str) == Some("--serve") {
        let [_, id, addr, dir, store] = args.as_slice() else {
            return Err("--serve ID ADDR DIR STORE".into());
        };
        return runtime.block_on(serve(id.parse()?, addr.clone(), dir.into(), store));
    }
    let value =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let writes: u64 = value("--writes").map_or(Ok(2000), |v| v.parse())?;
    let clients: u64 = value("--clients").map_or(Ok(16), |v| v.parse())?;
    let temporary = tempfile::tempdir()?;
    let root = value("--dir").map_or(temporary.path().to_path_buf(), PathBuf::from);
    let store = value("--store").unwrap_or_else(|| "raftlog".to_string());
    if store != "raftlog" && store != "raft-log" {
        return Err("--store is raftlog or raft-log".into());
    }
    let bench = args.iter().any(|a| a == "--bench");
    runtime.block_on(drive(writes, clients.max(1), &root, &store, bench))
}
