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
        # Everything read, and committed once the interval (1 s) passed.
        while samples.get(f"k2_messages_consumed_total{{{t}}}") != COUNT or \
                samples.get(f"k2_commits_total{{{t},{table}}}", 0) < 1:
            assert proc.poll() is None, "consume exited"
            assert time.monotonic() < deadline, f"consumed never reached {COUNT}: {samples}"
            time.sleep(0.5)
            try:
                samples = scrape(port)
            except OSError:
                pass
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
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    summary = json.loads(out)
    assert summary["written"] == COUNT - INJECT["malformed"] - INJECT["invalid"]
