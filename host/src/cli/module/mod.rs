//! `k2-ingest module …`: build, inspect and try out validator components without a pipeline.

mod check;
mod list;
mod new;
mod records;
mod test;

use clap::{Args, Subcommand};

/// Inspect and try out validator components.
#[derive(Debug, Args)]
pub struct ModuleArgs {
    #[command(subcommand)]
    command: ModuleCommand,
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    New(new::NewArgs),
    Check(check::CheckArgs),
    Test(test::TestArgs),
    List(list::ListArgs),
}

pub async fn run(args: ModuleArgs) -> anyhow::Result<()> {
    match args.command {
        ModuleCommand::New(a) => new::run(a),
        ModuleCommand::Check(a) => check::run(a),
        ModuleCommand::Test(a) => test::run(a),
        ModuleCommand::List(a) => list::run(a),
    }
}
