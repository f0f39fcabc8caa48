//! Moves a table's current snapshot back to an ancestor (or to none): Iceberg's rollback, with data files untouched.
//!
//! iceberg-rust 0.10 has no rollback action and builds catalog commits only from its own
//! actions, so this writes the rolled-back metadata file itself (with iceberg-rust's
//! metadata builder) and re-points the catalog at it in three catalog calls, each of which
//! any catalog with `register_table` and `rename_table` has:
//! 1. register the new metadata under a staging name ([`staged_name`]);
//! 2. drop the table's entry (never its files);
//! 3. rename the staged entry to the table's name.
//!
//! A crash or failure between them leaves the old table (before 2; the staged entry is
//! stale and the next rollback drops it) or the new one under the staging name (after 2),
//! which [`TableCatalog::load`] finishes renaming before anything reads or creates the
//! table: never an empty table where a rollback was under way.

use std::str::FromStr;

use iceberg::spec::{MAIN_BRANCH, SnapshotReference, SnapshotRetention};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent};

use crate::error::{Error, Result};
use crate::failpoint;
use crate::sink::catalog::TableCatalog;

/// Makes `to` (a snapshot of `table`) its current snapshot, or leaves it with none: the
/// table reads as empty. Refuses if another writer committed since `table` was loaded.
pub async fn set_current_snapshot(catalog: &TableCatalog, table: &Table, to: Option<i64>) -> Result<Table> {
    let ident = table.identifier().clone();
    let err = |context: String| {
        let table = ident.to_string();
        move |source| Error::Iceberg { table, context, source }
    };
    let current = table.metadata_location_result().map_err(err("reading its metadata location".into()))?.to_string();
    let builder = table.metadata().clone().into_builder(Some(current.clone()));
    let builder = match to {
        Some(id) => builder
            .set_ref(MAIN_BRANCH, SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)))
            .map_err(err(format!("setting the current snapshot to {id}")))?,
        None => builder.remove_ref(MAIN_BRANCH),
    };
    let metadata = builder.build().map_err(err("building the rolled-back metadata".into()))?.metadata;
    let location = MetadataLocation::from_str(&current)
        .map_err(err(format!("reading metadata location {current}")))?
        .with_next_version();
    metadata.write_to(table.file_io(), &location).await.map_err(err(format!("writing {location}")))?;

    let fresh = catalog.catalog().load_table(&ident).await.map_err(err("re-loading before the switch".into()))?;
    if fresh.metadata_location() != Some(current.as_str()) {
        return Err(Error::Topic {
            topic: ident.to_string(),
            message: "another writer committed to the table during the rollback; nothing was changed, run it again"
                .into(),
        });
    }
    let staged = TableIdent::new(ident.namespace().clone(), staged_name(ident.name()));
    let cat = catalog.catalog();
    if cat.table_exists(&staged).await.map_err(err(format!("checking for a stale {staged}")))? {
        // Left by a rollback that stopped before its drop: the table itself is intact.
        cat.drop_table(&staged)
            .await
            .map_err(err(format!("dropping the stale catalog entry {staged} (files stay)")))?;
    }
    cat.register_table(&staged, location.to_string())
        .await
        .map_err(err(format!("registering the rolled-back metadata {location} as {staged}")))?;
    failpoint::hit("rollback-staged");
    cat.drop_table(&ident).await.map_err(err("dropping the catalog entry (files stay)".into()))?;
    failpoint::hit("rollback-dropped");
    finish(catalog, &staged, &ident).await
}

/// The name a rollback of `table` registers the new version under before it takes the table's place.
pub fn staged_name(table: &str) -> String {
    format!("{table}{STAGED_SUFFIX}")
}

/// Suffix of [`staged_name`]; table names ending in it are refused by the config.
pub const STAGED_SUFFIX: &str = "__k2_rollback";

/// Step 3: the staged version takes the table's name.
pub async fn finish(catalog: &TableCatalog, staged: &TableIdent, ident: &TableIdent) -> Result<Table> {
    let err = |context: String| {
        let table = ident.to_string();
        move |source| Error::Iceberg { table, context, source }
    };
    let cat = catalog.catalog();
    if let Err(e) = cat.rename_table(staged, ident).await {
        // Another process may have finished it first.
        if !cat.table_exists(ident).await.unwrap_or(false) {
            return Err(err(format!(
                "renaming {staged} to the table's name (the next command that loads the table tries again)"
            ))(e));
        }
    }
    cat.load_table(ident).await.map_err(err("loading after the rollback".into()))
}
