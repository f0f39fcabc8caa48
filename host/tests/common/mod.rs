//! Shared helpers for the guest tests: real components from guest/, batches built as the pipeline builds them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use apache_avro::types::Value;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use k2_ingest::config::WasmConfig;
use k2_ingest::decode::columns::{ColumnsBuilder, KafkaMeta};
use k2_ingest::sandbox::{
    BatchInput, EventKind, GuestEngine, SupervisedValidator, ValidatorInstance, ValidatorModule, Verdict,
};

/// The host's clock as the tests hand it to validators, microseconds since the epoch.
pub const NOW: i64 = 1_700_000_000_000_000;

/// A component built by `make guest`, e.g. `k2_trades_validator`.
pub fn guest_wasm(name: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../guest/target/wasm32-wasip2/release/{name}.wasm"));
    assert!(path.is_file(), "{} is missing: build the guests with `make guest`", path.display());
    path
}

pub fn load(engine: &GuestEngine, name: &str) -> ValidatorModule {
    engine.load(&guest_wasm(name)).unwrap()
}

pub fn trades_module() -> ValidatorModule {
    load(&GuestEngine::new(&WasmConfig::default()).unwrap(), "k2_trades_validator")
}

pub struct Trade<'a> {
    pub symbol: &'a str,
    pub price: i64,
    pub size: i64,
    pub side: &'a str,
    pub seq: i64,
    pub ts: i64,
}

/// A valid trade of `symbol` with sequence `seq`.
pub fn ok(symbol: &str, seq: i64) -> Trade<'_> {
    Trade { symbol, price: 100_00000000, size: 5_00000000, side: "BUY", seq, ts: NOW - 1_000 }
}

/// The trades columns a validator sees, built the way the pipeline builds them.
pub fn batch(trades: &[Trade<'_>]) -> RecordBatch {
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

/// Hands `trades` to `v` as one batch and returns the checked verdict (or the host's error).
pub fn validate(v: &mut ValidatorInstance, trades: &[Trade<'_>]) -> k2_ingest::error::Result<Verdict> {
    let records = batch(trades);
    let n = trades.len();
    let offsets: Vec<i64> = (0..n as i64).collect();
    let zeros = vec![0; n];
    let key_offsets = vec![0u32; n + 1];
    v.validate(&BatchInput {
        topic: "market.trades.raw",
        partition: 0,
        records: &records,
        fields: &[0, 1, 2, 3, 4, 5, 6],
        offsets: &offsets,
        timestamps_us: &zeros,
        key_data: &[],
        key_offsets: &key_offsets,
        now_micros: NOW,
    })
}

/// Hands `trades` to a supervised validator as one batch, with a distinct key per record.
pub async fn validate_supervised(
    v: &mut SupervisedValidator,
    trades: &[Trade<'_>],
) -> k2_ingest::error::Result<Verdict> {
    let records = batch(trades);
    let n = trades.len();
    let offsets: Vec<i64> = (100..100 + n as i64).collect();
    let zeros = vec![0; n];
    let mut key_data = Vec::new();
    let mut key_offsets = vec![0u32];
    for i in 0..n {
        key_data.extend_from_slice(format!("key-{i}").as_bytes());
        key_offsets.push(key_data.len() as u32);
    }
    v.validate(&BatchInput {
        topic: "market.trades.raw",
        partition: 0,
        records: &records,
        fields: &[0, 1, 2, 3, 4, 5, 6],
        offsets: &offsets,
        timestamps_us: &zeros,
        key_data: &key_data,
        key_offsets: &key_offsets,
        now_micros: NOW,
    })
    .await
}

/// Runs one batch and returns (rejected (index, code), events (index, kind, missing)).
pub fn run(v: &mut ValidatorInstance, trades: &[Trade<'_>]) -> (Vec<(usize, String)>, Vec<(usize, EventKind, i64)>) {
    let verdict = validate(v, trades).unwrap();
    (
        verdict.rejected.into_iter().map(|r| (r.index, r.code)).collect(),
        verdict.events.into_iter().map(|e| (e.index, e.kind, e.missing)).collect(),
    )
}
