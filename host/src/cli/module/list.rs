//! `k2-ingest module list`: each configured topic's validator, its hash and whether it loads.

use std::path::PathBuf;

use clap::Args;
use k2_ingest::config::Config;
use k2_ingest::sandbox::{GuestEngine, sha256_hex};
use serde::Serialize;

use crate::cli::Output;

/// List the topics of a config with their validator modules: file, sha256 (and whether it
/// matches the config's pin), and whether the module loads (name, version, cache). Exits
/// non-zero if any module fails to load, so it can gate a deployment.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  k2-ingest module list --config k2.example.toml")]
pub struct ListArgs {
    /// The k2-ingest config file (TOML).
    #[arg(long)]
    config: PathBuf,

    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct Row {
    topic: String,
    module: Option<PathBuf>,
    sha256: Option<String>,
    pinned: Option<String>,
    /// `ok`, or the reason the module does not load.
    status: String,
    name: Option<String>,
    version: Option<String>,
    cache: Option<&'static str>,
}

pub fn run(args: ListArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let engine = GuestEngine::new(&config.wasm)?;
    let mut rows = Vec::new();
    for topic in &config.topics {
        let mut row = Row {
            topic: topic.name.clone(),
            module: None,
            sha256: None,
            pinned: None,
            status: "no validator".into(),
            name: None,
            version: None,
            cache: None,
        };
        if let Some(v) = &topic.validator {
            row.module = Some(v.module.clone());
            row.pinned = v.sha256.clone();
            row.sha256 = std::fs::read(&v.module).ok().map(|b| sha256_hex(&b));
            match engine.load_pinned(&v.module, v.sha256.as_deref()).and_then(|m| Ok((m.info()?, m.cache_status()))) {
                Ok((info, cache)) => {
                    row.status = "ok".into();
                    row.name = Some(info.name);
                    row.version = Some(info.version);
                    row.cache = Some(cache.as_str());
                }
                Err(e) => row.status = e.to_string(),
            }
        }
        rows.push(row);
    }
    let failed = rows.iter().filter(|r| r.module.is_some() && r.status != "ok").count();
    match args.output {
        Output::Json => println!("{}", serde_json::json!({ "topics": rows })),
        Output::Human => {
            for r in &rows {
                println!("{}", r.topic);
                let Some(module) = &r.module else {
                    println!("  validator  none");
                    continue;
                };
                println!("  module     {}", module.display());
                let pin = match (&r.pinned, &r.sha256) {
                    (None, _) => String::new(),
                    (Some(p), Some(s)) if p.eq_ignore_ascii_case(s) => "  (matches the pin)".into(),
                    (Some(_), _) => "  (does not match the pin)".into(),
                };
                println!("  sha256     {}{pin}", r.sha256.as_deref().unwrap_or("-"));
                match (&r.name, &r.version, r.cache) {
                    (Some(n), Some(v), Some(c)) => println!("  loads      ok: {n} {v} (compiled code: {c})"),
                    _ => println!("  loads      no: {}", r.status),
                }
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} validator module(s) of {} do not load", args.config.display());
    }
    Ok(())
}
