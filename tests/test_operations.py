"""Operations: status, rewind, truncate, JSON logs and progress, each checked against the table read back with pyiceberg."""

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
import time
from collections import Counter

import pytest

INJECT = dict(gaps=3, invalid=4)


def keys(k2) -> Counter:
    return Counter(k2.table_keys("trades"))


def events(k2) -> Counter:
    rows = k2.table("trades_events").scan().to_arrow()
    return Counter(zip(rows["partition"].to_pylist(), rows["offset"].to_pylist(), rows["kind"].to_pylist()))


def status(k2, config=None) -> dict:
    out = k2.run_json("status", "--config", str(config or k2.config), "--topic", k2.trades)
    [topic] = out["topics"]
    return topic


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_status_after_a_complete_run_shows_lag_zero(k2):
    produced = k2.produce(k2.trades, 3_000, partitions=3, symbols=20, seed=71, **INJECT)
    before = status(k2)
    assert not before["table_exists"] and before["total_lag"] == 3_000
    summary = k2.consume(k2.trades)
    after = status(k2)
    assert after["table_exists"] and after["topic_exists"]
    assert len(after["partitions"]) == 3
    for p in after["partitions"]:
        assert p["lag"] == 0, after
        assert p["table_offset"] == p["group_offset"] == p["high_watermark"] == produced["partitions"].get(str(p["partition"]), 0)
    assert after["total_lag"] == 0
    snap = after["last_snapshot"]
    assert snap["snapshot_id"] == summary["snapshot_id"]
    assert snap["total_records"] == summary["written"] == 3_000 - INJECT["invalid"]
    assert after["events_by_kind"] == {"gap": INJECT["gaps"]}
    assert [e["kind"] for e in after["recent_events"]] == ["gap"] * INJECT["gaps"]
    assert after["dead_letters"] == {"topic": f"{k2.trades}.dlq", "retained": INJECT["invalid"]}
    human = k2.run("status", "--config", str(k2.config), "--topic", k2.trades).stdout
    assert "total lag 0" in human and f"last snapshot {summary['snapshot_id']}" in human


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_rewind_to_a_time_reingests_exactly_what_came_after(k2):
    # Every full batch (at least 496 accepted records) is committed on its own, so each
    # partition's first commit stores at most 500, below where its first produce ended
    # (1,575 and 2,425 records). With batches of 1,000 a batch short of rejected records
    # could wait for the next one, and the first commit could already pass that point.
    config = k2.config_with("small-commits.toml", commit={"max_records": 400})
    config.write_text(config.read_text().replace("[pipeline]\n", "[pipeline]\nbatch_records = 500\n"))
    first = k2.produce(k2.trades, 4_000, partitions=2, symbols=20, seed=72, **INJECT)
    time.sleep(1.5)
    middle_ms = int(time.time() * 1000)
    time.sleep(1.5)
    k2.produce(k2.trades, 4_000, partitions=2, symbols=20, seed=73)
    k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    full, full_events = keys(k2), events(k2)
    assert sum(full.values()) == 8_000 - INJECT["invalid"] and max(full.values()) == 1
    snapshot = status(k2)["last_snapshot"]["snapshot_id"]

    args = ["rewind", "--config", str(config), "--topic", k2.trades, "--to-timestamp", str(middle_ms)]
    dry = k2.run_json(*args)
    assert not dry["executed"] and status(k2)["last_snapshot"]["snapshot_id"] == snapshot, "a dry run changed the table"
    # The second batch starts where the first ended, in each partition.
    assert dry["requested"] == first["partitions"]
    plan = k2.run_json(*args, "--execute")
    assert plan["executed"] and plan["snapshot_after"] not in (None, snapshot)
    start = {int(p): o for p, o in plan["start"].items()}
    for p, o in start.items():
        assert 0 <= o <= first["partitions"][str(p)], plan
    assert sum(start.values()) > 0, plan

    # The table now holds exactly the records before the start offsets, and the group agrees.
    kept = keys(k2)
    assert kept == Counter({(p, o): 1 for (p, o) in full if o < start[p]})
    assert {e for e in events(k2)} == {e for e in full_events if e[1] < start[e[0]]}
    st = status(k2)
    # A partition the kept snapshot never stored starts at the log's start (through the group).
    stored = {p["partition"]: p["table_offset"] if p["table_offset"] is not None else p["low_watermark"]
              for p in st["partitions"]}
    assert stored == start
    assert {p["partition"]: p["group_offset"] for p in st["partitions"]} == start

    again = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    assert again["consumed"] == sum(p["high_watermark"] - start[p["partition"]] for p in st["partitions"])
    assert keys(k2) == full, "the re-ingested table differs from the original"
    assert events(k2) == full_events
    assert status(k2)["total_lag"] == 0

    # The snapshot the rewind kept is still in the history: planning a rewind to it shows
    # the same start; --to-table plans no table change and the group at the table's offsets.
    back = k2.run_json("rewind", "--config", str(config), "--topic", k2.trades, "--to-snapshot", str(plan["snapshot_after"]))
    assert back["start"] == plan["start"] and not back["executed"]
    final = status(k2)
    same = k2.run_json("rewind", "--config", str(config), "--topic", k2.trades, "--to-table")
    assert same["snapshot_after"] == same["snapshot_before"] == final["last_snapshot"]["snapshot_id"]
    assert same["start"] == {str(p["partition"]): p["table_offset"] for p in final["partitions"]}


@pytest.mark.parametrize("catalog", ["sql", "rest"])
@pytest.mark.parametrize("point", ["rollback-staged", "rollback-dropped"])
def test_a_truncate_crashing_mid_rollback_leaves_the_old_table_or_the_new_never_an_empty_one(k2, point):
    k2.produce(k2.trades, 2_000, partitions=2, symbols=20, seed=75)
    k2.consume(k2.trades)
    full = keys(k2)
    uuid = k2.table("trades").metadata.table_uuid
    truncate = ["truncate", "--config", str(k2.config), "--topic", k2.trades, "--confirm", f"{k2.namespace}.trades", "--execute"]
    crashed = k2.run(*truncate, check=False, env={"K2_FAILPOINT": point})
    assert crashed.returncode != 0 and f"failpoint {point}" in crashed.stderr, crashed.stderr[-2000:]

    # consume must find the table (finishing the rollback if it was dropped), never create one.
    after_crash = k2.consume(k2.trades)
    table = k2.table("trades")
    assert table.metadata.table_uuid == uuid, "a new table replaced the one being rolled back"
    if point == "rollback-staged":
        assert keys(k2) == full, "before the drop the old table stays as it was"
    else:
        assert table.current_snapshot() is None, "after the drop the rolled-back version takes the name"
    assert after_crash["written"] == 0

    # The truncate run again completes, and the next run ingests every record once.
    k2.run(*truncate)
    k2.consume(k2.trades)
    assert keys(k2) == full
    staged = [t for _, t in k2.catalog().list_tables(k2.namespace) if t.endswith("__k2_rollback")]
    assert not staged, f"staging entries left behind: {staged}"


def test_truncate_needs_confirmation_and_an_empty_group_then_restarts_where_told(k2):
    k2.produce(k2.trades, 2_000, partitions=2, symbols=20, seed=74)
    k2.consume(k2.trades)
    full = keys(k2)
    assert sum(full.values()) == 2_000
    base = ["truncate", "--config", str(k2.config), "--topic", k2.trades]

    refused = k2.run(*base, "--execute", check=False)
    assert refused.returncode != 0 and "--confirm market.trades" in refused.stderr
    wrong = k2.run(*base, "--confirm", "market.quotes", "--execute", check=False)
    assert wrong.returncode != 0 and "does not name table market.trades" in wrong.stderr

    # A running consumer keeps the group busy: nothing may move under it.
    proc = k2.spawn_consume(k2.trades)
    try:
        deadline = time.monotonic() + 60
        while not k2.run_json(*base)["members"]:
            assert time.monotonic() < deadline, "the consumer never joined the group"
            time.sleep(0.5)
        busy = k2.run(*base, "--confirm", "market.trades", "--execute", check=False)
        assert busy.returncode != 0 and "active member" in busy.stderr, busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert keys(k2) == full

    plan = k2.run_json(*base, "--confirm", "market.trades", "--execute")
    assert plan["executed"] and plan["snapshot_after"] is None
    assert sum(keys(k2).values()) == 0
    k2.consume(k2.trades)
    assert keys(k2) == full, "after truncate --restart-from earliest every record is back once"

    k2.run_json(*base, "--confirm", "trades", "--restart-from", "latest", "--execute")
    assert sum(keys(k2).values()) == 0
    k2.produce(k2.trades, 500, partitions=2, symbols=20, seed=75)
    k2.consume(k2.trades)
    fresh = keys(k2)
    assert sum(fresh.values()) == 500 and max(fresh.values()) == 1
    assert not set(fresh) & set(full), "records from before the truncate came back"


def test_json_logs_have_one_commit_line_per_commit_and_progress_lines(k2):
    k2.produce(k2.trades, 3_000, partitions=2, symbols=20, seed=76)
    config = k2.config_with("json-logs.toml", commit={"max_records": 1_000})
    proc = k2.run("--log-format", "json", "consume", "--config", str(config), "--topic", k2.trades,
                  "--progress", "lines", "--progress-interval", "1", "--output", "json")
    summary = json.loads(proc.stdout)
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    commits = [l for l in lines if l["message"] == "committed"]
    assert len(commits) == summary["commits"] >= 3
    assert sum(c["records"] for c in commits) == summary["written"] == 3_000
    assert all("duration_ms" in c and "snapshot_id" in c for c in commits)
    # A commit may store offsets alone (e.g. the last records were already written).
    assert all(c["files"] >= 1 and c["bytes"] > 0 for c in commits if c["records"] > 0)
    # Offset ranges cover every offset once, partition by partition.
    covered = Counter()
    for c in commits:
        for part in c["offsets"].split():
            p, rng = part.split(":")
            first, nxt = rng.split("..")
            covered.update((int(p), o) for o in range(int(first), int(nxt)))
    assert covered == keys(k2)
    progress = [l for l in lines if l["message"] == "progress"]
    assert progress, "no progress line in a run longer than the interval"
    assert progress[-1]["consumed"] == 3_000 and progress[-1]["behind"] == 0


def test_progress_bar_on_a_terminal(k2):
    k2.produce(k2.trades, 2_000, partitions=2, symbols=20, seed=77)
    master, slave = pty.openpty()
    # A terminal as a person has it: a size, and TERM set (without it the bar stays hidden).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    out = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            out.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run(
        [str(k2.binary), "consume", "--config", str(k2.config), "--topic", k2.trades, "--output", "json"],
        stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "K2_LOG": "info", "TERM": "xterm"},
    )
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["consumed"] == 2_000
    text = out.decode(errors="replace")
    assert "2,000/2,000 msgs" in text or "2000/2000 msgs" in text, text[-2000:]
