//! Opens the configured catalog and finds or creates a topic's table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use iceberg::io::LocalFsStorageFactory;
use iceberg::spec::{Schema as IcebergSchema, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use crate::config::{CatalogConfig, redact_url};
use crate::error::{Error, Result};
use crate::sink::rollback::{finish, staged_name};

/// Table properties set on tables k2-ingest creates.
///
/// iceberg-rust's transaction retries a conflicting commit by re-applying the same files;
/// k2-ingest must instead re-read the offsets stored in the table first, so the built-in
/// retry is off and conflicts surface to the pipeline.
const TABLE_PROPERTIES: &[(&str, &str)] = &[("commit.retry.num-retries", "0")];

/// Also set on tables of catalogs whose metadata files this process writes (SQL): the
/// metadata files a commit drops from the log (beyond the last 100) are deleted after it
/// (see `metadata_files`), so `metadata/` does not grow with the square of the commits.
/// A REST server writes its metadata files, and deletes them as it sees fit: some share them
/// between branches (Nessie), so the property is left to the server and the operator there.
const SQL_TABLE_PROPERTIES: &[(&str, &str)] = &[
    (crate::sink::metadata_files::DELETE_AFTER_COMMIT, "true"),
    (crate::sink::metadata_files::PREVIOUS_VERSIONS_MAX, "100"),
];

/// The opened catalog and the namespace our tables live in.
pub struct TableCatalog {
    catalog: Arc<dyn Catalog>,
    name: String,
    namespace: NamespaceIdent,
    /// This process writes the tables' metadata files (SQL), rather than a server (REST).
    writes_metadata: bool,
}

impl TableCatalog {
    /// Opens the catalog, creating the SQLite file and warehouse folder if missing.
    pub async fn open(config: &CatalogConfig) -> Result<Self> {
        let namespace = NamespaceIdent::new(config.namespace().to_string());
        let name = config.name().to_string();
        let err = |context: String, source| Error::Catalog { name: name.clone(), context, source };
        match config {
            CatalogConfig::Sql(sql) => {
                for dir in [sql.database.parent(), Some(sql.warehouse.as_path())].into_iter().flatten() {
                    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                        context: format!("creating catalog folder {}", dir.display()),
                        source,
                    })?;
                }
                let uri = format!("sqlite:{}?mode=rwc", sql.database.display());
                let warehouse = format!("file://{}", sql.warehouse.display());
                let catalog = SqlCatalogBuilder::default()
                    .uri(&uri)
                    .warehouse_location(&warehouse)
                    .sql_bind_style(SqlBindStyle::QMark)
                    .with_storage_factory(Arc::new(LocalFsStorageFactory))
                    .load(&sql.name, HashMap::new())
                    .await
                    .map_err(|e| err(format!("opening {uri}"), e))?;
                Ok(Self { catalog: Arc::new(catalog), name, namespace, writes_metadata: true })
            }
            CatalogConfig::Rest(rest) => {
                // Tables may live on S3 or on local paths (a file:// warehouse); the factory
                // picks the storage from each path's scheme.
                let timeout = Duration::from_millis(rest.request_timeout_ms.max(1));
                // iceberg's default client has no timeout at all: a catalog that accepts the
                // connection and never answers would hang the run (and its rebalance callback).
                let client =
                    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).build().map_err(|e| {
                        let source = iceberg::Error::new(iceberg::ErrorKind::Unexpected, e.to_string());
                        err(format!("building the HTTP client for {}", redact_url(&rest.uri)), source)
                    })?;
                let catalog = RestCatalogBuilder::default()
                    .with_client(client)
                    .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
                    .load(&rest.name, rest.properties().into_iter().collect())
                    .await
                    .map_err(|e| err(format!("opening {}", redact_url(&rest.uri)), e))?;
                Ok(Self { catalog: Arc::new(catalog), name, namespace, writes_metadata: false })
            }
        }
    }

    /// Whether this process writes the tables' metadata files, and so deletes the old ones
    /// a table asks to be deleted (see `metadata_files`).
    pub fn writes_metadata(&self) -> bool {
        self.writes_metadata
    }

    pub fn catalog(&self) -> &dyn Catalog {
        self.catalog.as_ref()
    }

    pub fn ident(&self, table: &str) -> TableIdent {
        TableIdent::new(self.namespace.clone(), table.to_string())
    }

    /// Loads `table`, or `None` if it does not exist. A rollback interrupted after it dropped
    /// the table's entry is finished first (see [`crate::sink::rollback`]).
    pub async fn load(&self, table: &str) -> Result<Option<Table>> {
        let ident = self.ident(table);
        let exists = self.catalog.table_exists(&ident).await.map_err(|e| self.err(table, "checking the table", e))?;
        if !exists {
            let staged = self.ident(&staged_name(table));
            let interrupted =
                self.catalog.table_exists(&staged).await.map_err(|e| self.err(table, "checking for a rollback", e))?;
            if !interrupted {
                return Ok(None);
            }
            tracing::warn!(table = %ident, staged = %staged, "finishing a rollback that was interrupted after dropping the table's entry");
            return finish(self, &staged, &ident).await.map(Some);
        }
        let t = self.catalog.load_table(&ident).await.map_err(|e| self.err(table, "loading", e))?;
        Ok(Some(t))
    }

    /// Loads `table`, creating it (and the namespace) with `schema`, partitioned by `spec`, if missing.
    pub async fn load_or_create(
        &self,
        table: &str,
        schema: IcebergSchema,
        spec: Option<UnboundPartitionSpec>,
    ) -> Result<Table> {
        if let Some(t) = self.load(table).await? {
            self.drop_stale_staged(table).await?;
            return Ok(t);
        }
        let exists = self
            .catalog
            .namespace_exists(&self.namespace)
            .await
            .map_err(|e| self.err(table, "checking the namespace", e))?;
        if !exists {
            // Another instance may create it at the same moment: re-check before failing.
            if let Err(e) = self.catalog.create_namespace(&self.namespace, HashMap::new()).await {
                if !self.catalog.namespace_exists(&self.namespace).await.unwrap_or(false) {
                    return Err(self.err(table, "creating the namespace", e));
                }
            }
        }
        let creation = TableCreation::builder()
            .name(table.to_string())
            .schema(schema)
            .partition_spec_opt(spec)
            .properties(
                TABLE_PROPERTIES
                    .iter()
                    .chain(if self.writes_metadata { SQL_TABLE_PROPERTIES } else { &[] })
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .build();
        match self.catalog.create_table(&self.namespace, creation).await {
            Ok(t) => {
                tracing::info!(catalog = %self.name, table = %self.ident(table), "created table");
                Ok(t)
            }
            Err(e) => match self.load(table).await? {
                Some(t) => Ok(t),
                None => Err(self.err(table, "creating", e)),
            },
        }
    }

    /// With the table standing, a staged rollback entry is what a rollback left when it
    /// stopped before its drop: stale. Dropped (never its files) so that a later drop of the
    /// table by its owner cannot bring the stale version back through [`TableCatalog::load`].
    async fn drop_stale_staged(&self, table: &str) -> Result<()> {
        let staged = self.ident(&staged_name(table));
        if self.catalog.table_exists(&staged).await.map_err(|e| self.err(table, "checking for a rollback", e))? {
            tracing::warn!(table = %self.ident(table), %staged, "dropping the entry of a rollback that stopped before it took effect");
            self.catalog
                .drop_table(&staged)
                .await
                .map_err(|e| self.err(table, "dropping a stale rollback entry", e))?;
        }
        Ok(())
    }

    fn err(&self, table: &str, context: &str, source: iceberg::Error) -> Error {
        Error::Iceberg { table: self.ident(table).to_string(), context: context.to_string(), source }
    }
}

/// `table`'s current schema as Arrow, the layout its writers and readers use.
pub fn arrow_schema(table: &Table) -> Result<arrow_schema::SchemaRef> {
    let schema =
        iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema()).map_err(|source| Error::Iceberg {
            table: table.identifier().to_string(),
            context: "converting the schema to arrow".into(),
            source,
        })?;
    Ok(Arc::new(schema))
}
