//! Where partitions start on assignment: the table's offsets, or after this instance's own uncommitted records.

use std::sync::{Arc, Mutex};

use crate::kafka::consumer::StartOffsets;
use crate::sink::catalog::TableCatalog;
use crate::sink::offsets::{PartitionOffsets, stored_offsets};

/// What this instance holds uncommitted, shared with the rebalance callback: if a partition
/// comes back to us while its records are still in our writer, reading it again from the
/// table's offsets would put them in twice.
#[derive(Debug, Default)]
pub(super) struct HeldOffsets {
    /// Per partition, the first offset read since the last commit.
    pub(super) from: PartitionOffsets,
    /// Per partition, the next offset after the records in the writer.
    pub(super) next: PartitionOffsets,
}

/// Reads the offsets stored in the table, for the rebalance callback (which must answer
/// synchronously, from inside the consumer's poll on a runtime worker thread).
pub(super) struct TableStartOffsets {
    pub(super) catalog: Arc<TableCatalog>,
    pub(super) table: String,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) held: Arc<Mutex<HeldOffsets>>,
}

impl StartOffsets for TableStartOffsets {
    fn load(&self, topic: &str) -> std::result::Result<PartitionOffsets, String> {
        // A fresh load, not our cached table: another instance may have committed since.
        let table = tokio::task::block_in_place(|| self.runtime.block_on(self.catalog.load(&self.table)));
        let mut start = match table {
            Ok(Some(t)) => stored_offsets(&t, topic),
            Ok(None) => PartitionOffsets::new(),
            Err(e) => return Err(e.to_string()),
        };
        // Our own uncommitted records continue where they stop, unless another writer has
        // committed past their start (then the commit conflict check drops ours).
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for (&p, &next) in &held.next {
            let from = held.from.get(&p).copied().unwrap_or(next);
            if start.get(&p).is_none_or(|&stored| stored <= from) {
                start.insert(p, next);
            }
        }
        Ok(start)
    }
}
