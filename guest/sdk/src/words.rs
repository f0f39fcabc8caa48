//! Little-endian word loads from byte slices, for checking short values without a loop.
//!
//! In a WebAssembly guest every loop iteration pays the host's deadline check, so a test of
//! every byte of a short value is cheaper on one or two words read with overlapping loads
//! (the first and last 4 or 8 bytes) than byte by byte. Both loads are forced inline: as calls,
//! which LLVM leaves them for wasm32, they cost more than the loads.

/// Bytes `at..at + 4` of `b` as the low half of a word. Panics when out of range, like indexing.
#[inline(always)]
pub(crate) fn le4(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64
}

/// Bytes `at..at + 8` of `b` as a word. Panics when out of range, like indexing.
#[inline(always)]
pub(crate) fn le8(b: &[u8], at: usize) -> u64 {
    // The slice is 8 bytes (or indexing panicked), so the conversion cannot fail.
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_are_little_endian_at_any_offset() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le4(&b, 5), 0x0908_0706);
        assert_eq!(le8(&b, 1), 0x0908_0706_0504_0302);
    }
}
