//! Reads JSON records into Avro values of a schema, for `module test` on hand-written input.
//!
//! apache-avro turns JSON into Avro values and resolves them against a schema, but it has
//! no JSON spelling of decimals (its resolution wants bytes); market data is mostly
//! decimals, so this walks the schema itself and accepts `"123.45"` or `123.45` for them.

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{DecimalSchema, RecordSchema, UnionSchema};
use apache_avro::types::Value;
use serde_json::Value as Json;

/// The Avro value of `json` for `schema`; the error names the field path and the bad value.
pub fn to_avro(schema: &AvroSchema, json: &Json) -> Result<Value, String> {
    convert(schema, json, "")
}

fn convert(schema: &AvroSchema, json: &Json, at: &str) -> Result<Value, String> {
    let bad = |want: &str| {
        let shown: String = json.to_string().chars().take(60).collect();
        Err(format!("{}: expected {want}, got {shown}", if at.is_empty() { "record" } else { at }))
    };
    match (schema, json) {
        (AvroSchema::Record(r), Json::Object(_)) => record(r, json, at),
        (AvroSchema::Record(_), _) => bad("an object"),
        (AvroSchema::Union(u), _) => union(u, json, at),
        (AvroSchema::Null, Json::Null) => Ok(Value::Null),
        (AvroSchema::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
        (AvroSchema::Int, _) => int(json).map(Value::Int).map_or_else(|| bad("a 32-bit integer"), Ok),
        (AvroSchema::Date, _) => int(json).map(Value::Date).map_or_else(|| bad("days since 1970-01-01"), Ok),
        (AvroSchema::TimeMillis, _) => int(json).map(Value::TimeMillis).map_or_else(|| bad("milliseconds"), Ok),
        (AvroSchema::Long, Json::Number(n)) if n.is_i64() => Ok(Value::Long(n.as_i64().unwrap_or_default())),
        (AvroSchema::TimeMicros, Json::Number(n)) if n.is_i64() => {
            Ok(Value::TimeMicros(n.as_i64().unwrap_or_default()))
        }
        (AvroSchema::TimestampMillis, Json::Number(n)) if n.is_i64() => {
            Ok(Value::TimestampMillis(n.as_i64().unwrap_or_default()))
        }
        (AvroSchema::TimestampMicros, Json::Number(n)) if n.is_i64() => {
            Ok(Value::TimestampMicros(n.as_i64().unwrap_or_default()))
        }
        (AvroSchema::Float, Json::Number(n)) => Ok(Value::Float(n.as_f64().unwrap_or_default() as f32)),
        (AvroSchema::Double, Json::Number(n)) => Ok(Value::Double(n.as_f64().unwrap_or_default())),
        (AvroSchema::String, Json::String(s)) => Ok(Value::String(s.clone())),
        (AvroSchema::Uuid, Json::String(s)) => Ok(Value::String(s.clone())),
        (AvroSchema::Bytes, Json::String(s)) => Ok(Value::Bytes(s.as_bytes().to_vec())),
        (AvroSchema::Enum(e), Json::String(s)) => match e.symbols.iter().position(|x| x == s) {
            Some(i) => Ok(Value::Enum(i as u32, s.clone())),
            None => bad(&format!("one of {}", e.symbols.join(", "))),
        },
        (AvroSchema::Array(a), Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| convert(&a.items, item, &format!("{at}[{i}]")))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        (AvroSchema::Decimal(d), Json::String(_) | Json::Number(_)) => {
            let text = match json {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            decimal(d, &text).map_err(|m| format!("{at}: {m}"))
        }
        (AvroSchema::Long | AvroSchema::TimeMicros | AvroSchema::TimestampMillis | AvroSchema::TimestampMicros, _) => {
            bad("a 64-bit integer")
        }
        (AvroSchema::Float | AvroSchema::Double, _) => bad("a number"),
        (AvroSchema::Decimal(_), _) => bad("a decimal as a string or number"),
        (AvroSchema::Null, _) => bad("null"),
        (AvroSchema::Boolean, _) => bad("true or false"),
        (AvroSchema::String | AvroSchema::Uuid | AvroSchema::Bytes | AvroSchema::Enum(_), _) => bad("a string"),
        (AvroSchema::Array(_), _) => bad("an array"),
        (other, _) => Err(format!("{at}: avro type {other:?} is not supported in JSON input")),
    }
}

fn record(r: &RecordSchema, json: &Json, at: &str) -> Result<Value, String> {
    let object = json.as_object().expect("matched an object");
    if let Some(extra) = object.keys().find(|k| !r.fields.iter().any(|f| &f.name == *k)) {
        return Err(format!("{}: field `{extra}` is not in the schema", if at.is_empty() { "record" } else { at }));
    }
    let mut fields = Vec::with_capacity(r.fields.len());
    for f in &r.fields {
        let path = if at.is_empty() { f.name.clone() } else { format!("{at}.{}", f.name) };
        let value = match object.get(&f.name) {
            Some(v) => convert(&f.schema, v, &path)?,
            // A missing field is null when the schema allows it.
            None => convert(&f.schema, &Json::Null, &path).map_err(|_| format!("{path}: missing"))?,
        };
        fields.push((f.name.clone(), value));
    }
    Ok(Value::Record(fields))
}

fn union(u: &UnionSchema, json: &Json, at: &str) -> Result<Value, String> {
    let mut first_error = None;
    for (i, variant) in u.variants().iter().enumerate() {
        match convert(variant, json, at) {
            Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| format!("{at}: empty union")))
}

fn int(json: &Json) -> Option<i32> {
    json.as_i64().and_then(|v| i32::try_from(v).ok())
}

/// `text` such as `-12.5` as the decimal's unscaled big-endian bytes; more fraction digits
/// than the scale is an error rather than a silent rounding.
fn decimal(d: &DecimalSchema, text: &str) -> Result<Value, String> {
    let err = || format!("`{text}` is not a decimal of precision {} and scale {}", d.precision, d.scale);
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(err());
    }
    if fraction.len() > d.scale {
        return Err(err());
    }
    let padded = format!("{whole}{fraction}{}", "0".repeat(d.scale - fraction.len()));
    let significant = padded.trim_start_matches('0');
    if significant.len() > d.precision {
        return Err(err());
    }
    let magnitude: i128 = if significant.is_empty() { 0 } else { significant.parse().map_err(|_| err())? };
    let unscaled = if negative { -magnitude } else { magnitude };
    Ok(Value::Decimal(apache_avro::Decimal::from(unscaled.to_be_bytes().to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> AvroSchema {
        AvroSchema::parse_str(
            r#"{"type":"record","name":"T","fields":[
                {"name":"symbol","type":"string"},
                {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":18,"scale":8}},
                {"name":"side","type":{"type":"enum","name":"Side","symbols":["BUY","SELL"]}},
                {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
                {"name":"venue","type":["null","string"],"default":null}
            ]}"#,
        )
        .unwrap()
    }

    fn unscaled(v: &Value) -> i128 {
        let Value::Decimal(d) = v else { panic!("{v:?}") };
        let bytes = Vec::<u8>::try_from(d).unwrap();
        let mut be = [if bytes[0] & 0x80 != 0 { 0xff } else { 0 }; 16];
        be[16 - bytes.len()..].copy_from_slice(&bytes);
        i128::from_be_bytes(be)
    }

    #[test]
    fn converts_a_trade_with_decimal_enum_timestamp_and_missing_nullable() {
        let json =
            serde_json::json!({"symbol": "AAPL", "price": "187.25", "side": "SELL", "ts": 1_700_000_000_000_000i64});
        let Value::Record(fields) = to_avro(&schema(), &json).unwrap() else { panic!() };
        assert_eq!(unscaled(&fields[1].1), 18_725_000_000);
        assert_eq!(fields[2].1, Value::Enum(1, "SELL".into()));
        assert_eq!(fields[3].1, Value::TimestampMicros(1_700_000_000_000_000));
        assert_eq!(fields[4].1, Value::Union(0, Box::new(Value::Null)));
        let json = serde_json::json!({"symbol": "X", "price": -0.5, "side": "BUY", "ts": 0, "venue": "XNAS"});
        let Value::Record(fields) = to_avro(&schema(), &json).unwrap() else { panic!() };
        assert_eq!(unscaled(&fields[1].1), -50_000_000);
        assert_eq!(fields[4].1, Value::Union(1, Box::new(Value::String("XNAS".into()))));
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let base = serde_json::json!({"symbol": "AAPL", "price": "1", "side": "BUY", "ts": 0});
        let with = |k: &str, v: Json| {
            let mut j = base.clone();
            j[k] = v;
            to_avro(&schema(), &j).unwrap_err()
        };
        assert_eq!(
            with("price", "1.123456789".into()),
            "price: `1.123456789` is not a decimal of precision 18 and scale 8"
        );
        assert_eq!(with("side", "HOLD".into()), "side: expected one of BUY, SELL, got \"HOLD\"");
        assert_eq!(with("ts", "soon".into()), "ts: expected a 64-bit integer, got \"soon\"");
        assert_eq!(with("extra", 1.into()), "record: field `extra` is not in the schema");
    }
}
