"""The Prometheus endpoint of a running consume: counters equal the run's known counts."""

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request

INJECT = dict(gaps=4, duplicates=3, malformed=5, invalid=6)
COUNT = 5_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        m = re.match(r"^(k2_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            samples[m.group(1)] = float(m.group(2))
    return samples


def test_counters_equal_the_run(k2):
    k2.produce(k2.trades, COUNT, partitions=2, symbols=20, seed=41, **INJECT)
    port = free_port()
    config = k2.config_with("metrics.toml", commit={"interval_ms": 1000})
    proc = subprocess.Popen(
        [str(k2.binary), "consume", "--config", str(config), "--topic", k2.trades, "--follow",
         "--metrics-addr", f"127.0.0.1:{port}", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={"PATH": "/usr/bin:/bin"},
    )
    t = f'topic="{k2.trades}"'
    try:
        deadline = time.monotonic() + 120
        samples = {}
        table = 'table="market.trades"'
        lags = {}
        # Everything read, committed once the interval (1 s) passed, and the lag gauges
        # (refreshed every second) caught up with the commit.
        while samples.get(f"k2_messages_consumed_total{{{t}}}") != COUNT or \
                samples.get(f"k2_commits_total{{{t},{table}}}", 0) < 1 or len(lags) != 2 or any(lags.values()):
            assert proc.poll() is None, "consume exited"
            assert time.monotonic() < deadline, f"consumed never reached {COUNT}: {samples}"
            time.sleep(0.5)
            try:
                samples = scrape(port)
            except OSError:
                pass
            lags = {k: v for k, v in samples.items() if k.startswith("k2_consumer_lag{")}
        set_aside = INJECT["malformed"] + INJECT["invalid"]
        assert samples[f"k2_records_written_total{{{t},{table}}}"] == COUNT - set_aside
        assert samples[f"k2_decode_errors_total{{{t}}}"] == INJECT["malformed"]
        assert samples[f'k2_records_rejected_total{{{t},reason="price-not-positive"}}'] == INJECT["invalid"]
        assert samples[f'k2_sequence_events_total{{{t},kind="gap"}}'] == INJECT["gaps"]
        assert samples[f'k2_sequence_events_total{{{t},kind="duplicate"}}'] == INJECT["duplicates"]
        assert samples[f'k2_records_dead_lettered_total{{{t},reason="undecodable"}}'] == INJECT["malformed"]
        assert samples[f'k2_records_dead_lettered_total{{{t},reason="price-not-positive"}}'] == INJECT["invalid"]
        assert samples[f"k2_commit_duration_seconds_count{{{table}}}"] == samples[f"k2_commits_total{{{t},{table}}}"]
        assert abs(samples[f"k2_last_commit_timestamp_seconds{{{table}}}"] - time.time()) < 60
        assert set(lags) == {f'k2_consumer_lag{{{t},partition="{p}"}}' for p in (0, 1)}
        # Every decoded record went through the validator in some batch.
        batches = samples[f"k2_batch_records_count{{{t}}}"]
        assert samples[f"k2_batch_records_sum{{{t}}}"] == COUNT - INJECT["malformed"]
        assert samples[f"k2_validator_call_duration_seconds_count{{{t}}}"] == batches >= 2
        assert samples[f"k2_validator_traps_total{{{t}}}"] == 0
        assert samples[f"k2_validator_restarts_total{{{t}}}"] == 0
        assert samples[f"k2_data_files_written_total{{{table}}}"] >= 1
        assert samples[f"k2_data_bytes_written_total{{{table}}}"] > 0
        for errors in ("k2_write_errors_total", "k2_commit_errors_total", "k2_commit_conflicts_total"):
            assert samples[f"{errors}{{{table}}}"] == 0, errors
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    summary = json.loads(out)
    assert summary["written"] == COUNT - INJECT["malformed"] - INJECT["invalid"]
