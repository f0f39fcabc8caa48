//! Manifests merged as part of an append, as Java's merge-append does by default: a table's manifest count stays bounded.
//!
//! A fast append adds one manifest per commit and lists every earlier one, so each commit
//! reads and rewrites a manifest list that grows with the table's history, and a scan opens
//! every manifest (1,000 after 1,000 commits: `k2-bench soak`). Once the current snapshot lists
//! [`MIN_COUNT_TO_MERGE`] data manifests of one partition spec, the small ones are rewritten into
//! manifests of up to [`TARGET_SIZE`] holding the same live files as `EXISTING` entries (their
//! snapshot ids and sequence numbers kept), and the append lists those instead.
//!
//! iceberg-rust 0.10 has no merge-append and no public way to build a snapshot of one's own,
//! so the append is given a view of its base whose current snapshot lists the merged
//! manifests (a manifest list written for the view only, deleted after the commit): the fast
//! append carries the view's manifests into the new snapshot. The catalog applies the new
//! snapshot to the real table with the usual checks (same parent, same table), so a concurrent
//! commit still conflicts. A merged manifest names the base's snapshot as the one that added
//! it, with its sequence number: the new snapshot's id is chosen inside iceberg-rust. Its
//! entries are all `EXISTING` with explicit sequence numbers, so nothing is inherited from that
//! and every reader plans the same files.

use std::collections::BTreeMap;

use iceberg::spec::{
    DataContentType, FormatVersion, ManifestFile, ManifestListWriter, ManifestWriterBuilder, TableMetadata,
    UNASSIGNED_SEQUENCE_NUMBER,
};
use iceberg::table::Table;

use crate::error::{Error, Result};

/// Data manifests of one spec listed before they are merged (Java's `commit.manifest.min-count-to-merge`).
pub const MIN_COUNT_TO_MERGE: usize = 100;
/// Manifests this large or larger are left as they are (Java's `commit.manifest.target-size-bytes`).
pub const TARGET_SIZE: u64 = 8 << 20;
/// Table property turning merging off, as in Java (default on).
pub const MERGE_ENABLED: &str = "commit.manifest-merge.enabled";

/// The base to append on, with the files written for it.
pub struct Merged {
    /// The base as the append sees it: its current snapshot lists the merged manifests.
    pub view: Table,
    /// Manifests merged: kept if the append commits, deleted if not.
    pub manifests: Vec<String>,
    /// The view's own manifest list: no snapshot ever references it.
    list: String,
    /// Manifests replaced by the merged ones.
    pub replaced: usize,
}

impl Merged {
    /// After the append: deletes the view's manifest list, and the merged manifests unless
    /// `committed` (then the new snapshot lists them). A file left behind is unreferenced.
    pub async fn clean_up(self, base: &Table, committed: bool) {
        let mut files = vec![self.list];
        if !committed {
            files.extend(self.manifests);
        }
        for file in files {
            if let Err(e) = base.file_io().delete(&file).await {
                tracing::debug!(table = %base.identifier(), %file, error = %e, "could not delete a file of a manifest merge");
            }
        }
    }
}

/// Which of `manifests` to merge, as groups: per partition spec, once a spec has
/// [`MIN_COUNT_TO_MERGE`] data manifests, its smaller-than-[`TARGET_SIZE`] ones packed in list
/// order into groups of up to that size; groups of one are left alone.
pub fn plan(manifests: &[ManifestFile]) -> Vec<Vec<usize>> {
    let mut by_spec: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, m) in manifests.iter().enumerate() {
        // A manifest recording deletions stays as it is, whatever reader combines what.
        if m.content == iceberg::spec::ManifestContentType::Data && !m.has_deleted_files() {
            by_spec.entry(m.partition_spec_id).or_default().push(i);
        }
    }
    let mut groups = Vec::new();
    for indexes in by_spec.into_values().filter(|ix| ix.len() >= MIN_COUNT_TO_MERGE) {
        let mut group: Vec<usize> = Vec::new();
        let mut size = 0u64;
        for i in indexes {
            let len = manifests[i].manifest_length.max(0) as u64;
            if len >= TARGET_SIZE {
                continue;
            }
            if size + len > TARGET_SIZE && !group.is_empty() {
                groups.push(std::mem::take(&mut group));
                size = 0;
            }
            group.push(i);
            size += len;
        }
        groups.push(group);
    }
    groups.retain(|g| g.len() > 1);
    groups
}

/// The view of `base` to append on, if its manifests are due for a merge (see [`plan`]).
pub async fn prepare(base: &Table) -> Result<Option<Merged>> {
    let metadata = base.metadata();
    let enabled = metadata.properties().get(MERGE_ENABLED).is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let Some(current) = metadata.current_snapshot() else { return Ok(None) };
    // v1 lists have no sequence numbers to keep; v3 assigns row ids to manifests, which a
    // rewrite would have to carry: both are left to fast appends.
    if !enabled || metadata.format_version() != FormatVersion::V2 {
        return Ok(None);
    }
    // Every manifest a merge takes holds at least one live file: below that many files in all
    // (the summary says), no merge can be due, and the list is not read twice per commit.
    let total_files =
        current.summary().additional_properties.get("total-data-files").and_then(|v| v.parse::<usize>().ok());
    if total_files.is_some_and(|n| n < MIN_COUNT_TO_MERGE) {
        return Ok(None);
    }
    let err = |context: String| {
        let table = base.identifier().to_string();
        move |source| Error::Iceberg { table, context, source }
    };
    let list = base.manifest_list_reader(current).load().await.map_err(err("reading the manifest list".into()))?;
    let manifests = list.entries();
    let groups = plan(manifests);
    if groups.is_empty() {
        return Ok(None);
    }
    let location = metadata.location().trim_end_matches('/');
    let mut merged: Vec<ManifestFile> = Vec::new();
    let mut written = Vec::new();
    let mut replaced = vec![false; manifests.len()];
    let result = async {
        for group in &groups {
            let spec_id = manifests[group[0]].partition_spec_id;
            let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
                iceberg::Error::new(iceberg::ErrorKind::DataInvalid, format!("no partition spec {spec_id}"))
            })?;
            let path = format!("{location}/metadata/k2-merged-{}.avro", uuid::Uuid::now_v7());
            let output = base.file_io().new_output(&path)?;
            written.push(path);
            let builder = ManifestWriterBuilder::new(
                output,
                Some(current.snapshot_id()),
                metadata.current_schema().clone(),
                spec.as_ref().clone(),
            );
            let mut writer = builder.build_v2_data();
            let mut carried = 0usize;
            for &i in group {
                let manifest = manifests[i].load_manifest(base.file_io()).await?;
                let live: Vec<_> = manifest
                    .entries()
                    .iter()
                    .filter(|e| e.is_alive() && e.content_type() == DataContentType::Data)
                    .collect();
                // An entry without its sequence numbers (an older writer's) cannot be carried
                // as it is: that manifest stays listed as it is.
                if live
                    .iter()
                    .any(|e| e.snapshot_id.is_none() || e.sequence_number.is_none() || e.file_sequence_number.is_none())
                {
                    continue;
                }
                for entry in live {
                    let (Some(snapshot), Some(sequence)) = (entry.snapshot_id, entry.sequence_number) else { continue };
                    writer.add_existing_file(
                        entry.data_file.clone(),
                        snapshot,
                        sequence,
                        entry.file_sequence_number,
                    )?;
                    carried += 1;
                }
                replaced[i] = true;
            }
            if carried == 0 {
                // Nothing live to list (a fast append would drop an empty manifest from the
                // next list, leaving the file unreferenced): none is written.
                written.pop();
                continue;
            }
            let mut file = writer.write_manifest_file().await?;
            file.sequence_number = current.sequence_number();
            if file.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                file.min_sequence_number = current.sequence_number();
            }
            merged.push(file);
        }
        let list_path = format!("{location}/metadata/k2-view-{}.avro", uuid::Uuid::now_v7());
        written.push(list_path.clone());
        let writer = base.file_io().new_output(&list_path)?.writer().await?;
        let mut list_writer = ManifestListWriter::v2(
            writer,
            current.snapshot_id(),
            current.parent_snapshot_id(),
            current.sequence_number(),
        );
        let kept = manifests.iter().zip(&replaced).filter(|(_, r)| !**r).map(|(m, _)| m.clone());
        list_writer.add_manifests(merged.iter().cloned().chain(kept))?;
        list_writer.close().await?;
        Ok(list_path)
    }
    .await;
    let list_path = match result {
        Ok(path) => path,
        Err(source) => {
            for file in &written {
                base.file_io().delete(file).await.ok();
            }
            return Err(err("merging manifests".into())(source));
        }
    };
    let view = match with_manifest_list(base, &list_path) {
        Ok(view) => view,
        Err(source) => {
            for file in &written {
                base.file_io().delete(file).await.ok();
            }
            return Err(err("building the merged view".into())(source));
        }
    };
    Ok(Some(Merged {
        view,
        manifests: written.into_iter().filter(|p| *p != list_path).collect(),
        list: list_path,
        replaced: replaced.iter().filter(|r| **r).count(),
    }))
}

/// `base` with its current snapshot's manifest list at `list`, through the metadata's JSON
/// form (iceberg-rust has no setter for a snapshot's fields).
fn with_manifest_list(base: &Table, list: &str) -> iceberg::Result<Table> {
    let invalid = |e: serde_json::Error| iceberg::Error::new(iceberg::ErrorKind::DataInvalid, e.to_string());
    let metadata = base.metadata();
    let current = metadata.current_snapshot_id();
    let mut json = serde_json::to_value(metadata).map_err(invalid)?;
    for s in json.get_mut("snapshots").and_then(|s| s.as_array_mut()).into_iter().flatten() {
        if s.get("snapshot-id").and_then(|v| v.as_i64()) == current {
            s["manifest-list"] = serde_json::Value::String(list.to_string());
        }
    }
    let metadata: TableMetadata = serde_json::from_value(json).map_err(invalid)?;
    crate::sink::overlay::with_metadata(base, metadata)
}

#[cfg(test)]
mod tests {
    use iceberg::spec::ManifestContentType;

    use super::*;

    fn manifest(spec: i32, len: u64, content: ManifestContentType) -> ManifestFile {
        ManifestFile {
            manifest_path: String::new(),
            manifest_length: len as i64,
            partition_spec_id: spec,
            content,
            sequence_number: 1,
            min_sequence_number: 1,
            added_snapshot_id: 1,
            added_files_count: Some(1),
            existing_files_count: Some(0),
            deleted_files_count: Some(0),
            added_rows_count: Some(1),
            existing_rows_count: Some(0),
            deleted_rows_count: Some(0),
            partitions: None,
            key_metadata: None,
            first_row_id: None,
        }
    }

    #[test]
    fn below_the_count_nothing_merges() {
        let list: Vec<_> = (0..MIN_COUNT_TO_MERGE - 1).map(|_| manifest(0, 8_000, ManifestContentType::Data)).collect();
        assert!(plan(&list).is_empty());
    }

    #[test]
    fn at_the_count_small_data_manifests_of_a_spec_merge_up_to_the_target_size() {
        let mut list: Vec<_> =
            (0..MIN_COUNT_TO_MERGE).map(|_| manifest(0, 1 << 20, ManifestContentType::Data)).collect();
        list.push(manifest(0, TARGET_SIZE, ManifestContentType::Data));
        list.push(manifest(0, 1 << 20, ManifestContentType::Deletes));
        list.push(manifest(1, 1 << 20, ManifestContentType::Data));
        let groups = plan(&list);
        assert!(groups.iter().all(|g| g.iter().map(|&i| list[i].manifest_length as u64).sum::<u64>() <= TARGET_SIZE));
        let merged: Vec<usize> = groups.concat();
        assert_eq!(
            merged,
            (0..MIN_COUNT_TO_MERGE).collect::<Vec<_>>(),
            "full-size, delete and other-spec manifests stay"
        );
        assert_eq!(groups.len(), MIN_COUNT_TO_MERGE.div_ceil(8));
    }
}
