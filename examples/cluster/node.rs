//! One node of the cluster as its own OS process: opens its store and snapshot directories,
//! prints its recovery report, and serves the replication shim over TCP until the driver
//! says `Shutdown` (or kills it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raftlog::replication::tcp::TcpTransport;
use raftlog::replication::{NodeId, Replica, ReplicationOptions, Server, SlotMachine};

use crate::slot_moves::{SLOTS, SLOT_REPLICAS};
use raftlog::{LogStore, Options, RaftLog, SnapshotStore, SyncPolicy};

/// How a node process is started (the driver passes these as `--serve` arguments).
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The group's first voters (a joining node is not among them).
    pub members: Vec<NodeId>,
    pub log_dir: PathBuf,
    pub snapshot_dir: PathBuf,
    /// fsync off: the benchmark's "cost of durability" baseline.
    pub no_sync: bool,
    /// Relay fan-out: `ReplicationOptions::first_level_size` (0: off).
    pub relay: usize,
}

impl NodeConfig {
    pub fn to_args(&self) -> Vec<String> {
        let peers: Vec<String> =
            self.peers.iter().map(|(id, addr)| format!("{id}={addr}")).collect();
        let members: Vec<String> = self.members.iter().map(ToString::to_string).collect();
        let mut args = vec![
            "--serve".to_string(),
            format!("--id={}", self.id),
            format!("--listen={}", self.listen),
            format!("--peers={}", peers.join(",")),
            format!("--members={}", members.join(",")),
            format!("--log-dir={}", self.log_dir.display()),
            format!("--snapshot-dir={}", self.snapshot_dir.display()),
            format!("--relay={}", self.relay),
        ];
        if self.no_sync {
            args.push("--no-sync".to_string());
        }
        args
    }

    pub fn from_args(args: &[String]) -> Result<Self, String> {
        let value = |name: &str| {
            args.iter()
                .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_string))
                .ok_or(format!("--serve needs --{name}"))
        };
        let parse_addr = |s: &str| s.parse::<SocketAddr>().map_err(|e| format!("{s}: {e}"));
        let mut peers = BTreeMap::new();
        for peer in value("peers")?.split(',').filter(|p| !p.is_empty()) {
            let (id, addr) = peer.split_once('=').ok_or(format!("bad peer {peer}"))?;
            peers.insert(id.parse().map_err(|e| format!("{id}: {e}"))?, parse_addr(addr)?);
        }
        let members = value("members")?
            .split(',')
            .map(|m| m.parse().map_err(|e| format!("--members {m}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(NodeConfig {
            id: value("id")?.parse().map_err(|e| format!("--id: {e}"))?,
            listen: parse_addr(&value("listen")?)?,
            peers,
            members,
            log_dir: value("log-dir")?.into(),
            snapshot_dir: value("snapshot-dir")?.into(),
            no_sync: args.iter().any(|a| a == "--no-sync"),
            relay: value("relay")?.parse().map_err(|e| format!("--relay: {e}"))?,
        })
    }
}

/// Runs the node until it is told to shut down.
pub fn serve(config: NodeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let mut options = Options::default();
    if config.no_sync {
        options = options.sync_policy(SyncPolicy::Never);
    }
    let store = LogStore::open(&config.log_dir, options)?;
    let report = store.recovery_report().clone();
    let log = RaftLog::new(store)?;
    let snapshots = SnapshotStore::open(&config.snapshot_dir)?;
    let mut replica = Replica::open(
        config.id,
        &config.members,
        log,
        snapshots,
        SlotMachine::new(SLOTS, SLOT_REPLICAS)?,
        ReplicationOptions::default().first_level_size(config.relay),
    )?;
    let cut = report
        .torn_tail
        .as_ref()
        .map_or("nothing cut".to_string(), |t| format!("cut a torn tail: {t:?}"));
    println!(
        "  [node {}] {} log {}..={} in {} segment(s), {cut}; term {}, commit {}",
        config.id,
        if report.created { "created" } else { "recovered" },
        report.first_index,
        report.last_index,
        report.segments,
        replica.term(),
        replica.log().commit_index(),
    );
    // Damage under a valid index is otherwise found by the read that meets it.
    let damaged = replica.scrub()?;
    if !damaged.is_empty() {
        println!("  [node {}] scrub: damaged entries {damaged:?}, to repair from peers", config.id);
    }
    let transport = TcpTransport::bind(config.listen, &config.peers)?;
    let replica = Server::new(replica, transport, Duration::from_millis(10)).run()?;
    replica.close()?;
    Ok(())
}
