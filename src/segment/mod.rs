//! Segment files: naming, the in-memory location of each entry, and the recovery scan.
//!
//! A group's log is a sequence of segment files ordered by `segment_id`. The last one is
//! active (appended to); the others are sealed: they end with a seal record and are never
//! written again. A newer segment whose `first_index` lies inside an older one overrides the
//! older one's suffix from there (that is how `truncate_suffix` is made durable).
//!
//! Invariants:
//! 1. A segment's header and directory entry are durable before any record is written to it.
//! 2. A segment is sealed (seal record written and fsynced) before a newer segment is created.
//! 3. Within a segment, entry records have consecutive indexes and non-decreasing terms.

pub mod format;
mod scan;

pub(crate) use scan::{read_header, scan_segment, HeaderDamage, Scanned, Tail};

/// Where an entry's record lies in its segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Offset of the record header in the segment file.
    pub offset: u64,
    /// The entry's term.
    pub term: u64,
    /// Payload bytes as stored (compressed or not).
    pub stored_len: u32,
    /// Payload bytes as the caller gave them (what read budgets count).
    pub payload_len: u32,
}

impl Loc {
    /// Bytes of the whole record.
    pub fn record_len(&self) -> u64 {
        format::RECORD_HEADER_BYTES as u64 + u64::from(self.stored_len)
    }
}

/// File name of segment `id`: 16 lower-case hex digits and `.seg`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

/// The id in a segment file name, or `None` for any other name.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    parse_numbered(name, ".seg").filter(|id| *id > 0)
}

/// The number in a name of 16 lower-case hex digits followed by `suffix`.
pub(crate) fn parse_numbered(name: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_others() {
        assert_eq!(parse_file_name(&file_name(0x1f)), Some(0x1f));
        for bad in [
            "meta",
            "LOCK",
            "0000000000000001.seg.tmp",
            "000000000000001F.seg",
            "1.seg",
            "0000000000000000.seg",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
