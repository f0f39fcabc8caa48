//! `k2-ingest module …`: inspect validator components without running a pipeline.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use k2_ingest::config::WasmConfig;
use k2_ingest::guest::GuestEngine;
use serde_json::json;

use super::Output;

/// Inspect validator components.
#[derive(Debug, Args)]
pub struct ModuleArgs {
    #[command(subcommand)]
    command: ModuleCommand,
}

#[derive(Debug, Subcommand)]
enum ModuleCommand {
    Check(CheckArgs),
}

/// Load a component, verify it implements the k2:ingest validator world at this host's
/// version, and print its name, versions and imports.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  k2-ingest module check guest/target/wasm32-wasip2/release/k2_trades_validator.wasm"
)]
struct CheckArgs {
    /// The component (.wasm).
    file: PathBuf,

    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub async fn run(args: ModuleArgs) -> anyhow::Result<()> {
    match args.command {
        ModuleCommand::Check(check) => run_check(check),
    }
}

fn run_check(args: CheckArgs) -> anyhow::Result<()> {
    let module = GuestEngine::new(&WasmConfig::default())?.load(&args.file)?;
    let info = module.info()?;
    match args.output {
        Output::Json => println!(
            "{}",
            json!({"file": args.file, "name": info.name, "version": info.version,
                   "wit_version": info.wit_version, "imports": module.imports()})
        ),
        Output::Human => {
            println!("file     {}", args.file.display());
            println!("name     {}", info.name);
            println!("version  {}", info.version);
            println!("world    k2:ingest/validator@{}", info.wit_version);
            println!("imports  {}", module.imports().join("\n         "));
        }
    }
    Ok(())
}
