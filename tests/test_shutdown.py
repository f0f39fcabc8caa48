"""SIGTERM mid-run: a clean exit within the bound, and a restart adds nothing twice."""

import collections
import json
import signal
import subprocess
import threading
import time

COUNT = 150_000


def test_sigterm_mid_run_commits_and_a_restart_completes_exactly(k2):
    k2.produce(k2.trades, COUNT, partitions=3, symbols=50, seed=4)
    proc = subprocess.Popen(
        [str(k2.binary), "consume", "--config", str(k2.config), "--topic", k2.trades, "--follow", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", "K2_LOG": "info"},
    )
    assigned = threading.Event()
    stderr_lines = []

    def watch():
        for line in proc.stderr:
            stderr_lines.append(line)
            if "partitions assigned" in line:
                assigned.set()

    threading.Thread(target=watch, daemon=True).start()
    assert assigned.wait(60), "no partition assigned:\n" + "".join(stderr_lines)
    time.sleep(0.3)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - signalled

    assert proc.returncode == 0, "".join(stderr_lines[-30:])
    assert took < 30, f"shutdown took {took:.1f} s, beyond the 30 s bound"
    first = json.loads(out)
    assert 0 < first["consumed"] < COUNT, f"the signal did not land mid-run (consumed {first['consumed']})"
    rows = k2.table("trades").scan().to_arrow()
    assert rows.num_rows == first["written"] == first["consumed"]

    rest = k2.consume(k2.trades)
    assert first["consumed"] + rest["consumed"] == COUNT
    rows = k2.table("trades").scan().to_arrow()
    keys = list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))
    assert len(keys) == COUNT
    assert max(collections.Counter(keys).values()) == 1
    assert sum(rest["lag"].values()) == 0
