//! `k2-ingest consume`: ingest one topic into its Iceberg table.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use k2_ingest::config::Config;
use k2_ingest::pipeline::{Pipeline, RunBounds, RunSummary};
use k2_ingest::sandbox::GuestEngine;

use super::Output;
use super::progress::{self, ProgressMode};

/// Consume a topic into its Iceberg table: decode, validate, write, commit.
///
/// Offsets are committed to the group only after the data is committed to the table.
/// Without --follow the run ends when the topic has been idle for
/// pipeline.idle_timeout_ms, or after --max-messages.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  k2-ingest consume --config k2.example.toml --topic market.trades.raw --output json"
)]
pub struct ConsumeArgs {
    /// The config file (TOML).
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,

    /// The topic to consume (must be listed under [[topics]] in the config).
    #[arg(long, short)]
    topic: String,

    /// Stop after this many messages (decodable or not).
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,

    /// Keep running when the topic is idle, until SIGINT/SIGTERM.
    #[arg(long)]
    follow: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 [default: off,
    /// so several instances on one host need no port plan].
    #[arg(long, value_name = "ADDR", env = "K2_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,

    /// How to show progress on stderr while the run goes.
    #[arg(long, value_enum, default_value_t)]
    progress: ProgressMode,

    /// Seconds between progress lines (--progress lines, or auto without a terminal).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    progress_interval: u64,

    /// How to print the run summary.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let m = &config.maintenance;
    if m.enabled && m.orphan_sweep_interval_ms > 0 && m.orphan_min_age_ms < 86_400_000 {
        // The config check covers this config's own commits only; other writers' files are
        // protected by nothing but the window.
        tracing::warn!(
            orphan_min_age_ms = m.orphan_min_age_ms,
            "maintenance.orphan_min_age_ms is under a day: a file another writer (another instance, another engine) holds longer than that for its commit would be deleted as an orphan"
        );
    }
    if let Some(addr) = args.metrics_addr {
        k2_ingest::metrics::serve(addr)?;
    }
    let bounds = RunBounds {
        max_messages: args.max_messages,
        idle_timeout: (!args.follow).then(|| Duration::from_millis(config.pipeline.idle_timeout_ms)),
    };
    let engine = GuestEngine::new(&config.wasm)?;
    let mut pipeline = Pipeline::open(&config, &engine, &args.topic).await?;
    let (tx, rx) = tokio::sync::watch::channel(Default::default());
    pipeline.report_progress(tx);
    let interval = Duration::from_secs(args.progress_interval.max(1));
    let shown = progress::show(
        args.progress,
        bounds.idle_timeout.is_some() || args.max_messages.is_some(),
        args.max_messages,
        interval,
        rx,
    );
    let bound = Duration::from_millis(config.pipeline.shutdown_timeout_ms);
    let summary = pipeline.run(bounds, shutdown(bound)).await.with_context(|| format!("consuming {}", args.topic));
    if let Some(task) = shown {
        let _ = task.await;
    }
    let summary = summary?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
        Output::Human => print_human(&summary),
    }
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM, so the run stops fetching and commits what is
/// consistent; from then on a watchdog exits the process at a second signal or when the
/// commit takes longer than `bound`. Exiting early is safe: offsets move only with the data.
///
/// The signal is awaited by a task of its own, which arms the watchdog itself: the run only
/// looks at the returned future between messages, and a commit or rebalance callback stuck
/// on a hung service must not keep the process from honouring the bound.
fn shutdown(bound: Duration) -> impl std::future::Future<Output = ()> {
    let requested = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = requested.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!(
            bound_ms = bound.as_millis() as u64,
            "signal received: finishing; a second signal exits at once"
        );
        // Stores a permit when the run is not waiting on it right now.
        notify.notify_one();
        tokio::select! {
            _ = signal() => {
                eprintln!("second signal: exiting now; uncommitted records will be read again");
                std::process::exit(130);
            }
            _ = tokio::time::sleep(bound) => {
                eprintln!("error: shutdown took longer than {} ms; exiting; uncommitted records will be read again", bound.as_millis());
                std::process::exit(1);
            }
        }
    });
    async move { requested.notified().await }
}

/// Resolves on SIGINT or SIGTERM.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn print_human(s: &RunSummary) {
    println!("topic        {}", s.topic);
    println!("table        {}", s.table);
    println!("consumed     {}", s.consumed);
    println!("written      {}", s.written);
    println!("rejected     {}{}", s.rejected, by_key(&s.rejected_by_code));
    println!("undecodable  {}", s.undecodable);
    let events: Vec<String> = s.sequence_events.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
    println!("sequence     {}", if events.is_empty() { "no events".to_string() } else { events.join(", ") });
    if s.validator_restarts > 0 {
        println!("validator    {} restarts, {} records isolated", s.validator_restarts, s.validator_isolated);
    }
    println!("commits      {}  (snapshot {})", s.commits, s.snapshot_id.map_or("none".into(), |id| id.to_string()));
    let parts: Vec<String> = s
        .lag
        .iter()
        .map(|(p, lag)| format!("{p}: next {} lag {lag}", s.offsets.get(p).map_or("-".into(), |o| o.to_string())))
        .collect();
    println!("partitions   {}", parts.join("; "));
    let rate = if s.duration_secs > 0.0 { s.consumed as f64 / s.duration_secs } else { 0.0 };
    println!("took         {:.1} s ({rate:.0} msg/s)", s.duration_secs);
}

fn by_key(m: &std::collections::BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("  ({})", parts.join(", "))
}
