//! Guest contract of the real `quotes` component: crossed books and negative sizes rejected, sequences tracked.

mod common;

use std::sync::Arc;

use apache_avro::types::Value;
use arrow_schema::{DataType, Field, Schema};
use common::{NOW, load};
use k2_ingest::config::WasmConfig;
use k2_ingest::decode::columns::{ColumnsBuilder, KafkaMeta};
use k2_ingest::sandbox::{BatchInput, EventKind, GuestEngine};

/// (symbol, bid, bid size, ask, ask size, sequence), unscaled at scale 8.
type Quote = (&'static str, i64, i64, i64, i64, i64);

#[test]
fn rejects_crossed_books_and_negative_sizes_and_tracks_sequences() {
    let engine = GuestEngine::new(&WasmConfig::default()).unwrap();
    let mut v = load(&engine, "k2_quotes_validator").instantiate(&[]).unwrap();
    assert_eq!(v.info().name, "quotes");

    let quotes: [Quote; 5] = [
        ("AAPL", 100, 5, 101, 5, 1),
        ("AAPL", 102, 5, 101, 5, 2),  // crossed: rejected, takes no sequence number
        ("AAPL", 100, -1, 101, 5, 2), // negative size: rejected
        ("AAPL", 100, 5, 100, 5, 2),  // locked book (bid = ask) is allowed
        ("AAPL", 100, 5, 101, 5, 4),  // gap of one
    ];
    let dec = DataType::Decimal128(18, 8);
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("exchange", DataType::Utf8, false),
        Field::new("bid_price", dec.clone(), false),
        Field::new("bid_size", dec.clone(), false),
        Field::new("ask_price", dec.clone(), false),
        Field::new("ask_size", dec, false),
        Field::new("sequence", DataType::Int64, false),
    ]));
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut b = ColumnsBuilder::new(schema, &names, "quotes").unwrap();
    let d = |v: i64| Value::Decimal(apache_avro::Decimal::from(v.to_be_bytes()));
    for (i, (sym, bid, bid_size, ask, ask_size, seq)) in quotes.iter().enumerate() {
        let fields = vec![
            ("symbol".to_string(), Value::String(sym.to_string())),
            ("exchange".to_string(), Value::String("XNAS".into())),
            ("bid_price".to_string(), d(*bid)),
            ("bid_size".to_string(), d(*bid_size)),
            ("ask_price".to_string(), d(*ask)),
            ("ask_size".to_string(), d(*ask_size)),
            ("sequence".to_string(), Value::Long(*seq)),
        ];
        b.append(fields, KafkaMeta { partition: 0, offset: i as i64, timestamp_ms: None }).unwrap();
    }
    let records = b.finish().unwrap();
    let offsets: Vec<i64> = (0..5).collect();
    let verdict = v
        .validate(&BatchInput {
            topic: "market.quotes.raw",
            partition: 0,
            records: &records,
            fields: &[0, 1, 2, 3, 4, 5, 6],
            offsets: &offsets,
            timestamps_us: &[0; 5],
            key_data: &[],
            key_offsets: &[0; 6],
            now_micros: NOW,
        })
        .unwrap();
    let codes: Vec<(usize, &str)> = verdict.rejected.iter().map(|r| (r.index, r.code.as_str())).collect();
    assert_eq!(codes, vec![(1, "crossed-book"), (2, "size-negative")]);
    let events: Vec<(usize, EventKind, i64)> = verdict.events.iter().map(|e| (e.index, e.kind, e.missing)).collect();
    assert_eq!(events, vec![(4, EventKind::Gap, 1)]);
}
