//! Avro schema files and their mapping to Iceberg table schemas.

use std::path::Path;

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{RecordField, UnionSchema};
use iceberg::spec::{NestedField, PrimitiveType, Schema as IcebergSchema, Type};

use crate::error::{Error, Result};

/// Kafka metadata columns appended to new tables (when `sink.metadata_columns` is on).
pub const META_PARTITION: &str = "_kafka_partition";
pub const META_OFFSET: &str = "_kafka_offset";
pub const META_TIMESTAMP: &str = "_kafka_timestamp";

/// Reads and parses an Avro schema file; the top level must be a record.
pub fn load_avsc(path: &Path) -> Result<AvroSchema> {
    let err = |message: String| Error::Schema { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let schema = AvroSchema::parse_str(&text).map_err(|e| err(format!("not a valid avro schema: {e}")))?;
    match schema {
        AvroSchema::Record(_) => Ok(schema),
        _ => Err(err("top-level type must be an avro record".into())),
    }
}

/// The top-level fields of a record schema.
pub fn record_fields(schema: &AvroSchema) -> &[RecordField] {
    match schema {
        AvroSchema::Record(r) => &r.fields,
        _ => &[],
    }
}

/// Positions of the Avro-field columns in a table's Arrow schema: the columns a validator is
/// handed (the Kafka metadata columns are not).
pub fn field_columns(table: &arrow_schema::Schema, avro_fields: &[String]) -> Vec<usize> {
    table.fields().iter().enumerate().filter(|(_, f)| avro_fields.contains(f.name())).map(|(i, _)| i).collect()
}

/// The Iceberg schema for a topic's Avro record schema, plus Kafka metadata columns.
/// Field ids are provisional: the catalog assigns the table's own on creation.
pub fn iceberg_schema(avro: &AvroSchema, path: &Path, metadata_columns: bool) -> Result<IcebergSchema> {
    let mut fields = Vec::new();
    let mut id = 0;
    let mut next_id = || {
        id += 1;
        id
    };
    for field in record_fields(avro) {
        let (ty, optional) = field_type(&field.schema).map_err(|message| Error::Schema {
            path: path.to_path_buf(),
            message: format!("field `{}`: {message}", field.name),
        })?;
        let mut f = if optional {
            NestedField::optional(next_id(), &field.name, Type::Primitive(ty))
        } else {
            NestedField::required(next_id(), &field.name, Type::Primitive(ty))
        };
        if let Some(doc) = &field.doc {
            f = f.with_doc(doc);
        }
        fields.push(f.into());
    }
    if metadata_columns {
        for (name, ty, optional) in [
            (META_PARTITION, PrimitiveType::Int, false),
            (META_OFFSET, PrimitiveType::Long, false),
            (META_TIMESTAMP, PrimitiveType::Timestamptz, true),
        ] {
            if record_fields(avro).iter().any(|f| f.name == name) {
                return Err(Error::Schema {
                    path: path.to_path_buf(),
                    message: format!(
                        "field `{name}` clashes with a kafka metadata column; set sink.metadata_columns = false"
                    ),
                });
            }
            let f = if optional {
                NestedField::optional(next_id(), name, Type::Primitive(ty))
            } else {
                NestedField::required(next_id(), name, Type::Primitive(ty))
            };
            fields.push(f.into());
        }
    }
    IcebergSchema::builder().with_fields(fields).build().map_err(|e| Error::Schema {
        path: path.to_path_buf(),
        message: format!("cannot build the iceberg schema: {e}"),
    })
}

/// Maps one Avro field type to an Iceberg primitive and whether it is optional.
fn field_type(schema: &AvroSchema) -> std::result::Result<(PrimitiveType, bool), String> {
    if let AvroSchema::Union(union) = schema {
        return Ok((primitive(nullable_branch(union)?)?, true));
    }
    Ok((primitive(schema)?, false))
}

/// The non-null branch of a `["null", T]` union.
fn nullable_branch(union: &UnionSchema) -> std::result::Result<&AvroSchema, String> {
    let variants = union.variants();
    let non_null: Vec<_> = variants.iter().filter(|v| !matches!(v, AvroSchema::Null)).collect();
    match (variants.len(), non_null.as_slice()) {
        (2, [only]) => Ok(only),
        _ => Err("only unions of null and one other type are supported".into()),
    }
}

fn primitive(schema: &AvroSchema) -> std::result::Result<PrimitiveType, String> {
    use AvroSchema as A;
    Ok(match schema {
        A::Boolean => PrimitiveType::Boolean,
        A::Int => PrimitiveType::Int,
        A::Long => PrimitiveType::Long,
        A::Float => PrimitiveType::Float,
        A::Double => PrimitiveType::Double,
        A::String | A::Enum(_) => PrimitiveType::String,
        A::Bytes => PrimitiveType::Binary,
        A::Fixed(f) => PrimitiveType::Fixed(f.size as u64),
        A::Decimal(d) => {
            if d.precision == 0 || d.precision > 38 || d.scale > d.precision {
                return Err(format!(
                    "decimal({}, {}) is outside Iceberg's decimal(1..=38, 0..=precision)",
                    d.precision, d.scale
                ));
            }
            PrimitiveType::Decimal { precision: d.precision as u32, scale: d.scale as u32 }
        }
        A::Date => PrimitiveType::Date,
        A::TimeMillis | A::TimeMicros => PrimitiveType::Time,
        A::TimestampMillis | A::TimestampMicros => PrimitiveType::Timestamptz,
        A::LocalTimestampMillis | A::LocalTimestampMicros => PrimitiveType::Timestamp,
        A::Null => return Err("a field of type null has no column type".into()),
        A::Union(_) => return Err("nested unions are not supported".into()),
        other => return Err(format!("avro type {} is not supported yet", type_name(other))),
    })
}

fn type_name(schema: &AvroSchema) -> &'static str {
    use AvroSchema as A;
    match schema {
        A::Array(_) => "array",
        A::Map(_) => "map",
        A::Record(_) => "record",
        A::Uuid => "uuid",
        A::BigDecimal => "big-decimal",
        A::Duration => "duration",
        A::TimestampNanos | A::LocalTimestampNanos => "timestamp-nanos",
        A::Ref { .. } => "named reference",
        _ => "this",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(fields: &str) -> AvroSchema {
        AvroSchema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    #[test]
    fn maps_the_trade_schema() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/trade.avsc");
        let avro = load_avsc(&path).unwrap();
        let s = iceberg_schema(&avro, &path, true).unwrap();
        let ty = |n: &str| s.field_by_name(n).unwrap().field_type.to_string();
        assert_eq!(ty("price"), "decimal(18, 8)");
        assert_eq!(ty("exchange_ts"), "timestamptz");
        assert_eq!(ty("side"), "string");
        assert!(s.field_by_name("symbol").unwrap().required);
        assert!(!s.field_by_name("conditions").unwrap().required);
        assert!(s.field_by_name(META_OFFSET).unwrap().required);
    }

    #[test]
    fn unsupported_type_names_the_field() {
        let avro = schema_of(r#"{"name":"tags","type":{"type":"array","items":"string"}}"#);
        let msg = iceberg_schema(&avro, Path::new("t.avsc"), false).unwrap_err().to_string();
        assert_eq!(msg, "schema t.avsc: field `tags`: avro type array is not supported yet");
    }

    #[test]
    fn wide_union_is_refused() {
        let avro = schema_of(r#"{"name":"v","type":["null","string","long"]}"#);
        let msg = iceberg_schema(&avro, Path::new("t.avsc"), false).unwrap_err().to_string();
        assert!(msg.contains("field `v`: only unions of null and one other type"), "{msg}");
    }

    #[test]
    fn metadata_column_clash_is_refused() {
        let avro = schema_of(r#"{"name":"_kafka_offset","type":"long"}"#);
        assert!(iceberg_schema(&avro, Path::new("t.avsc"), true).is_err());
        assert!(iceberg_schema(&avro, Path::new("t.avsc"), false).is_ok());
    }
}
