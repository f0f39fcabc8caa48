//! A guest that returns one large buffer many times over costs the host no more than its own memory and a small margin.
//!
//! One test in its own binary, because it reads the process's peak resident memory (VmHWM),
//! which other tests running alongside would raise.

mod common;

use common::{load, ok, validate};
use k2_ingest::config::WasmConfig;
use k2_ingest::sandbox::{GuestEngine, VERDICT_MAX_BYTES_PER_RECORD};

const GUEST_MEMORY: usize = 64 << 20;
const RECORDS: usize = 100;
/// Slack for what a call needs besides the verdict: the batch's columns, allocator pages,
/// compiled code touched for the first time.
const SLACK: usize = 16 << 20;

/// The process's peak resident memory so far, in bytes.
fn peak_rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

fn settings(mode: &str) -> Vec<(String, String)> {
    vec![("mode".into(), mode.into()), ("alias_mib".into(), "32".into())]
}

#[test]
fn aliased_strings_cost_the_host_at_most_guest_memory_plus_a_margin() {
    let engine = GuestEngine::new(&WasmConfig { memory_limit_bytes: GUEST_MEMORY, ..WasmConfig::default() }).unwrap();
    let hostile = load(&engine, "k2_hostile_validator");
    let trades: Vec<_> = (1..=RECORDS as i64).map(|s| ok("AAPL", s)).collect();
    // Warm up: one well-behaved instance and call, so the baseline holds what every call needs.
    let mut calm = hostile.instantiate(&settings("none")).unwrap();
    validate(&mut calm, &trades).unwrap();
    drop(calm);
    let baseline = peak_rss();
    let allowed = GUEST_MEMORY + RECORDS * VERDICT_MAX_BYTES_PER_RECORD + SLACK;

    // 100 strings of 32 MiB each would be 3.2 GiB if the host copied every one; so would 100
    // writes of 32 MiB each to stdout.
    for mode in ["alias-messages", "alias-codes", "alias-keys", "alias-error", "stdout-flood"] {
        let mut v = hostile.instantiate(&settings(mode)).unwrap();
        let outcome = validate(&mut v, &trades);
        eprintln!(
            "mode {mode}: {}",
            outcome.as_ref().map_or_else(
                |e| e.to_string(),
                |v| format!("{} rejections, {} events", v.rejected.len(), v.events.len())
            )
        );
        match outcome {
            Ok(verdict) => {
                let longest = verdict
                    .rejected
                    .iter()
                    .map(|r| r.code.len().max(r.message.len()))
                    .chain(verdict.events.iter().map(|e| e.key.len()))
                    .max()
                    .unwrap_or(0);
                assert!(longest <= 1024 + '…'.len_utf8(), "mode {mode}: a string of {longest} bytes was kept");
            }
            Err(e) => assert!(e.to_string().len() < 2048, "mode {mode}: the error is cut too"),
        }
        let grown = peak_rss().saturating_sub(baseline);
        eprintln!("mode {mode}: peak RSS grew by {} KiB (allowed {} KiB)", grown >> 10, allowed >> 10);
        assert!(grown <= allowed, "mode {mode}: peak memory grew by {grown} bytes, more than {allowed}");
    }
    // 10,000 field names that all alias one 32 MiB string, and a 32 MiB refusal in create.
    for mode in ["alias-reads", "huge-create-error"] {
        if let Err(e) = hostile.instantiate(&settings(mode)) {
            assert!(e.to_string().len() < 2048, "mode {mode}: the error is cut: {} bytes", e.to_string().len());
        }
        let grown = peak_rss().saturating_sub(baseline);
        eprintln!("mode {mode}: peak RSS grew by {} KiB (allowed {} KiB)", grown >> 10, allowed >> 10);
        assert!(grown <= allowed, "mode {mode}: peak memory grew by {grown} bytes, more than {allowed}");
    }
}
