//! A topic's Iceberg table as the loop writes it: created or evolved to the reader schema, and the column layout batches are built in.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use iceberg::table::Table;

use crate::config::{Config, TopicConfig};
use crate::decode::columns::ColumnsBuilder;
use crate::error::{Error, Result};
use crate::schema::mapping::{field_columns, iceberg_schema, record_fields};
use crate::sink::catalog::{TableCatalog, arrow_schema};
use crate::sink::partition;

use super::evolve;

use super::SchemaOrigin;

/// The topic's table and the layout of the columns its batches are built in.
pub struct TopicTable {
    catalog: Arc<TableCatalog>,
    name: String,
    table: Table,
    /// The table schema (by id) the batches' columns are built in: another instance may
    /// evolve the table meanwhile, and Parquet pairs fields with columns by position.
    columns_schema_id: i32,
    arrow_schema: SchemaRef,
    avro_fields: Vec<String>,
    /// Positions of the Avro-field columns in the table schema (handed to validators).
    field_columns: Vec<usize>,
}

impl TopicTable {
    /// The checks of [`TopicTable::open`] that need no catalog: the table schema and the
    /// partition spec bind. A bad spec is a config error, reported before any remote call.
    pub fn check_spec(
        config: &Config,
        topic: &TopicConfig,
        reader: &apache_avro::Schema,
        origin: &SchemaOrigin,
    ) -> Result<()> {
        let schema = iceberg_schema(reader, &origin.path(), config.sink.metadata_columns)?;
        partition::bind(&schema, &topic.partition_by, &topic.name).map(drop)
    }

    /// Loads the topic's table (creating it if missing) and evolves it to the reader schema:
    /// a table made by an earlier run or another tool may lack columns the schema has, and
    /// without them those fields would be dropped.
    pub async fn open(
        config: &Config,
        catalog: Arc<TableCatalog>,
        topic: &TopicConfig,
        reader: &apache_avro::Schema,
        origin: &SchemaOrigin,
    ) -> Result<Self> {
        let avro_fields: Vec<String> = record_fields(reader).iter().map(|f| f.name.clone()).collect();
        let schema = iceberg_schema(reader, &origin.path(), config.sink.metadata_columns)?;
        let name = topic.table_name();
        let spec = partition::bind(&schema, &topic.partition_by, &topic.name)?;
        let table = catalog.load_or_create(&name, schema.clone(), spec).await?;
        partition::check_table(&table, &topic.partition_by, &topic.name)?;
        let table = evolve_table(&catalog, table, &schema, &topic.name, &origin.describe()).await?;
        let arrow_schema = arrow_schema(&table)?;
        let field_columns = field_columns(&arrow_schema, &avro_fields);
        Ok(Self {
            catalog,
            name,
            columns_schema_id: table.metadata().current_schema_id(),
            table,
            arrow_schema,
            avro_fields,
            field_columns,
        })
    }

    pub fn catalog(&self) -> &Arc<TableCatalog> {
        &self.catalog
    }

    /// The table's name as configured (for catalog loads).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table as this instance last saw it.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The table after a commit or a reload.
    pub fn set(&mut self, table: Table) {
        self.table = table;
    }

    /// The table as the catalog has it now (another instance may have committed).
    pub async fn reload(&self) -> Result<Option<Table>> {
        self.catalog.load(&self.name).await
    }

    /// An empty builder of columns in the table's layout.
    pub fn columns(&self) -> Result<ColumnsBuilder> {
        ColumnsBuilder::new(self.arrow_schema.clone(), &self.avro_fields, &self.name)
    }

    pub fn field_columns(&self) -> &[usize] {
        &self.field_columns
    }

    /// The table schema the batches' columns are built in.
    pub fn columns_schema(&self) -> iceberg::spec::SchemaRef {
        let metadata = self.table.metadata();
        metadata.schema_by_id(self.columns_schema_id).cloned().unwrap_or_else(|| metadata.current_schema().clone())
    }

    /// Evolves the table to the reader schema `merged` (which merged in writer schema `id`)
    /// and rebuilds the column layout. Batches must be empty and the writer closed.
    pub async fn evolve_to(
        &mut self,
        merged: &apache_avro::Schema,
        id: u32,
        origin: &SchemaOrigin,
        topic: &str,
        metadata_columns: bool,
    ) -> Result<()> {
        // Mapping errors read "schema id N: field `x`: …".
        let desired = iceberg_schema(merged, std::path::Path::new(&format!("id {id}")), metadata_columns)
            .map_err(|e| Error::Topic { topic: topic.to_string(), message: e.to_string() })?;
        let origin = format!("{} and schema id {id}", origin.describe());
        let table = self.reload().await?.unwrap_or_else(|| self.table.clone());
        self.table = evolve_table(&self.catalog, table, &desired, topic, &origin).await?;
        self.columns_schema_id = self.table.metadata().current_schema_id();
        self.arrow_schema = arrow_schema(&self.table)?;
        self.avro_fields = record_fields(merged).iter().map(|f| f.name.clone()).collect();
        self.field_columns = field_columns(&self.arrow_schema, &self.avro_fields);
        Ok(())
    }
}

/// Evolves `table` so it has every column of `desired` with a type that holds its values.
/// Another instance may evolve the same table at the same moment: a conflict re-plans on the
/// table as it then is.
async fn evolve_table(
    catalog: &TableCatalog,
    mut table: Table,
    desired: &iceberg::spec::Schema,
    topic: &str,
    origin: &str,
) -> Result<Table> {
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let current = table.metadata().current_schema().clone();
        let change = evolve::plan(&current, desired).map_err(|message| Error::Topic {
            topic: topic.to_string(),
            message: format!("the table cannot take the schema from {origin}: {message}"),
        })?;
        if change.is_empty() {
            return Ok(table);
        }
        match evolve::apply(catalog, &table, &change, topic).await {
            Ok(evolved) => {
                tracing::info!(topic, table = %evolved.identifier(), change = %change.describe(&current),
                    schema_id = evolved.metadata().current_schema_id(), "table schema evolved");
                return Ok(evolved);
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(topic, error = %e, "evolving the table failed; reloading and trying again");
                let ident = table.identifier().name().to_string();
                table = catalog.load(&ident).await?.unwrap_or(table);
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}
