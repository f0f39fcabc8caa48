//! `k2-bench`: benchmarks of k2-ingest, one subcommand per benchmark.

mod ingest;
mod sample_stream;
mod sdk_layout;
mod soak;
mod validators;

// The allocator of the k2-ingest binary: the validator benchmark times the host's side of a
// call (laying a batch out, reading the verdict back), which allocates as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Benchmarks of k2-ingest. Speed targets are checked here, never by timed tests.
///
/// The machine may be shared and noisy: every benchmark measures what it compares in the same
/// run, interleaved (round by round, or finer), and reports medians over the rounds.
#[derive(Debug, Parser)]
#[command(name = "k2-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validator throughput: the WASM components against the same logic compiled natively.
    Validators(validators::ValidatorsArgs),
    /// End to end: a bare rdkafka consumer (the ceiling) against k2-ingest into Iceberg, with
    /// and without validators; writes bench/results/latest.json and latest.md.
    Ingest(ingest::IngestArgs),
    /// Growth over many commits: commit latency, metadata and manifests, data files and RSS
    /// at commit #10, #100, #1,000 and #2,000; writes bench/results/soak.json and soak.md.
    Soak(soak::SoakArgs),
    /// The ceiling alone: count every message of a topic with a bare rdkafka consumer.
    #[command(hide = true)]
    Ceiling(ingest::CeilingArgs),
}

/// How a benchmark prints its result on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table for a person.
    #[default]
    Human,
    /// Exactly one JSON object.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validators(args) => validators::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Ceiling(args) => ingest::ceiling(args),
        Command::Soak(args) => soak::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
