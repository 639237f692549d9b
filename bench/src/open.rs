//! Opening 4 million entries, each open in a fresh child process.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use raft_engine::Engine;
use raftlog::LogStore;

use crate::*;

pub fn open_child(engine: &str, dir: &Path) {
    let rss_before = status_kib("VmRSS:");
    let started = Instant::now();
    let (entries, keep): (u64, Box<dyn std::any::Any>) = match engine {
        "raftlog" => {
            let store = LogStore::open(dir, raftlog_options()).expect("open raftlog");
            (store.last_index() + 1 - store.first_index(), Box::new(store))
        }
        "raft-log" => {
            let log = crate::peer::open(dir);
            (crate::peer::count(&log), Box::new(log))
        }
        _ => {
            let engine = Engine::open(raft_engine_config(dir)).expect("open raft-engine");
            let count = engine.last_index(REGION).unwrap_or(0) + 1
                - engine.first_index(REGION).unwrap_or(1);
            (count, Box::new(engine))
        }
    };
    let millis = started.elapsed().as_secs_f64() * 1e3;
    println!("{millis:.2} {} {entries}", status_kib("VmRSS:").saturating_sub(rss_before));
    drop(keep);
}

pub fn open(rounds: usize) {
    const ENTRIES: u64 = 4_000_000;
    let ours = tempfile::tempdir().expect("tempdir");
    let theirs = tempfile::tempdir().expect("tempdir");
    let peer = tempfile::tempdir().expect("tempdir");
    write_raftlog(ours.path(), ENTRIES, 256);
    write_raft_engine(theirs.path(), ENTRIES, 256);
    crate::peer::write(peer.path(), ENTRIES, 256, BATCH);
    let exe = std::env::current_exe().expect("current exe");
    let run = |engine: &str, dir: &Path| -> (f64, f64) {
        let out = Command::new(&exe).args(["open-child", engine]).arg(dir).output().expect("child");
        let text = String::from_utf8_lossy(&out.stdout);
        let fields: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        assert_eq!(
            fields.get(2).copied(),
            Some(ENTRIES as f64),
            "{engine} reopened all entries: {text}"
        );
        (fields[0], fields[1])
    };
    let engines =
        [("raftlog", ours.path()), ("raft-engine", theirs.path()), ("raft-log", peer.path())];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    let mut memory: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    for _ in 0..rounds {
        for (k, (engine, dir)) in engines.iter().enumerate() {
            let (ms, rss) = run(engine, dir);
            times[k].push(ms);
            memory[k].push(rss);
        }
    }
    let times: Vec<f64> = times.into_iter().map(median).collect();
    println!("## Open: 4,000,000 entries of 256 B (about 1 GiB), page cache hot");
    println!(
        "| engine | open time | resident memory added | per million entries | raftlog opens |"
    );
    println!("|---|---|---|---|---|");
    for ((k, (name, _)), rss) in engines.iter().enumerate().zip(memory) {
        let rss = median(rss);
        println!(
            "| {name} | {:.1} ms | {:.1} MiB | {:.2} MiB | {:.0}x faster |",
            times[k],
            rss / 1024.0,
            rss / 1024.0 / 4.0,
            times[k] / times[0]
        );
    }
}
