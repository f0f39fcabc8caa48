//! Validator state committed with the data: one file per partition and commit, referenced from the snapshot summary.
//!
//! The state (e.g. the last sequence number per symbol) must describe exactly the records
//! the table holds, so it is written before the commit, like a data file, and the snapshot
//! that adds the records names it. Inline summary values would be copied into every later
//! snapshot's entry of the table metadata, so a few kilobytes per partition would grow the
//! metadata file by that much per commit; a path stays small.

use std::collections::BTreeMap;

use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::sink::offsets::k2_summary;

/// Summary key prefix; the full key is `k2.state.<topic>`, the value a JSON object mapping
/// partition to the state file of the validator instance that read up to the stored offset.
pub const STATE_KEY_PREFIX: &str = "k2.state.";

/// Partition → state file, as stored in a summary.
pub type StateFiles = BTreeMap<i32, String>;

/// The state files of `topic` in effect at the table's current snapshot: named by the
/// newest ancestor k2-ingest committed, like the offsets they belong to.
pub fn stored_state_files(table: &Table, topic: &str) -> Result<StateFiles> {
    let summary = k2_summary(table)?;
    Ok(summary
        .get(&format!("{STATE_KEY_PREFIX}{topic}"))
        .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(json).ok())
        .map(|m| m.into_iter().filter_map(|(p, f)| Some((p.parse().ok()?, f))).collect())
        .unwrap_or_default())
}

/// The summary value for `topic` after a commit that wrote `written`: the stored files with
/// those partitions replaced.
pub fn next_state_files(table: &Table, topic: &str, written: &StateFiles) -> Result<(String, String)> {
    let mut files = stored_state_files(table, topic)?;
    files.extend(written.iter().map(|(p, f)| (*p, f.clone())));
    let map: BTreeMap<String, &String> = files.iter().map(|(p, f)| (p.to_string(), f)).collect();
    Ok((format!("{STATE_KEY_PREFIX}{topic}"), serde_json::to_string(&map).unwrap_or_default()))
}

/// Writes one partition's state next to the table's data and returns its path.
pub async fn write_state(table: &Table, topic: &str, partition: i32, state: &[u8]) -> Result<String> {
    let safe_topic: String =
        topic.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let path = format!(
        "{}/k2-state/{safe_topic}-p{partition}-{}.bin",
        table.metadata().location().trim_end_matches('/'),
        uuid::Uuid::now_v7()
    );
    let err = |source| Error::Iceberg {
        table: table.identifier().to_string(),
        context: format!("writing validator state of {topic} partition {partition} to {path}"),
        source,
    };
    let output = table.file_io().new_output(&path).map_err(err)?;
    output.write(state.to_vec().into()).await.map_err(err)?;
    Ok(path)
}

/// Reads the state in effect at the table's current snapshot for `partition`, if any.
pub async fn read_state(table: &Table, topic: &str, partition: i32) -> Result<Option<Vec<u8>>> {
    let Some(path) = stored_state_files(table, topic)?.remove(&partition) else { return Ok(None) };
    let err = |source| Error::Iceberg {
        table: table.identifier().to_string(),
        context: format!("reading validator state of {topic} partition {partition} from {path}"),
        source,
    };
    let input = table.file_io().new_input(&path).map_err(err)?;
    Ok(Some(input.read().await.map_err(err)?.to_vec()))
}
