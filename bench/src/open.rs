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
    write_raftlog(ours.path(), ENTRIES, 256);
    write_raft_engine(theirs.path(), ENTRIES, 256);
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
    let (mut ours_ms, mut theirs_ms, mut ours_rss, mut theirs_rss) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (ms, rss) = run("raftlog", ours.path());
        ours_ms.push(ms);
        ours_rss.push(rss);
        let (ms, rss) = run("raft-engine", theirs.path());
        theirs_ms.push(ms);
        theirs_rss.push(rss);
    }
    let (ours_ms, theirs_ms) = (median(ours_ms), median(theirs_ms));
    println!("## Open: 4,000,000 entries of 256 B (about 1 GiB), page cache hot");
    println!("| engine | open time | resident memory added | per million entries |");
    println!("|---|---|---|---|");
    for (name, ms, rss) in
        [("raftlog", ours_ms, median(ours_rss)), ("raft-engine", theirs_ms, median(theirs_rss))]
    {
        println!(
            "| {name} | {ms:.1} ms | {:.1} MiB | {:.2} MiB |",
            rss / 1024.0,
            rss / 1024.0 / 4.0
        );
    }
    println!("raftlog opens {:.0}x faster", theirs_ms / ours_ms);
}
