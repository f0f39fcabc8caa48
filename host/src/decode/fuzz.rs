//! Property tests of both decode paths on hostile bodies: no panic, no allocation past the body's
//! size, and the direct reader and apache-avro give the same answer.
//!
//! `make test` runs each property for [`DEFAULT_CASES`] cases; `make fuzz` sets `PROPTEST_CASES`
//! far higher. Each property prints its case count and time on stderr (`--nocapture` shows it).
//! Every case also records the largest single allocation the apache-avro path made, which must
//! stay within [`allocation_bound`] of the body's size.

use std::path::Path;
use std::time::Instant;

use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::decode::avro::TopicDecoder;
use crate::decode::columns::{ColumnsBuilder, KafkaMeta};
use crate::decode::direct::{Raw, RecordPlan};
use crate::decode::scan::{DatumShape, MAX_EMPTY_ITEMS};
use crate::error::DecodeError;
use crate::schema::mapping::{iceberg_schema, record_fields};
use crate::test_alloc::largest_allocation;

/// Cases per property in `make test`: a few seconds for all of them on the dev profile.
const DEFAULT_CASES: u32 = 4_000;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(DEFAULT_CASES)
}

/// Runs one property and reports its case count, how many bodies decoded (a harness whose
/// mutations always break the body, or never do, tests little) and its time; panics with the
/// shrunk failing input. `test` returns whether the body decoded.
fn run<S: Strategy>(name: &str, per: u32, strategy: S, test: impl Fn(S::Value) -> Result<bool, TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    // `per`: bodies a case tries, so every property takes about the same time.
    let cases = (cases() / per).max(1);
    // No failure files: a failing case is printed shrunk, and the seed-free runner re-finds it.
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let decoded = std::cell::Cell::new(0u64);
    let start = Instant::now();
    let result = runner.run(&strategy, |input| {
        let ok = test(input)?;
        decoded.set(decoded.get() + u64::from(ok));
        Ok(())
    });
    eprintln!(
        "fuzz {name}: {cases} cases in {:.1} s, {} decoded, the rest refused",
        start.elapsed().as_secs_f64(),
        decoded.get()
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// What the apache-avro path may allocate at once for a body: its values are built from bytes
/// the scan has checked, so a constant for the record's own bookkeeping, a multiple of the body
/// (each byte is at most one `Value` or one hash-map slot, with room for a `Vec` or a table to
/// double), and the zero-byte items the scan lets through, which take no bytes at all.
fn allocation_bound(body: &[u8]) -> usize {
    64 * 1024 + 256 * body.len() + 2 * MAX_EMPTY_ITEMS * std::mem::size_of::<Value>()
}

/// A flat schema: every field shape the direct reader takes.
const FLAT: &str = r#"{"type":"record","name":"Flat","fields":[
    {"name":"s","type":"string"},
    {"name":"n","type":"long"},
    {"name":"i","type":"int"},
    {"name":"b","type":"boolean"},
    {"name":"f","type":"float"},
    {"name":"d","type":"double"},
    {"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY","SELL","UNKNOWN"]}},
    {"name":"p","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":8}},
    {"name":"q","type":{"type":"fixed","name":"Q","size":3,"logicalType":"decimal","precision":6,"scale":2}},
    {"name":"raw","type":"bytes"},
    {"name":"fx","type":{"type":"fixed","name":"Fx","size":4}},
    {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
    {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"day","type":{"type":"int","logicalType":"date"}},
    {"name":"note","type":["null","string"]},
    {"name":"late","type":["string","null"]},
    {"name":"opt","type":["null","long"]}
]}"#;

/// A nested schema for apache-avro's path alone: arrays, maps, nested and recursive records,
/// wide unions, zero-byte items.
const NESTED: &str = r#"{"type":"record","name":"Nested","fields":[
    {"name":"id","type":"long"},
    {"name":"m","type":{"type":"map","values":"string"}},
    {"name":"legs","type":{"type":"array","items":{"type":"record","name":"Leg","fields":[
        {"name":"venue","type":"string"},
        {"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY","SELL"]}},
        {"name":"qty","type":["null","long","double"]}]}}},
    {"name":"nulls","type":{"type":"array","items":"null"}},
    {"name":"chain","type":["null",{"type":"record","name":"Link","fields":[
        {"name":"v","type":"int"},{"name":"next","type":["null","Link"]}]}]},
    {"name":"tags","type":{"type":"map","values":{"type":"array","items":"boolean"}}},
    {"name":"fx","type":{"type":"fixed","name":"Fx","size":2}},
    {"name":"s","type":["null","string"]}
]}"#;

/// One change to a valid body, at a position taken modulo the body's length.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    /// Overwrites a byte with one of the values that make bad indices and lengths.
    Set(usize, u8),
    /// Inserts a varint with a hostile value (a length or count past anything the body holds).
    Varint(usize, i64),
    /// Inserts bytes that are not UTF-8.
    NotUtf8(usize, u8),
    /// Inserts a run of one byte: deep recursion, long blocks.
    Run(usize, u8, usize),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x04, 0x06, 0x7F, 0x80, 0xFE, 0xFF]);
    let huge = prop::sample::select(vec![
        (1 << 29) - 1,
        1 << 29,
        i64::from(i32::MAX),
        i64::from(i32::MAX) + 1,
        i64::MAX,
        i64::MIN,
        -1,
        -(1 << 29),
        4097,
        i64::MAX / 1000 + 1,
    ]);
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..=255u8).prop_map(|(at, x)| Mutation::Flip(at, x)),
        (any::<usize>(), interesting.clone()).prop_map(|(at, b)| Mutation::Set(at, b)),
        (any::<usize>(), huge).prop_map(|(at, v)| Mutation::Varint(at, v)),
        (any::<usize>(), prop::sample::select(vec![0xFFu8, 0xC0, 0x80, 0xED]))
            .prop_map(|(at, b)| Mutation::NotUtf8(at, b)),
        (any::<usize>(), interesting, 1..600usize).prop_map(|(at, b, n)| Mutation::Run(at, b, n)),
        prop::collection::vec(any::<u8>(), 1..4).prop_map(Mutation::Append),
    ]
}

fn zigzag(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7F) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn mutate(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Truncate(i) => body.truncate(at(*i, body.len())),
            Mutation::Flip(i, x) if !body.is_empty() => {
                let i = i % body.len();
                body[i] ^= x;
            }
            Mutation::Set(i, b) if !body.is_empty() => {
                let i = i % body.len();
                body[i] = *b;
            }
            Mutation::Flip(..) | Mutation::Set(..) => {}
            Mutation::Varint(i, v) => {
                let mut bytes = Vec::new();
                zigzag(*v, &mut bytes);
                let i = at(*i, body.len());
                body.splice(i..i, bytes);
            }
            Mutation::NotUtf8(i, b) => {
                let i = at(*i, body.len());
                body.splice(i..i, [0x02, *b]);
            }
            Mutation::Run(i, b, n) => {
                let i = at(*i, body.len());
                body.splice(i..i, std::iter::repeat_n(*b, *n));
            }
            Mutation::Append(bytes) => body.extend_from_slice(bytes),
        }
    }
    body
}

/// Valid records of [`FLAT`], encoded by apache-avro.
fn flat_body(schema: AvroSchema) -> impl Strategy<Value = Vec<u8>> {
    let optional_string = prop::option::of(".{0,6}");
    let strings = (".{0,12}", optional_string.clone(), optional_string, prop::option::of(any::<i64>()));
    let numbers = (any::<i64>(), any::<i32>(), any::<bool>(), any::<f32>(), any::<f64>(), 0..3u32);
    let decimals = (-999_999_999_999_999_999i64..=999_999_999_999_999_999, -999_999i32..=999_999);
    let bytes = (prop::collection::vec(any::<u8>(), 0..8), any::<[u8; 4]>());
    let times = (0..86_400_000i32, -(1i64 << 50)..(1i64 << 50), any::<i32>());
    (strings, numbers, decimals, bytes, times).prop_map(move |(st, nu, de, by, ti)| {
        let union = |index: u32, v: Value| Value::Union(index, Box::new(v));
        let (s, note, late, opt) = st;
        let (n, i, b, f, d, side) = nu;
        let record = Value::Record(vec![
            ("s".into(), Value::String(s)),
            ("n".into(), Value::Long(n)),
            ("i".into(), Value::Int(i)),
            ("b".into(), Value::Boolean(b)),
            ("f".into(), Value::Float(f)),
            ("d".into(), Value::Double(d)),
            ("side".into(), Value::Enum(side, ["BUY", "SELL", "UNKNOWN"][side as usize].into())),
            ("p".into(), Value::Decimal(de.0.to_be_bytes().to_vec().into())),
            ("q".into(), Value::Decimal(de.1.to_be_bytes()[1..].to_vec().into())),
            ("raw".into(), Value::Bytes(by.0)),
            ("fx".into(), Value::Fixed(4, by.1.to_vec())),
            ("tm".into(), Value::TimeMillis(ti.0)),
            ("ts".into(), Value::TimestampMillis(ti.1)),
            ("day".into(), Value::Date(ti.2)),
            ("note".into(), note.map_or(union(0, Value::Null), |v| union(1, Value::String(v)))),
            ("late".into(), late.map_or(union(1, Value::Null), |v| union(0, Value::String(v)))),
            ("opt".into(), opt.map_or(union(0, Value::Null), |v| union(1, Value::Long(v)))),
        ]);
        apache_avro::to_avro_datum(&schema, record).expect("generated records match the schema")
    })
}

/// Hand-made valid bodies of [`NESTED`] to mutate: empty, full, and one with a long chain.
fn nested_seeds(schema: &AvroSchema) -> Vec<Vec<u8>> {
    let union = |index: u32, v: Value| Value::Union(index, Box::new(v));
    let leg = |venue: &str, side: u32, qty: Value| {
        Value::Record(vec![
            ("venue".into(), Value::String(venue.into())),
            ("side".into(), Value::Enum(side, ["BUY", "SELL"][side as usize].into())),
            ("qty".into(), qty),
        ])
    };
    let mut chain = union(0, Value::Null);
    for v in 0..20 {
        chain = union(1, Value::Record(vec![("v".into(), Value::Int(v)), ("next".into(), chain)]));
    }
    let record = |full: bool, chain: Value| {
        Value::Record(vec![
            ("id".into(), Value::Long(if full { -77 } else { 0 })),
            (
                "m".into(),
                Value::Map(if full {
                    [("k".to_string(), Value::String("v".into())), ("é".to_string(), Value::String(String::new()))]
                        .into()
                } else {
                    Default::default()
                }),
            ),
            (
                "legs".into(),
                Value::Array(if full {
                    vec![
                        leg("XNAS", 0, union(1, Value::Long(5))),
                        leg("", 1, union(0, Value::Null)),
                        leg("XNYS", 1, union(2, Value::Double(0.5))),
                    ]
                } else {
                    Vec::new()
                }),
            ),
            ("nulls".into(), Value::Array(if full { vec![Value::Null; 3] } else { Vec::new() })),
            ("chain".into(), chain),
            (
                "tags".into(),
                Value::Map(if full {
                    [("t".to_string(), Value::Array(vec![Value::Boolean(true), Value::Boolean(false)]))].into()
                } else {
                    Default::default()
                }),
            ),
            ("fx".into(), Value::Fixed(2, vec![0xAB, 0xCD])),
            ("s".into(), if full { union(1, Value::String("note".into())) } else { union(0, Value::Null) }),
        ])
    };
    [record(false, union(0, Value::Null)), record(true, union(0, Value::Null)), record(true, chain)]
        .into_iter()
        .map(|r| apache_avro::to_avro_datum(schema, r).expect("seeds match the schema"))
        .collect()
}

/// Bodies for a schema: a valid one mutated one to four times, or bytes from nowhere.
fn hostile(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let noise = prop::collection::vec(
        prop_oneof![any::<u8>(), prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x04, 0x7F, 0x80, 0xFF])],
        0..96,
    );
    prop_oneof![
        4 => (valid, prop::collection::vec(mutation(), 1..3)).prop_map(|(body, ms)| mutate(body, &ms)),
        1 => noise,
    ]
}

/// A topic decoder for a schema text, and the columns builder of its table.
fn decoder(dir: &Path, name: &str, text: &str) -> (TopicDecoder, ColumnsBuilder) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let topic = crate::decode::avro::tests::topic(path.clone(), crate::config::Framing::Plain, &[]);
    let schema = crate::schema::mapping::load_avsc(&path).unwrap();
    let d = TopicDecoder::new(&topic, schema).unwrap();
    let columns = match iceberg_schema(d.table_schema(), &path, true) {
        Ok(iceberg) => {
            let arrow = iceberg::arrow::schema_to_arrow_schema(&iceberg).unwrap();
            let names: Vec<String> = record_fields(d.table_schema()).iter().map(|f| f.name.clone()).collect();
            ColumnsBuilder::new(arrow.into(), &names, "t").unwrap()
        }
        // A schema the table mapping refuses (an array of nulls) is decoded without columns.
        Err(_) => ColumnsBuilder::new(arrow_schema::Schema::empty().into(), &[], "t").unwrap(),
    };
    (d, columns)
}

const META: KafkaMeta = KafkaMeta { partition: 3, offset: 9, timestamp_ms: Some(1_700_000_000_000) };

/// The direct reader and the apache-avro path on the same body: both refuse, or both give the
/// same row. Shared by the two flat-schema properties.
fn paths_agree(
    d: &TopicDecoder,
    plan: &RecordPlan,
    direct: &mut ColumnsBuilder,
    apache: &mut ColumnsBuilder,
    body: &[u8],
) -> Result<bool, TestCaseError> {
    // A case that failed before left its row behind (shrinking runs more): start empty.
    direct.finish().unwrap();
    apache.finish().unwrap();
    let mut raws: Vec<Raw> = Vec::new();
    let by_direct = plan.read(body, &mut raws).and_then(|()| direct.append_raw(&raws, body, plan, META));
    let (by_apache, largest) = largest_allocation(|| d.decode(body).and_then(|fields| apache.append(fields, META)));
    prop_assert!(largest <= allocation_bound(body), "{largest} bytes at once for a {}-byte body", body.len());
    match (&by_direct, &by_apache) {
        (Ok(()), Ok(())) => {
            let (a, b) = (direct.finish().unwrap(), apache.finish().unwrap());
            prop_assert_eq!(a, b, "the two paths stored different rows");
        }
        (Err(_), Err(_)) => {
            prop_assert!(direct.is_empty() && apache.is_empty(), "a refused body left a row behind");
        }
        _ => prop_assert!(false, "direct reader: {by_direct:?}, apache-avro path: {by_apache:?}"),
    }
    Ok(by_direct.is_ok())
}

#[test]
fn direct_and_apache_avro_paths_agree_on_mutated_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (d, mut direct) = decoder(dir.path(), "flat.avsc", FLAT);
    let (_, mut apache) = decoder(dir.path(), "flat.avsc", FLAT);
    let plan = RecordPlan::compile(d.table_schema()).expect("the flat schema takes the direct reader");
    let valid = flat_body(d.table_schema().clone());
    let direct = std::cell::RefCell::new(&mut direct);
    let apache = std::cell::RefCell::new(&mut apache);
    run("direct_and_apache_avro_paths_agree_on_mutated_bodies", 1, hostile(valid), |body| {
        paths_agree(&d, &plan, &mut direct.borrow_mut(), &mut apache.borrow_mut(), &body)
    });
}

#[test]
fn direct_and_apache_avro_paths_agree_on_every_truncation_of_valid_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (d, mut direct) = decoder(dir.path(), "flat.avsc", FLAT);
    let (_, mut apache) = decoder(dir.path(), "flat.avsc", FLAT);
    let plan = RecordPlan::compile(d.table_schema()).unwrap();
    let direct = std::cell::RefCell::new(&mut direct);
    let apache = std::cell::RefCell::new(&mut apache);
    // A tenth of the cases: each one tries every cut of its body (about 60).
    let strategy = flat_body(d.table_schema().clone());
    run("direct_and_apache_avro_paths_agree_on_every_truncation_of_valid_bodies", 10, strategy, |body| {
        paths_agree(&d, &plan, &mut direct.borrow_mut(), &mut apache.borrow_mut(), &body)?;
        for cut in 0..body.len() {
            paths_agree(&d, &plan, &mut direct.borrow_mut(), &mut apache.borrow_mut(), &body[..cut])?;
            prop_assert!(d.decode(&body[..cut]).is_err(), "a body cut at {cut} of {} decoded", body.len());
        }
        Ok(true)
    });
}

#[test]
fn the_apache_avro_path_refuses_or_reads_mutated_nested_bodies_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = decoder(dir.path(), "nested.avsc", NESTED);
    let shape = DatumShape::compile(d.table_schema());
    let seeds = nested_seeds(d.table_schema());
    for seed in &seeds {
        assert!(d.decode(seed).is_ok(), "seed {seed:?}");
    }
    let valid = prop::sample::select(seeds);
    run("the_apache_avro_path_refuses_or_reads_mutated_nested_bodies_within_bounds", 1, hostile(valid), |body| {
        let (decoded, largest) = largest_allocation(|| d.decode(&body));
        prop_assert!(largest <= allocation_bound(&body), "{largest} bytes at once for a {}-byte body", body.len());
        // The scan reads what apache-avro reads: when it passes, apache-avro must decode the body.
        if shape.check(&body).is_ok() {
            prop_assert!(decoded.is_ok(), "the scan passed a body apache-avro refused: {decoded:?}");
        } else {
            prop_assert!(
                matches!(
                    decoded,
                    Err(DecodeError::Datum { .. } | DecodeError::TrailingBytes { .. } | DecodeError::Empty)
                ),
                "refused by the scan, so by its reason: {decoded:?}"
            );
        }
        Ok(decoded.is_ok())
    });
}
