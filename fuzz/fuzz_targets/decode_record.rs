//! The record, segment header, meta slot and index decoders on arbitrary bytes: a value or a
//! typed error, never a panic, never an allocation sized by the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlog::inspect::{self, SegmentHeader};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let store_uid = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let segment_id = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let bytes = &data[16..];
    if let Ok((record, logical_len)) = inspect::decode_record(store_uid, segment_id, bytes) {
        assert!(record.encoded_len() <= bytes.len());
        if record.compressed {
            if let Ok(payload) = record.decompress(logical_len) {
                assert_eq!(payload.len(), logical_len as usize);
            }
        }
    }
    let header = inspect::decode_segment_header(bytes).unwrap_or(SegmentHeader {
        store_uid,
        segment_id: segment_id.max(1),
        first_index: 1,
        prev_segment_id: 0,
        prev_term: 0,
    });
    let _ = inspect::decode_meta_slot(bytes);
    if let Ok(count) = inspect::verify_index(bytes, &header, u64::MAX) {
        assert!(count as usize <= bytes.len() / 24);
    }
});
