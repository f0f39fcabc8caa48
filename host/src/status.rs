//! A topic at a glance: the table's offsets against the group and the broker, the last snapshot, recent sequence events.

use std::collections::BTreeMap;

use iceberg::table::Table;
use serde::Serialize;

use crate::config::TopicConfig;
use crate::error::Result;
use crate::kafka::group::GroupView;
use crate::sink::catalog::TableCatalog;
use crate::sink::events::{StoredEvent, read_events};
use crate::sink::offsets::{k2_summary, stored_offsets, stored_topic_id};

/// What `k2-ingest status` reports for one topic.
#[derive(Debug, Clone, Serialize)]
pub struct TopicStatus {
    pub topic: String,
    pub table: String,
    pub group: String,
    /// False until the first `consume` creates the table.
    pub table_exists: bool,
    /// False if the broker does not know the topic.
    pub topic_exists: bool,
    /// The topic's id as the broker gives it (`None` from brokers before Kafka 2.8).
    pub topic_id: Option<String>,
    /// The id of the topic the table's offsets were read from, as its summary records it.
    pub table_topic_id: Option<String>,
    /// Both ids known and different: the topic was deleted and created again since the table
    /// was last written, and the next `consume` stops on it.
    pub topic_recreated: bool,
    pub partitions: Vec<PartitionStatus>,
    pub last_snapshot: Option<SnapshotStatus>,
    /// The table's history, manifests, data files and last maintenance (none without a table).
    pub health: Option<crate::maintenance::health::TableHealth>,
    /// Messages behind the high watermarks that the table does not hold, over all partitions.
    pub total_lag: i64,
    pub events_table: Option<String>,
    /// Events in the events table by kind.
    pub events_by_kind: BTreeMap<String, u64>,
    /// The most recently detected events, newest first.
    pub recent_events: Vec<StoredEvent>,
    pub dead_letters: Option<DeadLetterStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: i32,
    /// The next offset stored in the table: where the next `consume` starts.
    pub table_offset: Option<i64>,
    /// The group's committed offset (advisory: the table wins).
    pub group_offset: Option<i64>,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// Messages the table does not hold yet: high watermark − table offset (− the log start
    /// when the table has none).
    pub lag: i64,
    /// Records deleted from the log before they were read and skipped
    /// (`on_offset_lost = "skip"`), as `[from, to)` ranges recorded in the table.
    pub lost_ranges: Vec<[i64; 2]>,
    /// Records between the table offset and the log start, deleted unread: the next
    /// `consume` stops on them (or skips them under `on_offset_lost = "skip"`).
    pub deleted_unread: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStatus {
    pub snapshot_id: i64,
    /// RFC 3339, UTC.
    pub committed_at: String,
    pub operation: String,
    pub added_records: Option<u64>,
    pub added_files: Option<u64>,
    pub added_bytes: Option<u64>,
    pub total_records: Option<u64>,
    pub total_files: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterStatus {
    pub topic: String,
    /// Dead letters still in the topic (its retention applies).
    pub retained: i64,
}

/// Reads the status of `topic` from the catalog and the broker; changes nothing.
pub async fn topic_status(
    topic: &TopicConfig,
    catalog: &TableCatalog,
    kafka: &GroupView,
    recent: usize,
    orphan_min_age_ms: u64,
) -> Result<TopicStatus> {
    let table = catalog.load(&topic.table_name()).await?;
    let (stored, lost, table_topic_id) = match &table {
        Some(t) => (
            stored_offsets(t, &topic.name)?,
            crate::sink::lost::recorded(&k2_summary(t)?, &topic.name),
            stored_topic_id(t, &topic.name)?,
        ),
        None => Default::default(),
    };
    // Status reads what it can: a broker that will not describe the topic leaves the id out.
    let topic_id = match kafka.topic_id(&topic.name) {
        Ok(id) => id.map(|id| id.0),
        Err(e) => {
            tracing::debug!(topic = %topic.name, error = %e, "could not read the topic's id");
            None
        }
    };
    let positions = kafka.positions(&topic.name)?;
    let partitions: Vec<PartitionStatus> = positions
        .iter()
        .map(|(&p, pos)| {
            let table_offset = stored.get(&p).copied();
            PartitionStatus {
                partition: p,
                table_offset,
                group_offset: pos.committed,
                low_watermark: pos.low,
                high_watermark: pos.high,
                lag: pos.lag_from(table_offset),
                lost_ranges: lost.get(&p).cloned().unwrap_or_default(),
                deleted_unread: table_offset.map_or(0, |o| (pos.low - o).max(0) as u64),
            }
        })
        .collect();
    let (events_table, mut events) = match &topic.validator {
        Some(_) => {
            let name = topic.events_table_name();
            let events = match catalog.load(&name).await? {
                Some(t) => read_events(&t).await?,
                None => Vec::new(),
            };
            (Some(catalog.ident(&name).to_string()), events)
        }
        None => (None, Vec::new()),
    };
    let mut events_by_kind = BTreeMap::new();
    for e in &events {
        *events_by_kind.entry(e.kind.clone()).or_default() += 1;
    }
    events.sort_by_key(|e| std::cmp::Reverse((e.detected_at_us, e.partition, e.offset)));
    events.truncate(recent);
    let health = match &table {
        Some(t) => Some(crate::maintenance::health::TableHealth::of(t, orphan_min_age_ms).await?),
        None => None,
    };
    let dead_letters = match topic.uses_dlq() {
        true => {
            let dlq = topic.dlq_topic();
            let retained = kafka.watermarks_all(&dlq)?.values().map(|(low, high)| high - low).sum();
            Some(DeadLetterStatus { topic: dlq, retained })
        }
        false => None,
    };
    Ok(TopicStatus {
        topic: topic.name.clone(),
        table: catalog.ident(&topic.table_name()).to_string(),
        group: kafka.group().to_string(),
        table_exists: table.is_some(),
        topic_exists: !positions.is_empty(),
        topic_recreated: matches!((&topic_id, &table_topic_id), (Some(a), Some(b)) if a != b),
        topic_id,
        table_topic_id,
        total_lag: partitions.iter().map(|p| p.lag).sum(),
        partitions,
        last_snapshot: table.as_ref().and_then(last_snapshot),
        health,
        events_table,
        events_by_kind,
        recent_events: events,
        dead_letters,
    })
}

fn last_snapshot(table: &Table) -> Option<SnapshotStatus> {
    let s = table.metadata().current_snapshot()?;
    let props = &s.summary().additional_properties;
    let num = |key: &str| props.get(key).and_then(|v| v.parse().ok());
    Some(SnapshotStatus {
        snapshot_id: s.snapshot_id(),
        committed_at: rfc3339_ms(s.timestamp_ms()),
        operation: s.summary().operation.as_str().to_string(),
        added_records: num("added-records"),
        added_files: num("added-data-files"),
        added_bytes: num("added-files-size"),
        total_records: num("total-records"),
        total_files: num("total-data-files"),
    })
}

/// Milliseconds since the epoch as RFC 3339 UTC, e.g. `2026-11-26T21:09:17.123Z`.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| unix_ms.to_string())
}
