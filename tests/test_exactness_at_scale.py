"""A million trades over 500 symbols and 4 partitions, every kind of anomaly, kill -9 mid-run: all exact."""

import collections
import json
import signal
import time

from pyiceberg.exceptions import NoSuchTableError
from sqlalchemy.exc import OperationalError

from k2 import read_manifest

COUNT = 1_000_000
INJECT = dict(gaps=400, duplicates=300, out_of_order=200, resets=100, malformed=150, invalid=150)
EVENT_OF_MARK = {"gap": "gap", "duplicate": "duplicate", "out_of_order": "out_of_order", "reset": "reset"}
DEAD_LETTER_CODE = {"malformed": "undecodable", "invalid": "price-not-positive"}


def stored_offsets(k2) -> dict[int, int]:
    try:
        snapshot = k2.table("trades").current_snapshot()
    except NoSuchTableError:  # the consumer has not created it yet
        return {}
    except OperationalError:
        # pyiceberg creates the catalog's SQL tables when missing, and may race the
        # consumer creating them at the same moment; the next poll finds them.
        return {}
    if snapshot is None:
        return {}
    text = snapshot.summary.additional_properties.get(f"k2.offsets.{k2.trades}", "{}")
    return {int(p): o for p, o in json.loads(text).items()}


def test_a_million_records_with_a_kill_land_events_dead_letters_and_rows_exactly(k2, tmp_path):
    manifest = tmp_path / "anomalies.jsonl"
    produced = k2.produce(k2.trades, COUNT, manifest=manifest, manifest_marks="anomalies", partitions=4,
                          symbols=500, seed=101, **INJECT)
    assert produced["produced"] == COUNT
    anomalies = read_manifest(manifest)
    marks = collections.Counter(m["mark"] for m in anomalies)
    assert marks == {k: v for k, v in {"gap": 400, "duplicate": 300, "out_of_order": 200, "reset": 100,
                                        "malformed": 150, "invalid": 150}.items()}, marks

    # Commits every 100,000 records; static membership gives the partitions straight back.
    config = k2.config_with("scale.toml", {"group.instance.id": f"scale-{k2.run_id}"}, commit={"max_records": 100_000})
    first = k2.spawn_consume(k2.trades, config, log=tmp_path / "first.log")
    deadline = time.monotonic() + 300
    while sum(stored_offsets(k2).values()) < 300_000:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no commit of 300,000 records within 300 s"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    at_kill = stored_offsets(k2)
    assert 300_000 <= sum(at_kill.values()) < COUNT, at_kill

    summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)

    # The table: every record once, except those set aside.
    set_aside = {(m["partition"], m["offset"]) for m in anomalies if m["mark"] in DEAD_LETTER_CODE}
    rows = k2.table("trades").scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow()
    keys = list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))
    assert len(keys) == COUNT - len(set_aside)
    assert len(set(keys)) == len(keys), "a record landed twice"
    expected_keys = {(int(p), o) for p, n in produced["partitions"].items() for o in range(n)} - set_aside
    assert set(keys) == expected_keys
    assert summary["lag"] == {p: 0 for p in produced["partitions"]}

    # The events: exactly the injected anomalies, each once, across the kill.
    events = k2.table("trades_events").scan().to_arrow()
    event_keys = list(zip(events["partition"].to_pylist(), events["offset"].to_pylist(), events["kind"].to_pylist()))
    assert len(event_keys) == len(set(event_keys)), "an event was recorded twice"
    assert set(event_keys) == {(m["partition"], m["offset"], EVENT_OF_MARK[m["mark"]])
                               for m in anomalies if m["mark"] in EVENT_OF_MARK}
    # The restarted run reported exactly the anomalies past the offsets committed before the kill.
    after_kill = collections.Counter(EVENT_OF_MARK[m["mark"]] for m in anomalies
                                     if m["mark"] in EVENT_OF_MARK and m["offset"] >= at_kill.get(m["partition"], 0))
    assert summary["sequence_events"] == dict(after_kill)

    # The dead letters: exactly the malformed and invalid records, with their reasons. Those
    # sent by the killed run after its last commit are sent again by the restart (at least
    # once); those before it, exactly once.
    letters = k2.read_topic(f"{k2.trades}.dlq")
    seen = collections.Counter()
    by_source = {(m["partition"], m["offset"]): m for m in anomalies if m["mark"] in DEAD_LETTER_CODE}
    for letter in letters:
        source = (int(letter["headers"]["k2.source.partition"]), int(letter["headers"]["k2.source.offset"]))
        assert source in by_source, f"dead letter for {source}, which is not a bad record"
        assert letter["headers"]["k2.reason.code"] == DEAD_LETTER_CODE[by_source[source]["mark"]]
        seen[source] += 1
    assert set(seen) == set(by_source)
    for (p, o), n in seen.items():
        if o < at_kill.get(p, 0):
            assert n == 1, f"dead letter for committed record {(p, o)} sent {n} times"
