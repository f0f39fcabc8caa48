//! Table upkeep between commits: old snapshots expired, then the files only they referenced deleted.
//!
//! The expiry is one metadata commit (iceberg-rust's expire-snapshots action, given exactly
//! the ids [`retention`] chose) built on the version the caller holds: if another writer —
//! or the ingest of another instance — committed since, the catalog refuses it and nothing
//! happens until the next run, so maintenance never fights a commit. Files are deleted only
//! after the expiry committed, and only those no kept snapshot reaches ([`unreferenced`]);
//! a deletion cut short (a crash) leaves unreferenced files behind, never a live one gone.
//! Such leftovers, and a crash's, are swept later as [`orphans`], once older than a window.

pub mod health;
pub mod listing;
pub mod orphans;
pub mod retention;
pub mod schedule;
pub mod unreferenced;

use std::collections::HashSet;
use std::time::Instant;

use iceberg::ErrorKind;
use iceberg::spec::SnapshotRef;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use serde::Serialize;

use crate::config::MaintenanceConfig;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::sink::catalog::TableCatalog;
use crate::sink::overlay::TableOverlay;
pub use orphans::Sweep;
use retention::{History, Retention, Selection};
pub use unreferenced::{FileKind, Unreferenced};

/// Table property recording the last maintenance run that expired snapshots: when, and how many.
pub const LAST_RUN_PROPERTY: &str = "k2.maintenance.last-run";

impl From<&MaintenanceConfig> for Retention {
    fn from(c: &MaintenanceConfig) -> Self {
        Retention {
            max_age_ms: i64::try_from(c.snapshot_max_age_ms).unwrap_or(i64::MAX),
            max_snapshots: c.max_snapshots,
        }
    }
}

/// What one maintenance run of a table did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub table: String,
    pub dry_run: bool,
    /// Why nothing was expired, when nothing could be.
    pub skipped: Option<String>,
    pub snapshots_before: usize,
    pub snapshots_expired: Vec<i64>,
    /// The files only the expired snapshots referenced: deleted, or to delete.
    pub files: Vec<Unreferenced>,
    /// Of those, the ones whose deletion failed (left as orphans).
    pub files_not_deleted: u64,
    /// Bytes of the deleted files whose size is known (data files, manifests, orphans).
    pub bytes_reclaimed: u64,
    /// The orphan sweep, when one ran.
    pub orphans: Option<Sweep>,
    /// Why the table's orphans were not swept, when a sweep was asked for.
    pub orphans_skipped: Option<String>,
    /// The sweep failed (reading the table or listing its folders) or refused to judge the
    /// table's files (a referenced file not listed, another table inside this one's folders);
    /// nothing was deleted by it. Logged as a warning and counted as a maintenance error.
    pub orphans_failed: Option<String>,
    pub duration_ms: u64,
}

impl Report {
    pub fn files_deleted(&self) -> u64 {
        if self.dry_run {
            return 0;
        }
        self.files.len() as u64 - self.files_not_deleted + self.orphans_deleted()
    }

    /// Orphan files the sweep deleted (none when dry or not swept).
    pub fn orphans_deleted(&self) -> u64 {
        if self.dry_run {
            return 0;
        }
        self.orphans.as_ref().map_or(0, |o| o.orphans.len() as u64 - o.not_deleted)
    }
}

/// What a run does besides expiring snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plan {
    /// Commit and delete nothing; report what would be done.
    pub dry_run: bool,
    /// Also sweep the table's orphan files (see [`orphans`]).
    pub sweep_orphans: bool,
}

/// Maintains `table` as `config` says: expires what [`Retention`] selects, deletes the files
/// only the expired snapshots referenced, then, if `plan` asks, sweeps the orphans. Returns
/// the table as committed (`None` if nothing was committed) and what was done.
pub async fn run(
    catalog: &TableCatalog,
    table: &Table,
    config: &MaintenanceConfig,
    plan: Plan,
) -> Result<(Option<Table>, Report)> {
    let started = Instant::now();
    let (committed, mut report) = expire(catalog, table, config, plan.dry_run).await?;
    if plan.sweep_orphans {
        match sweep_fresh(catalog, table, config, plan.dry_run).await {
            Ok(SweepOutcome::Swept(sweep)) => {
                report.bytes_reclaimed += sweep.bytes_deleted;
                report.orphans = Some(sweep);
            }
            Ok(SweepOutcome::NotSweepable(why)) => report.orphans_skipped = Some(why),
            // A table the sweep may touch but cannot judge: an operator should look.
            Ok(SweepOutcome::Refused(why)) => report.orphans_failed = Some(format!("refused: {why}")),
            // The expiry stands (and its table is returned); the sweep is tried at the next.
            Err(e) => report.orphans_failed = Some(e.to_string()),
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok((committed, report))
}

/// How a sweep ended, short of an error.
enum SweepOutcome {
    Swept(Sweep),
    /// Not a table this sweep touches (gc disabled, not k2-ingest's).
    NotSweepable(String),
    /// A table it touches whose files it cannot judge (see [`orphans::select`]).
    Refused(String),
}

/// Sweeps the table as the catalog holds it now, never the caller's copy: a copy that
/// missed another writer's commits (an events table this instance has not written for days, an
/// expiry `maintain` committed) would take that writer's files for orphans.
async fn sweep_fresh(
    catalog: &TableCatalog,
    table: &Table,
    config: &MaintenanceConfig,
    dry_run: bool,
) -> Result<SweepOutcome> {
    let fresh = catalog.catalog().load_table(table.identifier()).await.map_err(|source| Error::Iceberg {
        table: table.identifier().to_string(),
        context: "loading the table for the orphan sweep".into(),
        source,
    })?;
    if let Err(why) = sweepable(&fresh) {
        return Ok(SweepOutcome::NotSweepable(why));
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    Ok(match orphans::sweep(&fresh, config.orphan_min_age_ms, now_ms, dry_run).await? {
        Ok(sweep) => SweepOutcome::Swept(sweep),
        Err(why) => SweepOutcome::Refused(why),
    })
}

/// Whether `table`'s orphans may be swept: it allows garbage collection, and it is one
/// k2-ingest writes (some snapshot holds its offsets). Any other table is its owner's to clean.
pub fn sweepable(table: &Table) -> std::result::Result<(), String> {
    let gc = table.metadata().table_properties().map(|p| p.gc_enabled).unwrap_or(false);
    if !gc {
        return Err("the table's gc.enabled is false (or its properties could not be read)".into());
    }
    if !table.metadata().snapshots().any(|s| crate::sink::lineage::carries_k2(s)) {
        return Err("no snapshot of the table holds k2-ingest's offsets".into());
    }
    Ok(())
}

/// Expires what [`Retention`] selects, then deletes the files only the expired snapshots
/// referenced. `dry_run` commits and deletes nothing.
async fn expire(
    catalog: &TableCatalog,
    table: &Table,
    config: &MaintenanceConfig,
    dry_run: bool,
) -> Result<(Option<Table>, Report)> {
    let mut report = Report {
        table: table.identifier().to_string(),
        dry_run,
        snapshots_before: table.metadata().snapshots().count(),
        ..Default::default()
    };
    let err = |context: &str| {
        let table = table.identifier().to_string();
        let context = context.to_string();
        move |source| Error::Iceberg { table, context, source }
    };
    let properties = table.metadata().table_properties().map_err(err("reading the table's properties"))?;
    if !properties.gc_enabled {
        report.skipped = Some("the table's gc.enabled is false".into());
        return Ok((None, report));
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ids = match Retention::from(config).select(&History::of(table.metadata()), now_ms) {
        Selection::Expire(ids) => ids,
        Selection::Refused(why) => {
            report.skipped = Some(why);
            return Ok((None, report));
        }
    };
    if ids.is_empty() {
        return Ok((None, report));
    }
    report.snapshots_expired = ids.clone();

    if dry_run {
        let expiring: HashSet<i64> = ids.iter().copied().collect();
        let (expired, kept): (Vec<SnapshotRef>, Vec<SnapshotRef>) =
            table.metadata().snapshots().cloned().partition(|s| expiring.contains(&s.snapshot_id()));
        report.files = unreferenced::find(table, &expired, table, &kept).await?;
        report.bytes_reclaimed = report.files.iter().filter_map(|f| f.bytes).sum();
        return Ok((None, report));
    }

    let tx = Transaction::new(table);
    // An age older than every snapshot: the action's own age rule off, exactly `ids` expire.
    let expire = tx.expire_snapshots().expire_snapshot_ids(ids.iter().copied()).expire_older_than_ms(i64::MIN);
    let tx = expire.apply(tx).map_err(err("preparing the snapshot expiry"))?;
    let last_run = LastRun { at_ms: now_ms, snapshots_expired: ids.len() as u64 }.to_json();
    let tx = tx
        .update_table_properties()
        .set(LAST_RUN_PROPERTY.into(), last_run)
        .apply(tx)
        .map_err(err("recording the maintenance run"))?;
    let committed = match tx.commit(&TableOverlay::pinned(catalog.catalog(), table.clone())).await {
        Ok(committed) => committed,
        Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
            report.skipped = Some("another writer committed first; tried again at the next run".into());
            report.snapshots_expired.clear();
            return Ok((None, report));
        }
        Err(e) => return Err(err("committing the snapshot expiry")(e)),
    };
    if catalog.writes_metadata() {
        crate::sink::metadata_files::delete_dropped(table, &committed).await;
    }
    failpoint::hit("after-expiry-commit");

    let remaining: HashSet<i64> = committed.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    let expired: Vec<SnapshotRef> =
        table.metadata().snapshots().filter(|s| !remaining.contains(&s.snapshot_id())).cloned().collect();
    // Oldest first, as selected; the catalog's answer decides which actually went.
    report.snapshots_expired.retain(|id| !remaining.contains(id));
    let kept: Vec<SnapshotRef> = committed.metadata().snapshots().cloned().collect();
    report.files = unreferenced::find(table, &expired, &committed, &kept).await?;
    for (i, file) in report.files.iter().enumerate() {
        if let Err(e) = committed.file_io().delete(&file.path).await {
            report.files_not_deleted += 1;
            tracing::debug!(table = %report.table, file = %file.path, error = %e, "could not delete a file no snapshot references");
            continue;
        }
        report.bytes_reclaimed += file.bytes.unwrap_or(0);
        if i == 0 {
            failpoint::hit("after-first-unreferenced-delete");
        }
    }
    Ok((Some(committed), report))
}

/// The last maintenance run that expired snapshots of a table, as [`LAST_RUN_PROPERTY`] records it.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct LastRun {
    pub at_ms: i64,
    pub snapshots_expired: u64,
}

impl LastRun {
    /// The run `table` records, if any.
    pub fn of(table: &Table) -> Option<Self> {
        serde_json::from_str(table.metadata().properties().get(LAST_RUN_PROPERTY)?).ok()
    }

    fn to_json(self) -> String {
        serde_json::to_string(&self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
