//! A batch of records as the host lays it out (one buffer per column), and read access by name.

/// Records of one topic-partition, as columns: one value per record in every column.
///
/// The fields are the layout the host sends; read columns through [`Batch::utf8`],
/// [`Batch::int64`], [`Batch::decimal`] and the like, which name a missing column in their error.
/// Tests build batches with [`crate::testing::BatchBuilder`].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub topic: String,
    pub partition: i32,
    pub records: u32,
    /// One Kafka offset per record, or none unless [`crate::Validate::reads`] asks for them.
    pub offsets: Vec<i64>,
    /// One Kafka timestamp (microseconds since the epoch) per record, or none.
    pub timestamps: Vec<i64>,
    /// The Kafka keys, or no offsets at all unless asked for.
    pub keys: Packed,
    /// The fields the validator reads, named after the Avro fields.
    pub columns: Vec<NamedColumn>,
    /// The host's clock when it handed the batch over, microseconds since the epoch: the
    /// sandbox has no clock of its own.
    pub now_micros: i64,
}

/// Values of variable length packed into one buffer: value `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packed {
    pub data: Vec<u8>,
    pub offsets: Vec<u32>,
}

/// One column: its field's name, its values and, when any value is null, a validity bitmap
/// (least significant bit first; a set bit is a value).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedColumn {
    pub name: String,
    pub data: ColumnData,
    pub nulls: Option<Vec<u8>>,
}

/// A column's values, by the Avro type's layout.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    Boolean(Vec<bool>),
    /// int, long, timestamps and dates.
    Int64(Vec<i64>),
    /// float and double.
    Float64(Vec<f64>),
    /// strings and enums.
    Utf8(Packed),
    Binary(Packed),
    Decimal(Decimals),
}

/// Decimal values as unscaled integers: value `i` is `unscaled[i] / 10^scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimals {
    pub scale: u8,
    pub unscaled: Vec<i64>,
}

/// Strings of one column (or the record keys), borrowed from the batch's packed buffer.
///
/// `get` is forced inline with its rare path kept out of line: as a call, a WebAssembly guest
/// pays an entry check and returns the slice through memory, which cost more than the lookup.
pub struct Strings<'a> {
    data: &'a [u8],
    offsets: &'a [u32],
    /// The whole buffer as text, checked once per column (on the first `get`) rather than once
    /// per value. It is always valid from the host's utf8 columns; when it is not, values are
    /// checked one by one.
    text: std::cell::OnceCell<Option<&'a str>>,
}

impl<'a> Strings<'a> {
    pub fn new(packed: &'a Packed) -> Self {
        Self { data: &packed.data, offsets: &packed.offsets, text: std::cell::OnceCell::new() }
    }

    /// The bytes of value `i`. The host guarantees offsets are in range and ordered.
    #[inline(always)]
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// Value `i` as text; invalid UTF-8 (impossible from the host's utf8 columns) reads empty.
    #[inline(always)]
    pub fn get(&self, i: usize) -> &'a str {
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        // A value of valid text is valid on its own exactly when it starts and ends on
        // character boundaries, which `str::get` checks.
        match self.text.get().copied().flatten().and_then(|text| text.get(start..end)) {
            Some(value) => value,
            None => self.get_slow(i),
        }
    }

    /// `get` on the first call for the column, for a buffer that is not valid text, and for a
    /// value that splits a character.
    #[cold]
    #[inline(never)]
    fn get_slow(&self, i: usize) -> &'a str {
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        match self.text.get_or_init(|| std::str::from_utf8(self.data).ok()).and_then(|text| text.get(start..end)) {
            Some(value) => value,
            None => std::str::from_utf8(self.bytes(i)).unwrap_or(""),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decimal values of one column: `unscaled[i] / 10^scale`.
pub struct DecimalColumn<'a> {
    pub scale: u8,
    pub unscaled: &'a [i64],
}

/// A column found by name, with its validity bitmap.
pub struct Column<'a> {
    pub data: &'a ColumnData,
    nulls: Option<&'a [u8]>,
}

impl Column<'_> {
    /// Whether record `i` has a value in this column.
    pub fn is_valid(&self, i: usize) -> bool {
        match self.nulls {
            None => true,
            Some(bits) => bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0),
        }
    }
}

impl Batch {
    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.records as usize
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The column named `name`; the error names it.
    pub fn column(&self, name: &str) -> Result<Column<'_>, String> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| Column { data: &c.data, nulls: c.nulls.as_deref() })
            .ok_or_else(|| {
                format!("batch has no column `{name}` (the topic's schema lacks it, or `reads` leaves it out)")
            })
    }

    /// A string (or enum) column.
    pub fn utf8(&self, name: &str) -> Result<Strings<'_>, String> {
        match self.column(name)?.data {
            ColumnData::Utf8(p) => Ok(Strings::new(p)),
            _ => Err(format!("column `{name}` is not a string column")),
        }
    }

    /// A bytes column (read each value with [`Strings::bytes`]).
    pub fn binary(&self, name: &str) -> Result<Strings<'_>, String> {
        match self.column(name)?.data {
            ColumnData::Binary(p) => Ok(Strings::new(p)),
            _ => Err(format!("column `{name}` is not a bytes column")),
        }
    }

    /// A boolean column.
    pub fn boolean(&self, name: &str) -> Result<&[bool], String> {
        match self.column(name)?.data {
            ColumnData::Boolean(v) => Ok(v),
            _ => Err(format!("column `{name}` is not a boolean column")),
        }
    }

    /// An integer (int, long, timestamp, date) column.
    pub fn int64(&self, name: &str) -> Result<&[i64], String> {
        match self.column(name)?.data {
            ColumnData::Int64(v) => Ok(v),
            _ => Err(format!("column `{name}` is not an integer column")),
        }
    }

    /// A floating-point column.
    pub fn float64(&self, name: &str) -> Result<&[f64], String> {
        match self.column(name)?.data {
            ColumnData::Float64(v) => Ok(v),
            _ => Err(format!("column `{name}` is not a floating-point column")),
        }
    }

    /// A decimal column.
    pub fn decimal(&self, name: &str) -> Result<DecimalColumn<'_>, String> {
        match self.column(name)?.data {
            ColumnData::Decimal(d) => Ok(DecimalColumn { scale: d.scale, unscaled: &d.unscaled }),
            _ => Err(format!("column `{name}` is not a decimal column")),
        }
    }

    /// The Kafka offset of each record; an error unless [`crate::Validate::reads`] asks for them.
    pub fn offsets(&self) -> Result<&[i64], String> {
        match self.offsets.len() == self.len() {
            true => Ok(&self.offsets),
            false => Err(missing("offsets")),
        }
    }

    /// The Kafka timestamp of each record, microseconds since the epoch; an error unless
    /// [`crate::Validate::reads`] asks for them.
    pub fn timestamps(&self) -> Result<&[i64], String> {
        match self.timestamps.len() == self.len() {
            true => Ok(&self.timestamps),
            false => Err(missing("timestamps")),
        }
    }

    /// The Kafka record keys; an error unless [`crate::Validate::reads`] asks for them.
    pub fn keys(&self) -> Result<Strings<'_>, String> {
        // Packed values have one offset more than values; keys not asked for have none.
        match self.keys.offsets.len() == self.len() + 1 {
            true => Ok(Strings::new(&self.keys)),
            false => Err(missing("keys")),
        }
    }
}

/// The error for Kafka metadata a batch was handed without.
fn missing(what: &str) -> String {
    format!("batch has no kafka {what}: ask for them in the validator's `reads`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(values: &[&[u8]]) -> Packed {
        let mut packed = Packed { data: Vec::new(), offsets: vec![0] };
        for v in values {
            packed.data.extend_from_slice(v);
            packed.offsets.push(packed.data.len() as u32);
        }
        packed
    }

    fn batch(offsets: Vec<i64>, keys: Packed) -> Batch {
        Batch {
            topic: "t".into(),
            partition: 0,
            records: 2,
            offsets,
            timestamps: Vec::new(),
            keys,
            columns: Vec::new(),
            now_micros: 0,
        }
    }

    #[test]
    fn kafka_metadata_not_asked_for_is_an_error_that_says_so() {
        let b = batch(Vec::new(), Packed { data: Vec::new(), offsets: Vec::new() });
        assert_eq!(b.len(), 2);
        assert!(b.offsets().unwrap_err().contains("no kafka offsets: ask for them in the validator's `reads`"));
        assert!(b.timestamps().unwrap_err().contains("no kafka timestamps"));
        assert!(b.keys().err().unwrap().contains("no kafka keys"));
        assert!(b.int64("price").unwrap_err().contains("no column `price`"));
    }

    #[test]
    fn kafka_metadata_asked_for_reads_per_record() {
        let b = batch(vec![7, 8], packed(&[b"k1", b""]));
        assert_eq!(b.offsets().unwrap(), [7, 8]);
        let keys = b.keys().unwrap();
        assert_eq!((keys.get(0), keys.get(1)), ("k1", ""));
    }

    #[test]
    fn reads_values_of_a_valid_buffer() {
        let p = packed(&[b"AAPL", b"", "BRK.\u{e9}".as_bytes(), b"X"]);
        let s = Strings::new(&p);
        assert_eq!((s.len(), s.get(0), s.get(1), s.get(2), s.get(3)), (4, "AAPL", "", "BRK.\u{e9}", "X"));
    }

    #[test]
    fn an_invalid_value_reads_empty_and_the_others_still_read() {
        let p = packed(&[b"AAPL", b"\xff\xfe", b"MSFT"]);
        let s = Strings::new(&p);
        assert_eq!((s.get(0), s.get(1), s.get(2)), ("AAPL", "", "MSFT"));
    }

    #[test]
    fn a_value_splitting_a_character_reads_empty() {
        // "é" is two bytes; offsets that cut it leave two invalid halves.
        let p = Packed { data: "\u{e9}".as_bytes().to_vec(), offsets: vec![0, 1, 2] };
        let s = Strings::new(&p);
        assert_eq!((s.get(0), s.get(1)), ("", ""));
    }
}
