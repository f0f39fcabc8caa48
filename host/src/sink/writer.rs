//! An open Parquet data-file writer for one table, kept across batches until a commit.

use arrow_array::RecordBatch;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::config::{Compression, SinkConfig};
use crate::error::{Error, Result};

type Writer = DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Writes record batches into data files of one table; `close` hands back the files to commit.
pub struct TableWriter {
    table_name: String,
    inner: Option<Writer>,
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
        let props = WriterProperties::builder().set_compression(compression).build();
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
        Ok(Self { table_name, inner: Some(inner), rows: 0, bytes: 0 })
    }

    /// Appends accepted records.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.bytes += batch.get_array_memory_size() as u64;
        let writer = self.inner.as_mut().expect("writer used after close");
        writer.write(batch).await.map_err(|source| Error::Iceberg {
            table: self.table_name.clone(),
            context: "writing a data file".into(),
            source,
        })
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
        let mut writer = self.inner.take().expect("writer closed twice");
        if self.rows == 0 {
            // Nothing was written: no file was opened, and none should be committed.
            return Ok(Vec::new());
        }
        writer.close().await.map_err(|source| Error::Iceberg {
            table: self.table_name.clone(),
            context: "closing data files".into(),
            source,
        })
    }
}
