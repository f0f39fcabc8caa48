//! Old metadata files deleted after a commit, as the table's `write.metadata.delete-after-commit.enabled` asks: iceberg-rust 0.10 trims the metadata log but deletes no file.
//!
//! Every commit writes a new `*.metadata.json` holding the whole snapshot log; kept forever,
//! they make a table's `metadata/` folder grow with the square of its commits (1.9 GB for
//! 15 MB of data after 2,000 commits, `k2-bench soak`). Iceberg's answer is the pair of table
//! properties below, which Java and pyiceberg honour; this does the same for our commits.

use std::collections::HashSet;

use iceberg::table::Table;

/// Table property: delete the metadata files a commit drops from the metadata log.
pub const DELETE_AFTER_COMMIT: &str = "write.metadata.delete-after-commit.enabled";
/// Table property: how many earlier metadata files the log keeps (iceberg-rust trims to it).
pub const PREVIOUS_VERSIONS_MAX: &str = "write.metadata.previous-versions-max";

/// The metadata files `base`'s log lists that `committed`'s no longer does: the ones a
/// commit from `base` to `committed` dropped (as Java's `previousFiles` difference). Only
/// `*.metadata.json` files under the table's own `metadata/` folder count: a table
/// registered from another's metadata has the other's files in its log.
pub fn dropped(base: &Table, committed: &Table) -> Vec<String> {
    let kept: HashSet<&str> = logged(committed).collect();
    let own = format!("{}/metadata/", committed.metadata().location().trim_end_matches('/'));
    logged(base)
        .filter(|f| !kept.contains(f) && f.starts_with(&own) && f.ends_with(".metadata.json"))
        .map(str::to_string)
        .collect()
}

fn logged(table: &Table) -> impl Iterator<Item = &str> {
    table.metadata().metadata_log().iter().map(|m| m.metadata_file.as_str())
}

/// After a commit from `base` to `committed` through a catalog whose metadata files this
/// process writes (the SQL catalog; a REST server writes, and deletes, its own): deletes the
/// files it dropped, if `committed` asks for it. A file that cannot be deleted is left (an
/// orphan, harmless) with a warning: the commit stands either way.
pub async fn delete_dropped(base: &Table, committed: &Table) {
    let enabled =
        committed.metadata().properties().get(DELETE_AFTER_COMMIT).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !enabled {
        return;
    }
    let files = dropped(base, committed);
    let mut failed = 0;
    for file in &files {
        if let Err(e) = committed.file_io().delete(file).await {
            failed += 1;
            tracing::debug!(table = %committed.identifier(), file, error = %e, "could not delete an old metadata file");
        }
    }
    if failed > 0 {
        tracing::warn!(table = %committed.identifier(), failed, dropped = files.len(),
            "old metadata files could not be deleted; they stay as orphans");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use iceberg::memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder};
    use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
    use iceberg::transaction::{ApplyTransactionAction, Transaction};
    use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation};

    use super::*;

    async fn table_with(properties: &[(&str, &str)]) -> (impl Catalog, Table) {
        let catalog = MemoryCatalogBuilder::default()
            .load("meta", HashMap::from([(MEMORY_CATALOG_WAREHOUSE.to_string(), "memory://wh".to_string())]))
            .await
            .unwrap();
        let ns = NamespaceIdent::new("ns".into());
        catalog.create_namespace(&ns, HashMap::new()).await.unwrap();
        let field = NestedField::required(1, "qty", Type::Primitive(PrimitiveType::Int));
        let schema = Schema::builder().with_fields(vec![field.into()]).build().unwrap();
        let props = properties.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let creation = TableCreation::builder().name("t".into()).schema(schema).properties(props).build();
        let table = catalog.create_table(&ns, creation).await.unwrap();
        (catalog, table)
    }

    /// One commit that changes only a property: a new metadata file, like any commit.
    async fn commit(catalog: &impl Catalog, table: &Table, n: usize) -> Table {
        let tx = Transaction::new(table);
        let tx = tx.update_table_properties().set("n".into(), n.to_string()).apply(tx).unwrap();
        let committed = tx.commit(catalog).await.unwrap();
        delete_dropped(table, &committed).await;
        committed
    }

    #[tokio::test]
    async fn the_files_dropped_are_those_the_log_no_longer_lists() {
        let (catalog, table) = table_with(&[(DELETE_AFTER_COMMIT, "true"), (PREVIOUS_VERSIONS_MAX, "1")]).await;
        let one = commit(&catalog, &table, 0).await;
        let two = commit(&catalog, &one, 1).await;
        assert_eq!(dropped(&one, &two), [table.metadata_location().unwrap()], "the log's oldest file");
        assert!(dropped(&table, &one).is_empty(), "the file replaced stays in the log");
    }

    async fn exists(table: &Table, file: &str) -> bool {
        table.file_io().exists(file).await.unwrap()
    }

    #[tokio::test]
    async fn with_the_property_only_the_files_the_log_keeps_remain() {
        let (catalog, mut table) = table_with(&[(DELETE_AFTER_COMMIT, "True"), (PREVIOUS_VERSIONS_MAX, "3")]).await;
        let mut written = vec![table.metadata_location().unwrap().to_string()];
        for n in 0..8 {
            table = commit(&catalog, &table, n).await;
            written.push(table.metadata_location().unwrap().to_string());
        }
        let mut kept: Vec<&str> = logged(&table).collect();
        kept.extend(table.metadata_location());
        assert_eq!(kept.len(), 4, "the current file and the 3 the log keeps");
        for file in &written {
            assert_eq!(exists(&table, file).await, kept.contains(&file.as_str()), "{file}");
        }
    }

    #[tokio::test]
    async fn without_it_nothing_is_deleted() {
        let (catalog, mut table) = table_with(&[(PREVIOUS_VERSIONS_MAX, "2")]).await;
        let first = table.metadata_location().unwrap().to_string();
        for n in 0..5 {
            table = commit(&catalog, &table, n).await;
        }
        assert!(!logged(&table).any(|f| f == first), "dropped from the log");
        assert!(exists(&table, &first).await, "but left on disk, as the table asks");
    }
}
