//! Sequence keys of up to 16 + 16 bytes in an exact fixed-size form, built without loops or copies.
//!
//! Why not just `HashMap<String, _>`: in a WebAssembly guest every loop iteration pays the
//! host's epoch (deadline) check, and a copy or compare of a length known only at run time is
//! a call (`memory.copy` goes out to the host, `memcmp` is wasi-libc's byte loop). Building
//! `EXCHANGE:SYMBOL` per record, SipHashing it and comparing it byte by byte cost the guest
//! more than twice what the same code costs natively. Here a key is a few word loads, a
//! hash of five words and an equality of five words.

use std::hash::{Hash, Hasher};

use crate::words::{le4, le8};

/// Up to 16 bytes as two words that, together with the length, determine every byte: short
/// values are read with overlapping loads (first and last 4 or 8 bytes), so no byte is missed
/// and nothing is copied.
#[inline(always)]
fn words(b: &[u8]) -> Option<[u64; 2]> {
    let n = b.len();
    Some(match n {
        0 => [0, 0],
        // Positions 0, n/2 and n-1 cover every byte of a 1-, 2- or 3-byte value.
        1..=3 => [b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16, 0],
        4..=8 => [le4(b, 0) | le4(b, n - 4) << 32, 0],
        9..=16 => [le8(b, 0), le8(b, n - 8)],
        _ => return None,
    })
}

/// Whether any byte of `words` is `c`; the padding of [`words`] is zero, so `c` must not be.
#[inline(always)]
fn has_byte(words: [u64; 2], c: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The classic zero-byte test on x ^ c: exact as a yes/no answer.
    let zero = |x: u64| {
        let v = x ^ (ONES * c as u64);
        v.wrapping_sub(ONES) & !v & HIGHS != 0
    };
    zero(words[0]) || zero(words[1])
}

/// Marks a key without a `:` in [`ShortKey::lens`]'s second byte (a real length is at most 16).
const NO_SEPARATOR: u16 = 0xff << 8;

/// The fixed form of a key `A:B` (split at its first `:`) or `A` (no `:`), each part at most 16
/// bytes. Every key text has exactly one form, so the same key is found however it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShortKey {
    first: [u64; 2],
    second: [u64; 2],
    /// Length of the first part, and of the second part or [`NO_SEPARATOR`].
    lens: u16,
}

/// The five words go to the hasher as one 128-bit value: a single folded multiply in foldhash.
/// The derived hash wrote each part as a length-prefixed slice, three multiplies, and on wasm32
/// (no 64 x 64 -> 128 multiply) each is four. Words 1 of both parts are zero unless a part is
/// longer than 8 bytes; they are folded in rotated, so keys that differ only there still
/// differ (a rare coincidence of the XORs collides, which costs a probe, never correctness:
/// equality compares every word).
impl Hash for ShortKey {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let lo = self.first[0] ^ self.second[1].rotate_left(29);
        let hi = self.second[0] ^ self.first[1].rotate_left(37) ^ (self.lens as u64).rotate_right(16);
        state.write_u128((hi as u128) << 64 | lo as u128);
    }
}

impl ShortKey {
    /// The form of the key text `key`, or `None` when a part is longer than 16 bytes.
    pub(crate) fn of_text(key: &str) -> Option<Self> {
        match key.split_once(':') {
            Some((a, b)) => Self::of_parts(a.as_bytes(), b.as_bytes()),
            None => Some(Self { first: words(key.as_bytes())?, second: [0, 0], lens: key.len() as u16 | NO_SEPARATOR }),
        }
    }

    /// The form of the key text `first:second`, or `None` when a part is longer than 16 bytes
    /// or `first` holds a `:` (then the text splits elsewhere; the caller takes the text path).
    #[inline(always)]
    pub(crate) fn of_parts(first: &[u8], second: &[u8]) -> Option<Self> {
        let a = words(first)?;
        if has_byte(a, b':') {
            return None;
        }
        Some(Self { first: a, second: words(second)?, lens: first.len() as u16 | (second.len() as u16) << 8 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| seed.wrapping_add(i as u8 * 7) | 1).collect()
    }

    #[test]
    fn words_tell_apart_every_one_byte_change_at_every_length() {
        for len in 0..=16 {
            let base = bytes_of(len, 3);
            let w = words(&base).unwrap();
            for at in 0..len {
                let mut other = base.clone();
                other[at] ^= 0x40;
                assert_ne!(words(&other).unwrap(), w, "length {len}, byte {at}");
            }
        }
        assert_eq!(words(&[0; 17]), None);
    }

    #[test]
    fn finds_a_separator_at_any_position() {
        for len in 1..=16 {
            for at in 0..len {
                let mut b = vec![b'A'; len];
                b[at] = b':';
                assert!(has_byte(words(&b).unwrap(), b':'), "length {len}, position {at}");
            }
            assert!(!has_byte(words(&vec![b'A'; len]).unwrap(), b':'));
        }
        // Bytes just around ':' (0x3a) in value, which a borrow could confuse.
        assert!(!has_byte(words(b"9;;9;9;9;99;;;;9").unwrap(), b':'));
    }

    #[test]
    fn a_key_has_one_form_however_it_is_given() {
        assert_eq!(ShortKey::of_text("XNAS:AAPL"), ShortKey::of_parts(b"XNAS", b"AAPL"));
        assert_eq!(ShortKey::of_text("XNAS:BTC:USD"), ShortKey::of_parts(b"XNAS", b"BTC:USD"));
        assert_eq!(ShortKey::of_parts(b"A:B", b"C"), None, "splits elsewhere as text");
        assert_ne!(ShortKey::of_text("AB"), ShortKey::of_text("AB:"));
        assert_ne!(ShortKey::of_text("A:B"), ShortKey::of_text("AB"));
        assert_ne!(ShortKey::of_parts(b"XNAS", b"AAPL"), ShortKey::of_parts(b"XNAS", b"AAPLX"));
        assert_eq!(ShortKey::of_text("SEVENTEEN_BYTES_X:A"), None);
    }
}
