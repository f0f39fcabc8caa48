//! Avro schema files and their mapping to Iceberg table schemas.

use std::path::Path;

use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{NamesRef, RecordField, ResolvedSchema, UnionSchema};
use iceberg::spec::{ListType, MapType, NestedField, PrimitiveType, Schema as IcebergSchema, StructType, Type};

use crate::error::{Error, Result};

/// Kafka metadata columns appended to new tables (when `sink.metadata_columns` is on).
pub const META_PARTITION: &str = "_kafka_partition";
pub const META_OFFSET: &str = "_kafka_offset";
pub const META_TIMESTAMP: &str = "_kafka_timestamp";

/// Reads and parses an Avro schema file; the top level must be a record.
pub fn load_avsc(path: &Path) -> Result<AvroSchema> {
    let err = |message: String| Error::Schema { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let schema = parse_schema(&text).map_err(|e| err(e.to_string()))?;
    match schema {
        AvroSchema::Record(_) => Ok(schema),
        _ => Err(err("top-level type must be an avro record".into())),
    }
}

/// Why a schema's text cannot be used: a registry tells the record's fault from its own by it.
#[derive(Debug, thiserror::Error)]
pub enum SchemaTextError {
    /// Not an Avro schema (bad JSON, unknown type, bad default).
    #[error("not a valid avro schema: {0}")]
    Invalid(String),
    /// A valid Avro schema with a construct k2-ingest cannot decode yet.
    #[error("{0}")]
    Unsupported(String),
}

/// Parses an Avro schema's text, refusing what apache-avro would parse but decode wrongly.
pub fn parse_schema(text: &str) -> std::result::Result<AvroSchema, SchemaTextError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| SchemaTextError::Invalid(e.to_string()))?;
    if let Some(path) = fixed_uuid(&json) {
        // apache-avro 0.21 parses it as a uuid and then reads 16 bytes as a length-prefixed string.
        return Err(SchemaTextError::Unsupported(format!(
            "`{path}` is a uuid on fixed(16), which k2-ingest cannot decode yet; use {{\"type\": \"string\", \"logicalType\": \"uuid\"}}"
        )));
    }
    AvroSchema::parse(&json).map_err(|e| SchemaTextError::Invalid(e.to_string()))
}

/// Where in a schema's JSON a `fixed` with logical type `uuid` is, if anywhere.
fn fixed_uuid(json: &serde_json::Value) -> Option<String> {
    match json {
        serde_json::Value::Object(o) => {
            if o.get("type").and_then(|t| t.as_str()) == Some("fixed")
                && o.get("logicalType").and_then(|t| t.as_str()) == Some("uuid")
            {
                return Some(o.get("name").and_then(|n| n.as_str()).unwrap_or("fixed").to_string());
            }
            o.values().find_map(fixed_uuid)
        }
        serde_json::Value::Array(a) => a.iter().find_map(fixed_uuid),
        _ => None,
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
    let names = ResolvedSchema::try_from(avro)
        .map_err(|e| Error::Schema { path: path.to_path_buf(), message: format!("cannot resolve named types: {e}") })?;
    let top = match avro {
        AvroSchema::Record(r) => vec![r.name.fullname(None)],
        _ => Vec::new(),
    };
    let mut mapper = Mapper { names: names.get_names(), next_id: 0, open: top };
    let mut fields = Vec::new();
    // Top-level fields take the first ids, as Iceberg numbers them; nested ones follow.
    mapper.next_id = record_fields(avro).len() as i32;
    for (i, field) in record_fields(avro).iter().enumerate() {
        let (ty, optional) = mapper.field_type(&field.schema).map_err(|message| Error::Schema {
            path: path.to_path_buf(),
            message: format!("field `{}`: {message}", field.name),
        })?;
        let mut f = NestedField::new(i as i32 + 1, &field.name, ty, !optional);
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
            fields.push(NestedField::new(mapper.id(), name, Type::Primitive(ty), !optional).into());
        }
    }
    IcebergSchema::builder().with_fields(fields).build().map_err(|e| Error::Schema {
        path: path.to_path_buf(),
        message: format!("cannot build the iceberg schema: {e}"),
    })
}

/// Maps Avro types to Iceberg types, numbering nested fields as it goes.
struct Mapper<'s> {
    /// Named types (records, enums, fixed) by full name, for references to them.
    names: &'s NamesRef<'s>,
    next_id: i32,
    /// Records being mapped, outermost first: a reference back to one is a recursive type.
    open: Vec<String>,
}

impl Mapper<'_> {
    fn id(&mut self) -> i32 {
        self.next_id += 1;
        self.next_id
    }

    /// One Avro type as an Iceberg type, and whether it is optional (a union with null).
    fn field_type(&mut self, schema: &AvroSchema) -> std::result::Result<(Type, bool), String> {
        if let AvroSchema::Union(union) = schema {
            return Ok((self.value_type(nullable_branch(union)?)?, true));
        }
        Ok((self.value_type(schema)?, false))
    }

    fn value_type(&mut self, schema: &AvroSchema) -> std::result::Result<Type, String> {
        use AvroSchema as A;
        Ok(match schema {
            A::Ref { name } => {
                let target = self.names.get(name).ok_or_else(|| format!("unknown named type {name}"))?;
                self.value_type(target)?
            }
            A::Record(r) => {
                let name = r.name.fullname(None);
                if self.open.contains(&name) {
                    // An Iceberg schema is a finite tree; following the reference would not end.
                    return Err(format!("recursive type `{name}` is not supported"));
                }
                self.open.push(name);
                // Ids first, so the struct's fields get consecutive ones and their children follow.
                let ids: Vec<i32> = r.fields.iter().map(|_| self.id()).collect();
                let mut fields = Vec::new();
                for (field, id) in r.fields.iter().zip(ids) {
                    let (ty, optional) =
                        self.field_type(&field.schema).map_err(|m| format!("`{}`: {m}", field.name))?;
                    let mut f = NestedField::new(id, &field.name, ty, !optional);
                    if let Some(doc) = &field.doc {
                        f = f.with_doc(doc);
                    }
                    fields.push(Arc::new(f));
                }
                self.open.pop();
                Type::Struct(StructType::new(fields))
            }
            A::Array(a) => {
                let id = self.id();
                let (ty, optional) = self.field_type(&a.items).map_err(|m| format!("array items: {m}"))?;
                Type::List(ListType::new(Arc::new(NestedField::list_element(id, ty, !optional))))
            }
            A::Map(m) => {
                let (key_id, value_id) = (self.id(), self.id());
                let (ty, optional) = self.field_type(&m.types).map_err(|m| format!("map values: {m}"))?;
                Type::Map(MapType::new(
                    Arc::new(NestedField::map_key_element(key_id, Type::Primitive(PrimitiveType::String))),
                    Arc::new(NestedField::map_value_element(value_id, ty, !optional)),
                ))
            }
            other => Type::Primitive(primitive(other)?),
        })
    }
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
        A::Uuid => PrimitiveType::Uuid,
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
        A::TimestampNanos | A::LocalTimestampNanos => {
            return Err("timestamp-nanos needs Iceberg format v3, which k2-ingest does not write yet".into());
        }
        other => return Err(format!("avro type {} is not supported", type_name(other))),
    })
}

fn type_name(schema: &AvroSchema) -> &'static str {
    use AvroSchema as A;
    match schema {
        A::BigDecimal => "big-decimal",
        A::Duration => "duration",
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
    fn a_uuid_on_fixed_is_refused_with_its_name() {
        let text = r#"{"type":"record","name":"R","fields":[{"name":"id","type":{"type":"fixed","name":"Id","size":16,"logicalType":"uuid"}}]}"#;
        let e = parse_schema(text).unwrap_err();
        assert!(matches!(e, SchemaTextError::Unsupported(_)), "{e:?}");
        assert!(e.to_string().starts_with("`Id` is a uuid on fixed(16)"), "{e}");
        assert!(matches!(parse_schema(r#"{"type":"nope"}"#), Err(SchemaTextError::Invalid(_))));
        assert!(parse_schema(&text.replace(r#""type":"fixed","name":"Id","size":16,"#, r#""type":"string","#)).is_ok());
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
        let avro =
            schema_of(r#"{"name":"held","type":{"type":"fixed","name":"D","size":12,"logicalType":"duration"}}"#);
        let msg = iceberg_schema(&avro, Path::new("t.avsc"), false).unwrap_err().to_string();
        assert_eq!(msg, "schema t.avsc: field `held`: avro type duration is not supported");
        let nested = schema_of(
            r#"{"name":"legs","type":{"type":"array","items":{"type":"record","name":"Leg","fields":[
                {"name":"at","type":{"type":"long","logicalType":"timestamp-nanos"}}]}}}"#,
        );
        let msg = iceberg_schema(&nested, Path::new("t.avsc"), false).unwrap_err().to_string();
        assert!(msg.starts_with("schema t.avsc: field `legs`: array items: `at`: timestamp-nanos needs"), "{msg}");
    }

    #[test]
    fn a_recursive_type_is_refused_not_followed() {
        let to_top = schema_of(r#"{"name":"parent","type":["null","R"]}"#);
        let msg = iceberg_schema(&to_top, Path::new("t.avsc"), false).unwrap_err().to_string();
        assert_eq!(msg, "schema t.avsc: field `parent`: recursive type `R` is not supported");
        let avro = schema_of(
            r#"{"name":"head","type":{"type":"record","name":"Node","fields":[
                {"name":"v","type":"long"},{"name":"next","type":["null","Node"]}]}}"#,
        );
        let msg = iceberg_schema(&avro, Path::new("t.avsc"), false).unwrap_err().to_string();
        assert_eq!(msg, "schema t.avsc: field `head`: `next`: recursive type `Node` is not supported");
    }

    #[test]
    fn maps_nested_types_with_unique_ids() {
        let avro = schema_of(
            r#"{"name":"id","type":{"type":"string","logicalType":"uuid"}},
               {"name":"legs","type":{"type":"array","items":{"type":"record","name":"Leg","fields":[
                   {"name":"venue","type":"string"},{"name":"qty","type":["null","long"]}]}}},
               {"name":"tags","type":{"type":"map","values":["null","string"]}},
               {"name":"first","type":["null","Leg"]}"#,
        );
        let s = iceberg_schema(&avro, Path::new("t.avsc"), true).unwrap();
        let ty = |n: &str| s.field_by_name(n).unwrap().field_type.to_string();
        assert_eq!(ty("id"), "uuid");
        let field = |n: &str| (*s.field_by_name(n).unwrap().field_type).clone();
        assert!(matches!(field("legs"), Type::List(l) if matches!(*l.element_field.field_type, Type::Struct(_))));
        assert!(matches!(field("tags"), Type::Map(m) if !m.value_field.required));
        assert!(!s.field_by_name("first").unwrap().required);
        assert!(!s.field_by_name("legs.element.qty").unwrap().required);
        assert!(s.field_by_name("legs.element.venue").unwrap().required);
        // Building the schema checked that ids are unique; top-level fields come first.
        assert_eq!(s.field_by_name("legs").unwrap().id, 2);
        assert!(iceberg::arrow::schema_to_arrow_schema(&s).is_ok());
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
