"""Validator state is committed with the data: sequence events stay exact across runs and crashes."""

import collections
import json

import pytest

from k2 import read_manifest

COUNT = 4_000
INJECT = dict(gaps=150, duplicates=100)
EVENT_OF_MARK = {"gap": "gap", "duplicate": "duplicate"}


def produce(k2, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    # One partition, few symbols, dense anomalies; with seed 8 a gap is its symbol's first
    # record after offset 1,000, where the crash test's first commit lands.
    k2.produce(k2.trades, COUNT, manifest=manifest, partitions=1, symbols=8, seed=8, **INJECT)
    return read_manifest(manifest)


def straddling(records, split: int) -> list[dict]:
    """Anomalies that are their symbol's first record at or after offset `split`: a validator
    that starts without the committed state sees no previous record for them and misses them."""
    seen, found = set(), []
    for m in sorted(records, key=lambda m: m["offset"]):
        symbol = m["record"]["symbol"]
        if m["offset"] >= split and symbol not in seen:
            seen.add(symbol)
            if m["mark"] in EVENT_OF_MARK:
                found.append(m)
    return found


def expected_events(records, start: int = 0) -> dict[str, int]:
    return dict(collections.Counter(EVENT_OF_MARK[m["mark"]] for m in records
                                    if m["offset"] >= start and m["mark"] in EVENT_OF_MARK))


def event_rows(k2) -> list[tuple[int, int, str]]:
    rows = k2.table("trades_events").scan().to_arrow()
    return list(zip(rows["partition"].to_pylist(), rows["offset"].to_pylist(), rows["kind"].to_pylist()))


def expected_rows(records) -> set[tuple[int, int, str]]:
    return {(m["partition"], m["offset"], EVENT_OF_MARK[m["mark"]]) for m in records if m["mark"] in EVENT_OF_MARK}


def test_a_gap_straddling_two_runs_is_reported_once(k2, tmp_path):
    records = produce(k2, tmp_path)
    # Split the runs right before an anomaly, so it is its symbol's first record in the second.
    split = next(m["offset"] for m in records if m["offset"] >= 2_000 and m["mark"] == "gap")
    assert straddling(records, split)

    first = k2.consume(k2.trades, "--max-messages", str(split))
    rest = k2.consume(k2.trades)

    assert first["consumed"] + rest["consumed"] == COUNT
    total = collections.Counter(first["sequence_events"]) + collections.Counter(rest["sequence_events"])
    assert dict(total) == {"gap": INJECT["gaps"], "duplicate": INJECT["duplicates"]}
    stored = k2.table("trades").current_snapshot().summary.additional_properties
    assert f"k2.state.{k2.trades}" in stored, "the state file is named with the offsets"
    rows = event_rows(k2)
    assert len(rows) == len(set(rows)) and set(rows) == expected_rows(records)
    assert first["events_table"] == "market.trades_events"
    assert first["events_recorded"] + rest["events_recorded"] == len(rows)


@pytest.mark.parametrize("point", ["after-files-closed", "after-table-commit"])
def test_after_a_crash_the_replay_raises_no_false_event_and_misses_none(k2, tmp_path, point):
    records = produce(k2, tmp_path)
    # Commit after the first 1,000-record batch; die with the events committed and the data
    # not yet (after-files-closed), or right after the data commit (after-table-commit).
    config = k2.config_with("crash.toml", commit={"max_records": 500})
    crashed = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False,
                     env={"K2_FAILPOINT": point})
    assert crashed.returncode != 0 and f"failpoint {point}" in crashed.stderr
    assert event_rows(k2), "the first commit's events are in the events table"
    snapshot = k2.table("trades").current_snapshot()
    committed = 0
    if point == "after-table-commit":
        committed = json.loads(snapshot.summary.additional_properties[f"k2.offsets.{k2.trades}"])["0"]
        assert 0 < committed < COUNT
        assert straddling(records, committed), "the seed must put an anomaly right after the commit"
    else:
        assert snapshot is None

    summary = k2.consume(k2.trades)

    assert summary["consumed"] == COUNT - committed
    # Exactly the anomalies after the committed offset: none missed at the boundary, and no
    # record of the replay taken for a duplicate.
    assert summary["sequence_events"] == expected_events(records, committed)
    # The events table holds every event once: those committed before the crash, and the
    # rest, with none of the replayed records' events twice.
    rows = event_rows(k2)
    assert len(rows) == len(set(rows)) and set(rows) == expected_rows(records)
