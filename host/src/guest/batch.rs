//! Lays an Arrow record batch out as the WIT `batch`: one buffer per column, not per value.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};

use crate::guest::bindings::wit;

/// A batch of one topic-partition as the pipeline holds it.
pub struct BatchInput<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The records, in the table's schema.
    pub records: &'a RecordBatch,
    /// Which columns of `records` are Avro fields (metadata columns are not handed over).
    pub fields: &'a [usize],
    pub offsets: &'a [i64],
    /// Kafka record timestamps, microseconds since the epoch (0 when absent).
    pub timestamps_us: &'a [i64],
    /// Kafka keys packed: key `i` is `key_data[key_offsets[i]..key_offsets[i + 1]]`.
    pub key_data: &'a [u8],
    pub key_offsets: &'a [u32],
    pub now_micros: i64,
}

impl BatchInput<'_> {
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

pub(crate) fn to_wit_batch(input: &BatchInput<'_>) -> Result<wit::Batch, String> {
    let schema = input.records.schema();
    let mut columns = Vec::with_capacity(input.fields.len());
    for &i in input.fields {
        let field = schema.field(i);
        let array = input.records.column(i);
        let data = column_data(array.as_ref()).ok_or_else(|| {
            format!("column `{}` of arrow type {} cannot be handed to a validator yet", field.name(), field.data_type())
        })?;
        columns.push(wit::Column { name: field.name().clone(), data, nulls: validity(array.as_ref()) });
    }
    Ok(wit::Batch {
        topic: input.topic.to_string(),
        partition: input.partition,
        offsets: input.offsets.to_vec(),
        timestamps: input.timestamps_us.to_vec(),
        keys: wit::Packed { data: input.key_data.to_vec(), offsets: input.key_offsets.to_vec() },
        columns,
        now_micros: input.now_micros,
    })
}

fn column_data(array: &dyn Array) -> Option<wit::ColumnData> {
    use wit::ColumnData as C;
    Some(match array.data_type() {
        DataType::Boolean => C::Boolean(array.as_boolean().values().iter().collect()),
        DataType::Int32 => C::Int64(array.as_primitive::<Int32Type>().values().iter().map(|&v| v as i64).collect()),
        DataType::Date32 => C::Int64(array.as_primitive::<Date32Type>().values().iter().map(|&v| v as i64).collect()),
        DataType::Int64 => C::Int64(array.as_primitive::<Int64Type>().values().to_vec()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            C::Int64(array.as_primitive::<TimestampMicrosecondType>().values().to_vec())
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            C::Int64(array.as_primitive::<Time64MicrosecondType>().values().to_vec())
        }
        DataType::Float32 => {
            C::Float64(array.as_primitive::<Float32Type>().values().iter().map(|&v| v as f64).collect())
        }
        DataType::Float64 => C::Float64(array.as_primitive::<Float64Type>().values().to_vec()),
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            C::Utf8(packed(a.value_data(), a.value_offsets().iter().map(|&o| o as usize)))
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            C::Binary(packed(a.value_data(), a.value_offsets().iter().map(|&o| o as usize)))
        }
        DataType::FixedSizeBinary(w) => {
            let a = array.as_fixed_size_binary();
            let w = *w as usize;
            let start = a.value_offset(0).max(0) as usize;
            C::Binary(packed(a.value_data(), (0..=a.len()).map(|i| start + i * w)))
        }
        // Precision up to 18 always fits an i64 unscaled value.
        DataType::Decimal128(p, s) if *p <= 18 && *s >= 0 => C::Decimal(wit::DecimalColumn {
            scale: *s as u8,
            unscaled: array.as_primitive::<Decimal128Type>().values().iter().map(|&v| v as i64).collect(),
        }),
        _ => return None,
    })
}

/// Copies the bytes between the first and last offsets and rebases the offsets to 0.
fn packed(data: &[u8], offsets: impl Iterator<Item = usize> + Clone) -> wit::Packed {
    let first = offsets.clone().next().unwrap_or(0);
    let last = offsets.clone().last().unwrap_or(0);
    wit::Packed { data: data[first..last].to_vec(), offsets: offsets.map(|o| (o - first) as u32).collect() }
}

/// The validity bitmap as LSB-first bytes, or `None` when nothing is null.
fn validity(array: &dyn Array) -> Option<Vec<u8>> {
    let nulls = array.logical_nulls()?;
    if nulls.null_count() == 0 {
        return None;
    }
    let mut bits = vec![0u8; array.len().div_ceil(8)];
    for (i, valid) in nulls.iter().enumerate() {
        if valid {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Decimal128Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    #[test]
    fn lays_out_columns_with_rebased_offsets_and_validity() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(18, 8), false),
            Field::new("_kafka_offset", DataType::Int64, false),
        ]));
        let symbols = StringArray::from(vec![Some("X"), Some("AAPL"), None, Some("MSFT")]).slice(1, 3);
        let price = Decimal128Array::from(vec![1, 2, 3]).with_precision_and_scale(18, 8).unwrap();
        let records = RecordBatch::try_new(
            schema,
            vec![Arc::new(symbols), Arc::new(price), Arc::new(Int64Array::from(vec![5, 6, 7]))],
        )
        .unwrap();
        let input = BatchInput {
            topic: "t",
            partition: 1,
            records: &records,
            fields: &[0, 1],
            offsets: &[5, 6, 7],
            timestamps_us: &[0, 0, 0],
            key_data: b"ab",
            key_offsets: &[0, 1, 1, 2],
            now_micros: 9,
        };
        let batch = to_wit_batch(&input).unwrap();
        assert_eq!(batch.columns.len(), 2);
        match &batch.columns[0].data {
            wit::ColumnData::Utf8(p) => {
                assert_eq!(p.data, b"AAPLMSFT");
                assert_eq!(p.offsets, vec![0, 4, 4, 8]);
            }
            _ => panic!("symbol should be utf8"),
        }
        assert_eq!(batch.columns[0].nulls, Some(vec![0b101]));
        match &batch.columns[1].data {
            wit::ColumnData::Decimal(d) => assert_eq!((d.scale, d.unscaled.clone()), (8, vec![1, 2, 3])),
            _ => panic!("price should be decimal"),
        }
        assert_eq!(batch.columns[1].nulls, None);
    }
}
