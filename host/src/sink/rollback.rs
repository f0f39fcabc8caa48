//! Moves a table's current snapshot back to an ancestor (or to none): Iceberg's rollback, with data files untouched.
//!
//! iceberg-rust 0.10 has no rollback action and builds catalog commits only from its own
//! actions, so this writes the rolled-back metadata file itself (with iceberg-rust's
//! metadata builder) and re-points the catalog at it: drop the table's entry (never its
//! files) and register the new metadata. Both steps are catalog calls, so any catalog with
//! `register_table` works. Between them the table is briefly unregistered: callers run only
//! while no consumer is in the group, and a failure names the metadata file to register.

use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::{MAIN_BRANCH, SnapshotReference, SnapshotRetention};
use iceberg::table::Table;

use crate::error::{Error, Result};
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
    catalog.catalog().drop_table(&ident).await.map_err(err("dropping the catalog entry (files stay)".into()))?;
    catalog.catalog().register_table(&ident, location.to_string()).await.map_err(|source| Error::Iceberg {
        table: ident.to_string(),
        context: format!(
            "registering the rolled-back metadata; the table is unregistered until {location} is registered \
             under its name"
        ),
        source,
    })
}
