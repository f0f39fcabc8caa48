"""Fixtures for end-to-end tests: the built binary, the real broker, and a fresh config per test."""

import os
import pathlib
import uuid

import pytest

from k2 import K2

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def binary() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("K2_BIN", ROOT / "target/debug/k2-ingest"))
    if not path.is_file():
        pytest.fail(f"k2-ingest binary not found at {path}: run `make build` (make test does)")
    return path


@pytest.fixture(scope="session")
def sample_binary(binary) -> pathlib.Path:
    """The dev generator of test data (dev/sample), built next to k2-ingest unless K2_SAMPLE_BIN says."""
    path = pathlib.Path(os.environ.get("K2_SAMPLE_BIN", binary.with_name("k2-sample")))
    if not path.is_file():
        pytest.fail(f"k2-sample binary not found at {path}: run `make build` (make test does)")
    return path


@pytest.fixture(scope="session")
def bootstrap() -> str:
    # Services are started by `make services-up`; tests find them through the environment.
    return os.environ.get("K2_KAFKA_BOOTSTRAP", "127.0.0.1:19092")


@pytest.fixture()
def catalog() -> str:
    """The catalog a test runs against: "sql" (embedded) unless the test parametrizes
    `catalog` (e.g. `@pytest.mark.parametrize("catalog", ["sql", "rest"])`)."""
    return "sql"


@pytest.fixture()
def k2(binary, sample_binary, bootstrap, tmp_path, catalog) -> K2:
    """A config of its own: fresh topic names, group and warehouse (or REST namespace), absolute paths."""
    return K2(binary=binary, bootstrap=bootstrap, root=ROOT, workdir=tmp_path, run_id=uuid.uuid4().hex[:10],
              catalog_kind=catalog, sample_binary=sample_binary)
