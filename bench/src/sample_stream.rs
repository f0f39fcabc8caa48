//! Generated market data decoded into the table's Arrow schema, as the pipeline holds a partition's records.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use arrow_array::RecordBatch;
use k2_ingest::config::TopicConfig;
use k2_ingest::decode::avro::TopicDecoder;
use k2_ingest::decode::columns::{ColumnsBuilder, KafkaMeta};
use k2_ingest::sandbox::BatchInput;
use k2_ingest::schema::mapping::{field_columns, iceberg_schema, record_fields};
use k2_sample::{Injected, SampleGenerator, SampleKind, SamplePlan};
use serde_json::json;

/// Exchange timestamp of the first record (2023-11-14), so every run sees the same data.
const START_MICROS: i64 = 1_700_000_000_000_000;
/// The generator spaces records one millisecond apart.
const RECORD_SPACING_MICROS: i64 = 1_000;

/// One partition's decoded records with the Kafka metadata the pipeline keeps beside them.
pub struct SampleStream {
    pub topic: String,
    /// Every decoded record, in the table's schema (Kafka metadata columns included).
    pub records: RecordBatch,
    /// Columns of `records` that are Avro fields: what a validator is handed.
    pub fields: Vec<usize>,
    pub offsets: Vec<i64>,
    pub timestamps_us: Vec<i64>,
    /// Kafka keys packed: key `i` is `key_data[key_offsets[i]..key_offsets[i + 1]]`.
    pub key_data: Vec<u8>,
    pub key_offsets: Vec<u32>,
    /// The wall clock handed to validators: just after the last record, so none is in the future.
    pub now_micros: i64,
    /// What the generator injected, by kind.
    pub injected: Injected,
}

/// Anomalies injected per this many records, by kind, and malformed bodies per `MALFORMED_EVERY`:
/// mostly valid data, as a healthy feed is, with enough anomalies that the error paths run.
const ANOMALY_EVERY: usize = 2_000;
const MALFORMED_EVERY: usize = 5_000;

impl SampleStream {
    /// Generates `records` decodable records over `symbols` symbols (plus a few malformed bodies,
    /// which are set aside as the pipeline does) with `k2_ingest::sample`, and decodes them
    /// with the pipeline's decoder and column builder into one partition's record batch.
    pub fn generate(topic: &str, schema: &Path, records: usize, symbols: usize, seed: u64) -> anyhow::Result<Self> {
        // Through serde, as a config file would give it, so every other key keeps its default.
        let config: TopicConfig = serde_json::from_value(json!({ "name": topic, "schema": schema }))
            .with_context(|| format!("topic {topic}: building its config"))?;
        let mut decoder = TopicDecoder::new(&config, k2_ingest::schema::mapping::load_avsc(schema)?)?;
        let avro_fields: Vec<String> = record_fields(decoder.table_schema()).iter().map(|f| f.name.clone()).collect();
        // The pipeline takes the Arrow schema from the table; a new table's comes from this.
        let table_schema = iceberg_schema(decoder.table_schema(), schema, true)?;
        let arrow_schema = Arc::new(
            iceberg::arrow::schema_to_arrow_schema(&table_schema)
                .with_context(|| format!("topic {topic}: converting the table schema to arrow"))?,
        );
        let fields = field_columns(&arrow_schema, &avro_fields);
        let Some(kind) = SampleKind::of_schema(decoder.table_schema()) else {
            bail!("{}: the sample generator knows only the Trade and Quote schemas", schema.display());
        };

        let malformed = records / MALFORMED_EVERY;
        let plan = SamplePlan {
            count: records + malformed,
            symbols,
            seed,
            gaps: records / ANOMALY_EVERY,
            duplicates: records / ANOMALY_EVERY,
            malformed,
            invalid: records / ANOMALY_EVERY,
            out_of_order: 0,
            resets: 0,
            start_micros: START_MICROS,
        };
        let table_schema = decoder.table_schema().clone();
        let generator = SampleGenerator::new(plan.clone(), kind, &table_schema).map_err(anyhow::Error::msg)?;
        let injected = generator.injected();

        let mut columns = ColumnsBuilder::new(arrow_schema, &avro_fields, topic)?;
        let mut offsets = Vec::with_capacity(records);
        let mut timestamps_us = Vec::with_capacity(records);
        let mut key_data = Vec::new();
        let mut key_offsets = Vec::with_capacity(records + 1);
        key_offsets.push(0);
        for (offset, message) in generator.enumerate() {
            // As if produced when it happened: the Kafka timestamp is the exchange time, in ms.
            let timestamp_ms = (START_MICROS + offset as i64 * RECORD_SPACING_MICROS) / 1_000;
            let meta = KafkaMeta { partition: 0, offset: offset as i64, timestamp_ms: Some(timestamp_ms) };
            // As the pipeline's `accept_message` does: an undecodable body is set aside.
            if decoder.decode_into(&message.body, &mut columns, meta).is_ok() {
                offsets.push(meta.offset);
                timestamps_us.push(timestamp_ms * 1_000);
                key_data.extend_from_slice(message.key.as_bytes());
                key_offsets.push(key_data.len() as u32);
            }
        }
        let batch = columns.finish()?;
        if batch.num_rows() != records {
            bail!("topic {topic}: {} of {records} generated records decoded", batch.num_rows());
        }
        Ok(SampleStream {
            topic: topic.to_string(),
            records: batch,
            fields,
            offsets,
            timestamps_us,
            key_data,
            key_offsets,
            now_micros: START_MICROS + plan.count as i64 * RECORD_SPACING_MICROS + 1_000_000,
            injected,
        })
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// The records `range` as one batch, zero-copy: Arrow slices share the stream's buffers,
    /// and the layout code reads a slice exactly as it reads a batch the pipeline built.
    pub fn batch(&self, range: Range<usize>) -> StreamBatch {
        let base = self.key_offsets[range.start];
        StreamBatch {
            records: self.records.slice(range.start, range.len()),
            key_offsets: self.key_offsets[range.start..=range.end].iter().map(|&o| o - base).collect(),
            range,
        }
    }

    /// The host's view of `batch`, as `process_batch` hands it to a validator instance.
    pub fn input<'a>(&'a self, batch: &'a StreamBatch) -> BatchInput<'a> {
        let range = batch.range.clone();
        BatchInput {
            topic: &self.topic,
            partition: 0,
            records: &batch.records,
            fields: &self.fields,
            offsets: &self.offsets[range.clone()],
            timestamps_us: &self.timestamps_us[range.clone()],
            key_data: self.keys_of(range),
            key_offsets: &batch.key_offsets,
            now_micros: self.now_micros,
        }
    }

    /// The packed key bytes of the records `range`.
    pub fn keys_of(&self, range: Range<usize>) -> &[u8] {
        &self.key_data[self.key_offsets[range.start] as usize..self.key_offsets[range.end] as usize]
    }
}

/// A batch of consecutive records of a stream, prepared (outside the timing) for the host.
pub struct StreamBatch {
    pub range: Range<usize>,
    pub records: RecordBatch,
    /// The batch's key offsets, starting at 0 as the pipeline's do.
    pub key_offsets: Vec<u32>,
}
