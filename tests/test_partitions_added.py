"""Partitions added to the topic while a run follows it: their records land once, like the others."""

import collections
import json
import signal
import time

from confluent_kafka.admin import AdminClient, NewPartitions


def test_partitions_added_mid_run_are_ingested_exactly(k2, tmp_path):
    k2.produce(k2.trades, 5_000, partitions=2, symbols=20, seed=21)
    # librdkafka notices new partitions at its next metadata refresh (5 min by default).
    config = k2.config_with("refresh.toml", {"topic.metadata.refresh.interval.ms": "1000"},
                            commit={"interval_ms": 500})
    proc = k2.spawn_consume(k2.trades, config, tmp_path / "follow.log")
    try:
        deadline = time.monotonic() + 120
        while len(set(k2.table_keys("trades") if _exists(k2) else [])) < 5_000:
            assert proc.poll() is None, (tmp_path / "follow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the first 5,000 records were not committed within 120 s"
            time.sleep(0.5)

        admin = AdminClient({"bootstrap.servers": k2.bootstrap})
        for future in admin.create_partitions([NewPartitions(k2.trades, 4)]).values():
            future.result(timeout=60)
        produced = k2.produce(k2.trades, 8_000, partitions=4, symbols=20, seed=22)["partitions"]
        assert produced.get("2", 0) > 0 and produced.get("3", 0) > 0, produced

        deadline = time.monotonic() + 120
        while len(set(k2.table_keys("trades"))) < 13_000:
            assert proc.poll() is None, (tmp_path / "follow.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the records of the new partitions were not committed within 120 s"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    summary = json.loads(out)
    keys = k2.table_keys("trades")
    per_partition = collections.Counter(p for p, _ in keys)
    assert len(keys) == len(set(keys)) == 13_000
    assert (per_partition[2], per_partition[3]) == (produced["2"], produced["3"]), per_partition
    assert set(summary["offsets"]) == {"0", "1", "2", "3"}


def _exists(k2) -> bool:
    try:
        k2.table("trades")
        return True
    except Exception:
        return False
