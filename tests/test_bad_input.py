"""Bad input, end to end: hand-made bodies produced to the real broker between good records, one
bounded consume per topic, then the table must hold exactly the good records with their values
unchanged, every bad record must be in the dead-letter topic exactly once with the host's reason,
and the process must end normally. Never a crash, never a silently changed value.

Four topics, so that each decode path meets the bad input:
- `trades`: the plain trade schema of `schemas/trade.avsc` (flat: the direct reader), with the
  trades validator;
- `fills`: a schema with an array, a map, a `["null", string]` union, an enum and a
  timestamp-millis (apache-avro's reader), no validator;
- `ticks`: Confluent-framed, writer schemas from the real registry (Apicurio), flat schema with a
  timestamp-millis (direct reader after unframing);
- one body at the broker's size limit, on a topic of its own.

Every bad record has a key of its own (the case's name), so its dead letter is found by the key
the letter must keep, not by `k2.source.*` headers a producer could forge.

Out-of-range timestamps, as asserted here: a timestamp-millis whose value in microseconds does not
fit 64 bits (it can only be stored changed: saturated or wrapped), and a timestamp-micros at the
64-bit extreme (year -292277), outside every calendar a reader of the table uses (0001-9999).
"""

import dataclasses
import hashlib
import decimal
import io
import json
import pathlib
import re
import struct
import subprocess
import uuid

import fastavro
import pyarrow as pa
import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from k2 import K2
from test_schema_registry import REGISTRY, register

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRADE_AVSC = ROOT / "schemas" / "trade.avsc"
TRADE_SCHEMA = json.loads(TRADE_AVSC.read_text())

I64_MIN, I64_MAX = -2**63, 2**63 - 1


# ---- an Avro binary encoder of our own, so bad bodies can be built byte by byte --------------

def long_(n: int) -> bytes:
    """Avro's zig-zag varint of a 64-bit signed value."""
    assert I64_MIN <= n <= I64_MAX, n
    u = ((n << 1) ^ (n >> 63)) & (2**64 - 1)
    out = bytearray()
    while True:
        byte, u = u & 0x7F, u >> 7
        out.append(byte | (0x80 if u else 0))
        if not u:
            return bytes(out)


def str_(text) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return long_(len(raw)) + raw


def decimal_(value: decimal.Decimal, scale: int = 8) -> bytes:
    unscaled = int(value.scaleb(scale))
    return str_(unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True))


def fastavro_body(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


# ---- the cases ------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    name: str
    body: bytes | None
    # A regular expression (case-insensitive) the host's `k2.reason.message` must match: the
    # stable word that names the problem.
    reason: str
    code: str = "undecodable"
    headers: list = dataclasses.field(default_factory=list)


TRUNCATED = r"truncat|end of|eof|unexpected end|fill|short|input ends inside|only \d+ (bytes )?left"
LENGTH = r"length|truncat|end of|eof|exceed|too (large|long|big)|alloc|size|only \d+ (bytes )?left"
UTF8 = r"utf-?8"
UNION = r"union|branch"
ENUM = r"enum|symbol"
TRAILING = r"trailing|left after|extra|remain"


def trade(i: int, partition: int, **over) -> dict:
    """A good trade: accepted by the trades validator (past timestamp, positive price and size,
    a well-formed symbol); its sequence follows the previous good trade of its partition."""
    rec = {
        "symbol": ["AAPL", "MSFT"][partition], "exchange": "XNAS",
        "exchange_ts": 1_704_153_600_000_000 + i * 1_001,  # 2024-01-02, well in the past
        "price": decimal.Decimal("187.25") + i, "size": decimal.Decimal("0.00000001") * (i + 1),
        "side": ["BUY", "SELL"][i % 2], "trade_id": f"T{partition}-{i}", "sequence": i + 1,
        "conditions": None if i % 3 else "@F é",
    }
    rec.update(over)
    return rec


SIDES = ["BUY", "SELL", "UNKNOWN"]


def trade_fields(rec: dict, **raw) -> list[bytes]:
    """The encoded fields of a trade, in schema order; `raw` replaces a field's bytes as given."""
    cond = rec["conditions"]
    fields = {
        "symbol": str_(rec["symbol"]), "exchange": str_(rec["exchange"]),
        "exchange_ts": long_(rec["exchange_ts"]), "price": decimal_(rec["price"]),
        "size": decimal_(rec["size"]), "side": long_(SIDES.index(rec["side"])),
        "trade_id": str_(rec["trade_id"]), "sequence": long_(rec["sequence"]),
        "conditions": long_(0) if cond is None else long_(1) + str_(cond),
    }
    fields.update(raw)
    return list(fields.values())


def trade_body(rec: dict, **raw) -> bytes:
    return b"".join(trade_fields(rec, **raw))


REF_TRADE = trade(7, 0, conditions="@F")
REF_BODY = trade_body(REF_TRADE)
FORGED = [("k2.reason.code", b"forged-code"), ("k2.reason.message", b"forged by the producer"),
          ("k2.source.topic", b"elsewhere"), ("k2.source.partition", b"9"), ("k2.source.offset", b"424242"),
          ("k2.validator.name", b"forged-validator"), ("k2.validator.version", b"6.6.6"),
          ("trace-id", b"abc-123")]

TRADE_CASES = [
    # Each truncation point of a trade (0 bytes is the empty body, below).
    *[Case(f"trade-truncated-at-{cut}-of-{len(REF_BODY)}", REF_BODY[:cut], TRUNCATED) for cut in range(1, len(REF_BODY))],
    Case("trade-empty-body", b"", r"empty"),
    Case("trade-null-body-tombstone", None, r"empty|null|tombstone|no (value|body)"),
    Case("trade-trailing-byte", REF_BODY + b"\x00", TRAILING),
    # Oversized (and negative) length prefixes.
    Case("trade-symbol-length-2^62", trade_body(REF_TRADE, symbol=long_(2**62) + b"AAPL"), LENGTH),
    Case("trade-symbol-length-2^31", trade_body(REF_TRADE, symbol=long_(2**31) + b"AAPL"), LENGTH),
    Case("trade-symbol-length-i64-max", trade_body(REF_TRADE, symbol=long_(I64_MAX) + b"AAPL"), LENGTH),
    Case("trade-symbol-length-one-past-the-body",
         trade_body(REF_TRADE, symbol=long_(len(REF_BODY))) + b"AAPL", LENGTH),
    Case("trade-symbol-length-negative", trade_body(REF_TRADE, symbol=long_(-1) + b"AAPL"), r"negative|length"),
    Case("trade-price-bytes-length-2^40", trade_body(REF_TRADE, price=long_(2**40) + b"\x01"), LENGTH),
    Case("trade-price-bytes-length-negative", trade_body(REF_TRADE, price=long_(-5) + b"\x01"), r"negative|length"),
    Case("trade-varint-longer-than-10-bytes", trade_body(REF_TRADE, sequence=b"\xff" * 11 + b"\x01"), r"varint|long|overflow"),
    # A decimal wider than 128 bits, and one wider than the schema's precision 18 (19 digits).
    Case("trade-price-decimal-17-bytes", trade_body(REF_TRADE, price=str_(b"\x01" * 17)), r"decimal|price|precision|wide"),
    Case("trade-price-decimal-precision-19", trade_body(REF_TRADE, price=decimal_(decimal.Decimal("12345678901.5"))),
         r"price|precision|wide"),
    # Wrong union index (conditions is ["null", "string"]).
    Case("trade-union-index-2", trade_body(REF_TRADE, conditions=long_(2) + str_("@F")), UNION),
    Case("trade-union-index-negative", trade_body(REF_TRADE, conditions=long_(-1) + str_("@F")), UNION),
    # Bad enum index (side has 3 symbols).
    Case("trade-enum-index-3", trade_body(REF_TRADE, side=long_(3)), ENUM),
    Case("trade-enum-index-negative", trade_body(REF_TRADE, side=long_(-1)), ENUM),
    Case("trade-enum-index-2^40", trade_body(REF_TRADE, side=long_(2**40)), ENUM + r"|int|range"),
    # Invalid UTF-8.
    Case("trade-utf8-invalid-byte", trade_body(REF_TRADE, symbol=str_(b"AA\xffL")), UTF8),
    Case("trade-utf8-overlong-slash", trade_body(REF_TRADE, symbol=str_(b"A\xc0\xafB")), UTF8),
    Case("trade-utf8-surrogate", trade_body(REF_TRADE, trade_id=str_(b"T\xed\xa0\x80")), UTF8),
    Case("trade-utf8-cut-multibyte", trade_body(REF_TRADE, conditions=long_(1) + str_(b"@\xe2\x82")), UTF8),
    # Out-of-range timestamp: the 64-bit minimum of microseconds (year -292277). (A far-future one
    # would be rejected by the validator as `timestamp-in-future`; see the fills topic for that.)
    Case("trade-timestamp-micros-i64-min", trade_body(REF_TRADE, exchange_ts=long_(I64_MIN)), r"exchange_ts|timestamp|range"),
    # Forged k2.* headers: on an undecodable record and on one the validator rejects.
    Case("trade-forged-k2-headers-undecodable", trade_body(REF_TRADE, symbol=str_(b"\xff")), UTF8, headers=FORGED),
    Case("trade-forged-k2-headers-rejected", trade_body(trade(8, 0, price=decimal.Decimal(0))),
         r"price .* is not > 0", code="price-not-positive", headers=FORGED),
]


FILL_SCHEMA = {
    "type": "record", "name": "Fill", "namespace": "e2e.bad",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "side", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
        {"name": "venue", "type": ["null", "string"], "default": None},
        {"name": "legs", "type": {"type": "array", "items": "long"}},
        {"name": "tags", "type": {"type": "map", "values": "string"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def fill(i: int) -> dict:
    return {"id": 1000 + i, "side": ["BUY", "SELL"][i % 2], "venue": None if i % 2 else f"XNAS-{i}",
            "legs": [i * k - 3 for k in range(i % 4)], "tags": {f"k{k}": f"v{i}.{k}" for k in range(i % 3)},
            "at": 1_704_153_600_000 + i}


def fill_fields(rec: dict, **raw) -> list[bytes]:
    def block(items: list[bytes]) -> bytes:
        return (long_(len(items)) + b"".join(items) if items else b"") + long_(0)

    fields = {
        "id": long_(rec["id"]), "side": long_(["BUY", "SELL"].index(rec["side"])),
        "venue": long_(0) if rec["venue"] is None else long_(1) + str_(rec["venue"]),
        "legs": block([long_(v) for v in rec["legs"]]),
        "tags": block([str_(k) + str_(v) for k, v in rec["tags"].items()]),
        "at": long_(rec["at"]),
    }
    fields.update(raw)
    return list(fields.values())


def fill_body(rec: dict, **raw) -> bytes:
    return b"".join(fill_fields(rec, **raw))


REF_FILL = {"id": 77, "side": "SELL", "venue": "XLON", "legs": [1, -2], "tags": {"a": "b"}, "at": 1_704_153_600_123}
REF_FILL_BODY = fill_body(REF_FILL)
ARRAY = r"array|block|count|alloc|length|size|memory|exceed|overflow"

FILL_CASES = [
    *[Case(f"fill-truncated-at-{cut}-of-{len(REF_FILL_BODY)}", REF_FILL_BODY[:cut], TRUNCATED)
      for cut in range(1, len(REF_FILL_BODY))],
    Case("fill-empty-body", b"", r"empty"),
    Case("fill-trailing-byte", REF_FILL_BODY + b"\x00", TRAILING),
    # A huge array (and map) block count, with only a few bytes behind it.
    Case("fill-array-block-count-2^62", fill_body(REF_FILL, legs=long_(2**62) + long_(1) + long_(0)), ARRAY),
    Case("fill-array-block-count-2^31", fill_body(REF_FILL, legs=long_(2**31) + long_(1) + long_(0)), ARRAY),
    Case("fill-array-block-count-negative-2^62", fill_body(REF_FILL, legs=long_(-2**62) + long_(8) + long_(1) + long_(0)), ARRAY),
    Case("fill-array-block-count-i64-min", fill_body(REF_FILL, legs=long_(I64_MIN) + long_(8) + long_(1) + long_(0)), ARRAY),
    Case("fill-array-block-count-i64-max", fill_body(REF_FILL, legs=long_(I64_MAX) + long_(1) + long_(0)), ARRAY),
    Case("fill-map-block-count-2^62", fill_body(REF_FILL, tags=long_(2**62) + str_("a") + str_("b") + long_(0)), ARRAY + r"|map"),
    # Oversized length prefixes (one past apache-avro's allocation limit, one below it).
    Case("fill-venue-length-2^62", fill_body(REF_FILL, venue=long_(1) + long_(2**62) + b"XLON"), LENGTH),
    Case("fill-venue-length-256MiB", fill_body(REF_FILL, venue=long_(1) + long_(256 * 2**20) + b"XLON"), LENGTH),
    Case("fill-map-key-length-2^62", fill_body(REF_FILL, tags=long_(1) + long_(2**62) + b"a" + str_("b") + long_(0)), LENGTH),
    Case("fill-venue-length-negative", fill_body(REF_FILL, venue=long_(1) + long_(-3) + b"XLON"), r"negative|length"),
    # Wrong union index and bad enum index.
    Case("fill-union-index-2", fill_body(REF_FILL, venue=long_(2) + str_("XLON")), UNION),
    Case("fill-union-index-negative", fill_body(REF_FILL, venue=long_(-1) + str_("XLON")), UNION),
    Case("fill-enum-index-2", fill_body(REF_FILL, side=long_(2)), ENUM),
    Case("fill-enum-index-negative", fill_body(REF_FILL, side=long_(-1)), ENUM),
    # Invalid UTF-8 in a union's string, a map key and a map value.
    Case("fill-utf8-venue", fill_body(REF_FILL, venue=long_(1) + str_(b"X\xffN")), UTF8),
    Case("fill-utf8-map-key", fill_body(REF_FILL, tags=long_(1) + str_(b"\xc3") + str_("b") + long_(0)), UTF8),
    Case("fill-utf8-map-value", fill_body(REF_FILL, tags=long_(1) + str_("a") + str_(b"\xed\xbf\xbf") + long_(0)), UTF8),
    # Out-of-range timestamp-millis: in microseconds they do not fit 64 bits.
    Case("fill-timestamp-millis-2^62", fill_body(REF_FILL, at=long_(2**62)), r"\bat\b|timestamp|range|overflow"),
    Case("fill-timestamp-millis-negative-2^62", fill_body(REF_FILL, at=long_(-2**62)), r"\bat\b|timestamp|range|overflow"),
    Case("fill-timestamp-millis-i64-max", fill_body(REF_FILL, at=long_(I64_MAX)), r"\bat\b|timestamp|range|overflow"),
]


TICK_SCHEMA = {
    "type": "record", "name": "Tick", "namespace": "e2e.bad",
    "fields": [
        {"name": "symbol", "type": "string"},
        {"name": "price", "type": "double"},
        {"name": "side", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
# Readable as a Tick (float widens to double) and needing no change of the table: only the
# subject it is registered under is wrong.
OTHER_SCHEMA = dict(TICK_SCHEMA, fields=[dict(f, type="float") if f["name"] == "price" else f
                                         for f in TICK_SCHEMA["fields"]])


def tick(i: int) -> dict:
    return {"symbol": f"S{i}", "price": 100.25 + i, "side": ["BUY", "SELL"][i % 2],
            "ts": 1_704_153_600_000 + i, "note": None if i % 2 else f"n{i}"}


def tick_datum(rec: dict, **raw) -> bytes:
    fields = {
        "symbol": str_(rec["symbol"]), "price": struct.pack("<d", rec["price"]),
        "side": long_(["BUY", "SELL"].index(rec["side"])), "ts": long_(rec["ts"]),
        "note": long_(0) if rec["note"] is None else long_(1) + str_(rec["note"]),
    }
    fields.update(raw)
    return b"".join(fields.values())


def frame(schema_id: int, datum: bytes, magic: int = 0) -> bytes:
    return struct.pack(">BI", magic, schema_id) + datum


UNKNOWN_ID = 2**31 - 11
REF_TICK = tick(5)


def tick_cases(tick_id: int, other_id: int) -> list[Case]:
    """The registry topic's cases; they need the ids the registry gave (names are fixed)."""
    datum = tick_datum(REF_TICK)
    other = fastavro_body(OTHER_SCHEMA, dict(REF_TICK, price=2.5))
    return [
        Case("tick-empty-body", b"", r"empty"),
        Case("tick-frame-of-1-byte", b"\x00", r"header|short|frame|byte"),
        Case("tick-frame-of-4-bytes", frame(tick_id, b"")[:4], r"header|short|frame|byte"),
        Case("tick-wrong-magic-byte-1", frame(tick_id, datum, magic=1), r"magic"),
        Case("tick-wrong-magic-byte-ff", frame(tick_id, datum, magic=0xFF), r"magic"),
        Case("tick-unknown-schema-id", frame(UNKNOWN_ID, datum), rf"schema id {UNKNOWN_ID}\b"),
        Case("tick-schema-id-of-another-subject", frame(other_id, other), rf"(?=.*\b{other_id}\b)(?=.*subject)"),
        Case("tick-header-only", frame(tick_id, b""), TRUNCATED + r"|empty"),
        Case("tick-datum-truncated-mid-price", frame(tick_id, datum[:5]), TRUNCATED),
        Case("tick-timestamp-millis-2^62", frame(tick_id, tick_datum(REF_TICK, ts=long_(2**62))),
             r"\bts\b|timestamp|range|overflow"),
        Case("tick-timestamp-millis-i64-min", frame(tick_id, tick_datum(REF_TICK, ts=long_(I64_MIN))),
             r"\bts\b|timestamp|range|overflow"),
    ]


TICK_CASE_NAMES = [c.name for c in tick_cases(1, 2)]


# ---- producing, consuming, reading back ------------------------------------------------------

def create_topic(k2: K2, topic: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": k2.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)


def produce(k2: K2, topic: str, records: list[tuple[int, str, bytes | None, list]], one_per_batch=False,
            **config) -> dict:
    """Produces (partition, key, value, headers) in order; returns key -> (partition, offset)
    as the broker acknowledged them. `one_per_batch`: each record alone in its batch."""
    placed, errors = {}, []

    def delivered(err, msg):
        if err is not None:
            errors.append((msg.key(), err))
        else:
            placed[msg.key().decode()] = (msg.partition(), msg.offset())

    producer = Producer({"bootstrap.servers": k2.bootstrap, "enable.idempotence": True, **config})
    for partition, key, value, headers in records:
        producer.produce(topic, value=value, key=key.encode(), partition=partition, headers=headers or None,
                         on_delivery=delivered)
        producer.poll(0)
        if one_per_batch:
            assert producer.flush(60) == 0
    assert producer.flush(60) == 0
    assert not errors, errors
    assert len(placed) == len(records), "every key is unique"
    return placed


def interleave(good: list[tuple[int, str, bytes, list]], bad: list[Case], partitions: int) -> list:
    """Good (partition, key, value, headers) records spread evenly between the bad ones (a good
    one first and last), bad ones alternating partitions; good records keep their order."""
    out, every = [], max(1, len(bad) // max(1, len(good) - 1))
    goods = list(good)
    for j, case in enumerate(bad):
        if j % every == 0 and len(goods) > 1:
            out.append(goods.pop(0))
        out.append((j % partitions, case.name, case.body, case.headers))
    return out + goods


@dataclasses.dataclass
class Run:
    """One bounded consume of one topic and what it left behind."""
    topic: str
    table: str
    proc: subprocess.CompletedProcess
    placed: dict            # key -> (partition, offset)
    good: dict              # key -> the record as produced
    cases: dict             # name -> Case
    letters: list
    rows: dict | None       # (partition, offset) -> row, None if the table cannot be read
    table_error: str = ""

    @property
    def summary(self) -> dict | None:
        try:
            return json.loads(self.proc.stdout)
        except ValueError:
            return None

    def context(self) -> str:
        return f"consume exited {self.proc.returncode}; stderr tail:\n{self.proc.stderr[-2500:]}"


def consume(k2: K2, config, topic: str, table: str, placed: dict, good: dict, cases: list[Case]) -> Run:
    args = [str(k2.binary), "consume", "--config", str(config), "--topic", topic, "--output", "json"]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "K2_LOG": "info"})
    except subprocess.TimeoutExpired as e:  # a hang is a failure of every assertion below, not an error
        text = lambda out: out.decode(errors="replace") if isinstance(out, bytes) else (out or "")  # noqa: E731
        proc = subprocess.CompletedProcess(args, "killed after 120 s", text(e.stdout), text(e.stderr))
    letters = k2.read_topic(f"{topic}.dlq")
    rows, error = None, ""
    try:
        arrow = k2.table(table).scan().to_arrow()
        # Timestamps as their raw microseconds: a value out of Python's datetime range must show as
        # a number in a failure message, not break the reading.
        for name in ("exchange_ts", "at", "ts"):
            if name in arrow.column_names:
                arrow = arrow.set_column(arrow.column_names.index(name), name, arrow[name].cast(pa.int64()))
        rows = {(r["_kafka_partition"], r["_kafka_offset"]): r for r in arrow.to_pylist()}
        for row in rows.values():  # pyarrow gives a map as (key, value) pairs
            if "tags" in row:
                row["tags"] = dict(row["tags"])
    except Exception as e:  # noqa: BLE001 — reported by the assertions that need the rows
        error = f"{type(e).__name__}: {e}"
    return Run(topic, table, proc, placed, good, {c.name: c for c in cases}, letters, rows, error)


@pytest.fixture(scope="module")
def world(binary, bootstrap, tmp_path_factory):
    """One config for the module: the trades topic of the base config plus fills, ticks (on the
    registry) and the size-limit topic."""
    run_id = uuid.uuid4().hex[:10]
    k2 = K2(binary=binary, bootstrap=bootstrap, root=ROOT, workdir=tmp_path_factory.mktemp("bad"), run_id=run_id)
    k2.fills, k2.ticks, k2.big = (f"e2e.{name}.{run_id}" for name in ("fills", "ticks", "big"))
    (k2.workdir / "fill.avsc").write_text(json.dumps(FILL_SCHEMA))
    (k2.workdir / "tick.avsc").write_text(json.dumps(TICK_SCHEMA))
    k2.bad_config = k2.workdir / "bad.toml"
    k2.bad_config.write_text(k2.config.read_text() + f"""
[[topics]]
name = "{k2.fills}"
table = "fills"
schema = "{k2.workdir / 'fill.avsc'}"

[[topics]]
name = "{k2.ticks}"
table = "ticks"
schema = "{k2.workdir / 'tick.avsc'}"
framing = "confluent"

[[topics]]
name = "{k2.big}"
table = "big"
schema = "{TRADE_AVSC}"

[registry]
url = "{REGISTRY}"
""")
    return k2


@pytest.fixture(scope="module")
def trades(world) -> Run:
    k2 = world
    create_topic(k2, k2.trades, 2)
    counters = {0: 0, 1: 0}
    good, records = {}, []
    for n in range(24):
        p = n % 2
        counters[p] += 1
        good[f"good-{n}"] = trade(n, p, sequence=counters[p])
    for rec in good.values():  # the encoder is checked against an independent one
        assert trade_body(rec) == fastavro_body(TRADE_SCHEMA, rec)
    # A good record with forged k2.* headers is still just a good record.
    records = interleave([(int(k[5:]) % 2, k, trade_body(r), FORGED if k == "good-11" else [])
                          for k, r in good.items()], TRADE_CASES, 2)
    placed = produce(k2, k2.trades, records)
    return consume(k2, k2.bad_config, k2.trades, "trades", placed, good, TRADE_CASES)


@pytest.fixture(scope="module")
def fills(world) -> Run:
    k2 = world
    create_topic(k2, k2.fills, 1)
    good = {f"good-{n}": fill(n) for n in range(24)}
    for rec in good.values():
        assert fill_body(rec) == fastavro_body(FILL_SCHEMA, rec)
    placed = produce(k2, k2.fills, interleave([(0, k, fill_body(r), []) for k, r in good.items()], FILL_CASES, 1))
    return consume(k2, k2.bad_config, k2.fills, "fills", placed, good, FILL_CASES)


@pytest.fixture(scope="module")
def ticks(world) -> Run:
    k2 = world
    tick_id = register(f"{k2.ticks}-value", TICK_SCHEMA)
    other_id = register(f"e2e.other.{k2.run_id}-value", OTHER_SCHEMA)
    assert tick_id != other_id
    cases = tick_cases(tick_id, other_id)
    assert [c.name for c in cases] == TICK_CASE_NAMES
    create_topic(k2, k2.ticks, 1)
    good = {f"good-{n}": tick(n) for n in range(8)}
    for rec in good.values():
        assert tick_datum(rec) == fastavro_body(TICK_SCHEMA, rec)
    records = interleave([(0, k, frame(tick_id, tick_datum(r)), []) for k, r in good.items()], cases, 1)
    placed = produce(k2, k2.ticks, records)
    return consume(k2, k2.bad_config, k2.ticks, "ticks", placed, good, cases)


# ---- the assertions, shared by the topics ------------------------------------------------------

def assert_exited_normally(run: Run):
    assert run.proc.returncode == 0, run.context()
    assert "panicked" not in run.proc.stderr, run.context()
    assert run.summary is not None, f"no JSON summary on stdout: {run.proc.stdout!r}\n{run.context()}"


def assert_table_is_exactly_the_good_records(run: Run, expect):
    assert run.rows is not None, f"table {run.table} unreadable: {run.table_error}\n{run.context()}"
    want = {run.placed[key]: key for key in run.good}
    extra = {k: run.rows[k] for k in set(run.rows) - set(want)}
    by_offset = {po: key for key, po in run.placed.items()}
    assert not extra, "rows that are not good records: " + "; ".join(
        f"{by_offset.get(po)} at {po}" for po in sorted(extra))
    missing = sorted(set(want) - set(run.rows))
    assert not missing, f"good records missing from the table: {[want[po] for po in missing]}\n{run.context()}"
    for po, key in sorted(want.items()):
        row = run.rows[po]
        got = {column: row[column] for column in expect(run.good[key])}
        assert got == expect(run.good[key]), f"{key} at {po}: value changed"
    summary = run.summary or {}
    assert (summary.get("written"), summary.get("dead_lettered")) == (len(run.good), len(run.cases)), summary


def assert_dead_lettered(run: Run, name: str, validator: str | None = None):
    case = run.cases[name]
    p, o = run.placed[name]
    where = f"{name} (partition {p} offset {o})"
    if run.rows is not None and (p, o) in run.rows:
        shown = {k: v for k, v in run.rows[(p, o)].items() if not k.startswith("_")}
        pytest.fail(f"{where} landed in the table as {shown}")
    mine = [letter for letter in run.letters if letter["key"] == name.encode()]
    assert len(mine) == 1, f"{where}: {len(mine)} dead letters, want exactly 1\n{run.context()}"
    letter = mine[0]
    headers = letter["header_list"]

    def values(key):
        return [(v or b"").decode(errors="replace") for k, v in headers if k == key]

    codes, messages = values("k2.reason.code"), values("k2.reason.message")
    assert set(codes) == {case.code}, f"{where}: k2.reason.code headers {codes}, want only {case.code!r}"
    assert len(set(messages)) == 1, f"{where}: k2.reason.message headers {messages}, want the host's only"
    assert re.search(case.reason, messages[0], re.IGNORECASE), \
        f"{where}: reason {messages[0]!r} does not name the problem (/{case.reason}/)"
    assert set(values("k2.source.topic")) == {run.topic}, values("k2.source.topic")
    assert set(values("k2.source.partition")) == {str(p)}, values("k2.source.partition")
    assert set(values("k2.source.offset")) == {str(o)}, values("k2.source.offset")
    if validator is not None:
        assert set(values("k2.validator.name")) == {validator}, values("k2.validator.name")
    if values("k2.body.truncated") == ["true"]:
        # Too large to send whole: a prefix of the body, with the whole body's size and digest.
        assert case.body.startswith(letter["value"]) and letter["value"], f"{where}: not a prefix of the body"
        assert values("k2.body.original_bytes") == [str(len(case.body))], values("k2.body.original_bytes")
        assert values("k2.body.sha256") == [hashlib.sha256(case.body).hexdigest()], values("k2.body.sha256")
    elif case.body:
        assert letter["value"] == case.body, f"{where}: the letter's body is not the original"
    else:
        assert not letter["value"], f"{where}: the letter's body is not the original (empty)"
    # The producer's own headers other than k2.* travel with the letter.
    for k, v in case.headers:
        if not k.startswith("k2."):
            assert (k, v) in headers, f"{where}: original header {k} lost"


def trade_expect(rec: dict) -> dict:
    return dict(rec)


def assert_no_letter_for_good_records(run: Run):
    keys = {letter["key"] for letter in run.letters}
    wrong = sorted(k.decode() for k in keys if k and k.decode() in run.good)
    assert not wrong, f"good records dead-lettered: {wrong}"


# ---- trades: the plain trade schema (direct reader) with the validator -----------------------

def test_trades_consume_ends_normally(trades):
    assert_exited_normally(trades)


def test_trades_table_holds_exactly_the_good_trades_unchanged(trades):
    assert_table_is_exactly_the_good_records(trades, trade_expect)
    assert_no_letter_for_good_records(trades)


@pytest.mark.parametrize("name", [c.name for c in TRADE_CASES])
def test_trades_bad_input_is_dead_lettered_with_a_reason(trades, name):
    assert_dead_lettered(trades, name, validator="trades" if "forged" in name else None)


# ---- fills: array, map, union, enum, timestamp-millis (apache-avro's reader) -----------------

def fill_expect(rec: dict) -> dict:
    return {**rec, "at": rec["at"] * 1000}


def test_fills_consume_ends_normally(fills):
    assert_exited_normally(fills)


def test_fills_table_holds_exactly_the_good_fills_unchanged(fills):
    assert_table_is_exactly_the_good_records(fills, fill_expect)
    assert_no_letter_for_good_records(fills)


@pytest.mark.parametrize("name", [c.name for c in FILL_CASES])
def test_fills_bad_input_is_dead_lettered_with_a_reason(fills, name):
    assert_dead_lettered(fills, name)


# ---- ticks: Confluent framing, writer schemas from the registry ------------------------------

def tick_expect(rec: dict) -> dict:
    return {**rec, "ts": rec["ts"] * 1000}


def test_ticks_consume_ends_normally(ticks):
    assert_exited_normally(ticks)


def test_ticks_table_holds_exactly_the_good_ticks_unchanged(ticks):
    assert_table_is_exactly_the_good_records(ticks, tick_expect)
    assert_no_letter_for_good_records(ticks)


@pytest.mark.parametrize("name", TICK_CASE_NAMES)
def test_ticks_bad_input_is_dead_lettered_with_a_reason(ticks, name):
    assert_dead_lettered(ticks, name)


# ---- a body at the broker's size limit -------------------------------------------------------

def broker_message_max_bytes(k2: K2) -> int:
    admin = AdminClient({"bootstrap.servers": k2.bootstrap})
    broker = next(iter(admin.list_topics(timeout=10).brokers))
    [(_, future)] = admin.describe_configs([ConfigResource(ResourceType.BROKER, str(broker))]).items()
    return int(future.result(30)["message.max.bytes"].value)


def largest_body_the_broker_takes(k2: K2, key: str, low: int, high: int, client: dict) -> int:
    """The largest value (with this key and no headers) the broker accepts in one record, found by
    producing to a scratch topic: the limit is the broker's, not a number worked out here."""
    probe = f"e2e.probe.{k2.run_id}"
    create_topic(k2, probe, 1)
    producer = Producer({"bootstrap.servers": k2.bootstrap, **client})

    def accepted(size: int) -> bool:
        result = []
        producer.produce(probe, value=b"\x00" * size, key=key.encode(), partition=0,
                         on_delivery=lambda err, msg: result.append(err))
        assert producer.flush(60) == 0
        if result[0] is not None:
            assert result[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, result[0]
        return result[0] is None

    assert accepted(low) and not accepted(high), (low, high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if accepted(mid) else (low, mid)
    return low


def test_records_at_the_broker_size_limit_are_dead_lettered_cut_with_sizes_and_digests(world):
    k2 = world
    limit = broker_message_max_bytes(k2)
    # The client's own limits out of the way: the broker's is the one under test.
    client = {"message.max.bytes": 4 * limit, "batch.size": 4 * limit, "linger.ms": 0}
    size = largest_body_the_broker_takes(k2, "at-limit", limit - 1024, limit + 1, client)
    assert limit - 200 < size <= limit, (size, limit)
    # A good trade padded with trailing bytes to the limit: undecodable.
    body = REF_BODY + b"\x00" * (size - len(REF_BODY))
    # A small undecodable body under headers that fill the broker's limit on their own: its
    # letter cannot keep them (plus the k2.* reasons) under the producer's limit.
    small = REF_BODY + b"\x00"
    headers = [(f"h{i:03d}", b"v" * 9_900) for i in range((size - 8_192) // 9_905)]
    good = {"good-0": trade(0, 0), "good-1": trade(1, 0, sequence=2)}
    create_topic(k2, k2.big, 1)
    placed = produce(k2, k2.big, [(0, "good-0", trade_body(good["good-0"]), []), (0, "at-limit", body, []),
                                  (0, "huge-headers", small, headers),
                                  (0, "good-1", trade_body(good["good-1"]), [])], one_per_batch=True, **client)
    cases = [Case("at-limit", body, TRAILING), Case("huge-headers", small, TRAILING)]
    run = consume(k2, k2.bad_config, k2.big, "big", placed, good, cases)

    assert_exited_normally(run)
    assert_table_is_exactly_the_good_records(run, trade_expect)
    assert_dead_lettered(run, "at-limit")
    assert_dead_lettered(run, "huge-headers")
    [letter] = [letter for letter in run.letters if letter["key"] == b"huge-headers"]
    kept = dict(letter["header_list"])
    assert kept.get("k2.headers.dropped") == str(len(headers)).encode(), "the record's headers were dropped, and said so"
    assert len(kept.get("k2.headers.sha256", b"")) == 64
    assert not any(k.startswith("h") for k, _ in letter["header_list"])
