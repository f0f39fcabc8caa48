//! Guest contract: the real `trades` component built from guest/, loaded through the WIT world (no network).

mod common;

use common::{NOW, Trade, ok, run, trades_module as module};
use k2_ingest::config::WasmConfig;
use k2_ingest::sandbox::{EventKind, GuestEngine};

#[test]
fn reports_its_name_and_wit_version() {
    let v = module().instantiate(&[]).unwrap();
    assert_eq!(v.info().name, "trades");
    assert_eq!(v.info().wit_version, "0.2.0");
}

#[test]
fn rejects_each_bad_record_with_its_code() {
    let mut v = module().instantiate(&[]).unwrap();
    let trades = [
        ok("AAPL", 1),
        Trade { price: 0, ..ok("AAPL", 2) },
        Trade { size: -1, ..ok("AAPL", 2) },
        Trade { side: "UNKNOWN", ..ok("AAPL", 2) },
        ok("aapl", 1),
        Trade { ts: NOW + 60_000_000, ..ok("AAPL", 2) },
        ok("AAPL", 2),
    ];
    let (rejected, events) = run(&mut v, &trades);
    let codes: Vec<(usize, &str)> = rejected.iter().map(|(i, c)| (*i, c.as_str())).collect();
    assert_eq!(
        codes,
        vec![
            (1, "price-not-positive"),
            (2, "size-not-positive"),
            (3, "side-unknown"),
            (4, "symbol-format"),
            (5, "timestamp-in-future"),
        ]
    );
    // Rejected records do not advance the sequence: 1 then 2 is in order.
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn reports_gaps_duplicates_out_of_order_and_resets() {
    let mut v = module().instantiate(&[]).unwrap();
    let seqs = [1, 2, 4, 3, 5, 5, 6, 1, 2];
    let trades: Vec<Trade<'_>> = seqs.iter().map(|&s| ok("MSFT", s)).collect();
    let (rejected, events) = run(&mut v, &trades);
    assert!(rejected.is_empty());
    assert_eq!(
        events,
        vec![
            (2, EventKind::Gap, 1),
            (3, EventKind::OutOfOrder, 0),
            (5, EventKind::Duplicate, 0),
            (7, EventKind::Reset, 0)
        ]
    );
}

#[test]
fn state_survives_snapshot_and_restore_into_a_new_instance() {
    let module = module();
    let mut first = module.instantiate(&[]).unwrap();
    run(&mut first, &[ok("NVDA", 1), ok("NVDA", 2)]);
    let state = first.snapshot().unwrap();
    assert!(!state.is_empty());

    let mut second = module.instantiate(&[]).unwrap();
    second.restore(&state).unwrap();
    // Without the restored state, 5 would be a baseline; with it, 3 and 4 are missing.
    let (_, events) = run(&mut second, &[ok("NVDA", 5)]);
    assert_eq!(events, vec![(0, EventKind::Gap, 2)]);

    let err = second.restore(&[9, 9]).unwrap_err().to_string();
    assert!(err.contains("refused its saved state"), "{err}");
}

#[test]
fn bad_settings_are_refused_with_the_key_named() {
    let err = module()
        .instantiate(&[("future_tolerance".into(), "5".into())])
        .err()
        .expect("unknown setting must be refused")
        .to_string();
    assert!(err.contains("unknown setting `future_tolerance`"), "{err}");
    let err = module().instantiate(&[("future_tolerance_ms".into(), "soon".into())]).err().unwrap().to_string();
    assert!(err.contains("`future_tolerance_ms`: cannot parse `soon`"), "{err}");
}

#[test]
fn a_file_that_is_not_a_component_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let engine = GuestEngine::new(&WasmConfig::default()).unwrap();
    let err = engine.load(&path).err().unwrap().to_string();
    assert!(err.contains("not a webassembly component"), "{err}");
    assert!(err.contains("not.wasm"), "{err}");
}

/// What the `hostile` component in mode `show-batch` was handed, with these extra settings.
fn batch_seen(settings: &[(&str, &str)]) -> String {
    let engine = GuestEngine::new(&WasmConfig::default()).unwrap();
    let mut all = vec![("mode".to_string(), "show-batch".to_string())];
    all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut v = common::load(&engine, "k2_hostile_validator").instantiate(&all).unwrap();
    let verdict = common::validate(&mut v, &[ok("AAPL", 1), ok("MSFT", 1)]).unwrap();
    assert_eq!(verdict.rejected.len(), 1);
    verdict.rejected[0].message.clone()
}

#[test]
fn a_validator_that_names_nothing_gets_every_column_and_the_kafka_metadata() {
    assert_eq!(
        batch_seen(&[]),
        "records=2 columns=symbol,exchange,exchange_ts,price,size,side,sequence offsets=2 timestamps=2 keys=2"
    );
}

#[test]
fn a_validator_gets_only_the_columns_and_metadata_it_reads() {
    // A named field the schema lacks is simply not there; the batch's column order is the schema's.
    let seen = batch_seen(&[("reads", "sequence,symbol,no_such_field"), ("reads_kafka", "keys")]);
    assert_eq!(seen, "records=2 columns=symbol,sequence offsets=0 timestamps=0 keys=2");
    let seen = batch_seen(&[("reads", ""), ("reads_kafka", "offsets,timestamps")]);
    assert_eq!(seen, "records=2 columns= offsets=2 timestamps=2 keys=none");
}

#[test]
fn a_validator_naming_too_many_fields_is_refused_at_start() {
    let engine = GuestEngine::new(&WasmConfig::default()).unwrap();
    let names = vec!["f"; 10_001].join(",");
    let settings = [("reads".to_string(), names)];
    let err = common::load(&engine, "k2_hostile_validator").instantiate(&settings).err().unwrap().to_string();
    assert!(err.contains("asked to read 10001 fields, more than the 10000"), "{err}");
}
