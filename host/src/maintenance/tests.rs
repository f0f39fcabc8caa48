//! Maintenance on a real SQL catalog and files: what expires, what is deleted, what stays.

use std::collections::BTreeMap;

use iceberg::spec::{
    DataContentType, DataFileBuilder, DataFileFormat, NestedField, PrimitiveType, Schema, Struct, Type,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use super::*;
use crate::config::CatalogConfig;
use crate::sink::commit::{Append, CommitOutcome, append_with_offsets, new_commit_id};
use crate::sink::state::{StateFiles, write_state};

struct Fixture {
    _dir: tempfile::TempDir,
    catalog: TableCatalog,
    table: Table,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "type = \"sql\"\ndatabase = \"{}/c.db\"\nwarehouse = \"{}/wh\"\n",
        dir.path().display(),
        dir.path().display()
    );
    let config: CatalogConfig = toml::from_str(&toml).unwrap();
    let catalog = TableCatalog::open(&config).await.unwrap();
    let field = NestedField::required(1, "qty", Type::Primitive(PrimitiveType::Int));
    let schema = Schema::builder().with_fields(vec![field.into()]).build().unwrap();
    let table = catalog.load_or_create("t", schema, None).await.unwrap();
    Fixture { _dir: dir, catalog, table }
}

fn location(table: &Table) -> String {
    table.metadata().location().trim_end_matches('/').to_string()
}

/// A real file under the table's data folder, and its entry.
async fn data_file(table: &Table, name: &str) -> iceberg::spec::DataFile {
    let path = format!("{}/data/{name}.parquet", location(table));
    table.file_io().new_output(&path).unwrap().write(vec![0u8; 100].into()).await.unwrap();
    DataFileBuilder::default()
        .partition_spec_id(0)
        .content(DataContentType::Data)
        .file_path(path)
        .file_format(DataFileFormat::Parquet)
        .file_size_in_bytes(100)
        .record_count(1)
        .partition(Struct::empty())
        .build()
        .unwrap()
}

/// A k2-ingest commit of one file at offset `n`, with validator state for partition 0 when `state`.
async fn commit(f: &mut Fixture, n: i64, state: bool) {
    let files = vec![data_file(&f.table, &format!("f{n}")).await];
    let mut states = StateFiles::new();
    if state {
        states.insert(0, write_state(&f.table, "topic", 0, b"state").await.unwrap());
    }
    let advanced = BTreeMap::from([(0, n + 1)]);
    let id = new_commit_id();
    let append =
        Append { topic: "topic", advanced: &advanced, states: &states, lost: &[], commit_id: &id, topic_id: None };
    match append_with_offsets(&f.catalog, &f.table, files, &append).await.unwrap() {
        CommitOutcome::Committed(t) => f.table = t,
        CommitOutcome::Conflict => panic!("conflict"),
    }
}

/// Another engine's append: no k2 summary.
async fn foreign_commit(f: &mut Fixture, n: i64) {
    let file = data_file(&f.table, &format!("other{n}")).await;
    let tx = Transaction::new(&f.table);
    let tx = tx.fast_append().add_data_files(vec![file]).apply(tx).unwrap();
    f.table = tx.commit(f.catalog.catalog()).await.unwrap();
}

fn keep(max_snapshots: usize) -> MaintenanceConfig {
    MaintenanceConfig { max_snapshots, ..Default::default() }
}

async fn exists(table: &Table, path: &str) -> bool {
    table.file_io().exists(path).await.unwrap()
}

/// Every file the table's snapshots reach.
async fn reachable(table: &Table) -> Vec<String> {
    let mut out = Vec::new();
    for s in table.metadata().snapshots() {
        out.push(s.manifest_list().to_string());
        let list = table.manifest_list_reader(s).load().await.unwrap();
        for m in list.entries() {
            out.push(m.manifest_path.clone());
            for e in m.load_manifest(table.file_io()).await.unwrap().entries() {
                out.push(e.file_path().to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn past_the_count_snapshots_expire_with_their_manifest_lists_and_state_and_nothing_live_goes() {
    let mut f = fixture().await;
    for n in 0..10 {
        commit(&mut f, n, true).await;
    }
    let lists: Vec<(i64, String)> =
        f.table.metadata().snapshots().map(|s| (s.snapshot_id(), s.manifest_list().to_string())).collect();
    let before = f.table.clone();
    let (after, report) = run(&f.catalog, &before, &keep(3), Plan::default()).await.unwrap();
    let after = after.expect("committed");
    assert_eq!(report.snapshots_expired.len(), 7);
    assert_eq!(after.metadata().snapshots().count(), 3);
    for (id, list) in &lists {
        let kept = after.metadata().snapshot_by_id(*id).is_some();
        assert_eq!(exists(&after, list).await, kept, "manifest list of snapshot {id}");
    }
    for file in reachable(&after).await {
        assert!(exists(&after, &file).await, "{file} is reachable from a kept snapshot but was deleted");
    }
    assert_eq!(
        reachable(&after).await.iter().filter(|p| p.ends_with(".parquet")).count(),
        10,
        "fast appends keep every data file"
    );
    let state: Vec<_> = report.files.iter().filter(|f| f.kind == FileKind::ValidatorState).collect();
    assert_eq!(state.len(), 7, "the state files only expired summaries named");
    let stored = crate::sink::state::read_state(&after, "topic", 0).await.unwrap();
    assert_eq!(stored.as_deref(), Some(&b"state"[..]), "the state in effect stays");
    assert_eq!(crate::sink::offsets::stored_offsets(&after, "topic").unwrap()[&0], 10, "the offsets stay");
    assert_eq!(report.files_not_deleted, 0);
    let heads = retention::History::of(after.metadata()).ref_heads;
    assert_eq!(heads, Some(vec![after.metadata().current_snapshot_id().unwrap()]), "main, read from the metadata");
    assert!(LastRun::of(&after).is_some_and(|r| r.snapshots_expired == 7));
}

#[tokio::test]
async fn a_dry_run_lists_what_the_run_deletes_and_changes_nothing() {
    let mut f = fixture().await;
    for n in 0..6 {
        commit(&mut f, n, n % 2 == 0).await;
    }
    let location = f.table.metadata_location().unwrap().to_string();
    let (none, dry) = run(&f.catalog, &f.table, &keep(2), Plan { dry_run: true, ..Plan::default() }).await.unwrap();
    assert!(none.is_none());
    let reloaded = f.catalog.load("t").await.unwrap().unwrap();
    assert_eq!(reloaded.metadata_location().unwrap(), location, "nothing committed");
    for file in &dry.files {
        assert!(exists(&reloaded, &file.path).await, "{} deleted by a dry run", file.path);
    }
    let (_, real) = run(&f.catalog, &f.table, &keep(2), Plan::default()).await.unwrap();
    assert_eq!(dry.snapshots_expired, real.snapshots_expired);
    assert_eq!(dry.files, real.files);
    assert!(!dry.files.is_empty());
}

#[tokio::test]
async fn another_engines_snapshots_on_top_keep_the_history_back_to_our_offsets() {
    let mut f = fixture().await;
    for n in 0..4 {
        commit(&mut f, n, false).await;
    }
    for n in 0..3 {
        foreign_commit(&mut f, n).await;
    }
    let (after, report) = run(&f.catalog, &f.table, &keep(1), Plan::default()).await.unwrap();
    let after = after.unwrap();
    assert_eq!(report.snapshots_expired.len(), 3, "our first three; our fourth and the three on top stay");
    assert_eq!(crate::sink::offsets::stored_offsets(&after, "topic").unwrap()[&0], 4);
}

#[tokio::test]
async fn a_commit_of_another_writer_in_between_makes_it_do_nothing() {
    let mut f = fixture().await;
    for n in 0..5 {
        commit(&mut f, n, false).await;
    }
    let stale = f.table.clone();
    commit(&mut f, 5, false).await;
    let (after, report) = run(&f.catalog, &stale, &keep(1), Plan::default()).await.unwrap();
    assert!(after.is_none());
    assert!(report.skipped.as_deref().is_some_and(|s| s.contains("another writer")), "{report:?}");
    assert_eq!(f.catalog.load("t").await.unwrap().unwrap().metadata().snapshots().count(), 6);
}

#[tokio::test]
async fn gc_disabled_and_foreign_tables_are_left_alone() {
    let mut f = fixture().await;
    foreign_commit(&mut f, 0).await;
    foreign_commit(&mut f, 1).await;
    let (_, report) = run(&f.catalog, &f.table, &keep(1), Plan::default()).await.unwrap();
    assert!(report.skipped.as_deref().is_some_and(|s| s.contains("offsets")), "{report:?}");
    commit(&mut f, 0, false).await;
    let tx = Transaction::new(&f.table);
    let tx = tx.update_table_properties().set("gc.enabled".into(), "false".into()).apply(tx).unwrap();
    f.table = tx.commit(f.catalog.catalog()).await.unwrap();
    let (_, report) = run(&f.catalog, &f.table, &keep(1), Plan::default()).await.unwrap();
    assert!(report.skipped.as_deref().is_some_and(|s| s.contains("gc.enabled")), "{report:?}");
}

/// The live data files the current snapshot plans, and the manifests it lists.
async fn plan_of(table: &Table) -> (Vec<String>, usize) {
    let s = table.metadata().current_snapshot().unwrap();
    let list = table.manifest_list_reader(s).load().await.unwrap();
    let mut files = Vec::new();
    for m in list.entries() {
        for e in m.load_manifest(table.file_io()).await.unwrap().entries() {
            if e.is_alive() {
                files.push(e.file_path().to_string());
            }
        }
    }
    files.sort();
    (files, list.entries().len())
}

#[tokio::test]
async fn appends_merge_manifests_past_the_count_and_every_file_stays_planned_at_every_snapshot() {
    use crate::sink::manifest_merge::MIN_COUNT_TO_MERGE;
    let mut f = fixture().await;
    let commits = MIN_COUNT_TO_MERGE as i64 + 20;
    let mut planned_at = Vec::new();
    for n in 0..commits {
        commit(&mut f, n, false).await;
        planned_at.push((f.table.metadata().current_snapshot_id().unwrap(), n as usize + 1));
    }
    let (files, manifests) = plan_of(&f.table).await;
    assert_eq!(files.len(), commits as usize, "every data file once");
    assert!(manifests <= 21, "{manifests} manifests after {commits} commits: merged at {MIN_COUNT_TO_MERGE}");
    // Every snapshot still plans exactly the files appended up to it (time travel).
    for (id, count) in planned_at.iter().step_by(17) {
        let s = f.table.metadata().snapshot_by_id(*id).unwrap();
        let list = f.table.manifest_list_reader(s).load().await.unwrap();
        let mut n = 0;
        for m in list.entries() {
            n += m.load_manifest(f.table.file_io()).await.unwrap().entries().iter().filter(|e| e.is_alive()).count();
        }
        assert_eq!(n, *count, "snapshot {id}");
    }
    let metadata_dir = std::path::PathBuf::from(location(&f.table).trim_start_matches("file://")).join("metadata");
    let views = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("k2-view-"));
    assert_eq!(views.count(), 0, "the merge views' manifest lists are deleted");

    // Expiring the snapshots before the merge deletes the small manifests they listed, never a data file.
    let (after, report) = run(&f.catalog, &f.table, &keep(5), Plan::default()).await.unwrap();
    let after = after.unwrap();
    assert!(report.files.iter().any(|f| f.kind == FileKind::Manifest), "the merged-away manifests go");
    assert!(!report.files.iter().any(|f| f.kind == FileKind::Data), "no data file goes");
    for file in reachable(&after).await {
        assert!(exists(&after, &file).await, "{file}");
    }
    assert_eq!(plan_of(&after).await.0, files);
}

/// Files a crash leaves: a data file, a manifest, a metadata file and validator state never
/// committed; and one outside the swept folders.
async fn leftovers(table: &Table) -> (Vec<String>, String) {
    let at = location(table);
    let swept = vec![
        format!("{at}/data/never-committed.parquet"),
        format!("{at}/metadata/never-committed-m0.avro"),
        format!("{at}/metadata/00099-never-committed.metadata.json"),
        format!("{at}/k2-state/topic-p0-never-committed.bin"),
    ];
    let outside = format!("{at}/notes/readme.txt");
    for path in swept.iter().chain([&outside]) {
        table.file_io().new_output(path).unwrap().write(vec![1u8; 7].into()).await.unwrap();
    }
    (swept, outside)
}

/// Every file the table references, including its metadata files.
async fn referenced_files(table: &Table) -> Vec<String> {
    let mut files = reachable(table).await;
    files.extend(table.metadata_location().map(str::to_string));
    files.extend(table.metadata().metadata_log().iter().map(|m| m.metadata_file.clone()));
    for s in table.metadata().snapshots() {
        files.extend(super::unreferenced::state_files(s));
    }
    files
}

const HOUR_MS: u64 = 3_600_000;

#[tokio::test]
async fn crash_leftovers_older_than_the_window_are_swept_and_nothing_referenced_goes() {
    let mut f = fixture().await;
    for n in 0..4 {
        commit(&mut f, n, true).await;
    }
    let (swept, outside) = leftovers(&f.table).await;
    let live = referenced_files(&f.table).await;
    assert!(live.len() > 12 && f.table.metadata().metadata_log().len() >= 3, "{live:?}");
    let now = chrono::Utc::now().timestamp_millis();

    // Within the window (a writer's files waiting for its commit): nothing goes.
    let young = orphans::sweep(&f.table, HOUR_MS, now, false).await.unwrap().unwrap();
    assert!(young.orphans.is_empty(), "{young:?}");
    assert_eq!(young.recent, 4);

    // A day later, the dry run lists exactly what the sweep then deletes.
    let later = now + 24 * HOUR_MS as i64;
    let dry = orphans::sweep(&f.table, HOUR_MS, later, true).await.unwrap().unwrap();
    let real = orphans::sweep(&f.table, HOUR_MS, later, false).await.unwrap().unwrap();
    assert_eq!(dry.orphans, real.orphans);
    let mut gone: Vec<String> = real.orphans.iter().map(|o| o.path.clone()).collect();
    gone.sort();
    let mut expected = swept.clone();
    expected.sort();
    assert_eq!(gone, expected);
    assert_eq!(real.bytes_deleted, 28);
    for path in &swept {
        assert!(!exists(&f.table, path).await, "{path}");
    }
    assert!(exists(&f.table, &outside).await, "a file outside data/, metadata/ and k2-state/ is not judged");
    for path in &live {
        assert!(exists(&f.table, path).await, "{path} is referenced and must stay");
    }
    let reloaded = f.catalog.load("t").await.unwrap().unwrap();
    assert_eq!(plan_of(&reloaded).await.0.len(), 4);
}

#[tokio::test]
async fn a_run_sweeps_only_when_asked_and_only_tables_it_may() {
    let mut f = fixture().await;
    foreign_commit(&mut f, 0).await;
    let config = MaintenanceConfig { orphan_min_age_ms: 1, ..keep(10) };
    let sweep = Plan { sweep_orphans: true, ..Plan::default() };
    let (_, report) = run(&f.catalog, &f.table, &config, sweep).await.unwrap();
    assert!(report.orphans_skipped.as_deref().is_some_and(|s| s.contains("offsets")), "{report:?}");

    commit(&mut f, 0, true).await;
    let (swept, _) = leftovers(&f.table).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (_, report) = run(&f.catalog, &f.table, &config, Plan::default()).await.unwrap();
    assert!(report.orphans.is_none() && report.orphans_skipped.is_none(), "not asked: {report:?}");
    let (_, report) = run(&f.catalog, &f.table, &config, sweep).await.unwrap();
    assert_eq!(report.orphans.as_ref().unwrap().orphans.len(), swept.len(), "{report:?}");
    assert_eq!(report.files_deleted(), swept.len() as u64);

    let tx = Transaction::new(&f.table);
    let tx = tx.update_table_properties().set("gc.enabled".into(), "false".into()).apply(tx).unwrap();
    f.table = tx.commit(f.catalog.catalog()).await.unwrap();
    leftovers(&f.table).await;
    let (_, report) = run(&f.catalog, &f.table, &config, sweep).await.unwrap();
    assert!(report.orphans_skipped.as_deref().is_some_and(|s| s.contains("gc.enabled")), "{report:?}");
}

#[tokio::test]
async fn folders_outside_the_location_are_not_swept_and_a_table_inside_the_data_folder_stops_it() {
    let mut f = fixture().await;
    commit(&mut f, 0, false).await;
    let at = location(&f.table);
    assert_eq!(
        orphans::Folders::of(f.table.metadata()).swept,
        [format!("{at}/data"), format!("{at}/metadata"), format!("{at}/k2-state")]
    );
    let tx = Transaction::new(&f.table);
    let tx = tx
        .update_table_properties()
        .set("write.data.path".into(), "s3://elsewhere/data".into())
        .set("write.metadata.path".into(), format!("{at}/meta/"))
        .apply(tx)
        .unwrap();
    let moved = tx.commit(f.catalog.catalog()).await.unwrap();
    let folders = orphans::Folders::of(moved.metadata());
    assert_eq!(folders.swept, [format!("{at}/metadata"), format!("{at}/meta"), format!("{at}/k2-state")]);

    let inner = format!("{at}/data/inner/metadata/00000-x.metadata.json");
    f.table.file_io().new_output(&inner).unwrap().write(vec![1u8; 7].into()).await.unwrap();
    let later = chrono::Utc::now().timestamp_millis() + 24 * HOUR_MS as i64;
    let why = orphans::sweep(&f.table, HOUR_MS, later, false).await.unwrap().unwrap_err();
    assert!(why.contains(&inner), "{why}");
    assert!(exists(&f.table, &inner).await);
}

#[tokio::test]
async fn a_file_the_metadata_names_with_a_double_slash_is_not_an_orphan() {
    // iceberg-rust joins `write.data.path` as given: a trailing slash there names data files
    // `data//x.parquet`, which the store (and its listing) calls `data/x.parquet`.
    let mut f = fixture().await;
    commit(&mut f, 0, false).await;
    let path = format!("{}/data//double.parquet", location(&f.table));
    f.table.file_io().new_output(&path).unwrap().write(vec![0u8; 100].into()).await.unwrap();
    let file = DataFileBuilder::default()
        .partition_spec_id(0)
        .content(DataContentType::Data)
        .file_path(path.clone())
        .file_format(DataFileFormat::Parquet)
        .file_size_in_bytes(100)
        .record_count(1)
        .partition(Struct::empty())
        .build()
        .unwrap();
    let advanced = BTreeMap::from([(0, 2)]);
    let id = new_commit_id();
    let states = StateFiles::new();
    let append =
        Append { topic: "topic", advanced: &advanced, states: &states, lost: &[], commit_id: &id, topic_id: None };
    let CommitOutcome::Committed(t) = append_with_offsets(&f.catalog, &f.table, vec![file], &append).await.unwrap()
    else {
        panic!("conflict")
    };
    let later = chrono::Utc::now().timestamp_millis() + 24 * HOUR_MS as i64;
    let sweep = orphans::sweep(&t, HOUR_MS, later, false).await.unwrap().unwrap();
    assert!(sweep.orphans.is_empty(), "{sweep:?}");
    assert!(exists(&t, &path).await);
}

#[tokio::test]
async fn a_data_path_at_the_location_lists_the_location_once() {
    let mut f = fixture().await;
    commit(&mut f, 0, true).await;
    let at = location(&f.table);
    let tx = Transaction::new(&f.table);
    let tx = tx.update_table_properties().set("write.data.path".into(), format!("{at}/")).apply(tx).unwrap();
    f.table = tx.commit(f.catalog.catalog()).await.unwrap();
    assert_eq!(orphans::Folders::of(f.table.metadata()).swept, vec![at.clone()]);
    let (swept, outside) = leftovers(&f.table).await;
    let later = chrono::Utc::now().timestamp_millis() + 24 * HOUR_MS as i64;
    let dry = orphans::sweep(&f.table, HOUR_MS, later, true).await.unwrap().unwrap();
    let mut found: Vec<&str> = dry.orphans.iter().map(|o| o.path.as_str()).collect();
    found.sort();
    let mut expected: Vec<&str> = swept.iter().chain([&outside]).map(String::as_str).collect();
    expected.sort();
    assert_eq!(found, expected, "each file once; with data at the location, the whole location is the table's");
}

#[tokio::test]
async fn a_stale_copy_of_the_table_never_takes_newer_commits_files_for_orphans() {
    // An events table this instance has not written for days, while another instance has.
    let mut f = fixture().await;
    commit(&mut f, 0, true).await;
    let stale = f.table.clone();
    for n in 1..4 {
        commit(&mut f, n, true).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let config = MaintenanceConfig { orphan_min_age_ms: 1, ..keep(100) };
    let plan = Plan { sweep_orphans: true, ..Plan::default() };
    let (_, report) = run(&f.catalog, &stale, &config, plan).await.unwrap();
    assert!(report.orphans.as_ref().is_some_and(|o| o.orphans.is_empty()), "{report:?}");
    for path in referenced_files(&f.table).await {
        assert!(exists(&f.table, &path).await, "{path} of a newer commit must stay");
    }
}
