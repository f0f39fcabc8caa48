//! The command line: global options, logging, and one file per subcommand.

mod consume;
mod maintain;
mod module;
mod progress;
mod rewind;
mod status;
mod truncate;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Moves market data from Apache Kafka into Apache Iceberg tables, checking every batch
/// with a sandboxed WebAssembly validator per topic.
#[derive(Debug, Parser)]
#[command(name = "k2-ingest", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info` or `k2_ingest=debug` (also read from K2_LOG).
    #[arg(long, global = true, env = "K2_LOG", default_value = "info")]
    log: String,

    /// Log line format on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, global = true, env = "K2_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Consume(consume::ConsumeArgs),
    Module(module::ModuleArgs),
    Status(status::StatusArgs),
    Rewind(rewind::RewindArgs),
    Truncate(truncate::TruncateArgs),
    Maintain(maintain::MaintainArgs),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How a command prints its result on stdout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines for a person.
    #[default]
    Human,
    /// Exactly one JSON object.
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Consume(args) => consume::run(args).await,
            Command::Module(args) => module::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Rewind(args) => rewind::run(args).await,
            Command::Truncate(args) => truncate::run(args).await,
            Command::Maintain(args) => maintain::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr so stdout carries only the command's result.
fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // librdkafka's and sqlx's chatter is rarely what an operator needs.
        .add_directive("sqlx=warn".parse().expect("static directive"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| progress::LogWriter).with_target(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        // Fields at the top level, so a shipper needs no knowledge of tracing's nesting.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}
