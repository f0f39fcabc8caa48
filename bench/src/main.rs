//! `k2-bench`: benchmarks of k2-ingest, one subcommand per benchmark.

mod sample_stream;
mod sdk_layout;
mod validators;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Benchmarks of k2-ingest. Speed targets are checked here, never by timed tests.
///
/// The machine may be shared and noisy: every benchmark measures what it compares in the same
/// run, interleaved round by round, and reports medians over the rounds.
#[derive(Debug, Parser)]
#[command(name = "k2-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Validators(validators::ValidatorsArgs),
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
