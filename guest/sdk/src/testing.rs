//! Native tests of a validator: batches built from rows, a checked call, a simulated restart.
//!
//! ```
//! use k2_validator_sdk::testing::{BatchBuilder, Value};
//!
//! let batch = BatchBuilder::new(["symbol", "price", "sequence"])
//!     .row(("AAPL", Value::decimal("187.50"), 1))
//!     .row(("MSFT", Value::decimal("-1.00"), None::<i64>))
//!     .build();
//! assert_eq!(batch.len(), 2);
//! assert_eq!(batch.decimal("price").unwrap().unscaled, [18750, -100]);
//! assert!(!batch.column("sequence").unwrap().is_valid(1));
//! ```
//!
//! Failures here are panics naming the column or row at fault: this is test code.

use crate::component::Exported;
use crate::{Batch, ColumnData, Decimals, NamedColumn, Packed, Settings, Validate, Verdict};

/// One value of a row; `From` turns Rust values into it (`None` is a null).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Decimal { unscaled: i64, scale: u8 },
}

impl Value {
    /// A decimal from its text, e.g. `"-1.50"` (unscaled -150, scale 2). Every value of a
    /// column must have the same scale, as the host's do: write `"1.00"`, not `"1"`, next to it.
    pub fn decimal(text: &str) -> Value {
        let (sign, digits) = text.strip_prefix('-').map_or((1, text), |rest| (-1, rest));
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let unscaled: i64 =
            format!("{whole}{fraction}").parse().unwrap_or_else(|_| panic!("`{text}` is not a decimal"));
        Value::Decimal { unscaled: sign * unscaled, scale: fraction.len() as u8 }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Decimal { .. } => "decimal",
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

/// So an integer literal (an `i32` unless told otherwise) is a value.
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A row: a tuple of values in the builder's column order (or a `Vec<Value>`).
pub trait Row {
    fn values(self) -> Vec<Value>;
}

impl Row for Vec<Value> {
    fn values(self) -> Vec<Value> {
        self
    }
}

macro_rules! tuple_rows {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> Row for ($($name,)+) {
            #[allow(non_snake_case)]
            fn values(self) -> Vec<Value> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}

tuple_rows!(A);
tuple_rows!(A, B);
tuple_rows!(A, B, C);
tuple_rows!(A, B, C, D);
tuple_rows!(A, B, C, D, E);
tuple_rows!(A, B, C, D, E, F);
tuple_rows!(A, B, C, D, E, F, G);
tuple_rows!(A, B, C, D, E, F, G, H);
tuple_rows!(A, B, C, D, E, F, G, H, I);
tuple_rows!(A, B, C, D, E, F, G, H, I, J);
tuple_rows!(A, B, C, D, E, F, G, H, I, J, K);
tuple_rows!(A, B, C, D, E, F, G, H, I, J, K, L);

/// Builds a [`Batch`] from rows, laid out as the host lays out a batch for a validator that
/// reads everything: the named columns plus Kafka offsets (counting from
/// [`BatchBuilder::first_offset`]), timestamps (`now_micros`) and keys (empty unless given).
///
/// A column's type is that of its first non-null value (an all-null column is integers); a
/// later value of another type panics, naming the column and row.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    names: Vec<String>,
    rows: Vec<Vec<Value>>,
    keys: Vec<String>,
    topic: String,
    partition: i32,
    first_offset: i64,
    now_micros: i64,
}

impl BatchBuilder {
    /// A builder of batches with these columns, in the order of each row's values.
    pub fn new<'a>(columns: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: columns.into_iter().map(str::to_string).collect(),
            rows: Vec::new(),
            keys: Vec::new(),
            topic: "test".to_string(),
            partition: 0,
            first_offset: 0,
            now_micros: 0,
        }
    }

    /// Adds a row: one value per column, e.g. `("AAPL", 1)`.
    pub fn row(mut self, row: impl Row) -> Self {
        let values = row.values();
        assert_eq!(
            values.len(),
            self.names.len(),
            "row {} has {} values for the columns {:?}",
            self.rows.len(),
            values.len(),
            self.names
        );
        self.rows.push(values);
        self
    }

    /// Adds rows, e.g. `[("AAPL", 1), ("", 2)]`.
    pub fn rows<R: Row>(self, rows: impl IntoIterator<Item = R>) -> Self {
        rows.into_iter().fold(self, Self::row)
    }

    /// The Kafka keys of the rows, in order (rows past the last key have an empty key).
    pub fn keys<'a>(mut self, keys: impl IntoIterator<Item = &'a str>) -> Self {
        self.keys = keys.into_iter().map(str::to_string).collect();
        self
    }

    pub fn topic(mut self, topic: &str) -> Self {
        self.topic = topic.to_string();
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = partition;
        self
    }

    /// The Kafka offset of the first row; the others follow one by one.
    pub fn first_offset(mut self, offset: i64) -> Self {
        self.first_offset = offset;
        self
    }

    /// The host's clock for the batch, and every record's Kafka timestamp.
    pub fn now_micros(mut self, now_micros: i64) -> Self {
        self.now_micros = now_micros;
        self
    }

    pub fn build(&self) -> Batch {
        let n = self.rows.len();
        let columns = self.names.iter().enumerate().map(|(c, name)| self.column(c, name)).collect();
        let mut keys = Packed { data: Vec::new(), offsets: vec![0] };
        for i in 0..n {
            keys.data.extend_from_slice(self.keys.get(i).map_or("", String::as_str).as_bytes());
            keys.offsets.push(keys.data.len() as u32);
        }
        Batch {
            topic: self.topic.clone(),
            partition: self.partition,
            records: n as u32,
            offsets: (0..n as i64).map(|i| self.first_offset + i).collect(),
            timestamps: vec![self.now_micros; n],
            keys,
            columns,
            now_micros: self.now_micros,
        }
    }

    /// Column `c` of every row, in the layout of its first non-null value.
    fn column(&self, c: usize, name: &str) -> NamedColumn {
        let cells: Vec<&Value> = self.rows.iter().map(|row| &row[c]).collect();
        let first = cells.iter().find(|v| **v != &Value::Null).copied().unwrap_or(&Value::Int(0));
        let wrong = |i: usize, v: &Value| -> ! {
            panic!("column `{name}`: row {i} is of type {}, the column of type {}", v.kind(), first.kind())
        };
        let data = match first {
            Value::Bool(_) => ColumnData::Boolean(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Bool(b) => *b,
                        Value::Null => false,
                        other => wrong(i, other),
                    })
                    .collect(),
            ),
            Value::Int(_) | Value::Null => ColumnData::Int64(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Int(x) => *x,
                        Value::Null => 0,
                        other => wrong(i, other),
                    })
                    .collect(),
            ),
            Value::Float(_) => ColumnData::Float64(
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Float(x) => *x,
                        Value::Null => 0.0,
                        other => wrong(i, other),
                    })
                    .collect(),
            ),
            Value::Str(_) | Value::Bytes(_) => {
                let mut packed = Packed { data: Vec::new(), offsets: vec![0] };
                for (i, v) in cells.iter().enumerate() {
                    match (first, v) {
                        (Value::Str(_), Value::Str(s)) => packed.data.extend_from_slice(s.as_bytes()),
                        (Value::Bytes(_), Value::Bytes(b)) => packed.data.extend_from_slice(b),
                        (_, Value::Null) => {}
                        (_, other) => wrong(i, other),
                    }
                    packed.offsets.push(packed.data.len() as u32);
                }
                if matches!(first, Value::Str(_)) { ColumnData::Utf8(packed) } else { ColumnData::Binary(packed) }
            }
            Value::Decimal { scale, .. } => ColumnData::Decimal(Decimals {
                scale: *scale,
                unscaled: cells
                    .iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Decimal { unscaled, scale: s } if s == scale => *unscaled,
                        Value::Decimal { scale: s, .. } => {
                            panic!("column `{name}`: row {i} has scale {s}, an earlier row scale {scale}")
                        }
                        Value::Null => 0,
                        other => wrong(i, other),
                    })
                    .collect(),
            }),
        };
        let nulls = cells.iter().any(|v| **v == Value::Null).then(|| {
            let mut bits = vec![0u8; cells.len().div_ceil(8)];
            for (i, _) in cells.iter().enumerate().filter(|(_, v)| ***v != Value::Null) {
                bits[i / 8] |= 1 << (i % 8);
            }
            bits
        });
        NamedColumn { name: name.to_string(), data, nulls }
    }
}

/// Runs `validator` on `batch` as the host would, panicking with the validator's error.
#[track_caller]
pub fn check<T: Validate>(validator: &mut T, batch: &Batch) -> Verdict {
    let mut verdict = Verdict::new();
    if let Err(e) = validator.validate(batch, &mut verdict) {
        panic!("validate failed: {e}");
    }
    verdict
}

/// A fresh instance (from no settings) restored from `validator`'s state, as the host builds one
/// after a restart or a failure; needs `export_validator!` for the validator's type.
#[track_caller]
pub fn restart<T: Exported>(validator: &T) -> T {
    let mut fresh = T::from_settings(&Settings::default()).unwrap_or_else(|e| panic!("from_settings failed: {e}"));
    if let Err(e) = fresh.restore(&validator.snapshot()) {
        panic!("restore failed: {e}");
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_columns_with_kafka_metadata() {
        let batch = BatchBuilder::new(["symbol", "ok", "px"])
            .rows([("AAPL", true, 1.5), ("", false, -2.0)])
            .keys(["k1"])
            .first_offset(40)
            .now_micros(7)
            .build();
        assert_eq!(batch.len(), 2);
        let symbol = batch.utf8("symbol").unwrap();
        assert_eq!((symbol.get(0), symbol.get(1)), ("AAPL", ""));
        assert_eq!(batch.boolean("ok").unwrap(), [true, false]);
        assert_eq!(batch.float64("px").unwrap(), [1.5, -2.0]);
        assert_eq!(batch.offsets().unwrap(), [40, 41]);
        assert_eq!(batch.timestamps().unwrap(), [7, 7]);
        let keys = batch.keys().unwrap();
        assert_eq!((keys.get(0), keys.get(1)), ("k1", ""));
    }

    #[test]
    fn nulls_and_decimals() {
        let batch = BatchBuilder::new(["price", "n"])
            .row((Value::decimal("-1.50"), None::<i64>))
            .row((Value::decimal("2.25"), Some(3)))
            .build();
        let price = batch.decimal("price").unwrap();
        assert_eq!((price.scale, price.unscaled), (2, &[-150, 225][..]));
        let n = batch.column("n").unwrap();
        assert!(!n.is_valid(0) && n.is_valid(1));
        assert_eq!(batch.int64("n").unwrap(), [0, 3]);
    }

    #[test]
    #[should_panic(expected = "column `x`: row 1 is of type string, the column of type integer")]
    fn a_column_of_two_types_panics_naming_it() {
        BatchBuilder::new(["x"]).row((1,)).row(("a",)).build();
    }
}
