//! The main job: a replicated group of raftlog nodes, each its own OS process with its own
//! store and snapshot directories, over the replication shim's TCP transport on 127.0.0.1.
//!
//! The driver writes through the leader (each write acknowledged only once committed), kills
//! followers with SIGKILL and restarts them (they print their recovery report and catch up
//! from the log, or, after a snapshot compacted the leader's log past them, by snapshot and
//! then the log), and moves leadership to an up-to-date follower through an election it runs.
//! With `--add-node`, a new node joins mid-run as a learner, catches up (by snapshot, then the
//! log, when the leader compacted) and is promoted to voter; with `--remove-node`, a follower
//! is removed from the group, its slots move to their new holders, which pull them from
//! snapshots, and it is stopped (`slot_moves` in the summary; every node's state machine is a
//! `SlotMachine` of 64 slots, 3 holders each); with `--corrupt N`, N times a follower is stopped,
//! one byte of an entry in one of its sealed segments is flipped, and the follower is restarted:
//! it finds the damage and rewrites the entry from a peer's copy (`repairs` in the summary). At
//! the end it stops every node, reopens the log of every member and checks that all hold the
//! same entries through the last acknowledged index.
//!
//! `cargo run --release --example cluster -- [--nodes N] [--entries N] [--payload BYTES]
//! [--kills N] [--snapshot-every N] [--leader-changes N] [--add-node] [--remove-node]
//! [--corrupt N] [--relay[=N]] [--dir DIR] [--json] [--no-sync] [--window N]`
//!
//! `--relay`: relay fan-out, the leader sends each batch to N followers (default 2), which
//! forward it to the others (`ReplicationOptions::first_level_size`); the summary's
//! `leader_bytes_sent` is the payload bytes the last leader sent itself.

mod cluster;
mod damage;
mod node;
mod slot_moves;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use cluster::{Client, Cluster};
use raftlog::replication::{ConfChange, ControlOp, NodeId};
use raftlog::{LogStore, Options};

type Error = Box<dyn std::error::Error>;

struct Args {
    nodes: u64,
    entries: u64,
    payload: usize,
    kills: u64,
    snapshot_every: u64,
    leader_changes: u64,
    add_node: bool,
    remove_node: bool,
    dir: Option<String>,
    json: bool,
    no_sync: bool,
    window: usize,
    relay: usize,
    corrupt: u64,
}

fn parse_args(args: &[String]) -> Result<Args, Error> {
    let mut parsed = Args {
        nodes: 3,
        entries: 20_000,
        payload: 256,
        kills: 2,
        snapshot_every: 5_000,
        leader_changes: 1,
        add_node: false,
        remove_node: false,
        dir: None,
        json: false,
        no_sync: false,
        window: 256,
        relay: 0,
        corrupt: 0,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline.clone().or_else(|| iter.next().cloned()).ok_or(format!("{name} needs a value"))
        };
        match name {
            "--nodes" => parsed.nodes = value()?.parse()?,
            "--entries" => parsed.entries = value()?.parse()?,
            "--payload" => parsed.payload = value()?.parse()?,
            "--kills" => parsed.kills = value()?.parse()?,
            "--snapshot-every" => parsed.snapshot_every = value()?.parse()?,
            "--leader-changes" => parsed.leader_changes = value()?.parse()?,
            "--corrupt" => parsed.corrupt = value()?.parse()?,
            "--dir" => parsed.dir = Some(value()?),
            "--window" => parsed.window = value()?.parse()?,
            // `--relay` alone: two relays; `--relay=N`: N.
            "--relay" => parsed.relay = inline.as_deref().map_or(Ok(2), str::parse)?,
            "--json" => parsed.json = true,
            "--add-node" => parsed.add_node = true,
            "--remove-node" => parsed.remove_node = true,
            "--no-sync" => parsed.no_sync = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if parsed.nodes < 1 || parsed.entries < 1 || parsed.window < 1 {
        return Err("--nodes, --entries and --window must be at least 1".into());
    }
    if parsed.kills > 0 && parsed.nodes < 3 {
        return Err("--kills needs at least 3 nodes (a majority must stay up)".into());
    }
    if parsed.leader_changes > 0 && parsed.nodes < 2 {
        return Err("--leader-changes needs at least 2 nodes".into());
    }
    if parsed.corrupt > 0 && parsed.nodes < 3 {
        return Err("--corrupt needs at least 3 nodes (a majority must stay up)".into());
    }
    if parsed.remove_node && parsed.nodes < 2 {
        return Err("--remove-node needs at least 2 nodes (it removes a follower)".into());
    }
    Ok(parsed)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return node::serve(node::NodeConfig::from_args(&args)?);
    }
    let args = parse_args(&args)?;
    let temporary = tempfile::tempdir()?;
    let root = args.dir.as_ref().map_or(temporary.path().to_path_buf(), Into::into);
    run(&args, &root)
}

/// What the driver does between writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Kill,
    LeaderChange,
    AddNode,
    RemoveNode,
    Corrupt,
}

/// The events of a run, in order: kills and leader changes alternating (kills first), a node
/// added after the first of them, then the damaged followers, a node removed last.
fn events(args: &Args) -> Vec<Event> {
    let (mut kills, mut changes) = (0, 0);
    let mut events = Vec::new();
    for event in 0..args.kills + args.leader_changes {
        if kills < args.kills && (changes >= args.leader_changes || event % 2 == 0) {
            events.push(Event::Kill);
            kills += 1;
        } else {
            events.push(Event::LeaderChange);
            changes += 1;
        }
    }
    if args.add_node {
        events.insert(events.len().min(1), Event::AddNode);
    }
    for _ in 0..args.corrupt {
        events.push(Event::Corrupt);
    }
    if args.remove_node {
        events.push(Event::RemoveNode);
    }
    events
}

/// One membership change the driver made.
struct MembershipChange {
    change: &'static str,
    node: NodeId,
    seconds: f64,
}

/// One catch-up of a restarted follower.
struct CatchUp {
    node: NodeId,
    from: &'static str,
    entries: u64,
    seconds: f64,
}

struct Run<'a> {
    args: &'a Args,
    cluster: Cluster,
    client: Client,
    leader: NodeId,
    write_seconds: f64,
    snapshots: u64,
    /// Periodic snapshots wait while a follower is down for a catch-up from the log.
    snapshots_paused: bool,
    catch_ups: Vec<CatchUp>,
    membership_changes: Vec<MembershipChange>,
    repairs: Vec<damage::Repair>,
}

impl Run<'_> {
    /// Writes until `total` are acknowledged, snapshotting every `--snapshot-every`.
    fn write_to(&mut self, total: u64) -> Result<(), Error> {
        let every = self.args.snapshot_every;
        while self.client.acknowledged < total {
            let mut step = total;
            if every > 0 && !self.snapshots_paused {
                step = step.min((self.client.acknowledged / every + 1) * every);
            }
            let started = Instant::now();
            self.client.write_until(step)?;
            self.write_seconds += started.elapsed().as_secs_f64();
            if every > 0 && !self.snapshots_paused && step % every == 0 {
                self.snapshot_all()?;
            }
        }
        Ok(())
    }

    /// Snapshots every running node, the leader last: the followers' snapshots reach it with
    /// the next heartbeats, and its log is compacted no further than every slot's holders
    /// snapshotted (the compaction floor of a slotted group).
    fn snapshot_all(&mut self) -> Result<(), Error> {
        for id in self.cluster.up().into_iter().filter(|id| *id != self.leader) {
            self.cluster.control(id, ControlOp::Snapshot)?;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        self.cluster.control(self.leader, ControlOp::Snapshot)?;
        self.snapshots += 1;
        let status = self.cluster.status(self.leader)?;
        println!(
            "snapshot {} on every running node at about index {}; the leader's log now starts at {}",
            self.snapshots, status.applied_index, status.first_index
        );
        Ok(())
    }

    fn follower(&self, turn: u64) -> NodeId {
        let followers: Vec<NodeId> =
            self.cluster.up().into_iter().filter(|id| *id != self.leader).collect();
        followers[(turn as usize) % followers.len()]
    }

    /// Kills a follower, writes while it is down, restarts it and times its catch-up.
    fn kill_and_restart(&mut self, turn: u64, chunk: u64, by_snapshot: bool) -> Result<(), Error> {
        let victim = self.follower(turn);
        self.snapshots_paused = !by_snapshot;
        self.cluster.kill(victim)?;
        println!("killed node {victim} with SIGKILL (a follower)");
        let total = self.client.acknowledged + chunk;
        let snapshots = self.snapshots;
        self.write_to(total)?;
        if by_snapshot && self.snapshots == snapshots {
            self.snapshot_all()?;
        }
        println!("restarting node {victim}:");
        self.cluster.spawn(victim)?;
        let behind = self.cluster.status(victim)?.last_index;
        let target = self.cluster.status(self.leader)?.last_index;
        let before = self.snapshots_sent(victim)?;
        let started = Instant::now();
        let after = self.cluster.wait_caught_up(self.leader, victim, target)?;
        let seconds = started.elapsed().as_secs_f64();
        let from = if after > before { "snapshot" } else { "log" };
        let entries = target.saturating_sub(behind);
        println!(
            "node {victim} caught up from the {from}: {entries} entries behind, {seconds:.3} s ({:.0} entries/s)",
            entries as f64 / seconds.max(1e-9)
        );
        self.catch_ups.push(CatchUp { node: victim, from, entries, seconds });
        self.snapshots_paused = false;
        Ok(())
    }

    fn snapshots_sent(&mut self, follower: NodeId) -> Result<u64, Error> {
        let status = self.cluster.status(self.leader)?;
        Ok(status.peers.iter().find(|p| p.id == follower).map_or(0, |p| p.snapshots_sent))
    }

    /// Starts a spare node, adds it as a learner, waits for it to catch up (by snapshot then
    /// the log when the leader compacted past it), and promotes it to voter.
    fn add_node(&mut self) -> Result<(), Error> {
        let id = self.cluster.spare().ok_or("no spare node to add")?;
        println!("starting node {id}, to join the group:");
        self.cluster.spawn(id)?;
        let started = Instant::now();
        self.cluster.change_membership(self.leader, ConfChange::AddLearner(id))?;
        let target = self.cluster.status(self.leader)?.last_index;
        let snapshots = self.cluster.wait_caught_up(self.leader, id, target)?;
        let caught_up = started.elapsed().as_secs_f64();
        self.membership_changes.push(MembershipChange {
            change: "add_learner",
            node: id,
            seconds: caught_up,
        });
        let from = if snapshots > 0 { "a snapshot, then the log" } else { "the log" };
        println!(
            "node {id} joined as a learner and caught up from {from}: {target} entries in {caught_up:.3} s"
        );
        let started = Instant::now();
        self.cluster.change_membership(self.leader, ConfChange::Promote(id))?;
        let seconds = started.elapsed().as_secs_f64();
        self.membership_changes.push(MembershipChange { change: "promote", node: id, seconds });
        println!("node {id} promoted to voter ({seconds:.3} s); voters {:?}", self.cluster.voters);
        Ok(())
    }

    /// Moves leadership to an up-to-date follower.
    fn change_leader(&mut self, turn: u64) -> Result<(), Error> {
        let next = self.follower(turn);
        let target = self.cluster.status(self.leader)?.last_index;
        self.cluster.wait_caught_up(self.leader, next, target)?;
        let term = self.cluster.elect(next)?;
        println!("leadership moved from node {} to node {next} (term {term})", self.leader);
        self.leader = next;
        self.client.reconnect(&self.cluster, next)
    }
}

fn run(args: &Args, root: &Path) -> Result<(), Error> {
    println!(
        "raftlog cluster: {} nodes as processes on 127.0.0.1, {} entries of {} B, {} kills, \
         snapshot every {}, {} leader changes, fsync {}; directories under {}",
        args.nodes,
        args.entries,
        args.payload,
        args.kills,
        args.snapshot_every,
        args.leader_changes,
        if args.no_sync { "off" } else { "on" },
        root.display()
    );
    let spares = u64::from(args.add_node);
    let mut cluster = Cluster::start(args.nodes, spares, root, (args.no_sync, args.relay))?;
    let term = cluster.elect(1)?;
    println!("node 1 leads term {term}");
    let client = Client::connect(&cluster, 1, args.window, args.payload)?;
    let mut run = Run {
        args,
        cluster,
        client,
        leader: 1,
        write_seconds: 0.0,
        snapshots: 0,
        snapshots_paused: false,
        catch_ups: Vec::new(),
        membership_changes: Vec::new(),
        repairs: Vec::new(),
    };
    let events = events(args);
    let segment = args.entries / (events.len() as u64 + 1);
    let (mut kills, mut changes, mut corruptions) = (0, 0, 0);
    for (k, event) in (0u64..).zip(&events) {
        run.write_to(segment * (k + 1) - segment / 2)?;
        match event {
            Event::Kill => {
                // Every second kill is caught up by snapshot (when snapshots are on).
                let by_snapshot = args.snapshot_every > 0 && kills % 2 == 1;
                run.kill_and_restart(kills, (segment / 2).max(1), by_snapshot)?;
                kills += 1;
            }
            Event::LeaderChange => {
                run.change_leader(changes)?;
                changes += 1;
            }
            Event::AddNode => run.add_node()?,
            Event::RemoveNode => run.remove_node()?,
            Event::Corrupt => {
                run.corrupt_and_restart(corruptions)?;
                corruptions += 1;
            }
        }
    }
    run.write_to(args.entries)?;
    let summary = finish(run, args)?;
    if args.json {
        println!("{summary}");
    }
    Ok(())
}

/// Waits for every node to apply everything, stops them, checks their logs, and returns the
/// JSON summary.
fn finish(mut run: Run<'_>, args: &Args) -> Result<String, Error> {
    let status = run.cluster.status(run.leader)?;
    let (commit_index, last_index) = (status.commit_index, status.last_index);
    for id in run.cluster.up() {
        if id != run.leader {
            run.cluster.wait_caught_up(run.leader, id, last_index)?;
        }
    }
    let leader_status = run.cluster.status(run.leader)?;
    let followers: Vec<String> = leader_status
        .peers
        .iter()
        .map(|p| {
            let lag = leader_status.last_index.saturating_sub(p.match_index);
            println!(
                "follower {}: match index {}, lag {lag}, {} batches and {} payload bytes sent, {} snapshots",
                p.id, p.match_index, p.batches_sent, p.bytes_sent, p.snapshots_sent
            );
            format!(
                r#"{{"node":{},"match_index":{},"lag":{lag},"batches_sent":{},"bytes_sent":{},"snapshots_sent":{}}}"#,
                p.id, p.match_index, p.batches_sent, p.bytes_sent, p.snapshots_sent
            )
        })
        .collect();
    let leader_bytes_sent: u64 = leader_status.peers.iter().map(|p| p.bytes_sent).sum();
    let acknowledged_through = run.client.acknowledged_through;
    let throughput = run.client.acknowledged as f64 / run.write_seconds.max(1e-9);
    let mut latencies = run.client.latencies_us.clone();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0)
    };
    let (p50, p99) = (percentile(0.50), percentile(0.99));
    println!(
        "{} writes acknowledged through index {acknowledged_through} (commit {commit_index}): \
         {throughput:.0} entries/s, commit latency p50 {p50} us, p99 {p99} us",
        run.client.acknowledged
    );
    let slot_moves: Vec<String> =
        run.slot_moves()?.iter().map(slot_moves::SlotMove::json).collect();
    run.cluster.shutdown()?;
    let dirs = run.cluster.dirs();
    let compared = verify(&dirs, acknowledged_through)?;
    println!(
        "every node's log reopened: the {} nodes agree on every entry through index \
         {acknowledged_through} that they hold ({compared} entries compared); inspect one with \
         `cargo run -p raftlog-tools --bin raftlog -- verify {}`",
        dirs.len(),
        dirs[0].1.display()
    );
    let catch_ups: Vec<String> = run
        .catch_ups
        .iter()
        .map(|c| {
            format!(
                r#"{{"node":{},"from":"{}","entries":{},"seconds":{:.6}}}"#,
                c.node, c.from, c.entries, c.seconds
            )
        })
        .collect();
    let membership_changes: Vec<String> = run
        .membership_changes
        .iter()
        .map(|c| {
            format!(r#"{{"change":"{}","node":{},"seconds":{:.6}}}"#, c.change, c.node, c.seconds)
        })
        .collect();
    let repairs: Vec<String> = run.repairs.iter().map(damage::Repair::json).collect();
    let ids = |ids: &[NodeId]| ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let members = format!(
        r#"{{"voters":[{}],"learners":[{}]}}"#,
        ids(&run.cluster.voters),
        ids(&run.cluster.learners)
    );
    let node_dirs: Vec<String> = dirs
        .iter()
        .map(|(id, log, snap)| {
            format!(
                r#"{{"node":{id},"log_dir":{},"snapshot_dir":{}}}"#,
                json_string(log),
                json_string(snap)
            )
        })
        .collect();
    Ok(format!(
        r#"{{"nodes":{},"entries":{},"payload":{},"acknowledged":{},"acknowledged_through":{acknowledged_through},"commit_index":{commit_index},"throughput_entries_per_s":{throughput:.1},"commit_latency_us":{{"p50":{p50},"p99":{p99}}},"kills":{},"leader_changes":{},"snapshots":{},"fsync":{},"catch_ups":[{}],"followers":[{}],"relay":{},"leader_bytes_sent":{leader_bytes_sent},"members":{members},"membership_changes":[{}],"corrupt":{},"repairs":[{}],"slots":{{"count":{},"replicas":{}}},"slot_moves":[{}],"node_dirs":[{}],"verified_entries":{compared}}}"#,
        args.nodes,
        args.entries,
        args.payload,
        run.client.acknowledged,
        run.catch_ups.len(),
        args.leader_changes,
        run.snapshots,
        !args.no_sync,
        catch_ups.join(","),
        followers.join(","),
        args.relay,
        membership_changes.join(","),
        args.corrupt,
        repairs.join(","),
        slot_moves::SLOTS,
        slot_moves::SLOT_REPLICAS,
        slot_moves.join(","),
        node_dirs.join(",")
    ))
}

fn json_string(path: &Path) -> String {
    let text = path.display().to_string();
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => format!("\\u{:04x}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// Reopens every node's log and checks that, through `acknowledged_through`, every index two
/// nodes hold has the same term and payload. Returns the entries compared.
fn verify(
    dirs: &[(NodeId, std::path::PathBuf, std::path::PathBuf)],
    acknowledged_through: u64,
) -> Result<u64, Error> {
    let mut reference: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
    let mut compared = 0;
    for (id, log_dir, _) in dirs {
        let store = LogStore::open(log_dir, Options::default())?;
        let hi = acknowledged_through.min(store.last_index()) + 1;
        let mut lo = store.first_index();
        while lo < hi {
            let entries = store.entries(lo, hi, 8 << 20)?;
            for entry in &entries {
                let seen = (entry.term, crc32fast::hash(&entry.payload));
                let known = *reference.entry(entry.index).or_insert(seen);
                if known != seen {
                    return Err(format!("node {id} disagrees at index {}", entry.index).into());
                }
                compared += 1;
            }
            lo = entries.last().map_or(hi, |e| e.index + 1);
        }
        store.close()?;
    }
    Ok(compared)
}
