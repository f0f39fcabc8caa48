#!/usr/bin/env bash
# The main job end to end: sample trades into Kafka, `k2-ingest consume` into Iceberg, read back with pyiceberg.
# Run through `make demo`, which builds and starts the services first. Each run starts from a
# fresh topic, group and warehouse so its numbers stand alone.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/debug/k2-ingest
SAMPLE=target/debug/k2-sample
PY=.k2/venv/bin/python
CONFIG=k2.example.toml
TOPIC=market.trades.raw
COUNT=${K2_DEMO_COUNT:-20000}
DEMO=.k2/demo

export K2_CATALOG_DATABASE=$PWD/$DEMO/catalog.db
export K2_WAREHOUSE=$PWD/$DEMO/warehouse
export K2_KAFKA_GROUP_ID=k2-demo-$(date +%s)

echo "== fresh start: topic $TOPIC deleted, warehouse $DEMO emptied"
rm -rf "$DEMO"
bash dev/services.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 \
    --delete --if-exists --topic "$TOPIC" >/dev/null
# Deletion finishes in the background; wait until the broker no longer lists the topic.
for _ in $(seq 1 30); do
    bash dev/services.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 --list \
        | grep -qx "$TOPIC" || break
    sleep 1
done

echo
echo "== produce $COUNT sample trades over 3 partitions, with injected anomalies"
$SAMPLE --config "$CONFIG" --topic "$TOPIC" --count "$COUNT" --partitions 3 --seed 7 \
    --gaps 5 --duplicates 5 --malformed 4 --invalid 6 --output json > "$DEMO.produce.json"
$PY -c 'import json,sys; s=json.load(open(sys.argv[1])); print("produced {produced}: gaps {gaps}, duplicates {duplicates}, malformed {malformed}, invalid {invalid}".format(**s))' "$DEMO.produce.json"

echo
echo "== k2-ingest consume"
$BIN consume --config "$CONFIG" --topic "$TOPIC" --output json > "$DEMO.consume.json"
$PY -m json.tool "$DEMO.consume.json"

echo
echo "== read the table back with pyiceberg"
$PY dev/read_table.py --database "$K2_CATALOG_DATABASE" --warehouse "$K2_WAREHOUSE" --table market.trades --show 3 | tee "$DEMO.read.txt"

$PY - "$DEMO.produce.json" "$DEMO.consume.json" "$DEMO.read.txt" <<'PY'
import json, sys
produce, consume = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
rows = int([l for l in open(sys.argv[3]) if l.startswith("ROWS ")][-1].split()[1])
expected = produce["produced"] - consume["rejected"] - consume["undecodable"]
print()
print(f"table rows {rows} = produced {produce['produced']} - rejected {consume['rejected']} - undecodable {consume['undecodable']}"
      + ("" if rows == expected else f"  MISMATCH: expected {expected}"))
print(f"dead letters {consume['dead_lettered']} in {consume['dlq_topic']} (the rejected and undecodable records, with their reasons)")
sys.exit(0 if rows == expected else 1)
PY
