//! One Iceberg commit: a fast-append of data files whose snapshot summary carries the offsets.

use iceberg::ErrorKind;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use crate::error::{Error, Result};
use crate::kafka::log_bounds::LostRange;
use crate::kafka::topic_id::TopicId;
use crate::sink::catalog::TableCatalog;
use crate::sink::lineage::{COMMITTED_PROPERTY, Lineage};
use crate::sink::offsets::{PartitionOffsets, next_summary, topic_id_key};
use crate::sink::overlay::TableOverlay;
use crate::sink::state::{StateFiles, next_state_files};

/// Summary key holding the unique id of the commit that wrote the snapshot: after a failure
/// whose outcome is unknown (a timeout, a 5xx), finding it in the table's history tells a
/// commit that landed from one that did not, so none is applied twice.
pub const COMMIT_ID_KEY: &str = "k2.commit-id";

/// A fresh commit id; one per set of files, kept across the attempts to commit it.
pub fn new_commit_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True if the commit with id `commit_id` is in the history of `table`'s current snapshot.
pub fn holds_commit(table: &Table, commit_id: &str) -> bool {
    Lineage::of(table)
        .snapshots()
        .iter()
        .any(|s| s.summary().additional_properties.get(COMMIT_ID_KEY).map(String::as_str) == Some(commit_id))
}

/// How a commit ended.
pub enum CommitOutcome {
    /// The table as committed.
    Committed(Table),
    /// Another writer committed since `base` was loaded; nothing was committed.
    Conflict,
}

/// What a commit records beside its files.
pub struct Append<'a> {
    pub topic: &'a str,
    /// The topic's next offsets, merged with those the base stores.
    pub advanced: &'a PartitionOffsets,
    /// The validator state files written for them, by partition.
    pub states: &'a StateFiles,
    /// Ranges of records lost to retention before they were read, added to those recorded before.
    pub lost: &'a [LostRange],
    /// See [`COMMIT_ID_KEY`].
    pub commit_id: &'a str,
    /// The id of the topic the offsets were read from, if the broker gave one; otherwise the
    /// id recorded before is carried forward (see [`crate::sink::offsets::TOPIC_ID_KEY_PREFIX`]).
    pub topic_id: Option<&'a TopicId>,
}

/// Appends `files` on top of exactly `base` in one snapshot whose summary records what
/// `append` says. Offsets alone are committed too, e.g. when every record of a run was
/// rejected. If the table moved past `base`, nothing is committed and the caller must
/// decide, from the offsets now stored, what still belongs in the table.
pub async fn append_with_offsets(
    catalog: &TableCatalog,
    base: &Table,
    files: Vec<DataFile>,
    append: &Append<'_>,
) -> Result<CommitOutcome> {
    let Append { topic, advanced, states, lost, commit_id, topic_id } = *append;
    let mut summary = next_summary(base, topic, advanced)?;
    if !states.is_empty() {
        let (key, value) = next_state_files(base, topic, states)?;
        summary.insert(key, value);
    }
    crate::sink::lost::record(&mut summary, topic, lost);
    summary.insert(COMMIT_ID_KEY.into(), commit_id.into());
    if let Some(id) = topic_id {
        summary.insert(topic_id_key(topic), id.0.clone());
    }
    // A merge that fails costs only the merge: the append goes on with the manifests as they are.
    let merged = match crate::sink::manifest_merge::prepare(base).await {
        Ok(merged) => merged,
        Err(e) => {
            tracing::warn!(table = %base.identifier(), error = %e, "manifests not merged; appending without");
            None
        }
    };
    let on = merged.as_ref().map_or(base, |m| &m.view);
    let tx = Transaction::new(on);
    // File names are unique per writer (uuid prefix), so the duplicate check — which reads
    // every manifest of the table — buys nothing.
    let fast = tx.fast_append().with_check_duplicate(false).add_data_files(files).set_snapshot_properties(summary);
    let err = |context: &str, source| Error::Iceberg {
        table: base.identifier().to_string(),
        context: context.into(),
        source,
    };
    let mut tx = fast.apply(tx).map_err(|e| err("preparing the append", e))?;
    if !base.metadata().properties().contains_key(COMMITTED_PROPERTY) {
        // In the same commit as the first summary: from now on a history without one was cut.
        let mark = tx.update_table_properties().set(COMMITTED_PROPERTY.into(), "true".into());
        tx = mark.apply(tx).map_err(|e| err("marking the table as holding offsets", e))?;
    }
    let outcome = tx.commit(&TableOverlay::pinned(catalog.catalog(), on.clone())).await;
    if let Some(merged) = merged {
        // An error may hide a commit that landed: its merged manifests are then kept (unreferenced
        // if it did not), never deleted from under a snapshot.
        let committed = !matches!(&outcome, Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts);
        if committed && outcome.is_ok() {
            tracing::debug!(table = %base.identifier(), replaced = merged.replaced, merged = merged.manifests.len(), "manifests merged");
        }
        merged.clean_up(base, committed).await;
    }
    match outcome {
        Ok(table) => {
            if catalog.writes_metadata() {
                crate::sink::metadata_files::delete_dropped(base, &table).await;
            }
            Ok(CommitOutcome::Committed(table))
        }
        Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => Ok(CommitOutcome::Conflict),
        Err(e) => Err(err("committing", e)),
    }
}
