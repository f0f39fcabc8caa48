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
    /// Files under the table's `data/`, `metadata/` and `k2-state/` folders that no snapshot,
    /// metadata file or validator state references (left by a crash, or by a writer that
    /// gave up) are deleted once older than this, in milliseconds. The window is what keeps
    /// a file another writer has written but not yet committed: a file waiting longer than
    /// this for its commit would be deleted (a writer stalled, its broker unreachable, the
    /// store's clock ahead of this one). Default 259200000 (3 days, Iceberg's own); more than
    /// `commit.interval_ms` + `commit.retry_timeout_ms` (what a commit of this config waits in
    /// the usual case; not a bound), and a run warns below a day.
    #[serde(default = "default_orphan_min_age_ms")]
    pub orphan_min_age_ms: u64,
    /// The least time between two orphan sweeps of a consume run, in milliseconds: a sweep
    /// lists every file under the table's folders, so it runs less often than the rest of
    /// maintenance (at the run's first maintenance, then at most this often); 0 never
    /// sweeps inside `consume` (`k2-ingest maintain` still does, unless `--no-orphans`). Default 86400000 (1 day).
    #[serde(default = "default_orphan_sweep_interval_ms")]
    pub orphan_sweep_interval_ms: u64,
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
fn default_orphan_min_age_ms() -> u64 {
    259_200_000
}
fn default_orphan_sweep_interval_ms() -> u64 {
    86_400_000
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            interval_ms: default_interval_ms(),
            snapshot_max_age_ms: default_snapshot_max_age_ms(),
            max_snapshots: default_max_snapshots(),
            orphan_min_age_ms: default_orphan_min_age_ms(),
            orphan_sweep_interval_ms: default_orphan_sweep_interval_ms(),
        }
    }
}

impl MaintenanceConfig {
    /// `commit_wait_ms`: the longest a data file of this config waits for its commit.
    pub(super) fn validate(&self, commit_wait_ms: u64) -> Result<(), String> {
        if self.max_snapshots == 0 {
            return Err("maintenance.max_snapshots = 0: must be at least 1".into());
        }
        if self.snapshot_max_age_ms == 0 {
            return Err("maintenance.snapshot_max_age_ms = 0: must be at least 1".into());
        }
        if self.orphan_min_age_ms <= commit_wait_ms {
            return Err(format!(
                "maintenance.orphan_min_age_ms = {}: must be more than commit.interval_ms + commit.retry_timeout_ms \
                 ({commit_wait_ms}), or a file waiting for its commit would be deleted (3 days is Iceberg's default)",
                self.orphan_min_age_ms
            ));
        }
        Ok(())
    }
}
