"""Confluent-framed topics whose writer schemas live in a real registry (Apicurio, Confluent API):
three versions on one topic evolve one table; an incompatible version stops the topic."""

import io
import json
import os
import signal
import struct
import time
import urllib.request

import fastavro
import pytest
from confluent_kafka import Producer

REGISTRY = os.environ.get("K2_REGISTRY_URL", "http://127.0.0.1:18081/apis/ccompat/v7")


def trade_schema(qty="int", price="float", extra=()):
    return {
        "type": "record", "name": "Trade", "namespace": "e2e",
        "fields": [
            {"name": "symbol", "type": "string"},
            {"name": "qty", "type": qty},
            {"name": "price", "type": price},
            {"name": "side", "type": {"type": "enum", "name": "Side", "symbols": ["BUY", "SELL"]}},
            *extra,
        ],
    }


V1 = trade_schema()
V2 = trade_schema(qty="long", price="double")  # widening
V3 = trade_schema(qty="long", price="double",  # an added optional field
                  extra=[{"name": "venue", "type": ["null", "string"], "default": None}])
BAD = trade_schema(qty="string")  # int → string: incompatible


def register(subject: str, schema: dict) -> int:
    """Registers `schema` under `subject` in the real registry; returns its id."""
    body = json.dumps({"schema": json.dumps(schema)}).encode()
    req = urllib.request.Request(f"{REGISTRY}/subjects/{subject}/versions", data=body, method="POST",
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["id"]


def framed(schema_id: int, schema: dict, record: dict) -> bytes:
    """The Confluent wire format, encoded with fastavro (not with k2-ingest's own code)."""
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def produce(k2, topic: str, bodies: list[bytes]):
    producer = Producer({"bootstrap.servers": k2.bootstrap, "enable.idempotence": True})
    for i, body in enumerate(bodies):
        producer.produce(topic, value=body, key=f"k{i}".encode(), partition=0)
    assert producer.flush(30) == 0


def config_for(k2, topic: str, start_schema: dict):
    """The test config plus a Confluent-framed topic on the registry, whose table starts at
    `start_schema` (written to a file, as the `schema` key wants)."""
    return k2.config_with_topic("registry.toml", {"name": topic, "table": "evolving", "framing": "confluent"},
                                schema=start_schema, registry=REGISTRY)


def create_topic(k2, topic: str):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": k2.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)


@pytest.mark.parametrize("catalog", ["sql", "rest"])
def test_three_schema_versions_evolve_one_table(k2):
    topic = f"e2e.evolving.{k2.run_id}"
    subject = f"{topic}-value"
    ids = [register(subject, s) for s in (V1, V2, V3)]
    assert len(set(ids)) == 3
    v1 = [{"symbol": f"A{i}", "qty": i, "price": 1.5 + i, "side": "BUY"} for i in range(5)]
    v2 = [{"symbol": f"B{i}", "qty": 2**40 + i, "price": 1e300 * (i + 1), "side": "SELL"} for i in range(5)]
    v3 = [{"symbol": f"C{i}", "qty": 3 * 2**33 + i, "price": 0.125 * i, "side": "BUY",
           "venue": None if i % 2 else f"X{i}"} for i in range(5)]
    late_v1 = [{"symbol": "D0", "qty": 7, "price": 2.25, "side": "SELL"}]  # an old producer still running
    unknown_id = 2**31 - 7
    bodies = ([framed(ids[0], V1, r) for r in v1] + [framed(ids[1], V2, r) for r in v2]
              + [framed(ids[2], V3, r) for r in v3] + [framed(ids[0], V1, r) for r in late_v1]
              + [framed(unknown_id, V1, v1[0])])
    create_topic(k2, topic)
    produce(k2, topic, bodies)

    config = config_for(k2, topic, V1)
    proc = k2.run("consume", "--config", str(config), "--topic", topic, "--output", "json")
    summary = json.loads(proc.stdout)
    assert summary["written"] == 16, proc.stderr[-3000:]
    assert summary["undecodable"] == 1 and summary["dead_lettered"] == 1
    # Evolved before the first record of each version: one commit per schema change, at least.
    assert summary["commits"] >= 3

    table = k2.table("evolving")
    fields = {f.name: f for f in table.schema().fields}
    assert str(fields["qty"].field_type) == "long"
    assert str(fields["price"].field_type) == "double"
    assert str(fields["venue"].field_type) == "string" and not fields["venue"].required
    rows = table.scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    expected = [dict(r, venue=r.get("venue")) for r in v1 + v2 + v3 + late_v1]
    got = [{k: row[k] for k in ("symbol", "qty", "price", "side", "venue")} for row in rows]
    # float32 values written by version 1 come back exactly as float32 rounds them (1.5 + i is exact).
    assert got == expected

    # A restart reads old and new versions into the evolved table without changing it again.
    schemas_before = len(table.metadata.schemas)
    produce(k2, topic, [framed(ids[0], V1, late_v1[0]), framed(ids[2], V3, v3[0])])
    again = json.loads(k2.run("consume", "--config", str(config), "--topic", topic, "--output", "json").stdout)
    assert again["written"] == 2
    table = k2.table("evolving")
    assert len(table.metadata.schemas) == schemas_before
    assert table.scan().to_arrow().num_rows == 18

    # The record naming an id the registry does not have went to the dead-letter topic, whole.
    letters = k2.read_topic(f"{topic}.dlq")
    assert len(letters) == 1
    assert letters[0]["value"] == bodies[len(v1 + v2 + v3 + late_v1)]
    assert f"schema id {unknown_id}" in json.dumps(letters[0]["headers"], default=str)


def test_an_incompatible_version_stops_the_topic_naming_field_and_version(k2):
    topic = f"e2e.incompatible.{k2.run_id}"
    subject = f"{topic}-value"
    v1_id = register(subject, V1)
    bad_id = register(subject, BAD)
    good = [{"symbol": f"A{i}", "qty": i, "price": 1.0, "side": "BUY"} for i in range(3)]
    bad = {"symbol": "Z", "qty": "lots", "price": 1.0, "side": "SELL"}
    create_topic(k2, topic)
    produce(k2, topic, [framed(v1_id, V1, r) for r in good] + [framed(bad_id, BAD, bad)])

    config = config_for(k2, topic, V1)
    proc = k2.run("consume", "--config", str(config), "--topic", topic, check=False)
    assert proc.returncode != 0
    err = proc.stderr
    # The registry names every subject version that holds the id (an identical schema registered
    # under another subject shares it), this topic's among them.
    assert f"schema id {bad_id} (" in err and f"{subject} version 2" in err and "is incompatible" in err, err[-3000:]
    assert "field `qty` type changed from int to string" in err, err[-3000:]
    # Nothing was committed (the records before it had not been yet): neither the table nor the
    # group moved, so every record, the incompatible one too, is still there to read.
    assert k2.table("evolving").scan().to_arrow().num_rows == 0
    assert committed_offset(k2, topic) is None


def test_a_schema_id_of_another_subject_is_dead_lettered_unless_allowed(k2):
    """A record framed with the id of a schema registered only under another subject is refused:
    it goes to the dead letters naming the id, the subject holding it and the topic's subject.
    `allow_other_subjects = true` accepts it. Apicurio gives one id to identical text under any
    subject, so the other subject holds a different (compatible) schema of its own."""
    topic = f"e2e.subject.{k2.run_id}"
    own_id = register(f"{topic}-value", V1)
    other_subject = f"e2e.other.{k2.run_id}-value"
    other_id = register(other_subject, V2)
    assert other_id != own_id
    rows = [{"symbol": "A", "qty": 1, "price": 0.5, "side": "BUY"},
            {"symbol": "B", "qty": 2, "price": 1.5, "side": "SELL"}]
    create_topic(k2, topic)
    bodies = [framed(own_id, V1, rows[0]), framed(other_id, V2, rows[1])]
    produce(k2, topic, bodies)

    config = config_for(k2, topic, V1)
    summary = json.loads(k2.run("consume", "--config", str(config), "--topic", topic, "--output", "json").stdout)
    assert (summary["written"], summary["dead_lettered"]) == (1, 1), summary
    [letter] = k2.read_topic(f"{topic}.dlq")
    assert letter["value"] == bodies[1]
    reason = letter["headers"]["k2.reason.message"]
    assert f"schema id {other_id}" in reason and other_subject in reason and f"{topic}-value" in reason, reason
    assert [r["symbol"] for r in k2.table("evolving").scan().to_arrow().to_pylist()] == ["A"]

    # Allowed: the same record is decoded (a fresh group and table read the topic from the start).
    allowed = k2.config_with_topic("allowed.toml", {"name": topic, "table": "allowed", "framing": "confluent",
                                                    "allow_other_subjects": True}, schema=V1, registry=REGISTRY)
    proc = k2.run("consume", "--config", str(allowed), "--topic", topic, "--output", "json",
                  env={"K2_KAFKA_GROUP_ID": f"{k2.group}-allowed"})
    assert json.loads(proc.stdout)["written"] == 2, proc.stderr[-3000:]


def committed_offset(k2, topic: str):
    """The consumer group's committed offset of partition 0, read with confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": k2.bootstrap, "group.id": k2.group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset if tp.offset >= 0 else None
    finally:
        consumer.close()


def test_a_registry_topic_without_a_schema_file_starts_from_the_latest_version(k2):
    topic = f"e2e.latest.{k2.run_id}"
    subject = f"trades-{k2.run_id}"  # not the topic name strategy: set through `subject`
    v1_id, v3_id = register(subject, V1), register(subject, V3)
    create_topic(k2, topic)
    produce(k2, topic, [framed(v1_id, V1, {"symbol": "A", "qty": 1, "price": 0.5, "side": "BUY"}),
                        framed(v3_id, V3, {"symbol": "B", "qty": 2**35, "price": 0.25, "side": "SELL",
                                           "venue": "XNAS"})])
    config = k2.config_with_topic(
        "latest.toml", {"name": topic, "table": "from_registry", "framing": "confluent", "subject": subject},
        registry=REGISTRY)
    proc = k2.run("consume", "--config", str(config), "--topic", topic, "--output", "json")
    assert json.loads(proc.stdout)["written"] == 2
    assert f"subject={subject} version=2" in proc.stderr.replace('"', "")
    # Created from version 2 (V3): no evolution was needed, one schema in the table's history.
    table = k2.table("from_registry")
    assert len(table.metadata.schemas) == 1
    rows = table.scan().to_arrow().sort_by("_kafka_offset").to_pylist()
    assert [(r["symbol"], r["qty"], r["venue"]) for r in rows] == [("A", 1, None), ("B", 2**35, "XNAS")]


def wait_for_rows(k2, table: str, want: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline and rows < want:
        try:
            rows = k2.table(table).scan().to_arrow().num_rows
        except Exception:  # the table may not exist yet
            rows = 0
        time.sleep(0.5)
    return rows


def test_another_instance_evolving_the_shared_table_does_not_stop_this_one(k2):
    """Two topics into one table: instance B keeps writing version 1 while instance A meets
    version 3 and adds a column. B's batches keep their shape, and its files the schema they
    were built in, so B goes on without a restart."""
    old, new = f"e2e.old.{k2.run_id}", f"e2e.new.{k2.run_id}"
    subject = f"shared-{k2.run_id}"
    v1_id, v3_id = register(subject, V1), register(subject, V3)
    for topic in (old, new):
        create_topic(k2, topic)
    # Both topics' writers register under one subject, so each topic names it.
    config = k2.config_with_topic("shared.toml", {"name": old, "table": "shared", "framing": "confluent",
                                                  "subject": subject}, schema=V1, registry=REGISTRY)
    schema_file = k2.workdir / "shared.avsc"
    config.write_text(config.read_text().replace("\n[registry]", f"""
[[topics]]
name = "{new}"
table = "shared"
framing = "confluent"
subject = "{subject}"
schema = "{schema_file}"

[commit]
interval_ms = 500

[registry]"""))
    row = lambda n: {"symbol": f"B{n}", "qty": n, "price": 1.0, "side": "BUY"}  # noqa: E731
    b = k2.spawn_consume(old, config, log=k2.workdir / "b.log")
    try:
        produce(k2, old, [framed(v1_id, V1, row(0))])
        assert wait_for_rows(k2, "shared", 1) == 1
        produce(k2, new, [framed(v3_id, V3, {"symbol": "A", "qty": 2**40, "price": 2.0, "side": "SELL",
                                             "venue": "XNAS"})])
        k2.run("consume", "--config", str(config), "--topic", new, env={"K2_KAFKA_GROUP_ID": f"{k2.group}-a"})
        assert "venue" in {f.name for f in k2.table("shared").schema().fields}
        for n in (1, 2):  # the first commit after the change meets it, the second writes after it
            produce(k2, old, [framed(v1_id, V1, row(n))])
            assert wait_for_rows(k2, "shared", 2 + n) == 2 + n, (k2.workdir / "b.log").read_text()[-3000:]
    finally:
        b.send_signal(signal.SIGTERM)
        b.communicate(timeout=60)
    assert b.returncode == 0, (k2.workdir / "b.log").read_text()[-3000:]
    rows = k2.table("shared").scan().to_arrow().to_pylist()
    assert sorted((r["symbol"], r["qty"], r["venue"]) for r in rows) == [
        ("A", 2**40, "XNAS"), ("B0", 0, None), ("B1", 1, None), ("B2", 2, None)]
