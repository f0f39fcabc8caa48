"""`k2-ingest module new`: the scaffolded validator crate builds as is, passes `module check` and its own tests."""

import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The guest workspace's own (ignored) target folder: `make guest` and `make test-guest` have
# compiled the SDK and wit-bindgen there with the same profiles, so the scaffold reuses them,
# and the scaffolded crates (in tmp folders) leave nothing in the tree.
TARGET_DIR = ROOT / "guest" / "target"
NAME = "my-checks"
WASM = TARGET_DIR / "wasm32-wasip2" / "release" / "my_checks.wasm"


def wit_version() -> str:
    text = (ROOT / "wit" / "k2-ingest.wit").read_text()
    return re.search(r"^package k2:ingest@(\S+);", text, re.M).group(1)


def k2_ingest(binary, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "K2_LOG": "info"},
    )


def cargo(crate: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("cargo")
    if exe is None:
        pytest.fail("cargo is not on PATH: install Rust with rustup (make test needs it anyway)")
    proc = subprocess.run(
        [exe, *args], cwd=crate, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "CARGO_TARGET_DIR": str(TARGET_DIR)},
    )
    assert proc.returncode == 0, f"cargo {' '.join(args)} in {crate} exited {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def scaffold(binary, tmp_path_factory) -> tuple[pathlib.Path, str]:
    """A fresh crate from `module new`, and what the command printed."""
    parent = tmp_path_factory.mktemp("validators")
    proc = k2_ingest(binary, "module", "new", NAME, "--dir", str(parent))
    assert proc.returncode == 0, proc.stderr
    return parent / NAME, proc.stdout


def test_scaffold_has_its_files_and_prints_the_next_commands(scaffold):
    crate, stdout = scaffold
    for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore", "rustfmt.toml"]:
        assert (crate / file).is_file(), f"{file} missing from the scaffold"
    manifest = (crate / "Cargo.toml").read_text()
    assert f'name = "{NAME}"' in manifest
    # The SDK is a copy in the crate, not a path into the checkout the binary was built from.
    assert 'k2-validator-sdk = { path = "k2-validator-sdk" }' in manifest
    sdk = ROOT / "guest" / "sdk"
    for file in [p.relative_to(sdk) for p in sdk.rglob("*") if p.is_file()]:
        assert (crate / "k2-validator-sdk" / file).read_bytes() == (sdk / file).read_bytes(), f"sdk {file} not copied"
    assert str(ROOT) not in manifest + (crate / "README.md").read_text()
    assert len((crate / "src" / "lib.rs").read_text().splitlines()) <= 40, "the scaffold's lib.rs grew past 40 lines"
    assert "\n[workspace]\n" in manifest, "the crate must be its own workspace"
    assert "target/" in (crate / ".gitignore").read_text().splitlines()
    for command in [
        "cargo build --release --target wasm32-wasip2",
        "k2-ingest module check target/wasm32-wasip2/release/my_checks.wasm",
        "k2-ingest module test target/wasm32-wasip2/release/my_checks.wasm --schema SCHEMA.avsc --input RECORDS.jsonl",
    ]:
        assert command in stdout, f"`{command}` not among the printed next steps:\n{stdout}"
        assert command in (crate / "README.md").read_text(), f"`{command}` not in the crate's README"


def test_scaffold_builds_to_a_component_that_module_check_accepts(scaffold, binary):
    crate, _ = scaffold
    # A component left by an earlier run must not stand in for this build.
    WASM.unlink(missing_ok=True)
    cargo(crate, "build", "--release", "--target", "wasm32-wasip2")
    assert WASM.is_file(), f"cargo built no {WASM}"

    proc = k2_ingest(binary, "module", "check", str(WASM), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["name"], info["version"], info["wit_version"]) == (NAME, "0.1.0", wit_version())


def test_scaffold_runs_on_the_example_records(scaffold, binary):
    crate, _ = scaffold
    if not WASM.is_file():
        cargo(crate, "build", "--release", "--target", "wasm32-wasip2")
    proc = k2_ingest(binary, "module", "test", str(WASM), "--schema", str(ROOT / "schemas/trade.avsc"),
                     "--input", str(ROOT / "schemas/examples/trades.jsonl"), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # The scaffold keys sequences by symbol and checks nothing else: AAPL skips 4, MSFT repeats 2.
    assert result["rejected"] == []
    assert [(e["record"], e["kind"], e["key"]) for e in result["events"]] == [(4, "gap", "AAPL"), (6, "duplicate", "MSFT")]


def test_scaffold_native_tests_pass(scaffold):
    crate, _ = scaffold
    proc = cargo(crate, "test")
    assert "test result: ok. 1 passed" in proc.stdout, proc.stdout


def test_scaffold_is_rustfmt_clean(scaffold):
    crate, _ = scaffold
    cargo(crate, "fmt", "--check")


def test_refuses_an_existing_folder_and_leaves_it_alone(binary, tmp_path):
    taken = tmp_path / NAME
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    proc = k2_ingest(binary, "module", "new", NAME, "--dir", str(tmp_path))
    assert proc.returncode != 0
    assert f"{taken} already exists" in proc.stderr, proc.stderr
    assert sorted(p.name for p in taken.iterdir()) == ["notes.txt"]
    assert (taken / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["My-Checks", "1st", "my.checks", "my checks", "fn", "k2-validator-sdk"])
def test_refuses_a_bad_name_naming_it(binary, tmp_path, name):
    proc = k2_ingest(binary, "module", "new", name, "--dir", str(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], f"not one line: {proc.stderr!r}"
    assert f"invalid validator name `{name}`" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == [], "a refused name must create nothing"


def test_depends_on_an_sdk_given_with_sdk_path(binary, tmp_path):
    proc = k2_ingest(binary, "module", "new", NAME, "--dir", str(tmp_path), "--sdk", str(ROOT / "guest" / "sdk"))
    assert proc.returncode == 0, proc.stderr
    crate = tmp_path / NAME
    assert f'k2-validator-sdk = {{ path = "{ROOT / "guest" / "sdk"}" }}' in (crate / "Cargo.toml").read_text()
    assert not (crate / "k2-validator-sdk").exists(), "no copy when --sdk names one"


def test_refuses_a_missing_sdk_naming_it(binary, tmp_path):
    sdk = tmp_path / "no-sdk-here"
    proc = k2_ingest(binary, "module", "new", NAME, "--dir", str(tmp_path), "--sdk", str(sdk))
    assert proc.returncode != 0
    assert f"validator sdk not found at {sdk}" in proc.stderr and "--sdk" in proc.stderr, proc.stderr
    assert not (tmp_path / NAME).exists()
