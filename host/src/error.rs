//! Typed errors of the k2-ingest library; each message names the input that failed.

use std::path::PathBuf;

/// A fault that stops a command (or a topic). Bad records are not errors: see [`DecodeError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("schema {path}: {message}")]
    Schema { path: PathBuf, message: String },

    #[error("topic {topic}: {message}")]
    Topic { topic: String, message: String },

    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    #[error("iceberg table {table}: {context}: {source}")]
    Iceberg {
        table: String,
        context: String,
        #[source]
        source: iceberg::Error,
    },

    #[error(
        "iceberg table {table}: no snapshot from {from} back to the oldest retained one ({oldest}) was \
         committed by k2-ingest, though it has committed to this table before ({why}): the table no \
         longer records where ingestion stopped; refusing to guess, since resuming from the group's offsets \
         could write records twice; register the table's metadata from before the expiry again, or run \
         `k2-ingest truncate` to ingest the topic again from a chosen start"
    )]
    HistoryLost { table: String, from: i64, oldest: i64, why: String },

    #[error("catalog {name}: {context}: {source}")]
    Catalog {
        name: String,
        context: String,
        #[source]
        source: iceberg::Error,
    },

    #[error("arrow: {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow_schema::ArrowError,
    },

    #[error("validator module {module}: {message}")]
    Guest { module: PathBuf, message: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("listing {path}: {source}")]
    Listing {
        path: String,
        // Boxed: opendal's error is several times the size of the others.
        #[source]
        source: Box<opendal::Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one record's body could not be decoded. The record is counted and set aside;
/// the pipeline goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty body")]
    Empty,
    #[error("confluent framing: body of {len} bytes is shorter than the 5-byte header")]
    ShortFrame { len: usize },
    #[error("confluent framing: magic byte is {found:#04x}, expected 0x00")]
    BadMagic { found: u8 },
    #[error("confluent framing: schema id {id} is not mapped in the topic's schema_ids")]
    UnknownSchemaId { id: u32 },
    #[error("confluent framing: schema id {id}: {message}")]
    SchemaId { id: u32, message: String },
    #[error("avro: {0}")]
    Avro(String),
    /// The bytes at `path` (a field, `legs[2].venue`, `tags[entry 0].key`) are not a value of
    /// their schema: a length past the end, a bad index, invalid UTF-8.
    #[error("avro: {path}: {error}")]
    Datum { path: String, error: crate::decode::wire::DatumError },
    #[error("avro: {trailing} bytes left after the record")]
    TrailingBytes { trailing: usize },
    #[error("field `{field}`: {message}")]
    Field { field: String, message: String },
}
