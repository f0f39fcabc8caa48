//! A topic's partition spec: bound to the table's schema, and checked against an existing table.

use iceberg::spec::{PartitionSpec, PrimitiveType, Schema as IcebergSchema, Transform, Type, UnboundPartitionSpec};
use iceberg::table::Table;

use crate::config::PartitionField;
use crate::error::{Error, Result};

/// The spec `partition_by` asks for, bound to `schema`; `None` for an unpartitioned table. An
/// entry that does not bind (no such column, a transform the column's type does not take)
/// is an error naming it.
pub fn bind(schema: &IcebergSchema, fields: &[PartitionField], topic: &str) -> Result<Option<UnboundPartitionSpec>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let err = |field: &PartitionField, message: String| Error::Topic {
        topic: topic.to_string(),
        message: format!("partition_by `{field}`: {message}"),
    };
    let mut builder = PartitionSpec::builder(schema.clone());
    for field in fields {
        let Some(column) = schema.field_by_name(&field.column) else {
            let columns: Vec<&str> = schema.as_struct().fields().iter().map(|f| f.name.as_str()).collect();
            return Err(err(
                field,
                format!("no column `{}` in the table (columns: {})", field.column, columns.join(", ")),
            ));
        };
        if field.transform.result_type(&column.field_type).is_err() {
            return Err(err(
                field,
                format!(
                    "transform {} does not apply to column `{}` of type {}",
                    field.transform, field.column, column.field_type
                ),
            ));
        }
        if matches!(field.transform, Transform::Truncate(_))
            && matches!(*column.field_type, Type::Primitive(PrimitiveType::Binary))
        {
            // The spec allows it, but iceberg-rust 0.10 computes truncate only on the Arrow binary
            // type, not the large binary its own schema conversion gives binary columns.
            return Err(err(
                field,
                format!("truncate of a binary column is not supported yet; use bucket(N, {}) instead", field.column),
            ));
        }
        builder = builder
            .add_partition_field(&field.column, field.name(), field.transform)
            .map_err(|e| err(field, e.message().to_string()))?;
    }
    let spec = builder
        .build()
        .map_err(|e| Error::Topic { topic: topic.to_string(), message: format!("partition_by: {e}") })?;
    Ok(Some(spec.into()))
}

/// Refuses a table that exists with other partitioning than `partition_by` asks for: k2-ingest
/// does not change a table's spec behind its owner's back. Without `partition_by` the table's
/// own spec is used, whatever it is.
pub fn check_table(table: &Table, fields: &[PartitionField], topic: &str) -> Result<()> {
    if fields.is_empty() {
        return Ok(());
    }
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let have: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let column = schema.name_by_field_id(f.source_id).unwrap_or("?");
            format!("{}({column})", f.transform)
        })
        .collect();
    let want: Vec<String> = fields.iter().map(|f| format!("{}({})", f.transform, f.column)).collect();
    if have != want {
        return Err(Error::Topic {
            topic: topic.to_string(),
            message: format!(
                "table {} is partitioned by [{}] but partition_by asks for [{}]; k2-ingest does not change an \
                 existing table's partitioning: drop partition_by to write with the table's spec, or use a new table",
                table.identifier(),
                have.join(", "),
                want.join(", ")
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::NestedField;

    fn field(s: &str) -> PartitionField {
        PartitionField::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn binds_good_specs_and_names_the_entry_that_does_not_bind() {
        let schema = IcebergSchema::builder()
            .with_fields(vec![
                NestedField::required(1, "symbol", Type::Primitive(PrimitiveType::String)).into(),
                NestedField::required(2, "ts", Type::Primitive(PrimitiveType::Timestamptz)).into(),
                NestedField::required(3, "raw", Type::Primitive(PrimitiveType::Binary)).into(),
            ])
            .build()
            .unwrap();
        let spec = bind(&schema, &[field("day(ts)"), field("bucket(8, symbol)")], "t").unwrap().unwrap();
        let names: Vec<&str> = spec.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ts_day", "symbol_bucket"]);
        assert!(bind(&schema, &[], "t").unwrap().is_none());

        let msg = bind(&schema, &[field("day(symbol)")], "t").unwrap_err().to_string();
        assert_eq!(
            msg,
            "topic t: partition_by `day(symbol)`: transform day does not apply to column `symbol` of type string"
        );
        let msg = bind(&schema, &[field("hour(when)")], "t").unwrap_err().to_string();
        assert_eq!(msg, "topic t: partition_by `hour(when)`: no column `when` in the table (columns: symbol, ts, raw)");
        let msg = bind(&schema, &[field("truncate(4, raw)")], "t").unwrap_err().to_string();
        assert!(msg.starts_with("topic t: partition_by `truncate(4, raw)`: truncate of a binary column"), "{msg}");
    }
}
