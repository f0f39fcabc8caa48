//! `k2-ingest rewind`: roll a topic's table, events table and group offsets back together, so the next consume re-reads.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use k2_ingest::config::Config;
use k2_ingest::kafka::group::GroupView;
use k2_ingest::rewind::{RewindPlan, RewindTarget, execute, plan_rewind};
use k2_ingest::sink::catalog::TableCatalog;
use k2_ingest::sink::offsets::PartitionOffsets;

use super::Output;

/// Rewind a topic: the next consume reads again from the target, and the table holds
/// exactly what came before it.
///
/// The table goes back to the newest snapshot of its history that stores no offset past
/// the target (an Iceberg rollback: data files are neither rewritten nor deleted, and the
/// validator state of that snapshot is restored on the next consume); the events table
/// follows, and the group's offsets are set to where the table now stands. Where no
/// snapshot ends exactly at the target, the table goes back further and the records in
/// between are read again too: nothing is lost or duplicated.
///
/// Without --execute this only prints the plan. Executing needs the group to be empty:
/// stop every consume of the group first.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("target").required(true)),
    after_help = "Examples:\n  k2-ingest rewind --config k2.toml --topic market.trades.raw --to-timestamp 2026-11-26T09:30:00Z\n  \
                  k2-ingest rewind --config k2.toml --topic market.trades.raw --to-offset 0:1200,1:900 --execute\n  \
                  k2-ingest rewind --config k2.toml --topic market.trades.raw --to-table --execute"
)]
pub struct RewindArgs {
    /// The config file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,

    /// The topic to rewind (must be listed under [[topics]] in the config).
    #[arg(long, short)]
    topic: String,

    /// Back to the start of every partition's log: re-ingest everything still in the topic.
    #[arg(long, group = "target")]
    to_earliest: bool,

    /// Back to the first message at or after TIME (RFC 3339, e.g. 2026-11-26T09:30:00Z, or
    /// milliseconds since the epoch).
    #[arg(long, group = "target", value_name = "TIME")]
    to_timestamp: Option<String>,

    /// Back to these offsets: one offset for every partition (`1200`), or `PARTITION:OFFSET`
    /// pairs (`0:1200,1:900`; partitions not named stay unless the rollback takes them back).
    #[arg(long, group = "target", value_name = "OFFSETS")]
    to_offset: Option<String>,

    /// Back to the table as of this snapshot (see `status` or the table's history).
    #[arg(long, group = "target", value_name = "SNAPSHOT_ID")]
    to_snapshot: Option<i64>,

    /// Leave the table as it is; set the group's offsets to the offsets stored in it
    /// (repairs a group whose offsets were moved by other tools).
    #[arg(long, group = "target")]
    to_table: bool,

    /// Carry out the plan; without this flag nothing changes.
    #[arg(long)]
    execute: bool,

    /// How to print the plan.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(args: RewindArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let topic = config.topic(&args.topic)?;
    let target = target(&args)?;
    let catalog = TableCatalog::open(&config.catalog).await?;
    let kafka = GroupView::open(&config.kafka)?;
    let plan = plan_rewind(topic, &catalog, &kafka, &target).await?;
    if args.execute {
        execute(topic, &catalog, &kafka, &plan).await.with_context(|| format!("rewinding {}", args.topic))?;
    }
    print_plan(&plan, args.execute, args.output);
    Ok(())
}

fn target(args: &RewindArgs) -> anyhow::Result<RewindTarget> {
    if args.to_earliest {
        return Ok(RewindTarget::Earliest);
    }
    if args.to_table {
        return Ok(RewindTarget::Table);
    }
    if let Some(id) = args.to_snapshot {
        return Ok(RewindTarget::Snapshot(id));
    }
    if let Some(t) = &args.to_timestamp {
        let ms = match t.parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => chrono::DateTime::parse_from_rfc3339(t)
                .with_context(|| format!("--to-timestamp {t}: expected RFC 3339 or milliseconds since the epoch"))?
                .timestamp_millis(),
        };
        return Ok(RewindTarget::Timestamp(ms));
    }
    let Some(spec) = &args.to_offset else { bail!("no target given") };
    parse_offsets(spec).with_context(|| format!("--to-offset {spec}"))
}

/// `1200` (every partition) or `0:1200,1:900`.
fn parse_offsets(spec: &str) -> anyhow::Result<RewindTarget> {
    if let Ok(o) = spec.trim().parse::<i64>() {
        anyhow::ensure!(o >= 0, "offsets are not negative");
        return Ok(RewindTarget::OffsetAll(o));
    }
    let mut offsets = PartitionOffsets::new();
    for pair in spec.split(',') {
        let (p, o) = pair.split_once(':').with_context(|| format!("`{pair}` is not PARTITION:OFFSET"))?;
        let (p, o): (i32, i64) = (p.trim().parse()?, o.trim().parse()?);
        anyhow::ensure!(p >= 0 && o >= 0, "`{pair}`: partitions and offsets are not negative");
        anyhow::ensure!(offsets.insert(p, o).is_none(), "partition {p} is named twice");
    }
    Ok(RewindTarget::Offsets(offsets))
}

/// Prints a rewind or truncate plan; shared with `truncate`.
pub fn print_plan(plan: &RewindPlan, executed: bool, output: Output) {
    if output == Output::Json {
        let mut v = serde_json::to_value(plan).unwrap_or_default();
        v["executed"] = executed.into();
        println!("{v}");
        return;
    }
    let snap = |s: Option<i64>| s.map_or("none (empty)".to_string(), |s| s.to_string());
    println!("topic        {}  (group {})", plan.topic, plan.group);
    println!(
        "table        {}: snapshot {} ({} records) → {} ({} records){}",
        plan.table,
        snap(plan.snapshot_before),
        plan.records_before,
        snap(plan.snapshot_after),
        plan.records_after,
        if plan.stores_start { ", then an offsets-only snapshot" } else { "" }
    );
    if let Some(events) = &plan.events_table {
        println!(
            "events       {events}: snapshot {} → {}",
            snap(plan.events_snapshot_before),
            snap(plan.events_snapshot_after)
        );
    }
    println!("partition    requested  group before  next consume starts at");
    for (p, start) in &plan.start {
        let show = |o: Option<&i64>| o.map_or("-".to_string(), |o| o.to_string());
        println!("{p:>9}  {:>11}  {:>12}  {start:>22}", show(plan.requested.get(p)), show(plan.group_before.get(p)));
    }
    for note in &plan.notes {
        println!("note         {note}");
    }
    if !plan.members.is_empty() {
        println!(
            "group        {} active member(s): {}; stop them before executing",
            plan.members.len(),
            plan.members.join(", ")
        );
    }
    if executed {
        println!("done         the next consume reads from the offsets above");
    } else {
        println!("dry run      nothing changed; add --execute to carry this out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spec() {
        assert_eq!(parse_offsets("1200").unwrap(), RewindTarget::OffsetAll(1200));
        assert_eq!(parse_offsets("0:5, 2:7").unwrap(), RewindTarget::Offsets(PartitionOffsets::from([(0, 5), (2, 7)])));
        assert!(parse_offsets("0:5,0:6").is_err());
        assert!(parse_offsets("0-5").is_err());
        assert!(parse_offsets("-1").is_err());
    }
}
