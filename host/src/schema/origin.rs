//! Where a topic's reader schema comes from (its file or its subject, and the writer schemas merged in), and learning new writer schemas.

use crate::config::TopicConfig;
use crate::decode::avro::TopicDecoder;
use crate::decode::registry::SchemaRegistry;
use crate::error::{Error, Result};
use crate::schema::mapping::load_avsc;
use crate::schema::merge::{Incompatible, merge};

/// Where a topic's reader schema came from, for messages: the schema file (or subject
/// version) and the writer schema ids merged in.
#[derive(Debug, Clone)]
pub struct SchemaOrigin {
    file: String,
    ids: Vec<u32>,
}

impl SchemaOrigin {
    pub fn new(file: impl Into<String>) -> Self {
        Self { file: file.into(), ids: Vec::new() }
    }

    /// Notes that writer schema `id` was merged into the reader schema.
    pub fn merged(&mut self, id: u32) {
        self.ids.push(id);
    }

    /// e.g. "schemas/trade.avsc with schema ids 3, 7".
    pub fn describe(&self) -> String {
        match self.ids.as_slice() {
            [] => self.file.clone(),
            ids => format!(
                "{} with schema ids {}",
                self.file,
                ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The schema file's path, or the subject version, as a path for mapping errors.
    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(&self.file)
    }

    /// The error that stops a topic whose new writer schema (`named`) the table cannot take.
    pub fn incompatible(&self, topic: &str, named: &str, e: &Incompatible) -> Error {
        let field = if e.field.is_empty() { String::new() } else { format!("field `{}` ", e.field) };
        Error::Topic {
            topic: topic.to_string(),
            message: format!(
                "schema id {named} is incompatible with the table's schema (from {}): {field}{}; \
                 stopping before any record of it is written",
                self.describe(),
                e.message
            ),
        }
    }
}

/// The topic's decoder with its starting reader schema — the topic's schema file, or its
/// subject's latest version — with every writer schema the config maps merged in from the
/// start, as if met in a record.
pub async fn starting_decoder(
    topic: &TopicConfig,
    registry: Option<&SchemaRegistry>,
) -> Result<(TopicDecoder, SchemaOrigin)> {
    let (start, mut origin) = match (&topic.schema, registry) {
        (Some(path), _) => (load_avsc(path)?, SchemaOrigin::new(path.display().to_string())),
        (None, Some(registry)) => {
            let subject = topic.subject();
            let (id, version, schema) = registry
                .latest(&subject)
                .await
                .map_err(|e| Error::Topic { topic: topic.name.clone(), message: e.to_string() })?;
            tracing::info!(topic = %topic.name, subject, version, schema_id = id, "starting schema from the registry");
            let mut origin = SchemaOrigin::new(format!("subject {subject} version {version}"));
            origin.merged(id);
            (schema, origin)
        }
        (None, None) => unreachable!("config validation requires a schema file without a registry"),
    };
    let mut decoder = TopicDecoder::new(topic, start)?;
    let mut known: Vec<(u32, apache_avro::Schema)> = decoder.writer_schemas().map(|(id, s)| (id, s.clone())).collect();
    known.sort_by_key(|(id, _)| *id);
    for (id, writer) in known {
        match merge(decoder.table_schema(), &writer) {
            Ok(None) => {}
            Ok(Some(merged)) => decoder.set_reader(merged),
            Err(e) => return Err(origin.incompatible(&topic.name, &id.to_string(), &e)),
        }
        origin.merged(id);
    }
    Ok((decoder, origin))
}

/// What a writer schema met in a record means for the table.
pub enum Learned {
    /// The registry does not serve it as a usable schema: its records are undecodable.
    Unusable(String),
    /// The table's schema reads it as it is.
    Readable(apache_avro::Schema),
    /// The table must evolve to `merged` before any record of it is written.
    Evolve { writer: apache_avro::Schema, merged: apache_avro::Schema },
}

/// Fetches the writer schema `id` from the registry and compares it with the reader schema
/// `reader`. A registry that cannot answer, or a schema the table cannot take, stops the topic.
pub async fn learn(
    registry: &SchemaRegistry,
    reader: &apache_avro::Schema,
    id: u32,
    topic: &str,
    origin: &SchemaOrigin,
) -> Result<Learned> {
    let writer = match registry.schema(id).await {
        Ok(w) => w.schema.clone(),
        Err(e) if e.is_bad_record() => return Ok(Learned::Unusable(e.to_string())),
        Err(e) => {
            return Err(Error::Topic {
                topic: topic.to_string(),
                message: format!("{e}; stopping without committing what is not yet in the table"),
            });
        }
    };
    match merge(reader, &writer) {
        Ok(None) => Ok(Learned::Readable(writer)),
        Ok(Some(merged)) => Ok(Learned::Evolve { writer, merged }),
        Err(e) => {
            let versions = registry.versions_of(id).await;
            let named = match versions.as_slice() {
                [] => format!("{id}"),
                vs => format!(
                    "{id} ({})",
                    vs.iter().map(|v| format!("{} version {}", v.subject, v.version)).collect::<Vec<_>>().join(", ")
                ),
            };
            Err(origin.incompatible(topic, &named, &e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_names_the_file_and_every_id_merged_in() {
        let mut o = SchemaOrigin::new("schemas/trade.avsc");
        assert_eq!(o.describe(), "schemas/trade.avsc");
        o.merged(3);
        o.merged(7);
        assert_eq!(o.describe(), "schemas/trade.avsc with schema ids 3, 7");
        let e = Incompatible { field: "qty".into(), message: "long cannot become string".into() };
        assert_eq!(
            o.incompatible("t", "9", &e).to_string(),
            "topic t: schema id 9 is incompatible with the table's schema (from schemas/trade.avsc with schema ids 3, 7): \
             field `qty` long cannot become string; stopping before any record of it is written"
        );
    }
}
