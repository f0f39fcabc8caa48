//! `k2-bench validators`: validator throughput as WebAssembly components against the same logic native.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use k2_ingest::config::{Profiler, WasmConfig};
use k2_ingest::sandbox::{GuestEngine, ValidatorInstance, ValidatorModule};
use k2_quotes_validator::Quotes;
use k2_trades_validator::Trades;
use k2_validator_sdk::{FromSettings, KafkaMetadata, Reads, Settings, Validate, Verdict};
use serde::Serialize;

use crate::Output;
use crate::sample_stream::SampleStream;
use crate::sdk_layout::sdk_batch;

/// The target: the component costs at most this many times the native logic…
const TARGET_RATIO: f64 = 1.25;
/// …at batches of at least this many records (the pipeline's default is 1,000).
const TARGET_MIN_BATCH: usize = 1_000;
/// Batches are prepared this many records at a time, outside the timing, so a round of
/// 100,000 batches of one record never holds them all in memory.
const CHUNK_RECORDS: usize = 10_000;

/// Validator throughput: each validator as its WebAssembly component, called the way the
/// pipeline calls it, against the same Rust code compiled natively.
///
/// Data: trades and quotes from k2-ingest's seeded sample generator (mostly valid, with a
/// few gaps, duplicates, malformed bodies and invalid records injected per 10,000), decoded
/// by the pipeline's Avro decoder into Arrow in the table schema, as one partition.
///
/// WebAssembly, timed: `ValidatorInstance::validate` per batch — the host's Arrow-to-WIT
/// layout, the copy into the guest, the guest's work, and the checks of its verdict.
/// Native, timed: `Validate::validate` on the same records already laid out as the SDK's
/// `Batch` (built outside the timing). Each round gives both paths a fresh validator and the
/// same consecutive records, so sequence tracking behaves as in production; both must reach
/// the same rejections and sequence events, or the benchmark fails.
///
/// For each batch size every round covers the same records (`--records`), so batch size 1 means
/// that many calls. WebAssembly and native take turns within a round, every 10,000 records;
/// the table shows medians over the rounds of ns per record and of the per-round ratio. Time
/// is the CPU time of the benchmark's thread (`--clock`), so other processes on a shared
/// machine do not count; the ratio of two paths timed side by side is the figure to trust.
/// Target: WebAssembly ≤ 1.25 × native at batches of 1,000 and more. It is reported, not
/// enforced: the exit code is 0 unless something fails.
///
/// A third path, timed in the same turns, splits the WebAssembly time: the `hostile`
/// component in its do-nothing mode, asking for what the validator reads, costs just the
/// host's part (layout, copy into the guest, call, verdict checks). The table shows it as
/// `host floor`, and the rest of the WebAssembly time, the guest's own work, against native
/// as `guest/native`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  make guest && cargo run --release -p k2-bench -- validators --rounds 9 --output json"
)]
pub struct ValidatorsArgs {
    /// Validators to measure.
    #[arg(long = "validator", value_enum, value_delimiter = ',', default_values_t = [ValidatorKind::Trades, ValidatorKind::Quotes])]
    validators: Vec<ValidatorKind>,

    /// Records per batch; each size is measured separately.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 100, 1_000, 10_000])]
    batch_sizes: Vec<usize>,

    /// Records each path validates per round, at every batch size.
    #[arg(long, default_value_t = 100_000)]
    records: usize,

    /// Measured rounds; the report shows medians over them.
    #[arg(long, default_value_t = 7)]
    rounds: usize,

    /// Rounds run first and not counted (warm caches, allocator and page tables).
    #[arg(long, default_value_t = 1)]
    warmup: usize,

    /// Distinct symbols of the generated data (keys the sequence tracker holds).
    #[arg(long, default_value_t = 500)]
    symbols: usize,

    /// Seed of the sample generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Folder of the validator components (`make guest` builds them), the `hostile` one too.
    #[arg(long, value_name = "DIR", default_value_os_t = repo_path("guest/target/wasm32-wasip2/release"))]
    wasm_dir: PathBuf,

    /// Folder of the Avro schemas of the topics.
    #[arg(long, value_name = "DIR", default_value_os_t = repo_path("schemas"))]
    schemas: PathBuf,

    /// What to time with.
    #[arg(long, value_enum, default_value_t = Clock::ThreadCpu)]
    clock: Clock,

    /// What wasmtime tells `perf` about guest code, as `[wasm] profiler` in k2-ingest's config.
    #[arg(long, value_enum, default_value_t = WasmProfiler::None)]
    profiler: WasmProfiler,

    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// The values of `[wasm] profiler`, spelled as in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WasmProfiler {
    None,
    #[value(name = "perfmap")]
    PerfMap,
    #[value(name = "jitdump")]
    JitDump,
}

impl From<WasmProfiler> for Profiler {
    fn from(p: WasmProfiler) -> Self {
        match p {
            WasmProfiler::None => Profiler::None,
            WasmProfiler::PerfMap => Profiler::PerfMap,
            WasmProfiler::JitDump => Profiler::JitDump,
        }
    }
}

/// What the benchmark times with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Clock {
    /// CPU time of the benchmark's thread, which is where the guest runs too: on a shared
    /// machine, time other processes take from it does not count.
    ThreadCpu,
    /// Elapsed wall time.
    Wall,
}

impl Clock {
    /// A reading; only differences between two readings mean anything.
    fn now(self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        match self {
            Clock::Wall => ORIGIN.get_or_init(Instant::now).elapsed(),
            Clock::ThreadCpu => thread_cpu_time(),
        }
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live, writable timespec and the clock id is one the kernel defines.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A path in this repository (the benchmark runs from a checkout).
fn repo_path(relative: &str) -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).join(relative)
}

/// The validators of `guest/validators` that have a native twin here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum ValidatorKind {
    Trades,
    Quotes,
}

impl ValidatorKind {
    fn name(self) -> &'static str {
        match self {
            ValidatorKind::Trades => "trades",
            ValidatorKind::Quotes => "quotes",
        }
    }

    fn topic(self) -> &'static str {
        match self {
            ValidatorKind::Trades => "market.trades.raw",
            ValidatorKind::Quotes => "market.quotes.raw",
        }
    }

    fn schema_file(self) -> &'static str {
        match self {
            ValidatorKind::Trades => "trade.avsc",
            ValidatorKind::Quotes => "quote.avsc",
        }
    }

    fn wasm_file(self) -> &'static str {
        match self {
            ValidatorKind::Trades => "k2_trades_validator.wasm",
            ValidatorKind::Quotes => "k2_quotes_validator.wasm",
        }
    }

    /// One round of the three paths, with this validator's native twin.
    fn run_round(
        self,
        modules: &Modules,
        stream: &SampleStream,
        batch_size: usize,
        clock: Clock,
    ) -> anyhow::Result<Round> {
        match self {
            ValidatorKind::Trades => run_round::<Trades>(modules, stream, batch_size, clock),
            ValidatorKind::Quotes => run_round::<Quotes>(modules, stream, batch_size, clock),
        }
    }
}

/// The validator's component and the do-nothing one.
struct Modules {
    validator: ValidatorModule,
    floor: ValidatorModule,
}

/// What the three paths did in one round.
struct Round {
    wasm: Measured,
    native: Measured,
    floor: Measured,
}

/// The do-nothing validator whose calls measure the host's part of the WebAssembly time.
const FLOOR_WASM_FILE: &str = "k2_hostile_validator.wasm";

/// The `hostile` component's settings for doing nothing while asking for `reads`.
fn floor_settings(reads: &Reads) -> Vec<(String, String)> {
    let mut settings = vec![("mode".to_string(), "none".to_string())];
    if let Some(fields) = &reads.fields {
        settings.push(("reads".into(), fields.join(",")));
    }
    let kafka =
        [(KafkaMetadata::OFFSETS, "offsets"), (KafkaMetadata::TIMESTAMPS, "timestamps"), (KafkaMetadata::KEYS, "keys")];
    let asked: Vec<&str> = kafka.iter().filter(|(f, _)| reads.kafka.contains(*f)).map(|(_, name)| *name).collect();
    settings.push(("reads_kafka".into(), asked.join(",")));
    settings
}

/// What one path did in one round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Measured {
    elapsed: Duration,
    rejected: usize,
    events: usize,
}

/// Consecutive record ranges of `batch_size`, grouped into chunks prepared together.
fn chunks(records: usize, batch_size: usize) -> impl Iterator<Item = Vec<std::ops::Range<usize>>> {
    let per_chunk = (CHUNK_RECORDS / batch_size).max(1) * batch_size;
    (0..records).step_by(per_chunk).map(move |chunk| {
        let end = (chunk + per_chunk).min(records);
        (chunk..end).step_by(batch_size).map(|start| start..(start + batch_size).min(end)).collect()
    })
}

/// One round of the paths on fresh validator state: the component called the way the pipeline
/// calls it, one `validate` per batch, the native logic on the same batches with a fresh
/// verdict per call as the SDK's component adapter gives it, and the do-nothing component
/// asking for what the validator reads. The paths take turns chunk by chunk (who goes first
/// rotates each chunk), so all are timed under the same machine load even when that load
/// changes within milliseconds, as it does on a shared machine.
fn run_round<V: Validate + FromSettings>(
    modules: &Modules,
    stream: &SampleStream,
    batch_size: usize,
    clock: Clock,
) -> anyhow::Result<Round> {
    let mut instance = modules.validator.instantiate(&[])?;
    let mut native = V::from_settings(&Settings::default()).map_err(anyhow::Error::msg)?;
    let mut floor = modules.floor.instantiate(&floor_settings(&native.reads()))?;
    let (mut wasm_measured, mut native_measured) = (Measured::default(), Measured::default());
    let mut floor_measured = Measured::default();
    for (n, chunk) in chunks(stream.len(), batch_size).enumerate() {
        let batches: Vec<_> = chunk.into_iter().map(|range| stream.batch(range)).collect();
        let sdk_batches = batches.iter().map(|b| sdk_batch(stream, b)).collect::<anyhow::Result<Vec<_>>>()?;
        let call = |instance: &mut ValidatorInstance, measured: &mut Measured| -> anyhow::Result<()> {
            let started = clock.now();
            for batch in &batches {
                let verdict = instance.validate(&stream.input(batch))?;
                measured.rejected += verdict.rejected.len();
                measured.events += verdict.events.len();
            }
            measured.elapsed += clock.now() - started;
            Ok(())
        };
        let mut run_wasm = || call(&mut instance, &mut wasm_measured);
        let mut run_floor = || call(&mut floor, &mut floor_measured);
        let mut run_native = || -> anyhow::Result<()> {
            let started = clock.now();
            for batch in &sdk_batches {
                let mut verdict = Verdict::new();
                native.validate(black_box(batch), &mut verdict).map_err(anyhow::Error::msg)?;
                native_measured.rejected += verdict.rejected().len();
                native_measured.events += verdict.events().len();
                black_box(verdict);
            }
            native_measured.elapsed += clock.now() - started;
            Ok(())
        };
        let turns: [&mut dyn FnMut() -> anyhow::Result<()>; 3] = [&mut run_wasm, &mut run_native, &mut run_floor];
        let mut turns = turns;
        turns.rotate_left(n % 3);
        for turn in turns {
            turn()?;
        }
    }
    Ok(Round { wasm: wasm_measured, native: native_measured, floor: floor_measured })
}

/// Per-round figures of one validator at one batch size.
#[derive(Default)]
struct Rounds {
    wasm_ns: Vec<f64>,
    native_ns: Vec<f64>,
    ratio: Vec<f64>,
    floor_ns: Vec<f64>,
    guest_ratio: Vec<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    records_per_round: usize,
    rounds: usize,
    warmup_rounds: usize,
    symbols: usize,
    seed: u64,
    clock: Clock,
    target: Target,
    validators: Vec<ValidatorReport>,
    rows: Vec<Row>,
    /// Whether every row the target applies to meets it (`null` when none applies).
    target_met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Target {
    max_ratio: f64,
    min_batch_size: usize,
}

#[derive(Debug, Serialize)]
struct ValidatorReport {
    validator: ValidatorKind,
    component: PathBuf,
    /// Injected by the generator into the round's records.
    injected_gaps: usize,
    injected_duplicates: usize,
    injected_invalid: usize,
    /// Set aside before validation, as undecodable bodies are.
    injected_malformed: usize,
    /// What both paths found in every round, at every batch size.
    rejected_per_round: usize,
    sequence_events_per_round: usize,
}

#[derive(Debug, Serialize)]
struct Row {
    validator: ValidatorKind,
    batch_size: usize,
    calls_per_round: usize,
    wasm_ns_per_record: f64,
    native_ns_per_record: f64,
    /// Median of the per-round ratios wasm / native.
    ratio: f64,
    ratio_min: f64,
    ratio_max: f64,
    /// Whether the ratio meets the target, `null` below the target's batch size.
    meets_target: Option<bool>,
    /// The host's part of the WebAssembly time: the same calls into a guest that does nothing.
    host_floor_ns_per_record: f64,
    /// Median of the per-round (wasm - host floor) / native: the guest's own work against native.
    guest_ratio: f64,
}

pub fn run(args: ValidatorsArgs) -> anyhow::Result<()> {
    if args.records == 0 || args.rounds == 0 {
        bail!("--records and --rounds must be at least 1");
    }
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        bail!("--batch-sizes must list sizes of at least 1");
    }
    let mut validators = args.validators.clone();
    validators.dedup();
    let engine = GuestEngine::new(&WasmConfig { profiler: args.profiler.into(), ..WasmConfig::default() })?;
    let mut report = Report {
        benchmark: "validators",
        records_per_round: args.records,
        rounds: args.rounds,
        warmup_rounds: args.warmup,
        symbols: args.symbols,
        seed: args.seed,
        clock: args.clock,
        target: Target { max_ratio: TARGET_RATIO, min_batch_size: TARGET_MIN_BATCH },
        validators: Vec::new(),
        rows: Vec::new(),
        target_met: None,
    };

    for kind in validators {
        let component = args.wasm_dir.join(kind.wasm_file());
        if !component.is_file() {
            bail!("{}: no such component; build the validators first (`make guest`)", component.display());
        }
        let floor = args.wasm_dir.join(FLOOR_WASM_FILE);
        if !floor.is_file() {
            bail!("{}: no such component; build the validators first (`make guest`)", floor.display());
        }
        let modules = Modules { validator: engine.load(&component)?, floor: engine.load(&floor)? };
        let stream = SampleStream::generate(
            kind.topic(),
            &args.schemas.join(kind.schema_file()),
            args.records,
            args.symbols,
            args.seed,
        )
        .with_context(|| format!("generating {} records", kind.name()))?;
        eprintln!("{}: {} records, {} rounds (+{} warm-up)…", kind.name(), stream.len(), args.rounds, args.warmup);

        let mut rounds: Vec<Rounds> = args.batch_sizes.iter().map(|_| Rounds::default()).collect();
        let mut found: Option<(usize, usize)> = None;
        for round in 0..args.warmup + args.rounds {
            for (&batch_size, figures) in args.batch_sizes.iter().zip(&mut rounds) {
                let Round { wasm, native, floor } = kind.run_round(&modules, &stream, batch_size, args.clock)?;
                // Same records, same logic: any difference means the paths did not do the same work.
                let outcome = (wasm.rejected, wasm.events);
                if outcome != (native.rejected, native.events) || found.is_some_and(|f| f != outcome) {
                    bail!(
                        "{} at batch size {batch_size}: wasm found {} rejections and {} events, native {} and {}{}",
                        kind.name(),
                        wasm.rejected,
                        wasm.events,
                        native.rejected,
                        native.events,
                        found.map(|(r, e)| format!(" (earlier runs: {r} and {e})")).unwrap_or_default()
                    );
                }
                found = Some(outcome);
                if round >= args.warmup {
                    let per_record = |m: &Measured| m.elapsed.as_nanos() as f64 / stream.len() as f64;
                    figures.wasm_ns.push(per_record(&wasm));
                    figures.native_ns.push(per_record(&native));
                    figures.ratio.push(per_record(&wasm) / per_record(&native));
                    figures.floor_ns.push(per_record(&floor));
                    figures.guest_ratio.push((per_record(&wasm) - per_record(&floor)) / per_record(&native));
                }
            }
        }

        let (rejected, events) = found.unwrap_or_default();
        report.validators.push(ValidatorReport {
            validator: kind,
            component,
            injected_gaps: stream.injected.gaps.len(),
            injected_duplicates: stream.injected.duplicates.len(),
            injected_invalid: stream.injected.invalid.len(),
            injected_malformed: stream.injected.malformed.len(),
            rejected_per_round: rejected,
            sequence_events_per_round: events,
        });
        for (&batch_size, mut figures) in args.batch_sizes.iter().zip(rounds) {
            let ratio = median(&mut figures.ratio);
            report.rows.push(Row {
                validator: kind,
                batch_size,
                calls_per_round: stream.len().div_ceil(batch_size),
                wasm_ns_per_record: median(&mut figures.wasm_ns),
                native_ns_per_record: median(&mut figures.native_ns),
                ratio,
                ratio_min: figures.ratio.first().copied().unwrap_or(f64::NAN),
                ratio_max: figures.ratio.last().copied().unwrap_or(f64::NAN),
                meets_target: (batch_size >= TARGET_MIN_BATCH).then_some(ratio <= TARGET_RATIO),
                host_floor_ns_per_record: median(&mut figures.floor_ns),
                guest_ratio: median(&mut figures.guest_ratio),
            });
        }
    }
    let judged: Vec<bool> = report.rows.iter().filter_map(|r| r.meets_target).collect();
    report.target_met = (!judged.is_empty()).then(|| judged.iter().all(|&met| met));

    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Human => print_table(&report),
    }
    Ok(())
}

/// Sorts `values` and returns their median (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn print_table(report: &Report) {
    let clock = match report.clock {
        Clock::ThreadCpu => "thread CPU time",
        Clock::Wall => "wall time",
    };
    println!(
        "validator throughput: {} records per round and batch size, median of {} rounds, {} symbols, seed {}, {clock}",
        report.records_per_round, report.rounds, report.symbols, report.seed
    );
    for v in &report.validators {
        println!(
            "{}: {} rejected and {} sequence events per round on both paths ({})",
            v.validator.name(),
            v.rejected_per_round,
            v.sequence_events_per_round,
            v.component.display()
        );
    }
    println!();
    println!(
        "{:<9} {:>6} {:>8} {:>12} {:>14} {:>12} {:>15} {:>11} {:>13}  target",
        "validator",
        "batch",
        "calls",
        "wasm ns/rec",
        "native ns/rec",
        "wasm/native",
        "ratio min-max",
        "host floor",
        "guest/native"
    );
    for r in &report.rows {
        let target = match r.meets_target {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!(
            "{:<9} {:>6} {:>8} {:>12.1} {:>14.1} {:>12.2} {:>15} {:>11.1} {:>13.2}  {target}",
            r.validator.name(),
            r.batch_size,
            r.calls_per_round,
            r.wasm_ns_per_record,
            r.native_ns_per_record,
            r.ratio,
            format!("{:.2}-{:.2}", r.ratio_min, r.ratio_max),
            r.host_floor_ns_per_record,
            r.guest_ratio
        );
    }
    println!(
        "host floor: ns/rec of the same calls into a component that does nothing (layout, copy, call); \
         guest/native: (wasm - host floor) / native"
    );
    println!();
    let verdict = match report.target_met {
        Some(true) => "met by every row it applies to".to_string(),
        Some(false) => {
            let missed = report.rows.iter().filter(|r| r.meets_target == Some(false)).count();
            format!("missed by {missed} row(s)")
        }
        None => "no batch size measured reaches it".to_string(),
    };
    println!(
        "target: wasm/native <= {:.2} at batches of {} records and more: {verdict}",
        report.target.max_ratio, report.target.min_batch_size
    );
}
