"""`make chaos`: 1,000,000 trades with anomalies, 50 kill -9 of the ingester, 3 broker restarts and 2 catalog outages; rows, events and dead letters exact at the end.

Not part of `make test` (its file name is not test_*.py); `make chaos` runs it. Exactness is
judged against a run without faults over the same log: the same rows, the same events, and
dead letters for the same records (at least once: repeats are counted and printed).
"""

import collections
import os
import random
import subprocess
import time

import pytest

from k2 import K2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDS = int(os.environ.get("CHAOS_RECORDS", "1000000"))
KILLS = int(os.environ.get("CHAOS_KILLS", "50"))
BROKER_RESTARTS = 3
CATALOG_OUTAGES = 2
ANOMALIES = dict(gaps=200, duplicates=100, malformed=50, invalid=50, out_of_order=50, resets=20)


def services(*args):
    subprocess.run(["bash", os.path.join(ROOT, "dev", "services.sh"), *args], check=True, timeout=300,
                   capture_output=True)


def total_records(k2) -> int:
    try:
        snapshot = k2.table("trades").current_snapshot()
    except Exception:  # not created yet, or the catalog is down
        return -1
    return int(snapshot.summary["total-records"]) if snapshot else 0


def letters(k2, topic) -> collections.Counter:
    """Dead letters of `topic` by the (partition, offset) of the record they set aside."""
    def header(letter, key):
        return next((v.decode() for k, v in letter["header_list"] if k == key), None)
    return collections.Counter((int(header(m, "k2.source.partition")), int(header(m, "k2.source.offset")))
                               for m in k2.read_topic(topic))


def reference(k2, tmp_path):
    """Rows, events and dead letters of a run without faults: another group, a fresh SQLite
    catalog, a dead-letter topic of its own."""
    workdir = tmp_path / "reference"
    workdir.mkdir()
    ref = K2(binary=k2.binary, bootstrap=k2.bootstrap, root=k2.root, workdir=workdir, run_id=k2.run_id,
             sample_binary=k2.sample_binary)
    text = ref.config.read_text().replace(f'group_id = "{ref.group}"', f'group_id = "{ref.group}-ref"')
    text = text.replace('table = "trades"\n', f'table = "trades"\ndlq_topic = "{ref.trades}.ref.dlq"\n', 1)
    ref.config.write_text(text)
    ref.consume(ref.trades)
    rows = k2_rows(ref)
    return rows, events(ref), letters(ref, f"{ref.trades}.ref.dlq")


def k2_rows(k2) -> collections.Counter:
    return collections.Counter(k2.table_keys("trades"))


def events(k2) -> collections.Counter:
    rows = k2.table("trades_events").scan().to_arrow()
    return collections.Counter(zip(rows["partition"].to_pylist(), rows["offset"].to_pylist(), rows["kind"].to_pylist()))


@pytest.mark.parametrize("catalog", ["rest"])
def test_chaos_soak(k2, tmp_path):
    started = time.monotonic()
    k2.produce(k2.trades, RECORDS, partitions=4, symbols=200, seed=2026, **ANOMALIES)
    produced_at = time.monotonic()
    config = k2.config_with("chaos.toml", commit={"max_records": 2_000, "interval_ms": 500})
    config.write_text(config.read_text().replace(f'group_id = "{k2.group}"\n',
                                                 f'group_id = "{k2.group}"\ngroup_instance_id = "chaos"\n', 1))
    rng = random.Random(7)
    broker_at = set(rng.sample(range(2, KILLS - 2), BROKER_RESTARTS))
    catalog_at = set(rng.sample(sorted(set(range(2, KILLS - 2)) - broker_at), CATALOG_OUTAGES))
    progress = [0]
    faults = []
    fenced = []
    for i in range(KILLS):
        proc = k2.spawn_consume(k2.trades, config, tmp_path / f"chaos{i}.log")
        want = progress[-1] + rng.randint(1, max(1, RECORDS // (KILLS * 3)))
        fault = "broker restarted" if i in broker_at else "catalog outage" if i in catalog_at else None
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                # With static membership a broker restart can fence the running member (Kafka
                # reloads the group with an older member id for the instance): the run stops
                # on that fatal error by name, and the next one resumes from the table.
                text = (tmp_path / f"chaos{i}.log").read_text()
                assert any(f == (i, "broker restarted") for f in faults) and "FencedInstanceId" in text, \
                    f"run {i} exited {proc.returncode} (log chaos{i}.log)"
                fenced.append(i)
                break
            assert time.monotonic() < deadline, f"run {i} made no progress within 300 s"
            total = total_records(k2)
            if fault and total > progress[-1]:
                # Mid-run, after this run made progress: the fault, then more progress before the kill.
                if fault == "broker restarted":
                    services("kill", "kafka")
                    time.sleep(rng.uniform(1, 5))
                    services("up")
                else:
                    services("kill", "rest")
                    time.sleep(rng.uniform(10, 30))
                    services("up", "--rest")
                faults.append((i, fault))
                fault = None
                want = max(want, total_records(k2) + 1)
                deadline = time.monotonic() + 300
                continue
            if total >= want and fault is None:
                break
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        progress.append(total_records(k2))
    assert progress[-1] < RECORDS, "every kill landed before the end of the topic"
    final = k2.consume(k2.trades)
    chaos_done = time.monotonic()

    rows = k2_rows(k2)
    want_rows, want_events, want_letters = reference(k2, tmp_path)
    got_events, got_letters = events(k2), letters(k2, f"{k2.trades}.dlq")
    duplicates = sum(n - 1 for n in rows.values())
    missing = len(set(want_rows) - set(rows))
    extra = len(set(rows) - set(want_rows))
    repeated_letters = sum(n - 1 for n in got_letters.values())
    print(f"\nchaos soak: {RECORDS} records, {KILLS} kill -9, faults {faults}; "
          f"produce {produced_at - started:.0f} s, chaos + final run {chaos_done - produced_at:.0f} s; "
          f"rows {sum(rows.values())} (reference {sum(want_rows.values())}), duplicates {duplicates}, "
          f"missing {missing}, extra {extra}; events {sum(got_events.values())} (reference "
          f"{sum(want_events.values())}); dead letters {sum(got_letters.values())} for {len(got_letters)} records "
          f"(reference {len(want_letters)}), repeats {repeated_letters}; final run consumed {final['consumed']}; "
          f"runs stopped by fencing after a broker restart {fenced}; rows after each kill {progress[1:]}")
    assert all(b > a for a, b in zip(progress, progress[1:])), f"progress between kills: {progress}"
    assert len(faults) == BROKER_RESTARTS + CATALOG_OUTAGES, faults
    assert duplicates == 0 and missing == 0 and extra == 0
    assert got_events == want_events, "events differ from the run without faults"
    assert set(got_letters) == set(want_letters), "dead letters cover other records than the run without faults"
    assert sum(final["lag"].values()) == 0
