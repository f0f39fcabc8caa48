"""Records gone from the log before k2-ingest read them: retention past the table's offset, a topic deleted and recreated."""

import json
import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient


def admin(k2) -> AdminClient:
    return AdminClient({"bootstrap.servers": k2.bootstrap})


def delete_records_before(k2, topic: str, offset: int):
    """What retention does to a lagging consumer, on demand: the log of partition 0 starts at `offset`."""
    client = admin(k2)  # kept: futures of a collected client never resolve
    for future in client.delete_records([TopicPartition(topic, 0, offset)], request_timeout=30).values():
        future.result(timeout=60)


def delete_topic(k2, topic: str):
    client = admin(k2)  # kept: futures of a collected client never resolve
    for future in client.delete_topics([topic], operation_timeout=30).values():
        future.result(timeout=60)
    deadline = time.monotonic() + 60
    while topic in client.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"topic {topic} still listed 60 s after its deletion"
        time.sleep(0.5)


def offsets_in_table(k2) -> list[int]:
    return sorted(o for p, o in k2.table_keys("trades") if p == 0)


def frozen_after_1000(k2, config, log):
    """A `consume --follow` of 1,000 produced trades, frozen (SIGSTOP) once the table holds
    them all; the caller changes the log, then sends SIGCONT."""
    import signal

    k2.produce(k2.trades, 1_000, partitions=1, seed=6)
    proc = k2.spawn_consume(k2.trades, config, log)
    deadline = time.monotonic() + 60
    while len(k2.table_keys_or_none("trades") or []) < 1_000:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    # Frozen, fetcher and heartbeats too, for less than the session timeout: the group keeps
    # the partition, and the consumer lags while the log moves on past its position.
    proc.send_signal(signal.SIGSTOP)
    return proc


def status_partition(k2, config) -> dict:
    status = k2.run_json("status", "--config", str(config), "--topic", k2.trades)
    [topic] = status["topics"]
    [partition] = topic["partitions"]
    return partition


def test_records_deleted_before_they_were_read_stop_the_run_by_default_and_are_recorded_under_skip(k2):
    k2.produce(k2.trades, 1_000, partitions=1, seed=3)
    assert k2.consume(k2.trades)["written"] == 1_000
    k2.produce(k2.trades, 1_000, partitions=1, seed=4)
    delete_records_before(k2, k2.trades, 1_500)
    assert status_partition(k2, k2.config)["deleted_unread"] == 500

    failed = k2.run("consume", "--config", str(k2.config), "--topic", k2.trades, check=False)
    assert failed.returncode != 0
    assert "500 records of topic" in failed.stderr, failed.stderr[-3000:]
    assert "partition 0: offsets 1000..1500, 500 records" in failed.stderr, failed.stderr[-3000:]
    assert 'on_offset_lost = "skip"' in failed.stderr
    assert offsets_in_table(k2) == list(range(1_000)), "nothing past the loss was written"

    skip = k2.config_for_trades("skip.toml", 'on_offset_lost = "skip"\n')
    run = k2.run_json("consume", "--config", str(skip), "--topic", k2.trades)
    assert run["records_lost"] == 500
    assert run["lost_ranges"] == {"0": [[1_000, 1_500]]}
    assert offsets_in_table(k2) == list(range(1_000)) + list(range(1_500, 2_000))
    summary = k2.table("trades").current_snapshot().summary.additional_properties
    assert json.loads(summary[f"k2.lost.{k2.trades}"]) == {"0": [[1_000, 1_500]]}
    partition = status_partition(k2, skip)
    assert partition["lost_ranges"] == [[1_000, 1_500]] and partition["deleted_unread"] == 0

    # The loss stays on record through later commits, and is not counted again.
    k2.produce(k2.trades, 100, partitions=1, seed=5)
    again = k2.run_json("consume", "--config", str(skip), "--topic", k2.trades)
    assert again["written"] == 100 and again["records_lost"] == 0
    summary = k2.table("trades").current_snapshot().summary.additional_properties
    assert json.loads(summary[f"k2.lost.{k2.trades}"]) == {"0": [[1_000, 1_500]]}


def stored_topic_id(k2) -> str | None:
    return k2.table("trades").current_snapshot().summary.additional_properties.get(f"k2.topic-id.{k2.trades}")


def test_a_topic_deleted_and_recreated_past_the_tables_offset_stops_the_run_and_truncate_starts_over(k2):
    """The new log is longer than the old one was: offsets alone cannot tell (the table's 1,000
    is inside it), so without the topic id records 1,000.. of the new topic would be read as
    if they followed the old ones, and its first 1,000 skipped."""
    k2.produce(k2.trades, 1_000, partitions=1, seed=3)
    assert k2.consume(k2.trades)["written"] == 1_000
    old_id = stored_topic_id(k2)
    assert old_id, "the table records which topic its offsets came from"
    delete_topic(k2, k2.trades)
    k2.produce(k2.trades, 1_500, partitions=1, seed=6)

    # Even under skip: the old offsets say nothing about the new topic's records.
    skip = k2.config_for_trades("skip.toml", 'on_offset_lost = "skip"\n')
    failed = k2.run("consume", "--config", str(skip), "--topic", k2.trades, check=False)
    assert failed.returncode != 0
    assert "deleted and created again" in failed.stderr, failed.stderr[-3000:]
    assert f"read from the topic with id {old_id}" in failed.stderr, failed.stderr[-3000:]
    assert f"k2-ingest truncate --topic {k2.trades} --restart-from earliest" in failed.stderr
    assert offsets_in_table(k2) == list(range(1_000))
    [status] = k2.run_json("status", "--config", str(k2.config), "--topic", k2.trades)["topics"]
    assert status["topic_recreated"] and status["table_topic_id"] == old_id != status["topic_id"]
    current = k2.run("truncate", "--config", str(k2.config), "--topic", k2.trades, "--restart-from", "current",
                     check=False)
    assert current.returncode != 0 and "deleted and created again" in current.stderr, current.stderr[-3000:]

    k2.run("truncate", "--config", str(k2.config), "--topic", k2.trades, "--restart-from", "earliest",
           "--confirm", "trades", "--execute")
    run = k2.consume(k2.trades)
    assert run["written"] == 1_500
    assert offsets_in_table(k2) == list(range(1_500))
    assert stored_topic_id(k2) not in (None, old_id)


def test_a_topic_recreated_under_a_running_instance_is_never_committed_on_the_old_offsets(k2, tmp_path):
    """Deleted and created again, with more records than the instance had read, while it was
    frozen (SIGSTOP): librdkafka goes on fetching the new topic from the old position. The
    instance must stop before committing any of it."""
    import signal

    config = k2.config_with("frozen.toml", commit={"max_records": 500, "interval_ms": 500})
    log = tmp_path / "consume.log"
    proc = frozen_after_1000(k2, config, log)
    try:
        delete_topic(k2, k2.trades)
        k2.produce(k2.trades, 3_000, partitions=1, seed=7)
    finally:
        proc.send_signal(signal.SIGCONT)
    try:
        proc.communicate(timeout=120)
    except Exception:
        proc.kill()
        raise
    assert proc.returncode != 0, log.read_text()[-3000:]
    assert offsets_in_table(k2) == list(range(1_000)), "records of the new topic were committed on the old offsets"
    failed = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)
    assert failed.returncode != 0 and "deleted and created again" in failed.stderr, failed.stderr[-3000:]

    # The message's other way on: a new table starts where the group stands for the new topic,
    # which the stopped instance never moved.
    fresh = k2.config_for_trades("fresh.toml", "").read_text().replace('table = "trades"\n', 'table = "trades_anew"\n', 1)
    (tmp_path / "fresh.toml").write_text(fresh)
    run = k2.run_json("consume", "--config", str(tmp_path / "fresh.toml"), "--topic", k2.trades)
    assert run["written"] == 3_000
    assert sorted(o for _, o in k2.table_keys("trades_anew")) == list(range(3_000))


def test_a_log_deleted_to_its_end_under_skip_is_recorded_once_with_nothing_left_to_read(k2):
    k2.produce(k2.trades, 1_000, partitions=1, seed=3)
    assert k2.consume(k2.trades)["written"] == 1_000
    k2.produce(k2.trades, 500, partitions=1, seed=4)
    delete_records_before(k2, k2.trades, 1_500)  # the log is empty: low == high
    skip = k2.config_for_trades("skip.toml", 'on_offset_lost = "skip"\n')
    run = k2.run_json("consume", "--config", str(skip), "--topic", k2.trades)
    assert (run["records_lost"], run["written"]) == (500, 0)
    summary = k2.table("trades").current_snapshot().summary.additional_properties
    assert json.loads(summary[f"k2.offsets.{k2.trades}"]) == {"0": 1_500}, "the table moved past the loss"
    assert json.loads(summary[f"k2.lost.{k2.trades}"]) == {"0": [[1_000, 1_500]]}
    again = k2.run_json("consume", "--config", str(skip), "--topic", k2.trades)
    assert again["records_lost"] == 0, "a loss is found once"
    assert status_partition(k2, skip)["deleted_unread"] == 0


def test_retention_overtaking_a_running_instance_is_caught_mid_run(k2, tmp_path):
    """The log start moves past a running consumer's position (it lags, retention deletes):
    librdkafka would apply auto.offset.reset without a word. Under skip the run goes on from
    the log start and records the loss; the records before and after are each written once."""
    import signal

    config = k2.config_with("lagging.toml", commit={"max_records": 500, "interval_ms": 500})
    config.write_text(config.read_text().replace('table = "trades"\n', 'table = "trades"\non_offset_lost = "skip"\n', 1))
    log = tmp_path / "consume.log"
    proc = frozen_after_1000(k2, config, log)
    try:
        k2.produce(k2.trades, 3_000, partitions=1, seed=7)
        delete_records_before(k2, k2.trades, 3_500)
    finally:
        proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 120
    while max((o for _, o in k2.table_keys_or_none("trades") or []), default=-1) < 3_999:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    summary = json.loads(out)
    offsets = offsets_in_table(k2)
    assert len(offsets) == len(set(offsets)), "records written twice"
    assert summary["lost_ranges"] == {"0": [[1_000, 3_500]]}, "the loss was silent"
    assert summary["records_lost"] == 2_500
    assert offsets == list(range(1_000)) + list(range(3_500, 4_000))
    recorded = json.loads(k2.table("trades").current_snapshot().summary.additional_properties[f"k2.lost.{k2.trades}"])
    assert recorded == {"0": [[1_000, 3_500]]}


def test_retention_overtaking_several_partitions_at_once_is_recorded_for_each(k2, tmp_path):
    """One out-of-range error comes per partition, some after the first is dealt with."""
    import signal

    k2.produce(k2.trades, 1_000, partitions=2, seed=8)
    config = k2.config_with("lagging2.toml", commit={"max_records": 500, "interval_ms": 500})
    config.write_text(config.read_text().replace('table = "trades"\n', 'table = "trades"\non_offset_lost = "skip"\n', 1))
    proc = k2.spawn_consume(k2.trades, config, tmp_path / "consume.log")
    deadline = time.monotonic() + 60
    while len(k2.table_keys_or_none("trades") or []) < 1_000:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGSTOP)
    try:
        k2.produce(k2.trades, 4_000, partitions=2, seed=9)
        ends = k2.high_watermarks(k2.trades)
        cut = {p: end - 100 for p, end in ends.items()}
        client = admin(k2)  # kept: futures of a collected client never resolve
        for future in client.delete_records([TopicPartition(k2.trades, p, o) for p, o in cut.items()],
                                            request_timeout=30).values():
            future.result(timeout=60)
    finally:
        proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 120
    while len(k2.table_keys_or_none("trades") or []) < 1_200:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "consume.log").read_text()[-3000:]
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    summary = json.loads(out)
    keys = k2.table_keys("trades")
    assert len(keys) == len(set(keys)) == 1_200
    assert sorted(summary["lost_ranges"]) == ["0", "1"], summary["lost_ranges"]
    for p, ranges in summary["lost_ranges"].items():
        [[_, to]] = ranges
        assert to == cut[int(p)]
    assert summary["records_lost"] == sum(ends.values()) - 1_000 - 200
