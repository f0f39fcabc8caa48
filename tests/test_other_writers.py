"""Other engines write our tables between runs: offsets and validator state still come from k2-ingest's last commit."""

import collections

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka.admin import AdminClient
from pyiceberg.expressions import And, EqualTo, LessThan

from k2 import read_manifest
from test_sequence_state import EVENT_OF_MARK, event_rows, expected_rows, straddling

COUNT = 6_000
FOREIGN_PARTITION = 99


def produce(k2, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    k2.produce(k2.trades, COUNT, manifest=manifest, partitions=1, symbols=8, seed=8, gaps=150, duplicates=100)
    return read_manifest(manifest)


def forget_group(k2):
    """What Kafka does to an idle group's offsets after `offsets.retention.minutes` (7 days)."""
    admin = AdminClient({"bootstrap.servers": k2.bootstrap})
    for future in admin.delete_consumer_groups([k2.group], request_timeout=30).values():
        future.result()


def k2_snapshots(table) -> list[int]:
    """The snapshots k2-ingest committed, oldest first."""
    ours = [s for s in table.snapshots() if any(k.startswith("k2.offsets.") for k in s.summary.additional_properties)]
    return [s.snapshot_id for s in sorted(ours, key=lambda s: s.sequence_number)]


def test_appends_overwrites_deletes_and_expiry_by_another_engine_between_runs_resume_exactly(k2, tmp_path):
    records = produce(k2, tmp_path)
    split = next(m["offset"] for m in records if m["offset"] >= 3_000 and m["mark"] == "gap")
    assert straddling(records, split), "an anomaly the second run sees only with the first run's state"
    config = k2.config_with("small-commits.toml", commit={"max_records": 1_000})
    first = k2.run_json("consume", "--config", str(config), "--topic", k2.trades, "--max-messages", str(split))
    assert first["consumed"] == split

    # pyiceberg, as another engine: append a row, delete some, overwrite one, expire old snapshots.
    table = k2.table("trades")
    ours = k2_snapshots(table)
    assert len(ours) >= 3
    rows = table.scan().to_arrow()
    foreign = rows.slice(0, 1)
    field = foreign.schema.field("_kafka_partition")
    foreign = foreign.set_column(foreign.schema.get_field_index(field.name), field,
                                 pa.array([FOREIGN_PARTITION], field.type))
    table.append(foreign)
    table = k2.table("trades")
    table.delete(And(EqualTo("_kafka_partition", 0), LessThan("_kafka_offset", 10)))
    table = k2.table("trades")
    one = rows.filter(pc.equal(rows["_kafka_offset"], 20))
    table.overwrite(one, overwrite_filter=And(EqualTo("_kafka_partition", 0), EqualTo("_kafka_offset", 20)))
    table = k2.table("trades")
    table.maintenance.expire_snapshots().by_ids(ours[:-1]).commit()
    table = k2.table("trades")
    assert table.current_snapshot().snapshot_id not in ours, "another engine's snapshot is current"
    assert k2_snapshots(table) == ours[-1:]
    forget_group(k2)

    rest = k2.consume(k2.trades)

    assert rest["consumed"] == COUNT - split, "the second run starts where the first one's last commit ended"
    keys = k2.table_keys("trades")
    duplicates = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} (partition, offset) pairs twice, e.g. {duplicates[:3]}"
    expected = {(0, o) for o in range(10, COUNT)} | {(FOREIGN_PARTITION, rows["_kafka_offset"][0].as_py())}
    assert set(keys) == expected
    # The validator resumed from the first run's state: the straddling anomalies are caught once.
    events = event_rows(k2)
    assert len(events) == len(set(events)) and set(events) == expected_rows(records)
    total = collections.Counter(first["sequence_events"]) + collections.Counter(rest["sequence_events"])
    assert dict(total) == dict(collections.Counter(EVENT_OF_MARK[m["mark"]] for m in records if m["mark"] in EVENT_OF_MARK))
    summary = k2.table("trades").current_snapshot().summary.additional_properties
    assert summary[f"k2.offsets.{k2.trades}"] == f'{{"0":{COUNT}}}'
    assert f"k2.state.{k2.trades}" in summary, "the state carried forward with the offsets"


def test_a_history_expired_past_our_last_commit_is_refused_by_name(k2, tmp_path):
    k2.produce(k2.trades, 500, partitions=1)
    k2.consume(k2.trades)
    table = k2.table("trades")
    table.append(table.scan(limit=1).to_arrow())
    table = k2.table("trades")
    current = table.current_snapshot().snapshot_id
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]).commit()
    k2.produce(k2.trades, 100, partitions=1)

    refused = k2.run("consume", "--config", str(k2.config), "--topic", k2.trades, check=False)

    assert refused.returncode != 0
    assert f"no snapshot from {current} back to the oldest retained one ({current})" in refused.stderr, refused.stderr
    assert "refusing to guess" in refused.stderr and "k2-ingest truncate" in refused.stderr
    assert k2.table("trades").current_snapshot().snapshot_id == current, "nothing was committed"
