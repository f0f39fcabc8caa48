//! One entry of a topic's `partition_by`: an Iceberg partition transform of a column, as text.

use std::fmt;

use iceberg::spec::Transform;
use serde::Deserialize;

/// `column` (identity), `identity(column)`, `year|month|day|hour(column)`,
/// `bucket(N, column)` or `truncate(W, column)`; the column may be nested (`leg.venue`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PartitionField {
    pub transform: Transform,
    pub column: String,
    /// As written in the config, for messages.
    pub text: String,
}

impl PartitionField {
    /// The partition field's name in the table, as Iceberg's own tools name them
    /// (`exchange_ts_day`, `symbol_bucket`, …; identity keeps the column's name).
    pub fn name(&self) -> String {
        let column = self.column.replace('.', "_");
        match self.transform {
            Transform::Identity => column,
            Transform::Year => format!("{column}_year"),
            Transform::Month => format!("{column}_month"),
            Transform::Day => format!("{column}_day"),
            Transform::Hour => format!("{column}_hour"),
            Transform::Bucket(_) => format!("{column}_bucket"),
            Transform::Truncate(_) => format!("{column}_trunc"),
            _ => format!("{column}_{}", self.transform),
        }
    }
}

impl fmt::Display for PartitionField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for PartitionField {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "partition_by entry `{text}`: {why} (expected `column`, `identity(column)`, \
                 `year|month|day|hour(column)`, `bucket(N, column)` or `truncate(W, column)`)"
            )
        };
        let trimmed = text.trim();
        let Some(open) = trimmed.find('(') else {
            if trimmed.is_empty() || !is_column(trimmed) {
                return Err(bad("not a column name"));
            }
            return Ok(Self { transform: Transform::Identity, column: trimmed.to_string(), text });
        };
        let inner = trimmed[open + 1..].strip_suffix(')').ok_or_else(|| bad("no closing parenthesis"))?;
        let args: Vec<&str> = inner.split(',').map(str::trim).collect();
        let name = trimmed[..open].trim().to_ascii_lowercase();
        let (transform, column) = match (name.as_str(), args.as_slice()) {
            ("identity", [c]) => (Transform::Identity, *c),
            ("year", [c]) => (Transform::Year, *c),
            ("month", [c]) => (Transform::Month, *c),
            ("day", [c]) => (Transform::Day, *c),
            ("hour", [c]) => (Transform::Hour, *c),
            ("bucket" | "truncate", [n, c]) => {
                let n: u32 =
                    n.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("the width must be a whole number above 0"))?;
                (if name == "bucket" { Transform::Bucket(n) } else { Transform::Truncate(n) }, *c)
            }
            ("identity" | "year" | "month" | "day" | "hour", _) => return Err(bad("takes one column")),
            ("bucket" | "truncate", _) => return Err(bad("takes a width and a column")),
            _ => return Err(bad(&format!("unknown transform `{name}`"))),
        };
        if !is_column(column) {
            return Err(bad("not a column name"));
        }
        Ok(Self { transform, column: column.to_string(), text })
    }
}

fn is_column(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|part| !part.is_empty() && part.chars().all(|c| c.is_alphanumeric() || c == '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PartitionField, String> {
        PartitionField::try_from(s.to_string())
    }

    #[test]
    fn parses_every_transform_and_names_the_field_as_iceberg_does() {
        let cases = [
            ("symbol", Transform::Identity, "symbol", "symbol"),
            ("identity(leg.venue)", Transform::Identity, "leg.venue", "leg_venue"),
            ("day(exchange_ts)", Transform::Day, "exchange_ts", "exchange_ts_day"),
            ("HOUR( ts )", Transform::Hour, "ts", "ts_hour"),
            ("year(ts)", Transform::Year, "ts", "ts_year"),
            ("month(ts)", Transform::Month, "ts", "ts_month"),
            ("bucket(16, trade_id)", Transform::Bucket(16), "trade_id", "trade_id_bucket"),
            ("truncate(4,symbol)", Transform::Truncate(4), "symbol", "symbol_trunc"),
        ];
        for (text, transform, column, name) in cases {
            let f = parse(text).unwrap();
            assert_eq!((f.transform, f.column.as_str(), f.name().as_str()), (transform, column, name), "{text}");
        }
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (text, why) in [
            ("weekday(ts)", "unknown transform `weekday`"),
            ("bucket(ts)", "takes a width and a column"),
            ("bucket(0, ts)", "the width must be a whole number above 0"),
            ("day(ts", "no closing parenthesis"),
            ("day(a, b)", "takes one column"),
            ("sym bol", "not a column name"),
        ] {
            let msg = parse(text).unwrap_err();
            assert!(msg.starts_with(&format!("partition_by entry `{text}`: {why}")), "{msg}");
        }
    }
}
