//! Hostile guests: each misbehaviour is contained with the expected error and the host stays healthy.

mod common;

use std::time::{Duration, Instant};

use common::{load, ok, run, validate, validate_supervised};
use k2_ingest::config::{FailurePolicy, ValidatorConfig, WasmConfig};
use k2_ingest::sandbox::{EventKind, FAILED_CODE, GuestEngine, SupervisedValidator, ValidatorModule};

/// Tight limits so runaway guests are stopped quickly.
fn engine() -> GuestEngine {
    GuestEngine::new(&WasmConfig {
        memory_limit_bytes: 16 << 20,
        call_timeout_ms: 200,
        call_timeout_per_record_us: 0,
        restart_backoff_ms: 20,
        restart_backoff_max_ms: 1000,
        ..WasmConfig::default()
    })
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
fn a_panic_in_create_or_reads_is_a_trap() {
    let engine = engine();
    for call in ["create", "reads"] {
        let err = hostile(&engine).instantiate(&mode(&format!("panic-{call}"))).err().unwrap().to_string();
        assert!(err.contains(&format!("trapped in {call}")), "{err}");
        assert_healthy(&engine);
    }
}

#[test]
fn an_unknown_mode_is_refused_not_taken_for_none() {
    let engine = engine();
    let err = hostile(&engine).instantiate(&mode("lop")).err().unwrap().to_string();
    assert!(err.contains("setting `mode`: unknown mode `lop`"), "{err}");
}

#[test]
fn verdicts_outside_the_batch_are_refused() {
    let err = batch_error("bad-index");
    assert!(err.contains("outside the batch of 10"), "{err}");
    let err = batch_error("duplicate-index");
    assert!(err.contains("rejected record index 0 twice"), "{err}");
    let err = batch_error("oversized");
    assert!(err.contains("returned 11 rejections for a batch of 10, refused unread"), "{err}");
}

#[test]
fn a_validator_cannot_use_the_hosts_own_reason_codes() {
    let engine = engine();
    for code in ["undecodable", "sequence-duplicate", "validator-failed"] {
        let settings = vec![("mode".to_string(), "host-code".to_string()), ("code".to_string(), code.to_string())];
        let mut v = hostile(&engine).instantiate(&settings).unwrap();
        let err = validate(&mut v, &[ok("AAPL", 1)]).unwrap_err().to_string();
        assert!(err.contains(&format!("rejected record index 0 with the host's own code `{code}`")), "{err}");
    }
    let settings = vec![("mode".to_string(), "host-code".to_string()), ("code".to_string(), "price-bad".to_string())];
    let mut v = hostile(&engine).instantiate(&settings).unwrap();
    assert_eq!(validate(&mut v, &[ok("AAPL", 1)]).unwrap().rejected[0].code, "price-bad");
}

#[test]
fn files_environment_and_sockets_are_out_of_reach() {
    let engine = engine();
    for m in ["read-file", "read-env", "socket"] {
        let mut v = hostile(&engine).instantiate(&mode(m)).unwrap();
        // Either std reports the capability missing, or the import traps naming itself.
        match validate(&mut v, &[ok("AAPL", 1)]) {
            Ok(verdict) => {
                assert!(verdict.rejected.iter().all(|r| r.code != "escaped"), "mode {m} escaped: {verdict:?}")
            }
            Err(e) => assert!(e.to_string().contains("which the sandbox denies"), "mode {m}: {e}"),
        }
    }
    assert_healthy(&engine);
}

/// Each way std (or raw WASI) offers to reach the host's clocks, randomness, stdin or exit,
/// with the import it must trap in.
const AMBIENT: &[(&str, &str)] = &[
    ("sleep", "wasi:clocks/monotonic-clock@"),
    ("poll", "wasi:clocks/monotonic-clock@"),
    ("wall-clock", "wasi:clocks/wall-clock@"),
    ("monotonic-clock", "wasi:clocks/monotonic-clock@"),
    ("random-bytes", "wasi:random/random@"),
    ("insecure-random", "wasi:random/insecure@"),
    ("stdin", "wasi:cli/stdin@"),
    ("exit", "wasi:cli/exit@"),
];

#[test]
fn clocks_randomness_sleep_stdin_and_exit_trap_naming_the_import() {
    for &(m, import) in AMBIENT {
        let started = Instant::now();
        let err = batch_error(m);
        assert!(err.contains("trapped in validate"), "mode {m}: {err}");
        assert!(
            err.contains(&format!("called `{import}")) && err.contains("which the sandbox denies"),
            "mode {m}: {err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        // The guest asked to sleep 600 s: the call must end long before, not at the sleep's end.
        assert!(started.elapsed() < Duration::from_secs(10), "mode {m} blocked the host for {:?}", started.elapsed());
    }
}

#[test]
fn a_std_hashmap_works_and_iterates_alike_in_every_instance() {
    let engine = engine();
    let order = |engine: &GuestEngine| {
        let mut v = hostile(engine).instantiate(&mode("hashmap")).unwrap();
        let verdict = validate(&mut v, &[ok("AAPL", 1)]).unwrap();
        assert_eq!(verdict.rejected[0].code, "order");
        verdict.rejected[0].message.clone()
    };
    let first = order(&engine);
    assert_eq!(first.split(',').count(), 16, "{first}");
    assert_eq!(order(&engine), first, "a replay must see the same iteration order");
    assert_eq!(order(&self::engine()), first, "and so must another engine");
}

#[test]
fn live_instances_are_bounded_per_process() {
    let engine = GuestEngine::new(&WasmConfig { max_instances: 2, ..WasmConfig::default() }).unwrap();
    let module = hostile(&engine);
    let first = module.instantiate(&mode("none")).unwrap();
    let _second = module.instantiate(&mode("none")).unwrap();
    let err = module.instantiate(&mode("none")).err().unwrap().to_string();
    assert!(err.contains("2 are live, the most `wasm.max_instances` allows"), "{err}");
    drop(first);
    assert!(module.instantiate(&mode("none")).is_ok(), "a dropped instance frees its place");
}

#[test]
fn a_log_flood_is_cut_to_the_budget_and_the_call_completes() {
    let engine = engine();
    let mut v = hostile(&engine).instantiate(&mode("log-flood")).unwrap();
    assert!(validate(&mut v, &[ok("AAPL", 1)]).is_ok());
}

fn supervised(engine: &GuestEngine, m: &str, policy: FailurePolicy, isolate_max: usize) -> SupervisedValidator {
    let config = ValidatorConfig {
        module: common::guest_wasm("k2_hostile_validator"),
        settings: mode(m).into_iter().collect(),
        on_failure: policy,
        isolate_max_records: isolate_max,
        sha256: None,
    };
    SupervisedValidator::start(&hostile(engine), &config, None).unwrap()
}

/// AAPL 1..=20 in order, with the poison symbol at indices 7 and 13 (same sequence numbers
/// as their neighbours would have had, so only their failure can explain a rejection).
fn with_poison() -> Vec<common::Trade<'static>> {
    let mut trades: Vec<_> = (1..=18).map(|s| ok("AAPL", s)).collect();
    trades.insert(7, ok("POISON", 1));
    trades.insert(13, ok("POISON", 2));
    trades
}

// Multi-threaded as in the binary: a guest's panic message goes to WASI stderr, whose sync
// host side blocks in place, which a current-thread runtime cannot do.
#[tokio::test(flavor = "multi_thread")]
async fn isolate_rejects_only_the_records_the_guest_fails_on_and_keeps_its_state() {
    let engine = engine();
    for m in ["poison-panic", "poison-loop", "poison-memory"] {
        let mut v = supervised(&engine, m, FailurePolicy::Isolate, 10);
        let first: Vec<_> = (1..=3).map(|s| ok("MSFT", s)).collect();
        assert!(validate_supervised(&mut v, &first).await.unwrap().events.is_empty());

        let verdict = validate_supervised(&mut v, &with_poison()).await.unwrap();
        let rejected: Vec<(usize, &str)> = verdict.rejected.iter().map(|r| (r.index, r.code.as_str())).collect();
        assert_eq!(rejected, vec![(7, FAILED_CODE), (13, FAILED_CODE)], "mode {m}");
        assert!(verdict.rejected[0].message.contains("offsets 107.."), "names the record: {:?}", verdict.rejected[0]);
        // AAPL ran 1..=18 across several fresh instances without a gap: each was restored
        // to the state the previous sub-batch left.
        assert!(verdict.events.is_empty(), "mode {m}: {:?}", verdict.events);
        assert_eq!(v.stats().isolated, 2);
        assert!(v.stats().restarts >= 3, "{:?}", v.stats());

        // The state survives into the next batch: MSFT continues at 4, AAPL's gap is seen.
        let next = [ok("MSFT", 4), ok("AAPL", 20)];
        let events = validate_supervised(&mut v, &next).await.unwrap().events;
        let events: Vec<_> = events.iter().map(|e| (e.index, e.kind, e.missing)).collect();
        assert_eq!(events, vec![(1, EventKind::Gap, 1)], "mode {m}");
    }
    assert_healthy(&engine);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fail_policy_stops_on_the_first_failure() {
    let engine = engine();
    let mut v = supervised(&engine, "poison-panic", FailurePolicy::Fail, 10);
    let err = validate_supervised(&mut v, &with_poison()).await.unwrap_err().to_string();
    assert!(err.contains("trapped in validate (partition 0, offsets 100..)"), "{err}");
    assert_eq!(v.stats().restarts, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_module_that_fails_on_everything_stops_the_topic_after_backing_off() {
    let engine = engine();
    let mut v = supervised(&engine, "panic-validate", FailurePolicy::Isolate, 3);
    let trades: Vec<_> = (1..=40).map(|s| ok("AAPL", s)).collect();
    let started = Instant::now();
    let err = validate_supervised(&mut v, &trades).await.unwrap_err().to_string();
    assert!(err.contains("failed on more than 3 records of one batch"), "{err}");
    assert!(err.contains("isolate_max_records"), "names the setting: {err}");
    assert_eq!(v.stats().isolated, 4);
    // Records failed one after another: the restarts after the 2nd and 3rd waited 20 and 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60), "{:?}", started.elapsed());
    assert_healthy(&engine);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_batch_stops_the_topic_even_under_isolate() {
    let engine = engine();
    let mut v = supervised(&engine, "refuse", FailurePolicy::Isolate, 10);
    let err = validate_supervised(&mut v, &[ok("AAPL", 1), ok("AAPL", 2)]).await.unwrap_err().to_string();
    assert!(err.contains("failed a batch (partition 0): hostile: refuses every batch"), "{err}");
    assert_eq!(v.stats().restarts, 0);
}

// A current-thread runtime cannot block in place: the host moves the call to a plain thread.
#[tokio::test]
async fn a_guest_panic_under_a_current_thread_runtime_is_contained() {
    let engine = engine();
    let mut v = hostile(&engine).instantiate(&mode("panic-validate")).unwrap();
    let err = validate(&mut v, &[ok("AAPL", 1)]).unwrap_err().to_string();
    assert!(err.contains("trapped in validate") && err.contains("unreachable"), "{err}");
}
