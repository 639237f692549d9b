//! zstd compression of large payloads: stored smaller, read back exactly, through the active
//! segment, the mapped sealed segments and a reopen; incompressible payloads stored as given;
//! damaged compressed bytes never returned.

mod common;

use common::{open, path, segment_names, stream_len};
use raftlog::fs::SimFs;
use raftlog::{Compression, Corruption, Entry, Error, Options};

fn rows(index: u64) -> Vec<u8> {
    (0..200)
        .flat_map(|row| {
            format!("ts={},device=d{},temp={}.5\n", 1_700_000_000 + row, index % 7, row % 40)
                .into_bytes()
        })
        .collect()
}

fn noise(index: u64, len: usize) -> Vec<u8> {
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

/// The bytes of the segments' record streams: the header, then records back to back up to a
/// zero record header or the end of the file (the zeros that pad each write are not stored
/// data).
fn stored_bytes(fs: &SimFs) -> usize {
    segment_names(fs).iter().map(|n| stream_len(&fs.read_file(&path(n)).unwrap())).sum()
}

#[test]
fn compressible_payloads_are_stored_smaller_and_read_back_exactly() {
    let fs = SimFs::new();
    let options = Options::default().segment_bytes_max(64 << 10);
    let store = open(&fs, options.clone());
    let written: Vec<Entry> = (1..=40).map(|i| Entry::new(i, 1, rows(i)).with_kind(3)).collect();
    for entry in &written {
        store.append(std::slice::from_ref(entry)).unwrap();
    }
    store.sync().unwrap();
    let logical: usize = written.iter().map(|e| e.payload.len()).sum();
    let stored = stored_bytes(&fs);
    assert!(stored * 5 < logical, "stored {stored} of {logical} bytes");
    assert_eq!(store.entries(1, 41, u64::MAX).unwrap(), written);
    let budget = written[0].payload.len() as u64 * 2;
    assert_eq!(store.entries(1, 41, budget).unwrap().len(), 2, "budgets count logical bytes");
    drop(store);
    let store = open(&fs, options);
    assert_eq!(store.entries(1, 41, u64::MAX).unwrap(), written);
}

#[test]
fn incompressible_payloads_are_stored_as_given() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default());
    let written: Vec<Entry> = (1..=10).map(|i| Entry::new(i, 1, noise(i, 8192))).collect();
    store.append(&written).unwrap();
    store.sync().unwrap();
    let raw: usize = written.iter().map(|e| e.payload.len() + 32).sum();
    let opening = 32 + 40; // the hard-state record that opens a segment
    let framing = 64 + opening + 32; // the header, that record and the sync mark
    assert_eq!(stored_bytes(&fs), framing + raw, "records stored as given");
    assert_eq!(store.entries(1, 11, u64::MAX).unwrap(), written);
}

#[test]
fn compression_off_stores_everything_as_given() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default().compression(Compression::Off));
    store.append(&[Entry::new(1, 1, rows(1))]).unwrap();
    assert_eq!(stored_bytes(&fs), 64 + 72 + 32 + rows(1).len());
}

#[test]
fn damaged_compressed_bytes_are_never_returned() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default());
    store.append(&[Entry::new(1, 1, rows(1)), Entry::new(2, 1, rows(2))]).unwrap();
    let name = segment_names(&fs)[0].clone();
    let first_record = 64 + 72; // after the header and the segment's opening hard state
    fs.flip_bit(&path(&name), 8 * (first_record + 32 + 5)).unwrap();
    let got = store.entries(1, 3, u64::MAX);
    assert!(
        matches!(got, Err(Error::Corrupt { reason: Corruption::Checksum, offset, .. })
            if offset == first_record),
        "{got:?}"
    );
}

#[test]
fn compression_survives_segment_rotation() {
    let fs = SimFs::new();
    let store = open(&fs, Options::default().segment_bytes_max(4096));
    let written: Vec<Entry> = (1..=30).map(|i| Entry::new(i, 1, rows(i))).collect();
    for entry in &written {
        store.append(std::slice::from_ref(entry)).unwrap();
    }
    assert!(segment_names(&fs).len() > 1, "rotated");
    let logical: usize = written.iter().map(|e| e.payload.len()).sum();
    assert!(stored_bytes(&fs) * 5 < logical, "every segment holds compressed payloads");
    assert_eq!(store.entries(1, 31, u64::MAX).unwrap(), written);
}

#[test]
fn batches_mixing_compressed_copied_and_spliced_payloads_read_back_on_the_real_disk() {
    // Payloads from 1 KiB up are written from the caller's buffers (a vectored write),
    // smaller and compressed ones are copied: every kind, on each side of the threshold,
    // in one batch, across rotations and a reopen.
    let dir = tempfile::tempdir().unwrap();
    let options = Options::default().segment_bytes_max(64 << 10);
    let store = raftlog::LogStore::open(dir.path(), options.clone()).unwrap();
    let sizes = [0, 1, 1023, 1024, 1025, 4096, 20_000];
    let mut written = Vec::new();
    for batch in 0..12u64 {
        let first = written.len() as u64 + 1;
        let entries: Vec<Entry> = (0..2 * sizes.len() as u64)
            .map(|k| {
                let index = first + k;
                let len = sizes[(k + batch) as usize % sizes.len()];
                let payload = if k % 2 == 0 { noise(index, len) } else { rows(index).repeat(3) };
                let payload = payload[..len].to_vec();
                Entry::new(index, 1, payload)
            })
            .collect();
        store.append(&entries).unwrap();
        written.extend(entries);
    }
    store.sync().unwrap();
    let end = written.len() as u64 + 1;
    assert_eq!(store.entries(1, end, u64::MAX).unwrap(), written);
    drop(store);
    let store = raftlog::LogStore::open(dir.path(), options).unwrap();
    assert_eq!(store.entries(1, end, u64::MAX).unwrap(), written);
}
