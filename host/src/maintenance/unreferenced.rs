//! The files only expired snapshots referenced: their manifest lists, the manifests and data files no kept snapshot reaches, their validator state.
//!
//! A file is deleted only if no kept snapshot reaches it, whatever its status there (a
//! manifest entry marked deleted still names its file: a reader of that snapshot may open
//! it), and only under the table's own location (files a table shares with another table
//! elsewhere, e.g. one registered from the other's metadata, are not its to delete; two tables
//! at one location are not told apart). Paths are compared as the metadata writes them.
//! Reading every kept snapshot's manifests is what a scan costs, so
//! it is done only while candidates remain, stopping as soon as none do: in the common case
//! (appends only) every manifest an expired snapshot listed is still listed by the current
//! snapshot and nothing past the manifest lists is read.

use std::collections::{BTreeMap, HashSet};

use iceberg::spec::{ManifestFile, ManifestList, SnapshotRef};
use iceberg::table::Table;

use crate::error::{Error, Result};
use crate::sink::state::STATE_KEY_PREFIX;

/// What kind of file, in the order they are deleted: what references others goes last, so
/// a deletion cut short leaves only files nothing references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    Data,
    Manifest,
    ManifestList,
    ValidatorState,
}

/// A file to delete; its size where the metadata says it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreferenced {
    pub kind: FileKind,
    pub path: String,
    pub bytes: Option<u64>,
}

/// The files reachable from `expired` (snapshots of `before`) and from none of `kept`
/// (snapshots of `after`, the same table with them expired; `before` itself for a plan),
/// under the table's location, in deletion order.
pub async fn find(
    before: &Table,
    expired: &[SnapshotRef],
    after: &Table,
    kept: &[SnapshotRef],
) -> Result<Vec<Unreferenced>> {
    let own = format!("{}/", after.metadata().location().trim_end_matches('/'));
    let err = |context: String| {
        let table = after.identifier().to_string();
        move |source| Error::Iceberg { table, context, source }
    };

    let kept_lists: HashSet<&str> = kept.iter().map(|s| s.manifest_list()).collect();
    let mut files: BTreeMap<String, Unreferenced> = BTreeMap::new();
    let mut add = |kind, path: &str, bytes| {
        files.entry(path.to_string()).or_insert(Unreferenced { kind, path: path.to_string(), bytes });
    };

    // Manifests the expired snapshots listed, then those the kept ones still list struck off.
    let mut manifests: BTreeMap<String, ManifestFile> = BTreeMap::new();
    for s in expired {
        if !kept_lists.contains(s.manifest_list()) {
            add(FileKind::ManifestList, s.manifest_list(), None);
        }
        let context = format!("reading manifest list {} of expired snapshot {}", s.manifest_list(), s.snapshot_id());
        let list = match before.manifest_list_reader(s).load().await {
            Ok(list) => list,
            // Already gone (a run cut short, another engine's cleanup): nothing of it to find.
            Err(_) if gone(before, s.manifest_list()).await => continue,
            Err(e) => return Err(err(context)(e)),
        };
        for m in list.entries() {
            manifests.entry(m.manifest_path.clone()).or_insert_with(|| m.clone());
        }
    }
    // The current snapshot first: it lists nearly everything the others do.
    let mut order: Vec<&SnapshotRef> = kept.iter().collect();
    let current = after.metadata().current_snapshot_id();
    order.sort_by_key(|s| Some(s.snapshot_id()) != current);
    let mut kept_lists_read: Vec<ManifestList> = Vec::new();
    for s in &order {
        if manifests.is_empty() {
            break;
        }
        let list = read_list(after, s).await?;
        for m in list.entries() {
            manifests.remove(&m.manifest_path);
        }
        kept_lists_read.push(list);
    }

    // Data files the unlisted manifests name, then those a kept manifest names struck off.
    let mut data: BTreeMap<String, u64> = BTreeMap::new();
    for (path, m) in &manifests {
        add(FileKind::Manifest, path, Some(m.manifest_length.max(0) as u64));
        let context = format!("reading manifest {path}");
        let manifest = match m.load_manifest(before.file_io()).await {
            Ok(manifest) => manifest,
            Err(_) if gone(before, path).await => continue,
            Err(e) => return Err(err(context)(e)),
        };
        for entry in manifest.entries() {
            data.insert(entry.file_path().to_string(), entry.file_size_in_bytes());
        }
    }
    if !data.is_empty() {
        for s in order.iter().skip(kept_lists_read.len()) {
            kept_lists_read.push(read_list(after, s).await?);
        }
        let mut seen = HashSet::new();
        for m in kept_lists_read.iter().flat_map(|l| l.entries()) {
            if data.is_empty() {
                break;
            }
            if !seen.insert(m.manifest_path.as_str()) {
                continue;
            }
            let manifest =
                m.load_manifest(after.file_io()).await.map_err(err(format!("reading manifest {}", m.manifest_path)))?;
            for entry in manifest.entries() {
                data.remove(entry.file_path());
            }
        }
    }
    for (path, bytes) in &data {
        add(FileKind::Data, path, Some(*bytes));
    }

    // Validator state named by expired summaries and by no kept one.
    let kept_state: HashSet<String> = kept.iter().flat_map(state_files).collect();
    for s in expired {
        for path in state_files(s) {
            if !kept_state.contains(&path) {
                add(FileKind::ValidatorState, &path, None);
            }
        }
    }

    let mut out: Vec<Unreferenced> = files.into_values().filter(|f| f.path.starts_with(&own)).collect();
    out.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    Ok(out)
}

/// True if `path` is known not to exist (not merely unreadable: then the error stands).
async fn gone(table: &Table, path: &str) -> bool {
    matches!(table.file_io().exists(path).await, Ok(false))
}

async fn read_list(table: &Table, s: &SnapshotRef) -> Result<ManifestList> {
    table.manifest_list_reader(s).load().await.map_err(|source| Error::Iceberg {
        table: table.identifier().to_string(),
        context: format!("reading manifest list {} of snapshot {}", s.manifest_list(), s.snapshot_id()),
        source,
    })
}

/// The validator state files a snapshot's summary names (`k2.state.<topic>`: partition → path).
pub(super) fn state_files(s: &SnapshotRef) -> Vec<String> {
    s.summary()
        .additional_properties
        .iter()
        .filter(|(k, _)| k.starts_with(STATE_KEY_PREFIX))
        .filter_map(|(_, json)| serde_json::from_str::<BTreeMap<String, String>>(json).ok())
        .flat_map(|m| m.into_values())
        .collect()
}
