//! The snapshot data openraft moves between nodes: an archive of raftlog's transfer.
//!
//! Layout (little-endian): magic `RLOA`, version `1` (u8), `manifest: bytes`, `count: u32`,
//! `count` × `chunk: bytes`, where `bytes` is a u32 length and that many bytes, the manifest is
//! the snapshot's `MANIFEST` and each chunk a raftlog `Chunk` in its wire form.
//!
//! Invariants:
//! 1. `unpack` checks the magic, the version and every length against the bytes left before
//!    it slices; the manifest is verified by `SnapshotStore::receive` and every chunk by
//!    `SnapshotReceiver::accept` before anything is installed.
//! 2. A snapshot with a byte missing is refused (`Incomplete`), never installed.

use raftlog::fs::FileSystem;
use raftlog::snapshot::Chunk;
use raftlog::{Error, SnapshotMeta, SnapshotStore};

const MAGIC: [u8; 4] = *b"RLOA";
const VERSION: u8 = 1;
/// Chunk size of the archive (raftlog's transfer chunk).
const CHUNK_BYTES: u32 = 1 << 20;

fn bad(reason: &'static str) -> Error {
    Error::BadMessage { reason }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(
        &u32::try_from(bytes.len()).expect("archive parts fit u32").to_le_bytes(),
    );
    out.extend_from_slice(bytes);
}

/// The archive of snapshot `meta` of `store`.
pub fn pack<F: FileSystem>(
    store: &SnapshotStore<F>,
    meta: &SnapshotMeta,
) -> Result<Vec<u8>, Error> {
    let source = store.source(meta)?;
    let requests = source.requests(CHUNK_BYTES);
    let mut out = Vec::with_capacity(64 + source.manifest().len() + meta.total_bytes() as usize);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    put_bytes(&mut out, source.manifest());
    out.extend_from_slice(
        &u32::try_from(requests.len()).map_err(|_| bad("too many chunks"))?.to_le_bytes(),
    );
    for request in &requests {
        put_bytes(&mut out, &source.chunk(request)?.encode());
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.bytes.len() {
            return Err(bad("snapshot archive truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// Receives and installs the snapshot an archive carries into `store`; returns its meta.
pub fn unpack<F: FileSystem>(
    store: &SnapshotStore<F>,
    archive: &[u8],
) -> Result<SnapshotMeta, Error> {
    let mut reader = Reader { bytes: archive };
    if reader.take(4)? != MAGIC {
        return Err(bad("snapshot archive magic"));
    }
    if reader.take(1)?[0] != VERSION {
        return Err(bad("snapshot archive version"));
    }
    let mut receiver = store.receive(reader.bytes()?)?;
    let count = reader.u32()?;
    for _ in 0..count {
        receiver.accept(&Chunk::decode(reader.bytes()?)?)?;
    }
    if !reader.bytes.is_empty() {
        return Err(bad("bytes after the snapshot archive"));
    }
    receiver.install()
}
