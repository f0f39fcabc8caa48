//! What a `consume` run did: the summary it prints.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sandbox::EventKind;

/// What a run did, as printed by `consume`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub topic: String,
    pub table: String,
    /// Messages read from Kafka.
    pub consumed: u64,
    /// Records written to the table.
    pub written: u64,
    /// Records the validator rejected.
    pub rejected: u64,
    /// Messages whose body did not decode.
    pub undecodable: u64,
    /// Rejections by reason code.
    pub rejected_by_code: BTreeMap<String, u64>,
    /// Records sent to the dead-letter topic (rejected, undecodable, duplicates under
    /// `on_duplicate = "dlq"`), all acknowledged before the offsets past them were committed.
    pub dead_lettered: u64,
    /// The dead-letter topic, when the topic's policies use one.
    pub dlq_topic: Option<String>,
    /// Records reported as sequence duplicates and left out of the table (`on_duplicate`
    /// `drop` or `dlq`).
    pub duplicates_set_aside: u64,
    /// The sequence-events table, for a topic with a validator.
    pub events_table: Option<String>,
    /// Rows added to the events table.
    pub events_recorded: u64,
    /// Sequence events by kind (`gap`, `duplicate`, `out_of_order`, `reset`).
    pub sequence_events: BTreeMap<EventKind, u64>,
    /// Validator instances discarded after a failed call and built again.
    pub validator_restarts: u64,
    /// Records rejected because the validator failed on them (`isolate` policy); also
    /// counted in `rejected` under `validator-failed`.
    pub validator_isolated: u64,
    /// Iceberg commits made.
    pub commits: u64,
    /// Commits that found another writer's snapshot first and were resolved.
    pub commit_conflicts: u64,
    /// Times the consumer lost the broker and waited for it to come back.
    pub broker_outages: u64,
    /// Commit attempts that failed for a transient reason (catalog or store unreachable,
    /// timeout, 5xx, locked database) and were tried again.
    pub commit_retries: u64,
    /// Written records dropped before commit because another writer committed them first;
    /// their partitions were read again from the table's offsets.
    pub dropped_already_committed: u64,
    /// Records deleted from the log before they were read, skipped under
    /// `on_offset_lost = "skip"` (under the default `fail` the run stops instead).
    pub records_lost: u64,
    /// Partition → the `[from, to)` offset ranges of those records.
    pub lost_ranges: crate::sink::lost::LostRanges,
    /// Maintenance runs (snapshot expiry and cleanup) over the run's tables.
    pub maintenance_runs: u64,
    /// Snapshots those runs expired.
    pub snapshots_expired: u64,
    /// Files deleted by those runs: the ones only expired snapshots referenced, and orphans.
    pub files_deleted: u64,
    /// Of those, orphans: files no snapshot or metadata file referenced (a crash's leftovers).
    pub orphans_deleted: u64,
    /// The table's current snapshot after the run.
    pub snapshot_id: Option<i64>,
    /// Partition → next offset committed for the group, after the run.
    pub offsets: BTreeMap<i32, i64>,
    /// Partition → messages left behind the high watermark, after the run.
    pub lag: BTreeMap<i32, i64>,
    pub duration_secs: f64,
}
