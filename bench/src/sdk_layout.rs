//! Lays a stream batch out as the validator SDK's `Batch`, in the layout the host hands a component.
//!
//! This is the native twin of the host's Arrow-to-WIT conversion (`host/src/guest/batch.rs`):
//! one buffer per column, strings packed with offsets rebased to 0, decimals as unscaled i64,
//! a validity bitmap only when a value is null. It holds every column and all Kafka metadata,
//! not only what the validator `reads`: the native logic looks columns up by name, so the rest
//! costs it nothing. The native path gets its batches built outside the timing; the WebAssembly
//! path pays for the host's conversion inside it, as the pipeline does.

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, GenericStringArray, OffsetSizeTrait, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use k2_validator_sdk::{Batch, ColumnData, Decimals, NamedColumn, Packed};

use crate::sample_stream::{SampleStream, StreamBatch};

/// The SDK batch of `batch`, a batch of `stream`.
pub fn sdk_batch(stream: &SampleStream, batch: &StreamBatch) -> anyhow::Result<Batch> {
    let range = batch.range.clone();
    Ok(Batch {
        topic: stream.topic.clone(),
        partition: 0,
        records: range.len() as u32,
        offsets: stream.offsets[range.clone()].to_vec(),
        timestamps: stream.timestamps_us[range.clone()].to_vec(),
        keys: Packed { data: stream.keys_of(range).to_vec(), offsets: batch.key_offsets.clone() },
        columns: columns(&batch.records, &stream.fields)?,
        now_micros: stream.now_micros,
    })
}

fn columns(records: &RecordBatch, fields: &[usize]) -> anyhow::Result<Vec<NamedColumn>> {
    let schema = records.schema();
    fields
        .iter()
        .map(|&i| {
            let field = schema.field(i);
            let array = records.column(i).as_ref();
            let data = column_data(array).ok_or_else(|| {
                anyhow::anyhow!(
                    "column `{}`: arrow type {} is not laid out by the benchmark",
                    field.name(),
                    field.data_type()
                )
            })?;
            Ok(NamedColumn { name: field.name().clone(), data, nulls: validity(array) })
        })
        .collect()
}

/// The column's values in the WIT variant the host uses for its Arrow type; `None` for a type
/// the market-data schemas do not have.
fn column_data(array: &dyn Array) -> Option<ColumnData> {
    Some(match array.data_type() {
        DataType::Boolean => ColumnData::Boolean(array.as_boolean().iter().map(|v| v.unwrap_or(false)).collect()),
        DataType::Int32 => {
            ColumnData::Int64(array.as_primitive::<Int32Type>().values().iter().map(|&v| v.into()).collect())
        }
        DataType::Int64 => ColumnData::Int64(array.as_primitive::<Int64Type>().values().to_vec()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            ColumnData::Int64(array.as_primitive::<TimestampMicrosecondType>().values().to_vec())
        }
        DataType::Float32 => {
            ColumnData::Float64(array.as_primitive::<Float32Type>().values().iter().map(|&v| v.into()).collect())
        }
        DataType::Float64 => ColumnData::Float64(array.as_primitive::<Float64Type>().values().to_vec()),
        DataType::Utf8 => ColumnData::Utf8(packed_strings(array.as_string::<i32>())),
        DataType::Decimal128(precision, scale) if *precision <= 18 && *scale >= 0 => {
            ColumnData::Decimal(Decimals {
                scale: *scale as u8,
                // Precision 18 bounds the unscaled value by 10^18 < 2^63.
                unscaled: array.as_primitive::<Decimal128Type>().values().iter().map(|&v| v as i64).collect(),
            })
        }
        _ => return None,
    })
}

/// The values' bytes, from the first value's start to the last one's end, with offsets rebased to 0.
fn packed_strings<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> Packed {
    let offsets = array.value_offsets();
    let first = offsets.first().map_or(0, |o| o.as_usize());
    let last = offsets.last().map_or(0, |o| o.as_usize());
    Packed {
        data: array.value_data()[first..last].to_vec(),
        offsets: offsets.iter().map(|o| (o.as_usize() - first) as u32).collect(),
    }
}

/// Least-significant-bit-first validity bytes, or `None` when no value is null.
fn validity(array: &dyn Array) -> Option<Vec<u8>> {
    let nulls = array.logical_nulls().filter(|n| n.null_count() > 0)?;
    let mut bits = vec![0u8; array.len().div_ceil(8)];
    for i in (0..array.len()).filter(|&i| nulls.is_valid(i)) {
        bits[i / 8] |= 1 << (i % 8);
    }
    Some(bits)
}
