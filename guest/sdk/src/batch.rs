//! Read access to a batch's columns by name, in the layouts the host sends.

use crate::{Batch, ColumnData, Packed};

/// Strings of one column (or the record keys), borrowed from the batch's packed buffer.
pub struct Strings<'a> {
    packed: &'a Packed,
}

impl<'a> Strings<'a> {
    pub fn new(packed: &'a Packed) -> Self {
        Self { packed }
    }

    /// The bytes of value `i`. The host guarantees offsets are in range and ordered.
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        let start = self.packed.offsets[i] as usize;
        let end = self.packed.offsets[i + 1] as usize;
        &self.packed.data[start..end]
    }

    /// Value `i` as text; invalid UTF-8 (impossible from the host's utf8 columns) reads empty.
    pub fn get(&self, i: usize) -> &'a str {
        std::str::from_utf8(self.bytes(i)).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.packed.offsets.len().saturating_sub(1)
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
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The column named `name`; the error names it.
    pub fn column(&self, name: &str) -> Result<Column<'_>, String> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| Column { data: &c.data, nulls: c.nulls.as_deref() })
            .ok_or_else(|| format!("batch has no column `{name}`"))
    }

    /// A string (or enum) column.
    pub fn utf8(&self, name: &str) -> Result<Strings<'_>, String> {
        match self.column(name)?.data {
            ColumnData::Utf8(p) => Ok(Strings::new(p)),
            _ => Err(format!("column `{name}` is not a string column")),
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

    /// The Kafka record keys.
    pub fn keys(&self) -> Strings<'_> {
        Strings::new(&self.keys)
    }
}
