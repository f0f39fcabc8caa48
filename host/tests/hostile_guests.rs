//! Hostile guests: each misbehaviour is contained with the expected error and the host stays healthy.

mod common;

use common::{load, ok, run, validate};
use k2_ingest::config::WasmConfig;
use k2_ingest::guest::{GuestEngine, ValidatorModule};

/// Tight limits so runaway guests are stopped quickly.
fn engine() -> GuestEngine {
    GuestEngine::new(&WasmConfig { memory_limit_bytes: 16 << 20, call_timeout_ms: 200, call_timeout_per_record_us: 0 })
        .unwrap()
}

fn hostile(engine: &GuestEngine) -> ValidatorModule {
    load(engine, "k2_hostile_validator")
}

fn mode(m: &str) -> Vec<(String, String)> {
    vec![("mode".to_string(), m.to_string())]
}

/// The error a hostile batch call ends in.
fn batch_error(m: &str) -> String {
    let engine = engine();
    let mut v = hostile(&engine).instantiate(&mode(m)).unwrap();
    let trades: Vec<_> = (1..=10).map(|s| ok("AAPL", s)).collect();
    let err = validate(&mut v, &trades).err().unwrap_or_else(|| panic!("mode {m} was not stopped")).to_string();
    assert_healthy(&engine);
    err
}

/// After any guest failure the same engine still runs a well-behaved validator.
fn assert_healthy(engine: &GuestEngine) {
    let mut good = load(engine, "k2_trades_validator").instantiate(&[]).unwrap();
    let (rejected, events) = run(&mut good, &[ok("MSFT", 1), ok("MSFT", 2)]);
    assert!(rejected.is_empty() && events.is_empty());
    let mut calm = hostile(engine).instantiate(&mode("none")).unwrap();
    assert!(validate(&mut calm, &[ok("MSFT", 1)]).unwrap().rejected.is_empty());
}

#[test]
fn an_infinite_loop_hits_the_call_deadline() {
    let err = batch_error("loop");
    assert!(err.contains("trapped in validate") && err.contains("exceeded its deadline of 200 ms"), "{err}");
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let err = batch_error("memory");
    assert!(err.contains("trapped in validate") && err.contains("memory limit of 16777216 bytes"), "{err}");
}

#[test]
fn unbounded_recursion_exhausts_the_stack_not_the_host() {
    let err = batch_error("recurse");
    // Rust keeps its stack in linear memory: it runs off the bottom before wasm's call stack does.
    let overflowed = err.contains("call stack exhausted") || err.contains("out of bounds memory access");
    assert!(err.contains("trapped in validate") && overflowed, "{err}");
}

#[test]
fn a_panic_in_validate_is_a_trap() {
    let err = batch_error("panic-validate");
    assert!(err.contains("trapped in validate") && err.contains("unreachable"), "{err}");
    assert!(!err.contains('\n'), "one line, not a backtrace: {err}");
}

#[test]
fn a_panic_in_create_is_a_trap() {
    let engine = engine();
    let err = hostile(&engine).instantiate(&mode("panic-create")).err().unwrap().to_string();
    assert!(err.contains("trapped in create"), "{err}");
    assert_healthy(&engine);
}

#[test]
fn verdicts_outside_the_batch_are_refused() {
    let err = batch_error("bad-index");
    assert!(err.contains("outside the batch of 10"), "{err}");
    let err = batch_error("duplicate-index");
    assert!(err.contains("rejected record index 0 twice"), "{err}");
    let err = batch_error("oversized");
    assert!(err.contains("returned 11 rejections for a batch of 10"), "{err}");
}

#[test]
fn files_environment_and_sockets_are_out_of_reach() {
    let engine = engine();
    for m in ["read-file", "read-env", "socket"] {
        let mut v = hostile(&engine).instantiate(&mode(m)).unwrap();
        let verdict = validate(&mut v, &[ok("AAPL", 1)]).unwrap();
        assert!(verdict.rejected.iter().all(|r| r.code != "escaped"), "mode {m} escaped the sandbox: {verdict:?}");
    }
    assert_healthy(&engine);
}

#[test]
fn a_log_flood_is_cut_to_the_budget_and_the_call_completes() {
    let engine = engine();
    let mut v = hostile(&engine).instantiate(&mode("log-flood")).unwrap();
    assert!(validate(&mut v, &[ok("AAPL", 1)]).is_ok());
}
