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


def test_a_body_at_the_brokers_size_limit_is_dead_lettered_cut_with_its_size_and_digest(k2):
    """The letter of a record at the broker's size limit (body + the k2 headers) is over the
    producer's limit: it is still set aside, its body cut to fit, saying so, the whole body's size
    and SHA-256 in headers, and the topic goes on."""
    import hashlib

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

    admin = AdminClient({"bootstrap.servers": k2.bootstrap})
    broker = next(iter(admin.list_topics(timeout=10).brokers))
    [(_, future)] = admin.describe_configs([ConfigResource(ResourceType.BROKER, str(broker))]).items()
    limit = int(future.result(30)["message.max.bytes"].value)
    admin.create_topics([NewTopic(k2.trades, num_partitions=1, replication_factor=1)])[k2.trades].result(30)
    body = b"\x00" * (limit - 512)  # an empty symbol, zero numbers, then bytes left over: undecodable
    producer = Producer({"bootstrap.servers": k2.bootstrap, "message.max.bytes": 2 * limit})
    producer.produce(k2.trades, value=body, key=b"at-limit", headers=[("origin", b"e2e")])
    assert producer.flush(30) == 0

    summary = k2.consume(k2.trades)

    assert summary["dead_lettered"] == 1, summary
    [letter] = k2.read_topic(f"{k2.trades}.dlq")
    h = letter["headers"]
    assert letter["key"] == b"at-limit" and h["origin"] == "e2e" and h["k2.source.offset"] == "0"
    assert h["k2.reason.code"] == "undecodable"
    assert h["k2.body.truncated"] == "true"
    assert h["k2.body.original_bytes"] == str(len(body))
    assert h["k2.body.sha256"] == hashlib.sha256(body).hexdigest()
    assert 0 < len(letter["value"]) < len(body) and body.startswith(letter["value"])


def test_a_letter_the_dead_letter_topic_refuses_as_too_large_is_sent_again_cut(k2):
    """The dead-letter topic's own limit is below the producer's: the broker refuses the letter
    (MessageSizeTooLarge), and it goes again with its body cut until it fits."""
    import hashlib
    import os

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": k2.bootstrap})
    dlq = f"{k2.quotes}.dlq"
    for topic, config in ((k2.quotes, {}), (dlq, {"max.message.bytes": "100000"})):
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])[topic].result(30)
    body = os.urandom(300_000)  # incompressible: the broker counts compressed batches
    producer = Producer({"bootstrap.servers": k2.bootstrap})
    producer.produce(k2.quotes, value=body, key=b"big")
    assert producer.flush(30) == 0

    summary = k2.consume(k2.quotes)

    assert summary["dead_lettered"] == 1, summary
    [letter] = k2.read_topic(dlq)
    h = letter["headers"]
    assert h["k2.body.truncated"] == "true" and h["k2.body.original_bytes"] == str(len(body))
    assert h["k2.body.sha256"] == hashlib.sha256(body).hexdigest()
    assert 0 < len(letter["value"]) < 100_000 and body.startswith(letter["value"])
