//! `k2-ingest module …`: build, inspect and try out validator components without a pipeline.

mod check;

use clap::{Args, Subcommand};

/// Inspect and try out validator components.
#[derive(Debug, Args)]
pub struct ModuleArgs {
    #[command(subcommand)]
    command: ModuleCommand,
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    Check(check::CheckArgs),
}

pub async fn run(args: ModuleArgs) -> anyhow::Result<()> {
    match args.command {
        ModuleCommand::Check(a) => check::run(a),
    }
}
