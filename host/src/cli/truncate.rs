//! `k2-ingest truncate`: empty a topic's table and events table, and say where the next consume starts.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use k2_ingest::config::Config;
use k2_ingest::kafka::group::GroupView;
use k2_ingest::rewind::{RestartFrom, execute, plan_truncate};
use k2_ingest::sink::catalog::TableCatalog;

use super::Output;
use super::rewind::print_plan;

/// Empty a topic's table (and its events table); the next consume starts per --restart-from.
///
/// The table's current snapshot is unset, so it reads as empty; its history and data files
/// stay until the old snapshots are expired. Needs --confirm with the table's name, and an
/// empty group: stop every consume of the group first. Without --execute only the plan is
/// printed.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  k2-ingest truncate --config k2.toml --topic market.trades.raw --confirm market.trades --execute"
)]
pub struct TruncateArgs {
    /// The config file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,

    /// The topic whose table to empty (must be listed under [[topics]] in the config).
    #[arg(long, short)]
    topic: String,

    /// Where the next consume starts.
    #[arg(long, value_enum, default_value_t)]
    restart_from: RestartFrom,

    /// The table's name (`market.trades` or `trades`), typed out to confirm the truncate.
    #[arg(long, value_name = "TABLE")]
    confirm: Option<String>,

    /// Carry out the plan; without this flag nothing changes.
    #[arg(long)]
    execute: bool,

    /// How to print the plan.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(args: TruncateArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let topic = config.topic(&args.topic)?;
    let catalog = TableCatalog::open(&config.catalog).await?;
    let table = catalog.ident(&topic.table_name()).to_string();
    if args.execute {
        match &args.confirm {
            Some(c) if *c == table || *c == topic.table_name() => {}
            Some(c) => bail!("--confirm {c} does not name table {table}; nothing changed"),
            None => bail!("truncating {table} deletes its rows: add --confirm {table}; nothing changed"),
        }
    }
    let kafka = GroupView::open(&config.kafka)?;
    let plan = plan_truncate(topic, &catalog, &kafka, args.restart_from).await?;
    if args.execute {
        execute(topic, &catalog, &kafka, &plan).await.with_context(|| format!("truncating {table}"))?;
    }
    print_plan(&plan, args.execute, args.output);
    Ok(())
}
