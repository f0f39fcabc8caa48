//! A catalog that shows one table as we choose and passes everything else to the real one.
//!
//! iceberg-rust's `Transaction::commit` reloads the table through the catalog it is given and
//! builds the commit on what that load returns. Two of our commits need that load to answer
//! with something other than the catalog's current version:
//! - an append is built on the version whose stored offsets we checked ([`TableOverlay::pinned`]).
//!   A plain reload would build on another writer's newer commit, with our snapshot summary
//!   computed from the older version and no check of the offsets it holds; through the overlay
//!   the catalog sees the table moved and answers with a commit conflict, which the pipeline
//!   resolves.
//! - a schema commit that widens columns ([`TableOverlay::widened`]). iceberg-rust 0.10 has no
//!   public way to change a column's type: its schema update only adds and deletes columns. An
//!   empty schema update, though, commits the reloaded table's current schema as a new one
//!   (with a check that the current schema id has not moved). Through the overlay the reload
//!   has the widened types under the same field ids, so the schema committed is the widened
//!   one. Field ids, and so the data already written, are untouched, as in Iceberg's own
//!   promotion.

use std::collections::HashMap;

use async_trait::async_trait;
use iceberg::spec::{PrimitiveType, TableMetadata, Type};
use iceberg::table::Table;
use iceberg::{Catalog, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent};

/// `inner`, except that loads of one table answer with the overlay's view of it.
#[derive(Debug)]
pub struct TableOverlay<'a> {
    inner: &'a dyn Catalog,
    table: TableIdent,
    view: View,
}

#[derive(Debug)]
enum View {
    /// Always this version of the table.
    Pinned(Box<Table>),
    /// The catalog's current version, with the current schema's fields of these ids retyped.
    Widened(HashMap<i32, PrimitiveType>),
}

impl<'a> TableOverlay<'a> {
    /// Loads of `pinned`'s table answer with `pinned`, whatever the catalog holds now.
    pub fn pinned(inner: &'a dyn Catalog, pinned: Table) -> Self {
        Self { inner, table: pinned.identifier().clone(), view: View::Pinned(Box::new(pinned)) }
    }

    /// Loads of `table` answer with its current version, the fields of the given ids retyped.
    pub fn widened(
        inner: &'a dyn Catalog,
        table: &TableIdent,
        types: impl IntoIterator<Item = (i32, PrimitiveType)>,
    ) -> Self {
        Self { inner, table: table.clone(), view: View::Widened(types.into_iter().collect()) }
    }
}

/// `table` with its metadata retyped as `types` say.
fn widen(table: Table, types: &HashMap<i32, PrimitiveType>) -> Result<Table> {
    let metadata = widen_metadata(table.metadata(), types)?;
    with_metadata(&table, metadata)
}

/// `table` (its identifier, file IO and metadata location) with `metadata` in place of its own.
pub fn with_metadata(table: &Table, metadata: TableMetadata) -> Result<Table> {
    let mut builder = Table::builder()
        .metadata(metadata)
        .identifier(table.identifier().clone())
        .file_io(table.file_io().clone())
        .runtime(iceberg::Runtime::current());
    if let Some(location) = table.metadata_location() {
        builder = builder.metadata_location(location);
    }
    builder.build()
}

/// `metadata` with the current schema's fields of the given ids retyped, through the metadata's
/// JSON form (the only way to change a schema in place from outside iceberg-rust).
fn widen_metadata(metadata: &TableMetadata, types: &HashMap<i32, PrimitiveType>) -> Result<TableMetadata> {
    let invalid = |e: serde_json::Error| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string());
    let mut json = serde_json::to_value(metadata).map_err(invalid)?;
    let current = metadata.current_schema_id();
    let schemas = json.get_mut("schemas").and_then(|s| s.as_array_mut());
    for schema in schemas.into_iter().flatten() {
        if schema.get("schema-id").and_then(|v| v.as_i64()) != Some(current as i64) {
            continue;
        }
        for field in schema.get_mut("fields").and_then(|f| f.as_array_mut()).into_iter().flatten() {
            let id = field.get("id").and_then(|v| v.as_i64()).unwrap_or(-1) as i32;
            if let Some(ty) = types.get(&id) {
                field["type"] = serde_json::to_value(Type::Primitive(ty.clone())).map_err(invalid)?;
            }
        }
    }
    serde_json::from_value(json).map_err(invalid)
}

#[async_trait]
impl Catalog for TableOverlay<'_> {
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        if *table != self.table {
            return self.inner.load_table(table).await;
        }
        match &self.view {
            View::Pinned(pinned) => Ok((**pinned).clone()),
            View::Widened(types) => widen(self.inner.load_table(table).await?, types),
        }
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await
    }

    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }

    async fn update_namespace(&self, namespace: &NamespaceIdent, properties: HashMap<String, String>) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }

    async fn create_table(&self, namespace: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder};
    use iceberg::spec::{NestedField, Schema};
    use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
    use iceberg::{CatalogBuilder, ErrorKind};

    fn int_column(id: i32, name: &str) -> NestedField {
        NestedField::required(id, name, Type::Primitive(PrimitiveType::Int))
    }

    /// An in-memory catalog holding table `ns.t` with two int columns, `qty` (1) and `px` (2).
    async fn catalog_with_table() -> (impl Catalog, Table) {
        let catalog = MemoryCatalogBuilder::default()
            .load("overlay", HashMap::from([(MEMORY_CATALOG_WAREHOUSE.to_string(), "memory://wh".to_string())]))
            .await
            .unwrap();
        let ns = NamespaceIdent::new("ns".into());
        catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
        let schema = Schema::builder().with_fields(vec![int_column(1, "qty").into(), int_column(2, "px").into()]);
        // No retries: a conflict is what one test expects, and it would be retried with backoff.
        let no_retries = [("commit.retry.num-retries".to_string(), "0".to_string())];
        let creation =
            TableCreation::builder().name("t".into()).schema(schema.build().unwrap()).properties(no_retries).build();
        let table = catalog.create_table(&ns, creation).await.unwrap();
        (catalog, table)
    }

    async fn add_column(catalog: &dyn Catalog, table: &Table, name: &str) -> Result<Table> {
        let tx = Transaction::new(table);
        let tx =
            tx.update_schema().add_column(AddColumn::optional(name, Type::Primitive(PrimitiveType::Long))).apply(tx)?;
        tx.commit(catalog).await
    }

    #[tokio::test]
    async fn a_pinned_table_loads_as_pinned_and_a_commit_on_it_conflicts_once_the_table_moved() {
        let (catalog, base) = catalog_with_table().await;
        let moved = add_column(&catalog, &base, "venue").await.unwrap();
        let overlay = TableOverlay::pinned(&catalog, base.clone());

        let seen = overlay.load_table(base.identifier()).await.unwrap();
        assert_eq!(seen.metadata_location(), base.metadata_location());
        assert_ne!(seen.metadata_location(), moved.metadata_location());

        // Through the catalog itself the commit would be rebuilt on the moved table and land.
        let err = add_column(&overlay, &base, "side").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CatalogCommitConflicts, "{err}");
        let now = catalog.load_table(base.identifier()).await.unwrap();
        assert!(now.metadata().current_schema().field_by_name("side").is_none());
    }

    #[tokio::test]
    async fn an_empty_schema_update_through_a_widened_table_widens_the_columns_in_place() {
        let (catalog, table) = catalog_with_table().await;
        let overlay = TableOverlay::widened(&catalog, table.identifier(), [(1, PrimitiveType::Long)]);

        let tx = Transaction::new(&table);
        let tx = tx.update_schema().apply(tx).unwrap();
        tx.commit(&overlay).await.unwrap();

        let now = catalog.load_table(table.identifier()).await.unwrap();
        let schema = now.metadata().current_schema();
        assert_ne!(schema.schema_id(), table.metadata().current_schema_id());
        let qty = schema.field_by_id(1).unwrap();
        assert_eq!((qty.name.as_str(), &*qty.field_type), ("qty", &Type::Primitive(PrimitiveType::Long)));
        assert_eq!(*schema.field_by_id(2).unwrap().field_type, Type::Primitive(PrimitiveType::Int));
    }

    #[test]
    fn widened_metadata_keeps_field_ids_and_schema_id() {
        let schema = Schema::builder().with_fields(vec![int_column(1, "qty").into()]).build().unwrap();
        let metadata = iceberg::spec::TableMetadataBuilder::new(
            schema,
            iceberg::spec::PartitionSpec::unpartition_spec(),
            iceberg::spec::SortOrder::unsorted_order(),
            "file:///tmp/t".into(),
            iceberg::spec::FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;
        let widened = widen_metadata(&metadata, &HashMap::from([(1, PrimitiveType::Long)])).unwrap();
        assert_eq!(widened.current_schema_id(), metadata.current_schema_id());
        let field = widened.current_schema().field_by_id(1).unwrap();
        assert_eq!((field.name.as_str(), &*field.field_type), ("qty", &Type::Primitive(PrimitiveType::Long)));
    }
}
