//! Guest contract: the real `trades` component built from guest/, loaded through the WIT world (no network).

use std::path::PathBuf;
use std::sync::Arc;

use apache_avro::types::Value;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use k2_ingest::config::WasmConfig;
use k2_ingest::decode::columns::{ColumnsBuilder, KafkaMeta};
use k2_ingest::guest::{BatchInput, EventKind, GuestEngine, ValidatorModule};

const NOW: i64 = 1_700_000_000_000_000;

fn trades_wasm() -> PathBuf {
    let path = std::env::var_os("K2_TRADES_WASM").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest/target/wasm32-wasip2/release/k2_trades_validator.wasm")
    });
    assert!(path.is_file(), "{} is missing: build the guests with `make guest`", path.display());
    path
}

fn module() -> ValidatorModule {
    GuestEngine::new(&WasmConfig::default()).unwrap().load(&trades_wasm()).unwrap()
}

struct Trade<'a> {
    symbol: &'a str,
    price: i64,
    size: i64,
    side: &'a str,
    seq: i64,
    ts: i64,
}

fn ok(symbol: &str, seq: i64) -> Trade<'_> {
    Trade { symbol, price: 100_00000000, size: 5_00000000, side: "BUY", seq, ts: NOW - 1_000 }
}

/// The trades columns a validator sees, built the way the pipeline builds them.
fn batch(trades: &[Trade<'_>]) -> RecordBatch {
    let decimal = DataType::Decimal128(18, 8);
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("exchange", DataType::Utf8, false),
        Field::new("exchange_ts", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), false),
        Field::new("price", decimal.clone(), false),
        Field::new("size", decimal, false),
        Field::new("side", DataType::Utf8, false),
        Field::new("sequence", DataType::Int64, false),
    ]));
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut b = ColumnsBuilder::new(schema, &names, "t").unwrap();
    for (i, t) in trades.iter().enumerate() {
        let dec = |v: i64| Value::Decimal(apache_avro::Decimal::from(v.to_be_bytes()));
        let fields = vec![
            ("symbol".to_string(), Value::String(t.symbol.into())),
            ("exchange".to_string(), Value::String("XNAS".into())),
            ("exchange_ts".to_string(), Value::TimestampMicros(t.ts)),
            ("price".to_string(), dec(t.price)),
            ("size".to_string(), dec(t.size)),
            ("side".to_string(), Value::Enum(0, t.side.into())),
            ("sequence".to_string(), Value::Long(t.seq)),
        ];
        b.append(fields, KafkaMeta { partition: 0, offset: i as i64, timestamp_ms: None }).unwrap();
    }
    b.finish().unwrap()
}

fn input<'a>(records: &'a RecordBatch, offsets: &'a [i64], zeros: &'a [i64], key_offsets: &'a [u32]) -> BatchInput<'a> {
    BatchInput {
        topic: "market.trades.raw",
        partition: 0,
        records,
        fields: &[0, 1, 2, 3, 4, 5, 6],
        offsets,
        timestamps_us: zeros,
        key_data: &[],
        key_offsets,
        now_micros: NOW,
    }
}

/// Runs one batch through `v` and returns (rejected (index, code), events (index, kind, missing)).
fn run(
    v: &mut k2_ingest::guest::ValidatorInstance,
    trades: &[Trade<'_>],
) -> (Vec<(usize, String)>, Vec<(usize, EventKind, i64)>) {
    let records = batch(trades);
    let n = trades.len();
    let offsets: Vec<i64> = (0..n as i64).collect();
    let zeros = vec![0; n];
    let key_offsets = vec![0u32; n + 1];
    let verdict = v.validate(&input(&records, &offsets, &zeros, &key_offsets)).unwrap();
    (
        verdict.rejected.into_iter().map(|r| (r.index, r.code)).collect(),
        verdict.events.into_iter().map(|e| (e.index, e.kind, e.missing)).collect(),
    )
}

#[test]
fn reports_its_name_and_wit_version() {
    let v = module().instantiate(&[]).unwrap();
    assert_eq!(v.info().name, "trades");
    assert_eq!(v.info().wit_version, "0.1.0");
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
