"""End to end on the real broker: produce sample trades, `k2-ingest consume`, read the table with pyiceberg."""

import collections
import datetime
import decimal
import json
import random

import pytest

from k2 import read_manifest

COUNT = 10_000
INJECT = dict(gaps=6, duplicates=5, malformed=7, invalid=4)
LANDED = {"ok", "gap", "duplicate"}  # marks of records that must be in the table


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_trades_land_exactly_once_with_the_produced_values(k2, tmp_path):
    manifest_path = tmp_path / "manifest.jsonl"
    produced = k2.produce(k2.trades, COUNT, manifest=manifest_path, partitions=3, symbols=60, seed=11, **INJECT)
    assert produced["produced"] == COUNT
    assert len(produced["partitions"]) == 3
    for kind, n in INJECT.items():
        assert produced[kind] == n and len(produced["positions"][kind]) == n

    summary = k2.consume(k2.trades)

    assert summary["consumed"] == COUNT
    assert summary["undecodable"] == INJECT["malformed"]
    assert summary["rejected"] == INJECT["invalid"]
    assert summary["rejected_by_code"] == {"price-not-positive": INJECT["invalid"]}
    assert summary["written"] == COUNT - INJECT["malformed"] - INJECT["invalid"]
    # The trades validator sees each injected gap and duplicate exactly once, nothing else.
    assert summary["sequence_events"] == {"gap": INJECT["gaps"], "duplicate": INJECT["duplicates"]}
    assert summary["snapshot_id"] is not None
    assert summary["lag"] == {p: 0 for p in produced["partitions"]}
    assert summary["offsets"] == {p: n for p, n in produced["partitions"].items()}

    manifest = read_manifest(manifest_path)
    expected = {(m["partition"], m["offset"]): m for m in manifest if m["mark"] in LANDED}
    assert len(expected) == summary["written"]

    table = k2.table("trades")
    rows = table.scan().to_arrow()
    assert rows.num_rows == len(expected)

    keys = list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))
    counts = collections.Counter(keys)
    assert max(counts.values()) == 1, "a (partition, offset) appears more than once"
    assert set(keys) == set(expected), "the table's (partition, offset) pairs differ from what was produced"

    by_key = {k: i for i, k in enumerate(keys)}
    for key in random.Random(5).sample(sorted(expected), 200):
        row = rows.slice(by_key[key], 1).to_pylist()[0]
        want = expected[key]["record"]
        assert row["symbol"] == want["symbol"]
        assert row["exchange"] == want["exchange"]
        assert row["price"] == decimal.Decimal(want["price"])
        assert row["size"] == decimal.Decimal(want["size"])
        assert row["side"] == want["side"]
        assert row["trade_id"] == want["trade_id"]
        assert row["sequence"] == want["sequence"]
        assert row["conditions"] == want["conditions"]
        ts = row["exchange_ts"]
        assert ts.tzinfo is not None
        micros = (ts - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
        assert micros == want["exchange_ts"]

    # The snapshot summary carries the next offset of every partition, with the data.
    stored = json.loads(table.current_snapshot().summary.additional_properties[f"k2.offsets.{k2.trades}"])
    assert stored == {str(p): n for p, n in produced["partitions"].items()}

    # A second run finds nothing new and adds nothing.
    again = k2.consume(k2.trades)
    assert again["consumed"] == 0 and again["written"] == 0
    assert k2.table("trades").scan().to_arrow().num_rows == len(expected)


def test_max_messages_stops_early_and_the_rest_follows(k2):
    k2.produce(k2.trades, 3_000, partitions=3, symbols=30, seed=3)
    first = k2.consume(k2.trades, "--max-messages", "1000")
    assert first["consumed"] == 1000 and first["written"] == 1000
    assert sum(first["lag"].values()) == 2000
    rest = k2.consume(k2.trades)
    assert rest["consumed"] == 2000 and sum(rest["lag"].values()) == 0
    rows = k2.table("trades").scan().to_arrow()
    assert rows.num_rows == 3000
    keys = set(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))
    assert len(keys) == 3000


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_confluent_framed_records_decode_through_their_schema_id(k2):
    produced = k2.produce(k2.framed, 2_000, partitions=2, symbols=20, seed=9, malformed=3)
    assert produced["framing"] == "confluent"
    summary = k2.consume(k2.framed)
    assert summary["undecodable"] == 3
    assert summary["written"] == 2_000 - 3
    assert k2.table("trades_framed").scan().to_arrow().num_rows == 2_000 - 3


def test_topic_without_validator_writes_every_decoded_quote(k2):
    k2.produce(k2.quotes, 1_500, partitions=1, symbols=10, seed=1, invalid=5)
    summary = k2.consume(k2.quotes)
    # No validator: crossed quotes are not rejected, and no sequence events are reported.
    assert summary["rejected"] == 0 and summary["sequence_events"] == {}
    assert summary["written"] == 1_500
    rows = k2.table("quotes").scan().to_arrow()
    assert rows.num_rows == 1_500
    assert rows.schema.field("bid_price").type.scale == 8


def test_bad_config_is_one_line_naming_the_key(k2, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(k2.config.read_text().replace("[pipeline]", "[pipeline]\nbatch_size = 5"))
    proc = k2.run("consume", "--config", str(bad), "--topic", k2.trades, check=False)
    assert proc.returncode != 0
    assert "unknown field `batch_size`" in proc.stderr
    assert str(bad) in proc.stderr
