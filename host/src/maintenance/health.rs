//! A table's health as `status` shows it: history length, manifests, data files and how small they are, orphan files, the last maintenance run.

use iceberg::table::Table;
use serde::Serialize;

use crate::error::{Error, Result};

/// Data files under this size count as small: compaction's target (Java's default
/// `write.target-file-size-bytes` is 512 MiB; a file under 8 MiB costs a reader more to open
/// than to read).
pub const SMALL_FILE_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, Default, Serialize)]
pub struct TableHealth {
    pub snapshots: usize,
    /// RFC 3339, UTC: how far back time travel and `rewind --to-snapshot` reach.
    pub oldest_snapshot_at: Option<String>,
    /// Manifests the current snapshot lists: what a scan opens.
    pub manifests: usize,
    /// Live data files of the current snapshot.
    pub data_files: u64,
    pub data_bytes: u64,
    pub smallest_file_bytes: Option<u64>,
    pub largest_file_bytes: Option<u64>,
    /// Of the data files, those under [`SMALL_FILE_BYTES`].
    pub small_files: u64,
    /// Files under the table's folders nothing references, older than the orphan window: what
    /// the next sweep deletes. `None` when they could not be counted (see `orphans_not_counted`).
    pub orphan_files: Option<u64>,
    pub orphan_bytes: Option<u64>,
    pub orphans_not_counted: Option<String>,
    /// When maintenance last expired snapshots (RFC 3339, UTC), and how many.
    pub last_maintenance_at: Option<String>,
    pub last_maintenance_expired: Option<u64>,
}

impl TableHealth {
    /// Reads the current snapshot's manifests (what a scan plans from), and for the orphans
    /// (older than `orphan_min_age_ms`) every snapshot's and a listing of the table's folders.
    pub async fn of(table: &Table, orphan_min_age_ms: u64) -> Result<Self> {
        let metadata = table.metadata();
        let mut health = TableHealth {
            snapshots: metadata.snapshots().count(),
            oldest_snapshot_at: metadata.snapshots().map(|s| s.timestamp_ms()).min().map(crate::status::rfc3339_ms),
            ..Default::default()
        };
        if let Some(run) = super::LastRun::of(table) {
            health.last_maintenance_at = Some(crate::status::rfc3339_ms(run.at_ms));
            health.last_maintenance_expired = Some(run.snapshots_expired);
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let counted = match super::sweepable(table) {
            Ok(()) => super::orphans::sweep(table, orphan_min_age_ms, now_ms, true).await,
            Err(why) => Ok(Err(format!("never swept: {why}"))),
        };
        match counted {
            Ok(Ok(sweep)) => {
                health.orphan_files = Some(sweep.orphans.len() as u64 + sweep.left_for_next);
                health.orphan_bytes =
                    Some(sweep.orphans.iter().map(|o| o.bytes).sum::<u64>() + sweep.left_for_next_bytes);
            }
            Ok(Err(why)) => health.orphans_not_counted = Some(why),
            // Status shows what it can: a folder it cannot list leaves the count out.
            Err(e) => health.orphans_not_counted = Some(e.to_string()),
        }
        let Some(current) = metadata.current_snapshot() else { return Ok(health) };
        let err = |context: String| {
            let table = table.identifier().to_string();
            move |source| Error::Iceberg { table, context, source }
        };
        let list = table.manifest_list_reader(current).load().await.map_err(err("reading the manifest list".into()))?;
        health.manifests = list.entries().len();
        for m in list.entries() {
            let manifest =
                m.load_manifest(table.file_io()).await.map_err(err(format!("reading manifest {}", m.manifest_path)))?;
            for e in manifest
                .entries()
                .iter()
                .filter(|e| e.is_alive() && e.content_type() == iceberg::spec::DataContentType::Data)
            {
                let bytes = e.file_size_in_bytes();
                health.data_files += 1;
                health.data_bytes += bytes;
                health.small_files += u64::from(bytes < SMALL_FILE_BYTES);
                health.smallest_file_bytes = Some(health.smallest_file_bytes.map_or(bytes, |b| b.min(bytes)));
                health.largest_file_bytes = Some(health.largest_file_bytes.map_or(bytes, |b| b.max(bytes)));
            }
        }
        Ok(health)
    }
}
