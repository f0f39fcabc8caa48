//! `[maintenance]`: the table upkeep a consume run does between commits, and `k2-ingest maintain` on demand.

use serde::Deserialize;

/// Old snapshots expired, and the files only they referenced deleted, so a table written
/// for months keeps a bounded history. Never expired: the current snapshot, its history
/// back to the newest snapshot holding k2-ingest's offsets, and the heads of branches and
/// tags. Time travel and `rewind` reach back only as far as the snapshots kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Run maintenance inside `consume`, after a commit: the first commit of a run, then the
    /// first after `interval_ms` has passed. Default true.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The least time between two maintenance runs of a consume run, in milliseconds. Default
    /// 3600000 (1 h).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Snapshots older than this are expired, in milliseconds. Default 432000000 (5 days,
    /// Iceberg's own `history.expire.max-snapshot-age-ms`); at least 1.
    #[serde(default = "default_snapshot_max_age_ms")]
    pub snapshot_max_age_ms: u64,
    /// At most this many snapshots are kept, the newest, however young (plus the ones never
    /// expired). Each commit adds one, and every commit rewrites the whole list in the table's
    /// metadata file. Default 500; at least 1.
    #[serde(default = "default_max_snapshots")]
    pub max_snapshots: usize,
}

fn default_enabled() -> bool {
    true
}
fn default_interval_ms() -> u64 {
    3_600_000
}
fn default_snapshot_max_age_ms() -> u64 {
    432_000_000
}
fn default_max_snapshots() -> usize {
    500
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            interval_ms: default_interval_ms(),
            snapshot_max_age_ms: default_snapshot_max_age_ms(),
            max_snapshots: default_max_snapshots(),
        }
    }
}

impl MaintenanceConfig {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_snapshots == 0 {
            return Err("maintenance.max_snapshots = 0: must be at least 1".into());
        }
        if self.snapshot_max_age_ms == 0 {
            return Err("maintenance.snapshot_max_age_ms = 0: must be at least 1".into());
        }
        Ok(())
    }
}
