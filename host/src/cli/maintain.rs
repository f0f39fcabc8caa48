//! `k2-ingest maintain`: expire a topic's old snapshots, delete the files only they referenced and sweep orphan files, now.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use k2_ingest::config::Config;
use k2_ingest::maintenance::{self, Report};
use k2_ingest::sink::catalog::TableCatalog;

use super::Output;

/// Maintain a topic's table and its events table now, as `consume` does between commits.
///
/// Expires the snapshots `[maintenance]` of the config selects (older than
/// `snapshot_max_age_ms`, or past the newest `max_snapshots`; never the current one, its
/// history back to the newest holding k2-ingest's offsets, or a branch or tag head), then
/// deletes the manifest lists, manifests, data files and validator state only they
/// referenced, then sweeps orphans: files under the table's data, metadata and k2-state
/// folders that nothing the table holds references, older than `orphan_min_age_ms` (what a
/// crash leaves). Safe beside a running consume: an expiry built on a version the consume has
/// since moved past is refused (and left for the next run); a consume's commit on top of an
/// expiry simply lands; a file written for a commit not yet made is younger than the window.
/// --dry-run lists what would go and changes nothing.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  k2-ingest maintain --config k2.toml --topic market.trades.raw --dry-run")]
pub struct MaintainArgs {
    /// The config file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,

    /// The topic whose tables to maintain (must be listed under [[topics]] in the config).
    #[arg(long, short)]
    topic: String,

    /// List the snapshots and files that would go; change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Expire and delete what only expired snapshots referenced, but sweep no orphans.
    #[arg(long)]
    no_orphans: bool,

    /// How to print what was done.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(args: MaintainArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let topic = config.topic(&args.topic)?;
    let catalog = TableCatalog::open(&config.catalog).await?;
    let mut reports = Vec::new();
    // The events table only if it exists: maintaining must not create one.
    for name in [topic.table_name(), topic.events_table_name()] {
        let Some(table) = catalog.load(&name).await? else { continue };
        let plan = maintenance::Plan { dry_run: args.dry_run, sweep_orphans: !args.no_orphans };
        let (_, report) = maintenance::run(&catalog, &table, &config.maintenance, plan)
            .await
            .with_context(|| format!("maintaining {}", catalog.ident(&name)))?;
        reports.push(report);
    }
    if reports.is_empty() {
        anyhow::bail!(
            "topic {} has no table yet ({}): nothing to maintain",
            topic.name,
            catalog.ident(&topic.table_name())
        );
    }
    match args.output {
        Output::Json => println!("{}", serde_json::json!({ "topic": topic.name, "tables": reports })),
        Output::Human => reports.iter().for_each(print_human),
    }
    Ok(())
}

fn print_human(r: &Report) {
    let (expire, delete) = if r.dry_run { ("would expire", "would delete") } else { ("expired", "deleted") };
    println!("{}: {} snapshots", r.table, r.snapshots_before);
    print_expiry(r, expire, delete);
    print_orphans(r, delete);
}

fn print_expiry(r: &Report, expire: &str, delete: &str) {
    if let Some(why) = &r.skipped {
        println!("  nothing expired: {why}");
        return;
    }
    println!("  {expire} {} snapshots{}", r.snapshots_expired.len(), ids(&r.snapshots_expired));
    let mb = r.files.iter().filter_map(|f| f.bytes).sum::<u64>() as f64 / 1048576.0;
    println!("  {delete} {} files no kept snapshot references ({mb:.1} MiB of them sized)", r.files.len());
    if r.dry_run {
        for f in &r.files {
            let kind =
                serde_json::to_value(f.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            println!("    {kind:<16} {}", f.path);
        }
    } else if r.files_not_deleted > 0 {
        println!("  {} could not be deleted (left as orphans; see the log)", r.files_not_deleted);
    }
}

fn print_orphans(r: &Report, delete: &str) {
    if let Some(why) = &r.orphans_skipped {
        println!("  orphans not swept: {why}");
    }
    if let Some(error) = &r.orphans_failed {
        println!("  orphan sweep failed: {error}");
    }
    let Some(sweep) = &r.orphans else { return };
    let (files, bytes) = match r.dry_run {
        true => (sweep.orphans.len() as u64, sweep.orphans.iter().map(|o| o.bytes).sum::<u64>()),
        false => (r.orphans_deleted(), sweep.bytes_deleted),
    };
    println!("  {delete} {files} orphan files ({:.1} MiB) nothing references", bytes as f64 / 1048576.0);
    if r.dry_run {
        for o in &sweep.orphans {
            println!("    {:<16} {}", "orphan", o.path);
        }
    } else if sweep.not_deleted > 0 {
        println!("  {} could not be deleted (see the log)", sweep.not_deleted);
    }
    if sweep.left_for_next > 0 {
        println!("  {} more orphans are left for the next sweep (at most 10,000 a run)", sweep.left_for_next);
    }
    if sweep.recent > 0 {
        println!(
            "  left {} unreferenced files younger than the window (written for a commit to come, or recent)",
            sweep.recent
        );
    }
}

fn ids(ids: &[i64]) -> String {
    match ids {
        [] => String::new(),
        [one] => format!(" ({one})"),
        [first, .., last] => format!(" ({first} … {last})"),
    }
}
