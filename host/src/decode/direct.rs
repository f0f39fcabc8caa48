//! Reads Avro binary records field by field into borrowed values, without building a value tree.
//!
//! Why not apache-avro here: its `from_avro_datum` builds a `Value` tree for every record (a
//! heap allocation per string, decimal and union, plus the record's field names) and re-resolves
//! the schema on every call; on the ingest path that was a third of the CPU time. arrow-avro
//! decodes straight into Arrow but owns its builders across records, so one bad record in the
//! middle of a batch cannot be refused alone, and our columns also carry Kafka metadata.
//! This reader covers the flat record shapes the table mapping supports; any other schema (and
//! any writer schema that needs resolution) keeps going through apache-avro.

use std::ops::Range;

use apache_avro::Schema as AvroSchema;

use crate::decode::wire::{DatumError, Wire};
use crate::error::DecodeError;
use crate::schema::mapping::record_fields;

/// How one field's value is laid out in the binary encoding.
#[derive(Debug, Clone)]
enum Kind {
    Boolean,
    Int,
    Long,
    Float,
    Double,
    /// UTF-8 checked.
    String,
    Bytes,
    Enum(Vec<String>),
    Fixed(usize),
    /// Two's complement big-endian unscaled value, in `bytes` or in a fixed of this size.
    Decimal {
        fixed: Option<usize>,
    },
    /// An int of milliseconds read as microseconds (time-millis).
    IntMillis,
    /// A long of milliseconds read as microseconds (timestamp-millis and its local variant).
    LongMillis,
}

#[derive(Debug, Clone)]
struct FieldPlan {
    /// The field's name, for errors.
    name: String,
    kind: Kind,
    /// For `["null", T]` or `[T, "null"]`: the branch index that means null.
    null_branch: Option<u64>,
}

/// One decoded field; strings and bytes are ranges of the body they came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Range<usize>),
    Bytes(Range<usize>),
    /// Symbol `index` of the enum at field `field`.
    Symbol {
        field: usize,
        index: usize,
    },
    /// Unscaled decimal value.
    Decimal(i128),
}

/// A record schema compiled for [`RecordPlan::read`].
#[derive(Debug, Clone)]
pub struct RecordPlan {
    fields: Vec<FieldPlan>,
}

impl RecordPlan {
    /// Compiles `schema`, or `None` when a field has a shape this reader leaves to apache-avro.
    pub fn compile(schema: &AvroSchema) -> Option<Self> {
        let fields = record_fields(schema);
        if fields.is_empty() {
            return None;
        }
        let fields = fields.iter().map(|f| field_plan(&f.name, &f.schema)).collect::<Option<Vec<_>>>()?;
        Some(Self { fields })
    }

    /// The symbol an enum field's [`Raw::Symbol`] stands for.
    pub fn symbol(&self, field: usize, index: usize) -> &str {
        match &self.fields[field].kind {
            Kind::Enum(symbols) => &symbols[index],
            _ => "",
        }
    }

    /// Reads one record that must fill `body` exactly, one [`Raw`] per field into `out`.
    pub fn read(&self, body: &[u8], out: &mut Vec<Raw>) -> Result<(), DecodeError> {
        out.clear();
        let mut wire = Wire::new(body);
        for (i, field) in self.fields.iter().enumerate() {
            let raw = read_field(&mut wire, field, i).map_err(|error| match error {
                FieldError::Datum(error) => DecodeError::Datum { path: field.name.clone(), error },
                FieldError::Value(message) => DecodeError::Field { field: field.name.clone(), message },
            })?;
            out.push(raw);
        }
        match wire.left() {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { trailing }),
        }
    }
}

/// Why one field could not be read: its bytes, or a well-formed value out of its column's range.
enum FieldError {
    Datum(DatumError),
    Value(String),
}

impl From<DatumError> for FieldError {
    fn from(error: DatumError) -> Self {
        Self::Datum(error)
    }
}

fn read_field(wire: &mut Wire, field: &FieldPlan, i: usize) -> Result<Raw, FieldError> {
    if let Some(null_branch) = field.null_branch {
        let at = wire.pos();
        let branch = wire.long("union branch")?;
        if branch == null_branch as i64 {
            return Ok(Raw::Null);
        }
        if branch != 1 - null_branch as i64 {
            return Err(DatumError::UnionBranch { index: branch, branches: 2, at }.into());
        }
    }
    value(wire, &field.kind, i)
}

fn field_plan(name: &str, schema: &AvroSchema) -> Option<FieldPlan> {
    if let AvroSchema::Union(union) = schema {
        let variants = union.variants();
        let null_branch = variants.iter().position(|v| matches!(v, AvroSchema::Null))?;
        if variants.len() != 2 {
            return None;
        }
        let kind = kind(&variants[1 - null_branch])?;
        return Some(FieldPlan { name: name.to_string(), kind, null_branch: Some(null_branch as u64) });
    }
    Some(FieldPlan { name: name.to_string(), kind: kind(schema)?, null_branch: None })
}

fn kind(schema: &AvroSchema) -> Option<Kind> {
    use AvroSchema as A;
    Some(match schema {
        A::Boolean => Kind::Boolean,
        A::Int | A::Date => Kind::Int,
        A::Long | A::TimeMicros | A::TimestampMicros | A::LocalTimestampMicros => Kind::Long,
        A::TimeMillis => Kind::IntMillis,
        A::TimestampMillis | A::LocalTimestampMillis => Kind::LongMillis,
        A::Float => Kind::Float,
        A::Double => Kind::Double,
        A::String => Kind::String,
        A::Bytes => Kind::Bytes,
        A::Enum(e) => Kind::Enum(e.symbols.clone()),
        A::Fixed(f) => Kind::Fixed(f.size),
        A::Decimal(d) => match d.inner.as_ref() {
            A::Bytes => Kind::Decimal { fixed: None },
            A::Fixed(f) => Kind::Decimal { fixed: Some(f.size) },
            _ => return None,
        },
        _ => return None,
    })
}

/// Microseconds from a timestamp in milliseconds, refused (not clamped) past the 64-bit range:
/// a clamped value would store a wrong instant with nothing to show for it.
pub fn millis_to_micros(millis: i64) -> Result<i64, String> {
    millis
        .checked_mul(1000)
        .ok_or_else(|| format!("timestamp-millis {millis} is out of range of a microsecond timestamp"))
}

fn value(wire: &mut Wire, kind: &Kind, field: usize) -> Result<Raw, FieldError> {
    let body = wire.body();
    Ok(match kind {
        Kind::Boolean => Raw::Bool(wire.boolean()?),
        Kind::Int => Raw::Int(wire.int("int")?.into()),
        Kind::Long => Raw::Int(wire.long("long")?),
        Kind::IntMillis => Raw::Int(i64::from(wire.int("int")?) * 1000),
        Kind::LongMillis => Raw::Int(millis_to_micros(wire.long("long")?).map_err(FieldError::Value)?),
        Kind::Float => {
            let r = wire.take(4, "float")?;
            Raw::Float(f32::from_le_bytes(body[r].try_into().expect("4 bytes")) as f64)
        }
        Kind::Double => {
            let r = wire.take(8, "double")?;
            Raw::Float(f64::from_le_bytes(body[r].try_into().expect("8 bytes")))
        }
        Kind::String => Raw::Str(wire.utf8("string")?),
        Kind::Bytes => Raw::Bytes(wire.length_prefixed("bytes")?),
        Kind::Fixed(size) => Raw::Bytes(wire.take(*size as u64, "fixed")?),
        Kind::Enum(symbols) => {
            let at = wire.pos();
            let index = wire.int("enum index")?;
            match usize::try_from(index).ok().filter(|&i| i < symbols.len()) {
                Some(index) => Raw::Symbol { field, index },
                None => {
                    return Err(DatumError::EnumIndex { index: index.into(), symbols: symbols.len(), at }.into());
                }
            }
        }
        Kind::Decimal { fixed } => {
            let r = match fixed {
                Some(size) => wire.take(*size as u64, "fixed")?,
                None => wire.length_prefixed("bytes")?,
            };
            // apache-avro (and Java's BigInteger) refuse an empty unscaled value; so does this
            // reader, rather than read it as 0, so both paths store the same rows.
            if r.is_empty() {
                return Err(DatumError::EmptyDecimal { at: r.start }.into());
            }
            let len = r.len();
            Raw::Decimal(i128_from_be(&body[r]).ok_or(DatumError::DecimalWidth { len })?)
        }
    })
}

/// Big-endian two's complement bytes to i128 (sign-extended).
pub fn i128_from_be(bytes: &[u8]) -> Option<i128> {
    if bytes.len() > 16 {
        return None;
    }
    let fill = if bytes.first().is_some_and(|b| b & 0x80 != 0) { 0xFF } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    fn schema() -> AvroSchema {
        AvroSchema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"s","type":"string"},
                {"name":"n","type":"long"},
                {"name":"i","type":"int"},
                {"name":"b","type":"boolean"},
                {"name":"f","type":"float"},
                {"name":"d","type":"double"},
                {"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY","SELL"]}},
                {"name":"p","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":8}},
                {"name":"q","type":{"type":"fixed","name":"Q","size":3,"logicalType":"decimal","precision":6,"scale":2}},
                {"name":"raw","type":"bytes"},
                {"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"note","type":["null","string"],"default":null},
                {"name":"late","type":["string","null"]}
            ]}"#,
        )
        .unwrap()
    }

    fn encode(schema: &AvroSchema, note: Option<&str>) -> Vec<u8> {
        let note = match note {
            Some(n) => Value::Union(1, Box::new(Value::String(n.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let record = Value::Record(vec![
            ("s".into(), Value::String("AAPL".into())),
            ("n".into(), Value::Long(-1_234_567_890_123)),
            ("i".into(), Value::Int(i32::MIN)),
            ("b".into(), Value::Boolean(true)),
            ("f".into(), Value::Float(1.5)),
            ("d".into(), Value::Double(-2.25)),
            ("side".into(), Value::Enum(1, "SELL".into())),
            ("p".into(), Value::Decimal(vec![0xFF, 0x38].into())),
            ("q".into(), Value::Decimal(vec![0x00, 0x01, 0x00].into())),
            ("raw".into(), Value::Bytes(vec![9, 8, 7])),
            ("tm".into(), Value::TimeMillis(1_000)),
            ("ts".into(), Value::TimestampMillis(1_700_000_000_000)),
            ("note".into(), note),
            ("late".into(), Value::Union(1, Box::new(Value::Null))),
        ]);
        apache_avro::to_avro_datum(schema, record).unwrap()
    }

    #[test]
    fn reads_what_apache_avro_wrote() {
        let schema = schema();
        let plan = RecordPlan::compile(&schema).unwrap();
        let body = encode(&schema, Some("odd lot"));
        let mut out = Vec::new();
        plan.read(&body, &mut out).unwrap();
        let Raw::Str(s) = out[0].clone() else { panic!("{:?}", out[0]) };
        assert_eq!(&body[s], b"AAPL");
        assert_eq!(out[1], Raw::Int(-1_234_567_890_123));
        assert_eq!(out[2], Raw::Int(i32::MIN as i64));
        assert_eq!(out[3], Raw::Bool(true));
        assert_eq!(out[4], Raw::Float(1.5));
        assert_eq!(out[5], Raw::Float(-2.25));
        assert_eq!(out[6], Raw::Symbol { field: 6, index: 1 });
        assert_eq!(plan.symbol(6, 1), "SELL");
        assert_eq!(out[7], Raw::Decimal(-200));
        assert_eq!(out[8], Raw::Decimal(256));
        let Raw::Bytes(raw) = out[9].clone() else { panic!() };
        assert_eq!(&body[raw], &[9, 8, 7]);
        assert_eq!(out[10], Raw::Int(1_000_000));
        assert_eq!(out[11], Raw::Int(1_700_000_000_000_000));
        let Raw::Str(note) = out[12].clone() else { panic!() };
        assert_eq!(&body[note], b"odd lot");
        assert_eq!(out[13], Raw::Null);

        plan.read(&encode(&schema, None), &mut out).unwrap();
        assert_eq!(out[12], Raw::Null);
    }

    #[test]
    fn refuses_truncated_padded_and_malformed_bodies() {
        let schema = schema();
        let plan = RecordPlan::compile(&schema).unwrap();
        let body = encode(&schema, None);
        let mut out = Vec::new();
        for cut in 0..body.len() {
            assert!(matches!(plan.read(&body[..cut], &mut out), Err(DecodeError::Datum { .. })), "cut at {cut}");
        }
        let mut padded = body.clone();
        padded.push(0);
        assert_eq!(plan.read(&padded, &mut out), Err(DecodeError::TrailingBytes { trailing: 1 }));
        // A string of invalid UTF-8.
        let mut bad = body.clone();
        bad[1] = 0xFF;
        assert!(plan.read(&bad, &mut out).unwrap_err().to_string().contains("utf-8"));
        // An empty bytes decimal (`p` after s, n, i, b, f, d and side), which apache-avro refuses too.
        let mut empty = body[..30].to_vec();
        empty.push(0x00);
        assert!(plan.read(&empty, &mut out).unwrap_err().to_string().starts_with("avro: p: decimal of 0 bytes"));
        // A varint that never ends.
        assert!(plan.read(&[0xFF; 12], &mut out).unwrap_err().to_string().contains("varint"));
        // A string claiming more bytes than are left names the field, the length and what is left.
        assert_eq!(
            plan.read(&[0x80, 0x80, 0x80, 0x80, 0x04], &mut out).unwrap_err().to_string(),
            "avro: s: string of 536870912 bytes at byte 5, only 0 left"
        );
    }

    #[test]
    fn leaves_other_shapes_to_apache_avro() {
        for field in [
            r#"{"name":"a","type":{"type":"array","items":"long"}}"#,
            r#"{"name":"u","type":["null","string","long"]}"#,
            r#"{"name":"u","type":["string","long"]}"#,
            r#"{"name":"id","type":{"type":"string","logicalType":"uuid"}}"#,
        ] {
            let schema =
                AvroSchema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{field}]}}"#)).unwrap();
            assert!(RecordPlan::compile(&schema).is_none(), "{field}");
        }
    }

    #[test]
    fn sign_extends_decimals() {
        assert_eq!(i128_from_be(&[0xFF]), Some(-1));
        assert_eq!(i128_from_be(&[0x00, 0xFF]), Some(255));
        assert_eq!(i128_from_be(&[]), Some(0));
        assert_eq!(i128_from_be(&[1; 17]), None);
    }
}
