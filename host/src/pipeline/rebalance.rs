//! Where partitions start on assignment: the table's offsets, or after this instance's own uncommitted records.

use std::sync::{Arc, Mutex};

use crate::config::OffsetLostPolicy;
use crate::kafka::consumer::StartOffsets;
use crate::schema::TopicTable;
use crate::sink::catalog::TableCatalog;
use crate::sink::offsets::{PartitionOffsets, stored_offsets};

use super::ledger::HeldOffsets;

/// Reads the offsets stored in the table, for the rebalance callback (which must answer
/// synchronously, from inside the consumer's poll on a runtime worker thread).
pub(super) struct TableStartOffsets {
    catalog: Arc<TableCatalog>,
    table: String,
    runtime: tokio::runtime::Handle,
    held: Arc<Mutex<HeldOffsets>>,
    on_offset_lost: OffsetLostPolicy,
}

impl TableStartOffsets {
    pub(super) fn new(table: &TopicTable, held: Arc<Mutex<HeldOffsets>>, on_offset_lost: OffsetLostPolicy) -> Self {
        Self {
            on_offset_lost,
            catalog: table.catalog().clone(),
            table: table.name().to_string(),
            runtime: tokio::runtime::Handle::current(),
            held,
        }
    }
}

impl StartOffsets for TableStartOffsets {
    fn load(&self, topic: &str) -> std::result::Result<PartitionOffsets, String> {
        // A fresh load, not our cached table: another instance may have committed since.
        let table = tokio::task::block_in_place(|| self.runtime.block_on(self.catalog.load(&self.table)));
        let stored = match table {
            Ok(Some(t)) => stored_offsets(&t, topic).map_err(|e| e.to_string())?,
            Ok(None) => PartitionOffsets::new(),
            Err(e) => return Err(e.to_string()),
        };
        Ok(self.held.lock().unwrap_or_else(|e| e.into_inner()).start(stored))
    }

    fn on_offset_lost(&self, _topic: &str) -> OffsetLostPolicy {
        self.on_offset_lost
    }
}
