"""A validator that traps on some records, through the real pipeline: `isolate` rejects just those, `fail` stops."""

from k2 import read_manifest

HOSTILE = "guest/target/wasm32-wasip2/release/k2_hostile_validator.wasm"
POISON = "NVDA"


def hostile_config(k2, name: str, policy_lines: str, mode: str = "poison-panic"):
    """The test config with the trades topic's validator swapped for the hostile one,
    by default one that panics on every POISON trade and tracks sequences of the others."""
    text = k2.config.read_text()
    trades_validator = f'module = "{k2.root / "guest/target/wasm32-wasip2/release/k2_trades_validator.wasm"}"\n'
    assert trades_validator in text
    hostile = (
        f'module = "{k2.root / HOSTILE}"\n'
        f'settings = {{ mode = "{mode}", poison = "{POISON}" }}\n' + policy_lines
    )
    path = k2.workdir / name
    path.write_text(text.replace(trades_validator, hostile, 1))
    return path


def test_isolate_rejects_only_the_records_the_validator_fails_on(k2, tmp_path):
    manifest_path = tmp_path / "manifest.jsonl"
    k2.produce(k2.trades, 3_000, manifest=manifest_path, partitions=2, symbols=40, seed=21)
    records = read_manifest(manifest_path)
    poisoned = {(m["partition"], m["offset"]) for m in records if m["record"]["symbol"] == POISON}
    assert 20 < len(poisoned) < 200
    config = hostile_config(k2, "isolate.toml", 'on_failure = "isolate"\nisolate_max_records = 1000\n')

    summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)

    assert summary["consumed"] == 3_000
    assert summary["rejected_by_code"] == {"validator-failed": len(poisoned)}
    assert summary["validator_isolated"] == len(poisoned)
    assert summary["validator_restarts"] >= len(poisoned)
    assert summary["written"] == 3_000 - len(poisoned)
    # Every restarted instance was restored to the state the last good call left: the
    # other symbols' sequences run on without a single gap or reset.
    assert summary["sequence_events"] == {}
    expected = {(m["partition"], m["offset"]) for m in records} - poisoned
    keys = k2.table_keys("trades")
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert sum(summary["lag"].values()) == 0


def test_fail_stops_the_topic_without_committing_its_offsets(k2):
    k2.produce(k2.trades, 1_000, partitions=1, symbols=10, seed=22)
    config = hostile_config(k2, "fail.toml", "")  # on_failure defaults to "fail"

    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)

    assert proc.returncode != 0
    error = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(error) == 1, proc.stderr[-3000:]
    assert "validator failed; stopping the topic without committing its offsets" in error[0]
    assert "trapped in validate (partition 0, offsets 0..)" in error[0]
    assert "panicked" not in proc.stderr, "the host itself must not panic"
    # Nothing of the failed batch reached the table, and the group did not move on.
    assert not k2.table("trades").snapshots()
    again = k2.consume(k2.trades)  # the real trades validator now consumes everything
    assert again["consumed"] == 1_000 and again["written"] == 1_000


def test_a_module_that_does_not_match_its_pin_is_refused_at_start(k2):
    wasm = k2.root / "guest/target/wasm32-wasip2/release/k2_trades_validator.wasm"
    text = k2.config.read_text().replace(f'module = "{wasm}"\n', f'module = "{wasm}"\nsha256 = "{"0" * 64}"\n', 1)
    config = k2.workdir / "pinned.toml"
    config.write_text(text)

    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)

    assert proc.returncode != 0
    assert f"but the config pins {'0' * 64}; refusing to load it" in proc.stderr
    assert "k2_trades_validator.wasm" in proc.stderr


def test_a_validator_that_sleeps_is_stopped_at_once_naming_the_import(k2):
    """Before the sandbox denied WASI's clocks, `std::thread::sleep(600 s)` blocked the host
    thread past every deadline, and SIGTERM was not seen."""
    k2.produce(k2.trades, 100, partitions=1, symbols=5, seed=23)
    config = hostile_config(k2, "sleep.toml", "", mode="sleep")

    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False, timeout=120)

    assert proc.returncode != 0
    error = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(error) == 1, proc.stderr[-3000:]
    assert "trapped in validate (partition 0, offsets 0..)" in error[0]
    assert "called `wasi:clocks/monotonic-clock@" in error[0] and "which the sandbox denies" in error[0]
    assert not k2.table("trades").snapshots()
