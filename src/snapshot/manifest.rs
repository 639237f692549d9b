//! The snapshot manifest: what a snapshot holds, checksummed, in a versioned envelope.
//!
//! Layout (format/SPEC.md, "Snapshot manifest"): a 16-byte envelope (magic `RLSN`, format
//! version, body length, crc32 of envelope and body) around a bincode 2 body (standard
//! configuration, serde) of `Body`.
//!
//! Invariants:
//! 1. `decode` accepts only bytes `encode` could have produced for a valid `SnapshotMeta`:
//!    checksum, version, group, limits, names (`check_name`), slots in increasing order and
//!    names increasing within a slot. Anything else is a typed error; nothing is trusted before
//!    the checksum and no allocation exceeds the bytes given.
//! 2. Encoding is canonical: equal metadata gives equal bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{FileMeta, SnapshotMeta, SnapshotOptions};
use crate::error::{Corruption, Error, Result};

/// First bytes of every manifest.
const MAGIC: [u8; 4] = *b"RLSN";
/// The manifest format this build writes and reads.
pub(crate) const VERSION: u32 = 1;
/// Envelope bytes before the body.
const ENVELOPE_BYTES: usize = 16;
/// Upper bound of a manifest body, whatever the options say.
pub(crate) const BODY_BYTES_MAX: usize = 256 << 20;
/// Longest file name, in bytes: room for the slot prefix within common 255-byte name limits.
pub const NAME_BYTES_MAX: usize = 200;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<BODY_BYTES_MAX>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<BODY_BYTES_MAX>()
}

/// The serialized body. Field order is part of the format.
#[derive(Serialize, Deserialize)]
struct Body {
    group: u64,
    index: u64,
    term: u64,
    configuration: Vec<u8>,
    partial: bool,
    slots: Vec<(u32, Vec<FileMeta>)>,
}

/// Refuses a file name that could escape the snapshot directory or clash on disk.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > NAME_BYTES_MAX {
        "longer than 200 bytes"
    } else if name.contains(['/', '\\']) {
        "contains a path separator"
    } else if name.contains("..") {
        "contains .."
    } else if name == "." {
        "is ."
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { name: name.to_string(), reason })
}

/// Encodes `meta` for `group`.
pub(crate) fn encode(group: u64, meta: &SnapshotMeta) -> Vec<u8> {
    let body = Body {
        group,
        index: meta.index,
        term: meta.term,
        configuration: meta.configuration.clone(),
        partial: meta.partial,
        slots: meta.slots.iter().map(|(slot, files)| (*slot, files.clone())).collect(),
    };
    let body = bincode::serde::encode_to_vec(&body, config())
        .expect("encoding a manifest into memory cannot fail");
    let mut bytes = Vec::with_capacity(ENVELOPE_BYTES + body.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes);
    crc.update(&body);
    bytes.extend_from_slice(&crc.finalize().to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// The checksum a manifest's envelope carries: names a transfer's staging directory.
pub(crate) fn checksum(bytes: &[u8]) -> u32 {
    bytes.get(12..16).map_or(0, |crc| u32::from_le_bytes(crc.try_into().expect("4 bytes")))
}

fn corrupt(path: &Path, offset: u64, reason: Corruption) -> Error {
    Error::corrupt(path, offset, None, reason)
}

/// Decodes and validates a manifest read from `path` (a file, or a peer's name for it).
/// `id` is the local snapshot id the result is given.
pub(crate) fn decode(
    bytes: &[u8],
    path: &Path,
    options: &SnapshotOptions,
    id: u64,
) -> Result<SnapshotMeta> {
    if bytes.len() < ENVELOPE_BYTES || bytes[..4] != MAGIC {
        return Err(corrupt(path, 0, Corruption::Field("manifest magic")));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(4);
    let body_len = word(8) as usize;
    if body_len > BODY_BYTES_MAX || bytes.len() != ENVELOPE_BYTES + body_len {
        return Err(corrupt(path, 8, Corruption::Field("manifest length")));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..12]);
    crc.update(&bytes[ENVELOPE_BYTES..]);
    if crc.finalize() != word(12) {
        return Err(corrupt(path, 12, Corruption::Checksum));
    }
    if version != VERSION {
        return Err(Error::UnsupportedVersion {
            what: "snapshot manifest",
            found: version,
            supported: VERSION,
        });
    }
    let field = |what| corrupt(path, ENVELOPE_BYTES as u64, Corruption::Field(what));
    let (body, used): (Body, usize) =
        bincode::serde::decode_from_slice(&bytes[ENVELOPE_BYTES..], config())
            .map_err(|_| field("manifest body"))?;
    if used != body_len {
        return Err(field("manifest body length"));
    }
    if body.group != options.group {
        return Err(Error::ForeignGroup { expected: options.group, found: body.group });
    }
    check_limit(
        "configuration bytes",
        body.configuration.len() as u64,
        options.configuration_bytes_max,
    )?;
    let mut slots = BTreeMap::new();
    let mut count = 0u64;
    for (slot, files) in body.slots {
        if slots.last_key_value().is_some_and(|(last, _)| *last >= slot) {
            return Err(field("slot order"));
        }
        count += files.len() as u64;
        check_limit("files", count, options.files_max)?;
        for (i, file) in files.iter().enumerate() {
            check_name(&file.name)?;
            if i > 0 && files[i - 1].name >= file.name {
                return Err(field("file order"));
            }
            check_limit("file bytes", file.size, options.file_bytes_max)?;
        }
        slots.insert(slot, files);
    }
    Ok(SnapshotMeta {
        index: body.index,
        term: body.term,
        configuration: body.configuration,
        slots,
        partial: body.partial,
        id,
    })
}

/// `LimitExceeded` when `value` is over `max`.
pub(crate) fn check_limit(what: &'static str, value: u64, max: u64) -> Result<()> {
    if value > max {
        return Err(Error::LimitExceeded { what, value, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        let file = |name: &str| FileMeta { name: name.into(), size: 10, crc32: 7 };
        SnapshotMeta {
            index: 9,
            term: 2,
            configuration: b"abc".to_vec(),
            slots: BTreeMap::from([(1, vec![file("a"), file("b")]), (5, vec![file("c")])]),
            partial: false,
            id: 3,
        }
    }

    #[test]
    fn round_trips_and_rejects_every_flipped_bit() {
        let options = SnapshotOptions::default();
        let bytes = encode(0, &meta());
        assert_eq!(decode(&bytes, Path::new("m"), &options, 3).unwrap(), meta());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged, Path::new("m"), &options, 3).is_err(), "bit {bit}");
        }
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len], Path::new("m"), &options, 3).is_err(), "len {len}");
        }
    }

    #[test]
    fn refuses_other_groups_and_newer_versions() {
        let options = SnapshotOptions::default().group(4);
        let err = decode(&encode(5, &meta()), Path::new("m"), &options, 0).unwrap_err();
        assert!(matches!(err, Error::ForeignGroup { expected: 4, found: 5 }), "{err}");
        let mut newer = encode(4, &meta());
        newer[4..8].copy_from_slice(&2u32.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&newer[..12]);
        crc.update(&newer[16..]);
        let crc = crc.finalize().to_le_bytes();
        newer[12..16].copy_from_slice(&crc);
        let err = decode(&newer, Path::new("m"), &options, 0).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { found: 2, .. }), "{err}");
    }

    #[test]
    fn refuses_names_that_escape_or_clash() {
        for bad in ["", "a/b", "/abs", "a\\b", "..", "x..y", ".", "nul\0", &"n".repeat(201)] {
            assert!(matches!(check_name(bad), Err(Error::InvalidName { .. })), "{bad:?}");
        }
        for good in ["a", ".hidden", "1606456789-101-0.tsfile", &"n".repeat(200)] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn limits_apply_to_peer_manifests() {
        let options = SnapshotOptions::default().files_max(2);
        let err = decode(&encode(0, &meta()), Path::new("m"), &options, 0).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { what: "files", value: 3, max: 2 }), "{err}");
    }
}
