# k2-ingest: the README's commands. `make demo` runs the main job end to end; `make test` runs every test.
# Both install what they need (wasm target, Kafka jars, Python venv) and start the services.

include dev/services.mk

CARGO ?= cargo
GUEST_TARGET := wasm32-wasip2
GUEST_WASM := guest/target/$(GUEST_TARGET)/release/k2_trades_validator.wasm
BIN := target/debug/k2-ingest
SAMPLE_BIN := target/debug/k2-sample
# The venv lives in the services state folder (.k2, or $K2_STATE_DIR as services.sh uses).
PY := $(or $(K2_STATE_DIR),.k2)/venv/bin/python

.PHONY: help toolchain guest build demo test test-rust test-guest test-e2e fuzz chaos bench clean

help:
	@echo "make demo           produce sample trades, ingest them, read the table back"
	@echo "make test           every test: unit, guest contract, end-to-end on real services"
	@echo "make services-up    start Kafka (127.0.0.1:19092) and a schema registry (:18081); REST=1 adds S3Proxy and a REST catalog (services-down stops them)"
	@echo "make build          the k2-ingest and k2-sample binaries and the validator components"
	@echo "make bench          validator throughput (wasm vs native), end-to-end ingest vs a bare consumer, growth over many commits"
	@echo "make fuzz           the decode and verdict-check property tests on hostile input, FUZZ_CASES per property (default 200000)"
	@echo "make chaos          the chaos soak: 1,000,000 trades, 50 kill -9, 3 broker restarts, 2 catalog outages; exact at the end"

## The wasm target for validator components (rustup is the only way to get a Rust target).
toolchain:
	@rustup target list --installed | grep -qx $(GUEST_TARGET) || rustup target add $(GUEST_TARGET)

## Validator components; cargo reads guest/.cargo only from inside guest/, so the target is explicit.
guest: toolchain
	$(CARGO) build --release --manifest-path guest/Cargo.toml --target $(GUEST_TARGET)

## Tests and the demo share the dev profile (dependencies optimised), so a cold build compiles them once.
## k2-sample (dev/sample) produces the generated market data the demo and the e2e tests ingest.
build: guest
	$(CARGO) build -p k2-ingest -p k2-sample

demo: build services-up venv
	bash dev/demo.sh

test: test-guest test-rust test-e2e

## Guest SDK and validator logic, natively.
test-guest:
	$(CARGO) test --manifest-path guest/Cargo.toml

## Host unit tests and guest-contract tests on the real .wasm (no network).
test-rust: guest
	$(CARGO) test -p k2-ingest -p k2-sample

## End-to-end tests against the real broker, read back with pyiceberg.
test-e2e: build services-up-rest venv
	K2_BIN=$(abspath $(BIN)) K2_SAMPLE_BIN=$(abspath $(SAMPLE_BIN)) $(PY) -m pytest tests -v -rs

## Both decode paths on hostile bodies (host/src/decode/fuzz.rs) and the check of a guest's verdict
## (guest/instance.rs): `make test` runs each property a few hundred to a few thousand times; this
## runs them FUZZ_CASES times each and prints each one's case count and time.
FUZZ_CASES ?= 200000
fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p k2-ingest --lib decode::fuzz -- --nocapture
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p k2-ingest --lib sandbox::instance::tests::the_verdict_check -- --nocapture

## Issue 21's chaos soak, not in `make test`: 1,000,000 trades with anomalies, 50 kill -9 of the
## ingester, 3 broker restarts and 2 REST catalog outages, then rows, events and dead letters
## compared with a run without faults; figures on stdout. CHAOS_RECORDS / CHAOS_KILLS size it.
chaos: build services-up-rest venv
	K2_BIN=$(abspath $(BIN)) K2_SAMPLE_BIN=$(abspath $(SAMPLE_BIN)) $(PY) -m pytest tests/chaos_soak.py -v -s -rs

## Speed targets live here, never in timed tests; release build, figures on stdout.
## BENCH_RECORDS / BENCH_ROUNDS size the end-to-end run (default 2,000,000 records, 1 round).
BENCH_RECORDS ?= 2000000
BENCH_ROUNDS ?= 1
## SOAK_COMMITS sizes the growth soak (default 300 commits; 2000 for the figures maintenance is judged on).
SOAK_COMMITS ?= 300
bench: guest services-up
	$(CARGO) build --release -p k2-ingest -p k2-sample -p k2-bench
	target/release/k2-bench validators
	target/release/k2-bench ingest --k2-bin target/release/k2-ingest --sample-bin target/release/k2-sample --records $(BENCH_RECORDS) --rounds $(BENCH_ROUNDS)
	target/release/k2-bench soak --k2-bin target/release/k2-ingest --sample-bin target/release/k2-sample --commits $(SOAK_COMMITS)

clean:
	$(CARGO) clean
	$(CARGO) clean --manifest-path guest/Cargo.toml
