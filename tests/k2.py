"""Drives the k2-ingest binary for end-to-end tests and reads its tables back with pyiceberg."""

import dataclasses
import json
import os
import pathlib
import subprocess

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog

WASM = "guest/target/wasm32-wasip2/release/k2_trades_validator.wasm"

# Where `make services-up REST=1` puts the REST catalog and the object store (dev/services.sh env).
REST_URI = os.environ.get("K2_REST_URI", "http://127.0.0.1:19181")
S3_ENDPOINT = os.environ.get("K2_S3_ENDPOINT", "http://127.0.0.1:19000")
S3_KEY = os.environ.get("K2_S3_ACCESS_KEY_ID", "k2access")
S3_SECRET = os.environ.get("K2_S3_SECRET_ACCESS_KEY", "k2secretkey")
S3_REGION = "us-east-1"


@dataclasses.dataclass
class K2:
    binary: pathlib.Path
    bootstrap: str
    root: pathlib.Path
    workdir: pathlib.Path
    run_id: str
    # "sql": the embedded SQLite catalog in workdir; "rest": the shared REST catalog over S3,
    # where each test gets a namespace of its own.
    catalog_kind: str = "sql"
    # The dev generator (dev/sample) that produces the test data; by default next to `binary`.
    sample_binary: pathlib.Path | None = None

    def __post_init__(self):
        if self.sample_binary is None:
            self.sample_binary = self.binary.with_name("k2-sample")
        self.namespace = "market" if self.catalog_kind == "sql" else f"e2e_{self.run_id}"
        self.database = self.workdir / "catalog.db"
        self.warehouse = self.workdir / "warehouse"
        self.group = f"e2e-{self.run_id}"
        self.trades = f"e2e.trades.{self.run_id}"
        self.framed = f"e2e.framed.{self.run_id}"
        self.quotes = f"e2e.quotes.{self.run_id}"
        self.config = self.workdir / "k2.toml"
        self.config.write_text(self._config_text())

    def config_with(self, name: str, extra_kafka_options: dict[str, str] | None = None, commit: dict[str, int] | None = None,
                    maintenance: dict[str, object] | None = None, pipeline: dict[str, int] | None = None):
        """A variant of the config (same topics, group and warehouse) written to `name`."""
        text = self._config_text()
        options = "".join(f'"{k}" = "{v}"\n' for k, v in (extra_kafka_options or {}).items())
        text = text.replace('"session.timeout.ms" = "6000"\n', '"session.timeout.ms" = "6000"\n' + options)
        if commit:
            text += "\n[commit]\n" + "".join(f"{k} = {v}\n" for k, v in commit.items())
        if pipeline:
            text = text.replace("[pipeline]\n", "[pipeline]\n" + "".join(f"{k} = {v}\n" for k, v in pipeline.items()), 1)
        if maintenance:
            text += "\n[maintenance]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in maintenance.items())
        path = self.workdir / name
        path.write_text(text)
        return path

    def spawn_consume(self, topic: str, config: pathlib.Path | None = None, log: pathlib.Path | None = None) -> subprocess.Popen:
        """A `consume --follow` in the background; its stderr goes to `log`."""
        err = open(log, "w") if log else subprocess.DEVNULL
        return subprocess.Popen(
            [str(self.binary), "consume", "--config", str(config or self.config), "--topic", topic, "--follow", "--output", "json"],
            stdout=subprocess.PIPE, stderr=err, text=True, env={"PATH": "/usr/bin:/bin", "K2_LOG": "info"},
        )

    def table_keys_or_none(self, name: str) -> list[tuple[int, int]] | None:
        """`table_keys`, or None while the table does not exist."""
        try:
            return self.table_keys(name)
        except Exception:
            return None

    def table_keys(self, name: str) -> list[tuple[int, int]]:
        rows = self.table(name).scan().to_arrow()
        return list(zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist()))

    def _config_text(self) -> str:
        schemas = self.root / "schemas"
        wasm = self.root / WASM
        return f"""
[kafka]
bootstrap_servers = "{self.bootstrap}"
group_id = "{self.group}"

# A crashed member holds its partitions until its session expires: keep that short in tests
# (6 s is the broker's minimum).
[kafka.options]
"session.timeout.ms" = "6000"

{self._catalog_section()}
[pipeline]
idle_timeout_ms = 3000

[[topics]]
name = "{self.trades}"
table = "trades"
schema = "{schemas / 'trade.avsc'}"
[topics.validator]
module = "{wasm}"

[[topics]]
name = "{self.framed}"
table = "trades_framed"
schema = "{schemas / 'trade.avsc'}"
framing = "confluent"
[topics.schema_ids]
"3" = "{schemas / 'trade.avsc'}"
[topics.validator]
module = "{wasm}"

[[topics]]
name = "{self.quotes}"
table = "quotes"
schema = "{schemas / 'quote.avsc'}"
"""

    def _catalog_section(self) -> str:
        if self.catalog_kind == "sql":
            return f"""[catalog]
type = "sql"
database = "{self.database}"
warehouse = "{self.warehouse}"
"""
        return f"""[catalog]
type = "rest"
uri = "{REST_URI}"
namespace = "{self.namespace}"
[catalog.s3]
endpoint = "{S3_ENDPOINT}"
region = "{S3_REGION}"
path_style_access = true
access_key_id = "{S3_KEY}"
secret_access_key = "{S3_SECRET}"
"""

    def run(self, *args: str, check: bool = True, timeout: float = 600, env: dict | None = None,
            binary: pathlib.Path | None = None) -> subprocess.CompletedProcess:
        binary = binary or self.binary
        proc = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "K2_LOG": "info", **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{binary.name} {' '.join(args)} exited {proc.returncode}\nstderr:\n{proc.stderr[-4000:]}")
        return proc

    def run_json(self, *args: str, binary: pathlib.Path | None = None) -> dict:
        proc = self.run(*args, "--output", "json", binary=binary)
        lines = [l for l in proc.stdout.splitlines() if l.strip()]
        assert len(lines) == 1, f"expected exactly one JSON line on stdout, got {proc.stdout!r}"
        return json.loads(lines[0])

    def produce(self, topic: str, count: int, manifest: pathlib.Path | None = None, **options) -> dict:
        args = ["--config", str(self.config), "--topic", topic, "--count", str(count)]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        if manifest is not None:
            args += ["--manifest", str(manifest)]
        return self.run_json(*args, binary=self.sample_binary)

    def consume(self, topic: str, *extra: str) -> dict:
        return self.run_json("consume", "--config", str(self.config), "--topic", topic, *extra)

    def config_with_topic(self, name: str, topic: dict, schema: dict | None = None,
                          registry: str | None = None) -> pathlib.Path:
        """The test config plus one more topic, written to `name`: `topic`'s keys as given, the
        Avro `schema` (a dict) written to a file of its own, and a `[registry]` at `registry`."""
        lines = dict(topic)
        if schema is not None:
            path = self.workdir / f"{pathlib.Path(name).stem}.avsc"
            path.write_text(json.dumps(schema))
            lines["schema"] = str(path)
        text = self.config.read_text() + "\n[[topics]]\n"
        text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in lines.items())
        if registry:
            text += f"\n[registry]\nurl = {json.dumps(registry)}\n"
        config = self.workdir / name
        config.write_text(text)
        return config

    def config_for_trades(self, name: str, lines: str) -> pathlib.Path:
        """The test config with `lines` added to the trades topic's section."""
        text = self.config.read_text()
        anchor = 'table = "trades"\n'
        assert anchor in text
        path = self.workdir / name
        path.write_text(text.replace(anchor, anchor + lines, 1))
        return path

    def read_topic(self, topic: str) -> list[dict]:
        """Every message of `topic` up to its high watermarks, read with confluent-kafka."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"reader-{self.run_id}",
                             "enable.auto.commit": False})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            assign, left = [], 0
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assign.append(TopicPartition(topic, p, low))
                left += high - low
            consumer.assign(assign)
            out = []
            while left > 0:
                msg = consumer.poll(10)
                assert msg is not None, f"{topic}: {left} messages below the watermark did not arrive"
                assert msg.error() is None, msg.error()
                # `headers` keeps the last value of each name; `header_list` every header as sent,
                # in order, values as bytes (a name may repeat).
                out.append({"partition": msg.partition(), "offset": msg.offset(), "key": msg.key(),
                            "value": msg.value(), "headers": {k: v.decode() for k, v in (msg.headers() or [])},
                            "header_list": list(msg.headers() or [])})
                left -= 1
            return out
        finally:
            consumer.close()

    def high_watermarks(self, topic: str) -> dict[int, int]:
        """Each partition's next offset on the broker, read with confluent-kafka."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"reader-{self.run_id}"})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        finally:
            consumer.close()

    def catalog(self) -> Catalog:
        if self.catalog_kind == "rest":
            return rest_catalog()
        # Same catalog name as k2-ingest's default ("k2"); SQLAlchemy spells the path with ////.
        return SqlCatalog("k2", uri=f"sqlite:///{self.database}", warehouse=f"file://{self.warehouse}")

    def table(self, name: str):
        return self.catalog().load_table(f"{self.namespace}.{name}")

    def table_label(self, name: str) -> str:
        """How metrics name `name`: `table="<namespace>.<name>"`."""
        return f'table="{self.namespace}.{name}"'


def rest_catalog() -> RestCatalog:
    """pyiceberg's own REST client and S3 file IO (pyarrow), independent of k2-ingest's."""
    return RestCatalog("k2", uri=REST_URI, **{
        "s3.endpoint": S3_ENDPOINT, "s3.access-key-id": S3_KEY, "s3.secret-access-key": S3_SECRET,
        "s3.region": S3_REGION, "s3.force-virtual-addressing": "false",
    })


def read_manifest(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
