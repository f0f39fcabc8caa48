//! Market-data listing conventions: the shape of a symbol, checked fast in a WebAssembly guest.
//!
//! In a WebAssembly guest every loop iteration pays the host's deadline check, which cost more
//! than the byte test itself; so the check reads a symbol as one or two words with overlapping
//! loads (the first and last 4 or 8 bytes) and tests all their bytes at once, without a loop.

use crate::words::{le4, le8};

/// Whether `symbol` is 1 to 16 characters of upper-case letters, digits, `.`, `/` and `-`
/// (`AAPL`, `BRK.B`, `BTC/USD`).
pub fn symbol_is_well_formed(symbol: &str) -> bool {
    symbol_bytes_are_well_formed(symbol.as_bytes())
}

/// [`symbol_is_well_formed`] on the bytes, so a test can try every byte value.
#[inline(always)]
fn symbol_bytes_are_well_formed(b: &[u8]) -> bool {
    let n = b.len();
    // Overlapping loads cover every byte; a repeated byte changes nothing in an "every byte" test.
    let (lo, hi) = match n {
        1..=3 => {
            let (first, mid, last) = (b[0] as u64, b[n / 2] as u64, b[n - 1] as u64);
            ((first * 0x0101_0101_0100_0000) | (last << 16) | (mid << 8) | first, 0)
        }
        4..=8 => (le4(b, 0) | le4(b, n - 4) << 32, 0),
        9..=16 => (le8(b, 0), le8(b, n - 8)),
        _ => return false,
    };
    all_symbol_bytes(lo) && (n <= 8 || all_symbol_bytes(hi))
}

const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether every byte of `w` is in `-./0-9` (0x2d-0x39) or `A-Z` (0x41-0x5a).
#[inline(always)]
fn all_symbol_bytes(w: u64) -> bool {
    // For bytes below 0x80, byte + (0x80 - lo) has its high bit set exactly when byte >= lo, and
    // byte + (0x7f - hi) exactly when byte > hi; no sum carries into the next byte.
    let in_range = |lo: u8, hi: u8| {
        let at_least = w.wrapping_add(0x0101_0101_0101_0101 * (0x80 - lo) as u64);
        let above = w.wrapping_add(0x0101_0101_0101_0101 * (0x7f - hi) as u64);
        at_least & !above & HIGHS
    };
    w & HIGHS == 0 && in_range(0x2d, 0x39) | in_range(0x41, 0x5a) == HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_format() {
        assert!(symbol_is_well_formed("AAPL"));
        assert!(symbol_is_well_formed("BRK.B"));
        assert!(symbol_is_well_formed("BTC/USD"));
        assert!(!symbol_is_well_formed(""));
        assert!(!symbol_is_well_formed("aapl"));
        assert!(!symbol_is_well_formed("TOOLONGSYMBOLNAME1"));
    }

    #[test]
    fn symbol_format_agrees_with_the_byte_by_byte_rule_for_every_byte_at_every_position() {
        let rule = |b: &[u8]| {
            (1..=16).contains(&b.len())
                && b.iter().all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || b"./-".contains(&c))
        };
        for len in 1..=17 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'Q'; len];
                    b[at] = c;
                    assert_eq!(symbol_bytes_are_well_formed(&b), rule(&b), "length {len}, byte {c:#x} at {at}");
                }
            }
        }
        let multi = "\u{e9}A";
        assert_eq!(symbol_is_well_formed(multi), rule(multi.as_bytes()));
    }
}
