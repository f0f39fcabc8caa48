//! `k2-ingest status`: per topic, where the table stands against the group and the broker.

use std::path::PathBuf;

use clap::Args;
use k2_ingest::config::Config;
use k2_ingest::kafka::group::GroupView;
use k2_ingest::sink::catalog::TableCatalog;
use k2_ingest::status::{TopicStatus, rfc3339_ms, topic_status};

use super::Output;

/// Show each topic's offsets in the table, the group and the broker, the lag, the table's
/// last snapshot and its recent sequence events. Reads only; safe while consumers run.
///
/// The lag is what the table does not hold yet: the high watermark minus the offset stored
/// in the table (where the next consume starts). The group's offset is shown for
/// comparison; k2-ingest commits it after the table, so it can trail the table briefly.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  k2-ingest status --config k2.example.toml --output json")]
pub struct StatusArgs {
    /// The config file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,

    /// Only this topic (repeatable) [default: every topic in the config].
    #[arg(long, short)]
    topic: Vec<String>,

    /// How many of the most recent sequence events to list per topic.
    #[arg(long, value_name = "N", default_value_t = 5)]
    events: usize,

    /// How to print the status.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    for t in &args.topic {
        config.topic(t)?;
    }
    let catalog = TableCatalog::open(&config.catalog).await?;
    let kafka = GroupView::open(&config.kafka)?;
    let mut statuses = Vec::new();
    for topic in config.topics.iter().filter(|t| args.topic.is_empty() || args.topic.contains(&t.name)) {
        statuses.push(topic_status(topic, &catalog, &kafka, args.events, config.maintenance.orphan_min_age_ms).await?);
    }
    match args.output {
        Output::Json => println!("{}", serde_json::json!({ "topics": statuses })),
        Output::Human => statuses.iter().for_each(print_human),
    }
    Ok(())
}

fn print_human(s: &TopicStatus) {
    println!("topic {}  →  table {}  (group {})", s.topic, s.table, s.group);
    if !s.topic_exists {
        println!("  the broker does not know this topic");
    }
    if !s.table_exists {
        println!("  the table does not exist yet (the first consume creates it)");
    }
    if s.topic_recreated {
        println!(
            "  the topic was deleted and created again: its id is {}, the table's offsets were read from {}; \
             the next consume stops on it (`truncate --restart-from earliest` starts the table over)",
            s.topic_id.as_deref().unwrap_or_default(),
            s.table_topic_id.as_deref().unwrap_or_default()
        );
    }
    if !s.partitions.is_empty() {
        println!(
            "  {:>9}  {:>12}  {:>12}  {:>12}  {:>12}  {:>10}",
            "partition", "table", "group", "low", "high", "lag"
        );
        let show = |o: Option<i64>| o.map_or("-".to_string(), |o| o.to_string());
        for p in &s.partitions {
            println!(
                "  {:>9}  {:>12}  {:>12}  {:>12}  {:>12}  {:>10}",
                p.partition,
                show(p.table_offset),
                show(p.group_offset),
                p.low_watermark,
                p.high_watermark,
                p.lag
            );
        }
        println!("  total lag {}", s.total_lag);
        for p in &s.partitions {
            if p.deleted_unread > 0 {
                println!(
                    "  partition {}: {} records ({}..{}) were deleted from the log before they were ingested; \
                     the next consume stops on them unless on_offset_lost = \"skip\"",
                    p.partition,
                    p.deleted_unread,
                    p.table_offset.unwrap_or_default(),
                    p.low_watermark
                );
            }
            if !p.lost_ranges.is_empty() {
                let ranges: Vec<String> = p.lost_ranges.iter().map(|[f, t]| format!("{f}..{t}")).collect();
                let n: i64 = p.lost_ranges.iter().map(|[f, t]| t - f).sum();
                println!(
                    "  partition {}: {n} records lost to retention and skipped (on_offset_lost = \"skip\"): {}",
                    p.partition,
                    ranges.join(", ")
                );
            }
        }
    }
    match &s.last_snapshot {
        Some(snap) => {
            let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
            println!(
                "  last snapshot {} at {} ({}): +{} records, +{} files, +{} bytes; {} records in {} files in all",
                snap.snapshot_id,
                snap.committed_at,
                snap.operation,
                n(snap.added_records),
                n(snap.added_files),
                n(snap.added_bytes),
                n(snap.total_records),
                n(snap.total_files)
            );
        }
        None if s.table_exists => println!("  no snapshot yet"),
        None => {}
    }
    if let Some(h) = &s.health {
        let mib = |b: u64| b as f64 / 1048576.0;
        println!(
            "  health: {} snapshots (oldest {}), {} manifests, {} data files ({:.1} MiB; {} under 8 MiB; smallest {:.2} MiB, largest {:.1} MiB)",
            h.snapshots,
            h.oldest_snapshot_at.as_deref().unwrap_or("-"),
            h.manifests,
            h.data_files,
            mib(h.data_bytes),
            h.small_files,
            mib(h.smallest_file_bytes.unwrap_or(0)),
            mib(h.largest_file_bytes.unwrap_or(0)),
        );
        match (h.orphan_files, &h.orphans_not_counted) {
            (Some(n), _) => println!(
                "  orphans: {n} files ({:.1} MiB) nothing references, older than maintenance.orphan_min_age_ms",
                mib(h.orphan_bytes.unwrap_or(0))
            ),
            (None, Some(why)) => println!("  orphans: not counted ({why})"),
            (None, None) => {}
        }
        match (&h.last_maintenance_at, h.last_maintenance_expired) {
            (Some(at), Some(n)) => println!("  last maintenance that expired snapshots: {at}, {n} expired"),
            _ => println!("  no maintenance has expired snapshots yet"),
        }
    }
    if let Some(events) = &s.events_table {
        let kinds: Vec<String> = s.events_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("  sequence events in {events}: {}", if kinds.is_empty() { "none".into() } else { kinds.join(", ") });
        for e in &s.recent_events {
            println!(
                "    {}  {} at {}/{}  key {}  expected {} received {} missing {}",
                rfc3339_ms(e.detected_at_us / 1000),
                e.kind,
                e.partition,
                e.offset,
                e.key,
                e.expected,
                e.received,
                e.missing
            );
        }
    }
    if let Some(d) = &s.dead_letters {
        println!("  dead letters retained in {}: {}", d.topic, d.retained);
    }
}
