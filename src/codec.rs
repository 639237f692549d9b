//! Little-endian readers of fixed-width fields, shared by every decoder (segment, index, meta,
//! inspect). A leaf: it depends on nothing in the crate.
//!
//! Invariants:
//! 1. Callers check `at + width <= bytes.len()` first (decoders check lengths before fields);
//!    an out-of-range read is our bug and panics with the slice bounds.

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(out)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(out)
}
