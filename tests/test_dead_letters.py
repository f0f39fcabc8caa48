"""Bad records go to the dead-letter topic with their reasons, and the policies per topic apply."""

from k2 import read_manifest

COUNT = 3_000
INJECT = dict(malformed=5, invalid=4, duplicates=3, gaps=2)


def produce(k2, tmp_path) -> list[dict]:
    manifest = tmp_path / "manifest.jsonl"
    k2.produce(k2.trades, COUNT, manifest=manifest, partitions=2, symbols=30, seed=31, **INJECT)
    return read_manifest(manifest)


def keyed(records, marks) -> dict:
    return {(m["partition"], m["offset"]): m for m in records if m["mark"] in marks}


def test_rejected_and_undecodable_records_go_to_the_dlq_with_their_reasons(k2, tmp_path):
    records = produce(k2, tmp_path)

    summary = k2.consume(k2.trades)

    dlq = f"{k2.trades}.dlq"
    assert summary["dlq_topic"] == dlq
    assert summary["dead_lettered"] == INJECT["malformed"] + INJECT["invalid"]
    letters = k2.read_topic(dlq)
    expected = keyed(records, {"malformed", "invalid"})
    by_source = {(int(l["headers"]["k2.source.partition"]), int(l["headers"]["k2.source.offset"])): l for l in letters}
    assert len(letters) == len(by_source) == len(expected)
    assert set(by_source) == set(expected)
    for key, letter in by_source.items():
        h, m = letter["headers"], expected[key]
        assert h["k2.source.topic"] == k2.trades
        assert h["k2.validator.name"] == "trades" and h["k2.validator.version"] == "0.1.0"
        assert letter["key"] == m["key"].encode(), "the original key"
        assert h["sample.index"] == str(m["i"]), "the original headers"
        assert letter["value"], "the original body"
        if m["mark"] == "malformed":
            assert h["k2.reason.code"] == "undecodable" and h["k2.reason.message"].startswith("avro")
        else:
            assert h["k2.reason.code"] == "price-not-positive" and "is not > 0" in h["k2.reason.message"]
    # The table holds exactly the rest; duplicates are kept by default.
    assert set(k2.table_keys("trades")) == set(keyed(records, {"ok", "gap", "duplicate"}))


def test_duplicates_to_the_dlq_invalid_skipped(k2, tmp_path):
    records = produce(k2, tmp_path)
    config = k2.config_for_trades("dup.toml", 'on_duplicate = "dlq"\non_invalid = "skip"\n')

    summary = k2.run_json("consume", "--config", str(config), "--topic", k2.trades)

    assert summary["duplicates_set_aside"] == INJECT["duplicates"]
    assert summary["dead_lettered"] == INJECT["duplicates"]
    letters = k2.read_topic(f"{k2.trades}.dlq")
    sources = {(int(l["headers"]["k2.source.partition"]), int(l["headers"]["k2.source.offset"])) for l in letters}
    assert sources == set(keyed(records, {"duplicate"}))
    assert {l["headers"]["k2.reason.code"] for l in letters} == {"sequence-duplicate"}
    assert set(k2.table_keys("trades")) == set(keyed(records, {"ok", "gap"}))


def test_on_gap_fail_stops_at_the_gap_without_committing(k2, tmp_path):
    records = produce(k2, tmp_path)
    config = k2.config_for_trades("gap.toml", 'on_gap = "fail"\n')

    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)

    assert proc.returncode != 0
    assert "sequence gap in" in proc.stderr and 'on_gap = "fail"' in proc.stderr, proc.stderr[-2000:]
    gaps = keyed(records, {"gap"})
    assert any(f"partition {p} offset {o}: sequence gap" in proc.stderr for p, o in gaps), proc.stderr[-2000:]
    assert not k2.table("trades").snapshots()


def test_on_invalid_fail_names_the_record(k2, tmp_path):
    produce(k2, tmp_path)
    config = k2.config_for_trades("invalid.toml", 'on_invalid = "fail"\n')

    proc = k2.run("consume", "--config", str(config), "--topic", k2.trades, check=False)

    assert proc.returncode != 0
    assert "stopping without committing (on_invalid" in proc.stderr, proc.stderr[-2000:]
    assert not k2.table("trades").snapshots()
