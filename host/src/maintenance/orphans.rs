//! Orphan files: what a crash or an abandoned commit left under a table's folders, which nothing the table holds references, deleted once older than a safety window.
//!
//! A file is an orphan only if all of these hold:
//! - it lies under the table's `data/` (or `write.data.path`), `metadata/` (or
//!   `write.metadata.path`) or `k2-state/` folder, each only where it is under the table's
//!   location (other files there, and other folders, are not the table's to judge);
//! - no snapshot the table keeps references it in any way: manifest list, manifest, data or
//!   delete file in any status, statistics file, validator state named in a summary; and it is
//!   neither the current metadata file nor one in the metadata log;
//! - it was last modified before the window: a file another writer wrote and has not yet
//!   committed is younger than that (the window must outlast the longest wait for a commit).
//!
//! Paths are compared in one normal form (`s3a://`, `s3n://` as `s3://`; `file:/x`,
//! `file:///x` as `/x`; repeated slashes as one, as the object store names the file), so a
//! table another engine wrote with another spelling of its location is read right. Any other
//! mismatch fails closed: a sweep that does not find, among the files it listed, every live
//! file the table references under those folders deletes nothing. Neither is a table whose
//! data folder holds another table's metadata (one table located inside another's data).
//! A sweep deletes at most [`MAX_ORPHANS_PER_RUN`] files, so a backlog never holds the
//! consume loop for long.

use std::collections::{BTreeMap, HashSet};

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use serde::Serialize;

use super::listing::{self, Listed};
use super::unreferenced::state_files;
use crate::error::{Error, Result};
use crate::failpoint;

/// A file the sweep deletes (or, dry, would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub path: String,
    pub bytes: u64,
    pub modified_ms: Option<i64>,
}

/// Orphans one sweep deletes at most (in path order); the rest wait for the next.
pub const MAX_ORPHANS_PER_RUN: usize = 10_000;

/// How long one sweep goes on deleting (one request a file): it runs between two commits, and
/// the consumer must poll again well within `max.poll.interval.ms` (5 min by default).
const DELETE_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// What one sweep found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sweep {
    /// Orphans older than the window: deleted (dry: to delete).
    pub orphans: Vec<Orphan>,
    /// Of those, the ones whose deletion failed.
    pub not_deleted: u64,
    pub bytes_deleted: u64,
    /// Orphans past [`MAX_ORPHANS_PER_RUN`] or the time budget, left for the next sweep.
    pub left_for_next: u64,
    pub left_for_next_bytes: u64,
    /// Unreferenced files younger than the window, left for a later sweep (or a commit).
    pub recent: u64,
    pub recent_bytes: u64,
}

impl Sweep {
    fn leave_for_next(&mut self, rest: Vec<Orphan>) {
        self.left_for_next += rest.len() as u64;
        self.left_for_next_bytes += rest.iter().map(|o| o.bytes).sum::<u64>();
    }
}

/// Every path `table` references, in normal form.
#[derive(Debug, Default)]
pub struct Referenced {
    all: HashSet<String>,
    /// The file names of `all`.
    names: HashSet<String>,
    /// The ones that must exist: the current metadata file, every manifest list and manifest,
    /// every live data and delete file. (A file only a deleted entry names may be gone: another
    /// engine's expiry deletes those.)
    required: HashSet<String>,
}

impl Referenced {
    /// Reads every manifest list and manifest of every snapshot the table keeps: what a scan
    /// of its whole history reads.
    pub async fn of(table: &Table) -> Result<Self> {
        let metadata = table.metadata();
        let err = |context: String| {
            let table = table.identifier().to_string();
            move |source| Error::Iceberg { table, context, source }
        };
        let mut paths = Referenced::default();
        paths.insert_all(table.metadata_location());
        paths.require(table.metadata_location());
        paths.insert_all(metadata.metadata_log().iter().map(|m| m.metadata_file.as_str()));
        paths.insert_all(metadata.statistics_iter().map(|s| s.statistics_path.as_str()));
        paths.insert_all(metadata.partition_statistics_iter().map(|s| s.statistics_path.as_str()));
        let mut manifests = BTreeMap::new();
        for s in metadata.snapshots() {
            paths.insert_all(Some(s.manifest_list()));
            paths.require(Some(s.manifest_list()));
            paths.insert_all(state_files(s).iter().map(String::as_str));
            let list = table.manifest_list_reader(s).load().await.map_err(err(format!(
                "reading manifest list {} of snapshot {}",
                s.manifest_list(),
                s.snapshot_id()
            )))?;
            for m in list.entries() {
                manifests.entry(m.manifest_path.clone()).or_insert_with(|| m.clone());
            }
        }
        for (path, m) in &manifests {
            paths.insert_all(Some(path.as_str()));
            paths.require(Some(path.as_str()));
            let manifest = m.load_manifest(table.file_io()).await.map_err(err(format!("reading manifest {path}")))?;
            paths.insert_all(manifest.entries().iter().map(|e| e.file_path()));
            paths.require(manifest.entries().iter().filter(|e| e.is_alive()).map(|e| e.file_path()));
        }
        Ok(paths)
    }

    fn insert_all<'a>(&mut self, paths: impl IntoIterator<Item = &'a str>) {
        for p in paths {
            self.names.insert(p.rsplit('/').next().unwrap_or_default().to_string());
            self.all.insert(normal(p));
        }
    }

    fn require<'a>(&mut self, paths: impl IntoIterator<Item = &'a str>) {
        self.required.extend(paths.into_iter().map(normal));
    }
}

/// Paths both referenced and required (tests).
impl<'a> FromIterator<&'a str> for Referenced {
    fn from_iter<I: IntoIterator<Item = &'a str>>(paths: I) -> Self {
        let paths: Vec<&str> = paths.into_iter().collect();
        let mut r = Referenced::default();
        r.insert_all(paths.iter().copied());
        r.require(paths.iter().copied());
        r
    }
}

/// One spelling per file: the S3 schemes as `s3://`, local URLs as plain absolute paths, and
/// repeated slashes as one (an object store, and opendal, address `a//b` as `a/b`).
pub fn normal(path: &str) -> String {
    let (prefix, rest) = match path.split_once("://") {
        Some((scheme, rest)) if scheme != "file" => {
            let scheme = if matches!(scheme, "s3a" | "s3n") { "s3" } else { scheme };
            let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
            (format!("{scheme}://{authority}/"), key)
        }
        _ => match path.strip_prefix("file:") {
            Some(rest) => ("/".to_string(), rest),
            None if path.starts_with('/') => ("/".to_string(), path),
            None => (String::new(), path),
        },
    };
    let key: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    format!("{prefix}{}", key.join("/"))
}

/// Where a table keeps its files, as its location and properties say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    /// The metadata folders, swept or not: a metadata file anywhere else is another table's.
    /// (`<location>/metadata`, where iceberg-rust writes whatever the property says, and
    /// `write.metadata.path` where other engines honour it.)
    pub metadata: Vec<String>,
    /// The data, metadata and validator-state folders that lie under the table's location.
    pub swept: Vec<String>,
}

impl Folders {
    pub fn of(metadata: &TableMetadata) -> Self {
        let location = metadata.location().trim_end_matches('/');
        let own = format!("{}/", normal(location));
        let props = metadata.properties();
        let folder = |key: &str, default: &str| {
            props.get(key).map_or_else(|| format!("{location}/{default}"), |f| f.trim_end_matches('/').to_string())
        };
        // iceberg-rust's data location: write.data.path, else write.folder-storage.path.
        let data = match props.get("write.data.path").or_else(|| props.get("write.folder-storage.path")) {
            Some(f) => f.trim_end_matches('/').to_string(),
            None => format!("{location}/data"),
        };
        let mut metadata = vec![format!("{location}/metadata"), folder("write.metadata.path", "metadata")];
        metadata.dedup();
        let key = |f: &String| format!("{}/", normal(f));
        let under_location: Vec<String> = [data]
            .into_iter()
            .chain(metadata.iter().cloned())
            .chain([format!("{location}/k2-state")])
            .filter(|f| key(f).starts_with(&own))
            .collect();
        // A folder inside another (a data path at the location itself) is listed with it, once.
        let swept = under_location
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                !under_location
                    .iter()
                    .enumerate()
                    .any(|(j, g)| j != *i && key(f).starts_with(&key(g)) && (key(f) != key(g) || j < *i))
            })
            .map(|(_, f)| f.clone())
            .collect();
        Self { metadata, swept }
    }
}

/// The listed files that are orphans at `cutoff_ms` (last modified before it), and the count
/// and bytes of the unreferenced ones too young to judge. Refused (the reason) when a listed
/// file outside the metadata folder is a table's metadata file (another table lives inside
/// this one's folders), or when a file the table requires under the folders swept is not
/// among the listed ones (its path is spelled otherwise than the store lists it, or it is gone:
/// either way the listing cannot be trusted to tell orphans).
pub fn select(
    listed: Vec<Listed>,
    referenced: &Referenced,
    folders: &Folders,
    cutoff_ms: i64,
) -> std::result::Result<(Vec<Orphan>, u64, u64), String> {
    let metadata_folders: Vec<String> = folders.metadata.iter().map(|f| format!("{}/", normal(f))).collect();
    let swept: Vec<String> = folders.swept.iter().map(|f| format!("{}/", normal(f))).collect();
    let keys: Vec<String> = listed.iter().map(|f| normal(&f.path)).collect();
    let seen: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let mut unlisted =
        referenced.required.iter().filter(|r| swept.iter().any(|f| r.starts_with(f)) && !seen.contains(r.as_str()));
    if let Some(missing) = unlisted.next() {
        return Err(format!(
            "{missing} is referenced but was not listed (spelled otherwise than the store lists it, or gone); \
             nothing is swept until every referenced file is found"
        ));
    }
    let mut orphans = Vec::new();
    let (mut recent, mut recent_bytes) = (0, 0);
    for (f, key) in listed.into_iter().zip(&keys) {
        let name = f.path.rsplit('/').next().unwrap_or_default();
        if name.ends_with(".metadata.json") && !metadata_folders.iter().any(|m| key.starts_with(m)) {
            return Err(format!("{} is a table's metadata file outside this table's metadata folder", f.path));
        }
        // A Hadoop-style catalog's pointer to the current metadata file, never referenced.
        if name == "version-hint.text" || referenced.all.contains(key) {
            continue;
        }
        // The name of a referenced file (they carry UUIDs) under another spelling of its path:
        // a mismatch this module does not know, never taken for an orphan.
        if referenced.names.contains(name) {
            continue;
        }
        if f.modified_ms.is_some_and(|m| m < cutoff_ms) {
            orphans.push(Orphan { path: f.path, bytes: f.bytes, modified_ms: f.modified_ms });
        } else {
            recent += 1;
            recent_bytes += f.bytes;
        }
    }
    orphans.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((orphans, recent, recent_bytes))
}

/// Finds `table`'s orphans older than `min_age_ms` at `now_ms` and, unless `dry_run`, deletes
/// them. `Err` for what could not be read; `Ok(Err(why))` when the table is not swept.
pub async fn sweep(
    table: &Table,
    min_age_ms: u64,
    now_ms: i64,
    dry_run: bool,
) -> Result<std::result::Result<Sweep, String>> {
    let referenced = Referenced::of(table).await?;
    let props = table.file_io().config().props().clone();
    let folders = Folders::of(table.metadata());
    let mut listed = Vec::new();
    for folder in &folders.swept {
        listed.extend(listing::list(folder, &props).await?);
    }
    let cutoff = now_ms.saturating_sub(i64::try_from(min_age_ms).unwrap_or(i64::MAX));
    let (mut orphans, recent, recent_bytes) = match select(listed, &referenced, &folders, cutoff) {
        Ok(selected) => selected,
        Err(why) => return Ok(Err(why)),
    };
    let rest = orphans.split_off(orphans.len().min(MAX_ORPHANS_PER_RUN));
    let mut sweep = Sweep { orphans, recent, recent_bytes, ..Default::default() };
    sweep.leave_for_next(rest);
    if dry_run {
        return Ok(Ok(sweep));
    }
    let started = std::time::Instant::now();
    let mut deleted_any = false;
    for (i, orphan) in sweep.orphans.iter().enumerate() {
        if started.elapsed() > DELETE_BUDGET {
            let rest = sweep.orphans.split_off(i);
            sweep.leave_for_next(rest);
            break;
        }
        if let Err(e) = table.file_io().delete(&orphan.path).await {
            sweep.not_deleted += 1;
            tracing::debug!(table = %table.identifier(), file = %orphan.path, error = %e, "could not delete an orphan file");
            continue;
        }
        sweep.bytes_deleted += orphan.bytes;
        if !std::mem::replace(&mut deleted_any, true) {
            failpoint::hit("after-first-orphan-delete");
        }
    }
    Ok(Ok(sweep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(path: &str, modified_ms: Option<i64>) -> Listed {
        Listed { path: path.into(), bytes: 10, modified_ms }
    }

    #[test]
    fn spellings_of_one_file_are_one_path() {
        assert_eq!(normal("s3a://b/t/x"), "s3://b/t/x");
        assert_eq!(normal("s3n://b/t/x"), "s3://b/t/x");
        assert_eq!(normal("file:///w/t/x"), "/w/t/x");
        assert_eq!(normal("file:/w/t/x"), "/w/t/x");
        assert_eq!(normal("/w/t/x"), "/w/t/x");
        assert_eq!(normal("s3://b/t/x"), "s3://b/t/x");
        assert_eq!(normal("s3://b/t/data//x"), "s3://b/t/data/x", "as the store names it");
        assert_eq!(normal("file:///w//t/x"), "/w/t/x");
    }

    #[test]
    fn only_old_unreferenced_files_are_orphans() {
        let referenced: Referenced =
            ["s3a://b/t/data/live.parquet", "s3://b/t/metadata/v2.metadata.json"].into_iter().collect();
        let files = vec![
            listed("s3://b/t/data/live.parquet", Some(0)),
            listed("s3://b/t/data/left.parquet", Some(0)),
            listed("s3://b/t/data/in-flight.parquet", Some(100)),
            listed("s3://b/t/data/unknown-age.parquet", None),
            listed("s3://b/t/metadata/v2.metadata.json", Some(0)),
            listed("s3://b/t/metadata/v3.metadata.json", Some(0)),
            listed("s3://b/t/metadata/version-hint.text", Some(0)),
        ];
        let (orphans, recent, recent_bytes) = select(files, &referenced, &folders("s3://b/t"), 50).unwrap();
        let paths: Vec<&str> = orphans.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["s3://b/t/data/left.parquet", "s3://b/t/metadata/v3.metadata.json"]);
        assert_eq!((recent, recent_bytes), (2, 20), "young and unknown-age files are left");
    }

    #[test]
    fn another_tables_metadata_inside_the_data_folder_stops_the_sweep() {
        let files =
            vec![listed("/w/t/data/x.parquet", Some(0)), listed("/w/t/data/inner/metadata/v1.metadata.json", Some(0))];
        let why = select(files, &Referenced::default(), &folders("/w/t"), 50).unwrap_err();
        assert!(why.contains("/w/t/data/inner/metadata/v1.metadata.json"), "{why}");
    }

    #[test]
    fn a_referenced_file_the_listing_does_not_show_stops_the_sweep() {
        // The metadata names `data/x%20y.parquet`, the store lists `data/x y.parquet`: a
        // spelling this module does not know. Nothing may be judged an orphan then.
        let referenced: Referenced = ["/w/t/data/x%20y.parquet"].into_iter().collect();
        let files = vec![listed("/w/t/data/x y.parquet", Some(0)), listed("/w/t/data/left.parquet", Some(0))];
        let why = select(files, &referenced, &folders("/w/t"), 50).unwrap_err();
        assert!(why.contains("/w/t/data/x%20y.parquet") && why.contains("not listed"), "{why}");
        // A referenced file outside the swept folders is not looked for.
        let referenced: Referenced = ["s3://other/data/x.parquet"].into_iter().collect();
        assert!(select(vec![], &referenced, &folders("/w/t"), 50).is_ok());
    }

    #[test]
    fn a_file_named_as_a_referenced_one_under_another_spelling_is_never_an_orphan() {
        // Say a metadata-log entry spelled `hdfs-like://…/00001-ab.metadata.json` names what the
        // store lists as `/w/t/metadata/00001-ab.metadata.json`: not required, so not checked,
        // but its name gives it away.
        let mut referenced = Referenced::default();
        referenced.insert_all(["weird://host/w/t/metadata/00001-ab.metadata.json"]);
        let files =
            vec![listed("/w/t/metadata/00001-ab.metadata.json", Some(0)), listed("/w/t/data/left.parquet", Some(0))];
        let (orphans, _, _) = select(files, &referenced, &folders("/w/t"), 50).unwrap();
        let paths: Vec<&str> = orphans.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["/w/t/data/left.parquet"]);
    }

    fn folders(location: &str) -> Folders {
        Folders {
            metadata: vec![format!("{location}/metadata")],
            swept: ["data", "metadata", "k2-state"].iter().map(|f| format!("{location}/{f}")).collect(),
        }
    }
}
