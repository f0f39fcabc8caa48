//! `k2-ingest module test`: run a component on sample records (JSON lines or Avro) and print its verdicts.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value;
use clap::Args;
use k2_ingest::config::WasmConfig;
use k2_ingest::decode::columns::{ColumnsBuilder, KafkaMeta};
use k2_ingest::sandbox::{BatchInput, GuestEngine};
use k2_ingest::schema::mapping::{iceberg_schema, load_avsc, record_fields};
use serde_json::json;

use super::records;
use crate::cli::Output;

/// Run a validator component on sample records and print what it rejects and which
/// sequence events it reports, without Kafka or a table.
///
/// Records are read as JSON lines (one object per line, fields by the schema; decimals as
/// strings like "187.25", timestamps as integers in the schema's unit) or as an Avro object
/// container file. Record N is handed to the validator at offset N of partition 0.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  k2-ingest module test guest/target/wasm32-wasip2/release/k2_trades_validator.wasm \\
      --schema schemas/trade.avsc --input schemas/examples/trades.jsonl"
)]
pub struct TestArgs {
    /// The component (.wasm).
    file: PathBuf,

    /// The Avro schema (.avsc) of the records: the topic's table schema.
    #[arg(long)]
    schema: PathBuf,

    /// The records: JSON lines, or an Avro object container file (detected by its header).
    #[arg(long)]
    input: PathBuf,

    /// A setting handed to the validator's `create`, as KEY=VALUE; repeat for more.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,

    /// Records per validator call, as `pipeline.batch_records` in the config.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    batch_records: u64,

    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let schema = load_avsc(&args.schema)?;
    let records = read_records(&args.input, &schema)?;
    let table_schema = iceberg_schema(&schema, &args.schema, false)?;
    let arrow = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(&table_schema)
            .with_context(|| format!("schema {}: converting to arrow", args.schema.display()))?,
    );
    let names: Vec<String> = record_fields(&schema).iter().map(|f| f.name.clone()).collect();
    let fields: Vec<usize> = (0..names.len()).collect();
    let module = GuestEngine::new(&WasmConfig::default())?.load(&args.file)?;
    let mut validator = module.instantiate(&args.settings)?;
    let info = validator.info().clone();

    let mut columns = ColumnsBuilder::new(arrow, &names, "input")?;
    let (mut rejected, mut events, mut batches) = (Vec::new(), Vec::new(), 0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    for (start, chunk) in (0..).step_by(args.batch_records as usize).zip(records.chunks(args.batch_records as usize)) {
        for (i, fields) in chunk.iter().enumerate() {
            let offset = (start + i) as i64;
            columns
                .append(fields.clone(), KafkaMeta { partition: 0, offset, timestamp_ms: None })
                .with_context(|| format!("input {}: record {offset}", args.input.display()))?;
        }
        let batch = columns.finish()?;
        let offsets: Vec<i64> = (start as i64..(start + chunk.len()) as i64).collect();
        let zeros = vec![0; chunk.len()];
        let key_offsets = vec![0u32; chunk.len() + 1];
        let verdict = validator.validate(&BatchInput {
            topic: "input",
            partition: 0,
            records: &batch,
            fields: &fields,
            offsets: &offsets,
            timestamps_us: &zeros,
            key_data: &[],
            key_offsets: &key_offsets,
            now_micros: now,
        })?;
        batches += 1;
        rejected.extend(verdict.rejected.into_iter().map(|r| (start + r.index, r)));
        events.extend(verdict.events.into_iter().map(|e| (start + e.index, e)));
    }

    match args.output {
        Output::Json => {
            let rejected: Vec<_> =
                rejected.iter().map(|(n, r)| json!({"record": n, "code": r.code, "message": r.message})).collect();
            let events: Vec<_> = events
                .iter()
                .map(|(n, e)| {
                    json!({"record": n, "kind": e.kind, "key": e.key, "expected": e.expected,
                           "received": e.received, "missing": e.missing})
                })
                .collect();
            println!(
                "{}",
                json!({"module": info, "records": records.len(), "batches": batches,
                       "accepted": records.len() - rejected.len(), "rejected": rejected, "events": events})
            );
        }
        Output::Human => {
            println!("module    {} {} (k2:ingest@{})", info.name, info.version, info.wit_version);
            println!("input     {}: {} records in {batches} batch(es)", args.input.display(), records.len());
            println!("accepted  {}", records.len() - rejected.len());
            println!("rejected  {}", rejected.len());
            for (n, r) in &rejected {
                println!("  record {n}  {}  {}", r.code, r.message);
            }
            println!("events    {}", events.len());
            for (n, e) in &events {
                println!(
                    "  record {n}  {}  {}  expected {}, received {}, missing {}",
                    e.kind.as_str(),
                    e.key,
                    e.expected,
                    e.received,
                    e.missing
                );
            }
        }
    }
    Ok(())
}

/// The records of `path` in `schema`'s field order: an Avro container file if it starts
/// with the Avro magic, else JSON lines.
fn read_records(path: &Path, schema: &AvroSchema) -> anyhow::Result<Vec<Vec<(String, Value)>>> {
    let open = || std::fs::File::open(path).with_context(|| format!("input {}: cannot open", path.display()));
    let mut magic = [0u8; 4];
    let is_avro = open()?.read(&mut magic).is_ok_and(|n| n == 4 && magic == *b"Obj\x01");
    let mut records = Vec::new();
    if is_avro {
        let reader = apache_avro::Reader::with_schema(schema, BufReader::new(open()?))
            .with_context(|| format!("input {}: not readable with schema", path.display()))?;
        for (n, value) in reader.enumerate() {
            match value.with_context(|| format!("input {}: record {n}", path.display()))? {
                Value::Record(fields) => records.push(fields),
                other => bail!("input {}: record {n} is not a record: {other:?}", path.display()),
            }
        }
    } else {
        for (n, line) in BufReader::new(open()?).lines().enumerate() {
            let line = line.with_context(|| format!("input {}: line {}", path.display(), n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("input {}: line {}", path.display(), n + 1);
            let json: serde_json::Value =
                serde_json::from_str(&line).with_context(|| format!("{}: not JSON (nor an Avro file)", at()))?;
            match records::to_avro(schema, &json) {
                Ok(Value::Record(fields)) => records.push(fields),
                Ok(_) => bail!("{}: not a record", at()),
                Err(e) => bail!("{}: {e}", at()),
            }
        }
    }
    if records.is_empty() {
        bail!("input {}: no records", path.display());
    }
    Ok(records)
}
