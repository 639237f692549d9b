//! A peer's snapshot manifest and chunks, arbitrary bytes: the manifest decodes to a value or a
//! typed error; a valid one starts a transfer on the simulated disk, which then takes the
//! chunks and tries to install. Never a panic, never an allocation sized by claimed lengths,
//! and an install that succeeds reads back verified.
//!
//! Input: u16 manifest length, the manifest, then chunks as (u16 length, encoded chunk).
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlog::fs::SimFs;
use raftlog::snapshot::Chunk;
use raftlog::{inspect, SnapshotOptions, SnapshotStore};

fuzz_target!(|data: &[u8]| {
    let _ = Chunk::decode(data);
    if data.len() < 2 {
        return;
    }
    let manifest_len = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let (manifest, mut rest) = data[2..].split_at(manifest_len);
    let options = SnapshotOptions::default().chunk_bytes(4096);
    let Ok(meta) = inspect::decode_snapshot_manifest(manifest, &options) else { return };
    let fs = SimFs::new();
    let store = SnapshotStore::open_with(fs, "/snap", options).expect("open on an empty disk");
    let mut receiver = store.receive(manifest).expect("a valid manifest starts a transfer");
    assert!(receiver.missing(None, 64).len() <= 64);
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        if let Ok(chunk) = Chunk::decode(&rest[2..2 + len]) {
            let _ = receiver.accept(&chunk);
        }
        rest = &rest[2 + len..];
    }
    if let Ok(installed) = receiver.install() {
        assert_eq!((installed.index, installed.term), (meta.index, meta.term));
        store.verify(&installed).expect("an installed snapshot verifies");
    }
});
