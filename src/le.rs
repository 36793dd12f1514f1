//! Little-endian integers at fixed byte ranges of a file header or record.
//!
//! Shard and journal files are little-endian on disk (the machines that write them are),
//! and both formats read their fields by `Range` constants from a private `field` module.
//! The two readers live here, below both, so neither money file reaches into the other.

use std::ops::Range;

/// The `u32` at `r` (4 bytes) of `b`. Panics if `r` is out of bounds or not 4 long: the
/// ranges are constants and the callers check the buffer's length first.
pub(crate) fn le_u32(b: &[u8], r: Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_le_bytes(a)
}

/// The `u64` at `r` (8 bytes) of `b`; as [`le_u32`].
pub(crate) fn le_u64(b: &[u8], r: Range<usize>) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[r]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reads_little_endian_at_a_range() {
        let b = [0xff, 1, 2, 3, 4, 5, 6, 7, 8, 0xff];
        assert_eq!(le_u32(&b, 1..5), 0x0403_0201);
        assert_eq!(le_u64(&b, 1..9), 0x0807_0605_0403_0201);
    }
}
