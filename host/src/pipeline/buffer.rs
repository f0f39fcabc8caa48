//! One partition's decoded records waiting to be validated as a batch, with what their dead letters would need.

use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use rdkafka::message::OwnedHeaders;

use crate::decode::columns::ColumnsBuilder;
use crate::error::Result;
use crate::kafka::dlq::DeadLetter;
use crate::sandbox::{BatchInput, RecoveryStats, SupervisedValidator, Verdict};

/// A partition's records since its last batch: their columns, Kafka metadata and keys for the
/// validator, and — when records may be dead-lettered — their bodies and headers as read, so a
/// letter carries the record exactly as it came.
pub struct PartitionBuffer {
    partition: i32,
    columns: ColumnsBuilder,
    offsets: Vec<i64>,
    timestamps_us: Vec<i64>,
    /// Keys packed end to end; `key_ends[i]..key_ends[i + 1]` is record i's.
    keys: Vec<u8>,
    key_ends: Vec<u32>,
    /// Bodies packed like the keys, and headers; empty unless `keep_letters`.
    bodies: Vec<u8>,
    body_ends: Vec<u32>,
    headers: Vec<Option<OwnedHeaders>>,
    keep_letters: bool,
    /// The partition's validator, which lives as long as its buffer.
    pub validator: Option<SupervisedValidator>,
}

/// A validator call: its verdict (an error stops the topic), how long it took, and what
/// recovery did during it.
pub struct Validated {
    pub verdict: Result<Verdict>,
    pub took: Duration,
    pub recovery: RecoveryStats,
}

/// A Kafka message as the buffer keeps it.
pub struct Record<'m> {
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'m [u8]>,
    pub body: Option<&'m [u8]>,
    pub headers: Option<OwnedHeaders>,
}

impl PartitionBuffer {
    pub fn new(
        partition: i32,
        columns: ColumnsBuilder,
        validator: Option<SupervisedValidator>,
        keep_letters: bool,
    ) -> Self {
        Self {
            partition,
            columns,
            offsets: Vec::new(),
            timestamps_us: Vec::new(),
            keys: Vec::new(),
            key_ends: vec![0],
            bodies: Vec::new(),
            body_ends: vec![0],
            headers: Vec::new(),
            keep_letters,
            validator,
        }
    }

    /// Where the decoder writes a record's fields; [`PartitionBuffer::push`] then keeps the rest.
    pub fn columns(&mut self) -> &mut ColumnsBuilder {
        &mut self.columns
    }

    /// Replaces the columns builder (the table's schema changed); the buffer must be empty.
    pub fn set_columns(&mut self, columns: ColumnsBuilder) {
        debug_assert!(self.is_empty(), "batches are flushed before the schema changes");
        self.columns = columns;
    }

    /// Keeps a record whose fields were just decoded into [`PartitionBuffer::columns`].
    pub fn push(&mut self, record: Record<'_>) {
        self.offsets.push(record.offset);
        self.timestamps_us.push(record.timestamp_ms.map_or(0, |ms| ms.saturating_mul(1000)));
        self.keys.extend_from_slice(record.key.unwrap_or_default());
        self.key_ends.push(self.keys.len() as u32);
        if self.keep_letters {
            // Headers are only read (and copied) when a record may need them as a letter.
            self.bodies.extend_from_slice(record.body.unwrap_or_default());
            self.body_ends.push(self.bodies.len() as u32);
            self.headers.push(record.headers);
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn offsets(&self) -> &[i64] {
        &self.offsets
    }

    /// Finishes the columns of the records buffered as one Arrow batch.
    pub fn finish_columns(&mut self) -> Result<RecordBatch> {
        self.columns.finish()
    }

    /// Calls the partition's validator on the buffered records, whose columns are `records`;
    /// `None` without a validator.
    pub async fn validate(
        &mut self,
        topic: &str,
        records: &RecordBatch,
        fields: &[usize],
        now_micros: i64,
    ) -> Option<Validated> {
        let validator = self.validator.as_mut()?;
        let input = BatchInput {
            topic,
            partition: self.partition,
            records,
            fields,
            offsets: &self.offsets,
            timestamps_us: &self.timestamps_us,
            key_data: &self.keys,
            key_offsets: &self.key_ends,
            now_micros,
        };
        let called = Instant::now();
        let verdict = validator.validate(&input).await;
        Some(Validated { verdict, took: called.elapsed(), recovery: validator.take_recovery() })
    }

    /// The dead letter of buffered record `index`, as it was read.
    pub fn letter<'a>(&'a self, index: usize, code: &'a str, message: &'a str) -> DeadLetter<'a> {
        let key = &self.keys[self.key_ends[index] as usize..self.key_ends[index + 1] as usize];
        let (body, headers) = match self.keep_letters {
            true => (
                Some(&self.bodies[self.body_ends[index] as usize..self.body_ends[index + 1] as usize]),
                self.headers[index].as_ref(),
            ),
            false => (None, None),
        };
        DeadLetter {
            partition: self.partition,
            offset: self.offsets[index],
            timestamp_ms: Some(self.timestamps_us[index] / 1000).filter(|&t| t > 0),
            key: Some(key).filter(|k| !k.is_empty()),
            payload: body,
            headers,
            code,
            message,
        }
    }

    /// Empties the buffer for the next batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.offsets.clear();
        self.timestamps_us.clear();
        self.keys.clear();
        self.key_ends.truncate(1);
        self.bodies.clear();
        self.body_ends.truncate(1);
        self.headers.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, Schema};
    use rdkafka::message::{Header, Headers};

    use super::*;

    fn buffer(keep_letters: bool) -> PartitionBuffer {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let columns = ColumnsBuilder::new(schema, &[], "db.t").unwrap();
        PartitionBuffer::new(3, columns, None, keep_letters)
    }

    fn record<'m>(offset: i64, key: &'m [u8], body: &'m [u8], header: &str) -> Record<'m> {
        let headers = OwnedHeaders::new().insert(Header { key: header, value: Some("v") });
        Record {
            offset,
            timestamp_ms: Some(1_700_000_000_000 + offset),
            key: Some(key),
            body: Some(body),
            headers: Some(headers),
        }
    }

    #[test]
    fn a_letter_carries_its_record_as_read() {
        let mut b = buffer(true);
        b.push(record(10, b"k1", b"body-one", "h1"));
        b.push(record(11, b"", b"two", "h2"));
        let l = b.letter(1, "price", "not positive");
        assert_eq!((l.partition, l.offset, l.timestamp_ms), (3, 11, Some(1_700_000_000_011)));
        assert_eq!((l.key, l.payload), (None, Some(&b"two"[..])), "an empty key is no key");
        assert_eq!(l.headers.unwrap().get(0).key, "h2");
        assert_eq!(b.letter(0, "c", "m").key, Some(&b"k1"[..]));
    }

    #[test]
    fn without_dead_letters_bodies_and_headers_are_not_kept() {
        let mut b = buffer(false);
        b.push(record(0, b"k", b"body", "h"));
        let l = b.letter(0, "c", "m");
        assert_eq!((l.payload, l.headers.is_none(), l.key), (None, true, Some(&b"k"[..])));
    }

    #[test]
    fn clear_starts_the_next_batch_afresh() {
        let mut b = buffer(true);
        b.push(record(0, b"k", b"body", "h"));
        b.clear();
        assert!(b.is_empty());
        b.push(record(1, b"kk", b"b2", "h"));
        assert_eq!(b.letter(0, "c", "m").payload, Some(&b"b2"[..]));
        assert_eq!(b.offsets(), [1]);
    }
}
