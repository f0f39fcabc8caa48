# Make targets for the real services (Kafka KRaft node, Python venv); included from the top-level Makefile.

# The directory of this file, so the targets work whatever the including Makefile's cwd or name.
K2_DEV_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
K2_ROOT ?= $(abspath $(K2_DEV_DIR)/..)
K2_SERVICES ?= bash $(K2_ROOT)/dev/services.sh

.PHONY: services-fetch services-up services-down services-status services-reset venv

## Download the Kafka jars from Maven Central into .k2/kafka/lib (once per pom change).
services-fetch:
	$(K2_SERVICES) fetch

## Fetch if needed, then start Kafka on 127.0.0.1 and wait until it answers (no-op if running).
services-up: services-fetch
	$(K2_SERVICES) up

## Stop Kafka (data is kept).
services-down:
	$(K2_SERVICES) down

## Print whether Kafka runs.
services-status:
	$(K2_SERVICES) status

## Stop Kafka and delete its data and logs.
services-reset:
	$(K2_SERVICES) reset

## Create .k2/venv with pyiceberg and friends (once per requirements change).
venv:
	$(K2_SERVICES) venv
