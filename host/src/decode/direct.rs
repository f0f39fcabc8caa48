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

use crate::decode::schema::record_fields;
use crate::error::DecodeError;

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
        let fields = fields.iter().map(|f| field_plan(&f.schema)).collect::<Option<Vec<_>>>()?;
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
        let mut r = Reader { body, pos: 0 };
        for (i, field) in self.fields.iter().enumerate() {
            if let Some(null_branch) = field.null_branch {
                let branch = r.long()?;
                if branch == null_branch as i64 {
                    out.push(Raw::Null);
                    continue;
                }
                if branch != 1 - null_branch as i64 {
                    return Err(DecodeError::Avro(format!("union branch {branch} of field {i} does not exist")));
                }
            }
            out.push(r.value(&field.kind, i)?);
        }
        match body.len() - r.pos {
            0 => Ok(()),
            trailing => Err(DecodeError::TrailingBytes { trailing }),
        }
    }
}

fn field_plan(schema: &AvroSchema) -> Option<FieldPlan> {
    if let AvroSchema::Union(union) = schema {
        let variants = union.variants();
        let null_branch = variants.iter().position(|v| matches!(v, AvroSchema::Null))?;
        if variants.len() != 2 {
            return None;
        }
        let kind = kind(&variants[1 - null_branch])?;
        return Some(FieldPlan { kind, null_branch: Some(null_branch as u64) });
    }
    Some(FieldPlan { kind: kind(schema)?, null_branch: None })
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

/// A cursor over one record's bytes; every read is bounds-checked.
struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn truncated(&self) -> DecodeError {
        DecodeError::Avro(format!("record truncated at byte {} of {}", self.pos, self.body.len()))
    }

    /// A zig-zag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self.body.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(DecodeError::Avro(format!("varint longer than 10 bytes ending at byte {}", self.pos)))
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        let v = self.long()?;
        i32::try_from(v).map(i64::from).map_err(|_| DecodeError::Avro(format!("int {v} out of 32-bit range")))
    }

    fn take(&mut self, len: usize) -> Result<Range<usize>, DecodeError> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.body.len()).ok_or_else(|| self.truncated())?;
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }

    fn length_prefixed(&mut self) -> Result<Range<usize>, DecodeError> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::Avro(format!("negative length {len}")))?;
        self.take(len)
    }

    fn value(&mut self, kind: &Kind, field: usize) -> Result<Raw, DecodeError> {
        Ok(match kind {
            Kind::Boolean => {
                let r = self.take(1)?;
                match self.body[r.start] {
                    0 => Raw::Bool(false),
                    1 => Raw::Bool(true),
                    b => return Err(DecodeError::Avro(format!("boolean byte {b:#04x}"))),
                }
            }
            Kind::Int => Raw::Int(self.int()?),
            Kind::Long => Raw::Int(self.long()?),
            Kind::IntMillis => Raw::Int(self.int()? * 1000),
            Kind::LongMillis => Raw::Int(self.long()?.saturating_mul(1000)),
            Kind::Float => {
                let r = self.take(4)?;
                Raw::Float(f32::from_le_bytes(self.body[r].try_into().expect("4 bytes")) as f64)
            }
            Kind::Double => {
                let r = self.take(8)?;
                Raw::Float(f64::from_le_bytes(self.body[r].try_into().expect("8 bytes")))
            }
            Kind::String => {
                let r = self.length_prefixed()?;
                if let Err(e) = std::str::from_utf8(&self.body[r.clone()]) {
                    return Err(DecodeError::Avro(format!("string is not utf-8: {e}")));
                }
                Raw::Str(r)
            }
            Kind::Bytes => Raw::Bytes(self.length_prefixed()?),
            Kind::Fixed(size) => Raw::Bytes(self.take(*size)?),
            Kind::Enum(symbols) => {
                let index = self.int()?;
                match usize::try_from(index).ok().filter(|&i| i < symbols.len()) {
                    Some(index) => Raw::Symbol { field, index },
                    None => return Err(DecodeError::Avro(format!("enum index {index} of {} symbols", symbols.len()))),
                }
            }
            Kind::Decimal { fixed } => {
                let r = match fixed {
                    Some(size) => self.take(*size)?,
                    None => self.length_prefixed()?,
                };
                let unscaled = i128_from_be(&self.body[r])
                    .ok_or_else(|| DecodeError::Avro("decimal wider than 128 bits".into()))?;
                Raw::Decimal(unscaled)
            }
        })
    }
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
            assert!(matches!(plan.read(&body[..cut], &mut out), Err(DecodeError::Avro(_))), "cut at {cut}");
        }
        let mut padded = body.clone();
        padded.push(0);
        assert_eq!(plan.read(&padded, &mut out), Err(DecodeError::TrailingBytes { trailing: 1 }));
        // A string of invalid UTF-8.
        let mut bad = body.clone();
        bad[1] = 0xFF;
        assert!(plan.read(&bad, &mut out).unwrap_err().to_string().contains("utf-8"));
        // A varint that never ends.
        assert!(plan.read(&[0xFF; 12], &mut out).unwrap_err().to_string().contains("varint"));
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
