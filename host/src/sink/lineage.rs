//! A table's history as k2-ingest reads it: the current snapshot's ancestors, and which of them holds our `k2.*` summary.
//!
//! Every snapshot k2-ingest commits carries the offsets (and validator state) in its
//! summary; snapshots written by other engines — an append by pyiceberg, a compaction or
//! delete by Spark — carry none. So where ingestion stopped is the summary of the newest
//! ancestor that carries one, not the current snapshot's. When snapshot expiry removed
//! every ancestor that did, the table no longer knows: that is an error, never a fresh start
//! (resuming from the group's offsets or `auto.offset.reset` could write records twice).
//!
//! Expiry does not always leave a trace in the history itself: pyiceberg clears the parent
//! of a snapshot whose parent it expired. So our commits also mark the table with
//! [`COMMITTED_PROPERTY`]: a marked table whose history holds no summary of ours lost it.

use iceberg::spec::Snapshot;
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::sink::offsets::{OFFSETS_KEY_PREFIX, PartitionOffsets, snapshot_offsets};

/// Table property our commits set: the table's snapshot summaries hold k2-ingest's offsets.
pub const COMMITTED_PROPERTY: &str = "k2.offsets-in-summaries";

/// The current snapshot and its retained ancestors, newest first.
pub struct Lineage<'t> {
    table: String,
    snapshots: Vec<&'t Snapshot>,
    /// The parent the oldest retained ancestor names but the metadata no longer holds.
    expired_parent: Option<i64>,
    /// The table carries [`COMMITTED_PROPERTY`].
    committed_before: bool,
}

impl<'t> Lineage<'t> {
    /// The history of `table`'s current snapshot (empty for a table with none).
    pub fn of(table: &'t Table) -> Self {
        Self::from_snapshot(table, table.metadata().current_snapshot().map(|s| s.snapshot_id()))
    }

    /// The history of snapshot `id` of `table` (empty for `None` or an unknown id).
    pub fn from_snapshot(table: &'t Table, id: Option<i64>) -> Self {
        let metadata = table.metadata();
        let mut snapshots = Vec::new();
        let mut expired_parent = None;
        let mut next = id;
        while let Some(id) = next {
            let Some(s) = metadata.snapshot_by_id(id) else {
                expired_parent = (!snapshots.is_empty()).then_some(id);
                break;
            };
            snapshots.push(s.as_ref());
            next = s.parent_snapshot_id();
        }
        let committed_before = table.metadata().properties().contains_key(COMMITTED_PROPERTY);
        Self { table: table.identifier().to_string(), snapshots, expired_parent, committed_before }
    }

    /// True if the oldest snapshot names a parent that was expired: the history before it is gone.
    pub fn cut(&self) -> bool {
        self.expired_parent.is_some()
    }

    /// The snapshots, newest first.
    pub fn snapshots(&self) -> &[&'t Snapshot] {
        &self.snapshots
    }

    /// The offsets of `topic` in effect at `snapshots()[i]` (empty where none are, see [`Lineage::k2_at`]).
    pub fn offsets_at(&self, i: usize, topic: &str) -> Result<PartitionOffsets> {
        Ok(self.k2_at(i)?.map(|s| snapshot_offsets(s, topic)).unwrap_or_default())
    }

    /// The snapshot whose summary holds the `k2.*` entries in effect at the current snapshot.
    pub fn k2(&self) -> Result<Option<&'t Snapshot>> {
        self.k2_at(0)
    }

    /// The snapshot whose summary holds the `k2.*` entries in effect at `snapshots()[i]`:
    /// it, or its newest ancestor that carries them. `None` if none does and k2-ingest never
    /// committed to the table (no [`COMMITTED_PROPERTY`]: e.g. a table another engine filled
    /// and expired, which k2-ingest now starts on), if `snapshots()[i]` predates k2-ingest's
    /// first commit (a newer snapshot carries them), or for no snapshot (an empty or
    /// truncated table).
    pub fn k2_at(&self, i: usize) -> Result<Option<&'t Snapshot>> {
        if let Some(s) = self.snapshots.iter().skip(i).find(|s| carries_k2(s)) {
            return Ok(Some(s));
        }
        let (Some(from), Some(oldest)) = (self.snapshots.get(i), self.snapshots.last()) else { return Ok(None) };
        if !self.committed_before || self.snapshots.iter().take(i).any(|s| carries_k2(s)) {
            return Ok(None);
        }
        let why = match self.expired_parent {
            Some(expired) => format!(
                "the table property {COMMITTED_PROPERTY} says so, and snapshot {} names parent {expired}, which was expired",
                oldest.snapshot_id()
            ),
            None => format!("the table property {COMMITTED_PROPERTY} says so"),
        };
        Err(Error::HistoryLost {
            table: self.table.clone(),
            from: from.snapshot_id(),
            oldest: oldest.snapshot_id(),
            why,
        })
    }
}

/// True if `snapshot` was committed by k2-ingest (its summary stores offsets).
pub fn carries_k2(snapshot: &Snapshot) -> bool {
    snapshot.summary().additional_properties.keys().any(|k| k.starts_with(OFFSETS_KEY_PREFIX))
}
