"""Maintenance during ingest: old snapshots expire, only unreferenced files go, every reader agrees, crashes lose nothing."""

import collections
import json
import pathlib
import time

import pytest

from k2 import read_manifest
from test_sequence_state import event_rows, expected_rows

COUNT = 6_000
KEEP = 3
# A commit about every 1,000 records (a batch), maintenance after every commit, 3 snapshots kept.
COMMIT = {"max_records": 500}
MAINTENANCE = {"interval_ms": 0, "max_snapshots": KEEP}


def local(path: str) -> pathlib.Path:
    return pathlib.Path(path.removeprefix("file://"))


def produce(k2, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    k2.produce(k2.trades, COUNT, manifest=manifest, partitions=2, symbols=8, seed=31, gaps=60, duplicates=40)
    return read_manifest(manifest)


def reachable(table) -> set[str]:
    """Every file a kept snapshot of `table` reaches: manifest lists, manifests, data files."""
    io, files = table.io, set()
    for s in table.snapshots():
        files.add(s.manifest_list)
        for m in s.manifests(io):
            files.add(m.manifest_path)
            files.update(e.data_file.file_path for e in m.fetch_manifest_entry(io, discard_deleted=False))
    return files


def state_files(table) -> set[str]:
    named = set()
    for s in table.snapshots():
        for key, value in s.summary.additional_properties.items():
            if key.startswith("k2.state."):
                named.update(json.loads(value).values())
    return named


def assert_healthy(k2, name: str):
    """Every reachable file exists; no manifest list or validator state outlives its snapshots."""
    table = k2.table(name)
    missing = [f for f in reachable(table) if not local(f).exists()]
    assert not missing, f"{name}: {len(missing)} files a kept snapshot reaches are gone, e.g. {missing[:2]}"
    location = local(table.location())
    lists = {str(p) for p in (location / "metadata").glob("snap-*.avro")}
    kept_lists = {str(local(s.manifest_list)) for s in table.snapshots()}
    return table, lists - kept_lists, {str(p) for p in (location / "k2-state").glob("*")} - {str(local(f)) for f in state_files(table)}


def duckdb_keys(table) -> list[tuple[int, int]]:
    """The table as DuckDB's iceberg extension reads it from its metadata file."""
    import duckdb
    import duckdb_ext

    with duckdb_ext.init(duckdb.connect()) as con:
        rows = con.execute(
            "SELECT _kafka_partition, _kafka_offset FROM iceberg_scan(?)", [str(local(table.metadata_location))]
        ).fetchall()
    return [tuple(r) for r in rows]


def assert_exact(k2, records):
    keys = k2.table_keys("trades")
    assert len(keys) == COUNT and set(keys) == {(m["partition"], m["offset"]) for m in records}
    events = event_rows(k2)
    assert len(events) == len(set(events)) and set(events) == expected_rows(records)


def test_maintenance_between_commits_bounds_history_and_every_reader_agrees(k2, tmp_path):
    records = produce(k2, tmp_path)
    # A commit every 40 records: 150 commits, past the count at which appends merge manifests.
    config = k2.config_with("maintained.toml", commit={"max_records": 40}, pipeline={"batch_records": 40},
                            maintenance=MAINTENANCE)
    summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)

    assert summary["commits"] >= 150
    assert summary["maintenance_runs"] == 2 * summary["commits"], "the data table and the events table, after each commit"
    assert summary["snapshots_expired"] > 0 and summary["files_deleted"] > 0
    assert_exact(k2, records)
    for name in ("trades", "trades_events"):
        table, stray_lists, stray_state = assert_healthy(k2, name)
        assert len(list(table.snapshots())) <= KEEP, name
        assert not stray_lists, f"{name}: manifest lists of expired snapshots remain: {sorted(stray_lists)[:2]}"
        assert not stray_state, f"{name}: validator state of expired snapshots remains: {sorted(stray_state)[:2]}"
    table = k2.table("trades")
    manifests = table.current_snapshot().manifests(table.io)
    assert len(manifests) < 100, f"{len(manifests)} manifests after {summary['commits']} commits: none merged"
    assert sorted(duckdb_keys(table)) == sorted(k2.table_keys("trades")), "DuckDB reads what pyiceberg reads"
    # Time travel to the oldest kept snapshot still reads, from both.
    oldest = min(table.snapshots(), key=lambda s: s.sequence_number)
    assert table.scan(snapshot_id=oldest.snapshot_id).to_arrow().num_rows <= COUNT

    [status] = k2.run_json("status", "--config", str(config), "--topic", k2.trades)["topics"]
    health = status["health"]
    assert health["snapshots"] == len(list(table.snapshots())) and health["manifests"] == len(manifests)
    assert health["data_files"] == len(table.inspect.files()) and health["small_files"] == health["data_files"]
    assert health["last_maintenance_expired"] >= 1 and health["last_maintenance_at"]

    # The next run resumes from the kept offsets and validator state: nothing again, nothing more.
    again = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    assert again["consumed"] == 0
    assert_exact(k2, records)


@pytest.mark.parametrize("point", ["after-expiry-commit", "after-first-unreferenced-delete"])
def test_kill_during_maintenance_then_restart_is_exact_and_deletes_nothing_live(k2, tmp_path, point):
    records = produce(k2, tmp_path)
    config = k2.config_with("maintained.toml", commit=COMMIT, maintenance=MAINTENANCE)
    crashed = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False,
                     env={"K2_FAILPOINT": point})
    assert crashed.returncode != 0 and f"failpoint {point}" in crashed.stderr, crashed.stderr[-2000:]
    assert_healthy(k2, "trades")

    k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    assert_exact(k2, records)
    for name in ("trades", "trades_events"):
        assert_healthy(k2, name)
    assert sorted(duckdb_keys(k2.table("trades"))) == sorted(k2.table_keys("trades"))


def test_maintain_command_dry_run_lists_exactly_what_the_run_then_deletes(k2, tmp_path):
    records = produce(k2, tmp_path)
    ingest = k2.config_with("no-maintenance.toml", commit=COMMIT, maintenance={"enabled": False})
    k2.run_json("consume", "--config", str(ingest), "--topic", k2.trades)
    snapshots = len(list(k2.table("trades").snapshots()))
    assert snapshots >= 6, "no maintenance during the run"

    config = k2.config_with("maintain.toml", maintenance={"max_snapshots": KEEP})
    args = ("maintain", "--config", str(config), "--topic", k2.trades)
    dry = k2.run_json(*args, "--dry-run")
    assert len(list(k2.table("trades").snapshots())) == snapshots, "a dry run changes nothing"
    planned = {t["table"]: t for t in dry["tables"]}
    trades = next(t for name, t in planned.items() if name.endswith(".trades"))
    assert len(trades["snapshots_expired"]) == snapshots - KEEP
    assert all(local(f["path"]).exists() for f in trades["files"])

    done = {t["table"]: t for t in k2.run_json(*args)["tables"]}
    for name, plan in planned.items():
        assert done[name]["snapshots_expired"] == plan["snapshots_expired"]
        assert done[name]["files"] == plan["files"] and done[name]["files_not_deleted"] == 0
        assert not any(local(f["path"]).exists() for f in plan["files"])
    assert len(list(k2.table("trades").snapshots())) == KEEP
    assert_exact(k2, records)
    assert sorted(duckdb_keys(k2.table("trades"))) == sorted(k2.table_keys("trades"))


def referenced(table) -> set[str]:
    """Every file `table` references: reachable files, validator state, metadata files."""
    files = reachable(table) | state_files(table) | {table.metadata_location}
    files.update(m.metadata_file for m in table.metadata.metadata_log)
    return files


def normal(path: str) -> str:
    return str(local(path)) if path.startswith("file:") else path


# The window must outlast a commit's longest wait (interval + retry budget): 1 s + 1 s < 2.5 s.
WINDOW_MS = 2_500
SWEEPING = {"interval_ms": 0, "max_snapshots": KEEP, "orphan_min_age_ms": WINDOW_MS, "orphan_sweep_interval_ms": 1}
QUICK_COMMITS = {"max_records": 500, "interval_ms": 1_000, "retry_timeout_ms": 1_000}


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_a_crashs_orphans_are_swept_and_a_kill_mid_sweep_loses_nothing(k2, tmp_path, catalog):
    records = produce(k2, tmp_path)
    config = k2.config_with("sweeping.toml", commit=QUICK_COMMITS, maintenance=SWEEPING)
    # A crash between writing a batch's files and committing them (the third commit) leaves them behind.
    crashed = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False,
                     env={"K2_FAILPOINT": "after-files-closed@3"})
    assert crashed.returncode != 0 and "failpoint after-files-closed" in crashed.stderr, crashed.stderr[-2000:]
    time.sleep(WINDOW_MS / 1000 + 0.5)

    args = ("maintain", "--config", str(config), "--topic", k2.trades)
    [dry] = [t for t in k2.run_json(*args, "--dry-run")["tables"] if t["table"].endswith(".trades")]
    leftovers = {o["path"] for o in dry["orphans"]["orphans"]}
    table = k2.table("trades")
    live = {normal(f) for f in referenced(table)}
    assert leftovers and not {normal(p) for p in leftovers} & live, "orphans are files nothing references"
    assert all(table.io.new_input(p).exists() for p in leftovers), "a dry run deletes nothing"
    assert any("/data/" in p for p in leftovers), f"the crash's data files: {sorted(leftovers)}"
    if catalog == "sql":
        on_disk = {str(p) for p in (local(table.location()) / "data").rglob("*") if p.is_file()}
        assert {normal(p) for p in leftovers if "/data/" in p} == on_disk - live, "every unreferenced data file, no other"

    # Killed right after the sweep's first deletion (it runs after the run's first commit).
    killed = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False,
                    env={"K2_FAILPOINT": "after-first-orphan-delete"})
    assert killed.returncode != 0 and "failpoint after-first-orphan-delete" in killed.stderr, killed.stderr[-2000:]

    summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    assert_exact(k2, records)
    for name in ("trades", "trades_events"):
        table = k2.table(name)
        missing = [f for f in referenced(table) if not table.io.new_input(f).exists()]
        assert not missing, f"{name}: referenced files deleted: {missing[:3]}"
    table = k2.table("trades")
    assert not any(table.io.new_input(p).exists() for p in leftovers), "the crash's leftovers are gone"
    assert summary["maintenance_runs"] > 0
    if catalog == "sql":
        assert sorted(duckdb_keys(table)) == sorted(k2.table_keys("trades")), "DuckDB reads what pyiceberg reads"

    # Once every leftover is past the window, status counts what a sweep then deletes, and none after.
    time.sleep(WINDOW_MS / 1000 + 0.5)
    [before] = k2.run_json("status", "--config", str(config), "--topic", k2.trades)["topics"]
    [swept] = [t for t in k2.run_json(*args)["tables"] if t["table"].endswith(".trades")]
    assert before["health"]["orphan_files"] == len(swept["orphans"]["orphans"]), (before["health"], swept)
    assert before["health"]["orphan_bytes"] == swept["orphans"]["bytes_deleted"]
    [after] = k2.run_json("status", "--config", str(config), "--topic", k2.trades)["topics"]
    assert after["health"]["orphan_files"] == 0 and after["health"]["orphan_bytes"] == 0, after["health"]
    assert_exact(k2, records)
