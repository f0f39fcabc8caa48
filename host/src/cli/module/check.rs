//! `k2-ingest module check`: load a component, verify its world and version, print its info and imports.

use std::path::PathBuf;

use clap::Args;
use k2_ingest::config::WasmConfig;
use k2_ingest::sandbox::GuestEngine;
use serde_json::json;

use crate::cli::Output;

/// Load a component, verify it implements the k2:ingest validator world at this host's
/// version, and print its name, versions and imports.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  k2-ingest module check guest/target/wasm32-wasip2/release/k2_trades_validator.wasm"
)]
pub struct CheckArgs {
    /// The component (.wasm).
    file: PathBuf,

    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let module = GuestEngine::new(&WasmConfig::default())?.load(&args.file)?;
    let info = module.info()?;
    match args.output {
        Output::Json => println!(
            "{}",
            json!({"file": args.file, "name": info.name, "version": info.version,
                   "wit_version": info.wit_version, "sha256": module.sha256(), "imports": module.imports()})
        ),
        Output::Human => {
            println!("file     {}", args.file.display());
            println!("name     {}", info.name);
            println!("version  {}", info.version);
            println!("world    k2:ingest/validator@{}", info.wit_version);
            println!("sha256   {}", module.sha256());
            println!("imports  {}", module.imports().join("\n         "));
        }
    }
    Ok(())
}
