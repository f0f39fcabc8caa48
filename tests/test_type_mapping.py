"""Every Avro type k2-ingest maps, written by an independent encoder (fastavro), ingested, and
read back with pyiceberg value for value; an unsupported type is refused before anything runs."""

import datetime as dt
import decimal
import io
import json
import uuid

import fastavro
import pytest
from confluent_kafka import Producer

UTC = dt.timezone.utc


def logical(base, name, **extra):
    return {"type": base, "logicalType": name, **extra}


LEG = {"type": "record", "name": "Leg", "fields": [
    {"name": "venue", "type": "string"},
    {"name": "qty", "type": ["null", "long"], "default": None},
]}

SCHEMA = {
    "type": "record", "name": "AllTypes", "namespace": "e2e",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "side", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
        {"name": "mic", "type": {"type": "fixed", "name": "Mic", "size": 4}},
        {"name": "px", "type": logical("bytes", "decimal", precision=10, scale=2)},
        {"name": "notional", "type": {"type": "fixed", "name": "Notional", "size": 9,
                                      "logicalType": "decimal", "precision": 20, "scale": 4}},
        {"name": "id", "type": logical("string", "uuid")},
        {"name": "day", "type": logical("int", "date")},
        {"name": "t_ms", "type": logical("int", "time-millis")},
        {"name": "t_us", "type": logical("long", "time-micros")},
        {"name": "ts_ms", "type": logical("long", "timestamp-millis")},
        {"name": "ts_us", "type": logical("long", "timestamp-micros")},
        {"name": "lts_ms", "type": logical("long", "local-timestamp-millis")},
        {"name": "lts_us", "type": logical("long", "local-timestamp-micros")},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "later", "type": ["string", "null"]},
        {"name": "first_leg", "type": LEG},
        {"name": "legs", "type": {"type": "array", "items": "Leg"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "limits", "type": {"type": "map", "values": ["null", "long"]}},
        {"name": "backup", "type": ["null", "Leg"], "default": None},
    ],
}


def record(n: int) -> dict:
    return {
        "b": n % 2 == 0, "i": -2**31 + n, "l": 2**62 + n, "f": 1.5 * n, "d": 1e300 / (n + 1),
        "s": f"sÿmbol-{n}", "raw": bytes([n, 0, 255]), "side": ["BUY", "SELL"][n % 2],
        "mic": b"XNA" + bytes([65 + n]),
        "px": decimal.Decimal(f"{n}12345.67"), "notional": decimal.Decimal(f"-{n}1234567890.1234"),
        "id": uuid.UUID(int=0x67E5504410B1426F9247BB680E5FE0C8 + n),
        "day": dt.date(2026, 11, 27) + dt.timedelta(days=n),
        "t_ms": dt.time(9, 30, 0, 123000), "t_us": dt.time(16, 0, n, 999999),
        "ts_ms": dt.datetime(2026, 11, 27, 14, 30, n, 123000, tzinfo=UTC),
        "ts_us": dt.datetime(2026, 11, 27, 14, 30, n, 123456, tzinfo=UTC),
        "lts_ms": dt.datetime(2026, 11, 27, 9, 30, n, 5000),
        "lts_us": dt.datetime(2026, 11, 27, 9, 30, n, 5001),
        "maybe": None if n % 2 else f"m{n}", "later": f"l{n}" if n % 2 else None,
        "first_leg": {"venue": "XNAS", "qty": n},
        "legs": [{"venue": f"V{k}", "qty": None if k % 2 else k} for k in range(n)],
        "tags": [f"t{k}" for k in range(n)],
        "limits": {f"k{k}": (None if k == 1 else k * 10) for k in range(n)},
        "backup": None if n % 2 else {"venue": "XNYS", "qty": None},
    }


def body(schema, rec) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), rec)
    return out.getvalue()


def normalise(column: str, value):
    """pyarrow's Python form of a column value, in the form `record` wrote it."""
    if column == "id" and isinstance(value, bytes):
        return uuid.UUID(bytes=value)
    if column == "limits":
        return dict(value)
    return value


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_every_mapped_type_round_trips_through_the_table(k2):
    topic = f"e2e.alltypes.{k2.run_id}"
    config = k2.config_with_topic("alltypes.toml", {"name": topic, "table": "alltypes", "on_invalid": "fail"},
                                  schema=SCHEMA)
    records = [record(n) for n in range(4)]
    producer = Producer({"bootstrap.servers": k2.bootstrap})
    for rec in records:
        producer.produce(topic, value=body(SCHEMA, rec), partition=0)
    assert producer.flush(30) == 0

    summary = json.loads(k2.run("consume", "--config", str(config), "--topic", topic, "--output", "json").stdout)
    assert summary["written"] == 4

    table = k2.table("alltypes")
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types["id"] == "uuid" and types["px"] == "decimal(10, 2)" and types["notional"] == "decimal(20, 4)"
    assert types["ts_us"] == "timestamptz" and types["lts_us"] == "timestamp" and types["t_ms"] == "time"
    assert types["mic"] == "fixed[4]" and types["raw"] == "binary" and types["side"] == "string"
    assert types["legs"].startswith("list<") and types["limits"].startswith("map<")
    rows = table.scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    assert len(rows) == 4
    for rec, row in zip(records, rows):
        for column, want in rec.items():
            got = normalise(column, row[column])
            if column == "f":
                assert got == pytest.approx(want), column
            else:
                assert got == want, f"{column}: {got!r} != {want!r}"


def test_an_unsupported_type_is_refused_before_consuming(k2):
    bad = dict(SCHEMA, fields=SCHEMA["fields"] + [
        {"name": "held", "type": {"type": "fixed", "name": "Held", "size": 12, "logicalType": "duration"}}])
    topic = f"e2e.unsupported.{k2.run_id}"
    config = k2.config_with_topic("bad.toml", {"name": topic, "table": "unsupported"}, schema=bad)
    proc = k2.run("consume", "--config", str(config), "--topic", topic, check=False)
    assert proc.returncode != 0
    assert f"schema {k2.workdir / 'bad.avsc'}: field `held`: avro type duration is not supported" in proc.stderr
    assert "panicked" not in proc.stderr
