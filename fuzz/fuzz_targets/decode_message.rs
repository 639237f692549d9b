//! The replication wire decoder on arbitrary bytes (a peer's, a client's): a message or
//! `Error::BadMessage`, never a panic, never an allocation sized by the bytes; a decoded
//! message re-encodes to a frame that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raftlog::replication::wire;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = wire::frame_len(data[..4].try_into().unwrap());
    }
    match wire::decode(bytes::Bytes::copy_from_slice(data)) {
        Ok(envelope) => {
            let frame = wire::encode(&envelope);
            let again = wire::decode(bytes::Bytes::from(frame).slice(4..)).expect("a re-encoded message decodes");
            assert_eq!(again, envelope);
        }
        Err(raftlog::Error::BadMessage { .. }) => {}
        Err(other) => panic!("untyped error: {other}"),
    }
});
