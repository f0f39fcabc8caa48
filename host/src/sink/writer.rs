//! An open Parquet data-file writer for one table, kept across batches until a commit.

use arrow_array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat, Struct};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression as ParquetCompression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::config::{Compression, SinkConfig};
use crate::error::{Error, Result};
use crate::schema::mapping::{META_OFFSET, META_TIMESTAMP};

type Writer = DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;
type Builder = DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Batches queued for the encoding thread before `write` waits: enough to ride out a row-group
/// flush, small enough that memory stays bounded (a batch is one validator batch of rows).
const QUEUED_BATCHES: usize = 8;

enum Job {
    Write(RecordBatch),
    /// Finish the files and hand them back; without it a closed queue just abandons them.
    Close,
}

/// Writes record batches into data files of one table; `close` hands back the files to commit.
///
/// Parquet encoding and compression run on a thread of their own, fed through a bounded queue,
/// so they overlap with Kafka consumption, decoding and validation on the caller's thread.
/// The thread drives iceberg's async writer with the runtime's handle (file IO, timers).
pub struct TableWriter {
    table_name: String,
    jobs: Option<tokio::sync::mpsc::Sender<Job>>,
    done: Option<tokio::sync::oneshot::Receiver<Result<Vec<DataFile>>>>,
    rows: u64,
    bytes: u64,
}

impl TableWriter {
    /// Opens a writer whose files get a fresh unique prefix, so a file name never repeats
    /// across commits, restarts or instances (the append skips its duplicate check).
    pub async fn open(table: &Table, sink: &SinkConfig) -> Result<Self> {
        Self::open_with_schema(table, table.metadata().current_schema().clone(), sink).await
    }

    /// Opens a writer for batches built in `schema`, one of the table's schemas though maybe
    /// not its current one: another instance may have evolved the table since this one built
    /// its columns, and Parquet pairs a schema's fields with a batch's columns by position.
    /// Data files of an older schema are valid Iceberg (readers project by field id).
    pub async fn open_with_schema(table: &Table, schema: iceberg::spec::SchemaRef, sink: &SinkConfig) -> Result<Self> {
        let table_name = table.identifier().to_string();
        let err = |context: &str, source| Error::Iceberg { table: table_name.clone(), context: context.into(), source };
        let compression = match sink.compression {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        };
        let props = writer_properties(compression);
        let parquet = ParquetWriterBuilder::new(props, schema.clone());
        let locations = DefaultLocationGenerator::new(table.metadata()).map_err(|e| err("locating data files", e))?;
        let names =
            DefaultFileNameGenerator::new(format!("k2-{}", uuid::Uuid::now_v7()), None, DataFileFormat::Parquet);
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            sink.target_file_size_bytes,
            table.file_io().clone(),
            locations,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = table.metadata().default_partition_spec();
        let inner = if spec.is_unpartitioned() {
            Files::Single(builder.build(None).await.map_err(|e| err("opening a data file writer", e))?)
        } else {
            let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec.clone())
                .map_err(|e| err("preparing the partition splitter", e))?;
            Files::Partitioned(Fanout {
                builder,
                splitter,
                open: Vec::new(),
                cap: sink.max_open_writers.max(1),
                closed: Vec::new(),
            })
        };
        let (jobs, queue) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        let (finished, done) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        let name = table_name.clone();
        std::thread::Builder::new()
            .name("k2-parquet".into())
            .spawn(move || {
                let outcome = encode(inner, queue, &runtime, &name);
                let _ = finished.send(outcome);
            })
            .map_err(|e| Error::Io {
                context: format!("starting the parquet writer thread of {table_name}"),
                source: e,
            })?;
        Ok(Self { table_name, jobs: Some(jobs), done: Some(done), rows: 0, bytes: 0 })
    }

    /// Queues accepted records for the encoding thread; an error the thread met on an earlier
    /// batch comes back here (or from `close`).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.bytes += batch.get_array_memory_size() as u64;
        let jobs = self.jobs.as_ref().expect("writer used after close");
        if jobs.send(Job::Write(batch)).await.is_err() {
            // The thread stopped: it says why.
            return Err(self.outcome().await.err().unwrap_or_else(|| self.stopped()));
        }
        Ok(())
    }

    /// Rows written since open.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// In-memory (Arrow) bytes written since open: the commit trigger's measure.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Finishes every open file and returns them, ready to commit.
    pub async fn close(mut self) -> Result<Vec<DataFile>> {
        let jobs = self.jobs.take().expect("writer closed twice");
        if self.rows == 0 {
            // Nothing was written: no file was opened, and none should be committed. Dropping
            // the queue ends the thread.
            return Ok(Vec::new());
        }
        // A failed send means the thread already stopped; its outcome says why.
        let _ = jobs.send(Job::Close).await;
        drop(jobs);
        self.outcome().await
    }

    async fn outcome(&mut self) -> Result<Vec<DataFile>> {
        let done = self.done.take().ok_or_else(|| self.stopped())?;
        done.await.unwrap_or_else(|_| Err(self.stopped()))
    }

    fn stopped(&self) -> Error {
        Error::Topic {
            topic: self.table_name.clone(),
            message: "the parquet writer thread stopped without an outcome (it panicked)".into(),
        }
    }
}

/// Where the encoding thread writes: one writer, or one per partition of a partitioned table.
enum Files {
    Single(Writer),
    Partitioned(Fanout),
}

/// Writers of a partitioned table, one per partition value met, at most `cap` open at once:
/// past it the least recently written one is closed, and its files wait for the commit with
/// the others. A batch spanning many partitions (a backfill of a day-partitioned table) would
/// otherwise hold a row group's worth of memory per partition.
struct Fanout {
    builder: Builder,
    splitter: RecordBatchPartitionSplitter,
    /// Open writers by partition value, least recently written first.
    open: Vec<(Struct, Writer)>,
    cap: usize,
    closed: Vec<DataFile>,
}

impl Files {
    async fn write(&mut self, batch: RecordBatch) -> iceberg::Result<()> {
        match self {
            Files::Single(w) => w.write(batch).await,
            Files::Partitioned(f) => f.write(batch).await,
        }
    }

    async fn close(self) -> iceberg::Result<Vec<DataFile>> {
        match self {
            Files::Single(mut w) => w.close().await,
            Files::Partitioned(mut f) => {
                for (_, mut w) in f.open.drain(..) {
                    f.closed.extend(w.close().await?);
                }
                Ok(f.closed)
            }
        }
    }
}

impl Fanout {
    async fn write(&mut self, batch: RecordBatch) -> iceberg::Result<()> {
        for (key, rows) in self.splitter.split(&batch)? {
            let at = match self.open.iter().position(|(k, _)| k == key.data()) {
                Some(at) => at,
                None => {
                    if self.open.len() >= self.cap {
                        let (_, mut oldest) = self.open.remove(0);
                        self.closed.extend(oldest.close().await?);
                    }
                    let data = key.data().clone();
                    self.open.push((data, self.builder.build(Some(key)).await?));
                    self.open.len() - 1
                }
            };
            // Most recently written last: a linear scan is fine for the few dozen writers the cap allows.
            let entry = self.open.remove(at);
            self.open.push(entry);
            self.open.last_mut().expect("pushed above").1.write(rows).await?;
        }
        Ok(())
    }
}

/// The encoding thread's loop: writes every queued batch, then closes the files if asked to.
fn encode(
    mut writer: Files,
    mut queue: tokio::sync::mpsc::Receiver<Job>,
    runtime: &tokio::runtime::Handle,
    table: &str,
) -> Result<Vec<DataFile>> {
    let err = |context: &str, source| Error::Iceberg { table: table.to_string(), context: context.into(), source };
    while let Some(job) = queue.blocking_recv() {
        match job {
            Job::Write(batch) => {
                runtime.block_on(writer.write(batch)).map_err(|e| err("writing a data file", e))?;
            }
            Job::Close => return runtime.block_on(writer.close()).map_err(|e| err("closing data files", e)),
        }
    }
    // Dropped without `close`: the records are abandoned (they are read again from Kafka).
    Ok(Vec::new())
}

/// Parquet settings of our data files. The Kafka offset and timestamp columns rise with every
/// record: a dictionary never pays off for them (the writer builds one until it overflows, a
/// sizeable share of the encoding time), while delta encoding stores them in a few bits each.
fn writer_properties(compression: ParquetCompression) -> WriterProperties {
    let mut props = WriterProperties::builder().set_compression(compression);
    for column in [META_OFFSET, META_TIMESTAMP] {
        let path = ColumnPath::from(column);
        props = props
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    props.build()
}
