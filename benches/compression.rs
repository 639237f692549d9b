//! zstd payload compression: ratio, append and read speed, on repetitive time-series rows (as
//! IoTDB writes them) and on random bytes, against compression off. Appends are unsynced so the
//! CPU cost shows; medians of 5 runs. `cargo bench --bench compression`.

use std::time::Instant;

use raftlog::{Compression, Entry, LogStore, Options, SyncPolicy};

const TOTAL_BYTES: usize = 64 << 20;
const RUNS: usize = 5;

fn time_series(index: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut row = 0u64;
    while out.len() < len {
        let ts = 1_700_000_000_000 + index * 1000 + row;
        let line = format!(
            "root.sg.d{}.s{},{ts},{:.3}\n",
            index % 16,
            row % 8,
            20.0 + ((row * 7) % 50) as f64 / 10.0
        );
        out.extend_from_slice(line.as_bytes());
        row += 1;
    }
    out.truncate(len);
    out
}

fn random(index: u64, len: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// (append MiB/s, read MiB/s, stored/logical) for one configuration.
fn measure(payloads: &[Vec<u8>], compression: Compression) -> (f64, f64, f64) {
    let (mut appends, mut reads, mut ratio) = (Vec::new(), Vec::new(), 0.0);
    let logical: usize = payloads.iter().map(Vec::len).sum();
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().sync_policy(SyncPolicy::Never).compression(compression);
        let store = LogStore::open(dir.path(), options).unwrap();
        let entries: Vec<Entry> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Entry::new(i as u64 + 1, 1, p.clone()))
            .collect();
        let started = Instant::now();
        for batch in entries.chunks(16) {
            store.append(batch).unwrap();
        }
        appends.push(logical as f64 / started.elapsed().as_secs_f64() / (1 << 20) as f64);
        let started = Instant::now();
        let read = store.entries(1, entries.len() as u64 + 1, u64::MAX).unwrap();
        reads.push(logical as f64 / started.elapsed().as_secs_f64() / (1 << 20) as f64);
        assert_eq!(read.len(), entries.len());
        let stored: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        ratio = stored as f64 / logical as f64;
    }
    (median(appends), median(reads), ratio)
}

fn main() {
    println!("| payloads | compression | stored / logical | append MiB/s | vs off | read MiB/s |");
    println!("|---|---|---|---|---|---|");
    type Generator = fn(u64, usize) -> Vec<u8>;
    let kinds: [(&str, Generator, usize); 4] = [
        ("time-series rows, 4 KiB", time_series, 4096),
        ("time-series rows, 64 KiB", time_series, 64 << 10),
        ("random bytes, 4 KiB", random, 4096),
        ("random bytes, 64 KiB", random, 64 << 10),
    ];
    for (name, generate, len) in kinds {
        let payloads: Vec<Vec<u8>> =
            (0..(TOTAL_BYTES / len) as u64).map(|i| generate(i, len)).collect();
        let (off_append, off_read, off_ratio) = measure(&payloads, Compression::Off);
        println!("| {name} | off | {off_ratio:.3} | {off_append:.0} | 1.00 | {off_read:.0} |");
        for level in [1, 3] {
            let zstd = Compression::Zstd { level, threshold_bytes: 4096 };
            let (append, read, ratio) = measure(&payloads, zstd);
            println!(
                "| {name} | zstd {level} | {ratio:.3} | {append:.0} | {:.2} | {read:.0} |",
                append / off_append
            );
        }
    }
}
