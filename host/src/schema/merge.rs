//! Merges a new writer schema into a topic's reader schema: what a version may change, and what not.

// The reader schema is what records are decoded to (Avro schema resolution), and what the
// table's columns are mapped from. Merging keeps it able to read every version met so far:
// a field a writer adds joins it as optional, an int or float a writer widens is widened,
// an enum a writer extends gains the symbols. Anything else is refused, naming the field.

use apache_avro::Schema as AvroSchema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::{Value as Json, json};

/// Why a writer schema cannot be read into the topic's table.
#[derive(Debug, PartialEq)]
pub struct Incompatible {
    pub field: String,
    pub message: String,
}

/// The reader schema that reads both what `reader` reads and records written with `writer`,
/// or `None` when `reader` already does.
pub fn merge(reader: &AvroSchema, writer: &AvroSchema) -> Result<Option<AvroSchema>, Incompatible> {
    let (AvroSchema::Record(r), AvroSchema::Record(w)) = (reader, writer) else {
        return Err(Incompatible { field: String::new(), message: "top-level type must be an avro record".into() });
    };
    let mut json = serde_json::to_value(reader).map_err(|e| internal(&e))?;
    let fields = json.get_mut("fields").and_then(Json::as_array_mut).ok_or_else(|| internal(&"no fields"))?;
    let mut changed = false;
    for (i, rf) in r.fields.iter().enumerate() {
        let incompatible = |message: String| Incompatible { field: rf.name.clone(), message };
        let Some(wf) = w.fields.iter().find(|f| f.name == rf.name) else {
            // Records of this writer have no value for the field: the reader's default fills it.
            if rf.default.is_some() {
                continue;
            }
            if nullable(&rf.schema).is_some() {
                fields[i] = optional_field(&rf.name, &fields[i]["type"], rf.doc.as_deref());
                changed = true;
                continue;
            }
            return Err(incompatible("is required by the table but the new schema does not have it".into()));
        };
        let (r_inner, r_nullable) = split(&rf.schema);
        let (w_inner, w_nullable) = split(&wf.schema);
        if w_nullable && !r_nullable {
            return Err(incompatible("is required in the table but nullable in the new schema".into()));
        }
        if !crate::decode::avro::needs_resolution(w_inner, r_inner) {
            continue;
        }
        let wider = match (r_inner, w_inner) {
            (AvroSchema::Int, AvroSchema::Long) | (AvroSchema::Float, AvroSchema::Double) => Some(w_inner),
            (AvroSchema::Long, AvroSchema::Int) | (AvroSchema::Double, AvroSchema::Float) => None,
            (AvroSchema::Enum(re), AvroSchema::Enum(we)) if re.name == we.name => {
                let added: Vec<&String> = we.symbols.iter().filter(|s| !re.symbols.contains(s)).collect();
                if added.is_empty() {
                    continue;
                }
                let symbols = inner_json(&mut fields[i]["type"])
                    .get_mut("symbols")
                    .and_then(Json::as_array_mut)
                    .ok_or_else(|| internal(&"symbols"))?;
                symbols.extend(added.into_iter().map(|s| json!(s)));
                changed = true;
                continue;
            }
            // Records, arrays and maps do not evolve, but an older or newer writer may still be
            // read as they are (a nested field with a default it lacks): Avro's own check decides.
            (AvroSchema::Record(_), AvroSchema::Record(_))
            | (AvroSchema::Array(_), AvroSchema::Array(_))
            | (AvroSchema::Map(_), AvroSchema::Map(_)) => match SchemaCompatibility::can_read(w_inner, r_inner) {
                Ok(()) => continue,
                Err(e) => {
                    return Err(incompatible(format!(
                        "{} cannot be read as the table's {}: {e} (nested types do not evolve)",
                        type_label(w_inner),
                        type_label(r_inner)
                    )));
                }
            },
            _ => {
                return Err(incompatible(format!(
                    "type changed from {} to {}; only int → long and float → double widen a column",
                    type_label(r_inner),
                    type_label(w_inner)
                )));
            }
        };
        if let Some(wider) = wider {
            *inner_json(&mut fields[i]["type"]) = serde_json::to_value(wider).map_err(|e| internal(&e))?;
            changed = true;
        }
    }
    for wf in w.fields.iter().filter(|wf| !r.fields.iter().any(|rf| rf.name == wf.name)) {
        if matches!(&wf.schema, AvroSchema::Union(_)) && nullable(&wf.schema).is_none() {
            return Err(Incompatible {
                field: wf.name.clone(),
                message: "is a union of several types; only [\"null\", T] unions are supported".into(),
            });
        }
        let (inner, _) = split(&wf.schema);
        let ty = serde_json::to_value(inner).map_err(|e| internal(&e))?;
        fields.push(optional_field(&wf.name, &ty, wf.doc.as_deref()));
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    AvroSchema::parse(&json)
        .map(Some)
        .map_err(|e| Incompatible { field: String::new(), message: format!("the merged schema does not parse: {e}") })
}

/// A field that rows may lack: `["null", T]` with a null default, as Avro resolution needs
/// to read records written before (or without) it.
fn optional_field(name: &str, ty: &Json, doc: Option<&str>) -> Json {
    let inner = match ty {
        Json::Array(branches) => branches.iter().find(|b| *b != "null").cloned().unwrap_or(Json::Null),
        other => other.clone(),
    };
    let mut field = json!({"name": name, "type": ["null", inner], "default": null});
    if let Some(doc) = doc {
        field["doc"] = json!(doc);
    }
    field
}

/// The value type in a field's JSON type: the non-null branch of a union, else the type itself.
fn inner_json(ty: &mut Json) -> &mut Json {
    if ty.is_array() {
        let branches = ty.as_array_mut().expect("checked");
        let i = branches.iter().position(|b| b != "null").unwrap_or(0);
        return &mut branches[i];
    }
    ty
}

/// The non-null branch of a `["null", T]` union (either order).
fn nullable(schema: &AvroSchema) -> Option<&AvroSchema> {
    match schema {
        AvroSchema::Union(u) if u.variants().len() == 2 => u.variants().iter().find(|v| **v != AvroSchema::Null),
        _ => None,
    }
}

/// A field's value type and whether it is nullable.
fn split(schema: &AvroSchema) -> (&AvroSchema, bool) {
    match nullable(schema) {
        Some(inner) => (inner, true),
        None => (schema, false),
    }
}

fn type_label(schema: &AvroSchema) -> String {
    match schema {
        AvroSchema::Record(r) => return format!("record `{}`", r.name.name),
        AvroSchema::Enum(e) => return format!("enum `{}`", e.name.name),
        AvroSchema::Array(_) => return "array".into(),
        AvroSchema::Map(_) => return "map".into(),
        AvroSchema::Union(_) => return "union".into(),
        _ => {}
    }
    match serde_json::to_value(schema) {
        Ok(Json::String(s)) => s,
        Ok(Json::Object(o)) => match (o.get("logicalType"), o.get("type")) {
            (Some(l), _) => l.as_str().unwrap_or_default().to_string(),
            (None, Some(t)) => t.as_str().unwrap_or_default().to_string(),
            _ => "?".into(),
        },
        _ => "?".into(),
    }
}

fn internal(e: &dyn std::fmt::Display) -> Incompatible {
    Incompatible { field: String::new(), message: format!("cannot merge the schemas: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> AvroSchema {
        AvroSchema::parse_str(&format!(r#"{{"type":"record","name":"Trade","fields":[{fields}]}}"#)).unwrap()
    }

    const V1: &str = r#"{"name":"sym","type":"string"},{"name":"qty","type":"int"},
        {"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY","SELL"]}}"#;

    #[test]
    fn the_same_or_a_narrower_writer_changes_nothing() {
        assert_eq!(merge(&record(V1), &record(V1)), Ok(None));
        let long = record(&V1.replace(r#""qty","type":"int""#, r#""qty","type":"long""#));
        assert_eq!(merge(&long, &record(V1)), Ok(None));
    }

    #[test]
    fn widening_adding_and_new_symbols_merge() {
        let v2 = record(&format!(
            r#"{},{{"name":"venue","type":"string","doc":"MIC"}}"#,
            V1.replace(r#""qty","type":"int""#, r#""qty","type":"long""#).replace(r#""SELL"]"#, r#""SELL","SHORT"]"#)
        ));
        let merged = merge(&record(V1), &v2).unwrap().unwrap();
        let AvroSchema::Record(m) = &merged else { panic!() };
        let names: Vec<_> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["sym", "qty", "side", "venue"]);
        assert_eq!(m.fields[1].schema, AvroSchema::Long);
        let AvroSchema::Enum(side) = &m.fields[2].schema else { panic!() };
        assert_eq!(side.symbols, ["BUY", "SELL", "SHORT"]);
        assert_eq!(m.fields[3].default, Some(Json::Null));
        assert_eq!(nullable(&m.fields[3].schema), Some(&AvroSchema::String));
        // The merged schema reads the old version's records and the new one's.
        assert_eq!(merge(&merged, &record(V1)), Ok(None));
        assert_eq!(merge(&merged, &v2), Ok(None));
    }

    #[test]
    fn an_optional_field_a_writer_lacks_gets_a_null_default() {
        let reader = record(&format!(r#"{V1},{{"name":"note","type":["null","string"]}}"#));
        let merged = merge(&reader, &record(V1)).unwrap().unwrap();
        let AvroSchema::Record(m) = &merged else { panic!() };
        assert_eq!(m.fields[3].default, Some(Json::Null));
    }

    #[test]
    fn an_older_nested_record_is_read_as_it_is_and_a_renamed_field_is_refused() {
        let leg = |extra: &str| {
            format!(
                r#"{{"name":"leg","type":{{"type":"record","name":"Leg","fields":[{{"name":"venue","type":"string"}}{extra}]}}}}"#
            )
        };
        let newer = record(&leg(r#",{"name":"desk","type":["null","string"],"default":null}"#));
        assert_eq!(merge(&newer, &record(&leg(""))), Ok(None), "the newer reader reads the older writer");
        let renamed = record(&leg("").replace(r#""venue""#, r#""mic""#));
        let e = merge(&record(&leg("")), &renamed).unwrap_err();
        assert_eq!(e.field, "leg");
        assert!(e.message.starts_with("record `Leg` cannot be read as the table's record `Leg`"), "{}", e.message);
    }

    #[test]
    fn a_wide_union_added_by_a_writer_is_refused() {
        let wide = record(&format!(r#"{V1},{{"name":"v","type":["null","string","long"]}}"#));
        let e = merge(&record(V1), &wide).unwrap_err();
        assert_eq!(e.field, "v");
    }

    #[test]
    fn incompatible_changes_name_the_field() {
        let removed = record(
            r#"{"name":"sym","type":"string"},{"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY"]}}"#,
        );
        let e = merge(&record(V1), &removed).unwrap_err();
        assert_eq!(e.field, "qty");
        assert!(e.message.contains("required by the table"), "{}", e.message);

        let retyped = record(&V1.replace(r#""qty","type":"int""#, r#""qty","type":"string""#));
        let e = merge(&record(V1), &retyped).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("qty", "type changed from int to string; only int → long and float → double widen a column")
        );

        let nullable = record(&V1.replace(r#""qty","type":"int""#, r#""qty","type":["null","int"]"#));
        assert!(merge(&record(V1), &nullable).unwrap_err().message.contains("nullable in the new schema"));
    }
}
