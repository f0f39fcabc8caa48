//! The sequence-events table: one row per event a validator reported, committed before the data it concerns.
//!
//! Iceberg commits one table at a time, so the events and the data cannot share a commit.
//! The events go first, with the source offsets they cover in their snapshot summary (as the
//! data table does). If the data commit then fails or the process dies, the records are read
//! again and their events reported again; events at offsets the events table already
//! covers are dropped before the next events commit. Each event lands exactly once.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use iceberg::spec::{NestedField, PrimitiveType, Schema as IcebergSchema, Type};
use iceberg::table::Table;

use crate::config::SinkConfig;
use crate::error::{Error, Result};
use crate::sandbox::EventKind;
use crate::sink::catalog::{TableCatalog, arrow_schema};
use crate::sink::commit::{Append, CommitOutcome, append_with_offsets, new_commit_id};
use crate::sink::offsets::{PartitionOffsets, stored_offsets};
use crate::sink::state::StateFiles;
use crate::sink::writer::TableWriter;

/// Events commits re-applied after conflicts with other writers, before giving up.
const MAX_ATTEMPTS: u32 = 20;

/// One reported sequence event, located by its record's source offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub kind: EventKind,
    pub expected: i64,
    pub received: i64,
    pub missing: i64,
    /// When the host received the verdict, microseconds since the epoch.
    pub detected_at_us: i64,
}

/// The events table of one topic.
pub struct EventsTable {
    name: String,
    table: Table,
    arrow_schema: SchemaRef,
}

fn schema() -> Result<IcebergSchema> {
    let field = |id, name: &str, ty, doc: &str| NestedField::required(id, name, Type::Primitive(ty)).with_doc(doc);
    IcebergSchema::builder()
        .with_fields(vec![
            field(1, "topic", PrimitiveType::String, "Source topic.").into(),
            field(2, "partition", PrimitiveType::Int, "Source partition.").into(),
            field(3, "offset", PrimitiveType::Long, "Offset of the record the event was reported at.").into(),
            field(4, "key", PrimitiveType::String, "Sequence key, e.g. EXCHANGE:SYMBOL.").into(),
            field(5, "kind", PrimitiveType::String, "gap, duplicate, out_of_order or reset.").into(),
            field(6, "expected", PrimitiveType::Long, "The sequence number expected.").into(),
            field(7, "received", PrimitiveType::Long, "The sequence number received.").into(),
            field(8, "missing", PrimitiveType::Long, "Numbers skipped (gaps), else 0.").into(),
            field(9, "detected_at", PrimitiveType::Timestamptz, "When k2-ingest detected it.").into(),
        ])
        .build()
        .map_err(|source| Error::Iceberg {
            table: "<events>".into(),
            context: "building the events schema".into(),
            source,
        })
}

impl EventsTable {
    /// Loads the events table `name`, creating it if missing.
    pub async fn open(catalog: &TableCatalog, name: &str) -> Result<Self> {
        let table = catalog.load_or_create(name, schema()?, None).await?;
        let arrow_schema = arrow_schema(&table)?;
        Ok(Self { name: name.to_string(), table, arrow_schema })
    }

    pub fn identifier(&self) -> String {
        self.table.identifier().to_string()
    }

    /// The version of the table the next commit builds on.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Builds the next commit on `table`, a newer version (e.g. after maintenance).
    pub fn set(&mut self, table: Table) {
        self.table = table;
    }

    /// Commits `events` of `topic` not yet in the table, recording `covered` (the offsets
    /// the accompanying data commit will store). Returns the rows added.
    pub async fn commit(
        &mut self,
        catalog: &TableCatalog,
        sink: &SinkConfig,
        topic: &str,
        events: &[EventRow],
        covered: &PartitionOffsets,
    ) -> Result<u64> {
        // The offsets `covered` make a repeated commit add nothing, so each attempt may have its own id.
        let commit_id = new_commit_id();
        for _ in 0..MAX_ATTEMPTS {
            let already = stored_offsets(&self.table, topic)?;
            let fresh: Vec<&EventRow> =
                events.iter().filter(|e| already.get(&e.partition).is_none_or(|&o| e.offset >= o)).collect();
            let files = if fresh.is_empty() {
                Vec::new()
            } else {
                let mut writer = TableWriter::open(&self.table, sink).await?;
                writer.write(self.batch(topic, &fresh)?).await?;
                writer.close().await?
            };
            let states = StateFiles::new();
            let append =
                Append { topic, advanced: covered, states: &states, lost: &[], commit_id: &commit_id, topic_id: None };
            let outcome = match append_with_offsets(catalog, &self.table, files, &append).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // The caller tries again; on the table as it is now, since a base whose
                    // files maintenance expired fails however often it is tried. A repeat adds
                    // nothing the table holds (the offsets above filter it).
                    if let Ok(Some(fresh)) = catalog.load(&self.name).await {
                        self.table = fresh;
                    }
                    return Err(e);
                }
            };
            match outcome {
                CommitOutcome::Committed(table) => {
                    self.table = table;
                    return Ok(fresh.len() as u64);
                }
                CommitOutcome::Conflict => {
                    self.table = catalog.load(&self.name).await?.ok_or_else(|| Error::Topic {
                        topic: topic.to_string(),
                        message: format!("events table {} disappeared during a commit", self.name),
                    })?;
                }
            }
        }
        Err(Error::Topic {
            topic: topic.to_string(),
            message: format!(
                "{MAX_ATTEMPTS} commits in a row to events table {} conflicted with other writers",
                self.name
            ),
        })
    }

    fn batch(&self, topic: &str, events: &[&EventRow]) -> Result<RecordBatch> {
        let tz = match self.arrow_schema.field(8).data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let (mut topics, mut keys, mut kinds) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut partitions = Int32Builder::new();
        let (mut offsets, mut expected, mut received, mut missing) =
            (Int64Builder::new(), Int64Builder::new(), Int64Builder::new(), Int64Builder::new());
        let mut detected = TimestampMicrosecondBuilder::new().with_timezone_opt(tz);
        for e in events {
            topics.append_value(topic);
            partitions.append_value(e.partition);
            offsets.append_value(e.offset);
            keys.append_value(&e.key);
            kinds.append_value(e.kind.as_str());
            expected.append_value(e.expected);
            received.append_value(e.received);
            missing.append_value(e.missing);
            detected.append_value(e.detected_at_us);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(topics.finish()),
            Arc::new(partitions.finish()),
            Arc::new(offsets.finish()),
            Arc::new(keys.finish()),
            Arc::new(kinds.finish()),
            Arc::new(expected.finish()),
            Arc::new(received.finish()),
            Arc::new(missing.finish()),
            Arc::new(detected.finish()),
        ];
        RecordBatch::try_new(self.arrow_schema.clone(), columns)
            .map_err(|source| Error::Arrow { context: format!("building rows of events table {}", self.name), source })
    }
}

/// One row of an events table as read back, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredEvent {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub kind: String,
    pub expected: i64,
    pub received: i64,
    pub missing: i64,
    /// Microseconds since the epoch.
    pub detected_at_us: i64,
}

/// Every event in `table`'s current snapshot. The table holds one row per sequence event,
/// which are rare next to the records, so reading it whole is cheap.
pub async fn read_events(table: &Table) -> Result<Vec<StoredEvent>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
    use futures::TryStreamExt;

    let err = |context: &str| {
        let table = table.identifier().to_string();
        let context = context.to_string();
        move |source| Error::Iceberg { table, context, source }
    };
    if table.metadata().current_snapshot().is_none() {
        return Ok(Vec::new());
    }
    let scan = table.scan().select_all().build().map_err(err("planning a scan"))?;
    let batches: Vec<RecordBatch> =
        scan.to_arrow().await.map_err(err("scanning"))?.try_collect().await.map_err(err("reading"))?;
    let mut out = Vec::new();
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name).cloned().ok_or_else(|| Error::Topic {
                topic: table.identifier().to_string(),
                message: format!("events table has no column {name}"),
            })
        };
        let (partition, offset, key, kind) = (column("partition")?, column("offset")?, column("key")?, column("kind")?);
        let (expected, received, missing) = (column("expected")?, column("received")?, column("missing")?);
        let detected = column("detected_at")?;
        let (partition, offset) = (partition.as_primitive::<Int32Type>(), offset.as_primitive::<Int64Type>());
        let (key, kind) = (key.as_string::<i32>(), kind.as_string::<i32>());
        let expected = expected.as_primitive::<Int64Type>();
        let (received, missing) = (received.as_primitive::<Int64Type>(), missing.as_primitive::<Int64Type>());
        let detected = detected.as_primitive::<TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            out.push(StoredEvent {
                partition: partition.value(i),
                offset: offset.value(i),
                key: key.value(i).to_string(),
                kind: kind.value(i).to_string(),
                expected: expected.value(i),
                received: received.value(i),
                missing: missing.value(i),
                detected_at_us: detected.value(i),
            });
        }
    }
    Ok(out)
}
