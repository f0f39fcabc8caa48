//! Source offsets stored in snapshot summaries: the table, not the group, is the truth.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::Snapshot;
use iceberg::table::Table;

use crate::error::Result;
use crate::sink::lineage::Lineage;

/// Summary key prefix; the full key is `k2.offsets.<topic>`, the value a JSON object
/// mapping partition to the next offset to read.
pub const OFFSETS_KEY_PREFIX: &str = "k2.offsets.";

/// Summary key prefix; the full key is `k2.topic-id.<topic>`, the value the id (base64) of
/// the topic the offsets were read from, so a topic deleted and created again under the same
/// name is told from the one the offsets belong to.
pub const TOPIC_ID_KEY_PREFIX: &str = "k2.topic-id.";

/// Next offset per partition of one topic.
pub type PartitionOffsets = BTreeMap<i32, i64>;

/// The offsets of `topic` in effect at the table's current snapshot (empty if none): those
/// of the newest ancestor k2-ingest committed, passing over other engines' snapshots.
pub fn stored_offsets(table: &Table, topic: &str) -> Result<PartitionOffsets> {
    Lineage::of(table).offsets_at(0, topic)
}

/// The offsets of `topic` stored in `snapshot` itself (empty if none).
pub fn snapshot_offsets(snapshot: &Snapshot, topic: &str) -> PartitionOffsets {
    let value = snapshot.summary().additional_properties.get(&format!("{OFFSETS_KEY_PREFIX}{topic}"));
    value.and_then(|v| parse(v)).unwrap_or_default()
}

/// The summary key of `topic`'s id (see [`TOPIC_ID_KEY_PREFIX`]).
pub fn topic_id_key(topic: &str) -> String {
    format!("{TOPIC_ID_KEY_PREFIX}{topic}")
}

/// The id of the topic whose offsets are in effect at the table's current snapshot (`None`
/// where none was recorded: tables written before ids were, brokers that give none).
pub fn stored_topic_id(table: &Table, topic: &str) -> Result<Option<String>> {
    Ok(k2_summary(table)?.remove(&topic_id_key(topic)))
}

/// The `k2.*` summary entries in effect at the table's current snapshot (see [`stored_offsets`]).
pub fn k2_summary(table: &Table) -> Result<HashMap<String, String>> {
    let snapshot = Lineage::of(table).k2()?;
    Ok(snapshot
        .map(|s| {
            s.summary()
                .additional_properties
                .iter()
                .filter(|(k, _)| k.starts_with("k2."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default())
}

/// Summary properties for the next commit: every `k2.` entry in effect carried forward
/// unchanged, with `topic`'s offsets advanced by `advanced`.
pub fn next_summary(table: &Table, topic: &str, advanced: &PartitionOffsets) -> Result<HashMap<String, String>> {
    let mut props = k2_summary(table)?;
    let key = format!("{OFFSETS_KEY_PREFIX}{topic}");
    let mut offsets = props.get(&key).and_then(|v| parse(v)).unwrap_or_default();
    for (&p, &o) in advanced {
        let e = offsets.entry(p).or_insert(o);
        *e = (*e).max(o);
    }
    props.insert(key, render(&offsets));
    Ok(props)
}

pub fn render(offsets: &PartitionOffsets) -> String {
    let map: BTreeMap<String, i64> = offsets.iter().map(|(p, o)| (p.to_string(), *o)).collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// Offset ranges for a log line: `partition:first..next` per partition, half-open, e.g.
/// `0:100..250 1:7..90`; a partition with nothing read since the last commit (absent from
/// `from`) shows an empty range, `partition:next..next`.
pub fn render_ranges(from: &PartitionOffsets, next: &PartitionOffsets) -> String {
    let parts: Vec<String> = next
        .iter()
        .map(|(p, n)| match from.get(p) {
            Some(f) => format!("{p}:{f}..{n}"),
            None => format!("{p}:{n}..{n}"),
        })
        .collect();
    parts.join(" ")
}

pub fn parse(json: &str) -> Option<PartitionOffsets> {
    let map: BTreeMap<String, i64> = serde_json::from_str(json).ok()?;
    map.into_iter().map(|(p, o)| Some((p.parse().ok()?, o))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let offsets = PartitionOffsets::from([(0, 10), (2, 7)]);
        let json = render(&offsets);
        assert_eq!(json, r#"{"0":10,"2":7}"#);
        assert_eq!(parse(&json), Some(offsets));
        assert_eq!(parse("{\"x\":1}"), None);
    }

    #[test]
    fn ranges_are_half_open_per_partition() {
        let from = PartitionOffsets::from([(0, 100)]);
        let next = PartitionOffsets::from([(0, 250), (1, 90)]);
        assert_eq!(render_ranges(&from, &next), "0:100..250 1:90..90");
    }
}
