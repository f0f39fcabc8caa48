//! Bounds-checked reads of Avro's binary primitives, shared by the direct reader and the pre-scan.
//!
//! Both decode paths read varints, lengths and UTF-8 through this one cursor, so they refuse the
//! same bodies for the same reasons: a length is compared with the bytes left before anything is
//! sliced or allocated, and the end of input inside a value is always an error (never a null).

use std::ops::Range;

/// Why a datum's bytes are not a value of their schema. Each variant carries what was declared
/// and what the body had, so a dead letter's reason is enough to see the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    #[error("input ends inside a {what} at byte {at}")]
    EndOfInput { what: &'static str, at: usize },
    #[error("{what} of {len} bytes at byte {at}, only {left} left")]
    Short { what: &'static str, len: u64, left: usize, at: usize },
    #[error("negative {what} {declared} at byte {at}")]
    Negative { what: &'static str, declared: i64, at: usize },
    #[error("varint at byte {at} runs past 64 bits")]
    VarintOverflow { at: usize },
    #[error("int {value} at byte {at} is out of 32-bit range")]
    IntRange { value: i64, at: usize },
    #[error("boolean byte {byte:#04x} at byte {at}")]
    Boolean { byte: u8, at: usize },
    #[error("union branch {index} at byte {at}, the union has {branches}")]
    UnionBranch { index: i64, branches: usize, at: usize },
    #[error("enum index {index} at byte {at}, the enum has {symbols} symbols")]
    EnumIndex { index: i64, symbols: usize, at: usize },
    #[error("{what} at byte {at} is not utf-8: {reason}")]
    NotUtf8 { what: &'static str, at: usize, reason: std::str::Utf8Error },
    #[error(
        "{what} block of {declared} items at byte {at}, only {left} bytes left and an item takes at least {min_item}"
    )]
    Block { what: &'static str, declared: u64, left: usize, min_item: usize, at: usize },
    #[error("{what} block of {declared} zero-byte items at byte {at}: more than {cap} in one record")]
    EmptyItems { what: &'static str, declared: u64, cap: usize, at: usize },
    #[error("block at byte {at} declares {declared} bytes, its items took {used}")]
    BlockSize { declared: u64, used: usize, at: usize },
    #[error("nested deeper than {max} levels at byte {at}")]
    TooDeep { max: usize, at: usize },
    #[error("decimal of {len} bytes is wider than 128 bits")]
    DecimalWidth { len: usize },
    #[error("decimal of 0 bytes at byte {at}: an unscaled value takes at least one")]
    EmptyDecimal { at: usize },
    #[error("the schema names type `{name}` without defining it")]
    UnknownType { name: String },
}

/// A cursor over one datum's bytes.
pub struct Wire<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Self { body, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn left(&self) -> usize {
        self.body.len() - self.pos
    }

    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// A zig-zag varint. Ten bytes hold 64 bits only if the tenth is 0 or 1: apache-avro drops
    /// the bits above silently, which would read a corrupted length as a small one.
    pub fn long(&mut self, what: &'static str) -> Result<i64, DatumError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.body.get(self.pos) else {
                return Err(DatumError::EndOfInput { what, at: self.pos });
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(DatumError::VarintOverflow { at: start });
            }
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        unreachable!("the tenth byte either ends the varint or is refused")
    }

    pub fn int(&mut self, what: &'static str) -> Result<i32, DatumError> {
        let at = self.pos;
        let value = self.long(what)?;
        i32::try_from(value).map_err(|_| DatumError::IntRange { value, at })
    }

    pub fn boolean(&mut self) -> Result<bool, DatumError> {
        let at = self.pos;
        let range = self.take(1, "boolean")?;
        match self.body[range.start] {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(DatumError::Boolean { byte, at }),
        }
    }

    /// The next `len` bytes, refused before anything is sliced when fewer are left.
    pub fn take(&mut self, len: u64, what: &'static str) -> Result<Range<usize>, DatumError> {
        let left = self.left();
        match usize::try_from(len) {
            Ok(n) if n <= left => {
                let range = self.pos..self.pos + n;
                self.pos += n;
                Ok(range)
            }
            _ => Err(DatumError::Short { what, len, left, at: self.pos }),
        }
    }

    /// A length, then that many bytes.
    pub fn length_prefixed(&mut self, what: &'static str) -> Result<Range<usize>, DatumError> {
        let at = self.pos;
        let len = self.long(what)?;
        let len = u64::try_from(len).map_err(|_| DatumError::Negative { what, declared: len, at })?;
        self.take(len, what)
    }

    /// A length-prefixed string, checked to be UTF-8.
    pub fn utf8(&mut self, what: &'static str) -> Result<Range<usize>, DatumError> {
        let range = self.length_prefixed(what)?;
        match std::str::from_utf8(&self.body[range.clone()]) {
            Ok(_) => Ok(range),
            Err(reason) => Err(DatumError::NotUtf8 { what, at: range.start, reason }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_end_within_64_bits() {
        assert_eq!(Wire::new(&[0x01]).long("long"), Ok(-1));
        assert_eq!(Wire::new(&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F]).long("long"), Ok(i32::MAX as i64));
        let max = [0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert_eq!(Wire::new(&max).long("long"), Ok(i64::MAX));
        let mut over = max;
        over[9] = 0x02;
        assert_eq!(Wire::new(&over).long("long"), Err(DatumError::VarintOverflow { at: 0 }));
        assert_eq!(Wire::new(&[0xFF; 12]).long("long"), Err(DatumError::VarintOverflow { at: 0 }));
        assert_eq!(Wire::new(&[0x80]).long("long"), Err(DatumError::EndOfInput { what: "long", at: 1 }));
    }

    #[test]
    fn lengths_are_checked_against_the_bytes_left() {
        // 2^29: a string claiming 512 MiB in a 5-byte body.
        let mut w = Wire::new(&[0x80, 0x80, 0x80, 0x80, 0x04]);
        let err = w.utf8("string").unwrap_err();
        assert_eq!(err, DatumError::Short { what: "string", len: 1 << 29, left: 0, at: 5 });
        assert_eq!(err.to_string(), "string of 536870912 bytes at byte 5, only 0 left");
        assert_eq!(
            Wire::new(&[0x03]).length_prefixed("bytes"),
            Err(DatumError::Negative { what: "bytes", declared: -2, at: 0 })
        );
        assert!(matches!(Wire::new(&[0x02, 0xFF]).utf8("string"), Err(DatumError::NotUtf8 { at: 1, .. })));
        assert_eq!(Wire::new(&[0x04, b'o', b'k']).utf8("string"), Ok(1..3));
    }
}
