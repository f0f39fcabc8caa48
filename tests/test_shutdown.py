"""SIGTERM mid-run: a clean exit within the bound, and a restart adds nothing twice."""

import collections
import json
import signal
import subprocess
import time

COUNT = 150_000
SHUTDOWN_TIMEOUT_MS = 20_000


def wait_for_line(log, needle, proc, timeout):
    """Waits until `needle` appears in the file `log` written by `proc`; its stderr goes only there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text():
            return
        assert proc.poll() is None, f"exited {proc.returncode} before {needle!r}:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)
    raise AssertionError(f"no {needle!r} within {timeout} s:\n{log.read_text()[-3000:]}")


def test_sigterm_mid_run_commits_and_a_restart_completes_exactly(k2, tmp_path):
    k2.produce(k2.trades, COUNT, partitions=3, symbols=50, seed=4)
    # Small commits, so the signal can wait for one without waiting long: it then lands after
    # progress was made and well before the 150,000 records are read.
    config = k2.config_with("shutdown.toml", commit={"max_records": 5_000})
    text = config.read_text().replace("[pipeline]\n", f"[pipeline]\nshutdown_timeout_ms = {SHUTDOWN_TIMEOUT_MS}\n", 1)
    config.write_text(text)
    log = tmp_path / "consume.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [str(k2.binary), "consume", "--config", str(config), "--topic", k2.trades, "--follow", "--output", "json"],
            stdout=subprocess.PIPE, stderr=err, text=True, env={"PATH": "/usr/bin:/bin", "K2_LOG": "info"},
        )
    wait_for_line(log, " committed table=", proc, timeout=120)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=SHUTDOWN_TIMEOUT_MS / 1000 + 30)
    took = time.monotonic() - signalled

    assert proc.returncode == 0, log.read_text()[-3000:]
    # The bound is the final commit's; leaving the group and reading positions come after it.
    assert took < SHUTDOWN_TIMEOUT_MS / 1000 + 10, f"shutdown took {took:.1f} s, beyond shutdown_timeout_ms"
    first = json.loads(out)
    assert first["commits"] >= 2, "a commit before the signal and the final one"
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


def test_sigterm_while_a_commit_is_stuck_exits_within_the_bound_and_loses_nothing(k2, tmp_path):
    k2.produce(k2.trades, 2_000, partitions=1, symbols=10, seed=5)
    config = k2.config_with("stuck.toml", commit={"max_records": 1_000})
    config.write_text(config.read_text().replace("[pipeline]\n", "[pipeline]\nshutdown_timeout_ms = 3000\n", 1))
    log = tmp_path / "stuck.log"
    # The commit stalls for 10 minutes (as on a hung catalog): only the watchdog can end the run.
    env = {"PATH": "/usr/bin:/bin", "K2_LOG": "info", "K2_FAILPOINT": "stall-after-files-closed",
           "K2_FAILPOINT_STALL_MS": "600000"}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [str(k2.binary), "consume", "--config", str(config), "--topic", k2.trades, "--follow", "--output", "json"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
        )
    wait_for_line(log, "failpoint after-files-closed: stalling", proc, timeout=120)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("SIGTERM was not honoured while the commit was stuck:\n" + log.read_text()[-3000:])
    assert proc.returncode == 1, log.read_text()[-3000:]
    assert "shutdown took longer than 3000 ms" in log.read_text()

    rest = k2.consume(k2.trades)
    keys = k2.table_keys("trades")
    assert len(keys) == len(set(keys)) == 2_000
    assert rest["consumed"] == 2_000, "nothing was committed before the stall, so all is read again"
