//! Builds Arrow record batches in the table's schema from decoded Avro records.

use std::sync::Arc;

use apache_avro::types::Value;
use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, LargeBinaryBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, MapArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBufferBuilder};
use arrow_schema::{ArrowError, DataType, FieldRef, Fields, SchemaRef, TimeUnit};

use crate::decode::direct::{Raw, RecordPlan, i128_from_be, millis_to_micros};
use crate::error::{DecodeError, Error, Result};
use crate::schema::mapping::{META_OFFSET, META_PARTITION, META_TIMESTAMP};

/// Kafka metadata of one record.
#[derive(Debug, Clone, Copy)]
pub struct KafkaMeta {
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp in milliseconds since the epoch, if the record has one.
    pub timestamp_ms: Option<i64>,
}

/// Where a table column's values come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The Avro field at this position of the decoded record.
    Field(usize),
    Partition,
    Offset,
    Timestamp,
}

/// One value on its way into a column; lets a record be checked whole before any
/// column is touched, so a bad field never leaves the columns of unequal length.
#[derive(Debug)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Decimal(i128),
    Struct(Vec<Cell>),
    List(Vec<Cell>),
    /// Entries in key order, so equal maps are stored alike.
    Map(Vec<(String, Cell)>),
}

enum Column {
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(LargeBinaryBuilder),
    Fixed(FixedSizeBinaryBuilder, i32),
    Decimal(Decimal128Builder, u8),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Struct {
        fields: Fields,
        children: Vec<Column>,
        valid: NullBufferBuilder,
    },
    List {
        field: FieldRef,
        child: Box<Column>,
        offsets: OffsetBufferBuilder<i32>,
        valid: NullBufferBuilder,
    },
    Map {
        /// The `key_value` entries field, and its value field (for nullability checks).
        entries: FieldRef,
        value_field: FieldRef,
        keys: StringBuilder,
        values: Box<Column>,
        offsets: OffsetBufferBuilder<i32>,
        valid: NullBufferBuilder,
    },
}

/// Accumulates records of one topic-partition as Arrow columns in the table's schema.
pub struct ColumnsBuilder {
    schema: SchemaRef,
    sources: Vec<Source>,
    columns: Vec<Column>,
    cells: Vec<Cell>,
    rows: usize,
}

impl ColumnsBuilder {
    /// Plans the columns of `table_schema` (Arrow) from the Avro field names `avro_fields`.
    /// A table column that is neither an Avro field nor a metadata column is an error
    /// naming it, as is a type the builder does not handle.
    pub fn new(table_schema: SchemaRef, avro_fields: &[String], table: &str) -> Result<Self> {
        let mut sources = Vec::new();
        let mut columns = Vec::new();
        for field in table_schema.fields() {
            let name = field.name().as_str();
            let source = match avro_fields.iter().position(|f| f == name) {
                Some(i) => Source::Field(i),
                None => match name {
                    META_PARTITION => Source::Partition,
                    META_OFFSET => Source::Offset,
                    META_TIMESTAMP => Source::Timestamp,
                    _ if field.is_nullable() => Source::Field(usize::MAX),
                    _ => {
                        return Err(Error::Topic {
                            topic: table.to_string(),
                            message: format!("required table column `{name}` is not in the topic's avro schema"),
                        });
                    }
                },
            };
            sources.push(source);
            columns.push(Column::for_type(field.data_type()).ok_or_else(|| Error::Topic {
                topic: table.to_string(),
                message: format!(
                    "table column `{name}` has arrow type {} which k2-ingest cannot write yet",
                    field.data_type()
                ),
            })?);
        }
        Ok(Self { schema: table_schema, sources, columns, cells: Vec::new(), rows: 0 })
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one decoded record, or none of it when a field does not fit its column.
    pub fn append(&mut self, mut fields: Vec<(String, Value)>, meta: KafkaMeta) -> Result<(), DecodeError> {
        self.cells.clear();
        for (i, source) in self.sources.iter().enumerate() {
            let cell = match *source {
                Source::Field(usize::MAX) => Cell::Null,
                Source::Field(pos) => {
                    let Some((name, value)) = fields.get_mut(pos) else {
                        return Err(DecodeError::Field {
                            field: self.schema.field(i).name().clone(),
                            message: "missing".into(),
                        });
                    };
                    let value = std::mem::replace(value, Value::Null);
                    to_cell(value, &self.columns[i])
                        .map_err(|message| DecodeError::Field { field: name.clone(), message })?
                }
                meta_source => meta_cell(meta_source, meta)
                    .map_err(|message| DecodeError::Field { field: self.schema.field(i).name().clone(), message })?,
            };
            if matches!(cell, Cell::Null) && !self.schema.field(i).is_nullable() {
                return Err(DecodeError::Field {
                    field: self.schema.field(i).name().clone(),
                    message: "null in a required column".into(),
                });
            }
            self.cells.push(cell);
        }
        for (column, cell) in self.columns.iter_mut().zip(self.cells.drain(..)) {
            column.push(cell);
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends one record read by [`RecordPlan::read`] from `body`, or none of it when a field
    /// does not fit its column. Strings and bytes go from the body into the columns directly.
    pub fn append_raw(
        &mut self,
        raws: &[Raw],
        body: &[u8],
        plan: &RecordPlan,
        meta: KafkaMeta,
    ) -> Result<(), DecodeError> {
        // Check the whole record before touching a column, as `append` does.
        for (i, source) in self.sources.iter().enumerate() {
            let field = || self.schema.field(i).name().clone();
            let null = match *source {
                Source::Field(usize::MAX) => true,
                Source::Field(pos) => {
                    let raw = raws
                        .get(pos)
                        .ok_or_else(|| DecodeError::Field { field: field(), message: "missing".into() })?;
                    fits(raw, &self.columns[i]).map_err(|message| DecodeError::Field { field: field(), message })?;
                    matches!(raw, Raw::Null)
                }
                Source::Partition | Source::Offset => false,
                Source::Timestamp => {
                    meta_cell(Source::Timestamp, meta)
                        .map_err(|message| DecodeError::Field { field: field(), message })?;
                    meta.timestamp_ms.is_none()
                }
            };
            if null && !self.schema.field(i).is_nullable() {
                return Err(DecodeError::Field { field: field(), message: "null in a required column".into() });
            }
        }
        for (column, source) in self.columns.iter_mut().zip(&self.sources) {
            match *source {
                Source::Field(usize::MAX) => column.push_null(),
                Source::Field(pos) => column.push_raw(&raws[pos], body, plan),
                // Checked above: a timestamp out of range refused the record.
                meta_source => column.push(meta_cell(meta_source, meta).unwrap_or(Cell::Null)),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Takes the accumulated rows as a record batch and starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let err = |source| Error::Arrow { context: "building a record batch".into(), source };
        let arrays: Vec<ArrayRef> =
            self.columns.iter_mut().map(Column::finish).collect::<Result<_, _>>().map_err(err)?;
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(err)
    }
}

/// Converts an Avro value to the cell its column takes; the error says what did not fit.
fn to_cell(value: Value, column: &Column) -> std::result::Result<Cell, String> {
    let value = match value {
        Value::Union(_, inner) => *inner,
        v => v,
    };
    Ok(match (value, column) {
        (Value::Null, _) => Cell::Null,
        (Value::Record(mut values), Column::Struct { fields, children, .. }) => {
            let mut cells = Vec::with_capacity(children.len());
            for (field, child) in fields.iter().zip(children) {
                let value = values
                    .iter_mut()
                    .find(|(name, _)| name == field.name())
                    .map_or(Value::Null, |(_, v)| std::mem::replace(v, Value::Null));
                let cell = to_cell(value, child).map_err(|m| format!("`{}`: {m}", field.name()))?;
                cells.push(non_null(cell, field).map_err(|m| format!("`{}`: {m}", field.name()))?);
            }
            Cell::Struct(cells)
        }
        (Value::Array(items), Column::List { field, child, .. }) => Cell::List(
            items
                .into_iter()
                .map(|v| to_cell(v, child).and_then(|c| non_null(c, field)))
                .collect::<std::result::Result<_, _>>()
                .map_err(|m| format!("array item: {m}"))?,
        ),
        (Value::Map(map), Column::Map { value_field, values, .. }) => {
            let mut entries = map
                .into_iter()
                .map(|(k, v)| {
                    let cell = to_cell(v, values).and_then(|c| non_null(c, value_field));
                    cell.map(|c| (k.clone(), c)).map_err(|m| format!("map value `{k}`: {m}"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Cell::Map(entries)
        }
        (Value::Uuid(u), _) => Cell::Bytes(u.as_bytes().to_vec()),
        (value, column) => scalar_cell(value, column)?,
    })
}

/// A nested value's cell, refused when null in a field that may not be.
fn non_null(cell: Cell, field: &arrow_schema::Field) -> std::result::Result<Cell, String> {
    if matches!(cell, Cell::Null) && !field.is_nullable() {
        return Err("null in a required field".into());
    }
    Ok(cell)
}

/// The cell of a primitive Avro value.
fn scalar_cell(value: Value, column: &Column) -> std::result::Result<Cell, String> {
    Ok(match value {
        Value::Null => Cell::Null,
        Value::Boolean(b) => Cell::Bool(b),
        Value::Int(v) | Value::Date(v) => Cell::Int(v as i64),
        Value::Long(v) | Value::TimeMicros(v) | Value::TimestampMicros(v) | Value::LocalTimestampMicros(v) => {
            Cell::Int(v)
        }
        Value::TimeMillis(v) => Cell::Int(v as i64 * 1000),
        Value::TimestampMillis(v) | Value::LocalTimestampMillis(v) => Cell::Int(millis_to_micros(v)?),
        Value::Float(v) => Cell::Float(v as f64),
        Value::Double(v) => Cell::Float(v),
        Value::String(s) | Value::Enum(_, s) => Cell::Str(s),
        Value::Bytes(b) | Value::Fixed(_, b) => Cell::Bytes(b),
        Value::Decimal(d) => {
            let bytes = Vec::<u8>::try_from(&d).map_err(|e| format!("decimal: {e}"))?;
            let unscaled = i128_from_be(&bytes).ok_or("decimal wider than 128 bits")?;
            check_precision(unscaled, column)?;
            Cell::Decimal(unscaled)
        }
        other => return Err(format!("avro value {other:?} does not fit the column's type")),
    })
    .and_then(|cell| match cell {
        Cell::Int(v) => in_calendar(v, column).map(|()| cell),
        cell => Ok(cell),
    })
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds, and those days since
/// the epoch: the years every engine reading the table (Spark, Trino, DuckDB, Python's
/// datetime) can represent. A timestamp outside them is a corrupt or hostile record, and is
/// refused rather than stored as an instant no reader can show.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;
const MIN_DAY: i64 = -719_162;
const MAX_DAY: i64 = 2_932_896;
/// A time of day, in microseconds since midnight.
const DAY_MICROS: i64 = 86_400_000_000;

/// Whether `v` is a date, time or timestamp every reader can represent, for those columns.
fn in_calendar(v: i64, column: &Column) -> std::result::Result<(), String> {
    match column {
        Column::Timestamp(_) => timestamp_in_calendar(v),
        Column::Date(_) if !(MIN_DAY..=MAX_DAY).contains(&v) => {
            Err(format!("date {v} (days since 1970) is outside the years 0001 to 9999"))
        }
        Column::Time(_) if !(0..DAY_MICROS).contains(&v) => {
            Err(format!("time of day {v} µs is outside 00:00 to 24:00"))
        }
        _ => Ok(()),
    }
}

fn timestamp_in_calendar(micros: i64) -> std::result::Result<(), String> {
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(())
    } else {
        Err(format!("timestamp {micros} µs is outside the years 0001 to 9999"))
    }
}

/// The cell of a Kafka metadata column (a source other than a field). A producer sets the
/// record timestamp, so it is refused outside the calendar like a field's, not clamped.
fn meta_cell(source: Source, meta: KafkaMeta) -> std::result::Result<Cell, String> {
    Ok(match source {
        Source::Partition => Cell::Int(meta.partition as i64),
        Source::Offset => Cell::Int(meta.offset),
        Source::Timestamp => match meta.timestamp_ms {
            Some(ms) => {
                let micros = millis_to_micros(ms)?;
                timestamp_in_calendar(micros)?;
                Cell::Int(micros)
            }
            None => Cell::Null,
        },
        Source::Field(_) => Cell::Null,
    })
}

/// A decimal's unscaled value must have at most the column's precision in digits.
fn check_precision(unscaled: i128, column: &Column) -> std::result::Result<(), String> {
    if let Column::Decimal(_, precision) = column
        && unscaled.unsigned_abs() >= 10u128.pow(*precision as u32)
    {
        return Err(format!("decimal {unscaled} (unscaled) exceeds precision {precision}"));
    }
    Ok(())
}

/// Whether a read value can go into `column` as it is; the error says why not.
fn fits(raw: &Raw, column: &Column) -> std::result::Result<(), String> {
    let ok = match (raw, column) {
        (Raw::Null, _) => true,
        (Raw::Bool(_), Column::Bool(_)) => true,
        (Raw::Int(v), Column::Date(_) | Column::Time(_) | Column::Timestamp(_)) => return in_calendar(*v, column),
        (Raw::Int(v), Column::Int32(_)) => i32::try_from(*v).is_ok(),
        (Raw::Int(_), Column::Int64(_)) => true,
        (Raw::Float(_), Column::Float32(_) | Column::Float64(_)) => true,
        (Raw::Str(_) | Raw::Symbol { .. }, Column::Utf8(_)) => true,
        (Raw::Bytes(_), Column::Binary(_)) => true,
        (Raw::Bytes(r), Column::Fixed(_, w)) => r.len() == *w as usize,
        (Raw::Decimal(v), Column::Decimal(..)) => return check_precision(*v, column),
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("avro value {raw:?} does not fit the column's type")) }
}

impl Column {
    fn for_type(ty: &DataType) -> Option<Self> {
        Some(match ty {
            DataType::Boolean => Column::Bool(BooleanBuilder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Float32 => Column::Float32(Float32Builder::new()),
            DataType::Float64 => Column::Float64(Float64Builder::new()),
            DataType::Utf8 => Column::Utf8(StringBuilder::new()),
            DataType::LargeBinary => Column::Binary(LargeBinaryBuilder::new()),
            DataType::FixedSizeBinary(w) => Column::Fixed(FixedSizeBinaryBuilder::new(*w), *w),
            DataType::Decimal128(p, s) => {
                Column::Decimal(Decimal128Builder::new().with_precision_and_scale(*p, *s).ok()?, *p)
            }
            DataType::Date32 => Column::Date(Date32Builder::new()),
            DataType::Time64(TimeUnit::Microsecond) => Column::Time(Time64MicrosecondBuilder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Column::Timestamp(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
            }
            DataType::Struct(fields) => Column::Struct {
                fields: fields.clone(),
                children: fields.iter().map(|f| Column::for_type(f.data_type())).collect::<Option<_>>()?,
                valid: NullBufferBuilder::new(0),
            },
            DataType::List(field) => Column::List {
                field: field.clone(),
                child: Box::new(Column::for_type(field.data_type())?),
                offsets: OffsetBufferBuilder::new(0),
                valid: NullBufferBuilder::new(0),
            },
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 && kv[0].data_type() == &DataType::Utf8 => Column::Map {
                    entries: entries.clone(),
                    value_field: kv[1].clone(),
                    keys: StringBuilder::new(),
                    values: Box::new(Column::for_type(kv[1].data_type())?),
                    offsets: OffsetBufferBuilder::new(0),
                    valid: NullBufferBuilder::new(0),
                },
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Appends a cell already checked by [`to_cell`]; a cell of another kind than the
    /// column (impossible for records decoded with the table's schema) is stored as null.
    fn push(&mut self, cell: Cell) {
        match (self, cell) {
            (Column::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Column::Int32(b), Cell::Int(v)) => b.append_value(v as i32),
            (Column::Int64(b), Cell::Int(v)) => b.append_value(v),
            (Column::Float32(b), Cell::Float(v)) => b.append_value(v as f32),
            (Column::Float64(b), Cell::Float(v)) => b.append_value(v),
            (Column::Utf8(b), Cell::Str(v)) => b.append_value(v),
            (Column::Binary(b), Cell::Bytes(v)) => b.append_value(v),
            (Column::Fixed(b, w), Cell::Bytes(v)) if v.len() == *w as usize => b.append_value(v).unwrap_or(()),
            (Column::Decimal(b, _), Cell::Decimal(v)) => b.append_value(v),
            (Column::Date(b), Cell::Int(v)) => b.append_value(v as i32),
            (Column::Time(b), Cell::Int(v)) => b.append_value(v),
            (Column::Timestamp(b), Cell::Int(v)) => b.append_value(v),
            (Column::Struct { children, valid, .. }, Cell::Struct(cells)) => {
                for (child, cell) in children.iter_mut().zip(cells) {
                    child.push(cell);
                }
                valid.append_non_null();
            }
            (Column::List { child, offsets, valid, .. }, Cell::List(items)) => {
                offsets.push_length(items.len());
                for cell in items {
                    child.push(cell);
                }
                valid.append_non_null();
            }
            (Column::Map { keys, values, offsets, valid, .. }, Cell::Map(entries)) => {
                offsets.push_length(entries.len());
                for (key, cell) in entries {
                    keys.append_value(key);
                    values.push(cell);
                }
                valid.append_non_null();
            }
            (column, _) => column.push_null(),
        }
    }

    /// Appends a value already checked by [`fits`].
    fn push_raw(&mut self, raw: &Raw, body: &[u8], plan: &RecordPlan) {
        match (self, raw) {
            (Column::Bool(b), Raw::Bool(v)) => b.append_value(*v),
            (Column::Int32(b), Raw::Int(v)) => b.append_value(*v as i32),
            (Column::Date(b), Raw::Int(v)) => b.append_value(*v as i32),
            (Column::Int64(b), Raw::Int(v)) => b.append_value(*v),
            (Column::Time(b), Raw::Int(v)) => b.append_value(*v),
            (Column::Timestamp(b), Raw::Int(v)) => b.append_value(*v),
            (Column::Float32(b), Raw::Float(v)) => b.append_value(*v as f32),
            (Column::Float64(b), Raw::Float(v)) => b.append_value(*v),
            // `RecordPlan::read` checked this UTF-8 already; checked again rather than trusting a
            // range (this is a public path), so nothing can put invalid UTF-8 in a string column.
            (Column::Utf8(b), Raw::Str(r)) => b.append_value(std::str::from_utf8(&body[r.clone()]).unwrap_or_default()),
            (Column::Utf8(b), Raw::Symbol { field, index }) => b.append_value(plan.symbol(*field, *index)),
            (Column::Binary(b), Raw::Bytes(r)) => b.append_value(&body[r.clone()]),
            (Column::Fixed(b, _), Raw::Bytes(r)) => b.append_value(&body[r.clone()]).unwrap_or(()),
            (Column::Decimal(b, _), Raw::Decimal(v)) => b.append_value(*v),
            (column, _) => column.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::Bool(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Utf8(b) => b.append_null(),
            Column::Binary(b) => b.append_null(),
            Column::Fixed(b, _) => b.append_null(),
            Column::Decimal(b, _) => b.append_null(),
            Column::Date(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::Timestamp(b) => b.append_null(),
            Column::Struct { children, valid, .. } => {
                // A null struct still has a slot in each child; the struct's own null masks it.
                for child in children {
                    child.push_null();
                }
                valid.append_null();
            }
            Column::List { offsets, valid, .. } | Column::Map { offsets, valid, .. } => {
                offsets.push_length(0);
                valid.append_null();
            }
        }
    }

    fn finish(&mut self) -> std::result::Result<ArrayRef, ArrowError> {
        Ok(match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Binary(b) => Arc::new(b.finish()),
            Column::Fixed(b, _) => Arc::new(b.finish()),
            Column::Decimal(b, _) => Arc::new(b.finish()),
            Column::Date(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Struct { fields, children, valid } => {
                let arrays = children.iter_mut().map(Column::finish).collect::<std::result::Result<_, _>>()?;
                Arc::new(StructArray::try_new(fields.clone(), arrays, valid.finish())?)
            }
            Column::List { field, child, offsets, valid } => {
                let offsets = take_offsets(offsets);
                Arc::new(ListArray::try_new(field.clone(), offsets, child.finish()?, valid.finish())?)
            }
            Column::Map { entries, keys, values, offsets, valid, .. } => {
                let DataType::Struct(kv) = entries.data_type() else { unreachable!("checked in for_type") };
                let pairs = StructArray::try_new(kv.clone(), vec![Arc::new(keys.finish()), values.finish()?], None)?;
                let offsets = take_offsets(offsets);
                Arc::new(MapArray::try_new(entries.clone(), offsets, pairs, valid.finish(), false)?)
            }
        })
    }
}

/// The offsets of the rows so far, leaving the column empty (arrow's builder finishes by value).
fn take_offsets(offsets: &mut OffsetBufferBuilder<i32>) -> arrow_buffer::OffsetBuffer<i32> {
    std::mem::replace(offsets, OffsetBufferBuilder::new(0)).finish()
}

#[cfg(test)]
mod calendar_tests {
    use super::*;

    #[test]
    fn dates_times_and_timestamps_outside_what_readers_show_are_refused() {
        let ts = Column::Timestamp(TimestampMicrosecondBuilder::new());
        assert!(in_calendar(MIN_MICROS, &ts).is_ok() && in_calendar(MAX_MICROS, &ts).is_ok());
        assert!(in_calendar(0, &ts).is_ok());
        for v in [MIN_MICROS - 1, MAX_MICROS + 1, i64::MIN, i64::MAX] {
            let err = in_calendar(v, &ts).unwrap_err();
            assert_eq!(err, format!("timestamp {v} µs is outside the years 0001 to 9999"));
        }
        let date = Column::Date(Date32Builder::new());
        assert!(in_calendar(MIN_DAY, &date).is_ok() && in_calendar(MAX_DAY, &date).is_ok());
        assert!(in_calendar(MAX_DAY + 1, &date).is_err() && in_calendar(i32::MIN as i64, &date).is_err());
        let time = Column::Time(Time64MicrosecondBuilder::new());
        assert!(in_calendar(0, &time).is_ok() && in_calendar(DAY_MICROS - 1, &time).is_ok());
        assert!(in_calendar(DAY_MICROS, &time).is_err() && in_calendar(-1, &time).is_err());
        assert!(in_calendar(i64::MIN, &Column::Int64(Int64Builder::new())).is_ok(), "plain longs are not dates");
    }

    #[test]
    fn a_kafka_timestamp_outside_the_calendar_is_refused() {
        let meta = |ms| KafkaMeta { partition: 0, offset: 0, timestamp_ms: Some(ms) };
        assert!(meta_cell(Source::Timestamp, meta(1_700_000_000_000)).is_ok());
        assert!(meta_cell(Source::Timestamp, meta(MAX_MICROS / 1000 + 1)).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Field, Schema};

    fn builder() -> ColumnsBuilder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("price", DataType::Decimal128(18, 8), false),
            Field::new("note", DataType::Utf8, true),
            Field::new(META_OFFSET, DataType::Int64, false),
            Field::new(META_TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), true),
        ]));
        let avro = ["symbol", "price", "note"].map(String::from);
        ColumnsBuilder::new(schema, &avro, "t").unwrap()
    }

    fn record(symbol: &str, price: &[u8], note: Option<&str>) -> Vec<(String, Value)> {
        let note = match note {
            Some(n) => Value::Union(1, Box::new(Value::String(n.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        vec![
            ("symbol".into(), Value::String(symbol.into())),
            ("price".into(), Value::Decimal(price.into())),
            ("note".into(), note),
        ]
    }

    #[test]
    fn builds_typed_columns_with_metadata() {
        let mut b = builder();
        let meta = KafkaMeta { partition: 2, offset: 41, timestamp_ms: Some(1_700_000_000_000) };
        b.append(record("AAPL", &[0x01, 0x00], None), meta).unwrap();
        b.append(record("MSFT", &[0xFF, 0x38], Some("late")), KafkaMeta { offset: 42, timestamp_ms: None, ..meta })
            .unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let sym = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(sym.value(1), "MSFT");
        let price = batch.column(1).as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!((price.value(0), price.value(1)), (256, -200));
        assert!(batch.column(2).is_null(0));
        let off = batch.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(off.values().to_vec(), vec![41, 42]);
        let ts = batch.column(4).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        assert_eq!(ts.value(0), 1_700_000_000_000_000);
        assert!(ts.is_null(1));
        assert!(b.is_empty());
    }

    #[test]
    fn a_kafka_timestamp_out_of_range_is_refused_on_both_append_paths() {
        let mut b = builder();
        let meta = KafkaMeta { partition: 0, offset: 0, timestamp_ms: Some(i64::MIN) };
        let expected = DecodeError::Field {
            field: META_TIMESTAMP.into(),
            message: format!("timestamp-millis {} is out of range of a microsecond timestamp", i64::MIN),
        };
        assert_eq!(b.append(record("AAPL", &[1], None), meta), Err(expected.clone()));
        let schema = apache_avro::Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"symbol","type":"string"},
                {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":8}},
                {"name":"note","type":["null","string"]}]}"#,
        )
        .unwrap();
        let plan = RecordPlan::compile(&schema).unwrap();
        let body = [0x02, b'A', 0x02, 0x01, 0x00];
        let mut raws = Vec::new();
        plan.read(&body, &mut raws).unwrap();
        assert_eq!(b.append_raw(&raws, &body, &plan, meta), Err(expected));
        assert!(b.is_empty());
    }

    #[test]
    fn a_bad_field_leaves_no_partial_row() {
        let mut b = builder();
        let meta = KafkaMeta { partition: 0, offset: 0, timestamp_ms: None };
        // 10^18 unscaled does not fit precision 18.
        let too_wide = 1_000_000_000_000_000_000i64.to_be_bytes();
        let err = b.append(record("AAPL", &too_wide, None), meta).unwrap_err();
        assert!(matches!(err, DecodeError::Field { ref field, .. } if field == "price"), "{err}");
        b.append(record("AAPL", &[1], None), meta).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
    }
}
