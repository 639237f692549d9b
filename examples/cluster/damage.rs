//! `--corrupt N`: a follower is stopped, one byte of an entry in one of its sealed segments is
//! flipped, and the follower is restarted: it finds the damage (it scrubs its log at start),
//! never serves nor applies the damaged entry, and rewrites it from a peer's copy.

use std::path::Path;
use std::time::{Duration, Instant};

use raftlog::replication::NodeId;

use crate::{Error, Run};

/// One damaged range a node rewrote from a peer's copies.
pub struct Repair {
    pub node: NodeId,
    pub first: u64,
    pub last: u64,
    pub from: NodeId,
}

impl Repair {
    pub fn json(&self) -> String {
        let indexes: Vec<String> = (self.first..=self.last).map(|i| i.to_string()).collect();
        format!(
            r#"{{"node":{},"indexes":[{}],"from":{}}}"#,
            self.node,
            indexes.join(","),
            self.from
        )
    }
}

impl Run<'_> {
    /// Stops a follower, flips one byte of an entry in its newest sealed segment, restarts
    /// it, and waits until it has repaired the entry from a peer.
    pub fn corrupt_and_restart(&mut self, turn: u64) -> Result<(), Error> {
        let victim = self.follower(turn);
        self.cluster.stop(victim)?;
        let log_dir = self.cluster.dirs().into_iter().find(|d| d.0 == victim).ok_or("no dir")?.1;
        let (segment, index) = flip_a_byte(&log_dir)?;
        println!("flipped one byte of entry {index} in node {victim}'s sealed segment {segment}");
        println!("restarting node {victim}:");
        self.cluster.spawn(victim)?;
        let started = Instant::now();
        loop {
            let report = self.cluster.repairs(victim)?;
            let covered = report.repaired.iter().any(|r| (r.first..=r.last).contains(&index));
            if covered && report.damaged.is_empty() {
                for r in report.repaired.iter().filter(|r| (r.first..=r.last).contains(&index)) {
                    let seconds = started.elapsed().as_secs_f64();
                    println!(
                        "node {victim} repaired entries {}..={} from node {} ({seconds:.3} s)",
                        r.first, r.last, r.from
                    );
                    let (first, last, from) = (r.first, r.last, r.from);
                    self.repairs.push(Repair { node: victim, first, last, from });
                }
                return Ok(());
            }
            if !report.lost.is_empty() || started.elapsed() > Duration::from_secs(60) {
                return Err(
                    format!("node {victim} did not repair entry {index}: {report:?}").into()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Flips one byte in the payload of the second-to-last entry of the newest sealed segment in
/// `log_dir` (one with an index file: the store was closed cleanly, so every segment is);
/// returns the segment's name and the entry's index.
fn flip_a_byte(log_dir: &Path) -> Result<(String, u64), Error> {
    let mut sealed: Vec<String> = std::fs::read_dir(log_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".seg"))
        .filter(|name| log_dir.join(name.replace(".seg", ".idx")).exists())
        .collect();
    sealed.sort();
    for name in sealed.iter().rev() {
        let path = log_dir.join(name);
        let mut bytes = std::fs::read(&path)?;
        let mut entries = Vec::new();
        let mut at = 64usize;
        while at + 32 <= bytes.len() && bytes[at..at + 32].iter().any(|b| *b != 0) {
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into()?) as usize;
            let index = u64::from_le_bytes(bytes[at + 8..at + 16].try_into()?);
            if bytes[at + 24] == 1 && len > 0 {
                entries.push((at, len, index));
            }
            at += 32 + len;
        }
        // Near the log's end: compaction may have left older entries of the file dead.
        let Some(&(at, len, index)) = entries.get(entries.len().saturating_sub(2)) else {
            continue;
        };
        bytes[at + 32 + len / 2] ^= 0xff;
        std::fs::write(&path, bytes)?;
        return Ok((name.clone(), index));
    }
    Err("no sealed segment with an entry to damage".into())
}
