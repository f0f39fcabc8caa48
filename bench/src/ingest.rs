//! End-to-end throughput: a bare rdkafka consumer (the ceiling) against k2-ingest with and without validators.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use k2_ingest::config::{CatalogConfig, Config};
use k2_ingest::sink::catalog::TableCatalog;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use serde_json::Value;

const TOPIC_PREFIX: &str = "bench.trades";

/// What every end-to-end benchmark runs and against which broker.
#[derive(Debug, Args)]
pub struct Binaries {
    /// The k2-ingest binary to measure (a release build).
    #[arg(long, default_value = "target/release/k2-ingest")]
    pub k2_bin: PathBuf,
    /// The sample generator that produces the dataset.
    #[arg(long, default_value = "target/release/k2-sample")]
    pub sample_bin: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long, env = "K2_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    bin: Binaries,
    /// Records in the dataset; produced once per (count, partitions, seed) and reused.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Partitions of the dataset's topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Seed of the generated trades.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Rounds; each round measures the three runs back to back, figures are medians.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Folder of the results (latest.json, latest.md) and of the runs' warehouses.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// The validator component of the trades topic.
    #[arg(long, default_value = "guest/target/wasm32-wasip2/release/k2_trades_validator.wasm")]
    module: PathBuf,
    /// The trades schema.
    #[arg(long, default_value = "schemas/trade.avsc")]
    schema: PathBuf,
}

/// What one run cost, measured from outside the process (wait4's rusage).
#[derive(Debug, Clone, Serialize)]
struct Run {
    records: u64,
    bytes: u64,
    wall_secs: f64,
    cpu_secs: f64,
    peak_rss_mib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<TableFigures>,
}

#[derive(Debug, Clone, Serialize)]
struct TableFigures {
    rows: u64,
    data_files: u64,
    mean_data_file_mib: f64,
    snapshots: u64,
}

#[derive(Debug, Serialize)]
struct Figures {
    records_per_sec: f64,
    mb_per_sec: f64,
    cpu_secs_per_million: f64,
    peak_rss_mib: f64,
    #[serde(flatten)]
    run: Run,
}

impl Figures {
    fn of(run: Run) -> Self {
        Figures {
            records_per_sec: run.records as f64 / run.wall_secs,
            mb_per_sec: run.bytes as f64 / 1e6 / run.wall_secs,
            cpu_secs_per_million: run.cpu_secs / (run.records as f64 / 1e6),
            peak_rss_mib: run.peak_rss_mib,
            run,
        }
    }
}

pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    ensure!(
        args.bin.k2_bin.is_file(),
        "k2-ingest binary {} not found: build it in release first",
        args.bin.k2_bin.display()
    );
    ensure!(
        args.bin.sample_bin.is_file(),
        "k2-sample binary {} not found: build it in release first",
        args.bin.sample_bin.display()
    );
    let topic = format!("{TOPIC_PREFIX}.{}.p{}.s{}", args.records, args.partitions, args.seed);
    let work = args.out.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let work = std::path::absolute(&work)?;
    let base = write_config(&args, &work, &topic, "base", true)?;
    ensure_dataset(&args, &base, &topic)?;
    // The ceiling counts the dataset's bytes; the k2-ingest runs share its figure.
    let mut bytes = None;
    let mut ceilings = Vec::new();
    let mut validated = Vec::new();
    let mut plain = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {}/{}: ceiling", round + 1, args.rounds);
        let ceiling = measure(
            Command::new(std::env::current_exe()?).args([
                "ceiling",
                "--bootstrap",
                &args.bin.bootstrap,
                "--topic",
                &topic,
            ]),
            args.records,
            None,
        )?;
        bytes = Some(ceiling.bytes);
        ceilings.push(ceiling);
        for (validate, runs) in [(true, &mut validated), (false, &mut plain)] {
            let name = format!("{}-r{round}", if validate { "validated" } else { "plain" });
            eprintln!("round {}/{}: k2-ingest {name}", round + 1, args.rounds);
            let config = write_config(&args, &work, &topic, &name, validate)?;
            let mut run = measure(
                Command::new(&args.bin.k2_bin).args(["consume", "--config"]).arg(&config).args([
                    "--topic",
                    &topic,
                    "--max-messages",
                    &args.records.to_string(),
                    "--output",
                    "json",
                    "--progress",
                    "off",
                ]),
                args.records,
                bytes,
            )?;
            run.table = Some(table_figures(&config)?);
            runs.push(run);
        }
    }
    let bytes = bytes.unwrap_or(0);
    let (a, b, c) = (median(ceilings), median(validated), median(plain));
    let a = Figures::of(a);
    let b = Figures::of(b);
    let c = Figures::of(c);
    let report = serde_json::json!({
        "dataset": { "topic": topic, "records": args.records, "partitions": args.partitions, "seed": args.seed,
                     "bytes": bytes, "mean_record_bytes": bytes as f64 / args.records as f64 },
        "rounds": args.rounds,
        "machine": machine(),
        "ceiling": a,
        "k2_ingest_validated": b,
        "k2_ingest_unvalidated": c,
        "ratio_vs_ceiling": b.records_per_sec / a.records_per_sec,
        "ratio_vs_unvalidated": b.records_per_sec / c.records_per_sec,
    });
    let json_path = args.out.join("latest.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let table = markdown(&a, &b, &c, &report);
    std::fs::write(args.out.join("latest.md"), &table)?;
    println!("{table}");
    println!("written {} and latest.md", json_path.display());
    Ok(())
}

/// `k2-bench ceiling`: reads every partition of a topic from the start to its high
/// watermark with a bare rdkafka consumer and counts messages and bytes; nothing else.
#[derive(Debug, Args)]
pub struct CeilingArgs {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
}

pub fn ceiling(args: CeilingArgs) -> anyhow::Result<()> {
    let (count, bytes) = read_all(&args.bootstrap, &args.topic)?;
    println!("{}", serde_json::json!({ "consumed": count, "bytes": bytes }));
    Ok(())
}

/// Every message of `topic` below the high watermarks: (messages, key + value bytes).
fn read_all(bootstrap: &str, topic: &str) -> anyhow::Result<(u64, u64)> {
    // The same fetch settings k2-ingest's consumer runs with by default, so the ceiling is
    // what the broker gives a consumer tuned alike on this machine.
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "k2-bench-ceiling")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in k2_ingest::kafka::consumer::FETCH_DEFAULTS {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create()?;
    let marks = watermarks(&consumer, topic)?;
    ensure!(!marks.is_empty(), "topic {topic} has no partitions");
    let mut assign = TopicPartitionList::new();
    let mut left = 0i64;
    for (p, low, high) in marks {
        assign.add_partition_offset(topic, p, Offset::Offset(low))?;
        left += high - low;
    }
    consumer.assign(&assign)?;
    let (mut count, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while left > 0 {
        ensure!(Instant::now() < deadline, "{topic}: {left} messages did not arrive in 600 s");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                count += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as u64;
                left -= 1;
            }
            Some(Err(e)) => bail!("{topic}: {e}"),
            None => {}
        }
    }
    Ok((count, bytes))
}

/// (partition, low, high) of every partition of `topic`; none if the topic does not exist.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut out = Vec::new();
    for p in meta.topics().iter().flat_map(|t| t.partitions()).filter(|p| p.error().is_none()) {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        out.push((p.id(), low, high));
    }
    Ok(out)
}

/// Produces the dataset unless the topic already holds exactly it.
fn ensure_dataset(args: &IngestArgs, config: &Path, topic: &str) -> anyhow::Result<()> {
    ensure_topic(&args.bin.bootstrap, &args.bin.sample_bin, config, topic, args.records, args.partitions, args.seed)
}

/// Produces `records` trades into `topic` with `sample_bin`, unless it already holds exactly them.
pub fn ensure_topic(
    bootstrap: &str,
    sample_bin: &Path,
    config: &Path,
    topic: &str,
    records: u64,
    partitions: u32,
    seed: u64,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let held: i64 = watermarks(&consumer, topic)?.iter().map(|(_, low, high)| high - low).sum();
    if held == records as i64 {
        eprintln!("dataset: {topic} already holds {held} records");
        return Ok(());
    }
    ensure!(held == 0, "{topic} holds {held} records, not {records}: delete the topic or change --seed");
    ensure!(sample_bin.is_file(), "k2-sample binary {} not found: build it in release first", sample_bin.display());
    eprintln!("dataset: producing {records} records into {topic}");
    let status = Command::new(sample_bin)
        .arg("--config")
        .arg(config)
        .args(["--topic", topic, "--count", &records.to_string()])
        .args(["--partitions", &partitions.to_string(), "--seed", &seed.to_string()])
        .args(["--symbols", "500", "--output", "json"])
        .stdout(Stdio::null())
        .status()?;
    ensure!(status.success(), "{} failed ({status})", sample_bin.display());
    Ok(())
}

/// A config of its own per run: fresh SQLite catalog and warehouse, fresh group, default
/// commit settings (what the file-size target is about), validator on or off.
fn write_config(args: &IngestArgs, work: &Path, topic: &str, name: &str, validate: bool) -> anyhow::Result<PathBuf> {
    let dir = work.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let abs = |p: &Path| std::path::absolute(p).map(|p| p.display().to_string());
    let validator =
        if validate { format!("[topics.validator]\nmodule = \"{}\"\n", abs(&args.module)?) } else { String::new() };
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "k2-bench-{name}-{nonce}"

[catalog]
type = "sql"
database = "catalog.db"
warehouse = "warehouse"

[[topics]]
name = "{topic}"
table = "trades"
schema = "{schema}"
{validator}"#,
        bootstrap = args.bin.bootstrap,
        nonce = std::process::id(),
        schema = abs(&args.schema)?,
    );
    let path = dir.join("k2.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs `cmd` to completion and reads its wall time, CPU time and peak RSS.
/// `bytes` is the dataset's size; `None` takes it from the run's summary (the ceiling's).
fn measure(cmd: &mut Command, records: u64, bytes: Option<u64>) -> anyhow::Result<Run> {
    let started = Instant::now();
    // Warnings and errors only: the runs' per-commit lines would bury the table.
    let child =
        cmd.env("K2_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("starting a run")?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out)?;
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct wait4 fills in; `pid` is our own child, reaped once here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    ensure!(reaped == pid, "wait4 failed: {}", std::io::Error::last_os_error());
    ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "run exited with status {status}: {out}");
    let summary: Value =
        serde_json::from_str(out.trim()).with_context(|| format!("reading the run's summary {out:?}"))?;
    let consumed = summary["consumed"].as_u64().context("summary without `consumed`")?;
    ensure!(consumed == records, "the run consumed {consumed} records, expected {records}");
    let bytes = bytes.or(summary["bytes"].as_u64()).context("no byte count: the ceiling's summary lacks `bytes`")?;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Run {
        records,
        bytes,
        wall_secs: wall,
        cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        table: None,
    })
}

/// Rows, data files and snapshots of the run's table, read from its metadata.
fn table_figures(config: &Path) -> anyhow::Result<TableFigures> {
    let config = Config::load(config)?;
    ensure!(matches!(config.catalog, CatalogConfig::Sql(_)));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let catalog = TableCatalog::open(&config.catalog).await?;
        let table = catalog.load("trades").await?.context("the run created no table")?;
        let meta = table.metadata();
        let summary = meta.current_snapshot().map(|s| s.summary().additional_properties.clone()).unwrap_or_default();
        let num = |k: &str| summary.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let files = num("total-data-files");
        Ok(TableFigures {
            rows: num("total-records"),
            data_files: files,
            mean_data_file_mib: if files == 0 {
                0.0
            } else {
                num("total-files-size") as f64 / files as f64 / (1 << 20) as f64
            },
            snapshots: meta.snapshots().count() as u64,
        })
    })
}

/// The run with the median wall time.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.wall_secs.total_cmp(&b.wall_secs));
    runs.swap_remove(runs.len() / 2)
}

pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu,
        "note": "broker, ingester and this harness share the machine",
    })
}

fn markdown(a: &Figures, b: &Figures, c: &Figures, report: &Value) -> String {
    let runs = [
        ("a. ceiling (rdkafka, count only)", a),
        ("b. k2-ingest, WASM validators", b),
        ("c. k2-ingest, no validation", c),
    ];
    let rows: Vec<String> = runs
        .iter()
        .map(|(name, f)| {
            let t = f.run.table.as_ref();
            format!(
                "| {name} | {:.0} | {:.1} | {:.2} | {:.0} | {} | {} | {} |",
                f.records_per_sec,
                f.mb_per_sec,
                f.cpu_secs_per_million,
                f.peak_rss_mib,
                t.map_or("–".into(), |t| t.data_files.to_string()),
                t.map_or("–".into(), |t| format!("{:.1}", t.mean_data_file_mib)),
                t.map_or("–".into(), |t| t.snapshots.to_string()),
            )
        })
        .collect();
    let ds = &report["dataset"];
    format!(
        "{} records ({:.0} bytes each on average, {} partitions), {} round(s), {} CPUs\n\n\
         | run | records/s | MB/s | CPU s / M records | peak RSS MiB | data files | mean file MiB | snapshots |\n\
         |---|---|---|---|---|---|---|---|\n{}\n\n\
         b/a (ratio_vs_ceiling) = {:.2}; b/c = {:.2}\n",
        ds["records"],
        ds["mean_record_bytes"].as_f64().unwrap_or(0.0),
        ds["partitions"],
        report["rounds"],
        report["machine"]["cpus"],
        rows.join("\n"),
        report["ratio_vs_ceiling"].as_f64().unwrap_or(0.0),
        report["ratio_vs_unvalidated"].as_f64().unwrap_or(0.0),
    )
}
