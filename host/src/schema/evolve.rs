//! Evolves a table's schema to what a topic's Avro schema needs: added columns, widened types.

use iceberg::spec::{PrimitiveType, Schema as IcebergSchema, Type};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};

use crate::error::{Error, Result};
use crate::sink::catalog::TableCatalog;
use crate::sink::overlay::TableOverlay;

/// What a table's schema must gain before records of a newer writer schema are written.
#[derive(Debug, Default, PartialEq)]
pub struct TableChange {
    /// Columns to add, as optional columns (rows written before have none).
    pub add: Vec<(String, Type)>,
    /// Columns to widen, by field id: int → long, float → double, decimal to a wider precision.
    pub promote: Vec<(i32, String, PrimitiveType)>,
}

impl TableChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.promote.is_empty()
    }

    /// One line for logs and errors, e.g. "add `venue` string; widen `qty` int → long".
    pub fn describe(&self, table: &IcebergSchema) -> String {
        let mut parts: Vec<String> = self.add.iter().map(|(n, t)| format!("add `{n}` {t}")).collect();
        for (id, name, to) in &self.promote {
            let from = table.field_by_id(*id).map(|f| f.field_type.to_string()).unwrap_or_default();
            parts.push(format!("widen `{name}` {from} → {to}"));
        }
        parts.join("; ")
    }
}

/// Compares the table's schema with the one the topic's Avro schema maps to (`desired`), by
/// top-level column name. Columns the table has and `desired` lacks are left alone (they read
/// as null); a column whose type cannot be widened to the new one is an error naming it.
pub fn plan(table: &IcebergSchema, desired: &IcebergSchema) -> std::result::Result<TableChange, String> {
    let mut change = TableChange::default();
    for want in desired.as_struct().fields() {
        let Some(have) = table.field_by_name(&want.name) else {
            change.add.push((want.name.clone(), (*want.field_type).clone()));
            continue;
        };
        if have.required && !want.required {
            return Err(format!(
                "field `{}`: the table's column is required, the new schema makes it optional",
                want.name
            ));
        }
        let (Type::Primitive(from), Type::Primitive(to)) = (&*have.field_type, &*want.field_type) else {
            if !holds(&have.field_type, &want.field_type) {
                return Err(format!(
                    "field `{}`: type {} in the table, {} in the new schema",
                    want.name, have.field_type, want.field_type
                ));
            }
            continue;
        };
        match widening(from, to) {
            Widening::Same | Widening::Narrower => {}
            Widening::Promote => change.promote.push((have.id, want.name.clone(), to.clone())),
            Widening::Incompatible => {
                return Err(format!(
                    "field `{}`: type {from} in the table cannot become {to} (only int → long, float → double \
                     and decimal to a wider precision are allowed)",
                    want.name
                ));
            }
        }
    }
    Ok(change)
}

/// Whether a nested column of type `have` holds values of type `want` as it is (field ids
/// aside: the table's are its own). Nested types do not evolve: their fields must match.
fn holds(have: &Type, want: &Type) -> bool {
    let field_holds = |h: &iceberg::spec::NestedField, w: &iceberg::spec::NestedField| {
        h.name == w.name && (!h.required || w.required) && holds(&h.field_type, &w.field_type)
    };
    match (have, want) {
        (Type::Primitive(h), Type::Primitive(w)) => matches!(widening(h, w), Widening::Same | Widening::Narrower),
        (Type::Struct(h), Type::Struct(w)) => {
            h.fields().len() == w.fields().len() && h.fields().iter().zip(w.fields()).all(|(h, w)| field_holds(h, w))
        }
        (Type::List(h), Type::List(w)) => {
            (!h.element_field.required || w.element_field.required)
                && holds(&h.element_field.field_type, &w.element_field.field_type)
        }
        (Type::Map(h), Type::Map(w)) => {
            holds(&h.key_field.field_type, &w.key_field.field_type)
                && (!h.value_field.required || w.value_field.required)
                && holds(&h.value_field.field_type, &w.value_field.field_type)
        }
        _ => false,
    }
}

enum Widening {
    Same,
    /// The new type fits in the column as it is (long column, int values).
    Narrower,
    Promote,
    Incompatible,
}

/// The type promotions Iceberg allows in place (spec: schema evolution).
fn widening(from: &PrimitiveType, to: &PrimitiveType) -> Widening {
    use PrimitiveType as P;
    match (from, to) {
        _ if from == to => Widening::Same,
        (P::Int, P::Long) | (P::Float, P::Double) => Widening::Promote,
        (P::Long, P::Int) | (P::Double, P::Float) => Widening::Narrower,
        (P::Decimal { precision: p1, scale: s1 }, P::Decimal { precision: p2, scale: s2 }) if s1 == s2 => {
            if p2 > p1 {
                Widening::Promote
            } else {
                Widening::Narrower
            }
        }
        _ => Widening::Incompatible,
    }
}

/// Commits `change` to `table` and returns the table as it then is. Columns are added with
/// iceberg-rust's schema update; widening has no public API there, see [`TableOverlay::widened`].
pub async fn apply(catalog: &TableCatalog, table: &Table, change: &TableChange, topic: &str) -> Result<Table> {
    let name = table.identifier().to_string();
    let err = |context: &str, source| Error::Iceberg { table: name.clone(), context: context.to_string(), source };
    let mut table = table.clone();
    if !change.promote.is_empty() {
        let types = change.promote.iter().map(|(id, _, to)| (*id, to.clone()));
        let promoting = TableOverlay::widened(catalog.catalog(), table.identifier(), types);
        let tx = Transaction::new(&table);
        let tx = tx.update_schema().apply(tx).map_err(|e| err("widening columns", e))?;
        tx.commit(&promoting).await.map_err(|e| err("widening columns", e))?;
        table = catalog.catalog().load_table(table.identifier()).await.map_err(|e| err("reloading", e))?;
        for (id, column, to) in &change.promote {
            let now = table.metadata().current_schema().field_by_id(*id).map(|f| (*f.field_type).clone());
            if now != Some(Type::Primitive(to.clone())) {
                return Err(Error::Topic {
                    topic: topic.to_string(),
                    message: format!("column `{column}` of {name} was not widened to {to} by the catalog"),
                });
            }
        }
    }
    if !change.add.is_empty() {
        let tx = Transaction::new(&table);
        let mut update = tx.update_schema();
        for (column, ty) in &change.add {
            update = update.add_column(AddColumn::optional(column, ty.clone()));
        }
        let tx = update.apply(tx).map_err(|e| err("adding columns", e))?;
        table = tx.commit(catalog.catalog()).await.map_err(|e| err("adding columns", e))?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::NestedField;

    fn schema(fields: Vec<NestedField>) -> IcebergSchema {
        IcebergSchema::builder().with_fields(fields.into_iter().map(Into::into)).build().unwrap()
    }

    #[test]
    fn plans_added_and_widened_columns_and_refuses_the_rest() {
        let table = schema(vec![
            NestedField::required(1, "qty", Type::Primitive(PrimitiveType::Int)),
            NestedField::optional(2, "px", Type::Primitive(PrimitiveType::Float)),
            NestedField::required(3, "total", Type::Primitive(PrimitiveType::Long)),
        ]);
        let desired = schema(vec![
            NestedField::required(1, "qty", Type::Primitive(PrimitiveType::Long)),
            NestedField::optional(2, "px", Type::Primitive(PrimitiveType::Double)),
            NestedField::required(3, "total", Type::Primitive(PrimitiveType::Int)),
            NestedField::optional(4, "venue", Type::Primitive(PrimitiveType::String)),
        ]);
        let change = plan(&table, &desired).unwrap();
        assert_eq!(change.add, vec![("venue".to_string(), Type::Primitive(PrimitiveType::String))]);
        assert_eq!(
            change.promote,
            vec![(1, "qty".to_string(), PrimitiveType::Long), (2, "px".to_string(), PrimitiveType::Double)]
        );
        assert_eq!(change.describe(&table), "add `venue` string; widen `qty` int → long; widen `px` float → double");
        assert!(plan(&table, &table).unwrap().is_empty());

        let narrowed = schema(vec![NestedField::required(1, "qty", Type::Primitive(PrimitiveType::String))]);
        let msg = plan(&table, &narrowed).unwrap_err();
        assert!(msg.starts_with("field `qty`: type int in the table cannot become string"), "{msg}");
        let loosened = schema(vec![NestedField::optional(1, "qty", Type::Primitive(PrimitiveType::Int))]);
        assert!(plan(&table, &loosened).unwrap_err().contains("column is required"));
    }
}
