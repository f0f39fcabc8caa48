//! Rewinding or truncating a topic's table: the table, its events table and the group's offsets move back together.
//!
//! The table is the truth about what was ingested: a consume starts every partition at the
//! offsets stored in the table's current snapshot. Moving only the group's offsets would
//! therefore change nothing, and deleting rows without moving the offsets would lose them.
//! So a rewind rolls the table back to the newest snapshot of its history that stores no
//! offset past the target (an Iceberg rollback: no data file is rewritten or deleted),
//! does the same for the events table, and sets the group's offsets to where the table
//! now stands. The next consume reads again exactly what the table no longer holds, and
//! restores each partition's validator state from the snapshot it starts at.

use std::collections::BTreeMap;

use iceberg::spec::Snapshot;
use iceberg::table::Table;
use serde::Serialize;

use crate::config::TopicConfig;
use crate::error::{Error, Result};
use crate::kafka::group::{GroupView, PartitionPosition};
use crate::kafka::topic_id::TopicId;
use crate::sink::catalog::TableCatalog;
use crate::sink::commit::{Append, CommitOutcome, append_with_offsets, new_commit_id};
use crate::sink::lineage::{Lineage, carries_k2};
use crate::sink::offsets::{PartitionOffsets, snapshot_offsets, topic_id_key};
use crate::sink::rollback::set_current_snapshot;
use crate::sink::state::StateFiles;

/// Where to rewind a topic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewindTarget {
    /// The start of each partition's log.
    Earliest,
    /// The first message at or after this time (milliseconds since the epoch).
    Timestamp(i64),
    /// These offsets; partitions not named stay where they are.
    Offsets(PartitionOffsets),
    /// This offset in every partition.
    OffsetAll(i64),
    /// The table as of this snapshot (one of its history).
    Snapshot(i64),
    /// The table unchanged; only the group's offsets are set to the table's.
    Table,
}

/// Where the next consume starts after a truncate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RestartFrom {
    /// Read everything still in the topic again.
    #[default]
    Earliest,
    /// Continue where the table stood: records already ingested are not read again.
    Current,
    /// Skip everything in the topic now: only new records are ingested.
    Latest,
}

/// What a rewind or truncate will do (or did).
#[derive(Debug, Clone, Serialize)]
pub struct RewindPlan {
    pub topic: String,
    pub table: String,
    pub group: String,
    /// Offsets asked for, by partition.
    pub requested: PartitionOffsets,
    pub snapshot_before: Option<i64>,
    /// The current snapshot after the rollback; `None` leaves the table empty.
    pub snapshot_after: Option<i64>,
    pub records_before: u64,
    pub records_after: u64,
    pub events_table: Option<String>,
    pub events_snapshot_before: Option<i64>,
    pub events_snapshot_after: Option<i64>,
    /// Where the next consume starts, by partition; the group's offsets are set to these.
    pub start: PartitionOffsets,
    /// Whether `start` is stored in the table by an offsets-only commit (truncate to
    /// `current` or `latest`), rather than being the offsets the rolled-back table holds.
    pub stores_start: bool,
    /// The group's committed offsets before.
    pub group_before: PartitionOffsets,
    /// Members in the group now: the plan can be carried out only when there are none.
    pub members: Vec<String>,
    /// Facts the operator should read before executing.
    pub notes: Vec<String>,
    /// The topic's id now (see [`crate::kafka::topic_id`]), recorded with the offsets the
    /// plan stores in the table.
    pub topic_id: Option<String>,
}

/// The tables, group and broker state a plan is made from.
struct Current {
    table: Table,
    events: Option<Table>,
    positions: BTreeMap<i32, PartitionPosition>,
    members: Vec<String>,
    topic_id: Option<TopicId>,
}

async fn load(topic: &TopicConfig, catalog: &TableCatalog, kafka: &GroupView) -> Result<Current> {
    let name = topic.table_name();
    let table = catalog.load(&name).await?.ok_or_else(|| Error::Topic {
        topic: topic.name.clone(),
        message: format!("table {} does not exist; there is nothing to roll back", catalog.ident(&name)),
    })?;
    let events = match &topic.validator {
        Some(_) => catalog.load(&topic.events_table_name()).await?,
        None => None,
    };
    let positions = kafka.positions(&topic.name)?;
    if positions.is_empty() {
        return Err(Error::Topic { topic: topic.name.clone(), message: "the broker does not know this topic".into() });
    }
    Ok(Current { table, events, positions, members: kafka.members()?, topic_id: kafka.topic_id(&topic.name)? })
}

impl Current {
    /// A plan that leaves the tables and the group as they are, for a rewind or truncate to
    /// fill in.
    fn unchanged(&self, topic: &str, group: &str) -> RewindPlan {
        let snapshot = self.table.metadata().current_snapshot();
        let events = self.events.as_ref().and_then(|t| t.metadata().current_snapshot()).map(|s| s.snapshot_id());
        RewindPlan {
            topic: topic.to_string(),
            table: self.table.identifier().to_string(),
            group: group.to_string(),
            requested: PartitionOffsets::new(),
            snapshot_before: snapshot.map(|s| s.snapshot_id()),
            snapshot_after: snapshot.map(|s| s.snapshot_id()),
            records_before: snapshot.map_or(0, |s| total_records(s)),
            records_after: snapshot.map_or(0, |s| total_records(s)),
            events_table: self.events.as_ref().map(|t| t.identifier().to_string()),
            events_snapshot_before: events,
            events_snapshot_after: events,
            start: PartitionOffsets::new(),
            stores_start: false,
            group_before: self.positions.iter().filter_map(|(&p, pos)| pos.committed.map(|c| (p, c))).collect(),
            members: self.members.clone(),
            notes: Vec::new(),
            topic_id: self.topic_id.as_ref().map(|id| id.0.clone()),
        }
    }
}

/// Plans a rewind of `topic` to `target`; changes nothing.
pub async fn plan_rewind(
    topic: &TopicConfig,
    catalog: &TableCatalog,
    kafka: &GroupView,
    target: &RewindTarget,
) -> Result<RewindPlan> {
    let cur = load(topic, catalog, kafka).await?;
    let fail = |message: String| Error::Topic { topic: topic.name.clone(), message };
    let partitions: Vec<i32> = cur.positions.keys().copied().collect();
    let history = Lineage::of(&cur.table);
    // A snapshot by another engine stores no offsets; those in effect there are its newest
    // k2-ingest ancestor's.
    let offsets_at = |i: usize| history.offsets_at(i, &topic.name);
    let mut notes = Vec::new();
    let requested: PartitionOffsets = match target {
        RewindTarget::Earliest => cur.positions.iter().map(|(&p, pos)| (p, pos.low)).collect(),
        RewindTarget::Timestamp(ms) => kafka.offsets_for_time(&topic.name, &partitions, *ms)?,
        RewindTarget::OffsetAll(o) => partitions.iter().map(|&p| (p, *o)).collect(),
        RewindTarget::Offsets(offsets) => {
            if let Some(p) = offsets.keys().find(|p| !cur.positions.contains_key(p)) {
                return Err(fail(format!("partition {p} does not exist (the topic has {})", partitions.len())));
            }
            offsets.clone()
        }
        RewindTarget::Snapshot(_) | RewindTarget::Table => PartitionOffsets::new(),
    };
    let after: Option<usize> = match target {
        RewindTarget::Table => (!history.snapshots().is_empty()).then_some(0),
        RewindTarget::Snapshot(id) => {
            Some(history.snapshots().iter().position(|s| s.snapshot_id() == *id).ok_or_else(|| {
                fail(format!("snapshot {id} is not in the history of table {}", cur.table.identifier()))
            })?)
        }
        _ => {
            let mut found = None;
            for i in 0..history.snapshots().len() {
                if at_or_before(&offsets_at(i)?, &requested) {
                    found = Some(i);
                    break;
                }
            }
            // Before the oldest kept snapshot is not "before the first commit" when older ones
            // were expired: going to an empty table would drop what they held for good.
            if found.is_none()
                && history.cut()
                && let Some(oldest) = history.snapshots().last()
            {
                return Err(fail(format!(
                    "the target is older than every snapshot kept: snapshots before {} were expired (see [maintenance]); \
                     rewind to it with --to-snapshot {}, or truncate",
                    oldest.snapshot_id(),
                    oldest.snapshot_id()
                )));
            }
            found
        }
    };
    let table_offsets = after.map(offsets_at).transpose()?.unwrap_or_default();
    let after: Option<&Snapshot> = after.map(|i| history.snapshots()[i]);
    // Going to a snapshot asks for exactly the offsets it stores.
    let requested = match target {
        RewindTarget::Snapshot(_) | RewindTarget::Table => table_offsets.clone(),
        _ => requested,
    };
    let start: PartitionOffsets = cur
        .positions
        .iter()
        .map(|(&p, pos)| {
            let s = table_offsets.get(&p).copied().unwrap_or(pos.low);
            if s < pos.low {
                notes.push(format!(
                    "partition {p}: offsets {s}..{} are past the topic's retention and cannot be read again",
                    pos.low
                ));
            }
            (p, s)
        })
        .collect();
    for (p, &r) in &requested {
        if let Some(&s) = start.get(p).filter(|&&s| s < r) {
            notes.push(format!(
                "partition {p}: no snapshot ends at offset {r}; the table goes back to {s}, so {s}..{r} is read again too"
            ));
        }
    }
    Ok(RewindPlan {
        requested,
        snapshot_after: after.map(|s| s.snapshot_id()),
        records_after: after.map_or(0, total_records),
        events_snapshot_after: events_after(cur.events.as_ref(), &topic.name, after.map(|_| &table_offsets))?,
        start,
        notes,
        ..cur.unchanged(&topic.name, kafka.group())
    })
}

/// Plans emptying `topic`'s table and events table; the next consume starts per `from`.
pub async fn plan_truncate(
    topic: &TopicConfig,
    catalog: &TableCatalog,
    kafka: &GroupView,
    from: RestartFrom,
) -> Result<RewindPlan> {
    let cur = load(topic, catalog, kafka).await?;
    // A truncate interrupted after emptying the table left no current snapshot: the newest
    // one still holds where the table stood, so running it again continues correctly.
    let newest = cur
        .table
        .metadata()
        .snapshots()
        .filter(|s| carries_k2(s))
        .max_by_key(|s| (s.timestamp_ms(), s.sequence_number()));
    let stored = newest.map(|s| snapshot_offsets(s, &topic.name)).unwrap_or_default();
    let stored_id = newest.and_then(|s| s.summary().additional_properties.get(&topic_id_key(&topic.name)));
    if let (RestartFrom::Current, Some(was), Some(now)) = (from, stored_id, &cur.topic_id)
        && *was != now.0
    {
        return Err(Error::Topic {
            topic: topic.name.clone(),
            message: format!(
                "was deleted and created again (its id is {now}, the table's offsets were read from {was}): the \
                 table's offsets say nothing about the new topic, so --restart-from current would skip its records \
                 below them; use earliest or latest"
            ),
        });
    }
    let start: PartitionOffsets = cur
        .positions
        .iter()
        .map(|(&p, pos)| {
            let o = match from {
                RestartFrom::Earliest => pos.low,
                RestartFrom::Current => stored.get(&p).copied().unwrap_or(pos.low),
                RestartFrom::Latest => pos.high,
            };
            (p, o)
        })
        .collect();
    Ok(RewindPlan {
        snapshot_after: None,
        records_after: 0,
        events_snapshot_after: None,
        stores_start: from != RestartFrom::Earliest,
        start,
        notes: vec!["data files stay on disk until the old snapshots are expired".into()],
        ..cur.unchanged(&topic.name, kafka.group())
    })
}

/// Carries out `plan`: rolls back the table, then the events table, then sets the group's
/// offsets. Each step is safe to repeat, so a failed run is finished by running it again.
pub async fn execute(topic: &TopicConfig, catalog: &TableCatalog, kafka: &GroupView, plan: &RewindPlan) -> Result<()> {
    let fail = |message: String| Error::Topic { topic: topic.name.clone(), message };
    let members = kafka.members()?;
    if !members.is_empty() {
        return Err(fail(format!(
            "group {} has {} active member(s) ({}); stop every consume of this group first",
            kafka.group(),
            members.len(),
            members.join(", ")
        )));
    }
    let name = topic.table_name();
    let table = catalog.load(&name).await?.ok_or_else(|| fail(format!("table {} disappeared", plan.table)))?;
    let current = table.metadata().current_snapshot().map(|s| s.snapshot_id());
    if current != plan.snapshot_before {
        return Err(fail(format!("table {} moved since the plan was made; plan again", plan.table)));
    }
    let mut table = if plan.snapshot_after != current {
        let t = set_current_snapshot(catalog, &table, plan.snapshot_after).await?;
        tracing::info!(table = %plan.table, from = ?current, to = ?plan.snapshot_after, "table rolled back");
        t
    } else {
        table
    };
    if plan.events_snapshot_after != plan.events_snapshot_before
        && let Some(events) = catalog.load(&topic.events_table_name()).await?
    {
        set_current_snapshot(catalog, &events, plan.events_snapshot_after).await?;
        tracing::info!(table = %events.identifier(), to = ?plan.events_snapshot_after, "events table rolled back");
    }
    if plan.stores_start {
        let (commit_id, states) = (new_commit_id(), StateFiles::new());
        // Read when the plan was made; `current` offsets were refused there for a recreated topic.
        let topic_id = plan.topic_id.clone().map(TopicId);
        let append = Append {
            topic: &topic.name,
            advanced: &plan.start,
            states: &states,
            lost: &[],
            commit_id: &commit_id,
            topic_id: topic_id.as_ref(),
        };
        match append_with_offsets(catalog, &table, Vec::new(), &append).await? {
            CommitOutcome::Committed(t) => table = t,
            CommitOutcome::Conflict => return Err(fail(format!("table {} moved during the truncate", plan.table))),
        }
        tracing::info!(table = %plan.table, snapshot_id = ?table.metadata().current_snapshot().map(|s| s.snapshot_id()),
            "start offsets stored in the table");
    }
    kafka.commit(&topic.name, &plan.start)?;
    tracing::info!(group = kafka.group(), offsets = %crate::sink::offsets::render(&plan.start), "group offsets set");
    Ok(())
}

/// True if `stored` has no partition past `target` (partitions absent from `target` are not rewound).
fn at_or_before(stored: &PartitionOffsets, target: &PartitionOffsets) -> bool {
    target.iter().all(|(p, t)| stored.get(p).is_none_or(|s| s <= t))
}

/// The newest snapshot of the events table's history whose offsets are all within `data`
/// (the data table's offsets after the rollback; `None`: it is empty).
fn events_after(events: Option<&Table>, topic: &str, data: Option<&PartitionOffsets>) -> Result<Option<i64>> {
    let empty = PartitionOffsets::new();
    let data = data.unwrap_or(&empty);
    let Some(events) = events else { return Ok(None) };
    let history = Lineage::of(events);
    for (i, s) in history.snapshots().iter().enumerate() {
        if history.offsets_at(i, topic)?.iter().all(|(p, o)| data.get(p).is_some_and(|d| o <= d)) {
            return Ok(Some(s.snapshot_id()));
        }
    }
    Ok(None)
}

fn total_records(s: &Snapshot) -> u64 {
    s.summary().additional_properties.get("total-records").and_then(|v| v.parse().ok()).unwrap_or(0)
}
