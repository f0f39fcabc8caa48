"""The production topology: Iceberg's REST catalog over S3 (S3Proxy), several instances in one group."""

import collections
import json
import signal
import subprocess
import threading
import time

import pytest

from test_metrics import free_port, scrape

COUNT = 300_000
PARTITIONS = 6
# Frequent small commits from every instance, so their catalog commits race.
RACING_COMMITS = {"max_records": 10_000, "interval_ms": 500}
# Produced in chunks with pauses, so records still arrive after the last instance joins: in one
# go, a quiet machine produced them all, and the first instance wrote them all, before the
# second joined, and no commits raced.
CHUNKS = 6
CHUNK_PAUSE_S = 2


def produce_in_chunks(k2, return_codes: list[int]):
    for chunk in range(CHUNKS):
        proc = subprocess.run(
            [str(k2.sample_binary), "--config", str(k2.config), "--topic", k2.trades,
             "--count", str((COUNT - PARTITIONS) // CHUNKS), "--symbols", "300", "--seed", str(31 + chunk),
             "--output", "json"],
            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=600,
        )
        return_codes.append(proc.returncode)
        time.sleep(CHUNK_PAUSE_S)


def stored_offsets(k2, table: str) -> dict[int, int]:
    """The next offsets the table's current snapshot stores for the trades topic."""
    try:
        snapshot = k2.table(table).current_snapshot()
    except Exception:  # not created yet
        return {}
    if snapshot is None:
        return {}
    stored = snapshot.summary.additional_properties.get(f"k2.offsets.{k2.trades}")
    return {int(p): n for p, n in json.loads(stored).items()} if stored else {}


@pytest.mark.parametrize("catalog", ["rest"])
def test_three_instances_on_rest_and_s3_land_every_record_once(k2, tmp_path):
    config = k2.config_with("scale.toml", commit=RACING_COMMITS)
    k2.produce(k2.trades, PARTITIONS, partitions=PARTITIONS, symbols=PARTITIONS, seed=30)  # the topic, 6 partitions
    assert (COUNT - PARTITIONS) % CHUNKS == 0
    return_codes: list[int] = []
    producer = threading.Thread(target=produce_in_chunks, args=(k2, return_codes), daemon=True)
    producer.start()
    # Credentials for the object store come from the environment here (the config has them
    # for the other REST tests), as a deployment would pass them.
    text = config.read_text()
    start = text.index('access_key_id = ')
    config.write_text(text[:start] + text[text.index("\n", text.index("secret_access_key = ")) + 1:])
    env = {"PATH": "/usr/bin:/bin", "K2_LOG": "info",
           "AWS_ACCESS_KEY_ID": "k2access", "AWS_SECRET_ACCESS_KEY": "k2secretkey"}

    instances = []
    for i in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [str(k2.binary), "consume", "--config", str(config), "--topic", k2.trades, "--follow",
             "--metrics-addr", f"127.0.0.1:{port}", "--output", "json"],
            stdout=subprocess.PIPE, stderr=open(tmp_path / f"i{i}.log", "w"), text=True, env=env,
        )
        instances.append((proc, port))
        time.sleep(4)  # instances join at different times: each join rebalances the group
    producer.join(timeout=600)
    assert not producer.is_alive() and return_codes == [0] * CHUNKS, f"k2-sample failed: {return_codes}"
    high = k2.high_watermarks(k2.trades)

    deadline = time.monotonic() + 600
    while stored_offsets(k2, "trades") != high:
        for proc, _ in instances:
            assert proc.poll() is None, "an instance exited early"
        assert time.monotonic() < deadline, f"table offsets {stored_offsets(k2, 'trades')} never reached {high}"
        time.sleep(2)

    # Caught up and idle: quiet polls must not add empty snapshots (each interval is 0.5 s).
    done = k2.table("trades").current_snapshot().snapshot_id
    time.sleep(3)
    assert k2.table("trades").current_snapshot().snapshot_id == done, "an idle instance committed again"

    label = k2.table_label("trades")
    conflicts_metric = 0.0
    summaries = []
    for proc, port in instances:
        samples = scrape(port)
        conflicts_metric += samples.get(f"k2_commit_conflicts_total{{{label}}}", 0)
        assert samples.get(f"k2_commit_errors_total{{{label}}}", 0) == 0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        summaries.append(json.loads(out))

    rows = k2.table("trades").scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow()
    keys = list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))
    counts = collections.Counter(keys)
    expected = {(p, o) for p, n in high.items() for o in range(n)}
    conflicts = sum(s["commit_conflicts"] for s in summaries)
    print(f"rest+s3 scale-out: rows {len(keys)}, instances {len(instances)}, conflicts {conflicts}, "
          f"dropped {sum(s['dropped_already_committed'] for s in summaries)}, "
          f"written {[s['written'] for s in summaries]}")
    assert sum(high.values()) == COUNT
    assert max(counts.values()) == 1, "a record landed twice"
    assert set(counts) == expected, "records missing from the table"
    # Conflicts did happen, were resolved (every record once, no commit error) and counted.
    assert conflicts >= 1
    assert conflicts_metric == conflicts
    assert sum(s["written"] for s in summaries) >= COUNT
