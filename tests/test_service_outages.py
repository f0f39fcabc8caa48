"""Services failing mid-run: the catalog killed, its answer lost, its database locked, the broker killed. Each run ends exact."""

import collections
import http.client
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.parse

import pytest

from k2 import K2, REST_URI, read_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICES = [os.path.join(ROOT, "dev", "services.sh")]
FAST = {"max_records": 500, "interval_ms": 500}


def services(*args):
    subprocess.run(["bash", *SERVICES, *args], check=True, timeout=240, capture_output=True)


def produce(k2, tmp_path, count, seed, name):
    """`count` trades on one partition with gaps; returns the manifest's records. A second
    call starts every symbol's sequence again, which the validator reports too."""
    manifest = tmp_path / f"{name}.jsonl"
    k2.produce(k2.trades, count, manifest=manifest, partitions=1, symbols=8, seed=seed, gaps=count // 50)
    return read_manifest(manifest)


def wait_until(what, check, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while not check():
        assert proc is None or proc.poll() is None, f"consume exited {proc.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.5)


def row_count(k2) -> int:
    try:
        snapshot = k2.table("trades").current_snapshot()
    except Exception:  # not created yet, or the catalog is down
        return 0
    return int(snapshot.summary["total-records"]) if snapshot else 0


def stop(proc) -> dict:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, f"consume exited {proc.returncode}"
    return json.loads(out)


def events(k2) -> list[tuple[int, int, str]]:
    rows = k2.table("trades_events").scan().to_arrow()
    return list(zip(rows["partition"].to_pylist(), rows["offset"].to_pylist(), rows["kind"].to_pylist()))


def reference_events(k2, tmp_path) -> list[tuple[int, int, str]]:
    """The events of a run without faults over the same log: another group into a fresh SQLite catalog."""
    workdir = tmp_path / "reference"
    workdir.mkdir()
    ref = K2(binary=k2.binary, bootstrap=k2.bootstrap, root=k2.root, workdir=workdir, run_id=k2.run_id,
             sample_binary=k2.sample_binary)
    ref.config.write_text(ref.config.read_text().replace(f'group_id = "{ref.group}"', f'group_id = "{ref.group}-ref"'))
    ref.consume(ref.trades)
    return events(ref)


def assert_exact(k2, tmp_path, records):
    """Every record in the table once, and the same events as a run without faults."""
    keys = k2.table_keys("trades")
    assert len(keys) == len(set(keys)), f"{len(keys) - len(set(keys))} rows written twice"
    assert set(keys) == {(m["partition"], m["offset"]) for m in records}
    got, want = events(k2), reference_events(k2, tmp_path)
    assert len(got) == len(set(got)), "an event recorded twice"
    assert {e for e in want if e[2] == "gap"}, "the reference run reported no gap: the test data has none"
    assert sorted(got) == sorted(want)


def run_through(k2, tmp_path, seed, begin, end, sign, hold):
    """A follow run commits 1,000 records; then `begin()` (the fault), 1,000 more records, `sign`
    in its log (it met the fault), `hold` seconds, `end()`. Returns its summary once all 2,000
    are committed, the records produced and its log."""
    config = k2.config_with("fault.toml", commit=FAST)
    log = tmp_path / "consume.log"
    records = produce(k2, tmp_path, 1_000, seed, "first")
    proc = k2.spawn_consume(k2.trades, config, log)
    wait_until("first commit", lambda: row_count(k2) == 1_000, 120, proc)
    try:
        begin()
        records += produce(k2, tmp_path, 1_000, seed + 1, "second")
        wait_until(f"{sign!r} in the log", lambda: sign in log.read_text(), 90, proc)
        time.sleep(hold)
    finally:
        end()
    wait_until("commit after the fault", lambda: row_count(k2) == 2_000, 180, proc)
    return stop(proc), records, log.read_text()


@pytest.mark.parametrize("catalog", ["rest"])
def test_a_rest_catalog_down_for_30_s_mid_run_is_ridden_out(k2, tmp_path):
    summary, records, _ = run_through(k2, tmp_path, 1, lambda: services("kill", "rest"),
                                      lambda: services("up", "--rest"), "commit failed; trying again", 30)
    assert summary["commit_retries"] >= 1
    assert_exact(k2, tmp_path, records)


class LosesOneAnswer(http.server.BaseHTTPRequestHandler):
    """Forwards to the REST catalog; the answer to the second commit of table `trades` is
    replaced by a 504 after the catalog applied it: a commit whose outcome is unknown."""

    commits = 0
    lock = threading.Lock()

    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        target = urllib.parse.urlsplit(REST_URI)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        lose = False
        if self.command == "POST" and self.path.rstrip("/").endswith("/tables/trades") and answer.status == 200:
            with LosesOneAnswer.lock:
                LosesOneAnswer.commits += 1
                lose = LosesOneAnswer.commits == 2
        if lose:
            data = json.dumps({"error": {"message": "gateway timeout", "type": "GatewayTimeout", "code": 504}}).encode()
            self.send_response(504)
        else:
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_HEAD = forward

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("catalog", ["rest"])
def test_a_commit_whose_answer_was_lost_is_applied_once(k2, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LosesOneAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = k2.config_with("proxy.toml", commit={"max_records": 1_000})
        config.write_text(config.read_text().replace(f'uri = "{REST_URI}"', f'uri = "http://127.0.0.1:{server.server_port}"'))
        records = produce(k2, tmp_path, 3_000, 3, "all")
        summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)
    finally:
        server.shutdown()
        server.server_close()
    assert LosesOneAnswer.commits >= 3, "the commit whose answer was lost was not the second of several"
    assert summary["commit_retries"] == 1
    # Found by its id: neither taken for another writer's commit nor dropped and read again.
    assert summary["commit_conflicts"] == 0 and summary["dropped_already_committed"] == 0
    assert summary["written"] == 3_000
    assert_exact(k2, tmp_path, records)


def test_a_sqlite_catalog_locked_for_10_s_is_waited_out(k2, tmp_path):
    holder = []

    def lock():
        holder.append(sqlite3.connect(k2.database, timeout=30, isolation_level=None))
        holder[0].execute("BEGIN EXCLUSIVE")

    def release():
        holder[0].execute("ROLLBACK")
        holder[0].close()

    summary, records, log = run_through(k2, tmp_path, 4, lock, release,
                                        "commit failed; trying again", 10)
    assert summary["commit_retries"] >= 1
    assert "database is locked" in log
    assert_exact(k2, tmp_path, records)


def test_a_broker_killed_and_restarted_mid_run_loses_and_repeats_nothing(k2, tmp_path):
    config = k2.config_with("broker.toml", commit=FAST)
    log = tmp_path / "consume.log"
    records = produce(k2, tmp_path, 1_000, 6, "first")
    proc = k2.spawn_consume(k2.trades, config, log)
    try:
        wait_until("first commit", lambda: row_count(k2) == 1_000, 120, proc)
        services("kill", "kafka")
        time.sleep(5)
    finally:
        services("up")
    records += produce(k2, tmp_path, 1_000, 7, "second")
    wait_until("commit after the restart", lambda: row_count(k2) == 2_000, 180, proc)
    summary = stop(proc)
    assert summary["broker_outages"] >= 1, "the run never saw the broker go"
    assert_exact(k2, tmp_path, records)
    assert collections.Counter(k2.high_watermarks(k2.trades).values()) == collections.Counter([2_000])


@pytest.mark.parametrize("catalog", ["rest"])
def test_an_object_store_down_for_30_s_mid_run_is_ridden_out_by_reading_again(k2, tmp_path):
    """Files that could not be written are gone from memory: the run drops what it held,
    reads it again from the table's offsets and commits once the store is back."""
    summary, records, _ = run_through(k2, tmp_path, 8, lambda: services("kill", "s3"),
                                      lambda: services("up", "--rest"), "writing data files failed", 30)
    assert summary["commit_retries"] >= 1
    assert summary["written"] == 2_000, "records dropped and read again are counted once"
    assert_exact(k2, tmp_path, records)


@pytest.fixture
def small_filesystem(tmp_path):
    """An 8 MiB tmpfs for the warehouse; skipped (and reported so) where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_warehouse_filesystem_is_waited_out_once_space_is_freed(k2, tmp_path, small_filesystem):
    k2.warehouse = small_filesystem
    filler = small_filesystem / "filler"

    def fill():
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    summary, records, _ = run_through(k2, tmp_path, 10, fill, filler.unlink, "No space left", 5)
    assert summary["commit_retries"] >= 1
    assert_exact(k2, tmp_path, records)
