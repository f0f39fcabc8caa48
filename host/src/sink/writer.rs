//! An open Parquet data-file writer for one table, kept across batches until a commit.

use arrow_array::RecordBatch;
use iceberg::spec::{DataFile, DataFileFormat};
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
use crate::decode::schema::{META_OFFSET, META_TIMESTAMP};
use crate::error::{Error, Result};

type Writer = DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

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
        let table_name = table.identifier().to_string();
        let err = |context: &str, source| Error::Iceberg { table: table_name.clone(), context: context.into(), source };
        let compression = match sink.compression {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        };
        let props = writer_properties(compression);
        let parquet = ParquetWriterBuilder::new(props, table.metadata().current_schema().clone());
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
        let inner =
            DataFileWriterBuilder::new(rolling).build(None).await.map_err(|e| err("opening a data file writer", e))?;
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

/// The encoding thread's loop: writes every queued batch, then closes the files if asked to.
fn encode(
    mut writer: Writer,
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
