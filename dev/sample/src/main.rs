//! `k2-sample`: write generated market data, with injected anomalies, to a topic of a k2-ingest config.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use k2_ingest::config::{Config, Framing};
use k2_ingest::decode::avro::confluent_frame;
use k2_ingest::kafka::producer::{ensure_topic, producer};
use k2_ingest::schema::mapping::load_avsc;
use k2_sample::{Injected, SampleGenerator, SampleKind, SampleMark, SamplePlan};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use serde::Serialize;
use serde_json::json;

/// Messages in flight before waiting for delivery reports.
const IN_FLIGHT: usize = 20_000;

/// Produce generated trades or quotes (by the topic's schema) keyed by symbol, with
/// per-(exchange, symbol) sequence numbers, and inject anomalies at seeded positions.
///
/// Every symbol's first record is ordinary; anomalies are placed after those baselines.
/// A gap skips one sequence number; a duplicate repeats the symbol's previous record;
/// a malformed body is a record cut in half; an invalid record has a negative price
/// (trades) or bid above ask (quotes) and takes no sequence number; an out-of-order record
/// carries the number before the symbol's latest; a reset starts the symbol again at 1.
#[derive(Debug, Parser)]
#[command(
    name = "k2-sample",
    version,
    after_help = "Example:\n  k2-sample --config k2.example.toml --topic market.trades.raw \\\n      --count 10000 --partitions 3 --gaps 5 --duplicates 5 --malformed 5 --output json"
)]
struct ProduceSampleArgs {
    /// The config file (TOML); the topic's schema and framing come from it.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,

    /// The topic to write to (must be listed under [[topics]] in the config).
    #[arg(long, short)]
    topic: String,

    /// Messages to produce, anomalies included.
    #[arg(long, short = 'n')]
    count: usize,

    /// Partitions of the topic, if it has to be created.
    #[arg(long, default_value_t = 3)]
    partitions: i32,

    /// Distinct symbols.
    #[arg(long, default_value_t = 50)]
    symbols: usize,

    /// Seed of the generator: the same seed gives the same records and positions.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Records whose sequence number skips one.
    #[arg(long, default_value_t = 0)]
    gaps: usize,

    /// Records sent twice.
    #[arg(long, default_value_t = 0)]
    duplicates: usize,

    /// Bodies that do not decode.
    #[arg(long, default_value_t = 0)]
    malformed: usize,

    /// Records the validator must reject.
    #[arg(long, default_value_t = 0)]
    invalid: usize,

    /// Late records: the sequence number before the symbol's latest.
    #[arg(long, default_value_t = 0)]
    out_of_order: usize,

    /// Sequences starting again at 1, as in a new session.
    #[arg(long, default_value_t = 0)]
    resets: usize,

    /// Exchange timestamp of the first record, microseconds since the epoch
    /// [default: now minus one millisecond per message, so none is in the future].
    #[arg(long)]
    start_micros: Option<i64>,

    /// Write every message (partition, offset, mark, key, record) as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// Which messages the manifest lists: `all`, or only `anomalies` (for millions of
    /// messages, where the ordinary ones are implied by the partitions' offsets).
    #[arg(long, value_enum, default_value_t = ManifestMarks::All)]
    manifest_marks: ManifestMarks,

    /// How to print what was produced.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// How the command prints what it produced on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Lines for a person.
    #[default]
    Human,
    /// Exactly one JSON object.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ManifestMarks {
    All,
    Anomalies,
}

#[derive(Debug, Serialize)]
struct ProduceSummary {
    topic: String,
    produced: u64,
    gaps: usize,
    duplicates: usize,
    malformed: usize,
    invalid: usize,
    out_of_order: usize,
    resets: usize,
    /// Injected positions: message indices in production order.
    positions: Injected,
    /// Messages per partition.
    partitions: BTreeMap<i32, u64>,
    framing: &'static str,
    seed: u64,
    duration_secs: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = ProduceSampleArgs::parse();
    // Topic creation is logged by k2-ingest's Kafka helpers; K2_LOG filters as it does there.
    let filter = tracing_subscriber::EnvFilter::try_from_env("K2_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: ProduceSampleArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = Config::load(&args.config)?;
    let topic = config.topic(&args.topic)?;
    let Some(schema_path) = &topic.schema else {
        bail!("topic {}: k2-sample needs topics[].schema (the Trade or Quote schema file)", topic.name);
    };
    let schema = load_avsc(schema_path)?;
    let Some(kind) = SampleKind::of_schema(&schema) else {
        bail!("topic {}: k2-sample generates only the Trade and Quote schemas of schemas/", topic.name);
    };
    // Confluent-framed topics get the id that maps to the table's own schema file.
    let schema_id =
        match topic.framing {
            Framing::Plain => None,
            Framing::Confluent => Some(
                topic
                    .schema_ids
                    .iter()
                    .find(|(_, path)| *path == schema_path)
                    .and_then(|(id, _)| id.parse::<u32>().ok())
                    .with_context(|| {
                        format!("topic {}: no schema_ids entry maps to {}", topic.name, schema_path.display())
                    })?,
            ),
        };
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
    let plan = SamplePlan {
        count: args.count,
        symbols: args.symbols,
        seed: args.seed,
        gaps: args.gaps,
        duplicates: args.duplicates,
        malformed: args.malformed,
        invalid: args.invalid,
        out_of_order: args.out_of_order,
        resets: args.resets,
        start_micros: args.start_micros.unwrap_or(now_us - args.count as i64 * 1_000 - 1_000_000),
    };
    let generator = SampleGenerator::new(plan, kind, &schema).map_err(anyhow::Error::msg)?;
    let positions = generator.injected();

    ensure_topic(&config.kafka, &topic.name, args.partitions).await?;
    let producer = producer(&config.kafka)?;
    let mut manifest = match &args.manifest {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating manifest {}", path.display()))?,
        )),
        None => None,
    };

    let only_anomalies = args.manifest_marks == ManifestMarks::Anomalies;
    let mut in_flight: VecDeque<(usize, SampleMark, String, serde_json::Value, DeliveryFuture)> = VecDeque::new();
    let mut per_partition: BTreeMap<i32, u64> = BTreeMap::new();
    let mut produced = 0u64;
    for (i, msg) in generator.enumerate() {
        let body = match schema_id {
            Some(id) => confluent_frame(id, &msg.body),
            None => msg.body,
        };
        // A header of our own, so the dead-letter tests can see original headers carried over.
        let index = i.to_string();
        let headers = OwnedHeaders::new().insert(Header { key: SAMPLE_INDEX_HEADER, value: Some(&index) });
        let mut record = FutureRecord::to(&topic.name).key(&msg.key).payload(&body).headers(headers);
        let future = loop {
            match producer.send_result(record) {
                Ok(f) => break f,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    match in_flight.pop_front() {
                        Some(done) => {
                            produced += deliver(done, &mut manifest, only_anomalies, &mut per_partition).await?
                        }
                        None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => bail!("producing message {i} to {}: {e}", topic.name),
            }
        };
        in_flight.push_back((i, msg.mark, msg.key, msg.record, future));
        if in_flight.len() >= IN_FLIGHT {
            let done = in_flight.pop_front().expect("non-empty");
            produced += deliver(done, &mut manifest, only_anomalies, &mut per_partition).await?;
        }
    }
    while let Some(done) = in_flight.pop_front() {
        produced += deliver(done, &mut manifest, only_anomalies, &mut per_partition).await?;
    }
    if let Some(m) = manifest.as_mut() {
        m.flush().context("writing the manifest")?;
    }

    let summary = ProduceSummary {
        topic: topic.name.clone(),
        produced,
        gaps: positions.gaps.len(),
        duplicates: positions.duplicates.len(),
        malformed: positions.malformed.len(),
        invalid: positions.invalid.len(),
        out_of_order: positions.out_of_order.len(),
        resets: positions.resets.len(),
        positions,
        partitions: per_partition,
        framing: if schema_id.is_some() { "confluent" } else { "plain" },
        seed: args.seed,
        duration_secs: started.elapsed().as_secs_f64(),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&summary)?),
        Output::Human => {
            println!(
                "produced {} messages to {} ({} framing) in {:.1} s",
                summary.produced, summary.topic, summary.framing, summary.duration_secs
            );
            println!(
                "injected: {} gaps, {} duplicates, {} malformed, {} invalid, {} out of order, {} resets",
                summary.gaps,
                summary.duplicates,
                summary.malformed,
                summary.invalid,
                summary.out_of_order,
                summary.resets
            );
            let parts: Vec<String> = summary.partitions.iter().map(|(p, n)| format!("{p}: {n}")).collect();
            println!("per partition: {}", parts.join(", "));
        }
    }
    Ok(())
}

/// Header carrying the message's index in the generated sequence.
const SAMPLE_INDEX_HEADER: &str = "sample.index";

/// Waits for one delivery report; writes its manifest line. Returns 1 (one message produced).
async fn deliver(
    (i, mark, key, record, future): (usize, SampleMark, String, serde_json::Value, DeliveryFuture),
    manifest: &mut Option<std::io::BufWriter<std::fs::File>>,
    only_anomalies: bool,
    per_partition: &mut BTreeMap<i32, u64>,
) -> anyhow::Result<u64> {
    let delivery = future.await.with_context(|| format!("message {i}: delivery report lost"))?;
    let (partition, offset) = match delivery {
        Ok(d) => (d.partition, d.offset),
        Err((e, _)) => bail!("message {i} was not delivered: {e}"),
    };
    *per_partition.entry(partition).or_default() += 1;
    if let Some(m) = manifest.as_mut().filter(|_| !(only_anomalies && mark == SampleMark::Ok)) {
        let line =
            json!({"i": i, "partition": partition, "offset": offset, "mark": mark, "key": key, "record": record});
        writeln!(m, "{line}").context("writing the manifest")?;
    }
    Ok(1)
}
