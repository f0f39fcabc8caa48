//! Growth over many commits: commit latency, metadata size, manifests, data files and RSS at commit #10, #100, #1,000, #2,000.
//!
//! An ingester runs for months and commits every minute; what a single commit costs at the
//! start says little about what it costs after thousands. This runs one `consume` that
//! commits every `--records-per-commit` records and samples the process and the table's
//! files as the commits go by.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Args;
use k2_ingest::config::Config;
use k2_ingest::sink::catalog::TableCatalog;
use serde::Serialize;
use serde_json::Value;

use crate::ingest::{Binaries, ensure_topic, machine};

/// Commits at which the figures are sampled (those up to `--commits`, and the last).
const CHECKPOINTS: [u64; 4] = [10, 100, 1_000, 2_000];
/// Commits whose latencies make one checkpoint's percentiles: those just before it.
const WINDOW: u64 = 50;

#[derive(Debug, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    bin: Binaries,
    /// Commits to make. `make bench` runs 300; the figures the maintenance targets are about
    /// need 2,000 or more (`make bench SOAK_COMMITS=2000`, a few minutes more).
    #[arg(long, default_value_t = 300)]
    commits: u64,
    /// Records per commit (`commit.max_records` and `pipeline.batch_records`).
    #[arg(long, default_value_t = 100)]
    records_per_commit: u64,
    /// Snapshots maintenance keeps (`maintenance.max_snapshots`), maintaining every
    /// `--maintenance-interval-ms`. 0 turns maintenance off: the growth without it.
    #[arg(long, default_value_t = 100)]
    max_snapshots: usize,
    /// `maintenance.interval_ms` of the run. The soak commits about 50 times a second, so 1 s
    /// is about 50 commits between runs: what the defaults give in production (a commit a
    /// minute, maintenance hourly: 60). At 10 s a 2,000-commit run maintains 4 times and
    /// carries up to 500 snapshots between runs.
    #[arg(long, default_value_t = 1_000)]
    maintenance_interval_ms: u64,
    /// Seed of the generated trades.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Folder of the results (soak.json, soak.md) and of the run's warehouse.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// The trades schema.
    #[arg(long, default_value = "schemas/trade.avsc")]
    schema: PathBuf,
}

/// The figures at one commit.
#[derive(Debug, Clone, Serialize)]
struct Checkpoint {
    commit: u64,
    /// Over the commits just before this one (at most [`WINDOW`]), in whole milliseconds as
    /// the run logs them; with 50 commits the p99 is their maximum.
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// The newest `*.metadata.json`: what every commit rewrites.
    metadata_file_kib: f64,
    /// Everything under the table's `metadata/` folder.
    metadata_folder_mib: f64,
    metadata_folder_files: u64,
    /// Manifests the snapshot of this commit lists (read after the run).
    manifests: Option<u64>,
    data_files: u64,
    mean_data_file_kib: f64,
    rss_mib: f64,
}

pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    ensure!(
        args.bin.k2_bin.is_file(),
        "k2-ingest binary {} not found: build it in release first",
        args.bin.k2_bin.display()
    );
    ensure!(args.commits >= 10, "--commits must be at least 10");
    let records = args.commits * args.records_per_commit;
    let topic = format!("bench.soak.{records}.s{}", args.seed);
    let dir = std::path::absolute(args.out.join("work").join("soak"))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let config = write_config(&args, &dir, &topic)?;
    ensure_topic(&args.bin.bootstrap, &args.bin.sample_bin, &config, &topic, records, 1, args.seed)?;

    eprintln!("soak: {} commits of {} records", args.commits, args.records_per_commit);
    let started = Instant::now();
    let mut child = Command::new(&args.bin.k2_bin)
        .args(["consume", "--config"])
        .arg(&config)
        .args(["--topic", &topic, "--max-messages", &records.to_string(), "--output", "json", "--progress", "off"])
        // The per-commit lines, in text, are what this reads.
        .env("K2_LOG", "info")
        .env("K2_LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the run")?;
    let pid = child.id();
    let stderr = child.stderr.take().expect("piped");
    let warehouse = dir.join("warehouse");
    let mut latencies: Vec<f64> = Vec::new();
    let mut checkpoints = Vec::new();
    let read = (|| {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            if !line.contains(" committed ") {
                continue;
            }
            let Some(ms) = field(&line, "duration_ms=").and_then(|v| v.parse::<f64>().ok()) else { continue };
            latencies.push(ms);
            let n = latencies.len() as u64;
            if CHECKPOINTS.contains(&n) || n == args.commits {
                checkpoints.push(sample(n, &latencies, &warehouse, pid)?);
            }
        }
        anyhow::Ok(())
    })();
    if let Err(e) = read {
        // Not left running into the next soak's folder.
        child.kill().ok();
        child.wait().ok();
        return Err(e);
    }
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "the run failed ({})", output.status);
    ensure!(
        latencies.len() as u64 == args.commits,
        "the run made {} commits, not {}: the checkpoints would not be the commits they name",
        latencies.len(),
        args.commits
    );
    let summary: Value = serde_json::from_slice(&output.stdout).context("reading the run's summary")?;
    let wall = started.elapsed().as_secs_f64();
    checkpoints.dedup_by_key(|c| c.commit);
    add_manifest_counts(&config, &mut checkpoints)?;

    let first = checkpoints.first().map_or(0.0, |c| c.latency_p50_ms);
    let last = checkpoints.last().map_or(0.0, |c| c.latency_p50_ms);
    let report = serde_json::json!({
        "dataset": { "topic": topic, "records": records, "records_per_commit": args.records_per_commit },
        "commits": latencies.len(),
        "wall_secs": wall,
        "machine": machine(),
        "checkpoints": checkpoints,
        "commit_latency_growth": if first > 0.0 { last / first } else { 0.0 },
        "consumed": summary["consumed"],
        "maintenance": {
            "max_snapshots": (args.max_snapshots > 0).then_some(args.max_snapshots),
            "interval_ms": args.maintenance_interval_ms,
            "runs": summary["maintenance_runs"],
            "snapshots_expired": summary["snapshots_expired"],
            "files_deleted": summary["files_deleted"],
        },
    });
    std::fs::create_dir_all(&args.out)?;
    let json_path = args.out.join("soak.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let table = markdown(&checkpoints, &report);
    std::fs::write(args.out.join("soak.md"), &table)?;
    println!("{table}");
    println!("written {} and soak.md", json_path.display());
    // The warehouse of a long soak is large (that is what it measures); it is not kept.
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The value after `key` in a log line, up to the next space.
fn field<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let rest = &line[line.find(key)? + key.len()..];
    Some(rest.split_whitespace().next().unwrap_or(rest))
}

fn sample(commit: u64, latencies: &[f64], warehouse: &Path, pid: u32) -> anyhow::Result<Checkpoint> {
    // First: at the last commit the process is about to exit.
    let rss_mib = rss_kib(pid).unwrap_or(0) as f64 / 1024.0;
    let from = latencies.len().saturating_sub(WINDOW as usize);
    let mut window = latencies[from..].to_vec();
    window.sort_by(f64::total_cmp);
    let rank = |q: f64| window[((q * window.len() as f64).ceil() as usize).clamp(1, window.len()) - 1];
    let table = table_dir(warehouse).context("no table folder under the warehouse")?;
    let (mut meta_bytes, mut meta_files, mut newest) = (0u64, 0u64, (String::new(), 0u64));
    for e in std::fs::read_dir(table.join("metadata"))? {
        let e = e?;
        let (name, len) = (e.file_name().to_string_lossy().into_owned(), e.metadata()?.len());
        meta_bytes += len;
        meta_files += 1;
        // `NNNNN-<uuid>.metadata.json`: the version prefix orders them.
        if name.ends_with(".metadata.json") && name > newest.0 {
            newest = (name, len);
        }
    }
    let (mut data_files, mut data_bytes) = (0u64, 0u64);
    walk(&table.join("data"), &mut |p, len| {
        if p.extension().is_some_and(|e| e == "parquet") {
            data_files += 1;
            data_bytes += len;
        }
    })?;
    Ok(Checkpoint {
        commit,
        latency_p50_ms: rank(0.5),
        latency_p99_ms: rank(0.99),
        metadata_file_kib: newest.1 as f64 / 1024.0,
        metadata_folder_mib: meta_bytes as f64 / (1 << 20) as f64,
        metadata_folder_files: meta_files,
        manifests: None,
        data_files,
        mean_data_file_kib: if data_files == 0 { 0.0 } else { data_bytes as f64 / data_files as f64 / 1024.0 },
        rss_mib,
    })
}

/// The one table's folder: the directory under the warehouse that holds `metadata/`.
fn table_dir(warehouse: &Path) -> Option<PathBuf> {
    let mut stack = vec![warehouse.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if dir.join("metadata").is_dir() {
            return Some(dir);
        }
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    None
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, u64)) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            walk(&e.path(), f)?;
        } else {
            f(&e.path(), meta.len());
        }
    }
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The manifests each checkpoint's snapshot lists: the k-th snapshot of the table's log.
fn add_manifest_counts(config: &Path, checkpoints: &mut [Checkpoint]) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let catalog = TableCatalog::open(&config.catalog).await?;
        let table = catalog.load("trades").await?.context("the run created no table")?;
        let meta = table.metadata();
        // Commit n made the snapshot of sequence number n; those maintenance expired are gone.
        for c in checkpoints.iter_mut() {
            if let Some(s) = meta.snapshots().find(|s| s.sequence_number() == c.commit as i64) {
                let list = table.manifest_list_reader(s).load().await?;
                c.manifests = Some(list.entries().len() as u64);
            }
        }
        anyhow::Ok(())
    })
}

/// SQLite catalog, one partition, a commit every `records_per_commit` records and no
/// validator: what grows is the table, not the work per record.
fn write_config(args: &SoakArgs, dir: &Path, topic: &str) -> anyhow::Result<PathBuf> {
    let schema = std::path::absolute(&args.schema)?;
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "k2-bench-soak-{nonce}"

[catalog]
type = "sql"
database = "catalog.db"
warehouse = "warehouse"

[pipeline]
batch_records = {n}

[commit]
max_records = {n}

[maintenance]
enabled = {maintain}
interval_ms = {interval}
max_snapshots = {keep}

[[topics]]
name = "{topic}"
table = "trades"
schema = "{schema}"
"#,
        bootstrap = args.bin.bootstrap,
        nonce = std::process::id(),
        n = args.records_per_commit,
        schema = schema.display(),
        maintain = args.max_snapshots > 0,
        interval = args.maintenance_interval_ms,
        keep = args.max_snapshots.max(1),
    );
    let path = dir.join("k2.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn markdown(checkpoints: &[Checkpoint], report: &Value) -> String {
    let rows: Vec<String> = checkpoints
        .iter()
        .map(|c| {
            format!(
                "| {} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {:.1} | {:.0} |",
                c.commit,
                c.latency_p50_ms,
                c.latency_p99_ms,
                c.metadata_file_kib,
                c.metadata_folder_mib,
                c.metadata_folder_files,
                c.manifests.map_or("–".into(), |m| m.to_string()),
                c.data_files,
                c.mean_data_file_kib,
                c.rss_mib,
            )
        })
        .collect();
    format!(
        "soak: {} commits of {} records, {:.0} s, maintenance: {}\n\n\
         | commit # | latency p50 ms | p99 ms | metadata.json KiB | metadata/ MiB | metadata/ files | manifests | data files | mean data file KiB | RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{}\n\n\
         commit_latency_growth (p50 at the last checkpoint ÷ p50 at #10) = {:.2}\n",
        report["commits"],
        report["dataset"]["records_per_commit"],
        report["wall_secs"].as_f64().unwrap_or(0.0),
        match report["maintenance"]["max_snapshots"].as_u64() {
            Some(keep) => format!(
                "{keep} snapshots kept, every {} ms ({} runs, {} snapshots expired, {} files deleted)",
                report["maintenance"]["interval_ms"],
                report["maintenance"]["runs"],
                report["maintenance"]["snapshots_expired"],
                report["maintenance"]["files_deleted"]
            ),
            None => "off".to_string(),
        },
        rows.join("\n"),
        report["commit_latency_growth"].as_f64().unwrap_or(0.0),
    )
}
