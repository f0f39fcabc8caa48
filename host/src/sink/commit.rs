//! One Iceberg commit: a fast-append of data files whose snapshot summary carries the offsets.

use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use crate::error::{Error, Result};
use crate::sink::catalog::TableCatalog;
use crate::sink::offsets::{PartitionOffsets, next_summary};

/// Appends `files` to `table` in one snapshot whose summary records `topic`'s next offsets
/// (merged with what the table already stores). Offsets alone are committed too, e.g.
/// when every record of a run was rejected. Returns the table as committed.
pub async fn append_with_offsets(
    catalog: &TableCatalog,
    table: &Table,
    files: Vec<DataFile>,
    topic: &str,
    advanced: &PartitionOffsets,
) -> Result<Table> {
    let summary = next_summary(table, topic, advanced);
    let tx = Transaction::new(table);
    // File names are unique per writer (uuid prefix), so the duplicate check — which reads
    // every manifest of the table — buys nothing.
    let append = tx
        .fast_append()
        .with_check_duplicate(false)
        .add_data_files(files)
        .set_snapshot_properties(summary);
    let err = |context: &str, source| Error::Iceberg { table: table.identifier().to_string(), context: context.into(), source };
    let tx = append.apply(tx).map_err(|e| err("preparing the append", e))?;
    tx.commit(catalog.catalog()).await.map_err(|e| err("committing", e))
}
