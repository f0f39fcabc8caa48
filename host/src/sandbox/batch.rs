//! Lays an Arrow record batch out as the WIT `batch`: one buffer per column, not per value.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use crate::sandbox::bindings::wit;

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

/// Conversion buffers for the columns whose Arrow layout differs from the WIT one (narrower
/// numbers, 64-bit or offset-shifted string offsets, validity bitmaps). Kept across calls, so
/// after the first batch laying one out allocates nothing; every other buffer (64-bit
/// numbers, string bytes) goes to the guest straight from the Arrow arrays, and the Kafka
/// metadata straight from the pipeline's vectors, copied once by the lowering into guest
/// memory. Only what the validator reads is laid out at all.
#[derive(Debug)]
pub(crate) struct Layout {
    slots: Vec<Slot>,
    /// What the validator asked for; a field list of `None` means every field.
    reads: wit::Reads,
    /// The input fields the validator reads, worked out again only when the schema or the
    /// input's field list changes.
    chosen: Vec<usize>,
    chosen_for: Option<(SchemaRef, Vec<usize>)>,
}

/// One column's conversion buffers.
#[derive(Debug, Default)]
struct Slot {
    ints: Vec<i64>,
    floats: Vec<f64>,
    bools: Vec<bool>,
    offsets: Vec<u32>,
    nulls: Vec<u8>,
    has_nulls: bool,
}

impl Layout {
    /// A layout of what a validator reads.
    pub(crate) fn new(reads: wit::Reads) -> Self {
        Self { slots: Vec::new(), reads, chosen: Vec::new(), chosen_for: None }
    }

    /// Lays `input` out as the WIT batch, borrowing from `input` and these buffers.
    pub(crate) fn lay_out<'a>(
        &'a mut self,
        input: &'a BatchInput<'a>,
        columns: &'a mut Vec<wit::Column<'a>>,
    ) -> Result<wit::Batch<'a>, String> {
        // Every column must have a value per record, or the guest would index past a column.
        if input.records.num_rows() != input.len() {
            return Err(format!(
                "batch has {} rows but {} kafka offsets (partition {})",
                input.records.num_rows(),
                input.len(),
                input.partition
            ));
        }
        let schema = input.records.schema_ref();
        self.choose(schema, input.fields);
        if self.slots.len() < self.chosen.len() {
            self.slots.resize_with(self.chosen.len(), Slot::default);
        }
        // First every conversion (needs the buffers mutably), then the views (borrow them).
        for (slot, &i) in self.slots.iter_mut().zip(&self.chosen) {
            let array = input.records.column(i);
            if !slot.convert(array.as_ref()) {
                let field = schema.field(i);
                return Err(format!(
                    "column `{}` of arrow type {} cannot be handed to a validator yet",
                    field.name(),
                    field.data_type()
                ));
            }
        }
        columns.clear();
        for (slot, &i) in self.slots.iter().zip(&self.chosen) {
            let array = input.records.column(i);
            columns.push(wit::Column {
                name: schema.field(i).name(),
                data: slot.view(array.as_ref()),
                nulls: slot.has_nulls.then_some(slot.nulls.as_slice()),
            });
        }
        let kafka = self.reads.kafka;
        let keys = if kafka.contains(wit::KafkaMetadata::KEYS) {
            wit::Packed { data: input.key_data, offsets: input.key_offsets }
        } else {
            wit::Packed { data: &[], offsets: &[] }
        };
        Ok(wit::Batch {
            topic: input.topic,
            partition: input.partition,
            records: u32::try_from(input.len())
                .map_err(|_| format!("batch of {} records is too large", input.len()))?,
            offsets: if kafka.contains(wit::KafkaMetadata::OFFSETS) { input.offsets } else { &[] },
            timestamps: if kafka.contains(wit::KafkaMetadata::TIMESTAMPS) { input.timestamps_us } else { &[] },
            keys,
            columns: columns.as_slice(),
            now_micros: input.now_micros,
        })
    }

    /// Picks the input fields the validator reads, unless `schema` and `fields` are the last ones seen.
    fn choose(&mut self, schema: &SchemaRef, fields: &[usize]) {
        if self.chosen_for.as_ref().is_some_and(|(s, f)| Arc::ptr_eq(s, schema) && f == fields) {
            return;
        }
        let wanted = |i: usize| match &self.reads.fields {
            None => true,
            Some(names) => names.iter().any(|n| n == schema.field(i).name()),
        };
        self.chosen = fields.iter().copied().filter(|&i| wanted(i)).collect();
        self.chosen_for = Some((schema.clone(), fields.to_vec()));
    }
}

impl Slot {
    /// Fills the buffers `array` needs; false if its type has no WIT layout.
    fn convert(&mut self, array: &dyn Array) -> bool {
        let (ints, floats, offsets) = (&mut self.ints, &mut self.floats, &mut self.offsets);
        match array.data_type() {
            DataType::Boolean => refill(&mut self.bools, array.as_boolean().values().iter()),
            DataType::Int32 => refill(ints, array.as_primitive::<Int32Type>().values().iter().map(|&v| v as i64)),
            DataType::Date32 => refill(ints, array.as_primitive::<Date32Type>().values().iter().map(|&v| v as i64)),
            DataType::Float32 => refill(floats, array.as_primitive::<Float32Type>().values().iter().map(|&v| v as f64)),
            DataType::Utf8 => rebase(offsets, array.as_string::<i32>().value_offsets().iter().map(|&o| o as usize)),
            DataType::LargeBinary => {
                rebase(offsets, array.as_binary::<i64>().value_offsets().iter().map(|&o| o as usize))
            }
            DataType::FixedSizeBinary(w) => {
                let w = *w as usize;
                refill(offsets, (0..=array.len()).map(|i| (i * w) as u32))
            }
            // Precision up to 18 always fits an i64 unscaled value.
            DataType::Decimal128(p, s) if *p <= 18 && *s >= 0 => {
                refill(ints, array.as_primitive::<Decimal128Type>().values().iter().map(|&v| v as i64))
            }
            DataType::Int64 | DataType::Float64 => {}
            DataType::Timestamp(TimeUnit::Microsecond, _) | DataType::Time64(TimeUnit::Microsecond) => {}
            _ => return false,
        }
        self.has_nulls = fill_validity(&mut self.nulls, array);
        true
    }

    /// The column's values: straight from `array`, or from the buffers `convert` filled.
    fn view<'a>(&'a self, array: &'a dyn Array) -> wit::ColumnData<'a> {
        use wit::ColumnData as C;
        match array.data_type() {
            DataType::Boolean => C::Boolean(&self.bools),
            DataType::Int32 | DataType::Date32 => C::Int64(&self.ints),
            DataType::Int64 => C::Int64(array.as_primitive::<Int64Type>().values()),
            DataType::Timestamp(..) => C::Int64(array.as_primitive::<TimestampMicrosecondType>().values()),
            DataType::Time64(_) => C::Int64(array.as_primitive::<Time64MicrosecondType>().values()),
            DataType::Float32 => C::Float64(&self.floats),
            DataType::Float64 => C::Float64(array.as_primitive::<Float64Type>().values()),
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                C::Utf8(wit::Packed {
                    data: value_bytes(a.value_data(), a.value_offsets()[0] as usize, &self.offsets),
                    offsets: &self.offsets,
                })
            }
            DataType::LargeBinary => {
                let a = array.as_binary::<i64>();
                C::Binary(wit::Packed {
                    data: value_bytes(a.value_data(), a.value_offsets()[0] as usize, &self.offsets),
                    offsets: &self.offsets,
                })
            }
            DataType::FixedSizeBinary(w) => {
                let a = array.as_fixed_size_binary();
                let start = a.value_offset(0).max(0) as usize;
                C::Binary(wit::Packed {
                    data: &a.value_data()[start..start + a.len() * *w as usize],
                    offsets: &self.offsets,
                })
            }
            DataType::Decimal128(_, s) => C::Decimal(wit::DecimalColumn { scale: *s as u8, unscaled: &self.ints }),
            other => unreachable!("convert refused {other}"),
        }
    }
}

fn refill<T>(buf: &mut Vec<T>, values: impl Iterator<Item = T>) {
    buf.clear();
    buf.extend(values);
}

/// Offsets rebased to start at 0, as the WIT `packed` has them (a sliced Arrow array's do not).
fn rebase(buf: &mut Vec<u32>, offsets: impl Iterator<Item = usize> + Clone) {
    let first = offsets.clone().next().unwrap_or(0);
    refill(buf, offsets.map(|o| (o - first) as u32));
}

/// The bytes the rebased `offsets` index, starting at the array's first offset.
fn value_bytes<'a>(data: &'a [u8], first: usize, offsets: &[u32]) -> &'a [u8] {
    &data[first..first + offsets.last().copied().unwrap_or(0) as usize]
}

/// The validity bitmap as LSB-first bytes into `bits`; false when nothing is null.
fn fill_validity(bits: &mut Vec<u8>, array: &dyn Array) -> bool {
    let Some(nulls) = array.logical_nulls().filter(|n| n.null_count() > 0) else { return false };
    bits.clear();
    bits.resize(array.len().div_ceil(8), 0);
    for (i, valid) in nulls.iter().enumerate() {
        if valid {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Decimal128Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    fn input<'a>(records: &'a RecordBatch, fields: &'a [usize], offsets: &'a [i64]) -> BatchInput<'a> {
        BatchInput {
            topic: "t",
            partition: 1,
            records,
            fields,
            offsets,
            timestamps_us: offsets,
            key_data: b"",
            key_offsets: &[0, 0, 0],
            now_micros: 9,
        }
    }

    #[test]
    fn lays_out_only_what_is_read_and_picks_again_for_a_new_schema() {
        let reads = wit::Reads { fields: Some(vec!["price".into()]), kafka: wit::KafkaMetadata::KEYS };
        let mut layout = Layout::new(reads);
        let first = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("symbol", DataType::Utf8, false),
                Field::new("price", DataType::Decimal128(18, 2), false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["A", "B"])),
                Arc::new(Decimal128Array::from(vec![1, 2]).with_precision_and_scale(18, 2).unwrap()),
            ],
        )
        .unwrap();
        let (mut columns, first_input) = (Vec::new(), input(&first, &[0, 1], &[5, 6]));
        let batch = layout.lay_out(&first_input, &mut columns).unwrap();
        assert_eq!(batch.columns.len(), 1);
        assert!(matches!(&batch.columns[0].data, wit::ColumnData::Decimal(d) if d.unscaled == [1, 2]));
        assert_eq!(
            (batch.records, batch.offsets.len(), batch.timestamps.len(), batch.keys.offsets.len()),
            (2, 0, 0, 3)
        );

        // Another schema (price now first, and an integer): the same slot holds another type.
        let second = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("price", DataType::Int32, false),
                Field::new("symbol", DataType::Utf8, false),
            ])),
            vec![Arc::new(arrow_array::Int32Array::from(vec![7, 8])), Arc::new(StringArray::from(vec!["A", "B"]))],
        )
        .unwrap();
        let (mut columns, second_input) = (Vec::new(), input(&second, &[0, 1], &[5, 6]));
        let batch = layout.lay_out(&second_input, &mut columns).unwrap();
        assert_eq!(batch.columns.len(), 1);
        assert!(matches!(&batch.columns[0].data, wit::ColumnData::Int64(v) if *v == [7, 8]));

        let (mut columns, short_input) = (Vec::new(), input(&second, &[0, 1], &[5]));
        let err = layout.lay_out(&short_input, &mut columns).err().unwrap();
        assert_eq!(err, "batch has 2 rows but 1 kafka offsets (partition 1)");
    }

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
        let everything = wit::Reads { fields: None, kafka: wit::KafkaMetadata::all() };
        let (mut layout, mut columns) = (Layout::new(everything), Vec::new());
        let batch = layout.lay_out(&input, &mut columns).unwrap();
        assert_eq!(batch.columns.len(), 2);
        match &batch.columns[0].data {
            wit::ColumnData::Utf8(p) => {
                assert_eq!(p.data, b"AAPLMSFT");
                assert_eq!(p.offsets, [0, 4, 4, 8]);
            }
            _ => panic!("symbol should be utf8"),
        }
        assert_eq!(batch.columns[0].nulls, Some(&[0b101u8][..]));
        match &batch.columns[1].data {
            wit::ColumnData::Decimal(d) => assert_eq!((d.scale, d.unscaled), (8, &[1i64, 2, 3][..])),
            _ => panic!("price should be decimal"),
        }
        assert_eq!(batch.columns[1].nulls, None);
    }
}
