//! One Iceberg commit: a fast-append of data files whose snapshot summary carries the offsets.

use iceberg::ErrorKind;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use crate::error::{Error, Result};
use crate::kafka::log_bounds::LostRange;
use crate::sink::catalog::TableCatalog;
use crate::sink::lineage::COMMITTED_PROPERTY;
use crate::sink::offsets::{PartitionOffsets, next_summary};
use crate::sink::overlay::TableOverlay;
use crate::sink::state::{StateFiles, next_state_files};

/// How a commit ended.
pub enum CommitOutcome {
    /// The table as committed.
    Committed(Table),
    /// Another writer committed since `base` was loaded; nothing was committed.
    Conflict,
}

/// Appends `files` on top of exactly `base` in one snapshot whose summary records `topic`'s
/// next offsets merged with those `base` stores, and the validator state files written for
/// them (`states`, by partition), and the ranges of records lost to retention before they
/// were read (`lost`), added to those recorded before. Offsets alone are committed too, e.g. when
/// every record of a run was rejected. If the table moved past `base`, nothing is committed
/// and the caller must decide, from the offsets now stored, what still belongs in the table.
pub async fn append_with_offsets(
    catalog: &TableCatalog,
    base: &Table,
    files: Vec<DataFile>,
    topic: &str,
    advanced: &PartitionOffsets,
    states: &StateFiles,
    lost: &[LostRange],
) -> Result<CommitOutcome> {
    let mut summary = next_summary(base, topic, advanced)?;
    if !states.is_empty() {
        let (key, value) = next_state_files(base, topic, states)?;
        summary.insert(key, value);
    }
    crate::sink::lost::record(&mut summary, topic, lost);
    let tx = Transaction::new(base);
    // File names are unique per writer (uuid prefix), so the duplicate check — which reads
    // every manifest of the table — buys nothing.
    let append = tx.fast_append().with_check_duplicate(false).add_data_files(files).set_snapshot_properties(summary);
    let err = |context: &str, source| Error::Iceberg {
        table: base.identifier().to_string(),
        context: context.into(),
        source,
    };
    let mut tx = append.apply(tx).map_err(|e| err("preparing the append", e))?;
    if !base.metadata().properties().contains_key(COMMITTED_PROPERTY) {
        // In the same commit as the first summary: from now on a history without one was cut.
        let mark = tx.update_table_properties().set(COMMITTED_PROPERTY.into(), "true".into());
        tx = mark.apply(tx).map_err(|e| err("marking the table as holding offsets", e))?;
    }
    match tx.commit(&TableOverlay::pinned(catalog.catalog(), base.clone())).await {
        Ok(table) => Ok(CommitOutcome::Committed(table)),
        Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => Ok(CommitOutcome::Conflict),
        Err(e) => Err(err("committing", e)),
    }
}
