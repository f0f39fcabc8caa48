//! Decodes one message body — plain Avro or Confluent-framed — into the table's record shape.

use std::collections::HashMap;
use std::io::Cursor;
use std::time::{Duration, Instant};

use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value;

use crate::config::{Framing, TopicConfig};
use crate::decode::columns::{ColumnsBuilder, KafkaMeta};
use crate::decode::direct::{Raw, RecordPlan};
use crate::decode::scan::{DatumShape, set_apache_avro_allocation_belt};
use crate::error::{DecodeError, Result};
use crate::schema::mapping::load_avsc;

/// The Confluent wire format: magic byte 0, then a 4-byte big-endian schema id.
const CONFLUENT_MAGIC: u8 = 0;
const CONFLUENT_HEADER_LEN: usize = 5;
/// Most schema ids remembered as unusable at once.
const MAX_REJECTED_IDS: usize = 1024;
/// How long an id the registry had no schema for stays refused before it is asked again: a
/// registry follower may not have caught up with a schema registered a moment ago.
const REJECTED_FOR: Duration = Duration::from_secs(60);

/// A writer schema and whether records written with it need resolving to the table's schema.
struct Writer {
    schema: AvroSchema,
    needs_resolution: bool,
    /// The schema compiled for the scan that runs before apache-avro reads a datum.
    shape: DatumShape,
}

impl Writer {
    fn new(schema: AvroSchema, reader: &AvroSchema) -> Self {
        let needs_resolution = needs_resolution(&schema, reader);
        let shape = DatumShape::compile(&schema);
        Self { schema, needs_resolution, shape }
    }
}

/// Decodes the bodies of one topic.
pub struct TopicDecoder {
    table_schema: AvroSchema,
    /// The table schema compiled for the scan, for bodies without a writer schema id.
    table_shape: DatumShape,
    framing: Framing,
    writers: HashMap<u32, Writer>,
    /// Ids the registry had no usable schema for, with why and when: their records are
    /// undecodable until the registry is asked again, `REJECTED_FOR` later.
    rejected: HashMap<u32, (String, Instant)>,
    /// The table schema compiled for the direct reader, when it covers the schema's shape.
    plan: Option<RecordPlan>,
    /// The direct reader's fields of the record in hand, reused from record to record.
    raws: Vec<Raw>,
}

impl TopicDecoder {
    /// Starts from `table_schema` (the topic's schema file, or its registry subject's latest
    /// version) and loads, for Confluent framing, every writer schema file the config maps.
    pub fn new(topic: &TopicConfig, table_schema: AvroSchema) -> Result<Self> {
        // Before any record is decoded: apache-avro fixes its bound on the first decode.
        set_apache_avro_allocation_belt();
        let mut writers = HashMap::new();
        for (id, path) in &topic.schema_ids {
            // Config validation already checked that every key is a u32.
            let id: u32 = id.parse().unwrap_or_default();
            writers.insert(id, Writer::new(load_avsc(path)?, &table_schema));
        }
        let plan = RecordPlan::compile(&table_schema);
        let table_shape = DatumShape::compile(&table_schema);
        Ok(Self {
            table_schema,
            table_shape,
            framing: topic.framing,
            writers,
            rejected: HashMap::new(),
            plan,
            raws: Vec::new(),
        })
    }

    /// The writer schemas known so far, by id.
    pub fn writer_schemas(&self) -> impl Iterator<Item = (u32, &AvroSchema)> {
        self.writers.iter().map(|(id, w)| (*id, &w.schema))
    }

    /// The schema id of a Confluent-framed body when no writer schema is known for it yet.
    /// Bodies too short or with the wrong magic byte are left to `decode_into` to report.
    pub fn unknown_schema_id(&self, body: &[u8]) -> Option<u32> {
        if self.framing != Framing::Confluent || body.len() < CONFLUENT_HEADER_LEN || body[0] != CONFLUENT_MAGIC {
            return None;
        }
        let id = u32::from_be_bytes(body[1..CONFLUENT_HEADER_LEN].try_into().unwrap());
        let rejected = self.rejected.get(&id).is_some_and(|(_, at)| at.elapsed() < REJECTED_FOR);
        (!self.writers.contains_key(&id) && !rejected).then_some(id)
    }

    /// Adds the writer schema of `id` (one the reader schema already reads).
    pub fn learn(&mut self, id: u32, schema: AvroSchema) {
        self.writers.insert(id, Writer::new(schema, &self.table_schema));
    }

    /// Marks `id` as having no usable writer schema: its records are undecodable, for `why`.
    pub fn reject(&mut self, id: u32, why: String) {
        // Bounded: ids are 32-bit and a stream of garbage could name many.
        if self.rejected.len() >= MAX_REJECTED_IDS {
            self.rejected.clear();
        }
        self.rejected.insert(id, (why, Instant::now()));
    }

    /// Replaces the reader (table) schema, after it was merged with a new writer schema.
    pub fn set_reader(&mut self, schema: AvroSchema) {
        for w in self.writers.values_mut() {
            w.needs_resolution = needs_resolution(&w.schema, &schema);
        }
        self.plan = RecordPlan::compile(&schema);
        self.table_shape = DatumShape::compile(&schema);
        self.table_schema = schema;
    }

    /// The schema records are decoded to (the table's).
    pub fn table_schema(&self) -> &AvroSchema {
        &self.table_schema
    }

    /// Decodes one body into the table schema's fields, in schema order.
    pub fn decode(&self, body: &[u8]) -> Result<Vec<(String, Value)>, DecodeError> {
        let (datum, writer) = self.unframe(body)?;
        self.decode_datum(datum, writer)
    }

    /// Decodes an unframed datum through apache-avro, resolving it if its writer schema differs.
    /// The datum is scanned against its writer schema first: apache-avro allocates from the
    /// lengths it reads and turns an early end of input into nulls (see `scan`).
    fn decode_datum(&self, datum: &[u8], writer: Option<&Writer>) -> Result<Vec<(String, Value)>, DecodeError> {
        let value = match writer {
            None => {
                self.table_shape.check(datum)?;
                decode_exact(&self.table_schema, datum, None)?
            }
            Some(w) => {
                w.shape.check(datum)?;
                decode_exact(&w.schema, datum, w.needs_resolution.then_some(&self.table_schema))?
            }
        };
        match value {
            Value::Record(fields) => Ok(fields),
            _ => Err(DecodeError::Avro("datum is not a record".into())),
        }
    }

    /// Decodes one body and appends it to `columns`, or leaves them untouched on error. Bodies
    /// written with the table's own schema take the direct reader; others are resolved through
    /// apache-avro's values.
    pub fn decode_into(
        &mut self,
        body: &[u8],
        columns: &mut ColumnsBuilder,
        meta: KafkaMeta,
    ) -> Result<(), DecodeError> {
        let (datum, writer) = self.unframe(body)?;
        match &self.plan {
            Some(plan) if !writer.is_some_and(|w| w.needs_resolution) => {
                plan.read(datum, &mut self.raws)?;
                columns.append_raw(&self.raws, datum, plan, meta)
            }
            _ => columns.append(self.decode_datum(datum, writer)?, meta),
        }
    }

    /// The datum inside a body and, for Confluent framing, the writer schema its id names.
    fn unframe<'b>(&self, body: &'b [u8]) -> Result<(&'b [u8], Option<&Writer>), DecodeError> {
        if body.is_empty() {
            return Err(DecodeError::Empty);
        }
        match self.framing {
            Framing::Plain => Ok((body, None)),
            Framing::Confluent => {
                if body.len() < CONFLUENT_HEADER_LEN {
                    return Err(DecodeError::ShortFrame { len: body.len() });
                }
                if body[0] != CONFLUENT_MAGIC {
                    return Err(DecodeError::BadMagic { found: body[0] });
                }
                let id = u32::from_be_bytes(body[1..CONFLUENT_HEADER_LEN].try_into().unwrap());
                let Some(writer) = self.writers.get(&id) else {
                    return Err(match self.rejected.get(&id) {
                        Some((why, _)) => DecodeError::SchemaId { id, message: why.clone() },
                        None => DecodeError::UnknownSchemaId { id },
                    });
                };
                Ok((&body[CONFLUENT_HEADER_LEN..], Some(writer)))
            }
        }
    }
}

/// Whether records written with `writer` must be resolved to `reader`. Resolution costs a
/// second pass over every value, so it is skipped when the schemas agree, by both of
/// apache-avro's comparisons: canonical forms drop logical types (millis read as micros would
/// be wrong), and its structural `==` ignores field names (a reordered writer would put values
/// in each other's columns).
pub fn needs_resolution(writer: &AvroSchema, reader: &AvroSchema) -> bool {
    writer.canonical_form() != reader.canonical_form() || writer != reader
}

/// Decodes one datum and insists it uses the whole body: leftover bytes mean the body
/// was not written with this schema, even if a prefix happened to decode.
fn decode_exact(writer: &AvroSchema, body: &[u8], reader: Option<&AvroSchema>) -> Result<Value, DecodeError> {
    let mut cursor = Cursor::new(body);
    let value =
        apache_avro::from_avro_datum(writer, &mut cursor, reader).map_err(|e| DecodeError::Avro(e.to_string()))?;
    let trailing = body.len() - cursor.position() as usize;
    if trailing > 0 {
        return Err(DecodeError::TrailingBytes { trailing });
    }
    Ok(value)
}

/// Frames an encoded datum the Confluent way (used by the `k2-sample` generator).
pub fn confluent_frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONFLUENT_HEADER_LEN + datum.len());
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn write_schema(dir: &tempfile::TempDir, name: &str, fields: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap();
        path
    }

    pub(crate) fn topic(schema: PathBuf, framing: Framing, ids: &[(&str, PathBuf)]) -> TopicConfig {
        TopicConfig {
            name: "t".into(),
            table: None,
            schema: Some(schema),
            subject: None,
            allow_other_subjects: false,
            framing,
            schema_ids: ids.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
            validator: None,
            on_invalid: Default::default(),
            on_duplicate: Default::default(),
            on_gap: Default::default(),
            on_offset_lost: Default::default(),
            dlq_topic: None,
            events_table: None,
            partition_by: Vec::new(),
        }
    }

    fn encode(schema: &AvroSchema, fields: Vec<(&str, Value)>) -> Vec<u8> {
        let record = Value::Record(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        apache_avro::to_avro_datum(schema, record).unwrap()
    }

    #[test]
    fn plain_body_decodes_and_truncated_or_padded_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_schema(&dir, "a.avsc", r#"{"name":"s","type":"string"},{"name":"n","type":"long"}"#);
        let d = TopicDecoder::new(&topic(path.clone(), Framing::Plain, &[]), load_avsc(&path).unwrap()).unwrap();
        let body = encode(d.table_schema(), vec![("s", Value::String("AAPL".into())), ("n", Value::Long(42))]);
        let fields = d.decode(&body).unwrap();
        assert_eq!(fields[1], ("n".to_string(), Value::Long(42)));
        assert_eq!(
            d.decode(&body[..body.len() - 1]).unwrap_err().to_string(),
            "avro: n: input ends inside a long at byte 5"
        );
        let mut padded = body.clone();
        padded.push(0);
        assert_eq!(d.decode(&padded), Err(DecodeError::TrailingBytes { trailing: 1 }));
        assert_eq!(d.decode(&[]), Err(DecodeError::Empty));
    }

    #[test]
    fn direct_reader_builds_the_same_columns_as_apache_avro() {
        use crate::schema::mapping::{iceberg_schema, record_fields};
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/trade.avsc");
        let mut d = TopicDecoder::new(&topic(path.clone(), Framing::Plain, &[]), load_avsc(&path).unwrap()).unwrap();
        assert!(d.plan.is_some(), "the trade schema takes the direct reader");
        let arrow =
            iceberg::arrow::schema_to_arrow_schema(&iceberg_schema(d.table_schema(), &path, true).unwrap()).unwrap();
        let names: Vec<String> = record_fields(d.table_schema()).iter().map(|f| f.name.clone()).collect();
        let mut direct = ColumnsBuilder::new(arrow.clone().into(), &names, "t").unwrap();
        let mut values = ColumnsBuilder::new(arrow.into(), &names, "t").unwrap();
        for (i, (price, note)) in
            [(vec![0x01, 0x00], None), (vec![0xFF, 0x38], Some("odd lot")), (vec![0x7F], None)].into_iter().enumerate()
        {
            let note = match note {
                Some(n) => Value::Union(1, Box::new(Value::String(n.into()))),
                None => Value::Union(0, Box::new(Value::Null)),
            };
            let body = encode(
                d.table_schema(),
                vec![
                    ("symbol", Value::String("AAPL".into())),
                    ("exchange", Value::String("XNAS".into())),
                    ("exchange_ts", Value::TimestampMicros(1_700_000_000_000_000 + i as i64)),
                    ("price", Value::Decimal(price.into())),
                    ("size", Value::Decimal(vec![0x05].into())),
                    ("side", Value::Enum(i as u32, ["BUY", "SELL", "UNKNOWN"][i].into())),
                    ("trade_id", Value::String(format!("t{i}"))),
                    ("sequence", Value::Long(i as i64 + 1)),
                    ("conditions", note),
                ],
            );
            let meta =
                KafkaMeta { partition: 1, offset: i as i64, timestamp_ms: (i != 1).then_some(1_700_000_000_000) };
            d.decode_into(&body, &mut direct, meta).unwrap();
            values.append(d.decode(&body).unwrap(), meta).unwrap();
            // A truncated body adds nothing to either.
            assert!(d.decode_into(&body[..body.len() - 1], &mut direct, meta).is_err());
        }
        assert_eq!(direct.finish().unwrap(), values.finish().unwrap());
    }

    #[test]
    fn nested_records_arrays_maps_and_uuids_become_nested_columns() {
        use crate::schema::mapping::{iceberg_schema, record_fields};
        use arrow_array::{Array, FixedSizeBinaryArray, ListArray, MapArray, StructArray};
        let dir = tempfile::tempdir().unwrap();
        let path = write_schema(
            &dir,
            "n.avsc",
            r#"{"name":"id","type":{"type":"string","logicalType":"uuid"}},
               {"name":"legs","type":{"type":"array","items":{"type":"record","name":"Leg","fields":[
                   {"name":"venue","type":"string"},{"name":"qty","type":["null","long"]}]}}},
               {"name":"tags","type":{"type":"map","values":"int"}},
               {"name":"first","type":["null","Leg"]}"#,
        );
        let mut d = TopicDecoder::new(&topic(path.clone(), Framing::Plain, &[]), load_avsc(&path).unwrap()).unwrap();
        assert!(d.plan.is_none(), "nested shapes take apache-avro's path");
        let arrow =
            iceberg::arrow::schema_to_arrow_schema(&iceberg_schema(d.table_schema(), &path, true).unwrap()).unwrap();
        let names: Vec<String> = record_fields(d.table_schema()).iter().map(|f| f.name.clone()).collect();
        let mut columns = ColumnsBuilder::new(arrow.into(), &names, "t").unwrap();
        let leg = |venue: &str, qty: Option<i64>| {
            Value::Record(vec![
                ("venue".into(), Value::String(venue.into())),
                ("qty".into(), Value::Union(qty.is_some() as u32, Box::new(qty.map_or(Value::Null, Value::Long)))),
            ])
        };
        let uuid = apache_avro::types::Value::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap());
        let schema = d.table_schema().clone();
        let body = |legs: Vec<Value>, first: Option<Value>| {
            encode(
                &schema,
                vec![
                    ("id", uuid.clone()),
                    ("legs", Value::Array(legs)),
                    ("tags", Value::Map([("b".to_string(), Value::Int(2)), ("a".to_string(), Value::Int(1))].into())),
                    ("first", Value::Union(first.is_some() as u32, Box::new(first.unwrap_or(Value::Null)))),
                ],
            )
        };
        let meta = KafkaMeta { partition: 0, offset: 0, timestamp_ms: None };
        d.decode_into(
            &body(vec![leg("XNAS", Some(5)), leg("XNYS", None)], Some(leg("XNAS", Some(5)))),
            &mut columns,
            meta,
        )
        .unwrap();
        d.decode_into(&body(vec![], None), &mut columns, KafkaMeta { offset: 1, ..meta }).unwrap();
        let batch = columns.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let id = batch.column(0).as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
        assert_eq!(id.value(0), uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap().as_bytes());
        let legs = batch.column(1).as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!((legs.value_length(0), legs.value_length(1)), (2, 0));
        let leg_rows = legs.values().as_any().downcast_ref::<StructArray>().unwrap();
        assert!(leg_rows.column(1).is_null(1), "the second leg has no qty");
        let tags = batch.column(2).as_any().downcast_ref::<MapArray>().unwrap();
        let keys = tags.keys().as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        assert_eq!((keys.value(0), keys.value(1)), ("a", "b"), "map entries in key order");
        let first = batch.column(3).as_any().downcast_ref::<StructArray>().unwrap();
        assert!(first.is_valid(0) && first.is_null(1));
    }

    #[test]
    fn a_writer_with_reordered_fields_is_resolved_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let table =
            write_schema(&dir, "t.avsc", r#"{"name":"symbol","type":"string"},{"name":"exchange","type":"string"}"#);
        let mut d =
            TopicDecoder::new(&topic(table.clone(), Framing::Confluent, &[]), load_avsc(&table).unwrap()).unwrap();
        let swapped = AvroSchema::parse_str(
            r#"{"type":"record","name":"R","fields":[{"name":"exchange","type":"string"},{"name":"symbol","type":"string"}]}"#,
        )
        .unwrap();
        assert!(needs_resolution(&swapped, d.table_schema()), "same types in the same order, other names");
        d.learn(9, swapped.clone());
        let body = confluent_frame(
            9,
            &encode(
                &swapped,
                vec![("exchange", Value::String("XNAS".into())), ("symbol", Value::String("AAPL".into()))],
            ),
        );
        let fields = d.decode(&body).unwrap();
        assert_eq!(fields[0], ("symbol".to_string(), Value::String("AAPL".into())));
        let millis = AvroSchema::parse_str(r#"{"type":"long","logicalType":"timestamp-millis"}"#).unwrap();
        let micros = AvroSchema::parse_str(r#"{"type":"long","logicalType":"timestamp-micros"}"#).unwrap();
        assert!(needs_resolution(&millis, &micros), "logical types differ");
    }

    #[test]
    fn confluent_body_resolves_writer_schema_to_table_schema() {
        let dir = tempfile::tempdir().unwrap();
        let table = write_schema(
            &dir,
            "v2.avsc",
            r#"{"name":"n","type":"long"},{"name":"note","type":["null","string"],"default":null}"#,
        );
        let v1 = write_schema(&dir, "v1.avsc", r#"{"name":"n","type":"int"}"#);
        let d = TopicDecoder::new(
            &topic(table.clone(), Framing::Confluent, &[("7", v1.clone())]),
            load_avsc(&table).unwrap(),
        )
        .unwrap();
        let v1_schema = load_avsc(&v1).unwrap();
        let body = confluent_frame(7, &encode(&v1_schema, vec![("n", Value::Int(5))]));
        let fields = d.decode(&body).unwrap();
        assert_eq!(fields[0].1, Value::Long(5));
        assert_eq!(fields[1].1, Value::Union(0, Box::new(Value::Null)));

        assert_eq!(d.decode(&confluent_frame(8, &[2])), Err(DecodeError::UnknownSchemaId { id: 8 }));
        assert_eq!(d.decode(&[1, 0, 0, 0, 7, 2]), Err(DecodeError::BadMagic { found: 1 }));
        assert_eq!(d.decode(&[0, 0]), Err(DecodeError::ShortFrame { len: 2 }));
    }

    /// The topic of issue 20's report: `{id: long, m: map<string>, s}` with `s` given.
    fn map_topic(s: &str) -> (tempfile::TempDir, TopicDecoder) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_schema(
            &dir,
            "m.avsc",
            &format!(
                r#"{{"name":"id","type":"long"}},{{"name":"m","type":{{"type":"map","values":"string"}}}},{{"name":"s","type":{s}}}"#
            ),
        );
        let d = TopicDecoder::new(&topic(path.clone(), Framing::Plain, &[]), load_avsc(&path).unwrap()).unwrap();
        assert!(d.plan.is_none(), "a map takes apache-avro's path");
        (dir, d)
    }

    #[test]
    fn a_map_block_claiming_2_pow_29_entries_is_refused_without_a_large_allocation() {
        let (_dir, d) = map_topic(r#""string""#);
        // id 1, then a map block of 2^29 - 1 entries, then nothing.
        let (result, largest) =
            crate::test_alloc::largest_allocation(|| d.decode(&[0x02, 0xFE, 0xFF, 0xFF, 0xFF, 0x03]));
        assert!(largest < 64 << 10, "a 6-byte body made a {largest}-byte allocation");
        assert_eq!(
            result.unwrap_err().to_string(),
            "avro: m: map block of 536870911 items at byte 1, only 0 bytes left and an item takes at least 2"
        );
    }

    #[test]
    fn a_map_key_claiming_512_mib_is_refused_for_that_reason() {
        let (_dir, d) = map_topic(r#""string""#);
        // id 1, one entry whose key is 2^29 bytes long, then nothing.
        let (result, largest) =
            crate::test_alloc::largest_allocation(|| d.decode(&[0x02, 0x02, 0x80, 0x80, 0x80, 0x80, 0x04]));
        assert!(largest < 64 << 10, "a 7-byte body made a {largest}-byte allocation");
        assert_eq!(
            result.unwrap_err().to_string(),
            "avro: m[entry 0].key: string of 536870912 bytes at byte 7, only 0 left"
        );
    }

    #[test]
    fn a_body_ending_inside_an_optional_value_is_an_error_not_a_null() {
        use crate::schema::mapping::{iceberg_schema, record_fields};
        let (dir, mut d) = map_topic(r#"["null","string"]"#);
        let path = dir.path().join("m.avsc");
        let arrow =
            iceberg::arrow::schema_to_arrow_schema(&iceberg_schema(d.table_schema(), &path, true).unwrap()).unwrap();
        let names: Vec<String> = record_fields(d.table_schema()).iter().map(|f| f.name.clone()).collect();
        let mut columns = ColumnsBuilder::new(arrow.into(), &names, "t").unwrap();
        let meta = KafkaMeta { partition: 0, offset: 0, timestamp_ms: None };
        // id 1, an empty map, then `s` = branch 1, a string of 5 bytes with 2 of them there.
        let cut_in_string = [0x02, 0x00, 0x02, 0x0A, b'a', b'b'];
        assert_eq!(
            d.decode_into(&cut_in_string, &mut columns, meta).unwrap_err().to_string(),
            "avro: s: string of 5 bytes at byte 4, only 2 left"
        );
        // id 1, an empty map, then nothing where `s`'s branch index should be.
        assert_eq!(
            d.decode_into(&[0x02, 0x00], &mut columns, meta).unwrap_err().to_string(),
            "avro: s: input ends inside a union branch at byte 2"
        );
        assert!(columns.is_empty(), "neither body became a row");
        d.decode_into(&[0x02, 0x00, 0x02, 0x04, b'a', b'b'], &mut columns, meta).unwrap();
        assert_eq!(columns.len(), 1);
    }

    #[test]
    fn millisecond_timestamps_out_of_range_are_refused_on_both_paths() {
        use crate::schema::mapping::{iceberg_schema, record_fields};
        let dir = tempfile::tempdir().unwrap();
        let ts = r#"{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}"#;
        for (name, fields, direct) in [
            ("flat.avsc", ts.to_string(), true),
            ("map.avsc", format!(r#"{ts},{{"name":"m","type":{{"type":"map","values":"int"}}}}"#), false),
        ] {
            let path = write_schema(&dir, name, &fields);
            let mut d =
                TopicDecoder::new(&topic(path.clone(), Framing::Plain, &[]), load_avsc(&path).unwrap()).unwrap();
            assert_eq!(d.plan.is_some(), direct, "{name}");
            let arrow = iceberg::arrow::schema_to_arrow_schema(&iceberg_schema(d.table_schema(), &path, true).unwrap())
                .unwrap();
            let names: Vec<String> = record_fields(d.table_schema()).iter().map(|f| f.name.clone()).collect();
            let mut columns = ColumnsBuilder::new(arrow.into(), &names, "t").unwrap();
            let meta = KafkaMeta { partition: 0, offset: 0, timestamp_ms: None };
            let millis = i64::MAX / 1000 + 1;
            let mut body = Vec::new();
            let zigzag = ((millis << 1) ^ (millis >> 63)) as u64;
            let mut z = zigzag;
            loop {
                let byte = (z & 0x7F) as u8;
                z >>= 7;
                if z == 0 {
                    body.push(byte);
                    break;
                }
                body.push(byte | 0x80);
            }
            if !direct {
                body.push(0x00);
            }
            assert_eq!(
                d.decode_into(&body, &mut columns, meta),
                Err(DecodeError::Field {
                    field: "ts".into(),
                    message: format!("timestamp-millis {millis} is out of range of a microsecond timestamp")
                }),
                "{name}"
            );
            assert!(columns.is_empty());
        }
    }
}
