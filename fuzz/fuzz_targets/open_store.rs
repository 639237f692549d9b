//! Opens a directory image built from the input through the simulated disk and reads
//! everything it reports: `Ok` or a typed error, never a panic, and a consistent store.
//!
//! Input: a sequence of files, each `[kind u8][id u8][len u16 LE][len bytes]`; kind % 3 is
//! 0 = `meta`, 1 = segment `{id:016x}.seg`, 2 = index `{id:016x}.idx` (`fuzz/seeds.py` packs
//! `format/golden/` this way).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use raftlog::fs::{FileSystem, SimFs};
use raftlog::{Entry, Error, LogStore, Options};

fn files(mut data: &[u8]) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let (kind, id, len) = (data[0] % 3, data[1], usize::from(u16::from_le_bytes([data[2], data[3]])));
        let bytes = &data[4..(4 + len).min(data.len())];
        data = &data[(4 + len).min(data.len())..];
        let name = match kind {
            0 => "meta".to_owned(),
            1 => format!("{id:016x}.seg"),
            _ => format!("{id:016x}.idx"),
        };
        out.push((name, bytes));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fs = SimFs::new();
    let dir = Path::new("/fuzz");
    fs.create_dir_all(dir).unwrap();
    for (name, bytes) in files(data) {
        fs.write_file_durable(&dir.join(name), bytes);
    }
    let options = Options::default().segment_bytes_max(4096);
    let Ok(store) = LogStore::open_with(fs.clone(), dir, options) else { return };
    let (first, last) = (store.first_index(), store.last_index());
    assert!(first >= 1 && first <= last + 1, "bounds [{first}, {last}]");
    assert!(store.hard_state().commit <= last, "commit beyond the log after open");
    let last_term = store.term(last).expect("the last index has a term");
    match store.entries(first, last + 1, u64::MAX) {
        // A read stops before a damaged entry of a sealed segment, and marks it.
        Ok(_) if !store.damaged().is_empty() => return,
        Ok(entries) => {
            assert_eq!(entries.len() as u64, last + 1 - first, "entries of [{first}, {last}]");
            for (k, entry) in entries.iter().enumerate() {
                assert_eq!(entry.index, first + k as u64);
                assert_eq!(store.term(entry.index).ok(), Some(entry.term));
            }
        }
        Err(Error::Corrupt { .. } | Error::Damaged { .. }) => return,
        Err(e) => panic!("read failed with {e}"),
    }
    store.append(&[Entry::new(last + 1, last_term, "after")]).expect("append after open");
    store.sync().expect("sync after open");
});
